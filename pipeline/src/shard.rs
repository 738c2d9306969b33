//! Scale-out: an instance's share of a snapshot. At every boundary instance I of N writes the rows
//! of the entities it owns as `DIR/<as_of>/<I>-of-<N>.shard` (as-of in Unix seconds); the
//! assembler merges the N shards of an as-of into one signed snapshot. Layout: the magic
//! `TGSHRD`, a format version (u16, little endian), the BLAKE3 hash of the body, then the body in
//! MessagePack. Rows are keyed by the entities' own ids: instances hold no key.

use crate::framed::{self, FrameError};
use crate::state::Counts;
use scorer::Timestamp;
use scorer::features::{Aggregates, FeatureSchema, MAX_SLOTS};
use scorer::snapshot::{EntityKey, IdHashKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

const MAGIC: &[u8; 6] = b"TGSHRD";
/// The shard format this build writes and reads.
pub const VERSION: u16 = 1;

/// Instance `index` of `count` (`I/N` on the command line): it owns the partitions `p` of each
/// transaction topic with `p % N == I`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance {
    /// I, from 0.
    pub index: u32,
    /// N, at least 1.
    pub count: u32,
}

impl Instance {
    /// Whether this instance owns partition `p`.
    pub fn owns(self, partition: i32) -> bool {
        u32::try_from(partition).is_ok_and(|p| p.checked_rem(self.count) == Some(self.index))
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Instance {
    type Err = String;
    fn from_str(s: &str) -> Result<Instance, String> {
        let bad = || format!("{s:?}: expected I/N with 0 <= I < N, e.g. 0/2");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if index >= count {
            return Err(bad());
        }
        Ok(Instance { index, count })
    }
}

impl Shard {
    /// The shard of an instance that had folded nothing before `as_of`.
    pub fn empty(as_of: Timestamp, instance: Instance, schema: &FeatureSchema) -> Shard {
        Shard {
            as_of,
            instance,
            schema_hash: schema.hash(),
            data_range: None,
            counts: Counts::default(),
            rows: vec![Vec::new(); schema.entities().len()],
        }
    }
}

/// One instance's rows as of one boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct Shard {
    /// The boundary.
    pub as_of: Timestamp,
    /// Who wrote it.
    pub instance: Instance,
    /// The schema's hash (every shard of a snapshot must agree).
    pub schema_hash: u64,
    /// First and last transaction time this instance folded.
    pub data_range: Option<(Timestamp, Timestamp)>,
    /// The instance's counts at the boundary.
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
    index: u32,
    count: u32,
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

/// `DIR/<as_of>/<I>-of-<N>.shard`.
pub fn path(dir: &Path, as_of: Timestamp, instance: Instance) -> PathBuf {
    as_of_dir(dir, as_of).join(format!("{}-of-{}.shard", instance.index, instance.count))
}

/// Encodes a shard.
pub fn encode(shard: &Shard) -> Vec<u8> {
    let body = Body {
        as_of: shard.as_of.0,
        index: shard.instance.index,
        count: shard.instance.count,
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
    if body.count == 0 || body.index >= body.count {
        return Err(damaged(format!("instance {}/{} is not one of N", body.index, body.count)));
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
        instance: Instance { index: body.index, count: body.count },
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
    let path = path(dir, shard.as_of, shard.instance);
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
/// which of the `count` instances' shards are there (by index).
pub fn list(
    dir: &Path,
    count: u32,
    after: Option<Timestamp>,
) -> Result<Vec<(Timestamp, Vec<bool>)>, ShardError> {
    let io = |source| ShardError::Io { path: dir.to_path_buf(), source };
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let Some(as_of) = entry.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else { continue };
        let as_of = Timestamp(as_of);
        if after.is_some_and(|a| as_of <= a) {
            continue;
        }
        let present = (0..count).map(|index| path(dir, as_of, Instance { index, count }).exists()).collect();
        out.push((as_of, present));
    }
    out.sort_unstable();
    Ok(out)
}

/// The merged tables of the N shards of one as-of, keyed by `id_hash` (the tables
/// `exporter::snapshot::build_from_aggregates` takes), and the data range of them all. Every
/// instance must be there once, with the same as-of and schema; an entity in two shards is an
/// error (instances own disjoint partitions, so it means two instances of the same index, or
/// topics keyed otherwise than the instances assume).
#[allow(clippy::type_complexity)]
pub fn merge(
    shards: Vec<Shard>,
    schema: &FeatureSchema,
    id_hash: &IdHashKey,
) -> Result<(Vec<Vec<(EntityKey, Aggregates)>>, Option<(Timestamp, Timestamp)>), ShardError> {
    let Some(first) = shards.first() else {
        return Err(ShardError::Mismatch { as_of: Timestamp(0), reason: "no shards".into() });
    };
    let (as_of, count) = (first.as_of, first.instance.count);
    let mismatch = |reason: String| ShardError::Mismatch { as_of, reason };
    if shards.len() != count as usize {
        return Err(mismatch(format!("{} shards for {count} instances", shards.len())));
    }
    let mut seen = vec![false; count as usize];
    let kinds = schema.entities().len();
    let mut tables: Vec<Vec<(EntityKey, Aggregates)>> = vec![Vec::new(); kinds];
    // Per kind, the instance that brought each entity (to name both in an overlap).
    let mut owner: Vec<HashMap<Box<[u8]>, u32>> = vec![HashMap::new(); kinds];
    let mut range: Option<(Timestamp, Timestamp)> = None;
    for shard in shards {
        let who = shard.instance;
        if shard.as_of != as_of || who.count != count {
            return Err(mismatch(format!("shard {who} is as of {} of {} instances", shard.as_of, who.count)));
        }
        if std::mem::replace(&mut seen[who.index as usize], true) {
            return Err(mismatch(format!("two shards of instance {who}")));
        }
        if shard.schema_hash != schema.hash() {
            return Err(mismatch(format!(
                "shard {who} has schema {:016x}, this build {:016x}",
                shard.schema_hash,
                schema.hash()
            )));
        }
        if shard.rows.len() != kinds {
            return Err(mismatch(format!("shard {who} has {} entity kinds, not {kinds}", shard.rows.len())));
        }
        if let Some((a, b)) = shard.data_range {
            range = Some(range.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
        for (k, rows) in shard.rows.into_iter().enumerate() {
            for (id, aggregates) in rows {
                tables[k].push((id_hash.hash(&id), aggregates));
                if let Some(other) = owner[k].get(&id) {
                    let (name, text) = (&schema.entities()[k].name, String::from_utf8_lossy(&id));
                    return Err(mismatch(format!(
                        "{name} {text} in both shard {other}/{count} and shard {who}: instances must own \
                         disjoint partitions of topics keyed by that entity"
                    )));
                }
                owner[k].insert(id, who.index);
            }
        }
    }
    Ok((tables, range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, ids: &[&str]) -> Shard {
        let mut a = Aggregates::ZERO;
        a.0[0] = 1.0;
        a.0[1] = 12.5;
        a.0[3] = -0.0; // kept: only +0.0 is dropped
        Shard {
            as_of: Timestamp(86_400),
            instance: Instance { index, count: 2 },
            schema_hash: FeatureSchema::handbook().hash(),
            data_range: Some((Timestamp(10 + i64::from(index)), Timestamp(100 - i64::from(index)))),
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
        let err = decode(&cut, Path::new("d/1-of-2.shard")).expect_err("cut").to_string();
        assert!(err.contains("d/1-of-2.shard: damaged shard") && err.contains("hash"), "{err}");
    }

    #[test]
    fn shards_merge_and_an_entity_in_two_shards_is_an_error() {
        let schema = FeatureSchema::handbook();
        let key = IdHashKey([3; 16]);
        let (tables, range) =
            merge(vec![shard(0, &["1", "2"]), shard(1, &["3"])], &schema, &key).expect("merge");
        assert_eq!(tables[0].len(), 3);
        assert_eq!(range, Some((Timestamp(10), Timestamp(100))));
        let err = merge(vec![shard(0, &["1", "2"]), shard(1, &["2"])], &schema, &key).expect_err("overlap");
        assert!(err.to_string().contains("in both shard 0/2 and shard 1/2"), "{err}");
        let err = merge(vec![shard(0, &["1"]), shard(0, &["3"])], &schema, &key).expect_err("twice");
        assert!(err.to_string().contains("two shards of instance 0/2"), "{err}");
        let err = merge(vec![shard(0, &["1"])], &schema, &key).expect_err("one missing");
        assert!(err.to_string().contains("1 shards for 2 instances"), "{err}");
    }

    #[test]
    fn instances_parse_and_own_their_partitions() {
        let i: Instance = "1/3".parse().expect("parse");
        assert_eq!(i, Instance { index: 1, count: 3 });
        assert!(i.owns(4) && !i.owns(3));
        assert!("3/3".parse::<Instance>().is_err() && "1-3".parse::<Instance>().is_err());
    }
}
