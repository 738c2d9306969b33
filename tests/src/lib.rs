//! Cross-runtime parity (native, wasmtime, workerd, Chromium) and end-to-end tests.
//! The tests themselves live in `tests/tests/`; fixtures in `tests/fixtures/`, each with a line on
//! where it came from. [`parity`] makes the one corpus that every runtime is checked against.

pub mod parity;
