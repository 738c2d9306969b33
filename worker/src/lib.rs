//! The tollgate edge worker (workers-rs): scores transactions at the CDN edge against a signed
//! snapshot kept in Workers KV, with the very same code path (`scorer::score`) as every other
//! runtime, so responses are byte-identical to the native scorer's.
//!
//! # Brief overview
//! * `POST /v1/score`: one request (JSON, or MessagePack) in, the scorer's response out; a bad
//!   request gets the scorer's error response with status 400, no snapshot yet 503.
//! * `POST /v1/score/batch`: an array of requests, an array of responses (same order).
//! * `GET /v1/status`: which snapshot serves, when KV was last checked, the last refusal.
//!
//! The isolate keeps the verified snapshot in memory and checks the KV manifest at most every
//! `REFRESH_SECONDS` (a var) and on every cron trigger; a snapshot that fails verification is
//! refused and the current one keeps serving. The KV layout (manifest + byte-range shards) is
//! `tollgate-kv`'s, documented in `worker/README.md`.
//!
//! The crate is empty on every target but wasm32: build it with
//! `cargo build -p tollgate-worker --target wasm32-unknown-unknown --profile wasm`, then
//! wasm-bindgen (see the README or `tollgate_tests::worker::build`).

#[cfg(target_arch = "wasm32")]
mod edge;
