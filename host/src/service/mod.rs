//! The HTTP scoring service (`tollgate serve`): axum over a [`Scorer`]. Scoring endpoints take
//! JSON or MessagePack by `Content-Type`; admin endpoints (snapshot push, rollback) need the
//! bearer token. With [`ServiceConfig::decision_log`], every decision is appended to the
//! [`crate::decision_log`]. [`serve_tls`] serves the same routes over TLS ([`tls`]).
//! `docs/host.md` lists the endpoints and their answers.

mod alerts;
mod idempotency;
mod metrics;
mod review;
pub mod tls;

pub use alerts::{AlertConfig, AlertCounters, Alerts};
pub use idempotency::{Remembered, Window};
pub use metrics::Metrics;
pub use tls::{TlsConfig, TlsError, TlsListener};

use crate::decision_log::{self, DecisionLog, DecisionLogConfig, DecisionLogError, Durability, Exchange};
use crate::shadow::DECISIONS;
use crate::wire::{self, Format};
use crate::{HostError, Scored, Scorer};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use memchr::memmem::Finder;
use metrics::{DecisionLabel, KindLabel};
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the service runs (the scorer has its own [`crate::ScorerConfig`]).
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The bearer token admin endpoints require; `None` refuses every admin call.
    pub admin_token: Option<String>,
    /// Largest body of a score or batch request, in bytes (default 1 MiB).
    pub max_body: usize,
    /// How long a score or batch request's body may take to arrive once its headers have
    /// (default 10 s); a slower or stalled client gets 408 and its connection is freed.
    pub body_timeout: Duration,
    /// Largest snapshot a push may carry, in bytes (default 1 GiB).
    pub max_snapshot: usize,
    /// How long a transaction id's first answer is replayed to retries (default 10 min; zero
    /// turns idempotency off).
    pub idempotency_window: Duration,
    /// Most transaction ids remembered at once (default 1,000,000).
    pub idempotency_capacity: usize,
    /// Webhook alerts for review and decline decisions (none by default).
    pub alerts: AlertConfig,
    /// Where and how every decision is logged (none by default: no log).
    pub decision_log: Option<DecisionLogConfig>,
    /// The Kafka topic `POST /v1/labels` publishes analysts' verdicts to (none by default).
    pub labels: Option<decision_log::KafkaTopic>,
    /// Origins whose pages may call the service from a browser (CORS), e.g. the demo page's
    /// `http://127.0.0.1:8080`; none by default.
    pub allow_origins: Vec<String>,
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig {
            admin_token: None,
            max_body: 1 << 20,
            body_timeout: Duration::from_secs(10),
            max_snapshot: 1 << 30,
            idempotency_window: Duration::from_secs(600),
            idempotency_capacity: 1_000_000,
            alerts: AlertConfig::default(),
            decision_log: None,
            labels: None,
            allow_origins: Vec::new(),
        }
    }
}

/// What every handler shares.
pub struct AppState {
    scorer: Scorer,
    config: ServiceConfig,
    metrics: Metrics,
    window: Window,
    alerts: Alerts,
    log: Option<DecisionLog>,
    labels: Option<review::LabelsTopic>,
    verdicts: review::Verdicts,
    /// Made-up request ids are `<run>-<n>`: the start time in µs (hex), then a counter.
    run: u64,
    requests: AtomicU64,
    started: Instant,
}

