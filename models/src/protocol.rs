//! The handbook's prequential protocol (ch. 5-6): several folds of (train, delay, assess), each
//! starting a step earlier than the one before, a grid of candidate models chosen on the
//! validation folds only, and the test folds run for the chosen candidates alone, so that no
//! choice ever looks at them.

use crate::dataset::{Holdout, day_of, day_start};
use crate::metrics::MetricError;
use crate::train::{TrainError, Trainer};
use crate::{BalancedBaggingConfig, ClassWeight, DatasetError, ForestConfig, GbdtConfig, LogisticConfig};
use exporter::features::FeatureTable;
use exporter::{NoProgress, Progress, Transactions};
use scorer::Timestamp;
use std::time::Instant;

/// Why the protocol could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A fold could not be cut from the history.
    #[error("{stage} fold {fold} (training from {train_start}): {source}")]
    Dataset {
        /// `validation` or `test`.
        stage: Stage,
        /// The fold (0 is the latest).
        fold: usize,
        /// First training day of the fold.
        train_start: Timestamp,
        /// What went wrong.
        source: DatasetError,
    },
    /// A candidate could not be trained on a fold.
    #[error("{candidate}: {stage} fold {fold} (training from {train_start}): {source}")]
    Train {
        /// The candidate's name.
        candidate: String,
        /// `validation` or `test`.
        stage: Stage,
        /// The fold (0 is the latest).
        fold: usize,
        /// First training day of the fold.
        train_start: Timestamp,
        /// What went wrong.
        source: TrainError,
    },
    /// A metric is undefined on a fold (e.g. no fraud in its assessment week).
    #[error("{candidate}: {stage} fold {fold} (training from {train_start}): {source}")]
    Metric {
        /// The candidate's name.
        candidate: String,
        /// `validation` or `test`.
        stage: Stage,
        /// The fold (0 is the latest).
        fold: usize,
        /// First training day of the fold.
        train_start: Timestamp,
        /// What went wrong.
        source: MetricError,
    },
    /// The grid is empty, or the protocol has no fold.
    #[error("the prequential protocol needs at least one {0}")]
    Empty(&'static str),
}

/// Which folds: those that choose, or those that report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The folds hyperparameters are chosen on.
    Validation,
    /// The later folds the chosen models are reported on.
    Test,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Validation => "validation",
            Stage::Test => "test",
        })
    }
}

/// The three metrics the handbook reports, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Area under the ROC curve.
    RocAuc,
    /// Average precision.
    AveragePrecision,
    /// Card precision@k.
    CardPrecision,
}

impl Metric {
    /// All three, in the handbook's order.
    pub const ALL: [Metric; 3] = [Metric::RocAuc, Metric::AveragePrecision, Metric::CardPrecision];

    /// The metric's name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Metric::RocAuc => "AUC ROC",
            Metric::AveragePrecision => "Average precision",
            Metric::CardPrecision => "Card precision@100",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The prequential schedule: `folds` folds per stage; fold `i` trains from `start - i * step_days`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prequential {
    /// Folds per stage.
    pub folds: usize,
    /// Days between the training starts of consecutive folds.
    pub step_days: u32,
    /// Training, delay and assessment days of every fold (its `train_start` is ignored).
    pub shape: Holdout,
    /// First training day of the latest validation fold.
    pub validation_start: Timestamp,
    /// First training day of the latest test fold.
    pub test_start: Timestamp,
    /// The k of card precision@k.
    pub k: usize,
}

impl Prequential {
    /// The handbook's: 4 folds of 7 + 7 + 7 days, a week apart; validation folds train from
    /// 2018-07-11, 07-04, 06-27, 06-20 and test folds from 2018-08-15, 08-08, 08-01, 07-25; card
    /// precision@100.
    pub fn handbook() -> Prequential {
        Prequential {
            folds: 4,
            step_days: 7,
            shape: Holdout::handbook(),
            // 2018-07-11 and 2018-08-15, 00:00:00 UTC.
            validation_start: Timestamp(1_531_267_200),
            test_start: Timestamp(1_534_291_200),
            k: 100,
        }
    }

