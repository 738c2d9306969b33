//! Reading a snapshot: every check before use, then lookups that read rows in place.

use super::{
    EdgeKey, EntityKey, FORMAT_MAJOR, HEADER_LEN, IdHashKey, MAGIC, MetaError, SECTION_ENTITY_TABLE,
    SECTION_ENTRY_LEN, SECTION_META, SECTION_MODEL, SECTION_POLICY, SIGNATURE_LEN, SIGNING_CONTEXT,
    SnapshotMeta, row_width, slot_offsets,
};
use crate::features::{Aggregates, FeatureSchema};
use crate::model::{Model, ModelError};
use crate::policy::{Policy, PolicyError};
use alloc::vec::Vec;
use core::fmt;

/// Why a snapshot was refused. Every variant names where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// Shorter than the fixed header, section table and signature it declares.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        found: u64,
    },
    /// Does not start with the snapshot magic bytes.
    NotASnapshot,
    /// A major format version this reader does not know.
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Version this reader reads.
        supported: u16,
    },
    /// The declared file length differs from the bytes present.
    LengthMismatch {
        /// Declared in the header.
        declared: u64,
        /// Bytes present.
        found: u64,
    },
    /// Signed with a key this edge does not trust.
    UnknownSigner {
        /// The key id in the header (hex).
        key_id: [u8; 8],
    },
    /// The signature does not verify: the header or section table was altered, or never signed.
    BadSignature,
    /// A section's place in the file is not where the format requires.
    SectionLayout {
        /// Index in the section table.
        section: usize,
    },
    /// A section's bytes do not hash to the digest in the signed table.
    SectionDigest {
        /// Index in the section table.
        section: usize,
    },
    /// Padding or reserved bytes that must be zero are not.
    NonZeroPadding {
        /// Offset of the first such byte.
        offset: u64,
    },
    /// A section kind this reader does not know, or a required one missing or repeated.
    Sections(&'static str),
    /// The META section is invalid.
    Meta(MetaError),
    /// The snapshot's ids were hashed with another id-hash key than the edge's.
    IdHashKeyMismatch,
    /// An entity table does not fit the schema's row layout.
    RowLayout {
        /// Entity kind index.
        entity: usize,
        /// Row width the schema implies.
        expected: u64,
        /// Row width in the file.
        found: u64,
    },
    /// An entity table's keys are not strictly ascending.
    RowsOutOfOrder {
        /// Entity kind index.
        entity: usize,
        /// Index of the first row not greater than the one before it.
        row: u64,
    },
    /// No entity at all: almost certainly a broken export.
    Empty,
    /// The MODEL section is invalid, or reads another number of features than the schema has.
    Model(ModelError),
    /// The POLICY section is invalid or names an entity kind the schema does not have.
    Policy(PolicyError),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Truncated { needed, found } => {
                write!(f, "snapshot truncated: needs at least {needed} bytes, has {found}")
            }
            SnapshotError::NotASnapshot => f.write_str("not a tollgate snapshot (bad magic bytes)"),
            SnapshotError::UnsupportedVersion { found, supported } => write!(
                f,
                "snapshot format version {found} is not supported (this reader reads version {supported}); upgrade the scorer"
            ),
            SnapshotError::LengthMismatch { declared, found } => {
                write!(
                    f,
                    "snapshot length is {found} bytes but its header says {declared} (truncated or extended)"
                )
            }
            SnapshotError::UnknownSigner { key_id } => {
                f.write_str("snapshot signed by key ")?;
                for b in key_id {
                    write!(f, "{b:02x}")?;
                }
                f.write_str(", which this edge does not trust")
            }
            SnapshotError::BadSignature => f.write_str("snapshot signature does not verify"),
            SnapshotError::SectionLayout { section } => {
                write!(f, "snapshot section {section} is out of place")
            }
            SnapshotError::SectionDigest { section } => {
                write!(f, "snapshot section {section} does not match its signed digest (corrupted)")
            }
            SnapshotError::NonZeroPadding { offset } => {
                write!(f, "snapshot padding at byte {offset} is not zero")
            }
            SnapshotError::Sections(what) => write!(f, "snapshot sections: {what}"),
            SnapshotError::Meta(e) => write!(f, "snapshot {e}"),
            SnapshotError::IdHashKeyMismatch => {
                f.write_str("snapshot ids were hashed with another id-hash key than this edge's")
            }
            SnapshotError::RowLayout { entity, expected, found } => {
                write!(
                    f,
                    "snapshot entity table {entity}: rows of {found} bytes, the schema needs {expected}"
                )
            }
            SnapshotError::RowsOutOfOrder { entity, row } => {
                write!(f, "snapshot entity table {entity}: row {row} is not in ascending key order")
            }
            SnapshotError::Empty => f.write_str("snapshot holds no entity at all"),
            SnapshotError::Model(e) => write!(f, "snapshot {e}"),
            SnapshotError::Policy(e) => write!(f, "snapshot {e}"),
        }
    }
}

