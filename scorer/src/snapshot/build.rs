//! Writing a snapshot: the one place that lays out the bytes `read` checks.

use super::read::signed_message;
use super::{
    EntityKey, FORMAT_MAJOR, FORMAT_MINOR, HEADER_LEN, MAGIC, MAX_PART_BITS, SECTION_ENTITY_TABLE,
    SECTION_ENTRY_LEN, SECTION_META, SECTION_MODEL, SECTION_POLICY, SIGNATURE_LEN, SnapshotMeta,
    SnapshotSigner, row_width, slot_offsets,
};
use crate::features::Aggregates;
use crate::model::Model;
use crate::policy::{Policy, PolicyError};
use alloc::vec::Vec;
use core::fmt;

/// Why a snapshot could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The number of entity tables differs from the schema's entity kinds.
    TableCount {
        /// Entity kinds in the schema.
        expected: usize,
        /// Tables given.
        found: usize,
    },
    /// Two entity ids hashed to the same key (pick another id-hash key).
    KeyCollision {
        /// Entity kind index.
        entity: usize,
        /// The shared key.
        key: u64,
    },
    /// A count is negative, fractional or above u32::MAX.
    CountOutOfRange {
        /// Entity kind index.
        entity: usize,
    },
    /// The meta's id-key fingerprint is not the signer's.
    IdHashKeyMismatch,
    /// The model reads another number of features than the schema has.
    ModelFeatureCount {
        /// Features the model reads.
        model: usize,
        /// Features the schema has.
        schema: usize,
    },
    /// A model without `meta.model_id`, or a `model_id` without a model.
    ModelId,
    /// `meta.lineage` names another model than `meta.model_id`.
    LineageModelId,
    /// The policy does not fit the schema.
    Policy(PolicyError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::TableCount { expected, found } => {
                write!(f, "the schema has {expected} entity kinds but {found} tables were given")
            }
            BuildError::KeyCollision { entity, key } => write!(
                f,
                "entity table {entity}: two ids hash to key {key:016x}; make a new id-hash key (tollgate keys new)"
            ),
            BuildError::CountOutOfRange { entity } => {
                write!(f, "entity table {entity}: a count is not a whole number from 0 to 4294967295")
            }
            BuildError::IdHashKeyMismatch => f.write_str("the meta's id-key fingerprint is not the signer's"),
            BuildError::ModelFeatureCount { model, schema } => {
                write!(f, "the model reads {model} features but the schema has {schema}")
            }
            BuildError::ModelId => f.write_str("meta.model_id must be set exactly when a model is given"),
            BuildError::LineageModelId => {
                f.write_str("meta.lineage must describe the model of meta.model_id")
            }
            BuildError::Policy(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for BuildError {}

/// Builds and signs a snapshot of aggregates only (no model, no policy): `tables[e]` holds the
/// (key, aggregates) of every entity of kind `e` in `meta.schema` order; rows are sorted here.
pub fn build_snapshot(
    meta: &SnapshotMeta,
    tables: Vec<Vec<(EntityKey, Aggregates)>>,
    signer: &SnapshotSigner,
) -> Result<Vec<u8>, BuildError> {
    build_snapshot_with(meta, tables, None, None, signer)
}

/// Builds and signs a snapshot with an optional MODEL section (then `meta.model_id` must be set)
/// and an optional POLICY section, after the entity tables (each in one part).
pub fn build_snapshot_with(
    meta: &SnapshotMeta,
    tables: Vec<Vec<(EntityKey, Aggregates)>>,
    model: Option<&Model>,
    policy: Option<&Policy>,
    signer: &SnapshotSigner,
) -> Result<Vec<u8>, BuildError> {
    build_snapshot_in_parts(meta, tables, model, policy, signer, usize::MAX)
}

/// Like [`build_snapshot_with`], with each entity table split by the keys' top bits into the
/// fewest parts (a power of two, at most 2^[`MAX_PART_BITS`]) of at most `max_part_bytes` each,
/// so that an edge can store and load them apart (`docs/snapshot-format.md`, format 1.2).
pub fn build_snapshot_in_parts(
    meta: &SnapshotMeta,
    mut tables: Vec<Vec<(EntityKey, Aggregates)>>,
    model: Option<&Model>,
    policy: Option<&Policy>,
    signer: &SnapshotSigner,
    max_part_bytes: usize,
) -> Result<Vec<u8>, BuildError> {
    let entities = meta.schema.entities();
    if model.is_some() != meta.model_id.is_some() {
        return Err(BuildError::ModelId);
    }
    if let Some(lineage) = &meta.lineage
        && meta.model_id.as_deref() != Some(lineage.model_id.as_str())
    {
        return Err(BuildError::LineageModelId);
    }
    if let Some(m) = model
        && m.n_features() != meta.schema.len()
    {
        return Err(BuildError::ModelFeatureCount { model: m.n_features(), schema: meta.schema.len() });
    }
    if let Some(p) = policy {
        p.check_entities(entities.len()).map_err(BuildError::Policy)?;
    }
    if tables.len() != entities.len() {
        return Err(BuildError::TableCount { expected: entities.len(), found: tables.len() });
    }
    if meta.id_key_fingerprint != signer.id_hash().fingerprint() {
        return Err(BuildError::IdHashKeyMismatch);
    }
    let mut parted = false;
    // (kind, entity, width, rows, body)
    let mut sections: Vec<(u16, u16, u32, u64, Vec<u8>)> = Vec::with_capacity(3 + tables.len());
    sections.push((SECTION_META, 0, 0, 0, meta.encode()));
    for (e, (rows, def)) in tables.iter_mut().zip(entities).enumerate() {
        rows.sort_unstable_by_key(|(k, _)| *k);
        if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(BuildError::KeyCollision { entity: e, key: w[0].0.0 });
        }
        let width = row_width(&def.layout);
        let slots = slot_offsets(&def.layout);
        let mut body = alloc::vec![0u8; rows.len() * width];
        for ((key, aggregates), row) in rows.iter().zip(body.chunks_exact_mut(width)) {
            row[..8].copy_from_slice(&key.0.to_le_bytes());
            for (&value, &(offset, wide)) in aggregates.0.iter().zip(&slots) {
                if wide {
                    row[offset..offset + 8].copy_from_slice(&value.to_bits().to_le_bytes());
                } else {
                    if !(0.0..=f64::from(u32::MAX)).contains(&value) || value != (value as u32) as f64 {
                        return Err(BuildError::CountOutOfRange { entity: e });
                    }
                    row[offset..offset + 4].copy_from_slice(&(value as u32).to_le_bytes());
                }
            }
        }
        let bits = part_bits(rows, width, max_part_bytes);
        parted |= bits > 0;
        // Rows are sorted, so each part is a run of consecutive rows.
        let mut start = 0;
        for part in 0..1usize << bits {
            let end = start + rows[start..].iter().take_while(|(k, _)| top_bits(k.0, bits) == part).count();
            let part_body = body[start * width..end * width].to_vec();
            sections.push((SECTION_ENTITY_TABLE, e as u16, width as u32, (end - start) as u64, part_body));
            start = end;
        }
    }
    if let Some(m) = model {
        sections.push((SECTION_MODEL, 0, 0, 0, m.encode()));
    }
    if let Some(p) = policy {
        sections.push((SECTION_POLICY, 0, 0, 0, p.encode()));
    }

    let table_end = HEADER_LEN + sections.len() * SECTION_ENTRY_LEN;
    let mut offsets = Vec::with_capacity(sections.len());
    let mut next = table_end + SIGNATURE_LEN;
    for s in &sections {
        offsets.push(next);
        next = (next + s.4.len()).next_multiple_of(8);
    }
    let total = next;
    let mut out = alloc::vec![0u8; total];
    out[..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&FORMAT_MAJOR.to_le_bytes());
    // A file without parts is a valid 1.1 file: say so, so that 1.1 readers load it.
    let minor = if parted { FORMAT_MINOR } else { 1 };
    out[10..12].copy_from_slice(&minor.to_le_bytes());
    out[12..16].copy_from_slice(&(sections.len() as u32).to_le_bytes());
    out[16..24].copy_from_slice(&(total as u64).to_le_bytes());
    out[24..32].copy_from_slice(&signer.edge_key().key_id());
    for (i, ((kind, entity, width, rows, body), &offset)) in sections.iter().zip(&offsets).enumerate() {
        let entry = &mut out[HEADER_LEN + i * SECTION_ENTRY_LEN..][..SECTION_ENTRY_LEN];
        entry[0..2].copy_from_slice(&kind.to_le_bytes());
        entry[2..4].copy_from_slice(&entity.to_le_bytes());
        entry[4..8].copy_from_slice(&width.to_le_bytes());
        entry[8..16].copy_from_slice(&(offset as u64).to_le_bytes());
        entry[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
        entry[24..32].copy_from_slice(&rows.to_le_bytes());
        entry[32..64].copy_from_slice(&super::crypto::blake3(body));
        out[offset..offset + body.len()].copy_from_slice(body);
    }
    let signature = signer.sign(&signed_message(&out[..table_end]));
    out[table_end..table_end + SIGNATURE_LEN].copy_from_slice(&signature);
    Ok(out)
}

/// The top `bits` bits of `key` (0 when `bits` is 0): the part that holds it.
fn top_bits(key: u64, bits: u32) -> usize {
    if bits == 0 { 0 } else { (key >> (64 - bits)) as usize }
}

/// The fewest part bits for which no part of the sorted `rows` exceeds `max_part_bytes`.
fn part_bits(rows: &[(EntityKey, Aggregates)], width: usize, max_part_bytes: usize) -> u32 {
    let max_rows = (max_part_bytes / width).max(1);
    (0..MAX_PART_BITS)
        .find(|&bits| {
            let mut largest = 0;
            let mut run = 0;
            let mut current = usize::MAX;
            for (k, _) in rows {
                let part = top_bits(k.0, bits);
                run = if part == current { run + 1 } else { 1 };
                current = part;
                largest = largest.max(run);
            }
            largest <= max_rows
        })
        .unwrap_or(MAX_PART_BITS)
}
