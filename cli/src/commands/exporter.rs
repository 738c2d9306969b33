//! `tollgate exporter run | assemble | replay-to-kafka`: the always-on exporter (Kafka in, signed
//! snapshots out, exactly once; the work is in the `pipeline` crate), alone or as the members of
//! a consumer group writing shards that `assemble` signs and publishes, and the producer that
//! feeds it a transaction file for tests and demos.

use crate::commands::exporter_metrics::{self, ExporterMetrics};
use crate::commands::push;
use crate::commands::snapshot::DecisioningArgs;
use crate::commands::train::SchemaArgs;
use crate::progress::Bars;
use anyhow::{Context, bail};
use exporter::ingest::{IngestOptions, read_transactions};
use exporter::snapshot::{BuiltSnapshot, Decisioning};
use pipeline::assemble::{AssembleConfig, assemble};
use pipeline::replay::{ReplayConfig, replay};
use pipeline::run::{Config, Report, ScaleOut, Sink, Stopped, run as run_pipeline, run_instance};
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::snapshot::{Reference, Snapshot, SnapshotSigner};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The continuous exporter.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Read transactions and labels from Kafka, keep every entity's windows up to date, and
    /// publish a signed snapshot as of every multiple of --every that the event time passes.
    /// State and offsets are checkpointed together: after a crash it resumes where the last
    /// checkpoint stood and publishes the same snapshots, byte for byte.
    ///
    /// With --group NAME it is one member of a consumer group (scale-out): Kafka assigns it
    /// partitions of the customer-keyed and the terminal-keyed transaction topics, it reads every
    /// label, keeps one state per partition (a lane) checkpointed under the --checkpoint
    /// directory that all members share, and writes each lane's shard of every snapshot under
    /// --shards for `tollgate exporter assemble`. When a member joins, leaves or dies, its
    /// partitions move: the new owner loads their lanes' checkpoints and goes on from there.
    Run(Box<RunArgs>),
    /// Scale-out: wait until the shards of every lane (each partition of both transaction topics)
    /// of an as-of exist, merge them, and sign and publish one snapshot (the only process that
    /// holds the signing key).
    Assemble(Box<AssembleArgs>),
    /// Write a transaction file to the topics as the exporter reads them: each row a score
    /// request (key: customer id), each fraud a label reported within --label-delay-max.
    ReplayToKafka(ReplayArgs),
}

/// The broker and the two topics, shared by both subcommands.
#[derive(clap::Args)]
pub struct Topics {
    /// Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`.
    #[arg(long)]
    brokers: String,
    /// The transactions topic: one score request per message (JSON or MessagePack).
    #[arg(long, default_value = "transactions")]
    transactions: String,
    /// The labels topic: `{"transaction_id": 123, "fraud": true, "reported_at": "2018-04-03T10:00:00Z"}`.
    #[arg(long, default_value = "labels")]
    labels: String,
    /// Scale-out: the same transactions keyed by terminal id (read by `run --group`, written
    /// by `replay-to-kafka` when given; in production a re-keying stage writes it).
    #[arg(long, value_name = "TOPIC")]
    transactions_by_terminal: Option<String>,
}

/// Where snapshots go, shared by `run` and `assemble`.
#[derive(clap::Args)]
pub struct Targets {
    /// Write every snapshot into this directory as `snapshot-YYYYMMDDTHHMMSS.tgs` (its as-of).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Also push every snapshot here, as `tollgate push --to` does: `http(s)://HOST:PORT`,
    /// `kv-local:DIR` or a directory (repeatable).
    #[arg(long = "push-to", value_name = "TARGET")]
    push_to: Vec<String>,
    /// File holding the admin bearer token for HTTP targets (or set TOLLGATE_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// For https:// targets: trust the PEM certificate(s) in FILE.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Publish deltas: to an http(s):// target, the delta from the snapshot last published to it
    /// (the whole file on the first publish and when the host serves another snapshot); into
    /// directories, the whole file and beside it the delta from the previous snapshot
    /// (`snapshot-NEXT.from-PREVIOUS.tgd`). `kv-local:` targets get the whole file.
    #[arg(long)]
    delta: bool,
}