impl core::error::Error for SnapshotError {}

/// One entity kind's rows, sorted by key, read in place.
#[derive(Clone, Debug)]
pub struct EntityTable<'a> {
    rows: &'a [u8],
    width: usize,
    len: usize,
    // Per slot: byte offset in the row, f64 (else u32).
    slots: Vec<(usize, bool)>,
    // Bucket index over the keys' top `bucket_bits` bits: rows `buckets[b]..buckets[b + 1]` have
    // top bits `b`. Keys are uniform hashes, so a bucket holds about 8 rows and a lookup reads one
    // small, cache-resident array and then a few consecutive rows. Built while the key order is
    // checked on load; 4 bytes per 8 entities.
    buckets: Vec<u32>,
    bucket_bits: u32,
}

impl<'a> EntityTable<'a> {
    /// Number of entities.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table has no entity.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes per row.
    pub fn row_width(&self) -> usize {
        self.width
    }

    fn key(&self, i: usize) -> u64 {
        read_u64(self.rows, i * self.width)
    }

    /// The key of row `i` (`i < len()`).
    pub fn key_at(&self, i: usize) -> EntityKey {
        EntityKey(self.key(i))
    }

    /// The aggregates of row `i` (`i < len()`), in the layout's slot order.
    pub fn aggregates_at(&self, i: usize) -> Aggregates {
        let row = &self.rows[i * self.width..(i + 1) * self.width];
        let mut out = Aggregates::ZERO;
        for (value, &(offset, wide)) in out.0.iter_mut().zip(&self.slots) {
            *value =
                if wide { f64::from_bits(read_u64(row, offset)) } else { f64::from(read_u32(row, offset)) };
        }
        out
    }

    /// The row index of `key`, if present: its bucket, then a scan of the bucket's rows.
    pub fn find(&self, key: EntityKey) -> Option<usize> {
        let key = key.0;
        let b = if self.bucket_bits == 0 { 0 } else { (key >> (64 - self.bucket_bits)) as usize };
        let (mut start, mut end) = (*self.buckets.get(b)? as usize, *self.buckets.get(b + 1)? as usize);
        // Buckets are small for hashed keys; halve a large one (only a skewed table has them).
        while end - start > 16 {
            let mid = start + (end - start) / 2;
            if self.key(mid) <= key {
                start = mid;
            } else {
                end = mid;
            }
        }
        (start..end).find(|&i| self.key(i) >= key).filter(|&i| self.key(i) == key)
    }

    /// The aggregates of the entity with `key`, or `None` when the snapshot does not know it.
    pub fn lookup(&self, key: EntityKey) -> Option<Aggregates> {
        self.find(key).map(|i| self.aggregates_at(i))
    }
}

/// A loaded, verified snapshot borrowing its bytes.
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    meta: SnapshotMeta,
    tables: Vec<EntityTable<'a>>,
    model: Option<Model>,
    policy: Option<Policy>,
    id_hash: IdHashKey,
    bytes: &'a [u8],
}

