//! Snapshot deltas: the bytes that turn one snapshot (the base) into the next, so that an edge
//! holding the base receives kilobytes instead of the whole file. A delta is not trusted: applying
//! it rebuilds the next file byte for byte, checks it against the BLAKE3 the delta names, and the
//! result is then loaded (signature, digests, every check) like any snapshot. Layout:
//! `docs/snapshot-format.md`, "Deltas".

use super::{HEADER_LEN, SECTION_ENTITY_TABLE, SECTION_ENTRY_LEN, SIGNATURE_LEN};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// The first 8 bytes of every delta.
pub const DELTA_MAGIC: [u8; 8] = *b"TGDELT\r\n";
/// The delta format's major version: appliers refuse any other.
pub const DELTA_MAJOR: u16 = 1;
/// The delta format's minor version.
pub const DELTA_MINOR: u16 = 0;
/// Bytes of the fixed delta header before the new snapshot's head.
pub const DELTA_HEADER_LEN: usize = 96;

const OP_LITERAL: u8 = 0;
const OP_COPY: u8 = 1;
const OP_ROWS: u8 = 2;

/// Why a delta could not be built or applied. Every variant names where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaError {
    /// The bytes do not start with the delta magic.
    NotADelta,
    /// A delta major version this applier does not know.
    UnsupportedVersion {
        /// Version in the delta.
        found: u16,
        /// Version this applier reads.
        supported: u16,
    },
    /// The delta was made against another base than the one given.
    WrongBase {
        /// BLAKE3 of the base the delta was made against.
        expected: [u8; 32],
        /// BLAKE3 of the base given.
        found: [u8; 32],
    },
    /// The delta ends before a field it declares.
    Truncated {
        /// Offset in the delta where the missing field starts.
        at: u64,
        /// What was being read.
        what: &'static str,
    },
    /// A field of the delta is invalid.
    Malformed {
        /// Offset in the delta of the field.
        at: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// The rebuilt file does not hash to the result digest the delta names.
    ResultDigest,
    /// The base or next file given to [`build_delta`] is not a well-formed snapshot.
    NotASnapshot {
        /// `"base"` or `"next"`.
        which: &'static str,
        /// What is wrong.
        what: &'static str,
    },
}

impl fmt::Display for DeltaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeltaError::NotADelta => f.write_str("not a tollgate snapshot delta (bad magic bytes)"),
            DeltaError::UnsupportedVersion { found, supported } => write!(
                f,
                "snapshot delta format version {found} is not supported (this applier reads version {supported})"
            ),
            DeltaError::WrongBase { expected, found } => {
                f.write_str("snapshot delta was made against base blake3:")?;
                write_hex(f, expected)?;
                f.write_str(", but the current snapshot is blake3:")?;
                write_hex(f, found)
            }
            DeltaError::Truncated { at, what } => {
                write!(f, "snapshot delta truncated at byte {at}: {what} is missing")
            }
            DeltaError::Malformed { at, what } => write!(f, "snapshot delta byte {at}: {what}"),
            DeltaError::ResultDigest => {
                f.write_str("snapshot delta result does not match its BLAKE3 digest (corrupted delta)")
            }
            DeltaError::NotASnapshot { which, what } => write!(f, "{which} snapshot: {what}"),
        }
    }
}

impl core::error::Error for DeltaError {}

/// Writes `bytes` as lowercase hex.
pub fn write_hex(f: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    crate::text::write_hex(f, bytes)
}

/// True when `bytes` start with [`DELTA_MAGIC`] (a delta rather than a full snapshot).
pub fn is_delta(bytes: &[u8]) -> bool {
    bytes.starts_with(&DELTA_MAGIC)
}

