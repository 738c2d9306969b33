//! Scale-out: a lane's share of a snapshot. At every boundary the instance that owns a [`Lane`]
//! (one partition of a transaction topic) writes the rows of its entities as
//! `DIR/<as_of>/k<kind>-p<partition>-of-<partitions>.shard` (as-of in Unix seconds); the
//! assembler merges the shards of every lane into one signed snapshot. Layout: the magic
//! `TGSHRD`, a format version (u16, little endian), the BLAKE3 hash of the body, then the body in
//! MessagePack. Rows are keyed by the entities' own ids: instances hold no key.

use crate::framed::{self, FrameError};
use crate::state::Counts;
use scorer::Timestamp;
use scorer::features::{Aggregates, FeatureSchema, MAX_SLOTS};
use scorer::snapshot::{EntityKey, IdHashKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"TGSHRD";
/// The shard format this build writes and reads (2: shards per lane, not per instance).
pub const VERSION: u16 = 2;

/// One partition of the transaction topic keyed by one entity kind: the unit that a scale-out
/// instance owns, folds, checkpoints and writes a shard of. The customer kind's lanes are the
/// partitions of the customer-keyed topic, the terminal kind's those of the terminal-keyed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lane {
    /// The entity kind (schema order: 0 customer, 1 terminal).
    pub kind: u32,
    /// The partition.
    pub partition: u32,
    /// How many partitions the topic has.
    pub partitions: u32,
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kind {} partition {}/{}", self.kind, self.partition, self.partitions)
    }
}

impl Lane {
    /// The shard's file name, `k<kind>-p<partition>-of-<partitions>.shard`.
    pub fn file_name(&self) -> String {
        format!("k{}-p{}-of-{}.shard", self.kind, self.partition, self.partitions)
    }

    /// The lane of a shard file name, if it is one.
    pub fn from_file_name(name: &str) -> Option<Lane> {
        let rest = name.strip_prefix('k')?.strip_suffix(".shard")?;
        let (kind, rest) = rest.split_once("-p")?;
        let (partition, partitions) = rest.split_once("-of-")?;
        let lane = Lane {
            kind: kind.parse().ok()?,
            partition: partition.parse().ok()?,
            partitions: partitions.parse().ok()?,
        };
        (lane.partition < lane.partitions).then_some(lane)
    }
}

impl Shard {
    /// The shard of a lane that had folded nothing before `as_of`.
    pub fn empty(as_of: Timestamp, lane: Lane, schema: &FeatureSchema) -> Shard {
        Shard {
            as_of,
            lane,
            schema_hash: schema.hash(),
            data_range: None,
            counts: Counts::default(),
            rows: vec![Vec::new(); schema.entities().len()],
        }
    }
}

/// One lane's rows as of one boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct Shard {
    /// The boundary.
    pub as_of: Timestamp,
    /// Whose rows.
    pub lane: Lane,
    /// The schema's hash (every shard of a snapshot must agree).
    pub schema_hash: u64,
    /// First and last transaction time this lane folded.
    pub data_range: Option<(Timestamp, Timestamp)>,
    /// The lane's counts at the boundary.
    pub counts: Counts,
    /// Per entity kind (schema order), the non-zero rows keyed by entity id.
    pub rows: Vec<Vec<(Box<[u8]>, Aggregates)>>,
}

