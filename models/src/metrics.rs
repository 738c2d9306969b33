//! Fraud detection metrics, defined as scikit-learn and the handbook define them: the confusion
//! matrix with precision, recall and F1 at a threshold, ROC and precision-recall curves, AUC ROC
//! (ties count one half), average precision (no interpolation) and card precision@k.
//!
//! Scores are `f64` probabilities (any finite number works: only their order matters, except for
//! the threshold metrics); labels are `true` for fraud.

use std::cmp::Ordering;

/// Why a metric could not be computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// An input column has another length than the scores.
    #[error("{metric}: {what} has {got} values but there are {expected} scores")]
    LengthMismatch {
        /// The metric asked for.
        metric: &'static str,
        /// Which input is off (`labels`, `cards`, `days`).
        what: &'static str,
        /// Number of scores.
        expected: usize,
        /// Number of values of `what`.
        got: usize,
    },
    /// No score at all.
    #[error("{metric}: there are no scores")]
    Empty {
        /// The metric asked for.
        metric: &'static str,
    },
    /// A score is NaN or infinite.
    #[error("{metric}: score {index} is {value}, not a finite number")]
    NotFinite {
        /// The metric asked for.
        metric: &'static str,
        /// Position of the score.
        index: usize,
        /// The score.
        value: f64,
    },
    /// Every label is the same, so the metric is undefined.
    #[error("{metric}: the labels have no {missing} transaction, so the metric is undefined")]
    OneClass {
        /// The metric asked for.
        metric: &'static str,
        /// The absent class (`fraud` or `genuine`).
        missing: &'static str,
    },
    /// Card precision@k with k = 0.
    #[error("card precision@k: k must be at least 1")]
    ZeroK,
}

fn check(metric: &'static str, scores: &[f64], labels: &[bool]) -> Result<(), MetricError> {
    if labels.len() != scores.len() {
        return Err(MetricError::LengthMismatch {
            metric,
            what: "labels",
            expected: scores.len(),
            got: labels.len(),
        });
    }
    if scores.is_empty() {
        return Err(MetricError::Empty { metric });
    }
    match scores.iter().position(|s| !s.is_finite()) {
        Some(index) => Err(MetricError::NotFinite { metric, index, value: scores[index] }),
        None => Ok(()),
    }
}

/// Counts of a binary decision against the labels; "positive" means flagged as fraud.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// Frauds flagged.
    pub true_positives: u64,
    /// Genuine transactions flagged.
    pub false_positives: u64,
    /// Genuine transactions passed.
    pub true_negatives: u64,
    /// Frauds passed.
    pub false_negatives: u64,
}

impl ConfusionMatrix {
    /// The matrix when every score `>= threshold` is flagged (scikit-learn's curve convention).
    pub fn at_threshold(scores: &[f64], labels: &[bool], threshold: f64) -> Result<Self, MetricError> {
        check("confusion matrix", scores, labels)?;
        let mut m = ConfusionMatrix::default();
        for (&s, &y) in scores.iter().zip(labels) {
            match (s >= threshold, y) {
                (true, true) => m.true_positives += 1,
                (true, false) => m.false_positives += 1,
                (false, false) => m.true_negatives += 1,
                (false, true) => m.false_negatives += 1,
            }
        }
        Ok(m)
    }

    /// Share of flagged transactions that are fraud; 0 when nothing is flagged (scikit-learn's
    /// `zero_division` default).
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }

    /// Share of frauds flagged; 0 when there is no fraud.
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }

    /// Harmonic mean of precision and recall, `2 tp / (2 tp + fp + fn)`; 0 when both are 0.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.true_positives, 2 * self.true_positives + self.false_positives + self.false_negatives)
    }

    /// Share of genuine transactions flagged; 0 when there is none.
    pub fn false_positive_rate(&self) -> f64 {
        ratio(self.false_positives, self.false_positives + self.true_negatives)
    }

    /// Share of decisions that match the label.
    pub fn accuracy(&self) -> f64 {
        ratio(self.true_positives + self.true_negatives, self.total())
    }

    /// Number of transactions counted.
    pub fn total(&self) -> u64 {
        self.true_positives + self.false_positives + self.true_negatives + self.false_negatives
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

/// One point of the cumulative counts behind the ROC and PR curves: flagging every score
/// `>= threshold` flags `true_positives` frauds and `false_positives` genuine transactions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// The threshold: one of the distinct scores, in decreasing order along the curve.
    pub threshold: f64,
    /// Frauds with a score `>= threshold`.
    pub true_positives: u64,
    /// Genuine transactions with a score `>= threshold`.
    pub false_positives: u64,
}

