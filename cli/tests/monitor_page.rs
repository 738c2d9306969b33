//! The demo page's live monitoring view in real headless Chromium against a real `tollgate serve`:
//! a snapshot built from a simulated history carries its drift reference, the day after it is
//! simulated with doubled amounts (`amount=2x@dayN..N+1`, as `tollgate simulate --shift` does) and
//! scored through `/v1/score`, so the drift alarms fire; the page (built by
//! `tollgate_tests::page::build_page`, served by `tollgate www`) then shows exactly the features,
//! PSIs and alarms that `GET /v1/monitoring` answers, `TX_AMOUNT` among the alarmed, and says in
//! plain words when the host cannot be reached. Driven by playwright-core (`tests/js/monitor.mjs`).
//!
//! Tools as for `tests/tests/page.rs`: `TOLLGATE_CHROMIUM` (else `/usr/bin/chromium`),
//! `TOLLGATE_WASM_BINDGEN` (else `~/.cargo/bin/wasm-bindgen`), node with `node_modules/` at the
//! workspace root (`npm ci`).

#![cfg(unix)]

use exporter::NoProgress;
use exporter::simulate::{SimulationConfig, simulate};
use exporter::snapshot::{Decisioning, build_with};
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use serde_json::Value;
use std::time::Instant;
use tollgate_tests::page::{Tools, build_page};
use tollgate_tests::parity::{logistic, signer};

mod common;

use common::{Result, Server, TOKEN, Www, agent, drive_page, target_dir};

/// The day after the snapshot, scored live with its amounts doubled. The reference (the 14 days
/// before) starts after the first 37 days, in which the 30-day windows (delayed 7 days) fill.
const LIVE_DAY: u32 = 51;

/// The rows of the view as the script read them, `(feature, PSI as printed, alarm shown)`.
fn shown(rows: &Value) -> Result<Vec<(String, String, bool)>> {
    let rows = rows.as_array().ok_or("no rows")?;
    Ok(rows
        .iter()
        .map(|r| {
            let state = r["state"].as_str().unwrap_or_default();
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["psi"].as_str().unwrap_or_default().to_string(),
                state.contains("ALARM"),
            )
        })
        .collect())
}