impl<'a> Snapshot<'a> {
    /// Verifies `bytes` against the edge's trusted keys (the first whose key id matches the
    /// header's) and every structural rule of the format; nothing is used before all checks pass.
    pub fn load(bytes: &'a [u8], trusted: &[EdgeKey]) -> Result<Snapshot<'a>, SnapshotError> {
        let found = bytes.len() as u64;
        if bytes.len() < HEADER_LEN {
            return Err(SnapshotError::Truncated { needed: HEADER_LEN as u64, found });
        }
        if bytes[..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let major = read_u16(bytes, 8);
        if major != FORMAT_MAJOR {
            return Err(SnapshotError::UnsupportedVersion { found: major, supported: FORMAT_MAJOR });
        }
        let sections = read_u32(bytes, 12) as usize;
        let declared = read_u64(bytes, 16);
        if declared != found {
            return Err(SnapshotError::LengthMismatch { declared, found });
        }
        let table_end = sections
            .checked_mul(SECTION_ENTRY_LEN)
            .and_then(|t| t.checked_add(HEADER_LEN))
            .filter(|&end| end + SIGNATURE_LEN <= bytes.len())
            .ok_or(SnapshotError::Truncated {
                needed: (HEADER_LEN + SIGNATURE_LEN) as u64 + sections as u64 * SECTION_ENTRY_LEN as u64,
                found,
            })?;
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&bytes[24..32]);
        let signer =
            trusted.iter().find(|k| k.key_id() == key_id).ok_or(SnapshotError::UnknownSigner { key_id })?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[table_end..table_end + SIGNATURE_LEN]);
        if !signer.verifies(&signed_message(&bytes[..table_end]), &signature) {
            return Err(SnapshotError::BadSignature);
        }
        if let Some(i) = bytes[32..HEADER_LEN].iter().position(|&b| b != 0) {
            return Err(SnapshotError::NonZeroPadding { offset: 32 + i as u64 });
        }

        // Sections follow the signature in table order, each at the previous end rounded up to 8.
        let mut next = table_end + SIGNATURE_LEN;
        let (mut meta_bytes, mut model_bytes, mut policy_bytes) = (None, None, None);
        let mut raw_tables: Vec<(usize, usize, usize, &[u8])> = Vec::new(); // entity, width, rows, bytes
        for s in 0..sections {
            let entry = &bytes[HEADER_LEN + s * SECTION_ENTRY_LEN..][..SECTION_ENTRY_LEN];
            let (kind, entity, width) = (read_u16(entry, 0), read_u16(entry, 2), read_u32(entry, 4) as usize);
            let (offset, length, rows) = (read_u64(entry, 8), read_u64(entry, 16), read_u64(entry, 24));
            let start = usize::try_from(offset).map_err(|_| SnapshotError::SectionLayout { section: s })?;
            let len = usize::try_from(length).map_err(|_| SnapshotError::SectionLayout { section: s })?;
            if start != next.next_multiple_of(8) || start.checked_add(len).is_none_or(|end| end > bytes.len())
            {
                return Err(SnapshotError::SectionLayout { section: s });
            }
            check_zero(bytes, next, start)?;
            let body = &bytes[start..start + len];
            if blake3::hash(body).as_bytes() != &entry[32..64] {
                return Err(SnapshotError::SectionDigest { section: s });
            }
            next = start + len;
            if kind != SECTION_ENTITY_TABLE && (entity, width, rows) != (0, 0, 0) {
                return Err(SnapshotError::SectionLayout { section: s });
            }
            match kind {
                SECTION_META if meta_bytes.is_none() => meta_bytes = Some(body),
                SECTION_META => return Err(SnapshotError::Sections("two META sections")),
                SECTION_MODEL if model_bytes.is_none() => model_bytes = Some(body),
                SECTION_MODEL => return Err(SnapshotError::Sections("two MODEL sections")),
                SECTION_POLICY if policy_bytes.is_none() => policy_bytes = Some(body),
                SECTION_POLICY => return Err(SnapshotError::Sections("two POLICY sections")),
                SECTION_ENTITY_TABLE => {
                    let rows =
                        usize::try_from(rows).map_err(|_| SnapshotError::SectionLayout { section: s })?;
                    if width == 0 || rows.checked_mul(width) != Some(len) {
                        return Err(SnapshotError::SectionLayout { section: s });
                    }
                    raw_tables.push((usize::from(entity), width, rows, body));
                }
                _ => return Err(SnapshotError::Sections("a section of unknown kind")),
            }
        }
        if next.next_multiple_of(8) != bytes.len() {
            return Err(SnapshotError::LengthMismatch { declared, found: next.next_multiple_of(8) as u64 });
        }
        check_zero(bytes, next, bytes.len())?;

        let meta = SnapshotMeta::decode(meta_bytes.ok_or(SnapshotError::Sections("no META section"))?)
            .map_err(SnapshotError::Meta)?;
        if meta.id_key_fingerprint != signer.id_hash().fingerprint() {
            return Err(SnapshotError::IdHashKeyMismatch);
        }
        let tables = entity_tables(&meta.schema, raw_tables)?;
        if tables.iter().all(EntityTable::is_empty) {
            return Err(SnapshotError::Empty);
        }
        let model = match model_bytes {
            Some(body) => {
                let model = Model::decode(body).map_err(SnapshotError::Model)?;
                if model.n_features() != meta.schema.len() {
                    let (model, schema) = (model.n_features(), meta.schema.len());
                    return Err(SnapshotError::Model(ModelError::FeatureCount { model, schema }));
                }
                Some(model)
            }
            None => None,
        };
        if model.is_some() != meta.model_id.is_some() {
            return Err(SnapshotError::Sections("META model_id and the MODEL section must come together"));
        }
        let policy = match policy_bytes {
            Some(body) => {
                let policy = Policy::decode(body).map_err(SnapshotError::Policy)?;
                policy.check_entities(meta.schema.entities().len()).map_err(SnapshotError::Policy)?;
                Some(policy)
            }
            None => None,
        };
        let id_hash = signer.id_hash().clone();
        Ok(Snapshot { meta, tables, model, policy, id_hash, bytes })
    }

