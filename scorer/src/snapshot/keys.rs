//! The keys around a snapshot: the keyed hash that turns entity ids into [`EntityKey`]s (raw ids
//! are never stored), the exporter's [`SnapshotSigner`] and the [`EdgeKey`] every edge holds.
//! Both keys are small text files (`tollgate keys new`).

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::hash::Hasher;
use ed25519_dalek::{Signer, SigningKey};
use siphasher::sip::SipHasher13;

/// An entity id as stored in a snapshot: the keyed 64-bit hash of the raw id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityKey(pub u64);

/// The secret 128-bit key of the entity-id hash (SipHash-1-3). Without it a snapshot's keys say
/// nothing about the ids behind them.
#[derive(Clone, PartialEq, Eq)]
pub struct IdHashKey(pub [u8; 16]);

impl IdHashKey {
    /// The [`EntityKey`] of a raw entity id (its bytes; numbers in decimal text).
    pub fn hash(&self, id: &[u8]) -> EntityKey {
        let mut h = SipHasher13::new_with_key(&self.0);
        h.write(id);
        EntityKey(h.finish())
    }

    /// A fingerprint that a snapshot records, so that an edge holding another hash key is told so
    /// instead of finding no entity at all.
    pub fn fingerprint(&self) -> u64 {
        self.hash(b"tollgate id-hash key fingerprint").0
    }
}

impl fmt::Debug for IdHashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdHashKey(fingerprint {:016x})", self.fingerprint())
    }
}