/// The cumulative counts behind the ROC and precision-recall curves.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryCurve {
    /// One point per distinct score, highest first (scikit-learn's `_binary_clf_curve`).
    pub points: Vec<CurvePoint>,
    /// Number of frauds.
    pub frauds: u64,
    /// Number of genuine transactions.
    pub genuine: u64,
}

/// The cumulative counts at each distinct score, highest first.
pub fn binary_curve(scores: &[f64], labels: &[bool]) -> Result<BinaryCurve, MetricError> {
    curve("binary curve", scores, labels)
}

fn curve(metric: &'static str, scores: &[f64], labels: &[bool]) -> Result<BinaryCurve, MetricError> {
    check(metric, scores, labels)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = Vec::new();
    let (mut tp, mut fp) = (0u64, 0u64);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1
        } else {
            fp += 1
        }
        // -0.0 and 0.0 are one score: `!=`, not the sort's total order, ends a group.
        if order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]) {
            points.push(CurvePoint { threshold: scores[i], true_positives: tp, false_positives: fp });
        }
    }
    Ok(BinaryCurve { points, frauds: tp, genuine: fp })
}

/// Area under the ROC curve by the trapezoidal rule over the distinct scores, so that a tie
/// between a fraud and a genuine transaction counts one half (scikit-learn's `roc_auc_score`).
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64, MetricError> {
    const METRIC: &str = "AUC ROC";
    let BinaryCurve { points, frauds: positives, genuine: negatives } = curve(METRIC, scores, labels)?;
    one_class(METRIC, positives, negatives)?;
    // Twice the area in count units: exact in integers up to 2^64.
    let (mut area2, mut tp_prev, mut fp_prev) = (0u128, 0u64, 0u64);
    for p in &points {
        area2 += u128::from(p.false_positives - fp_prev) * u128::from(p.true_positives + tp_prev);
        (tp_prev, fp_prev) = (p.true_positives, p.false_positives);
    }
    Ok(area2 as f64 / (2.0 * positives as f64 * negatives as f64))
}

fn one_class(metric: &'static str, positives: u64, negatives: u64) -> Result<(), MetricError> {
    if positives == 0 {
        return Err(MetricError::OneClass { metric, missing: "fraud" });
    }
    if negatives == 0 {
        return Err(MetricError::OneClass { metric, missing: "genuine" });
    }
    Ok(())
}

/// Average precision: `sum over distinct thresholds of (R_n - R_(n-1)) P_n`, without
/// interpolation (scikit-learn's `average_precision_score`). Needs at least one fraud.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Result<f64, MetricError> {
    const METRIC: &str = "average precision";
    let BinaryCurve { points, frauds: positives, .. } = curve(METRIC, scores, labels)?;
    if positives == 0 {
        return Err(MetricError::OneClass { metric: METRIC, missing: "fraud" });
    }
    let mut ap = 0.0;
    let mut tp_prev = 0u64;
    for p in &points {
        if p.true_positives > tp_prev {
            let recall_step = (p.true_positives - tp_prev) as f64 / positives as f64;
            ap += recall_step * p.true_positives as f64 / (p.true_positives + p.false_positives) as f64;
        }
        tp_prev = p.true_positives;
    }
    Ok(ap)
}

/// One point of a ROC curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RocPoint {
    /// Scores `>= threshold` are flagged (`+inf` for the starting point).
    pub threshold: f64,
    /// False positive rate.
    pub fpr: f64,
    /// True positive rate (recall).
    pub tpr: f64,
}

/// The ROC curve from (0, 0) through every distinct score, highest first.
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Result<Vec<RocPoint>, MetricError> {
    const METRIC: &str = "ROC curve";
    let BinaryCurve { points, frauds: positives, genuine: negatives } = curve(METRIC, scores, labels)?;
    one_class(METRIC, positives, negatives)?;
    let start = RocPoint { threshold: f64::INFINITY, fpr: 0.0, tpr: 0.0 };
    Ok(std::iter::once(start)
        .chain(points.iter().map(|p| RocPoint {
            threshold: p.threshold,
            fpr: p.false_positives as f64 / negatives as f64,
            tpr: p.true_positives as f64 / positives as f64,
        }))
        .collect())
}

