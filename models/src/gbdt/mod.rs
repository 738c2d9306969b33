//! Gradient-boosted trees with XGBoost's second-order method and logistic loss: exact greedy or
//! histogram split finding, depth-wise growth, L2 on leaves, minimum child weight, gamma pruning,
//! `scale_pos_weight`, row and column subsampling, and early stopping on a validation split.
//! [`Default`] is XGBoost 1.x's `XGBClassifier()`: 100 trees, depth 6, eta 0.3, exact splits,
//! base score 0.5. With the default [`Arithmetic::Xgboost`] the trees are xgboost 1.7's own (on the
//! handbook test week every probability is within 4e-8 of xgboost 1.7.6's). The result is a
//! `scorer` tree ensemble, so validation scores come from the scorer's own evaluator; each leaf
//! carries its cover (the hessian sum of its training rows), so the model explains itself.

mod grow;

use crate::metrics;
use crate::train::{Samples, TrainError, bad};
use crate::tree::{Columns, lay_out};
use exporter::Progress;
use grow::{Finder, GrowParams, Stats};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use scorer::model::{Model, TreeEnsemble, TreeOutput, sigmoid};

const TRAINER: &str = "gbdt";

/// How split points are searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitMethod {
    /// Every boundary between two distinct values (XGBoost's `tree_method="exact"`).
    Exact,
    /// Boundaries between at most this many quantile bins per feature (`tree_method="hist"`,
    /// `max_bin`); a feature with fewer distinct values gets one bin per value.
    Histogram {
        /// Bins per feature, 2 to 65535.
        max_bins: usize,
    },
}

/// The score the boosting starts from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BaseScore {
    /// This probability (XGBoost 1.x: 0.5).
    Fixed(f64),
    /// The (weighted) share of fraud in the training rows (what XGBoost 2+ fits).
    FraudRate,
}

/// The precision of the boosting arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// As XGBoost 1.x: gradients, training predictions, split gains and leaf weights in f32
    /// (sums of gradients in f64). Trees then equal xgboost's own, split for split.
    Xgboost,
    /// Everything in f64.
    F64,
}

/// What early stopping watches on the validation rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMetric {
    /// Mean logistic loss (lower is better; XGBoost's default for `binary:logistic`).
    LogLoss,
    /// Area under the ROC curve.
    RocAuc,
    /// Average precision.
    AveragePrecision,
}

/// Stop adding trees once the validation metric has not improved for `rounds` trees, and keep
/// the trees up to the best one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStopping {
    /// Trees without improvement before stopping.
    pub rounds: usize,
    /// The metric watched.
    pub metric: StopMetric,
    /// With [`GbdtConfig::fit`]: the share of the training rows, taken from the end (the latest
    /// rows when they are in time order), held out for validation.
    pub validation_fraction: f64,
}

/// Gradient boosting settings (XGBoost's names and meanings).
#[derive(Clone, Debug, PartialEq)]
pub struct GbdtConfig {
    /// Number of boosting rounds (`n_estimators`).
    pub trees: usize,
    /// Maximum tree depth (a root-only tree has depth 0).
    pub max_depth: u32,
    /// Shrinkage applied to every leaf (`eta`).
    pub learning_rate: f64,
    /// Minimum sum of hessians in a child.
    pub min_child_weight: f64,
    /// L2 penalty on leaf values (`lambda`).
    pub lambda: f64,
    /// Minimum gain of a kept split (`gamma`, `min_split_loss`).
    pub gamma: f64,
    /// Weight of fraud rows in the gradients.
    pub scale_pos_weight: f64,
    /// Share of rows each tree learns from (Bernoulli draw per row).
    pub subsample: f64,
    /// Share of features each tree may use.
    pub colsample_bytree: f64,
    /// Share of the tree's features each level may use.
    pub colsample_bylevel: f64,
    /// Share of the level's features each node may use.
    pub colsample_bynode: f64,
    /// Exact or histogram split finding.
    pub split_method: SplitMethod,
    /// The precision of gradients and gains.
    pub arithmetic: Arithmetic,
    /// The starting score.
    pub base_score: BaseScore,
    /// Early stopping, off by default.
    pub early_stopping: Option<EarlyStopping>,
    /// Seed of the row and column draws.
    pub seed: u64,
}

