//! XGBoost JSON models (`Booster.save_model("model.json")`, xgboost 1.0 and later) to the
//! scorer's tree ensemble. XGBoost's own rule is the scorer's: `x < split_condition` on f32, NaN
//! its default direction, leaf values summed onto the base margin, then the logistic function.

use super::{ImportError, Imported, RawNode, push_tree};
use scorer::model::{Model, TreeEnsemble, TreeOutput};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct File {
    learner: Learner,
    #[serde(default)]
    version: Vec<u32>,
}

#[derive(Deserialize)]
struct Learner {
    #[serde(default)]
    feature_names: Vec<String>,
    gradient_booster: Value,
    learner_model_param: LearnerParam,
    objective: Objective,
}

#[derive(Deserialize)]
struct LearnerParam {
    base_score: String,
    #[serde(default)]
    num_class: Option<String>,
    num_feature: String,
    #[serde(default)]
    num_target: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct GbTree {
    trees: Vec<Tree>,
}

#[derive(Deserialize)]
struct Tree {
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_conditions: Vec<f64>,
    split_indices: Vec<i64>,
    default_left: Vec<Flag>,
    #[serde(default)]
    split_type: Vec<i64>,
    #[serde(default)]
    categories_nodes: Vec<i64>,
    /// The hessian sum reaching each node: the leaves' covers.
    #[serde(default)]
    sum_hessian: Vec<f64>,
    tree_param: TreeParam,
}

#[derive(Deserialize)]
struct TreeParam {
    #[serde(default)]
    size_leaf_vector: Option<String>,
}

/// `default_left` is 0/1 in most versions and true/false in a few.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Int(i64),
    Bool(bool),
}

impl Flag {
    fn is_set(&self) -> bool {
        match *self {
            Flag::Int(i) => i != 0,
            Flag::Bool(b) => b,
        }
    }
}

/// How an objective turns the base score into a margin.
#[derive(Clone, Copy)]
enum Link {
    /// The base score is a probability: the margin is its logit.
    Logit,
    /// The base score already is a margin.
    Identity,
}

fn objective_link(name: &str) -> Result<Link, ImportError> {
    match name {
        "binary:logistic" | "reg:logistic" => Ok(Link::Logit),
        // Predicts the margin itself; the scorer reports its logistic.
        "binary:logitraw" => Ok(Link::Identity),
        other => Err(ImportError::UnsupportedObjective(other.to_string())),
    }
}

fn count(text: &str, what: &str) -> Result<usize, ImportError> {
    text.trim().parse().map_err(|_| {
        ImportError::Invalid(format!("XGBoost learner_model_param.{what} {text:?} is not a count"))
    })
}

/// Parses XGBoost's base score: `"5E-1"` (before 2.0) or `"[5E-1]"` (a vector since 2.0).
fn base_scores(text: &str) -> Result<Vec<f32>, ImportError> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(|s| {
            s.trim().parse::<f32>().map_err(|_| {
                ImportError::Invalid(format!(
                    "XGBoost learner_model_param.base_score {text:?} is not a number"
                ))
            })
        })
        .collect()
}