/// One point of a precision-recall curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrPoint {
    /// Scores `>= threshold` are flagged.
    pub threshold: f64,
    /// Precision at this threshold.
    pub precision: f64,
    /// Recall at this threshold.
    pub recall: f64,
}

/// The precision-recall curve at every distinct score, highest first (recall increasing).
pub fn precision_recall_curve(scores: &[f64], labels: &[bool]) -> Result<Vec<PrPoint>, MetricError> {
    const METRIC: &str = "precision-recall curve";
    let BinaryCurve { points, frauds: positives, .. } = curve(METRIC, scores, labels)?;
    if positives == 0 {
        return Err(MetricError::OneClass { metric: METRIC, missing: "fraud" });
    }
    Ok(points
        .iter()
        .map(|p| PrPoint {
            threshold: p.threshold,
            precision: p.true_positives as f64 / (p.true_positives + p.false_positives) as f64,
            recall: p.true_positives as f64 / positives as f64,
        })
        .collect())
}

/// Card precision@k on one day.
#[derive(Clone, Debug, PartialEq)]
pub struct DayCardPrecision {
    /// The day (days since the Unix epoch, UTC, or any day numbering the caller uses).
    pub day: i64,
    /// Compromised cards among the day's k highest-scored cards, divided by k.
    pub precision: f64,
    /// Compromised cards found in the top k (removed from later days).
    pub detected: usize,
    /// Compromised cards of the day, after removing those detected on earlier days.
    pub compromised_cards: usize,
    /// Cards of the day, after removing those detected on earlier days.
    pub cards: usize,
}

/// Card precision@k over several days (the handbook's definition).
#[derive(Clone, Debug, PartialEq)]
pub struct CardPrecision {
    /// The k.
    pub k: usize,
    /// Per day, in increasing day order.
    pub days: Vec<DayCardPrecision>,
    /// Mean of the daily precisions.
    pub mean: f64,
}

/// Card precision@k as the handbook defines it: per day, each card's score is the maximum of
/// its transactions' scores and its label the maximum of their labels; the day's precision is
/// the number of compromised cards among the k highest-scored cards divided by k (also when the
/// day has fewer than k cards); cards found compromised in the top k of an earlier day are
/// removed from later days; the result is the mean over the days. Cards with equal scores are
/// ranked by card id (pandas' order is unspecified there).
pub fn card_precision_at_k(
    scores: &[f64],
    labels: &[bool],
    cards: &[u32],
    days: &[i64],
    k: usize,
) -> Result<CardPrecision, MetricError> {
    const METRIC: &str = "card precision@k";
    check(METRIC, scores, labels)?;
    for (what, got) in [("cards", cards.len()), ("days", days.len())] {
        if got != scores.len() {
            return Err(MetricError::LengthMismatch { metric: METRIC, what, expected: scores.len(), got });
        }
    }
    if k == 0 {
        return Err(MetricError::ZeroK);
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by_key(|&i| (days[i], cards[i]));
    let mut detected_before: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let mut result = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let day = days[order[start]];
        let end = start + order[start..].iter().take_while(|&&i| days[i] == day).count();
        // (card, max score, max label) over the day's transactions, cards ascending.
        let mut per_card: Vec<(u32, f64, bool)> = Vec::new();
        for &i in &order[start..end] {
            if detected_before.contains(&cards[i]) {
                continue;
            }
            match per_card.last_mut() {
                Some(last) if last.0 == cards[i] => {
                    last.1 = last.1.max(scores[i]);
                    last.2 |= labels[i];
                }
                _ => per_card.push((cards[i], scores[i], labels[i])),
            }
        }
        let compromised_cards = per_card.iter().filter(|c| c.2).count();
        per_card.sort_by(|a, b| match b.1.total_cmp(&a.1) {
            Ordering::Equal => a.0.cmp(&b.0),
            other => other,
        });
        let found: Vec<u32> = per_card.iter().take(k).filter(|c| c.2).map(|c| c.0).collect();
        result.push(DayCardPrecision {
            day,
            precision: found.len() as f64 / k as f64,
            detected: found.len(),
            compromised_cards,
            cards: per_card.len(),
        });
        detected_before.extend(found);
        start = end;
    }
    let mean = result.iter().map(|d| d.precision).sum::<f64>() / result.len() as f64;
    Ok(CardPrecision { k, days: result, mean })
}

/// The headline metrics of a model on a test set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Area under the ROC curve.
    pub roc_auc: f64,
    /// Average precision.
    pub average_precision: f64,
    /// Card precision@k.
    pub card_precision: CardPrecision,
}