/// What a delta's fixed header says, read without applying it ([`DeltaInfo::read`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaInfo {
    /// Length of the base file.
    pub base_len: u64,
    /// BLAKE3 of the whole base file.
    pub base_digest: [u8; 32],
    /// Length of the result file.
    pub result_len: u64,
    /// BLAKE3 of the whole result file.
    pub result_digest: [u8; 32],
    /// Sections of the result.
    pub sections: usize,
    /// Sections copied from the base unchanged.
    pub copied: usize,
    /// Entity table sections patched row by row.
    pub patched: usize,
    /// Sections carried as literal bytes.
    pub literal: usize,
    /// Rows deleted over all row patches.
    pub rows_deleted: u64,
    /// Rows changed in place over all row patches.
    pub rows_updated: u64,
    /// Rows inserted over all row patches.
    pub rows_inserted: u64,
}

impl DeltaInfo {
    /// Reads and checks a delta's structure (header, head, every op's bounds) without a base.
    pub fn read(delta: &[u8]) -> Result<DeltaInfo, DeltaError> {
        let parsed = Parsed::read(delta)?;
        let mut info = DeltaInfo {
            base_len: parsed.base_len,
            base_digest: parsed.base_digest,
            result_len: parsed.result_len as u64,
            result_digest: parsed.result_digest,
            sections: parsed.entries.len(),
            copied: 0,
            patched: 0,
            literal: 0,
            rows_deleted: 0,
            rows_updated: 0,
            rows_inserted: 0,
        };
        for op in &parsed.ops {
            match op {
                Op::Literal(_) => info.literal += 1,
                Op::Copy(..) => info.copied += 1,
                Op::Rows { patch, .. } => {
                    info.patched += 1;
                    info.rows_deleted += patch.deleted;
                    info.rows_updated += patch.updated;
                    info.rows_inserted += patch.inserted;
                }
            }
        }
        Ok(info)
    }
}

/// One section table entry, as far as deltas need it.
#[derive(Clone, Copy, Debug)]
struct Section {
    kind: u16,
    entity: u16,
    width: usize,
    offset: usize,
    len: usize,
    digest: [u8; 32],
}

/// Reads the section table of the snapshot head at the start of `bytes`, checking that every
/// section lies inside `file_len` bytes. Returns the head's length and the sections.
fn read_head(bytes: &[u8], file_len: usize) -> Result<(usize, Vec<Section>), &'static str> {
    if bytes.len() < HEADER_LEN {
        return Err("shorter than a snapshot header");
    }
    if bytes[..8] != super::MAGIC {
        return Err("bad snapshot magic bytes");
    }
    let n = u32_at(bytes, 12) as usize;
    let head_len = n
        .checked_mul(SECTION_ENTRY_LEN)
        .and_then(|t| t.checked_add(HEADER_LEN + SIGNATURE_LEN))
        .ok_or("section count out of range")?;
    if head_len > bytes.len() || head_len > file_len {
        return Err("section table does not fit");
    }
    let mut sections = Vec::with_capacity(n);
    for i in 0..n {
        let e = &bytes[HEADER_LEN + i * SECTION_ENTRY_LEN..][..SECTION_ENTRY_LEN];
        let offset = usize::try_from(u64_at(e, 8)).map_err(|_| "section offset out of range")?;
        let len = usize::try_from(u64_at(e, 16)).map_err(|_| "section length out of range")?;
        if offset < head_len || offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err("a section lies outside the file");
        }
        let mut digest = [0; 32];
        digest.copy_from_slice(&e[32..64]);
        sections.push(Section {
            kind: u16_at(e, 0),
            entity: u16_at(e, 2),
            width: u32_at(e, 4) as usize,
            offset,
            len,
            digest,
        });
    }
    Ok((head_len, sections))
}

/// Where an entity table section sits among its entity kind's parts: (entity, width, part, parts).
fn part_place(sections: &[Section]) -> Vec<Option<(u16, usize, usize, usize)>> {
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for s in sections.iter().filter(|s| s.kind == SECTION_ENTITY_TABLE) {
        *counts.entry(s.entity).or_default() += 1;
    }
    let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
    sections
        .iter()
        .map(|s| {
            (s.kind == SECTION_ENTITY_TABLE).then(|| {
                let part = seen.entry(s.entity).or_default();
                *part += 1;
                (s.entity, s.width, *part - 1, counts[&s.entity])
            })
        })
        .collect()
}

