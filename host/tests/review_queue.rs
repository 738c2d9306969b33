//! The analysts' loop over the real service: `GET /v1/reviews` lists the decision log's review
//! decisions (from its Parquet files at start, then as they are logged), `POST /v1/labels`
//! publishes a verdict to a real Kafka-protocol broker (librdkafka's mock cluster), where the
//! continuous exporter's own label reader (`pipeline::message::Label`) accepts it; CORS lets the
//! demo page's origin call both.

use anyhow::{Context, Result, ensure};
use host::decision_log::{
    self, DecisionLog, DecisionLogConfig, DecisionLogCounters, DecisionRecord, KafkaTopic,
};
use host::service::{ServiceConfig, spawn};
use host::{Scorer, ScorerConfig};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use scorer::policy::Decision;
use serde_json::Value;
use tollgate_tests::kafka::read_topic;
use tollgate_tests::parity::{fixture, logistic, signer};
use tollgate_tests::scorer_wasm;

const TOKEN: &str = "analyst-token";
const PAGE: &str = "http://127.0.0.1:8080";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Status and JSON body of a call, with the token and an Origin header when given.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> Result<(u16, Value)> {
    let a = agent();
    let mut r = match (method, body) {
        ("POST", Some(body)) => {
            let mut req = a.post(url).header("content-type", "application/json");
            if let Some(t) = token {
                req = req.header("authorization", &format!("Bearer {t}"));
            }
            req.send(body.as_bytes())?
        }
        _ => {
            let mut req = a.get(url);
            if let Some(t) = token {
                req = req.header("authorization", &format!("Bearer {t}"));
            }
            req.call()?
        }
    };
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?))
}

fn logged(i: u64, decision: Decision) -> DecisionRecord {
    DecisionRecord {
        decided_at_us: 1_764_000_000_000_000 + i as i64,
        request_id: format!("seed-{i}"),
        batch_index: None,
        transaction_id: Some((500 + i).to_string()),
        customer_key: Some(i),
        terminal_key: Some(i + 1),
        amount: Some(100.0 + i as f64),
        score: Some(0.6),
        decision,
        rules: vec![],
        reasons: vec![decision_log::Reason {
            feature: "TX_AMOUNT".into(),
            value: Some(100.0),
            contribution: Some(0.4),
        }],
        snapshot_id: Some("tg-seed".into()),
        model_id: Some("lr".into()),
        latency_us: 9,
        fallback: None,
        shadow: None,
    }
}

