//! Linear support vector machine: hinge (or squared hinge) loss with L2, solved in the dual by
//! coordinate descent as liblinear does (Hsieh et al., 2008), on standardised features with class
//! weights. The decision function is then Platt-scaled (a sigmoid `1 / (1 + e^-(a f + b))` fitted
//! by Newton's method, Lin, Lin and Weng 2007) and folded, with the standardisation, into a
//! [`Model::Logistic`]: the scorer outputs a probability and reads raw features.

use crate::train::standardisation;
use crate::train::{ClassWeight, Samples, TrainError, bad};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;
use scorer::model::{Logistic, Model};

const TRAINER: &str = "linear svm";

/// The margin loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmLoss {
    /// `max(0, 1 - y f(x))` (the classic SVM, liblinear's `-s 3`).
    Hinge,
    /// `max(0, 1 - y f(x))^2` (scikit-learn's `LinearSVC` default, liblinear's `-s 1`).
    SquaredHinge,
}

/// Which rows the Platt sigmoid is fitted on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// The SVM's own training rows (every row trains the SVM; the sigmoid is a little
    /// overconfident, which does not change any ranking metric).
    Training,
    /// The last `fraction` of the rows (the latest, in time order) are held out of the SVM's
    /// training and fit the sigmoid.
    HoldOut {
        /// Share of rows held out, in (0, 1).
        fraction: f64,
    },
}

/// Linear SVM settings. [`Default`]: hinge loss, `C = 1`, standardised features, liblinear's
/// tolerance, sigmoid fitted on the training rows.
#[derive(Clone, Debug, PartialEq)]
pub struct SvmConfig {
    /// Inverse L2 strength: the primal minimised is `|w|^2 / 2 + C * sum(weight_i loss_i)` on
    /// standardised features. The intercept is the weight of a constant feature 1 and so is
    /// penalised too, as in liblinear with `-B 1`.
    pub c: f64,
    /// The loss.
    pub loss: SvmLoss,
    /// Class weights (multiply `C` per row, as liblinear's `-wi`).
    pub class_weight: ClassWeight,
    /// Standardise features (mean 0, population standard deviation 1) before fitting.
    pub standardize: bool,
    /// Stop when the largest minus the smallest projected gradient of a pass is below this
    /// (liblinear's `-e`, 0.1).
    pub tolerance: f64,
    /// Most passes over the rows.
    pub max_epochs: usize,
    /// Where the Platt sigmoid is fitted.
    pub calibration: Calibration,
    /// Seed of the coordinate order.
    pub seed: u64,
}

impl Default for SvmConfig {
    fn default() -> SvmConfig {
        SvmConfig {
            c: 1.0,
            loss: SvmLoss::Hinge,
            class_weight: ClassWeight::None,
            standardize: true,
            tolerance: 0.1,
            max_epochs: 1000,
            calibration: Calibration::Training,
            seed: 0,
        }
    }
}

/// A fitted linear SVM.
#[derive(Clone, Debug, PartialEq)]
pub struct SvmFit {
    /// The probability model: `sigmoid(a * f(x) + b)` folded into one logistic regression over
    /// raw features (equal to [`SvmFit::probability`] up to rounding, a few ulps).
    pub model: Model,
    /// The SVM's decision function `f(x) = intercept + weights . x` over raw features.
    pub decision: Logistic,
    /// Platt's slope `a` (positive when the SVM ranks fraud higher).
    pub platt_a: f64,
    /// Platt's offset `b`.
    pub platt_b: f64,
    /// Passes over the rows run.
    pub epochs: usize,
    /// True when the tolerance was reached within `max_epochs`.
    pub converged: bool,
}

impl SvmFit {
    /// The SVM's decision value for a row of raw features.
    pub fn decision_value(&self, features: &[f64]) -> f64 {
        self.decision.margin(features)
    }

    /// The Platt probability of a row, computed from the decision value (the folded
    /// [`SvmFit::model`] gives the same up to rounding).
    pub fn probability(&self, features: &[f64]) -> f64 {
        scorer::model::sigmoid(self.platt_a * self.decision_value(features) + self.platt_b)
    }
}

impl SvmConfig {
    fn validate(&self) -> Result<(), TrainError> {
        if !(self.c > 0.0 && self.c.is_finite()) {
            return Err(bad(TRAINER, "C", self.c, "C must be finite and above 0"));
        }
        if !(self.tolerance > 0.0 && self.tolerance.is_finite()) {
            return Err(bad(
                TRAINER,
                "tolerance",
                self.tolerance,
                "the tolerance must be finite and above 0",
            ));
        }
        if self.max_epochs == 0 {
            return Err(bad(TRAINER, "max_epochs", 0, "at least one pass"));
        }
        if let Calibration::HoldOut { fraction } = self.calibration
            && !(fraction > 0.0 && fraction < 1.0)
        {
            return Err(bad(TRAINER, "calibration fraction", fraction, "a share strictly between 0 and 1"));
        }
        self.class_weight.validate(TRAINER)
    }

