//! Imported models score like the library that trained them: XGBoost JSON within 1e-6 of
//! xgboost's own predictions, scikit-learn ONNX (feature `onnx`) within 1e-5 of onnxruntime's, on
//! the rows and references of `tests/fixtures/import/` (made by
//! `tests/fixtures/scripts/make_import_fixtures.py`; no Python runs here).

use models::import::{self, ImportError, Imported, ParityReport};
use scorer::model::{LEAF, Model};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/import").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn xgboost(name: &str) -> Imported {
    import::xgboost::from_json(&read(&format!("{name}.json"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn parity(model: &Model, names: Option<&[String]>, csv: &str) -> ParityReport {
    let file = std::fs::File::open(fixture(csv)).unwrap_or_else(|e| panic!("{csv}: {e}"));
    import::check_parity(model, file, names, "reference").unwrap_or_else(|e| panic!("{csv}: {e}"))
}

/// Rows of a fixture CSV with at least one empty (missing) cell.
fn rows_with_missing(csv: &str) -> usize {
    let text = String::from_utf8(read(csv)).unwrap();
    text.lines().skip(1).filter(|l| l.starts_with(',') || l.contains(",,")).count()
}

#[test]
fn xgboost_models_score_as_xgboost_does_within_1e_6() {
    for name in ["xgboost_binary_logistic", "xgboost_reg_logistic", "xgboost_binary_logitraw"] {
        let imported = xgboost(name);
        let names = imported.feature_names.as_deref();
        assert_eq!(names.map(<[String]>::len), Some(15), "{name}: the file names its 15 features");
        let report = parity(&imported.model, names, &format!("{name}.csv"));
        println!("{name}: {} rows, max |diff| {:.3e}", report.rows, report.max_abs_diff);
        assert_eq!(
            report.rows,
            289 + 60 + 80 + 1,
            "{name}: sample rows, threshold rows, rows with missing values"
        );
        assert!(
            report.max_abs_diff <= 1e-6,
            "{name}: max |diff| {:e} at row {}",
            report.max_abs_diff,
            report.worst_row
        );
        // The script masks cells at random in 80 rows (a few draw no mask) plus one all-missing row.
        assert!(rows_with_missing(&format!("{name}.csv")) >= 70, "{name}: missing values are exercised");
    }
}

#[test]
fn xgboost_import_keeps_the_strict_split_rule_and_default_directions() {
    // The fixture's threshold rows and missing values are what make these changes visible: a model
    // that sends `x == threshold` left, or NaN the other way, misses xgboost's predictions.
    let imported = xgboost("xgboost_binary_logistic");
    let names = imported.feature_names.as_deref();
    let Model::Trees(trees) = &imported.model else { panic!("a tree ensemble") };

    let mut leq = trees.clone();
    leq.nodes.iter_mut().filter(|n| n.feature != LEAF).for_each(|n| n.value = n.value.next_up());
    let report = parity(&Model::Trees(leq), names, "xgboost_binary_logistic.csv");
    assert!(report.max_abs_diff > 1e-3, "x <= threshold would go unnoticed: {:e}", report.max_abs_diff);

    let mut flipped = trees.clone();
    flipped.nodes.iter_mut().for_each(|n| n.default_left = !n.default_left);
    let report = parity(&Model::Trees(flipped), names, "xgboost_binary_logistic.csv");
    assert!(report.max_abs_diff > 1e-3, "default directions would go unnoticed: {:e}", report.max_abs_diff);
}

#[test]
fn imported_xgboost_model_survives_the_snapshot_codec() {
    let imported = xgboost("xgboost_binary_logistic");
    let decoded = Model::decode(&imported.model.encode()).expect("the scorer accepts the imported model");
    assert_eq!(decoded, imported.model);
    let summary = import::Summary::of(&decoded);
    assert_eq!((summary.family, summary.features, summary.trees), ("gbdt", 15, 40));
}

#[test]
fn xgboost_leaf_covers_are_the_files_sum_hessian() {
    let json: serde_json::Value = serde_json::from_slice(&read("xgboost_binary_logistic.json")).unwrap();
    let Model::Trees(trees) = xgboost("xgboost_binary_logistic").model else { panic!("a tree ensemble") };
    assert!(trees.has_covers(), "every leaf has a cover, so the model explains itself");
    let file_trees = json["learner"]["gradient_booster"]["model"]["trees"].as_array().unwrap();
    assert_eq!(file_trees.len(), trees.roots.len());
    for (t, tree) in file_trees.iter().enumerate() {
        let numbers = |key: &str| -> Vec<f64> {
            tree[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
        };
        let (left, hessian) = (numbers("left_children"), numbers("sum_hessian"));
        let mut want: Vec<f32> =
            left.iter().zip(&hessian).filter(|(l, _)| **l == -1.0).map(|(_, &h)| h as f32).collect();
        let end = trees.roots.get(t + 1).map_or(trees.nodes.len(), |&r| r as usize);
        let mut got: Vec<f32> = trees.nodes[trees.roots[t] as usize..end]
            .iter()
            .filter(|n| n.is_leaf())
            .map(|n| n.leaf_cover())
            .collect();
        want.sort_by(f32::total_cmp);
        got.sort_by(f32::total_cmp);
        assert_eq!(got, want, "tree {t}: leaf covers");
        // The root's hessian sum is its leaves' (what the explainer takes a split's cover to be).
        let leaves: f64 = got.iter().map(|&c| f64::from(c)).sum();
        assert!((leaves - hessian[0]).abs() <= 1e-5 * hessian[0], "tree {t}: {leaves} vs {}", hessian[0]);
    }
}

#[test]
fn refuses_multi_class_xgboost_naming_the_objective() {
    let err = import::xgboost::from_json(&read("xgboost_multi_softprob.json")).unwrap_err();
    assert!(matches!(err, ImportError::MultiClass { classes: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("multi:softprob"), "{err}");
}

#[test]
fn refuses_gblinear_and_dart_boosters_naming_them() {
    for booster in ["gblinear", "dart"] {
        let err = import::xgboost::from_json(&read(&format!("xgboost_{booster}.json"))).unwrap_err();
        assert!(matches!(&err, ImportError::UnsupportedBooster(b) if b == booster), "{err:?}");
        assert!(err.to_string().contains(&format!("`{booster}`")), "{err}");
    }
}

#[test]
fn refuses_categorical_splits_naming_tree_and_node() {
    let err = import::xgboost::from_json(&read("xgboost_categorical.json")).unwrap_err();
    assert!(matches!(err, ImportError::Categorical { tree: 0, node: 0 }), "{err:?}");
    assert!(err.to_string().contains("categorical"), "{err}");
}

#[test]
fn refuses_unsupported_objectives_naming_them() {
    let mut json: serde_json::Value = serde_json::from_slice(&read("xgboost_binary_logistic.json")).unwrap();
    json["learner"]["objective"]["name"] = "reg:squarederror".into();
    let err = import::xgboost::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(matches!(&err, ImportError::UnsupportedObjective(o) if o == "reg:squarederror"), "{err:?}");
    assert!(err.to_string().contains("`reg:squarederror`"), "{err}");
}

#[test]
fn refuses_malformed_xgboost_files_with_a_located_error() {
    assert!(matches!(import::xgboost::from_json(b"{\"learner\": 3}"), Err(ImportError::Json(_))));
    assert!(import::xgboost::from_json(b"{UBJ").is_err());
    let mut json: serde_json::Value = serde_json::from_slice(&read("xgboost_binary_logistic.json")).unwrap();
    json["learner"]["gradient_booster"]["model"]["trees"][3]["left_children"][0] = 10_000.into();
    let err = import::xgboost::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(err.to_string().contains("tree 3, node 0"), "{err}");
    json["learner"]["gradient_booster"]["model"]["trees"][3]["left_children"][0] = 0.into();
    let err = import::xgboost::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
}

#[test]
fn remapped_model_reads_features_by_name() {
    let imported = xgboost("xgboost_binary_logistic");
    let names = imported.feature_names.clone().unwrap();
    let mut target: Vec<String> = names.iter().rev().cloned().collect();
    target.insert(4, "UNUSED".into());
    let remapped = import::remap_features(&imported.model, &names, &target).unwrap();
    assert_eq!(remapped.n_features(), 16);
    let Model::Trees(trees) = &remapped else { panic!("a tree ensemble") };
    assert!(trees.nodes.iter().all(|n| n.feature != 4), "no split reads the unused feature");
    // The same rows, read through the new order (the unused slot reads any column): the same scores.
    let mut columns = target.clone();
    columns[4] = names[0].clone();
    let report = parity(&remapped, Some(&columns), "xgboost_binary_logistic.csv");
    assert!(report.max_abs_diff <= 1e-6, "{:e}", report.max_abs_diff);
    // The original model fed the new order is wrong: the remapping did move the inputs.
    columns.remove(4);
    let report = parity(&imported.model, Some(&columns), "xgboost_binary_logistic.csv");
    assert!(report.max_abs_diff > 1e-3, "{:e}", report.max_abs_diff);

    let err = import::remap_features(&imported.model, &names, &names[1..]).unwrap_err();
    assert!(err.to_string().contains(&names[0]), "{err}");
}

#[cfg(feature = "onnx")]
mod onnx {
    use super::*;

    fn onnx(name: &str) -> Imported {
        import::onnx::from_bytes(&read(&format!("{name}.onnx"))).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn sklearn_models_score_as_onnxruntime_does_within_1e_5() {
        for (name, family, rows) in [
            ("sklearn_logistic", "logistic", 289),
            ("sklearn_random_forest", "forest", 349),
            ("sklearn_gradient_boosting", "gbdt", 349),
            ("sklearn_hist_gradient_boosting", "gbdt", 429),
            ("sklearn_mlp_relu", "mlp", 289),
            ("sklearn_mlp_tanh", "mlp", 289),
        ] {
            let imported = onnx(name);
            assert_eq!(imported.model.family(), family, "{name}");
            assert_eq!(imported.model.n_features(), 15, "{name}");
            let report = parity(&imported.model, None, &format!("{name}.csv"));
            println!("{name}: {} rows, max |diff| {:.3e}", report.rows, report.max_abs_diff);
            assert_eq!(report.rows, rows, "{name}");
            assert!(
                report.max_abs_diff <= 1e-5,
                "{name}: max |diff| {:e} at row {}",
                report.max_abs_diff,
                report.worst_row
            );
            let decoded =
                Model::decode(&imported.model.encode()).expect("the scorer accepts the imported model");
            assert_eq!(decoded, imported.model, "{name}");
        }
    }

    #[test]
    fn branch_leq_thresholds_move_up_one_f32_step() {
        // skl2onnx trees send x <= t left; the scorer sends x < t left. The rows of the fixture that
        // sit exactly on a threshold prove the conversion: undoing it misses onnxruntime's answers.
        for name in ["sklearn_random_forest", "sklearn_gradient_boosting", "sklearn_hist_gradient_boosting"] {
            let Model::Trees(trees) = onnx(name).model else { panic!("{name}: a tree ensemble") };
            let mut strict = trees.clone();
            strict.nodes.iter_mut().filter(|n| n.feature != LEAF).for_each(|n| n.value = n.value.next_down());
            let report = parity(&Model::Trees(strict), None, &format!("{name}.csv"));
            assert!(
                report.max_abs_diff > 1e-3,
                "{name}: x < t would go unnoticed ({:e})",
                report.max_abs_diff
            );
        }
    }

    #[test]
    fn refuses_unknown_operators_naming_operator_and_node() {
        let err = import::onnx::from_bytes(&read("sklearn_svc.onnx")).unwrap_err();
        assert!(
            matches!(&err, ImportError::UnsupportedOperator { op, .. } if op == "ai.onnx.ml.SVMClassifier"),
            "{err:?}"
        );
        assert!(err.to_string().contains("SVMClassifier") && err.to_string().contains("node"), "{err}");
    }

    #[test]
    fn refuses_bytes_that_are_not_onnx() {
        let err = import::onnx::from_bytes(b"\xff\xff\xff not a protobuf").unwrap_err();
        assert!(matches!(err, ImportError::Onnx(_)), "{err:?}");
        let err = import::onnx::from_bytes(&read("xgboost_gblinear.json")).unwrap_err();
        assert!(matches!(err, ImportError::Onnx(_) | ImportError::Invalid(_)), "{err:?}");
    }
}
