//! `tollgate exporter`: the continuous exporter against a real Kafka-protocol broker (librdkafka's
//! mock cluster, in this process, on 127.0.0.1), killed with SIGKILL in the middle and
//! restarted: every snapshot it publishes is byte-for-byte the batch exporter's snapshot as of
//! the same time. And a bad message is counted and logged without stopping the run. With
//! `--delta` it pushes deltas to a real `tollgate serve` and writes them beside the snapshots,
//! across a restart too. Its metrics count what it folds, and its drift alarm fires on a shifted
//! stream only.

mod common;

use common::stream::{
    Running, cluster_with_topics, compare_with_batch, compare_with_batch_of, handbook_slice, metric,
    metrics_of, ok, replayed_handbook, snapshots, wait_until,
};
use common::{Result, tollgate};
use models::report::ModelCard;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use scorer::features::FeatureSchema;
use scorer::model::Model;
use scorer::snapshot::{EdgeKey, Snapshot, apply_delta};
use std::time::{Duration, Instant};

/// Days of the handbook file replayed: a contiguous slice from its first day, so that the whole
/// test (replay, two exporter runs, one batch snapshot per day) stays well under a minute.
const DAYS: u32 = 45;

/// `tollgate exporter run` against `brokers`: daily snapshots into `out`, checkpoint in `ck`,
/// until every partition is idle; `extra` options after.
fn run_args(brokers: &str, extra: &[&str]) -> Vec<String> {
    let common = ["exporter", "run", "--brokers", brokers, "--key", "keys/signing.key", "--every", "1d"];
    let more = ["--checkpoint", "ck", "--out-dir", "out", "--until-idle"];
    common.iter().chain(&more).chain(extra).map(|s| s.to_string()).collect()
}

#[test]
fn killed_and_restarted_it_publishes_the_batch_exporters_snapshots_byte_for_byte() -> Result<()> {
    let began = Instant::now();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (cluster, replayed) = replayed_handbook(d, DAYS, &[])?;
    let brokers = cluster.bootstrap_servers();
    eprintln!("{replayed}");

    let run = run_args(&brokers, &["--checkpoint-every", "200ms", "--idle", "3s"]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let first = Running::start(d, &run, "first.log")?;
    // Kill it once a third of the days are published (each snapshot is followed by a checkpoint).
    wait_until(
        Duration::from_secs(60),
        "no progress",
        || first.log(),
        || Ok(snapshots(&d.join("out"))?.len() >= DAYS as usize / 3),
    )?;
    first.kill_9()?;
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
    let compared = compare_with_batch(d, &published, &log)?;
    assert!(compared.full >= DAYS as usize - 8, "only {} snapshots with both tables filled", compared.full);
    // Every day of transactions up to the last one (labels run on up to 7 days later).
    assert!(compared.days >= i64::from(DAYS) - 1, "{} snapshots", published.len());
    let counts = std::fs::read_to_string(d.join("second.out"))?;
    assert!(counts.contains(&format!("{} transactions", compared.transactions)), "{counts}");
    assert!(counts.contains(&format!("{} labels", compared.frauds)), "{counts}");
    assert!(counts.contains(", 0 rejected"), "{counts}");
    eprintln!("{} snapshots, equal to the batch's; {:.1} s", published.len(), began.elapsed().as_secs_f64());
    Ok(())
}

#[test]
fn with_a_ratio_model_it_publishes_the_batch_exporters_ratio_snapshots_byte_for_byte() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let days = 30;
    let (cluster, _) = replayed_handbook(d, days, &[])?;
    let brokers = cluster.bootstrap_servers();
    // A small GBDT on the handbook-ratios schema; the exporter takes the schema from its model card.
    let train = ["train", "--input", "tx.csv", "--schema", "handbook-ratios", "--train-start", "2018-04-05"];
    let small = ["--trees", "5", "--max-depth", "3", "--output", "model.tgm"];
    ok(tollgate(d, &[&train[..], &small[..]].concat())?, "train")?;
    let run = run_args(&brokers, &["--idle", "3s", "--model", "model.tgm"]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let log = Running::start(d, &run, "run.log")?.wait(Duration::from_secs(90))?;
    let published = snapshots(&d.join("out"))?;

    let model = Model::decode(&std::fs::read(d.join("model.tgm"))?)?;
    let card = ModelCard::read(&ModelCard::sidecar_path(&d.join("model.tgm")))?;
    let id = card.model_id.as_str();
    let schema = FeatureSchema::handbook_ratios();
    let compared = compare_with_batch_of(d, &published, &log, &schema, Some((&model, id)))?;
    assert!(compared.days >= i64::from(days) - 1, "{} snapshots", published.len());
    let (name, last) = published.iter().next_back().ok_or("no snapshot")?;
    let edge = EdgeKey::from_text(&std::fs::read_to_string(d.join("keys/edge.key"))?)?;
    let meta = Snapshot::load(last, &[edge])?.meta().clone();
    assert_eq!(meta.schema.hash(), schema.hash(), "{name}: the ratio schema");
    assert_eq!(meta.model_id.as_deref(), Some(id), "{name}: the model");

    // Told another schema, it refuses the model, naming the way out.
    let wrong = tollgate(d, &[&run[..], &["--schema", "handbook"]].concat())?;
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("the model reads 18 features, the snapshot's schema has 15"), "{err}");
    Ok(())
}

