//! The two cryptographic primitives a snapshot's checks use: ed25519 signature verification and
//! BLAKE3. The checks themselves live in [`super::Snapshot::load`] and are written once; only
//! these primitives change with the build.
//!
//! * Everywhere by default (native code, the worker, the page): the `ed25519-dalek` and `blake3`
//!   crates, in the crate.
//! * `scorer.wasm` (feature `host-crypto`, on wasm32 only): imports from the embedder, module
//!   `tollgate`, `tg_ed25519_verify` and `tg_blake3` (`docs/abi.md`), which the wasmtime host
//!   implements natively with the same two crates. The module then links neither crate (about
//!   25 KB of wasm). The feature does nothing on other targets.

/// The outcome of an ed25519 verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The signature is the key's signature of the message.
    Valid = 0,
    /// The signature does not verify (altered message or signature, or another key's).
    Invalid = 1,
    /// The public key is not a valid ed25519 point.
    BadKey = 2,
}

impl Verdict {
    /// The verdict of an import's return value (anything unknown counts as invalid).
    pub fn from_code(code: u32) -> Verdict {
        match code {
            0 => Verdict::Valid,
            2 => Verdict::BadKey,
            _ => Verdict::Invalid,
        }
    }
}

#[cfg(not(all(feature = "host-crypto", target_arch = "wasm32")))]
mod imp {
    use super::Verdict;

    pub(super) fn blake3(bytes: &[u8]) -> [u8; 32] {
        *::blake3::hash(bytes).as_bytes()
    }

    pub(super) fn ed25519_verify(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Verdict {
        use ed25519_dalek::Verifier;
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(key) else { return Verdict::BadKey };
        match key.verify(message, &ed25519_dalek::Signature::from_bytes(signature)) {
            Ok(()) => Verdict::Valid,
            Err(_) => Verdict::Invalid,
        }
    }
}

#[cfg(all(feature = "host-crypto", target_arch = "wasm32"))]
mod imp {
    use super::Verdict;

    #[link(wasm_import_module = "tollgate")]
    unsafe extern "C" {
        /// 0 valid, 1 invalid, 2 bad key; the host reads `message_len` bytes at `message`,
        /// 64 at `signature` and 32 at `key`.
        fn tg_ed25519_verify(
            message: *const u8,
            message_len: usize,
            signature: *const u8,
            key: *const u8,
        ) -> u32;
        /// The host writes the 32-byte BLAKE3 digest of `len` bytes at `bytes` to `out`.
        fn tg_blake3(bytes: *const u8, len: usize, out: *mut u8);
    }

    pub(super) fn blake3(bytes: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        // SAFETY: both ranges are valid for their lengths (a slice and a local array); the host
        // reads the first and writes exactly 32 bytes of the second, nothing else.
        unsafe { tg_blake3(bytes.as_ptr(), bytes.len(), out.as_mut_ptr()) };
        out
    }

    pub(super) fn ed25519_verify(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Verdict {
        // SAFETY: every pointer is valid for the length the import reads; it writes nothing.
        let code =
            unsafe { tg_ed25519_verify(message.as_ptr(), message.len(), signature.as_ptr(), key.as_ptr()) };
        Verdict::from_code(code)
    }
}

/// The BLAKE3 digest of `bytes`.
pub fn blake3(bytes: &[u8]) -> [u8; 32] {
    imp::blake3(bytes)
}

/// Verifies the ed25519 `signature` of `message` by the public key `key` (strict decoding as in
/// `ed25519-dalek`'s `VerifyingKey::verify`).
pub fn ed25519_verify(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Verdict {
    imp::ed25519_verify(key, message, signature)
}

/// True when `key` is a valid ed25519 public key (a point that decompresses).
pub fn ed25519_key_is_valid(key: &[u8; 32]) -> bool {
    // Any signature will do: the key is decoded before the signature is looked at.
    ed25519_verify(key, &[], &[0; 64]) != Verdict::BadKey
}
