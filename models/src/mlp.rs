//! Small dense neural networks: hidden layers with ReLU or tanh, a sigmoid output, trained with
//! Adam on the class-weighted log loss in shuffled minibatches, L2 on the weights, early stopping
//! on a validation split. The result is the scorer's [`Model::Mlp`], which carries the input
//! standardisation itself, so nothing is folded and nothing is rounded on the way: the trainer's
//! own prediction ([`MlpFit::predict`]) and the scorer's `Model::score` give the same bits.

use crate::gbdt::StopMetric;
use crate::metrics;
use crate::train::standardisation;
use crate::train::{ClassWeight, Samples, TrainError, bad};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use scorer::model::{Activation, Dense, MAX_WIDTH, Mlp, Model, sigmoid};

const TRAINER: &str = "mlp";
/// Layers a model may have (the scorer's codec reads at most 64).
const MAX_LAYERS: usize = 64;

/// The activation of the hidden layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HiddenActivation {
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)` (through `libm`, as the scorer evaluates it).
    Tanh,
}

impl HiddenActivation {
    fn scorer(self) -> Activation {
        match self {
            HiddenActivation::Relu => Activation::Relu,
            HiddenActivation::Tanh => Activation::Tanh,
        }
    }
}

/// Stop once the validation metric has not improved for `patience` epochs, and keep the
/// weights of the best epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MlpStopping {
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// The metric watched (log loss is the unweighted mean over the validation rows).
    pub metric: StopMetric,
    /// With [`MlpConfig::fit`]: the share of the rows, taken from the end (the latest, in time
    /// order), held out for validation.
    pub validation_fraction: f64,
}

/// MLP settings. [`Default`]: one hidden layer of 32 ReLU units, Adam with learning rate 1e-3,
/// minibatches of 256, L2 1e-4 (scikit-learn's `alpha`), up to 200 epochs, early stopping after
/// 10 epochs without a better validation log loss on the last 10 % of the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    /// Width of each hidden layer (1 to 256 units; one or two layers are usual).
    pub hidden: Vec<usize>,
    /// Activation of the hidden layers.
    pub activation: HiddenActivation,
    /// Adam's step size.
    pub learning_rate: f64,
    /// Rows per minibatch.
    pub batch_size: usize,
    /// Most passes over the rows.
    pub max_epochs: usize,
    /// L2 penalty on the weights (not the biases), as scikit-learn's `alpha`: each minibatch's
    /// gradient is `(sum of row gradients + l2 * W) / rows`.
    pub l2: f64,
    /// Class weights in the log loss.
    pub class_weight: ClassWeight,
    /// Early stopping, or `None` to run `max_epochs`.
    pub early_stopping: Option<MlpStopping>,
    /// Seed of the initial weights and of the minibatch shuffles.
    pub seed: u64,
}

impl Default for MlpConfig {
    fn default() -> MlpConfig {
        MlpConfig {
            hidden: vec![32],
            activation: HiddenActivation::Relu,
            learning_rate: 1e-3,
            batch_size: 256,
            max_epochs: 200,
            l2: 1e-4,
            class_weight: ClassWeight::None,
            early_stopping: Some(MlpStopping {
                patience: 10,
                metric: StopMetric::LogLoss,
                validation_fraction: 0.1,
            }),
            seed: 0,
        }
    }
}

/// A trained network.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpFit {
    /// The scorer's model.
    pub model: Model,
    /// Epochs run.
    pub epochs: usize,
    /// The validation metric after each epoch (empty without validation rows).
    pub validation: Vec<f64>,
    /// The epoch (0-based) whose weights were kept, when validation ran.
    pub best_epoch: Option<usize>,
    network: Network,
}

impl MlpFit {
    /// The trainer's own prediction for a row of raw features: its forward pass, the one that
    /// computed the validation metric. Bit for bit the scorer's `Model::score` on
    /// [`MlpFit::model`] (same operations in the same order, `libm` for `tanh` and `exp`).
    pub fn predict(&self, features: &[f64]) -> f64 {
        self.network.predict(features)
    }
}

/// The trainer's network: standardisation, then layers (row-major `outputs x inputs` weights).
#[derive(Clone, Debug, PartialEq)]
struct Network {
    mean: Vec<f64>,
    scale: Vec<f64>,
    layers: Vec<Layer>,
    hidden: HiddenActivation,
}

#[derive(Clone, Debug, PartialEq)]
struct Layer {
    inputs: usize,
    outputs: usize,
    weights: Vec<f64>,
    bias: Vec<f64>,
}

impl Network {
    fn activate(&self, layer: usize, x: f64) -> f64 {
        if layer + 1 == self.layers.len() {
            sigmoid(x)
        } else {
            match self.hidden {
                HiddenActivation::Relu => x.max(0.0),
                HiddenActivation::Tanh => libm::tanh(x),
            }
        }
    }

    /// Forward pass of one row, filling `acts[l]` with layer `l`'s input (`acts[0]` the
    /// standardised features) and `acts[layers]` with the output.
    fn forward(&self, features: &[f64], acts: &mut [Vec<f64>]) {
        for (j, a) in acts[0].iter_mut().enumerate() {
            *a = (features[j] - self.mean[j]) / self.scale[j];
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let (input, output) = acts.split_at_mut(l + 1);
            let input = &input[l];
            for (o, out) in output[0].iter_mut().enumerate() {
                // The scorer's order: the bias first, then each input in turn.
                let mut acc = layer.bias[o];
                for (w, x) in layer.weights[o * layer.inputs..(o + 1) * layer.inputs].iter().zip(input) {
                    acc += w * x;
                }
                *out = self.activate(l, acc);
            }
        }
    }

    fn buffers(&self) -> Vec<Vec<f64>> {
        let mut acts = vec![vec![0.0; self.mean.len()]];
        acts.extend(self.layers.iter().map(|l| vec![0.0; l.outputs]));
        acts
    }

    fn predict(&self, features: &[f64]) -> f64 {
        let mut acts = self.buffers();
        self.forward(features, &mut acts);
        acts[self.layers.len()][0]
    }

    fn to_model(&self) -> Model {
        let last = self.layers.len() - 1;
        Model::Mlp(Mlp {
            input_mean: self.mean.clone(),
            input_scale: self.scale.clone(),
            layers: self
                .layers
                .iter()
                .enumerate()
                .map(|(l, layer)| Dense {
                    inputs: layer.inputs,
                    weights: layer.weights.clone(),
                    bias: layer.bias.clone(),
                    activation: if l == last { Activation::Sigmoid } else { self.hidden.scorer() },
                })
                .collect(),
        })
    }

    fn parameters_finite(&self) -> bool {
        self.layers.iter().all(|l| l.weights.iter().chain(&l.bias).all(|v| v.is_finite()))
    }
}

/// Adam's moment estimates, one per parameter, laid out as the layers.
struct Adam {
    m: Vec<Layer>,
    v: Vec<Layer>,
    t: i32,
}

impl MlpConfig {
    fn validate(&self) -> Result<(), TrainError> {
        if self.hidden.is_empty() || self.hidden.len() >= MAX_LAYERS {
            return Err(bad(TRAINER, "hidden layers", self.hidden.len(), "1 to 63 hidden layers"));
        }
        if let Some(&w) = self.hidden.iter().find(|&&w| w == 0 || w > MAX_WIDTH) {
            return Err(bad(TRAINER, "hidden width", w, "each hidden layer has 1 to 256 units"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(bad(TRAINER, "learning_rate", self.learning_rate, "must be finite and above 0"));
        }
        if self.batch_size == 0 {
            return Err(bad(TRAINER, "batch_size", 0, "at least one row"));
        }
        if self.max_epochs == 0 {
            return Err(bad(TRAINER, "max_epochs", 0, "at least one epoch"));
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return Err(bad(TRAINER, "l2", self.l2, "must be finite and at least 0"));
        }
        if let Some(e) = self.early_stopping {
            if e.patience == 0 {
                return Err(bad(TRAINER, "early_stopping.patience", 0, "at least one epoch"));
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
        self.class_weight.validate(TRAINER)
    }

    /// Trains on `train`; with early stopping, its last `validation_fraction` of rows are held
    /// out as the validation split.
    pub fn fit(&self, train: Samples<'_>) -> Result<MlpFit, TrainError> {
        self.validate()?;
        train.require_both_classes()?;
        match self.early_stopping {
            Some(e) => {
                let held = ((train.len() as f64) * e.validation_fraction).round() as usize;
                let (fit_rows, valid_rows) = train.split_at(train.len() - held.clamp(1, train.len() - 1));
                self.fit_with_validation(fit_rows, Some(valid_rows))
            }
            None => self.fit_with_validation(train, None),
        }
    }

    /// Trains on `train`, recording the validation metric on `valid` after every epoch (and
    /// stopping early when configured; without early stopping the last epoch's weights are
    /// kept).
    pub fn fit_with_validation(
        &self,
        train: Samples<'_>,
        valid: Option<Samples<'_>>,
    ) -> Result<MlpFit, TrainError> {
        self.validate()?;
        train.require_finite(TRAINER)?;
        train.require_both_classes()?;
        let nf = train.n_features();
        if nf > MAX_WIDTH {
            return Err(bad(TRAINER, "features", nf, "the scorer's MLP reads at most 256 features"));
        }
        if let Some(v) = valid {
            if v.n_features() != nf {
                return Err(TrainError::Shape { values: v.features().len(), rows: v.len(), n_features: nf });
            }
            v.require_finite(TRAINER)?;
            if matches!(
                self.early_stopping.map(|e| e.metric),
                Some(StopMetric::RocAuc | StopMetric::AveragePrecision)
            ) {
                v.require_both_classes()?;
            }
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let (w_genuine, w_fraud) = self.class_weight.weights(train.labels());
        let mut net = self.initial_network(train, w_genuine, w_fraud, &mut rng);
        let zeros = || {
            net.layers
                .iter()
                .map(|l| Layer { weights: vec![0.0; l.weights.len()], bias: vec![0.0; l.outputs], ..*l })
                .collect::<Vec<_>>()
        };
        let mut adam = Adam { m: zeros(), v: zeros(), t: 0 };
        let mut grads = zeros();
        let mut acts = net.buffers();
        let mut deltas: Vec<Vec<f64>> = acts.clone();
        let mut order: Vec<usize> = (0..train.len()).collect();
        let labels = train.labels();

        let metric = self.early_stopping.map_or(StopMetric::LogLoss, |e| e.metric);
        let mut validation = Vec::new();
        let mut best: Option<(usize, f64, Network)> = None;
        let mut epochs = 0;
        while epochs < self.max_epochs {
            order.shuffle(&mut rng);
            for batch in order.chunks(self.batch_size) {
                grads.iter_mut().for_each(|g| {
                    g.weights.fill(0.0);
                    g.bias.fill(0.0);
                });
                for &i in batch {
                    net.forward(train.row(i), &mut acts);
                    let last = net.layers.len();
                    let y = labels[i];
                    let w = if y { w_fraud } else { w_genuine };
                    // d(weighted log loss)/d(output pre-activation) = w (p - y).
                    deltas[last][0] = w * (acts[last][0] - if y { 1.0 } else { 0.0 });
                    for l in (0..last).rev() {
                        let layer = &net.layers[l];
                        let g = &mut grads[l];
                        let (lower, upper) = deltas.split_at_mut(l + 1);
                        let delta = &upper[0];
                        let input = &acts[l];
                        for (o, &d) in delta.iter().enumerate() {
                            g.bias[o] += d;
                            for (gw, x) in
                                g.weights[o * layer.inputs..(o + 1) * layer.inputs].iter_mut().zip(input)
                            {
                                *gw += d * x;
                            }
                        }
                        if l > 0 {
                            // Back through the hidden activation of layer l - 1's output.
                            let below = &mut lower[l];
                            below.fill(0.0);
                            for (o, &d) in delta.iter().enumerate() {
                                for (b, w) in below
                                    .iter_mut()
                                    .zip(&layer.weights[o * layer.inputs..(o + 1) * layer.inputs])
                                {
                                    *b += w * d;
                                }
                            }
                            for (b, a) in below.iter_mut().zip(input) {
                                *b *= match self.activation {
                                    HiddenActivation::Relu => {
                                        if *a > 0.0 {
                                            1.0
                                        } else {
                                            0.0
                                        }
                                    }
                                    HiddenActivation::Tanh => 1.0 - a * a,
                                };
                            }
                        }
                    }
                }
                self.adam_step(&mut net, &mut grads, &mut adam, batch.len() as f64);
            }
            epochs += 1;
            if !net.parameters_finite() {
                return Err(TrainError::Diverged { trainer: TRAINER, iteration: epochs });
            }
            let Some(v) = valid else { continue };
            let value = evaluate(&net, v, metric);
            validation.push(value);
            let better = match &best {
                None => true,
                Some((_, b, _)) => match metric {
                    StopMetric::LogLoss => value < *b,
                    StopMetric::RocAuc | StopMetric::AveragePrecision => value > *b,
                },
            };
            if better {
                best = Some((epochs - 1, value, net.clone()));
            }
            if let (Some(e), Some((at, _, _))) = (self.early_stopping, &best)
                && epochs - 1 - at >= e.patience
            {
                break;
            }
        }
        let (best_epoch, network) = match (self.early_stopping, best) {
            (Some(_), Some((at, _, kept))) => (Some(at), kept),
            (None, Some((at, _, _))) => (Some(at), net),
            (_, None) => (None, net),
        };
        Ok(MlpFit { model: network.to_model(), epochs, validation, best_epoch, network })
    }

    /// Glorot-uniform weights (scikit-learn's initialisation; the output layer's bound uses
    /// the factor 2 it uses for a sigmoid), zero hidden biases, and the output bias at the
    /// logit of the weighted fraud share, so that training starts from the base rate.
    fn initial_network(
        &self,
        train: Samples<'_>,
        w_genuine: f64,
        w_fraud: f64,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Network {
        let (mean, scale) = standardisation(train);
        let mut widths = vec![train.n_features()];
        widths.extend(&self.hidden);
        widths.push(1);
        let frauds = train.frauds() as f64;
        let genuine = train.len() as f64 - frauds;
        let base = ((w_fraud * frauds) / (w_genuine * genuine)).ln();
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(l, io)| {
                let (inputs, outputs) = (io[0], io[1]);
                let factor = if l + 2 == widths.len() { 2.0 } else { 6.0 };
                let bound = (factor / (inputs + outputs) as f64).sqrt();
                Layer {
                    inputs,
                    outputs,
                    weights: (0..inputs * outputs).map(|_| rng.random_range(-bound..bound)).collect(),
                    bias: vec![if l + 2 == widths.len() { base } else { 0.0 }; outputs],
                }
            })
            .collect();
        Network { mean, scale, layers, hidden: self.activation }
    }

    fn adam_step(&self, net: &mut Network, grads: &mut [Layer], adam: &mut Adam, rows: f64) {
        const BETA1: f64 = 0.9;
        const BETA2: f64 = 0.999;
        const EPSILON: f64 = 1e-8;
        adam.t += 1;
        let step = self.learning_rate * (1.0 - BETA2.powi(adam.t)).sqrt() / (1.0 - BETA1.powi(adam.t));
        let update = |p: &mut f64, g: f64, m: &mut f64, v: &mut f64| {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= step * *m / (v.sqrt() + EPSILON);
        };
        for (l, layer) in net.layers.iter_mut().enumerate() {
            let (g, m, v) = (&grads[l], &mut adam.m[l], &mut adam.v[l]);
            for k in 0..layer.weights.len() {
                let grad = (g.weights[k] + self.l2 * layer.weights[k]) / rows;
                update(&mut layer.weights[k], grad, &mut m.weights[k], &mut v.weights[k]);
            }
            for k in 0..layer.bias.len() {
                update(&mut layer.bias[k], g.bias[k] / rows, &mut m.bias[k], &mut v.bias[k]);
            }
        }
    }
}

/// The validation metric of `net` on `valid`.
fn evaluate(net: &Network, valid: Samples<'_>, metric: StopMetric) -> f64 {
    let scores: Vec<f64> =
        valid.features().par_chunks(valid.n_features()).map(|row| net.predict(row)).collect();
    let labels = valid.labels();
    match metric {
        StopMetric::LogLoss => {
            let eps = 1e-15;
            let total: f64 = scores
                .iter()
                .zip(labels)
                .map(|(&p, &y)| -(if y { p } else { 1.0 - p }).clamp(eps, 1.0).ln())
                .sum();
            total / labels.len() as f64
        }
        // Both classes were checked before training, so the metrics are defined.
        StopMetric::RocAuc => metrics::roc_auc(&scores, labels).unwrap_or(f64::NAN),
        StopMetric::AveragePrecision => metrics::average_precision(&scores, labels).unwrap_or(f64::NAN),
    }
}
