//! The model registry: a directory of trained models, each with its card and lineage (what it was
//! trained on, by which code, how it scored on held-back days), the id of the current model and
//! the history of promotions, refusals and rollbacks. The index is one small JSON file,
//! `registry.json`, replaced atomically (written to a temporary file, then renamed over it).
//!
//! ```text
//! DIR/registry.json                 the index: current model, every model's lineage, history
//! DIR/models/ID.tgm (+ ID.tgm.json) each model in the scorer's encoding, with its model card
//! DIR/reports/RUN/                  each retraining's report (report.md, report.json, plots)
//! ```

use crate::metrics::Evaluation;
use crate::report::ModelCard;
use scorer::Timestamp;
use scorer::model::Model;
use scorer::snapshot::ModelLineage;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The index file's name inside the registry directory.
pub const INDEX_FILE: &str = "registry.json";
/// The index format this version reads and writes.
pub const INDEX_FORMAT: u32 = 1;
/// The lock file a writer holds while it reads, changes and writes the index.
pub const LOCK_FILE: &str = "registry.lock";

/// Why the registry could not be opened, read or changed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// There is no registry at the path.
    #[error(
        "{dir}: no model registry here ({INDEX_FILE} is missing); `tollgate retrain --models DIR` makes one"
    )]
    Missing {
        /// The directory asked for.
        dir: PathBuf,
    },
    /// The index is not the JSON this version writes, or contradicts itself.
    #[error("{path}: damaged model registry: {reason}")]
    Damaged {
        /// The index file (or the model file that is wrong).
        path: PathBuf,
        /// What is wrong and where.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// No model of that id in the registry.
    #[error("no model {id} in the registry (models: {known})")]
    UnknownModel {
        /// The id asked for.
        id: String,
        /// The ids there are, comma-separated.
        known: String,
    },
    /// Another writer holds the registry.
    #[error(
        "{path} exists: another retrain or rollback is changing this registry ({holder}); if none is running, \
         one was killed: remove the file"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// Nothing to roll back to.
    #[error("cannot roll back: {0}")]
    Rollback(String),
    /// The model card could not be written.
    #[error(transparent)]
    Card(#[from] crate::report::ReportError),
}

/// The metric that decides a promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Area under the ROC curve.
    AucRoc,
    /// Average precision (area under the precision-recall curve).
    AveragePrecision,
    /// The handbook's card precision@100 (mean over the days).
    CardPrecisionAt100,
}

impl Metric {
    /// The metric's name as in [`Metrics`] and the snapshot lineage.
    pub fn name(self) -> &'static str {
        match self {
            Metric::AucRoc => "auc_roc",
            Metric::AveragePrecision => "average_precision",
            Metric::CardPrecisionAt100 => "card_precision_at_100",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Metric, String> {
        match s {
            "ap" | "average_precision" => Ok(Metric::AveragePrecision),
            "auc" | "auc_roc" => Ok(Metric::AucRoc),
            "cp100" | "card_precision_at_100" => Ok(Metric::CardPrecisionAt100),
            _ => Err(format!("unknown metric {s:?}: use ap, auc or cp100")),
        }
    }
}

/// A model's metrics on a set of held-back days.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Area under the ROC curve.
    pub auc_roc: f64,
    /// Average precision.
    pub average_precision: f64,
    /// Card precision@100, mean over the days.
    pub card_precision_at_100: f64,
}

impl Metrics {
    /// The metrics of an evaluation at k = 100.
    pub fn of(e: &Evaluation) -> Metrics {
        Metrics {
            auc_roc: e.roc_auc,
            average_precision: e.average_precision,
            card_precision_at_100: e.card_precision.mean,
        }
    }

    /// One metric's value.
    pub fn get(&self, metric: Metric) -> f64 {
        match metric {
            Metric::AucRoc => self.auc_roc,
            Metric::AveragePrecision => self.average_precision,
            Metric::CardPrecisionAt100 => self.card_precision_at_100,
        }
    }