impl Evaluation {
    /// AUC ROC, average precision and card precision@k of `scores` against the labels.
    pub fn new(
        scores: &[f64],
        labels: &[bool],
        cards: &[u32],
        days: &[i64],
        k: usize,
    ) -> Result<Evaluation, MetricError> {
        Ok(Evaluation {
            roc_auc: roc_auc(scores, labels)?,
            average_precision: average_precision(scores, labels)?,
            card_precision: card_precision_at_k(scores, labels, cards, days, k)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_matrix_counts_scores_at_the_threshold_as_flagged() {
        let scores = [0.9, 0.5, 0.5, 0.1, 0.7];
        let labels = [true, true, false, true, false];
        let m = ConfusionMatrix::at_threshold(&scores, &labels, 0.5).unwrap();
        assert_eq!(
            m,
            ConfusionMatrix { true_positives: 2, false_positives: 2, true_negatives: 0, false_negatives: 1 }
        );
        assert_eq!(m.precision(), 0.5);
        assert_eq!(m.recall(), 2.0 / 3.0);
        assert_eq!(m.f1(), 4.0 / 7.0);
        assert_eq!(m.false_positive_rate(), 1.0);
        let none = ConfusionMatrix::at_threshold(&scores, &labels, 2.0).unwrap();
        assert_eq!((none.precision(), none.f1()), (0.0, 0.0), "nothing flagged: zero, not NaN");
    }

    #[test]
    fn auc_counts_a_tie_between_classes_as_one_half() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]).unwrap(), 0.5);
        // pairs (fraud, genuine): (0.8,0.3) win, (0.8,0.8) tie, (0.4,0.3) win, (0.4,0.8) loss
        assert_eq!(roc_auc(&[0.8, 0.4, 0.3, 0.8], &[true, true, false, false]).unwrap(), 2.5 / 4.0);
    }

    #[test]
    fn average_precision_matches_a_hand_computation() {
        // Ranked: 0.9 F, 0.8 G, 0.7 F, 0.6 G: AP = 1/2 * 1 + 1/2 * 2/3.
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.6], &[true, false, true, false]).unwrap();
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-15);
        // A tie groups fraud and genuine at one threshold: one step of recall 1 at precision 1/2.
        assert_eq!(average_precision(&[0.5, 0.5], &[true, false]).unwrap(), 0.5);
    }

    #[test]
    fn refuses_one_class_mismatched_lengths_and_nan() {
        assert_eq!(
            roc_auc(&[0.1, 0.2], &[false, false]),
            Err(MetricError::OneClass { metric: "AUC ROC", missing: "fraud" })
        );
        assert!(matches!(roc_auc(&[0.1], &[true, false]), Err(MetricError::LengthMismatch { .. })));
        let err = average_precision(&[0.1, f64::NAN], &[true, false]).unwrap_err();
        assert_eq!(err.to_string(), "average precision: score 1 is NaN, not a finite number");
        assert!(matches!(card_precision_at_k(&[0.1], &[true], &[1], &[0], 0), Err(MetricError::ZeroK)));
    }

    #[test]
    fn card_precision_takes_each_cards_maximum_and_removes_cards_caught_earlier() {
        // Day 0: card 1 (fraud, max 0.9), card 2 (genuine, 0.8), card 3 (fraud, 0.1).
        // Day 1: card 1 again (caught on day 0, removed), card 3 (fraud, 0.7), card 4 (0.6).
        let scores = [0.2, 0.9, 0.8, 0.1, 0.99, 0.7, 0.6];
        let labels = [false, true, false, true, true, true, false];
        let cards = [1, 1, 2, 3, 1, 3, 4];
        let days = [0, 0, 0, 0, 1, 1, 1];
        let cp = card_precision_at_k(&scores, &labels, &cards, &days, 2).unwrap();
        assert_eq!(cp.days[0].precision, 0.5, "top 2 = cards 1 (fraud) and 2");
        assert_eq!(cp.days[0].compromised_cards, 2);
        assert_eq!(cp.days[1].precision, 0.5, "card 1 removed: top 2 = cards 3 (fraud) and 4");
        assert_eq!(cp.days[1].cards, 2);
        assert_eq!(cp.mean, 0.5);
        let cp = card_precision_at_k(&scores, &labels, &cards, &days, 10).unwrap();
        assert_eq!(cp.days[0].precision, 0.2, "divided by k even when the day has fewer cards");
    }
}
