//! The wasmtime host of tollgate: `scorer.wasm` embedded in a Rust process, and the HTTP
//! scoring service behind `tollgate serve`.
//!
//! # Brief overview
//! [`Scorer`] runs the scorer module in wasmtime: the module is compiled once (and cached on
//! disk, [`ScorerConfig::cache_dir`]), instantiated from an `InstancePre` into a pooling
//! allocator, and kept in a pool of warm instances that any thread may borrow. Every call runs
//! under an epoch deadline ([`ScorerConfig::budget`]) and a memory limit; an instance that traps
//! or runs too long is discarded and the caller gets the deployment's [`Fallback`] decision,
//! marked as such ([`Scored::fallback`]). [`Scorer::load_snapshot`] and [`Scorer::load_module`]
//! swap the serving version atomically (arc-swap): requests in flight finish on the version they
//! started with, and the replaced one is kept for [`Scorer::rollback`].
//!
//! [`monitor`] watches the serving snapshot's features and score for drift against the reference
//! the snapshot carries (PSI over the last N scored requests, alarms), and counts missing or
//! invalid request fields.
//!
//! [`service`] puts a [`Scorer`] behind axum: scoring in JSON or MessagePack, batches, snapshot
//! push with signature checks, rollback, status, health and Prometheus metrics, and (with a
//! [`decision_log`]) every decision appended to rotated Parquet files.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scorer = host::Scorer::new(
//!     host::ScorerConfig { fallback: host::Fallback::Closed, ..Default::default() },
//!     &std::fs::read("scorer_wasm.wasm")?,
//!     &std::fs::read_to_string("edge.key")?,
//! )?;
//! scorer.load_snapshot(std::fs::read("snapshot.tgs")?)?;
//! let scored = scorer.score(br#"{"customer_id":"42","terminal_id":7,"amount":20.0,"time":1533956400}"#);
//! assert!(scored.fallback.is_none());
//! # Ok(()) }
//! ```

mod cache;
pub mod decision_log;
mod fallback;
mod guest;
pub mod imports;
pub mod monitor;
mod scorer;
pub mod service;
mod shadow;
pub mod wire;

pub use cache::{ModuleSource, cache_path, module_hash};
pub use fallback::Fallback;
pub use guest::{ABI_MAJOR, GuestError};
pub use scorer::{Counts, HostError, ModuleInfo, Scored, Scorer, ScorerConfig, SnapshotInfo, Status};
pub use shadow::{DECISIONS, ShadowReport};

/// The crate's version, reported by `/v1/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