    /// The model, when the snapshot carries one (a snapshot without a model still serves features).
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// The decision policy, when the snapshot carries one.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// The id-hash key of the edge key that verified the snapshot: turns raw ids into keys.
    pub fn id_hash(&self) -> &IdHashKey {
        &self.id_hash
    }

    /// What the snapshot says about itself.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The feature schema its tables follow.
    pub fn schema(&self) -> &FeatureSchema {
        &self.meta.schema
    }

    /// The table of entity kind `entity` (schema order).
    pub fn table(&self, entity: usize) -> Option<&EntityTable<'a>> {
        self.tables.get(entity)
    }

    /// Total size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

/// Checks each table against the schema's layouts: one per entity kind, right width, keys
/// strictly ascending.
fn entity_tables<'a>(
    schema: &FeatureSchema,
    raw: Vec<(usize, usize, usize, &'a [u8])>,
) -> Result<Vec<EntityTable<'a>>, SnapshotError> {
    let entities = schema.entities();
    if raw.len() != entities.len() || raw.iter().enumerate().any(|(i, t)| t.0 != i) {
        return Err(SnapshotError::Sections("entity tables must be one per entity kind, in schema order"));
    }
    raw.into_iter()
        .zip(entities)
        .map(|((entity, width, len, rows), def)| {
            let expected = row_width(&def.layout);
            if width != expected {
                return Err(SnapshotError::RowLayout {
                    entity,
                    expected: expected as u64,
                    found: width as u64,
                });
            }
            if u32::try_from(len).is_err() {
                return Err(SnapshotError::Sections("an entity table has more than 4294967295 rows"));
            }
            // About 8 rows per bucket: the smallest power of two of buckets with len / 8 or more.
            let bucket_bits = (len / 8).max(1).next_power_of_two().trailing_zeros().min(24);
            let mut table = EntityTable {
                rows,
                width,
                len,
                slots: slot_offsets(&def.layout),
                buckets: Vec::with_capacity((1 << bucket_bits) + 1),
                bucket_bits,
            };
            let mut previous = None;
            for i in 0..len {
                let key = table.key(i);
                if previous.is_some_and(|p| key <= p) {
                    return Err(SnapshotError::RowsOutOfOrder { entity, row: i as u64 });
                }
                previous = Some(key);
                let bucket = if bucket_bits == 0 { 0 } else { (key >> (64 - bucket_bits)) as usize };
                while table.buckets.len() <= bucket {
                    table.buckets.push(i as u32);
                }
            }
            while table.buckets.len() <= 1 << bucket_bits {
                table.buckets.push(len as u32);
            }
            Ok(table)
        })
        .collect()
}

/// The bytes the signature covers: a context string, the header and the section table.
pub(super) fn signed_message(header_and_table: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + header_and_table.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(header_and_table);
    message
}

fn check_zero(bytes: &[u8], from: usize, to: usize) -> Result<(), SnapshotError> {
    match bytes[from..to].iter().position(|&b| b != 0) {
        Some(i) => Err(SnapshotError::NonZeroPadding { offset: (from + i) as u64 }),
        None => Ok(()),
    }
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