/// Builds the delta that turns `base` into `next` (both whole snapshot files; neither signature is
/// checked here, the applier's `Snapshot::load` checks the result's). Per section of `next`: a copy
/// of a base section with the same bytes, else a row patch against the base's same part of the
/// same entity table when that is smaller, else the bytes themselves.
pub fn build_delta(base: &[u8], next: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let bad = |which| move |what| DeltaError::NotASnapshot { which, what };
    let (_, base_sections) = read_head(base, base.len()).map_err(bad("base"))?;
    let (head_len, next_sections) = read_head(next, next.len()).map_err(bad("next"))?;
    if u64_at(next, 16) != next.len() as u64 {
        return Err(DeltaError::NotASnapshot { which: "next", what: "length differs from its header" });
    }
    let mut out = Vec::with_capacity(DELTA_HEADER_LEN + head_len + 1024);
    out.extend_from_slice(&DELTA_MAGIC);
    out.extend_from_slice(&DELTA_MAJOR.to_le_bytes());
    out.extend_from_slice(&DELTA_MINOR.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(base.len() as u64).to_le_bytes());
    out.extend_from_slice(&super::crypto::blake3(base));
    out.extend_from_slice(&(next.len() as u64).to_le_bytes());
    out.extend_from_slice(&super::crypto::blake3(next));
    out.extend_from_slice(&next[..head_len]);

    // Base sections by digest (and length), each used at most once.
    let mut by_digest: BTreeMap<([u8; 32], usize), Vec<usize>> = BTreeMap::new();
    for (i, s) in base_sections.iter().enumerate().rev() {
        by_digest.entry((s.digest, s.len)).or_default().push(i);
    }
    let base_places = part_place(&base_sections);
    let next_places = part_place(&next_sections);
    let mut used = alloc::vec![false; base_sections.len()];
    for (s, place) in next_sections.iter().zip(&next_places) {
        let bytes = &next[s.offset..s.offset + s.len];
        if let Some(i) = by_digest.get_mut(&(s.digest, s.len)).and_then(|v| {
            while let Some(&i) = v.last() {
                // The digest in a table is not trusted: compare the bytes.
                let b = &base_sections[i];
                if !used[i] && base[b.offset..b.offset + b.len] == *bytes {
                    return v.pop();
                }
                v.pop();
            }
            None
        }) {
            used[i] = true;
            out.push(OP_COPY);
            out.extend_from_slice(&(i as u32).to_le_bytes());
            continue;
        }
        let patch = (*place).filter(|p| p.1 >= 8 && p.1.is_multiple_of(4)).and_then(|p| {
            let i = base_places.iter().position(|b| *b == Some(p)).filter(|&i| !used[i])?;
            let b = &base_sections[i];
            let base_rows = &base[b.offset..b.offset + b.len];
            if !base_rows.len().is_multiple_of(p.1) || !bytes.len().is_multiple_of(p.1) {
                return None;
            }
            Some((i, row_patch(base_rows, bytes, p.1)?))
        });
        match patch {
            Some((i, patch)) if patch.len() + 4 < bytes.len() => {
                used[i] = true;
                out.push(OP_ROWS);
                out.extend_from_slice(&(i as u32).to_le_bytes());
                out.extend_from_slice(&patch);
            }
            _ => {
                out.push(OP_LITERAL);
                out.extend_from_slice(bytes);
            }
        }
    }
    Ok(out)
}

