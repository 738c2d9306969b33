//! The decision log end to end: the real service on 127.0.0.1:0 over the real `scorer.wasm`
//! scores single requests (JSON and MessagePack), a batch, an idempotent retry and a fallback;
//! the Parquet files are read back with the parquet crate and every field of every row checked
//! against the responses the client got.

use anyhow::{Context, Result, ensure};
use arrow_schema::{DataType, TimeUnit};
use host::decision_log::{self, DecisionLog, DecisionLogConfig, DecisionLogCounters, DecisionRecord};
use host::service::{Running, ServiceConfig, spawn};
use host::{Fallback, Scorer, ScorerConfig};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use scorer::policy::Decision;
use scorer::score::Scorer as NativeScorer;
use scorer::snapshot::Snapshot;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tollgate_tests::guests::MISBEHAVING;
use tollgate_tests::parity::{Fixture, fixture, logistic, signer, trees};
use tollgate_tests::scorer_wasm;

fn lr() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixture(&logistic(), "lr-parity-v1").expect("the parity fixture builds"))
}

fn start(wasm: &[u8], config: ScorerConfig, log: DecisionLogConfig) -> Result<(Running, String)> {
    let scorer = Scorer::new(config, wasm, &signer().edge_key().to_text())?;
    scorer.load_snapshot(lr().snapshot.clone())?;
    let config = ServiceConfig { decision_log: Some(log), ..ServiceConfig::default() };
    let running = spawn(scorer, config, "127.0.0.1:0".parse()?, 2)?;
    let base = format!("http://{}", running.addr);
    Ok((running, base))
}

/// What the client saw of one answer.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn post(url: &str, content_type: &str, request_id: Option<&str>, body: &[u8]) -> Result<Answer> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.post(url).header("content-type", content_type);
    if let Some(id) = request_id {
        req = req.header("x-request-id", id);
    }
    let mut r = req.send(body)?;
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Ok(Answer { status: r.status().as_u16(), headers, body: r.body_mut().read_to_vec()? })
}

/// A response as the scorer wrote it, floats kept as their exact text.
#[derive(Deserialize)]
struct Response<'a> {
    ok: bool,
    #[serde(borrow)]
    transaction_id: Option<&'a RawValue>,
    #[serde(borrow)]
    score: Option<&'a RawValue>,
    decision: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default, borrow)]
    reasons: Vec<ResponseReason<'a>>,
    snapshot_id: Option<String>,
    model_id: Option<String>,
    fallback: Option<String>,
}

#[derive(Deserialize)]
struct ResponseReason<'a> {
    feature: String,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    #[serde(borrow)]
    contribution: Option<&'a RawValue>,
}

fn exact(raw: Option<&RawValue>) -> Result<Option<f64>> {
    Ok(match raw {
        Some(r) => Some(r.get().parse::<f64>().with_context(|| format!("{} is not a number", r.get()))?),
        None => None,
    })
}

/// The row a JSON response must have been logged as (request fields given by the test).
fn expected(
    response: &Response<'_>,
    request_id: &str,
    batch_index: Option<u32>,
    ids: (&str, &str),
    amount: f64,
) -> Result<DecisionRecord> {
    let key = signer().id_hash().clone();
    let decision = decision_log::parse_decision(response.decision.as_deref().unwrap_or(""))
        .context("the response has no decision")?;
    Ok(DecisionRecord {
        decided_at_us: 0,
        request_id: request_id.to_string(),
        batch_index,
        transaction_id: response.transaction_id.map(|t| t.get().trim_matches('"').to_string()),
        customer_key: Some(key.hash(ids.0.as_bytes()).0),
        terminal_key: Some(key.hash(ids.1.as_bytes()).0),
        amount: Some(amount),
        score: exact(response.score)?,
        decision,
        rules: response.rules.clone(),
        reasons: response
            .reasons
            .iter()
            .map(|r| {
                Ok(decision_log::Reason {
                    feature: r.feature.clone(),
                    value: exact(r.value)?,
                    contribution: exact(r.contribution)?,
                })
            })
            .collect::<Result<_>>()?,
        snapshot_id: response.snapshot_id.clone(),
        model_id: response.model_id.clone(),
        latency_us: 0,
        fallback: response.fallback.clone(),
        shadow: None,
    })
}

