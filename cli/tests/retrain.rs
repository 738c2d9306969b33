//! `tollgate retrain`, `tollgate rollback` and `tollgate snapshot build --models` end to end on a
//! simulated history: a first candidate promoted into an empty registry, a better one on a later
//! window promoted over it, an honestly weaker one (one training day, three stumps) refused with
//! the numbers, rollbacks, a snapshot carrying the current model's lineage that still scores in
//! the real wasmtime host, and the errors (missing or damaged registry, unknown id, no labels).

use exporter::features::{Cadence, compute_features};
use exporter::ingest::{IngestOptions, read_transactions};
use models::Holdout;
use models::registry::Registry;
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::snapshot::{EdgeKey, Snapshot};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn tollgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).current_dir(dir).output().expect("run tollgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs tollgate, expecting exit code `code`; returns stdout.
fn expect(dir: &Path, args: &[&str], code: i32) -> String {
    let o = tollgate(dir, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "tollgate {args:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

/// Runs tollgate, expecting it to fail; returns stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let o = tollgate(dir, args);
    assert_eq!(o.status.code(), Some(1), "tollgate {args:?} should fail: {}", stdout(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn current(dir: &Path) -> String {
    json(&dir.join("reg/registry.json"))["current"].as_str().unwrap().to_string()
}

/// The report of the last retraining in the registry.
fn last_report(d: &Path) -> Value {
    let index = json(&d.join("reg/registry.json"));
    let event = index["history"].as_array().unwrap().last().unwrap().clone();
    json(&d.join("reg").join(event["report"].as_str().unwrap()).join("report.json"))
}

fn day(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[test]
fn retrains_promotes_refuses_rolls_back_and_records_lineage_in_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = ["simulate", "--seed", "5", "--days", "70", "--customers", "500", "--terminals", "1000"];
    expect(d, &[&sim[..], &["-o", "tx.parquet"]].concat(), 0);
    let tx = read_transactions(&d.join("tx.parquet"), &IngestOptions::default(), &exporter::NoProgress)
        .unwrap()
        .transactions;

    // 1. An early window into an empty registry: promoted.
    let base = ["retrain", "--input", "tx.parquet", "--models", "reg"];
    let out = expect(d, &[&base[..], &["--as-of", "2018-05-10", "--model", "lr"]].concat(), 0);
    let first = current(d);
    assert!(out.contains(&format!("PROMOTED {first}: no current model")), "{out}");
    assert!(first.starts_with("logistic-"), "{first}");
    let r = last_report(d);
    assert_eq!(r["verdict"], "promoted");
    assert!(r["current"].is_null());
    // Labels are known before 2018-05-03 (7-day delay): every transaction from then up to as-of
    // is left out, and the training days end before it.
    let (labelled_end, as_of) = (day("2018-05-03"), day("2018-05-10"));
    let unlabelled = tx.time.iter().filter(|&&t| t >= labelled_end && t < as_of).count();
    assert!(unlabelled > 1000);
    assert_eq!(r["unlabelled_excluded"], unlabelled);
    assert!(
        out.contains(&format!("{unlabelled} transactions after it not used (label not known yet)")),
        "{out}"
    );
    let lineage = &json(&d.join("reg/registry.json"))["models"][0];
    assert!(day(lineage["train_to"].as_str().unwrap()) <= labelled_end, "{lineage}");
    assert_eq!(lineage["label_delay_days"], 7);

    // 2. A later window, more days and a stronger model: promoted, both models measured on the
    // same held-back days.
    let later = ["--as-of", "2018-06-09", "--train-days", "14"];
    let gbdt = ["--model", "gbdt", "--trees", "50", "--max-depth", "4"];
    let out = expect(d, &[&base[..], &later[..], &gbdt[..]].concat(), 0);
    let second = current(d);
    assert_ne!(second, first);
    let r = last_report(d);
    assert_eq!(r["verdict"], "promoted", "{out}");
    assert_eq!(r["current"]["model_id"], first.as_str());
    assert_eq!(r["eval_range"], "2018-05-26 .. 2018-06-02");
    assert_eq!(r["cadence"], "as served every 3600 s");
    assert!(
        out.contains(&format!("| {second} | candidate |")) && out.contains(&format!("| {first} | current |"))
    );
    let page = std::fs::read_to_string(
        d.join("reg")
            .join(json(&d.join("reg/registry.json"))["history"][1]["report"].as_str().unwrap())
            .join("report.md"),
    )
    .unwrap();
    assert!(page.contains(&format!("| {first} | current | logistic | 2018-04-12 .. 2018-04-19 |")), "{page}");
    // Each model's curves on the held-back rows, beside the report.
    let run =
        d.join("reg").join(json(&d.join("reg/registry.json"))["history"][1]["report"].as_str().unwrap());
    for role in ["candidate", "current"] {
        let plots = std::fs::read_to_string(run.join(role).join("index.md")).unwrap();
        assert!(
            plots.contains("![ROC curve](roc.svg)") && run.join(role).join("roc.svg").exists(),
            "{plots}"
        );
    }
    // Recomputed here from the registry's model files on the report's held-back rows, both
    // models' average precision is what the report says.
    let registry = Registry::open(&d.join("reg")).unwrap();
    let table =
        compute_features(&tx, &FeatureSchema::handbook(), Cadence::Every(3600), &exporter::NoProgress)
            .unwrap();
    let holdout = Holdout { train_start: day("2018-05-05"), train_days: 14, delay_days: 7, test_days: 7 };
    let test = holdout.split(&tx, &table).unwrap().test;
    assert_eq!(r["eval_rows"], test.len());
    for (id, role) in [(&second, "candidate"), (&first, "current")] {
        let model = registry.load_model(registry.get(id).unwrap()).unwrap();
        let e = test.evaluate(&test.scores(&model), 100).unwrap();
        assert_eq!(r[role]["metrics"]["average_precision"].as_f64().unwrap(), e.average_precision, "{role}");
    }
    assert!(
        r["candidate"]["metrics"]["average_precision"].as_f64()
            > r["current"]["metrics"]["average_precision"].as_f64()
    );

    // 3. A clearly weaker candidate on the same window (one training day, three stumps): refused,
    // exit code 3, the current model unchanged, the numbers in the report and the history.
    let weak = ["--train-days", "1", "--model", "gbdt", "--trees", "3", "--max-depth", "1"];
    let out = expect(d, &[&base[..], &["--as-of", "2018-06-09"], &weak[..]].concat(), 3);
    assert_eq!(current(d), second);
    let r = last_report(d);
    assert_eq!(r["verdict"], "refused");
    let (cand, cur) = (
        r["candidate"]["metrics"]["average_precision"].as_f64().unwrap(),
        r["current"]["metrics"]["average_precision"].as_f64().unwrap(),
    );
    assert!(cand < cur, "{r}");
    let reason = format!("average_precision {cand:.4} does not beat the current model's {cur:.4}");
    assert!(r["reason"].as_str().unwrap().starts_with(&reason), "{r}");
    assert!(out.contains("REFUSED") && out.contains(&format!("the current model stays {second}")), "{out}");
    let index = json(&d.join("reg/registry.json"));
    let event = index["history"].as_array().unwrap().last().unwrap();
    assert_eq!(event["action"], "refused");
    assert_eq!(event["candidate"].as_f64(), Some(cand));
    assert_eq!(event["current"].as_f64(), Some(cur));

    // 4. Rollbacks: to the previous model, to a given one; an unknown id is named.
    let out = expect(d, &["rollback", "--models", "reg"], 0);
    assert!(out.contains(&format!("rolled back from {second} to {first}")), "{out}");
    assert_eq!(current(d), first);
    let err = fails(d, &["rollback", "--models", "reg"]);
    assert!(err.contains("was the first model promoted: there is no previous model"), "{err}");
    let err = fails(d, &["rollback", "--models", "reg", "--to", "gbdt-0000000000000000"]);
    assert!(err.contains("no model gbdt-0000000000000000 in the registry (models: logistic-"), "{err}");
    expect(d, &["rollback", "--models", "reg", "--to", &second], 0);
    assert_eq!(current(d), second);
    let index = json(&d.join("reg/registry.json"));
    let actions: Vec<&str> =
        index["history"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["promoted", "promoted", "refused", "rolled_back", "rolled_back"]);

    // 5. A snapshot of the registry's current model carries its lineage; inspect prints it; it
    // loads through scorer::snapshot with the lineage decoded and scores in the wasmtime host.
    expect(d, &["keys", "new", "--out", "keys"], 0);
    let built = expect(d, &["snapshot", "build", "tx.parquet", "--models", "reg", "-o", "s.tgs"], 0);
    assert!(built.contains(&format!("model            {second}")), "{built}");
    let shown = expect(d, &["snapshot", "inspect", "s.tgs"], 0);
    assert!(shown.contains("trained on 2018-05-05 .. 2018-05-19 (7-day label delay respected), evaluated on 2018-05-26 .. 2018-06-02"), "{shown}");
    assert!(shown.contains(&format!("parent {first}")), "{shown}");
    let key_text = std::fs::read_to_string(d.join("keys/edge.key")).unwrap();
    let key = EdgeKey::from_text(&key_text).unwrap();
    let bytes = std::fs::read(d.join("s.tgs")).unwrap();
    let snapshot = Snapshot::load(&bytes, &[key]).unwrap();
    let lineage = snapshot.meta().lineage.clone().unwrap();
    let registered = registry.get(&second).unwrap();
    assert_eq!(lineage.model_id, second);
    assert_eq!(lineage.kind, "gbdt");
    assert_eq!(lineage.train_range, (day("2018-05-05"), day("2018-05-19")));
    assert_eq!(lineage.parent.as_deref(), Some(first.as_str()));
    assert_eq!(
        lineage.code_version,
        env!("CARGO_PKG_VERSION").to_string()
            + &option_env!("TOLLGATE_GIT_COMMIT").map(|c| format!("+{c}")).unwrap_or_default()
    );
    assert!(
        lineage.metrics.contains(&("average_precision".to_string(), registered.metrics.average_precision))
    );
    let wasm = std::fs::read(tollgate_tests::scorer_wasm().unwrap()).unwrap();
    let host = host::Scorer::new(host::ScorerConfig::default(), &wasm, &key_text).unwrap();
    host.load_snapshot(bytes.clone()).unwrap();
    let request = br#"{"transaction_id":"t-1","customer_id":"42","terminal_id":"7","amount":250.0,"time":"2018-06-09 12:00:00"}"#;
    let scored = host.score(request);
    assert!(scored.fallback.is_none(), "{:?}", scored.fallback);
    let response: Value = serde_json::from_slice(&scored.body).unwrap();
    assert_eq!(response["model_id"], second.as_str(), "{response}");
    let mut native = scorer::score::Scorer::new(snapshot);
    let mut want = Vec::new();
    native.score_bytes(request, &mut want);
    assert_eq!(scored.body, want);
}

#[test]
fn names_a_missing_or_damaged_registry_and_a_window_without_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = ["simulate", "--seed", "3", "--days", "30", "--customers", "200", "--terminals", "400"];
    expect(d, &[&sim[..], &["-o", "tx.csv"]].concat(), 0);
    let err = fails(d, &["rollback", "--models", "nowhere"]);
    assert!(err.contains("nowhere: no model registry here (registry.json is missing)"), "{err}");
    expect(d, &["keys", "new", "--out", "keys"], 0);
    let err = fails(d, &["snapshot", "build", "tx.csv", "--models", "nowhere", "-o", "s.tgs"]);
    assert!(err.contains("no model registry here"), "{err}");

    // As of day 10 with a 7-day delay, the 7 + 7 + 7 days before the labelled end lie before the
    // first transaction.
    let base = ["retrain", "--input", "tx.csv", "--models", "reg", "--model", "lr"];
    let err = fails(d, &[&base[..], &["--as-of", "2018-04-11"]].concat());
    assert!(
        err.contains(
            "no labelled transactions in the training days 2018-03-14 00:00:00 .. 2018-03-21 00:00:00"
        ),
        "{err}"
    );
    assert!(err.contains("labels are known for transactions before 2018-04-04 00:00:00"), "{err}");
    assert!(!d.join("reg/registry.json").exists());
    let err = fails(d, &[&base[..], &["--label-delay", "36h"]].concat());
    assert!(err.contains("--label-delay 1day 12h: give whole days"), "{err}");

    // A registry whose index is cut short, or whose current model's file is gone.
    expect(d, &base, 0);
    let index = d.join("reg/registry.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, &text[..text.len() - 10]).unwrap();
    let err = fails(d, &base);
    assert!(err.contains("reg/registry.json: damaged model registry: EOF while parsing"), "{err}");
    let err = fails(d, &["snapshot", "build", "tx.csv", "--models", "reg", "-o", "s.tgs"]);
    assert!(err.contains("damaged model registry"), "{err}");
    std::fs::write(&index, &text).unwrap();
    // A writer's lock left behind by a killed run: named, and nothing changes until it is removed.
    std::fs::write(d.join("reg/registry.lock"), "pid 4242\n").unwrap();
    let err = fails(d, &["rollback", "--models", "reg", "--to", &current(d)]);
    assert!(
        err.contains(
            "registry.lock exists: another retrain or rollback is changing this registry (pid 4242)"
        ),
        "{err}"
    );
    let err = fails(d, &base);
    assert!(err.contains("registry.lock exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&index).unwrap(), text);
    std::fs::remove_file(d.join("reg/registry.lock")).unwrap();
    let id = current(d);
    std::fs::remove_file(d.join(format!("reg/models/{id}.tgm"))).unwrap();
    let err = fails(d, &["rollback", "--models", "reg"]);
    assert!(
        err.contains(&format!("damaged model registry: model {id}: its file")) && err.contains("is missing"),
        "{err}"
    );
}
