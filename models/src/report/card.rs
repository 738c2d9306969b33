//! The model card: the JSON sidecar (`MODEL_FILE.json`) of a model file, saying what the model
//! is, what it reads, what it learnt from and how it scored.

use super::ReportError;
use scorer::model::Model;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A model's description, written beside the model file.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    /// The family and the first 16 hex digits of the BLAKE3 hash of the encoded model, e.g.
    /// `gbdt-0123456789abcdef`: the id a snapshot's `model_id` should carry.
    pub model_id: String,
    /// `logistic`, `gbdt`, `forest` or `mlp`.
    pub family: String,
    /// The trainer's settings, as text.
    pub trainer: String,
    /// The features the model reads, in order.
    pub features: Vec<String>,
    /// How features were computed: `exact`, `as served every N s`, or `tabular`.
    pub cadence: String,
    /// The snapshot cadence in seconds when features were as served.
    pub cadence_seconds: Option<i64>,
    /// First training day (YYYY-MM-DD), for transaction data.
    pub train_start: Option<String>,
    /// Training days, for transaction data.
    pub train_days: Option<u32>,
    /// Training rows.
    pub rows: usize,
    /// Fraud rows among them.
    pub frauds: usize,
    /// Seconds spent training.
    pub train_seconds: f64,
    /// Metrics measured after training, by name.
    pub metrics: BTreeMap<String, f64>,
    /// The `models` crate version that trained it.
    pub models_version: String,
}

impl ModelCard {
    /// A card for `model` with its id, family, features and trainer; the rest empty.
    pub fn new(model: &Model, features: &[String], trainer: String) -> ModelCard {
        ModelCard {
            model_id: ModelCard::id_of(model),
            family: model.family().into(),
            trainer,
            features: features.to_vec(),
            models_version: crate::VERSION.into(),
            ..ModelCard::default()
        }
    }

    /// The id of a model: its family and the start of the BLAKE3 hash of its encoding.
    pub fn id_of(model: &Model) -> String {
        let hash = blake3::hash(&model.encode());
        format!("{}-{}", model.family(), &hash.to_hex()[..16])
    }

    /// Where the card of a model file lives: the model's path with `.json` appended.
    pub fn sidecar_path(model: &Path) -> PathBuf {
        let mut name = model.as_os_str().to_owned();
        name.push(".json");
        PathBuf::from(name)
    }

    /// Writes the card as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|source| ReportError::Card { path: path.to_path_buf(), source })?;
        std::fs::write(path, text + "\n")
            .map_err(|source| ReportError::Io { path: path.to_path_buf(), source })
    }

    /// Reads a card.
    pub fn read(path: &Path) -> Result<ModelCard, ReportError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ReportError::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Card { path: path.to_path_buf(), source })
    }
}
