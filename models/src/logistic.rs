//! L2-regularised logistic regression, fitted by Newton's method with a backtracking line search
//! on standardised features (the optimum scikit-learn's `LogisticRegression` reaches), then with
//! the standardisation folded into the weights and intercept so the scorer reads raw features.

use crate::train::{ClassWeight, Samples, TrainError, bad, standardisation};
use rayon::prelude::*;
use scorer::model::{Logistic, Model};

const TRAINER: &str = "logistic regression";

/// Logistic regression settings. [`Default`] is scikit-learn's `LogisticRegression()` on
/// `StandardScaler`-ed features, the handbook's baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct LogisticConfig {
    /// Inverse L2 strength: the loss minimised is `C * sum(w_i loss_i) + |weights|^2 / 2` on the
    /// standardised features, the intercept not penalised. `f64::INFINITY` turns L2 off.
    pub c: f64,
    /// Class weights.
    pub class_weight: ClassWeight,
    /// Standardise features (mean 0, population standard deviation 1) before fitting.
    pub standardize: bool,
    /// Most Newton iterations.
    pub max_iterations: usize,
    /// Stop once the Newton decrement (half the predicted loss decrease) falls below this
    /// fraction of the loss.
    pub tolerance: f64,
}

impl Default for LogisticConfig {
    fn default() -> LogisticConfig {
        LogisticConfig {
            c: 1.0,
            class_weight: ClassWeight::None,
            standardize: true,
            max_iterations: 100,
            tolerance: 1e-14,
        }
    }
}

/// A fitted logistic regression with how the fit went.
#[derive(Clone, Debug, PartialEq)]
pub struct LogisticFit {
    /// The model over raw features.
    pub model: Model,
    /// Newton iterations run.
    pub iterations: usize,
    /// True when the tolerance was reached within the iteration budget.
    pub converged: bool,
    /// The final loss (on standardised features, as minimised).
    pub loss: f64,
}

impl LogisticConfig {
    /// Fits on `train` (every feature finite, both classes present).
    pub fn fit(&self, train: Samples<'_>) -> Result<LogisticFit, TrainError> {
        if self.c.is_nan() || self.c <= 0.0 {
            return Err(bad(TRAINER, "C", self.c, "C must be above 0 (infinity for no penalty)"));
        }
        if self.tolerance.is_nan() || self.tolerance < 0.0 {
            return Err(bad(TRAINER, "tolerance", self.tolerance, "the tolerance must be at least 0"));
        }
        self.class_weight.validate(TRAINER)?;
        train.require_finite(TRAINER)?;
        train.require_both_classes()?;
        let nf = train.n_features();
        let (mean, scale) =
            if self.standardize { standardisation(train) } else { (vec![0.0; nf], vec![1.0; nf]) };
        let (w_genuine, w_fraud) = self.class_weight.weights(train.labels());
        let problem = Problem {
            train,
            mean: &mean,
            scale: &scale,
            w_genuine,
            w_fraud,
            l2: if self.c.is_infinite() { 0.0 } else { 1.0 / self.c },
        };
        // Parameters: one weight per feature, then the intercept.
        let dim = nf + 1;
        let mut beta = vec![0.0; dim];
        let (mut loss, mut grad, mut hess) = problem.evaluate(&beta, true);
        let mut iterations = 0;
        let mut converged = false;
        while iterations < self.max_iterations {
            if !loss.is_finite() {
                return Err(TrainError::Diverged { trainer: TRAINER, iteration: iterations });
            }
            let step = solve(&hess, &grad, dim);
            let decrement: f64 = grad.iter().zip(&step).map(|(g, s)| g * s).sum();
            if decrement / 2.0 <= self.tolerance * loss.abs().max(1.0) {
                converged = true;
                break;
            }
            iterations += 1;
            // Armijo backtracking along the Newton direction (-step).
            let mut t = 1.0;
            let accepted = loop {
                let candidate: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b - t * s).collect();
                let (l, _, _) = problem.evaluate(&candidate, false);
                if l <= loss - 1e-4 * t * decrement {
                    break Some(candidate);
                }
                t *= 0.5;
                if t < 1e-12 {
                    break None;
                }
            };
            let Some(next) = accepted else {
                // No decrease along the Newton direction: at the optimum to machine precision.
                converged = true;
                break;
            };
            beta = next;
            (loss, grad, hess) = problem.evaluate(&beta, true);
        }
        if !loss.is_finite() || beta.iter().any(|b| !b.is_finite()) {
            return Err(TrainError::Diverged { trainer: TRAINER, iteration: iterations });
        }
        // Fold the standardisation in: w_j = b_j / s_j, intercept = b_0 - sum(b_j m_j / s_j).
        let weights: Vec<f64> = (0..nf).map(|j| beta[j] / scale[j]).collect();
        let intercept = beta[nf] - (0..nf).map(|j| weights[j] * mean[j]).sum::<f64>();
        Ok(LogisticFit {
            model: Model::Logistic(Logistic { weights, intercept }),
            iterations,
            converged,
            loss,
        })
    }
}

struct Problem<'a> {
    train: Samples<'a>,
    mean: &'a [f64],
    scale: &'a [f64],
    w_genuine: f64,
    w_fraud: f64,
    l2: f64,
}

/// `ln(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 35.0 {
        z
    } else if z < -35.0 {
        z.exp()
    } else {
        z.exp().ln_1p()
    }
}

