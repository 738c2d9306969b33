//! Reading a snapshot: every check before use, then lookups that read rows in place.

use super::{
    EdgeKey, EntityKey, FORMAT_MAJOR, HEADER_LEN, IdHashKey, MAGIC, MAX_PART_BITS, MetaError,
    SECTION_ENTITY_TABLE, SECTION_ENTRY_LEN, SECTION_META, SECTION_MODEL, SECTION_POLICY, SIGNATURE_LEN,
    SIGNING_CONTEXT, SnapshotMeta, row_width, slot_offsets,
};
use crate::features::{Aggregates, FeatureSchema};
use crate::model::{Model, ModelError};
use crate::policy::{Policy, PolicyError};
use alloc::borrow::Cow;
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
    /// A row of an entity table part whose key lies outside the part's range (its top bits).
    PartRange {
        /// Entity kind index.
        entity: usize,
        /// Part index.
        part: usize,
        /// Row index in the part.
        row: u64,
    },
    /// An entity table part that the snapshot does not have.
    NoSuchPart {
        /// Entity kind index.
        entity: usize,
        /// Part index.
        part: usize,
    },
    /// An entity table part's bytes are not as long as its section table entry says.
    PartLength {
        /// Entity kind index.
        entity: usize,
        /// Part index.
        part: usize,
        /// Bytes the section table gives.
        expected: u64,
        /// Bytes given.
        found: u64,
    },
    /// No entity at all: almost certainly a broken export.
    Empty,
    /// The MODEL section is invalid, or reads another number of features than the schema has.
    Model(ModelError),
    /// The POLICY section is invalid or names an entity kind the schema does not have.
    Policy(PolicyError),
}

