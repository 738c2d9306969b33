//! Building signed snapshots from a transaction history, and the keys that sign them. The bytes
//! are laid out by `scorer::snapshot::build_snapshot`, the aggregates by `scorer::features`: this
//! module only streams the history through them.

use crate::features::ByEntity;
use crate::{Progress, Transactions};
use rayon::prelude::*;
use scorer::Timestamp;
use scorer::features::{Aggregates, EntityWindows, FeatureSchema};
use scorer::model::Model;
use scorer::policy::Policy;
use scorer::snapshot::{
    BuildError, EntityKey, IdHashKey, ModelLineage, Reference, SnapshotMeta, SnapshotSigner,
    build_snapshot_in_parts,
};

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The schema names an entity kind the transactions do not carry.
    #[error(transparent)]
    Features(#[from] crate::features::FeatureError),
    /// The snapshot format refused the content.
    #[error("{0}")]
    Build(BuildError),
    /// The operating system's random source failed.
    #[error("the system random source failed: {0}")]
    Random(String),
}

/// A freshly built snapshot.
#[derive(Clone, Debug)]
pub struct BuiltSnapshot {
    /// The signed bytes.
    pub bytes: Vec<u8>,
    /// Its meta section.
    pub meta: SnapshotMeta,
    /// Rows per entity kind (entities with no transaction in any window are left out: they
    /// score exactly as an unknown entity does).
    pub rows: Vec<usize>,
}

/// Makes a new signing key (ed25519) and id-hash key from the operating system's random source.
pub fn new_signer() -> Result<SnapshotSigner, ExportError> {
    use rand::TryRng;
    let mut seed = [0u8; 32];
    let mut id_key = [0u8; 16];
    let mut rng = rand::rngs::SysRng;
    rng.try_fill_bytes(&mut seed).map_err(|e| ExportError::Random(e.to_string()))?;
    rng.try_fill_bytes(&mut id_key).map_err(|e| ExportError::Random(e.to_string()))?;
    Ok(SnapshotSigner::from_secret(seed, IdHashKey(id_key)))
}

/// The aggregates of every entity as of `as_of` (every transaction before it), from a history in
/// time order: one table per entity kind of `schema`, keyed by the signer's id hash.
pub fn aggregate_history(
    tx: &Transactions,
    schema: &FeatureSchema,
    as_of: Timestamp,
    id_hash: &IdHashKey,
    progress: &dyn Progress,
) -> Result<Vec<Vec<(EntityKey, Aggregates)>>, ExportError> {
    let columns = crate::features::entity_columns(tx, schema)?;
    let end = tx.time.partition_point(|t| *t < as_of);
    let mut tables = Vec::with_capacity(columns.len());
    progress.start("aggregate", (end * columns.len()) as u64);
    for ((column, ids), entity) in columns.iter().zip(schema.entities()) {
        let layout = &entity.layout;
        let groups = ByEntity::group(&column[..end], ids.len());
        let rows: Vec<(EntityKey, Aggregates)> = (0..ids.len())
            .into_par_iter()
            .filter_map(|k| {
                let mut state = EntityWindows::new(layout);
                let history = &groups.order[groups.offsets[k]..groups.offsets[k + 1]];
                for &i in history {
                    let i = i as usize;
                    // Advancing as we go drops what no window needs any more, bounding memory.
                    state.advance_to(layout, tx.time[i]);
                    state.push(tx.time[i], tx.amount[i], tx.fraud[i] != 0);
                }
                progress.advance(history.len() as u64);
                state.advance_to(layout, as_of);
                let aggregates = state.aggregates(layout);
                (aggregates != Aggregates::ZERO)
                    .then(|| (id_hash.hash(ids.id(k as u32).as_bytes()), aggregates))
            })
            .collect();
        tables.push(rows);
    }
    progress.finish();
    Ok(tables)
}

/// What a snapshot carries besides the aggregates: the model that scores and the policy that
/// decides. Without them the edge answers with features only.
#[derive(Clone, Debug, Default)]
pub struct Decisioning<'a> {
    /// The model and its id (recorded in the meta and in every response).
    pub model: Option<(&'a Model, &'a str)>,
    /// The decision policy (thresholds and hard rules).
    pub policy: Option<&'a Policy>,
    /// Split each entity table into parts of at most this many bytes, by the keys' top bits, for
    /// edges that load parts on demand (`docs/snapshot-format.md`); none: one part per table.
    pub max_part_bytes: Option<usize>,
    /// The model's lineage (from a model registry), recorded in the meta; its `model_id` must be
    /// the model's id.
    pub lineage: Option<&'a ModelLineage>,
    /// Days before the as-of time whose feature (and score) distributions the snapshot carries
    /// as its drift reference ([`crate::reference`]); 0, the default here, carries none
    /// (`tollgate snapshot build` defaults to 28).
    pub reference_days: u32,
    /// A drift reference to carry as it is (e.g. the training window's, taken from another
    /// snapshot), when `reference_days` is 0 or there is no history to compute one from (a
    /// stream's state).
    pub reference: Option<&'a Reference>,
}

/// Builds and signs the snapshot as of `as_of` from a history in time order, aggregates only.
pub fn build_from_history(
    tx: &Transactions,
    schema: &FeatureSchema,
    as_of: Timestamp,
    created_at: Timestamp,
    signer: &SnapshotSigner,
    progress: &dyn Progress,
) -> Result<BuiltSnapshot, ExportError> {
    build_with(tx, schema, as_of, created_at, signer, &Decisioning::default(), progress)
}

