//! `tollgate exporter run --instance I/N` and `tollgate exporter assemble`: two instances of the
//! continuous exporter share the entities (customers by the customer-keyed topic's partitions,
//! terminals by the terminal-keyed one's) against a real Kafka-protocol broker (librdkafka's mock
//! cluster); one is killed with SIGKILL in the middle and restarted; every snapshot the assembler
//! signs from their shards is byte for byte the batch exporter's snapshot as of the same time.

mod common;

use common::stream::{
    Running, cluster_with_topics, compare_with_batch, files, handbook_slice, ok, snapshots, wait_until,
};
use common::{Result, tollgate};
use std::path::Path;
use std::time::{Duration, Instant};

/// Days of the handbook file replayed (fewer than the single exporter's test: two instances and
/// an assembler share the machine).
const DAYS: u32 = 30;

/// Instance `i`'s shards so far, by file name.
fn shards_of(dir: &Path, i: u32) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if dir.exists() {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue; // the assembler's progress file
            }
            let as_of = entry.file_name().to_string_lossy().into_owned();
            for (name, bytes) in files(&entry.path(), &format!("{i}-of-2"), ".shard")? {
                out.push((format!("{as_of}/{name}"), bytes));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The number after `label` in `text` (`"... 1234 transactions"` with label `" transactions"`).
fn count_before(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)?;
    text[..at].rsplit(' ').next()?.parse().ok()
}

#[test]
fn two_instances_one_killed_and_restarted_assemble_the_batch_exporters_snapshots() -> Result<()> {
    let began = Instant::now();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    handbook_slice(&d.join("tx.csv"), DAYS)?;
    ok(tollgate(d, &["keys", "new", "--out", "keys"])?, "keys new")?;
    let cluster = cluster_with_topics(&["transactions-by-terminal"])?;
    let brokers = cluster.bootstrap_servers();
    let replay = [
        "exporter",
        "replay-to-kafka",
        "--input",
        "tx.csv",
        "--brokers",
        &brokers,
        "--transactions-by-terminal",
        "transactions-by-terminal",
        // Under the 7-day delay of the risk windows: batch and stream agree.
        "--label-delay-max",
        "6d 23h",
    ];
    eprintln!("{}", ok(tollgate(d, &replay)?, "replay-to-kafka")?);

    let assembler = Running::start(
        d,
        &[
            "exporter",
            "assemble",
            "--shards",
            "shards",
            "--instances",
            "2",
            "--key",
            "keys/signing.key",
            "--out-dir",
            "out",
            "--until-idle",
            "--idle",
            "6s",
        ],
        "assembler.log",
    )?;
    let instance = |i: u32| -> Vec<String> {
        let ck = format!("ck{i}");
        let who = format!("{i}/2");
        let args = ["exporter", "run", "--brokers", &brokers, "--every", "1d", "--instance", &who];
        let more = ["--shards", "shards", "--checkpoint", &ck, "--until-idle", "--checkpoint-every", "1s"];
        args.iter().chain(&more).chain(&["--idle", "3s"]).map(|s| s.to_string()).collect()
    };
    let (args0, args1) = (instance(0), instance(1));
    let args0: Vec<&str> = args0.iter().map(String::as_str).collect();
    let args1: Vec<&str> = args1.iter().map(String::as_str).collect();
    let zero = Running::start(d, &args0, "zero.log")?;
    let one = Running::start(d, &args1, "one.log")?;
    // Kill instance 1 once it has written a third of the days' shards (each is followed by a
    // checkpoint).
    let shards = d.join("shards");
    wait_until(
        Duration::from_secs(60),
        "instance 1 made no progress",
        || one.log(),
        || Ok(shards_of(&shards, 1)?.len() >= DAYS as usize / 3),
    )?;
    one.kill_9()?;
    assert!(d.join("ck1/exporter.checkpoint").exists(), "a checkpoint before the kill");
    let before_kill = shards_of(&shards, 1)?;
    assert!(before_kill.len() < DAYS as usize - 2, "killed in the middle ({} shards)", before_kill.len());

    let one = Running::start(d, &args1, "one-again.log")?;
    let log1 = one.wait(Duration::from_secs(90))?;
    assert!(log1.contains("resumed from the checkpoint"), "{log1}");
    let log0 = zero.wait(Duration::from_secs(60))?;
    let log = assembler.wait(Duration::from_secs(60))?;
    // Shards written again after the restart are the same bytes.
    let after = shards_of(&shards, 1)?;
    for (name, bytes) in &before_kill {
        let again = after.iter().find(|(n, _)| n == name).map(|(_, b)| b);
        assert_eq!(again, Some(bytes), "{name} written again differently after the restart");
    }

    let published = snapshots(&d.join("out"))?;
    let compared = compare_with_batch(d, &published, &log)?;
    assert!(compared.full >= DAYS as usize - 8, "only {} snapshots with both tables filled", compared.full);
    assert!(compared.days >= i64::from(DAYS) - 1, "{} snapshots:\n{log}", published.len());
    assert!(!log.contains("waiting:"), "as-ofs left unassembled:\n{log}");

    // Each instance folded its share: every transaction once per entity kind in all, every
    // label applied to at least one of its transaction's kinds, nothing rejected.
    let (out0, out1) =
        (std::fs::read_to_string(d.join("zero.out"))?, std::fs::read_to_string(d.join("one-again.out"))?);
    let folded: Vec<u64> =
        [&out0, &out1].iter().map(|o| count_before(o, " transactions and").unwrap_or(0)).collect();
    let total = compared.transactions as u64;
    assert_eq!(folded[0] + folded[1], 2 * total, "{out0}\n{out1}");
    assert!(folded.iter().all(|&n| n > total / 2 && n < 3 * total / 2), "{folded:?}: shares far from even");
    let labels: Vec<u64> =
        [&out0, &out1].iter().map(|o| count_before(o, " labels folded").unwrap_or(0)).collect();
    let frauds = compared.frauds as u64;
    assert!(labels[0] + labels[1] >= frauds && labels[0] + labels[1] <= 2 * frauds, "{labels:?} of {frauds}");
    for out in [&out0, &out1] {
        assert!(out.contains(", 0 rejected"), "{out}");
    }
    // A checkpoint is one instance's: starting it as another is refused before reading anything.
    let mut wrong = args0.clone();
    let at = wrong.iter().position(|a| *a == "ck0").ok_or("no --checkpoint")?;
    wrong[at] = "ck1";
    let refused = tollgate(d, &wrong)?;
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && text.contains("instance 1/2") && text.contains("instance 0/2"),
        "{text}"
    );

    let secs = |log: &str| -> f64 {
        log.lines()
            .find_map(|l| l.split_once(" after ").and_then(|(_, r)| r.split(' ').next()?.parse().ok()))
            .unwrap_or(0.0)
    };
    eprintln!(
        "{} snapshots assembled from 2 instances, equal to the batch's; instance 0 folded {} transaction \
         copies in {:.1} s; {:.1} s in all\n{log0}",
        published.len(),
        folded[0],
        secs(&out0),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
