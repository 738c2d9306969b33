//! What every trainer shares: the borrowed training matrix ([`Samples`]), class weights, the
//! training error, and [`Trainer`], one enum over the trainers' configurations.

use crate::bagging::BalancedBaggingConfig;
use crate::forest::ForestConfig;
use crate::gbdt::GbdtConfig;
use crate::logistic::LogisticConfig;
use crate::mlp::MlpConfig;
use crate::svm::SvmConfig;
use exporter::Progress;
use scorer::model::Model;

/// Why a model could not be trained.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TrainError {
    /// The feature matrix is not `labels.len() x n_features`.
    #[error("training data: {values} feature values do not make {rows} rows of {n_features} features")]
    Shape {
        /// Number of feature values.
        values: usize,
        /// Number of labels (rows).
        rows: usize,
        /// Features per row.
        n_features: usize,
    },
    /// No row, or no feature.
    #[error("training data: {0} is empty")]
    Empty(&'static str),
    /// More features than a tree node can name.
    #[error("training data: {0} features, but tree models read at most 65534")]
    TooManyFeatures(usize),
    /// More rows than tree trainers index (`u32`).
    #[error("training data: {0} rows, but tree models train on at most 4294967295")]
    TooManyRows(usize),
    /// Every label is the same.
    #[error("training data: every row is {present}; a classifier needs both fraud and genuine rows")]
    OneClass {
        /// The only class present (`fraud` or `genuine`).
        present: &'static str,
    },
    /// A value this trainer cannot use (NaN, or infinite).
    #[error("training data: row {row}, feature {feature} is {value}; {trainer} needs finite features")]
    NotFinite {
        /// The trainer.
        trainer: &'static str,
        /// Row of the value.
        row: usize,
        /// Feature index of the value.
        feature: usize,
        /// The value.
        value: f64,
    },
    /// A hyperparameter out of its range.
    #[error("{trainer}: {name} = {value} is invalid; {expected}")]
    BadParameter {
        /// The trainer.
        trainer: &'static str,
        /// The parameter's name.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// The optimiser met a NaN or infinity (e.g. extreme feature values without standardisation).
    #[error("{trainer}: the fit diverged at iteration {iteration} (a NaN or infinite loss)")]
    Diverged {
        /// The trainer.
        trainer: &'static str,
        /// Iteration at which it happened.
        iteration: usize,
    },
    /// A tree ensemble would need more nodes than the scorer's format indexes.
    #[error("{trainer}: the ensemble needs more than 2^32 - 1 nodes")]
    TooManyNodes {
        /// The trainer.
        trainer: &'static str,
    },
}

pub(crate) fn bad(
    trainer: &'static str,
    name: &'static str,
    value: impl ToString,
    expected: &'static str,
) -> TrainError {
    TrainError::BadParameter { trainer, name, value: value.to_string(), expected }
}

/// A labelled feature matrix, owned: what a split ([`crate::tabular::TabularData::split`]) or a
/// resampling ([`crate::Resampled`]) hands back; [`LabeledRows::samples`] lends it to a trainer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabeledRows {
    /// Features per row.
    pub n_features: usize,
    /// `len() * n_features` values, row-major.
    pub features: Vec<f64>,
    /// One per row, `true` for fraud.
    pub labels: Vec<bool>,
}

impl LabeledRows {
    /// The rows as a trainer takes them (an error when there are none).
    pub fn samples(&self) -> Result<Samples<'_>, TrainError> {
        Samples::new(&self.features, self.n_features, &self.labels)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of fraud rows.
    pub fn frauds(&self) -> usize {
        self.labels.iter().filter(|&&y| y).count()
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.features[i * self.n_features..(i + 1) * self.n_features]
    }
}

/// A labelled feature matrix, borrowed: rows of `n_features` values, row-major, as the scorer
/// reads them, and one label per row (`true` = fraud).
#[derive(Clone, Copy, Debug)]
pub struct Samples<'a> {
    features: &'a [f64],
    n_features: usize,
    labels: &'a [bool],
}