/// Why a shard could not be written, read or merged.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Not a shard, cut short, altered or of another version.
    #[error("{path}: damaged shard: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The shards of one as-of do not fit together.
    #[error("shards as of {as_of}: {reason}")]
    Mismatch {
        /// The as-of.
        as_of: Timestamp,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Body {
    as_of: i64,
    kind: u32,
    partition: u32,
    partitions: u32,
    schema_hash: u64,
    data_range: Option<(i64, i64)>,
    transactions: u64,
    labels: u64,
    not_held_here: u64,
    rejected: Vec<(String, u64)>,
    /// Per kind: (id, aggregates without their trailing positive zeros: the layout's unused slots).
    rows: Vec<Vec<(String, Vec<f64>)>>,
}

/// The directory of the shards as of `as_of`.
pub fn as_of_dir(dir: &Path, as_of: Timestamp) -> PathBuf {
    dir.join(as_of.0.to_string())
}

/// `DIR/<as_of>/k<kind>-p<partition>-of-<partitions>.shard`.
pub fn path(dir: &Path, as_of: Timestamp, lane: Lane) -> PathBuf {
    as_of_dir(dir, as_of).join(lane.file_name())
}

/// Encodes a shard.
pub fn encode(shard: &Shard) -> Vec<u8> {
    let body = Body {
        as_of: shard.as_of.0,
        kind: shard.lane.kind,
        partition: shard.lane.partition,
        partitions: shard.lane.partitions,
        schema_hash: shard.schema_hash,
        data_range: shard.data_range.map(|(a, b)| (a.0, b.0)),
        transactions: shard.counts.transactions,
        labels: shard.counts.labels,
        not_held_here: shard.counts.not_held_here,
        rejected: shard.counts.rejected.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        rows: shard
            .rows
            .iter()
            .map(|kind| {
                kind.iter()
                    .map(|(id, a)| {
                        // Bit-exact: only +0.0 is dropped, and decoding puts it back.
                        let used = a.0.iter().rposition(|v| v.to_bits() != 0).map_or(0, |i| i + 1);
                        (String::from_utf8_lossy(id).into_owned(), a.0[..used].to_vec())
                    })
                    .collect()
            })
            .collect(),
    };
    // Plain data: encoding into memory cannot fail.
    framed::seal(MAGIC, VERSION, &rmp_serde::to_vec(&body).unwrap_or_default())
}

/// Decodes shard bytes read from `path` (named in errors).
pub fn decode(bytes: &[u8], path: &Path) -> Result<Shard, ShardError> {
    let damaged = |reason: String| ShardError::Damaged { path: path.to_path_buf(), reason };
    let body = match framed::open(bytes, MAGIC, VERSION..=VERSION) {
        Ok((_, body)) => body,
        Err(FrameError::Damaged(reason)) => return Err(damaged(format!("not a shard: {reason}"))),
        Err(FrameError::Version(v)) => {
            return Err(damaged(format!("format version {v}, this build reads version {VERSION}")));
        }
    };
    let body: Body =
        rmp_serde::from_slice(body).map_err(|e| damaged(format!("its body does not decode: {e}")))?;
    let lane = Lane { kind: body.kind, partition: body.partition, partitions: body.partitions };
    if lane.partition >= lane.partitions || body.rows.len() <= lane.kind as usize {
        return Err(damaged(format!("{lane} is not a lane of its {} entity kinds", body.rows.len())));
    }
    let mut rows = Vec::with_capacity(body.rows.len());
    for (k, kind) in body.rows.into_iter().enumerate() {
        let mut out = Vec::with_capacity(kind.len());
        for (id, values) in kind {
            if values.len() > MAX_SLOTS {
                return Err(damaged(format!(
                    "entity kind {k}, id {id}: {} aggregates, at most {MAX_SLOTS}",
                    values.len()
                )));
            }
            let mut a = Aggregates::ZERO;
            a.0[..values.len()].copy_from_slice(&values);
            out.push((id.into_bytes().into_boxed_slice(), a));
        }
        rows.push(out);
    }
    Ok(Shard {
        as_of: Timestamp(body.as_of),
        lane,
        schema_hash: body.schema_hash,
        data_range: body.data_range.map(|(a, b)| (Timestamp(a), Timestamp(b))),
        counts: Counts {
            transactions: body.transactions,
            labels: body.labels,
            rejected: body.rejected.into_iter().collect(),
            not_held_here: body.not_held_here,
        },
        rows,
    })
}

/// Writes a shard under `dir` atomically (temporary file, fsync, rename); returns its path and
/// size. Written again after a restart, it is the same bytes.
pub fn write(dir: &Path, shard: &Shard) -> Result<(PathBuf, usize), ShardError> {
    let path = path(dir, shard.as_of, shard.lane);
    let bytes = encode(shard);
    let folder = as_of_dir(dir, shard.as_of);
    // Written under a dot name and renamed: the assembler never takes a half-written file.
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&folder)?;
        exporter::durable::replace_file(&path, &bytes)
    };
    write().map_err(|source| ShardError::Io { path: path.clone(), source })?;
    Ok((path, bytes.len()))
}

