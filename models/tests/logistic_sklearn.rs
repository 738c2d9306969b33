//! Logistic regression against scikit-learn: the same optimum, folded into raw-feature weights.
//! Expected values printed by `tests/fixtures/logistic_reference.py` (scikit-learn 1.9.1); they
//! agree to 1e-7 relative (L-BFGS stops a little short of the optimum Newton reaches).

use models::{ClassWeight, LogisticConfig, Samples};
use scorer::model::Model;

/// amount, count, a constant column; label.
const ROWS: [(f64, f64, f64, bool); 24] = [
    (12.0, 1.0, 5.0, false),
    (250.0, 3.0, 5.0, true),
    (40.5, 2.0, 5.0, false),
    (8.25, 7.0, 5.0, false),
    (310.0, 1.0, 5.0, true),
    (99.0, 4.0, 5.0, false),
    (15.0, 2.0, 5.0, false),
    (180.0, 9.0, 5.0, true),
    (60.0, 3.0, 5.0, false),
    (5.5, 1.0, 5.0, false),
    (220.5, 2.0, 5.0, false),
    (75.0, 8.0, 5.0, true),
    (33.0, 5.0, 5.0, false),
    (140.0, 6.0, 5.0, false),
    (410.0, 2.0, 5.0, true),
    (22.0, 1.0, 5.0, false),
    (95.5, 7.0, 5.0, true),
    (18.0, 3.0, 5.0, false),
    (260.0, 4.0, 5.0, false),
    (45.0, 2.0, 5.0, false),
    (130.0, 5.0, 5.0, true),
    (11.0, 6.0, 5.0, false),
    (88.0, 1.0, 5.0, false),
    (199.0, 3.0, 5.0, true),
];

fn fit(config: LogisticConfig) -> (Vec<f64>, f64) {
    let features: Vec<f64> = ROWS.iter().flat_map(|r| [r.0, r.1, r.2]).collect();
    let labels: Vec<bool> = ROWS.iter().map(|r| r.3).collect();
    let fit = config.fit(Samples::new(&features, 3, &labels).unwrap()).unwrap();
    assert!(fit.converged, "{fit:?}");
    let Model::Logistic(m) = fit.model else { panic!("not a logistic model") };
    (m.weights, m.intercept)
}

fn assert_close(got: (Vec<f64>, f64), weights: [f64; 3], intercept: f64) {
    for (g, w) in got.0.iter().zip(weights) {
        assert!((g - w).abs() <= 1e-7 * w.abs().max(1e-3), "weights {:?} vs {weights:?}", got.0);
    }
    assert!((got.1 - intercept).abs() <= 1e-7 * intercept.abs(), "intercept {} vs {intercept}", got.1);
}

#[test]
fn default_settings_reach_scikit_learns_optimum() {
    assert_close(
        fit(LogisticConfig::default()),
        [0.012423828516905589, 0.36724951293650077, 0.0],
        -3.779525312212239,
    );
}

#[test]
fn balanced_class_weights_and_c_reach_scikit_learns_optimum() {
    let config = LogisticConfig { c: 0.1, class_weight: ClassWeight::Balanced, ..Default::default() };
    assert_close(fit(config), [0.004473040536559498, 0.11911864569379436, 0.0], -1.0819392052510397);
}