impl<'a> Samples<'a> {
    /// Checks the shape (`features.len() == labels.len() * n_features`, both non-empty).
    pub fn new(
        features: &'a [f64],
        n_features: usize,
        labels: &'a [bool],
    ) -> Result<Samples<'a>, TrainError> {
        if n_features == 0 {
            return Err(TrainError::Empty("the feature list"));
        }
        if labels.is_empty() {
            return Err(TrainError::Empty("the row list"));
        }
        if labels.len().checked_mul(n_features) != Some(features.len()) {
            return Err(TrainError::Shape { values: features.len(), rows: labels.len(), n_features });
        }
        Ok(Samples { features, n_features, labels })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false: [`Samples::new`] refuses empty data.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// All feature values, row-major.
    pub fn features(&self) -> &'a [f64] {
        self.features
    }

    /// The labels.
    pub fn labels(&self) -> &'a [bool] {
        self.labels
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.features[i * self.n_features..(i + 1) * self.n_features]
    }

    /// Number of fraud rows.
    pub fn frauds(&self) -> usize {
        self.labels.iter().filter(|&&y| y).count()
    }

    /// The first `rows` rows and the rest (a time-ordered split when rows are in time order).
    pub fn split_at(&self, rows: usize) -> (Samples<'a>, Samples<'a>) {
        let rows = rows.min(self.len());
        let (fa, fb) = self.features.split_at(rows * self.n_features);
        let (la, lb) = self.labels.split_at(rows);
        let n_features = self.n_features;
        (Samples { features: fa, n_features, labels: la }, Samples { features: fb, n_features, labels: lb })
    }

    /// Errors unless both classes are present.
    pub(crate) fn require_both_classes(&self) -> Result<(), TrainError> {
        match self.frauds() {
            0 => Err(TrainError::OneClass { present: "genuine" }),
            n if n == self.len() => Err(TrainError::OneClass { present: "fraud" }),
            _ => Ok(()),
        }
    }

    /// Errors at the first NaN or infinite value.
    pub(crate) fn require_finite(&self, trainer: &'static str) -> Result<(), TrainError> {
        match self.features.iter().position(|v| !v.is_finite()) {
            Some(at) => Err(TrainError::NotFinite {
                trainer,
                row: at / self.n_features,
                feature: at % self.n_features,
                value: self.features[at],
            }),
            None => Ok(()),
        }
    }
}

/// How much each class weighs in the loss.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ClassWeight {
    /// Every row weighs 1.
    #[default]
    None,
    /// Each class weighs `rows / (2 * rows of the class)` (scikit-learn's `"balanced"`).
    Balanced,
    /// Fraud rows weigh this much, genuine rows 1.
    Fraud(f64),
}

impl ClassWeight {
    /// The weights of (genuine, fraud) rows for these labels.
    pub fn weights(self, labels: &[bool]) -> (f64, f64) {
        match self {
            ClassWeight::None => (1.0, 1.0),
            ClassWeight::Fraud(w) => (1.0, w),
            ClassWeight::Balanced => {
                let n = labels.len() as f64;
                let frauds = labels.iter().filter(|&&y| y).count() as f64;
                let genuine = n - frauds;
                let w = |count: f64| if count > 0.0 { n / (2.0 * count) } else { 1.0 };
                (w(genuine), w(frauds))
            }
        }
    }

    pub(crate) fn validate(self, trainer: &'static str) -> Result<(), TrainError> {
        match self {
            ClassWeight::Fraud(w) if !(w.is_finite() && w > 0.0) => {
                Err(bad(trainer, "class weight", w, "the fraud class weight must be finite and above 0"))
            }
            _ => Ok(()),
        }
    }
}

/// Any of the trainers, configured: the form a command line or a config file picks a model in.
#[derive(Clone, Debug, PartialEq)]
pub enum Trainer {
    /// Logistic regression.
    Logistic(LogisticConfig),
    /// Gradient-boosted trees.
    Gbdt(GbdtConfig),
    /// Random forest.
    Forest(ForestConfig),
    /// Balanced bagging (averaged like a forest).
    BalancedBagging(BalancedBaggingConfig),
    /// Linear SVM, Platt-scaled.
    Svm(SvmConfig),
    /// Multilayer perceptron.
    Mlp(MlpConfig),
}

impl Trainer {
    /// Trains on `train` and returns the model the scorer evaluates.
    pub fn fit(&self, train: Samples<'_>, progress: &dyn Progress) -> Result<Model, TrainError> {
        match self {
            Trainer::Logistic(c) => c.fit(train).map(|f| f.model),
            Trainer::Gbdt(c) => c.fit(train, progress).map(|f| f.model),
            Trainer::Forest(c) => c.fit(train, progress),
            Trainer::BalancedBagging(c) => c.fit(train, progress),
            Trainer::Svm(c) => c.fit(train).map(|f| f.model),
            Trainer::Mlp(c) => c.fit(train).map(|f| f.model),
        }
    }

    /// The model family's short name, as [`Model::family`] gives it.
    pub fn family(&self) -> &'static str {
        match self {
            Trainer::Logistic(_) => "logistic",
            Trainer::Gbdt(_) => "gbdt",
            Trainer::Forest(_) | Trainer::BalancedBagging(_) => "forest",
            Trainer::Svm(_) => "logistic",
            Trainer::Mlp(_) => "mlp",
        }
    }
}

/// Per-feature mean and population standard deviation (1 where the deviation is ~0, as
/// scikit-learn's `StandardScaler` does).
pub(crate) fn standardisation(train: Samples<'_>) -> (Vec<f64>, Vec<f64>) {
    let nf = train.n_features();
    let n = train.len() as f64;
    let mut mean = vec![0.0; nf];
    for i in 0..train.len() {
        for (m, x) in mean.iter_mut().zip(train.row(i)) {
            *m += x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0; nf];
    for i in 0..train.len() {
        for ((v, x), m) in var.iter_mut().zip(train.row(i)).zip(&mean) {
            *v += (x - m) * (x - m);
        }
    }
    let scale = var
        .iter()
        .zip(&mean)
        .map(|(v, m)| {
            let sd = (v / n).sqrt();
            if sd < 10.0 * f64::EPSILON * m.abs().max(1.0) { 1.0 } else { sd }
        })
        .collect();
    (mean, scale)
}
