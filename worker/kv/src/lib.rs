//! The Workers KV layout of a tollgate snapshot, shared by the writer (`tollgate push --to
//! kv-local:DIR`, tests) and the reader (the edge worker).
//!
//! # Brief overview
//! A snapshot is cut into byte-range shards (each under the 25 MiB KV value limit) stored under
//! [`Manifest::shard_key`]; a [`Manifest`] under [`MANIFEST_KEY`] names the content version (the
//! BLAKE3 digest of the whole snapshot), its length and the shard count. Writers put the shards
//! first and the manifest last, so a reader that sees a manifest finds its shards. [`split`] makes
//! the entries, [`Assembly`] puts them back together and checks length and digest before the
//! snapshot's own signature check.
//!
//! ```
//! use tollgate_kv::{Assembly, Manifest, split};
//! let snapshot = vec![7u8; 1000];
//! let (manifest, shards) = split(&snapshot, 300);
//! assert_eq!(manifest.shards, 4);
//! let mut assembly = Assembly::new(&Manifest::from_json(&manifest.to_json()).unwrap());
//! for (_, bytes) in &shards {
//!     assembly.push(bytes).unwrap();
//! }
//! assert_eq!(assembly.finish().unwrap(), snapshot);
//! ```

use scorer::snapshot::SnapshotPieces;
use serde::{Deserialize, Serialize};

/// The key of the manifest: the one key a reader polls.
pub const MANIFEST_KEY: &str = "tollgate/manifest";
/// The largest value Workers KV stores (25 MiB).
pub const MAX_VALUE_BYTES: usize = 25 << 20;
/// Shard size unless told otherwise: 8 MiB. Any size up to [`MAX_VALUE_BYTES`] works; smaller
/// shards keep the JS-side transient of a load small (one shard's `ArrayBuffer` at a time), which
/// matters in a 128 MB isolate that must hold two snapshots during an update, at the cost of a few
/// more KV reads (a 50 MB snapshot is 7).
pub const DEFAULT_SHARD_BYTES: usize = 8 << 20;
/// The KV namespace id of local runs (`worker/wrangler.toml` until deployment, miniflare, `tollgate
/// push --to kv-local:DIR`).
pub const LOCAL_NAMESPACE_ID: &str = "tollgate-snapshots-local";
/// The newest layout version; readers refuse others. Layout 1: the shards hold the whole
/// snapshot. Layout 2 (a snapshot whose entity tables come in parts): the shards hold its core
/// (`scorer::snapshot::SnapshotPieces`), and each table part is a value of its own under
/// [`Manifest::part_key`], fetched when a request needs it.
pub const LAYOUT_VERSION: u32 = 2;
/// Layout 1: the whole snapshot in shards.
pub const LAYOUT_WHOLE: u32 = 1;
/// Layout 2: the core in shards, table parts apart.
pub const LAYOUT_PARTS: u32 = 2;