/// The row patch that turns the sorted `base` rows into the sorted `next` rows (layout in
/// `docs/snapshot-format.md`, "Deltas"): deleted and updated rows by their index in `base`, an
/// update as the 4-byte words that changed, inserted rows whole. `None` when either is not
/// strictly ascending.
fn row_patch(base: &[u8], next: &[u8], width: usize) -> Option<Vec<u8>> {
    let key = |rows: &[u8], i: usize| u64_at(rows, i * width);
    let (nb, nn) = (base.len() / width, next.len() / width);
    let ascending = |rows: &[u8], n: usize| (1..n).all(|i| key(rows, i - 1) < key(rows, i));
    if !ascending(base, nb) || !ascending(next, nn) {
        return None;
    }
    let (mut deletes, mut updates, mut inserts) = (Vec::new(), Vec::new(), Vec::new());
    let (mut n_deletes, mut n_updates) = (0u64, 0u64);
    let (mut last_delete, mut last_update) = (None, None);
    let words = width / 4;
    let (mut i, mut j) = (0, 0);
    while i < nb || j < nn {
        let (kb, kn) =
            (if i < nb { Some(key(base, i)) } else { None }, if j < nn { Some(key(next, j)) } else { None });
        match (kb, kn) {
            (Some(b), Some(n)) if b == n => {
                let (rb, rn) = (&base[i * width..][..width], &next[j * width..][..width]);
                if rb != rn {
                    put_gap(&mut updates, &mut last_update, i);
                    let mut mask = alloc::vec![0u8; words.div_ceil(8)];
                    let mut changed = Vec::new();
                    for w in 0..words {
                        if rb[w * 4..w * 4 + 4] != rn[w * 4..w * 4 + 4] {
                            mask[w / 8] |= 1 << (w % 8);
                            changed.extend_from_slice(&rn[w * 4..w * 4 + 4]);
                        }
                    }
                    updates.extend_from_slice(&mask);
                    updates.extend_from_slice(&changed);
                    n_updates += 1;
                }
                i += 1;
                j += 1;
            }
            (Some(b), Some(n)) if b < n => {
                put_gap(&mut deletes, &mut last_delete, i);
                n_deletes += 1;
                i += 1;
            }
            (Some(_), None) => {
                put_gap(&mut deletes, &mut last_delete, i);
                n_deletes += 1;
                i += 1;
            }
            _ => {
                inserts.extend_from_slice(&next[j * width..][..width]);
                j += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(30 + deletes.len() + updates.len() + inserts.len());
    put_varint(&mut out, n_deletes);
    put_varint(&mut out, n_updates);
    put_varint(&mut out, (inserts.len() / width) as u64);
    out.extend_from_slice(&deletes);
    out.extend_from_slice(&updates);
    out.extend_from_slice(&inserts);
    Some(out)
}

/// Appends row index `i` as its gap from the `last` one written (`i` itself for the first).
fn put_gap(out: &mut Vec<u8>, last: &mut Option<usize>, i: usize) {
    put_varint(out, last.map_or(i, |l| i - l - 1) as u64);
    *last = Some(i);
}

/// Appends `v` as an unsigned LEB128 varint (7 bits a byte, low bits first).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One op of a parsed delta, borrowing its bytes from the delta.
enum Op<'d> {
    Literal(&'d [u8]),
    Copy(usize, u64),
    Rows { base: usize, width: usize, patch: RowPatch<'d>, at: u64 },
}

/// A row patch's counts and its three runs of bytes, bounds checked.
struct RowPatch<'d> {
    deleted: u64,
    updated: u64,
    inserted: u64,
    deletes: &'d [u8],
    updates: &'d [u8],
    inserts: &'d [u8],
}

/// A delta whose every length and offset has been checked against the delta itself.
struct Parsed<'d> {
    base_len: u64,
    base_digest: [u8; 32],
    result_len: usize,
    result_digest: [u8; 32],
    head: &'d [u8],
    entries: Vec<Section>,
    ops: Vec<Op<'d>>,
}

/// A cursor over the delta that names the offset of whatever is missing.
struct Cursor<'d> {
    bytes: &'d [u8],
    at: usize,
}

impl<'d> Cursor<'d> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'d [u8], DeltaError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(DeltaError::Truncated { at: self.at as u64, what })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DeltaError> {
        Ok(u64_at(self.take(8, what)?, 0))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DeltaError> {
        Ok(u32_at(self.take(4, what)?, 0))
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DeltaError> {
        let at = self.at;
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.take(1, what)?[0];
            if shift == 63 && byte > 1 {
                return Err(DeltaError::Malformed { at: at as u64, what: "a varint above 2^64" });
            }
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DeltaError::Malformed { at: at as u64, what: "a varint longer than 10 bytes" })
    }

    /// Reads a row patch for rows of `width` bytes (a multiple of 4), checking that every part
    /// lies in the delta; each deleted or updated row takes at least one byte, so the loops end.
    fn row_patch(&mut self, width: usize) -> Result<RowPatch<'d>, DeltaError> {
        let deleted = self.varint("the deleted row count")?;
        let updated = self.varint("the updated row count")?;
        let inserted = self.varint("the inserted row count")?;
        let start = self.at;
        for _ in 0..deleted {
            self.varint("a deleted row")?;
        }
        let deletes = &self.bytes[start..self.at];
        let start = self.at;
        let mask_len = (width / 4).div_ceil(8);
        for _ in 0..updated {
            self.varint("an updated row")?;
            let mask = self.take(mask_len, "an updated row's mask")?;
            let words = mask.iter().map(|b| b.count_ones() as usize).sum::<usize>();
            self.take(words * 4, "an updated row's words")?;
        }
        let updates = &self.bytes[start..self.at];
        let inserts = usize::try_from(inserted).ok().and_then(|n| n.checked_mul(width));
        let inserts = self.take(inserts.unwrap_or(usize::MAX), "inserted rows")?;
        Ok(RowPatch { deleted, updated, inserted, deletes, updates, inserts })
    }

    fn malformed(&self, what: &'static str) -> DeltaError {
        DeltaError::Malformed { at: self.at as u64, what }
    }
}