    /// The folds of a stage, latest first.
    pub fn folds(&self, stage: Stage) -> Vec<Holdout> {
        let start = day_of(match stage {
            Stage::Validation => self.validation_start,
            Stage::Test => self.test_start,
        });
        (0..self.folds)
            .map(|i| Holdout {
                train_start: day_start(start - i as i64 * i64::from(self.step_days)),
                ..self.shape
            })
            .collect()
    }

    /// Runs every candidate on the validation folds, picks the best candidate for each metric by
    /// its validation mean, and runs only those picks on the test folds. `progress` counts fits.
    pub fn run(
        &self,
        tx: &Transactions,
        table: &FeatureTable,
        candidates: &[Candidate],
        progress: &dyn Progress,
    ) -> Result<PrequentialResult, ProtocolError> {
        if candidates.is_empty() {
            return Err(ProtocolError::Empty("candidate"));
        }
        if self.folds == 0 {
            return Err(ProtocolError::Empty("fold"));
        }
        progress.start("validation", (candidates.len() * self.folds) as u64);
        let validation = self.stage_scores(tx, table, candidates, Stage::Validation, progress)?;
        progress.finish();
        let mut results: Vec<CandidateResult> = candidates
            .iter()
            .zip(validation)
            .map(|(c, folds)| CandidateResult {
                name: c.name.clone(),
                family: c.trainer.family(),
                validation: folds,
                test: None,
            })
            .collect();
        let best = Metric::ALL.map(|m| best_by(&results, m));
        let mut to_test: Vec<usize> = best.to_vec();
        to_test.sort_unstable();
        to_test.dedup();
        progress.start("test", (to_test.len() * self.folds) as u64);
        let chosen: Vec<Candidate> = to_test.iter().map(|&i| candidates[i].clone()).collect();
        let test = self.stage_scores(tx, table, &chosen, Stage::Test, progress)?;
        progress.finish();
        for (&i, folds) in to_test.iter().zip(test) {
            results[i].test = Some(folds);
        }
        Ok(PrequentialResult { candidates: results, best })
    }

    /// Every candidate's scores on every fold of `stage` (folds cut once, shared by candidates).
    pub fn stage_scores(
        &self,
        tx: &Transactions,
        table: &FeatureTable,
        candidates: &[Candidate],
        stage: Stage,
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<FoldScore>>, ProtocolError> {
        let mut out = vec![Vec::with_capacity(self.folds); candidates.len()];
        for (fold, holdout) in self.folds(stage).into_iter().enumerate() {
            let train_start = holdout.train_start;
            let split = holdout.split(tx, table).map_err(|source| ProtocolError::Dataset {
                stage,
                fold,
                train_start,
                source,
            })?;
            let samples = split.train.samples().map_err(|source| ProtocolError::Train {
                candidate: "(any)".into(),
                stage,
                fold,
                train_start,
                source,
            })?;
            for (c, scores) in candidates.iter().zip(out.iter_mut()) {
                let began = Instant::now();
                let model = c.trainer.fit(samples, &NoProgress).map_err(|source| ProtocolError::Train {
                    candidate: c.name.clone(),
                    stage,
                    fold,
                    train_start,
                    source,
                })?;
                let fit_seconds = began.elapsed().as_secs_f64();
                let s = split.test.scores(&model);
                let e = split.test.evaluate(&s, self.k).map_err(|source| ProtocolError::Metric {
                    candidate: c.name.clone(),
                    stage,
                    fold,
                    train_start,
                    source,
                })?;
                scores.push(FoldScore {
                    train_start,
                    values: [e.roc_auc, e.average_precision, e.card_precision.mean],
                    fit_seconds,
                });
                progress.advance(1);
            }
        }
        Ok(out)
    }
}

/// A named model configuration on the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// How tables name it, e.g. `gbdt 100/0.1/3`.
    pub name: String,
    /// The trainer and its hyperparameters.
    pub trainer: Trainer,
}

/// One fold's metrics for one candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldScore {
    /// First training day of the fold.
    pub train_start: Timestamp,
    /// AUC ROC, average precision and card precision@k, in [`Metric::ALL`]'s order.
    pub values: [f64; 3],
    /// Seconds spent training.
    pub fit_seconds: f64,
}

/// A mean over folds and its (population) standard deviation, as scikit-learn's grid search
/// reports them and the handbook tabulates them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanStd {
    /// Mean over the folds.
    pub mean: f64,
    /// Population standard deviation over the folds.
    pub std: f64,
}

