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
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
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
    /// Keys deleted over all row patches.
    pub rows_deleted: u64,
    /// Rows inserted or replaced over all row patches.
    pub rows_upserted: u64,
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
            rows_upserted: 0,
        };
        for op in &parsed.ops {
            match op {
                Op::Literal(_) => info.literal += 1,
                Op::Copy(..) => info.copied += 1,
                Op::Rows { deletes, upserts, width, .. } => {
                    info.patched += 1;
                    info.rows_deleted += (deletes.len() / 8) as u64;
                    info.rows_upserted += (upserts.len() / width) as u64;
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
    out.extend_from_slice(blake3::hash(base).as_bytes());
    out.extend_from_slice(&(next.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(next).as_bytes());
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
        let patch = (*place).filter(|p| p.1 >= 8).and_then(|p| {
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

/// The row patch (deletion count, upsert count, deleted keys, upserted rows) that turns the sorted
/// `base` rows into the sorted `next` rows; `None` when either is not strictly ascending.
fn row_patch(base: &[u8], next: &[u8], width: usize) -> Option<Vec<u8>> {
    let key = |rows: &[u8], i: usize| u64_at(rows, i * width);
    let (nb, nn) = (base.len() / width, next.len() / width);
    let ascending = |rows: &[u8], n: usize| (1..n).all(|i| key(rows, i - 1) < key(rows, i));
    if !ascending(base, nb) || !ascending(next, nn) {
        return None;
    }
    let (mut deletes, mut upserts) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < nb || j < nn {
        let (kb, kn) =
            (if i < nb { Some(key(base, i)) } else { None }, if j < nn { Some(key(next, j)) } else { None });
        match (kb, kn) {
            (Some(b), Some(n)) if b == n => {
                let (rb, rn) = (&base[i * width..][..width], &next[j * width..][..width]);
                if rb != rn {
                    upserts.extend_from_slice(rn);
                }
                i += 1;
                j += 1;
            }
            (Some(b), Some(n)) if b < n => {
                deletes.extend_from_slice(&b.to_le_bytes());
                i += 1;
            }
            (Some(b), None) => {
                deletes.extend_from_slice(&b.to_le_bytes());
                i += 1;
            }
            _ => {
                upserts.extend_from_slice(&next[j * width..][..width]);
                j += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(16 + deletes.len() + upserts.len());
    out.extend_from_slice(&((deletes.len() / 8) as u64).to_le_bytes());
    out.extend_from_slice(&((upserts.len() / width) as u64).to_le_bytes());
    out.extend_from_slice(&deletes);
    out.extend_from_slice(&upserts);
    Some(out)
}

/// One op of a parsed delta, borrowing its bytes from the delta.
enum Op<'d> {
    Literal(&'d [u8]),
    Copy(usize, u64),
    Rows { base: usize, width: usize, deletes: &'d [u8], upserts: &'d [u8], at: u64 },
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
                    if s.kind != SECTION_ENTITY_TABLE || s.width < 8 {
                        return Err(DeltaError::Malformed {
                            at: op_at as u64,
                            what: "a row patch for a section that is not an entity table",
                        });
                    }
                    let deletes = c.u64("the deleted row count")?;
                    let upserts = c.u64("the upserted row count")?;
                    let deletes = usize::try_from(deletes).ok().and_then(|n| n.checked_mul(8));
                    let deletes = c.take(deletes.unwrap_or(usize::MAX), "deleted keys")?;
                    let upserts = usize::try_from(upserts).ok().and_then(|n| n.checked_mul(s.width));
                    let upserts = c.take(upserts.unwrap_or(usize::MAX), "upserted rows")?;
                    Op::Rows { base, width: s.width, deletes, upserts, at: op_at as u64 }
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
    let found = *blake3::hash(base).as_bytes();
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
            Op::Rows { base: i, width, deletes, upserts, at } => {
                let b = take_base(*i, *at)?;
                if b.kind != SECTION_ENTITY_TABLE || b.width != *width || b.entity != s.entity {
                    return Err(bad_base(*at, "a row patch against a base section of another table"));
                }
                merge_rows(&base[b.offset..b.offset + b.len], deletes, upserts, *width, target)
                    .map_err(|what| bad_base(*at, what))?;
            }
        }
    }
    if *blake3::hash(&out).as_bytes() != parsed.result_digest {
        return Err(DeltaError::ResultDigest);
    }
    Ok(out)
}

/// Writes the sorted `base` rows without the `deletes` keys and with the `upserts` rows (sorted,
/// replacing a base row of the same key) into `target`, which must be filled exactly.
fn merge_rows(
    base: &[u8],
    deletes: &[u8],
    upserts: &[u8],
    width: usize,
    target: &mut [u8],
) -> Result<(), &'static str> {
    if !base.len().is_multiple_of(width) {
        return Err("the base section is not whole rows");
    }
    let mut rows = base.chunks_exact(width).peekable();
    let mut deleted = deletes.chunks_exact(8).map(|k| u64_at(k, 0)).peekable();
    let mut upserted = upserts.chunks_exact(width).peekable();
    if !target.len().is_multiple_of(width) {
        return Err("the section is not whole rows");
    }
    let mut out = target.chunks_exact_mut(width);
    let mut last_delete = None;
    let mut last_upsert = None;
    loop {
        let base_key = rows.peek().map(|r| u64_at(r, 0));
        let upsert_key = upserted.peek().map(|r| u64_at(r, 0));
        let row = match (base_key, upsert_key) {
            (None, None) => break,
            (Some(b), u) => {
                if let Some(&d) = deleted.peek()
                    && d <= b
                {
                    if d < b || last_delete.is_some_and(|l| l >= d) {
                        return Err("a deleted key is not in the base, or keys are not ascending");
                    }
                    last_delete = Some(d);
                    deleted.next();
                    rows.next();
                    continue;
                }
                match u {
                    Some(u) if u <= b => {
                        if last_upsert.is_some_and(|l| l >= u) {
                            return Err("upserted rows are not in ascending key order");
                        }
                        last_upsert = Some(u);
                        if u == b {
                            rows.next();
                        }
                        upserted.next()
                    }
                    _ => rows.next(),
                }
            }
            (None, Some(u)) => {
                if last_upsert.is_some_and(|l| l >= u) {
                    return Err("upserted rows are not in ascending key order");
                }
                last_upsert = Some(u);
                upserted.next()
            }
        };
        let slot = out.next().ok_or("the patched rows are longer than the section")?;
        slot.copy_from_slice(row.ok_or("the patched rows are longer than the section")?);
    }
    if deleted.next().is_some() {
        return Err("a deleted key is not in the base");
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
