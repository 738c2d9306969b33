//! The edge worker, built and run locally: [`bundle`] builds `tollgate-worker` to wasm32 and
//! through wasm-bindgen and wasm-opt into a directory workerd can run; [`LocalWorker`] runs it
//! under workerd (the miniflare 4 API, `worker/js/miniflare.mjs`) on 127.0.0.1 with a local KV
//! namespace that it fills like `tollgate push --to kv-local:DIR` does.

use anyhow::{Context, Result, bail, ensure};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The wasm-bindgen version the workspace pins (`wasm-bindgen = "=0.2.130"`); the CLI must match.
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";

/// The JS entry module workerd loads (`worker/js/shim.mjs`): instantiates the wasm-bindgen output
/// and exports the worker's `fetch` and `scheduled` handlers.
pub const SHIM: &str = include_str!("../../worker/js/shim.mjs");

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `wasm-bindgen`: `TOLLGATE_WASM_BINDGEN`, else `~/.cargo/bin/wasm-bindgen`, else the `PATH`'s.
pub fn wasm_bindgen() -> PathBuf {
    if let Some(path) = std::env::var_os("TOLLGATE_WASM_BINDGEN") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    match home.map(|h| h.join("bin/wasm-bindgen")) {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("wasm-bindgen"),
    }
}

/// `wasm-opt` from npm's binaryen 132 (`node_modules/.bin/wasm-opt`), or `TOLLGATE_WASM_OPT`.
/// Debian's binaryen 108 cannot parse wasm-bindgen output.
pub fn wasm_opt() -> PathBuf {
    std::env::var_os("TOLLGATE_WASM_OPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("node_modules/.bin/wasm-opt"))
}

/// The directory holding the worker bundle: `shim.mjs`, `index_bg.js`, `index_bg.wasm` and
/// wasm-bindgen's `snippets/`. `TOLLGATE_WORKER_BUNDLE` when set; otherwise built here once per
/// process (cargo `--profile wasm` into a target directory of its own, next to the test binary's,
/// then wasm-bindgen and wasm-opt -Oz).
pub fn bundle() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| build().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

fn build() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("TOLLGATE_WORKER_BUNDLE") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(3).context("the test binary is not in a cargo target directory")?;
    let dir = target.join("worker-wasm");
    build_into(&dir)
}

/// Builds the bundle under `target_dir` (a cargo target directory) and returns the bundle's
/// directory, `target_dir/bundle`.
pub fn build_into(target_dir: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", target_dir)
        // wasm-bindgen reads the target_features section that stripping drops; wasm-opt strips.
        .env("CARGO_PROFILE_WASM_STRIP", "false")
        .args([
            "build",
            "--quiet",
            "-p",
            "tollgate-worker",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "wasm",
        ])
        .status()
        .context("running cargo to build the worker")?;
    ensure!(status.success(), "building tollgate-worker for wasm32 failed");
    let wasm = target_dir.join("wasm32-unknown-unknown/wasm/tollgate_worker.wasm");
    let out = target_dir.join("bundle");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }

    let bindgen = wasm_bindgen();
    let version = Command::new(&bindgen).arg("--version").output().with_context(|| {
        format!(
            "running {} (cargo install wasm-bindgen-cli --version {WASM_BINDGEN_VERSION})",
            bindgen.display()
        )
    })?;
    let version = String::from_utf8_lossy(&version.stdout);
    ensure!(
        version.split_whitespace().nth(1) == Some(WASM_BINDGEN_VERSION),
        "{} is {}, the workspace pins wasm-bindgen {WASM_BINDGEN_VERSION}",
        bindgen.display(),
        version.trim()
    );
    let status = Command::new(&bindgen)
        .args(["--target", "bundler", "--no-typescript", "--out-name", "index", "--out-dir"])
        .arg(&out)
        .arg(&wasm)
        .status()?;
    ensure!(status.success(), "wasm-bindgen failed on {}", wasm.display());

    let opt = wasm_opt();
    let bg = out.join("index_bg.wasm");
    let status = Command::new(&opt)
        .arg("-Oz")
        .args(WASM_FEATURES)
        .args(["--strip-debug", "--strip-producers", "--strip-target-features"])
        .arg(&bg)
        .arg("-o")
        .arg(&bg)
        .status()
        .with_context(|| format!("running {} (npm ci installs binaryen 132)", opt.display()))?;
    ensure!(status.success(), "wasm-opt failed on {}", bg.display());
    // wasm-bindgen's own entry (index.js) is replaced by the shim.
    std::fs::remove_file(out.join("index.js"))?;
    std::fs::write(out.join("shim.mjs"), SHIM)?;
    Ok(out)
}

