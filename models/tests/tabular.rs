//! Generic tabular mode on small CSV files: bad cells named by line, column and reason, random
//! and time splits, and a model trained on the result.

use exporter::NoProgress;
use models::tabular::{Split, TabularData, TabularError};
use models::{GbdtConfig, metrics};
use std::fmt::Write as _;
use std::path::PathBuf;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `rows` rows: id, t (shuffled time), x (signal), noise, label = x > 0.7 (with the row's time).
fn separable(rows: usize) -> String {
    let mut text = String::from("id,t,x,noise,is_fraud\n");
    for i in 0..rows {
        let x = ((i * 37) % 100) as f64 / 100.0;
        let t = (i * 7919) % rows;
        let noise = ((i * 13) % 17) as f64;
        writeln!(text, "{i},{t},{x},{noise},{}", u8::from(x > 0.7)).unwrap();
    }
    text
}

#[test]
fn names_a_bad_cell_by_line_column_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "bad.csv", "a,b,label\n1,2,0\n3,x4,1\n");
    let err = TabularData::read(&path, "label", &[], None).unwrap_err();
    assert!(err.to_string().ends_with("line 3, column b: \"x4\" is not a number"), "{err}");
    let path = write(&dir, "label.csv", "a,label\n1,0\n2,yes\n");
    let err = TabularData::read(&path, "label", &[], None).unwrap_err();
    assert!(
        err.to_string().ends_with("line 3, column label: \"yes\" is not a label (0/1 or false/true)"),
        "{err}"
    );
    let path = write(&dir, "short.csv", "a,b,label\n1,2,0\n1,0\n");
    let err = TabularData::read(&path, "label", &[], None).unwrap_err();
    assert!(matches!(err, TabularError::RowLength { line: 3, expected: 3, got: 2, .. }), "{err}");
    let err = TabularData::read(&path, "fraud", &[], None).unwrap_err();
    assert!(err.to_string().contains("no column \"fraud\" in the header (columns: a,b,label)"), "{err}");
}

#[test]
fn empty_cells_are_missing_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "gaps.csv", "a,b,label\n1,,0\nNA,2,1\n");
    let data = TabularData::read(&path, "label", &[], None).unwrap();
    assert!(data.features[1].is_nan() && data.features[2].is_nan());
    assert_eq!(data.labels, [false, true]);
}

#[test]
fn time_split_holds_out_the_latest_rows_and_drops_the_time_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "t.csv", &separable(100));
    let split: Split = "time:t:0.3".parse().unwrap();
    let data = TabularData::read(&path, "is_fraud", &["id".to_string()], split.time_column()).unwrap();
    assert_eq!(data.feature_names, ["x", "noise"]);
    let (train, valid) = data.split(&split, 0).unwrap();
    assert_eq!((train.len(), valid.len()), (70, 30));
    // The validation rows are exactly those with t >= 70.
    let times = data.time.as_ref().unwrap();
    let mut want: Vec<f64> = (0..100).filter(|&i| times[i] >= 70.0).map(|i| data.row(i)[0]).collect();
    let mut got: Vec<f64> = (0..valid.len()).map(|i| valid.row(i)[0]).collect();
    want.sort_by(f64::total_cmp);
    got.sort_by(f64::total_cmp);
    assert_eq!(got, want);
}

#[test]
fn random_split_depends_on_the_seed_and_trains_a_separating_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "r.csv", &separable(400));
    let data = TabularData::read(&path, "is_fraud", &["id".to_string(), "t".to_string()], None).unwrap();
    let split = Split::Random { fraction: 0.25 };
    let (train, valid) = data.split(&split, 1).unwrap();
    let (_, other) = data.split(&split, 2).unwrap();
    assert_eq!((train.len(), valid.len()), (300, 100));
    assert_ne!(valid, other, "another seed draws other rows");
    assert_eq!(data.split(&split, 1).unwrap().1, valid, "the same seed draws the same rows");
    let model = GbdtConfig { trees: 10, max_depth: 2, ..Default::default() }
        .fit(train.samples().unwrap(), &NoProgress)
        .unwrap()
        .model;
    let scores: Vec<f64> = (0..valid.len()).map(|i| model.score(valid.row(i))).collect();
    assert_eq!(metrics::roc_auc(&scores, &valid.labels).unwrap(), 1.0);
}
