//! Scale-out's assembler: waits until all N instances' shards of an as-of exist, merges their rows
//! (disjoint by construction, checked), builds and signs one snapshot with
//! `exporter::snapshot::build_from_aggregates` and hands it to the same [`Sink`] as the single
//! exporter. As-ofs go out in time order; the last one published is kept in `DIR/assembled`.

use crate::run::{Report, RunError, Sink, Stopped};
use crate::shard::{self, Instance, Shard, ShardError};
use crate::state::Counts;
use exporter::snapshot::{Decisioning, build_from_aggregates};
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::snapshot::SnapshotSigner;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The file under the shards directory naming the last as-of published.
pub const PROGRESS_FILE: &str = "assembled";

/// How the assembler runs.
#[derive(Clone, Debug)]
pub struct AssembleConfig {
    /// The directory the instances write their shards into.
    pub shards: PathBuf,
    /// N: how many instances (shards per as-of).
    pub instances: u32,
    /// How often to look for new shards.
    pub poll: Duration,
    /// With `until_idle`: stop once no shard has appeared for this long.
    pub idle: Duration,
    /// Stop once idle (otherwise run until asked to stop).
    pub until_idle: bool,
}

/// What an assembler run did.
#[derive(Clone, Debug)]
pub struct AssembleSummary {
    /// Why it stopped.
    pub stopped: Stopped,
    /// Snapshots published in this run.
    pub published: usize,
    /// The last as-of published (in this run or before).
    pub last: Option<Timestamp>,
    /// As-ofs after it still missing shards: (as-of, shards present).
    pub waiting: Vec<(Timestamp, u32)>,
    /// Per instance, its counts in the last shards assembled.
    pub counts: Vec<Counts>,
}

fn read_progress(path: &Path) -> Result<Option<Timestamp>, ShardError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<i64>().map(|t| Some(Timestamp(t))).map_err(|e| ShardError::Damaged {
            path: path.to_path_buf(),
            reason: format!("{:?} is not an as-of in Unix seconds: {e}", text.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ShardError::Io { path: path.to_path_buf(), source }),
    }
}

fn write_progress(dir: &Path, as_of: Timestamp) -> Result<(), ShardError> {
    let path = dir.join(PROGRESS_FILE);
    exporter::durable::replace_file(&path, format!("{}\n", as_of.0).as_bytes())
        .map_err(|source| ShardError::Io { path, source })
}

