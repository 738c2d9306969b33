//! The decision log publishing to Kafka: a real Kafka-protocol broker (librdkafka's mock cluster
//! on 127.0.0.1), rows appended through the real log, read back from the topic by a real consumer:
//! every row once, as the JSON of its record, keyed by its transaction id.

use anyhow::{Context, Result, ensure};
use host::decision_log::{
    self, DecisionLog, DecisionLogConfig, DecisionLogCounters, DecisionRecord, KafkaTopic,
};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use scorer::policy::Decision;
use scorer::snapshot::IdHashKey;
use std::collections::BTreeMap;
use tollgate_tests::kafka::read_topic;

fn row(i: u64) -> DecisionRecord {
    DecisionRecord {
        decided_at_us: 1_764_000_000_000_000 + i as i64,
        request_id: format!("r-{i}"),
        batch_index: None,
        transaction_id: (i % 10 != 9).then(|| (1000 + i).to_string()),
        customer_key: Some(u64::MAX - i),
        terminal_key: Some(i),
        amount: Some(12.25 + i as f64),
        score: Some(i as f64 / 1000.0),
        decision: if i.is_multiple_of(4) { Decision::Review } else { Decision::Allow },
        rules: vec![],
        reasons: vec![decision_log::Reason {
            feature: "TX_AMOUNT".into(),
            value: Some(1.5),
            contribution: Some(0.5),
        }],
        snapshot_id: Some("tg-test".into()),
        model_id: None,
        latency_us: 40 + i,
        fallback: None,
        shadow: None,
    }
}

#[test]
fn every_decision_reaches_the_topic_once() -> Result<()> {
    const TOPIC: &str = "decisions";
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, 3, 1)?;
    let dir = tempfile::tempdir()?;
    let config = DecisionLogConfig {
        kafka: Some(KafkaTopic { brokers: cluster.bootstrap_servers(), topic: TOPIC.into() }),
        ..DecisionLogConfig::new(dir.path())
    };
    let counters = DecisionLogCounters::default();
    let log = DecisionLog::open(config, IdHashKey([3; 16]), counters.clone())?;
    let rows: Vec<DecisionRecord> = (0..300).map(row).collect();
    for chunk in rows.chunks(64) {
        let _ = log.append(chunk.to_vec()).wait_blocking();
    }
    // Closing the log flushes the producer.
    drop(log);
    ensure!(counters.published.get() == 300, "delivered: {}", counters.published.get());
    ensure!(counters.publish_failed.get() == 0, "failed: {}", counters.publish_failed.get());

    let messages = read_topic(&cluster.bootstrap_servers(), TOPIC, 3, 300)?;
    let mut got: BTreeMap<String, DecisionRecord> = BTreeMap::new();
    for message in &messages {
        let record: DecisionRecord =
            serde_json::from_slice(message.payload().context("a message has a payload")?)?;
        let key = std::str::from_utf8(message.key().context("a message has a key")?)?;
        let expected_key = record.transaction_id.as_deref().unwrap_or(&record.request_id);
        ensure!(key == expected_key, "key {key} for {expected_key}");
        ensure!(got.insert(record.request_id.clone(), record).is_none(), "a decision arrived twice");
    }
    // Every decision, and nothing more.
    ensure!(
        got.len() == 300 && messages.len() == 300,
        "{} messages, {} decisions of 300",
        messages.len(),
        got.len()
    );
    for r in &rows {
        ensure!(got.get(&r.request_id) == Some(r), "{} differs or is missing", r.request_id);
    }
    Ok(())
}