/// Reads the shard at `path`.
pub fn read(path: &Path) -> Result<Shard, ShardError> {
    let bytes = std::fs::read(path).map_err(|source| ShardError::Io { path: path.to_path_buf(), source })?;
    decode(&bytes, path)
}

/// The as-ofs under `dir` (its numeric sub-directories) after `after`, in time order, each with
/// the lanes whose shards are there.
pub fn list(dir: &Path, after: Option<Timestamp>) -> Result<Vec<(Timestamp, BTreeSet<Lane>)>, ShardError> {
    let io = |path: &Path, source| ShardError::Io { path: path.to_path_buf(), source };
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let Some(as_of) = entry.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else { continue };
        let as_of = Timestamp(as_of);
        if after.is_some_and(|a| as_of <= a) {
            continue;
        }
        let mut lanes = BTreeSet::new();
        for file in std::fs::read_dir(entry.path()).map_err(|e| io(&entry.path(), e))? {
            let file = file.map_err(|e| io(&entry.path(), e))?;
            // Temporary files are dot-named: they are no lane's.
            if let Some(lane) = file.file_name().to_str().and_then(Lane::from_file_name) {
                lanes.insert(lane);
            }
        }
        out.push((as_of, lanes));
    }
    out.sort_unstable();
    Ok(out)
}

