//! The scoring core of tollgate, `no_std` + `alloc`.
//!
//! # Brief overview
//! Everything that must give the same answer at the centre (exporter, model training) and at the
//! edge (wasmtime host, Cloudflare worker, browser page) lives here and is written once:
//!
//! * [`Timestamp`]: seconds since the Unix epoch (UTC), with the calendar arithmetic that the
//!   weekend and night features need.
//! * [`score::Scorer`]: a verified [`snapshot::Snapshot`] (entity rows, [`model::Model`],
//!   [`policy::Policy`]) ready to turn a [`score::Request`] into an [`score::Outcome`]: score,
//!   [`policy::Decision`], reasons. `Scorer::score_bytes` is the MessagePack/JSON wire path that
//!   `scorer.wasm` exports (`docs/abi.md`).
//! * [`snapshot::build_delta`] / [`snapshot::apply_delta`]: the bytes that turn one snapshot
//!   file into the next (only the rows that changed); the result is loaded like any snapshot.
//!
//! Later modules add the feature definitions (`features`), the snapshot reader (`snapshot`), the
//! model evaluators (`model`) and the decision policy (`policy`).
//!
//! ```
//! use scorer::Timestamp;
//! let t: Timestamp = "2018-04-01 00:00:31".parse().unwrap();
//! assert_eq!(t.to_string(), "2018-04-01 00:00:31");
//! assert!(t.is_weekend()); // a Sunday
//! ```
#![no_std]

extern crate alloc;

pub mod features;
pub mod model;
pub mod policy;
pub mod score;
pub mod snapshot;
pub mod text;
pub mod time;

pub use time::{Timestamp, TimestampError};
