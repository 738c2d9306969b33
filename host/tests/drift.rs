//! Drift monitoring end to end: a snapshot built from a simulated history carries its reference,
//! the real `scorer.wasm` in wasmtime scores the day after it, and the host's monitor alarms when
//! that day's amounts are doubled by the simulator (and not when they are not), in the library
//! and over HTTP (`/metrics`, `/v1/monitoring`).

use anyhow::{Context, Result, ensure};
use exporter::NoProgress;
use exporter::simulate::{SimulationConfig, simulate};
use exporter::snapshot::{Decisioning, build_with};
use host::monitor::{MonitorConfig, MonitorReport};
use host::service::{ServiceConfig, spawn};
use host::{Scorer, ScorerConfig};
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use serde_json::Value;
use tollgate_tests::parity::{logistic, signer};

/// The day after the snapshot: the one scored live, and shifted in the drifting stream.
const LIVE_DAY: u32 = 70;

/// A history of `LIVE_DAY + 1` days, its snapshot as of the live day's midnight (reference: the
/// 28 days before, long after the first 37 days in which windows fill) and the live day's
/// requests in JSON.
fn history(shift: Option<&str>) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let config = SimulationConfig {
        seed: 9,
        customers: 2_000,
        terminals: 4_000,
        days: LIVE_DAY + 1,
        shift: shift.map(str::parse).transpose()?,
        ..Default::default()
    };
    let tx = simulate(&config, &NoProgress)?;
    let as_of = Timestamp(config.start.0 + i64::from(LIVE_DAY) * 86_400);
    let model = logistic();
    let decisioning =
        Decisioning { model: Some((&model, "lr-drift")), reference_days: 28, ..Default::default() };
    let built =
        build_with(&tx, &FeatureSchema::handbook(), as_of, as_of, &signer(), &decisioning, &NoProgress)?;
    ensure!(built.meta.reference.is_some(), "the snapshot carries no reference");
    let start = tx.time.partition_point(|t| *t < as_of);
    let requests = (start..tx.len())
        .map(|i| {
            serde_json::json!({
                "transaction_id": tx.transaction_id[i],
                "customer_id": tx.customers.id(tx.customer[i]),
                "terminal_id": tx.terminals.id(tx.terminal[i]),
                "amount": tx.amount[i],
                "time": tx.time[i].0,
            })
            .to_string()
            .into_bytes()
        })
        .collect();
    Ok((built.bytes, requests))
}

fn scorer(snapshot: &[u8]) -> Result<Scorer> {
    let wasm = std::fs::read(tollgate_tests::scorer_wasm()?)?;
    let config = ScorerConfig {
        monitor: Some(MonitorConfig { log: false, ..Default::default() }),
        ..Default::default()
    };
    let scorer = Scorer::new(config, &wasm, &signer().edge_key().to_text())?;
    scorer.load_snapshot(snapshot.to_vec())?;
    Ok(scorer)
}

fn psi_table(report: &MonitorReport) -> String {
    report.features.iter().chain(&report.score).map(|s| format!("{} {:.3}\n", s.name, s.psi)).collect()
}

/// The features the doubled amounts move: the amount itself, the customers' 1-day mean amount
/// (this transaction is part of it), and the score of a model that weighs the amount.
const MOVED: [&str; 3] = ["TX_AMOUNT", "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW", "score"];

#[test]
fn doubled_amounts_for_a_day_raise_the_drift_alarm_and_an_unshifted_day_does_not() -> Result<()> {
    let (plain_snapshot, plain) = history(None)?;
    let shift = format!("amount=2x@day{LIVE_DAY}..{}", LIVE_DAY + 1);
    let (shifted_snapshot, shifted) = history(Some(&shift))?;
    // The shift starts after the snapshot: both histories give the very same snapshot.
    ensure!(plain_snapshot == shifted_snapshot, "the shift changed the days before it");
    ensure!(plain.len() > 3_000, "{} live requests", plain.len());

    let calm = scorer(&plain_snapshot)?;
    for r in &plain {
        calm.score(r);
    }
    let report = calm.monitor().context("monitoring is on")?.report();
    eprintln!("unshifted day, PSI:\n{}", psi_table(&report));
    ensure!(report.samples == plain.len(), "{} samples of {}", report.samples, plain.len());
    ensure!(
        report.alarms.is_empty(),
        "alarms on an unshifted day: {:?}\n{}",
        report.alarms,
        psi_table(&report)
    );
    // Not even for a while: no alarm started at any point of the day.
    ensure!(report.events.is_empty(), "alarm events on an unshifted day: {:?}", report.events);

    let drifting = scorer(&shifted_snapshot)?;
    for r in &shifted {
        drifting.score(r);
    }
    let report = drifting.monitor().context("monitoring is on")?.report();
    eprintln!("doubled amounts, PSI:\n{}", psi_table(&report));
    for name in MOVED {
        ensure!(report.alarms.iter().any(|a| a == name), "no alarm on {name}: {:?}", report.alarms);
    }
    // Counts and risks do not depend on amounts: they stay quiet.
    for quiet in ["CUSTOMER_ID_NB_TX_1DAY_WINDOW", "TERMINAL_ID_RISK_7DAY_WINDOW"] {
        ensure!(!report.alarms.iter().any(|a| a == quiet), "alarm on {quiet}: {:?}", report.alarms);
    }
    // Each alarm started once and none came and went.
    let events: Vec<_> = report.events.iter().map(|e| (e.feature.clone(), e.alarm)).collect();
    let want: Vec<_> = report.alarms.iter().map(|a| (a.clone(), "started")).collect();
    ensure!(events == want, "alarm events {events:?}, alarms {:?}", report.alarms);
    Ok(())
}