impl SnapshotError {
    /// Writes the `Display` text through `write_str` alone (no `core::fmt` formatter):
    /// `scorer.wasm`'s `tg_last_error` text.
    pub fn write_to<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        use crate::text::{write_hex, write_u64};
        let entity_table = |f: &mut W, entity: usize| {
            f.write_str("snapshot entity table ")?;
            write_u64(f, entity as u64)
        };
        let part = |f: &mut W, part: usize| {
            f.write_str(", part ")?;
            write_u64(f, part as u64)
        };
        match self {
            SnapshotError::Truncated { needed, found } => {
                f.write_str("snapshot truncated: needs at least ")?;
                write_u64(f, *needed)?;
                f.write_str(" bytes, has ")?;
                write_u64(f, *found)
            }
            SnapshotError::NotASnapshot => f.write_str("not a tollgate snapshot (bad magic bytes)"),
            SnapshotError::UnsupportedVersion { found, supported } => {
                f.write_str("snapshot format version ")?;
                write_u64(f, u64::from(*found))?;
                f.write_str(" is not supported (this reader reads version ")?;
                write_u64(f, u64::from(*supported))?;
                f.write_str("); upgrade the scorer")
            }
            SnapshotError::LengthMismatch { declared, found } => {
                f.write_str("snapshot length is ")?;
                write_u64(f, *found)?;
                f.write_str(" bytes but its header says ")?;
                write_u64(f, *declared)?;
                f.write_str(" (truncated or extended)")
            }
            SnapshotError::UnknownSigner { key_id } => {
                f.write_str("snapshot signed by key ")?;
                write_hex(f, key_id)?;
                f.write_str(", which this edge does not trust")
            }
            SnapshotError::BadSignature => f.write_str("snapshot signature does not verify"),
            SnapshotError::SectionLayout { section } => {
                f.write_str("snapshot section ")?;
                write_u64(f, *section as u64)?;
                f.write_str(" is out of place")
            }
            SnapshotError::SectionDigest { section } => {
                f.write_str("snapshot section ")?;
                write_u64(f, *section as u64)?;
                f.write_str(" does not match its signed digest (corrupted)")
            }
            SnapshotError::NonZeroPadding { offset } => {
                f.write_str("snapshot padding at byte ")?;
                write_u64(f, *offset)?;
                f.write_str(" is not zero")
            }
            SnapshotError::Sections(what) => {
                f.write_str("snapshot sections: ")?;
                f.write_str(what)
            }
            SnapshotError::Meta(e) => {
                f.write_str("snapshot ")?;
                e.write_to(f)
            }
            SnapshotError::IdHashKeyMismatch => {
                f.write_str("snapshot ids were hashed with another id-hash key than this edge's")
            }
            SnapshotError::RowLayout { entity, expected, found } => {
                entity_table(f, *entity)?;
                f.write_str(": rows of ")?;
                write_u64(f, *found)?;
                f.write_str(" bytes, the schema needs ")?;
                write_u64(f, *expected)
            }
            SnapshotError::RowsOutOfOrder { entity, row } => {
                entity_table(f, *entity)?;
                f.write_str(": row ")?;
                write_u64(f, *row)?;
                f.write_str(" is not in ascending key order")
            }
            SnapshotError::PartRange { entity, part: p, row } => {
                entity_table(f, *entity)?;
                part(f, *p)?;
                f.write_str(": row ")?;
                write_u64(f, *row)?;
                f.write_str(" has a key outside the part's range")
            }
            SnapshotError::NoSuchPart { entity, part } => {
                f.write_str("snapshot has no part ")?;
                write_u64(f, *part as u64)?;
                f.write_str(" of entity table ")?;
                write_u64(f, *entity as u64)
            }
            SnapshotError::PartLength { entity, part: p, expected, found } => {
                entity_table(f, *entity)?;
                part(f, *p)?;
                f.write_str(": ")?;
                write_u64(f, *found)?;
                f.write_str(" bytes, the section table says ")?;
                write_u64(f, *expected)
            }
            SnapshotError::Empty => f.write_str("snapshot holds no entity at all"),
            SnapshotError::Model(e) => {
                f.write_str("snapshot ")?;
                e.write_to(f)
            }
            SnapshotError::Policy(e) => {
                f.write_str("snapshot ")?;
                e.write_to(f)
            }
        }
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl core::error::Error for SnapshotError {}

/// A lookup in a table part that is not loaded (a snapshot loaded with [`Snapshot::load_core`]
/// whose part was never inserted, or was evicted). Scoring stops rather than guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartMissing {
    /// Entity kind index.
    pub entity: usize,
    /// Part index within the entity kind's table.
    pub part: usize,
}

impl fmt::Display for PartMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "part {} of snapshot entity table {} is not loaded", self.part, self.entity)
    }
}

/// Where one part of an entity table lies in the file and what it must hash to.
#[derive(Clone, Copy, Debug)]
struct PartEntry {
    /// Index in the section table.
    section: usize,
    len: usize,
    digest: [u8; 32],
}

/// One part of an entity table: rows sorted by key, read in place (or owned when inserted).
#[derive(Clone, Debug)]
struct TablePart<'a> {
    rows: Cow<'a, [u8]>,
    len: usize,
    // Bucket index over the keys' `bucket_bits` bits that follow the part bits: rows
    // `buckets[b]..buckets[b + 1]` are in bucket `b`. Keys are uniform hashes, so a bucket holds
    // about 8 rows and a lookup reads one small, cache-resident array and then a few consecutive
    // rows. Built while the key order is checked on load; 4 bytes per 8 entities.
    buckets: Vec<u32>,
    bucket_bits: u32,
}

/// One entity kind's rows, sorted by key: one part, or 2^k parts by the keys' top k bits
/// (format 1.2), each verified on its own and loaded whole or on demand.
#[derive(Clone, Debug)]
pub struct EntityTable<'a> {
    entity: usize,
    width: usize,
    // Per slot: byte offset in the row, f64 (else u32).
    slots: Vec<(usize, bool)>,
    part_bits: u32,
    parts: Vec<Option<TablePart<'a>>>,
    entries: Vec<PartEntry>,
    len: usize,
}

