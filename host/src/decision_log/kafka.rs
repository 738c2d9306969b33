//! Publishing the decision log's rows to a Kafka topic (rdkafka), for the consumers that want
//! decisions as a stream: case management, the alerts pipeline, the feature exporter's labels
//! loop. Each row is one message: its JSON (the [`DecisionRecord`] fields) keyed by the
//! transaction id (else the request id), so one transaction's decisions stay in one partition.
//!
//! Publishing never holds up scoring or the log: rows are handed to librdkafka's queue from the
//! log's writer thread; a full queue or a failed delivery is counted
//! (`DecisionLogCounters::{published, publish_failed}`) and reported on stderr, never retried
//! past librdkafka's own retries (the Parquet files keep every row either way).

use super::{DecisionLogCounters, DecisionLogError, DecisionRecord, KafkaTopic, Reporter};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::sync::Arc;
use std::time::Duration;

/// How long closing the log waits for messages still in librdkafka's queue.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts deliveries as librdkafka reports them.
struct Deliveries {
    counters: DecisionLogCounters,
    reporter: Arc<Reporter>,
}

impl rdkafka::ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.counters.published.inc();
            }
            Err((e, _)) => {
                self.counters.publish_failed.inc();
                self.reporter.fault(|| format!("a decision was not delivered to Kafka: {e}"));
            }
        }
    }
}

/// The producer of one decision topic.
pub(crate) struct KafkaSink {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    counters: DecisionLogCounters,
    reporter: Arc<Reporter>,
}

impl KafkaSink {
    /// Connects (lazily: librdkafka connects in the background) to the topic's brokers.
    pub(crate) fn open(
        topic: &KafkaTopic,
        counters: &DecisionLogCounters,
        reporter: &Arc<Reporter>,
    ) -> Result<KafkaSink, DecisionLogError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &topic.brokers)
            // No duplicates from librdkafka's own retries, and every in-sync replica acknowledges.
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create_with_context(Deliveries { counters: counters.clone(), reporter: reporter.clone() })
            .map_err(|e| DecisionLogError::Kafka { topic: topic.topic.clone(), message: e.to_string() })?;
        Ok(KafkaSink {
            producer,
            topic: topic.topic.clone(),
            counters: counters.clone(),
            reporter: reporter.clone(),
        })
    }

    /// Queues one row for the topic; a row that cannot be queued is counted as failed.
    pub(crate) fn publish(&self, row: &DecisionRecord) {
        let payload = match serde_json::to_vec(row) {
            Ok(p) => p,
            Err(e) => {
                self.counters.publish_failed.inc();
                self.reporter.fault(|| format!("a decision could not be encoded for Kafka: {e}"));
                return;
            }
        };
        let key = row.transaction_id.as_deref().unwrap_or(&row.request_id);
        let record = BaseRecord::to(&self.topic).key(key).payload(&payload);
        if let Err((e, _)) = self.producer.send(record) {
            self.counters.publish_failed.inc();
            self.reporter.fault(|| format!("a decision could not be queued for Kafka: {e}"));
        }
    }

    /// Waits (bounded) until every queued message is delivered or has failed.
    pub(crate) fn flush(&self) {
        if let Err(e) = self.producer.flush(FLUSH_TIMEOUT) {
            let left = self.producer.in_flight_count();
            self.reporter.fault(|| format!("{left} decisions still queued for Kafka at close: {e}"));
        }
    }
}
