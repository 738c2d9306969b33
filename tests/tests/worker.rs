//! The edge worker (`tollgate-worker`, workers-rs) under a real workerd on 127.0.0.1, with a local
//! KV namespace filled the way `tollgate push --to kv-local:DIR` fills one: the parity corpus
//! scored over HTTP must give the native scorer's bytes; bad requests get JSON 4xx; a wrongly
//! signed snapshot is refused while the previous one keeps serving; updates in KV are picked up
//! on the refresh interval and on the cron trigger; a snapshot in parts is served with parts
//! fetched on demand, each verified.
//!
//! The worker is built by the test itself (`tollgate_tests::worker::bundle`: cargo `--profile
//! wasm`, wasm-bindgen from `TOLLGATE_WASM_BINDGEN` or ~/.cargo/bin, wasm-opt from
//! node_modules) and run by `worker/js/miniflare.mjs` (npm miniflare 4, which runs workerd).

use anyhow::{Context, Result, bail, ensure};
use scorer::score::Scorer;
use scorer::snapshot::{IdHashKey, Snapshot, SnapshotPieces, SnapshotSigner};
use std::time::{Duration, Instant};
use tollgate_tests::parity::{Fixture, fixture, logistic, signer, trees};
use tollgate_tests::worker::{LocalWorker, WorkerConfig};
use ureq::Agent;

/// Shards of 8 KiB: the parity snapshots (about 45 KB) span several, so reassembly is exercised.
const SHARD_BYTES: usize = 8 << 10;
/// Concurrent connections when replaying the corpus.
const CONNECTIONS: usize = 8;

fn agent() -> Agent {
    Agent::new_with_config(
        Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections_per_host(CONNECTIONS * 2)
            .build(),
    )
}

/// One HTTP exchange: status, content type, body.
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON ({}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }
}

fn send(agent: &Agent, method: &str, url: &str, body: &[u8]) -> Result<Reply> {
    let sent = match method {
        "GET" => agent.get(url).call(),
        "POST" => agent.post(url).header("content-type", "application/json").send(body),
        "PUT" => agent.put(url).send(body),
        other => bail!("no such method {other}"),
    };
    let mut response = sent.with_context(|| format!("{method} {url} ({} bytes)", body.len()))?;
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body = response.body_mut().with_config().limit(64 << 20).read_to_vec()?;
    Ok(Reply { status: response.status().as_u16(), content_type, body })
}

fn status(agent: &Agent, worker: &LocalWorker) -> Result<serde_json::Value> {
    send(agent, "GET", &format!("{}/v1/status", worker.url), b"")?.json()
}

/// Polls `/v1/status` until `done` holds (each poll may start a check of KV), for at most 20 s.
fn wait_for(
    agent: &Agent,
    worker: &LocalWorker,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(agent, worker)?;
        if done(&s) {
            return Ok(s);
        }
        ensure!(Instant::now() < deadline, "timed out waiting for {what}; status {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start(refresh_seconds: f64) -> Result<LocalWorker> {
    LocalWorker::start(&WorkerConfig {
        edge_keys: signer().edge_key().to_text(),
        refresh_seconds,
        part_budget_bytes: None,
    })
}

fn native(fixture: &Fixture) -> Result<Scorer<'_>> {
    Ok(Scorer::new(Snapshot::load(&fixture.snapshot, &[signer().edge_key()])?))
}

/// The HTTP status the worker must give a response of the native scorer.
fn expected_status(native: &[u8]) -> u16 {
    if native.starts_with(br#"{"ok":true"#) || native.first() == Some(&b'[') {
        200
    } else if native.starts_with(br#"{"ok":false"#) || native.first() == Some(&0x85) {
        400
    } else {
        200
    }
}

