//! Hot swap under load: the real service over real HTTP, 8 clients scoring without a pause while
//! a new signed snapshot is pushed every second for a minute. No request may fail, every answer
//! names the snapshot that scored it, and no client sees an older snapshot after a newer one.

use anyhow::{Context, Result, ensure};
use host::service::{ServiceConfig, spawn};
use host::{Scorer, ScorerConfig};
use scorer::score::Scorer as NativeScorer;
use scorer::snapshot::Snapshot;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tollgate_tests::parity::{fixture, logistic, signer};
use tollgate_tests::scorer_wasm;

const TOKEN: &str = "hot-swap-admin-token";
const CLIENTS: usize = 8;
const SWAPS: usize = 60;
const PERIOD: Duration = Duration::from_secs(1);
/// Every tenth call of a client is a batch of this many requests.
const BATCH: usize = 32;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    singles: u64,
    batches: u64,
    failed: u64,
    /// The first few failures, for the message.
    failures: Vec<String>,
    /// Indices (push order) of the snapshots that answered this client.
    served: BTreeSet<usize>,
}

/// Checks one answer and returns the push index of the snapshot that scored it: status 200, no
/// fallback, every item a decision (`ok`), one snapshot named by the body (every item of a batch) and by
/// `x-tollgate-snapshot`.
fn check(
    order: &HashMap<String, usize>,
    status: u16,
    header: Option<&str>,
    fallback: bool,
    body: &[u8],
    batch: bool,
) -> Result<usize, String> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if status != 200 || fallback {
        return Err(format!("status {status}, fallback {fallback}: {}", text()));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("{e}: {}", text()))?;
    let items = match (&value, batch) {
        (Value::Array(items), true) if items.len() == BATCH => items.clone(),
        (Value::Object(_), false) => vec![value],
        _ => return Err(format!("not the answer's shape: {}", text())),
    };
    let mut named = BTreeSet::new();
    for item in &items {
        if item["ok"] != true || item.get("fallback").is_some() {
            return Err(format!("not a decision: {item}"));
        }
        named.insert(item["snapshot_id"].as_str().ok_or_else(|| format!("no snapshot_id: {item}"))?);
    }
    let [id] = named.into_iter().collect::<Vec<_>>()[..] else {
        return Err(format!("one answer names several snapshots: {}", text()));
    };
    if header != Some(id) {
        return Err(format!("x-tollgate-snapshot {header:?} but the body says {id}"));
    }
    order.get(id).copied().ok_or_else(|| format!("{id} was never pushed"))
}

/// What every client and the pusher share.
#[derive(Clone, Copy)]
struct Shared<'a> {
    base: &'a str,
    /// Snapshot id to push index (0: the one serving at the start).
    order: &'a HashMap<String, usize>,
    ids: &'a [String],
    requests: &'a [&'a str],
    batches: &'a [String],
    /// The index of the last push answered 200.
    pushed: &'a AtomicUsize,
    stop: &'a AtomicBool,
}

impl Seen {
    fn fail(&mut self, client: usize, why: String) {
        self.failed += 1;
        if self.failures.len() < 5 {
            self.failures.push(format!("client {client}: {why}"));
        }
    }
}

/// One client: a request at a time on its own keep-alive connection until `stop`, every tenth a
/// batch; each answer checked, and its snapshot against the ones seen and pushed before.
fn client(c: usize, shared: Shared) -> Seen {
    let agent = agent();
    let mut seen = Seen::default();
    let mut last = 0;
    let mut k = c * 97;
    while !shared.stop.load(Ordering::SeqCst) {
        k += 1;
        let batch = k.is_multiple_of(10);
        let (url, body) = if batch {
            (format!("{}/v1/score/batch", shared.base), shared.batches[k % shared.batches.len()].as_bytes())
        } else {
            (format!("{}/v1/score", shared.base), shared.requests[k % shared.requests.len()].as_bytes())
        };
        let floor = shared.pushed.load(Ordering::SeqCst);
        let mut response = match agent.post(&url).header("content-type", "application/json").send(body) {
            Ok(r) => r,
            Err(e) => {
                seen.fail(c, format!("{url}: {e}"));
                continue;
            }
        };
        let status = response.status().as_u16();
        let header =
            response.headers().get("x-tollgate-snapshot").and_then(|v| v.to_str().ok()).map(str::to_string);
        let fallback = response.headers().contains_key("x-tollgate-fallback");
        let body = match response.body_mut().read_to_vec() {
            Ok(b) => b,
            Err(e) => {
                seen.fail(c, format!("{url}: reading the body: {e}"));
                continue;
            }
        };
        if batch {
            seen.batches += 1;
        } else {
            seen.singles += 1;
        }
        let ids = shared.ids;
        match check(shared.order, status, header.as_deref(), fallback, &body, batch) {
            Ok(i) if i < last => seen.fail(c, format!("{} after {}: back in time", ids[i], ids[last])),
            Ok(i) if i < floor => {
                seen.fail(c, format!("{} answered after {} had been pushed", ids[i], ids[floor]))
            }
            Ok(i) => {
                last = i;
                seen.served.insert(i);
            }
            Err(why) => seen.fail(c, why),
        }
    }
    seen
}