/// Checks the columns a generic reader sees: names, types, nullability, as `docs/host.md` says.
fn check_schema(file: &Path) -> Result<usize> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file)?)?;
    let schema = reader.schema().clone();
    let columns: Vec<(&str, DataType, bool)> =
        schema.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable())).collect();
    let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
    ensure!(
        names
            == [
                "decided_at",
                "request_id",
                "batch_index",
                "transaction_id",
                "customer_key",
                "terminal_key",
                "amount",
                "score",
                "decision",
                "rules",
                "reasons",
                "snapshot_id",
                "model_id",
                "latency_us",
                "fallback",
                "shadow_snapshot_id",
                "shadow_model_id",
                "shadow_score",
                "shadow_decision",
                "shadow_rules",
                "shadow_fallback",
                "shadow_error"
            ],
        "{names:?}"
    );
    ensure!(columns[0].1 == DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())) && !columns[0].2);
    ensure!(columns[4].1 == DataType::Int64 && columns[7].1 == DataType::Float64 && columns[7].2);
    ensure!(
        matches!(&columns[10].1, DataType::List(item) if matches!(item.data_type(), DataType::Struct(f) if f.len() == 3))
    );
    let rows: usize = reader.build()?.map(|b| b.map(|b| b.num_rows())).sum::<Result<usize, _>>()?;
    Ok(rows)
}