impl AppState {
    /// The state of a service over `scorer`. With a decision log configured, opens it first
    /// (rolling what an earlier run left into Parquet) and hashes entity ids with the first edge
    /// key's id-hash key; fails only when its directory cannot be created or locked.
    pub fn new(scorer: Scorer, config: ServiceConfig) -> Result<AppState, DecisionLogError> {
        let window = Window::new(config.idempotency_window, config.idempotency_capacity);
        let mut metrics = Metrics::default();
        if let Some(monitor) = scorer.monitor() {
            metrics.register_monitor(monitor);
        }
        let log = match &config.decision_log {
            Some(c) => {
                let Some(key) = scorer.edge_keys().first() else {
                    let source = std::io::Error::other("no edge key to hash entity ids with");
                    return Err(DecisionLogError::Io { path: c.dir.clone(), source });
                };
                Some(DecisionLog::open(c.clone(), key.id_hash().clone(), metrics.decision_log.clone())?)
            }
            None => None,
        };
        let labels = match &config.labels {
            Some(topic) => Some(
                review::LabelsTopic::open(topic)
                    .map_err(|message| DecisionLogError::Kafka { topic: topic.topic.clone(), message })?,
            ),
            None => None,
        };
        let alerts = Alerts::start(config.alerts.clone(), metrics.alerts.clone());
        let run = u64::try_from(decision_log::now_us()).unwrap_or(0);
        Ok(AppState {
            scorer,
            config,
            metrics,
            window,
            alerts,
            log,
            labels,
            verdicts: review::Verdicts::default(),
            run,
            requests: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// The decision log, when one is configured.
    pub fn decision_log(&self) -> Option<&DecisionLog> {
        self.log.as_ref()
    }

    /// The scorer the service answers with (an embedding gateway may swap snapshots on it directly).
    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }
}

/// The service's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let origins: Vec<HeaderValue> =
        state.config.allow_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let mut analysts = Router::new()
        .route("/v1/reviews", get(review::reviews))
        .route("/v1/labels", post(review::label))
        .with_state(state.clone());
    if !origins.is_empty() {
        // Pages on these origins (the demo page's review queue) may call the analysts' routes.
        // `/v1/monitoring` answers every origin itself: it is read-only and needs no token.
        analysts = analysts.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    Router::new()
        .route("/v1/score", post(score))
        .route("/v1/score/batch", post(score_batch))
        .route("/v1/snapshot", put(push_snapshot))
        .route("/v1/rollback", post(rollback))
        .route("/v1/shadow", put(put_shadow).get(shadow_report).delete(drop_shadow))
        .route("/v1/shadow/promote", post(promote_shadow))
        .route("/v1/status", get(status))
        .route("/v1/monitoring", get(monitoring))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .merge(analysts)
}

/// Serves `router(state)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// Serves `router(state)` over TLS on `listener` until `shutdown` completes. Shutdown is the same
/// as [`serve`]'s: no new connections, and requests in flight finish.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: &TlsConfig,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(TlsListener::new(listener, tls), router(state)).with_graceful_shutdown(shutdown).await
}

/// A service running on its own runtime thread (for tests and embedding); stops when dropped.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its shared state.
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Starts the service on `addr` (port 0 picks a free one) in a thread with a tokio runtime of
/// `threads` workers.
pub fn spawn(
    scorer: Scorer,
    config: ServiceConfig,
    addr: SocketAddr,
    threads: usize,
) -> std::io::Result<Running> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState::new(scorer, config).map_err(std::io::Error::other)?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = state.clone();
    let thread = std::thread::Builder::new().name("tollgate-serve".into()).spawn(move || {
        runtime.block_on(serve(listener, served, async move {
            let _ = stopped.await;
        }))
    })?;
    Ok(Running { addr, state, stop: Some(stop), thread: Some(thread) })
}

impl Running {
    /// Stops the service and waits for it to finish.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the service thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

const JSON: &str = "application/json";
const MSGPACK: &str = "application/msgpack";

/// A JSON answer with a status.
fn json_answer(status: StatusCode, value: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, JSON)], value.to_string()).into_response()
}

/// A 4xx/5xx answer naming what was wrong.
fn problem(state: &AppState, status: StatusCode, kind: &'static str, message: impl Into<String>) -> Response {
    state.metrics.error(kind);
    json_answer(status, json!({ "ok": false, "error": message.into(), "error_kind": kind }))
}

