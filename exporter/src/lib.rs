//! The central side of tollgate: everything that runs before a snapshot reaches the edge.
//!
//! # Brief overview
//! * [`Transactions`]: a transaction history held column by column, entity ids interned to
//!   dense indices ([`EntityIds`]).
//! * [`simulate`]: the built-in transaction simulator (the handbook's generative process), the
//!   project's embedded default data.
//! * [`ingest`]: reads CSV (plain or gzip) and Parquet into [`Transactions`], validating every
//!   row; [`write`](crate::write) writes them back in the handbook's layout.
//! * [`reference`]: the feature and score distributions a snapshot carries for drift monitoring.
//! * [`durable`]: replacing a file atomically and durably, for every tool that writes one.
//! * [`Progress`]: how long work reports how far it got (the CLI draws the bars).
//!
//! Later issues add feature computation (calling `scorer::features`), training sets and snapshots.
//!
//! ```
//! use exporter::simulate::{simulate, SimulationConfig};
//! let tx = simulate(&SimulationConfig { customers: 50, terminals: 100, days: 7, ..Default::default() }, &exporter::NoProgress)?;
//! assert!(tx.len() > 0);
//! # Ok::<(), exporter::simulate::SimulationError>(())
//! ```

pub mod durable;
pub mod features;
pub mod format;
pub mod ingest;
pub mod progress;
pub mod reference;
pub mod simulate;
pub mod snapshot;
pub mod summary;
pub mod transactions;
pub mod write;

pub use format::FileFormat;
pub use progress::{NoProgress, Progress};
pub use transactions::{EntityIds, Transactions};