/// The merged tables of one as-of's shards, keyed by `id_hash` (the tables
/// `exporter::snapshot::build_from_aggregates` takes), and the data range of them all. Each lane
/// at most once, all with the same as-of and schema, and rows only of the lane's own kind; an
/// entity in two lanes is an error (each entity's transactions are in one partition of the topic
/// keyed by it, so it means topics keyed otherwise than the instances assume).
#[allow(clippy::type_complexity)]
pub fn merge(
    shards: Vec<Shard>,
    schema: &FeatureSchema,
    id_hash: &IdHashKey,
) -> Result<(Vec<Vec<(EntityKey, Aggregates)>>, Option<(Timestamp, Timestamp)>), ShardError> {
    let Some(first) = shards.first() else {
        return Err(ShardError::Mismatch { as_of: Timestamp(0), reason: "no shards".into() });
    };
    let as_of = first.as_of;
    let mismatch = |reason: String| ShardError::Mismatch { as_of, reason };
    let mut seen = BTreeSet::new();
    let kinds = schema.entities().len();
    let mut tables: Vec<Vec<(EntityKey, Aggregates)>> = vec![Vec::new(); kinds];
    // Per kind, the lane that brought each entity (to name both in an overlap).
    let mut owner: Vec<HashMap<Box<[u8]>, Lane>> = vec![HashMap::new(); kinds];
    let mut range: Option<(Timestamp, Timestamp)> = None;
    for shard in shards {
        let lane = shard.lane;
        if shard.as_of != as_of {
            return Err(mismatch(format!("the shard of {lane} is as of {}", shard.as_of)));
        }
        if !seen.insert(lane) {
            return Err(mismatch(format!("two shards of {lane}")));
        }
        if shard.schema_hash != schema.hash() {
            return Err(mismatch(format!(
                "the shard of {lane} has schema {:016x}, this build {:016x}",
                shard.schema_hash,
                schema.hash()
            )));
        }
        if shard.rows.len() != kinds {
            return Err(mismatch(format!(
                "the shard of {lane} has {} entity kinds, not {kinds}",
                shard.rows.len()
            )));
        }
        if let Some((a, b)) = shard.data_range {
            range = Some(range.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
        for (k, rows) in shard.rows.into_iter().enumerate() {
            if k != lane.kind as usize && !rows.is_empty() {
                return Err(mismatch(format!("the shard of {lane} has rows of entity kind {k}")));
            }
            for (id, aggregates) in rows {
                tables[k].push((id_hash.hash(&id), aggregates));
                if let Some(other) = owner[k].get(&id) {
                    let (name, text) = (&schema.entities()[k].name, String::from_utf8_lossy(&id));
                    return Err(mismatch(format!(
                        "{name} {text} in the shards of both {other} and {lane}: the transaction topics \
                         must be keyed by the entity"
                    )));
                }
                owner[k].insert(id, lane);
            }
        }
    }
    Ok((tables, range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(partition: u32) -> Lane {
        Lane { kind: 0, partition, partitions: 2 }
    }

    fn shard(partition: u32, ids: &[&str]) -> Shard {
        let mut a = Aggregates::ZERO;
        a.0[0] = 1.0;
        a.0[1] = 12.5;
        a.0[3] = -0.0; // kept: only +0.0 is dropped
        Shard {
            as_of: Timestamp(86_400),
            lane: lane(partition),
            schema_hash: FeatureSchema::handbook().hash(),
            data_range: Some((Timestamp(10 + i64::from(partition)), Timestamp(100 - i64::from(partition)))),
            counts: Counts { transactions: 3, ..Counts::default() },
            rows: vec![ids.iter().map(|i| (Box::from(i.as_bytes()), a)).collect(), Vec::new()],
        }
    }

    #[test]
    fn a_shard_round_trips_and_a_damaged_one_is_refused() {
        let s = shard(1, &["7", "abc"]);
        let bytes = encode(&s);
        let back = decode(&bytes, Path::new("x")).expect("decode");
        assert_eq!(back, s);
        assert!(back.rows[0][0].1.0[3].is_sign_negative());
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 3);
        let err = decode(&cut, Path::new("d/k0-p1-of-2.shard")).expect_err("cut").to_string();
        assert!(err.contains("d/k0-p1-of-2.shard: damaged shard") && err.contains("hash"), "{err}");
    }

    #[test]
    fn shards_merge_and_an_entity_in_two_lanes_is_an_error() {
        let schema = FeatureSchema::handbook();
        let key = IdHashKey([3; 16]);
        let (tables, range) =
            merge(vec![shard(0, &["1", "2"]), shard(1, &["3"])], &schema, &key).expect("merge");
        assert_eq!(tables[0].len(), 3);
        assert_eq!(range, Some((Timestamp(10), Timestamp(100))));
        let err = merge(vec![shard(0, &["1", "2"]), shard(1, &["2"])], &schema, &key).expect_err("overlap");
        assert!(
            err.to_string().contains("in the shards of both kind 0 partition 0/2 and kind 0 partition 1/2"),
            "{err}"
        );
        let err = merge(vec![shard(0, &["1"]), shard(0, &["3"])], &schema, &key).expect_err("twice");
        assert!(err.to_string().contains("two shards of kind 0 partition 0/2"), "{err}");
        let mut foreign = shard(1, &[]);
        foreign.rows[1] = shard(1, &["9"]).rows[0].clone();
        let err = merge(vec![foreign], &schema, &key).expect_err("rows of another kind");
        assert!(err.to_string().contains("has rows of entity kind 1"), "{err}");
    }

    #[test]
    fn lanes_name_their_files_and_only_those_parse() {
        let l = Lane { kind: 1, partition: 7, partitions: 16 };
        assert_eq!(l.file_name(), "k1-p7-of-16.shard");
        assert_eq!(Lane::from_file_name(&l.file_name()), Some(l));
        for bad in ["k1-p16-of-16.shard", ".k1-p7-of-16.shard.tmp", "0-of-2.shard", "k1-p7-of-16"] {
            assert_eq!(Lane::from_file_name(bad), None, "{bad}");
        }
    }
}
