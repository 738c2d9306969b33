//! The edge worker (filled by the worker issue): workers-rs, `POST /v1/score` against a snapshot
//! kept in Workers KV, built to wasm32 and tested under a real workerd.
