//! What the tests of `tollgate serve` and its clients (`push`, `replay`) share: a small simulated
//! history with signed snapshots of it (the parity corpus's signer and logistic model), and a
//! running `tollgate serve` process that is killed when dropped; [`stream`]: what the continuous
//! exporter's tests share.

#![allow(dead_code)] // Each test binary uses part of it.

pub mod stream;

use exporter::NoProgress;
use exporter::Transactions;
use exporter::simulate::{SimulationConfig, simulate};
use exporter::snapshot::aggregate_history;
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::policy::Policy;
use scorer::snapshot::{SnapshotMeta, SnapshotSigner, build_snapshot_with};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_tests::parity::{logistic, signer};

/// The tests' error type.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The admin token the servers are started with.
pub const TOKEN: &str = "push-replay-admin-token";

/// A simulated history in `dir/tx.csv`, the edge key in `dir/edge.key` and the admin token in
/// `dir/admin.token`.
pub struct History {
    /// The transactions written to `tx.csv`.
    pub tx: Transactions,
    /// The folder everything is in.
    pub dir: PathBuf,
}

impl History {
    /// 100 customers, 200 terminals, 12 days (about 2,500 transactions): small enough to
    /// aggregate and replay in well under a second.
    pub fn new(dir: &Path) -> Result<History> {
        let config =
            SimulationConfig { seed: 11, customers: 100, terminals: 200, days: 12, ..Default::default() };
        let tx = simulate(&config, &NoProgress)?;
        exporter::write::write_transactions(&dir.join("tx.csv"), &tx)?;
        std::fs::write(dir.join("edge.key"), signer().edge_key().to_text())?;
        std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n"))?;
        Ok(History { tx, dir: dir.to_path_buf() })
    }

    /// The start of the last simulated day (what `tollgate replay` replays by default).
    pub fn last_day(&self) -> Result<Timestamp> {
        let last = self.tx.time.last().ok_or("no transactions")?;
        Ok(Timestamp(last.0.div_euclid(86_400) * 86_400))
    }

    /// A snapshot `snapshot_id` of the history up to `as_of`, with the parity corpus's logistic
    /// model and a policy (review from 0.25, decline from 0.6), signed by `signer`.
    pub fn snapshot(&self, snapshot_id: &str, as_of: Timestamp, signer: &SnapshotSigner) -> Result<Vec<u8>> {
        let schema = FeatureSchema::handbook();
        let tables = aggregate_history(&self.tx, &schema, as_of, signer.id_hash(), &NoProgress)?;
        let meta = SnapshotMeta {
            snapshot_id: snapshot_id.into(),
            as_of,
            created_at: Timestamp(1_700_000_000),
            data_range: Some((self.tx.time[0], as_of)),
            exporter_version: "cli-test".into(),
            id_key_fingerprint: signer.id_hash().fingerprint(),
            schema,
            model_id: Some("lr-cli-test".into()),
            lineage: None,
            reference: None,
        };
        let policy = Policy::new(0.25, 0.6)?;
        Ok(build_snapshot_with(&meta, tables, Some(&logistic()), Some(&policy), signer)?)
    }

    /// Writes [`History::snapshot`] (signed by the trusted signer) to `dir/name`.
    pub fn write_snapshot(&self, name: &str, snapshot_id: &str, as_of: Timestamp) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, self.snapshot(snapshot_id, as_of, &signer())?)?;
        Ok(path)
    }
}

/// Sends `child` SIGTERM, as a service manager stops a process.
pub fn sigterm(child: &Child) -> Result<()> {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    if !status.success() {
        return Err("kill -TERM failed".into());
    }
    Ok(())
}

/// Runs the `tollgate` binary in `dir` and waits for it.
pub fn tollgate(dir: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .current_dir(dir)
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .output()?)
}

