//! Threshold selection on data whose answer is known by construction: an alert budget, a target
//! precision and a review cost each pick one exact threshold.

use models::threshold::{Outcomes, ThresholdError};

/// Three days of ten transactions; day d's scores are (d * 10 + i) / 100 for i in 0..10, so the
/// overall ranking is known; every third transaction is fraud.
fn three_days() -> (Vec<f64>, Vec<bool>, Vec<i64>, Vec<f64>) {
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    let mut days = Vec::new();
    for d in 0..3 {
        for i in 0..10 {
            scores.push(f64::from(d * 10 + i) / 100.0);
            labels.push((d * 10 + i) % 3 == 0);
            days.push(i64::from(d) + 17_000);
        }
    }
    let amounts = vec![10.0; scores.len()];
    (scores, labels, days, amounts)
}

#[test]
fn alert_budget_flags_at_most_k_per_day_on_average() {
    let (scores, labels, days, amounts) = three_days();
    let outcomes = Outcomes::new(&scores, &labels, &days, &amounts).unwrap();
    assert_eq!(outcomes.days(), 3);
    // 2 a day over 3 days = the 6 highest scores: 0.29 down to 0.24.
    let c = outcomes.by_alert_budget(2);
    assert_eq!(c.threshold, 0.24);
    assert_eq!(c.flagged, 6);
    assert_eq!(c.alerts_per_day, 2.0);
    // 0.24 and 0.27 are multiples of 3: 2 frauds among the 6; 10 frauds in all (0, 3, ..., 27).
    assert_eq!(c.frauds_flagged, 2);
    assert_eq!(c.recall, 0.2);
    // A budget above the data flags everything.
    assert_eq!(outcomes.by_alert_budget(1000).flagged, 30);
}

#[test]
fn alert_budget_never_splits_tied_scores_and_flags_nothing_when_the_top_tie_is_too_big() {
    let scores = [0.9, 0.9, 0.9, 0.5];
    let labels = [true, false, false, true];
    let days = [0, 0, 0, 0];
    let amounts = [1.0; 4];
    let outcomes = Outcomes::new(&scores, &labels, &days, &amounts).unwrap();
    let c = outcomes.by_alert_budget(2);
    assert_eq!(c.flagged, 0, "three tied at the top exceed a budget of two");
    assert!(c.threshold > 0.9);
    assert_eq!(outcomes.by_alert_budget(3).threshold, 0.9);
}

#[test]
fn target_precision_picks_the_lowest_threshold_that_reaches_it() {
    // Ranked from the top: F F F F G F G G G G ...; precision at each depth:
    // 1, 1, 1, 1, 0.8, 0.833, 0.714, ...; target 0.8 is last reached at depth 6 (score 0.5).
    let scores = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1];
    let labels = [true, true, true, true, false, true, false, false, false, false];
    let days = [0; 10];
    let amounts = [1.0; 10];
    let outcomes = Outcomes::new(&scores, &labels, &days, &amounts).unwrap();
    let c = outcomes.by_precision(0.8).unwrap().unwrap();
    assert_eq!(c.threshold, 0.5);
    assert_eq!((c.flagged, c.frauds_flagged), (6, 5));
    assert_eq!(c.recall, 1.0);
    assert_eq!(outcomes.by_precision(1.0).unwrap().unwrap().threshold, 0.7);
    let all_genuine_top = Outcomes::new(&[0.9, 0.1], &[false, true], &[0, 0], &[1.0, 1.0]).unwrap();
    assert_eq!(all_genuine_top.by_precision(0.9).unwrap(), None, "no threshold reaches 0.9");
    assert!(matches!(outcomes.by_precision(0.0), Err(ThresholdError::BadParameter { .. })));
}

#[test]
fn cost_threshold_maximises_fraud_amount_caught_minus_review_cost() {
    // From the top: fraud 100, genuine, genuine, fraud 100, 20 genuine, fraud 5.
    // Review cost 10: cumulative net 90, 80, 70, 160, then falling; the small fraud at the
    // bottom never pays for the 20 reviews above it. Best: flag down to the 4th (score 0.96).
    let mut scores = vec![1.0, 0.99, 0.98, 0.96];
    let mut labels = vec![true, false, false, true];
    let mut amounts = vec![100.0, 7.0, 7.0, 100.0];
    for i in 0..20 {
        scores.push(0.9 - f64::from(i) * 0.01);
        labels.push(false);
        amounts.push(50.0);
    }
    scores.push(0.01);
    labels.push(true);
    amounts.push(5.0);
    let days = vec![0; scores.len()];
    let outcomes = Outcomes::new(&scores, &labels, &days, &amounts).unwrap().with_review_cost(10.0).unwrap();
    let c = outcomes.by_cost();
    assert_eq!(c.threshold, 0.96);
    assert_eq!(c.flagged, 4);
    assert_eq!(c.fraud_amount_flagged, 200.0);
    assert_eq!(c.net_saving, 160.0);
    // Reviews dearer than any fraud: flag nothing, save nothing.
    let dear = Outcomes::new(&scores, &labels, &days, &amounts).unwrap().with_review_cost(1000.0).unwrap();
    let c = dear.by_cost();
    assert_eq!((c.flagged, c.net_saving), (0, 0.0));
    assert!(c.threshold > 1.0);
}

#[test]
fn refuses_mismatched_columns_nan_scores_and_negative_amounts() {
    let err = Outcomes::new(&[0.1, 0.2], &[true], &[0, 0], &[1.0, 1.0]).unwrap_err();
    assert_eq!(err.to_string(), "threshold: labels has 1 values but there are 2 scores");
    let err = Outcomes::new(&[0.1, f64::NAN], &[true, false], &[0, 0], &[1.0, 1.0]).unwrap_err();
    assert_eq!(err.to_string(), "threshold: score 1 is NaN, not a finite number");
    let err = Outcomes::new(&[0.1, 0.2], &[true, false], &[0, 0], &[1.0, -3.0]).unwrap_err();
    assert_eq!(err.to_string(), "threshold: amount 1 is -3; amounts must be finite and at least 0");
    let ok = Outcomes::new(&[0.1], &[true], &[0], &[1.0]).unwrap();
    assert!(ok.with_review_cost(f64::NAN).is_err());
}