/// Reads the body up to `limit` bytes.
async fn body(
    state: &AppState,
    request: Request,
    limit: usize,
    timeout: Option<Duration>,
) -> Result<(HeaderMap, axum::body::Bytes), Box<Response>> {
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limit);
    let read = match timeout {
        Some(t) => match tokio::time::timeout(t, read).await {
            Ok(read) => read,
            Err(_) => {
                return Err(Box::new(problem(
                    state,
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!("body: not received within {t:?} (a slow or stalled client)"),
                )));
            }
        },
        None => read.await,
    };
    match read {
        Ok(bytes) => Ok((parts.headers, bytes)),
        Err(_) => Err(Box::new(problem(
            state,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body: larger than the limit of {limit} bytes (or the upload broke off)"),
        ))),
    }
}

/// The request's format from `Content-Type`, checked against the body's first byte.
fn format_of(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Format, Box<Response>> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let format = match mime.as_str() {
        "application/json" | "text/json" => Format::Json,
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => Format::MsgPack,
        _ => {
            return Err(Box::new(problem(
                state,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("content-type: {ct:?} is neither application/json nor application/msgpack"),
            )));
        }
    };
    if !body.is_empty() && Format::sniff(body) != format {
        return Err(Box::new(problem(
            state,
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("body: does not look like {} although content-type says so", format.name()),
        )));
    }
    Ok(format)
}

/// `true` for a successful response (`ok` first and true) in either format.
fn is_ok(body: &[u8], format: Format) -> bool {
    match format {
        Format::Json => body.starts_with(br#"{"ok":true"#),
        Format::MsgPack => body.get(1..5) == Some(b"\xa2ok\xc3"),
    }
}

/// How many responses in a body (one, or an array of them) decided allow, review and decline
/// (in [`DECISIONS`] order): one pass of memchr's substring search for the `decision` key, no
/// parsing. It is on every request's path, so it must cost little (a per-byte comparison of three
/// needles had cost a third of a JSON batch's CPU).
fn decisions_in(body: &[u8], format: Format) -> [u64; 3] {
    // Built once: building a finder costs about as much as searching one response.
    static JSON_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""decision":""#));
    static MSGPACK_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\xa8decision"));
    let key = match format {
        Format::Json => &*JSON_KEY,
        Format::MsgPack => &*MSGPACK_KEY,
    };
    let mut counts = [0; 3];
    for at in key.find_iter(body) {
        let value = &body[at + key.needle().len()..];
        // MessagePack: a fixstr header byte before the text.
        let value = if format == Format::MsgPack { value.get(1..).unwrap_or_default() } else { value };
        if let Some(i) = DECISIONS[..3].iter().position(|d| value.starts_with(d.as_bytes())) {
            counts[i] += 1;
        }
    }
    counts
}

/// Adds a body's decisions to the metrics.
fn count_decisions(state: &AppState, counts: [u64; 3], fallback: bool) {
    for (decision, n) in DECISIONS.iter().zip(counts) {
        if n > 0 {
            let label = DecisionLabel { decision, fallback: if fallback { "true" } else { "false" } };
            state.metrics.decisions.get_or_create(&label).inc_by(n);
        }
    }
}

/// Queues a webhook alert for each `review` or `decline` in a body (one response or an array);
/// `counts` are the body's [`decisions_in`].
fn alert(state: &AppState, body: &[u8], counts: [u64; 3]) {
    if !state.alerts.enabled() || counts[1] + counts[2] == 0 {
        return;
    }
    let flagged = |v: &serde_json::Value| matches!(v["decision"].as_str(), Some("review" | "decline"));
    match wire::parse(body) {
        Ok(serde_json::Value::Array(items)) => {
            items.iter().filter(|v| flagged(v)).for_each(|v| state.alerts.offer(v.to_string().into_bytes()))
        }
        Ok(v) if flagged(&v) => state.alerts.offer(v.to_string().into_bytes()),
        _ => {}
    }
}

/// The HTTP answer to a scored body: 200 for a decision, 4xx/5xx for an error response.
fn answer(state: &AppState, scored: &Scored, format: Format, batch: bool) -> Response {
    let status = if batch || is_ok(&scored.body, format) || scored.fallback.is_some() {
        StatusCode::OK
    } else {
        let kind = wire::parse(&scored.body)
            .ok()
            .and_then(|v| wire::get(&v, "error_kind").and_then(|k| k.as_str().map(str::to_string)));
        match kind.as_deref() {
            Some("no_snapshot") => {
                state.metrics.error("no_snapshot");
                StatusCode::SERVICE_UNAVAILABLE
            }
            Some("no_model") => {
                state.metrics.error("no_model");
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => {
                state.metrics.error("bad_request");
                StatusCode::BAD_REQUEST
            }
        }
    };
    if let Some(why) = &scored.fallback {
        state.metrics.error(why.kind());
    }
    let mut response = (status, scored.body.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if format == Format::Json { JSON } else { MSGPACK }),
    );
    if let Some(id) = scored.snapshot.as_ref().and_then(|s| HeaderValue::from_str(&s.snapshot_id).ok()) {
        headers.insert("x-tollgate-snapshot", id);
    }
    if let Some(why) = &scored.fallback {
        headers.insert("x-tollgate-fallback", HeaderValue::from_static(why.kind()));
    }
    response
}

/// The request id the log records (none without a log): the caller's `x-request-id` when it is
/// printable ASCII of at most 128 bytes, else one made up here.
fn request_id(state: &AppState, headers: &HeaderMap) -> String {
    if state.log.is_none() {
        return String::new();
    }
    let given = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    match given.filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic())) {
        Some(id) => id.to_string(),
        None => format!("{:x}-{}", state.run, state.requests.fetch_add(1, Ordering::Relaxed)),
    }
}

