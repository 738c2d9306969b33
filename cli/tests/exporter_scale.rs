//! `tollgate exporter run --group NAME` and `tollgate exporter assemble`: two members of one
//! consumer group share the entities (customers by the customer-keyed topic's partitions,
//! terminals by the terminal-keyed one's) against a real Kafka-protocol broker (librdkafka's mock
//! cluster). One member is killed with SIGKILL in the middle: the group moves its partitions to
//! the other, which loads their lanes' checkpoints and goes on; the killed one is started again,
//! joins, and takes some partitions back. Every snapshot the assembler signs from the lanes'
//! shards is byte for byte the batch exporter's snapshot as of the same time.

mod common;

use common::stream::{
    Running, compare_with_batch, files, metric, metrics_of, replayed_handbook, snapshots, wait_until,
};
use common::{Result, tollgate};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Days of the handbook file replayed (fewer than the single exporter's test: two members and
/// an assembler share the machine).
const DAYS: u32 = 30;

/// Every shard written so far, by `<as_of>/<file name>`.
fn all_shards(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    if dir.exists() {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue; // the assembler's progress file
            }
            let as_of = entry.file_name().to_string_lossy().into_owned();
            for (name, bytes) in files(&entry.path(), "k", ".shard")? {
                out.insert(format!("{as_of}/{name}"), bytes);
            }
        }
    }
    Ok(out)
}

/// The number after `label` in `text` (`"... 1234 transactions"` with label `" transactions"`).
fn count_after(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)? + label.len();
    text[at..].split_whitespace().next()?.trim_end_matches([':', ';']).parse().ok()
}