fn get(url: &str) -> Result<(String, Option<String>)> {
    let mut response = ureq::get(url).call()?;
    let cors =
        response.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()).map(String::from);
    Ok((response.body_mut().read_to_string()?, cors))
}

#[test]
fn metrics_and_the_monitoring_endpoint_show_the_alarm_over_http() -> Result<()> {
    let shift = format!("amount=2x@day{LIVE_DAY}..{}", LIVE_DAY + 1);
    let (snapshot, requests) = history(Some(&shift))?;
    let running = spawn(scorer(&snapshot)?, ServiceConfig::default(), "127.0.0.1:0".parse()?, 2)?;
    let base = format!("http://{}", running.addr);
    // Half the day one by one, half in batches of 100; and a few bad requests.
    let (single, batched) = requests.split_at(requests.len() / 2);
    for r in single {
        ureq::post(&format!("{base}/v1/score")).header("content-type", "application/json").send(&r[..])?;
    }
    for chunk in batched.chunks(100) {
        let body =
            format!("[{}]", chunk.iter().map(|r| String::from_utf8_lossy(r)).collect::<Vec<_>>().join(","));
        ureq::post(&format!("{base}/v1/score/batch"))
            .header("content-type", "application/json")
            .send(&body)?;
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for bad in [
        r#"{"customer_id":"1","terminal_id":"2","time":1}"#,
        r#"{"customer_id":"1","terminal_id":"2","amount":-5,"time":1}"#,
        r#"{"customer_id":"1","terminal_id":"2","amount":"x","time":1}"#,
    ] {
        agent.post(&format!("{base}/v1/score")).header("content-type", "application/json").send(bad)?;
    }

    let (text, cors) = get(&format!("{base}/v1/monitoring"))?;
    ensure!(cors.as_deref() == Some("*"), "CORS header: {cors:?}");
    let report: Value = serde_json::from_str(&text)?;
    ensure!(report["samples"] == requests.len(), "samples: {}", report["samples"]);
    let alarms: Vec<&str> =
        report["alarms"].as_array().context("alarms")?.iter().filter_map(Value::as_str).collect();
    for name in MOVED {
        ensure!(alarms.contains(&name), "no alarm on {name}: {alarms:?}");
    }
    let amount = &report["features"][0];
    ensure!(amount["name"] == "TX_AMOUNT" && amount["alarm"] == true, "{amount}");
    let (edges, reference, live) = (&amount["edges"], &amount["reference"], &amount["live"]);
    let bins = edges.as_array().map_or(0, Vec::len) + 1;
    ensure!(reference.as_array().map(Vec::len) == Some(bins) && live.as_array().map(Vec::len) == Some(bins));
    ensure!(report["invalid_fields"]["amount"] == serde_json::json!({"missing": 1, "invalid": 2}), "{text}");

    let (metrics, _) = get(&format!("{base}/metrics"))?;
    for line in [
        r#"tollgate_drift_alarm{feature="TX_AMOUNT"} 1"#,
        r#"tollgate_drift_alarm{feature="score"} 1"#,
        r#"tollgate_drift_alarm{feature="CUSTOMER_ID_NB_TX_1DAY_WINDOW"} 0"#,
        r#"tollgate_invalid_fields_total{field="amount",problem="missing"} 1"#,
        r#"tollgate_invalid_fields_total{field="amount",problem="invalid"} 2"#,
    ] {
        ensure!(metrics.lines().any(|l| l == line), "no line {line} in\n{metrics}");
    }
    let psi = |prefix: &str| {
        metrics.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|v| v.trim().parse::<f64>().ok())
    };
    ensure!(psi(r#"tollgate_feature_psi{feature="TX_AMOUNT"}"#).is_some_and(|p| p > 0.2), "{metrics}");
    ensure!(psi("tollgate_score_psi").is_some_and(|p| p > 0.2), "{metrics}");
    running.stop()?;
    Ok(())
}