    /// Name and value of each metric, in a fixed order.
    pub fn named(&self) -> [(&'static str, f64); 3] {
        [Metric::AucRoc, Metric::AveragePrecision, Metric::CardPrecisionAt100]
            .map(|m| (m.name(), self.get(m)))
    }
}

/// Where a registered model came from: its training data and settings, the code that trained
/// it, and its metrics on the held-back days it was chosen on. Times are UTC,
/// `YYYY-MM-DD HH:MM:SS`; ranges include their start and exclude their end.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lineage {
    /// The model's id ([`ModelCard::id_of`]: family and hash of its encoding).
    pub model_id: String,
    /// The model family (`logistic`, `gbdt`, `forest`, `mlp`).
    pub kind: String,
    /// The trainer's hyper-parameters, as text (resampling included).
    pub params: String,
    /// How the features were computed (`exact` or `as served every N s`).
    pub cadence: String,
    /// First training transaction time allowed (a midnight).
    pub train_from: String,
    /// End of the training window (a midnight, excluded).
    pub train_to: String,
    /// Training rows and frauds among them.
    pub train_rows: usize,
    /// Fraud rows among the training rows.
    pub train_frauds: usize,
    /// The label delay respected: no transaction whose label was unknown at `as_of` was used.
    pub label_delay_days: u32,
    /// The time the retraining ran as of.
    pub as_of: String,
    /// Transactions from `as_of` minus the label delay up to `as_of`: label unknown, not used.
    pub unlabelled_excluded: usize,
    /// First held-back evaluation day.
    pub eval_from: String,
    /// End of the held-back evaluation days (excluded).
    pub eval_to: String,
    /// Held-back rows the metrics are on (known compromised customers dropped).
    pub eval_rows: usize,
    /// Fraud rows among them.
    pub eval_frauds: usize,
    /// Metrics on the held-back days.
    pub metrics: Metrics,
    /// The code that trained it: tollgate's version, `+` the git commit when the build knew it.
    pub code_version: String,
    /// When it was trained.
    pub created_at: String,
    /// The model that was current when it was trained.
    pub parent: Option<String>,
    /// The model file, relative to the registry directory.
    pub model_file: String,
    /// The report of the retraining that made it, relative to the registry directory.
    pub report: Option<String>,
}

impl Lineage {
    /// The lineage as a snapshot's META records it.
    pub fn to_snapshot(&self) -> Result<ModelLineage, RegistryError> {
        let time = |field: &str, text: &str| {
            text.parse::<Timestamp>().map_err(|e| RegistryError::Damaged {
                path: PathBuf::from(INDEX_FILE),
                reason: format!("model {}: {field} {text:?}: {e}", self.model_id),
            })
        };
        Ok(ModelLineage {
            model_id: self.model_id.clone(),
            kind: self.kind.clone(),
            params: self.params.clone(),
            train_range: (time("train_from", &self.train_from)?, time("train_to", &self.train_to)?),
            label_delay_days: self.label_delay_days,
            eval_range: (time("eval_from", &self.eval_from)?, time("eval_to", &self.eval_to)?),
            code_version: self.code_version.clone(),
            created_at: time("created_at", &self.created_at)?,
            parent: self.parent.clone(),
            metrics: self.metrics.named().iter().map(|&(n, v)| (n.to_string(), v)).collect(),
        })
    }
}

/// What happened to a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Made current after a retraining (better than the current model, or the first).
    Promoted,
    /// Not made current: not better than the current model by the margin.
    Refused,
    /// Made current again by a rollback.
    RolledBack,
}

/// One entry of the registry's history.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// When (UTC, `YYYY-MM-DD HH:MM:SS`).
    pub at: String,
    /// What happened.
    pub action: Action,
    /// The model it happened to.
    pub model_id: String,
    /// The model that was current before.
    pub previous: Option<String>,
    /// The metric compared, for promotions and refusals.
    pub metric: Option<Metric>,
    /// The candidate's value of the metric.
    pub candidate: Option<f64>,
    /// The current model's value of the metric on the same days.
    pub current: Option<f64>,
    /// The margin the candidate had to beat the current model by.
    pub margin: Option<f64>,
    /// Why, in words.
    pub reason: String,
    /// The retraining report, relative to the registry directory.
    pub report: Option<String>,
}

/// The index file's content.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Index {
    /// [`INDEX_FORMAT`].
    pub format: u32,
    /// The current model's id.
    pub current: Option<String>,
    /// Every registered model, oldest first.
    pub models: Vec<Lineage>,
    /// Promotions, refusals and rollbacks, oldest first.
    pub history: Vec<Event>,
}

/// A model registry directory, opened.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    index: Index,
}