impl MeanStd {
    /// Mean and population standard deviation of `values` (NaN when empty).
    pub fn of(values: impl IntoIterator<Item = f64>) -> MeanStd {
        let v: Vec<f64> = values.into_iter().collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        MeanStd { mean, std: var.sqrt() }
    }
}

impl std::fmt::Display for MeanStd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} ± {:.3}", self.mean, self.std)
    }
}

/// A candidate's folds: validation always, test only when it was chosen for some metric.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateResult {
    /// The candidate's name.
    pub name: String,
    /// The model family (`logistic`, `gbdt`, `forest`, ...).
    pub family: &'static str,
    /// One score per validation fold, latest first.
    pub validation: Vec<FoldScore>,
    /// One score per test fold, when the candidate was chosen for a metric.
    pub test: Option<Vec<FoldScore>>,
}

impl CandidateResult {
    /// Mean ± std of `metric` on the validation folds.
    pub fn validation(&self, metric: Metric) -> MeanStd {
        MeanStd::of(self.validation.iter().map(|f| f.values[metric.index()]))
    }

    /// Mean ± std of `metric` on the test folds, when they were run.
    pub fn test(&self, metric: Metric) -> Option<MeanStd> {
        self.test.as_ref().map(|folds| MeanStd::of(folds.iter().map(|f| f.values[metric.index()])))
    }

    /// Mean training seconds per validation fold.
    pub fn fit_seconds(&self) -> f64 {
        self.validation.iter().map(|f| f.fit_seconds).sum::<f64>() / self.validation.len().max(1) as f64
    }
}

/// What the protocol found.
#[derive(Clone, Debug, PartialEq)]
pub struct PrequentialResult {
    /// Every candidate, in grid order.
    pub candidates: Vec<CandidateResult>,
    /// For each metric of [`Metric::ALL`], the index of the candidate with the best validation mean.
    pub best: [usize; 3],
}

impl PrequentialResult {
    /// The test figure at the best validation parameters for `metric` (the handbook's
    /// `test_at_best_valid`), with the chosen candidate.
    pub fn test_at_best_valid(&self, metric: Metric) -> (&CandidateResult, Option<MeanStd>) {
        let c = &self.candidates[self.best[metric.index()]];
        (c, c.test(metric))
    }

    /// The same choice restricted to one family: the family's best validation candidate for
    /// `metric` (its test figure is present only if it was also an overall pick).
    pub fn best_of_family(&self, family: &str, metric: Metric) -> Option<&CandidateResult> {
        self.candidates
            .iter()
            .filter(|c| c.family == family)
            .max_by(|a, b| a.validation(metric).mean.total_cmp(&b.validation(metric).mean))
    }
}

/// The best test means at the best validation parameters published in the handbook
/// (`handbook_ch5_ch6_summary.csv`, column `test_at_best_valid`), per metric: figure and model.
pub const PUBLISHED_TEST_AT_BEST_VALID: [(f64, f64, &str); 3] =
    [(0.879, 0.013, "balanced bagging"), (0.687, 0.011, "XGBoost"), (0.305, 0.010, "balanced bagging")];

