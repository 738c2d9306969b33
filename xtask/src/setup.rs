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

/// The wasm-bindgen version: `=0.2.130` in Cargo.toml, and the CLI must be the very same.
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";

/// Makes sure `wasm-bindgen` (the CLI, at the version the crates use) is on PATH or in
/// `~/.cargo/bin`, installing it from crates.io when it is not; returns its path.
pub fn wasm_bindgen() -> Result<std::path::PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?
        .join("bin")
        .join("wasm-bindgen");
    let version = |path: &std::path::Path| {
        Command::new(path)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    if version(&cargo_bin).is_some_and(|v| v.split_whitespace().nth(1) == Some(WASM_BINDGEN_VERSION)) {
        return Ok(cargo_bin);
    }
    // No `--locked`: the CLI's own lock file pins a yanked webpki-roots (see TOOLCHAIN.md).
    eprintln!("xtask: installing wasm-bindgen-cli {WASM_BINDGEN_VERSION} (a few minutes, once)");
    let status = Command::new(super::cargo())
        .args(["install", "wasm-bindgen-cli", "--version", WASM_BINDGEN_VERSION])
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("`cargo install wasm-bindgen-cli --version {WASM_BINDGEN_VERSION}` failed ({status})");
    }
    Ok(cargo_bin)
}

/// Makes sure the npm packages of package.json (wrangler/workerd, playwright-core, binaryen) are
/// installed in node_modules, with `npm ci` from the committed lock file.
pub fn node_packages() -> Result<()> {
    let root = super::root();
    let installed = root.join("node_modules").join(".package-lock.json");
    let lock = root.join("package-lock.json");
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if let (Some(installed), Some(lock)) = (modified(&installed), modified(&lock))
        && installed >= lock
    {
        return Ok(());
    }
    if Command::new("npm").arg("--version").output().is_err() {
        apt_install(&["nodejs", "npm"])?;
    }
    eprintln!("xtask: installing the npm packages of package.json");
    let status = Command::new("npm")
        .args(["ci", "--no-fund", "--no-audit"])
        .current_dir(&root)
        .status()
        .context("running npm ci")?;
    if !status.success() {
        bail!("`npm ci` failed ({status})");
    }
    Ok(())
}

/// Makes sure a Chromium for the headless page tests is installed (Debian's `chromium`);
/// returns its path.
pub fn chromium() -> Result<std::path::PathBuf> {
    let path = std::path::PathBuf::from("/usr/bin/chromium");
    if !path.exists() {
        apt_install(&["chromium"])?;
    }
    Ok(path)
}

/// Installs Debian packages with apt-get (as root, or through sudo when it is there).
fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!("xtask: installing {} from Debian packages", packages.join(", "));
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    let run = |args: &[&str]| -> Result<()> {
        let (program, args) =
            if is_root { ("apt-get", args.to_vec()) } else { ("sudo", [&["apt-get"], args].concat()) };
        let status = Command::new(program)
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("could not start {program}"))?;
        if !status.success() {
            bail!(
                "`{program} {}` failed ({status}); install {} by hand and retry",
                args.join(" "),
                packages.join(", ")
            );
        }
        Ok(())
    };
    run(&["update", "-qq"])?;
    run(&[&["install", "-y", "-qq"], packages].concat())
}
