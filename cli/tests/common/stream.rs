//! What the continuous exporter's tests share: a slice of the handbook file, a `tollgate` process
//! killed when dropped, a mock Kafka cluster with the exporter's topics, the snapshots of an out directory, and the comparison of each with the
//! batch exporter's snapshot as of the same time.

use super::Result;
use exporter::NoProgress;
use exporter::ingest::{IngestOptions, read_transactions};
use exporter::snapshot::{Decisioning, build_with};
use flate2::read::GzDecoder;
use scorer::features::FeatureSchema;
use scorer::model::Model;
use scorer::policy::Policy;
use scorer::snapshot::{EdgeKey, Snapshot, SnapshotSigner};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A mock Kafka cluster (librdkafka's, in this process, on 127.0.0.1) with the exporter's topics:
/// `transactions` (16 partitions), `labels` (2), and each of `more` (16 partitions).
pub fn cluster_with_topics(more: &[&str]) -> Result<Cluster> {
    let cluster = rdkafka::mocking::MockCluster::new(1)?;
    cluster.create_topic("transactions", 16, 1)?;
    cluster.create_topic("labels", 2, 1)?;
    for topic in more {
        cluster.create_topic(topic, 16, 1)?;
    }
    Ok(cluster)
}

/// The mock cluster (the type [`cluster_with_topics`] gives).
pub type Cluster = rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// The handbook's first `days` days as `dir/tx.csv`, a signing key in `dir/keys`, and that file
/// replayed by `tollgate exporter replay-to-kafka` to a new mock cluster with the exporter's
/// topics and `more` (each of `more` also written by the replay, keyed by terminal). Label delays
/// stay under the 7-day delay of the risk windows, so that batch and stream agree. The cluster
/// and the replay's output.
pub fn replayed_handbook(dir: &Path, days: u32, more: &[&str]) -> Result<(Cluster, String)> {
    handbook_slice(&dir.join("tx.csv"), days)?;
    ok(super::tollgate(dir, &["keys", "new", "--out", "keys"])?, "keys new")?;
    let cluster = cluster_with_topics(more)?;
    let brokers = cluster.bootstrap_servers();
    let mut replay = vec!["exporter", "replay-to-kafka", "--input", "tx.csv", "--brokers", &brokers];
    for topic in more {
        replay.extend(["--transactions-by-terminal", topic]);
    }
    replay.extend(["--label-delay-max", "6d 23h"]);
    let replayed = ok(super::tollgate(dir, &replay)?, "replay-to-kafka")?;
    Ok((cluster, replayed))
}

/// Standard output and error of a finished command, or an error naming `what` if it failed.
pub fn ok(o: Output, what: &str) -> Result<String> {
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    if !o.status.success() {
        return Err(format!("{what} failed ({}):\n{text}", o.status).into());
    }
    Ok(text)
}

/// The handbook rows before 2018-04-01 + `days` days, as a CSV file (the original lines).
pub fn handbook_slice(path: &Path, days: u32) -> Result<()> {
    let source = handbook_data::file(handbook_data::TRANSACTIONS);
    let end = format!("2018-{:02}-{:02}", 4 + (days / 30), 1 + days % 30);
    // 2018-04-01 + days, for days < 61 (April has 30 days, May 31): good enough for a slice.
    assert!(days < 61);
    let end = if days < 30 { format!("2018-04-{:02}", days + 1) } else { end };
    let reader = BufReader::new(GzDecoder::new(std::fs::File::open(&source)?));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if i > 0 {
            let time = line.split(',').nth(1).ok_or("no TX_DATETIME")?;
            if time >= end.as_str() {
                break;
            }
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// The files in `dir` named `prefix...suffix`, by file name.
pub fn files(dir: &Path, prefix: &str, suffix: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    if dir.exists() {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if name.starts_with(prefix) && name.ends_with(suffix) {
                out.insert(name, std::fs::read(&path)?);
            }
        }
    }
    Ok(out)
}

/// The snapshots in `dir`, by file name.
pub fn snapshots(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    files(dir, "snapshot-", ".tgs")
}

/// A running `tollgate` (an exporter or an assembler), its output in `log` and `log.out`;
/// killed when dropped.
pub struct Running {
    /// The process.
    child: Child,
    log: PathBuf,
}

impl Running {
    /// Starts `tollgate ARGS` in `dir`, standard error to `dir/log`, standard output next to it.
    pub fn start(dir: &Path, args: &[&str], log: &str) -> Result<Running> {
        let log = dir.join(log);
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .current_dir(dir)
            .args(args)
            .stdout(Stdio::from(std::fs::File::create(log.with_extension("out"))?))
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()?;
        Ok(Running { child, log })
    }

    /// What it wrote so far (standard error, then standard output).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill_9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Asks it to stop (SIGTERM, as a service manager does) and waits as [`Running::wait`] does.
    pub fn stop(self, limit: Duration) -> Result<String> {
        super::sigterm(&self.child)?;
        self.wait(limit)
    }

    /// Waits for it to exit successfully within `limit`; its output.
    pub fn wait(mut self, limit: Duration) -> Result<String> {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = self.log();
                if !status.success() {
                    return Err(format!("{} exited with {status}:\n{log}", self.log.display()).into());
                }
                return Ok(log);
            }
            if began.elapsed() > limit {
                let _ = self.child.kill();
                return Err(
                    format!("{} did not finish in {limit:?}:\n{}", self.log.display(), self.log()).into()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample `series` (a metric name with its labels, as printed) in `text`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The metrics page of a running exporter, once the address it prints is in its log (empty
/// before).
pub fn metrics_of(running: &Running) -> Result<String> {
    let log = running.log();
    let Some(url) = log.lines().find_map(|l| l.strip_prefix("exporter: metrics at ")) else {
        return Ok(String::new());
    };
    Ok(ureq::get(url.trim()).call()?.body_mut().read_to_string()?)
}

/// Polls `check` every 20 ms until it is true, for at most `limit`; `what` and `log()` name the
/// failure.
pub fn wait_until(
    limit: Duration,
    what: &str,
    log: impl Fn() -> String,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !check()? {
        if Instant::now() > deadline {
            return Err(format!("{what} within {limit:?}:\n{}", log()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// How the published snapshots compared with the batch exporter's.
pub struct Compared {
    /// Days from the first transaction's day to the last snapshot's as-of.
    pub days: i64,
    /// Snapshots whose two tables both have more than 1000 rows.
    pub full: usize,
    /// Transactions in `tx.csv`.
    pub transactions: usize,
    /// Frauds among them (each has a label).
    pub frauds: usize,
}

/// Checks that the snapshots `published` (by file name) are one a day, none missing, from the day
/// after the first transaction of `dir/tx.csv` on, each byte for byte the batch exporter's as of
/// the same time (default policy, `dir/keys`, the handbook schema, no model); `log` goes into the
/// failure messages.
pub fn compare_with_batch(dir: &Path, published: &BTreeMap<String, Vec<u8>>, log: &str) -> Result<Compared> {
    compare_with_batch_of(dir, published, log, &FeatureSchema::handbook(), None)
}

/// [`compare_with_batch`] for snapshots of `schema` that carry `model` (and its id).
pub fn compare_with_batch_of(
    dir: &Path,
    published: &BTreeMap<String, Vec<u8>>,
    log: &str,
    schema: &FeatureSchema,
    model: Option<(&Model, &str)>,
) -> Result<Compared> {
    let tx = read_transactions(&dir.join("tx.csv"), &IngestOptions::default(), &NoProgress)?.transactions;
    let signer = SnapshotSigner::from_text(&std::fs::read_to_string(dir.join("keys/signing.key"))?)?;
    let edge = EdgeKey::from_text(&std::fs::read_to_string(dir.join("keys/edge.key"))?)?;
    let policy = Policy::new(Policy::DEFAULT.review_at(), Policy::DEFAULT.decline_at())?;
    let decisioning = Decisioning { policy: Some(&policy), model, ..Decisioning::default() };
    let first_day = tx.time[0].0.div_euclid(86_400) + 1;
    let mut expected_day = first_day;
    let mut full = 0;
    for (name, bytes) in published {
        let snapshot =
            Snapshot::load(bytes, std::slice::from_ref(&edge)).map_err(|e| format!("{name}: {e}\n{log}"))?;
        let as_of = snapshot.meta().as_of;
        assert_eq!(as_of.0, expected_day * 86_400, "{name}: one snapshot a day, none missing");
        expected_day += 1;
        let batch = build_with(&tx, schema, as_of, as_of, &signer, &decisioning, &NoProgress)?;
        assert_eq!(snapshot.meta(), &batch.meta, "{name}: meta");
        assert!(bytes == &batch.bytes, "{name}: the stream's snapshot differs from the batch's");
        // The terminals' risk windows are 7 days late: from the 8th day on, both tables are full.
        full += usize::from(batch.rows.iter().all(|&n| n > 1000));
    }
    let frauds = tx.fraud.iter().filter(|&&f| f != 0).count();
    Ok(Compared { days: expected_day - first_day, full, transactions: tx.len(), frauds })
}