impl<'a> EntityTable<'a> {
    /// Number of entities, in every part whether loaded or not.
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

    /// Number of parts (a power of two; 1 for a table in one piece).
    pub fn part_count(&self) -> usize {
        self.parts.len()
    }

    /// The part that holds `key`, if the snapshot knows it: the key's top bits.
    pub fn part_of(&self, key: EntityKey) -> usize {
        if self.part_bits == 0 { 0 } else { (key.0 >> (64 - self.part_bits)) as usize }
    }

    /// True when part `part` is loaded (every part is, after [`Snapshot::load`]).
    pub fn is_loaded(&self, part: usize) -> bool {
        self.parts.get(part).is_some_and(Option::is_some)
    }

    /// Bytes of part `part` (none when there is no such part).
    pub fn part_len(&self, part: usize) -> Option<usize> {
        self.entries.get(part).map(|e| e.len)
    }

    /// The aggregates of the entity with `key`: `Ok(None)` when the snapshot does not know it,
    /// `Err` when the part that would hold it is not loaded.
    pub fn lookup(&self, key: EntityKey) -> Result<Option<Aggregates>, PartMissing> {
        let p = self.part_of(key);
        match self.parts.get(p) {
            Some(Some(part)) => {
                Ok(part.find(key.0, self.part_bits, self.width).map(|i| self.aggregates(part, i)))
            }
            _ => Err(PartMissing { entity: self.entity, part: p }),
        }
    }

    /// Every (key, aggregates) of the loaded parts, in ascending key order.
    pub fn rows(&self) -> impl Iterator<Item = (EntityKey, Aggregates)> + '_ {
        self.parts.iter().flatten().flat_map(move |part| {
            (0..part.len).map(move |i| (EntityKey(part.key(i, self.width)), self.aggregates(part, i)))
        })
    }

    fn aggregates(&self, part: &TablePart<'_>, i: usize) -> Aggregates {
        let row = &part.rows[i * self.width..(i + 1) * self.width];
        let mut out = Aggregates::ZERO;
        for (value, &(offset, wide)) in out.0.iter_mut().zip(&self.slots) {
            *value =
                if wide { f64::from_bits(read_u64(row, offset)) } else { f64::from(read_u32(row, offset)) };
        }
        out
    }
}

impl<'a> TablePart<'a> {
    /// Checks that the rows' keys ascend strictly and carry the part's top bits, and indexes them.
    fn new(
        rows: Cow<'a, [u8]>,
        width: usize,
        entity: usize,
        (part, part_bits): (usize, u32),
    ) -> Result<TablePart<'a>, SnapshotError> {
        let len = rows.len() / width;
        if u32::try_from(len).is_err() {
            return Err(SnapshotError::Sections("an entity table part has more than 4294967295 rows"));
        }
        // About 8 rows per bucket: the smallest power of two of buckets with len / 8 or more.
        let bucket_bits = (len / 8).max(1).next_power_of_two().trailing_zeros().min(24);
        let mut buckets = Vec::with_capacity((1 << bucket_bits) + 1);
        let mut previous = None;
        for i in 0..len {
            let key = read_u64(&rows, i * width);
            if previous.is_some_and(|p| key <= p) {
                return Err(SnapshotError::RowsOutOfOrder { entity, row: i as u64 });
            }
            if part_bits != 0 && (key >> (64 - part_bits)) as usize != part {
                return Err(SnapshotError::PartRange { entity, part, row: i as u64 });
            }
            previous = Some(key);
            let bucket = bucket_of(key, part_bits, bucket_bits);
            while buckets.len() <= bucket {
                buckets.push(i as u32);
            }
        }
        while buckets.len() <= 1 << bucket_bits {
            buckets.push(len as u32);
        }
        Ok(TablePart { rows, len, buckets, bucket_bits })
    }

    fn key(&self, i: usize, width: usize) -> u64 {
        read_u64(&self.rows, i * width)
    }

    /// The row index of `key`, if present: its bucket, then a scan of the bucket's rows.
    fn find(&self, key: u64, part_bits: u32, width: usize) -> Option<usize> {
        let b = bucket_of(key, part_bits, self.bucket_bits);
        let (mut start, mut end) = (*self.buckets.get(b)? as usize, *self.buckets.get(b + 1)? as usize);
        // Buckets are small for hashed keys; halve a large one (only a skewed table has them).
        while end - start > 16 {
            let mid = start + (end - start) / 2;
            if self.key(mid, width) <= key {
                start = mid;
            } else {
                end = mid;
            }
        }
        (start..end).find(|&i| self.key(i, width) >= key).filter(|&i| self.key(i, width) == key)
    }
}

