//! The browser demo page, built: the `www` bindings compiled to wasm (cargo, wasm-bindgen,
//! wasm-opt), the static files of `www/static/`, and demo data made by the exporter from the
//! simulator (a signed snapshot with a trained logistic regression, its edge key, and the day of
//! traffic after it with true labels). [`build_page`] serves the Chromium test
//! (`tests/tests/page.rs`) and `cargo xtask demo` alike.

use anyhow::{Context, Result, bail, ensure};
use exporter::NoProgress;
use exporter::features::{Cadence, compute_features};
use exporter::simulate::{SimulationConfig, simulate};
use exporter::snapshot::aggregate_history;
use models::LogisticConfig;
use models::dataset::Dataset;
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::policy::{Policy, ReasonCode};
use scorer::snapshot::{IdHashKey, SnapshotMeta, SnapshotSigner, build_snapshot_with};
use scorer::time::SECONDS_PER_DAY;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The version of the wasm-bindgen CLI that must match the `wasm-bindgen` crate (pinned with `=`).
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";
/// The demo model's id, echoed in every response.
pub const DEMO_MODEL_ID: &str = "lr-demo-v1";
/// Amounts above this are declined by the demo policy's hard rule before the model runs.
pub const DEMO_AMOUNT_CAP: f64 = 1_000.0;

/// Where the page's build tools are.
#[derive(Clone, Debug)]
pub struct Tools {
    /// The cargo target directory the `www` crate is built in (keep it apart from an outer
    /// cargo's, whose lock a running `cargo test` holds).
    pub cargo_target: PathBuf,
    /// The wasm-bindgen CLI, version [`WASM_BINDGEN_VERSION`].
    pub wasm_bindgen: PathBuf,
    /// binaryen's wasm-opt (npm `binaryen`), when present; without it the page is not shrunk.
    pub wasm_opt: Option<PathBuf>,
}