fn transaction_ids(reviews: &Value) -> Vec<String> {
    reviews["reviews"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["transaction_id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn reviews_come_from_the_log_and_verdicts_reach_the_labels_topic() -> Result<()> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("labels", 2, 1)?;
    let dir = tempfile::tempdir()?;
    {
        // An earlier run's decisions, already rolled into Parquet: every third is a review.
        let log = DecisionLog::open(
            DecisionLogConfig::new(dir.path()),
            signer().id_hash().clone(),
            DecisionLogCounters::default(),
        )?;
        let rows = (0..30).map(|i| logged(i, if i % 3 == 0 { Decision::Review } else { Decision::Allow }));
        let _ = log.append(rows.collect()).wait_blocking();
        log.roll();
    }
    let fixture = fixture(&logistic(), "lr-review-v1")?;
    let scorer = Scorer::new(
        ScorerConfig::default(),
        &std::fs::read(scorer_wasm()?)?,
        &signer().edge_key().to_text(),
    )?;
    scorer.load_snapshot(fixture.snapshot.clone())?;
    let config = ServiceConfig {
        admin_token: Some(TOKEN.into()),
        decision_log: Some(DecisionLogConfig::new(dir.path())),
        labels: Some(KafkaTopic { brokers: cluster.bootstrap_servers(), topic: "labels".into() }),
        allow_origins: vec![PAGE.into()],
        ..ServiceConfig::default()
    };
    let running = spawn(scorer, config, "127.0.0.1:0".parse()?, 2)?;
    let base = format!("http://{}", running.addr);

    // Analysts only.
    let (status, _) = call("GET", &format!("{base}/v1/reviews"), None, None)?;
    ensure!(status == 401, "no token: {status}");
    // The earlier run's reviews, newest first.
    let (status, body) = call("GET", &format!("{base}/v1/reviews?limit=4"), Some(TOKEN), None)?;
    ensure!(status == 200, "{body}");
    ensure!(transaction_ids(&body) == ["527", "524", "521", "518"], "{body}");
    ensure!(body["reviews"][0]["amount"] == 127.0 && body["reviews"][0]["verdict"].is_null(), "{body}");

    // Live decisions: the reviews among the answers join the queue, newest first.
    let mut live_reviews = Vec::new();
    for (i, request) in
        fixture.requests.iter().enumerate().filter(|(_, r)| r.first() == Some(&b'{')).take(300)
    {
        let mut r = agent()
            .post(&format!("{base}/v1/score"))
            .header("content-type", "application/json")
            .send(request)?;
        let answer: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
        if answer["decision"] == "review" {
            let id = answer["transaction_id"].to_string().trim_matches('"').to_string();
            live_reviews.push((i, id));
        }
    }
    let (_, body) = call("GET", &format!("{base}/v1/reviews?limit=1000"), Some(TOKEN), None)?;
    let ids = transaction_ids(&body);
    ensure!(
        ids.len() == 10 + live_reviews.len(),
        "{} reviews listed, {} live",
        ids.len(),
        live_reviews.len()
    );
    let newest: Vec<String> = live_reviews.iter().rev().map(|(_, id)| id.clone()).collect();
    ensure!(ids[..newest.len()] == newest[..], "live reviews first, newest first");

    // A verdict: published, then marked in the queue.
    let (status, body) = call(
        "POST",
        &format!("{base}/v1/labels"),
        Some(TOKEN),
        Some(r#"{"transaction_id":"524","fraud":true,"reported_at":1533956400}"#),
    )?;
    ensure!(status == 200 && body["topic"] == "labels" && body["offset"].as_i64().is_some(), "{body}");
    let (_, body) = call("GET", &format!("{base}/v1/reviews?limit=1000"), Some(TOKEN), None)?;
    let marked = body["reviews"].as_array().context("reviews")?.iter().find(|r| r["transaction_id"] == "524");
    ensure!(marked.is_some_and(|r| r["verdict"] == "fraud"), "{body}");

    // Bad verdicts are refused, naming the field; nothing is published for them.
    let (status, body) =
        call("POST", &format!("{base}/v1/labels"), Some(TOKEN), Some(r#"{"transaction_id":"524"}"#))?;
    ensure!(status == 400 && body["error"].as_str().is_some_and(|e| e.contains("fraud")), "{body}");
    let long = format!(r#"{{"transaction_id":"{}","fraud":false}}"#, "9".repeat(200));
    let (status, _) = call("POST", &format!("{base}/v1/labels"), Some(TOKEN), Some(&long))?;
    ensure!(status == 400, "a 200-byte id: {status}");
    let (status, _) =
        call("POST", &format!("{base}/v1/labels"), None, Some(r#"{"transaction_id":"1","fraud":true}"#))?;
    ensure!(status == 401, "no token: {status}");

    // Exactly one message on the topic, which the continuous exporter reads as a label.
    let messages = read_topic(&cluster.bootstrap_servers(), "labels", 2, 1)?;
    ensure!(messages.len() == 1, "{} label messages", messages.len());
    let label = pipeline::message::Label::decode(messages[0].payload().context("payload")?)
        .map_err(|e| anyhow::anyhow!("the exporter refuses the label: {e:?}"))?;
    ensure!(&*label.transaction_id == b"524" && label.fraud && label.reported_at.0 == 1_533_956_400);
    ensure!(messages[0].key() == Some(b"524".as_slice()), "keyed by transaction id");

    // CORS: the page's origin may call, another may not.
    let preflight = |origin: &str| -> Result<Option<String>> {
        let r = agent()
            .options(&format!("{base}/v1/reviews"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .call()?;
        Ok(r.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()).map(str::to_string))
    };
    ensure!(preflight(PAGE)?.as_deref() == Some(PAGE), "the page's origin is allowed");
    ensure!(preflight("http://evil.example")?.is_none(), "another origin is not");
    Ok(())
}