impl Targets {
    fn given(&self) -> bool {
        self.out_dir.is_some() || !self.push_to.is_empty()
    }
}

/// Arguments of `tollgate exporter run`.
#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    kafka_topics: Topics,
    /// The signing key file (from `tollgate keys new`).
    #[arg(long, default_value = "keys/signing.key")]
    key: PathBuf,
    /// Snapshot interval: one snapshot as of every multiple of it (UTC), e.g. `1h`, `15m`, `1d`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    every: Duration,
    /// A partition with nothing new for this long (wall time) stops holding the event-time
    /// watermark back.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Directory of the checkpoint (state and offsets; resumed from when present). With --group,
    /// a directory every member of the group shares (a shared file system): one checkpoint per
    /// lane under `lanes/<topic>/<partition>/`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Checkpoint at least this often, besides after every snapshot.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    checkpoint_every: Duration,
    #[command(flatten)]
    targets: Targets,
    /// Scale-out: run as a member of this consumer group (every member gives the same NAME, the
    /// same shared --checkpoint and --shards); --key and the targets are the assembler's. Members
    /// rebalance cooperatively: only the partitions that change owner move. Set a short
    /// `--kafka session.timeout.ms=...` for a dead member's partitions to move sooner.
    #[arg(long, value_name = "NAME", requires = "shards", conflicts_with_all = ["out_dir", "push_to"])]
    group: Option<String>,
    /// Scale-out: the directory shards are written into
    /// (`<as_of>/k<kind>-p<partition>-of-<partitions>.shard`).
    #[arg(long, value_name = "DIR", requires = "group")]
    shards: Option<PathBuf>,
    /// Append every rejected message (topic, partition, offset, reason, detail) to FILE as a
    /// JSON line.
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Stop once every partition is idle (all input read), after a final checkpoint. A group
    /// member stops once it holds partitions and all of them (and the labels) are idle; its
    /// partitions then move to the members still running.
    #[arg(long)]
    until_idle: bool,
    /// Stop before the first event at or after this time (UTC, `YYYY-MM-DD[ HH:MM:SS]`).
    #[arg(long)]
    stop_at: Option<String>,
    /// An extra librdkafka property, e.g. `--kafka security.protocol=ssl` (repeatable).
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    kafka: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (`tollgate_exporter_*`: messages folded
    /// and rejected by reason and field, snapshots, checkpoints, event time, state size, drift).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Carry this snapshot's drift reference (the training window's feature distributions, from
    /// `tollgate snapshot build --reference-days`) in every snapshot published, so that hosts
    /// monitor drift, and monitor the stream's own features against it (PSI and alarms in the
    /// metrics and on standard error). Verified with the signing key's public half.
    #[arg(long, value_name = "SNAPSHOT")]
    reference_from: Option<PathBuf>,
    /// With --reference-from: compute the features of every N-th transaction for drift.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    drift_sample: u32,
    #[command(flatten)]
    schema: SchemaArgs,
    #[command(flatten)]
    decisioning: DecisioningArgs,
}

/// Arguments of `tollgate exporter assemble`.
#[derive(clap::Args)]
pub struct AssembleArgs {
    /// The directory the instances write their shards into.
    #[arg(long, value_name = "DIR")]
    shards: PathBuf,
    /// The signing key file (from `tollgate keys new`).
    #[arg(long, default_value = "keys/signing.key")]
    key: PathBuf,
    #[command(flatten)]
    targets: Targets,
    /// With --until-idle: stop once no shard has appeared for this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Stop once no shard has appeared for --idle.
    #[arg(long)]
    until_idle: bool,
    /// Carry this snapshot's drift reference in every snapshot published (as `run
    /// --reference-from` does).
    #[arg(long, value_name = "SNAPSHOT")]
    reference_from: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (`tollgate_exporter_*`: the snapshots
    /// published, their size, build time and as-of).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    // The instances' feature schema: give them the same `--schema`.
    #[command(flatten)]
    schema: SchemaArgs,
    #[command(flatten)]
    decisioning: DecisioningArgs,
}

/// Arguments of `tollgate exporter replay-to-kafka`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The transaction file (.csv, .csv.gz or .parquet, the handbook's layout).
    #[arg(long)]
    input: PathBuf,
    #[command(flatten)]
    kafka_topics: Topics,
    /// Each fraud's label is reported between 1 second and this long after the transaction.
    #[arg(long, default_value = "6d", value_parser = humantime::parse_duration)]
    label_delay_max: Duration,
    /// Seed of the label delays (the same seed gives the same messages).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs `tollgate exporter ...`.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run_exporter(*args),
        Command::Assemble(args) => run_assembler(*args),
        Command::ReplayToKafka(args) => replay_to_kafka(args),
    }
}