/// Runs the assembler until `stop` is set or, with `until_idle`, no shard has appeared for
/// `idle`. A restart goes on after the as-of in `DIR/assembled`; publishing one again (a crash
/// between publishing and recording it) gives the same bytes.
pub fn assemble(
    config: &AssembleConfig,
    signer: &SnapshotSigner,
    decisioning: &Decisioning<'_>,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
) -> Result<AssembleSummary, RunError> {
    if config.instances == 0 {
        return Err(RunError::Config("--instances must be at least 1".into()));
    }
    let schema = FeatureSchema::handbook();
    let progress = config.shards.join(PROGRESS_FILE);
    let mut last = read_progress(&progress)?;
    let mut published = 0;
    let mut counts = Vec::new();
    let mut seen = Vec::new();
    let mut changed = Instant::now();
    loop {
        let listed = shard::list(&config.shards, config.instances, last)?;
        if listed != seen {
            seen = listed;
            changed = Instant::now();
        }
        for (as_of, present) in &seen {
            let as_of = *as_of;
            if last.is_some_and(|l| as_of <= l) {
                continue;
            }
            let instance = |index| Instance { index, count: config.instances };
            let at = |index| shard::path(&config.shards, as_of, instance(index));
            // An instance writes its shards in time order, one at each boundary after its first
            // event: one that has a later shard but none of this as-of (checked again after
            // seeing the later one) had folded nothing before it, and its share is empty.
            // Otherwise it is behind, and this as-of (and every later one) waits.
            let empty =
                |index: u32| seen.iter().any(|(t, p)| *t > as_of && p[index as usize]) && !at(index).exists();
            let missing: Vec<u32> = (0..config.instances).filter(|&i| !present[i as usize]).collect();
            if !missing.iter().all(|&i| empty(i)) {
                break;
            }
            let began = Instant::now();
            let shards = (0..config.instances)
                .map(|index| match missing.contains(&index) {
                    true => Ok(Shard::empty(as_of, instance(index), &schema)),
                    false => shard::read(&at(index)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            counts = shards.iter().map(|s| s.counts.clone()).collect();
            if let Some(s) = shards.iter().find(|s| s.as_of != as_of) {
                return Err(ShardError::Mismatch {
                    as_of,
                    reason: format!("shard {} under it says it is as of {}", s.instance, s.as_of),
                }
                .into());
            }
            let (tables, data_range) = shard::merge(shards, &schema, signer.id_hash())?;
            let snapshot =
                build_from_aggregates(tables, &schema, as_of, as_of, data_range, signer, decisioning)
                    .map_err(|source| RunError::Build { as_of, source })?;
            let build = began.elapsed();
            sink.publish(&snapshot).map_err(|reason| RunError::Publish { as_of, reason })?;
            sink.report(Report::Published { snapshot: &snapshot, build });
            write_progress(&config.shards, as_of)?;
            last = Some(as_of);
            published += 1;
        }
        if stop.load(Ordering::Relaxed) {
            break Ok(summary(Stopped::Asked, published, last, &seen, counts));
        }
        if config.until_idle && changed.elapsed() >= config.idle {
            break Ok(summary(Stopped::Idle, published, last, &seen, counts));
        }
        std::thread::sleep(config.poll);
    }
}

fn summary(
    stopped: Stopped,
    published: usize,
    last: Option<Timestamp>,
    seen: &[(Timestamp, Vec<bool>)],
    counts: Vec<Counts>,
) -> AssembleSummary {
    let waiting = seen
        .iter()
        .filter(|(t, _)| last.is_none_or(|l| *t > l))
        .map(|(t, p)| (*t, p.iter().filter(|&&x| x).count() as u32))
        .collect();
    AssembleSummary { stopped, published, last, waiting, counts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exporter::snapshot::BuiltSnapshot;
    use scorer::features::Aggregates;
    use scorer::snapshot::IdHashKey;

    struct Collect(Vec<(Timestamp, Vec<usize>)>);

    impl Sink for Collect {
        fn publish(&mut self, snapshot: &BuiltSnapshot) -> Result<(), String> {
            self.0.push((snapshot.meta.as_of, snapshot.rows.clone()));
            Ok(())
        }
        fn report(&mut self, _: Report<'_>) {}
    }

    fn write(dir: &Path, as_of: i64, index: u32, ids: &[&str]) {
        let schema = FeatureSchema::handbook();
        let mut shard = Shard::empty(Timestamp(as_of), Instance { index, count: 2 }, &schema);
        let mut a = Aggregates::ZERO;
        a.0[0] = 1.0;
        shard.rows[0] = ids.iter().map(|i| (Box::from(i.as_bytes()), a)).collect();
        shard.data_range = Some((Timestamp(as_of - 10), Timestamp(as_of - 1)));
        shard::write(dir, &shard).expect("write");
    }

    #[test]
    fn as_ofs_go_out_in_order_once_every_instance_has_written_or_has_moved_past_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // Instance 1 starts later: its first shard is as of 200, so as of 100 it held nothing.
        write(d, 100, 0, &["1"]);
        write(d, 200, 0, &["1", "3"]);
        write(d, 200, 1, &["2"]);
        // Instance 1 is behind at 300: that as-of waits.
        write(d, 300, 0, &["1"]);
        let config = AssembleConfig {
            shards: d.to_path_buf(),
            instances: 2,
            poll: Duration::from_millis(1),
            idle: Duration::ZERO,
            until_idle: true,
        };
        let signer = SnapshotSigner::from_secret([1; 32], IdHashKey([2; 16]));
        let mut sink = Collect(Vec::new());
        let stop = AtomicBool::new(false);
        let summary = assemble(&config, &signer, &Decisioning::default(), &mut sink, &stop).expect("run");
        assert_eq!(sink.0, vec![(Timestamp(100), vec![1, 0]), (Timestamp(200), vec![3, 0])]);
        assert_eq!(summary.waiting, vec![(Timestamp(300), 1)]);
        // A restart goes on after the last one published.
        write(d, 300, 1, &["2"]);
        let mut sink = Collect(Vec::new());
        let summary = assemble(&config, &signer, &Decisioning::default(), &mut sink, &stop).expect("again");
        assert_eq!(sink.0, vec![(Timestamp(300), vec![2, 0])]);
        assert_eq!((summary.published, summary.last), (1, Some(Timestamp(300))));
    }
}
