//! Import of models trained elsewhere into the scorer's own [`Model`]: XGBoost JSON
//! ([`xgboost`], always built) and scikit-learn models exported to ONNX with skl2onnx (`onnx`,
//! behind the `onnx` cargo feature). The imported model is then scored by the scorer's evaluators,
//! so [`check_parity`] compares those scores with the reference predictions of the source library.
//!
//! ```
//! let json = std::fs::read("../tests/fixtures/import/xgboost_binary_logistic.json")?;
//! let imported = models::import::xgboost::from_json(&json)?;
//! assert_eq!(imported.model.family(), "gbdt");
//! assert_eq!(imported.feature_names.as_ref().map(Vec::len), Some(15));
//! println!("{}", models::import::Summary::of(&imported.model));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "onnx")]
pub mod onnx;
pub mod xgboost;

use scorer::model::{Dense, LEAF, Logistic, Mlp, Model, Node, TreeEnsemble};
use std::fmt;

/// A model read from another library's file, with what the file says about its inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The model, in the scorer's representation.
    pub model: Model,
    /// The names of the model's inputs, in input order, when the file records them.
    pub feature_names: Option<Vec<String>>,
    /// Where the model came from, e.g. `xgboost 3.2.0, binary:logistic`.
    pub source: String,
}

/// Why a model file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not valid JSON of the expected shape.
    #[error("XGBoost JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The objective has no scorer counterpart.
    #[error(
        "XGBoost objective `{0}` is not supported: the scorer imports binary:logistic, reg:logistic and binary:logitraw"
    )]
    UnsupportedObjective(String),
    /// A multi-class (or multi-target) model: the scorer scores one fraud probability.
    #[error(
        "XGBoost objective `{objective}` predicts {classes} classes or targets; the scorer imports binary models only"
    )]
    MultiClass {
        /// The objective's name.
        objective: String,
        /// Number of classes or targets.
        classes: usize,
    },
    /// The booster has no scorer counterpart.
    #[error("XGBoost booster `{0}` is not supported: the scorer imports gbtree models only")]
    UnsupportedBooster(String),
    /// A categorical split, which the scorer's `x < threshold` nodes cannot express.
    #[error("XGBoost tree {tree}, node {node}: categorical splits are not supported")]
    Categorical {
        /// The tree's index.
        tree: usize,
        /// The node's index in its tree.
        node: usize,
    },
    /// An operator of the ONNX graph with no scorer counterpart.
    #[error("ONNX operator `{op}` (node `{node}`) is not supported{detail}")]
    UnsupportedOperator {
        /// The operator type, with its domain when not the default one.
        op: String,
        /// The node's name (or its first output when unnamed).
        node: String,
        /// Why, when the operator is known but used in an unsupported way (starts with `: `).
        detail: String,
    },
    /// The ONNX file could not be decoded.
    #[error("ONNX: {0}")]
    Onnx(String),
    /// The file decodes but breaks a rule; the text says what and where.
    #[error("{0}")]
    Invalid(String),
    /// Feature names that do not match.
    #[error("features: {0}")]
    Features(String),
}

/// What a model holds, for printing after an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The family (`logistic`, `gbdt`, `forest`, `mlp`).
    pub family: &'static str,
    /// Number of input features.
    pub features: usize,
    /// Trees, for tree ensembles.
    pub trees: usize,
    /// Nodes of all trees, for tree ensembles.
    pub nodes: usize,
    /// Layer widths (outputs of each dense layer), for MLPs.
    pub layers: Vec<usize>,
}

impl Summary {
    /// Counts what `model` holds.
    pub fn of(model: &Model) -> Summary {
        let (trees, nodes, layers) = match model {
            Model::Logistic(_) => (0, 0, Vec::new()),
            Model::Trees(t) => (t.roots.len(), t.nodes.len(), Vec::new()),
            Model::Mlp(m) => (0, 0, m.layers.iter().map(|l| l.bias.len()).collect()),
        };
        Summary { family: model.family(), features: model.n_features(), trees, nodes, layers }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} over {} features", self.family, self.features)?;
        if self.trees > 0 {
            write!(f, ", {} trees, {} nodes", self.trees, self.nodes)?;
        }
        if !self.layers.is_empty() {
            let widths: Vec<String> = self.layers.iter().map(usize::to_string).collect();
            write!(f, ", {} dense layers ({} -> {})", self.layers.len(), self.features, widths.join(" -> "))?;
        }
        Ok(())
    }
}

