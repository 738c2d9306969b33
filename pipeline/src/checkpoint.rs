//! The checkpoint: the whole state and the input offsets it reflects, in one file, replaced
//! atomically (temporary file, fsync, rename, fsync of the directory). Layout: the magic
//! `TGCKPT`, a format version (u16, little endian), the BLAKE3 hash of the body, then the body
//! in MessagePack (rmp-serde). A damaged file or one of another version is refused by name.

use crate::framed::{self, FrameError};
use crate::ids::IdKey;
use crate::state::{Counts, Kind, NOT_HERE, State};
use scorer::Timestamp;
use scorer::features::{EntityWindows, FeatureSchema, FixedAmount};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"TGCKPT";
/// The checkpoint format this build writes (3: a scale-out lane's state names its lane; 2 named
/// a statically assigned instance, and with its count of labels not held here a build that
/// reads only 1 would misread it).
pub const VERSION: u16 = 3;
/// The oldest checkpoint format this build reads (1: before scale-out, a single exporter's).
pub const OLDEST_VERSION: u16 = 1;
/// The checkpoint's file name inside the `--checkpoint` directory.
pub const FILE_NAME: &str = "exporter.checkpoint";

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Not a checkpoint, or cut short or altered.
    #[error("{path}: damaged checkpoint: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Written by another format version.
    #[error(
        "{path}: checkpoint format version {found}, this build reads versions {OLDEST_VERSION} to {VERSION}"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u16,
    },
    /// Written for another schema, other topics or another snapshot interval.
    #[error("{path}: the checkpoint was written for {found}, this run has {expected}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What the checkpoint says.
        found: String,
        /// What this run says.
        expected: String,
    },
}

/// Where the input stands: per partition the next offset to read, and the next snapshot time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// `(topic, partition, next offset)`.
    pub offsets: Vec<(String, i32, i64)>,
    /// The next snapshot's as-of (Unix seconds), once the first event has fixed it.
    pub next_boundary: Option<i64>,
    /// Snapshot interval in seconds (a checkpoint is only valid for the same interval).
    pub every: i64,
    /// Scale-out: the lane (transaction topic, partition) whose state this is (a checkpoint is
    /// only valid for that lane); `None` for a single exporter's whole state. Absent from
    /// checkpoints written before scale-out.
    #[serde(default)]
    pub lane: Option<(String, i32)>,
}

impl Position {
    /// The next offset to read of `partition` of `topic`, if one is stored.
    pub fn offset_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.iter().find(|(t, p, _)| t == topic && *p == partition).map(|o| o.2)
    }
}

#[derive(Serialize, Deserialize)]
struct Body {
    schema_hash: u64,
    position: Position,
    clock: i64,
    first_tx: Option<i64>,
    last_tx: Option<i64>,
    transactions: u64,
    labels: u64,
    rejected: Vec<(String, u64)>,
    kinds: Vec<KindBody>,
    /// Held transactions in time order: (time, id, per kind (entity, absolute index)).
    held: Vec<HeldBody>,
    /// Scale-out: labels of transactions not held here (absent before scale-out).
    #[serde(default)]
    not_held_here: u64,
}

/// A held transaction: time, id, per entity kind (entity, absolute index).
type HeldBody = (i64, String, Vec<(u32, u64)>);

#[derive(Serialize, Deserialize)]
struct KindBody {
    ids: Vec<String>,
    first_index: Vec<u64>,
    /// Per entity, its held events: time, amount (fixed point, high and low 64 bits), fraud.
    events: Vec<Vec<(i64, u64, u64, bool)>>,
}

fn text(bytes: &[u8]) -> String {
    // Ids are checked UTF-8 by the readers (numbers are their decimal text).
    String::from_utf8_lossy(bytes).into_owned()
}

/// Encodes the state and the position as checkpoint bytes.
pub fn encode(state: &State, position: &Position) -> Vec<u8> {
    let kinds = state
        .kinds
        .iter()
        .map(|k| KindBody {
            ids: k.ids.iter().map(|id| text(id)).collect(),
            first_index: k.windows.iter().map(EntityWindows::first_index).collect(),
            events: k
                .windows
                .iter()
                .map(|w| {
                    w.events()
                        .map(|(t, a, f)| {
                            let bits = a.to_bits();
                            (t.0, (bits >> 64) as u64, bits as u64, f)
                        })
                        .collect()
                })
                .collect(),
        })
        .collect();
    let held = state.held.iter(state.kinds.len()).map(|(t, id, at)| (t, id.text(), at)).collect();
    let body = Body {
        schema_hash: state.schema.hash(),
        position: position.clone(),
        clock: state.clock.0,
        first_tx: state.first_tx.map(|t| t.0),
        last_tx: state.last_tx.map(|t| t.0),
        transactions: state.counts.transactions,
        labels: state.counts.labels,
        rejected: state.counts.rejected.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        kinds,
        held,
        not_held_here: state.counts.not_held_here,
    };
    // Plain data (strings, integers, vectors): encoding into memory cannot fail.
    framed::seal(MAGIC, VERSION, &rmp_serde::to_vec(&body).unwrap_or_default())
}