impl Default for GbdtConfig {
    fn default() -> GbdtConfig {
        GbdtConfig {
            trees: 100,
            max_depth: 6,
            learning_rate: 0.3,
            min_child_weight: 1.0,
            lambda: 1.0,
            gamma: 0.0,
            scale_pos_weight: 1.0,
            subsample: 1.0,
            colsample_bytree: 1.0,
            colsample_bylevel: 1.0,
            colsample_bynode: 1.0,
            split_method: SplitMethod::Exact,
            arithmetic: Arithmetic::Xgboost,
            base_score: BaseScore::Fixed(0.5),
            early_stopping: None,
            seed: 0,
        }
    }
}

/// A fitted ensemble with its validation history.
#[derive(Clone, Debug, PartialEq)]
pub struct GbdtFit {
    /// The model (trees up to the best round when early stopping ran).
    pub model: Model,
    /// Trees kept.
    pub trees: usize,
    /// The validation metric after each round (empty without validation rows).
    pub validation: Vec<f64>,
    /// The round (0-based) with the best validation metric, when validation ran.
    pub best_round: Option<usize>,
}

impl GbdtConfig {
    fn validate(&self) -> Result<(), TrainError> {
        let share = |name, v: f64| {
            if v > 0.0 && v <= 1.0 { Ok(()) } else { Err(bad(TRAINER, name, v, "a share must be in (0, 1]")) }
        };
        let non_negative = |name, v: f64| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(bad(TRAINER, name, v, "must be finite and at least 0"))
            }
        };
        if self.trees == 0 {
            return Err(bad(TRAINER, "trees", 0, "at least one tree"));
        }
        if self.max_depth == 0 || self.max_depth > 30 {
            return Err(bad(TRAINER, "max_depth", self.max_depth, "a depth from 1 to 30"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(bad(TRAINER, "learning_rate", self.learning_rate, "must be finite and above 0"));
        }
        non_negative("min_child_weight", self.min_child_weight)?;
        non_negative("lambda", self.lambda)?;
        non_negative("gamma", self.gamma)?;
        if !(self.scale_pos_weight > 0.0 && self.scale_pos_weight.is_finite()) {
            return Err(bad(
                TRAINER,
                "scale_pos_weight",
                self.scale_pos_weight,
                "must be finite and above 0",
            ));
        }
        share("subsample", self.subsample)?;
        share("colsample_bytree", self.colsample_bytree)?;
        share("colsample_bylevel", self.colsample_bylevel)?;
        share("colsample_bynode", self.colsample_bynode)?;
        if let SplitMethod::Histogram { max_bins } = self.split_method
            && !(2..=65_535).contains(&max_bins)
        {
            return Err(bad(TRAINER, "max_bins", max_bins, "from 2 to 65535 bins"));
        }
        if let BaseScore::Fixed(p) = self.base_score
            && !(p > 0.0 && p < 1.0)
        {
            return Err(bad(TRAINER, "base_score", p, "a probability strictly between 0 and 1"));
        }
        if let Some(e) = self.early_stopping {
            if e.rounds == 0 {
                return Err(bad(TRAINER, "early_stopping.rounds", 0, "at least one round"));
            }
            if !(e.validation_fraction > 0.0 && e.validation_fraction < 1.0) {
                return Err(bad(
                    TRAINER,
                    "early_stopping.validation_fraction",
                    e.validation_fraction,
                    "a share strictly between 0 and 1",
                ));
            }
        }
        Ok(())
    }

    /// Trains on `train`; with early stopping, its last `validation_fraction` of rows are held
    /// out as the validation split.
    pub fn fit(&self, train: Samples<'_>, progress: &dyn Progress) -> Result<GbdtFit, TrainError> {
        self.validate()?;
        train.require_both_classes()?;
        match self.early_stopping {
            Some(e) => {
                let n_valid = ((train.len() as f64) * e.validation_fraction).round() as usize;
                let (fit_rows, valid_rows) = train.split_at(train.len() - n_valid.clamp(1, train.len() - 1));
                self.fit_with_validation(fit_rows, Some(valid_rows), progress)
            }
            None => self.fit_with_validation(train, None, progress),
        }
    }

    /// Trains on `train`, recording the validation metric on `valid` after every round (and
    /// stopping early when configured).
    pub fn fit_with_validation(
        &self,
        train: Samples<'_>,
        valid: Option<Samples<'_>>,
        progress: &dyn Progress,
    ) -> Result<GbdtFit, TrainError> {
        self.validate()?;
        train.require_both_classes()?;
        let nf = train.n_features();
        if let Some(v) = valid
            && v.n_features() != nf
        {
            return Err(TrainError::Shape { values: v.features().len(), rows: v.len(), n_features: nf });
        }
        if let Some(at) = train.features().iter().position(|x| x.is_infinite()) {
            return Err(TrainError::NotFinite {
                trainer: TRAINER,
                row: at / nf,
                feature: at % nf,
                value: train.features()[at],
            });
        }
        let columns = Columns::new(train)?;
        let mut finder = match self.split_method {
            SplitMethod::Exact => Finder::exact(&columns, nf),
            SplitMethod::Histogram { max_bins } => Finder::histogram(&columns, nf, max_bins),
        };
        let labels = train.labels();
        let weight = |y: bool| if y { self.scale_pos_weight } else { 1.0 };
        let base_margin = match self.base_score {
            BaseScore::Fixed(p) => (p / (1.0 - p)).ln(),
            BaseScore::FraudRate => {
                let (mut frauds, mut total) = (0.0, 0.0);
                for &y in labels {
                    total += weight(y);
                    if y {
                        frauds += weight(y);
                    }
                }
                (frauds / (total - frauds)).ln()
            }
        };
        let params = GrowParams {
            max_depth: self.max_depth,
            lambda: self.lambda,
            min_child_weight: self.min_child_weight,
            gamma: self.gamma,
            learning_rate: self.learning_rate,
            f32_gains: self.arithmetic == Arithmetic::Xgboost,
        };
        let mut ensemble = TreeEnsemble {
            n_features: nf,
            nodes: Vec::new(),
            roots: Vec::new(),
            base_margin,
            output: TreeOutput::Logistic,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let mut margins = vec![base_margin; train.len()];
        let mut valid_margins = valid.map(|v| vec![base_margin; v.len()]);
        let mut gpair = vec![Stats::default(); train.len()];
        let mut sample: Vec<u32> = Vec::with_capacity(train.len());
        let mut history = Vec::new();
        let mut best: Option<(usize, f64)> = None;
        progress.start("gbdt trees", self.trees as u64);
        for round in 0..self.trees {
            gpair.par_iter_mut().zip(&margins).zip(labels).for_each(|((gp, &m), &y)| {
                *gp = gradient(m, y, weight(y), self.arithmetic);
            });
            sample.clear();
            for row in 0..train.len() as u32 {
                if self.subsample >= 1.0 || rng.random_bool(self.subsample) {
                    sample.push(row);
                }
            }
            let tree_features = sample_features(&vec![true; nf], self.colsample_bytree, &mut rng);
            let (level_share, node_share) = (self.colsample_bylevel, self.colsample_bynode);
            let mut level_rng = Xoshiro256PlusPlus::seed_from_u64(rng.random());
            let mut node_rng = Xoshiro256PlusPlus::seed_from_u64(rng.random());
            let grown = grow::grow(
                &mut finder,
                &columns,
                &gpair,
                &sample,
                &params,
                &tree_features,
                &mut |from| sample_features(from, level_share, &mut level_rng),
                &mut |from| sample_features(from, node_share, &mut node_rng),
            );
            let root = lay_out(&grown, &mut ensemble.nodes, TRAINER)?;
            ensemble.roots.push(root);
            // Training and validation margins through the scorer's own tree walk.
            let tree = &ensemble;
            let f32_margins = self.arithmetic == Arithmetic::Xgboost;
            margins.par_iter_mut().enumerate().for_each(|(i, m)| {
                let leaf = tree.leaf(root, train.row(i)).value;
                // XGBoost keeps its training predictions in f32.
                *m = if f32_margins { f64::from(*m as f32 + leaf) } else { *m + f64::from(leaf) };
            });
            if let (Some(v), Some(vm)) = (valid, valid_margins.as_mut()) {
                vm.par_iter_mut()
                    .enumerate()
                    .for_each(|(i, m)| *m += f64::from(tree.leaf(root, v.row(i)).value));
                let metric = self.early_stopping.map_or(StopMetric::LogLoss, |e| e.metric);
                let value = validation_metric(metric, vm, v.labels());
                history.push(value);
                let better = |a: f64, b: f64| if metric == StopMetric::LogLoss { a < b } else { a > b };
                if best.is_none_or(|(_, b)| better(value, b)) {
                    best = Some((round, value));
                }
                if let (Some(e), Some((best_round, _))) = (self.early_stopping, best)
                    && round >= best_round + e.rounds
                {
                    break;
                }
            }
            progress.advance(1);
        }
        progress.finish();
        let best_round = best.map(|(r, _)| r);
        if let Some(r) = best_round
            && self.early_stopping.is_some()
            && r + 1 < ensemble.roots.len()
        {
            ensemble.nodes.truncate(ensemble.roots[r + 1] as usize);
            ensemble.roots.truncate(r + 1);
        }
        Ok(GbdtFit {
            trees: ensemble.roots.len(),
            model: Model::Trees(ensemble),
            validation: history,
            best_round,
        })
    }
}

/// The gradient and hessian of the logistic loss at `margin` for label `y`, times `weight`.
fn gradient(margin: f64, y: bool, weight: f64, arithmetic: Arithmetic) -> Stats {
    let target = if y { 1.0 } else { 0.0 };
    match arithmetic {
        Arithmetic::F64 => {
            let p = sigmoid(margin);
            Stats { g: (p - target) * weight, h: (p * (1.0 - p)).max(1e-16) * weight }
        }
        Arithmetic::Xgboost => {
            let p = 1.0f32 / (1.0f32 + (-(margin as f32)).exp());
            let w = weight as f32;
            Stats { g: f64::from((p - target as f32) * w), h: f64::from((p * (1.0 - p)).max(1e-16) * w) }
        }
    }
}

/// The validation metric of margins against labels (NaN when undefined, e.g. one class).
fn validation_metric(metric: StopMetric, margins: &[f64], labels: &[bool]) -> f64 {
    let scores: Vec<f64> = margins.iter().map(|&m| sigmoid(m)).collect();
    match metric {
        StopMetric::LogLoss => {
            let eps = 1e-15;
            let total: f64 = scores
                .iter()
                .zip(labels)
                .map(|(&p, &y)| -(if y { p.max(eps).ln() } else { (1.0 - p).max(eps).ln() }))
                .sum();
            total / scores.len().max(1) as f64
        }
        StopMetric::RocAuc => metrics::roc_auc(&scores, labels).unwrap_or(f64::NAN),
        StopMetric::AveragePrecision => metrics::average_precision(&scores, labels).unwrap_or(f64::NAN),
    }
}

/// A random `share` of the features marked in `from` (at least one; all when `share` is 1).
fn sample_features(from: &[bool], share: f64, rng: &mut Xoshiro256PlusPlus) -> Vec<bool> {
    if share >= 1.0 {
        return from.to_vec();
    }
    let mut candidates: Vec<usize> = from.iter().enumerate().filter(|(_, on)| **on).map(|(f, _)| f).collect();
    let keep = ((candidates.len() as f64 * share).round() as usize).max(1).min(candidates.len());
    // Partial Fisher-Yates: the first `keep` entries become the sample.
    for i in 0..keep {
        let j = rng.random_range(i..candidates.len());
        candidates.swap(i, j);
    }
    let mut out = vec![false; from.len()];
    candidates[..keep].iter().for_each(|&f| out[f] = true);
    out
}