fn replay_to_kafka(args: ReplayArgs) -> anyhow::Result<()> {
    let tx = read_transactions(&args.input, &IngestOptions::default(), &Bars::default())?.transactions;
    let began = Instant::now();
    let topics = args.kafka_topics;
    let config = ReplayConfig {
        brokers: topics.brokers,
        transactions: topics.transactions.clone(),
        labels: topics.labels.clone(),
        by_terminal: topics.transactions_by_terminal.clone(),
        label_delay_max: args.label_delay_max,
        seed: args.seed,
    };
    let counts = replay(&tx, &config).context("writing to Kafka")?;
    let secs = began.elapsed().as_secs_f64();
    let copies = 1 + u64::from(topics.transactions_by_terminal.is_some());
    let also = topics.transactions_by_terminal.map(|t| format!(" (and {t})")).unwrap_or_default();
    println!(
        "wrote {} transactions to {}{also} and {} labels to {} in {secs:.1} s ({:.0} messages/s)",
        counts.transactions,
        topics.transactions,
        counts.labels,
        topics.labels,
        (copies * counts.transactions + counts.labels) as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Publishes to the out directory and the push targets; logs on standard error.
struct Publisher {
    out_dir: Option<PathBuf>,
    push_to: Vec<String>,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
    dead_letter: Option<(PathBuf, std::fs::File)>,
    schema: FeatureSchema,
    metrics: Option<Arc<ExporterMetrics>>,
    /// `--delta`: publish deltas.
    delta: bool,
    /// With `--delta`: the previous snapshot published (its file name and bytes), since start.
    previous: Option<(String, Arc<[u8]>)>,
    /// With `--delta`: per http(s) target, the bytes of the snapshot last pushed to it.
    pushed: std::collections::HashMap<String, Arc<[u8]>>,
    /// What the last publish sent as deltas, for its log line.
    sent: Vec<String>,
}

/// The newest `snapshot-*.tgs` in `dir` from before the snapshot named `name` (names sort by
/// as-of): its name and bytes. None when there is none or it cannot be read.
fn previous_file(dir: &Path, name: &str) -> Option<(String, Arc<[u8]>)> {
    let newest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("snapshot-") && n.ends_with(".tgs") && n.as_str() < name)
        .max()?;
    let bytes = std::fs::read(dir.join(&newest)).ok()?;
    Some((newest, bytes.into()))
}

/// `snapshot-NEXT.from-PREVIOUS.tgd`: the file name of the delta between two snapshot files.
fn delta_name(next: &str, previous: &str) -> String {
    let stem = |n: &str| n.strip_prefix("snapshot-").unwrap_or(n).trim_end_matches(".tgs").to_string();
    format!("snapshot-{}.from-{}.tgd", stem(next), stem(previous))
}

/// True for a `--push-to` target that is a directory (not http(s):// or kv-local:).
fn is_dir_target(target: &str) -> bool {
    !(target.starts_with("http://") || target.starts_with("https://") || target.starts_with("kv-local:"))
}

/// `snapshot-YYYYMMDDTHHMMSS.tgs`: the file name of the snapshot as of `as_of`.
fn file_name(as_of: Timestamp) -> String {
    let d = as_of.to_datetime();
    format!(
        "snapshot-{:04}{:02}{:02}T{:02}{:02}{:02}.tgs",
        d.year, d.month, d.day, d.hour, d.minute, d.second
    )
}

impl Publisher {
    fn new(
        targets: Targets,
        dead_letter: Option<(PathBuf, std::fs::File)>,
        metrics: Option<Arc<ExporterMetrics>>,
        schema: FeatureSchema,
    ) -> anyhow::Result<Publisher> {
        Ok(Publisher {
            metrics,
            token: push::token(targets.token_file.as_deref())?,
            out_dir: targets.out_dir,
            push_to: targets.push_to,
            ca_cert: targets.ca_cert,
            dead_letter,
            schema,
            delta: targets.delta,
            previous: None,
            pushed: Default::default(),
            sent: Vec::new(),
        })
    }
}

impl Sink for Publisher {
    fn publish(&mut self, snapshot: &BuiltSnapshot) -> Result<(), String> {
        let name = file_name(snapshot.meta.as_of);
        let bytes: Arc<[u8]> = snapshot.bytes.as_slice().into();
        self.sent.clear();
        if self.delta && self.previous.is_none() {
            // After a start: the newest snapshot already in --out-dir from before this one, which
            // an HTTP target most likely serves (a 409 sends the whole file).
            self.previous = self.out_dir.as_deref().and_then(|dir| previous_file(dir, &name));
            if let Some((_, previous)) = &self.previous {
                for target in
                    self.push_to.iter().filter(|t| t.starts_with("http://") || t.starts_with("https://"))
                {
                    self.pushed.entry(target.clone()).or_insert_with(|| previous.clone());
                }
            }
        }
        // The delta from the previous snapshot, for the directories and the log line.
        let delta = match (&self.previous, self.delta) {
            (Some((previous_name, previous)), true) => {
                let delta = scorer::snapshot::build_delta(previous, &bytes).map_err(|e| e.to_string())?;
                Some((delta_name(&name, previous_name), previous.clone(), delta))
            }
            _ => None,
        };
        let mut dirs: Vec<&Path> = self.out_dir.iter().map(PathBuf::as_path).collect();
        dirs.extend(self.push_to.iter().filter(|t| is_dir_target(t)).map(Path::new));
        for dir in dirs {
            push::push_dir(&bytes, dir, Path::new(&name)).map_err(|e| format!("{e:#}"))?;
            if let Some((delta_file, _, delta)) = &delta {
                let path = push::push_dir(delta, dir, Path::new(delta_file)).map_err(|e| format!("{e:#}"))?;
                self.sent.push(format!("written to {}", path.display()));
            }
        }
        for target in self.push_to.iter().filter(|t| !is_dir_target(t)) {
            let http = target.starts_with("http://") || target.starts_with("https://");
            let last = self.pushed.get(target).filter(|_| self.delta && http);
            let done = match last {
                Some(last) => {
                    // Usually the previous snapshot (its delta is made already); after a failed
                    // push to this target, the one it last took.
                    let own;
                    let delta = match &delta {
                        Some((_, base, d)) if Arc::ptr_eq(base, last) => d,
                        _ => {
                            own = scorer::snapshot::build_delta(last, &bytes).map_err(|e| e.to_string())?;
                            &own
                        }
                    };
                    let tls = push::tls_config(self.ca_cert.as_deref()).map_err(|e| format!("{e:#}"))?;
                    let pushed = push::push_http_delta(&bytes, delta, target, self.token.as_deref(), tls)
                        .map_err(|e| format!("{e:#}"))?;
                    match &pushed.full_because {
                        None => self.sent.push(format!("{} bytes sent to {target}", pushed.delta_bytes)),
                        Some(_) => self.sent.push(format!("refused by {target}, sent whole")),
                    }
                    pushed.describe(bytes.len())
                }
                None => push::push_to(
                    &bytes,
                    target,
                    Path::new(&name),
                    self.token.as_deref(),
                    self.ca_cert.as_deref(),
                )
                .map_err(|e| format!("{e:#}"))?,
            };
            if self.delta && http {
                self.pushed.insert(target.clone(), bytes.clone());
            }
            eprintln!("  {done}");
        }
        if self.delta {
            if let Some((_, _, delta)) = &delta {
                let gz = crate::commands::snapshot::gzipped_len(delta).map_err(|e| e.to_string())?;
                self.sent.insert(0, format!("{} bytes ({gz} gzipped) from the previous", delta.len()));
            }
            self.previous = Some((name, bytes));
        }
        Ok(())
    }

    fn report(&mut self, report: Report<'_>) {
        if let Some(metrics) = &self.metrics {
            metrics.record(&report);
        }
        match report {
            Report::Started { resumed, partitions, .. } => {
                let from =
                    if resumed { "resumed from the checkpoint" } else { "no checkpoint: from the start" };
                let list: Vec<String> = partitions
                    .iter()
                    .map(|(t, p, o)| match o {
                        Some(o) => format!("{t}[{p}]@{o}"),
                        None => format!("{t}[{p}]@start"),
                    })
                    .collect();
                match list.is_empty() {
                    true => eprintln!("exporter: joining the consumer group"),
                    false => eprintln!("exporter: {from}; reading {}", list.join(" ")),
                }
            }
            Report::Rebalanced { assigned, revoked, .. } => {
                let taken: Vec<String> = assigned
                    .iter()
                    .map(|(t, p, o, loaded)| {
                        let at = o.map_or("start".to_string(), |o| o.to_string());
                        let how = if *loaded { "from its lane's checkpoint" } else { "no checkpoint" };
                        format!("{t}[{p}]@{at} ({how})")
                    })
                    .collect();
                let given: Vec<String> = revoked.iter().map(|(t, p)| format!("{t}[{p}]")).collect();
                eprintln!(
                    "rebalance: took {} partitions{}{}; gave up {}{}",
                    taken.len(),
                    if taken.is_empty() { "" } else { ": " },
                    taken.join(" "),
                    given.len(),
                    if given.is_empty() { String::new() } else { format!(": {}", given.join(" ")) }
                );
            }
            Report::Rejected { topic, partition, offset, rejection } => {
                eprintln!("rejected {topic}[{partition}]@{offset}: {rejection}");
                if let Some((path, file)) = &mut self.dead_letter {
                    let line = serde_json::json!({
                        "topic": topic, "partition": partition, "offset": offset,
                        "reason": rejection.reason.to_string(), "detail": rejection.detail,
                    });
                    if let Err(e) = writeln!(file, "{line}") {
                        eprintln!("warning: writing {}: {e}", path.display());
                    }
                }
            }
            Report::Published { snapshot, build } => {
                let rows: Vec<String> = self
                    .schema
                    .entities()
                    .iter()
                    .zip(&snapshot.rows)
                    .map(|(e, n)| format!("{n} {}", e.name))
                    .collect();
                let delta = match self.sent.is_empty() {
                    true => String::new(),
                    false => format!("; delta: {}", self.sent.join(", ")),
                };
                eprintln!(
                    "published {} as of {}: {}, {} bytes, built in {:.0} ms{delta}",
                    snapshot.meta.snapshot_id,
                    snapshot.meta.as_of,
                    rows.join(", "),
                    snapshot.bytes.len(),
                    build.as_secs_f64() * 1e3
                );
            }
            Report::Sharded { as_of, path, rows, bytes, took } => {
                let rows: Vec<String> = self
                    .schema
                    .entities()
                    .iter()
                    .zip(&rows)
                    .map(|(e, n)| format!("{n} {}", e.name))
                    .collect();
                eprintln!(
                    "shard as of {as_of}: {} ({}, {bytes} bytes, in {:.0} ms)",
                    path.display(),
                    rows.join(", "),
                    took.as_secs_f64() * 1e3
                );
            }
            Report::Checkpointed { bytes, took } => {
                eprintln!("checkpoint: {bytes} bytes in {:.0} ms", took.as_secs_f64() * 1e3);
            }
            Report::Progress { status } => {
                let counts = &status.counts;
                eprintln!(
                    "progress: event time {}, {} transactions, {} labels, {} rejected",
                    status.clock.map_or("none".to_string(), |t| t.to_string()),
                    counts.transactions,
                    counts.labels,
                    counts.rejected_total()
                );
            }
            Report::Features { .. } => {}
        }
    }
}

/// The drift reference of the snapshot at `path` (verified with `signer`'s public key), for
/// snapshots scored by `model_id`: the score's distribution is kept only when the snapshot's
/// model is the same.
fn reference_from(
    path: &Path,
    signer: &SnapshotSigner,
    model_id: Option<&str>,
    schema: &FeatureSchema,
) -> anyhow::Result<Reference> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let snapshot = Snapshot::load(&bytes, &[signer.edge_key()])
        .with_context(|| format!("--reference-from {}", path.display()))?;
    let meta = snapshot.meta();
    let Some(reference) = meta.reference.clone() else {
        bail!(
            "--reference-from {}: the snapshot carries no drift reference (build one with `tollgate snapshot build --reference-days N`)",
            path.display()
        );
    };
    if meta.schema.hash() != schema.hash() {
        bail!("--reference-from {}: the snapshot's feature schema is not the exporter's", path.display());
    }
    if reference.score.is_some() && meta.model_id.as_deref() != model_id {
        eprintln!(
            "note: --reference-from {}: its score distribution is of model {}, not of {}: carrying the features' only",
            path.display(),
            meta.model_id.as_deref().unwrap_or("(none)"),
            model_id.unwrap_or("(no model)")
        );
        return Ok(Reference { score: None, ..reference });
    }
    Ok(reference)
}

