//! `tollgate exporter`: the continuous exporter against a real Kafka-protocol broker (librdkafka's
//! mock cluster, in this process, on 127.0.0.1), killed with SIGKILL in the middle and
//! restarted: every snapshot it publishes is byte-for-byte the batch exporter's snapshot as of
//! the same time. And a bad message is counted and logged without stopping the run. With
//! `--delta` it pushes deltas to a real `tollgate serve` and writes them beside the snapshots,
//! across a restart too.

mod common;

use exporter::NoProgress;
use exporter::ingest::{IngestOptions, read_transactions};
use exporter::snapshot::{Decisioning, build_with};
use flate2::read::GzDecoder;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use scorer::features::FeatureSchema;
use scorer::policy::Policy;
use scorer::snapshot::{EdgeKey, Snapshot, SnapshotSigner, apply_delta};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Days of the handbook file replayed: a contiguous slice from its first day, so that the whole
/// test (replay, two exporter runs, one batch snapshot per day) stays well under a minute.
const DAYS: u32 = 45;

fn tollgate(dir: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_tollgate")).current_dir(dir).args(args).output()?)
}

fn ok(o: Output, what: &str) -> Result<String> {
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    if !o.status.success() {
        return Err(format!("{what} failed ({}):\n{text}", o.status).into());
    }
    Ok(text)
}

/// The handbook rows before 2018-04-01 + `days` days, as a CSV file (the original lines).
fn handbook_slice(path: &Path, days: u32) -> Result<()> {
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/handbook/handbook_transactions.csv.gz");
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

/// `tollgate exporter run` against `brokers`: daily snapshots into `out`, checkpoint in `ck`,
/// until every partition is idle; `extra` options after.
fn run_args(brokers: &str, extra: &[&str]) -> Vec<String> {
    let common = ["exporter", "run", "--brokers", brokers, "--key", "keys/signing.key", "--every", "1d"];
    let more = ["--checkpoint", "ck", "--out-dir", "out", "--until-idle"];
    common.iter().chain(&more).chain(extra).map(|s| s.to_string()).collect()
}

fn cluster_with_topics() -> Result<MockCluster<'static, rdkafka::producer::DefaultProducerContext>> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("transactions", 16, 1)?;
    cluster.create_topic("labels", 2, 1)?;
    Ok(cluster)
}

/// The snapshots in `dir`, by file name.
fn snapshots(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    if dir.exists() {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if name.starts_with("snapshot-") && name.ends_with(".tgs") {
                out.insert(name, std::fs::read(&path)?);
            }
        }
    }
    Ok(out)
}

struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(dir: &Path, args: &[&str], log: &str) -> Result<Running> {
        let log = dir.join(log);
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .current_dir(dir)
            .args(args)
            .stdout(Stdio::from(std::fs::File::create(log.with_extension("out"))?))
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()?;
        Ok(Running { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    fn wait(mut self, limit: Duration) -> Result<String> {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = self.log();
                if !status.success() {
                    return Err(format!("the exporter exited with {status}:\n{log}").into());
                }
                return Ok(log);
            }
            if began.elapsed() > limit {
                let _ = self.child.kill();
                return Err(format!("the exporter did not finish in {limit:?}:\n{}", self.log()).into());
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

#[test]
fn killed_and_restarted_it_publishes_the_batch_exporters_snapshots_byte_for_byte() -> Result<()> {
    let began = Instant::now();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    handbook_slice(&d.join("tx.csv"), DAYS)?;
    ok(tollgate(d, &["keys", "new", "--out", "keys"])?, "keys new")?;
    let cluster = cluster_with_topics()?;
    let brokers = cluster.bootstrap_servers();
    // Label delays strictly under the 7-day delay of the risk windows: batch and stream agree.
    let replayed = ok(
        tollgate(
            d,
            &[
                "exporter",
                "replay-to-kafka",
                "--input",
                "tx.csv",
                "--brokers",
                &brokers,
                "--label-delay-max",
                "6d 23h",
            ],
        )?,
        "replay-to-kafka",
    )?;
    eprintln!("{replayed}");

    let run = run_args(&brokers, &["--checkpoint-every", "200ms", "--idle", "3s"]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let first = Running::start(d, &run, "first.log")?;
    // Kill it once a third of the days are published (each snapshot is followed by a checkpoint).
    let deadline = Instant::now() + Duration::from_secs(60);
    while snapshots(&d.join("out"))?.len() < DAYS as usize / 3 {
        if Instant::now() > deadline {
            return Err(format!("no progress:\n{}", first.log()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first = first;
    first.child.kill()?; // SIGKILL
    first.child.wait()?;
    assert!(d.join("ck/exporter.checkpoint").exists(), "a checkpoint before the kill");
    let before_kill = snapshots(&d.join("out"))?;
    assert!(before_kill.len() < DAYS as usize - 2, "killed in the middle ({} published)", before_kill.len());

    let second = Running::start(d, &run, "second.log")?;
    let log = second.wait(Duration::from_secs(90))?;
    assert!(log.contains("resumed from the checkpoint"), "{log}");
    let published = snapshots(&d.join("out"))?;
    for (name, bytes) in &before_kill {
        assert_eq!(published.get(name), Some(bytes), "{name} published again differently after the restart");
    }

    // The batch exporter, as of each snapshot's as-of, with the same (default) policy.
    let tx = read_transactions(&d.join("tx.csv"), &IngestOptions::default(), &NoProgress)?.transactions;
    let signer = SnapshotSigner::from_text(&std::fs::read_to_string(d.join("keys/signing.key"))?)?;
    let edge = EdgeKey::from_text(&std::fs::read_to_string(d.join("keys/edge.key"))?)?;
    let schema = FeatureSchema::handbook();
    let policy = Policy::new(Policy::DEFAULT.review_at(), Policy::DEFAULT.decline_at())?;
    let decisioning = Decisioning { policy: Some(&policy), ..Decisioning::default() };
    let first_day = tx.time[0].0.div_euclid(86_400) + 1;
    let mut expected_day = first_day;
    let mut full = 0;
    for (name, bytes) in &published {
        let snapshot =
            Snapshot::load(bytes, std::slice::from_ref(&edge)).map_err(|e| format!("{name}: {e}\n{log}"))?;
        let as_of = snapshot.meta().as_of;
        assert_eq!(as_of.0, expected_day * 86_400, "{name}: one snapshot a day, none missing");
        expected_day += 1;
        let batch = build_with(&tx, &schema, as_of, as_of, &signer, &decisioning, &NoProgress)?;
        assert_eq!(snapshot.meta(), &batch.meta, "{name}: meta");
        assert!(bytes == &batch.bytes, "{name}: the stream's snapshot differs from the batch's");
        // The terminals' risk windows are 7 days late: from the 8th day on, both tables are full.
        full += usize::from(batch.rows.iter().all(|&n| n > 1000));
    }
    assert!(full >= DAYS as usize - 8, "only {full} snapshots with both tables filled");
    // Every day of transactions up to the last one (labels run on up to 7 days later).
    assert!(expected_day - first_day >= i64::from(DAYS) - 1, "{} snapshots", published.len());
    let counts = std::fs::read_to_string(d.join("second.out"))?;
    assert!(counts.contains(&format!("{} transactions", tx.len())), "{counts}");
    let frauds = tx.fraud.iter().filter(|&&f| f != 0).count();
    assert!(counts.contains(&format!("{frauds} labels")), "{counts}");
    assert!(counts.contains(", 0 rejected"), "{counts}");
    eprintln!("{} snapshots, equal to the batch's; {:.1} s", published.len(), began.elapsed().as_secs_f64());
    Ok(())
}

#[test]
fn bad_messages_are_counted_and_logged_and_the_run_goes_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    ok(tollgate(d, &["keys", "new", "--out", "keys"])?, "keys new")?;
    let cluster = cluster_with_topics()?;
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create()?;
    let day = 1_522_540_800; // 2018-04-01
    let good = |id: u64, t: i64| {
        format!(
            r#"{{"transaction_id": {id}, "time": {t}, "customer_id": 1, "terminal_id": 2, "amount": 10.5}}"#
        )
    };
    let messages: Vec<(&str, String)> = vec![
        ("transactions", good(1, day + 60)),
        ("transactions", r#"{"transaction_id": 2, "time": "#.to_string()), // malformed JSON
        (
            "transactions",
            r#"{"transaction_id": 3, "customer_id": 1, "terminal_id": 2, "amount": 3}"#.to_string(),
        ), // no time
        ("transactions", good(4, day + 120)),
        ("labels", r#"{"transaction_id": 1, "reported_at": "2018-04-01T00:05:00Z"}"#.to_string()), // no fraud
        (
            "labels",
            r#"{"transaction_id": 99, "fraud": true, "reported_at": "2018-04-01T00:06:00Z"}"#.to_string(),
        ), // unknown
        (
            "labels",
            r#"{"transaction_id": 4, "fraud": true, "reported_at": "2018-04-01T00:07:00Z"}"#.to_string(),
        ),
        ("transactions", good(5, day + 86_400 + 60)),
    ];
    for (topic, payload) in &messages {
        // Key "1": every message of a topic in one partition, in this order.
        producer
            .send(BaseRecord::to(topic).key("1").payload(payload.as_bytes()))
            .map_err(|(e, _)| format!("send: {e}"))?;
    }
    producer.flush(Duration::from_secs(10))?;
    let run = run_args(&brokers, &["--idle", "2s", "--dead-letter", "dead.jsonl"]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let log = Running::start(d, &run, "run.log")?.wait(Duration::from_secs(60))?;
    // Counted by reason, in the summary.
    assert!(log.contains("3 transactions, ") || log.contains("3 transactions and"), "{log}");
    for reason in [
        "1  bad transaction (request)",
        "1  bad transaction (time)",
        "1  bad label (fraud)",
        "1  label of an unknown transaction",
    ] {
        assert!(log.contains(reason), "{reason:?} not counted:\n{log}");
    }
    // Logged with topic, partition and offset, the field named.
    assert!(
        log.lines()
            .any(|l| l.starts_with("rejected transactions[") && l.contains("@2: bad transaction (time)")),
        "{log}"
    );
    let dead = std::fs::read_to_string(d.join("dead.jsonl"))?;
    assert_eq!(dead.lines().count(), 4, "{dead}");
    // And the good ones made the snapshot as of 2018-04-02.
    let published = snapshots(&d.join("out"))?;
    assert_eq!(published.keys().collect::<Vec<_>>(), ["snapshot-20180402T000000.tgs"], "{log}");
    let edge = EdgeKey::from_text(&std::fs::read_to_string(d.join("keys/edge.key"))?)?;
    let bytes = &published["snapshot-20180402T000000.tgs"];
    let snapshot = Snapshot::load(bytes, std::slice::from_ref(&edge))?;
    let customer = snapshot.table(0).ok_or("no customer table")?;
    let row = customer
        .lookup(edge.id_hash().hash(b"1"))
        .map_err(|_| "part missing")?
        .ok_or("customer 1 missing")?;
    assert_eq!(&row.0[..2], &[2.0, 21.0], "two transactions of 10.5 in the last day");
    Ok(())
}

#[test]
fn sigterm_stops_it_cleanly_after_a_final_checkpoint() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    ok(tollgate(d, &["keys", "new", "--out", "keys"])?, "keys new")?;
    let cluster = cluster_with_topics()?;
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create()?;
    let day = 1_522_540_800; // 2018-04-01
    for (i, t) in [(1, day + 60), (2, day + 86_400 + 60)] {
        let payload = format!(
            r#"{{"transaction_id": {i}, "time": {t}, "customer_id": 1, "terminal_id": 2, "amount": 1}}"#
        );
        producer
            .send(BaseRecord::to("transactions").key("1").payload(payload.as_bytes()))
            .map_err(|(e, _)| format!("send: {e}"))?;
    }
    producer.flush(Duration::from_secs(10))?;
    // Without --until-idle it would run for ever.
    let args = ["exporter", "run", "--brokers", &brokers, "--key", "keys/signing.key", "--every", "1d"];
    let more = ["--checkpoint", "ck", "--out-dir", "out", "--idle", "1s"];
    let args: Vec<&str> = args.iter().copied().chain(more).collect();
    let running = Running::start(d, &args, "run.log")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while snapshots(&d.join("out"))?.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("no snapshot:\n{}", running.log()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill").args(["-TERM", &running.child.id().to_string()]).status()?;
    assert!(status.success());
    let log = running.wait(Duration::from_secs(20))?;
    assert!(log.contains("stopped (asked to stop)"), "{log}");
    assert!(log.contains("2 transactions"), "{log}");
    // The final checkpoint holds both transactions: a restart resumes after them.
    let restarted = Running::start(d, &[&args[..], &["--until-idle"]].concat(), "again.log")?;
    let log = restarted.wait(Duration::from_secs(30))?;
    assert!(log.contains("resumed from the checkpoint") && log.contains("transactions[0]@"), "{log}");
    assert!(log.contains("0 snapshots published, 2 transactions"), "{log}");
    Ok(())
}

#[test]
fn with_delta_it_pushes_deltas_to_a_host_and_writes_them_beside_the_snapshots() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    handbook_slice(&d.join("tx.csv"), 6)?;
    ok(tollgate(d, &["keys", "new", "--out", "keys"])?, "keys new")?;
    std::fs::copy(d.join("keys/edge.key"), d.join("edge.key"))?;
    std::fs::write(d.join("admin.token"), common::TOKEN)?;
    let server = common::Server::start(d, &[])?;
    let cluster = cluster_with_topics()?;
    let brokers = cluster.bootstrap_servers();
    let replay = ["exporter", "replay-to-kafka", "--input", "tx.csv", "--brokers", &brokers];
    ok(tollgate(d, &replay)?, "replay-to-kafka")?;

    // As `run_args`, every 6 hours.
    let run = ["exporter", "run", "--brokers", &brokers, "--key", "keys/signing.key", "--every", "6h"];
    let more = ["--checkpoint", "ck", "--out-dir", "out", "--until-idle", "--idle", "2s", "--delta"];
    let push = ["--token-file", "admin.token", "--push-to", &server.base];
    let run = [&run[..], &more, &push].concat();
    // Stopped after three days and started again: the first publish after the restart is a delta
    // too, from the newest snapshot in --out-dir.
    let first = [&run[..], &["--stop-at", "2018-04-04"]].concat();
    let log = Running::start(d, &first, "first.log")?.wait(Duration::from_secs(60))?;
    let before = snapshots(&d.join("out"))?.len();
    let log = log + &Running::start(d, &run, "run.log")?.wait(Duration::from_secs(60))?;
    assert!(log.contains("resumed from the checkpoint"), "{log}");

    // Every snapshot but the first went to the host as a delta; the host serves the last one.
    let published = snapshots(&d.join("out"))?;
    assert!(
        published.len() >= 20 && before >= 8 && before < published.len() - 8,
        "{before}, {}:\n{log}",
        published.len()
    );
    let sent = log.matches("sent a delta of").count();
    assert_eq!(sent, published.len() - 1, "{log}");
    assert!(!log.contains("refused"), "{log}");
    let (last_name, last) = published.iter().next_back().ok_or("no snapshot")?;
    let edge = EdgeKey::from_text(&std::fs::read_to_string(d.join("edge.key"))?)?;
    let last_id = Snapshot::load(last, std::slice::from_ref(&edge))?.meta().snapshot_id.clone();
    let client = common::agent(None)?;
    assert_eq!(common::serving(&client, &server.base)?, last_id, "{last_name}");
    let metrics = client.get(&format!("{}/metrics", server.base)).call()?.body_mut().read_to_string()?;
    assert!(
        metrics.contains(&format!("tollgate_snapshot_updates_total{{kind=\"delta\"}} {sent}")),
        "{metrics}"
    );
    assert!(metrics.contains("tollgate_snapshot_updates_total{kind=\"full\"} 1"), "{metrics}");

    // Beside each snapshot but the first, the delta from the one before, which rebuilds it, and
    // its size in the published line.
    let names: Vec<&String> = published.keys().collect();
    for pair in names.windows(2) {
        let stem = |n: &str| n.trim_start_matches("snapshot-").trim_end_matches(".tgs").to_string();
        let delta_name = format!("snapshot-{}.from-{}.tgd", stem(pair[1]), stem(pair[0]));
        let delta =
            std::fs::read(d.join("out").join(&delta_name)).map_err(|e| format!("{delta_name}: {e}"))?;
        assert!(delta.len() < published[pair[1]].len(), "{delta_name}: {} bytes", delta.len());
        assert_eq!(&apply_delta(&published[pair[0]], &delta)?, &published[pair[1]], "{delta_name}");
        assert!(log.contains(&format!("; delta: {} bytes (", delta.len())), "{delta_name}:\n{log}");
    }
    eprintln!("{}", log.lines().rfind(|l| l.contains("; delta: ")).unwrap_or_default());
    server.terminate()
}