#[test]
fn a_group_member_killed_midway_hands_its_partitions_over_and_the_assembled_snapshots_are_the_batchs()
-> Result<()> {
    let began = Instant::now();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (cluster, replayed) = replayed_handbook(d, DAYS, &["transactions-by-terminal"])?;
    let brokers = cluster.bootstrap_servers();
    eprintln!("{replayed}");

    // The assembler runs until asked to stop (below, once it has published every as-of the
    // members wrote). An idle timer would race the members: the as-ofs after the last
    // transaction come from labels only, and a member folds those once its transaction
    // partitions have been quiet for its own idle time, later still if it rejoined a rebalance.
    let assembler = Running::start(
        d,
        &["exporter", "assemble", "--shards", "shards", "--key", "keys/signing.key", "--out-dir", "out"],
        "assembler.log",
    )?;
    // Both members share the checkpoint and shard directories. A member idle for 15 s stops
    // (longer than the 6 s the group waits before it declares a silent member dead).
    let member: Vec<&str> = vec![
        "exporter",
        "run",
        "--brokers",
        &brokers,
        "--every",
        "1d",
        "--group",
        "exporters",
        "--shards",
        "shards",
        "--checkpoint",
        "ck",
        "--until-idle",
        "--idle",
        "15s",
        "--checkpoint-every",
        "1s",
        "--kafka",
        "session.timeout.ms=6000",
        "--kafka",
        "heartbeat.interval.ms=500",
    ];
    let with_metrics: Vec<&str> = member.iter().copied().chain(["--metrics-addr", "127.0.0.1:0"]).collect();
    let one = Running::start(d, &with_metrics, "one.log")?;
    let two = Running::start(d, &member, "two.log")?;
    // Kill member two once it owns partitions of both topics and has written a third of its
    // lanes' shards (each lane checkpoints after its shards).
    let shard_lines = |log: &str| log.lines().filter(|l| l.starts_with("shard as of")).count();
    wait_until(
        Duration::from_secs(300),
        "member two made no progress",
        || two.log(),
        || {
            let log = two.log();
            let owns_both = log.contains("transactions[") && log.contains("transactions-by-terminal[");
            Ok(owns_both && shard_lines(&log) >= 16 * DAYS as usize / 3)
        },
    )?;
    two.kill_9()?;
    let before_kill = all_shards(&d.join("shards"))?;
    assert!(d.join("ck/lanes/transactions").exists(), "lane checkpoints before the kill");

    // Member one takes the dead member's partitions over from their lanes' checkpoints: all 32
    // lanes, which its metrics show with the rebalances that moved them.
    wait_until(
        Duration::from_secs(180),
        "member one did not take the dead member's partitions over",
        || one.log(),
        || Ok(one.log().contains("(from its lane's checkpoint)")),
    )?;
    wait_until(
        Duration::from_secs(90),
        "member one's metrics do not show its 32 lanes",
        || format!("{}\n{}", one.log(), metrics_of(&one).unwrap_or_default()),
        || Ok(metric(&metrics_of(&one)?, "tollgate_exporter_lanes") == Some(32.0)),
    )?;
    let rebalances = metric(&metrics_of(&one)?, "tollgate_exporter_rebalances_total").unwrap_or(0.0);
    assert!(rebalances >= 2.0, "{rebalances} rebalances");
    // The killed member comes back, joins, and is given partitions again: member one gives them
    // up (checkpointing their lanes) and it loads them.
    let two = Running::start(d, &member, "two-again.log")?;
    let log2 = two.wait(Duration::from_secs(300))?;
    let log1 = one.wait(Duration::from_secs(300))?;
    // Every shard is written now: the assembler must publish up to the last as-of of them.
    let after = all_shards(&d.join("shards"))?;
    let last_as_of = after
        .keys()
        .filter_map(|name| name.split('/').next()?.parse::<i64>().ok())
        .max()
        .ok_or("no shards written")?;
    let assembled = || {
        let progress = std::fs::read_to_string(d.join("shards/assembled")).unwrap_or_default();
        progress.trim().parse::<i64>().ok() == Some(last_as_of)
    };
    wait_until(
        Duration::from_secs(120),
        &format!("the assembler did not publish up to the members' last as-of {last_as_of}"),
        || assembler.log(),
        || Ok(assembled()),
    )?;
    let log = assembler.stop(Duration::from_secs(60))?;
    let gave_up = |log: &str| log.lines().any(|l| l.starts_with("rebalance:") && !l.ends_with("gave up 0"));
    assert!(gave_up(&log1), "{log1}");
    // Cooperative rebalancing: a member gives up only the partitions that move, never all it
    // holds (an eager rebalance revokes everything, then assigns again).
    let mut held = 0;
    for line in log1.lines().filter(|l| l.starts_with("rebalance:")) {
        let (took, gave) =
            (count_after(line, "took").ok_or(line)?, count_after(line, "gave up").ok_or(line)?);
        assert!(gave == 0 || gave < held, "gave up all {held} partitions it held: {line}\n{log1}");
        held = held + took - gave;
    }
    assert!(log2.contains("(from its lane's checkpoint)"), "{log2}");

    // Shards written again after the kill (their lanes replayed from a checkpoint) are the same
    // bytes.
    for (name, bytes) in &before_kill {
        assert_eq!(after.get(name), Some(bytes), "{name} written again differently after the kill");
    }
    let published = snapshots(&d.join("out"))?;
    let compared = compare_with_batch(d, &published, &log)?;
    assert!(compared.full >= DAYS as usize - 8, "only {} snapshots with both tables filled", compared.full);
    assert!(compared.days >= i64::from(DAYS) - 1, "{} snapshots:\n{log}", published.len());
    assert!(!log.contains("waiting:"), "as-ofs left unassembled:\n{log}");
    // Every transaction folded exactly once per kind, in the lanes of the last as-of; every label
    // applied to at least one kind; nothing rejected.
    let total = compared.transactions as u64;
    for kind in ["CUSTOMER_ID", "TERMINAL_ID"] {
        let line =
            log.lines().find(|l| l.trim_start().starts_with(&format!("{kind} lanes:"))).ok_or("no counts")?;
        let folded = count_after(line, "lanes:").ok_or("no transactions")?;
        // The last as-of comes before the last transactions.
        assert!(folded <= total && folded + 2 * total / DAYS as u64 >= total, "{line}: of {total}");
        assert!(line.ends_with(" 0 rejected"), "{line}");
    }
    // A group's checkpoint directory is refused to a single exporter, before anything is read.
    let single = ["exporter", "run", "--brokers", &brokers, "--checkpoint", "ck", "--out-dir", "single"];
    let refused = tollgate(d, &single)?;
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && text.contains("scale-out lanes") && text.contains("a single exporter"),
        "{text}"
    );

    eprintln!(
        "{} snapshots assembled from a 2-member group with a kill, equal to the batch's; {:.1} s in all\n{log1}",
        published.len(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
