//! `tollgate import` end to end: the committed XGBoost fixture (`tests/fixtures/import/`, made by
//! `tests/fixtures/scripts/make_import_fixtures.py`) imported into a model file checked against
//! xgboost's own predictions, then scored at the edge through `tollgate snapshot build --model`;
//! and the models it refuses, named in the error.

use models::report::ModelCard;
use scorer::model::Model;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tollgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).current_dir(dir).output().expect("run tollgate")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed(o: &Output) -> String {
    assert!(!o.status.success(), "should fail; stdout: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/import").join(name);
    path.to_string_lossy().into_owned()
}

#[test]
fn imports_an_xgboost_model_that_a_snapshot_then_carries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let json = fixture("xgboost_binary_logistic.json");
    let csv = fixture("xgboost_binary_logistic.csv");
    let text = ok(&tollgate(
        d,
        &[
            "import",
            "--xgboost",
            &json,
            "--schema",
            "handbook",
            "--check",
            &csv,
            "--tolerance",
            "1e-6",
            "--output",
            "model.tgm",
        ],
    ));
    assert!(text.contains("imported xgboost 3.2.0, binary:logistic"), "{text}");
    assert!(text.contains("parity against"), "{text}");
    assert!(text.contains("430 rows"), "every fixture row is checked: {text}");
    assert!(text.contains("wrote model.tgm"), "{text}");

    // The file holds exactly what the library imports, covers included (the file names the
    // handbook features in the handbook's order, so --schema handbook moves nothing).
    let written = Model::decode(&std::fs::read(d.join("model.tgm")).unwrap()).expect("a model file");
    let direct = models::import::xgboost::from_json(&std::fs::read(&json).unwrap()).unwrap().model;
    assert_eq!(written, direct);
    let Model::Trees(trees) = &written else { panic!("a tree ensemble") };
    assert!(trees.has_covers(), "sum_hessian became the leaf covers");
    let card = ModelCard::read(&d.join("model.tgm.json")).unwrap();
    assert_eq!(card.family, "gbdt");
    assert_eq!(card.features.len(), 15);
    assert!(card.metrics.get("parity_max_abs_diff").is_some_and(|&m| m <= 1e-6), "{:?}", card.metrics);

    // A snapshot built with it carries the model under the card's id.
    let sim = ["simulate", "--seed", "4", "--days", "40", "--customers", "200", "--terminals", "400"];
    ok(&tollgate(d, &[&sim[..], &["-o", "tx.parquet"]].concat()));
    ok(&tollgate(d, &["keys", "new", "--out", "keys"]));
    let build = ok(&tollgate(
        d,
        &[
            "snapshot",
            "build",
            "tx.parquet",
            "--as-of",
            "2018-05-01",
            "--model",
            "model.tgm",
            "-o",
            "snap.tgs",
        ],
    ));
    assert!(build.contains(&card.model_id), "the card's model id: {build}");
    let inspect = ok(&tollgate(d, &["snapshot", "inspect", "snap.tgs"]));
    let line = inspect.lines().find(|l| l.starts_with("model ")).unwrap_or_default();
    assert!(line.ends_with(&card.model_id), "{inspect}");
}

#[test]
fn refuses_an_unsupported_objective_naming_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("xgboost_binary_logistic.json")).unwrap()).unwrap();
    json["learner"]["objective"]["name"] = "reg:squarederror".into();
    std::fs::write(d.join("squared.json"), serde_json::to_vec(&json).unwrap()).unwrap();
    let err = failed(&tollgate(d, &["import", "--xgboost", "squared.json", "--output", "model.tgm"]));
    assert!(err.contains("`reg:squarederror`"), "{err}");
    assert!(err.contains("squared.json"), "the file is named: {err}");
    assert!(!d.join("model.tgm").exists() && !d.join("model.tgm.json").exists());

    let multi = fixture("xgboost_multi_softprob.json");
    let err = failed(&tollgate(d, &["import", "--xgboost", &multi, "--output", "model.tgm"]));
    assert!(err.contains("multi:softprob"), "{err}");
    assert!(!d.join("model.tgm").exists());
}

#[test]
fn a_parity_check_beyond_its_tolerance_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (json, csv) = (fixture("xgboost_binary_logistic.json"), fixture("xgboost_binary_logistic.csv"));
    let args = ["import", "--xgboost", &json, "--check", &csv, "--tolerance", "0", "--output", "model.tgm"];
    let err = failed(&tollgate(dir.path(), &args));
    assert!(err.contains("exceeds the tolerance"), "{err}");
    assert!(!dir.path().join("model.tgm").exists(), "a failed check writes no model");
}