impl<'d> Parsed<'d> {
    fn read(delta: &'d [u8]) -> Result<Parsed<'d>, DeltaError> {
        if delta.len() < 8 || delta[..8] != DELTA_MAGIC {
            return Err(DeltaError::NotADelta);
        }
        let mut c = Cursor { bytes: delta, at: 8 };
        let version = c.take(4, "the version")?;
        if u16_at(version, 0) != DELTA_MAJOR {
            return Err(DeltaError::UnsupportedVersion { found: u16_at(version, 0), supported: DELTA_MAJOR });
        }
        if c.take(4, "the reserved bytes")? != [0; 4] {
            return Err(DeltaError::Malformed { at: 12, what: "reserved bytes are not zero" });
        }
        let base_len = c.u64("the base length")?;
        let base_digest: [u8; 32] = c.take(32, "the base digest")?.try_into().unwrap_or([0; 32]);
        let result_len = c.u64("the result length")?;
        let result_digest: [u8; 32] = c.take(32, "the result digest")?.try_into().unwrap_or([0; 32]);
        let head_at = c.at;
        let rest = &delta[head_at..];
        // A result bounded by what the delta and the base can supply: each base section is used
        // at most once, every other byte comes from the delta, plus at most 7 bytes of padding
        // per section (each section costs at least 64 bytes of head in the delta).
        let cap = base_len.saturating_add(2 * delta.len() as u64);
        let result_len =
            usize::try_from(result_len).ok().filter(|&n| n as u64 <= cap).ok_or(DeltaError::Malformed {
                at: 56,
                what: "result length exceeds what base and delta can make",
            })?;
        let (head_len, entries) =
            read_head(rest, result_len).map_err(|what| DeltaError::Malformed { at: head_at as u64, what })?;
        if u64_at(rest, 16) != result_len as u64 {
            return Err(DeltaError::Malformed {
                at: head_at as u64 + 16,
                what: "the new header's file length is not the result length",
            });
        }
        let head = c.take(head_len, "the new snapshot head")?;
        let mut ops = Vec::with_capacity(entries.len());
        for s in &entries {
            let op_at = c.at;
            let op = match c.take(1, "an op")?[0] {
                OP_LITERAL => Op::Literal(c.take(s.len, "literal section bytes")?),
                OP_COPY => Op::Copy(c.u32("the base section of a copy")? as usize, op_at as u64),
                OP_ROWS => {
                    let base = c.u32("the base section of a row patch")? as usize;
                    if s.kind != SECTION_ENTITY_TABLE || s.width < 8 || !s.width.is_multiple_of(4) {
                        return Err(DeltaError::Malformed {
                            at: op_at as u64,
                            what: "a row patch for a section that is not an entity table",
                        });
                    }
                    let patch = c.row_patch(s.width)?;
                    Op::Rows { base, width: s.width, patch, at: op_at as u64 }
                }
                _ => return Err(DeltaError::Malformed { at: op_at as u64, what: "unknown op" }),
            };
            ops.push(op);
        }
        if c.at != delta.len() {
            return Err(c.malformed("bytes after the last op"));
        }
        Ok(Parsed { base_len, base_digest, result_len, result_digest, head, entries, ops })
    }
}

/// Rebuilds the snapshot that `delta` describes from `base` (the whole base file). Refuses a delta
/// made against another base ([`DeltaError::WrongBase`], both digests) and checks the result's
/// BLAKE3; the caller still loads the result with `Snapshot::load`, which checks its signature.
/// Never panics, whatever the bytes.
pub fn apply_delta(base: &[u8], delta: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let parsed = Parsed::read(delta)?;
    let found = super::crypto::blake3(base);
    if found != parsed.base_digest || base.len() as u64 != parsed.base_len {
        return Err(DeltaError::WrongBase { expected: parsed.base_digest, found });
    }
    let bad_base = |at, what| DeltaError::Malformed { at, what };
    let (_, base_sections) =
        read_head(base, base.len()).map_err(|_| bad_base(16, "the base is not a well-formed snapshot"))?;
    let mut out = alloc::vec![0u8; parsed.result_len];
    out[..parsed.head.len()].copy_from_slice(parsed.head);
    let mut used = alloc::vec![false; base_sections.len()];
    let mut take_base = |i: usize, at: u64| -> Result<Section, DeltaError> {
        match (base_sections.get(i), used.get_mut(i)) {
            (Some(s), Some(u)) if !*u => {
                *u = true;
                Ok(*s)
            }
            (Some(_), _) => Err(bad_base(at, "a base section is used twice")),
            _ => Err(bad_base(at, "no such base section")),
        }
    };
    for (s, op) in parsed.entries.iter().zip(&parsed.ops) {
        let target = &mut out[s.offset..s.offset + s.len];
        match op {
            Op::Literal(bytes) => target.copy_from_slice(bytes),
            Op::Copy(i, at) => {
                let b = take_base(*i, *at)?;
                if b.len != s.len {
                    return Err(bad_base(*at, "a copied base section has another length"));
                }
                target.copy_from_slice(&base[b.offset..b.offset + b.len]);
            }
            Op::Rows { base: i, width, patch, at } => {
                let b = take_base(*i, *at)?;
                if b.kind != SECTION_ENTITY_TABLE || b.width != *width || b.entity != s.entity {
                    return Err(bad_base(*at, "a row patch against a base section of another table"));
                }
                merge_rows(&base[b.offset..b.offset + b.len], patch, *width, target)
                    .map_err(|what| bad_base(*at, what))?;
            }
        }
    }
    if super::crypto::blake3(&out) != parsed.result_digest {
        return Err(DeltaError::ResultDigest);
    }
    Ok(out)
}

/// Row indices from a run of gap varints (checked by [`Cursor::row_patch`]); `None` past the end,
/// an index beyond `usize` as `usize::MAX` (no base has that many rows, so it is refused).
struct Gaps<'d> {
    cursor: Cursor<'d>,
    last: Option<usize>,
}

