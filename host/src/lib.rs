//! The wasmtime host (filled by the host issue).
//!
//! # Brief overview
//! This crate will embed `scorer.wasm` with wasmtime (`host::Scorer`: precompiled modules, pooling
//! allocator, epoch deadlines, memory limits, hot swap of module and snapshot) and serve it over HTTP
//! (`tollgate serve`, axum) with a Parquet decision log, webhook alerts and shadow scoring.

/// The crate's version, reported by `/v1/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