    /// Fits on `train` (every feature finite, both classes present; with
    /// [`Calibration::HoldOut`], in both parts).
    pub fn fit(&self, train: Samples<'_>) -> Result<SvmFit, TrainError> {
        self.validate()?;
        train.require_finite(TRAINER)?;
        train.require_both_classes()?;
        let (fit_rows, platt_rows) = match self.calibration {
            Calibration::Training => (train, train),
            Calibration::HoldOut { fraction } => {
                let held = ((train.len() as f64) * fraction).round() as usize;
                // Both classes are present, so there are at least two rows to share out.
                let (a, b) = train.split_at(train.len() - held.clamp(1, train.len() - 1));
                a.require_both_classes()?;
                b.require_both_classes()?;
                (a, b)
            }
        };
        let (decision, epochs, converged) = self.dual_coordinate_descent(fit_rows)?;
        let values: Vec<f64> = (0..platt_rows.len()).map(|i| decision.margin(platt_rows.row(i))).collect();
        let (platt_a, platt_b) = platt(&values, platt_rows.labels());
        if !(platt_a.is_finite() && platt_b.is_finite()) {
            return Err(TrainError::Diverged { trainer: TRAINER, iteration: epochs });
        }
        let model = Model::Logistic(Logistic {
            weights: decision.weights.iter().map(|w| platt_a * w).collect(),
            intercept: platt_a * decision.intercept + platt_b,
        });
        Ok(SvmFit { model, decision, platt_a, platt_b, epochs, converged })
    }

    /// The dual problem, liblinear's `solve_l2r_l1l2_svc` (with its shrinking): the decision
    /// function over raw features, passes run, converged.
    fn dual_coordinate_descent(&self, train: Samples<'_>) -> Result<(Logistic, usize, bool), TrainError> {
        let nf = train.n_features();
        let n = train.len();
        let (mean, scale) =
            if self.standardize { standardisation(train) } else { (vec![0.0; nf], vec![1.0; nf]) };
        // Standardised rows with the constant bias feature appended.
        let dim = nf + 1;
        let mut z = Vec::with_capacity(n * dim);
        for i in 0..n {
            z.extend(train.row(i).iter().zip(&mean).zip(&scale).map(|((x, m), s)| (x - m) / s));
            z.push(1.0);
        }
        let (w_genuine, w_fraud) = self.class_weight.weights(train.labels());
        let labels = train.labels();
        let sign = |i: usize| if labels[i] { 1.0 } else { -1.0 };
        let c_of = |i: usize| self.c * if labels[i] { w_fraud } else { w_genuine };
        // Hinge: 0 <= alpha <= C_i; squared hinge: alpha >= 0 with a diagonal 1 / (2 C_i).
        let (upper, diag): (Vec<f64>, Vec<f64>) = (0..n)
            .map(|i| match self.loss {
                SvmLoss::Hinge => (c_of(i), 0.0),
                SvmLoss::SquaredHinge => (f64::INFINITY, 0.5 / c_of(i)),
            })
            .unzip();
        let qd: Vec<f64> =
            (0..n).map(|i| diag[i] + z[i * dim..(i + 1) * dim].iter().map(|v| v * v).sum::<f64>()).collect();
        let mut alpha = vec![0.0; n];
        let mut w = vec![0.0; dim];
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let mut epochs = 0;
        let mut converged = false;
        // liblinear's shrinking: a coordinate at a bound whose gradient pushes it further out
        // than the last pass's extremes leaves the active set until the active set converges.
        let mut active = n;
        let (mut pg_max_old, mut pg_min_old) = (f64::INFINITY, f64::NEG_INFINITY);
        while epochs < self.max_epochs {
            epochs += 1;
            order[..active].shuffle(&mut rng);
            let (mut pg_max, mut pg_min) = (f64::NEG_INFINITY, f64::INFINITY);
            let mut s = 0;
            while s < active {
                let i = order[s];
                let zi = &z[i * dim..(i + 1) * dim];
                let y = sign(i);
                let g = y * zi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() - 1.0 + diag[i] * alpha[i];
                let pg = if alpha[i] == 0.0 {
                    if g > pg_max_old {
                        active -= 1;
                        order.swap(s, active);
                        continue;
                    }
                    g.min(0.0)
                } else if alpha[i] == upper[i] {
                    if g < pg_min_old {
                        active -= 1;
                        order.swap(s, active);
                        continue;
                    }
                    g.max(0.0)
                } else {
                    g
                };
                pg_max = pg_max.max(pg);
                pg_min = pg_min.min(pg);
                if pg.abs() > 1e-12 {
                    let old = alpha[i];
                    alpha[i] = (old - g / qd[i]).clamp(0.0, upper[i]);
                    let delta = (alpha[i] - old) * y;
                    w.iter_mut().zip(zi).for_each(|(wj, zj)| *wj += delta * zj);
                }
                s += 1;
            }
            if w.iter().any(|v| !v.is_finite()) {
                return Err(TrainError::Diverged { trainer: TRAINER, iteration: epochs });
            }
            if pg_max - pg_min <= self.tolerance {
                if active == n {
                    converged = true;
                    break;
                }
                // Converged on the active set: check every coordinate again.
                active = n;
                (pg_max_old, pg_min_old) = (f64::INFINITY, f64::NEG_INFINITY);
                continue;
            }
            pg_max_old = if pg_max <= 0.0 { f64::INFINITY } else { pg_max };
            pg_min_old = if pg_min >= 0.0 { f64::NEG_INFINITY } else { pg_min };
        }
        // Fold the standardisation in: w_j / s_j, intercept b - sum(w_j m_j / s_j).
        let weights: Vec<f64> = (0..nf).map(|j| w[j] / scale[j]).collect();
        let intercept = w[nf] - (0..nf).map(|j| weights[j] * mean[j]).sum::<f64>();
        Ok((Logistic { weights, intercept }, epochs, converged))
    }
}