#[test]
fn bad_messages_are_counted_and_logged_and_the_run_goes_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    ok(tollgate(d, &["keys", "new", "--out", "keys"])?, "keys new")?;
    let cluster = cluster_with_topics(&[])?;
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
    let cluster = cluster_with_topics(&[])?;
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
    wait_until(
        Duration::from_secs(30),
        "no snapshot",
        || running.log(),
        || Ok(!snapshots(&d.join("out"))?.is_empty()),
    )?;
    let log = running.stop(Duration::from_secs(20))?;
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
fn metrics_count_the_stream_and_drift_alarms_fire_on_a_shifted_one_only() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    ok(tollgate(d, &["keys", "new", "--out", "keys"])?, "keys new")?;
    // 72 simulated days; in the shifted stream every genuine amount is doubled from day 69 on.
    let sim = ["simulate", "--seed", "9", "--customers", "2000", "--terminals", "4000", "--days", "72"];
    let plain: Vec<&str> = sim.iter().copied().chain(["-o", "plain.csv"]).collect();
    ok(tollgate(d, &plain)?, "simulate")?;
    let shifted: Vec<&str> =
        sim.iter().copied().chain(["--shift", "amount=2x@day69..72", "-o", "shifted.csv"]).collect();
    ok(tollgate(d, &shifted)?, "simulate --shift")?;
    // The training window's distributions: the 28 unshifted days before day 68 (2018-06-08).
    let reference = [
        "snapshot",
        "build",
        "plain.csv",
        "--as-of",
        "2018-06-08",
        "--reference-days",
        "28",
        "-o",
        "ref.tgs",
    ];
    ok(tollgate(d, &reference)?, "snapshot build")?;

    let cluster = MockCluster::new(1)?;
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create()?;
    let mut runs = Vec::new();
    for name in ["plain", "shifted"] {
        let (tx_topic, label_topic) = (format!("{name}-tx"), format!("{name}-labels"));
        cluster.create_topic(&tx_topic, 4, 1)?;
        cluster.create_topic(&label_topic, 1, 1)?;
        // One transaction without an amount first: counted by reason and field.
        let bad = r#"{"transaction_id": 0, "time": 1522540800, "customer_id": 1, "terminal_id": 2}"#;
        producer
            .send(BaseRecord::to(&tx_topic).key("1").payload(bad.as_bytes()))
            .map_err(|(e, _)| format!("send: {e}"))?;
        producer.flush(Duration::from_secs(10))?;
        let brokers = cluster.bootstrap_servers();
        let topics = ["--brokers", &brokers, "--transactions", &tx_topic, "--labels", &label_topic];
        let input = format!("{name}.csv");
        let replay: Vec<&str> =
            ["exporter", "replay-to-kafka", "--input", &input].into_iter().chain(topics).collect();
        let replayed = ok(tollgate(d, &replay)?, "replay-to-kafka")?;
        let number = |after: &str| -> Result<f64> {
            let words: Vec<&str> = replayed.split_whitespace().collect();
            let at = words.iter().position(|w| *w == after).ok_or("replay output")?;
            Ok(words[at + 1].parse()?)
        };
        let (transactions, labels) = (number("wrote")?, number("and")?);
        let (ck, out) = (format!("ck-{name}"), format!("out-{name}"));
        let run: Vec<&str> = ["exporter", "run", "--key", "keys/signing.key", "--every", "1d"]
            .into_iter()
            .chain(topics)
            .chain(["--checkpoint", &ck, "--out-dir", &out, "--idle", "1s", "--metrics-addr", "127.0.0.1:0"])
            .chain(["--reference-from", "ref.tgs", "--drift-sample", "1"])
            .collect();
        runs.push((name, Running::start(d, &run, &format!("{name}.log"))?, transactions, labels));
    }

    let edge = EdgeKey::from_text(&std::fs::read_to_string(d.join("keys/edge.key"))?)?;
    let carried = Snapshot::load(&std::fs::read(d.join("ref.tgs"))?, std::slice::from_ref(&edge))?
        .meta()
        .reference
        .clone();
    assert!(carried.is_some(), "the reference snapshot carries a reference");
    for (name, running, transactions, labels) in &runs {
        // Wait until every message is folded (the exporter runs on; its endpoint with it).
        let deadline = Instant::now() + Duration::from_secs(180);
        let text = loop {
            let text = metrics_of(running)?;
            let done = metric(&text, "tollgate_exporter_transactions_total") == Some(*transactions)
                && metric(&text, "tollgate_exporter_labels_total") == Some(*labels);
            if done {
                break text;
            }
            if Instant::now() > deadline {
                return Err(format!("{name}: not all folded:\n{text}\n{}", running.log()).into());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let bad = r#"tollgate_exporter_rejected_total{reason="bad_transaction",field="amount"}"#;
        assert_eq!(metric(&text, bad), Some(1.0), "{name}:\n{text}");
        assert!(
            metric(&text, "tollgate_exporter_snapshots_published_total") >= Some(70.0),
            "{name}:\n{text}"
        );
        assert!(metric(&text, r#"tollgate_exporter_entities{kind="CUSTOMER_ID"}"#) > Some(1_900.0), "{text}");
        assert_eq!(
            metric(&text, "tollgate_exporter_drift_window_samples"),
            Some(10_000.0),
            "{name}:\n{text}"
        );
        let amount_psi =
            metric(&text, r#"tollgate_exporter_feature_psi{feature="TX_AMOUNT"}"#).ok_or("no PSI")?;
        let alarms: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tollgate_exporter_drift_alarm{") && l.ends_with(" 1"))
            .collect();
        if *name == "plain" {
            assert!(amount_psi < 0.1, "plain: TX_AMOUNT PSI {amount_psi}\n{text}");
            assert!(alarms.is_empty(), "plain: alarms {alarms:?}\n{text}");
        } else {
            assert!(amount_psi > 0.2, "shifted: TX_AMOUNT PSI {amount_psi}\n{text}");
            assert!(
                alarms.iter().any(|l| l.contains(r#"feature="TX_AMOUNT""#)),
                "shifted: {alarms:?}\n{text}"
            );
        }
        // Every snapshot it publishes carries the reference, so hosts monitor drift too.
        let published = snapshots(&d.join(format!("out-{name}")))?;
        let (file, bytes) = published.iter().next_back().ok_or("no snapshot")?;
        let snapshot = Snapshot::load(bytes, std::slice::from_ref(&edge))?;
        assert_eq!(snapshot.meta().reference, carried, "{name}: {file}");
        eprintln!("{name}: TX_AMOUNT PSI {amount_psi:.3}, alarms {alarms:?}");
    }
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
    let cluster = cluster_with_topics(&[])?;
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