/// What the manifest says about the snapshot that is current.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The layout version ([`LAYOUT_WHOLE`] or [`LAYOUT_PARTS`]).
    pub layout: u32,
    /// The content version: the BLAKE3 digest of what the shards hold (the whole snapshot, or its
    /// core, whose signed section table holds every part's digest), in hex (64 digits).
    pub version: String,
    /// The length in bytes of what the shards hold.
    pub len: u64,
    /// Bytes per shard (the last may be shorter).
    pub shard_bytes: u64,
    /// How many shards there are.
    pub shards: u32,
    /// Layout 2: how many table parts are stored apart (0 in layout 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why KV entries do not make a snapshot.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// The manifest is not the JSON this crate writes.
    #[error("{MANIFEST_KEY}: not a tollgate KV manifest: {0}")]
    BadManifest(String),
    /// The manifest is of another layout version.
    #[error("{MANIFEST_KEY}: layout version {found}, this reader knows {LAYOUT_VERSION}")]
    UnsupportedLayout {
        /// The version found.
        found: u32,
    },
    /// Shard sizes and count do not add up to the length.
    #[error("{MANIFEST_KEY}: {shards} shards of {shard_bytes} bytes cannot hold {len} bytes")]
    Inconsistent {
        /// Shard count.
        shards: u32,
        /// Bytes per shard.
        shard_bytes: u64,
        /// Snapshot length.
        len: u64,
    },
    /// A shard is absent from KV.
    #[error("{key}: shard missing")]
    MissingShard {
        /// Its key.
        key: String,
    },
    /// A shard has another length than the manifest implies.
    #[error("{key}: shard is {found} bytes, the manifest implies {expected}")]
    ShardLength {
        /// Its key.
        key: String,
        /// Bytes found.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// More shards were pushed than the manifest names.
    #[error("more than the {0} shards the manifest names")]
    TooManyShards(u32),
    /// A table part is larger than a KV value can be.
    #[error(
        "entity table {entity}, part {part}: {len} bytes, more than the {MAX_VALUE_BYTES} a KV value holds (build the snapshot with smaller parts: tollgate snapshot build --part-bytes)"
    )]
    PartTooLarge {
        /// Entity kind index.
        entity: usize,
        /// Part index.
        part: usize,
        /// Its length.
        len: usize,
    },
    /// The bytes are not a snapshot whose layout can be read.
    #[error("not a tollgate snapshot: {0}")]
    NotASnapshot(String),
    /// The reassembled bytes are not the ones the manifest names (a torn or mixed update).
    #[error("reassembled snapshot has digest {found}, the manifest names {expected}")]
    Digest {
        /// Digest of the bytes.
        found: String,
        /// Digest in the manifest.
        expected: String,
    },
}

impl Manifest {
    /// The layout-1 manifest of `snapshot` cut into shards of `shard_bytes` (at least 1).
    pub fn of(snapshot: &[u8], shard_bytes: usize) -> Manifest {
        let shard_bytes = shard_bytes.max(1);
        Manifest {
            layout: LAYOUT_WHOLE,
            version: blake3::hash(snapshot).to_hex().to_string(),
            len: snapshot.len() as u64,
            shard_bytes: shard_bytes as u64,
            shards: snapshot.len().div_ceil(shard_bytes).max(1) as u32,
            parts: 0,
        }
    }

    /// The key of part `part` of entity table `entity` (layout 2):
    /// `tollgate/<version>/part/<entity>/<part>`.
    pub fn part_key(&self, entity: usize, part: usize) -> String {
        format!("tollgate/{}/part/{entity}/{part}", self.version)
    }

    /// The key of shard `i`: `tollgate/<version>/<i>`. Keys carry the version, so a new snapshot
    /// never overwrites the shards of the one that is serving.
    pub fn shard_key(&self, i: u32) -> String {
        format!("tollgate/{}/{i}", self.version)
    }

    /// The length shard `i` must have.
    pub fn shard_len(&self, i: u32) -> usize {
        let start = u64::from(i) * self.shard_bytes;
        self.len.saturating_sub(start).min(self.shard_bytes) as usize
    }

    /// The manifest as the JSON stored under [`MANIFEST_KEY`].
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads and checks a manifest.
    pub fn from_json(text: &str) -> Result<Manifest, LayoutError> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| LayoutError::BadManifest(e.to_string()))?;
        let parts_fit = match m.layout {
            LAYOUT_WHOLE => m.parts == 0,
            LAYOUT_PARTS => m.parts > 0,
            found => return Err(LayoutError::UnsupportedLayout { found }),
        };
        if !parts_fit {
            return Err(LayoutError::BadManifest(format!("layout {} with {} parts", m.layout, m.parts)));
        }
        let valid_hex = m.version.len() == 64 && m.version.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_hex {
            return Err(LayoutError::BadManifest(format!(
                "version {:?} is not a BLAKE3 hex digest",
                m.version
            )));
        }
        let fits = m.shard_bytes > 0
            && m.shard_bytes <= MAX_VALUE_BYTES as u64
            && m.shards == (m.len.div_ceil(m.shard_bytes).max(1)) as u32;
        if !fits {
            return Err(LayoutError::Inconsistent {
                shards: m.shards,
                shard_bytes: m.shard_bytes,
                len: m.len,
            });
        }
        Ok(m)
    }
}

