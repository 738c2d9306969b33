//! `host::Scorer`: a pool of `scorer.wasm` instances behind an atomically swapped version
//! (module + snapshot). Callers on any thread score through it; a swap never fails a request, a
//! failing instance is discarded and the caller gets the deployment's fallback decision.

use crate::cache::{ModuleSource, load_module, module_hash};
use crate::fallback::{self, Fallback};
use crate::guest::{Guest, GuestError, Limits, StoreState};
use crate::monitor::{Monitor, MonitorConfig};
use crate::shadow::{ShadowReport, ShadowTally};
use arc_swap::{ArcSwap, ArcSwapOption};
use scorer::snapshot::{EdgeKey, Reference, Snapshot, edge_keys_from_text};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, PoolingAllocationConfig};

/// How a [`Scorer`] runs its guests. `Default` gives the values `tollgate serve` uses.
#[derive(Clone, Debug)]
pub struct ScorerConfig {
    /// Wall time one scoring call may take before the guest is interrupted (default 50 ms).
    pub budget: Duration,
    /// Wall time one snapshot load may take in a guest (default 10 s).
    pub load_budget: Duration,
    /// How often the epoch ticker advances: the deadline's resolution (default 1 ms).
    pub epoch_tick: Duration,
    /// Bytes of linear memory each guest may grow to (default 1 GiB).
    pub max_memory: usize,
    /// Idle instances kept per version, ready for the next caller (default 8).
    pub pool_size: usize,
    /// Instances made and loaded before a new version takes traffic (default 2).
    pub warm: usize,
    /// Instances that may exist at once, live and previous versions together (default 64).
    pub max_instances: u32,
    /// What callers get when scoring cannot finish (default fail open: allow).
    pub fallback: Fallback,
    /// Where compiled modules are cached (none: compile on every start).
    pub cache_dir: Option<PathBuf>,
    /// How many reasons responses carry, 0 to 8 (none: the module's default, 3).
    pub reasons: Option<u32>,
    /// Drift monitoring of the serving snapshot's features and score against its reference
    /// (default on; none: off). See [`crate::monitor`].
    pub monitor: Option<MonitorConfig>,
}

impl Default for ScorerConfig {
    fn default() -> ScorerConfig {
        ScorerConfig {
            budget: Duration::from_millis(50),
            load_budget: Duration::from_secs(10),
            epoch_tick: Duration::from_millis(1),
            max_memory: 1 << 30,
            pool_size: 8,
            warm: 2,
            max_instances: 64,
            fallback: Fallback::Open,
            cache_dir: None,
            reasons: None,
            monitor: Some(MonitorConfig::default()),
        }
    }
}

/// Why the host refused a module, snapshot, key file or command. The current version keeps
/// serving after every one of these.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The engine could not be made from the configuration.
    #[error("engine configuration: {0}")]
    Engine(String),
    /// The module does not compile or does not link (it may import only the host's crypto, `docs/abi.md`).
    #[error("module {hash}: {message}")]
    Module {
        /// The module's blake3 hash (hex prefix).
        hash: String,
        /// What went wrong.
        message: String,
    },
    /// The edge key text was refused.
    #[error("edge keys: {0}")]
    EdgeKeys(String),
    /// The snapshot was refused (bad signature, corrupt, unknown signer, ...).
    #[error("snapshot refused: {0}")]
    SnapshotRefused(String),
    /// A guest could not be made or loaded for the new version.
    #[error("the new version could not start an instance: {0}")]
    Guest(#[from] GuestError),
    /// `rollback` with nothing to roll back to.
    #[error("there is no previous version to roll back to")]
    NoPrevious,
    /// `promote_shadow` with no shadow snapshot loaded.
    #[error("there is no shadow snapshot to promote")]
    NoShadow,
    /// A snapshot delta made against another snapshot than the serving one (or with none serving).
    #[error("snapshot delta was made against base blake3:{expected}, but the serving snapshot is {found}")]
    DeltaBase {
        /// BLAKE3 (hex) of the base the delta was made against.
        expected: String,
        /// `blake3:` and the BLAKE3 (hex) of the serving snapshot, or `none`.
        found: String,
    },
    /// A snapshot delta that is corrupt or does not rebuild a snapshot.
    #[error("snapshot delta refused: {0}")]
    DeltaRefused(String),
}