/// Decodes checkpoint bytes (read from `path`, named in errors) into a state for `schema`.
pub fn decode(
    bytes: &[u8],
    path: &Path,
    schema: &FeatureSchema,
) -> Result<(State, Position), CheckpointError> {
    let damaged = |reason: String| CheckpointError::Damaged { path: path.to_path_buf(), reason };
    let body = match framed::open(bytes, MAGIC, OLDEST_VERSION..=VERSION) {
        Ok((_, body)) => body,
        Err(FrameError::Damaged(reason)) => return Err(damaged(format!("not a checkpoint: {reason}"))),
        Err(FrameError::Version(found)) => {
            return Err(CheckpointError::Version { path: path.to_path_buf(), found });
        }
    };
    let body: Body =
        rmp_serde::from_slice(body).map_err(|e| damaged(format!("its body does not decode: {e}")))?;
    if body.schema_hash != schema.hash() {
        return Err(CheckpointError::Mismatch {
            path: path.to_path_buf(),
            found: format!("schema {:016x}", body.schema_hash),
            expected: format!("schema {:016x}", schema.hash()),
        });
    }
    if body.kinds.len() != schema.entities().len() {
        return Err(damaged(format!(
            "{} entity kinds, the schema has {}",
            body.kinds.len(),
            schema.entities().len()
        )));
    }
    let mut state = State::new(schema.clone());
    state.clock = Timestamp(body.clock);
    state.first_tx = body.first_tx.map(Timestamp);
    state.last_tx = body.last_tx.map(Timestamp);
    state.counts = Counts {
        transactions: body.transactions,
        labels: body.labels,
        rejected: body.rejected.into_iter().collect(),
        not_held_here: body.not_held_here,
    };
    for ((kind, saved), def) in state.kinds.iter_mut().zip(body.kinds).zip(schema.entities()) {
        let layout = &def.layout;
        let n = saved.ids.len();
        if saved.first_index.len() != n || saved.events.len() != n {
            return Err(damaged(format!(
                "entity kind {}: ids, indices and events differ in number",
                def.name
            )));
        }
        *kind = Kind::default();
        for ((id, first), events) in saved.ids.into_iter().zip(saved.first_index).zip(saved.events) {
            let mut windows = EntityWindows::resume(layout, first);
            for (t, high, low, fraud) in events {
                let bits = (u128::from(high) << 64) | u128::from(low);
                windows.resume_push(Timestamp(t), FixedAmount::from_bits(bits), fraud);
            }
            if body.clock != i64::MIN {
                windows.advance_to(layout, state.clock);
            }
            let id: Box<[u8]> = id.into_bytes().into();
            kind.index.insert(IdKey::new(&id), kind.ids.len() as u32);
            kind.ids.push(id);
            kind.windows.push(windows);
        }
    }
    for (t, id, at) in body.held {
        if at.len() != state.kinds.len()
            || at
                .iter()
                .zip(&state.kinds)
                .any(|(&(k, _), kind)| k != NOT_HERE && k as usize >= kind.ids.len())
        {
            return Err(damaged(format!("held transaction {id}: entity out of range")));
        }
        state.held.at.extend(at);
        state.held.push(t, IdKey::new(id.as_bytes()));
    }
    Ok((state, body.position))
}

/// The checkpoint file in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The sub-directory of a checkpoint directory that holds scale-out lanes' checkpoints.
pub const LANES_DIR: &str = "lanes";

/// The directory of the checkpoint of a scale-out lane, partition `partition` of `topic`, in
/// the instances' shared checkpoint directory `dir`: `dir/lanes/<topic>/<partition>`.
pub fn lane_dir(dir: &Path, topic: &str, partition: i32) -> PathBuf {
    dir.join(LANES_DIR).join(topic).join(partition.to_string())
}

