//! The continuous exporter's Prometheus metrics (`tollgate exporter run --metrics-addr`): what it
//! folded and what it turned away, by reason and field (the rates of missing or invalid fields),
//! its snapshots and checkpoints, its event time and state size, and, with a drift reference, the
//! PSI of its stream's features against it (`host::monitor`, as `tollgate serve` reports drift).

use host::monitor::{DriftGauges, Monitor, MonitorConfig};
use pipeline::Status;
use pipeline::run::Report;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use scorer::features::FeatureSchema;
use scorer::snapshot::Reference;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The label of `rejected_total`: why, and which field for a bad message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabel {
    reason: &'static str,
    field: String,
}

/// The label of the per-entity-kind gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// The id under which the stream's features are recorded in the monitor.
const STREAM: &str = "stream";

/// Every metric of one exporter run; updated from its reports, read by the metrics endpoint.
pub struct ExporterMetrics {
    registry: Registry,
    transactions: Counter,
    labels: Counter,
    rejected: Family<RejectedLabel, Counter>,
    snapshots: Counter,
    snapshot_bytes: Gauge,
    snapshot_build: Histogram,
    snapshot_as_of: Gauge,
    shards: Counter,
    shard_bytes: Gauge,
    rebalances: Counter,
    lanes: Gauge,
    checkpoints: Counter,
    checkpoint_bytes: Gauge,
    checkpoint_seconds: Histogram,
    event_time: Gauge,
    entities: Family<KindLabel, Gauge>,
    held: Gauge,
    drift: DriftGauges,
    monitor: Option<Monitor>,
    // The state's totals already counted, so that the counters count this process's work only.
    seen_transactions: AtomicU64,
    seen_labels: AtomicU64,
}

impl ExporterMetrics {
    /// The metrics, with drift monitoring against `reference`'s features when given.
    pub fn new(reference: Option<&Reference>, feature_names: Vec<String>) -> Arc<ExporterMetrics> {
        let mut registry = Registry::with_prefix("tollgate_exporter");
        let m = ExporterMetrics {
            transactions: Counter::default(),
            labels: Counter::default(),
            rejected: Family::default(),
            snapshots: Counter::default(),
            snapshot_bytes: Gauge::default(),
            snapshot_build: Histogram::new(exponential_buckets(1e-3, 2.0, 16)),
            snapshot_as_of: Gauge::default(),
            shards: Counter::default(),
            shard_bytes: Gauge::default(),
            rebalances: Counter::default(),
            lanes: Gauge::default(),
            checkpoints: Counter::default(),
            checkpoint_bytes: Gauge::default(),
            checkpoint_seconds: Histogram::new(exponential_buckets(1e-3, 2.0, 16)),
            event_time: Gauge::default(),
            entities: Family::default(),
            held: Gauge::default(),
            drift: DriftGauges::default(),
            monitor: reference.map(|r| {
                let monitor = Monitor::new(MonitorConfig::default());
                // The exporter computes features, not scores: the score's reference stays out.
                let features_only = Reference { score: None, ..r.clone() };
                monitor.watch(STREAM, feature_names, Some(&features_only));
                monitor
            }),
            seen_transactions: AtomicU64::new(0),
            seen_labels: AtomicU64::new(0),
            registry: Registry::default(),
        };
        registry.register("transactions", "Transactions folded into the state", m.transactions.clone());
        registry.register("labels", "Labels applied to a held transaction", m.labels.clone());
        registry.register(
            "rejected",
            "Messages not folded, by reason (and field, for a missing or invalid one)",
            m.rejected.clone(),
        );
        registry.register(
            "snapshots_published",
            "Snapshots built, signed and published",
            m.snapshots.clone(),
        );
        registry.register("snapshot_bytes", "Size of the last snapshot published", m.snapshot_bytes.clone());
        registry.register(
            "snapshot_build_seconds",
            "Time to aggregate, build and sign a snapshot",
            m.snapshot_build.clone(),
        );
        registry.register(
            "snapshot_as_of_seconds",
            "As-of time (Unix seconds) of the last snapshot published (or shard written)",
            m.snapshot_as_of.clone(),
        );
        registry.register("shards_written", "Scale-out: shards this instance wrote", m.shards.clone());
        registry.register("shard_bytes", "Scale-out: size of the last shard written", m.shard_bytes.clone());
        registry.register(
            "rebalances",
            "Scale-out: consumer-group rebalances that moved partitions to or from this member",
            m.rebalances.clone(),
        );
        registry.register(
            "lanes",
            "Scale-out: lanes (partitions with their state) this member holds",
            m.lanes.clone(),
        );
        registry.register("checkpoints", "Checkpoints written (state and offsets)", m.checkpoints.clone());
        registry.register("checkpoint_bytes", "Size of the last checkpoint", m.checkpoint_bytes.clone());
        registry.register("checkpoint_seconds", "Time to write a checkpoint", m.checkpoint_seconds.clone());
        registry.register(
            "event_time_seconds",
            "Latest event time folded (Unix seconds); wall time minus this is the lag",
            m.event_time.clone(),
        );
        registry.register("entities", "Entities in the state, by kind", m.entities.clone());
        registry.register("held_transactions", "Transactions a late label can still reach", m.held.clone());
        m.drift.register(&mut registry, "Sampled transactions in the drift window");
        Arc::new(ExporterMetrics { registry, ..m })
    }