impl Registry {
    /// Opens the registry in `dir`, checking that the index is whole and that every model file
    /// it names is there.
    pub fn open(dir: &Path) -> Result<Registry, RegistryError> {
        let path = dir.join(INDEX_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::Missing { dir: dir.to_path_buf() });
            }
            Err(source) => return Err(RegistryError::Io { path, source }),
        };
        let damaged = |reason: String| RegistryError::Damaged { path: path.clone(), reason };
        let index: Index = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        if index.format != INDEX_FORMAT {
            return Err(damaged(format!("format {} (this version reads {INDEX_FORMAT})", index.format)));
        }
        let registry = Registry { dir: dir.to_path_buf(), index };
        if let Some(id) = &registry.index.current
            && registry.get(id).is_none()
        {
            return Err(damaged(format!("the current model {id} is not among its models")));
        }
        for (i, m) in registry.index.models.iter().enumerate() {
            if registry.index.models[..i].iter().any(|o| o.model_id == m.model_id) {
                return Err(damaged(format!("model {} is listed twice", m.model_id)));
            }
            let file = registry.dir.join(&m.model_file);
            if !file.is_file() {
                return Err(damaged(format!("model {}: its file {} is missing", m.model_id, file.display())));
            }
        }
        Ok(registry)
    }

    /// Opens the registry in `dir`, or starts an empty one there (written on the first
    /// [`Registry::save`]) when it has no index yet.
    pub fn open_or_create(dir: &Path) -> Result<Registry, RegistryError> {
        match Registry::open(dir) {
            Err(RegistryError::Missing { .. }) => Ok(Registry {
                dir: dir.to_path_buf(),
                index: Index { format: INDEX_FORMAT, ..Index::default() },
            }),
            other => other,
        }
    }

    /// The registry directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index as read or changed since.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The current model's lineage.
    pub fn current(&self) -> Option<&Lineage> {
        self.index.current.as_deref().and_then(|id| self.get(id))
    }

    /// A model's lineage by id.
    pub fn get(&self, id: &str) -> Option<&Lineage> {
        self.index.models.iter().find(|m| m.model_id == id)
    }

    /// The path of a registered model's file.
    pub fn model_path(&self, lineage: &Lineage) -> PathBuf {
        self.dir.join(&lineage.model_file)
    }

    /// Reads and decodes a registered model.
    pub fn load_model(&self, lineage: &Lineage) -> Result<Model, RegistryError> {
        let path = self.model_path(lineage);
        let bytes =
            std::fs::read(&path).map_err(|source| RegistryError::Io { path: path.clone(), source })?;
        let model = Model::decode(&bytes)
            .map_err(|e| RegistryError::Damaged { path: path.clone(), reason: e.to_string() })?;
        if ModelCard::id_of(&model) != lineage.model_id {
            return Err(RegistryError::Damaged {
                path,
                reason: format!("the file's content is not model {} (its hash differs)", lineage.model_id),
            });
        }
        Ok(model)
    }

    /// Stores a model file and its card under `models/`, and its lineage in the index (unless a
    /// model of that id is registered already: training the same model twice stores it once).
    /// Call [`Registry::save`] to write the index.
    pub fn add(
        &mut self,
        model: &Model,
        card: &ModelCard,
        mut lineage: Lineage,
    ) -> Result<(), RegistryError> {
        if self.get(&lineage.model_id).is_some() {
            return Ok(());
        }
        let models = self.dir.join("models");
        std::fs::create_dir_all(&models)
            .map_err(|source| RegistryError::Io { path: models.clone(), source })?;
        lineage.model_file = format!("models/{}.tgm", lineage.model_id);
        let path = self.dir.join(&lineage.model_file);
        write_atomically(&path, &model.encode())?;
        card.write(&ModelCard::sidecar_path(&path))?;
        self.index.models.push(lineage);
        Ok(())
    }

    /// Records an event; for promotions and rollbacks the model becomes current.
    pub fn record(&mut self, event: Event) -> Result<(), RegistryError> {
        if self.get(&event.model_id).is_none() {
            return Err(self.unknown(&event.model_id));
        }
        if matches!(event.action, Action::Promoted | Action::RolledBack) {
            self.index.current = Some(event.model_id.clone());
        }
        self.index.history.push(event);
        Ok(())
    }

    /// The model a rollback without a target goes back to: the one the current model replaced
    /// when it was promoted. So successive rollbacks walk back through the promotions.
    pub fn previous(&self) -> Result<&Lineage, RegistryError> {
        let Some(current) = self.index.current.as_deref() else {
            return Err(RegistryError::Rollback("the registry has no current model".into()));
        };
        let promotion = self
            .index
            .history
            .iter()
            .rev()
            .find(|e| e.action == Action::Promoted && e.model_id == current)
            .ok_or_else(|| RegistryError::Rollback(format!("{current} was never promoted")))?;
        let Some(previous) = promotion.previous.as_deref() else {
            return Err(RegistryError::Rollback(format!(
                "{current} was the first model promoted: there is no previous model"
            )));
        };
        self.get(previous).ok_or_else(|| self.unknown(previous))
    }

    /// Makes `to` (default [`Registry::previous`]) current and records it; returns the model
    /// rolled back from and to. Call [`Registry::save`] to write the index.
    pub fn rollback(&mut self, to: Option<&str>, at: Timestamp) -> Result<(String, String), RegistryError> {
        let from = self
            .index
            .current
            .clone()
            .ok_or_else(|| RegistryError::Rollback("the registry has no current model".into()))?;
        let target = match to {
            Some(id) => self.get(id).ok_or_else(|| self.unknown(id))?.model_id.clone(),
            None => self.previous()?.model_id.clone(),
        };
        if target == from {
            return Err(RegistryError::Rollback(format!("{target} is already the current model")));
        }
        self.record(Event {
            at: at.to_string(),
            action: Action::RolledBack,
            model_id: target.clone(),
            previous: Some(from.clone()),
            metric: None,
            candidate: None,
            current: None,
            margin: None,
            reason: format!("rollback from {from}"),
            report: None,
        })?;
        Ok((from, target))
    }

    /// Writes the index: to a temporary file in the directory, synced, then renamed over
    /// `registry.json`, so a reader sees the old index or the new one, never a part.
    pub fn save(&self) -> Result<(), RegistryError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|source| RegistryError::Io { path: self.dir.clone(), source })?;
        let path = self.dir.join(INDEX_FILE);
        let text = serde_json::to_string_pretty(&self.index)
            .map_err(|e| RegistryError::Damaged { path: path.clone(), reason: e.to_string() })?;
        write_atomically(&path, format!("{text}\n").as_bytes())
    }

    fn unknown(&self, id: &str) -> RegistryError {
        let known: Vec<&str> = self.index.models.iter().map(|m| m.model_id.as_str()).collect();
        RegistryError::UnknownModel {
            id: id.to_string(),
            known: if known.is_empty() { "none".into() } else { known.join(", ") },
        }
    }
}