/// What the host knows about a loaded snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotInfo {
    /// The snapshot's id.
    pub snapshot_id: String,
    /// The model's id (none for a features-only snapshot).
    pub model_id: Option<String>,
    /// Unix seconds: the aggregates hold every transaction before this time.
    pub as_of: i64,
    /// Unix seconds: when the exporter built it.
    pub created_at: i64,
    /// Bytes.
    pub size: usize,
    /// The blake3 hash of its bytes (hex).
    pub digest: String,
    /// When this host loaded it.
    pub loaded_at: SystemTime,
}

/// What the host knows about a loaded module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The blake3 hash of the wasm bytes (hex).
    pub hash: String,
    /// Compiled now or read from the cache.
    pub source: ModuleSource,
    /// Time to compile or deserialize it.
    pub load_time: Duration,
}

/// One loaded module, ready to instantiate.
struct LoadedModule {
    pre: InstancePre<StoreState>,
    info: ModuleInfo,
}

/// One verified snapshot.
struct LoadedSnapshot {
    bytes: Arc<[u8]>,
    info: Arc<SnapshotInfo>,
    /// The schema's feature names and the drift reference, for the monitor.
    features: Vec<String>,
    reference: Option<Reference>,
}

/// A module and a snapshot: what serves, or served before.
#[derive(Clone)]
struct Version {
    module: Arc<LoadedModule>,
    snapshot: Option<Arc<LoadedSnapshot>>,
}

/// The serving version and its idle instances.
struct Live {
    version: Version,
    pool: Mutex<Vec<Guest>>,
    number: u64,
}

/// A candidate version scored beside the live one, and how their answers compare.
struct Shadow {
    live: Live,
    tally: ShadowTally,
    since: SystemTime,
}

/// The result of one scoring call.
#[derive(Clone, Debug)]
pub struct Scored {
    /// The response (or array of responses), in the request's format: the guest's bytes, or a
    /// fallback response the host wrote.
    pub body: Vec<u8>,
    /// The snapshot of the version that answered (none before the first one is loaded).
    pub snapshot: Option<Arc<SnapshotInfo>>,
    /// Set when the guest could not answer and the body is the configured fallback decision.
    pub fallback: Option<GuestError>,
    /// The shadow snapshot's answer to the same call, when one is loaded (never sent to the
    /// caller; for the decision log and [`Scorer::shadow_report`]).
    pub shadow: Option<Box<Scored>>,
}

/// Counts since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls answered by a guest.
    pub scored: u64,
    /// Calls answered with the fallback decision.
    pub fallbacks: u64,
    /// Instances discarded after a trap or a timeout.
    pub discarded: u64,
    /// Successful swaps of snapshot or module, rollbacks included.
    pub swaps: u64,
    /// Snapshots or modules refused.
    pub refused: u64,
}

/// A snapshot of the scorer's state, for `/v1/status`.
#[derive(Clone, Debug)]
pub struct Status {
    /// The serving snapshot.
    pub snapshot: Option<Arc<SnapshotInfo>>,
    /// The serving module.
    pub module: ModuleInfo,
    /// The previous snapshot, which `rollback` would restore.
    pub previous_snapshot: Option<Arc<SnapshotInfo>>,
    /// The shadow snapshot scored beside the serving one, if any.
    pub shadow_snapshot: Option<Arc<SnapshotInfo>>,
    /// The version number: 1 at start, one more at each swap.
    pub version: u64,
    /// Idle instances of the serving version.
    pub idle_instances: usize,
    /// Counts since start.
    pub counts: Counts,
}

#[derive(Default)]
struct Counters {
    scored: AtomicU64,
    fallbacks: AtomicU64,
    discarded: AtomicU64,
    swaps: AtomicU64,
    refused: AtomicU64,
}

