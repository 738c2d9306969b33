//! Retraining on the latest labelled window: where the training and held-back days fall for an
//! as-of time and a label delay ([`RetrainWindow`]), whether a candidate beats the current model
//! on the same held-back days ([`Comparison`]), and the report of the decision ([`RetrainReport`]).
//! The registry ([`crate::registry`]) keeps the outcome.

use crate::dataset::{Holdout, day_of, day_start};
use crate::registry::{Metric, Metrics, RegistryError, write_atomically};
use scorer::Timestamp;
use scorer::time::SECONDS_PER_DAY;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Why a retraining window could not be laid out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetrainError {
    /// A period of zero days.
    #[error("the {0} period must last at least one day")]
    ZeroDays(&'static str),
    /// A period holds no labelled transaction.
    #[error(
        "no labelled transactions in the {part} days {from} .. {to} (as of {as_of} with a {delay}-day label \
         delay, labels are known for transactions before {labelled_end}; the file covers {first} .. {last}): \
         give a later --as-of or fewer --train-days / --test-days"
    )]
    NoLabelledData {
        /// `training` or `held-back`.
        part: &'static str,
        /// First day of the period.
        from: Timestamp,
        /// End of the period (excluded).
        to: Timestamp,
        /// The retraining's as-of time.
        as_of: Timestamp,
        /// The label delay in days.
        delay: u32,
        /// Labels are known before this midnight.
        labelled_end: Timestamp,
        /// First transaction of the file.
        first: Timestamp,
        /// Last transaction of the file.
        last: Timestamp,
    },
    /// A period holds transactions but no fraud, so AP and AUC are undefined.
    #[error(
        "the {part} days {from} .. {to} hold {rows} labelled transactions but no fraud: nothing to learn or rank"
    )]
    NoFraud {
        /// `training` or `held-back`.
        part: &'static str,
        /// First day of the period.
        from: Timestamp,
        /// End of the period (excluded).
        to: Timestamp,
        /// Transactions in it.
        rows: usize,
    },
}

/// Where a retraining as of a time trains and evaluates. Labels arrive `label_delay_days` after
/// a transaction, so at `as_of` they are known for the whole days before `as_of` minus the delay
/// (the *labelled end*). The held-back days are the last `test_days` of those; the training days
/// are the `train_days` before them, separated by the label delay as in the handbook's protocol
/// (when the held-back days began, the labels of the delay days before them were not known yet),
/// so the held-back metrics are what the model would have scored when deployed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrainWindow {
    /// The time the retraining runs as of: transactions at or after it are ignored.
    pub as_of: Timestamp,
    /// Days until a transaction's label is known.
    pub label_delay_days: u32,
    /// Training days.
    pub train_days: u32,
    /// Held-back evaluation days.
    pub test_days: u32,
}

/// The layout of a [`RetrainWindow`] over a transaction history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrainPlan {
    /// The training, delay and held-back days, as the [`Holdout`] that cuts them.
    pub holdout: Holdout,
    /// Labels are known for the transactions before this midnight.
    pub labelled_end: Timestamp,
    /// Transactions from `labelled_end` up to `as_of`: label not known yet, not used.
    pub unlabelled: usize,
    /// Transactions at or after `as_of`: in the future of the retraining, ignored.
    pub after_as_of: usize,
}

impl RetrainPlan {
    /// The training days: start and end (excluded).
    pub fn train_range(&self) -> (Timestamp, Timestamp) {
        let h = &self.holdout;
        (h.train_start, h.train_start.plus_seconds(i64::from(h.train_days) * SECONDS_PER_DAY))
    }

    /// The held-back days: start and end (excluded).
    pub fn test_range(&self) -> (Timestamp, Timestamp) {
        let h = &self.holdout;
        let start = day_of(h.train_start) + i64::from(h.train_days) + i64::from(h.delay_days);
        (day_start(start), day_start(start + i64::from(h.test_days)))
    }
}