/// The bucket of `key` in a part: the `bucket_bits` bits after the `part_bits` the part shares.
fn bucket_of(key: u64, part_bits: u32, bucket_bits: u32) -> usize {
    if bucket_bits == 0 { 0 } else { ((key << part_bits) >> (64 - bucket_bits)) as usize }
}

/// One section table entry.
#[derive(Clone, Copy, Debug)]
struct Entry {
    kind: u16,
    entity: u16,
    width: usize,
    offset: usize,
    len: usize,
    rows: usize,
    digest: [u8; 32],
}

/// The head of a snapshot (header, section table, signature), its entries read.
struct Head {
    entries: Vec<Entry>,
    /// End of the section table (the signature follows).
    table_end: usize,
    /// File length the header declares.
    declared: u64,
    key_id: [u8; 8],
}

impl Head {
    /// Reads the header and section table of `bytes` (the whole file, or its head and more),
    /// checking every field that needs no key; the signature is [`Head::verify`]'s job.
    fn read(bytes: &[u8]) -> Result<Head, SnapshotError> {
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
        let mut entries = Vec::with_capacity(sections);
        for s in 0..sections {
            let entry = &bytes[HEADER_LEN + s * SECTION_ENTRY_LEN..][..SECTION_ENTRY_LEN];
            let layout = || SnapshotError::SectionLayout { section: s };
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&entry[32..64]);
            let e = Entry {
                kind: read_u16(entry, 0),
                entity: read_u16(entry, 2),
                width: read_u32(entry, 4) as usize,
                offset: usize::try_from(read_u64(entry, 8)).map_err(|_| layout())?,
                len: usize::try_from(read_u64(entry, 16)).map_err(|_| layout())?,
                rows: usize::try_from(read_u64(entry, 24)).map_err(|_| layout())?,
                digest,
            };
            let fits = if e.kind == SECTION_ENTITY_TABLE {
                e.width != 0 && e.rows.checked_mul(e.width) == Some(e.len)
            } else {
                (e.entity, e.width, e.rows) == (0, 0, 0)
            };
            if !fits || e.offset.checked_add(e.len).is_none() {
                return Err(layout());
            }
            entries.push(e);
        }
        Ok(Head { entries, table_end, declared, key_id })
    }

    /// Checks the signature of `bytes`' head with the trusted key its key id names.
    fn verify<'k>(&self, bytes: &[u8], trusted: &'k [EdgeKey]) -> Result<&'k EdgeKey, SnapshotError> {
        let key_id = self.key_id;
        let signer =
            trusted.iter().find(|k| k.key_id() == key_id).ok_or(SnapshotError::UnknownSigner { key_id })?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[self.table_end..self.table_end + SIGNATURE_LEN]);
        if !signer.verifies(&signed_message(&bytes[..self.table_end]), &signature) {
            return Err(SnapshotError::BadSignature);
        }
        if let Some(i) = bytes[32..HEADER_LEN].iter().position(|&b| b != 0) {
            return Err(SnapshotError::NonZeroPadding { offset: 32 + i as u64 });
        }
        Ok(signer)
    }

    /// Where the sections start: after the signature.
    fn sections_start(&self) -> usize {
        self.table_end + SIGNATURE_LEN
    }

    /// Checks that each section starts where the format puts it (the previous end rounded up to 8)
    /// and that the sections end at the declared length.
    fn check_layout(&self) -> Result<(), SnapshotError> {
        let mut next = self.sections_start();
        for (s, e) in self.entries.iter().enumerate() {
            if e.offset != next.next_multiple_of(8) {
                return Err(SnapshotError::SectionLayout { section: s });
            }
            next = e.offset + e.len;
        }
        if next.next_multiple_of(8) as u64 != self.declared {
            return Err(SnapshotError::LengthMismatch {
                declared: self.declared,
                found: next.next_multiple_of(8) as u64,
            });
        }
        Ok(())
    }
}

