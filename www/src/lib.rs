//! The browser demo page's bindings (filled by the page issue): wasm-bindgen over the scorer.
#![cfg_attr(target_arch = "wasm32", no_std)]