/// Pushes snapshot i (from 1) at i - 0.5 seconds and records each push answered 200 in
/// `shared.pushed`. Fails at the first push not answered 200 with its snapshot id.
fn push_every_second(shared: &Shared, pushes: &[Vec<u8>]) -> Result<usize> {
    let (admin, t) = (agent(), Instant::now());
    for (i, bytes) in pushes.iter().enumerate() {
        let at = PERIOD * i as u32 + Duration::from_millis(500);
        std::thread::sleep(at.saturating_sub(t.elapsed()));
        let id = &shared.ids[i + 1];
        let mut r = admin
            .put(format!("{}/v1/snapshot", shared.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .send(&bytes[..])
            .with_context(|| format!("push {id}"))?;
        let (status, text) = (r.status().as_u16(), r.body_mut().read_to_string()?);
        ensure!(status == 200 && text.contains(id.as_str()), "push {id}: {status} {text}");
        shared.pushed.store(i + 1, Ordering::SeqCst);
    }
    Ok(pushes.len())
}

#[test]
fn snapshots_pushed_every_second_under_load_never_fail_or_go_back() -> Result<()> {
    let started = Instant::now();
    let f = fixture(&logistic(), "lr-parity-v1")?;
    // Snapshot 0 serves at the start; 1..=SWAPS are pushed, each under its own id.
    let first = Snapshot::load(&f.snapshot, &[signer().edge_key()])?.meta().snapshot_id.clone();
    let ids: Vec<String> =
        std::iter::once(first).chain((1..=SWAPS).map(|i| format!("tg-hot-swap-{i:02}"))).collect();
    let pushes: Vec<Vec<u8>> = ids[1..].iter().map(|id| f.resigned(id)).collect::<Result<_>>()?;
    let order: HashMap<String, usize> = ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
    // Requests the model scores (200), in JSON; a batch is BATCH of them in an array.
    let mut native = NativeScorer::new(Snapshot::load(&f.snapshot, &[signer().edge_key()])?);
    let mut out = Vec::new();
    let requests: Vec<&str> = f
        .json_requests()
        .into_iter()
        .filter(|r| {
            out.clear();
            native.score_bytes(r.as_bytes(), &mut out);
            out.starts_with(br#"{"ok":true"#)
        })
        .take(2_000)
        .collect();
    ensure!(requests.len() >= 1_000, "only {} scorable JSON requests", requests.len());
    let batches: Vec<String> = requests.chunks_exact(BATCH).map(|c| format!("[{}]", c.join(","))).collect();

    let wasm = std::fs::read(scorer_wasm()?)?;
    // A generous budget: the test is about swaps, not deadlines, and on a loaded machine a thread
    // can be kept off the CPU past the default 50 ms (then the call rightly falls back).
    let config = ScorerConfig { budget: Duration::from_secs(10), ..Default::default() };
    let scorer = Scorer::new(config, &wasm, &signer().edge_key().to_text())?;
    scorer.load_snapshot(f.snapshot.clone())?;
    // Idempotency off: the clients send the same transactions again, and a replay would answer
    // with the snapshot of the first time.
    let config = ServiceConfig {
        admin_token: Some(TOKEN.into()),
        idempotency_window: Duration::ZERO,
        ..Default::default()
    };
    let server = spawn(scorer, config, "127.0.0.1:0".parse()?, 2)?;
    let base = format!("http://{}", server.addr);
    let setup = started.elapsed();

    // The index of the last push answered 200: a request sent after it must be scored by that
    // snapshot or a newer one.
    let pushed = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let shared = Shared {
        base: &base,
        order: &order,
        ids: &ids,
        requests: &requests,
        batches: &batches,
        pushed: &pushed,
        stop: &stop,
    };
    let t = Instant::now();
    let (seen, swapped) = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS).map(|c| s.spawn(move || client(c, shared))).collect();
        let swapped = push_every_second(&shared, &pushes);
        // Let the clients score on the last snapshot for a moment.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let seen: Vec<Seen> = clients.into_iter().filter_map(|h| h.join().ok()).collect();
        (seen, swapped)
    });
    let elapsed = t.elapsed();
    let swapped = swapped?;
    ensure!(seen.len() == CLIENTS, "a client thread panicked");
    let (singles, batches): (u64, u64) =
        (seen.iter().map(|s| s.singles).sum(), seen.iter().map(|s| s.batches).sum());
    let failed: u64 = seen.iter().map(|s| s.failed).sum();
    let served: BTreeSet<usize> = seen.iter().flat_map(|s| s.served.iter().copied()).collect();
    let pushed_served = served.iter().filter(|&&i| i > 0).count();
    println!(
        "hot swap: {} requests in {elapsed:.1?} ({singles} single, {batches} batches of {BATCH}: {} scores, \
         {:.0} requests/s) from {CLIENTS} clients; {swapped} snapshots pushed, {pushed_served} of them \
         seen serving; {failed} failed; setup {setup:.1?}",
        singles + batches,
        singles + batches * BATCH as u64,
        (singles + batches) as f64 / elapsed.as_secs_f64(),
    );
    let failures: Vec<&String> = seen.iter().flat_map(|s| &s.failures).collect();
    ensure!(failed == 0, "{failed} requests failed, among them: {failures:#?}");
    ensure!(swapped == SWAPS, "{swapped} of {SWAPS} pushes answered 200");
    ensure!(pushed_served >= 55, "only {pushed_served} of {SWAPS} pushed snapshots were seen serving");
    ensure!(singles > 0 && batches > 0, "no load: {singles} single requests, {batches} batches");
    let last = served.last().context("no snapshot served")?;
    ensure!(*last == SWAPS, "the last push never served (the newest seen: {})", ids[*last]);
    drop(server);
    Ok(())
}