/// Sets `stop` on SIGTERM or Ctrl-C (the loop then writes a final checkpoint and returns).
fn stop_on_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        });
        eprintln!("exporter: stopping after a final checkpoint");
        stop.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// The metrics of this process, served at `http://ADDR/metrics` (the address printed), with drift
/// monitoring against `reference` when given.
fn serve_metrics(
    addr: &str,
    reference: Option<&Reference>,
    schema: &FeatureSchema,
) -> anyhow::Result<Arc<ExporterMetrics>> {
    let names = schema.features().iter().map(|f| f.name.clone()).collect();
    let metrics = ExporterMetrics::new(reference, names);
    let bound = exporter_metrics::serve(addr, metrics.clone())?;
    eprintln!("exporter: metrics at http://{bound}/metrics");
    Ok(metrics)
}

/// The signer in `path`.
fn signer(path: &Path) -> anyhow::Result<SnapshotSigner> {
    let key = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SnapshotSigner::from_text(&key).with_context(|| format!("{}", path.display()))
}

fn run_exporter(args: RunArgs) -> anyhow::Result<()> {
    let scale_out = match (&args.group, &args.shards) {
        (Some(group), Some(shards)) => Some(ScaleOut {
            group: group.clone(),
            by_terminal: args
                .kafka_topics
                .transactions_by_terminal
                .clone()
                .unwrap_or_else(|| "transactions-by-terminal".to_string()),
            shards: shards.clone(),
        }),
        _ => None,
    };
    if scale_out.is_none() && !args.targets.given() {
        bail!("nowhere to publish: give --out-dir DIR and/or --push-to TARGET");
    }
    let schema = args.decisioning.schema(&args.schema)?;
    // A single exporter signs; an instance holds no key (the assembler signs).
    let single = match &scale_out {
        Some(_) => None,
        None => {
            let signer = signer(&args.key)?;
            let loaded = args.decisioning.load(&schema, &signer)?;
            Some((signer, loaded))
        }
    };
    let reference = match (&args.reference_from, &single) {
        (Some(path), Some((signer, loaded))) => {
            Some(reference_from(path, signer, loaded.decisioning().model.map(|(_, id)| id), &schema)?)
        }
        (Some(_), None) => bail!(
            "--reference-from: an instance builds no snapshot and holds only some entity kinds; give it to `tollgate exporter assemble`"
        ),
        (None, _) => None,
    };
    let metrics = match &args.metrics_addr {
        Some(addr) => Some(serve_metrics(addr, reference.as_ref(), &schema)?),
        None => None,
    };
    let stop_at = match &args.stop_at {
        Some(text) => Some(text.parse::<Timestamp>().with_context(|| format!("--stop-at {text:?}"))?),
        None => None,
    };
    let mut kafka = Vec::new();
    for property in &args.kafka {
        let Some((k, v)) = property.split_once('=') else {
            bail!("--kafka {property:?}: expected KEY=VALUE, e.g. security.protocol=ssl")
        };
        kafka.push((k.to_string(), v.to_string()));
    }
    let dead_letter = match &args.dead_letter {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            Some((path.clone(), file))
        }
        None => None,
    };
    let config = Config {
        brokers: args.kafka_topics.brokers,
        transactions: args.kafka_topics.transactions,
        labels: args.kafka_topics.labels,
        every: args.every,
        idle: args.idle,
        checkpoint_dir: args.checkpoint,
        checkpoint_every: args.checkpoint_every,
        until_idle: args.until_idle,
        stop_at,
        kafka,
        feature_sample: if reference.is_some() && metrics.is_some() { args.drift_sample } else { 0 },
        schema: schema.clone(),
    };
    let mut publisher = Publisher::new(args.targets, dead_letter, metrics, schema)?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(stop.clone())?;
    let began = Instant::now();
    let summary = match (&scale_out, &single) {
        (Some(scale_out), _) => run_instance(&config, scale_out, &mut publisher, &stop)?,
        (None, Some((signer, loaded))) => {
            let decisioning = Decisioning { reference: reference.as_ref(), ..loaded.decisioning() };
            run_pipeline(&config, signer, &decisioning, &mut publisher, &stop)?
        }
        (None, None) => bail!("a single exporter without its signing key"),
    };
    let why = match summary.stopped {
        Stopped::Idle => "every partition idle",
        Stopped::StopAt => "reached --stop-at",
        Stopped::Asked => "asked to stop",
    };
    let what = if scale_out.is_some() { "shards written" } else { "snapshots published" };
    println!(
        "stopped ({why}) after {:.1} s: {} {what}, {} transactions and {} labels folded in all, {} rejected",
        began.elapsed().as_secs_f64(),
        summary.published,
        summary.counts.transactions,
        summary.counts.labels,
        summary.counts.rejected_total()
    );
    if scale_out.is_some() {
        println!("  {:>8}  labels of transactions not held here", summary.counts.not_held_here);
    }
    for (reason, n) in &summary.counts.rejected {
        println!("  {n:>8}  {reason}");
    }
    Ok(())
}

