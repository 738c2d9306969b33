//! Installs what the tasks need when it is missing, or says clearly why it cannot.

use anyhow::{Context, Result, bail};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Makes sure the wasm32 target is installed (rustup does not add `rust-toolchain.toml` targets to
/// a toolchain that is already installed).
pub fn wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(super::root())
        .output()
        .context(
            "`rustup` was not found: install Rust with rustup (https://rustup.rs) to add the wasm32 target",
        )?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    eprintln!("xtask: installing the {WASM_TARGET} target");
    let status =
        Command::new("rustup").args(["target", "add", WASM_TARGET]).current_dir(super::root()).status()?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed ({status}); run it by hand and retry");
    }
    Ok(())
}
