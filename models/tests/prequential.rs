//! The prequential protocol on a small simulated history: candidates are chosen on the
//! validation folds alone, only the chosen ones run on the test folds, and the folds follow the
//! schedule.

use exporter::NoProgress;
use exporter::features::{Cadence, compute_features};
use exporter::simulate::{SimulationConfig, simulate};
use models::protocol::{Candidate, Metric, Prequential, Stage};
use models::{GbdtConfig, Holdout, LogisticConfig, Trainer};
use scorer::features::FeatureSchema;

#[test]
fn chooses_on_validation_folds_and_runs_only_the_chosen_on_test_folds() {
    let config =
        SimulationConfig { seed: 11, customers: 300, terminals: 600, days: 56, ..Default::default() };
    let tx = simulate(&config, &NoProgress).unwrap();
    let table = compute_features(&tx, &FeatureSchema::handbook(), Cadence::Exact, &NoProgress).unwrap();
    let day = |d: i64| config.start.plus_seconds(d * 86_400);
    // Validation folds train from days 14 and 7, test folds from days 35 and 28.
    let protocol = Prequential {
        folds: 2,
        step_days: 7,
        shape: Holdout::handbook(),
        validation_start: day(14),
        test_start: day(35),
        k: 10,
    };
    assert_eq!(protocol.folds(Stage::Test)[1].train_start, day(28));
    let candidates = vec![
        Candidate { name: "lr".into(), trainer: Trainer::Logistic(LogisticConfig::default()) },
        Candidate {
            name: "stump".into(),
            trainer: Trainer::Gbdt(GbdtConfig { trees: 1, max_depth: 1, ..Default::default() }),
        },
        Candidate {
            name: "gbdt".into(),
            trainer: Trainer::Gbdt(GbdtConfig {
                trees: 30,
                max_depth: 3,
                learning_rate: 0.3,
                ..Default::default()
            }),
        },
    ];
    let result = protocol.run(&tx, &table, &candidates, &NoProgress).unwrap();
    for (m, &best) in Metric::ALL.iter().zip(&result.best) {
        let means: Vec<f64> = result.candidates.iter().map(|c| c.validation(*m).mean).collect();
        let top = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(means[best], top, "{}: the best validation mean is chosen", m.name());
        assert!(result.candidates[best].test.is_some(), "the chosen candidate ran on the test folds");
        let (chosen, test) = result.test_at_best_valid(*m);
        assert_eq!(chosen.name, result.candidates[best].name);
        assert_eq!(test.unwrap().mean, chosen.test(*m).unwrap().mean);
    }
    for (i, c) in result.candidates.iter().enumerate() {
        assert_eq!(c.validation.len(), 2);
        assert_eq!(c.validation[0].train_start, day(14));
        assert_eq!(c.test.is_some(), result.best.contains(&i), "{}: test folds only when chosen", c.name);
        if let Some(test) = &c.test {
            assert_eq!(test.iter().map(|f| f.train_start).collect::<Vec<_>>(), [day(35), day(28)]);
        }
    }
    let auc = |i: usize| result.candidates[i].validation(Metric::RocAuc).mean;
    assert!(auc(1) < auc(2), "a single stump ranks worse than 30 trees: {} vs {}", auc(1), auc(2));
    let text = result.markdown();
    assert!(text.contains("| stump |") && text.contains("test_at_best_valid"), "{text}");
}
