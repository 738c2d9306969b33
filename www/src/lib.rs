//! The browser demo page's bindings (filled by the page issue): wasm-bindgen over the scorer.
