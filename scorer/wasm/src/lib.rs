//! `scorer.wasm`: the raw ABI over [`scorer`] for wasmtime and any other embedder (contract in
//! `docs/abi.md`). It owns the module's only state: the trusted edge keys, the loaded snapshot
//! (whose bytes it owns) and the response buffer. Every error is a value; nothing traps.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::vec::Vec;
use core::alloc::Layout;
use core::cell::UnsafeCell;
use scorer::score::{
    Field, Format, Problem, RequestError, ScoreError, Scorer, TreeAttribution, error_response,
};
use scorer::snapshot::{EdgeKey, KeyListError, Snapshot, SnapshotError, edge_keys_from_text};

/// The ABI version, major in the high 16 bits and minor in the low 16 bits (1.3: the snapshot's
/// crypto comes from the host's imports, `docs/abi.md`).
pub const ABI_VERSION: u32 = 0x0001_0003;

/// `tg_load_snapshot` / `tg_set_edge_keys` status: success.
pub const STATUS_OK: u32 = 0;
/// No trusted edge key yet: call `tg_set_edge_keys` first.
pub const STATUS_NO_EDGE_KEY: u32 = 1;
/// The pointer and length do not lie inside the module's memory.
pub const STATUS_BAD_POINTER: u32 = 2;
/// The edge key text is not one or more edge key files (at most [`MAX_EDGE_KEYS`]).
pub const STATUS_BAD_EDGE_KEY: u32 = 3;
/// First status of snapshot refusals: 10 + the `SnapshotError` variant's index (see `docs/abi.md`).
pub const STATUS_SNAPSHOT: u32 = 10;

pub use scorer::snapshot::MAX_EDGE_KEYS;

/// Every buffer `tg_alloc` hands out is aligned to this.
const ALIGN: usize = 8;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
// SAFETY: the module is single-threaded (wasm32 without the atomics feature), which TalckWasm needs.
static ALLOCATOR: talc::TalckWasm = unsafe { talc::TalckWasm::new_global() };

/// Bytes the module owns: a snapshot handed over by `tg_load_snapshot`.
struct Held {
    ptr: usize,
    len: usize,
}

struct State {
    keys: Vec<EdgeKey>,
    // Declared before `held`: it borrows those bytes, so it must always be dropped first.
    scorer: Option<Scorer<'static>>,
    held: Option<Held>,
    reasons: Option<usize>,
    tree_attribution: TreeAttribution,
    out: Vec<u8>,
    error: Vec<u8>,
    /// Whether the last `tg_score` / `tg_score_batch` reached the scorer (else it recorded nothing).
    recorded: bool,
}

struct Global(UnsafeCell<State>);

// SAFETY: wasm32-unknown-unknown without the atomics feature runs exactly one thread, and no export
// calls another, so the state is never reached twice at once.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State {
    keys: Vec::new(),
    scorer: None,
    held: None,
    reasons: None,
    tree_attribution: TreeAttribution::Path,
    out: Vec::new(),
    error: Vec::new(),
    recorded: false,
}));

fn state() -> &'static mut State {
    // SAFETY: see `Global`: one thread, and each export takes this reference once and drops it
    // before returning.
    unsafe { &mut *STATE.0.get() }
}

fn layout(len: usize) -> Option<Layout> {
    Layout::from_size_align(len, ALIGN).ok()
}

/// The bytes at offset `ptr..ptr + len` of linear memory, when they lie inside it. The ABI passes
/// offsets as plain integers (`usize`, an i32 in wasm): the module checks them before use.
fn input<'a>(ptr: usize, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr == 0 {
        return None;
    }
    #[cfg(target_arch = "wasm32")]
    {
        let memory = core::arch::wasm32::memory_size(0).saturating_mul(65_536);
        if ptr.checked_add(len).is_none_or(|end| end > memory) {
            return None;
        }
    }
    let ptr = ptr as *const u8;
    // SAFETY: the range lies inside linear memory (checked above; every byte of it is readable
    // and initialised in wasm) and the host does not write it while the export runs.
    Some(unsafe { core::slice::from_raw_parts(ptr, len) })
}

fn overlaps(a: &[u8], b0: usize, b_len: usize) -> bool {
    let a0 = a.as_ptr() as usize;
    !a.is_empty() && b_len > 0 && a0 < b0 + b_len && b0 < a0 + a.len()
}

fn pack(bytes: &[u8]) -> u64 {
    ((bytes.as_ptr() as usize as u64) << 32) | bytes.len() as u64
}

/// Returns [`ABI_VERSION`], so an embedder can refuse a module it does not speak.
#[unsafe(no_mangle)]
pub extern "C" fn tg_version() -> u32 {
    ABI_VERSION
}

/// Allocates `len` bytes (aligned to 8) for the host to write a request, key or snapshot into;
/// 0 when memory is exhausted.
#[unsafe(no_mangle)]
pub extern "C" fn tg_alloc(len: usize) -> usize {
    match layout(len) {
        Some(_) if len == 0 => ALIGN,
        // SAFETY: the layout has a non-zero size.
        Some(l) => unsafe { alloc::alloc::alloc(l) as usize },
        None => 0,
    }
}