fn run_assembler(args: AssembleArgs) -> anyhow::Result<()> {
    if !args.targets.given() {
        bail!("nowhere to publish: give --out-dir DIR and/or --push-to TARGET");
    }
    let signer = signer(&args.key)?;
    let schema = args.decisioning.schema(&args.schema)?;
    let loaded = args.decisioning.load(&schema, &signer)?;
    let config = AssembleConfig {
        shards: args.shards,
        poll: Duration::from_millis(100),
        idle: args.idle,
        until_idle: args.until_idle,
        schema: schema.clone(),
    };
    let metrics = match &args.metrics_addr {
        Some(addr) => Some(serve_metrics(addr, None, &schema)?),
        None => None,
    };
    let mut publisher = Publisher::new(args.targets, None, metrics, schema.clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(stop.clone())?;
    let began = Instant::now();
    let decisioning = loaded.decisioning();
    let reference = match &args.reference_from {
        Some(path) => Some(reference_from(path, &signer, decisioning.model.map(|(_, id)| id), &schema)?),
        None => None,
    };
    let decisioning = Decisioning { reference: reference.as_ref(), ..decisioning };
    let summary = assemble(&config, &signer, &decisioning, &mut publisher, &stop)?;
    let why = if summary.stopped == Stopped::Idle { "no new shard" } else { "asked to stop" };
    let last = summary.last.map_or("none".to_string(), |t| t.to_string());
    println!(
        "stopped ({why}) after {:.1} s: {} snapshots published, the last as of {last}",
        began.elapsed().as_secs_f64(),
        summary.published
    );
    for (def, counts) in schema.entities().iter().zip(&summary.counts) {
        println!(
            "  {} lanes: {} transactions, {} labels folded, {} rejected",
            def.name,
            counts.transactions,
            counts.labels,
            counts.rejected_total()
        );
    }
    let needed = summary.lanes.map_or("?".to_string(), |n| n.to_string());
    for (as_of, present) in &summary.waiting {
        println!("  waiting: as of {as_of}, {present} of {needed} shards");
    }
    Ok(())
}