/// The registry's writer lock: `registry.lock`, created exclusively and removed when dropped, so
/// that two writers (a scheduled retrain and a rollback by hand) cannot both read the index, change
/// it and write it back, losing one change.
#[derive(Debug)]
pub struct RegistryLock {
    path: PathBuf,
}

impl RegistryLock {
    /// Takes the lock of the registry in `dir` (creating the directory), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<RegistryLock, RegistryError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| RegistryError::Io { path: dir.to_path_buf(), source })?;
        let path = dir.join(LOCK_FILE);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                let _ = writeln!(file, "pid {}", std::process::id());
                Ok(RegistryLock { path })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default().trim().to_string();
                Err(RegistryError::Locked {
                    path,
                    holder: if holder.is_empty() { "unknown".into() } else { holder },
                })
            }
            Err(source) => Err(RegistryError::Io { path, source }),
        }
    }
}

impl Drop for RegistryLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Replaces the file at `path` with `bytes` atomically ([`exporter::durable::replace_file`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    exporter::durable::replace_file(path, bytes)
        .map_err(|source| RegistryError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scorer::model::Logistic;

    fn model(intercept: f64) -> Model {
        Model::Logistic(Logistic { weights: vec![0.5; 3], intercept })
    }

    fn lineage(model: &Model, parent: Option<&str>) -> Lineage {
        Lineage {
            model_id: ModelCard::id_of(model),
            kind: "logistic".into(),
            params: "Logistic".into(),
            cadence: "exact".into(),
            train_from: "2018-05-01 00:00:00".into(),
            train_to: "2018-05-08 00:00:00".into(),
            train_rows: 100,
            train_frauds: 3,
            label_delay_days: 7,
            as_of: "2018-05-30 00:00:00".into(),
            unlabelled_excluded: 50,
            eval_from: "2018-05-16 00:00:00".into(),
            eval_to: "2018-05-23 00:00:00".into(),
            eval_rows: 90,
            eval_frauds: 2,
            metrics: Metrics { auc_roc: 0.8, average_precision: 0.5, card_precision_at_100: 0.1 },
            code_version: "0.1.0".into(),
            created_at: "2026-12-01 10:00:00".into(),
            parent: parent.map(String::from),
            model_file: String::new(),
            report: None,
        }
    }

    fn promote(r: &mut Registry, m: &Model) {
        let previous = r.index().current.clone();
        let l = lineage(m, previous.as_deref());
        let card = ModelCard::new(m, &["a".into(), "b".into(), "c".into()], "Logistic".into());
        r.add(m, &card, l.clone()).unwrap();
        r.record(Event {
            at: "2026-12-01 10:00:00".into(),
            action: Action::Promoted,
            model_id: l.model_id,
            previous,
            metric: Some(Metric::AveragePrecision),
            candidate: Some(0.5),
            current: None,
            margin: Some(0.0),
            reason: "first".into(),
            report: None,
        })
        .unwrap();
        r.save().unwrap();
    }

    #[test]
    fn promotions_persist_and_rollbacks_walk_back_through_them() {
        let dir = tempfile::tempdir().unwrap();
        let err = Registry::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no model registry here"), "{err}");
        let (a, b, c) = (model(-1.0), model(-2.0), model(-3.0));
        let mut r = Registry::open_or_create(dir.path()).unwrap();
        for m in [&a, &b, &c] {
            promote(&mut r, m);
        }
        let mut r = Registry::open(dir.path()).unwrap();
        assert_eq!(r.current().unwrap().model_id, ModelCard::id_of(&c));
        assert_eq!(r.load_model(r.current().unwrap()).unwrap(), c);
        assert_eq!(r.current().unwrap().parent.as_deref(), Some(ModelCard::id_of(&b).as_str()));
        let at = Timestamp(1_800_000_000);
        assert_eq!(r.rollback(None, at).unwrap().1, ModelCard::id_of(&b));
        assert_eq!(r.rollback(None, at).unwrap().1, ModelCard::id_of(&a));
        let err = r.rollback(None, at).unwrap_err().to_string();
        assert!(err.contains("was the first model promoted"), "{err}");
        let err = r.rollback(Some("gbdt-nope"), at).unwrap_err().to_string();
        assert!(err.starts_with("no model gbdt-nope in the registry (models: logistic-"), "{err}");
        r.rollback(Some(&ModelCard::id_of(&c)), at).unwrap();
        r.save().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        assert_eq!(r.current().unwrap().model_id, ModelCard::id_of(&c));
        let actions: Vec<Action> = r.index().history.iter().map(|e| e.action).collect();
        use Action::*;
        assert_eq!(actions, [Promoted, Promoted, Promoted, RolledBack, RolledBack, RolledBack]);
        let snap = r.current().unwrap().to_snapshot().unwrap();
        assert_eq!(snap.train_range.1.0 - snap.train_range.0.0, 7 * 86_400);
        assert_eq!(snap.metrics[1], ("average_precision".to_string(), 0.5));
    }

    #[test]
    fn one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RegistryLock::acquire(dir.path()).unwrap();
        let err = RegistryLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with(&format!("registry.lock exists: another retrain or rollback is changing this registry (pid {}); if none is running, one was killed: remove the file", std::process::id())), "{err}");
        drop(lock);
        RegistryLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn names_a_damaged_index_and_a_missing_or_altered_model_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open_or_create(dir.path()).unwrap();
        let a = model(-1.0);
        promote(&mut r, &a);
        let index = dir.path().join(INDEX_FILE);
        let text = std::fs::read_to_string(&index).unwrap();
        std::fs::write(&index, &text[..text.len() / 2]).unwrap();
        let err = Registry::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("registry.json: damaged model registry: EOF while parsing"), "{err}");
        std::fs::write(&index, &text).unwrap();
        let file = dir.path().join("models").join(format!("{}.tgm", ModelCard::id_of(&a)));
        std::fs::write(&file, model(-5.0).encode()).unwrap();
        let r = Registry::open(dir.path()).unwrap();
        let err = r.load_model(r.current().unwrap()).unwrap_err().to_string();
        assert!(err.contains("its hash differs"), "{err}");
        std::fs::remove_file(&file).unwrap();
        let err = Registry::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");
    }
}