/// Why a key file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not a key file of the expected kind.
    NotAKeyFile(&'static str),
    /// A line that is not `name = value`, a comment or blank.
    BadLine(usize),
    /// A required field is missing.
    Missing(&'static str),
    /// A field's value is not hex of the right length.
    BadHex(&'static str),
    /// The verify key is not a valid ed25519 point.
    BadVerifyKey,
}

impl KeyError {
    /// Writes the `Display` text through `write_str` alone (no `core::fmt` formatter).
    pub fn write_to<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        match self {
            KeyError::NotAKeyFile(kind) => {
                f.write_str("not a tollgate ")?;
                f.write_str(kind)?;
                f.write_str(" key file")
            }
            KeyError::BadLine(line) => {
                f.write_str("line ")?;
                crate::text::write_u64(f, *line as u64)?;
                f.write_str(": expected `name = value`")
            }
            KeyError::Missing(field) => {
                f.write_str("the field ")?;
                f.write_str(field)?;
                f.write_str(" is missing")
            }
            KeyError::BadHex(field) => {
                f.write_str("the field ")?;
                f.write_str(field)?;
                f.write_str(" is not hex of the right length")
            }
            KeyError::BadVerifyKey => f.write_str("verify-key is not a valid ed25519 public key"),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl core::error::Error for KeyError {}

/// The exporter's secret: the ed25519 signing key and the id-hash key.
#[derive(Clone)]
pub struct SnapshotSigner {
    signing: SigningKey,
    id_hash: IdHashKey,
}

/// What every edge holds: the ed25519 key that verifies snapshots and the id-hash key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeKey {
    // The ed25519 public key, checked to be a valid point when read; decoded at each
    // verification by [`super::crypto`] (the module asks its host, native code the crate).
    verify: [u8; 32],
    id_hash: IdHashKey,
}

const SIGNER_HEADER: &str = "# tollgate signing key: secret, keep it with the exporter";
const EDGE_HEADER: &str = "# tollgate edge key: give it to every host, worker and page";

impl SnapshotSigner {
    /// A signer from 32 bytes of ed25519 seed and the id-hash key (both from a good random source).
    pub fn from_secret(seed: [u8; 32], id_hash: IdHashKey) -> SnapshotSigner {
        SnapshotSigner { signing: SigningKey::from_bytes(&seed), id_hash }
    }

    /// The key that edges need to verify this signer's snapshots.
    pub fn edge_key(&self) -> EdgeKey {
        EdgeKey { verify: self.signing.verifying_key().to_bytes(), id_hash: self.id_hash.clone() }
    }

    /// The id-hash key.
    pub fn id_hash(&self) -> &IdHashKey {
        &self.id_hash
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The key file text.
    pub fn to_text(&self) -> String {
        format!(
            "{SIGNER_HEADER}\nsigning-seed = {}\nid-hash-key = {}\n",
            hex(&self.signing.to_bytes()),
            hex(&self.id_hash.0)
        )
    }

    /// Reads a key file written by [`SnapshotSigner::to_text`].
    pub fn from_text(text: &str) -> Result<SnapshotSigner, KeyError> {
        if !text.starts_with(SIGNER_HEADER) {
            return Err(KeyError::NotAKeyFile("signing"));
        }
        let seed = field::<32>(text, "signing-seed")?;
        let id_hash = field::<16>(text, "id-hash-key")?;
        Ok(SnapshotSigner::from_secret(seed, IdHashKey(id_hash)))
    }
}

impl EdgeKey {
    /// The first 8 bytes of the verify key: names the key in a snapshot's header.
    pub fn key_id(&self) -> [u8; 8] {
        let mut id = [0; 8];
        id.copy_from_slice(&self.verify[..8]);
        id
    }

    /// The id-hash key.
    pub fn id_hash(&self) -> &IdHashKey {
        &self.id_hash
    }

    /// True when `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        super::crypto::ed25519_verify(&self.verify, message, signature) == super::crypto::Verdict::Valid
    }

    /// The key file text.
    pub fn to_text(&self) -> String {
        format!("{EDGE_HEADER}\nverify-key = {}\nid-hash-key = {}\n", hex(&self.verify), hex(&self.id_hash.0))
    }

    /// Reads a key file written by [`EdgeKey::to_text`].
    pub fn from_text(text: &str) -> Result<EdgeKey, KeyError> {
        if !text.starts_with(EDGE_HEADER) {
            return Err(KeyError::NotAKeyFile("edge"));
        }
        let verify = field::<32>(text, "verify-key")?;
        if !super::crypto::ed25519_key_is_valid(&verify) {
            return Err(KeyError::BadVerifyKey);
        }
        let id_hash = IdHashKey(field::<16>(text, "id-hash-key")?);
        Ok(EdgeKey { verify, id_hash })
    }
}

/// The most edge keys one edge trusts at a time (the current key and the ones being rotated in or out).
pub const MAX_EDGE_KEYS: usize = 8;

/// Why a list of edge key files could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyListError {
    /// The text does not start with an edge key file's header line.
    NotAKeyFile,
    /// More than [`MAX_EDGE_KEYS`] key files (the count given).
    TooMany(usize),
    /// The key file at this position (1-based) is malformed.
    Key(usize, KeyError),
}

impl KeyListError {
    /// Writes the `Display` text through `write_str` alone (no `core::fmt` formatter).
    pub fn write_to<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        use crate::text::write_u64;
        match self {
            KeyListError::NotAKeyFile => {
                f.write_str("not a tollgate edge key file (it must start with \"")?;
                f.write_str(EDGE_HEADER)?;
                f.write_str("\")")
            }
            KeyListError::TooMany(n) => {
                write_u64(f, *n as u64)?;
                f.write_str(" keys given, at most ")?;
                write_u64(f, MAX_EDGE_KEYS as u64)?;
                f.write_str(" can be trusted")
            }
            KeyListError::Key(n, e) => {
                f.write_str("key ")?;
                write_u64(f, *n as u64)?;
                f.write_str(": ")?;
                e.write_to(f)
            }
        }
    }
}

impl fmt::Display for KeyListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl core::error::Error for KeyListError {}

/// Reads one or more concatenated edge key files (each starts with its header line; blank space
/// before the first is allowed): the keys an edge trusts, e.g. the current one and the next.
pub fn edge_keys_from_text(text: &str) -> Result<alloc::vec::Vec<EdgeKey>, KeyListError> {
    let text = text.trim_ascii_start();
    if !text.starts_with(EDGE_HEADER) {
        return Err(KeyListError::NotAKeyFile);
    }
    // A byte scan over line starts (no `str` searcher: it would add kilobytes to scorer.wasm).
    let bytes = text.as_bytes();
    let starts: alloc::vec::Vec<usize> = (0..bytes.len())
        .filter(|&i| (i == 0 || bytes[i - 1] == b'\n') && bytes[i..].starts_with(EDGE_HEADER.as_bytes()))
        .collect();
    if starts.len() > MAX_EDGE_KEYS {
        return Err(KeyListError::TooMany(starts.len()));
    }
    let ends = starts.iter().skip(1).copied().chain([text.len()]);
    starts
        .iter()
        .zip(ends)
        .enumerate()
        .map(|(n, (&s, e))| {
            EdgeKey::from_text(text.get(s..e).unwrap_or_default())
                .map_err(|err| KeyListError::Key(n + 1, err))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn field<const N: usize>(text: &str, name: &'static str) -> Result<[u8; N], KeyError> {
    let mut out = [0u8; N];
    field_into(text, name, &mut out)?;
    Ok(out)
}

/// [`field`] into `out`: one copy of the scan in scorer.wasm for every key length. Key files are
/// ASCII, so lines, `=` and blanks are found in bytes (`str`'s `lines`, `split_once` and Unicode
/// `trim` would bring its char searcher and whitespace tables into scorer.wasm).
#[inline(never)]
fn field_into(text: &str, name: &'static str, out: &mut [u8]) -> Result<(), KeyError> {
    for (i, line) in text.as_bytes().split(|&c| c == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let Some(eq) = line.iter().position(|&c| c == b'=') else { return Err(KeyError::BadLine(i + 1)) };
        let (key, value) = line.split_at(eq);
        if key.trim_ascii() != name.as_bytes() {
            continue;
        }
        let value = value[1..].trim_ascii();
        if value.len() != 2 * out.len() {
            return Err(KeyError::BadHex(name));
        }
        for (o, pair) in out.iter_mut().zip(value.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(KeyError::BadHex(name));
            *o = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        return Ok(());
    }
    Err(KeyError::Missing(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> SnapshotSigner {
        SnapshotSigner::from_secret([7; 32], IdHashKey([9; 16]))
    }

    #[test]
    fn edge_key_lists_read_every_key_and_name_the_bad_one() {
        let a = signer().edge_key();
        let b = SnapshotSigner::from_secret([9; 32], IdHashKey([4; 16])).edge_key();
        let two = format!("\n  {}{}", a.to_text(), b.to_text());
        assert_eq!(edge_keys_from_text(&two), Ok(alloc::vec![a.clone(), b.clone()]));
        assert_eq!(edge_keys_from_text("verify-key = 00"), Err(KeyListError::NotAKeyFile));
        let broken = format!("{}{}", a.to_text(), b.to_text().replace("verify-key", "verify-kex"));
        assert_eq!(edge_keys_from_text(&broken), Err(KeyListError::Key(2, KeyError::Missing("verify-key"))));
        let nine = a.to_text().repeat(MAX_EDGE_KEYS + 1);
        assert_eq!(edge_keys_from_text(&nine), Err(KeyListError::TooMany(MAX_EDGE_KEYS + 1)));
    }

    #[test]
    fn key_files_round_trip() {
        let s = signer();
        let back = SnapshotSigner::from_text(&s.to_text()).unwrap();
        assert_eq!(back.edge_key(), s.edge_key());
        let edge = EdgeKey::from_text(&s.edge_key().to_text()).unwrap();
        assert_eq!(edge, s.edge_key());
    }

    #[test]
    fn refuses_the_wrong_kind_of_key_file_and_bad_hex() {
        let s = signer();
        assert_eq!(EdgeKey::from_text(&s.to_text()), Err(KeyError::NotAKeyFile("edge")));
        let text = s.edge_key().to_text().replace("verify-key = ", "verify-key = zz");
        assert_eq!(EdgeKey::from_text(&text), Err(KeyError::BadHex("verify-key")));
    }

    #[test]
    fn key_files_read_crlf_comments_and_blank_lines_and_name_a_bad_line() {
        let edge = signer().edge_key();
        let crlf = edge.to_text().replace('\n', "\r\n\r\n# a comment\r\n");
        assert_eq!(EdgeKey::from_text(&crlf), Ok(edge.clone()));
        // The header, then a line that is neither blank, a comment nor `key = value`: line 2.
        let bad = edge.to_text().replacen('\n', "\nno equals sign here\n", 1);
        assert_eq!(EdgeKey::from_text(&bad), Err(KeyError::BadLine(2)));
        // Without a final newline the last line still counts.
        assert_eq!(EdgeKey::from_text(edge.to_text().trim_end()), Ok(edge));
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let s = signer();
        let sig = s.sign(b"abc");
        assert!(s.edge_key().verifies(b"abc", &sig));
        assert!(!s.edge_key().verifies(b"abd", &sig));
        let other = SnapshotSigner::from_secret([8; 32], IdHashKey([9; 16]));
        assert!(!other.edge_key().verifies(b"abc", &sig));
    }

    #[test]
    fn the_id_hash_depends_on_the_key() {
        let a = IdHashKey([1; 16]);
        let b = IdHashKey([2; 16]);
        assert_ne!(a.hash(b"42"), b.hash(b"42"));
        assert_eq!(a.hash(b"42"), a.hash(b"42"));
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