impl Gaps<'_> {
    fn next_index(&mut self) -> Option<usize> {
        if self.cursor.at >= self.cursor.bytes.len() {
            return None;
        }
        let gap = usize::try_from(self.cursor.varint("").ok()?).unwrap_or(usize::MAX);
        let i = self.last.map_or(Some(gap), |l| l.checked_add(1).and_then(|l| l.checked_add(gap)));
        let i = i.unwrap_or(usize::MAX);
        self.last = Some(i);
        Some(i)
    }
}

/// An updated row: its index in the base, its word mask and the new words.
type Update<'d> = (usize, &'d [u8], &'d [u8]);

/// The updated rows of a row patch (checked by [`Cursor::row_patch`]), in order.
struct Updates<'d> {
    cursor: Cursor<'d>,
    last: Option<usize>,
    mask_len: usize,
}

impl<'d> Updates<'d> {
    fn next_update(&mut self) -> Result<Option<Update<'d>>, &'static str> {
        let c = &mut self.cursor;
        if c.at >= c.bytes.len() {
            return Ok(None);
        }
        let gap = usize::try_from(c.varint("").map_err(|_| "an updated row")?).unwrap_or(usize::MAX);
        let i = self.last.map_or(Some(gap), |l| l.checked_add(1).and_then(|l| l.checked_add(gap)));
        let i = i.unwrap_or(usize::MAX);
        self.last = Some(i);
        let mask = c.take(self.mask_len, "").map_err(|_| "an updated row's mask")?;
        let n = mask.iter().map(|b| b.count_ones() as usize).sum::<usize>();
        let words = c.take(n * 4, "").map_err(|_| "an updated row's words")?;
        Ok(Some((i, mask, words)))
    }
}