impl PrequentialResult {
    /// The results as Markdown: every candidate on the validation folds (the best per metric
    /// marked), then the test folds at the best validation parameters beside the published
    /// figures, then every metric of each chosen candidate on the test folds.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let folds = self.candidates.first().map_or(0, |c| c.validation.len());
        let _ = writeln!(s, "Validation folds (mean ± std over {folds} folds):\n");
        let _ = writeln!(s, "| candidate | AUC ROC | Average precision | Card precision@100 | fit s |");
        let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
        for (i, c) in self.candidates.iter().enumerate() {
            let cell = |m: Metric| {
                let mark = if self.best[m.index()] == i { " **best**" } else { "" };
                format!("{}{mark}", c.validation(m))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2} |",
                c.name,
                cell(Metric::RocAuc),
                cell(Metric::AveragePrecision),
                cell(Metric::CardPrecision),
                c.fit_seconds()
            );
        }
        let _ = writeln!(s, "\nTest folds at the best validation parameters (test_at_best_valid):\n");
        let _ = writeln!(
            s,
            "| metric | chosen on validation | validation | test | published test_at_best_valid |"
        );
        let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
        for (m, (mean, std, by)) in Metric::ALL.into_iter().zip(PUBLISHED_TEST_AT_BEST_VALID) {
            let (c, test) = self.test_at_best_valid(m);
            let test = test.map_or_else(|| "-".to_string(), |t| t.to_string());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {test} | {mean:.3} ± {std:.3} ({by}) |",
                m.name(),
                c.name,
                c.validation(m)
            );
        }
        let _ = writeln!(s, "\nTest folds of the chosen candidates, every metric:\n");
        let _ = writeln!(s, "| candidate | AUC ROC | Average precision | Card precision@100 |");
        let _ = writeln!(s, "| --- | --- | --- | --- |");
        for c in self.candidates.iter().filter(|c| c.test.is_some()) {
            let t = |m| c.test(m).map(|t| t.to_string()).unwrap_or_default();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                c.name,
                t(Metric::RocAuc),
                t(Metric::AveragePrecision),
                t(Metric::CardPrecision)
            );
        }
        s
    }
}

/// The candidate with the highest validation mean of `metric`; the first one on a tie.
fn best_by(results: &[CandidateResult], metric: Metric) -> usize {
    let mut best = 0;
    for (i, r) in results.iter().enumerate() {
        if r.validation(metric).mean > results[best].validation(metric).mean {
            best = i;
        }
    }
    best
}

/// Which model families a grid covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Logistic regression.
    Logistic,
    /// Random forest.
    Forest,
    /// Gradient-boosted trees.
    Gbdt,
    /// Balanced bagging (trees on undersampled bootstraps, averaged).
    BalancedBagging,
    /// Slower-learning, longer GBDTs (eta 0.05, 300-400 trees, depth 3-4, subsampled).
    GbdtSlow,
}

impl std::str::FromStr for Family {
    type Err = String;

    /// `lr` (or `logistic`), `rf` (`forest`), `gbdt`, `bb` (`balanced-bagging`), `gs`
    /// (`gbdt-slow`).
    fn from_str(s: &str) -> Result<Family, String> {
        match s {
            "lr" | "logistic" => Ok(Family::Logistic),
            "rf" | "forest" => Ok(Family::Forest),
            "gbdt" => Ok(Family::Gbdt),
            "bb" | "balanced-bagging" => Ok(Family::BalancedBagging),
            "gs" | "gbdt-slow" => Ok(Family::GbdtSlow),
            other => Err(format!("unknown model family {other:?}; use lr, rf, gbdt, bb or gs")),
        }
    }
}

