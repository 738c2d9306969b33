//! The HTTP service on a real socket (127.0.0.1:0) over the real `scorer.wasm`: scoring in JSON
//! and MessagePack, batches, snapshot push and rollback with the bearer token, refusals,
//! idempotent retries, bad requests, health and metrics.

use anyhow::{Context, Result, ensure};
use host::service::{Running, ServiceConfig, spawn};
use host::{Scorer, ScorerConfig};
use scorer::score::Scorer as NativeScorer;
use scorer::snapshot::Snapshot;
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tollgate_tests::parity::{Fixture, fixture, logistic, signer, trees};
use tollgate_tests::scorer_wasm;

const TOKEN: &str = "s3cret-admin-token";

fn lr() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixture(&logistic(), "lr-parity-v1").expect("the parity fixture builds"))
}

fn gbdt() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixture(&trees(), "gbdt-parity-v1").expect("the parity fixture builds"))
}

fn start(snapshot: Option<&[u8]>, config: ServiceConfig) -> Result<(Running, String)> {
    let wasm = std::fs::read(scorer_wasm()?)?;
    let scorer = Scorer::new(ScorerConfig::default(), &wasm, &signer().edge_key().to_text())?;
    if let Some(s) = snapshot {
        scorer.load_snapshot(s.to_vec())?;
    }
    let config = ServiceConfig { admin_token: Some(TOKEN.into()), ..config };
    let running = spawn(scorer, config, "127.0.0.1:0".parse()?, 2)?;
    let base = format!("http://{}", running.addr);
    Ok((running, base))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Status, content type and body of a response.
fn post(url: &str, content_type: &str, body: &[u8]) -> Result<(u16, String, Vec<u8>)> {
    let mut r = agent().post(url).header("content-type", content_type).send(body)?;
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    Ok((r.status().as_u16(), ct, r.body_mut().read_to_vec()?))
}

fn get(url: &str) -> Result<(u16, String)> {
    let mut r = agent().get(url).call()?;
    Ok((r.status().as_u16(), r.body_mut().read_to_string()?))
}

fn admin(method: &str, url: &str, token: Option<&str>, body: &[u8]) -> Result<(u16, Value)> {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut r = match method {
        "PUT" => {
            let mut req = a.put(url);
            if let Some(h) = &auth {
                req = req.header("authorization", h);
            }
            req.send(body)?
        }
        "DELETE" => {
            let mut req = a.delete(url);
            if let Some(h) = &auth {
                req = req.header("authorization", h);
            }
            req.call()?
        }
        _ => {
            let mut req = a.post(url);
            if let Some(h) = &auth {
                req = req.header("authorization", h);
            }
            req.send(body)?
        }
    };
    let status = r.status().as_u16();
    Ok((status, serde_json::from_str(&r.body_mut().read_to_string()?)?))
}

fn native(snapshot: &[u8], request: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    NativeScorer::new(Snapshot::load(snapshot, &[signer().edge_key()])?).score_bytes(request, &mut out);
    Ok(out)
}

#[test]
fn scores_json_and_messagepack_over_http_like_the_native_scorer() -> Result<()> {
    let f = lr();
    let (_server, base) = start(Some(&f.snapshot), ServiceConfig::default())?;
    let json: Vec<&[u8]> = f.json_requests().into_iter().take(50).map(str::as_bytes).collect();
    let msgpack: Vec<&Vec<u8>> =
        f.requests.iter().filter(|r| r.first().is_some_and(|b| b & 0xf0 == 0x80)).take(50).collect();
    ensure!(!json.is_empty() && !msgpack.is_empty());
    for r in &json {
        let (status, ct, body) = post(&format!("{base}/v1/score"), "application/json", r)?;
        let want = native(&f.snapshot, r)?;
        ensure!(body == want, "{} != {}", String::from_utf8_lossy(&body), String::from_utf8_lossy(&want));
        let ok = want.starts_with(br#"{"ok":true"#);
        ensure!(
            status == if ok { 200 } else { 400 },
            "status {status} for {}",
            String::from_utf8_lossy(&body)
        );
        ensure!(ct == "application/json");
    }
    for r in &msgpack {
        let (status, ct, body) = post(&format!("{base}/v1/score"), "application/msgpack", r)?;
        ensure!(body == native(&f.snapshot, r)?, "a MessagePack answer differs");
        ensure!(ct == "application/msgpack" && (status == 200 || status == 400));
    }
    // The batch endpoint: one array in, one array out, equal to the native batch.
    let batch =
        format!("[{}]", json.iter().map(|r| String::from_utf8_lossy(r)).collect::<Vec<_>>().join(","));
    let (status, _, body) = post(&format!("{base}/v1/score/batch"), "application/json", batch.as_bytes())?;
    let mut want = Vec::new();
    NativeScorer::new(Snapshot::load(&f.snapshot, &[signer().edge_key()])?)
        .score_batch_bytes(batch.as_bytes(), &mut want);
    ensure!(status == 200 && body == want, "the batch differs");
    Ok(())
}

#[test]
fn snapshot_push_needs_the_token_refuses_bad_snapshots_and_rolls_back() -> Result<()> {
    let (a, b) = (lr(), gbdt());
    // Idempotency off: the same transaction is scored again after each swap.
    let config = ServiceConfig { idempotency_window: std::time::Duration::ZERO, ..Default::default() };
    let (_server, base) = start(None, config)?;
    let request = a.json_requests()[0].as_bytes();
    // No snapshot yet: not ready, and a score answers 503 no_snapshot.
    ensure!(get(&format!("{base}/readyz"))?.0 == 503);
    let (status, _, body) = post(&format!("{base}/v1/score"), "application/json", request)?;
    ensure!(status == 503 && String::from_utf8_lossy(&body).contains("no_snapshot"), "{status}");

    let url = format!("{base}/v1/snapshot");
    ensure!(admin("PUT", &url, None, &a.snapshot)?.0 == 401, "a push without a token was let in");
    ensure!(admin("PUT", &url, Some("wrong"), &a.snapshot)?.0 == 401, "a wrong token was let in");
    let (status, v) = admin("PUT", &url, Some(TOKEN), &a.snapshot)?;
    ensure!(status == 200 && v["snapshot"]["model_id"] == "lr-parity-v1", "{status} {v}");
    ensure!(get(&format!("{base}/readyz"))?.0 == 200);
    let (_, _, first) = post(&format!("{base}/v1/score"), "application/json", request)?;
    ensure!(first == native(&a.snapshot, request)?);

    // A damaged snapshot: 422 with the reason, and the current one keeps serving.
    let mut damaged = b.snapshot.clone();
    let at = damaged.len() - 20;
    damaged[at] ^= 1;
    let (status, v) = admin("PUT", &url, Some(TOKEN), &damaged)?;
    ensure!(
        status == 422 && v["error"].as_str().is_some_and(|e| e.contains("snapshot refused")),
        "{status} {v}"
    );
    let (_, _, still) = post(&format!("{base}/v1/score"), "application/json", request)?;
    ensure!(still == first, "a refused snapshot changed the answer");

    // A good push, then rollback restores the first.
    ensure!(admin("PUT", &url, Some(TOKEN), &b.snapshot)?.0 == 200);
    let (_, _, second) = post(&format!("{base}/v1/score"), "application/json", request)?;
    ensure!(second == native(&b.snapshot, request)?);
    ensure!(admin("POST", &format!("{base}/v1/rollback"), None, b"")?.0 == 401);
    let (status, v) = admin("POST", &format!("{base}/v1/rollback"), Some(TOKEN), b"")?;
    ensure!(status == 200 && v["snapshot"]["model_id"] == "lr-parity-v1", "{status} {v}");
    let (_, _, back) = post(&format!("{base}/v1/score"), "application/json", request)?;
    ensure!(back == first, "rollback did not restore the first snapshot");

    let (_, status) = get(&format!("{base}/v1/status"))?;
    let status: Value = serde_json::from_str(&status)?;
    ensure!(status["snapshot"]["model_id"] == "lr-parity-v1", "{status}");
    ensure!(status["previous_snapshot"]["model_id"] == "gbdt-parity-v1", "{status}");
    ensure!(status["counts"]["refused"] == 1, "{status}");
    Ok(())
}

#[test]
fn a_retried_transaction_gets_its_first_decision_and_is_counted_once() -> Result<()> {
    let (a, b) = (lr(), gbdt());
    let (server, base) = start(Some(&a.snapshot), ServiceConfig::default())?;
    let request = br#"{"transaction_id":"retry-1","customer_id":"5","terminal_id":"9","amount":180.5,"time":1533956400}"#;
    let (_, _, first) = post(&format!("{base}/v1/score"), "application/json", request)?;
    ensure!(first.starts_with(br#"{"ok":true"#), "{}", String::from_utf8_lossy(&first));
    // Swap the model: a fresh transaction gets the new answer, the retry the first one.
    admin("PUT", &format!("{base}/v1/snapshot"), Some(TOKEN), &b.snapshot)?;
    ensure!(native(&b.snapshot, request)? != first, "both models answer alike; the test would prove nothing");
    let (status, _, again) = post(&format!("{base}/v1/score"), "application/json", request)?;
    ensure!(status == 200 && again == first, "the retry got another answer");
    let fresh = br#"{"transaction_id":"retry-2","customer_id":"5","terminal_id":"9","amount":180.5,"time":1533956400}"#;
    let (_, _, other) = post(&format!("{base}/v1/score"), "application/json", fresh)?;
    ensure!(other == native(&b.snapshot, fresh)?);
    let metrics = get(&format!("{base}/metrics"))?.1;
    ensure!(metrics.contains("tollgate_idempotent_replays_total 1"), "{metrics}");
    let decisions: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("tollgate_decisions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    ensure!(decisions == 2, "{decisions} decisions counted for 2 transactions and a retry:\n{metrics}");
    // A replay names the snapshot that answered the first time, like any answer.
    let replayed = ureq::post(&format!("{base}/v1/score"))
        .header("content-type", "application/json")
        .send(&request[..])?;
    let header = |name: &str| replayed.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    ensure!(header("x-tollgate-replay").as_deref() == Some("true"));
    ensure!(
        header("x-tollgate-snapshot").as_deref() == Some("tg-parity-lr-parity-v1"),
        "{:?}",
        replayed.headers()
    );
    drop(server);
    Ok(())
}

#[test]
fn bad_requests_get_clear_4xx_answers() -> Result<()> {
    let f = lr();
    let config =
        ServiceConfig { max_body: 4096, body_timeout: Duration::from_millis(300), ..Default::default() };
    let (_server, base) = start(Some(&f.snapshot), config)?;
    let url = format!("{base}/v1/score");
    // A slow client: headers, then a body that stalls after 10 of 100 bytes. 408 after the body
    // timeout, and the connection is not held.
    let mut slow = std::net::TcpStream::connect(base.trim_start_matches("http://"))?;
    slow.set_read_timeout(Some(Duration::from_secs(10)))?;
    let t = Instant::now();
    slow.write_all(
        b"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"customer",
    )?;
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    ensure!(answer.starts_with("HTTP/1.1 408"), "a stalled body got: {answer:?}");
    ensure!(answer.contains(r#""error_kind":"request_timeout""#), "{answer}");
    ensure!(t.elapsed() < Duration::from_secs(5), "the 408 took {:?}", t.elapsed());
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("application/json", b"{\"customer_id\":1,".to_vec(), 400, "is not valid JSON"),
        (
            "application/json",
            br#"{"customer_id":1,"amount":1,"time":0}"#.to_vec(),
            400,
            "terminal_id: is missing",
        ),
        (
            "application/json",
            br#"{"customer_id":1,"terminal_id":2,"amount":"12","time":0}"#.to_vec(),
            400,
            "amount",
        ),
        (
            "application/json",
            br#"{"customer_id":1,"terminal_id":2,"amount":-5,"time":0}"#.to_vec(),
            400,
            "amount: must be a finite number >= 0",
        ),
        (
            "application/json",
            br#"{"customer_id":1,"terminal_id":2,"amount":1,"time":"noon"}"#.to_vec(),
            400,
            "time",
        ),
        (
            "application/json",
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000)).into_bytes(),
            413,
            "larger than the limit",
        ),
        ("text/plain", br#"{"customer_id":1}"#.to_vec(), 415, "content-type"),
        ("application/msgpack", br#"{"customer_id":1}"#.to_vec(), 400, "does not look like MessagePack"),
        ("application/msgpack", vec![0xc1], 400, "request: must be a map"),
    ];
    for (ct, body, want_status, want_text) in cases {
        let (status, _, answer) = post(&url, ct, &body)?;
        let text = String::from_utf8_lossy(&answer);
        ensure!(
            status == want_status && text.contains(want_text),
            "{ct} {}: {status} {text}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
    }
    // An unknown entity is not an error: it scores from the cold start.
    let (status, _, answer) = post(
        &url,
        "application/json",
        br#"{"customer_id":"never-seen","terminal_id":"nor-this","amount":12.5,"time":1533956400}"#,
    )?;
    ensure!(status == 200 && String::from_utf8_lossy(&answer).contains(r#""CUSTOMER_ID":false"#));
    let metrics = get(&format!("{base}/metrics"))?.1;
    for kind in ["bad_request", "too_large", "unsupported_media_type"] {
        ensure!(
            metrics.contains(&format!("tollgate_errors_total{{kind=\"{kind}\"}}")),
            "{kind} not counted:\n{metrics}"
        );
    }
    Ok(())
}

#[test]
fn health_status_and_metrics_report_the_serving_snapshot() -> Result<()> {
    let f = lr();
    let (_server, base) = start(Some(&f.snapshot), ServiceConfig::default())?;
    ensure!(get(&format!("{base}/healthz"))? == (200, "ok\n".to_string()));
    let (status, text) = get(&format!("{base}/readyz"))?;
    ensure!(status == 200 && text.contains("tg-parity-lr-parity-v1"), "{text}");
    for r in f.json_requests().iter().take(20) {
        post(&format!("{base}/v1/score"), "application/json", r.as_bytes())?;
    }
    let metrics = get(&format!("{base}/metrics"))?.1;
    for needle in [
        "tollgate_score_latency_seconds_bucket",
        "tollgate_score_latency_seconds_count 20",
        "tollgate_decisions_total{decision=\"allow\",fallback=\"false\"}",
        "tollgate_snapshot_age_seconds",
    ] {
        ensure!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    let status: Value = serde_json::from_str(&get(&format!("{base}/v1/status"))?.1)?;
    ensure!(status["snapshot"]["snapshot_id"] == "tg-parity-lr-parity-v1", "{status}");
    ensure!(status["counts"]["scored"].as_u64().context("no count")? >= 20, "{status}");
    Ok(())
}

/// The bodies a webhook received.
type Received = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A webhook receiver: a real HTTP server that records every body POSTed to it.
fn webhook() -> Result<(String, Received, std::thread::JoinHandle<()>)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut len = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok() {
                seen.lock().map(|mut g| g.push(String::from_utf8_lossy(&body).into_owned())).ok();
            }
            let _ = (&stream).write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
            if body.starts_with(b"stop") {
                break;
            }
        }
    });
    Ok((url, got, thread))
}

#[test]
fn review_and_decline_decisions_are_posted_to_webhooks_and_a_down_webhook_is_counted() -> Result<()> {
    let f = lr();
    let (url, received, receiver) = webhook()?;
    // A port nothing listens on: bound, then closed.
    let down = format!("http://{}/hook", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?);
    let alerts = host::service::AlertConfig {
        webhooks: vec![url.clone(), down],
        attempts: 2,
        backoff: std::time::Duration::from_millis(10),
        ..Default::default()
    };
    let (server, base) = start(Some(&f.snapshot), ServiceConfig { alerts, ..Default::default() })?;
    // Above the policy's amount cap of 400: declined by the AMOUNT_CAP rule.
    let decline =
        br#"{"transaction_id":"big-1","customer_id":"5","terminal_id":"9","amount":950.0,"time":1533956400}"#;
    let allow =
        br#"{"transaction_id":"small-1","customer_id":"new-c","terminal_id":"new-t","amount":1.0,"time":1533956400}"#;
    let t = std::time::Instant::now();
    let (_, _, body) = post(&format!("{base}/v1/score"), "application/json", decline)?;
    ensure!(String::from_utf8_lossy(&body).contains(r#""decision":"decline""#));
    let (_, _, body) = post(&format!("{base}/v1/score"), "application/json", allow)?;
    ensure!(
        String::from_utf8_lossy(&body).contains(r#""decision":"allow""#),
        "{}",
        String::from_utf8_lossy(&body)
    );
    ensure!(t.elapsed() < std::time::Duration::from_secs(2), "scoring waited on the webhooks");
    // Wait (bounded) for the sender to deliver and to give up on the down webhook.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut metrics = String::new();
    while std::time::Instant::now() < deadline {
        metrics = get(&format!("{base}/metrics"))?.1;
        if metrics.contains("tollgate_alerts_failed_total 1")
            && metrics.contains("tollgate_alerts_sent_total 1")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ensure!(metrics.contains("tollgate_alerts_sent_total 1"), "{metrics}");
    ensure!(metrics.contains("tollgate_alerts_failed_total 1"), "{metrics}");
    ensure!(metrics.contains("tollgate_alert_retries_total 1"), "{metrics}");
    let got = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    ensure!(got.len() == 1 && got[0].contains("big-1") && got[0].contains("AMOUNT_CAP"), "{got:?}");
    drop(server);
    agent().post(&url).send(&b"stop"[..])?;
    receiver.join().map_err(|_| anyhow::anyhow!("the webhook thread panicked"))?;
    Ok(())
}

#[test]
fn a_shadow_snapshot_is_pushed_compared_and_promoted_over_http() -> Result<()> {
    let (live, candidate) = (lr(), gbdt());
    // No idempotency: the same transactions are scored again after the promotion.
    let config = ServiceConfig { idempotency_window: std::time::Duration::ZERO, ..Default::default() };
    let (_server, base) = start(Some(&live.snapshot), config)?;
    let shadow = format!("{base}/v1/shadow");
    ensure!(get(&shadow)?.0 == 404, "a shadow report without a shadow");
    ensure!(admin("PUT", &shadow, None, &candidate.snapshot)?.0 == 401, "a shadow push without a token");
    let (status, v) = admin("PUT", &shadow, Some(TOKEN), &candidate.snapshot)?;
    ensure!(status == 200 && v["shadow"]["model_id"] == "gbdt-parity-v1", "{status} {v}");
    let json: Vec<&str> = candidate.json_requests().into_iter().take(100).collect();
    for r in &json {
        // Only the live snapshot answers.
        let (_, _, body) = post(&format!("{base}/v1/score"), "application/json", r.as_bytes())?;
        ensure!(body == native(&live.snapshot, r.as_bytes())?, "the shadow answered");
    }
    let (status, report) = get(&shadow)?;
    let report: Value = serde_json::from_str(&report)?;
    ensure!(status == 200 && report["compared"] == json.len(), "{status} {report}");
    ensure!(report["candidate"]["model_id"] == "gbdt-parity-v1", "{report}");
    let cells: u64 = report["decisions"]
        .as_object()
        .context("no decision matrix")?
        .values()
        .flat_map(|row| row.as_object().into_iter().flat_map(|r| r.values().filter_map(Value::as_u64)))
        .sum();
    ensure!(cells == json.len() as u64, "the matrix holds {cells} of {} transactions", json.len());
    let (_, status_text) = get(&format!("{base}/v1/status"))?;
    ensure!(status_text.contains("gbdt-parity-v1"), "status does not name the shadow: {status_text}");
    // Promote: the candidate answers from now on.
    let promote = format!("{base}/v1/shadow/promote");
    ensure!(admin("POST", &promote, None, b"")?.0 == 401, "a promotion without a token");
    let (status, v) = admin("POST", &promote, Some(TOKEN), b"")?;
    ensure!(status == 200 && v["promoted"]["compared"] == json.len(), "{status} {v}");
    let (_, _, body) = post(&format!("{base}/v1/score"), "application/json", json[0].as_bytes())?;
    ensure!(
        body == native(&candidate.snapshot, json[0].as_bytes())?,
        "the promoted snapshot does not answer"
    );
    ensure!(admin("POST", &promote, Some(TOKEN), b"")?.0 == 409, "promoted twice");
    // A shadow can be dropped.
    ensure!(admin("PUT", &shadow, Some(TOKEN), &live.snapshot)?.0 == 200);
    let (status, v) = admin("DELETE", &shadow, Some(TOKEN), b"")?;
    ensure!(status == 200 && v["dropped"]["candidate"]["model_id"] == "lr-parity-v1", "{status} {v}");
    ensure!(get(&shadow)?.0 == 404, "a dropped shadow still reports");
    Ok(())
}