/// Writes the sorted `base` rows without the deleted ones, with the updated words changed and
/// with the inserted rows in key order into `target`, which must be filled exactly.
fn merge_rows(
    base: &[u8],
    patch: &RowPatch<'_>,
    width: usize,
    target: &mut [u8],
) -> Result<(), &'static str> {
    if !base.len().is_multiple_of(width) || !target.len().is_multiple_of(width) {
        return Err("the base section or the section is not whole rows");
    }
    let mut deletes = Gaps { cursor: Cursor { bytes: patch.deletes, at: 0 }, last: None };
    let mut updates = Updates {
        cursor: Cursor { bytes: patch.updates, at: 0 },
        last: None,
        mask_len: (width / 4).div_ceil(8),
    };
    let mut inserts = patch.inserts.chunks_exact(width).peekable();
    let mut out = target.chunks_exact_mut(width);
    let mut delete = deletes.next_index();
    let mut update = updates.next_update()?;
    let mut last_insert = None;
    let mut row = alloc::vec![0u8; width];
    let mut emit_inserts_below = |key: Option<u64>, out: &mut core::slice::ChunksExactMut<'_, u8>| {
        while let Some(r) = inserts.next_if(|r| key.is_none_or(|k| u64_at(r, 0) < k)) {
            let k = u64_at(r, 0);
            if last_insert.is_some_and(|l| l >= k) {
                return Err("inserted rows are not in ascending key order");
            }
            last_insert = Some(k);
            out.next().ok_or("the patched rows are longer than the section")?.copy_from_slice(r);
        }
        Ok(())
    };
    for (i, base_row) in base.chunks_exact(width).enumerate() {
        let updated = update.filter(|u| u.0 == i);
        if delete == Some(i) {
            if updated.is_some() {
                return Err("a row is both deleted and updated");
            }
            delete = deletes.next_index();
            continue;
        }
        row.copy_from_slice(base_row);
        if let Some((_, mask, words)) = updated {
            let mut words = words.chunks_exact(4);
            for w in (0..width / 4).filter(|w| mask[w / 8] & (1 << (w % 8)) != 0) {
                row[w * 4..w * 4 + 4].copy_from_slice(words.next().ok_or("an updated row's words")?);
            }
            update = updates.next_update()?;
        }
        emit_inserts_below(Some(u64_at(&row, 0)), &mut out)?;
        out.next().ok_or("the patched rows are longer than the section")?.copy_from_slice(&row);
    }
    emit_inserts_below(None, &mut out)?;
    if delete.is_some() || update.is_some() {
        return Err("a deleted or updated row is not in the base");
    }
    if out.next().is_some() {
        return Err("the patched rows are shorter than the section");
    }
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