/// The default grid, sized for a 2-core machine: the handbook's logistic regression (C barely
/// matters there) plain and class-weighted, and GBDT around XGBoost's best settings in the
/// handbook (depth 3), with slower learning plus row and column subsampling, and with weighted
/// frauds. Exact splits throughout: histogram bins cost accuracy on these features. Random
/// forests (the handbook's best reached AUC 0.875 on test) are left out for time: a 100-tree,
/// depth-20 forest costs as much as the whole GBDT grid on one fold. Balanced bagging is the
/// handbook's own grid (ch. 6): 100 fully grown trees on all features, each on a bootstrap
/// undersampled to fraud/genuine = 0.02, 0.05, 0.1, 0.5 or 1. The slow GBDTs (`gs`) learn at
/// eta 0.05 with row and column subsampling 0.8: 400 trees of depth 3, 300 of depth 4, and 300
/// of depth 4 with minimum child weight 5.
pub fn default_grid(families: &[Family]) -> Vec<Candidate> {
    let mut grid = Vec::new();
    if families.contains(&Family::Logistic) {
        grid.push(Candidate {
            name: "logistic C=1".into(),
            trainer: Trainer::Logistic(LogisticConfig::default()),
        });
        grid.push(Candidate {
            name: "logistic C=1 balanced".into(),
            trainer: Trainer::Logistic(LogisticConfig {
                class_weight: ClassWeight::Balanced,
                ..Default::default()
            }),
        });
    }
    if families.contains(&Family::Forest) {
        grid.push(Candidate {
            name: "forest 100/20".into(),
            trainer: Trainer::Forest(ForestConfig { trees: 100, max_depth: Some(20), ..Default::default() }),
        });
    }
    if families.contains(&Family::Gbdt) {
        let mut gbdt = |trees: usize, eta: f64, depth: u32, sub: f64, spw: f64| {
            let mut name = format!("gbdt {trees}/{eta}/{depth}");
            if sub != 1.0 {
                name += &format!(" sub={sub}");
            }
            if spw != 1.0 {
                name += &format!(" spw={spw}");
            }
            grid.push(Candidate {
                name,
                trainer: Trainer::Gbdt(GbdtConfig {
                    trees,
                    learning_rate: eta,
                    max_depth: depth,
                    subsample: sub,
                    colsample_bytree: sub,
                    scale_pos_weight: spw,
                    ..Default::default()
                }),
            });
        };
        // The handbook's XGBoost grid points that led on validation.
        gbdt(50, 0.3, 3, 1.0, 1.0);
        gbdt(100, 0.3, 3, 1.0, 1.0);
        gbdt(100, 0.1, 3, 1.0, 1.0);
        // Slower learning with row and column subsampling; weighted frauds.
        gbdt(200, 0.1, 3, 0.8, 1.0);
        gbdt(100, 0.1, 3, 1.0, 5.0);
    }
    if families.contains(&Family::GbdtSlow) {
        for (trees, depth, min_child_weight) in [(400, 3, 1.0), (300, 4, 1.0), (300, 4, 5.0)] {
            let mcw =
                if min_child_weight != 1.0 { format!(" mcw={min_child_weight}") } else { String::new() };
            grid.push(Candidate {
                name: format!("gbdt {trees}/0.05/{depth} sub=0.8{mcw}"),
                trainer: Trainer::Gbdt(GbdtConfig {
                    trees,
                    learning_rate: 0.05,
                    max_depth: depth,
                    subsample: 0.8,
                    colsample_bytree: 0.8,
                    min_child_weight,
                    ..Default::default()
                }),
            });
        }
    }
    if families.contains(&Family::BalancedBagging) {
        for ratio in [0.02, 0.05, 0.1, 0.5, 1.0] {
            grid.push(Candidate {
                name: format!("balanced bagging 100 r={ratio}"),
                trainer: Trainer::BalancedBagging(BalancedBaggingConfig {
                    trees: 100,
                    sampling_strategy: ratio,
                    ..Default::default()
                }),
            });
        }
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handbook_folds_train_a_week_apart_from_the_published_days() {
        let p = Prequential::handbook();
        let day = |t: Timestamp| t.to_string()[..10].to_string();
        let valid: Vec<String> = p.folds(Stage::Validation).iter().map(|h| day(h.train_start)).collect();
        assert_eq!(valid, ["2018-07-11", "2018-07-04", "2018-06-27", "2018-06-20"]);
        let test: Vec<String> = p.folds(Stage::Test).iter().map(|h| day(h.train_start)).collect();
        assert_eq!(test, ["2018-08-15", "2018-08-08", "2018-08-01", "2018-07-25"]);
    }

    #[test]
    fn families_parse_and_balanced_bagging_brings_the_handbooks_grid() {
        let families: Vec<Family> = "lr,rf,gbdt,bb".split(',').map(|f| f.parse().unwrap()).collect();
        assert_eq!(families, [Family::Logistic, Family::Forest, Family::Gbdt, Family::BalancedBagging]);
        let err = "xgb".parse::<Family>().unwrap_err();
        assert!(err.contains("\"xgb\""), "{err}");
        let grid = default_grid(&[Family::BalancedBagging]);
        let ratios: Vec<f64> = grid
            .iter()
            .map(|c| match &c.trainer {
                Trainer::BalancedBagging(b) => b.sampling_strategy,
                other => panic!("{}", other.family()),
            })
            .collect();
        assert_eq!(ratios, [0.02, 0.05, 0.1, 0.5, 1.0]);
        assert_eq!(grid[3].name, "balanced bagging 100 r=0.5");
    }

    #[test]
    fn mean_and_population_std() {
        let m = MeanStd::of([1.0, 3.0]);
        assert_eq!((m.mean, m.std), (2.0, 1.0));
        assert_eq!(m.to_string(), "2.000 ± 1.000");
    }
}
