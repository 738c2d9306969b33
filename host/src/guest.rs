//! One instance of `scorer.wasm` in its own store: the typed exports of `docs/abi.md`, a reused
//! request buffer, and every call bounded by an epoch deadline and the store's memory limit.

use std::time::Duration;
use wasmtime::{Engine, InstancePre, Memory, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc};

/// The ABI major version this host speaks (`tg_version() >> 16`).
pub const ABI_MAJOR: u32 = 1;

/// What each store carries: its resource limits.
pub(crate) struct StoreState {
    limits: StoreLimits,
}

/// Why a call into a guest failed. The instance is unusable afterwards and is discarded.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuestError {
    /// The guest ran past its time budget and was interrupted at an epoch deadline.
    #[error("the guest ran past its {budget:?} budget and was interrupted")]
    Timeout {
        /// The budget it had.
        budget: Duration,
    },
    /// The guest trapped (a bug in the module: `docs/abi.md` says no input traps it).
    #[error("the guest trapped: {0}")]
    Trap(String),
    /// The guest could not allocate a buffer (its memory limit was reached).
    #[error("the guest is out of memory: tg_alloc({0}) returned 0")]
    OutOfMemory(u32),
    /// The guest broke the ABI: a missing export, a wrong version, a result outside memory.
    #[error("the guest broke the ABI: {0}")]
    Abi(String),
    /// Instantiating the module failed (e.g. the instance pool is exhausted).
    #[error("no instance could be made: {0}")]
    Instantiate(String),
}

impl GuestError {
    /// A short label for metrics: `timeout`, `trap`, `out_of_memory`, `abi`, `instantiate`.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestError::Timeout { .. } => "timeout",
            GuestError::Trap(_) => "trap",
            GuestError::OutOfMemory(_) => "out_of_memory",
            GuestError::Abi(_) => "abi",
            GuestError::Instantiate(_) => "instantiate",
        }
    }
}

/// The limits a guest runs under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Epoch ticks a scoring call may take.
    pub score_ticks: u64,
    /// Epoch ticks a snapshot load may take.
    pub load_ticks: u64,
    /// The time budget of a scoring call (for messages).
    pub budget: Duration,
    /// The time budget of a snapshot load (for messages).
    pub load_budget: Duration,
    /// Bytes of linear memory the guest may grow to.
    pub max_memory: usize,
}

/// Which budget a call runs under.
#[derive(Clone, Copy)]
enum Phase {
    Score,
    Load,
}

/// One live instance and its exports.
pub(crate) struct Guest {
    store: Store<StoreState>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), ()>,
    set_edge_keys: TypedFunc<(u32, u32), u32>,
    load_snapshot: TypedFunc<(u32, u32), u32>,
    last_error: TypedFunc<(), u64>,
    set_reasons: TypedFunc<u32, ()>,
    score: TypedFunc<(u32, u32), u64>,
    score_batch: TypedFunc<(u32, u32), u64>,
    /// ABI 1.2's `tg_last_features` (absent from older modules: then no drift monitoring).
    last_features: Option<TypedFunc<(), u64>>,
    limits: Limits,
    /// The request buffer, reused for every request that fits: (ptr, capacity).
    buf: (u32, u32),
}

fn export<P, R>(
    instance: &wasmtime::Instance,
    store: &mut Store<StoreState>,
    name: &str,
) -> Result<TypedFunc<P, R>, GuestError>
where
    P: wasmtime::WasmParams,
    R: wasmtime::WasmResults,
{
    instance.get_typed_func(&mut *store, name).map_err(|e| GuestError::Abi(format!("export {name}: {e}")))
}