    /// Takes one report of the run.
    pub fn record(&self, report: &Report<'_>) {
        match report {
            // Folded before this run, or by the member that held a lane before: not counted here.
            Report::Started { status, .. } | Report::Rebalanced { status, .. } => {
                if matches!(report, Report::Rebalanced { .. }) {
                    self.rebalances.inc();
                }
                self.seen_transactions.store(status.counts.transactions, Ordering::Relaxed);
                self.seen_labels.store(status.counts.labels, Ordering::Relaxed);
                self.set_status(status);
            }
            Report::Progress { status } => self.set_status(status),
            Report::Rejected { rejection, .. } => {
                let reason = &rejection.reason;
                let field = reason.field().unwrap_or_default().to_string();
                self.rejected.get_or_create(&RejectedLabel { reason: reason.code(), field }).inc();
            }
            Report::Published { snapshot, build } => {
                self.snapshots.inc();
                self.snapshot_bytes.set(snapshot.bytes.len() as i64);
                self.snapshot_build.observe(build.as_secs_f64());
                self.snapshot_as_of.set(snapshot.meta.as_of.0);
            }
            Report::Sharded { bytes, as_of, .. } => {
                self.shards.inc();
                self.shard_bytes.set(*bytes as i64);
                self.snapshot_as_of.set(as_of.0);
            }
            Report::Checkpointed { bytes, took } => {
                self.checkpoints.inc();
                self.checkpoint_bytes.set(*bytes as i64);
                self.checkpoint_seconds.observe(took.as_secs_f64());
            }
            Report::Features { values, .. } => {
                if let Some(monitor) = &self.monitor {
                    // The monitor takes rows of features and score; there is no score here.
                    let row: Vec<u8> = values.iter().chain(&[0.0]).flat_map(|v| v.to_le_bytes()).collect();
                    monitor.record(STREAM, &row);
                }
            }
        }
    }

    fn set_status(&self, status: &Status) {
        let counts = &status.counts;
        let grown = |seen: &AtomicU64, now: u64| now.saturating_sub(seen.swap(now, Ordering::Relaxed));
        self.transactions.inc_by(grown(&self.seen_transactions, counts.transactions));
        self.labels.inc_by(grown(&self.seen_labels, counts.labels));
        if let Some(clock) = status.clock.filter(|_| counts.transactions > 0) {
            self.event_time.set(clock.0);
        }
        for (def, n) in FeatureSchema::handbook().entities().iter().zip(&status.entities) {
            self.entities.get_or_create(&KindLabel { kind: def.name.clone() }).set(*n as i64);
        }
        self.held.set(status.held as i64);
        self.lanes.set(status.lanes as i64);
    }

    /// The OpenMetrics text (drift gauges brought up to date first).
    pub fn encode(&self) -> String {
        if let Some(monitor) = &self.monitor {
            self.drift.set(&monitor.report());
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `addr` from a thread of its own; returns the bound address (port 0
/// picks a free one).
pub fn serve(addr: &str, metrics: Arc<ExporterMetrics>) -> anyhow::Result<std::net::SocketAddr> {
    use anyhow::Context;
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("--metrics-addr {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let metrics = metrics.clone();
                    async move {
                        (
                            [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                            metrics.encode(),
                        )
                    }
                }),
            );
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    if let Err(e) = axum::serve(listener, app).await {
                        eprintln!("warning: the metrics endpoint stopped: {e}");
                    }
                }
                Err(e) => eprintln!("warning: the metrics endpoint could not start: {e}"),
            }
        });
    });
    Ok(bound)
}