/// Cuts `snapshot` into shards of `shard_bytes`: the manifest and `(key, bytes)` per shard, in
/// order. Put the shards first and the manifest (its [`Manifest::to_json`]) last.
pub fn split(snapshot: &[u8], shard_bytes: usize) -> (Manifest, Vec<(String, &[u8])>) {
    let manifest = Manifest::of(snapshot, shard_bytes);
    let size = manifest.shard_bytes as usize;
    let shards = if snapshot.is_empty() {
        vec![(manifest.shard_key(0), snapshot)]
    } else {
        snapshot.chunks(size).enumerate().map(|(i, c)| (manifest.shard_key(i as u32), c)).collect()
    };
    (manifest, shards)
}

/// Every KV entry of `snapshot`, in the order to put them, the manifest last: layout 1 (shards of
/// the whole file) for a snapshot whose tables are each in one part, layout 2 (shards of the core,
/// then one value per table part) for one built in parts.
pub fn entries(snapshot: &[u8], shard_bytes: usize) -> Result<Vec<(String, Vec<u8>)>, LayoutError> {
    let pieces = SnapshotPieces::split(snapshot).map_err(|e| LayoutError::NotASnapshot(e.to_string()))?;
    let in_parts = pieces.parts.iter().any(|(_, part, _)| *part > 0);
    let (manifest, mut out) = if in_parts {
        let (mut manifest, shards) = split(&pieces.core, shard_bytes);
        manifest.layout = LAYOUT_PARTS;
        manifest.parts = pieces.parts.len() as u32;
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for (entity, part, range) in &pieces.parts {
            if range.len() > MAX_VALUE_BYTES {
                return Err(LayoutError::PartTooLarge { entity: *entity, part: *part, len: range.len() });
            }
            out.push((manifest.part_key(*entity, *part), snapshot[range.clone()].to_vec()));
        }
        out.extend(shards.into_iter().map(|(k, b)| (k, b.to_vec())));
        (manifest, out)
    } else {
        let (manifest, shards) = split(snapshot, shard_bytes);
        (manifest, shards.into_iter().map(|(k, b)| (k, b.to_vec())).collect())
    };
    out.push((MANIFEST_KEY.to_string(), manifest.to_json().into_bytes()));
    Ok(out)
}

/// A snapshot being put back together from its shards, in order.
#[derive(Debug)]
pub struct Assembly {
    manifest: Manifest,
    bytes: Vec<u8>,
    next: u32,
}

impl Assembly {
    /// Starts reassembling the snapshot `manifest` names (reserves its whole length once).
    pub fn new(manifest: &Manifest) -> Assembly {
        let bytes = Vec::with_capacity(usize::try_from(manifest.len).unwrap_or(0));
        Assembly { manifest: manifest.clone(), bytes, next: 0 }
    }

    /// The key of the next shard to push, or `None` when all are in.
    pub fn next_key(&self) -> Option<String> {
        (self.next < self.manifest.shards).then(|| self.manifest.shard_key(self.next))
    }

    /// Appends the next shard, checking its length.
    pub fn push(&mut self, shard: &[u8]) -> Result<(), LayoutError> {
        self.push_with(shard.len(), |dst| dst.copy_from_slice(shard))
    }