/// The pieces an edge stores apart to load entity table parts on demand: the core (head plus
/// every section but the entity tables) and, for each part, its byte range in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPieces {
    /// What [`Snapshot::load_core`] reads.
    pub core: Vec<u8>,
    /// Each entity table part: (entity kind, part, byte range in the file), in file order.
    pub parts: Vec<(usize, usize, core::ops::Range<usize>)>,
}

impl SnapshotPieces {
    /// Splits a snapshot file into its core and its table parts. Nothing is verified here (the
    /// edge verifies what it loads); only the layout is read.
    pub fn split(bytes: &[u8]) -> Result<SnapshotPieces, SnapshotError> {
        let head = Head::read(bytes)?;
        head.check_layout()?;
        if head.declared != bytes.len() as u64 {
            return Err(SnapshotError::LengthMismatch { declared: head.declared, found: bytes.len() as u64 });
        }
        let mut core = bytes[..head.sections_start()].to_vec();
        let mut parts = Vec::new();
        let mut part_of_entity: Vec<usize> = Vec::new();
        for e in &head.entries {
            let range = e.offset..e.offset + e.len;
            if e.kind == SECTION_ENTITY_TABLE {
                let entity = usize::from(e.entity);
                if part_of_entity.len() <= entity {
                    part_of_entity.resize(entity + 1, 0);
                }
                parts.push((entity, part_of_entity[entity], range));
                part_of_entity[entity] += 1;
            } else {
                core.resize(core.len().next_multiple_of(8), 0);
                core.extend_from_slice(&bytes[range]);
            }
        }
        core.resize(core.len().next_multiple_of(8), 0);
        Ok(SnapshotPieces { core, parts })
    }
}

/// A loaded, verified snapshot; its rows are read in place from the bytes it borrows (parts
/// inserted later are owned).
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    meta: SnapshotMeta,
    tables: Vec<EntityTable<'a>>,
    model: Option<Model>,
    policy: Option<Policy>,
    id_hash: IdHashKey,
    size: usize,
}

