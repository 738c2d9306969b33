//! The producer side, for tests and demos: a transaction history written to the two topics as
//! the exporter reads them: each row a score request (key: the customer id), and for each fraud
//! a label reported at a seeded random time within a maximum delay, each topic in event-time
//! order (so every partition is too). For a scale-out, optionally a second copy of each
//! transaction keyed by its terminal id.

use crate::message::Label;
use exporter::Transactions;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use scorer::Timestamp;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What to replay where.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The transactions topic.
    pub transactions: String,
    /// The labels topic.
    pub labels: String,
    /// Scale-out: also write every transaction here, keyed by terminal id (in production a
    /// re-keying stage or the gateway writes it).
    pub by_terminal: Option<String>,
    /// Each fraud's label is reported 1 second to this many seconds after the transaction.
    pub label_delay_max: Duration,
    /// Seed of the label delays.
    pub seed: u64,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker did not acknowledge some messages.
    #[error("{failed} messages were not delivered; the first failure: {first}")]
    Undelivered {
        /// How many.
        failed: u64,
        /// The first failure.
        first: String,
    },
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Transaction messages.
    pub transactions: u64,
    /// Label messages.
    pub labels: u64,
}

/// The labels of a history's frauds: (report time, transaction index), in report-time order.
pub fn label_times(tx: &Transactions, delay_max: Duration, seed: u64) -> Vec<(Timestamp, usize)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let max = i64::try_from(delay_max.as_secs()).unwrap_or(i64::MAX).max(1);
    let mut labels: Vec<(Timestamp, usize)> = (0..tx.len())
        .filter(|&i| tx.fraud[i] != 0)
        .map(|i| (tx.time[i].plus_seconds(rng.random_range(1..=max)), i))
        .collect();
    labels.sort_by_key(|&(t, i)| (t, i));
    labels
}

#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Writes the history's transactions and labels to the topics and waits until every message is
/// acknowledged.
pub fn replay(tx: &Transactions, config: &ReplayConfig) -> Result<ReplayCounts, ReplayError> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        // In order per partition, even through retries.
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        // JSON requests compress about 5x: more history fits a broker's retention.
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .create_with_context(Deliveries::default())?;
    let send = |topic: &str, key: &str, payload: &[u8], time: Timestamp| -> Result<(), KafkaError> {
        let mut record =
            BaseRecord::to(topic).key(key).payload(payload).timestamp(time.0.saturating_mul(1000));
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(20));
                }
                Err((e, _)) => return Err(e),
            }
        }
    };
    let mut counts = ReplayCounts::default();
    for i in 0..tx.len() {
        let request = tx.score_request(i);
        send(&config.transactions, tx.customers.id(tx.customer[i]), request.as_bytes(), tx.time[i])?;
        counts.transactions += 1;
        if let Some(topic) = &config.by_terminal {
            send(topic, tx.terminals.id(tx.terminal[i]), request.as_bytes(), tx.time[i])?;
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    for (at, i) in label_times(tx, config.label_delay_max, config.seed) {
        let label = Label::new(tx.transaction_id[i], true, at);
        let payload = serde_json::to_vec(&label).unwrap_or_default();
        send(&config.labels, tx.customers.id(tx.customer[i]), &payload, at)?;
        counts.labels += 1;
    }
    producer.flush(Duration::from_secs(120))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = producer.context().first.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
        return Err(ReplayError::Undelivered { failed, first });
    }
    Ok(counts)
}