/// Builds and signs the snapshot as of `as_of` from a history in time order, with a model and a
/// policy when given.
pub fn build_with(
    tx: &Transactions,
    schema: &FeatureSchema,
    as_of: Timestamp,
    created_at: Timestamp,
    signer: &SnapshotSigner,
    decisioning: &Decisioning<'_>,
    progress: &dyn Progress,
) -> Result<BuiltSnapshot, ExportError> {
    let tables = aggregate_history(tx, schema, as_of, signer.id_hash(), progress)?;
    let model = decisioning.model.map(|(m, _)| m);
    let reference = match decisioning.reference_days {
        0 => decisioning.reference.cloned(),
        days => crate::reference::reference(tx, schema, as_of, days, model, progress)?,
    };
    let end = tx.time.partition_point(|t| *t < as_of);
    let data_range = (end > 0).then(|| (tx.time[0], tx.time[end - 1]));
    let range = (as_of, created_at, data_range);
    build_signed(tables, schema, range, signer, decisioning, reference)
}

/// The step every snapshot goes through, from a history or from a stream's running state:
/// the aggregates of every entity as of `as_of` (one table per entity kind of `schema`, keyed by
/// the signer's id hash, rows with all-zero aggregates left out, any order), the time of the
/// first and the last transaction they cover, signed. The tables are sorted by key first, so the
/// snapshot id and the bytes depend on the content only.
pub fn build_from_aggregates(
    tables: Vec<Vec<(EntityKey, Aggregates)>>,
    schema: &FeatureSchema,
    as_of: Timestamp,
    created_at: Timestamp,
    data_range: Option<(Timestamp, Timestamp)>,
    signer: &SnapshotSigner,
    decisioning: &Decisioning<'_>,
) -> Result<BuiltSnapshot, ExportError> {
    // A stream's state has no history to compute a drift reference from: it carries the given one.
    let reference = decisioning.reference.cloned();
    build_signed(tables, schema, (as_of, created_at, data_range), signer, decisioning, reference)
}

/// [`build_from_aggregates`] with the drift reference, when there is one; `times` are the as-of
/// time, the creation time and the data range.
fn build_signed(
    mut tables: Vec<Vec<(EntityKey, Aggregates)>>,
    schema: &FeatureSchema,
    (as_of, created_at, data_range): (Timestamp, Timestamp, Option<(Timestamp, Timestamp)>),
    signer: &SnapshotSigner,
    decisioning: &Decisioning<'_>,
    reference: Option<Reference>,
) -> Result<BuiltSnapshot, ExportError> {
    let model = decisioning.model.map(|(m, _)| m);
    for table in &mut tables {
        table.sort_unstable_by_key(|(key, _)| *key);
    }
    let meta = SnapshotMeta {
        snapshot_id: snapshot_id(as_of, schema, &tables, decisioning, reference.as_ref()),
        as_of,
        created_at,
        data_range,
        exporter_version: env!("CARGO_PKG_VERSION").to_string(),
        id_key_fingerprint: signer.id_hash().fingerprint(),
        schema: schema.clone(),
        model_id: decisioning.model.map(|(_, id)| id.to_string()),
        lineage: decisioning.lineage.cloned(),
        reference,
    };
    let rows = tables.iter().map(Vec::len).collect();
    let max_part_bytes = decisioning.max_part_bytes.unwrap_or(usize::MAX);
    let bytes = build_snapshot_in_parts(&meta, tables, model, decisioning.policy, signer, max_part_bytes)
        .map_err(ExportError::Build)?;
    Ok(BuiltSnapshot { bytes, meta, rows })
}

/// `tg-YYYYMMDDTHHMMSS-xxxxxxxx`: the as-of time and a content hash, so that equal content
/// gets an equal id and different content a different one.
fn snapshot_id(
    as_of: Timestamp,
    schema: &FeatureSchema,
    tables: &[Vec<(EntityKey, Aggregates)>],
    decisioning: &Decisioning<'_>,
    reference: Option<&Reference>,
) -> String {
    let mut h = blake3::Hasher::new();
    if let Some(r) = reference {
        h.update(b"reference");
        h.update(&r.from.0.to_le_bytes());
        h.update(&r.rows.to_le_bytes());
        for bins in r.features.iter().chain(&r.score) {
            for v in bins.edges.iter().chain(&bins.proportions) {
                h.update(&v.to_bits().to_le_bytes());
            }
        }
    }
    if let Some((model, id)) = decisioning.model {
        h.update(id.as_bytes());
        h.update(&model.encode());
    }
    if let Some(policy) = decisioning.policy {
        h.update(&policy.encode());
    }
    h.update(&as_of.0.to_le_bytes());
    h.update(&schema.hash().to_le_bytes());
    for table in tables {
        h.update(&(table.len() as u64).to_le_bytes());
        for (key, aggregates) in table {
            h.update(&key.0.to_le_bytes());
            for v in aggregates.0 {
                h.update(&v.to_bits().to_le_bytes());
            }
        }
    }
    let digest = h.finalize();
    let d = as_of.to_datetime();
    let b = digest.as_bytes();
    format!(
        "tg-{:04}{:02}{:02}T{:02}{:02}{:02}-{:02x}{:02x}{:02x}{:02x}",
        d.year, d.month, d.day, d.hour, d.minute, d.second, b[0], b[1], b[2], b[3]
    )
}
