//! `tollgate serve`: the HTTP scoring service (`host::service`) over `scorer.wasm` in wasmtime.

use anyhow::{Context, bail};
use host::decision_log::DecisionLogConfig;
use host::monitor::MonitorConfig;
use host::service::{AppState, ServiceConfig, TlsConfig};
use host::{Fallback, Scorer, ScorerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `tollgate serve`.
#[derive(clap::Args)]
pub struct Args {
    /// The scorer module (`cargo build -p scorer-wasm --target wasm32-unknown-unknown --profile
    /// wasm-fast --features simd128` writes target/wasm32-unknown-unknown/wasm-fast/scorer_wasm.wasm,
    /// the build for wasmtime; `--profile wasm` gives the smaller, slower one); else
    /// TOLLGATE_SCORER_WASM.
    #[arg(long)]
    module: Option<PathBuf>,
    /// The edge key file(s) snapshots must be signed for (repeat for key rotation).
    #[arg(long = "edge-key", required = true)]
    edge_keys: Vec<PathBuf>,
    /// A snapshot to serve from the start (else the host waits for `PUT /v1/snapshot`).
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve HTTPS (rustls; TLS 1.2 and 1.3) with this PEM certificate chain, leaf first. Needs
    /// --tls-key. Without both the service speaks plain HTTP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1). Needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// File holding the bearer token of the admin endpoints (or set TOLLGATE_ADMIN_TOKEN).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// What to decide when scoring cannot finish (a guest timed out or trapped): open (allow) or
    /// closed (decline).
    #[arg(long, default_value = "open")]
    fallback: Fallback,
    /// Time budget of one scoring call, e.g. 50ms.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    budget: Duration,
    /// Linear memory each instance may grow to, in MiB.
    #[arg(long, default_value_t = 1024)]
    max_memory_mib: usize,
    /// Idle instances kept ready.
    #[arg(long, default_value_t = 8)]
    pool: usize,
    /// Largest score or batch request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// How long a score or batch body may take to arrive after its headers; a slower or stalled
    /// client gets 408 and its connection is freed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// How long a transaction id's first answer is replayed to retries (0s turns it off).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    idempotency_window: Duration,
    /// Directory where compiled modules are cached.
    #[arg(long, default_value = ".tollgate-cache")]
    cache_dir: PathBuf,
    /// Webhook URL (http://) that review and decline decisions are POSTed to, as JSON; repeat
    /// for several. Sent from a bounded queue with retries; scoring never waits on it.
    #[arg(long = "webhook")]
    webhooks: Vec<String>,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Append every decision (hashed entity ids, amount, score, decision, rules, reasons,
    /// snapshot and model ids, latency) to Parquet files in DIR: decisions-<start>-<seq>.parquet,
    /// readable by any Parquet tool (duckdb: SELECT * FROM 'DIR/*.parquet'). Rows go to a
    /// write-ahead segment first; segments a crash left are rolled into Parquet at start.
    /// Logging never fails scoring: a full disk drops rows, counted in
    /// tollgate_decision_log_dropped_total and _errors_total.
    #[arg(long, value_name = "DIR")]
    decision_log: Option<PathBuf>,
    /// Answer only once the decision's log row is fsync'd (one fsync covers every row waiting),
    /// so that an acknowledged decision survives kill -9 and power loss. When it cannot be made
    /// durable within 1 s the answer still goes out, with x-tollgate-durable: false. Without
    /// --durable, kill -9 loses only rows still queued (milliseconds), power loss at most the
    /// last second.
    #[arg(long, requires = "decision_log")]
    durable: bool,
    /// Roll the decision log into a new Parquet file after this many rows.
    #[arg(long, default_value_t = 100_000, value_name = "N", requires = "decision_log")]
    log_rotate_rows: usize,
    /// Roll the decision log into a new Parquet file after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "S", requires = "decision_log")]
    log_rotate_seconds: u64,
    /// Keep the decision log directory a Delta Lake table too (a _delta_log/ beside the
    /// Parquet files, each file committed once written): the alerts table that duckdb
    /// (delta_scan('DIR')), polars (pl.read_delta) or Spark read with versions and time travel.
    /// An existing log's files are committed at start.
    #[arg(long, requires = "decision_log")]
    delta_lake: bool,
    /// Also publish every logged decision to this Kafka topic, as the JSON of its log row,
    /// keyed by transaction id (case management, alert pipelines). Never holds up an answer:
    /// failures are counted in tollgate_decision_log_publish_failed_total.
    #[arg(long, value_name = "TOPIC", requires_all = ["decision_log", "kafka_brokers"])]
    decision_topic: Option<String>,
    /// Publish analysts' verdicts (POST /v1/labels, the review queue of the demo page) to this
    /// Kafka topic, as the label messages `tollgate exporter run --labels` folds into the next
    /// snapshot. GET /v1/reviews lists the decision log's latest review decisions.
    #[arg(long, value_name = "TOPIC", requires = "kafka_brokers")]
    labels_topic: Option<String>,
    /// The Kafka brokers of --decision-topic and --labels-topic (host:port[,host:port...]).
    #[arg(long, value_name = "BROKERS")]
    kafka_brokers: Option<String>,
    /// Let pages on this origin call the service from a browser (CORS), e.g. the demo page
    /// served by `tollgate www` at http://127.0.0.1:8080. Repeat for several.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Drift monitoring: compare each feature's and the score's distribution over the last N
    /// scored requests with the snapshot's reference (`snapshot build --reference-days`), as PSI
    /// in /metrics (tollgate_feature_psi, tollgate_score_psi, tollgate_drift_alarm) and
    /// GET /v1/monitoring. A window of requests, not of time: PSI's noise floor depends on the
    /// sample count, so a fixed count keeps it fixed under the threshold whatever the traffic.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    drift_window: usize,
    /// A feature's drift alarm goes on above this PSI (and is logged once when it starts and
    /// once when it clears).
    #[arg(long, default_value_t = 0.2, value_name = "PSI")]
    drift_threshold: f64,
    /// No alarm before the window holds this many scored requests.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    drift_min_samples: usize,
    /// Features whose PSI is shown but never alarms (repeatable; default the clock features
    /// TX_DURING_WEEKEND and TX_DURING_NIGHT, whose share follows the calendar within a window).
    #[arg(long = "drift-no-alarm", value_name = "FEATURE")]
    drift_no_alarm: Option<Vec<String>>,
    /// Turn drift monitoring off.
    #[arg(long)]
    no_drift_monitor: bool,
}

/// The drift monitor's configuration from the flags (none with --no-drift-monitor).
fn monitor_config(args: &Args) -> anyhow::Result<Option<MonitorConfig>> {
    if args.no_drift_monitor {
        return Ok(None);
    }
    if args.drift_window == 0 {
        bail!("--drift-window 0: the window must hold at least one request (or pass --no-drift-monitor)");
    }
    if !(args.drift_threshold.is_finite() && args.drift_threshold > 0.0) {
        bail!(
            "--drift-threshold {}: must be a finite PSI > 0 (0.1 is a small shift, 0.2 a large one)",
            args.drift_threshold
        );
    }
    let defaults = MonitorConfig::default();
    Ok(Some(MonitorConfig {
        window: args.drift_window,
        threshold: args.drift_threshold,
        min_samples: args.drift_min_samples,
        no_alarm: args.drift_no_alarm.clone().unwrap_or(defaults.no_alarm.clone()),
        ..defaults
    }))
}

/// Runs `tollgate serve` until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<()> {
    // First, so that a bad certificate is reported before the module is compiled.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig::from_pem_files(cert, key).context("TLS")?),
        _ => None,
    };
    let Some(module) =
        args.module.clone().or_else(|| std::env::var_os("TOLLGATE_SCORER_WASM").map(PathBuf::from))
    else {
        bail!(
            "no scorer module: pass --module or set TOLLGATE_SCORER_WASM (build it with \
             cargo build -p scorer-wasm --target wasm32-unknown-unknown --profile wasm-fast \
             --features simd128)"
        );
    };
    let wasm = std::fs::read(&module).with_context(|| format!("reading the module {}", module.display()))?;
    let mut keys = String::new();
    for path in &args.edge_keys {
        keys.push_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
    }
    let admin_token = match (&args.admin_token_file, std::env::var("TOLLGATE_ADMIN_TOKEN").ok()) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, token) => token.map(|t| t.trim().to_string()),
    };
    if admin_token.as_deref() == Some("") {
        bail!("the admin token is empty");
    }
    let config = ScorerConfig {
        budget: args.budget,
        max_memory: args.max_memory_mib << 20,
        pool_size: args.pool,
        fallback: args.fallback,
        cache_dir: Some(args.cache_dir.clone()),
        monitor: monitor_config(&args)?,
        ..Default::default()
    };
    let scorer = Scorer::new(config, &wasm, &keys).context("starting the scorer")?;
    if let Some(path) = &args.snapshot {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let info = scorer.load_snapshot(bytes).with_context(|| format!("loading {}", path.display()))?;
        eprintln!(
            "serving snapshot {} (model {})",
            info.snapshot_id,
            info.model_id.as_deref().unwrap_or("none")
        );
    }
    if admin_token.is_none() {
        eprintln!("no admin token: PUT /v1/snapshot and POST /v1/rollback are refused");
    }
    if args.log_rotate_rows == 0 || args.log_rotate_seconds == 0 {
        bail!("--log-rotate-rows and --log-rotate-seconds must be at least 1");
    }
    let decision_log = args.decision_log.as_ref().map(|dir| DecisionLogConfig {
        durable: args.durable,
        rotate_rows: args.log_rotate_rows,
        rotate_interval: Duration::from_secs(args.log_rotate_seconds),
        delta_lake: args.delta_lake,
        kafka: args.decision_topic.as_ref().zip(args.kafka_brokers.as_ref()).map(|(topic, brokers)| {
            host::decision_log::KafkaTopic { brokers: brokers.clone(), topic: topic.clone() }
        }),
        ..DecisionLogConfig::new(dir)
    });
    let service = ServiceConfig {
        admin_token,
        max_body: args.max_body,
        body_timeout: args.body_timeout,
        idempotency_window: args.idempotency_window,
        alerts: host::service::AlertConfig { webhooks: args.webhooks.clone(), ..Default::default() },
        decision_log,
        labels: args.labels_topic.as_ref().zip(args.kafka_brokers.as_ref()).map(|(topic, brokers)| {
            host::decision_log::KafkaTopic { brokers: brokers.clone(), topic: topic.clone() }
        }),
        allow_origins: args.allow_origins.clone(),
        ..Default::default()
    };
    // The decision log is recovered before the service listens.
    let state = AppState::new(scorer, service).context("opening the decision log")?;
    if let Some(log) = state.decision_log() {
        let r = log.recovery();
        if r.segments > 0 || r.failed > 0 {
            eprintln!(
                "decision log: {} rows recovered from {} segments an earlier run left ({} torn bytes \
                 skipped, {} segments not yet rolled)",
                r.rows, r.segments, r.torn_bytes, r.failed
            );
        }
        let mode = if args.durable { "durable: answers wait for the fsync" } else { "fsync'd every second" };
        let table = if args.delta_lake { ", a Delta Lake table" } else { "" };
        eprintln!("decision log: {} ({mode}{table})", log.config().dir.display());
        if let Some(topic) = &log.config().kafka {
            eprintln!(
                "decision log: every decision also published to Kafka topic {} at {}",
                topic.topic, topic.brokers
            );
        }
    }
    let state = Arc::new(state);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime.enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        // Scripts read this line to learn the port when --listen ends in :0.
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{}", listener.local_addr()?);
        // When serving ends the state is dropped, and the decision log with it: what it still
        // holds is written and rolled into Parquet before the process exits.
        match &tls {
            Some(tls) => host::service::serve_tls(listener, tls, state, shutdown()).await,
            None => host::service::serve(listener, state, shutdown()).await,
        }
        .context("serving")
    })
}

/// Completes on Ctrl-C or SIGTERM (how service managers stop a process), so that both shut down
/// cleanly: requests in flight finish and the decision log is rolled into Parquet.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
