//! `cargo xtask`: the two set-up commands of the README (`demo`, `test`) and `bench`.
//! Each installs what it needs and is missing, then runs the project's own commands, printing
//! each one before it runs so that a failure can be repeated by hand.

mod peers;
mod setup;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use tollgate_tests::{FAST_MODULE, ModuleBuild, SMALL_MODULE};

/// Set-up and orchestration for tollgate.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run the demo on the built-in simulator: simulate, ingest, summarise.
    Demo {
        /// Seed of the simulation.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Run the whole test suite: fmt, clippy (native and wasm32), the wasm build, every test.
    Test,
    /// Run the benchmarks and print their tables (numbers go to docs/benchmarks.md).
    Bench,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Demo { seed } => demo(seed),
        Task::Test => test(),
        Task::Bench => bench(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of xtask/).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Runs `program args…` in the workspace root, echoing it, and fails when it fails.
fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("+ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start `{program}`"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Where cargo puts build output: `$CARGO_TARGET_DIR` when set, else `target/` in the root.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn demo(seed: u64) -> Result<()> {
    setup::wasm_target()?;
    setup::node_packages()?;
    let wasm_bindgen = setup::wasm_bindgen()?;
    let cargo = cargo();
    run(&cargo, &["build", "--release", "--package", "tollgate"])?;
    let scorer_wasm = build_scorer_module(&FAST_MODULE)?;
    let out = target_dir().join("demo");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let tollgate = target_dir().join("release").join("tollgate");
    let tollgate = tollgate.to_string_lossy();
    let path = |name: &str| out.join(name).to_string_lossy().into_owned();
    let (transactions, features, keys, snapshot) =
        (path("transactions.parquet"), path("features.parquet"), path("keys"), path("snapshot.tgs"));
    let (model, report, token) = (path("model.tgm"), path("report"), path("admin.token"));
    let seed = seed.to_string();
    println!("\n== 1. simulate 183 days of card transactions (5,000 customers, 10,000 terminals)");
    run(&tollgate, &["simulate", "--seed", &seed, "--output", &transactions])?;
    println!("\n== 2. ingest and validate them, with a summary per day");
    run(&tollgate, &["ingest", &transactions, "--per-day"])?;
    println!("\n== 3. features as the edge serves them (hourly snapshots), against exact ones");
    run(
        &tollgate,
        &["features", &transactions, "--output", &features, "--snapshot-every", "1h", "--compare-exact"],
    )?;
    println!("\n== 4. train gradient-boosted trees on a week, as served (hourly snapshots)");
    run(
        &tollgate,
        &[
            "train",
            "--input",
            &transactions,
            "--model",
            "gbdt",
            "--trees",
            "100",
            "--max-depth",
            "3",
            "--learning-rate",
            "0.1",
            "--snapshot-every",
            "1h",
            "--output",
            &model,
        ],
    )?;
    println!("\n== 5. evaluate it on the week after the label delay, with a report");
    run(&tollgate, &["evaluate", "--input", &transactions, "--model", &model, "--report", &report])?;
    println!("\n== 6. keys, and a signed snapshot with the model and a policy, as of the last day");
    run(&tollgate, &["keys", "new", "--out", &keys, "--force"])?;
    let (signing, edge) = (format!("{keys}/signing.key"), format!("{keys}/edge.key"));
    run(
        &tollgate,
        &[
            "snapshot",
            "build",
            &transactions,
            "--as-of",
            "2018-09-30",
            "--key",
            &signing,
            "--model",
            &model,
            "--review",
            "0.3",
            "--decline",
            "0.7",
            "--amount-cap",
            "5000",
            "--output",
            &snapshot,
        ],
    )?;
    run(
        &tollgate,
        &[
            "snapshot",
            "inspect",
            &snapshot,
            "--key",
            &edge,
            "--entity",
            "CUSTOMER_ID=42",
            "--entity",
            "TERMINAL_ID=7",
        ],
    )?;
    println!("\n== 7. start the wasmtime host, push the snapshot to it, replay the last day through it");
    std::fs::write(&token, format!("demo-{}\n", std::process::id()))
        .with_context(|| format!("writing {token}"))?;
    let mut server = Command::new(tollgate.as_ref())
        .args(["serve", "--module", &scorer_wasm.to_string_lossy(), "--edge-key", &edge])
        .args(["--listen", "127.0.0.1:0", "--admin-token-file", &token, "--cache-dir", &path("cache")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting tollgate serve")?;
    let replayed = (|| -> Result<()> {
        let url = server_url(&mut server)?;
        println!("the host listens on {url}");
        run(&tollgate, &["push", &snapshot, "--to", &url, "--token-file", &token])?;
        run(&tollgate, &["replay", &transactions, "--to", &url, "--day", "2018-09-30"])
    })();
    let _ = server.kill();
    let _ = server.wait();
    replayed?;
    println!("\n== 8. the browser page: scores in the page, replays a day");
    let page = build_page(&out.join("www"), &wasm_bindgen)?;
    println!("\nThe demo's files are in {}.", out.display());
    println!("The report: {report}/index.html");
    println!("The page: run `{tollgate} www --dir {}` and open the URL it prints.", page.display());
    println!("Not yet in the demo: the edge worker (see worker/README.md to run it under wrangler dev).");
    Ok(())
}

/// Reads `listening on http://ADDR` from a starting `tollgate serve`.
fn server_url(server: &mut std::process::Child) -> Result<String> {
    use std::io::BufRead;
    let stdout = server.stdout.take().context("tollgate serve has no stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    while let Some(line) = lines.next().transpose()? {
        if let Some(url) = line.strip_prefix("listening on ") {
            return Ok(url.trim().to_string());
        }
    }
    bail!("tollgate serve stopped before it listened")
}

/// Builds the browser page (wasm-bindgen bindings, static files, a demo snapshot) into `dir`.
fn build_page(dir: &Path, wasm_bindgen: &Path) -> Result<PathBuf> {
    let tools = tollgate_tests::page::Tools::find(&target_dir());
    let tools = tollgate_tests::page::Tools { wasm_bindgen: wasm_bindgen.to_path_buf(), ..tools };
    let page = tollgate_tests::page::build_page(dir, &tools)?;
    Ok(page.dir)
}

fn test() -> Result<()> {
    setup::wasm_target()?;
    // The worker and page tests run real workerd and headless Chromium, built with wasm-bindgen.
    setup::node_packages()?;
    let wasm_bindgen = setup::wasm_bindgen()?;
    let chromium = setup::chromium()?;
    let cargo = cargo();
    run(&cargo, &["fmt", "--all", "--", "--check"])?;
    run(&cargo, &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    let wasm_crates = ["--package", "scorer-wasm", "--package", "tollgate-worker", "--package", "www"];
    // The host's module's feature too, so that its SIMD128 walk is linted.
    let mut clippy_wasm =
        vec!["clippy", "--target", "wasm32-unknown-unknown", "--features", "scorer-wasm/simd128"];
    clippy_wasm.extend(wasm_crates);
    clippy_wasm.extend(["--", "-D", "warnings"]);
    run(&cargo, &clippy_wasm)?;
    let scorer_wasm = build_scorer_wasm()?;
    // The parity tests run these very modules in wasmtime; the host's tests the fast one.
    // SAFETY of the environment: xtask is single-threaded; cargo test inherits the variable.
    unsafe {
        std::env::set_var("TOLLGATE_SCORER_WASM", &scorer_wasm.fast);
        std::env::set_var("TOLLGATE_SCORER_WASM_SMALL", &scorer_wasm.small);
        std::env::set_var("TOLLGATE_WASM_BINDGEN", &wasm_bindgen);
        std::env::set_var("TOLLGATE_CHROMIUM", &chromium);
    }
    run(&cargo, &["test", "--workspace"])?;
    Ok(())
}

/// The two builds of the scorer module: the same code and answers.
struct ScorerModules {
    /// `scorer.wasm`, size-optimised (`wasm` profile): for edges that ship the module itself.
    small: PathBuf,
    /// `scorer-fast.wasm`, the scoring core at opt-level 3 (`wasm-fast` profile): what the
    /// wasmtime host runs.
    fast: PathBuf,
}

/// Builds both scorer modules (each through `wasm-opt -Oz` when binaryen is installed).
fn build_scorer_wasm() -> Result<ScorerModules> {
    Ok(ScorerModules { small: build_scorer_module(&SMALL_MODULE)?, fast: build_scorer_module(&FAST_MODULE)? })
}

/// What `wasm-opt` may use in scorer.wasm: the wasm32-unknown-unknown target's features, one
/// flag per line (the size test passes the same file).
const WASM_FEATURES: &str = include_str!("../../scorer/wasm/wasm-opt.features");

/// Builds the scorer module as `build` says and writes it optimised, as `build.name`, beside the
/// build.
fn build_scorer_module(build: &ModuleBuild) -> Result<PathBuf> {
    let (profile, name) = (build.profile, build.name);
    let args = build.cargo_args();
    run(&cargo(), &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let built = target_dir().join("wasm32-unknown-unknown").join(profile).join("scorer_wasm.wasm");
    let size = std::fs::metadata(&built).with_context(|| format!("{} was not built", built.display()))?.len();
    eprintln!("xtask: {} is {size} bytes", built.display());
    // npm binaryen 132 (installed with the node packages): -Oz takes about 13 % off the raw size.
    // Debian's binaryen 108 is not used: it cannot read newer rustc output reliably.
    let wasm_opt = root().join("node_modules").join(".bin").join("wasm-opt");
    if !wasm_opt.exists() {
        eprintln!("xtask: {} is missing; {name} stays un-optimised", wasm_opt.display());
        return Ok(built);
    }
    let path = built.with_file_name(name);
    let (input, output) = (built.to_string_lossy(), path.to_string_lossy());
    // The features rustc's wasm32 target emits, named one by one: `--all-features` would let
    // binaryen write the crypto imports in a newer encoding (custom descriptors' exact imports)
    // that wasmtime and V8 cannot read.
    let mut args = vec!["-Oz"];
    args.extend(WASM_FEATURES.lines().map(str::trim).filter(|l| !l.is_empty()));
    args.extend(build.wasm_opt_features);
    args.extend([&*input, "-o", &*output]);
    run(&wasm_opt.to_string_lossy(), &args)?;
    let size = std::fs::metadata(&path).with_context(|| format!("{} was not written", path.display()))?.len();
    eprintln!("xtask: {} is {size} bytes after wasm-opt", path.display());
    Ok(path)
}

fn bench() -> Result<()> {
    let cargo = cargo();
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let ours = out.join("features.json");
    // SAFETY of the environment: xtask is single-threaded here; the variable is read by the
    // bench binary that cargo starts below.
    unsafe { std::env::set_var("TOLLGATE_BENCH_JSON", &ours) };
    run(&cargo, &["bench", "--package", "exporter"])?;
    // The continuous exporter: fold throughput, end to end from a mock Kafka broker.
    run(&cargo, &["bench", "--package", "pipeline"])?;
    // The scorer: tree evaluation alone, then whole scores natively and in wasmtime, on the very
    // scorer.wasm that `cargo xtask test` checks (wasm-opt'ed when binaryen is installed).
    setup::wasm_target()?;
    let scorer_wasm = build_scorer_wasm()?;
    // SAFETY of the environment: as above.
    unsafe {
        std::env::set_var("TOLLGATE_SCORER_WASM", &scorer_wasm.fast);
        std::env::set_var("TOLLGATE_SCORER_WASM_SMALL", &scorer_wasm.small);
    }
    run(&cargo, &["bench", "--package", "scorer", "--bench", "trees"])?;
    // Whole scores, beside xgboost, onnxruntime, tl2cgen and tract on the same GBDT: the peers'
    // script runs the score bench itself; without python3 the bench runs alone.
    if let Err(err) = scorer_peers(&out) {
        eprintln!("xtask: the scorer's peers did not run ({err:#}); the score bench alone:");
        run(&cargo, &["bench", "--package", "scorer-wasm", "--bench", "score"])?;
    }
    // The host over HTTP beside a trivial axum endpoint (wrk makes the load when installed).
    run(&cargo, &["bench", "--package", "host", "--bench", "http"])?;
    peers::features(&out, &ours)
}

/// `benchsuite/scorer/scorer_peers.py` in a venv under target/bench (see its README).
fn scorer_peers(out: &Path) -> Result<()> {
    let venv = out.join("scorer-venv");
    if !venv.join("bin/python").exists() {
        run("python3", &["-m", "venv", &venv.to_string_lossy()])
            .context("the peers need python3 with venv (apt-get install python3-venv)")?;
    }
    let python = venv.join("bin/python").to_string_lossy().into_owned();
    let dir = root().join("benchsuite/scorer");
    let requirements = dir.join("requirements.txt").to_string_lossy().into_owned();
    run(&python, &["-m", "pip", "install", "--quiet", "-r", &requirements])?;
    run(
        &python,
        &[
            &dir.join("scorer_peers.py").to_string_lossy(),
            "--work",
            &out.join("scorer-peers").to_string_lossy(),
        ],
    )
}