/// Reads an XGBoost JSON model (binary:logistic, reg:logistic or binary:logitraw, gbtree booster)
/// into a gradient-boosted [`TreeEnsemble`].
pub fn from_json(bytes: &[u8]) -> Result<Imported, ImportError> {
    if bytes.first().is_some_and(|&b| b != b'{' && !b.is_ascii_whitespace()) {
        return Err(ImportError::Invalid(
            "XGBoost: the file is not JSON (UBJSON `.ubj` models are not supported; save with a `.json` name)".into(),
        ));
    }
    let file: File = serde_json::from_slice(bytes)?;
    let learner = file.learner;
    let objective = learner.objective.name;
    let classes =
        learner.learner_model_param.num_class.as_deref().map(|c| count(c, "num_class")).transpose()?;
    let targets =
        learner.learner_model_param.num_target.as_deref().map(|t| count(t, "num_target")).transpose()?;
    if objective.starts_with("multi:") || classes.unwrap_or(0) > 1 || targets.unwrap_or(1) > 1 {
        let classes = classes.unwrap_or(0).max(targets.unwrap_or(1));
        return Err(ImportError::MultiClass { objective, classes });
    }
    let link = objective_link(&objective)?;
    let booster = learner.gradient_booster.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
    if booster != "gbtree" {
        return Err(ImportError::UnsupportedBooster(booster.to_string()));
    }
    let model = learner
        .gradient_booster
        .get("model")
        .ok_or_else(|| ImportError::Invalid("XGBoost gradient_booster has no model".into()))?;
    let gbtree = GbTree::deserialize(model)?;
    let n_features = count(&learner.learner_model_param.num_feature, "num_feature")?;
    if n_features == 0 {
        return Err(ImportError::Invalid("XGBoost learner_model_param.num_feature is 0".into()));
    }
    let base = match base_scores(&learner.learner_model_param.base_score)?[..] {
        [b] => f64::from(b),
        ref several => {
            return Err(ImportError::MultiClass { objective, classes: several.len() });
        }
    };
    let base_margin = match link {
        Link::Logit if base > 0.0 && base < 1.0 => (base / (1.0 - base)).ln(),
        Link::Logit => {
            return Err(ImportError::Invalid(format!(
                "XGBoost base_score {base} is not a probability in (0, 1), as {objective} needs"
            )));
        }
        Link::Identity => base,
    };
    if gbtree.trees.is_empty() {
        return Err(ImportError::Invalid("XGBoost model has no trees".into()));
    }

    let (mut nodes, mut roots) = (Vec::new(), Vec::new());
    for (t, tree) in gbtree.trees.iter().enumerate() {
        let raw = tree_nodes(t, tree)?;
        let at = |i: usize| format!("XGBoost tree {t}, node {i}");
        push_tree(&mut nodes, &mut roots, &raw, 0, n_features, &at)?;
    }
    let feature_names = (!learner.feature_names.is_empty()).then_some(learner.feature_names);
    if let Some(names) = &feature_names
        && names.len() != n_features
    {
        return Err(ImportError::Invalid(format!(
            "XGBoost: {} feature names for num_feature {n_features}",
            names.len()
        )));
    }
    let version = file.version.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
    let ensemble = TreeEnsemble { n_features, nodes, roots, base_margin, output: TreeOutput::Logistic };
    Ok(Imported {
        model: Model::Trees(ensemble),
        feature_names,
        source: format!("xgboost {version}, {objective}"),
    })
}

fn tree_nodes(t: usize, tree: &Tree) -> Result<Vec<RawNode>, ImportError> {
    let n = tree.left_children.len();
    let lens = [
        tree.right_children.len(),
        tree.split_conditions.len(),
        tree.split_indices.len(),
        tree.default_left.len(),
    ];
    if lens.iter().any(|&l| l != n) || n == 0 {
        return Err(ImportError::Invalid(format!(
            "XGBoost tree {t}: node arrays of different lengths, or none"
        )));
    }
    if let Some(size) = &tree.tree_param.size_leaf_vector
        && count(size, "size_leaf_vector")? > 1
    {
        return Err(ImportError::Invalid(format!("XGBoost tree {t}: vector leaves (multi-target trees)")));
    }
    if let Some(&node) = tree.categories_nodes.first() {
        return Err(ImportError::Categorical { tree: t, node: usize::try_from(node).unwrap_or(0) });
    }
    if let Some(node) = tree.split_type.iter().position(|&s| s != 0) {
        return Err(ImportError::Categorical { tree: t, node });
    }
    let child = |c: i64, i: usize| {
        usize::try_from(c).ok().filter(|&c| c < n).ok_or_else(|| {
            ImportError::Invalid(format!("XGBoost tree {t}, node {i}: child {c} out of range"))
        })
    };
    (0..n)
        .map(|i| {
            // f64 from JSON to f32: XGBoost wrote these f32 values with enough digits to read back.
            let value = tree.split_conditions[i] as f32;
            if tree.left_children[i] == -1 {
                let cover = tree.sum_hessian.get(i).map_or(0.0, |&h| h as f32);
                return Ok(RawNode::Leaf(value, cover));
            }
            let feature = usize::try_from(tree.split_indices[i]).map_err(|_| {
                ImportError::Invalid(format!("XGBoost tree {t}, node {i}: negative feature index"))
            })?;
            Ok(RawNode::Split {
                feature,
                threshold: value,
                default_left: tree.default_left[i].is_set(),
                left: child(tree.left_children[i], i)?,
                right: child(tree.right_children[i], i)?,
            })
        })
        .collect()
}
