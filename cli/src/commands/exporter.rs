//! `tollgate exporter run | replay-to-kafka`: the always-on exporter (Kafka in, signed snapshots
//! out, exactly once; the work is in the `pipeline` crate) and the producer that feeds it a
//! transaction file for tests and demos.

use crate::commands::push;
use crate::commands::snapshot::DecisioningArgs;
use crate::progress::Bars;
use anyhow::{Context, bail};
use exporter::ingest::{IngestOptions, read_transactions};
use exporter::snapshot::BuiltSnapshot;
use pipeline::replay::{ReplayConfig, replay};
use pipeline::run::{Config, Report, Sink, Stopped, run as run_pipeline};
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::snapshot::SnapshotSigner;
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
    Run(Box<RunArgs>),
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
    /// Directory of the checkpoint (state and offsets; resumed from when present).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Checkpoint at least this often, besides after every snapshot.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    checkpoint_every: Duration,
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
    /// Append every rejected message (topic, partition, offset, reason, detail) to FILE as a
    /// JSON line.
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Stop once every partition is idle (all input read), after a final checkpoint.
    #[arg(long)]
    until_idle: bool,
    /// Stop before the first event at or after this time (UTC, `YYYY-MM-DD[ HH:MM:SS]`).
    #[arg(long)]
    stop_at: Option<String>,
    /// An extra librdkafka property, e.g. `--kafka security.protocol=ssl` (repeatable).
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    kafka: Vec<String>,
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
        label_delay_max: args.label_delay_max,
        seed: args.seed,
    };
    let counts = replay(&tx, &config).context("writing to Kafka")?;
    let secs = began.elapsed().as_secs_f64();
    println!(
        "wrote {} transactions to {} and {} labels to {} in {secs:.1} s ({:.0} messages/s)",
        counts.transactions,
        topics.transactions,
        counts.labels,
        topics.labels,
        (counts.transactions + counts.labels) as f64 / secs.max(1e-9)
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
        match report {
            Report::Started { resumed, partitions } => {
                let from =
                    if resumed { "resumed from the checkpoint" } else { "no checkpoint: from the start" };
                let list: Vec<String> = partitions
                    .iter()
                    .map(|(t, p, o)| match o {
                        Some(o) => format!("{t}[{p}]@{o}"),
                        None => format!("{t}[{p}]@start"),
                    })
                    .collect();
                eprintln!("exporter: {from}; reading {}", list.join(" "));
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
            Report::Checkpointed { bytes, took } => {
                eprintln!("checkpoint: {bytes} bytes in {:.0} ms", took.as_secs_f64() * 1e3);
            }
            Report::Progress { counts, clock } => {
                eprintln!(
                    "progress: event time {clock}, {} transactions, {} labels, {} rejected",
                    counts.transactions,
                    counts.labels,
                    counts.rejected_total()
                );
            }
        }
    }
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

fn run_exporter(args: RunArgs) -> anyhow::Result<()> {
    if args.out_dir.is_none() && args.push_to.is_empty() {
        bail!("nowhere to publish: give --out-dir DIR and/or --push-to TARGET");
    }
    let key =
        std::fs::read_to_string(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let signer = SnapshotSigner::from_text(&key).with_context(|| format!("{}", args.key.display()))?;
    let schema = FeatureSchema::handbook();
    let loaded = args.decisioning.load(&schema, &signer)?;
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
    };
    let mut publisher = Publisher {
        out_dir: args.out_dir,
        push_to: args.push_to,
        token: push::token(args.token_file.as_deref())?,
        ca_cert: args.ca_cert,
        dead_letter,
        schema: schema.clone(),
        delta: args.delta,
        previous: None,
        pushed: Default::default(),
        sent: Vec::new(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(stop.clone())?;
    let began = Instant::now();
    let summary = run_pipeline(&config, &signer, &loaded.decisioning(), &mut publisher, &stop)?;
    let why = match summary.stopped {
        Stopped::Idle => "every partition idle",
        Stopped::StopAt => "reached --stop-at",
        Stopped::Asked => "asked to stop",
    };
    println!(
        "stopped ({why}) after {:.1} s: {} snapshots published, {} transactions and {} labels folded in all, {} rejected",
        began.elapsed().as_secs_f64(),
        summary.published,
        summary.counts.transactions,
        summary.counts.labels,
        summary.counts.rejected_total()
    );
    for (reason, n) in &summary.counts.rejected {
        println!("  {n:>8}  {reason}");
    }
    Ok(())
}
