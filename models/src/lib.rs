//! Training and evaluation of fraud models that the scorer evaluates exactly.
//!
//! # Brief overview
//! Every trainer returns a [`scorer::model::Model`], so a model is scored by the same code in
//! training, in evaluation and at the edge:
//!
//! * [`Dataset`]: rows cut from an `exporter` transaction history and its feature table (f64
//!   features in the scorer's order, labels, cards, days); [`Holdout`] cuts the handbook's
//!   train / delay / test sets, dropping known compromised customers from each test day.
//! * [`Samples`]: the borrowed feature matrix and labels every trainer takes.
//! * Trainers: [`LogisticConfig`] (L2 logistic regression, standardisation folded into the
//!   weights), [`GbdtConfig`] (XGBoost-style gradient boosting, exact or histogram splits),
//!   [`ForestConfig`] (scikit-learn-style random forest), [`BalancedBaggingConfig`] (trees on
//!   undersampled bootstraps, averaged as a forest), [`SvmConfig`] (linear SVM, Platt-scaled to a
//!   probability), [`MlpConfig`] (small dense network, Adam); [`Trainer`] is any of them.
//! * [`Resampling`]: class rebalancing before training (under- and over-sampling, SMOTE,
//!   NearMiss, chains), parsed from a flag such as `smote:0.1:5+under:0.5`.
//! * [`metrics`]: confusion matrix, precision, recall, F1, AUC ROC, average precision and the
//!   handbook's card precision@k, with scikit-learn's definitions.
//! * [`registry`]: the model registry directory (models, lineage, current model, history of
//!   promotions and rollbacks); [`retrain`]: the retraining window under a label delay, the
//!   candidate-versus-current comparison and its report.
//!
//! ```
//! use models::{metrics, GbdtConfig, LogisticConfig, Samples};
//! // Fraud when the first feature is high; the second is noise.
//! let features: Vec<f64> = (0..200).flat_map(|i| [f64::from(i % 10), f64::from(i % 7)]).collect();
//! let labels: Vec<bool> = (0..200).map(|i| i % 10 >= 8).collect();
//! let train = Samples::new(&features, 2, &labels)?;
//! let lr = LogisticConfig::default().fit(train)?.model;
//! let gbdt = GbdtConfig { trees: 10, ..Default::default() }.fit(train, &exporter::NoProgress)?.model;
//! for model in [&lr, &gbdt] {
//!     let scores: Vec<f64> = (0..labels.len()).map(|i| model.score(train.row(i))).collect();
//!     assert_eq!(metrics::roc_auc(&scores, &labels)?, 1.0);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod bagging;
pub mod dataset;
pub mod forest;
pub mod gbdt;
pub mod import;
pub mod logistic;
pub mod metrics;
pub mod mlp;
pub mod protocol;
pub mod registry;
pub mod report;
pub mod resample;
pub mod retrain;
pub mod svm;
pub mod tabular;
pub mod threshold;
pub mod train;
mod tree;

pub use bagging::BalancedBaggingConfig;
pub use dataset::{Dataset, DatasetError, Holdout, TrainTest};
pub use forest::{ForestConfig, MaxFeatures};
pub use gbdt::{Arithmetic, BaseScore, EarlyStopping, GbdtConfig, GbdtFit, SplitMethod, StopMetric};
pub use logistic::{LogisticConfig, LogisticFit};
pub use metrics::{CardPrecision, ConfusionMatrix, Evaluation, MetricError};
pub use mlp::{HiddenActivation, MlpConfig, MlpFit, MlpStopping};
pub use protocol::{Candidate, Prequential, PrequentialResult};
pub use resample::{NearMissVersion, Origin, ResampleError, Resampled, Resampling};
pub use svm::{Calibration, SvmConfig, SvmFit, SvmLoss};
pub use train::{ClassWeight, LabeledRows, Samples, TrainError, Trainer};

/// The crate's version, recorded in model metadata.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