#[test]
fn every_decision_is_logged_once_to_parquet_with_every_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let wasm = std::fs::read(scorer_wasm()?)?;
    let log = DecisionLogConfig { durable: true, rotate_rows: 4, ..DecisionLogConfig::new(dir.path()) };
    let (server, base) = start(&wasm, ScorerConfig::default(), log)?;
    let began = decision_log::now_us();
    let mut want: Vec<DecisionRecord> = Vec::new();
    let request = |i: usize, customer: &str, terminal: &str, amount: f64| {
        format!(
            r#"{{"transaction_id":"tx-{i}","customer_id":"{customer}","TERMINAL_ID":{terminal},"amount":{amount},"time":1533956400,"extra":{{"x":[1]}}}}"#
        )
    };
    let cases = [("5", "9", 180.5), ("42", "7", 20.0), ("3", "11", 12.25), ("new-1", "700001", 999.99)];
    // Single JSON requests, with and without the caller's request id.
    for (i, (customer, terminal, amount)) in cases.iter().enumerate() {
        let given = format!("req-{i}");
        let request_id = (i % 2 == 0).then_some(given.as_str());
        let a = post(
            &format!("{base}/v1/score"),
            "application/json",
            request_id,
            request(i, customer, terminal, *amount).as_bytes(),
        )?;
        ensure!(a.status == 200, "{}", String::from_utf8_lossy(&a.body));
        ensure!(a.headers.get("x-tollgate-durable").map(String::as_str) == Some("true"), "{:?}", a.headers);
        let id = a.headers.get("x-request-id").context("no x-request-id")?.clone();
        if let Some(given) = request_id {
            ensure!(id == given, "the caller's request id was not kept: {id}");
        }
        let response: Response<'_> = serde_json::from_slice(&a.body)?;
        ensure!(response.ok);
        want.push(expected(&response, &id, None, (customer, terminal), *amount)?);
    }
    // An idempotent retry is answered from the window and not logged again.
    let again =
        post(&format!("{base}/v1/score"), "application/json", None, request(0, "5", "9", 180.5).as_bytes())?;
    ensure!(again.headers.get("x-tollgate-replay").map(String::as_str) == Some("true"));
    // A request the scorer refuses is not a decision: no row.
    let bad = post(&format!("{base}/v1/score"), "application/json", None, br#"{"customer_id":"1"}"#)?;
    ensure!(bad.status == 400);
    // A batch: one row per decision, the refused item (index 2) left out.
    let items = [
        request(10, "77", "2", 1.5),
        request(11, "8", "3", 450.0),
        r#"{"transaction_id":"tx-12","amount":"twelve"}"#.to_string(),
        request(13, "9", "4", 0.0),
    ];
    let a = post(
        &format!("{base}/v1/score/batch"),
        "application/json",
        Some("batch-1"),
        format!("[{}]", items.join(",")).as_bytes(),
    )?;
    ensure!(a.status == 200 && a.headers.get("x-tollgate-durable").map(String::as_str) == Some("true"));
    let responses: Vec<Response<'_>> = serde_json::from_slice(&a.body)?;
    ensure!(responses.len() == 4 && !responses[2].ok);
    for (i, ids, amount) in [(0, ("77", "2"), 1.5), (1, ("8", "3"), 450.0), (3, ("9", "4"), 0.0)] {
        want.push(expected(&responses[i], "batch-1", Some(i as u32), ids, amount)?);
    }
    // MessagePack: the same columns, read from a MessagePack response.
    let msgpack = rmp_serde::to_vec_named(&serde_json::json!({
        "transaction_id": 99, "customer_id": 42, "terminal_id": "7", "tx_amount": 64.0, "time": 1533956400
    }))?;
    let a = post(&format!("{base}/v1/score"), "application/msgpack", Some("mp-1"), &msgpack)?;
    ensure!(a.status == 200);
    let mp = host::wire::parse(&a.body)?;
    let json = serde_json::to_vec(&mp)?;
    let response: Response<'_> = serde_json::from_slice(&json)?;
    let mut row = expected(&response, "mp-1", None, ("42", "7"), 64.0)?;
    // MessagePack carries the f64 itself (serde_json's re-read of its text may differ by an ulp).
    row.score = mp["score"].as_f64();
    for (r, v) in row.reasons.iter_mut().zip(mp["reasons"].as_array().into_iter().flatten()) {
        r.value = v["value"].as_f64();
        r.contribution = v["contribution"].as_f64();
    }
    want.push(row);

    let log = server.state.decision_log().context("no decision log")?;
    log.roll();
    ensure!(std::fs::read_dir(dir.path())?.flatten().all(|e| !e.path().to_string_lossy().ends_with(".wal")));
    let files = decision_log::files(dir.path())?;
    ensure!(files.len() >= 2, "4 rows per file, {} rows, {} files", want.len(), files.len());
    let mut generic_rows = 0;
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        ensure!(name.len() == "decisions-20260101T000000Z-000000.parquet".len(), "{name}");
        generic_rows += check_schema(f)?;
    }
    let got = decision_log::read_dir(dir.path())?;
    ensure!(generic_rows == got.len());
    ensure!(got.len() == want.len(), "{} rows logged, {} decisions made", got.len(), want.len());
    let ended = decision_log::now_us();
    for (g, w) in got.iter().zip(&want) {
        ensure!((began..=ended).contains(&g.decided_at_us), "decided_at {} out of the test", g.decided_at_us);
        ensure!(g.latency_us > 0 && g.latency_us < 10_000_000, "latency {}", g.latency_us);
        let g = DecisionRecord { decided_at_us: 0, latency_us: 0, ..g.clone() };
        ensure!(g == *w, "logged {g:?}\nanswered {w:?}");
    }
    ensure!(got.iter().any(|r| !r.reasons.is_empty()) && got.iter().any(|r| !r.rules.is_empty()), "{got:?}");
    let metrics = host_metrics(&base)?;
    ensure!(metrics.contains(&format!("tollgate_decision_log_rows_total {}", want.len())), "{metrics}");
    ensure!(metrics.contains("tollgate_decision_log_dropped_total 0"), "{metrics}");
    ensure!(metrics.contains(r#"tollgate_decision_log_errors_total{stage="write"} 0"#), "{metrics}");
    let status: serde_json::Value =
        serde_json::from_str(&ureq::get(&format!("{base}/v1/status")).call()?.body_mut().read_to_string()?)?;
    let s = &status["decision_log"];
    ensure!(
        s["durable"] == true && s["rows"] == want.len() && s["dropped"] == 0 && s["files"] == files.len(),
        "{s}"
    );
    drop(server);
    Ok(())
}

fn host_metrics(base: &str) -> Result<String> {
    Ok(ureq::get(&format!("{base}/metrics")).call()?.body_mut().read_to_string()?)
}

#[test]
fn fallback_decisions_are_logged_and_marked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let wasm = wat::parse_str(MISBEHAVING)?;
    let config =
        ScorerConfig { budget: Duration::from_millis(20), fallback: Fallback::Closed, ..Default::default() };
    let (server, base) = start(&wasm, config, DecisionLogConfig::new(dir.path()))?;
    let a = post(
        &format!("{base}/v1/score"),
        "application/json",
        None,
        // A leading space: the guest loops on it (valid JSON all the same).
        br#" {"transaction_id":7,"customer_id":"c-1","terminal_id":"t-1","amount":10.5,"time":1}"#,
    )?;
    ensure!(a.status == 200 && a.headers.contains_key("x-tollgate-fallback"));
    ensure!(!a.headers.contains_key("x-tollgate-durable"), "not --durable: no durability header");
    let batch = br#" [{"transaction_id":"b-0","customer_id":"c-2","terminal_id":"t-2","amount":1,"time":1},{"transaction_id":"b-1"}]"#;
    let b = post(&format!("{base}/v1/score/batch"), "application/json", None, batch)?;
    ensure!(b.status == 200);
    // A clean stop rolls what is open into Parquet.
    server.stop()?;
    let rows = decision_log::read_dir(dir.path())?;
    ensure!(rows.len() == 3, "{rows:?}");
    let key = signer().id_hash().clone();
    ensure!(rows.iter().all(|r| r.decision == Decision::Decline && r.score.is_none()));
    ensure!(
        rows.iter().all(|r| r.fallback.as_deref().is_some_and(|f| f.starts_with("timeout: "))),
        "{rows:?}"
    );
    ensure!(rows[0].transaction_id.as_deref() == Some("7") && rows[0].amount == Some(10.5));
    ensure!(rows[0].customer_key == Some(key.hash(b"c-1").0) && rows[0].batch_index.is_none());
    ensure!(rows[1].batch_index == Some(0) && rows[1].terminal_key == Some(key.hash(b"t-2").0));
    // The second item has no ids: logged all the same, keys null.
    ensure!(rows[2].batch_index == Some(1) && rows[2].customer_key.is_none() && rows[2].amount.is_none());
    ensure!(rows.iter().all(|r| r.snapshot_id.as_deref() == Some("tg-parity-lr-parity-v1")));
    ensure!(std::fs::read_dir(dir.path())?.flatten().all(|e| !e.path().to_string_lossy().ends_with(".wal")));
    Ok(())
}