/// Calls `f` in `store` with the deadline of `phase` under `limits`; a trap becomes a
/// [`GuestError`]. A free function, so that a call borrows the store and one export apart.
fn invoke<P, R>(
    store: &mut Store<StoreState>,
    limits: Limits,
    f: &TypedFunc<P, R>,
    params: P,
    phase: Phase,
) -> Result<R, GuestError>
where
    P: wasmtime::WasmParams,
    R: wasmtime::WasmResults,
{
    let (ticks, budget) = match phase {
        Phase::Score => (limits.score_ticks, limits.budget),
        Phase::Load => (limits.load_ticks, limits.load_budget),
    };
    store.set_epoch_deadline(ticks);
    f.call(&mut *store, params).map_err(|e| match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => GuestError::Timeout { budget },
        _ => GuestError::Trap(format!("{e:#}")),
    })
}

impl Guest {
    /// Instantiates the module and checks its ABI version.
    pub fn new(engine: &Engine, pre: &InstancePre<StoreState>, limits: Limits) -> Result<Guest, GuestError> {
        let state = StoreState {
            limits: StoreLimitsBuilder::new().memory_size(limits.max_memory).instances(1).build(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(limits.load_ticks);
        let instance = pre.instantiate(&mut store).map_err(|e| GuestError::Instantiate(format!("{e:#}")))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| GuestError::Abi("the module exports no memory".into()))?;
        let version: TypedFunc<(), u32> = export(&instance, &mut store, "tg_version")?;
        let mut guest = Guest {
            memory,
            alloc: export(&instance, &mut store, "tg_alloc")?,
            free: export(&instance, &mut store, "tg_free")?,
            set_edge_keys: export(&instance, &mut store, "tg_set_edge_keys")?,
            load_snapshot: export(&instance, &mut store, "tg_load_snapshot")?,
            last_error: export(&instance, &mut store, "tg_last_error")?,
            set_reasons: export(&instance, &mut store, "tg_set_reasons")?,
            score: export(&instance, &mut store, "tg_score")?,
            score_batch: export(&instance, &mut store, "tg_score_batch")?,
            last_features: export(&instance, &mut store, "tg_last_features").ok(),
            store,
            limits,
            buf: (0, 0),
        };
        let v = invoke(&mut guest.store, limits, &version, (), Phase::Load)?;
        if v >> 16 != ABI_MAJOR {
            return Err(GuestError::Abi(format!(
                "tg_version is {}.{}; this host speaks {ABI_MAJOR}.x",
                v >> 16,
                v & 0xffff
            )));
        }
        Ok(guest)
    }

    /// Copies `bytes` into a fresh guest buffer of exactly their length.
    fn put(&mut self, bytes: &[u8]) -> Result<u32, GuestError> {
        let len = u32::try_from(bytes.len()).map_err(|_| GuestError::OutOfMemory(u32::MAX))?;
        let ptr = invoke(&mut self.store, self.limits, &self.alloc, len, Phase::Load)?;
        if ptr == 0 && len > 0 {
            return Err(GuestError::OutOfMemory(len));
        }
        self.write(ptr, bytes)?;
        Ok(ptr)
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), GuestError> {
        self.memory
            .write(&mut self.store, ptr as usize, bytes)
            .map_err(|_| GuestError::Abi(format!("tg_alloc gave {ptr}, outside memory")))
    }

    /// Writes a request into the reused buffer, growing it when needed.
    fn put_request(&mut self, bytes: &[u8]) -> Result<(u32, u32), GuestError> {
        let len = u32::try_from(bytes.len()).map_err(|_| GuestError::OutOfMemory(u32::MAX))?;
        if len > self.buf.1 {
            if self.buf.1 > 0 {
                let old = self.buf;
                self.buf = (0, 0);
                invoke(&mut self.store, self.limits, &self.free, old, Phase::Score)?;
            }
            let cap = len.checked_next_power_of_two().unwrap_or(len).max(1024);
            let ptr = invoke(&mut self.store, self.limits, &self.alloc, cap, Phase::Score)?;
            if ptr == 0 {
                return Err(GuestError::OutOfMemory(cap));
            }
            self.buf = (ptr, cap);
        }
        self.write(self.buf.0, bytes)?;
        Ok((self.buf.0, len))
    }

    /// Appends the buffer a packed `ptr << 32 | len` result names to `out`.
    fn read_packed(&self, packed: u64, out: &mut Vec<u8>) -> Result<(), GuestError> {
        let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        let data = self.memory.data(&self.store);
        let bytes = ptr
            .checked_add(len)
            .and_then(|end| data.get(ptr..end))
            .ok_or_else(|| GuestError::Abi(format!("a result at {ptr}+{len} lies outside memory")))?;
        out.extend_from_slice(bytes);
        Ok(())
    }

    /// Hands the edge key text over (`tg_set_edge_keys`); the status and message when refused.
    pub fn set_edge_keys(&mut self, text: &str) -> Result<Result<(), String>, GuestError> {
        let ptr = self.put(text.as_bytes())?;
        let len = text.len() as u32;
        let status = invoke(&mut self.store, self.limits, &self.set_edge_keys, (ptr, len), Phase::Load)?;
        invoke(&mut self.store, self.limits, &self.free, (ptr, len), Phase::Load)?;
        self.status(status)
    }

    /// Sets how many reasons responses carry.
    pub fn set_reasons(&mut self, n: u32) -> Result<(), GuestError> {
        invoke(&mut self.store, self.limits, &self.set_reasons, n, Phase::Load)
    }

    /// Hands a snapshot over (`tg_load_snapshot`); the module owns the buffer afterwards.
    pub fn load_snapshot(&mut self, bytes: &[u8]) -> Result<Result<(), String>, GuestError> {
        let ptr = self.put(bytes)?;
        let status = invoke(
            &mut self.store,
            self.limits,
            &self.load_snapshot,
            (ptr, bytes.len() as u32),
            Phase::Load,
        )?;
        self.status(status)
    }

    fn status(&mut self, status: u32) -> Result<Result<(), String>, GuestError> {
        if status == 0 {
            return Ok(Ok(()));
        }
        let packed = invoke(&mut self.store, self.limits, &self.last_error, (), Phase::Load)?;
        let mut message = Vec::new();
        self.read_packed(packed, &mut message)?;
        Ok(Err(format!("status {status}: {}", String::from_utf8_lossy(&message))))
    }

    /// Scores one request (`tg_score`), appending the response to `out`.
    pub fn score(&mut self, request: &[u8], out: &mut Vec<u8>) -> Result<(), GuestError> {
        let (ptr, len) = self.put_request(request)?;
        let packed = invoke(&mut self.store, self.limits, &self.score, (ptr, len), Phase::Score)?;
        self.read_packed(packed, out)
    }

    /// Hands the `tg_last_features` bytes of the last scoring call to `f` (nothing when the module
    /// predates ABI 1.2); false when the module does not have the export.
    pub fn with_last_features(&mut self, f: impl FnOnce(&[u8])) -> Result<bool, GuestError> {
        let Some(export) = &self.last_features else { return Ok(false) };
        let packed = invoke(&mut self.store, self.limits, export, (), Phase::Score)?;
        let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        let data = self.memory.data(&self.store);
        let bytes = ptr
            .checked_add(len)
            .and_then(|end| data.get(ptr..end))
            .ok_or_else(|| GuestError::Abi(format!("tg_last_features at {ptr}+{len} lies outside memory")))?;
        f(bytes);
        Ok(true)
    }

    /// Scores a batch (`tg_score_batch`), appending the response to `out`.
    pub fn score_batch(&mut self, batch: &[u8], out: &mut Vec<u8>) -> Result<(), GuestError> {
        let (ptr, len) = self.put_request(batch)?;
        let packed = invoke(&mut self.store, self.limits, &self.score_batch, (ptr, len), Phase::Score)?;
        self.read_packed(packed, out)
    }
}
