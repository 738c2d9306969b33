//! `tollgate train` and `tollgate evaluate` end to end on real files: a simulated history, a
//! model file and its card, a report, a scores file whose recomputed metrics equal the printed
//! ones, and the generic CSV mode with its errors.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

fn tollgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).current_dir(dir).output().expect("run tollgate")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The number printed after `label` in `text`.
fn number_after(text: &str, label: &str) -> f64 {
    let at = text.find(label).unwrap_or_else(|| panic!("{label:?} in {text}")) + label.len();
    text[at..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn trains_evaluates_and_writes_a_report_and_recomputable_scores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = ["simulate", "--seed", "5", "--days", "35", "--customers", "400", "--terminals", "800"];
    ok(&tollgate(d, &[&sim[..], &["-o", "tx.parquet"]].concat()));
    let train = ok(&tollgate(
        d,
        &[
            "train",
            "--input",
            "tx.parquet",
            "--model",
            "gbdt",
            "--trees",
            "20",
            "--max-depth",
            "3",
            "--train-start",
            "2018-04-11",
            "--output",
            "model.tgm",
        ],
    ));
    assert!(train.contains("| holdout (after a 7-day delay) |"), "{train}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("model.tgm.json")).unwrap()).unwrap();
    assert_eq!(card["family"], "gbdt");
    assert_eq!(card["train_start"], "2018-04-11");
    assert_eq!(card["features"].as_array().unwrap().len(), 15);

    let eval = ok(&tollgate(
        d,
        &[
            "evaluate",
            "--input",
            "tx.parquet",
            "--model",
            "model.tgm",
            "--report",
            "report",
            "--format",
            "md",
            "--scores",
            "scores.csv",
        ],
    ));
    assert!(eval.contains("2018-04-25 00:00:00 .. 2018-05-02 00:00:00"), "default test week: {eval}");
    let page = std::fs::read_to_string(d.join("report/index.md")).unwrap();
    assert!(page.contains("![ROC curve](roc.svg)") && page.contains("| rule | threshold |"), "{page}");
    // The metrics recomputed from the scores file are the printed ones.
    let text = std::fs::read_to_string(d.join("scores.csv")).unwrap();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        scores.push(cells[1].parse::<f64>().unwrap());
        labels.push(cells[2] == "1");
    }
    let auc = models::metrics::roc_auc(&scores, &labels).unwrap();
    let ap = models::metrics::average_precision(&scores, &labels).unwrap();
    assert_eq!(format!("{auc:.4}"), format!("{:.4}", number_after(&eval, "AUC ROC")));
    assert_eq!(format!("{ap:.4}"), format!("{:.4}", number_after(&eval, "average precision")));
}

#[test]
fn the_ratio_schema_goes_from_training_to_a_snapshot_through_the_model_card() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = ["simulate", "--seed", "6", "--days", "35", "--customers", "300", "--terminals", "600"];
    ok(&tollgate(d, &[&sim[..], &["-o", "tx.parquet"]].concat()));
    let train = [
        "train",
        "--input",
        "tx.parquet",
        "--trees",
        "10",
        "--max-depth",
        "3",
        "--train-start",
        "2018-04-11",
    ];
    ok(&tollgate(d, &[&train[..], &["--schema", "handbook-ratios", "--output", "model.tgm"]].concat()));
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("model.tgm.json")).unwrap()).unwrap();
    let names = card["features"].as_array().unwrap();
    assert_eq!(names.len(), 18);
    assert_eq!(names[17], "CUSTOMER_ID_AMOUNT_TO_AVG_30DAY_WINDOW");
    // Without --schema, evaluate and snapshot build take the model card's.
    let eval = ok(&tollgate(d, &["evaluate", "--input", "tx.parquet", "--model", "model.tgm"]));
    assert!(eval.contains("AUC ROC"), "{eval}");
    ok(&tollgate(d, &["keys", "new", "--out", "keys"]));
    let build = ["snapshot", "build", "tx.parquet", "--model", "model.tgm", "-o", "snap.tgs"];
    ok(&tollgate(d, &build));
    let inspect = ok(&tollgate(d, &["snapshot", "inspect", "snap.tgs"]));
    assert!(inspect.contains("(18 features)"), "{inspect}");
    // Naming another schema is refused, with the way out.
    let wrong = tollgate(d, &[&build[..], &["--schema", "handbook"]].concat());
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("the model reads 18 features, the snapshot's schema has 15"), "{err}");
}

#[test]
fn trains_on_any_numeric_csv_and_names_bad_cells() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = String::from("x,noise,y\n");
    for i in 0..300 {
        let x = (i * 37 % 100) as f64 / 100.0;
        writeln!(csv, "{x},{},{}", i % 7, u8::from(x > 0.8)).unwrap();
    }
    std::fs::write(d.join("data.csv"), &csv).unwrap();
    let out = ok(&tollgate(
        d,
        &[
            "train",
            "--csv",
            "data.csv",
            "--label",
            "y",
            "--model",
            "lr",
            "--split",
            "random:0.3",
            "--seed",
            "4",
            "--output",
            "lr.tgm",
        ],
    ));
    assert!(out.contains("training logistic on 210 rows"), "{out}");
    assert!(number_after(&out, "validation AUC ROC") > 0.99, "{out}");
    assert!(out.contains("F1"), "{out}");
    assert!(d.join("lr.tgm").exists() && d.join("lr.tgm.json").exists());

    std::fs::write(d.join("bad.csv"), "x,y\n1,0\n2,1\nlots,0\n").unwrap();
    let bad = tollgate(d, &["train", "--csv", "bad.csv", "--label", "y", "--output", "m.tgm"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("line 4, column x: \"lots\" is not a number"), "{err}");
}