impl Problem<'_> {
    /// Loss, gradient and (when asked) the Hessian, row-major `dim x dim`.
    fn evaluate(&self, beta: &[f64], derivatives: bool) -> (f64, Vec<f64>, Vec<f64>) {
        const CHUNK: usize = 4096;
        let nf = self.train.n_features();
        let dim = nf + 1;
        let (gd, hd) = if derivatives { (dim, dim * dim) } else { (0, 0) };
        let labels = self.train.labels();
        let partial = |(c, rows): (usize, &[f64])| {
            let (mut loss, mut grad, mut hess) = (0.0, vec![0.0; gd], vec![0.0; hd]);
            let mut z = vec![1.0; dim];
            for (k, row) in rows.chunks_exact(nf).enumerate() {
                for (j, v) in row.iter().enumerate() {
                    z[j] = (v - self.mean[j]) / self.scale[j];
                }
                let margin: f64 = z.iter().zip(beta).map(|(a, b)| a * b).sum();
                let y = labels[c * CHUNK + k];
                let w = if y { self.w_fraud } else { self.w_genuine };
                loss += w * (softplus(margin) - if y { margin } else { 0.0 });
                if derivatives {
                    let p = 1.0 / (1.0 + (-margin).exp());
                    let r = w * (p - if y { 1.0 } else { 0.0 });
                    let h = w * p * (1.0 - p);
                    for a in 0..dim {
                        grad[a] += r * z[a];
                        let ha = h * z[a];
                        for b in 0..=a {
                            hess[a * dim + b] += ha * z[b];
                        }
                    }
                }
            }
            (loss, grad, hess)
        };
        // Chunks in a fixed order, summed in that order: the fit does not depend on the threads.
        let parts: Vec<_> = self.train.features().par_chunks(CHUNK * nf).enumerate().map(partial).collect();
        let (mut loss, mut grad, mut hess) = (0.0, vec![0.0; gd], vec![0.0; hd]);
        for (l, g, h) in parts {
            loss += l;
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            hess.iter_mut().zip(&h).for_each(|(a, b)| *a += b);
        }
        for j in 0..nf {
            loss += 0.5 * self.l2 * beta[j] * beta[j];
            if derivatives {
                grad[j] += self.l2 * beta[j];
                hess[j * dim + j] += self.l2;
            }
        }
        if derivatives {
            for a in 0..dim {
                for b in 0..a {
                    hess[b * dim + a] = hess[a * dim + b];
                }
            }
        }
        (loss, grad, hess)
    }
}

/// Solves `H x = g` for a symmetric positive (semi-)definite `H` by Cholesky, adding a small
/// ridge when `H` is singular (e.g. a constant feature without L2).
fn solve(hess: &[f64], grad: &[f64], dim: usize) -> Vec<f64> {
    let trace: f64 = (0..dim).map(|i| hess[i * dim + i]).sum();
    let mut ridge = 0.0;
    loop {
        if let Some(l) = cholesky(hess, dim, ridge) {
            // Forward then backward substitution.
            let mut y = vec![0.0; dim];
            for i in 0..dim {
                let s: f64 = (0..i).map(|k| l[i * dim + k] * y[k]).sum();
                y[i] = (grad[i] - s) / l[i * dim + i];
            }
            let mut x = vec![0.0; dim];
            for i in (0..dim).rev() {
                let s: f64 = (i + 1..dim).map(|k| l[k * dim + i] * x[k]).sum();
                x[i] = (y[i] - s) / l[i * dim + i];
            }
            return x;
        }
        ridge = if ridge == 0.0 { 1e-12 * trace.max(1.0) } else { ridge * 10.0 };
    }
}

fn cholesky(a: &[f64], dim: usize, ridge: f64) -> Option<Vec<f64>> {
    let mut l = vec![0.0; dim * dim];
    for i in 0..dim {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * dim + k] * l[j * dim + k]).sum();
            if i == j {
                let d = a[i * dim + i] + ridge - s;
                if d.is_nan() || d <= 0.0 {
                    return None;
                }
                l[i * dim + i] = d.sqrt();
            } else {
                l[i * dim + j] = (a[i * dim + j] - s) / l[j * dim + j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_the_standardisation_into_the_weights() {
        // Separable by x0 > 5 with noise on x1: the score must rise with x0.
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..200 {
            let x0 = f64::from(i % 10);
            features.extend([x0, f64::from(i % 7) * 100.0]);
            labels.push(x0 > 5.0 && i % 3 != 0);
        }
        let train = Samples::new(&features, 2, &labels).unwrap();
        let fit = LogisticConfig::default().fit(train).unwrap();
        assert!(fit.converged, "{fit:?}");
        let Model::Logistic(m) = &fit.model else { panic!("not logistic") };
        assert!(m.weights[0] > 0.5, "{m:?}");
        // The same fit without standardisation but with C rescaled gives another optimum; with
        // no penalty both reach the same one, so folding must give the same model.
        let free = LogisticConfig { c: f64::INFINITY, ..Default::default() };
        let a = free.fit(train).unwrap();
        let b = LogisticConfig { standardize: false, ..free }.fit(train).unwrap();
        let (Model::Logistic(a), Model::Logistic(b)) = (&a.model, &b.model) else { panic!() };
        for (wa, wb) in a.weights.iter().zip(&b.weights) {
            assert!((wa - wb).abs() < 1e-7 * wa.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn refuses_nan_features_and_one_class() {
        let labels = [true, false];
        let err =
            LogisticConfig::default().fit(Samples::new(&[1.0, f64::NAN], 1, &labels).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "training data: row 1, feature 0 is NaN; logistic regression needs finite features"
        );
        let err = LogisticConfig::default()
            .fit(Samples::new(&[1.0, 2.0], 1, &[false, false]).unwrap())
            .unwrap_err();
        assert!(matches!(err, TrainError::OneClass { present: "genuine" }));
    }
}
