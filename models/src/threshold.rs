//! Choosing the decision threshold of the policy from scored, labelled history: by alert budget
//! (reviews per day), by target precision, or by cost (fraud amount caught against the cost of
//! reviewing each alert); and the threshold table a report shows.
//!
//! Every choice flags the scores `>= threshold`, the convention of [`crate::metrics`].

use crate::metrics::MetricError;
use std::collections::BTreeSet;

/// Scored transactions with what the threshold choices weigh: labels, days and amounts.
#[derive(Clone, Debug)]
pub struct Outcomes<'a> {
    scores: &'a [f64],
    labels: &'a [bool],
    amounts: &'a [f64],
    days: usize,
    frauds: u64,
    review_cost: f64,
    /// Row indices by decreasing score.
    order: Vec<usize>,
}

/// What flagging every score `>= threshold` does on the history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThresholdChoice {
    /// Scores at or above it are flagged.
    pub threshold: f64,
    /// Transactions flagged.
    pub flagged: u64,
    /// Frauds flagged.
    pub frauds_flagged: u64,
    /// Flagged transactions per day of the history (mean).
    pub alerts_per_day: f64,
    /// Share of flagged transactions that are fraud (0 when none is flagged).
    pub precision: f64,
    /// Share of frauds flagged.
    pub recall: f64,
    /// Sum of the flagged frauds' amounts.
    pub fraud_amount_flagged: f64,
    /// `fraud_amount_flagged - review_cost * flagged` ([`Outcomes::with_review_cost`]; 0 by
    /// default).
    pub net_saving: f64,
}

/// Why a threshold could not be chosen.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// The scores, labels, days or amounts are unusable.
    #[error(transparent)]
    Metric(#[from] MetricError),
    /// An amount is negative, NaN or infinite.
    #[error("threshold: amount {index} is {value}; amounts must be finite and at least 0")]
    BadAmount {
        /// Position of the amount.
        index: usize,
        /// The amount.
        value: f64,
    },
    /// A target or cost out of range.
    #[error("threshold: {name} = {value} is invalid; {expected}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: f64,
        /// What is allowed.
        expected: &'static str,
    },
}