/// Rewrites `model`, which reads its inputs in the order `from`, to read the features `to`
/// instead (e.g. the scorer's schema order): inputs are moved by name, and features of `to` the
/// model does not read get no weight. Every name of `from` must be in `to`.
pub fn remap_features(model: &Model, from: &[String], to: &[String]) -> Result<Model, ImportError> {
    if from.len() != model.n_features() {
        return Err(ImportError::Features(format!(
            "{} names given for a model of {} features",
            from.len(),
            model.n_features()
        )));
    }
    let mut target = Vec::with_capacity(from.len());
    for (i, name) in from.iter().enumerate() {
        if from[..i].contains(name) {
            return Err(ImportError::Features(format!("`{name}` is named twice")));
        }
        match to.iter().position(|t| t == name) {
            Some(j) => target.push(j),
            None => {
                return Err(ImportError::Features(format!(
                    "the model's input `{name}` is not among the target features ({})",
                    to.join(",")
                )));
            }
        }
    }
    let n = to.len();
    Ok(match model {
        Model::Logistic(m) => {
            let mut weights = vec![0.0; n];
            for (w, &j) in m.weights.iter().zip(&target) {
                weights[j] = *w;
            }
            Model::Logistic(Logistic { weights, intercept: m.intercept })
        }
        Model::Trees(t) => {
            if n > usize::from(LEAF) {
                return Err(ImportError::Features(format!("{n} target features; trees read at most 65534")));
            }
            let nodes = t
                .nodes
                .iter()
                .map(|node| {
                    let feature = match node.feature {
                        LEAF => LEAF,
                        f => target[usize::from(f)] as u16,
                    };
                    Node { feature, ..*node }
                })
                .collect();
            Model::Trees(TreeEnsemble { n_features: n, nodes, ..t.clone() })
        }
        Model::Mlp(m) => {
            let (mut mean, mut scale) = (vec![0.0; n], vec![1.0; n]);
            let mut layers = m.layers.clone();
            if let Some(first) = layers.first_mut() {
                let outputs = first.bias.len();
                let mut weights = vec![0.0; outputs * n];
                for (i, &j) in target.iter().enumerate() {
                    mean[j] = m.input_mean[i];
                    scale[j] = m.input_scale[i];
                    for o in 0..outputs {
                        weights[o * n + j] = first.weights[o * first.inputs + i];
                    }
                }
                *first = Dense { inputs: n, weights, ..first.clone() };
            }
            Model::Mlp(Mlp { input_mean: mean, input_scale: scale, layers })
        }
    })
}

/// The outcome of scoring rows and comparing with reference predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct ParityReport {
    /// Rows compared.
    pub rows: usize,
    /// Largest `|score - reference|`.
    pub max_abs_diff: f64,
    /// Mean `|score - reference|`.
    pub mean_abs_diff: f64,
    /// Row (0-based, header excluded) of the largest difference.
    pub worst_row: usize,
}