/// Reads the checkpoint in `dir`, if there is one.
pub fn load(dir: &Path, schema: &FeatureSchema) -> Result<Option<(State, Position)>, CheckpointError> {
    let path = path_in(dir);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&bytes, &path, schema).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Io { path, source }),
    }
}

/// Writes the checkpoint into `dir` atomically and durably; returns its size in bytes.
pub fn save(dir: &Path, state: &State, position: &Position) -> Result<usize, CheckpointError> {
    let path = path_in(dir);
    let bytes = encode(state, position);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        exporter::durable::replace_file(&path, &bytes)
    };
    write().map_err(|source| CheckpointError::Io { path: path.clone(), source })?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{LabelEvent, Transaction};

    fn tx(id: u64, t: i64, customer: &str, terminal: &str, amount: f64) -> Transaction {
        Transaction {
            id: Some(id.to_string().into_bytes().into()),
            entities: vec![customer.as_bytes().into(), terminal.as_bytes().into()],
            time: Timestamp(t),
            amount,
        }
    }

    #[test]
    fn a_checkpoint_restores_a_state_that_goes_on_identically() {
        let schema = FeatureSchema::handbook();
        let key = scorer::snapshot::IdHashKey([7; 16]);
        let day = SECONDS_PER_DAY_TEST;
        let mut state = State::new(schema.clone());
        for i in 0..200u64 {
            let t = 1_500_000_000 + i as i64 * day / 10;
            state
                .fold_transaction(&tx(i, t, &(i % 7).to_string(), &(i % 11).to_string(), i as f64 * 0.37))
                .expect("fold");
            if i % 13 == 0 && i > 0 {
                let label = LabelEvent {
                    transaction_id: (i - 5).to_string().into_bytes().into(),
                    fraud: true,
                    reported_at: Timestamp(t),
                };
                state.fold_label(&label).expect("label");
            }
        }
        let position = Position {
            offsets: vec![("tx".into(), 0, 200)],
            next_boundary: Some(5),
            every: 3600,
            lane: None,
        };
        let bytes = encode(&state, &position);
        let (mut restored, pos) = decode(&bytes, Path::new("ck"), &schema).expect("decode");
        assert_eq!(pos, position);
        assert_eq!(restored.counts(), state.counts());
        for i in 200..400u64 {
            let t = 1_500_000_000 + i as i64 * day / 10;
            let next = tx(i, t, &(i % 7).to_string(), &(i % 11).to_string(), 1.5);
            state.fold_transaction(&next).expect("fold");
            restored.fold_transaction(&next).expect("fold");
            let label = LabelEvent {
                transaction_id: (i - 50).to_string().into_bytes().into(),
                fraud: true,
                reported_at: Timestamp(t),
            };
            assert_eq!(state.fold_label(&label), restored.fold_label(&label));
        }
        let as_of = Timestamp(1_500_000_000 + 41 * day);
        assert_eq!(state.aggregates_as_of(as_of, &key), restored.aggregates_as_of(as_of, &key));
    }

    const SECONDS_PER_DAY_TEST: i64 = 86_400;

    #[test]
    fn a_position_written_before_scale_out_reads_as_a_single_exporters() {
        #[derive(Serialize)]
        struct Before {
            offsets: Vec<(String, i32, i64)>,
            next_boundary: Option<i64>,
            every: i64,
        }
        let before = Before { offsets: vec![("tx".into(), 3, 9)], next_boundary: Some(7), every: 60 };
        let bytes = rmp_serde::to_vec(&before).expect("encode");
        let position: Position = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(
            position,
            Position { offsets: before.offsets, next_boundary: Some(7), every: 60, lane: None }
        );
    }

    #[test]
    fn damaged_and_foreign_checkpoints_are_refused_by_name() {
        let schema = FeatureSchema::handbook();
        let state = State::new(schema.clone());
        let bytes = encode(&state, &Position::default());
        let path = Path::new("dir/exporter.checkpoint");
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 1);
        let err = decode(&cut, path, &schema).expect_err("cut").to_string();
        assert!(err.contains("damaged checkpoint") && err.contains("dir/exporter.checkpoint"), "{err}");
        let mut other = bytes.clone();
        other[6] = 9;
        let err = decode(&other, path, &schema).expect_err("version").to_string();
        assert!(err.contains("format version 9"), "{err}");
        let err = decode(b"hello", path, &schema).expect_err("not one").to_string();
        assert!(err.contains("magic"), "{err}");
    }
}
