//! The demo page in real headless Chromium: built with `tollgate_tests::page::build_page` (cargo,
//! wasm-bindgen, wasm-opt, the exporter's demo data), served on 127.0.0.1, and driven by
//! playwright-core (`tests/js/page.mjs`). The page must load with no console error and no request
//! leaving the server, answer the parity corpus byte for byte like the native scorer, replay the
//! day with the native scores and metrics, refuse a damaged snapshot in plain words, and draw a
//! screenshot that is not blank.
//!
//! Tools: `TOLLGATE_CHROMIUM` (else `/usr/bin/chromium`), `TOLLGATE_WASM_BINDGEN` (else
//! `~/.cargo/bin/wasm-bindgen`), node with `node_modules/` at the workspace root (`npm ci`).
//! Chromium runs once; every test below reads its results.

use anyhow::{Context, Result, bail, ensure};
use scorer::score::Scorer;
use scorer::snapshot::Snapshot;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;
use tollgate_tests::page::{PageBuild, Tools, build_page, demo_signer, workspace_root};
use tollgate_tests::parity::{fixture, logistic, signer};

/// Requests of the parity corpus also sent as one batch.
const BATCH: usize = 500;

/// What one run of the page in Chromium gave.
struct Run {
    build: PageBuild,
    results: Value,
    screenshot: PathBuf,
    /// The parity corpus's JSON requests, in the order the page scored them.
    requests: Vec<String>,
    /// Their native responses.
    native: Vec<Vec<u8>>,
    /// The native batch response to the first [`BATCH`] well-formed requests.
    native_batch: Vec<u8>,
    /// Wall time of building the page.
    build_secs: f64,
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| match drive() {
        Ok(run) => run,
        Err(e) => panic!("the page run failed: {e:#}"),
    })
}

/// The test binary's target directory (`target/<profile>/deps/<binary>` → `target`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.ancestors().nth(3).context("the test binary is not in a cargo target directory")?.to_path_buf())
}

