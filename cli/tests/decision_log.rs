//! `tollgate serve --decision-log` as a real process: every decision acknowledged under
//! `--durable` survives `kill -9` and is in the Parquet files exactly once after the restart
//! recovers the write-ahead segment; SIGTERM rolls the open segment; and a full disk (simulated by
//! lowering the running server's RLIMIT_FSIZE to 0, which makes every write fail as ENOSPC would,
//! also as non-root) does not stop scoring but shows in the metrics and on stderr, and logging
//! resumes once there is room again.

#![cfg(unix)]

use exporter::NoProgress;
use exporter::simulate::{SimulationConfig, simulate};
use exporter::snapshot::aggregate_history;
use host::decision_log;
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::model::{Logistic, Model};
use scorer::policy::Policy;
use scorer::snapshot::{IdHashKey, SnapshotMeta, SnapshotSigner, build_snapshot_with};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Result, Server};

/// Transaction ids answered 200, each with its `x-tollgate-durable` header.
type Acked = Vec<(String, Option<String>)>;

/// A signed snapshot with a logistic model and a policy, and its edge key, written into `dir`.
fn snapshot(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let signer = SnapshotSigner::from_secret([3; 32], IdHashKey([4; 16]));
    let config = SimulationConfig { seed: 8, customers: 200, terminals: 400, days: 20, ..Default::default() };
    let tx = simulate(&config, &NoProgress)?;
    let as_of = Timestamp(config.start.0 + 15 * 86_400);
    let schema = FeatureSchema::handbook();
    let tables = aggregate_history(&tx, &schema, as_of, signer.id_hash(), &NoProgress)?;
    let meta = SnapshotMeta {
        snapshot_id: "tg-declog".into(),
        as_of,
        created_at: Timestamp(1_700_000_000),
        data_range: Some((tx.time[0], as_of)),
        exporter_version: "cli-test".into(),
        id_key_fingerprint: signer.id_hash().fingerprint(),
        schema,
        model_id: Some("lr-declog".into()),
        lineage: None,
        reference: None,
    };
    let weights = vec![0.012, 0.15, 0.6, 0.08, 0.004, 0.03, 0.002, 0.01, 0.001, 0.0, 4.0, 0.0, 3.0, 0.0, 1.5];
    let model = Model::Logistic(Logistic { weights, intercept: -3.5 });
    let policy = Policy::new(0.25, 0.6)?;
    let bytes = build_snapshot_with(&meta, tables, Some(&model), Some(&policy), &signer)?;
    let (snap, key) = (dir.join("snapshot.tgs"), dir.join("edge.key"));
    std::fs::write(&snap, bytes)?;
    std::fs::write(&key, signer.edge_key().to_text())?;
    Ok((snap, key))
}

/// A running `tollgate serve`; its stderr is collected as it comes.
/// `tollgate serve` over `dir/snapshot.tgs` logging into `log_dir`, with `extra` arguments.
fn start(dir: &Path, log_dir: &Path, extra: &[&str], shell: Option<&str>) -> Result<Server> {
    let log = log_dir.to_string_lossy();
    let mut args = vec!["--snapshot", "snapshot.tgs", "--decision-log", &log];
    args.extend_from_slice(extra);
    Server::start_with(dir, &args, shell)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn request(id: &str, i: usize) -> String {
    format!(
        r#"{{"transaction_id":"{id}","customer_id":"{}","terminal_id":{},"amount":{}.5,"time":1523900000}}"#,
        i % 150,
        i % 300,
        i % 500
    )
}

/// Scores `n` transactions `<prefix>-<i>` from `threads` clients; the ids acknowledged (200), with
/// their `x-tollgate-durable` header, and the time taken.
fn score_many(base: &str, prefix: &str, n: usize, threads: usize) -> Result<(Acked, Duration)> {
    let t = Instant::now();
    let results: Vec<Acked> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || {
                    let agent = agent();
                    let mut acked = Vec::new();
                    for i in (k..n).step_by(threads) {
                        let id = format!("{prefix}-{i}");
                        let sent = agent
                            .post(&format!("{base}/v1/score"))
                            .header("content-type", "application/json")
                            .send(request(&id, i).as_bytes());
                        if let Ok(r) = sent
                            && r.status() == 200
                        {
                            let durable = r.headers().get("x-tollgate-durable").and_then(|v| v.to_str().ok());
                            acked.push((id, durable.map(str::to_string)));
                        }
                    }
                    acked
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    Ok((results.into_iter().flatten().collect(), t.elapsed()))
}

fn files_ending(dir: &Path, suffix: &str) -> Result<usize> {
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .count())
}

/// How many times each transaction id is in the Parquet files.
fn logged(dir: &Path) -> Result<BTreeMap<String, usize>> {
    let mut seen = BTreeMap::new();
    for row in decision_log::read_dir(dir)? {
        *seen.entry(row.transaction_id.unwrap_or_default()).or_insert(0) += 1;
    }
    Ok(seen)
}

#[test]
fn acknowledged_decisions_survive_kill_9_exactly_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    snapshot(d)?;
    let log_dir = d.join("decisions");

    // Durable: every 200 waited for its row's fsync.
    let server = start(d, &log_dir, &["--durable"], None)?;
    let n = 400;
    let (acked, took) = score_many(&server.base, "k9", n, 8)?;
    if acked.len() != n || acked.iter().any(|(_, durable)| durable.as_deref() != Some("true")) {
        return Err(format!("{} of {n} acknowledged durably:\n{}", acked.len(), server.stderr()).into());
    }
    println!(
        "--durable: {n} requests from 8 clients in {took:?}: {:.0} decisions/s",
        n as f64 / took.as_secs_f64()
    );
    server.kill_9()?;
    // Killed mid-segment: the rows are in the write-ahead segment only.
    assert!(files_ending(&log_dir, ".wal")? >= 1, "no write-ahead segment left by the killed process");
    assert_eq!(files_ending(&log_dir, ".parquet")?, 0, "nothing was rolled before the kill");

    // The restart rolls the segment into Parquet before it listens.
    let server = start(d, &log_dir, &[], None)?;
    assert!(server.says(&format!("decision log: {n} rows recovered")), "{}", server.stderr());
    assert_eq!(files_ending(&log_dir, ".wal")?, 0);
    let seen = logged(&log_dir)?;
    for (id, _) in &acked {
        assert_eq!(seen.get(id), Some(&1), "acknowledged decision {id} is logged {:?} times", seen.get(id));
    }
    assert_eq!(seen.len(), n, "rows that were never acknowledged: {}", seen.len() - n);

    // Not durable, then SIGTERM: the clean stop rolls the open segment; still exactly once.
    let (more, took) = score_many(&server.base, "term", n, 8)?;
    assert_eq!(more.len(), n);
    assert!(more.iter().all(|(_, durable)| durable.is_none()), "x-tollgate-durable without --durable");
    println!(
        "buffered: {n} requests from 8 clients in {took:?}: {:.0} decisions/s",
        n as f64 / took.as_secs_f64()
    );
    server.terminate()?;
    assert_eq!(files_ending(&log_dir, ".wal")?, 0, "SIGTERM left a segment behind");
    let seen = logged(&log_dir)?;
    assert_eq!(seen.len(), 2 * n);
    assert!(seen.values().all(|&count| count == 1), "a decision is logged twice");
    Ok(())
}