/// Scores every request through `POST /v1/score` over `CONNECTIONS` keep-alive connections and
/// checks each response byte for byte (and its HTTP status) against the native scorer.
fn compare_one_by_one(worker: &LocalWorker, scorer: &mut Scorer<'_>, requests: &[&str]) -> Result<()> {
    let expected: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            scorer.score_bytes(r.as_bytes(), &mut out);
            out
        })
        .collect();
    let url = format!("{}/v1/score", worker.url);
    let agent = agent();
    let chunk = requests.len().div_ceil(CONNECTIONS).max(1);
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = requests
            .chunks(chunk)
            .zip(expected.chunks(chunk))
            .map(|(reqs, wants)| {
                let (agent, url) = (agent.clone(), url.clone());
                scope.spawn(move || -> Result<()> {
                    for (r, want) in reqs.iter().zip(wants) {
                        let reply = send(&agent, "POST", &url, r.as_bytes())?;
                        ensure!(
                            reply.body == *want,
                            "request {r:?} differs:\nnative {}\nworker {}",
                            String::from_utf8_lossy(want),
                            String::from_utf8_lossy(&reply.body)
                        );
                        ensure!(
                            reply.status == expected_status(want),
                            "request {r:?}: HTTP {}",
                            reply.status
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        Ok(())
    })
}

/// Scores the requests in batches of 64 through `POST /v1/score/batch` against the native batch
/// path.
fn compare_batches(worker: &LocalWorker, scorer: &mut Scorer<'_>, requests: &[&str]) -> Result<usize> {
    let agent = agent();
    let url = format!("{}/v1/score/batch", worker.url);
    let mut n = 0;
    for chunk in requests.chunks(64) {
        let batch = format!("[{}]", chunk.join(","));
        let mut want = Vec::new();
        scorer.score_batch_bytes(batch.as_bytes(), &mut want);
        let reply = send(&agent, "POST", &url, batch.as_bytes())?;
        ensure!(
            reply.body == want,
            "batch differs:\nnative {}\nworker {}",
            String::from_utf8_lossy(&want),
            String::from_utf8_lossy(&reply.body)
        );
        n += 1;
    }
    Ok(n)
}

/// Only requests that parse as one JSON value on their own can be joined into a JSON batch.
fn batchable<'a>(requests: &[&'a str]) -> Vec<&'a str> {
    requests
        .iter()
        .copied()
        .filter(|r| serde_json::from_str::<serde_json::Value>(r).is_ok_and(|v| v.is_object()))
        .collect()
}

#[test]
fn worker_and_native_give_identical_responses_on_the_parity_corpus() -> Result<()> {
    let lr = fixture(&logistic(), "lr-parity-v1")?;
    let gbdt = fixture(&trees(), "gbdt-parity-v1")?;
    // A long interval: here only the cron trigger brings the second snapshot in.
    let mut worker = start(3600.0)?;
    worker.push_snapshot(&lr.snapshot, SHARD_BYTES)?;
    let agent = agent();
    let s = status(&agent, &worker)?;
    ensure!(s["snapshot"]["snapshot_id"] == "tg-parity-lr-parity-v1", "not loaded: {s}");
    ensure!(
        lr.snapshot.len() > 2 * SHARD_BYTES,
        "the parity snapshot ({} B) fits in two shards; lower SHARD_BYTES",
        lr.snapshot.len()
    );

    let requests = lr.json_requests();
    ensure!(requests.len() > 3_000, "only {} JSON requests", requests.len());
    let mut scorer = native(&lr)?;
    let t = Instant::now();
    compare_one_by_one(&worker, &mut scorer, &requests)?;
    let one_by_one = t.elapsed();
    let batches = compare_batches(&worker, &mut scorer, &batchable(&requests))?;
    eprintln!(
        "logistic: {} JSON requests identical one by one ({:.0} ms over {CONNECTIONS} connections), {batches} batches identical",
        requests.len(),
        one_by_one.as_secs_f64() * 1e3
    );

    // The tree model, brought in by the cron trigger.
    worker.push_snapshot(&gbdt.snapshot, SHARD_BYTES)?;
    worker.scheduled()?;
    let s = status(&agent, &worker)?;
    ensure!(s["snapshot"]["snapshot_id"] == "tg-parity-gbdt-parity-v1", "cron did not load the update: {s}");
    ensure!(s["loads"] == 2, "{s}");
    let requests = gbdt.json_requests();
    let mut scorer = native(&gbdt)?;
    compare_one_by_one(&worker, &mut scorer, &requests[..2_000.min(requests.len())])?;
    let batches = compare_batches(&worker, &mut scorer, &batchable(&requests))?;
    eprintln!("trees: 2000 JSON requests identical one by one, {batches} batches identical");
    Ok(())
}