impl Tools {
    /// The tools where `cargo xtask` puts them: `TOLLGATE_WASM_BINDGEN` or
    /// `~/.cargo/bin/wasm-bindgen` (else `wasm-bindgen` on the PATH), and
    /// `node_modules/.bin/wasm-opt` at the workspace root.
    pub fn find(cargo_target: &Path) -> Tools {
        let wasm_bindgen =
            std::env::var_os("TOLLGATE_WASM_BINDGEN").map(PathBuf::from).unwrap_or_else(|| {
                let home = std::env::var_os("CARGO_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
                home.map(|h| h.join("bin/wasm-bindgen"))
                    .filter(|p| p.exists())
                    .unwrap_or_else(|| PathBuf::from("wasm-bindgen"))
            });
        let wasm_opt = Some(workspace_root().join("node_modules/.bin/wasm-opt")).filter(|p| p.exists());
        Tools { cargo_target: cargo_target.to_path_buf(), wasm_bindgen, wasm_opt }
    }
}

/// One file of the built page and what it costs to send.
#[derive(Clone, Debug)]
pub struct PageFile {
    /// Path relative to the page directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Size gzipped (level 9), as a server with compression would send it.
    pub gzip_bytes: u64,
}

/// A built page.
#[derive(Clone, Debug)]
pub struct PageBuild {
    /// The directory to serve (`index.html` at its root).
    pub dir: PathBuf,
    /// Every file of the page, in path order.
    pub files: Vec<PageFile>,
    /// True when wasm-opt shrank the module.
    pub wasm_opt: bool,
    /// Transactions in the day to replay.
    pub day_transactions: usize,
    /// Frauds among them.
    pub day_frauds: usize,
}

impl PageBuild {
    /// Total bytes and gzipped bytes of the files whose path satisfies `keep`.
    pub fn total(&self, keep: impl Fn(&str) -> bool) -> (u64, u64) {
        self.files.iter().filter(|f| keep(&f.path)).fold((0, 0), |(b, g), f| (b + f.bytes, g + f.gzip_bytes))
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the page into `out_dir` (created; files in it are overwritten): the wasm bindings in
/// `pkg/`, the static files, and the demo data in `demo/`. Open `out_dir/index.html` through any
/// static server (`tollgate www --dir out_dir`).
pub fn build_page(out_dir: &Path, tools: &Tools) -> Result<PageBuild> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let wasm_opt = build_bindings(&out_dir.join("pkg"), tools)?;
    copy_static(out_dir)?;
    let demo = demo_data()?;
    let demo_dir = out_dir.join("demo");
    std::fs::create_dir_all(&demo_dir).with_context(|| format!("creating {}", demo_dir.display()))?;
    write(&demo_dir.join("snapshot.tgs"), &demo.snapshot)?;
    write(&demo_dir.join("edge.key"), demo.signer.edge_key().to_text().as_bytes())?;
    write(&demo_dir.join("day.json"), demo.day.to_json().as_bytes())?;
    let mut files = Vec::new();
    list_files(out_dir, out_dir, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(PageBuild {
        dir: out_dir.to_path_buf(),
        files,
        wasm_opt,
        day_transactions: demo.day.amount.len(),
        day_frauds: demo.day.fraud.iter().filter(|&&f| f).count(),
    })
}

/// Builds the `www` crate for wasm32 and generates its JS bindings (`--target web`) into
/// `pkg_dir` as `www.js` + `www_bg.wasm`; returns whether wasm-opt shrank the module.
pub fn build_bindings(pkg_dir: &Path, tools: &Tools) -> Result<bool> {
    let version = Command::new(&tools.wasm_bindgen).arg("--version").output().with_context(|| {
        format!(
            "running {} (install it: cargo install wasm-bindgen-cli --version {WASM_BINDGEN_VERSION})",
            tools.wasm_bindgen.display()
        )
    })?;
    let version = String::from_utf8_lossy(&version.stdout);
    ensure!(
        version.split_whitespace().nth(1) == Some(WASM_BINDGEN_VERSION),
        "{} is {}, but the wasm-bindgen crate is {WASM_BINDGEN_VERSION}: they must match",
        tools.wasm_bindgen.display(),
        version.trim()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", &tools.cargo_target)
        // wasm-bindgen reads the target_features section that stripping removes; wasm-opt
        // strips the names afterwards instead.
        .env("CARGO_PROFILE_WASM_STRIP", "false")
        .args(["build", "--quiet", "-p", "www", "--target", "wasm32-unknown-unknown", "--profile", "wasm"])
        .status()
        .context("running cargo to build the www crate")?;
    ensure!(status.success(), "building the www crate for wasm32 failed");
    let module = tools.cargo_target.join("wasm32-unknown-unknown/wasm/www.wasm");
    std::fs::create_dir_all(pkg_dir).with_context(|| format!("creating {}", pkg_dir.display()))?;
    let status = Command::new(&tools.wasm_bindgen)
        .args(["--target", "web", "--no-typescript", "--out-name", "www", "--out-dir"])
        .arg(pkg_dir)
        .arg(&module)
        .status()
        .with_context(|| format!("running {}", tools.wasm_bindgen.display()))?;
    ensure!(status.success(), "wasm-bindgen failed on {}", module.display());
    let Some(wasm_opt) = &tools.wasm_opt else {
        eprintln!("page: node_modules/.bin/wasm-opt not found (npm ci); the page's wasm is not shrunk");
        return Ok(false);
    };
    let wasm = pkg_dir.join("www_bg.wasm");
    let status = Command::new(wasm_opt)
        // The features rustc's wasm32 target emits, named one by one: `--all-features` would let
        // binaryen 132 write a compact import section that Chromium refuses.
        .args([
            "-Oz",
            "--enable-bulk-memory",
            "--enable-bulk-memory-opt",
            "--enable-mutable-globals",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-reference-types",
            "--enable-multivalue",
            "--strip-debug",
            "--strip-producers",
            "-o",
        ])
        .arg(&wasm)
        .arg(&wasm)
        .status()
        .with_context(|| format!("running {}", wasm_opt.display()))?;
    ensure!(status.success(), "wasm-opt failed on {}", wasm.display());
    Ok(true)
}

fn copy_static(out_dir: &Path) -> Result<()> {
    let src = workspace_root().join("www/static");
    let entries = std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))?;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let to = out_dir.join(entry.file_name());
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {} to {}", entry.path().display(), to.display()))?;
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<PageFile>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes)?;
        let gzip_bytes = gz.finish()?.len() as u64;
        let rel = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
        out.push(PageFile { path: rel, bytes: bytes.len() as u64, gzip_bytes });
    }
    Ok(())
}

/// The fixed key that signs the demo snapshot. It is public (the page ships its edge key), so it
/// proves nothing beyond "the page checks signatures".
pub fn demo_signer() -> SnapshotSigner {
    SnapshotSigner::from_secret([0x5e; 32], IdHashKey(*b"tollgate-demo-id"))
}

/// The demo: a signed snapshot (aggregates, model, policy) and the day after it.
pub struct Demo {
    /// The signed snapshot.
    pub snapshot: Vec<u8>,
    /// Its signer ([`demo_signer`]).
    pub signer: SnapshotSigner,
    /// The day to replay.
    pub day: Day,
}

