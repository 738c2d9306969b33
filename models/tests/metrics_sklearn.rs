//! The metrics against scikit-learn and the handbook's own card precision function: expected
//! values printed by `tests/fixtures/metrics_reference.py` (scikit-learn 1.9.1, pandas 3.1.1),
//! and properties that any correct AUC / AP must have.

use models::metrics::{ConfusionMatrix, average_precision, card_precision_at_k, roc_auc};
use proptest::prelude::*;

struct Case {
    scores: &'static [f64],
    labels: &'static [u8],
    auc: f64,
    ap: f64,
    /// (tn, fp, fn, tp, precision, recall, f1) at threshold 0.35.
    at_035: (u64, u64, u64, u64, f64, f64, f64),
}

const CASES: [Case; 3] = [
    Case {
        scores: &[0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.1, 0.35, 0.65],
        labels: &[0, 0, 1, 1, 1, 0, 1, 0, 0, 1],
        auc: 0.86,
        ap: 0.8583333333333332,
        at_035: (2, 3, 0, 5, 0.625, 1.0, 0.7692307692307693),
    },
    Case {
        scores: &[0.0, 0.01, 0.0, 0.02, 0.5, 0.01, 0.0, 0.97, 0.02, 0.5, 0.01, 0.0, 0.33, 0.5, 0.0, 0.02],
        labels: &[0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0],
        auc: 0.8541666666666666,
        ap: 0.7159090909090909,
        at_035: (11, 1, 1, 3, 0.75, 0.75, 0.75),
    },
    Case {
        scores: &[0.3, 0.3, 0.3, 0.3, 0.3],
        labels: &[1, 0, 0, 1, 0],
        auc: 0.5,
        ap: 0.4,
        at_035: (3, 0, 2, 0, 0.0, 0.0, 0.0),
    },
];

fn bools(labels: &[u8]) -> Vec<bool> {
    labels.iter().map(|&y| y == 1).collect()
}

#[test]
fn auc_and_average_precision_equal_scikit_learns_with_ties() {
    for (i, case) in CASES.iter().enumerate() {
        let labels = bools(case.labels);
        let auc = roc_auc(case.scores, &labels).unwrap();
        let ap = average_precision(case.scores, &labels).unwrap();
        assert!((auc - case.auc).abs() < 1e-15, "case {i}: AUC {auc} vs {}", case.auc);
        assert!((ap - case.ap).abs() < 1e-15, "case {i}: AP {ap} vs {}", case.ap);
    }
}

#[test]
fn threshold_metrics_equal_scikit_learns() {
    for (i, case) in CASES.iter().enumerate() {
        let m = ConfusionMatrix::at_threshold(case.scores, &bools(case.labels), 0.35).unwrap();
        let (tn, fp, fn_, tp, precision, recall, f1) = case.at_035;
        assert_eq!(
            (m.true_negatives, m.false_positives, m.false_negatives, m.true_positives),
            (tn, fp, fn_, tp),
            "case {i}"
        );
        assert_eq!((m.precision(), m.recall(), m.f1()), (precision, recall, f1), "case {i}");
    }
}

#[test]
fn card_precision_equals_the_handbooks_function() {
    let days = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2];
    let cards = [1, 2, 3, 1, 4, 5, 1, 2, 3, 4, 5, 6, 2, 3, 6, 6, 7];
    let scores = [0.9, 0.2, 0.7, 0.1, 0.6, 0.3, 0.95, 0.5, 0.85, 0.4, 0.8, 0.45, 0.3, 0.9, 0.2, 0.7, 0.6];
    let labels = bools(&[0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0]);
    let expected: [(usize, [usize; 3], [f64; 3], f64); 3] = [
        (1, [3, 3, 2], [1.0, 1.0, 1.0], 1.0),
        (2, [3, 2, 2], [1.0, 0.0, 0.5], 0.5),
        (3, [3, 2, 1], [0.6666666666666666, 0.3333333333333333, 0.3333333333333333], 0.4444444444444444),
    ];
    for (k, compromised, per_day, mean) in expected {
        let cp = card_precision_at_k(&scores, &labels, &cards, &days, k).unwrap();
        let got_compromised: Vec<usize> = cp.days.iter().map(|d| d.compromised_cards).collect();
        let got_per_day: Vec<f64> = cp.days.iter().map(|d| d.precision).collect();
        assert_eq!(got_compromised, compromised, "k = {k}");
        assert_eq!(got_per_day, per_day, "k = {k}");
        assert!((cp.mean - mean).abs() < 1e-15, "k = {k}: {} vs {mean}", cp.mean);
    }
}

