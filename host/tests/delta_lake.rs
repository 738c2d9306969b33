//! The decision log as a Delta Lake table: rows appended through the real log, rolled into
//! Parquet, committed to `_delta_log/`; the table is then opened with the `deltalake` crate's
//! reader and its files, schema and row counts are checked against the directory and the rows.

use anyhow::{Context, Result, ensure};
use host::decision_log::{self, DecisionLog, DecisionLogConfig, DecisionLogCounters, DecisionRecord};
use scorer::policy::Decision;
use scorer::snapshot::IdHashKey;
use std::collections::BTreeSet;
use std::path::Path;

fn row(i: u64) -> DecisionRecord {
    DecisionRecord {
        decided_at_us: 1_764_000_000_000_000 + i as i64,
        request_id: format!("r-{i}"),
        batch_index: (i.is_multiple_of(3)).then_some(i as u32),
        transaction_id: Some(i.to_string()),
        // Keys above i64::MAX: their bits must survive the signed column.
        customer_key: Some(u64::MAX - i),
        terminal_key: (i.is_multiple_of(2)).then_some(i << 40),
        amount: Some(10.5 + i as f64),
        score: Some(i as f64 / 100.0),
        decision: if i.is_multiple_of(5) { Decision::Review } else { Decision::Allow },
        rules: if i.is_multiple_of(7) { vec!["high_amount".into()] } else { vec![] },
        reasons: vec![decision_log::Reason {
            feature: "TX_AMOUNT".into(),
            value: Some(10.5 + i as f64),
            contribution: Some(0.25),
        }],
        snapshot_id: Some("tg-test".into()),
        model_id: Some("lr-test".into()),
        latency_us: 12,
        fallback: None,
        shadow: None,
    }
}

fn open(dir: &Path, delta_lake: bool) -> Result<DecisionLog> {
    let config = DecisionLogConfig { delta_lake, ..DecisionLogConfig::new(dir) };
    Ok(DecisionLog::open(config, IdHashKey([7; 16]), DecisionLogCounters::default())?)
}

/// The table as the deltalake crate reads it: version, file names, total of the files' row counts.
fn read_table(dir: &Path) -> Result<(u64, BTreeSet<String>, i64, Vec<String>)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let url = deltalake::ensure_table_uri(dir.to_str().context("utf-8 path")?)?;
    let table = runtime.block_on(deltalake::open_table(url))?;
    let version = table.version().context("the table has a version")?;
    let snapshot = table.snapshot()?;
    let mut files = BTreeSet::new();
    let mut rows = 0;
    for file in snapshot.log_data() {
        files.insert(file.path().into_owned());
        rows += file.num_records().context("every add carries numRecords")? as i64;
    }
    let columns = snapshot.schema().fields().map(|f| f.name().to_string()).collect();
    Ok((version, files, rows, columns))
}

fn names(dir: &Path) -> Result<BTreeSet<String>> {
    Ok(decision_log::files(dir)?.iter().filter_map(|p| p.file_name()?.to_str().map(str::to_string)).collect())
}

#[test]
fn every_rolled_file_is_committed_once_and_the_table_reads_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path(), true)?;
    let (version, files, rows, columns) = read_table(dir.path())?;
    ensure!(version == 0 && files.is_empty() && rows == 0, "a new table is empty at version 0");
    let schema: Vec<String> = decision_log::schema().fields().iter().map(|f| f.name().clone()).collect();
    ensure!(columns == schema, "the table's columns are the log's: {columns:?}");

    let all: Vec<DecisionRecord> = (0..250).map(row).collect();
    for chunk in all.chunks(100) {
        let _ = log.append(chunk.to_vec()).wait_blocking();
        log.roll();
    }
    let (version, files, rows, _) = read_table(dir.path())?;
    ensure!(version == 3, "one commit per roll, got version {version}");
    ensure!(files == names(dir.path())? && files.len() == 3, "the table lists exactly the directory's files");
    ensure!(rows == 250, "numRecords add up to the rows appended: {rows}");
    let mut back = decision_log::read_dir(dir.path())?;
    back.iter_mut().for_each(|r| r.latency_us = 12);
    ensure!(back == all, "every row comes back, keys above i64::MAX included");
    ensure!(log.counters().error_total() == 0, "no stage failed");
    Ok(())
}

#[test]
fn a_log_kept_without_the_table_is_committed_when_the_table_is_turned_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        // Files written while no table was kept (or before a crash took the commit).
        let log = open(dir.path(), false)?;
        let _ = log.append((0..40).map(row).collect()).wait_blocking();
        log.roll();
        let _ = log.append((40..70).map(row).collect()).wait_blocking();
        log.roll();
    }
    ensure!(!dir.path().join("_delta_log").exists(), "no table unless asked for");
    let log = open(dir.path(), true)?;
    let (version, files, rows, _) = read_table(dir.path())?;
    ensure!(
        version == 1 && files.len() == 2 && rows == 70,
        "both files in one commit: v{version} {files:?} {rows}"
    );
    let _ = log.append((70..75).map(row).collect()).wait_blocking();
    log.roll();
    drop(log);
    // Opening again adds nothing twice.
    let log = open(dir.path(), true)?;
    log.roll();
    let (version, files, rows, _) = read_table(dir.path())?;
    ensure!(version == 2 && files == names(dir.path())? && rows == 75, "v{version} {files:?} {rows}");
    Ok(())
}
