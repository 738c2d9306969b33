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

/// One build of the scorer module (crate `scorer-wasm`): what `cargo xtask` builds and optimises,
/// and what the tests build when no module is given.
pub struct ModuleBuild {
    /// The cargo profile.
    pub profile: &'static str,
    /// The `scorer-wasm` features.
    pub features: &'static [&'static str],
    /// What `wasm-opt` must allow beyond the target's features (`scorer/wasm/wasm-opt.features`).
    pub wasm_opt_features: &'static [&'static str],
    /// The optimised module's file name.
    pub name: &'static str,
}

/// `scorer.wasm`: size first, for edges that ship the module itself.
pub const SMALL_MODULE: ModuleBuild =
    ModuleBuild { profile: "wasm", features: &[], wasm_opt_features: &[], name: "scorer.wasm" };

/// `scorer-fast.wasm`: speed first (the scoring core at opt-level 3, the tree walk in SIMD128),
/// for the wasmtime host.
pub const FAST_MODULE: ModuleBuild = ModuleBuild {
    profile: "wasm-fast",
    features: &["simd128"],
    wasm_opt_features: &["--enable-simd"],
    name: "scorer-fast.wasm",
};

impl ModuleBuild {
    /// The cargo arguments that build it (the output is `<target>/wasm32-unknown-unknown/<profile>/
    /// scorer_wasm.wasm`).
    pub fn cargo_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "build",
            "--package",
            "scorer-wasm",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            self.profile,
        ]
        .map(String::from)
        .into();
        if !self.features.is_empty() {
            args.extend(["--features".to_string(), self.features.join(",")]);
        }
        args
    }
}

/// The module the wasmtime host runs ([`FAST_MODULE`]): `TOLLGATE_SCORER_WASM` when set
/// (`cargo xtask test` builds it first), otherwise built here.
pub fn scorer_wasm() -> Result<PathBuf> {
    module_from_env_or_build("TOLLGATE_SCORER_WASM", &FAST_MODULE)
}

/// The size-optimised `scorer.wasm` ([`SMALL_MODULE`]): `TOLLGATE_SCORER_WASM_SMALL` when set,
/// otherwise built here. Same code, same answers; the parity tests check both.
pub fn scorer_wasm_small() -> Result<PathBuf> {
    module_from_env_or_build("TOLLGATE_SCORER_WASM_SMALL", &SMALL_MODULE)
}

/// The path in `var`, or the module built as `build` says into a target directory of its own.
fn module_from_env_or_build(var: &str, build: &ModuleBuild) -> Result<PathBuf> {
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
        .args(build.cargo_args())
        .arg("--quiet")
        .status()
        .context("running cargo to build scorer.wasm")?;
    ensure!(status.success(), "building {} ({}) failed", build.name, build.profile);
    Ok(dir.join("wasm32-unknown-unknown").join(build.profile).join("scorer_wasm.wasm"))
}