impl<'a> Outcomes<'a> {
    /// Checks that every column has one value per score, scores are finite and amounts are
    /// finite and non-negative. `days` is each row's day (any numbering); only the number of
    /// distinct days is used, for alerts per day.
    pub fn new(
        scores: &'a [f64],
        labels: &'a [bool],
        days: &[i64],
        amounts: &'a [f64],
    ) -> Result<Outcomes<'a>, ThresholdError> {
        const METRIC: &str = "threshold";
        for (what, got) in [("labels", labels.len()), ("days", days.len()), ("amounts", amounts.len())] {
            if got != scores.len() {
                return Err(MetricError::LengthMismatch {
                    metric: METRIC,
                    what,
                    expected: scores.len(),
                    got,
                }
                .into());
            }
        }
        if scores.is_empty() {
            return Err(MetricError::Empty { metric: METRIC }.into());
        }
        if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
            return Err(MetricError::NotFinite { metric: METRIC, index, value: scores[index] }.into());
        }
        if let Some(index) = amounts.iter().position(|a| !(a.is_finite() && *a >= 0.0)) {
            return Err(ThresholdError::BadAmount { index, value: amounts[index] });
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let days = days.iter().collect::<BTreeSet<_>>().len();
        let frauds = labels.iter().filter(|&&y| y).count() as u64;
        Ok(Outcomes { scores, labels, amounts, days, frauds, review_cost: 0.0, order })
    }

    /// Sets the cost of reviewing one alert (same unit as the amounts; 0 by default): the net
    /// saving of every outcome subtracts it per alert, and [`Outcomes::by_cost`] maximises that.
    pub fn with_review_cost(mut self, review_cost: f64) -> Result<Outcomes<'a>, ThresholdError> {
        if !(review_cost.is_finite() && review_cost >= 0.0) {
            return Err(ThresholdError::BadParameter {
                name: "review cost",
                value: review_cost,
                expected: "a finite cost of at least 0",
            });
        }
        self.review_cost = review_cost;
        Ok(self)
    }

    /// Number of distinct days.
    pub fn days(&self) -> usize {
        self.days
    }

    /// The outcome of flagging every score `>= threshold`.
    pub fn at(&self, threshold: f64) -> ThresholdChoice {
        let mut c = self.empty(threshold);
        for &i in self.order.iter().take_while(|&&i| self.scores[i] >= threshold) {
            self.add(&mut c, i);
        }
        self.finish(c)
    }

    /// The lowest threshold that flags at most `per_day` transactions per day on average; above
    /// the highest score (nothing flagged) when even the top score's ties exceed the budget.
    pub fn by_alert_budget(&self, per_day: usize) -> ThresholdChoice {
        let budget = (per_day as u64).saturating_mul(self.days as u64);
        let best = self.sweep().take_while(|c| c.flagged <= budget).last();
        best.unwrap_or_else(|| self.nothing_flagged())
    }

    /// The lowest threshold (most frauds caught) whose precision is at least `target`; `None`
    /// when no threshold reaches it.
    pub fn by_precision(&self, target: f64) -> Result<Option<ThresholdChoice>, ThresholdError> {
        if !(target > 0.0 && target <= 1.0) {
            return Err(ThresholdError::BadParameter {
                name: "target precision",
                value: target,
                expected: "a precision in (0, 1]",
            });
        }
        Ok(self.sweep().filter(|c| c.precision >= target).last())
    }

    /// The threshold with the highest net saving: fraud amount flagged minus the review cost
    /// per alert (flagging nothing saves 0, so the answer never loses money on the history).
    /// Among equal savings, the highest threshold (fewest alerts).
    pub fn by_cost(&self) -> ThresholdChoice {
        let mut best = self.nothing_flagged();
        for c in self.sweep() {
            if c.net_saving > best.net_saving {
                best = c;
            }
        }
        best
    }

    /// The outcome at each of `thresholds`, in the order given.
    pub fn table(&self, thresholds: &[f64]) -> Vec<ThresholdChoice> {
        thresholds.iter().map(|&t| self.at(t)).collect()
    }

    /// One outcome per distinct score, highest first (each flags every score down to it).
    fn sweep(&self) -> impl Iterator<Item = ThresholdChoice> + '_ {
        let mut c = self.empty(f64::INFINITY);
        let mut k = 0;
        std::iter::from_fn(move || {
            let &first = self.order.get(k)?;
            let score = self.scores[first];
            // -0.0 and 0.0 are one score: `==`, not the sort's total order, ends a group.
            while let Some(&i) = self.order.get(k).filter(|&&i| self.scores[i] == score) {
                self.add(&mut c, i);
                k += 1;
            }
            c.threshold = score;
            Some(self.finish(c))
        })
    }

    fn nothing_flagged(&self) -> ThresholdChoice {
        let top = self.scores[self.order[0]];
        self.finish(self.empty(top.next_up()))
    }

    fn empty(&self, threshold: f64) -> ThresholdChoice {
        ThresholdChoice {
            threshold,
            flagged: 0,
            frauds_flagged: 0,
            alerts_per_day: 0.0,
            precision: 0.0,
            recall: 0.0,
            fraud_amount_flagged: 0.0,
            net_saving: 0.0,
        }
    }

    fn add(&self, c: &mut ThresholdChoice, i: usize) {
        c.flagged += 1;
        if self.labels[i] {
            c.frauds_flagged += 1;
            c.fraud_amount_flagged += self.amounts[i];
        }
    }

    fn finish(&self, mut c: ThresholdChoice) -> ThresholdChoice {
        c.alerts_per_day = c.flagged as f64 / self.days.max(1) as f64;
        c.precision = if c.flagged == 0 { 0.0 } else { c.frauds_flagged as f64 / c.flagged as f64 };
        c.recall = if self.frauds == 0 { 0.0 } else { c.frauds_flagged as f64 / self.frauds as f64 };
        c.net_saving = c.fraud_amount_flagged - self.review_cost * c.flagged as f64;
        c
    }
}