/// The wasm features rustc 1.95 emits for wasm32-unknown-unknown, which workerd runs. Not
/// `--all-features`: binaryen 132 then writes encodings workerd refuses ("unknown import kind").
pub const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-reference-types",
    "--enable-multivalue",
];

/// The node script that runs the worker under workerd and writes local KV.
pub fn miniflare_script() -> PathBuf {
    workspace().join("worker/js/miniflare.mjs")
}

/// The KV namespace id of local runs (and of `worker/wrangler.toml` until deployment).
pub const LOCAL_NAMESPACE_ID: &str = tollgate_kv::LOCAL_NAMESPACE_ID;

/// How to start a [`LocalWorker`].
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The trusted edge key file(s), concatenated (the `EDGE_KEYS` var).
    pub edge_keys: String,
    /// Least seconds between two KV checks (the `REFRESH_SECONDS` var).
    pub refresh_seconds: f64,
    /// Most bytes of table parts kept loaded (the `PART_BUDGET_BYTES` var; none: the default).
    pub part_budget_bytes: Option<usize>,
}

/// The built worker running under workerd on 127.0.0.1, with an in-memory KV namespace. Stops
/// when dropped.
pub struct LocalWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    files: PathBuf,
}

impl LocalWorker {
    /// Builds (once) and starts the worker.
    pub fn start(config: &WorkerConfig) -> Result<LocalWorker> {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let bundle = bundle()?;
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let files = bundle.with_file_name(format!("kv-{}-{run}", std::process::id()));
        std::fs::create_dir_all(&files)?;
        let mut bindings = serde_json::json!({
            "EDGE_KEYS": config.edge_keys,
            "REFRESH_SECONDS": config.refresh_seconds.to_string(),
        });
        if let Some(budget) = config.part_budget_bytes {
            bindings["PART_BUDGET_BYTES"] = budget.to_string().into();
        }
        let options =
            serde_json::json!({"dir": bundle, "namespace": LOCAL_NAMESPACE_ID, "bindings": bindings});
        let mut child = Command::new("node")
            .arg(miniflare_script())
            .arg("serve")
            .arg(options.to_string())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting node (the worker runs under workerd from npm miniflare)")?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let ready: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not start (see its stderr above): {line:?}", miniflare_script().display());
            }
        };
        let url = ready["url"].as_str().context("no url")?.trim_end_matches('/').to_string();
        Ok(LocalWorker { child, stdin, stdout, url, files })
    }

    fn command(&mut self, command: serde_json::Value) -> Result<serde_json::Value> {
        let stdin = self.stdin.as_mut().context("the worker has stopped")?;
        writeln!(stdin, "{command}")?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let reply: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("reply to {command}: {line:?}"))?;
        ensure!(reply["ok"] == true, "{command}: {}", reply["error"]);
        Ok(reply)
    }

    /// Puts `value` under `key` in the worker's KV namespace.
    pub fn put(&mut self, key: &str, value: &[u8]) -> Result<()> {
        let file = self.files.join("value");
        std::fs::write(&file, value)?;
        self.command(serde_json::json!({"op": "put", "key": key, "file": file}))?;
        Ok(())
    }

    /// Pushes a snapshot the way `tollgate push --to kv-local:DIR` does: shards of
    /// `shard_bytes` (of the core, then one value per part, for a snapshot in parts), then the
    /// manifest.
    pub fn push_snapshot(&mut self, snapshot: &[u8], shard_bytes: usize) -> Result<()> {
        for (key, bytes) in tollgate_kv::entries(snapshot, shard_bytes)? {
            self.put(&key, &bytes)?;
        }
        Ok(())
    }

    /// Fires the worker's cron trigger and waits for the handler to finish.
    pub fn scheduled(&mut self) -> Result<()> {
        let reply = self.command(serde_json::json!({"op": "scheduled"}))?;
        ensure!(reply["outcome"] == "ok", "scheduled handler: {reply}");
        Ok(())
    }

    /// The process ids of the workerd processes that run the worker.
    pub fn workerd_pids(&mut self) -> Result<Vec<u32>> {
        let reply = self.command(serde_json::json!({"op": "pids"}))?;
        reply["pids"]
            .as_array()
            .context("no pids")?
            .iter()
            .map(|p| p.as_u64().and_then(|p| u32::try_from(p).ok()).context("a pid is not a number"))
            .collect()
    }

    /// Resident memory and CPU time used so far by the workerd processes that run the worker.
    pub fn workerd_usage(&mut self) -> Result<Usage> {
        let pids = self.workerd_pids()?;
        let mut rss_bytes = 0;
        for pid in &pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let kb: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .context("no VmRSS")?;
            rss_bytes += kb * 1024;
        }
        Ok(Usage { rss_bytes, cpu_ns: cpu_ns(&pids)? })
    }
}

