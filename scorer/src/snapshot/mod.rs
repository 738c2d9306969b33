//! The snapshot: the signed, versioned, zero-copy file of per-entity aggregates, the model and the
//! decision policy that the exporter builds and every edge loads. Loading is validation, not
//! parsing: [`Snapshot::load`] checks every byte once and then reads rows in place.
//! The layout is documented byte by byte in `docs/snapshot-format.md`.

mod build;
pub mod crypto;
mod delta;
mod keys;
mod meta;
mod read;
mod reference;

pub use build::{BuildError, build_snapshot, build_snapshot_in_parts, build_snapshot_with};
pub use delta::{
    DELTA_HEADER_LEN, DELTA_MAGIC, DELTA_MAJOR, DELTA_MINOR, DeltaError, DeltaInfo, apply_delta, build_delta,
    is_delta, write_hex,
};
pub use keys::{
    EdgeKey, EntityKey, IdHashKey, KeyError, KeyListError, MAX_EDGE_KEYS, SnapshotSigner, edge_keys_from_text,
};
pub use meta::{MetaError, ModelLineage, SnapshotMeta};
pub use read::{EntityTable, PartMissing, Snapshot, SnapshotError, SnapshotPieces};
pub use reference::{Bins, MAX_EDGES, Reference};

/// The first 8 bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"TGSNAP\r\n";
/// The format's major version: readers refuse any other.
pub const FORMAT_MAJOR: u16 = 1;
/// The format's minor version: 1 added the optional MODEL and POLICY sections, 2 entity tables in
/// parts (written only when a table has more than one part, so other files stay 1.1).
pub const FORMAT_MINOR: u16 = 2;
/// An entity table comes in at most 2^16 parts.
pub const MAX_PART_BITS: u32 = 16;

const HEADER_LEN: usize = 64;
const SECTION_ENTRY_LEN: usize = 64;
const SIGNATURE_LEN: usize = 64;
const SIGNING_CONTEXT: &[u8] = b"tollgate snapshot v1\0";

/// Section kinds (stable: part of the format).
const SECTION_META: u16 = 1;
const SECTION_ENTITY_TABLE: u16 = 2;
const SECTION_MODEL: u16 = 3;
const SECTION_POLICY: u16 = 4;

/// Bytes of an entity row for `layout`: the key, the f64 aggregates (amount sums), then the u32
/// aggregates (counts), padded to a multiple of 8.
pub fn row_width(layout: &crate::features::EntityLayout) -> usize {
    let (wide, narrow) = slot_split(layout);
    (8 + 8 * wide + 4 * narrow).next_multiple_of(8)
}

/// How many of the layout's slots are stored as f64 and as u32.
fn slot_split(layout: &crate::features::EntityLayout) -> (usize, usize) {
    let wide = layout.slots.iter().filter(|s| is_wide(s.aggregate)).count();
    (wide, layout.slots.len() - wide)
}

fn is_wide(aggregate: crate::features::Aggregate) -> bool {
    matches!(aggregate, crate::features::Aggregate::AmountSum)
}

/// For each slot of `layout`, its byte offset in a row and whether it is an f64 (else a u32).
fn slot_offsets(layout: &crate::features::EntityLayout) -> alloc::vec::Vec<(usize, bool)> {
    let (wide, _) = slot_split(layout);
    let (mut next_wide, mut next_narrow) = (8, 8 + 8 * wide);
    layout
        .slots
        .iter()
        .map(|s| {
            if is_wide(s.aggregate) {
                next_wide += 8;
                (next_wide - 8, true)
            } else {
                next_narrow += 4;
                (next_narrow - 4, false)
            }
        })
        .collect()
}