/// Frees a buffer from [`tg_alloc`] (same `len`). Never pass a snapshot buffer given to
/// `tg_load_snapshot` (the module owns it) or a response (the module reuses it).
#[unsafe(no_mangle)]
pub extern "C" fn tg_free(ptr: usize, len: usize) {
    if len == 0 || input(ptr, len).is_none() {
        return;
    }
    if let Some(l) = layout(len) {
        // SAFETY: the contract: `ptr` came from `tg_alloc(len)` and is freed once.
        unsafe { alloc::alloc::dealloc(ptr as *mut u8, l) }
    }
}

/// Replaces the trusted edge keys with the key file(s) at `ptr..ptr + len` (the text of one or
/// more `tollgate keys` edge key files, concatenated). Returns a status; see [`tg_last_error`].
#[unsafe(no_mangle)]
pub extern "C" fn tg_set_edge_keys(ptr: usize, len: usize) -> u32 {
    let st = state();
    // Parsed before the error buffer is touched: a host may pass that very buffer back.
    let parsed = input(ptr, len).map(parse_keys);
    st.error.clear();
    let Some(parsed) = parsed else {
        st.error.extend_from_slice(b"edge keys: the pointer and length lie outside the module's memory");
        return STATUS_BAD_POINTER;
    };
    match parsed {
        Ok(keys) => {
            st.keys = keys;
            STATUS_OK
        }
        Err(message) => {
            st.error.extend_from_slice(b"edge keys: ");
            let _ = message.write_to(&mut Text(&mut st.error));
            STATUS_BAD_EDGE_KEY
        }
    }
}

/// The edge keys in `bytes`, or the reason in words.
fn parse_keys(bytes: &[u8]) -> Result<Vec<EdgeKey>, KeyText> {
    let text = core::str::from_utf8(bytes).map_err(|_| KeyText::NotUtf8)?;
    edge_keys_from_text(text).map_err(KeyText::List)
}

/// Why edge key text was refused.
enum KeyText {
    NotUtf8,
    List(KeyListError),
}

impl KeyText {
    /// The reason in words, through `write_str` alone (no `core::fmt` formatter in the module).
    fn write_to(&self, f: &mut impl core::fmt::Write) -> core::fmt::Result {
        match self {
            KeyText::NotUtf8 => f.write_str("the text is not UTF-8"),
            KeyText::List(e) => e.write_to(f),
        }
    }
}

/// Loads the snapshot at `ptr..ptr + len`, a buffer from `tg_alloc(len)` that the module takes
/// over whatever the outcome (it keeps it while the snapshot serves and frees it when refused or
/// replaced). A refused snapshot leaves the previous one serving. Returns a status.
#[unsafe(no_mangle)]
pub extern "C" fn tg_load_snapshot(ptr: usize, len: usize) -> u32 {
    let st = state();
    // The buffer must be one the host allocated, never one the module owns.
    let owned = |b: &[u8]| {
        st.held.as_ref().is_some_and(|h| overlaps(b, h.ptr, h.len))
            || overlaps(b, st.out.as_ptr() as usize, st.out.capacity())
            || overlaps(b, st.error.as_ptr() as usize, st.error.capacity())
    };
    let bytes = input(ptr, len).filter(|b| !owned(b));
    st.error.clear();
    let Some(bytes) = bytes else {
        st.error.extend_from_slice(
            b"snapshot: the pointer and length lie outside the module's memory or on a buffer it owns",
        );
        return STATUS_BAD_POINTER;
    };
    let status = if st.keys.is_empty() {
        st.error.extend_from_slice(b"snapshot: no trusted edge key; call tg_set_edge_keys first");
        STATUS_NO_EDGE_KEY
    } else {
        match Snapshot::load(bytes, &st.keys) {
            Ok(snapshot) => {
                let mut scorer = Scorer::new(snapshot);
                if let Some(n) = st.reasons {
                    scorer.set_top_reasons(n);
                }
                scorer.set_tree_attribution(st.tree_attribution);
                scorer.set_record_features(true);
                // The old scorer borrows the old bytes: drop it before freeing them.
                st.scorer = Some(scorer);
                if let Some(old) = st.held.replace(Held { ptr, len }) {
                    tg_free(old.ptr, old.len);
                }
                return STATUS_OK;
            }
            Err(e) => {
                let _ = e.write_to(&mut Text(&mut st.error));
                STATUS_SNAPSHOT + snapshot_error_index(&e)
            }
        }
    };
    tg_free(ptr, len);
    status
}