/// The rows of a decision answer, for the log (none without a log).
fn log_rows(
    state: &AppState,
    request_id: &str,
    request: &[u8],
    scored: &Scored,
    batch: bool,
    t: Instant,
) -> Vec<decision_log::DecisionRecord> {
    let Some(log) = &state.log else { return Vec::new() };
    let exchange = Exchange {
        request_id,
        request,
        response: &scored.body,
        batch,
        decided_at_us: decision_log::now_us(),
        latency_us: u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
        shadow: scored.shadow.as_ref().map(|s| s.body.as_slice()),
    };
    decision_log::records(&exchange, log.id_hash())
}

/// Appends the rows to the log and, with `--durable`, waits for their fsync and says in
/// `x-tollgate-durable` whether it happened. Logging never changes the status or the body.
async fn log_decisions(
    state: &AppState,
    rows: Vec<decision_log::DecisionRecord>,
    request_id: &str,
    response: &mut Response,
) {
    let Some(log) = &state.log else { return };
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", id);
    }
    if rows.is_empty() {
        return;
    }
    let durability = log.append(rows).wait().await;
    if log.config().durable {
        let durable = if durability == Durability::Synced { "true" } else { "false" };
        response.headers_mut().insert("x-tollgate-durable", HeaderValue::from_static(durable));
    }
}

async fn score(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let t = Instant::now();
    let (headers, bytes) =
        match body(&state, request, state.config.max_body, Some(state.config.body_timeout)).await {
            Ok(b) => b,
            Err(r) => return *r,
        };
    let format = match format_of(&state, &headers, &bytes) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    // Idempotency: the transaction id, when the request has one.
    let id = if state.window.enabled() { wire::transaction_id_text(&bytes) } else { None };
    if let Some(first) = id.as_deref().and_then(|id| state.window.get(id)) {
        state.metrics.replays.inc();
        let body = if first.json == (format == Format::Json) {
            first.body
        } else {
            wire::parse(&first.body).map(|v| wire::encode(&v, format)).unwrap_or(first.body)
        };
        let ct = if format == Format::Json { JSON } else { MSGPACK };
        let mut response =
            (StatusCode::OK, [("content-type", ct), ("x-tollgate-replay", "true")], body).into_response();
        // The snapshot that answered the first time, as on any answer.
        if let Some(id) = first.snapshot.as_deref().and_then(|id| HeaderValue::from_str(id).ok()) {
            response.headers_mut().insert("x-tollgate-snapshot", id);
        }
        return response;
    }
    let scored = state.scorer.score(&bytes);
    let mut response = answer(&state, &scored, format, false);
    if response.status() == StatusCode::OK {
        let request_id = request_id(&state, &headers);
        let rows = log_rows(&state, &request_id, &bytes, &scored, false, t);
        let counts = decisions_in(&scored.body, format);
        count_decisions(&state, counts, scored.fallback.is_some());
        alert(&state, &scored.body, counts);
        if let Some(id) = id {
            let snapshot = scored.snapshot.as_ref().map(|s| s.snapshot_id.clone());
            state.window.put(id, Remembered { body: scored.body, json: format == Format::Json, snapshot });
        }
        log_decisions(&state, rows, &request_id, &mut response).await;
    }
    state.metrics.latency.observe(t.elapsed().as_secs_f64());
    response
}