/// Platt's sigmoid `P(fraud | f) = 1 / (1 + e^-(a f + b))` fitted to decision values by
/// Newton's method with backtracking, with Platt's smoothed targets (Lin, Lin and Weng, 2007):
/// returns `(a, b)`.
pub fn platt(values: &[f64], labels: &[bool]) -> (f64, f64) {
    let prior1 = labels.iter().filter(|&&y| y).count() as f64;
    let prior0 = labels.len() as f64 - prior1;
    let hi = (prior1 + 1.0) / (prior1 + 2.0);
    let lo = 1.0 / (prior0 + 2.0);
    let target: Vec<f64> = labels.iter().map(|&y| if y { hi } else { lo }).collect();
    // Platt's form is 1 / (1 + e^(A f + B)); a = -A, b = -B at the end.
    let objective = |a: f64, b: f64| -> f64 {
        values
            .iter()
            .zip(&target)
            .map(|(f, t)| {
                let z = f * a + b;
                if z >= 0.0 { t * z + (-z).exp().ln_1p() } else { (t - 1.0) * z + z.exp().ln_1p() }
            })
            .sum()
    };
    let (mut a, mut b) = (0.0, ((prior0 + 1.0) / (prior1 + 1.0)).ln());
    let mut fval = objective(a, b);
    for _ in 0..100 {
        let (mut h11, mut h22, mut h21, mut g1, mut g2) = (1e-12, 1e-12, 0.0, 0.0, 0.0);
        for (f, t) in values.iter().zip(&target) {
            let z = f * a + b;
            let (p, q) = if z >= 0.0 {
                let e = (-z).exp();
                (e / (1.0 + e), 1.0 / (1.0 + e))
            } else {
                let e = z.exp();
                (1.0 / (1.0 + e), e / (1.0 + e))
            };
            let d2 = p * q;
            h11 += f * f * d2;
            h22 += d2;
            h21 += f * d2;
            let d1 = t - p;
            g1 += f * d1;
            g2 += d1;
        }
        if g1.abs() < 1e-5 && g2.abs() < 1e-5 {
            break;
        }
        let det = h11 * h22 - h21 * h21;
        let da = -(h22 * g1 - h21 * g2) / det;
        let db = -(-h21 * g1 + h11 * g2) / det;
        let gd = g1 * da + g2 * db;
        let mut step = 1.0;
        let mut moved = false;
        while step >= 1e-10 {
            let (na, nb) = (a + step * da, b + step * db);
            let nf = objective(na, nb);
            if nf < fval + 1e-4 * step * gd {
                (a, b, fval) = (na, nb, nf);
                moved = true;
                break;
            }
            step /= 2.0;
        }
        if !moved {
            break;
        }
    }
    (-a, -b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_recovers_a_known_sigmoid() {
        // Decision values on a grid, labels drawn so that P(fraud | f) = sigmoid(2 f - 1) in
        // expectation: fraud counts are rounded expectations per value.
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for step in -20..=20 {
            let f = f64::from(step) / 5.0;
            let p = scorer::model::sigmoid(2.0 * f - 1.0);
            let frauds = (p * 1000.0).round() as usize;
            for r in 0..1000 {
                values.push(f);
                labels.push(r < frauds);
            }
        }
        let (a, b) = platt(&values, &labels);
        assert!((a - 2.0).abs() < 0.02 && (b + 1.0).abs() < 0.02, "a {a}, b {b}");
    }
}