fn snapshot_error_index(e: &SnapshotError) -> u32 {
    match e {
        SnapshotError::Truncated { .. } => 0,
        SnapshotError::NotASnapshot => 1,
        SnapshotError::UnsupportedVersion { .. } => 2,
        SnapshotError::LengthMismatch { .. } => 3,
        SnapshotError::UnknownSigner { .. } => 4,
        SnapshotError::BadSignature => 5,
        SnapshotError::SectionLayout { .. } => 6,
        SnapshotError::SectionDigest { .. } => 7,
        SnapshotError::NonZeroPadding { .. } => 8,
        SnapshotError::Sections(_) => 9,
        SnapshotError::Meta(_) => 10,
        SnapshotError::IdHashKeyMismatch => 11,
        SnapshotError::RowLayout { .. } => 12,
        SnapshotError::RowsOutOfOrder { .. } => 13,
        SnapshotError::Empty => 14,
        SnapshotError::Model(_) => 15,
        SnapshotError::Policy(_) => 16,
        SnapshotError::PartRange { .. } => 17,
        SnapshotError::NoSuchPart { .. } => 18,
        SnapshotError::PartLength { .. } => 19,
    }
}

/// The message of the last failed `tg_set_edge_keys` or `tg_load_snapshot` (empty after a
/// success), packed as `ptr << 32 | len`; valid until the next call of either.
#[unsafe(no_mangle)]
pub extern "C" fn tg_last_error() -> u64 {
    pack(&state().error)
}

/// How many reasons responses carry (0 to 8; 3 by default; 0 turns attribution off).
#[unsafe(no_mangle)]
pub extern "C" fn tg_set_reasons(n: u32) {
    let st = state();
    let n = n as usize;
    st.reasons = Some(n);
    if let Some(scorer) = &mut st.scorer {
        scorer.set_top_reasons(n);
    }
}

/// How tree ensembles (with leaf covers) explain scores: 0 the path attribution (the default),
/// 1 exact TreeSHAP. Returns 0, or 1 for an unknown mode (then nothing changes). Applies to the
/// loaded snapshot and later ones. ABI 1.1.
#[unsafe(no_mangle)]
pub extern "C" fn tg_set_tree_attribution(mode: u32) -> u32 {
    let how = match mode {
        0 => TreeAttribution::Path,
        1 => TreeAttribution::Shap,
        _ => return 1,
    };
    let st = state();
    st.tree_attribution = how;
    if let Some(scorer) = &mut st.scorer {
        scorer.set_tree_attribution(how);
    }
    0
}

/// Scores one request (MessagePack, or JSON when it starts with `{`) at `ptr..ptr + len`; the
/// response, in the same format, is packed as `ptr << 32 | len` and valid until the next
/// `tg_score` or `tg_score_batch`. The request buffer stays the host's.
#[unsafe(no_mangle)]
pub extern "C" fn tg_score(ptr: usize, len: usize) -> u64 {
    respond(ptr, len, false)
}

/// Scores a batch: an array of requests in, an array of responses (same order) out.
#[unsafe(no_mangle)]
pub extern "C" fn tg_score_batch(ptr: usize, len: usize) -> u64 {
    respond(ptr, len, true)
}

fn respond(ptr: usize, len: usize, batch: bool) -> u64 {
    let st = state();
    let request = input(ptr, len);
    // A host may hand the last response back as a request: then write into a fresh buffer and
    // free the old one only after scoring.
    let mut old = core::mem::take(&mut st.out);
    let (mut out, keep) = match request {
        Some(bytes) if overlaps(bytes, old.as_ptr() as usize, old.capacity()) => (Vec::new(), Some(old)),
        _ => {
            old.clear();
            (old, None)
        }
    };
    let sink = &mut out;
    st.recorded = request.is_some() && st.scorer.is_some();
    match (request, &mut st.scorer) {
        (None, _) => {
            let field = if batch { Field::Batch } else { Field::Request };
            let problem = Problem::OutOfBounds;
            let e = ScoreError::Request(RequestError { field, problem, format: Format::MsgPack });
            error_response(&[], &e, sink);
        }
        (Some(bytes), None) => error_response(bytes, &ScoreError::NoSnapshot, sink),
        (Some(bytes), Some(scorer)) if batch => scorer.score_batch_bytes(bytes, sink),
        (Some(bytes), Some(scorer)) => scorer.score_bytes(bytes, sink),
    }
    st.out = out;
    drop(keep);
    pack(&st.out)
}

/// The features and score of every request of the last `tg_score` or `tg_score_batch`, packed
/// as `ptr << 32 | len`: per request in order, `n + 1` little-endian f64 (the schema's `n`
/// features, then the score), all NaN for a request the model did not score (an error, or a hard
/// rule decided). Empty when that call reached no snapshot. Valid until the next scoring call.
/// ABI 1.2: for drift monitoring by the host.
#[unsafe(no_mangle)]
pub extern "C" fn tg_last_features() -> u64 {
    let st = state();
    let values: &[f64] = match (&st.scorer, st.recorded) {
        (Some(scorer), true) => scorer.recorded_features(),
        _ => &[],
    };
    // wasm32 is little-endian, so the f64s are already the bytes the ABI names.
    let ptr = values.as_ptr() as usize as u64;
    (ptr << 32) | (values.len() * 8) as u64
}

/// `fmt::Write` into a byte vector.
struct Text<'v>(&'v mut Vec<u8>);

impl core::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // No panic may cross the wasm boundary as anything but a trap the host survives; the code
    // is written so that none is reachable.
    core::arch::wasm32::unreachable()
}
