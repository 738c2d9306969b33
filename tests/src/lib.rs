//! Cross-runtime parity (native, wasmtime, workerd, Chromium) and end-to-end tests.
//! The tests themselves live in `tests/tests/`; fixtures in `tests/fixtures/`, each with a line on
//! where it came from. [`parity`] makes the one corpus that every runtime is checked against.

pub mod guests;
pub mod kafka;
pub mod page;
pub mod parity;
pub mod worker;

use anyhow::{Context, Result, ensure};
use std::path::PathBuf;
use std::process::Command;

/// The module the wasmtime host runs (`scorer-fast.wasm`, the `wasm-fast` profile with the
/// `simd128` feature):
/// `TOLLGATE_SCORER_WASM` when set (`cargo xtask test` builds it first), otherwise built here.
pub fn scorer_wasm() -> Result<PathBuf> {
    module_from_env_or_build("TOLLGATE_SCORER_WASM", "wasm-fast", &["--features", "simd128"])
}

/// The size-optimised `scorer.wasm` (the `wasm` profile): `TOLLGATE_SCORER_WASM_SMALL` when set,
/// otherwise built here. Same code, same answers; the parity tests check both.
pub fn scorer_wasm_small() -> Result<PathBuf> {
    module_from_env_or_build("TOLLGATE_SCORER_WASM_SMALL", "wasm", &[])
}

/// The path in `var`, or the module built with `profile` and `features` (cargo's arguments) into a
/// target directory of its own.
fn module_from_env_or_build(var: &str, profile: &str, features: &[&str]) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Ok(PathBuf::from(path));
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // target/<profile>/deps/<test binary>: build in target/scorer-wasm-parity, a directory of its
    // own, so that the outer cargo's lock on target/ is never in the way.
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(3).context("the test binary is not in a cargo target directory")?;
    let dir = target.join("scorer-wasm-parity");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &dir)
        .args([
            "build",
            "--quiet",
            "-p",
            "scorer-wasm",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            profile,
        ])
        .args(features)
        .status()
        .context("running cargo to build scorer.wasm")?;
    ensure!(status.success(), "building scorer.wasm ({profile}) failed");
    Ok(dir.join("wasm32-unknown-unknown").join(profile).join("scorer_wasm.wasm"))
}