#[test]
fn shadow_answers_are_logged_beside_the_live_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let wasm = std::fs::read(scorer_wasm()?)?;
    let (server, base) = start(&wasm, ScorerConfig::default(), DecisionLogConfig::new(dir.path()))?;
    let candidate = fixture(&trees(), "gbdt-parity-v1")?;
    server.state.scorer().load_shadow(candidate.snapshot.clone())?;
    let edge = [signer().edge_key()];
    let mut shadow_native = NativeScorer::new(Snapshot::load(&candidate.snapshot, &edge)?);
    let requests: Vec<&str> = lr().json_requests().into_iter().take(40).collect();
    ensure!(requests.len() == 40);
    let mut want: Vec<(Decision, Option<f64>, Decision, Option<f64>)> = Vec::new();
    for r in &requests {
        let a = post(&format!("{base}/v1/score"), "application/json", None, r.as_bytes())?;
        ensure!(a.status == 200, "{}", String::from_utf8_lossy(&a.body));
        let live: Response<'_> = serde_json::from_slice(&a.body)?;
        let mut body = Vec::new();
        shadow_native.score_bytes(r.as_bytes(), &mut body);
        let shadow: Response<'_> = serde_json::from_slice(&body)?;
        let decision = |r: &Response<'_>| decision_log::parse_decision(r.decision.as_deref().unwrap_or(""));
        want.push((
            decision(&live).context("live decision")?,
            exact(live.score)?,
            decision(&shadow).context("shadow decision")?,
            exact(shadow.score)?,
        ));
    }
    // The same batch: one row per item, each with the shadow's answer to that item.
    let batch = format!("[{}]", requests[..5].join(","));
    ensure!(
        post(&format!("{base}/v1/score/batch"), "application/json", None, batch.as_bytes())?.status == 200
    );
    server.stop()?;
    let rows = decision_log::read_dir(dir.path())?;
    ensure!(rows.len() == requests.len() + 5, "{} rows", rows.len());
    let expected = want.iter().chain(&want[..5]);
    for (i, (row, (live, live_score, shadow, shadow_score))) in rows.iter().zip(expected).enumerate() {
        let s = row.shadow.as_ref().with_context(|| format!("row {i} has no shadow answer"))?;
        ensure!(row.decision == *live && row.score == *live_score, "row {i}: live {row:?}");
        ensure!(row.snapshot_id.as_deref() == Some("tg-parity-lr-parity-v1"), "row {i}: {row:?}");
        ensure!(s.decision == Some(*shadow) && s.score == *shadow_score, "row {i}: shadow {s:?}");
        ensure!(s.model_id.as_deref() == Some("gbdt-parity-v1") && s.error.is_none(), "row {i}: {s:?}");
    }
    ensure!(
        rows.iter().any(|r| r.score != r.shadow.as_ref().and_then(|s| s.score)),
        "the two models never differ: the test would not notice a mix-up"
    );
    Ok(())
}