impl RetrainWindow {
    /// Lays the window out over a history's transaction times (in any order): the training and
    /// held-back days, and how many transactions are left out for want of a label.
    pub fn plan(&self, times: &[Timestamp]) -> Result<RetrainPlan, RetrainError> {
        for (part, days) in [("training", self.train_days), ("held-back", self.test_days)] {
            if days == 0 {
                return Err(RetrainError::ZeroDays(part));
            }
        }
        let delay = i64::from(self.label_delay_days);
        let labelled_end_day = day_of(self.as_of.plus_seconds(-delay * SECONDS_PER_DAY));
        let labelled_end = day_start(labelled_end_day);
        let test_start = labelled_end_day - i64::from(self.test_days);
        let train_start = test_start - delay - i64::from(self.train_days);
        let holdout = Holdout {
            train_start: day_start(train_start),
            train_days: self.train_days,
            delay_days: self.label_delay_days,
            test_days: self.test_days,
        };
        let unlabelled = times.iter().filter(|&&t| t >= labelled_end && t < self.as_of).count();
        let after_as_of = times.iter().filter(|&&t| t >= self.as_of).count();
        let plan = RetrainPlan { holdout, labelled_end, unlabelled, after_as_of };
        let (first, last) = (
            times.iter().copied().min().unwrap_or(Timestamp(0)),
            times.iter().copied().max().unwrap_or(Timestamp(0)),
        );
        for (part, (from, to)) in [("training", plan.train_range()), ("held-back", plan.test_range())] {
            if !times.iter().any(|&t| t >= from && t < to) {
                return Err(RetrainError::NoLabelledData {
                    part,
                    from,
                    to,
                    as_of: self.as_of,
                    delay: self.label_delay_days,
                    labelled_end,
                    first,
                    last,
                });
            }
        }
        Ok(plan)
    }
}

/// What a retraining decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The candidate becomes the current model.
    Promoted,
    /// The current model stays.
    Refused,
}

/// A candidate's and the current model's metrics on the same held-back days, and the rule that
/// decides between them: the candidate is promoted when there is no current model, or when its
/// `metric` exceeds the current model's by more than `margin`.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The metric that decides.
    pub metric: Metric,
    /// How much better the candidate must be (absolute, in the metric's units).
    pub margin: f64,
    /// The candidate's id and metrics.
    pub candidate: (String, Metrics),
    /// The current model's id and metrics on the same rows, if there is a current model.
    pub current: Option<(String, Metrics)>,
}

impl Comparison {
    /// The decision and why, in words with the numbers.
    pub fn verdict(&self) -> (Verdict, String) {
        let m = self.metric;
        let (cand_id, cand) = &self.candidate;
        let c = cand.get(m);
        let Some((cur_id, cur)) = &self.current else {
            return (
                Verdict::Promoted,
                format!("no current model: the first candidate is promoted ({m} {c:.4})"),
            );
        };
        let k = cur.get(m);
        if cand_id == cur_id {
            return (Verdict::Refused, format!("the candidate is the current model {cur_id} (same content)"));
        }
        if c > k + self.margin {
            (
                Verdict::Promoted,
                format!(
                    "{m} {c:.4} beats the current model's {k:.4} by {:.4} (margin {})",
                    c - k,
                    self.margin
                ),
            )
        } else {
            (
                Verdict::Refused,
                format!(
                    "{m} {c:.4} does not beat the current model's {k:.4} by more than the margin {} \
                     (difference {:+.4})",
                    self.margin,
                    c - k
                ),
            )
        }
    }
}

/// One model's line in a retraining report.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportedModel {
    /// The model's id.
    pub model_id: String,
    /// Its family.
    pub kind: String,
    /// Its trainer settings.
    pub params: String,
    /// Its training days, `from .. to` (end excluded).
    pub train_range: String,
    /// Its metrics on this retraining's held-back days.
    pub metrics: Metrics,
}

/// The report of one retraining: the window, the two models' metrics on the same held-back
/// days, and the decision with its reason. Written as `report.json` and `report.md`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetrainReport {
    /// The time the retraining ran as of.
    pub as_of: String,
    /// The label delay in days.
    pub label_delay_days: u32,
    /// Labels known for transactions before this time.
    pub labelled_end: String,
    /// Transactions left out because their label was not known yet.
    pub unlabelled_excluded: usize,
    /// Transactions after the as-of time, ignored.
    pub after_as_of: usize,
    /// How the features were computed.
    pub cadence: String,
    /// The candidate's training days.
    pub train_range: String,
    /// Training rows.
    pub train_rows: usize,
    /// Fraud rows among them.
    pub train_frauds: usize,
    /// The held-back days both models were evaluated on.
    pub eval_range: String,
    /// Held-back rows (known compromised customers dropped).
    pub eval_rows: usize,
    /// Fraud rows among them.
    pub eval_frauds: usize,
    /// Held-back transactions dropped as belonging to customers known to be compromised.
    pub dropped_known_compromised: usize,
    /// The metric that decided.
    pub metric: Metric,
    /// The margin the candidate had to beat.
    pub margin: f64,
    /// The candidate.
    pub candidate: ReportedModel,
    /// The current model, evaluated on the same rows.
    pub current: Option<ReportedModel>,
    /// The decision.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// The code that ran it.
    pub code_version: String,
}