async fn score_batch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let t = Instant::now();
    let (headers, bytes) =
        match body(&state, request, state.config.max_body, Some(state.config.body_timeout)).await {
            Ok(b) => b,
            Err(r) => return *r,
        };
    let format = match format_of(&state, &headers, &bytes) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let scored = state.scorer.score_batch(&bytes);
    // A batch that is not an array gets one error response (a map), not an array.
    let whole_batch_error = match format {
        Format::Json => {
            bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[')
                || scored.body.first() == Some(&b'{')
        }
        Format::MsgPack => scored.body.first().is_some_and(|b| b & 0xf0 == 0x80 || *b == 0xde || *b == 0xdf),
    };
    let mut response = answer(&state, &scored, format, !whole_batch_error);
    if response.status() == StatusCode::OK {
        let request_id = request_id(&state, &headers);
        let rows = log_rows(&state, &request_id, &bytes, &scored, true, t);
        let counts = decisions_in(&scored.body, format);
        count_decisions(&state, counts, scored.fallback.is_some());
        alert(&state, &scored.body, counts);
        log_decisions(&state, rows, &request_id, &mut response).await;
    }
    state.metrics.latency.observe(t.elapsed().as_secs_f64());
    response
}

/// Checks `Authorization: Bearer TOKEN` against the configured token.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = state.config.admin_token.as_deref() else {
        return Err(Box::new(problem(
            state,
            StatusCode::FORBIDDEN,
            "unauthorized",
            "admin: no admin token is configured on this host",
        )));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare every byte, so that the time taken does not tell how much of a guess was right.
    let same = given.is_some_and(|g| {
        g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if same {
        Ok(())
    } else {
        Err(Box::new(problem(
            state,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authorization: missing or wrong bearer token",
        )))
    }
}

fn snapshot_json(s: &crate::SnapshotInfo) -> serde_json::Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    json!({
        "snapshot_id": s.snapshot_id,
        "model_id": s.model_id,
        "as_of": s.as_of,
        "created_at": s.created_at,
        "age_seconds": now - s.created_at,
        "loaded_seconds_ago": s.loaded_at.elapsed().map(|d| d.as_secs()).unwrap_or(0),
        "size": s.size,
        "digest": s.digest,
    })
}

async fn push_snapshot(State(state): State<Arc<AppState>>, request: Request) -> Response {
    // A body that starts with the delta magic is a delta against the serving snapshot.
    let load = |scorer: &Scorer, bytes: Vec<u8>| {
        if scorer::snapshot::is_delta(&bytes) {
            scorer.load_snapshot_delta(bytes).map(|info| (info, "delta"))
        } else {
            scorer.load_snapshot(bytes).map(|info| (info, "full"))
        }
    };
    match load_pushed(&state, request, load, "swap_failed").await {
        Ok((info, kind)) => {
            state.metrics.swaps.inc();
            state.metrics.snapshot_updates.get_or_create(&KindLabel { kind }).inc();
            json_answer(StatusCode::OK, json!({ "ok": true, "kind": kind, "snapshot": snapshot_json(&info) }))
        }
        Err(r) => *r,
    }
}

