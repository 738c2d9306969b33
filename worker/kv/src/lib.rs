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
/// The layout's version, written into every manifest; readers refuse others.
pub const LAYOUT_VERSION: u32 = 1;

/// What the manifest says about the snapshot that is current.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The layout version ([`LAYOUT_VERSION`]).
    pub layout: u32,
    /// The content version: the BLAKE3 digest of the whole snapshot, in hex (64 digits).
    pub version: String,
    /// The snapshot's length in bytes.
    pub len: u64,
    /// Bytes per shard (the last may be shorter).
    pub shard_bytes: u64,
    /// How many shards there are.
    pub shards: u32,
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
    /// The manifest of `snapshot` cut into shards of `shard_bytes` (at least 1).
    pub fn of(snapshot: &[u8], shard_bytes: usize) -> Manifest {
        let shard_bytes = shard_bytes.max(1);
        Manifest {
            layout: LAYOUT_VERSION,
            version: blake3::hash(snapshot).to_hex().to_string(),
            len: snapshot.len() as u64,
            shard_bytes: shard_bytes as u64,
            shards: snapshot.len().div_ceil(shard_bytes).max(1) as u32,
        }
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
        if m.layout != LAYOUT_VERSION {
            return Err(LayoutError::UnsupportedLayout { found: m.layout });
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

    #[test]
    fn refuses_manifests_that_do_not_add_up() {
        let (m, _) = split(&[0u8; 100], 40);
        let bad = Manifest { shards: 2, ..m.clone() };
        assert!(matches!(Manifest::from_json(&bad.to_json()), Err(LayoutError::Inconsistent { .. })));
        let bad = Manifest { layout: 2, ..m.clone() };
        assert_eq!(Manifest::from_json(&bad.to_json()), Err(LayoutError::UnsupportedLayout { found: 2 }));
        let bad = Manifest { shard_bytes: MAX_VALUE_BYTES as u64 + 1, shards: 1, ..m.clone() };
        assert!(Manifest::from_json(&bad.to_json()).is_err());
        assert!(matches!(Manifest::from_json("{\"layout\":1}"), Err(LayoutError::BadManifest(_))));
        let bad = Manifest { version: "zz".into(), ..m };
        assert!(matches!(Manifest::from_json(&bad.to_json()), Err(LayoutError::BadManifest(_))));
    }
}