/// Scores every row of a CSV with `model` and compares with the `reference` column.
///
/// The model's inputs are the columns named `feature_names` (in that order) when given, otherwise
/// the first `model.n_features()` columns other than `reference`. An empty cell (or `NaN`) is a
/// missing value.
pub fn check_parity(
    model: &Model,
    rows_csv: impl std::io::Read,
    feature_names: Option<&[String]>,
    reference: &str,
) -> Result<ParityReport, ImportError> {
    let mut reader = csv::Reader::from_reader(rows_csv);
    let header =
        reader.headers().map_err(|e| ImportError::Invalid(format!("parity CSV header: {e}")))?.clone();
    let column = |name: &str| header.iter().position(|h| h == name);
    let ref_col = column(reference)
        .ok_or_else(|| ImportError::Invalid(format!("parity CSV: no `{reference}` column")))?;
    let cols: Vec<usize> = match feature_names {
        Some(names) => names
            .iter()
            .map(|n| column(n).ok_or_else(|| ImportError::Invalid(format!("parity CSV: no `{n}` column"))))
            .collect::<Result<_, _>>()?,
        None => (0..header.len()).filter(|&c| c != ref_col).take(model.n_features()).collect(),
    };
    if cols.len() != model.n_features() {
        return Err(ImportError::Invalid(format!(
            "parity CSV: {} feature columns for a model of {} features",
            cols.len(),
            model.n_features()
        )));
    }
    let parse = |text: &str, row: usize, col: usize| -> Result<f64, ImportError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(f64::NAN);
        }
        text.parse::<f64>().map_err(|_| {
            ImportError::Invalid(format!(
                "parity CSV row {}: {} {text:?} is not a number",
                row + 1,
                &header[col]
            ))
        })
    };
    let (mut rows, mut max, mut sum, mut worst) = (0usize, 0.0f64, 0.0f64, 0usize);
    let mut features = vec![0.0; cols.len()];
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| ImportError::Invalid(format!("parity CSV row {}: {e}", row + 1)))?;
        for (x, &c) in features.iter_mut().zip(&cols) {
            *x = parse(record.get(c).unwrap_or(""), row, c)?;
        }
        let expected = parse(record.get(ref_col).unwrap_or(""), row, ref_col)?;
        let diff = (model.score(&features) - expected).abs();
        // A NaN difference (a NaN reference or score) is the worst possible.
        if diff.is_nan() || diff > max {
            (max, worst) = (if diff.is_nan() { f64::INFINITY } else { diff }, row);
        }
        sum += diff;
        rows += 1;
    }
    if rows == 0 {
        return Err(ImportError::Invalid("parity CSV: no rows".into()));
    }
    Ok(ParityReport { rows, max_abs_diff: max, mean_abs_diff: sum / rows as f64, worst_row: worst })
}

/// One node of a tree as another library numbers it, before it becomes the scorer's layout.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RawNode {
    /// Goes left when `x < threshold` (already in the scorer's rule), NaN `default_left`.
    Split { feature: usize, threshold: f32, default_left: bool, left: usize, right: usize },
    /// A leaf value and its cover (training rows or hessian sum reaching it; 0 when unknown).
    Leaf(f32, f32),
}

/// Appends one tree (nodes numbered by the source, root `root`) to `nodes` in pre-order, so that
/// every child comes after its parent as the scorer requires; `at` names the tree in errors.
pub(crate) fn push_tree(
    nodes: &mut Vec<Node>,
    roots: &mut Vec<u32>,
    raw: &[RawNode],
    root: usize,
    n_features: usize,
    at: &dyn Fn(usize) -> String,
) -> Result<(), ImportError> {
    let index = |i: usize| {
        u32::try_from(i).map_err(|_| ImportError::Invalid("the ensemble has more than 2^32 - 1 nodes".into()))
    };
    roots.push(index(nodes.len())?);
    // (source node, position of the parent to patch, is the left child)
    let mut stack = vec![(root, None::<(usize, bool)>)];
    let mut emitted = 0usize;
    while let Some((i, parent)) = stack.pop() {
        let node =
            raw.get(i).ok_or_else(|| ImportError::Invalid(format!("{}: child index out of range", at(i))))?;
        emitted += 1;
        if emitted > raw.len() {
            return Err(ImportError::Invalid(format!("{}: the tree has a cycle", at(i))));
        }
        let pos = nodes.len();
        if let Some((p, is_left)) = parent {
            let p = &mut nodes[p];
            if is_left { p.left = index(pos)? } else { p.right = index(pos)? }
        }
        match *node {
            RawNode::Leaf(value, cover) => {
                if !value.is_finite() {
                    return Err(ImportError::Invalid(format!("{}: leaf value {value} is not finite", at(i))));
                }
                let cover = if cover.is_finite() && cover > 0.0 { cover } else { 0.0 };
                nodes.push(Node::leaf(value, cover));
            }
            RawNode::Split { feature, threshold, default_left, left, right } => {
                if feature >= n_features || feature >= usize::from(LEAF) {
                    return Err(ImportError::Invalid(format!(
                        "{}: splits on feature {feature}, but the model has {n_features}",
                        at(i)
                    )));
                }
                if !threshold.is_finite() {
                    return Err(ImportError::Invalid(format!(
                        "{}: threshold {threshold} is not finite",
                        at(i)
                    )));
                }
                nodes.push(Node {
                    feature: feature as u16,
                    default_left,
                    value: threshold,
                    left: 0,
                    right: 0,
                });
                stack.push((right, Some((pos, false))));
                stack.push((left, Some((pos, true))));
            }
        }
    }
    Ok(())
}