/// An admin upload of snapshot bytes: authorised, size-limited, then handed to `load` off the
/// async threads. A refused snapshot (or delta) answers 422, a delta against another snapshot than
/// the serving one 409 naming both digests; any other failure 500 with `failure` as kind.
async fn load_pushed<T: Send + 'static>(
    state: &Arc<AppState>,
    request: Request,
    load: fn(&Scorer, Vec<u8>) -> Result<T, HostError>,
    failure: &'static str,
) -> Result<T, Box<Response>> {
    authorize(state, request.headers())?;
    // Admins only (checked above): no body timeout, a large snapshot may take a while.
    let (_, bytes) = body(state, request, state.config.max_snapshot, None).await?;
    let scorer = state.scorer.clone();
    let answer = |status, kind, message: String| Box::new(problem(state, status, kind, message));
    match tokio::task::spawn_blocking(move || load(&scorer, bytes.to_vec())).await {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(e @ (HostError::SnapshotRefused(_) | HostError::DeltaRefused(_)))) => {
            let kind =
                if matches!(e, HostError::DeltaRefused(_)) { "delta_refused" } else { "snapshot_refused" };
            Err(answer(StatusCode::UNPROCESSABLE_ENTITY, kind, e.to_string()))
        }
        Ok(Err(HostError::DeltaBase { expected, found })) => {
            state.metrics.error("delta_base_mismatch");
            let message =
                HostError::DeltaBase { expected: expected.clone(), found: found.clone() }.to_string();
            Err(Box::new(json_answer(
                StatusCode::CONFLICT,
                json!({
                    "ok": false,
                    "error": message,
                    "error_kind": "delta_base_mismatch",
                    "delta_base": format!("blake3:{expected}"),
                    "serving": found,
                }),
            )))
        }
        Ok(Err(e)) => Err(answer(StatusCode::INTERNAL_SERVER_ERROR, failure, e.to_string())),
        Err(e) => Err(answer(StatusCode::INTERNAL_SERVER_ERROR, failure, format!("snapshot load: {e}"))),
    }
}

async fn rollback(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return *r;
    }
    let scorer = state.scorer.clone();
    match tokio::task::spawn_blocking(move || scorer.rollback()).await {
        Ok(Ok(info)) => {
            state.metrics.swaps.inc();
            json_answer(StatusCode::OK, json!({ "ok": true, "snapshot": info.as_deref().map(snapshot_json) }))
        }
        Ok(Err(e @ HostError::NoPrevious)) => {
            problem(&state, StatusCode::CONFLICT, "no_previous", e.to_string())
        }
        Ok(Err(e)) => problem(&state, StatusCode::INTERNAL_SERVER_ERROR, "swap_failed", e.to_string()),
        Err(e) => problem(&state, StatusCode::INTERNAL_SERVER_ERROR, "swap_failed", format!("rollback: {e}")),
    }
}

async fn put_shadow(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match load_pushed(&state, request, Scorer::load_shadow, "shadow_failed").await {
        Ok(info) => json_answer(StatusCode::OK, json!({ "ok": true, "shadow": snapshot_json(&info) })),
        Err(r) => *r,
    }
}

async fn shadow_report(State(state): State<Arc<AppState>>) -> Response {
    match state.scorer.shadow_report() {
        Some(report) => json_answer(StatusCode::OK, report.to_json()),
        None => problem(&state, StatusCode::NOT_FOUND, "no_shadow", "no shadow snapshot is loaded"),
    }
}

async fn promote_shadow(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return *r;
    }
    let scorer = state.scorer.clone();
    match tokio::task::spawn_blocking(move || scorer.promote_shadow()).await {
        Ok(Ok(report)) => {
            state.metrics.swaps.inc();
            json_answer(StatusCode::OK, json!({ "ok": true, "promoted": report.to_json() }))
        }
        Ok(Err(e @ HostError::NoShadow)) => problem(&state, StatusCode::CONFLICT, "no_shadow", e.to_string()),
        Ok(Err(e)) => problem(&state, StatusCode::INTERNAL_SERVER_ERROR, "swap_failed", e.to_string()),
        Err(e) => problem(&state, StatusCode::INTERNAL_SERVER_ERROR, "swap_failed", format!("promote: {e}")),
    }
}

