//! The service's Prometheus metrics (prometheus-client, OpenMetrics text at `/metrics`).

use crate::monitor::DriftGauges;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// A decision label: `allow`, `review`, `decline`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// The decision.
    pub decision: &'static str,
    /// Whether it was the fallback (`true`) or the model's (`false`).
    pub fallback: &'static str,
}

/// An error label: what kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `bad_request`, `no_snapshot`, `no_model`, `timeout`, `trap`, `too_large`, ...
    pub kind: &'static str,
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// Seconds from request received to response ready, for `/v1/score` and the batch endpoint.
    pub latency: Histogram,
    /// Decisions by outcome.
    pub decisions: Family<DecisionLabel, Counter>,
    /// Errors by kind.
    pub errors: Family<KindLabel, Counter>,
    /// Seconds since the serving snapshot was built (its `created_at`); set at each scrape.
    pub snapshot_age: Gauge<f64, AtomicU64>,
    /// Snapshot swaps (pushes and rollbacks) that succeeded.
    pub swaps: Counter,
    /// Snapshot pushes that took effect, by kind: `full` or `delta`.
    pub snapshot_updates: Family<KindLabel, Counter>,
    /// Retries answered from the idempotency window.
    pub replays: Counter,
    /// Webhook alerts sent, failed, dropped and retried.
    pub alerts: super::alerts::AlertCounters,
    /// The decision log's rows, drops, errors and files (zero without a log).
    pub decision_log: crate::decision_log::DecisionLogCounters,
    /// Analysts' verdicts published on the labels topic (`POST /v1/labels`).
    pub labels: Counter,
    /// Drift: PSI and alarms per feature and of the score; set at each scrape.
    pub drift: DriftGauges,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("tollgate");
        let latency = Histogram::new(exponential_buckets(5e-6, 2.0, 18));
        let decisions = Family::<DecisionLabel, Counter>::default();
        let errors = Family::<KindLabel, Counter>::default();
        let snapshot_age = Gauge::<f64, AtomicU64>::default();
        let swaps = Counter::default();
        let replays = Counter::default();
        let snapshot_updates = Family::<KindLabel, Counter>::default();
        registry.register(
            "snapshot_updates",
            "Snapshot pushes that took effect, by kind (full, delta)",
            snapshot_updates.clone(),
        );
        let labels = Counter::default();
        registry.register(
            "labels_published",
            "Analysts' verdicts published on the labels topic",
            labels.clone(),
        );
        registry.register(
            "score_latency_seconds",
            "Time to answer a score or batch request",
            latency.clone(),
        );
        registry.register("decisions", "Decisions by outcome", decisions.clone());
        registry.register("errors", "Errors by kind", errors.clone());
        registry.register(
            "snapshot_age_seconds",
            "Seconds since the serving snapshot was built",
            snapshot_age.clone(),
        );
        registry.register("snapshot_swaps", "Snapshot pushes and rollbacks that took effect", swaps.clone());
        registry.register(
            "idempotent_replays",
            "Retries answered with their first decision",
            replays.clone(),
        );
        let alerts = super::alerts::AlertCounters::default();
        registry.register("alerts_sent", "Webhook alerts a webhook accepted", alerts.sent.clone());
        registry.register(
            "alerts_failed",
            "Webhook alerts undelivered after every attempt",
            alerts.failed.clone(),
        );
        registry.register(
            "alerts_dropped",
            "Webhook alerts dropped because the queue was full",
            alerts.dropped.clone(),
        );
        registry.register("alert_retries", "Webhook alert retries", alerts.retries.clone());
        let log = crate::decision_log::DecisionLogCounters::default();
        registry.register("decision_log_rows", "Decisions written to the decision log", log.rows.clone());
        registry.register(
            "decision_log_dropped",
            "Decisions not logged: the queue was full or their write failed",
            log.dropped.clone(),
        );
        registry.register("decision_log_errors", "Decision log I/O errors by stage", log.errors.clone());
        registry.register("decision_log_files", "Parquet files the decision log wrote", log.files.clone());
        registry.register(
            "decision_log_not_durable",
            "Answers sent with x-tollgate-durable: false (--durable)",
            log.not_durable.clone(),
        );
        registry.register(
            "decision_log_queued_rows",
            "Decisions waiting for the log writer",
            log.queued.clone(),
        );
        registry.register(
            "decision_log_published",
            "Decisions delivered to the Kafka decision topic",
            log.published.clone(),
        );
        registry.register(
            "decision_log_publish_failed",
            "Decisions not queued for, or not delivered to, the Kafka decision topic",
            log.publish_failed.clone(),
        );
        let drift = DriftGauges::default();
        drift.register(&mut registry, "Scored requests in the drift window");
        Metrics {
            drift,
            registry,
            latency,
            decisions,
            errors,
            snapshot_age,
            swaps,
            snapshot_updates,
            replays,
            alerts,
            decision_log: log,
            labels,
        }
    }
}

impl Metrics {
    /// Exports the monitor's `invalid_fields_total{field, problem}` counters.
    pub fn register_monitor(&mut self, monitor: &crate::monitor::Monitor) {
        self.registry.register(
            "invalid_fields",
            "Requests refused for a missing or invalid field, by field",
            monitor.invalid_fields().clone(),
        );
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