#[test]
fn the_page_shows_the_hosts_drift_report_and_its_alarms() -> Result<()> {
    let started = Instant::now();
    let root = target_dir()?.join("www-page");
    let site = root.join("monitor-site");
    build_page(&site, &Tools::find(&root.join("cargo")))?;
    let www = Www::start(&site)?;
    let built = started.elapsed();

    // The history, its snapshot with a drift reference, and the shifted live day.
    let dir = tempfile::tempdir()?;
    let config = SimulationConfig {
        seed: 9,
        customers: 1_500,
        terminals: 3_000,
        days: LIVE_DAY + 1,
        shift: Some(format!("amount=2x@day{LIVE_DAY}..{}", LIVE_DAY + 1).parse()?),
        ..Default::default()
    };
    let tx = simulate(&config, &NoProgress)?;
    let as_of = Timestamp(config.start.0 + i64::from(LIVE_DAY) * 86_400);
    let model = logistic();
    let decisioning =
        Decisioning { model: Some((&model, "lr-monitor-page")), reference_days: 14, ..Default::default() };
    let built_snapshot =
        build_with(&tx, &FeatureSchema::handbook(), as_of, as_of, &signer(), &decisioning, &NoProgress)?;
    assert!(built_snapshot.meta.reference.is_some(), "the snapshot carries no reference");
    std::fs::write(dir.path().join("a.tgs"), &built_snapshot.bytes)?;
    std::fs::write(dir.path().join("edge.key"), signer().edge_key().to_text())?;
    std::fs::write(dir.path().join("admin.token"), format!("{TOKEN}\n"))?;
    let server = Server::start(dir.path(), &["--snapshot", "a.tgs"])?;

    let http = agent(None)?;
    let live = tx.time.partition_point(|t| *t < as_of)..tx.len();
    let scored = live.len();
    assert!(scored > 1_500, "only {scored} live transactions");
    for i in live {
        let request = tx.score_request(i);
        let mut answer = http
            .post(&format!("{}/v1/score", server.base))
            .header("content-type", "application/json")
            .send(request.as_bytes())?;
        let status = answer.status();
        assert_eq!(status, 200, "{request}: {}", answer.body_mut().read_to_string()?);
    }
    // Two bad requests, for the field counts.
    for bad in [
        r#"{"customer_id":"1","terminal_id":"2","time":1}"#,
        r#"{"customer_id":"1","terminal_id":"2","amount":-5,"time":1}"#,
    ] {
        let r = http
            .post(&format!("{}/v1/score", server.base))
            .header("content-type", "application/json")
            .send(bad)?;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let mut r = http.get(&format!("{}/v1/monitoring", server.base)).call()?;
    let report: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
    let alarms: Vec<&str> =
        report["alarms"].as_array().ok_or("alarms")?.iter().filter_map(Value::as_str).collect();
    assert!(
        alarms.contains(&"TX_AMOUNT"),
        "the host does not alarm on TX_AMOUNT: {alarms:?}\nsamples {} requests {} unscored {} (0 samples: \
         a module older than ABI 1.2, without tg_last_features?)\n{}",
        report["samples"],
        report["requests"],
        report["unscored"],
        report["features"][0]
    );
    let series: Vec<&Value> = report["features"]
        .as_array()
        .ok_or("features")?
        .iter()
        .chain(report["score"].as_object().map(|_| &report["score"]))
        .collect();
    assert!(series.len() > 10, "{} series", series.len());

    // The browser.
    // An address where nothing listens: a port just freed.
    let unreachable = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", l.local_addr()?)
    };
    let browser_started = Instant::now();
    let run = drive_page(
        "monitor",
        &root,
        serde_json::json!({
            "url": format!("{}/index.html", www.origin),
            "host": server.base,
            "unreachable": unreachable,
        }),
    )?;
    let (r, screenshot) = (run.results, run.screenshot);
    let browser = browser_started.elapsed();

    // The only console error: Chromium's note of the refused connection.
    let console = r["consoleErrors"].as_array().ok_or("consoleErrors")?;
    assert!(
        console.iter().all(|e| e["after"] == "loaded"
            && e["text"].as_str().is_some_and(|t| t.contains("ERR_CONNECTION_REFUSED"))),
        "console errors: {console:?}"
    );
    assert_eq!(r["startErrors"], serde_json::json!([]), "the page did not start");
    assert_eq!(
        r["external"],
        serde_json::json!([]),
        "requests to hosts other than the page's and the named ones"
    );

    // Nothing listening: a plain sentence in the alert, no table.
    let said = r["unreachable"]["error"].as_str().unwrap_or_default();
    assert_eq!(
        said,
        format!("Could not reach {unreachable}: is tollgate serve running there, and is the address right?")
    );
    assert_eq!(r["unreachable"]["role"], "alert");
    assert_eq!(r["unreachable"]["tableHidden"], true);

    // The report: every feature and the score, in the host's order, with its PSI as printed and
    // its alarm; the alarm list; the window; the field counts.
    assert_eq!(r["error"], "");
    let want: Vec<(String, String, bool)> = series
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                format!("{:.3}", s["psi"].as_f64().unwrap_or(f64::NAN)),
                s["alarm"] == true,
            )
        })
        .collect();
    let got = shown(&r["rows"])?;
    assert_eq!(got, want, "the page's rows against GET /v1/monitoring");
    let shown_alarms: Vec<&str> = got.iter().filter(|(_, _, a)| *a).map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(shown_alarms, alarms, "alarmed rows");
    assert!(shown_alarms.contains(&"TX_AMOUNT"));
    assert_eq!(r["alarms"], alarms.join(", "));
    for (row, s) in r["rows"].as_array().ok_or("rows")?.iter().zip(&series) {
        let bins = s["reference"].as_array().map_or(0, Vec::len);
        assert_eq!(row["bars"], 2 * bins, "two bars per bin: {row}");
        assert_eq!(row["alarmedClass"], s["alarm"], "{row}");
    }
    assert_eq!(r["snapshot"], report["snapshot_id"]);
    let samples = report["samples"].as_u64().ok_or("samples")?;
    assert_eq!(
        r["samples"],
        format!("{} of {}", thousands(samples), thousands(report["window"].as_u64().ok_or("window")?))
    );
    let fields: Vec<String> = report["invalid_fields"]
        .as_object()
        .ok_or("invalid_fields")?
        .iter()
        .map(|(f, c)| format!("{f}: {} missing, {} invalid", c["missing"], c["invalid"]))
        .collect();
    assert_eq!(fields, ["amount: 1 missing, 1 invalid"]);
    assert_eq!(r["fields"], serde_json::json!(fields));

    // Auto-refresh loaded it again by itself, the same (nothing was scored meanwhile).
    let refreshed = r["refreshedAfterMs"].as_f64().ok_or("refreshedAfterMs")?;
    // Its timer fires every 5 s.
    assert!((4_000.0..9_000.0).contains(&refreshed), "refreshed after {refreshed} ms");
    assert_eq!(r["errorAfterRefresh"], "");
    assert_eq!(shown(&r["rowsAfterRefresh"])?, want);

    let screenshot_bytes = std::fs::metadata(&screenshot)?.len();
    assert!(screenshot_bytes > 20_000, "screenshot of {screenshot_bytes} B");
    eprintln!(
        "monitor page: {} series, alarms {alarms:?}, {samples} samples; page built in {:.1} s, browser {:.1} s, whole test {:.1} s; screenshot {}",
        series.len(),
        built.as_secs_f64(),
        browser.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        screenshot.display()
    );
    Ok(())
}

/// `n` with thousands separated by commas, as the page's `toLocaleString('en')` writes it.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
