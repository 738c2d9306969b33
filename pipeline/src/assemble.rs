//! Scale-out's assembler: waits until the shards of every lane (each partition of both
//! transaction topics) of an as-of exist, merges their rows (disjoint by construction, checked),
//! builds and signs one snapshot with
//! `exporter::snapshot::build_from_aggregates` and hands it to the same [`Sink`] as the single
//! exporter. As-ofs go out in time order; the last one published is kept in `DIR/assembled`.

use crate::run::{Report, RunError, Sink, Stopped};
use crate::shard::{self, Lane, Shard, ShardError};
use crate::state::Counts;
use exporter::snapshot::{Decisioning, build_from_aggregates};
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::snapshot::SnapshotSigner;
use std::collections::BTreeSet;
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
    /// How often to look for new shards.
    pub poll: Duration,
    /// With `until_idle`: stop once no shard has appeared for this long.
    pub idle: Duration,
    /// Stop once idle (otherwise run until asked to stop).
    pub until_idle: bool,
    /// The feature schema of the instances' shards (a shard of another is refused).
    pub schema: FeatureSchema,
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
    /// Shards an as-of needs (one per lane), once every kind's partition count is known.
    pub lanes: Option<u32>,
    /// Per entity kind, the counts of its lanes in the last shards assembled, summed.
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
    let schema = &config.schema;
    let kinds = schema.entities().len();
    let progress = config.shards.join(PROGRESS_FILE);
    let mut last = read_progress(&progress)?;
    let mut published = 0;
    let mut counts = Vec::new();
    let mut seen: Vec<(Timestamp, BTreeSet<Lane>)> = Vec::new();
    let mut lanes;
    let mut changed = Instant::now();
    loop {
        let listed = shard::list(&config.shards, last)?;
        if listed != seen {
            seen = listed;
            changed = Instant::now();
        }
        lanes = every_lane(&seen, kinds).map_err(|reason| ShardError::Mismatch {
            as_of: seen.first().map_or(Timestamp(0), |(t, _)| *t),
            reason,
        })?;
        for (as_of, present) in &seen {
            let as_of = *as_of;
            // Until a shard of every kind has been seen, the lanes are not all known.
            let Some(all) = &lanes else { break };
            if last.is_some_and(|l| as_of <= l) {
                continue;
            }
            let at = |lane| shard::path(&config.shards, as_of, lane);
            // A lane's shards are written in time order, one at each boundary after its first
            // event: a lane with a later shard but none of this as-of (checked again after
            // seeing the later one) had folded nothing before it, and its share is empty.
            // Otherwise its owner is behind, and this as-of (and every later one) waits.
            let empty =
                |lane: &Lane| seen.iter().any(|(t, p)| *t > as_of && p.contains(lane)) && !at(*lane).exists();
            let missing: Vec<Lane> = all.iter().filter(|l| !present.contains(l)).copied().collect();
            if !missing.iter().all(empty) {
                break;
            }
            let began = Instant::now();
            let shards = all
                .iter()
                .map(|&lane| match missing.contains(&lane) {
                    true => Ok(Shard::empty(as_of, lane, schema)),
                    false => shard::read(&at(lane)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(s) = shards.iter().find(|s| s.as_of != as_of) {
                return Err(ShardError::Mismatch {
                    as_of,
                    reason: format!("the shard of {} under it says it is as of {}", s.lane, s.as_of),
                }
                .into());
            }
            counts = vec![Counts::default(); kinds];
            for s in &shards {
                counts[s.lane.kind as usize].add(&s.counts);
            }
            let (tables, data_range) = shard::merge(shards, schema, signer.id_hash())?;
            let snapshot =
                build_from_aggregates(tables, schema, as_of, as_of, data_range, signer, decisioning)
                    .map_err(|source| RunError::Build { as_of, source })?;
            let build = began.elapsed();
            sink.publish(&snapshot).map_err(|reason| RunError::Publish { as_of, reason })?;
            sink.report(Report::Published { snapshot: &snapshot, build });
            write_progress(&config.shards, as_of)?;
            last = Some(as_of);
            published += 1;
        }
        let needed = lanes.as_ref().map(|l| l.len() as u32);
        if stop.load(Ordering::Relaxed) {
            break Ok(summary(Stopped::Asked, published, last, &seen, needed, counts));
        }
        if config.until_idle && changed.elapsed() >= config.idle {
            break Ok(summary(Stopped::Idle, published, last, &seen, needed, counts));
        }
        std::thread::sleep(config.poll);
    }
}

/// Every lane an as-of needs: per entity kind, each partition of its topic, the partition count
/// taken from the shards seen. `None` until a shard of every kind has been seen; an error if
/// the shards of a kind disagree on it (a topic repartitioned under running instances).
fn every_lane(seen: &[(Timestamp, BTreeSet<Lane>)], kinds: usize) -> Result<Option<Vec<Lane>>, String> {
    let mut partitions: Vec<Option<u32>> = vec![None; kinds];
    for lane in seen.iter().flat_map(|(_, lanes)| lanes) {
        let Some(known) = partitions.get_mut(lane.kind as usize) else {
            return Err(format!("a shard of {lane}: the schema has {kinds} entity kinds"));
        };
        match *known {
            Some(n) if n != lane.partitions => {
                return Err(format!(
                    "entity kind {} has shards of {n} and of {} partitions: a topic was repartitioned",
                    lane.kind, lane.partitions
                ));
            }
            _ => *known = Some(lane.partitions),
        }
    }
    Ok(partitions.into_iter().collect::<Option<Vec<u32>>>().map(|counts| {
        counts
            .iter()
            .enumerate()
            .flat_map(|(kind, &n)| {
                (0..n).map(move |partition| Lane { kind: kind as u32, partition, partitions: n })
            })
            .collect()
    }))
}

fn summary(
    stopped: Stopped,
    published: usize,
    last: Option<Timestamp>,
    seen: &[(Timestamp, BTreeSet<Lane>)],
    lanes: Option<u32>,
    counts: Vec<Counts>,
) -> AssembleSummary {
    let waiting =
        seen.iter().filter(|(t, _)| last.is_none_or(|l| *t > l)).map(|(t, p)| (*t, p.len() as u32)).collect();
    AssembleSummary { stopped, published, last, waiting, lanes, counts }
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

    /// A shard of partition `partition` (of 2) of kind `kind`.
    fn write(dir: &Path, as_of: i64, kind: u32, partition: u32, ids: &[&str]) {
        let schema = FeatureSchema::handbook();
        let mut shard = Shard::empty(Timestamp(as_of), Lane { kind, partition, partitions: 2 }, &schema);
        let mut a = Aggregates::ZERO;
        a.0[0] = 1.0;
        shard.rows[kind as usize] = ids.iter().map(|i| (Box::from(i.as_bytes()), a)).collect();
        shard.data_range = Some((Timestamp(as_of - 10), Timestamp(as_of - 1)));
        shard::write(dir, &shard).expect("write");
    }

    #[test]
    fn as_ofs_go_out_in_order_once_every_lane_has_written_or_has_moved_past_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // Customer partition 1 starts later: its first shard is as of 200, so as of 100 it held
        // nothing. The terminal kind has one lane with rows, one without.
        write(d, 100, 0, 0, &["1"]);
        write(d, 200, 0, 0, &["1", "3"]);
        write(d, 200, 0, 1, &["2"]);
        for as_of in [100, 200, 300] {
            write(d, as_of, 1, 0, &["t"]);
            write(d, as_of, 1, 1, &[]);
        }
        // Customer partition 1 is behind at 300: that as-of waits.
        write(d, 300, 0, 0, &["1"]);
        let config = AssembleConfig {
            shards: d.to_path_buf(),
            poll: Duration::from_millis(1),
            idle: Duration::ZERO,
            until_idle: true,
            schema: FeatureSchema::handbook(),
        };
        let signer = SnapshotSigner::from_secret([1; 32], IdHashKey([2; 16]));
        let mut sink = Collect(Vec::new());
        let stop = AtomicBool::new(false);
        let summary = assemble(&config, &signer, &Decisioning::default(), &mut sink, &stop).expect("run");
        assert_eq!(sink.0, vec![(Timestamp(100), vec![1, 1]), (Timestamp(200), vec![3, 1])]);
        assert_eq!((summary.waiting, summary.lanes), (vec![(Timestamp(300), 3)], Some(4)));
        // A restart goes on after the last one published.
        write(d, 300, 0, 1, &["2"]);
        let mut sink = Collect(Vec::new());
        let summary = assemble(&config, &signer, &Decisioning::default(), &mut sink, &stop).expect("again");
        assert_eq!(sink.0, vec![(Timestamp(300), vec![2, 1])]);
        assert_eq!((summary.published, summary.last), (1, Some(Timestamp(300))));
    }
}