    /// Appends the next shard of `len` bytes by letting `write` fill them in place, so a reader
    /// can copy straight from where the shard arrived (a JS `ArrayBuffer`) into the snapshot's
    /// buffer, without a second copy. `write` is called only when `len` is the expected length.
    pub fn push_with(&mut self, len: usize, write: impl FnOnce(&mut [u8])) -> Result<(), LayoutError> {
        if self.next >= self.manifest.shards {
            return Err(LayoutError::TooManyShards(self.manifest.shards));
        }
        let expected = self.manifest.shard_len(self.next);
        if len != expected {
            let key = self.manifest.shard_key(self.next);
            return Err(LayoutError::ShardLength { key, found: len, expected });
        }
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        write(&mut self.bytes[start..]);
        self.next += 1;
        Ok(())
    }

    /// The whole snapshot, once every shard is in and the digest matches the manifest's.
    pub fn finish(self) -> Result<Vec<u8>, LayoutError> {
        if let Some(key) = self.next_key() {
            return Err(LayoutError::MissingShard { key });
        }
        let found = blake3::hash(&self.bytes).to_hex().to_string();
        if found != self.manifest.version {
            return Err(LayoutError::Digest { found, expected: self.manifest.version });
        }
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_reassemble_round_trip_at_every_boundary() {
        let snapshot: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for size in [1, 7, 999, 1000, 1001, 1 << 20] {
            let (manifest, shards) = split(&snapshot, size);
            assert_eq!(manifest.shards as usize, shards.len());
            assert!(shards.iter().all(|(_, s)| s.len() <= size));
            let read = Manifest::from_json(&manifest.to_json()).unwrap();
            let mut a = Assembly::new(&read);
            for (key, bytes) in &shards {
                assert_eq!(a.next_key().as_deref(), Some(key.as_str()));
                a.push(bytes).unwrap();
            }
            assert_eq!(a.finish().unwrap(), snapshot);
        }
    }

    #[test]
    fn refuses_shards_of_another_snapshot_and_missing_shards() {
        let one = vec![1u8; 100];
        let mut two = one.clone();
        two[99] = 2;
        let (manifest, _) = split(&one, 40);
        let (_, other) = split(&two, 40);
        let mut a = Assembly::new(&manifest);
        for (_, bytes) in &other {
            a.push(bytes).unwrap();
        }
        assert!(matches!(a.finish(), Err(LayoutError::Digest { .. })));
        let mut a = Assembly::new(&manifest);
        a.push(&one[..40]).unwrap();
        let e = a.finish().unwrap_err();
        assert_eq!(e.to_string(), format!("tollgate/{}/1: shard missing", manifest.version));
        let mut a = Assembly::new(&manifest);
        assert!(matches!(a.push(&one[..39]), Err(LayoutError::ShardLength { expected: 40, found: 39, .. })));
        let mut a = Assembly::new(&manifest);
        assert!(a.push_with(41, |_| unreachable!("not called on a wrong length")).is_err());
        for chunk in one.chunks(40) {
            a.push_with(chunk.len(), |dst| dst.copy_from_slice(chunk)).unwrap();
        }
        assert!(a.push(&[]).is_err(), "a fourth shard was taken");
        assert_eq!(a.finish().unwrap(), one);
    }

    /// A signed handbook-schema snapshot of `n` customers and terminals, in parts of at most
    /// `part_bytes` (`usize::MAX`: one part per table).
    fn snapshot(n: u64, part_bytes: usize) -> (Vec<u8>, scorer::snapshot::SnapshotSigner) {
        use scorer::features::{Aggregates, FeatureSchema};
        use scorer::snapshot::{IdHashKey, SnapshotMeta, SnapshotSigner, build_snapshot_in_parts};
        let signer = SnapshotSigner::from_secret([7; 32], IdHashKey([8; 16]));
        let meta = SnapshotMeta {
            snapshot_id: "tg-kv-test".into(),
            as_of: scorer::Timestamp(1_533_686_400),
            created_at: scorer::Timestamp(1_700_000_000),
            data_range: None,
            exporter_version: "test".into(),
            id_key_fingerprint: signer.id_hash().fingerprint(),
            schema: FeatureSchema::handbook(),
            model_id: None,
            lineage: None,
            reference: None,
        };
        let rows = |prefix: &str| {
            (0..n)
                .map(|i| (signer.id_hash().hash(format!("{prefix}{i}").as_bytes()), Aggregates::ZERO))
                .collect()
        };
        let tables = vec![rows("c"), rows("t")];
        (build_snapshot_in_parts(&meta, tables, None, None, &signer, part_bytes).unwrap(), signer)
    }

    #[test]
    fn a_snapshot_in_parts_is_stored_as_its_core_and_one_value_per_part() {
        use scorer::snapshot::Snapshot;
        let (bytes, signer) = snapshot(3000, 16 << 10);
        let entries = entries(&bytes, 1000).unwrap();
        let (last, json) = entries.last().unwrap();
        assert_eq!(last, MANIFEST_KEY, "the manifest goes last");
        let manifest = Manifest::from_json(std::str::from_utf8(json).unwrap()).unwrap();
        assert_eq!(manifest.layout, LAYOUT_PARTS);
        assert_eq!(manifest.parts, 16 + 8, "3000 x 48 B and 3000 x 32 B in parts of 16 KiB");
        let value = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let mut assembly = Assembly::new(&manifest);
        while let Some(key) = assembly.next_key() {
            assembly.push(&value(&key).unwrap()).unwrap();
        }
        let core = assembly.finish().unwrap();
        let trusted = [signer.edge_key()];
        let mut snap = Snapshot::load_core(&core, &trusted).unwrap();
        for e in 0..2 {
            for p in 0..snap.table(e).unwrap().part_count() {
                snap.insert_part(e, p, value(&manifest.part_key(e, p)).unwrap()).unwrap();
            }
        }
        let whole = Snapshot::load(&bytes, &trusted).unwrap();
        for e in 0..2 {
            let (a, b): (Vec<_>, Vec<_>) =
                (snap.table(e).unwrap().rows().collect(), whole.table(e).unwrap().rows().collect());
            assert_eq!(a, b);
        }
        // One part per table: layout 1, the file itself in shards.
        let (bytes, _) = snapshot(300, usize::MAX);
        let whole_entries = super::entries(&bytes, 4096).unwrap();
        let manifest =
            Manifest::from_json(std::str::from_utf8(&whole_entries.last().unwrap().1).unwrap()).unwrap();
        assert_eq!((manifest.layout, manifest.parts), (LAYOUT_WHOLE, 0));
        assert!(matches!(super::entries(b"not a snapshot", 10), Err(LayoutError::NotASnapshot(_))));
    }

    #[test]
    fn refuses_manifests_that_do_not_add_up() {
        let (m, _) = split(&[0u8; 100], 40);
        let bad = Manifest { shards: 2, ..m.clone() };
        assert!(matches!(Manifest::from_json(&bad.to_json()), Err(LayoutError::Inconsistent { .. })));
        let bad = Manifest { layout: 3, ..m.clone() };
        assert_eq!(Manifest::from_json(&bad.to_json()), Err(LayoutError::UnsupportedLayout { found: 3 }));
        let bad = Manifest { layout: LAYOUT_PARTS, ..m.clone() };
        assert!(
            matches!(Manifest::from_json(&bad.to_json()), Err(LayoutError::BadManifest(_))),
            "layout 2 without parts"
        );
        let bad = Manifest { parts: 3, ..m.clone() };
        assert!(
            matches!(Manifest::from_json(&bad.to_json()), Err(LayoutError::BadManifest(_))),
            "layout 1 with parts"
        );
        let bad = Manifest { shard_bytes: MAX_VALUE_BYTES as u64 + 1, shards: 1, ..m.clone() };
        assert!(Manifest::from_json(&bad.to_json()).is_err());
        assert!(matches!(Manifest::from_json("{\"layout\":1}"), Err(LayoutError::BadManifest(_))));
        let bad = Manifest { version: "zz".into(), ..m };
        assert!(matches!(Manifest::from_json(&bad.to_json()), Err(LayoutError::BadManifest(_))));
    }
}
