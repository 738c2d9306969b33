//! Training, evaluation and import of fraud models (filled by the models issue).
//!
//! # Brief overview
//! This crate will train logistic regression, gradient-boosted trees, random forests, linear SVMs
//! and small MLPs on exporter training sets, handle class imbalance, compute the fraud metrics
//! (precision, recall, F1, AUC ROC, average precision, card precision@k), write reports with plots,
//! and import XGBoost JSON and ONNX models, always into the format that `scorer::model` evaluates.

/// The crate's version, recorded in model metadata.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