/// The standard output of a finished command.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The standard error of a finished command.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `tollgate serve`, killed when dropped; its stderr is collected as it comes.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` or `https://...`, as the server printed it.
    pub base: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `tollgate serve` in `dir` on a free port with the edge key `dir/edge.key`, the
    /// admin token `dir/admin.token` and `extra` arguments; returns once it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Result<Server> {
        let mut args = vec!["--admin-token-file", "admin.token"];
        args.extend_from_slice(extra);
        Server::start_with(dir, &args, None)
    }

    /// Starts `tollgate serve` in `dir` on a free port with the edge key `dir/edge.key` and
    /// `extra` arguments; `shell` (a `sh -c` prelude such as `trap '' XFSZ`) runs before the
    /// binary is exec'd. Returns once it listens.
    pub fn start_with(dir: &Path, extra: &[&str], shell: Option<&str>) -> Result<Server> {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-cache");
        let module = tollgate_tests::scorer_wasm()?;
        let binary = env!("CARGO_BIN_EXE_tollgate");
        let mut command = match shell {
            Some(prelude) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("{prelude}; exec \"$0\" \"$@\"")).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .current_dir(dir)
            .env_remove("TOLLGATE_ADMIN_TOKEN")
            .args(["serve", "--edge-key", "edge.key"])
            .args(["--listen", "127.0.0.1:0", "--threads", "2"])
            .arg("--module")
            .arg(module)
            .arg("--cache-dir")
            .arg(cache)
            .args(extra);
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let mut server = Server { child, base: String::new(), stderr };
        match line.trim().strip_prefix("listening on ") {
            Some(base) => server.base = base.to_string(),
            None => {
                // Let the reader thread catch the last words.
                let _ = server.child.wait();
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("tollgate serve did not start: {line:?}\n{}", server.stderr()).into());
            }
        }
        Ok(server)
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether stderr says `text` within 5 s (it is read by another thread, so it may lag).
    pub fn says(&self, text: &str) -> bool {
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if self.stderr().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The server's process id (`sh -c` execs it, so it is the same with a shell prelude).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or roll anything.
    pub fn kill_9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, as a service manager stops it; waits for a clean exit.
    pub fn terminate(mut self) -> Result<()> {
        sigterm(&self.child)?;
        let exit = self.child.wait()?;
        if !exit.success() {
            return Err(format!("tollgate serve exited with {exit} after SIGTERM:\n{}", self.stderr()).into());
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that hands every status back, trusting `ca` (PEM) for https:// when given; every call
/// gives up after 10 s so that a test never hangs.
pub fn agent(ca: Option<&str>) -> Result<ureq::Agent> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(pem) = ca {
        let cert = ureq::tls::Certificate::from_pem(pem.as_bytes())?;
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]));
    }
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls.build())
        .build()
        .into())
}

/// The id of the snapshot `/v1/status` says is serving.
pub fn serving(agent: &ureq::Agent, base: &str) -> Result<String> {
    let body = agent.get(&format!("{base}/v1/status")).call()?.body_mut().read_to_string()?;
    let status: serde_json::Value = serde_json::from_str(&body)?;
    Ok(status["snapshot"]["snapshot_id"].as_str().ok_or(format!("no serving snapshot: {body}"))?.to_string())
}

/// `tollgate www` serving a directory, killed when dropped.
pub struct Www {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
}

impl Www {
    /// Starts `tollgate www --dir DIR` on a free port; returns once it listens.
    pub fn start(dir: &Path) -> Result<Www> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("www")
            .arg("--dir")
            .arg(dir)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let mut www = Www { child, origin: String::new() };
        // "tollgate www: serving DIR at http://127.0.0.1:PORT/ (Ctrl-C stops)"
        let at = line.split(" at ").last().and_then(|s| s.split_whitespace().next());
        www.origin =
            at.ok_or_else(|| format!("tollgate www said {line:?}"))?.trim_end_matches('/').to_string();
        Ok(www)
    }
}

impl Drop for Www {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cargo target directory of this test binary (`target/<profile>/deps/<binary>`).
pub fn target_dir() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.ancestors().nth(3).ok_or("the test binary is not in a cargo target directory")?.to_path_buf())
}

/// What one run of a browser script (`tests/js/NAME.mjs`) gave back.
pub struct BrowserRun {
    /// The results file the script wrote.
    pub results: serde_json::Value,
    /// The screenshot it took.
    pub screenshot: PathBuf,
}

/// Drives the demo page in headless Chromium with `tests/js/NAME.mjs` (playwright-core): `config`
/// (a JSON object) gets `chromium`, `out` and `screenshot` added, under `dir` as
/// `NAME-results.json` and `NAME-screenshot.png`, old ones removed first. Fails when node cannot
/// run, the script fails, or it reports a failed step.
pub fn drive_page(name: &str, dir: &Path, mut config: serde_json::Value) -> Result<BrowserRun> {
    let out = dir.join(format!("{name}-results.json"));
    let screenshot = dir.join(format!("{name}-screenshot.png"));
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&screenshot);
    let fields = config.as_object_mut().ok_or("the browser config is not a JSON object")?;
    let chromium = std::env::var("TOLLGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    fields.insert("chromium".into(), chromium.into());
    fields.insert("out".into(), out.to_string_lossy().into_owned().into());
    fields.insert("screenshot".into(), screenshot.to_string_lossy().into_owned().into());
    let config_path = dir.join(format!("{name}-config.json"));
    std::fs::write(&config_path, config.to_string())?;
    let root = tollgate_tests::page::workspace_root();
    let status = Command::new("node")
        .arg(root.join(format!("tests/js/{name}.mjs")))
        .arg(&config_path)
        .current_dir(&root)
        .status()
        .map_err(|e| format!("running node (is Node.js installed, and `npm ci` run?): {e}"))?;
    if !status.success() {
        return Err(format!("tests/js/{name}.mjs failed ({status})").into());
    }
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    if results.get("failure").is_some() {
        return Err(format!(
            "the browser script failed after steps {}: {}",
            results["steps"], results["failure"]
        )
        .into());
    }
    Ok(BrowserRun { results, screenshot })
}