/// Sets the soft RLIMIT_FSIZE of a running process (`prlimit`, util-linux; allowed on one's own
/// processes without privileges). At 0 every write to a file fails with EFBIG, as ENOSPC would.
fn file_size_limit(pid: u32, soft: &str) -> Result<()> {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={soft}:unlimited")])
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("prlimit (util-linux) is needed to simulate a full disk: {other:?}").into()),
    }
}

#[test]
#[cfg(target_os = "linux")]
fn a_full_disk_for_the_log_does_not_stop_scoring() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    snapshot(d)?;
    let log_dir = d.join("decisions");
    // SIGXFSZ ignored (inherited through exec), so that a write over the limit fails instead of
    // killing the process.
    let server = start(d, &log_dir, &["--durable"], Some("trap '' XFSZ"))?;
    let pid = server.pid();
    let (before, _) = score_many(&server.base, "before", 10, 2)?;
    assert!(before.len() == 10 && before.iter().all(|(_, durable)| durable.as_deref() == Some("true")));

    // The disk fills up: scoring goes on, every answer says its row is not durable.
    file_size_limit(pid, "0")?;
    let n = 30;
    let (full, _) = score_many(&server.base, "full", n, 3)?;
    assert_eq!(full.len(), n, "scoring stopped on a full disk:\n{}", server.stderr());
    assert!(full.iter().all(|(_, durable)| durable.as_deref() == Some("false")), "{full:?}");
    let metrics = agent().get(&format!("{}/metrics", server.base)).call()?.body_mut().read_to_string()?;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(value("tollgate_decision_log_errors_total") >= 1.0, "{metrics}");
    assert_eq!(value("tollgate_decision_log_dropped_total"), n as f64, "{metrics}");
    assert_eq!(value("tollgate_decision_log_not_durable_total"), n as f64, "{metrics}");
    assert_eq!(value("tollgate_decision_log_rows_total"), 10.0, "{metrics}");
    assert!(server.says("scoring goes on"), "{}", server.stderr());
    let stderr = server.stderr();
    assert!(stderr.matches("scoring goes on").count() < 5, "one line per fault burst, not per row: {stderr}");

    // Space again: after the writer's one-second hold-off, rows are logged (and durable) again.
    file_size_limit(pid, "unlimited")?;
    std::thread::sleep(Duration::from_millis(1_200));
    let (after, _) = score_many(&server.base, "after", 10, 2)?;
    assert!(
        after.iter().all(|(_, durable)| durable.as_deref() == Some("true")),
        "{after:?}\n{}",
        server.stderr()
    );
    assert!(server.says("decision log: writing again"), "{}", server.stderr());
    server.terminate()?;

    // What was acknowledged durably is there once; what was dropped is not there at all.
    assert_eq!(files_ending(&log_dir, ".wal")?, 0);
    let seen = logged(&log_dir)?;
    for (id, _) in before.iter().chain(&after) {
        assert_eq!(seen.get(id), Some(&1), "{id}");
    }
    assert_eq!(seen.len(), 20, "{seen:?}");
    Ok(())
}