fn drive() -> Result<Run> {
    let root = target_dir()?.join("www-page");
    let site = root.join("site");
    let started = Instant::now();
    let build = build_page(&site, &Tools::find(&root.join("cargo")))?;
    let build_secs = started.elapsed().as_secs_f64();

    // The parity corpus and the user's-own-snapshot checks, served next to the page.
    let corpus = fixture(&logistic(), "lr-parity-v1")?;
    let requests: Vec<String> = corpus.json_requests().into_iter().map(str::to_owned).collect();
    let parity = site.join("parity");
    std::fs::create_dir_all(&parity)?;
    std::fs::write(parity.join("snapshot.tgs"), &corpus.snapshot)?;
    std::fs::write(parity.join("edge.key"), signer().edge_key().to_text())?;
    std::fs::write(parity.join("requests.json"), serde_json::to_string(&requests)?)?;
    let mut damaged = std::fs::read(site.join("demo/snapshot.tgs"))?;
    let at = damaged.len() / 2;
    damaged[at] ^= 0x55;
    std::fs::write(root.join("damaged.tgs"), &damaged)?;

    let mut scorer = Scorer::new(Snapshot::load(&corpus.snapshot, &[signer().edge_key()])?);
    let native = requests
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            scorer.score_bytes(r.as_bytes(), &mut out);
            out
        })
        .collect();
    let batch = format!("[{}]", requests[..BATCH].join(","));
    let mut native_batch = Vec::new();
    scorer.score_batch_bytes(batch.as_bytes(), &mut native_batch);

    let addr = serve(&site)?;
    let screenshot = root.join("screenshot.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = root.join("results.json");
    let config = serde_json::json!({
        "url": format!("http://{addr}/index.html"),
        "chromium": std::env::var("TOLLGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
        "out": out,
        "screenshot": screenshot,
        "parity": {
            "key": "parity/edge.key",
            "snapshot": "parity/snapshot.tgs",
            "requests": "parity/requests.json",
            "batch": BATCH,
        },
        "damagedSnapshot": root.join("damaged.tgs"),
        "userSnapshot": parity.join("snapshot.tgs"),
        "userKey": parity.join("edge.key"),
    });
    let config_path = root.join("config.json");
    std::fs::write(&config_path, config.to_string())?;
    let script = workspace_root().join("tests/js/page.mjs");
    let status = Command::new("node")
        .arg(&script)
        .arg(&config_path)
        .current_dir(workspace_root())
        .status()
        .context("running node (is Node.js installed, and `npm ci` run at the workspace root?)")?;
    ensure!(status.success(), "{} failed", script.display());
    let results: Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    if let Some(failure) = results.get("failure") {
        bail!(
            "the browser script failed after steps {}: {}",
            results["steps"],
            failure.as_str().unwrap_or("")
        );
    }
    Ok(Run { build, results, screenshot, requests, native, native_batch, build_secs })
}

/// Serves `dir` on 127.0.0.1 (a port of the system's choosing) from a thread of its own, with
/// tower-http's ServeDir (`.wasm` as `application/wasm`); returns the address.
fn serve(dir: &Path) -> Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let Ok(rt) = rt else { return };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(addr)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn page_loads_and_scores_with_no_console_error_and_nothing_fetched_from_elsewhere() {
    let r = &run().results;
    assert_eq!(r["consoleErrors"], serde_json::json!([]), "console errors");
    assert_eq!(r["startErrors"], serde_json::json!([]), "start errors");
    assert_eq!(r["external"], serde_json::json!([]), "requests to other hosts");
    assert!(text(&r["status"]).contains("signature verified"), "status: {}", r["status"]);
    // The first transaction shown is a fraud of the day: it gets a decision and contribution bars.
    assert!(["allow", "review", "decline"].contains(&text(&r["firstDecision"])), "{}", r["firstDecision"]);
    assert!(r["contributionBars"].as_u64().unwrap_or(0) >= 15, "bars: {}", r["contributionBars"]);
    // Typed from the keyboard: above the amount cap the hard rule declines; a negative amount
    // is refused in words naming the field.
    assert_eq!(text(&r["capRules"]), "AMOUNT_CAP");
    assert_eq!(text(&r["capDecision"]), "decline");
    assert!(
        text(&r["badAmountError"]).contains("amount: must be a finite number >= 0"),
        "{}",
        r["badAmountError"]
    );
}

#[test]
fn page_answers_the_parity_corpus_byte_for_byte_like_the_native_scorer() {
    let run = run();
    let p = &run.results["parity"];
    let responses = p["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), run.requests.len());
    assert!(responses.len() > 5_000, "only {} JSON requests", responses.len());
    for (i, (page, native)) in responses.iter().zip(&run.native).enumerate() {
        assert_eq!(
            text(page).as_bytes(),
            native.as_slice(),
            "request {i} {}: page {page} vs native {}",
            run.requests[i],
            String::from_utf8_lossy(native)
        );
    }
    assert_eq!(text(&p["batch"]).as_bytes(), run.native_batch.as_slice(), "batch of {BATCH}");
    let ms = p["ms"].as_f64().unwrap_or(0.0);
    eprintln!(
        "page parity: {} JSON requests identical to native; {:.2} µs per score in Chromium (JSON in and out, JS strings)",
        responses.len(),
        ms * 1000.0 / responses.len() as f64
    );
}

#[test]
fn page_replays_the_day_with_the_native_scores_and_metrics() -> Result<()> {
    let run = run();
    let replay = &run.results["replay"];
    let day: Value = serde_json::from_slice(&std::fs::read(run.build.dir.join("demo/day.json"))?)?;
    let n = day["amount"].as_array().context("day.amount")?.len();
    assert_eq!(n, run.build.day_transactions);
    assert_eq!(replay["scored"].as_u64(), Some(n as u64));
    assert_eq!(replay["errors"].as_u64(), Some(0));

    // Native scores of the same day against the same snapshot.
    let snapshot = std::fs::read(run.build.dir.join("demo/snapshot.tgs"))?;
    let mut scorer = Scorer::new(Snapshot::load(&snapshot, &[demo_signer().edge_key()])?);
    let mut scores = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let mut out = Vec::new();
    for i in 0..n {
        let request = serde_json::json!({
            "transaction_id": day["transaction_id"][i],
            "customer_id": day["customer_id"][i],
            "terminal_id": day["terminal_id"][i],
            "amount": day["amount"][i],
            "time": day["time"][i],
        });
        out.clear();
        scorer.score_bytes(request.to_string().as_bytes(), &mut out);
        let response: Value = serde_json::from_slice(&out)?;
        ensure!(response["ok"] == true, "transaction {i}: {response}");
        // A rule decided: ranked as a score of 1, as the page does.
        scores.push(response["score"].as_f64().unwrap_or(1.0));
        labels.push(day["fraud"][i] == 1);
    }
    let page_scores: Vec<f64> = replay["scores"]
        .as_array()
        .context("scores")?
        .iter()
        .map(|s| s.as_f64().unwrap_or(f64::NAN))
        .collect();
    for (i, (a, b)) in page_scores.iter().zip(&scores).enumerate() {
        ensure!(a.to_bits() == b.to_bits(), "transaction {i}: page score {a}, native {b}");
    }
    let m = &replay["metrics"];
    let auc = models::metrics::roc_auc(&scores, &labels)?;
    let ap = models::metrics::average_precision(&scores, &labels)?;
    assert_eq!(m["auc"].as_f64(), Some(auc), "AUC ROC");
    assert_eq!(m["ap"].as_f64(), Some(ap), "average precision");
    assert!(auc > 0.75, "the demo model ranks poorly: AUC {auc}");

    // The confusion matrix follows the slider, moved from the keyboard.
    for state in [m, &run.results["afterSlider"]["metrics"]] {
        let review = state["review"].as_f64().context("review")?;
        let c = models::ConfusionMatrix::at_threshold(&scores, &labels, review)?;
        let counts = [&state["tp"], &state["fp"], &state["tn"], &state["fn"]].map(|v| v.as_u64());
        let expected = [c.true_positives, c.false_positives, c.true_negatives, c.false_negatives].map(Some);
        assert_eq!(counts, expected, "confusion at review {review}");
        assert_eq!(state["f1"].as_f64(), Some(c.f1()), "F1 at review {review}");
    }
    let before = m["review"].as_f64().unwrap_or(0.0);
    let after = run.results["afterSlider"]["value"].as_f64().unwrap_or(0.0);
    assert!(
        (after - before - 0.02).abs() < 1e-9,
        "20 presses of → moved the review threshold {before} -> {after}"
    );
    eprintln!(
        "page replay: {n} transactions ({} frauds) in {:.0} ms with drawing; median {:.2} µs per score; AUC {auc:.4}, AP {ap:.4}",
        run.build.day_frauds,
        replay["ms"].as_f64().unwrap_or(0.0),
        replay["medianUs"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}

#[test]
fn page_refuses_a_damaged_snapshot_in_plain_words_and_takes_a_signed_one_with_its_key() {
    let r = &run().results;
    let refused = text(&r["damagedStatus"]);
    assert!(refused.starts_with("Refused: This snapshot has been altered or damaged"), "{refused}");
    assert!(refused.contains("previous snapshot is still in use"), "{refused}");
    assert!(text(&r["afterDamaged"]).contains("tg-demo-"), "the demo snapshot stopped serving");
    let loaded = text(&r["userStatus"]);
    assert!(
        loaded.starts_with("Loaded snapshot.tgs") && loaded.contains("tg-parity-lr-parity-v1"),
        "{loaded}"
    );
    assert_eq!(text(&r["backStatus"]), "Back on the demo snapshot.");
}

#[test]
fn page_screenshot_is_not_blank() -> Result<()> {
    let run = run();
    let file = std::fs::File::open(&run.screenshot)
        .with_context(|| format!("opening {}", run.screenshot.display()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().context("PNG too large")?];
    let info = reader.next_frame(&mut buf)?;
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    ensure!(info.width >= 1000 && info.height >= 1500, "screenshot {}x{}", info.width, info.height);
    let pixels: Vec<&[u8]> = bytes.chunks_exact(channels).collect();
    let luma: Vec<f64> = pixels
        .iter()
        .map(|p| f64::from(p[0]) * 0.3 + f64::from(p[1]) * 0.59 + f64::from(p[2]) * 0.11)
        .collect();
    let mean = luma.iter().sum::<f64>() / luma.len() as f64;
    let variance = luma.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / luma.len() as f64;
    let mut colours: Vec<[u8; 3]> = pixels.iter().map(|p| [p[0], p[1], p[2]]).collect();
    colours.sort_unstable();
    colours.dedup();
    // The plots' colours must be on it: the decline red and the genuine blue.
    let near = |c: [u8; 3]| pixels.iter().filter(|p| (0..3).all(|k| p[k].abs_diff(c[k]) <= 8)).count();
    let (red, blue) = (near([0xc0, 0x39, 0x2b]), near([0x2a, 0x5d, 0xb0]));
    eprintln!(
        "screenshot {}: {}x{}, luma variance {variance:.0}, {} colours, {red} decline-red and {blue} blue pixels",
        run.screenshot.display(),
        info.width,
        info.height,
        colours.len()
    );
    ensure!(variance > 100.0, "the screenshot is nearly uniform (variance {variance})");
    ensure!(colours.len() > 50, "only {} colours", colours.len());
    ensure!(red > 200 && blue > 200, "plots missing: {red} red, {blue} blue pixels");
    Ok(())
}

#[test]
fn reports_page_transfer_size_and_time_to_first_score() {
    let run = run();
    let b = &run.build;
    for f in &b.files {
        eprintln!("page file {:<22} {:>9} B raw {:>9} B gzip", f.path, f.bytes, f.gzip_bytes);
    }
    let page = |p: &str| !p.starts_with("parity/");
    let (raw, gz) = b.total(page);
    let (wasm, wasm_gz) = b.total(|p| p.ends_with(".wasm"));
    let first = run.results["firstScoreMs"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "page total (html + css + js + wasm + demo snapshot, key and day): {raw} B raw, {gz} B gzip; wasm {wasm} / {wasm_gz} B (wasm-opt: {}); first score {first:.0} ms after navigation; build {:.0} s",
        b.wasm_opt, run.build_secs
    );
    assert!(first.is_finite() && first > 0.0, "no first score time");
    assert!(wasm > 10_000 && wasm < 1_000_000, "wasm size {wasm}");
}