async fn drop_shadow(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return *r;
    }
    match state.scorer.drop_shadow() {
        Some(report) => json_answer(StatusCode::OK, json!({ "ok": true, "dropped": report.to_json() })),
        None => problem(&state, StatusCode::NOT_FOUND, "no_shadow", "no shadow snapshot is loaded"),
    }
}

async fn status(State(state): State<Arc<AppState>>) -> Response {
    let s = state.scorer.status();
    let c = &s.counts;
    json_answer(
        StatusCode::OK,
        json!({
            "version": crate::VERSION,
            "uptime_seconds": state.started.elapsed().as_secs(),
            "serving_version": s.version,
            "snapshot": s.snapshot.as_deref().map(snapshot_json),
            "previous_snapshot": s.previous_snapshot.as_deref().map(snapshot_json),
            "shadow_snapshot": s.shadow_snapshot.as_deref().map(snapshot_json),
            "module": { "hash": s.module.hash, "source": format!("{:?}", s.module.source).to_lowercase() },
            "fallback": state.scorer.config().fallback.decision(),
            "idle_instances": s.idle_instances,
            "counts": {
                "scored": c.scored, "fallbacks": c.fallbacks, "discarded_instances": c.discarded,
                "swaps": c.swaps, "refused": c.refused, "idempotency_entries": state.window.len(),
            },
            "decision_log": state.log.as_ref().map(|log| {
                let n = log.counters();
                json!({
                    "dir": log.config().dir.display().to_string(),
                    "durable": log.config().durable,
                    "rows": n.rows.get(), "dropped": n.dropped.get(), "errors": n.error_total(),
                    "files": n.files.get(), "not_durable": n.not_durable.get(),
                })
            }),
        }),
    )
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.scorer.snapshot() {
        Some(s) if s.model_id.is_some() => {
            (StatusCode::OK, format!("ready: {}\n", s.snapshot_id)).into_response()
        }
        Some(s) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: snapshot {} has no model\n", s.snapshot_id))
                .into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready: no snapshot loaded\n").into_response(),
    }
}

/// `GET /v1/monitoring`: the drift monitor's report as JSON (`docs/host.md`), readable from a
/// page on any origin (it holds no secret: bins, shares and counts).
async fn monitoring(State(state): State<Arc<AppState>>) -> Response {
    let Some(monitor) = state.scorer.monitor() else {
        let mut r =
            problem(&state, StatusCode::NOT_FOUND, "no_monitor", "drift monitoring is off on this host");
        r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        return r;
    };
    let report = monitor.report();
    state.metrics.drift.set(&report);
    let body = serde_json::to_vec(&report).unwrap_or_default();
    let headers = [
        (header::CONTENT_TYPE, JSON),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (StatusCode::OK, headers, body).into_response()
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    if let Some(monitor) = state.scorer.monitor() {
        state.metrics.drift.set(&monitor.report());
    }
    if let Some(s) = state.scorer.snapshot() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        state.metrics.snapshot_age.set(now - s.created_at as f64);
    }
    let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (StatusCode::OK, [(header::CONTENT_TYPE, ct)], state.metrics.encode()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_counted_in_one_pass_in_either_format() {
        let json = br#"[{"ok":true,"decision":"review","rules":[]},{"ok":true,"decision":"allow"},{"ok":false,"error":"x"},{"ok":true,"decision":"decline"},{"ok":true,"decision":"allow"}]"#;
        assert_eq!(decisions_in(json, Format::Json), [2, 1, 1]);
        let one = serde_json::json!({"ok": true, "transaction_id": "t", "decision": "decline"});
        let msgpack = rmp_serde::to_vec_named(&one).unwrap_or_default();
        assert_eq!(decisions_in(&msgpack, Format::MsgPack), [0, 0, 1]);
        let batch = rmp_serde::to_vec_named(&vec![one.clone(), serde_json::json!({"decision": "review"})])
            .unwrap_or_default();
        assert_eq!(decisions_in(&batch, Format::MsgPack), [0, 1, 1]);
        assert_eq!(decisions_in(br#"{"ok":false,"error":"decision"}"#, Format::Json), [0, 0, 0]);
    }
}