impl<'a> Snapshot<'a> {
    /// Verifies `bytes` against the edge's trusted keys (the first whose key id matches the
    /// header's) and every structural rule of the format; nothing is used before all checks pass.
    pub fn load(bytes: &'a [u8], trusted: &[EdgeKey]) -> Result<Snapshot<'a>, SnapshotError> {
        let head = Head::read(bytes)?;
        let found = bytes.len() as u64;
        if head.declared != found {
            return Err(SnapshotError::LengthMismatch { declared: head.declared, found });
        }
        let signer = head.verify(bytes, trusted)?;
        // Sections follow the signature in table order, each at the previous end rounded up to 8.
        let mut next = head.sections_start();
        let mut bodies = Vec::with_capacity(head.entries.len());
        for (s, e) in head.entries.iter().enumerate() {
            if e.offset != next.next_multiple_of(8) || e.offset + e.len > bytes.len() {
                return Err(SnapshotError::SectionLayout { section: s });
            }
            check_zero(bytes, next, e.offset)?;
            let body = &bytes[e.offset..e.offset + e.len];
            if super::crypto::blake3(body) != e.digest {
                return Err(SnapshotError::SectionDigest { section: s });
            }
            next = e.offset + e.len;
            bodies.push(Some(body));
        }
        if next.next_multiple_of(8) != bytes.len() {
            return Err(SnapshotError::LengthMismatch {
                declared: head.declared,
                found: next.next_multiple_of(8) as u64,
            });
        }
        check_zero(bytes, next, bytes.len())?;
        Snapshot::assemble(&head, signer, bodies)
    }

    /// Verifies a snapshot's core ([`SnapshotPieces::core`]: head, META, MODEL, POLICY) like
    /// [`Snapshot::load`] does, leaving every entity table part unloaded: insert each with
    /// [`Snapshot::insert_part`] (verified against its signed digest) before lookups reach it.
    pub fn load_core(core: &'a [u8], trusted: &[EdgeKey]) -> Result<Snapshot<'a>, SnapshotError> {
        let head = Head::read(core)?;
        let signer = head.verify(core, trusted)?;
        head.check_layout()?;
        let mut next = head.sections_start();
        let mut bodies = Vec::with_capacity(head.entries.len());
        for (s, e) in head.entries.iter().enumerate() {
            if e.kind == SECTION_ENTITY_TABLE {
                bodies.push(None);
                continue;
            }
            let start = next.next_multiple_of(8);
            let end = start.checked_add(e.len).filter(|&end| end <= core.len());
            let end = end.ok_or(SnapshotError::Truncated {
                needed: (start + e.len) as u64,
                found: core.len() as u64,
            })?;
            check_zero(core, next, start)?;
            let body = &core[start..end];
            if super::crypto::blake3(body) != e.digest {
                return Err(SnapshotError::SectionDigest { section: s });
            }
            next = end;
            bodies.push(Some(body));
        }
        if next.next_multiple_of(8) != core.len() {
            return Err(SnapshotError::LengthMismatch {
                declared: next.next_multiple_of(8) as u64,
                found: core.len() as u64,
            });
        }
        check_zero(core, next, core.len())?;
        Snapshot::assemble(&head, signer, bodies)
    }

    /// Checks the sections' contents, given each section's verified bytes (none for a table part
    /// not loaded), and builds the snapshot.
    fn assemble(
        head: &Head,
        signer: &EdgeKey,
        bodies: Vec<Option<&'a [u8]>>,
    ) -> Result<Snapshot<'a>, SnapshotError> {
        let (mut meta_bytes, mut model_bytes, mut policy_bytes) = (None, None, None);
        let mut parts: Vec<(usize, Entry, Option<&'a [u8]>)> = Vec::new();
        for (s, (e, body)) in head.entries.iter().zip(bodies).enumerate() {
            match e.kind {
                SECTION_META if meta_bytes.is_none() => meta_bytes = body,
                SECTION_META => return Err(SnapshotError::Sections("two META sections")),
                SECTION_MODEL if model_bytes.is_none() => model_bytes = body,
                SECTION_MODEL => return Err(SnapshotError::Sections("two MODEL sections")),
                SECTION_POLICY if policy_bytes.is_none() => policy_bytes = body,
                SECTION_POLICY => return Err(SnapshotError::Sections("two POLICY sections")),
                SECTION_ENTITY_TABLE => parts.push((s, *e, body)),
                _ => return Err(SnapshotError::Sections("a section of unknown kind")),
            }
        }
        let meta = SnapshotMeta::decode(meta_bytes.ok_or(SnapshotError::Sections("no META section"))?)
            .map_err(SnapshotError::Meta)?;
        if meta.id_key_fingerprint != signer.id_hash().fingerprint() {
            return Err(SnapshotError::IdHashKeyMismatch);
        }
        let tables = entity_tables(&meta.schema, parts)?;
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
        let size = usize::try_from(head.declared).unwrap_or(usize::MAX);
        Ok(Snapshot { meta, tables, model, policy, id_hash, size })
    }

    /// Loads part `part` of entity table `entity` from its bytes, after checking them against the
    /// digest the signed section table holds for it. Replaces the part if it was loaded.
    pub fn insert_part(&mut self, entity: usize, part: usize, bytes: Vec<u8>) -> Result<(), SnapshotError> {
        let table = self.tables.get_mut(entity).ok_or(SnapshotError::NoSuchPart { entity, part })?;
        let entry = *table.entries.get(part).ok_or(SnapshotError::NoSuchPart { entity, part })?;
        if bytes.len() != entry.len {
            return Err(SnapshotError::PartLength {
                entity,
                part,
                expected: entry.len as u64,
                found: bytes.len() as u64,
            });
        }
        if super::crypto::blake3(&bytes) != entry.digest {
            return Err(SnapshotError::SectionDigest { section: entry.section });
        }
        let loaded = TablePart::new(Cow::Owned(bytes), table.width, entity, (part, table.part_bits))?;
        table.parts[part] = Some(loaded);
        Ok(())
    }

    /// Forgets part `part` of entity table `entity` (lookups in it fail until it is inserted
    /// again). Returns whether it was loaded.
    pub fn evict_part(&mut self, entity: usize, part: usize) -> bool {
        self.tables.get_mut(entity).and_then(|t| t.parts.get_mut(part)).and_then(Option::take).is_some()
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

    /// Total size of the snapshot file in bytes (every part, loaded or not).
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Checks the entity table parts against the schema: each kind in schema order, in a power of two
/// of parts (at most 2^[`MAX_PART_BITS`]), rows of the layout's width; the loaded parts' keys
/// strictly ascending and inside their part's range.
fn entity_tables<'a>(
    schema: &FeatureSchema,
    raw: Vec<(usize, Entry, Option<&'a [u8]>)>,
) -> Result<Vec<EntityTable<'a>>, SnapshotError> {
    let entities = schema.entities();
    let mut tables = Vec::with_capacity(entities.len());
    let mut raw = raw.into_iter().peekable();
    for (entity, def) in entities.iter().enumerate() {
        let mut parts = Vec::new();
        while let Some(p) = raw.next_if(|p| usize::from(p.1.entity) == entity) {
            parts.push(p);
        }
        let count = parts.len();
        if count == 0 || !count.is_power_of_two() || count > 1 << MAX_PART_BITS {
            return Err(SnapshotError::Sections(
                "entity tables must be one per entity kind, in schema order, each in a power of two of parts",
            ));
        }
        let part_bits = count.trailing_zeros();
        let width = row_width(&def.layout);
        let mut table = EntityTable {
            entity,
            width,
            slots: slot_offsets(&def.layout),
            part_bits,
            parts: Vec::with_capacity(count),
            entries: Vec::with_capacity(count),
            len: 0,
        };
        for (part, (section, e, body)) in parts.into_iter().enumerate() {
            if e.width != width {
                return Err(SnapshotError::RowLayout {
                    entity,
                    expected: width as u64,
                    found: e.width as u64,
                });
            }
            table.len += e.rows;
            table.entries.push(PartEntry { section, len: e.len, digest: e.digest });
            let loaded = match body {
                Some(b) => Some(TablePart::new(Cow::Borrowed(b), width, entity, (part, part_bits))?),
                None => None,
            };
            table.parts.push(loaded);
        }
        tables.push(table);
    }
    if raw.next().is_some() {
        return Err(SnapshotError::Sections(
            "entity tables must be one per entity kind, in schema order, each in a power of two of parts",
        ));
    }
    Ok(tables)
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
