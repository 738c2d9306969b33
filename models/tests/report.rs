//! Reports and scores files on a small simulated history: the report page and its plots are
//! written in both formats, and the metrics recomputed from the written scores file (CSV and
//! Parquet) equal those of the scores in memory, bit for bit.

use exporter::NoProgress;
use exporter::features::{Cadence, compute_features};
use exporter::simulate::{SimulationConfig, simulate};
use models::report::{ModelCard, PageFormat, Report, read_scores, write_scores};
use models::threshold::Outcomes;
use models::{GbdtConfig, Holdout, TrainTest, metrics};
use scorer::features::FeatureSchema;
use scorer::model::Model;

/// 31 days of a small simulated population, trained on days 10..17, tested on days 24..31.
fn scored() -> (exporter::Transactions, TrainTest, Model, Vec<f64>) {
    let config = SimulationConfig { seed: 7, customers: 400, terminals: 800, days: 31, ..Default::default() };
    let tx = simulate(&config, &NoProgress).unwrap();
    let table = compute_features(&tx, &FeatureSchema::handbook(), Cadence::Exact, &NoProgress).unwrap();
    let holdout = Holdout { train_start: config.start.plus_seconds(10 * 86_400), ..Holdout::handbook() };
    let split = holdout.split(&tx, &table).unwrap();
    let model = GbdtConfig { trees: 20, max_depth: 3, ..Default::default() }
        .fit(split.train.samples().unwrap(), &NoProgress)
        .unwrap()
        .model;
    let scores = split.test.scores(&model);
    (tx, split, model, scores)
}

#[test]
fn metrics_recomputed_from_the_scores_file_equal_the_reported_ones() {
    let (tx, split, _, scores) = scored();
    let test = &split.test;
    let auc = metrics::roc_auc(&scores, &test.labels).unwrap();
    let ap = metrics::average_precision(&scores, &test.labels).unwrap();
    assert!(auc > 0.6, "the model learnt something: AUC {auc}");
    let ids: Vec<u64> = test.rows.iter().map(|&r| tx.transaction_id[r]).collect();
    let dir = tempfile::tempdir().unwrap();
    for name in ["scores.csv", "scores.parquet"] {
        let path = dir.path().join(name);
        write_scores(&path, &ids, &scores, &test.labels).unwrap();
        let back = read_scores(&path).unwrap();
        assert_eq!(back.ids, ids, "{name}");
        assert_eq!(back.labels, test.labels, "{name}");
        assert_eq!(back.scores, scores, "{name}: scores read back bit for bit");
        assert_eq!(metrics::roc_auc(&back.scores, &back.labels).unwrap(), auc, "{name}");
        assert_eq!(metrics::average_precision(&back.scores, &back.labels).unwrap(), ap, "{name}");
    }
    let err = write_scores(&dir.path().join("scores.json"), &ids, &scores, &test.labels).unwrap_err();
    assert!(err.to_string().ends_with("unknown extension; use .csv or .parquet"), "{err}");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "transaction_id,score,label\n1,0.5,1\n2,high,0\n").unwrap();
    let err = read_scores(&bad).unwrap_err();
    assert!(err.to_string().ends_with("line 3: score \"high\" is not a number"), "{err}");
}

#[test]
fn report_has_curves_histograms_confusion_matrix_and_threshold_table_in_both_formats() {
    let (tx, split, model, scores) = scored();
    let test = &split.test;
    let amounts: Vec<f64> = test.rows.iter().map(|&r| tx.amount[r]).collect();
    let outcomes =
        Outcomes::new(&scores, &test.labels, &test.days, &amounts).unwrap().with_review_cost(5.0).unwrap();
    let budget = outcomes.by_alert_budget(10);
    let dir = tempfile::tempdir().unwrap();
    for (format, page_name) in [(PageFormat::Html, "index.html"), (PageFormat::Markdown, "index.md")] {
        let report = Report {
            title: format!("{} on the test week", ModelCard::id_of(&model)),
            scores: &scores,
            labels: &test.labels,
            days: &test.days,
            cards: &test.cards,
            amounts: &amounts,
            threshold: budget.threshold,
            review_cost: 5.0,
            choices: vec![("alert budget 10/day".into(), budget), ("cost".into(), outcomes.by_cost())],
            notes: vec!["simulated".into()],
        };
        let out = dir.path().join(page_name.replace('.', "_"));
        let page = report.write(&out, format).unwrap();
        assert_eq!(page, out.join(page_name));
        let text = std::fs::read_to_string(&page).unwrap();
        for svg in ["roc.svg", "pr.svg", "histogram.svg"] {
            let plot = std::fs::read_to_string(out.join(svg)).unwrap();
            assert!(
                plot.contains("<svg") && (plot.contains("<polyline") || plot.contains("<rect")),
                "{svg} draws"
            );
            assert!(plot.len() < 200_000, "{svg} stays small: {} bytes", plot.len());
        }
        assert!(std::fs::read_to_string(out.join("roc.svg")).unwrap().contains("false positive rate"));
        assert!(text.contains("Confusion matrix at threshold"));
        assert!(
            text.contains("alert budget 10/day")
                && text.contains("100 alerts/day")
                && text.contains("fixed 0.5")
        );
        let m = metrics::ConfusionMatrix::at_threshold(&scores, &test.labels, budget.threshold).unwrap();
        match format {
            PageFormat::Html => {
                assert!(text.starts_with("<!DOCTYPE html>"));
                assert_eq!(text.matches("<svg").count(), 3, "the three plots inline");
                assert!(text.contains(&format!(
                    "<td>fraud</td><td>{}</td><td>{}</td>",
                    m.true_positives, m.false_negatives
                )));
            }
            PageFormat::Markdown => {
                assert!(
                    text.contains("![ROC curve](roc.svg)")
                        && text.contains("![Score histograms per class](histogram.svg)")
                );
                assert!(
                    text.contains(&format!("| genuine | {} | {} |", m.false_positives, m.true_negatives))
                );
            }
        }
    }
}

#[test]
fn model_card_round_trips_and_names_the_model_by_its_hash() {
    let (_, split, model, _) = scored();
    let mut card = ModelCard::new(&model, &split.train.feature_names, "GbdtConfig { .. }".into());
    card.metrics.insert("holdout_auc_roc".into(), 0.9);
    assert!(card.model_id.starts_with("gbdt-") && card.model_id.len() == 5 + 16, "{}", card.model_id);
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("model.tgm");
    let path = ModelCard::sidecar_path(&model_path);
    assert_eq!(path, dir.path().join("model.tgm.json"));
    card.write(&path).unwrap();
    assert_eq!(ModelCard::read(&path).unwrap(), card);
    std::fs::write(&path, "{\"model_id\": 3}").unwrap();
    assert!(ModelCard::read(&path).unwrap_err().to_string().contains("not a model card"));
}
