//! Model evaluators: logistic regression, tree ensembles (gradient-boosted or random forest) and
//! small MLPs, as flat arrays evaluated without allocation. Every model trained or imported by the
//! `models` crate becomes one of these, so training-side and edge-side predictions are one code path.
//!
//! Arithmetic is plain IEEE f64 in a fixed order (Rust never fuses a multiply and an add on its
//! own) and `libm` for `exp`/`tanh`, so a score has the same bits natively and in every wasm runtime.

mod codec;
mod compiled;
mod explain;
mod trees;

pub use codec::ModelError;
pub use compiled::{CompiledTrees, to_f32};
pub use explain::{MAX_EXPLAIN_DEPTH, PathTable, TreeExplainer};
pub use trees::{LEAF, Node, TreeEnsemble, TreeOutput};

use alloc::vec::Vec;

/// The logistic function, through `libm` so that every platform rounds alike.
pub fn sigmoid(margin: f64) -> f64 {
    1.0 / (1.0 + libm::exp(-margin))
}

/// A logistic regression over the raw features (any standardisation folded into the weights).
#[derive(Clone, Debug, PartialEq)]
pub struct Logistic {
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// The intercept.
    pub intercept: f64,
}

impl Logistic {
    /// The margin `intercept + sum(w_i x_i)`, summed in feature order.
    pub fn margin(&self, features: &[f64]) -> f64 {
        let mut acc = self.intercept;
        for (w, x) in self.weights.iter().zip(features) {
            acc += w * x;
        }
        acc
    }
}

/// An activation function of a dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x`.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::Tanh => libm::tanh(x),
            Activation::Sigmoid => sigmoid(x),
        }
    }
}

/// A dense layer: `out = activation(W x + b)`, `W` row-major (`outputs x inputs`).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Number of inputs.
    pub inputs: usize,
    /// `outputs * inputs` weights, row-major.
    pub weights: Vec<f64>,
    /// One bias per output.
    pub bias: Vec<f64>,
    /// The activation.
    pub activation: Activation,
}

/// Widest hidden layer an MLP may have (evaluation uses two stack buffers of this size).
pub const MAX_WIDTH: usize = 256;

/// A multilayer perceptron with one output; the output layer's activation gives the score.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// Input standardisation: per-feature mean subtracted...
    pub input_mean: Vec<f64>,
    /// ...then divided by this scale.
    pub input_scale: Vec<f64>,
    /// The layers, the last with one output.
    pub layers: Vec<Dense>,
}

impl Mlp {
    /// The output of the last layer (a probability when it ends in a sigmoid).
    pub fn output(&self, features: &[f64]) -> f64 {
        let mut a = [0.0f64; MAX_WIDTH];
        let mut b = [0.0f64; MAX_WIDTH];
        let n = features.len().min(MAX_WIDTH).min(self.input_mean.len());
        for i in 0..n {
            a[i] = (features[i] - self.input_mean[i]) / self.input_scale[i];
        }
        let mut width = n;
        for layer in &self.layers {
            let outputs = layer.bias.len();
            for (o, out) in b.iter_mut().enumerate().take(outputs) {
                let row = &layer.weights[o * layer.inputs..(o + 1) * layer.inputs];
                let mut acc = layer.bias[o];
                for (w, x) in row.iter().zip(&a[..width]) {
                    acc += w * x;
                }
                *out = layer.activation.apply(acc);
            }
            core::mem::swap(&mut a, &mut b);
            width = outputs;
        }
        a[0]
    }
}

/// A fraud model over a feature vector, giving a score in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub enum Model {
    /// Logistic regression.
    Logistic(Logistic),
    /// Gradient-boosted trees or a random forest.
    Trees(TreeEnsemble),
    /// A small neural network.
    Mlp(Mlp),
}

impl Model {
    /// The fraud probability of one feature vector (of [`Model::n_features`] values).
    pub fn score(&self, features: &[f64]) -> f64 {
        match self {
            Model::Logistic(m) => sigmoid(m.margin(features)),
            Model::Trees(m) => m.score(features),
            Model::Mlp(m) => m.output(features),
        }
    }

    /// Number of features the model reads.
    pub fn n_features(&self) -> usize {
        match self {
            Model::Logistic(m) => m.weights.len(),
            Model::Trees(m) => m.n_features,
            Model::Mlp(m) => m.input_mean.len(),
        }
    }

    /// A short name of the model family: `logistic`, `gbdt`, `forest` or `mlp`.
    pub fn family(&self) -> &'static str {
        match self {
            Model::Logistic(_) => "logistic",
            Model::Trees(t) => match t.output {
                TreeOutput::Logistic => "gbdt",
                TreeOutput::Average => "forest",
            },
            Model::Mlp(_) => "mlp",
        }
    }
}
