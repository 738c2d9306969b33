//! Runs the Python peers (polars, duckdb) of a benchmark in a venv under target/bench, and sets
//! their timings beside ours. Skipped, with a message, where Python or the handbook is missing.

use anyhow::{Context, Result};
use std::path::Path;

/// A number field of a JSON object.
fn number(json: &serde_json::Value, key: &str) -> Option<f64> {
    json.get(key)?.as_f64()
}

/// The feature benchmark's peers, and the ratio table.
pub fn features(out: &Path, ours: &Path) -> Result<()> {
    let root = super::root();
    let script = root.join("benchsuite/peers/features_peers.py");
    let handbook = handbook_data::dir();
    if !handbook_data::file(handbook_data::TRANSACTIONS).exists() {
        eprintln!("xtask: skipping the polars/duckdb peers: {} is absent", handbook.display());
        return Ok(());
    }
    let venv = out.join("venv");
    if !venv.join("bin/python").exists() {
        super::run("python3", &["-m", "venv", &venv.to_string_lossy()])
            .context("the peers need python3 with venv (apt-get install python3-venv)")?;
    }
    let python = venv.join("bin/python").to_string_lossy().into_owned();
    let requirements = root.join("benchsuite/peers/requirements.txt");
    super::run(&python, &["-m", "pip", "install", "--quiet", "-r", &requirements.to_string_lossy()])?;
    let peers = out.join("peers.json");
    super::run(
        &python,
        &[
            &script.to_string_lossy(),
            "--handbook",
            &handbook.to_string_lossy(),
            "--json",
            &peers.to_string_lossy(),
        ],
    )?;
    let read = |path: &Path| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let (ours, theirs) = (read(ours)?, read(&peers)?);
    let ours_best = number(&ours, "exact_best_s").context("features.json lacks exact_best_s")?;
    println!(
        "\nexact handbook features, 1.75M transactions, CSV load excluded (best of runs, one machine, one run):"
    );
    println!("| engine | features (s) | tollgate is faster by |");
    println!("| --- | --- | --- |");
    println!("| tollgate (Rust, both cores) | {ours_best:.3} | |");
    let results = theirs.get("results").and_then(|r| r.as_array()).cloned().unwrap_or_default();
    for result in
        results.iter().filter(|r| r.get("variant").and_then(|v| v.as_str()) == Some("handbook windows"))
    {
        let engine = result.get("engine").and_then(|e| e.as_str()).unwrap_or("?");
        let version = result.get("version").and_then(|e| e.as_str()).unwrap_or("");
        if let Some(best) = number(result, "features_best_s") {
            println!("| {engine} {version} | {best:.3} | {:.1}x |", best / ours_best);
        }
    }
    Ok(())
}