/// CPU time used so far by every thread of `pids`, in nanoseconds: the first field of each
/// `/proc/PID/task/TID/schedstat` (time on a CPU, ns resolution, unlike the 10 ms ticks of `stat`).
pub fn cpu_ns(pids: &[u32]) -> Result<u64> {
    let mut total = 0;
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let path = task?.path().join("schedstat");
            // A thread may end between listing and reading: it no longer counts.
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let ns: u64 = text
                .split_whitespace()
                .next()
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("{}: unexpected content {text:?}", path.display()))?;
            total += ns;
        }
    }
    Ok(total)
}

/// What the workerd processes use.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// CPU time of every thread since start, nanoseconds.
    pub cpu_ns: u64,
}

/// A signed snapshot of the parity corpus's model and policy with `customers` and `terminals`
/// entities: the rows of a small simulated history repeated under new ids (`0..customers`,
/// `0..terminals`), for memory and size measurements at scale; tables in parts of at most
/// `max_part_bytes` (`usize::MAX`: whole tables).
pub fn large_snapshot(customers: usize, terminals: usize, max_part_bytes: usize) -> Result<Vec<u8>> {
    use exporter::NoProgress;
    use exporter::simulate::{SimulationConfig, simulate};
    use exporter::snapshot::aggregate_history;
    use scorer::Timestamp;
    use scorer::features::FeatureSchema;
    use scorer::snapshot::{SnapshotMeta, build_snapshot_in_parts};

    let config = SimulationConfig { seed: 5, customers: 400, terminals: 800, days: 45, ..Default::default() };
    let tx = simulate(&config, &NoProgress)?;
    let as_of = Timestamp(config.start.0 + 30 * 86_400);
    let s = crate::parity::signer();
    let schema = FeatureSchema::handbook();
    let small = aggregate_history(&tx, &schema, as_of, s.id_hash(), &NoProgress)?;
    let tables = small
        .iter()
        .zip([customers, terminals])
        .map(|(rows, n)| {
            (0..n).map(|i| (s.id_hash().hash(i.to_string().as_bytes()), rows[i % rows.len()].1)).collect()
        })
        .collect();
    let meta = SnapshotMeta {
        snapshot_id: format!("tg-large-{customers}-{terminals}"),
        as_of,
        created_at: Timestamp(1_700_000_000),
        data_range: Some((tx.time[0], as_of)),
        exporter_version: "large".into(),
        id_key_fingerprint: s.id_hash().fingerprint(),
        schema,
        model_id: Some("lr-parity-v1".into()),
        lineage: None,
        reference: None,
    };
    Ok(build_snapshot_in_parts(&meta, tables, Some(&crate::parity::logistic()), None, &s, max_part_bytes)?)
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        // Closing stdin makes the script dispose of workerd and exit.
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.files);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.files);
    }
}
