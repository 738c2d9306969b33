//! The demo page's review queue in real headless Chromium against a real `tollgate serve`: the
//! page (built by `tollgate_tests::page::build_page`, served by `tollgate www`) loads the host's
//! review decisions with the analyst's token, shows the rows `GET /v1/reviews` returns in its
//! order, and publishes a "Fraud" and a "Genuine" verdict, which a real consumer then reads from
//! the labels topic of a real Kafka-protocol broker (librdkafka's mock cluster in this process).
//! A wrong token is refused in plain words. Driven by playwright-core (`tests/js/review.mjs`).
//!
//! Tools as for `tests/tests/page.rs`: `TOLLGATE_CHROMIUM` (else `/usr/bin/chromium`),
//! `TOLLGATE_WASM_BINDGEN` (else `~/.cargo/bin/wasm-bindgen`), node with `node_modules/` at the
//! workspace root (`npm ci`).

#![cfg(unix)]

use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use serde_json::Value;
use std::time::Instant;
use tollgate_tests::kafka::read_topic;
use tollgate_tests::page::{Tools, build_page};

mod common;

use common::{History, Result, Server, TOKEN, Www, agent, drive_page, target_dir};

/// Rows the page is asked to show.
const LIMIT: usize = 12;

#[test]
fn the_page_lists_the_hosts_reviews_and_publishes_verdicts_on_the_labels_topic() -> Result<()> {
    let started = Instant::now();
    // The page, built as `cargo xtask demo` builds it (the www crate's cargo cache is shared
    // with tests/tests/page.rs), served by `tollgate www`.
    let root = target_dir()?.join("www-page");
    let site = root.join("review-site");
    build_page(&site, &Tools::find(&root.join("cargo")))?;
    let www = Www::start(&site)?;
    let built = started.elapsed();

    // The broker and a host that logs decisions and publishes verdicts.
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("labels", 2, 1)?;
    let dir = tempfile::tempdir()?;
    let history = History::new(dir.path())?;
    let last_day = history.last_day()?;
    history.write_snapshot("a.tgs", "tg-review-page", last_day)?;
    let brokers = cluster.bootstrap_servers();
    let server = Server::start(
        dir.path(),
        &[
            "--snapshot",
            "a.tgs",
            "--decision-log",
            "log",
            "--labels-topic",
            "labels",
            "--kafka-brokers",
            &brokers,
            "--allow-origin",
            &www.origin,
        ],
    )?;

    // Decisions: the last day's transactions scored through the host; the policy reviews some.
    let http = agent(None)?;
    let tx = &history.tx;
    let mut reviews = 0;
    for i in tx.time.partition_point(|t| *t < last_day)..tx.len() {
        let request = tx.score_request(i);
        let mut r = http
            .post(&format!("{}/v1/score", server.base))
            .header("content-type", "application/json")
            .send(request.as_bytes())?;
        let answer: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
        if answer["decision"] == "review" {
            reviews += 1;
        }
    }
    assert!(reviews >= 3, "only {reviews} review decisions on the last day");
    let mut r = http
        .get(&format!("{}/v1/reviews?limit={LIMIT}", server.base))
        .header("authorization", &format!("Bearer {TOKEN}"))
        .call()?;
    let expected: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
    let expected = expected["reviews"].as_array().ok_or("no reviews")?.clone();
    assert_eq!(expected.len(), reviews.min(LIMIT), "GET /v1/reviews");
    let id = |v: &Value| v["transaction_id"].as_str().unwrap_or_default().to_string();
    // Fraud on the newest, genuine on the third newest.
    let verdicts = [(id(&expected[0]), true), (id(&expected[2]), false)];

    // The browser.
    let browser_started = Instant::now();
    let run = drive_page(
        "review",
        &root,
        serde_json::json!({
            "url": format!("{}/index.html", www.origin),
            "host": server.base,
            "token": TOKEN,
            "limit": LIMIT,
            "verdicts": verdicts.iter().map(|(id, fraud)| serde_json::json!({"id": id, "fraud": fraud})).collect::<Vec<_>>(),
        }),
    )?;
    let (r, screenshot) = (run.results, run.screenshot);
    let browser = browser_started.elapsed();

    // The only console error: Chromium's note of the wrong token's 401.
    let console = r["consoleErrors"].as_array().ok_or("consoleErrors")?;
    assert!(
        console.iter().all(|e| e["after"] == "loaded"
            && e["text"]
                == "Failed to load resource: the server responded with a status of 401 (Unauthorized)"),
        "console errors: {console:?}"
    );
    assert_eq!(r["startErrors"], serde_json::json!([]), "the page did not start");
    assert_eq!(
        r["external"],
        serde_json::json!([]),
        "requests to hosts other than the page's and the analyst's"
    );

    // A wrong token: a plain refusal, no rows.
    let wrong = r["wrongToken"]["error"].as_str().unwrap_or_default();
    assert!(wrong.starts_with("The host refused the token"), "{wrong}");
    assert!(wrong.contains("wrong bearer token"), "{wrong}");
    assert_eq!(r["wrongToken"]["rows"], 0);

    // The rows are the host's, in its order (newest first), with their amounts and reasons.
    assert_eq!(r["error"], "", "the right token");
    let rows = r["rows"].as_array().ok_or("no rows")?;
    assert_eq!(rows.len(), expected.len());
    let mut previous = i64::MAX;
    for (row, want) in rows.iter().zip(&expected) {
        let cells: Vec<&str> =
            row["cells"].as_array().ok_or("cells")?.iter().filter_map(Value::as_str).collect();
        assert_eq!(row["id"].as_str(), Some(id(want).as_str()));
        assert_eq!(cells[1], id(want));
        assert_eq!(cells[2], format!("{:.2}", want["amount"].as_f64().ok_or("amount")?), "{row}");
        assert_eq!(cells[3], format!("{:.4}", want["score"].as_f64().ok_or("score")?), "{row}");
        let at = want["decided_at_us"].as_i64().ok_or("decided_at_us")?;
        assert!(at <= previous, "not newest first: {want}");
        previous = at;
        for reason in want["reasons"].as_array().ok_or("reasons")? {
            let feature = reason["feature"].as_str().unwrap_or_default();
            assert!(!feature.is_empty() && cells[5].contains(feature), "{feature} not in {}", cells[5]);
        }
        assert_eq!(cells[6], "open");
    }
    // The token is in the tab's sessionStorage only: not in the address nor in localStorage.
    assert!(!r["url"].as_str().unwrap_or_default().contains(TOKEN), "{}", r["url"]);
    assert_eq!(r["sessionToken"], TOKEN);
    assert!(!r["localStorage"].as_str().unwrap_or_default().contains(TOKEN));

    // The verdicts: published, with where they went, and marked on reload.
    assert_eq!(r["errorAfterVerdicts"], "");
    let count = r["countAfterVerdicts"].as_str().unwrap_or_default();
    let says = format!("{} review decisions, {} without a verdict", rows.len(), rows.len() - 2);
    assert!(count.starts_with(&says), "{count}");
    for ((id, fraud), shown) in verdicts.iter().zip(r["verdicts"].as_array().ok_or("verdicts")?) {
        assert_eq!(shown["state"], if *fraud { "fraud" } else { "genuine" });
        let note = shown["note"].as_str().unwrap_or_default();
        assert!(note.starts_with("published (partition ") && note.contains(", offset "), "{note}");
        assert_eq!(shown["label"], format!("Mark transaction {id} as fraud"));
    }
    let reloaded = r["reloaded"].as_array().ok_or("reloaded")?;
    for (id, fraud) in &verdicts {
        let row = reloaded.iter().find(|row| row["id"] == id.as_str()).ok_or("a judged row went away")?;
        let state = row["cells"][6].as_str().unwrap_or_default();
        assert!(state.starts_with(if *fraud { "fraud" } else { "genuine" }), "{row}");
    }

    // Exactly those two messages on the labels topic, as the continuous exporter reads them.
    let messages = read_topic(&brokers, "labels", 2, 2)?;
    let mut got: Vec<(String, bool)> = Vec::new();
    for m in &messages {
        let label = pipeline::message::Label::decode(m.payload().ok_or("no payload")?)
            .map_err(|e| format!("the exporter refuses the label: {e:?}"))?;
        assert_eq!(m.key(), Some(&*label.transaction_id), "keyed by transaction id");
        got.push((String::from_utf8_lossy(&label.transaction_id).into_owned(), label.fraud));
    }
    got.sort();
    let mut want = verdicts.to_vec();
    want.sort();
    assert_eq!(got, want, "the labels topic");

    let screenshot_bytes = std::fs::metadata(&screenshot)?.len();
    assert!(screenshot_bytes > 20_000, "screenshot of {screenshot_bytes} B");
    eprintln!(
        "review page: {} of {reviews} review decisions shown, 2 verdicts published and read back; page built in {:.1} s, browser {:.1} s; screenshot {}",
        rows.len(),
        built.as_secs_f64(),
        browser.as_secs_f64(),
        screenshot.display()
    );
    Ok(())
}
