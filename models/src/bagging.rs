//! Balanced bagging, the handbook's best ensemble for AUC ROC and card precision (ch. 6:
//! imbalanced-learn's `BalancedBaggingClassifier` over scikit-learn decision trees): each tree
//! learns from a bootstrap of the training rows whose genuine draws are randomly undersampled to
//! a set share of its fraud draws, and the score is the mean over trees of the leaf's fraud share.
//! That is the scorer's random-forest evaluation (`TreeOutput::Average`), so the model runs in the
//! scorer exactly; the trees grow with the random forest's code (`crate::forest`).

use crate::forest::{Draw, ForestConfig, MaxFeatures};
use crate::train::{ClassWeight, Samples, TrainError, bad};
use exporter::Progress;
use scorer::model::Model;

const TRAINER: &str = "balanced bagging";

/// Balanced bagging settings. [`Default`] is imbalanced-learn's `BalancedBaggingClassifier()` over
/// scikit-learn's `DecisionTreeClassifier()` (100 trees rather than 10, as the handbook ran it).
#[derive(Clone, Debug, PartialEq)]
pub struct BalancedBaggingConfig {
    /// Number of trees (`n_estimators`).
    pub trees: usize,
    /// Fraud draws / genuine draws after undersampling each tree's bootstrap, in (0, 1]
    /// (imbalanced-learn's float `sampling_strategy`, with its rounding: `int(frauds / ratio)`
    /// genuine draws are kept, or all of them when the bootstrap has fewer).
    pub sampling_strategy: f64,
    /// Maximum depth; `None` grows until the leaves are pure.
    pub max_depth: Option<u32>,
    /// Features drawn at each node; `All` (bagged trees, the handbook's) by default.
    pub max_features: MaxFeatures,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for BalancedBaggingConfig {
    fn default() -> BalancedBaggingConfig {
        BalancedBaggingConfig {
            trees: 100,
            sampling_strategy: 1.0,
            max_depth: None,
            max_features: MaxFeatures::All,
            seed: 0,
        }
    }
}

impl BalancedBaggingConfig {
    /// Trains on `train` (every feature finite, both classes present). Each leaf's cover is the
    /// number of draws of its tree's balanced bag that reached it.
    pub fn fit(&self, train: Samples<'_>, progress: &dyn Progress) -> Result<Model, TrainError> {
        if self.trees == 0 {
            return Err(bad(TRAINER, "trees", 0, "at least one tree"));
        }
        let ratio = self.sampling_strategy;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(bad(TRAINER, "sampling_strategy", ratio, "a ratio in (0, 1]"));
        }
        let trees = ForestConfig {
            trees: self.trees,
            max_depth: self.max_depth,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: self.max_features,
            bootstrap: true,
            class_weight: ClassWeight::None,
            seed: self.seed,
        };
        trees.fit_drawing(train, Draw::Balanced(ratio), progress)
    }
}