impl RetrainReport {
    /// The report as Markdown text.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let verdict = match self.verdict {
            Verdict::Promoted => "PROMOTED",
            Verdict::Refused => "REFUSED",
        };
        let _ = writeln!(s, "# Retraining as of {}: {verdict} {}\n", self.as_of, self.candidate.model_id);
        let _ = writeln!(s, "{}\n", self.reason);
        let _ = writeln!(
            s,
            "- label delay: {} days; labels known before {}",
            self.label_delay_days, self.labelled_end
        );
        let _ = writeln!(
            s,
            "- not used for training: {} transactions whose label was not known yet ({} after as-of ignored)",
            self.unlabelled_excluded, self.after_as_of
        );
        let _ = writeln!(s, "- features: {}", self.cadence);
        let _ = writeln!(
            s,
            "- candidate trained on {} ({} rows, {} frauds)",
            self.train_range, self.train_rows, self.train_frauds
        );
        let _ = writeln!(
            s,
            "- held-back days (both models): {} ({} rows, {} frauds; {} rows of known compromised customers dropped)",
            self.eval_range, self.eval_rows, self.eval_frauds, self.dropped_known_compromised
        );
        let _ = writeln!(
            s,
            "- decided on {} with margin {}; code {}\n",
            self.metric, self.margin, self.code_version
        );
        let _ = writeln!(s, "| model | role | kind | trained on | AUC ROC | AP | CP@100 |");
        let _ = writeln!(s, "| --- | --- | --- | --- | ---: | ---: | ---: |");
        for (role, m) in [("candidate", Some(&self.candidate)), ("current", self.current.as_ref())] {
            let Some(m) = m else {
                let _ = writeln!(s, "| (none) | current | | | | | |");
                continue;
            };
            let _ = writeln!(
                s,
                "| {} | {role} | {} | {} | {:.4} | {:.4} | {:.4} |",
                m.model_id,
                m.kind,
                m.train_range,
                m.metrics.auc_roc,
                m.metrics.average_precision,
                m.metrics.card_precision_at_100
            );
        }
        let _ = writeln!(s, "\nCandidate settings: `{}`", self.candidate.params);
        s
    }

    /// Writes `report.json` and `report.md` into `dir` (created); returns the Markdown's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, RegistryError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| RegistryError::Io { path: dir.to_path_buf(), source })?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| RegistryError::Damaged { path: dir.join("report.json"), reason: e.to_string() })?;
        write_atomically(&dir.join("report.json"), format!("{json}\n").as_bytes())?;
        let md = dir.join("report.md");
        write_atomically(&md, self.to_markdown().as_bytes())?;
        Ok(md)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = SECONDS_PER_DAY;

    #[test]
    fn lays_the_window_before_the_label_delay() {
        // One transaction at noon on each of 60 days from day 0.
        let times: Vec<Timestamp> = (0..60).map(|d| Timestamp(d * DAY + DAY / 2)).collect();
        let w =
            RetrainWindow { as_of: Timestamp(50 * DAY), label_delay_days: 7, train_days: 10, test_days: 5 };
        let plan = w.plan(&times).unwrap();
        assert_eq!(plan.labelled_end, Timestamp(43 * DAY));
        assert_eq!(plan.test_range(), (Timestamp(38 * DAY), Timestamp(43 * DAY)));
        assert_eq!(plan.train_range(), (Timestamp(21 * DAY), Timestamp(31 * DAY)));
        assert_eq!((plan.unlabelled, plan.after_as_of), (7, 10));
        // As of mid-day: labels known before the midnight under as-of minus the delay.
        let w = RetrainWindow { as_of: Timestamp(50 * DAY + 3600), ..w };
        assert_eq!(w.plan(&times).unwrap().labelled_end, Timestamp(43 * DAY));
        let early = RetrainWindow { as_of: Timestamp(12 * DAY), ..w };
        let err = early.plan(&times).unwrap_err().to_string();
        assert!(err.starts_with("no labelled transactions in the training days 1969-12-"), "{err}");
        let err = RetrainWindow { test_days: 0, ..w }.plan(&times).unwrap_err();
        assert_eq!(err, RetrainError::ZeroDays("held-back"));
    }

    #[test]
    fn promotes_only_past_the_margin() {
        let m = |ap| Metrics { auc_roc: 0.8, average_precision: ap, card_precision_at_100: 0.2 };
        let c = Comparison {
            metric: Metric::AveragePrecision,
            margin: 0.01,
            candidate: ("a".into(), m(0.60)),
            current: None,
        };
        assert_eq!(c.verdict().0, Verdict::Promoted);
        let better = Comparison { current: Some(("b".into(), m(0.55))), ..c.clone() };
        assert_eq!(better.verdict().0, Verdict::Promoted);
        let close = Comparison { current: Some(("b".into(), m(0.595))), ..c.clone() };
        let (v, why) = close.verdict();
        assert_eq!(v, Verdict::Refused);
        assert!(why.contains("0.6000 does not beat the current model's 0.5950"), "{why}");
        let same = Comparison { current: Some(("a".into(), m(0.2))), ..c };
        assert_eq!(same.verdict().0, Verdict::Refused);
    }
}