#[test]
fn a_second_process_cannot_open_a_directory_in_use() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = signer().id_hash().clone();
    let first =
        DecisionLog::open(DecisionLogConfig::new(dir.path()), key.clone(), DecisionLogCounters::default())?;
    let second = DecisionLog::open(DecisionLogConfig::new(dir.path()), key, DecisionLogCounters::default());
    ensure!(matches!(second, Err(decision_log::DecisionLogError::Locked { .. })), "the lock did not hold");
    drop(first);
    Ok(())
}

fn row(i: u64) -> DecisionRecord {
    DecisionRecord {
        decided_at_us: decision_log::now_us(),
        request_id: format!("bench-{i}"),
        batch_index: None,
        transaction_id: Some(format!("t-{i}")),
        customer_key: Some(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        terminal_key: Some(i),
        amount: Some(42.5),
        score: Some(0.1234567890123),
        decision: Decision::Allow,
        rules: vec![],
        reasons: vec![decision_log::Reason {
            feature: "TERMINAL_ID_RISK_7DAY_WINDOW".into(),
            value: Some(0.25),
            contribution: Some(0.75),
        }],
        snapshot_id: Some("tg-bench".into()),
        model_id: Some("lr-bench".into()),
        latency_us: 30,
        fallback: None,
        shadow: None,
    }
}

/// Rows per second the log takes from `threads` callers that each wait for their row (as the
/// service does), durable or not, until every row is in Parquet.
/// `cargo test -p host --test decision_log measure -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn measure_log_throughput() -> Result<()> {
    for durable in [false, true] {
        let dir = tempfile::tempdir()?;
        let (threads, per_thread) = (64u64, if durable { 1_000u64 } else { 5_000 });
        let n = threads * per_thread;
        // The queue holds everything: this measures the writer, not the drops.
        let config =
            DecisionLogConfig { durable, queue_rows: n as usize, ..DecisionLogConfig::new(dir.path()) };
        let log = DecisionLog::open(config, signer().id_hash().clone(), DecisionLogCounters::default())?;
        let t = Instant::now();
        std::thread::scope(|s| {
            for k in 0..threads {
                let log = &log;
                s.spawn(move || {
                    for i in 0..per_thread {
                        let _ = log.append(vec![row(k * per_thread + i)]).wait_blocking();
                    }
                });
            }
        });
        log.roll();
        let took = t.elapsed();
        let rows = decision_log::read_dir(dir.path())?.len() as u64;
        ensure!(rows == n, "{rows} of {n} rows");
        println!(
            "durable={durable}: {n} rows from {threads} threads, in Parquet after {took:?}: {:.0} rows/s",
            n as f64 / took.as_secs_f64()
        );
    }
    Ok(())
}