/// A day of transactions with true labels, in time order, as the page replays it.
#[derive(Clone, Debug, Default)]
pub struct Day {
    /// Transaction ids.
    pub transaction_id: Vec<u64>,
    /// Customer ids (raw; the snapshot holds only their keyed hashes).
    pub customer: Vec<String>,
    /// Terminal ids.
    pub terminal: Vec<String>,
    /// Amounts.
    pub amount: Vec<f64>,
    /// Unix seconds.
    pub time: Vec<i64>,
    /// True for fraud.
    pub fraud: Vec<bool>,
}

impl Day {
    /// The day as the page's `demo/day.json`: one array per column.
    pub fn to_json(&self) -> String {
        let frauds: Vec<u8> = self.fraud.iter().map(|&f| u8::from(f)).collect();
        serde_json::json!({
            "transaction_id": self.transaction_id,
            "customer_id": self.customer,
            "terminal_id": self.terminal,
            "amount": self.amount,
            "time": self.time,
            "fraud": frauds,
        })
        .to_string()
    }

    /// Transaction `i` as a JSON request, as the page sends it.
    pub fn request(&self, i: usize) -> String {
        serde_json::json!({
            "transaction_id": self.transaction_id[i],
            "customer_id": self.customer[i],
            "terminal_id": self.terminal[i],
            "amount": self.amount[i],
            "time": self.time[i],
        })
        .to_string()
    }
}

/// Makes the demo from the simulator, deterministically: 50 days of 2,000 customers on 4,000
/// terminals; features as served from daily snapshots; a logistic regression trained on the four
/// weeks whose labels are known a week before the last day; a policy whose thresholds flag the
/// top 2 % (review) and 0.5 % (decline) of training scores plus an amount cap; and the
/// snapshot as of the last midnight, with the last day as the day to replay.
pub fn demo_data() -> Result<Demo> {
    let config =
        SimulationConfig { seed: 2018, customers: 2_000, terminals: 4_000, days: 50, ..Default::default() };
    let tx = simulate(&config, &NoProgress)?;
    let last_day = i64::from(config.days) - 1;
    let as_of = Timestamp(config.start.0 + last_day * SECONDS_PER_DAY);
    let schema = FeatureSchema::handbook();
    let table = compute_features(&tx, &schema, Cadence::Every(SECONDS_PER_DAY), &NoProgress)?;
    let (from, to) = (Timestamp(as_of.0 - 35 * SECONDS_PER_DAY), Timestamp(as_of.0 - 7 * SECONDS_PER_DAY));
    let rows: Vec<usize> = (0..tx.len()).filter(|&i| (from..to).contains(&tx.time[i])).collect();
    let train = Dataset::from_rows(&tx, &table, &rows)?;
    let fit = LogisticConfig::default().fit(train.samples()?)?;
    let model = fit.model;
    let mut scores = train.scores(&model);
    scores.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let s = scores[((scores.len() as f64 * q) as usize).min(scores.len() - 1)];
        (s * 1000.0).round() / 1000.0
    };
    let (review_at, decline_at) = (quantile(0.98), quantile(0.995));
    ensure!(review_at < decline_at, "demo thresholds collapsed: review {review_at}, decline {decline_at}");
    let policy = Policy::new(review_at, decline_at)?
        .with_amount_cap(DEMO_AMOUNT_CAP, ReasonCode::new("AMOUNT_CAP")?)?;

    let signer = demo_signer();
    let tables = aggregate_history(&tx, &schema, as_of, signer.id_hash(), &NoProgress)?;
    let end = tx.time.partition_point(|t| *t < as_of);
    ensure!(end > 0 && end < tx.len(), "the simulated history has no day to replay");
    let d = as_of.to_datetime();
    let meta = SnapshotMeta {
        snapshot_id: format!("tg-demo-{:04}{:02}{:02}", d.year, d.month, d.day),
        as_of,
        created_at: as_of,
        data_range: Some((tx.time[0], tx.time[end - 1])),
        exporter_version: "demo".into(),
        id_key_fingerprint: signer.id_hash().fingerprint(),
        schema,
        model_id: Some(DEMO_MODEL_ID.into()),
        lineage: None,
        reference: None,
    };
    let snapshot = build_snapshot_with(&meta, tables, Some(&model), Some(&policy), &signer)
        .map_err(|e| anyhow::anyhow!("building the demo snapshot: {e}"))?;
    let mut day = Day::default();
    for i in end..tx.len() {
        day.transaction_id.push(tx.transaction_id[i]);
        day.customer.push(tx.customers.id(tx.customer[i]).to_string());
        day.terminal.push(tx.terminals.id(tx.terminal[i]).to_string());
        day.amount.push(tx.amount[i]);
        day.time.push(tx.time[i].0);
        day.fraud.push(tx.fraud[i] != 0);
    }
    if !day.fraud.iter().any(|&f| f) {
        bail!("the demo day holds no fraud; pick another seed");
    }
    Ok(Demo { snapshot, signer, day })
}