/// The snapshot with its signature replaced by one from a key the worker does not trust (the
/// header still names the trusted key): everything but the signature is intact.
fn wrongly_signed(snapshot: &[u8]) -> Vec<u8> {
    let other = SnapshotSigner::from_secret([99; 32], IdHashKey([42; 16]));
    let sections = u32::from_le_bytes([snapshot[12], snapshot[13], snapshot[14], snapshot[15]]) as usize;
    let at = 64 + 64 * sections;
    let mut message = b"tollgate snapshot v1\0".to_vec();
    message.extend_from_slice(&snapshot[..at]);
    let mut bytes = snapshot.to_vec();
    bytes[at..at + 64].copy_from_slice(&other.sign(&message));
    bytes
}

#[test]
fn refuses_a_wrongly_signed_snapshot_keeps_serving_and_picks_up_updates() -> Result<()> {
    let lr = fixture(&logistic(), "lr-parity-v1")?;
    let gbdt = fixture(&trees(), "gbdt-parity-v1")?;
    let mut worker = start(1.0)?;
    let agent = agent();
    let probe = lr.json_requests().into_iter().take(200).collect::<Vec<_>>();
    let score_url = format!("{}/v1/score", worker.url);

    // Nothing in KV yet: 503 with the scorer's no_snapshot error, and the reason in the status.
    let reply = send(&agent, "POST", &score_url, probe[0].as_bytes())?;
    ensure!(
        reply.status == 503 && reply.json()?["error_kind"] == "no_snapshot",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    ensure!(status(&agent, &worker)?["last_error"].as_str().is_some_and(|e| e.contains("tollgate/manifest")));

    worker.push_snapshot(&lr.snapshot, SHARD_BYTES)?;
    let s = wait_for(&agent, &worker, "the first snapshot", |s| {
        s["snapshot"]["snapshot_id"] == "tg-parity-lr-parity-v1"
    })?;
    let serving = s["snapshot"]["version"].clone();

    // A wrongly signed snapshot: refused, named in the status, and the old one keeps serving.
    let bad = wrongly_signed(&gbdt.snapshot);
    ensure!(Snapshot::load(&bad, &[signer().edge_key()]).is_err(), "the forged snapshot verifies natively");
    worker.push_snapshot(&bad, SHARD_BYTES)?;
    let s = wait_for(&agent, &worker, "the refusal", |s| !s["refused"].is_null())?;
    let refused = s["refused"]["error"].as_str().unwrap_or_default();
    ensure!(refused.contains("signature"), "refusal does not name the signature: {refused}");
    ensure!(s["snapshot"]["version"] == serving, "the serving snapshot changed: {s}");
    compare_one_by_one(&worker, &mut native(&lr)?, &probe)?;

    // A shard damaged in KV (the manifest's digest does not match): an error, and the old one
    // keeps serving.
    let (manifest, shards) = tollgate_kv::split(&gbdt.snapshot, SHARD_BYTES);
    for (key, bytes) in &shards {
        let mut bytes = bytes.to_vec();
        bytes[0] ^= 0xff;
        worker.put(key, &bytes)?;
    }
    worker.put(tollgate_kv::MANIFEST_KEY, manifest.to_json().as_bytes())?;
    let s = wait_for(&agent, &worker, "the digest error", |s| {
        s["last_error"].as_str().is_some_and(|e| e.contains("digest"))
    })?;
    ensure!(s["snapshot"]["version"] == serving, "the serving snapshot changed: {s}");
    compare_one_by_one(&worker, &mut native(&lr)?, &probe)?;

    // A good update is picked up on the refresh interval, with no cron and no restart.
    worker.push_snapshot(&gbdt.snapshot, SHARD_BYTES)?;
    let s = wait_for(&agent, &worker, "the update", |s| {
        s["snapshot"]["snapshot_id"] == "tg-parity-gbdt-parity-v1"
    })?;
    ensure!(s["last_error"].is_null(), "{s}");
    let probe = gbdt.json_requests().into_iter().take(200).collect::<Vec<_>>();
    compare_one_by_one(&worker, &mut native(&gbdt)?, &probe)?;
    Ok(())
}

#[test]
fn loads_table_parts_on_demand_and_answers_like_the_whole_file() -> Result<()> {
    let lr = fixture(&logistic(), "lr-parity-v1")?;
    let parted = lr.in_parts(4096)?;
    let pieces = SnapshotPieces::split(&parted)?;
    ensure!(pieces.parts.len() >= 8, "only {} parts", pieces.parts.len());
    // A budget below one part: every request fetches the parts it needs, and they go after it.
    let mut worker = LocalWorker::start(&WorkerConfig {
        edge_keys: signer().edge_key().to_text(),
        refresh_seconds: 3600.0,
        part_budget_bytes: Some(1),
    })?;
    worker.push_snapshot(&parted, SHARD_BYTES)?;
    let agent = agent();
    let s = status(&agent, &worker)?;
    ensure!(s["snapshot"]["snapshot_id"] == "tg-parity-lr-parity-v1", "not loaded: {s}");
    ensure!(
        s["snapshot"]["parts"]["total"] == pieces.parts.len() && s["snapshot"]["parts"]["loaded"] == 0,
        "{s}"
    );
    ensure!(
        s["snapshot"]["bytes"].as_u64().is_some_and(|b| (b as usize) < parted.len() / 4),
        "the core should be a small part of the {} bytes: {s}",
        parted.len()
    );

    // Byte-identical to the native scorer on the whole (unparted) snapshot, one by one and in batches.
    let requests: Vec<&str> = lr.json_requests().into_iter().take(600).collect();
    let mut scorer = native(&lr)?;
    compare_one_by_one(&worker, &mut scorer, &requests)?;
    let batches = compare_batches(&worker, &mut scorer, &batchable(&requests))?;
    let s = status(&agent, &worker)?;
    let fetched = s["snapshot"]["parts"]["fetched"].as_u64().unwrap_or(0);
    ensure!(fetched as usize > 2 * pieces.parts.len(), "parts are evicted and fetched again: {s}");
    ensure!(s["snapshot"]["parts"]["loaded"] == 0, "the budget evicts every part after its request: {s}");
    eprintln!("parts: {} requests and {batches} batches identical; {fetched} part fetches", requests.len());

    // A part damaged in KV: requests that need it get a JSON 503 naming it; the others are answered.
    let entries = tollgate_kv::entries(&parted, SHARD_BYTES)?;
    let manifest = entries.last().map(|(_, json)| std::str::from_utf8(json)).context("no manifest")??;
    let damaged = tollgate_kv::Manifest::from_json(manifest)?.part_key(1, 0);
    let (_, _, range) = pieces.parts.iter().find(|(e, p, _)| (*e, *p) == (1, 0)).context("no part 1/0")?;
    let mut bytes = parted[range.clone()].to_vec();
    bytes[8] ^= 0x40;
    worker.put(&damaged, &bytes)?;
    let (mut refused, mut answered) = (0, 0);
    let url = format!("{}/v1/score", worker.url);
    for r in &requests[..200] {
        let reply = send(&agent, "POST", &url, r.as_bytes())?;
        match reply.status {
            503 => {
                let v = reply.json()?;
                ensure!(v["error_kind"] == "part_missing", "{v}");
                ensure!(
                    v["error"].as_str().is_some_and(|e| e.contains(&damaged) && e.contains("digest")),
                    "{v}"
                );
                refused += 1;
            }
            _ => {
                let mut out = Vec::new();
                scorer.score_bytes(r.as_bytes(), &mut out);
                ensure!(reply.body == out, "a request answered differently after the damage");
                answered += 1;
            }
        }
    }
    ensure!(refused > 0 && answered > 0, "refused {refused}, answered {answered}");
    Ok(())
}

#[test]
fn parts_are_evicted_least_recently_used_first() -> Result<()> {
    let lr = fixture(&logistic(), "lr-parity-v1")?;
    let parted = lr.in_parts(4096)?;
    let pieces = SnapshotPieces::split(&parted)?;
    let size = |set: &[(usize, usize)]| -> usize {
        set.iter()
            .filter_map(|&(e, p)| pieces.parts.iter().find(|(pe, pp, _)| (*pe, *pp) == (e, p)))
            .map(|(_, _, range)| range.len())
            .sum()
    };
    // Three requests whose parts are disjoint: A, B and C.
    let whole = Snapshot::load(&parted, &[signer().edge_key()])?;
    let scorer = Scorer::new(whole);
    let mut picked: Vec<(&str, Vec<(usize, usize)>)> = Vec::new();
    for r in lr.json_requests() {
        let mut needed = Vec::new();
        scorer.needed_parts(r.as_bytes(), false, &mut needed);
        let disjoint = picked.iter().all(|(_, set)| set.iter().all(|p| !needed.contains(p)));
        if !needed.is_empty() && disjoint {
            picked.push((r, needed));
        }
        if picked.len() == 3 {
            break;
        }
    }
    ensure!(picked.len() == 3, "no three requests with disjoint parts");
    let [(a, parts_a), (b, parts_b), (c, parts_c)] = &picked[..] else { bail!("three requests") };
    // Room for all three but one byte: loading C's parts evicts what was used least recently.
    let budget = size(parts_a) + size(parts_b) + size(parts_c) - 1;
    let mut worker = LocalWorker::start(&WorkerConfig {
        edge_keys: signer().edge_key().to_text(),
        refresh_seconds: 3600.0,
        part_budget_bytes: Some(budget),
    })?;
    worker.push_snapshot(&parted, SHARD_BYTES)?;
    let agent = agent();
    let url = format!("{}/v1/score", worker.url);
    let fetched = |agent: &Agent| -> Result<u64> {
        let s = status(agent, &worker)?;
        s["snapshot"]["parts"]["fetched"].as_u64().context("no parts in the status")
    };
    let score = |request: &str| -> Result<u64> {
        let reply = send(&agent, "POST", &url, request.as_bytes())?;
        ensure!(reply.status == 200, "status {}", reply.status);
        fetched(&agent)
    };
    ensure!(score(a)? == parts_a.len() as u64, "A fetches its parts");
    let after_b = score(b)?;
    ensure!(after_b == (parts_a.len() + parts_b.len()) as u64, "B fetches its parts");
    ensure!(score(a)? == after_b, "A's parts are still loaded");
    let after_c = score(c)?;
    ensure!(after_c == after_b + parts_c.len() as u64, "C fetches its parts");
    // A was used after B: B's parts went, A's stayed (oldest-first eviction would take A's).
    ensure!(score(a)? == after_c, "A was evicted although B was used less recently");
    ensure!(score(b)? > after_c, "B's parts were not evicted");
    eprintln!("parts: A {parts_a:?}, B {parts_b:?}, C {parts_c:?}; budget {budget} bytes");
    Ok(())
}

#[test]
fn bad_requests_get_json_4xx_with_the_scorers_error() -> Result<()> {
    let lr = fixture(&logistic(), "lr-parity-v1")?;
    let mut worker = start(3600.0)?;
    worker.push_snapshot(&lr.snapshot, SHARD_BYTES)?;
    let agent = agent();
    let url = |path: &str| format!("{}{path}", worker.url);
    let mut scorer = native(&lr)?;
    for body in [
        r#"{"customer_id":1,"terminal_id":2,"amount":-1,"time":0}"#,
        r#"{"customer_id":1,"amount":1,"time":0}"#,
        r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":"noon"}"#,
        "{",
        "[1,2]",
    ] {
        let reply = send(&agent, "POST", &url("/v1/score"), body.as_bytes())?;
        let mut want = Vec::new();
        scorer.score_bytes(body.as_bytes(), &mut want);
        ensure!(reply.status == 400, "{body}: HTTP {}", reply.status);
        ensure!(reply.content_type == "application/json", "{body}: {}", reply.content_type);
        ensure!(reply.body == want, "{body}: {}", String::from_utf8_lossy(&reply.body));
        let json = reply.json()?;
        ensure!(json["ok"] == false && json["error_kind"] == "bad_request", "{json}");
        ensure!(json["snapshot_id"] == "tg-parity-lr-parity-v1", "{json}");
    }
    let reply = send(
        &agent,
        "POST",
        &url("/v1/score"),
        br#"{"customer_id":1,"terminal_id":2,"amount":1,"time":0,"x":"#,
    )?;
    ensure!(
        reply.json()?["error"] == "request: is not valid JSON",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = send(&agent, "POST", &url("/v1/score/batch"), br#"{"not":"an array"}"#)?;
    ensure!(
        reply.status == 400 && reply.json()?["error"] == "batch: must be an array",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    // What never reaches the scorer: same error shape.
    let too_big = format!(r#"{{"customer_id":"{}"}}"#, "x".repeat(70_000));
    for (method, path, body, code, kind) in [
        ("POST", "/v1/score", too_big.as_bytes(), 413, "bad_request"),
        ("GET", "/v1/score", &b""[..], 405, "method_not_allowed"),
        ("PUT", "/v1/status", &b"{}"[..], 405, "method_not_allowed"),
        ("GET", "/admin", &b""[..], 404, "not_found"),
    ] {
        // A fresh connection each: workerd may close one whose request body was left unread.
        let reply = send(&self::agent(), method, &url(path), body)?;
        ensure!(reply.status == code, "{method} {path}: HTTP {}", reply.status);
        let json = reply.json()?;
        ensure!(json["ok"] == false && json["error_kind"] == kind && json["error"].is_string(), "{json}");
    }
    Ok(())
}

/// Every file of the bundle under `dir`, recursively.
fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[test]
fn worker_upload_is_under_one_mib_gzipped() -> Result<()> {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write as _;
    let dir = tollgate_tests::worker::bundle()?;
    let mut all = Vec::new();
    files(&dir, &mut all)?;
    let (mut raw, mut gz) = (0, 0);
    for path in &all {
        let bytes = std::fs::read(path)?;
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&bytes)?;
        let z = enc.finish()?.len();
        eprintln!("{:>9} B raw {:>8} B gzip  {}", bytes.len(), z, path.strip_prefix(&dir)?.display());
        raw += bytes.len();
        gz += z;
    }
    eprintln!("upload: {raw} B raw, {gz} B gzip ({} modules)", all.len());
    ensure!(all.iter().any(|p| p.ends_with("index_bg.wasm")) && all.iter().any(|p| p.ends_with("shim.mjs")));
    ensure!(gz <= 1 << 20, "the worker is {gz} B gzipped, over the 1 MiB goal");
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The numbers in docs/benchmarks.md ("The edge worker"): CPU time per request under workerd and
/// the memory of a 1M-entity snapshot. Slow (builds a 1M-customer snapshot, loads it twice):
/// `cargo test -p tollgate-tests --test worker -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn measures_cpu_per_request_and_memory_of_a_million_entities() -> Result<()> {
    let lr = fixture(&logistic(), "lr-parity-v1")?;
    let mut worker = start(3600.0)?;
    worker.push_snapshot(&lr.snapshot, SHARD_BYTES)?;
    let agent = agent();
    let s = status(&agent, &worker)?;
    ensure!(!s["snapshot"].is_null(), "{s}");
    let requests = batchable(&lr.json_requests());
    let ok: Vec<&str> =
        requests.iter().copied().filter(|r| r.contains("transaction_id")).take(3_000).collect();
    let score = format!("{}/v1/score", worker.url);
    let batch_url = format!("{}/v1/score/batch", worker.url);
    let nope = format!("{}/nope", worker.url);
    // Warm up the isolate (JIT tiers, connection).
    for r in ok.iter().take(500) {
        send(&agent, "POST", &score, r.as_bytes())?;
    }
    println!(
        "| what | requests | wall median | wall p99 | workerd CPU median | workerd CPU p99 | CPU mean |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let pids = worker.workerd_pids()?;
    let run = |name: &str, url: &str, bodies: &[String]| -> Result<()> {
        let mut wall = Vec::with_capacity(bodies.len());
        let mut cpu = Vec::with_capacity(bodies.len());
        for b in bodies {
            let before = tollgate_tests::worker::cpu_ns(&pids)?;
            let t = Instant::now();
            let reply = send(&agent, if b.is_empty() { "GET" } else { "POST" }, url, b.as_bytes())?;
            wall.push(t.elapsed().as_secs_f64() * 1e6);
            cpu.push((tollgate_tests::worker::cpu_ns(&pids)? - before) as f64 / 1e3);
            ensure!(reply.status == 200 || b.is_empty(), "HTTP {}", reply.status);
        }
        let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
        wall.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        println!(
            "| {name} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {mean:.0} µs |",
            bodies.len(),
            percentile(&wall, 0.5),
            percentile(&wall, 0.99),
            percentile(&cpu, 0.5),
            percentile(&cpu, 0.99),
        );
        Ok(())
    };
    let empty: Vec<String> = vec![String::new(); 2_000];
    run("GET /nope (404 from the wasm, no scoring)", &nope, &empty)?;
    let singles: Vec<String> = ok.iter().map(|r| r.to_string()).collect();
    run("POST /v1/score", &score, &singles)?;
    let batches: Vec<String> = ok.chunks(100).map(|c| format!("[{}]", c.join(","))).collect();
    run("POST /v1/score/batch (100 per batch; per batch)", &batch_url, &batches)?;

    // Memory: a 1M-customer, 100k-terminal snapshot, loaded, then replaced by another.
    let t = Instant::now();
    let big = tollgate_tests::worker::large_snapshot(1_000_000, 100_000, usize::MAX)?;
    let other = tollgate_tests::worker::large_snapshot(1_000_000, 100_001, usize::MAX)?;
    println!("\nbuilt two 1M-entity snapshots of {} B in {:.1} s", big.len(), t.elapsed().as_secs_f64());
    println!("| shard size | step | snapshot | wasm memory | workerd RSS |");
    println!("| ---: | --- | ---: | ---: | ---: |");
    for shard in [24 << 20, tollgate_kv::DEFAULT_SHARD_BYTES] {
        drop(worker);
        worker = start(3600.0)?;
        let idle = worker.workerd_usage()?.rss_bytes;
        println!("| {} MiB | idle, nothing loaded | - | - | {:.1} MB |", shard >> 20, idle as f64 / 1e6);
        for (step, snap) in [("first load", &big), ("update (old serves while new loads)", &other)] {
            worker.push_snapshot(snap, shard)?;
            worker.scheduled()?;
            let s = status(&agent, &worker)?;
            ensure!(s["snapshot"]["bytes"] == snap.len(), "not loaded: {s}");
            let rss = worker.workerd_usage()?.rss_bytes;
            println!(
                "| {} MiB | {step} | {:.1} MB | {:.1} MB | {:.1} MB |",
                shard >> 20,
                snap.len() as f64 / 1e6,
                s["memory_bytes"].as_f64().unwrap_or(0.0) / 1e6,
                rss as f64 / 1e6
            );
        }
        // Scoring still works against the big snapshot.
        let score = format!("{}/v1/score", worker.url);
        let reply = send(
            &agent,
            "POST",
            &score,
            br#"{"customer_id":12345,"terminal_id":678,"amount":42.5,"time":1700000000}"#,
        )?;
        ensure!(reply.status == 200, "{}", String::from_utf8_lossy(&reply.body));
        ensure!(reply.json()?["known"]["CUSTOMER_ID"] == true, "{}", String::from_utf8_lossy(&reply.body));
    }

    // The same 1M entities in parts of at most 1 MiB, loaded on demand under two part budgets.
    drop(worker);
    let parted = tollgate_tests::worker::large_snapshot(1_000_000, 100_000, 1 << 20)?;
    let pieces = scorer::snapshot::SnapshotPieces::split(&parted)?;
    println!("\nin parts: {} parts of at most 1 MiB, core {} B\n", pieces.parts.len(), pieces.core.len());
    println!(
        "| part budget | step | parts loaded | wasm memory | workerd RSS | CPU median | CPU p99 | wall median | wall p99 |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let bodies: Vec<String> = (0..2_000)
        .map(|_| {
            format!(
                r#"{{"customer_id":{},"terminal_id":{},"amount":42.5,"time":1700000000}}"#,
                next(1_000_000),
                next(100_000)
            )
        })
        .collect();
    for budget in [8usize << 20, 48 << 20] {
        let mut worker = LocalWorker::start(&WorkerConfig {
            edge_keys: signer().edge_key().to_text(),
            refresh_seconds: 3600.0,
            part_budget_bytes: Some(budget),
        })?;
        worker.push_snapshot(&parted, tollgate_kv::DEFAULT_SHARD_BYTES)?;
        worker.scheduled()?;
        let row = |worker: &mut LocalWorker, step: &str, cpu: &[f64], wall: &[f64]| -> Result<()> {
            let s = status(&agent, worker)?;
            let rss = worker.workerd_usage()?.rss_bytes;
            let p = |v: &[f64], q: f64| {
                if v.is_empty() { "-".to_string() } else { format!("{:.0} µs", percentile(v, q)) }
            };
            println!(
                "| {} MiB | {step} | {} | {:.1} MB | {:.1} MB | {} | {} | {} | {} |",
                budget >> 20,
                s["snapshot"]["parts"]["loaded"],
                s["memory_bytes"].as_f64().unwrap_or(0.0) / 1e6,
                rss as f64 / 1e6,
                p(cpu, 0.5),
                p(cpu, 0.99),
                p(wall, 0.5),
                p(wall, 0.99),
            );
            Ok(())
        };
        row(&mut worker, "core loaded", &[], &[])?;
        let pids = worker.workerd_pids()?;
        let score = format!("{}/v1/score", worker.url);
        for step in ["2,000 random requests, cold", "the same 2,000 again"] {
            let (mut cpu, mut wall) = (Vec::new(), Vec::new());
            for b in &bodies {
                let before = tollgate_tests::worker::cpu_ns(&pids)?;
                let t = Instant::now();
                let reply = send(&agent, "POST", &score, b.as_bytes())?;
                wall.push(t.elapsed().as_secs_f64() * 1e6);
                cpu.push((tollgate_tests::worker::cpu_ns(&pids)? - before) as f64 / 1e3);
                ensure!(reply.status == 200, "{}", String::from_utf8_lossy(&reply.body));
                ensure!(
                    reply.json()?["known"]["CUSTOMER_ID"] == true,
                    "{}",
                    String::from_utf8_lossy(&reply.body)
                );
            }
            cpu.sort_by(f64::total_cmp);
            wall.sort_by(f64::total_cmp);
            row(&mut worker, step, &cpu, &wall)?;
        }
    }
    Ok(())
}