fn rev<T: Copy>(v: &[T]) -> Vec<T> {
    v.iter().rev().copied().collect()
}

/// Scores on a coarse grid (many ties) with labels, both classes present.
fn scored() -> impl Strategy<Value = (Vec<f64>, Vec<bool>)> {
    prop::collection::vec((0u8..20, any::<bool>()), 2..200)
        .prop_map(|v| v.into_iter().map(|(s, y)| (f64::from(s) / 20.0, y)).unzip())
        .prop_filter("both classes", |(_, y): &(Vec<f64>, Vec<bool>)| y.contains(&true) && y.contains(&false))
}

proptest! {
    #[test]
    fn auc_is_the_share_of_ordered_pairs_with_ties_half((scores, labels) in scored()) {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &yi) in labels.iter().enumerate() {
            for (j, &yj) in labels.iter().enumerate() {
                if yi && !yj {
                    pairs += 1.0;
                    wins += match scores[i].partial_cmp(&scores[j]) {
                        Some(std::cmp::Ordering::Greater) => 1.0,
                        Some(std::cmp::Ordering::Equal) => 0.5,
                        _ => 0.0,
                    };
                }
            }
        }
        let auc = roc_auc(&scores, &labels).unwrap();
        prop_assert!((auc - wins / pairs).abs() < 1e-12, "{auc} vs {}", wins / pairs);
    }

    #[test]
    fn auc_and_ap_do_not_change_under_a_strictly_increasing_transform((scores, labels) in scored()) {
        let transformed: Vec<f64> = scores.iter().map(|s| (3.0 * s - 1.0).exp() + s).collect();
        prop_assert_eq!(roc_auc(&scores, &labels).unwrap(), roc_auc(&transformed, &labels).unwrap());
        prop_assert_eq!(average_precision(&scores, &labels).unwrap(), average_precision(&transformed, &labels).unwrap());
    }

    #[test]
    fn reversing_the_scores_gives_one_minus_the_auc((scores, labels) in scored()) {
        let reversed: Vec<f64> = scores.iter().map(|s| -s).collect();
        let sum = roc_auc(&scores, &labels).unwrap() + roc_auc(&reversed, &labels).unwrap();
        prop_assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn average_precision_lies_between_the_fraud_rate_and_one((scores, labels) in scored()) {
        let ap = average_precision(&scores, &labels).unwrap();
        let rate = labels.iter().filter(|&&y| y).count() as f64 / labels.len() as f64;
        // A constant score gives exactly the fraud rate, a perfect ranking 1.
        prop_assert!((0.0..=1.0).contains(&ap));
        let constant = vec![0.5; labels.len()];
        prop_assert!((average_precision(&constant, &labels).unwrap() - rate).abs() < 1e-12);
        let perfect: Vec<f64> = labels.iter().map(|&y| if y { 1.0 } else { 0.0 }).collect();
        prop_assert_eq!(average_precision(&perfect, &labels).unwrap(), 1.0);
    }

    #[test]
    fn card_precision_is_a_share_and_ignores_the_order_of_rows(
        rows in prop::collection::vec((0i64..3, 0u32..15, 0u8..10, any::<bool>()), 1..120),
        k in 1usize..8,
    ) {
        let days: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let cards: Vec<u32> = rows.iter().map(|r| r.1).collect();
        let scores: Vec<f64> = rows.iter().map(|r| f64::from(r.2) / 10.0).collect();
        let labels: Vec<bool> = rows.iter().map(|r| r.3).collect();
        let cp = card_precision_at_k(&scores, &labels, &cards, &days, k).unwrap();
        prop_assert!(cp.days.iter().all(|d| (0.0..=1.0).contains(&d.precision) && d.detected <= k));
        let reversed = card_precision_at_k(&rev(&scores), &rev(&labels), &rev(&cards), &rev(&days), k).unwrap();
        prop_assert_eq!(cp, reversed);
    }
}