/// Advances the engine's epoch every tick until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tollgate-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .ok();
        Ticker { stop, thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Inner {
    engine: Engine,
    linker: Linker<StoreState>,
    config: ScorerConfig,
    limits: Limits,
    edge_key_text: String,
    edge_keys: Vec<EdgeKey>,
    live: ArcSwap<Live>,
    previous: Mutex<Option<Version>>,
    shadow: ArcSwapOption<Shadow>,
    /// Serialises swaps and rollbacks (scoring never takes it).
    admin: Mutex<()>,
    counters: Counters,
    monitor: Option<Monitor>,
    _ticker: Ticker,
}

/// The embeddable scorer: `scorer.wasm` in wasmtime, shared by every thread (`Clone` is cheap).
///
/// ```no_run
/// # fn main() -> Result<(), host::HostError> {
/// let wasm = std::fs::read("scorer_wasm.wasm").unwrap();
/// let keys = std::fs::read_to_string("edge.key").unwrap();
/// let scorer = host::Scorer::new(host::ScorerConfig::default(), &wasm, &keys)?;
/// scorer.load_snapshot(std::fs::read("snapshot.tgs").unwrap())?;
/// let scored = scorer.score(br#"{"customer_id":"42","terminal_id":7,"amount":20.0,"time":1533956400}"#);
/// println!("{}", String::from_utf8_lossy(&scored.body));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Scorer {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Scorer {
    /// Compiles (or reads from the cache) `wasm`, trusts the edge keys in `edge_keys` (one or
    /// more edge key files, concatenated) and starts with no snapshot: until one is loaded, every
    /// request gets the module's `no_snapshot` error response.
    pub fn new(config: ScorerConfig, wasm: &[u8], edge_keys: &str) -> Result<Scorer, HostError> {
        let edge_keys_parsed =
            edge_keys_from_text(edge_keys).map_err(|e| HostError::EdgeKeys(e.to_string()))?;
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_core_instances(config.max_instances)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances)
            .max_memory_size(config.max_memory);
        let mut wc = Config::new();
        wc.epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
            .memory_init_cow(true);
        let engine = Engine::new(&wc).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let ticks = |d: Duration| (d.as_nanos() / config.epoch_tick.as_nanos().max(1)) as u64 + 1;
        let limits = Limits {
            score_ticks: ticks(config.budget),
            load_ticks: ticks(config.load_budget),
            budget: config.budget,
            load_budget: config.load_budget,
            max_memory: config.max_memory,
        };
        let mut linker = Linker::new(&engine);
        crate::imports::add_imports(&mut linker).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let ticker = Ticker::start(engine.clone(), config.epoch_tick);
        let module = Arc::new(Self::compile(&engine, &linker, &config, wasm)?);
        let version = Version { module, snapshot: None };
        // A throwaway instance proves the module speaks the ABI and takes the keys.
        let mut probe = Guest::new(&engine, &version.module.pre, limits)?;
        probe.set_edge_keys(edge_keys)?.map_err(HostError::EdgeKeys)?;
        let live = Live { version, pool: Mutex::new(Vec::new()), number: 1 };
        let monitor = config.monitor.clone().map(Monitor::new);
        let inner = Inner {
            engine,
            linker,
            config,
            limits,
            edge_key_text: edge_keys.to_string(),
            edge_keys: edge_keys_parsed,
            live: ArcSwap::from_pointee(live),
            previous: Mutex::new(None),
            shadow: ArcSwapOption::empty(),
            admin: Mutex::new(()),
            counters: Counters::default(),
            monitor,
            _ticker: ticker,
        };
        Ok(Scorer { inner: Arc::new(inner) })
    }

    fn compile(
        engine: &Engine,
        linker: &Linker<StoreState>,
        config: &ScorerConfig,
        wasm: &[u8],
    ) -> Result<LoadedModule, HostError> {
        let hash = module_hash(wasm);
        let err = |message: String| HostError::Module { hash: hash[..16].to_string(), message };
        let t = Instant::now();
        let (module, source) =
            load_module(engine, wasm, config.cache_dir.as_deref()).map_err(|e| err(format!("{e:#}")))?;
        let load_time = t.elapsed();
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| err(format!("does not link (scorer.wasm imports only tollgate.tg_ed25519_verify and tollgate.tg_blake3): {e:#}")))?;
        Ok(LoadedModule { pre, info: ModuleInfo { hash, source, load_time } })
    }

    /// A new instance of `version`, keys set and snapshot loaded.
    fn guest(&self, version: &Version) -> Result<Guest, GuestError> {
        let inner = &*self.inner;
        let mut guest = Guest::new(&inner.engine, &version.module.pre, inner.limits)?;
        guest.set_edge_keys(&inner.edge_key_text)?.map_err(GuestError::Abi)?;
        if let Some(n) = inner.config.reasons {
            guest.set_reasons(n)?;
        }
        if let Some(s) = &version.snapshot {
            guest
                .load_snapshot(&s.bytes)?
                .map_err(|m| GuestError::Abi(format!("a verified snapshot was refused: {m}")))?;
        }
        Ok(guest)
    }

    /// Makes the warm instances of `version` and swaps it in; the replaced version becomes the
    /// previous one. On error nothing changes.
    fn install(&self, version: Version) -> Result<(), HostError> {
        let pool = self.warm_pool(&version)?;
        let number = self.inner.live.load().number + 1;
        if let (Some(monitor), Some(s)) = (&self.inner.monitor, &version.snapshot) {
            monitor.watch(&s.info.snapshot_id, s.features.clone(), s.reference.as_ref());
        }
        let old = self.inner.live.swap(Arc::new(Live { version, pool: Mutex::new(pool), number }));
        *lock(&self.inner.previous) = Some(old.version.clone());
        self.inner.counters.swaps.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The warm instances a version starts with.
    fn warm_pool(&self, version: &Version) -> Result<Vec<Guest>, HostError> {
        let warm = self.inner.config.warm.clamp(1, self.inner.config.pool_size.max(1));
        let mut pool = Vec::with_capacity(warm);
        for _ in 0..warm {
            pool.push(self.guest(version).inspect_err(|_| self.count_refused())?);
        }
        Ok(pool)
    }

    fn count_refused(&self) {
        self.inner.counters.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Verifies `bytes` against the trusted edge keys and, when they pass, makes it the serving
    /// snapshot. Requests in flight finish on the version they started with; none fails. A
    /// refused snapshot changes nothing.
    pub fn load_snapshot(&self, bytes: Vec<u8>) -> Result<Arc<SnapshotInfo>, HostError> {
        let _admin = lock(&self.inner.admin);
        let snapshot = self.verify(bytes)?;
        let info = snapshot.info.clone();
        let module = self.inner.live.load().version.module.clone();
        self.install(Version { module, snapshot: Some(snapshot) })?;
        Ok(info)
    }

    /// Applies a snapshot delta (`scorer::snapshot::apply_delta`) to the serving snapshot's bytes,
    /// then verifies and swaps in the result exactly as [`Scorer::load_snapshot`] does. A delta
    /// against another base ([`HostError::DeltaBase`]) or a corrupt one ([`HostError::DeltaRefused`])
    /// changes nothing.
    pub fn load_snapshot_delta(&self, delta: Vec<u8>) -> Result<Arc<SnapshotInfo>, HostError> {
        use scorer::snapshot::{DeltaError, apply_delta};
        let _admin = lock(&self.inner.admin);
        let live = self.inner.live.load();
        let hex = |d: &[u8; 32]| blake3::Hash::from_bytes(*d).to_hex().to_string();
        let Some(base) = live.version.snapshot.as_ref() else {
            self.count_refused();
            let expected = scorer::snapshot::DeltaInfo::read(&delta)
                .map(|i| hex(&i.base_digest))
                .map_err(|e| HostError::DeltaRefused(e.to_string()))?;
            return Err(HostError::DeltaBase { expected, found: "none".into() });
        };
        let bytes = match apply_delta(&base.bytes, &delta) {
            Ok(bytes) => bytes,
            Err(DeltaError::WrongBase { expected, found }) => {
                self.count_refused();
                return Err(HostError::DeltaBase {
                    expected: hex(&expected),
                    found: format!("blake3:{}", hex(&found)),
                });
            }
            Err(e) => {
                self.count_refused();
                return Err(HostError::DeltaRefused(e.to_string()));
            }
        };
        drop(live);
        let snapshot = self.verify(bytes)?;
        let info = snapshot.info.clone();
        let module = self.inner.live.load().version.module.clone();
        self.install(Version { module, snapshot: Some(snapshot) })?;
        Ok(info)
    }

    /// Checks `bytes` against the trusted edge keys.
    fn verify(&self, bytes: Vec<u8>) -> Result<Arc<LoadedSnapshot>, HostError> {
        let (info, features, reference) = match Snapshot::load(&bytes, &self.inner.edge_keys) {
            Ok(s) => {
                let meta = s.meta();
                let features = meta.schema.features().iter().map(|f| f.name.clone()).collect();
                let info = Arc::new(SnapshotInfo {
                    snapshot_id: meta.snapshot_id.clone(),
                    model_id: meta.model_id.clone(),
                    as_of: meta.as_of.0,
                    created_at: meta.created_at.0,
                    size: bytes.len(),
                    digest: blake3::hash(&bytes).to_hex().to_string(),
                    loaded_at: SystemTime::now(),
                });
                (info, features, meta.reference.clone())
            }
            Err(e) => {
                self.count_refused();
                return Err(HostError::SnapshotRefused(e.to_string()));
            }
        };
        Ok(Arc::new(LoadedSnapshot { bytes: bytes.into(), info, features, reference }))
    }

    /// Verifies `bytes` and loads it as the shadow: from now on every call is also scored
    /// against it (with the serving module), the caller still gets only the live answer, and
    /// [`Scorer::shadow_report`] tells how the two differ. Replaces any earlier shadow; a
    /// refused snapshot changes nothing.
    pub fn load_shadow(&self, bytes: Vec<u8>) -> Result<Arc<SnapshotInfo>, HostError> {
        let _admin = lock(&self.inner.admin);
        let snapshot = self.verify(bytes)?;
        let info = snapshot.info.clone();
        let version =
            Version { module: self.inner.live.load().version.module.clone(), snapshot: Some(snapshot) };
        let pool = self.warm_pool(&version)?;
        let live = Live { version, pool: Mutex::new(pool), number: 0 };
        self.inner.shadow.store(Some(Arc::new(Shadow {
            live,
            tally: ShadowTally::default(),
            since: SystemTime::now(),
        })));
        Ok(info)
    }

    /// How the shadow's answers differ from the live ones since it was loaded (none without one).
    pub fn shadow_report(&self) -> Option<ShadowReport> {
        let shadow = self.inner.shadow.load_full()?;
        let info = shadow.live.version.snapshot.as_ref()?.info.clone();
        Some(shadow.tally.report(info, shadow.since))
    }

    /// Makes the shadow snapshot the serving one (the replaced one becomes the previous, for
    /// rollback) and stops shadow scoring. Returns the final comparison.
    pub fn promote_shadow(&self) -> Result<ShadowReport, HostError> {
        let _admin = lock(&self.inner.admin);
        let report = self.shadow_report().ok_or(HostError::NoShadow)?;
        let shadow = self.inner.shadow.swap(None).ok_or(HostError::NoShadow)?;
        let module = self.inner.live.load().version.module.clone();
        if let Err(e) = self.install(Version { module, snapshot: shadow.live.version.snapshot.clone() }) {
            self.inner.shadow.store(Some(shadow));
            return Err(e);
        }
        Ok(report)
    }

    /// Stops shadow scoring and forgets the shadow. Returns its final comparison, if there was one.
    pub fn drop_shadow(&self) -> Option<ShadowReport> {
        let _admin = lock(&self.inner.admin);
        let report = self.shadow_report();
        self.inner.shadow.store(None);
        report
    }

    /// Compiles (or reads from the cache) a new `scorer.wasm` and makes it serve the current
    /// snapshot. A module that does not compile, link, speak ABI 1.x or load the snapshot changes
    /// nothing.
    pub fn load_module(&self, wasm: &[u8]) -> Result<ModuleInfo, HostError> {
        let _admin = lock(&self.inner.admin);
        let module = Self::compile(&self.inner.engine, &self.inner.linker, &self.inner.config, wasm)
            .inspect_err(|_| self.count_refused())?;
        let info = module.info.clone();
        let snapshot = self.inner.live.load().version.snapshot.clone();
        self.install(Version { module: Arc::new(module), snapshot })?;
        Ok(info)
    }

    /// Puts the previous version (module and snapshot) back; the replaced one becomes the
    /// previous, so a second rollback undoes the first.
    pub fn rollback(&self) -> Result<Option<Arc<SnapshotInfo>>, HostError> {
        let _admin = lock(&self.inner.admin);
        let previous = lock(&self.inner.previous).clone().ok_or(HostError::NoPrevious)?;
        let info = previous.snapshot.as_ref().map(|s| s.info.clone());
        self.install(previous)?;
        Ok(info)
    }

    /// Scores one request (MessagePack or JSON, `docs/abi.md`). Never fails and never hangs: a
    /// guest that traps or runs past the budget is discarded and the body is the fallback.
    pub fn score(&self, request: &[u8]) -> Scored {
        self.run(request, false)
    }

    /// Scores an array of requests; the body is an array of responses in the same order.
    pub fn score_batch(&self, batch: &[u8]) -> Scored {
        self.run(batch, true)
    }

    fn run(&self, input: &[u8], batch: bool) -> Scored {
        let live = self.inner.live.load_full();
        let mut scored = self.run_on(&live, input, batch, self.inner.monitor.as_ref());
        let counter = if scored.fallback.is_none() {
            &self.inner.counters.scored
        } else {
            &self.inner.counters.fallbacks
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(shadow) = self.inner.shadow.load_full() {
            let candidate = self.run_on(&shadow.live, input, batch, None);
            shadow.tally.record(&scored.body, &candidate.body, candidate.fallback.is_some());
            scored.shadow = Some(Box::new(candidate));
        }
        scored
    }

    /// One call on `live`'s instances; a failed instance is discarded and the body is the fallback.
    /// With a monitor, the call's features and field errors are recorded.
    fn run_on(&self, live: &Live, input: &[u8], batch: bool, monitor: Option<&Monitor>) -> Scored {
        let snapshot = live.version.snapshot.as_ref().map(|s| s.info.clone());
        let idle = lock(&live.pool).pop();
        let guest = match idle {
            Some(g) => Ok(g),
            None => self.guest(&live.version),
        };
        let mut body = Vec::with_capacity(512);
        let result = guest.and_then(|mut g| {
            if batch { g.score_batch(input, &mut body) } else { g.score(input, &mut body) }.map(|()| g)
        });
        match result {
            Ok(mut g) => {
                // Monitoring never changes the answer: an instance whose `tg_last_features`
                // fails is only discarded.
                let healthy = match (monitor, &snapshot) {
                    (Some(monitor), Some(s)) => Self::monitor_call(monitor, &s.snapshot_id, &mut g, &body),
                    _ => true,
                };
                let mut pool = lock(&live.pool);
                if healthy && pool.len() < self.inner.config.pool_size {
                    pool.push(g);
                }
                drop(pool);
                if !healthy {
                    self.inner.counters.discarded.fetch_add(1, Ordering::Relaxed);
                }
                Scored { body, snapshot, fallback: None, shadow: None }
            }
            Err(e) => {
                if matches!(e, GuestError::Timeout { .. } | GuestError::Trap(_) | GuestError::OutOfMemory(_))
                {
                    self.inner.counters.discarded.fetch_add(1, Ordering::Relaxed);
                }
                let body =
                    fallback::response(input, batch, self.inner.config.fallback, &e, snapshot.as_deref());
                Scored { body, snapshot, fallback: Some(e), shadow: None }
            }
        }
    }

    /// Hands a call's features and field errors to the monitor; false when the guest failed.
    fn monitor_call(monitor: &Monitor, snapshot_id: &str, g: &mut Guest, body: &[u8]) -> bool {
        let mut unscored = 0;
        match g.with_last_features(|rows| unscored = monitor.record(snapshot_id, rows)) {
            Ok(exported) => {
                // Only a response the model did not score can be an error (without the export,
                // every body is searched).
                if unscored > 0 || !exported {
                    monitor.count_errors(body);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The serving version, the previous one and the counts.
    pub fn status(&self) -> Status {
        let live = self.inner.live.load();
        let c = &self.inner.counters;
        Status {
            snapshot: live.version.snapshot.as_ref().map(|s| s.info.clone()),
            module: live.version.module.info.clone(),
            previous_snapshot: lock(&self.inner.previous)
                .as_ref()
                .and_then(|v| v.snapshot.as_ref().map(|s| s.info.clone())),
            shadow_snapshot: self
                .inner
                .shadow
                .load()
                .as_ref()
                .and_then(|s| s.live.version.snapshot.as_ref().map(|s| s.info.clone())),
            version: live.number,
            idle_instances: lock(&live.pool).len(),
            counts: Counts {
                scored: c.scored.load(Ordering::Relaxed),
                fallbacks: c.fallbacks.load(Ordering::Relaxed),
                discarded: c.discarded.load(Ordering::Relaxed),
                swaps: c.swaps.load(Ordering::Relaxed),
                refused: c.refused.load(Ordering::Relaxed),
            },
        }
    }

    /// The serving snapshot, if any.
    pub fn snapshot(&self) -> Option<Arc<SnapshotInfo>> {
        self.inner.live.load().version.snapshot.as_ref().map(|s| s.info.clone())
    }

    /// The drift monitor (none when [`ScorerConfig::monitor`] is off).
    pub fn monitor(&self) -> Option<&Monitor> {
        self.inner.monitor.as_ref()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ScorerConfig {
        &self.inner.config
    }

    /// The trusted edge keys (the service hashes entity ids with the first one's id-hash key).
    pub fn edge_keys(&self) -> &[EdgeKey] {
        &self.inner.edge_keys
    }
}
