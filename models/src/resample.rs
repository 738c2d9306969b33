//! Class rebalancing before training: random under- and over-sampling, SMOTE, NearMiss (versions
//! 1, 2 and 3, as imbalanced-learn defines them) and chains of them, one [`Resampling`] value
//! parsed from a flag such as `smote:0.1:5+under:0.5`. Deterministic for a given seed.
//!
//! Ratios follow imbalanced-learn's float `sampling_strategy`: the number of minority rows
//! divided by the number of majority rows *after* resampling. Neighbour searches (SMOTE,
//! NearMiss) run in standardised feature space (each feature centred and divided by its
//! population standard deviation over the input), so that an amount in dollars does not drown a
//! count of transactions; synthetic SMOTE rows are interpolated in raw feature space, which is
//! the same segment. The searches are brute force over the minority class, in parallel: on the
//! handbook training week (67k rows, 598 frauds, 15 features) NearMiss takes well under a second.

use crate::train::{LabeledRows, Samples, TrainError, standardisation};
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use std::fmt;
use std::str::FromStr;

/// Why rows could not be resampled, or a resampling flag not parsed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ResampleError {
    /// The flag text is not a resampling method.
    #[error("resampling \"{spec}\": {reason}")]
    Parse {
        /// The text given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A ratio out of `(0, 1]`.
    #[error(
        "{method}: ratio {ratio} is invalid; it is minority rows / majority rows after resampling, in (0, 1]"
    )]
    BadRatio {
        /// The method.
        method: &'static str,
        /// The ratio given.
        ratio: f64,
    },
    /// A number of neighbours of 0.
    #[error("{method}: {name} = 0; at least one neighbour is needed")]
    NoNeighbours {
        /// The method.
        method: &'static str,
        /// Which neighbour count.
        name: &'static str,
    },
    /// The ratio asks an under-sampler to add rows or an over-sampler to remove them.
    #[error(
        "{method}: ratio {ratio} asks for {wanted} {class} rows, but there are {have} and {method} can only {direction} them"
    )]
    WrongDirection {
        /// The method.
        method: &'static str,
        /// The ratio given.
        ratio: f64,
        /// `fraud` or `genuine`: the class the method resamples.
        class: &'static str,
        /// Rows of that class the ratio asks for.
        wanted: usize,
        /// Rows of that class in the input.
        have: usize,
        /// `remove` or `add`.
        direction: &'static str,
    },
    /// Fewer minority rows than neighbours asked for.
    #[error("{method}: k = {k} neighbours needs at least {needed} {class} rows, but there are {have}")]
    TooFewRows {
        /// The method.
        method: &'static str,
        /// Neighbours asked for.
        k: usize,
        /// `fraud` or `genuine`: the minority class.
        class: &'static str,
        /// Rows needed.
        needed: usize,
        /// Rows present.
        have: usize,
    },
    /// The input itself is unusable (one class only, a NaN feature).
    #[error(transparent)]
    Data(#[from] TrainError),
}

/// Which NearMiss, as in imbalanced-learn (Mani and Zhang, 2003).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearMissVersion {
    /// Keep the majority rows with the smallest mean distance to their `k` nearest minority rows.
    One,
    /// Keep the majority rows with the smallest mean distance to their `k` farthest minority rows.
    Two,
    /// Short-list each minority row's `shortlist` nearest majority rows, then keep those of the
    /// short list with the *largest* mean distance to their `k` nearest minority rows (may keep
    /// fewer rows than the ratio asks for, as imbalanced-learn's does).
    Three {
        /// Majority neighbours short-listed per minority row (`n_neighbors_ver3`, 3 by default).
        shortlist: usize,
    },
}

/// A way to rebalance the classes of a training set. Parse one from a flag with [`str::parse`]:
///
/// | flag | meaning |
/// | --- | --- |
/// | `none` | keep the rows as they are |
/// | `under[:RATIO]` | drop random majority rows (without replacement) |
/// | `over[:RATIO]` | copy random minority rows (with replacement) |
/// | `smote[:RATIO[:K]]` | SMOTE with `K` nearest minority neighbours (5) |
/// | `nearmiss1[:RATIO[:K]]`, `nearmiss2[:RATIO[:K]]` | NearMiss under-sampling, `K` neighbours (3) |
/// | `nearmiss3[:RATIO[:K[:M]]]` | NearMiss-3, `M` majority rows short-listed per minority row (3) |
/// | `A+B` | `A`, then `B` on its output (e.g. `smote:0.1:5+under:0.5`) |
///
/// `RATIO` (1 when omitted) is minority rows / majority rows after resampling, in `(0, 1]`. The
/// minority class is the one with fewer rows (fraud, in practice).
///
/// ```
/// use models::{Resampling, Samples};
/// let r: Resampling = "smote:0.5:3+under:1".parse()?;
/// assert_eq!(r.to_string(), "smote:0.5:3+under:1");
/// let features: Vec<f64> = (0..40).map(f64::from).collect();
/// let labels: Vec<bool> = (0..40).map(|i| i % 10 == 0).collect();
/// let out = r.apply(Samples::new(&features, 1, &labels)?, 7)?;
/// // SMOTE: 36 genuine rows, 18 fraud; then under-sampling to 18 and 18.
/// assert_eq!((out.rows.frauds(), out.rows.len()), (18, 36));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Resampling {
    /// Rows unchanged.
    None,
    /// Random under-sampling of the majority class.
    Under {
        /// Minority / majority after resampling.
        ratio: f64,
    },
    /// Random over-sampling of the minority class.
    Over {
        /// Minority / majority after resampling.
        ratio: f64,
    },
    /// SMOTE (Chawla et al., 2002): each new minority row lies at a uniform random point of the
    /// segment between a random minority row and one of its `k` nearest minority neighbours.
    Smote {
        /// Minority / majority after resampling.
        ratio: f64,
        /// Nearest minority neighbours considered.
        k: usize,
    },
    /// NearMiss under-sampling of the majority class.
    NearMiss {
        /// Which NearMiss.
        version: NearMissVersion,
        /// Minority / majority after resampling.
        ratio: f64,
        /// Minority neighbours averaged over (`n_neighbors`, 3 by default).
        k: usize,
    },
    /// Each step on the previous step's output.
    Chain(Vec<Resampling>),
}

/// Where a resampled row came from: an index into the rows given to [`Resampling::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The input row itself.
    Original(usize),
    /// An exact copy of that input row (over-sampling).
    Copy(usize),
    /// A SMOTE row interpolated from that input row towards one of its neighbours.
    Synthetic(usize),
}

impl Origin {
    /// The input row this row comes from.
    pub fn row(self) -> usize {
        match self {
            Origin::Original(i) | Origin::Copy(i) | Origin::Synthetic(i) => i,
        }
    }
}

/// Resampled rows, owned. Rows keep the input's order (its time order, when it had one); each
/// copy or synthetic row follows the input row it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Resampled {
    /// The rows and their labels.
    pub rows: LabeledRows,
    /// Where each row came from.
    pub origins: Vec<Origin>,
}

const SMOTE_K: usize = 5;
const NEARMISS_K: usize = 3;
const NEARMISS3_SHORTLIST: usize = 3;

impl Resampling {
    /// The method's name as the flag spells it (`chain` for a chain).
    pub fn name(&self) -> &'static str {
        match self {
            Resampling::None => "none",
            Resampling::Under { .. } => "under",
            Resampling::Over { .. } => "over",
            Resampling::Smote { .. } => "smote",
            Resampling::NearMiss { version: NearMissVersion::One, .. } => "nearmiss1",
            Resampling::NearMiss { version: NearMissVersion::Two, .. } => "nearmiss2",
            Resampling::NearMiss { version: NearMissVersion::Three { .. }, .. } => "nearmiss3",
            Resampling::Chain(_) => "chain",
        }
    }

    /// Checks ratios and neighbour counts without touching data.
    pub fn validate(&self) -> Result<(), ResampleError> {
        let method = self.name();
        let ratio_ok = |ratio: f64| {
            if ratio > 0.0 && ratio <= 1.0 { Ok(()) } else { Err(ResampleError::BadRatio { method, ratio }) }
        };
        let k_ok =
            |k: usize, name| if k == 0 { Err(ResampleError::NoNeighbours { method, name }) } else { Ok(()) };
        match *self {
            Resampling::None => Ok(()),
            Resampling::Under { ratio } | Resampling::Over { ratio } => ratio_ok(ratio),
            Resampling::Smote { ratio, k } => ratio_ok(ratio).and(k_ok(k, "k")),
            Resampling::NearMiss { version, ratio, k } => {
                ratio_ok(ratio)?;
                k_ok(k, "k")?;
                match version {
                    NearMissVersion::Three { shortlist } => k_ok(shortlist, "shortlist"),
                    _ => Ok(()),
                }
            }
            Resampling::Chain(ref steps) => steps.iter().try_for_each(Resampling::validate),
        }
    }

    /// Resamples `rows`; the same rows and seed always give the same output.
    pub fn apply(&self, rows: Samples<'_>, seed: u64) -> Result<Resampled, ResampleError> {
        self.validate()?;
        rows.require_finite(self.name())?;
        rows.require_both_classes()?;
        match self {
            Resampling::Chain(steps) => {
                let mut current = identity(rows);
                for (i, step) in steps.iter().enumerate() {
                    let step_seed = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let next = step.apply(current.rows.samples()?, step_seed)?;
                    current = compose(&current, next);
                }
                Ok(current)
            }
            step => Ok(step.apply_step(rows, seed)?),
        }
    }

    fn apply_step(&self, rows: Samples<'_>, seed: u64) -> Result<Resampled, ResampleError> {
        let classes = Classes::of(rows);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let method = self.name();
        // Each input row's fate: kept or not, and the extra rows that follow it.
        let mut plan = Plan::keep_all(rows);
        match *self {
            Resampling::None | Resampling::Chain(_) => {}
            Resampling::Under { ratio } => {
                let keep = classes.majority_target(method, ratio)?;
                plan.drop_all(&classes.majority);
                for i in index::sample(&mut rng, classes.majority.len(), keep) {
                    plan.keep[classes.majority[i]] = true;
                }
            }
            Resampling::Over { ratio } => {
                let extra = classes.minority_target(method, ratio)? - classes.minority.len();
                for _ in 0..extra {
                    let i = classes.minority[rng.random_range(0..classes.minority.len())];
                    plan.extra[i].push(Extra::Copy);
                }
            }
            Resampling::Smote { ratio, k } => {
                let extra = classes.minority_target(method, ratio)? - classes.minority.len();
                classes.require_minority(method, k + 1, k)?;
                let space = Space::new(rows);
                let minority = space.gather(&classes.minority);
                let neighbours: Vec<Vec<usize>> = (0..classes.minority.len())
                    .into_par_iter()
                    .map(|m| {
                        nearest(minority.row(m), &minority, k, Some(m)).into_iter().map(|(_, j)| j).collect()
                    })
                    .collect();
                // As imbalanced-learn: one uniform draw over (minority row, neighbour) pairs,
                // then a uniform gap in [0, 1).
                for _ in 0..extra {
                    let pick = rng.random_range(0..classes.minority.len() * k);
                    let (m, n) = (pick / k, neighbours[pick / k][pick % k]);
                    let gap: f64 = rng.random();
                    plan.extra[classes.minority[m]]
                        .push(Extra::Towards { neighbour: classes.minority[n], gap });
                }
            }
            Resampling::NearMiss { version, ratio, k } => {
                let keep = classes.majority_target(method, ratio)?;
                classes.require_minority(method, k, k)?;
                let space = Space::new(rows);
                let minority = space.gather(&classes.minority);
                let kept = near_miss(&space, &classes, &minority, version, k, keep);
                plan.drop_all(&classes.majority);
                for i in kept {
                    plan.keep[i] = true;
                }
            }
        }
        Ok(plan.build(rows))
    }
}

/// The rows of each class, in input order.
struct Classes {
    minority: Vec<usize>,
    majority: Vec<usize>,
    minority_is_fraud: bool,
}

impl Classes {
    fn of(rows: Samples<'_>) -> Classes {
        let (fraud, genuine): (Vec<usize>, Vec<usize>) = (0..rows.len()).partition(|&i| rows.labels()[i]);
        if fraud.len() <= genuine.len() {
            Classes { minority: fraud, majority: genuine, minority_is_fraud: true }
        } else {
            Classes { minority: genuine, majority: fraud, minority_is_fraud: false }
        }
    }

    fn class(&self, minority: bool) -> &'static str {
        if minority == self.minority_is_fraud { "fraud" } else { "genuine" }
    }

    /// Majority rows to keep for `ratio` (imbalanced-learn: `int(minority / ratio)`).
    fn majority_target(&self, method: &'static str, ratio: f64) -> Result<usize, ResampleError> {
        let wanted = (self.minority.len() as f64 / ratio) as usize;
        let have = self.majority.len();
        if wanted > have {
            return Err(ResampleError::WrongDirection {
                method,
                ratio,
                class: self.class(false),
                wanted,
                have,
                direction: "remove",
            });
        }
        Ok(wanted)
    }

    /// Minority rows wanted for `ratio` (imbalanced-learn: `int(majority * ratio)`).
    fn minority_target(&self, method: &'static str, ratio: f64) -> Result<usize, ResampleError> {
        let wanted = (self.majority.len() as f64 * ratio) as usize;
        let have = self.minority.len();
        if wanted < have {
            return Err(ResampleError::WrongDirection {
                method,
                ratio,
                class: self.class(true),
                wanted,
                have,
                direction: "add",
            });
        }
        Ok(wanted)
    }

    fn require_minority(&self, method: &'static str, needed: usize, k: usize) -> Result<(), ResampleError> {
        if self.minority.len() < needed {
            return Err(ResampleError::TooFewRows {
                method,
                k,
                class: self.class(true),
                needed,
                have: self.minority.len(),
            });
        }
        Ok(())
    }
}

/// A new row that follows an input row.
#[derive(Clone, Copy)]
enum Extra {
    Copy,
    Towards { neighbour: usize, gap: f64 },
}

struct Plan {
    keep: Vec<bool>,
    extra: Vec<Vec<Extra>>,
}

impl Plan {
    fn keep_all(rows: Samples<'_>) -> Plan {
        Plan { keep: vec![true; rows.len()], extra: vec![Vec::new(); rows.len()] }
    }

    fn drop_all(&mut self, which: &[usize]) {
        for &i in which {
            self.keep[i] = false;
        }
    }

    fn build(self, rows: Samples<'_>) -> Resampled {
        let nf = rows.n_features();
        let mut out =
            Resampled { rows: LabeledRows { n_features: nf, ..LabeledRows::default() }, origins: Vec::new() };
        for i in 0..rows.len() {
            let x = rows.row(i);
            let y = rows.labels()[i];
            if self.keep[i] {
                out.rows.features.extend_from_slice(x);
                out.rows.labels.push(y);
                out.origins.push(Origin::Original(i));
            }
            for e in &self.extra[i] {
                match *e {
                    Extra::Copy => {
                        out.rows.features.extend_from_slice(x);
                        out.origins.push(Origin::Copy(i));
                    }
                    Extra::Towards { neighbour, gap } => {
                        let n = rows.row(neighbour);
                        out.rows.features.extend(x.iter().zip(n).map(|(a, b)| a + gap * (b - a)));
                        out.origins.push(Origin::Synthetic(i));
                    }
                }
                out.rows.labels.push(y);
            }
        }
        out
    }
}

fn identity(rows: Samples<'_>) -> Resampled {
    Resampled {
        rows: LabeledRows {
            features: rows.features().to_vec(),
            n_features: rows.n_features(),
            labels: rows.labels().to_vec(),
        },
        origins: (0..rows.len()).map(Origin::Original).collect(),
    }
}

/// `next` was resampled from `previous`: re-express its origins in `previous`'s input rows.
fn compose(previous: &Resampled, next: Resampled) -> Resampled {
    let origins = next
        .origins
        .iter()
        .map(|o| match (*o, previous.origins[o.row()]) {
            (Origin::Original(_), before) => before,
            (Origin::Copy(_), Origin::Original(i) | Origin::Copy(i)) => Origin::Copy(i),
            (Origin::Copy(_) | Origin::Synthetic(_), Origin::Synthetic(i)) => Origin::Synthetic(i),
            (Origin::Synthetic(_), before) => Origin::Synthetic(before.row()),
        })
        .collect();
    Resampled { origins, ..next }
}

/// Rows in standardised feature space, row-major.
struct Space {
    values: Vec<f64>,
    nf: usize,
}

impl Space {
    fn new(rows: Samples<'_>) -> Space {
        let (mean, scale) = standardisation(rows);
        let nf = rows.n_features();
        let values = rows
            .features()
            .chunks_exact(nf)
            .flat_map(|r| r.iter().zip(&mean).zip(&scale).map(|((x, m), s)| (x - m) / s))
            .collect();
        Space { values, nf }
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.nf..(i + 1) * self.nf]
    }

    fn len(&self) -> usize {
        self.values.len() / self.nf
    }

    fn gather(&self, which: &[usize]) -> Space {
        Space { values: which.iter().flat_map(|&i| self.row(i).iter().copied()).collect(), nf: self.nf }
    }
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The `k` points of `points` nearest to `query` (squared distance, index), nearest first, ties
/// by index; `skip` leaves one point out (the query itself).
fn nearest(query: &[f64], points: &Space, k: usize, skip: Option<usize>) -> Vec<(f64, usize)> {
    let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
    for j in 0..points.len() {
        if Some(j) == skip {
            continue;
        }
        let d = squared_distance(query, points.row(j));
        if best.len() == k && d >= best[k - 1].0 {
            continue;
        }
        let at = best.partition_point(|&(bd, _)| bd <= d);
        best.insert(at, (d, j));
        best.truncate(k);
    }
    best
}

/// The `k` points of `points` farthest from `query` (squared distance, index), farthest first;
/// among equal distances the later index counts as farther (imbalanced-learn sorts all points
/// by distance, stably, and takes the last `k`).
fn farthest(query: &[f64], points: &Space, k: usize) -> Vec<(f64, usize)> {
    let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
    for j in 0..points.len() {
        let d = squared_distance(query, points.row(j));
        if best.len() == k && d < best[k - 1].0 {
            continue;
        }
        let at = best.partition_point(|&(bd, _)| bd > d);
        best.insert(at, (d, j));
        best.truncate(k);
    }
    best
}

/// Sum of the Euclidean distances (imbalanced-learn ranks by the sum, which orders as the mean).
fn distance_sum(neighbours: &[(f64, usize)]) -> f64 {
    neighbours.iter().map(|(d, _)| d.sqrt()).sum()
}

/// Input rows of the majority class that NearMiss keeps.
fn near_miss(
    space: &Space,
    classes: &Classes,
    minority: &Space,
    version: NearMissVersion,
    k: usize,
    keep: usize,
) -> Vec<usize> {
    let score = |i: usize| match version {
        NearMissVersion::Two => distance_sum(&farthest(space.row(i), minority, k)),
        NearMissVersion::One | NearMissVersion::Three { .. } => {
            distance_sum(&nearest(space.row(i), minority, k, None))
        }
    };
    match version {
        NearMissVersion::One | NearMissVersion::Two => {
            let scored: Vec<(f64, usize)> = classes.majority.par_iter().map(|&i| (score(i), i)).collect();
            // Smallest distance first; a stable sort keeps input order among ties.
            let mut order: Vec<(f64, usize)> = scored;
            order.sort_by(|a, b| a.0.total_cmp(&b.0));
            order.into_iter().take(keep).map(|(_, i)| i).collect()
        }
        NearMissVersion::Three { shortlist } => {
            let majority = space.gather(&classes.majority);
            let m = shortlist.min(classes.majority.len());
            let mut listed: Vec<usize> = (0..classes.minority.len())
                .into_par_iter()
                .flat_map_iter(|r| nearest(minority.row(r), &majority, m, None).into_iter().map(|(_, j)| j))
                .collect();
            listed.sort_unstable();
            listed.dedup();
            let scored: Vec<(f64, usize)> =
                listed.par_iter().map(|&j| (score(classes.majority[j]), classes.majority[j])).collect();
            // Largest distance first, ties in input order.
            let mut order = scored;
            order.sort_by(|a, b| b.0.total_cmp(&a.0));
            order.into_iter().take(keep).map(|(_, i)| i).collect()
        }
    }
}

impl fmt::Display for Resampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resampling::None => f.write_str("none"),
            Resampling::Under { ratio } | Resampling::Over { ratio } => write!(f, "{}:{ratio}", self.name()),
            Resampling::Smote { ratio, k } => write!(f, "smote:{ratio}:{k}"),
            Resampling::NearMiss { version: NearMissVersion::Three { shortlist }, ratio, k } => {
                write!(f, "nearmiss3:{ratio}:{k}:{shortlist}")
            }
            Resampling::NearMiss { ratio, k, .. } => write!(f, "{}:{ratio}:{k}", self.name()),
            Resampling::Chain(steps) => {
                for (i, step) in steps.iter().enumerate() {
                    if i > 0 {
                        f.write_str("+")?;
                    }
                    write!(f, "{step}")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for Resampling {
    type Err = ResampleError;

    fn from_str(spec: &str) -> Result<Resampling, ResampleError> {
        let fail = |reason: String| ResampleError::Parse { spec: spec.to_string(), reason };
        let steps: Vec<&str> = spec.split('+').map(str::trim).collect();
        if steps.len() > 1 {
            let parsed = steps
                .iter()
                .map(|s| match parse_step(s) {
                    Ok(Resampling::None) => Err(fail("\"none\" cannot be a step of a chain".into())),
                    Ok(step) => Ok(step),
                    Err(reason) => Err(fail(reason)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let chain = Resampling::Chain(parsed);
            chain.validate()?;
            return Ok(chain);
        }
        let step = parse_step(steps[0]).map_err(fail)?;
        step.validate()?;
        Ok(step)
    }
}

/// One step, e.g. `smote:0.1:5`; the error is the reason.
fn parse_step(step: &str) -> Result<Resampling, String> {
    let mut parts = step.split(':');
    let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let args: Vec<&str> = parts.map(str::trim).collect();
    let (max_args, usage) = match name.as_str() {
        "none" => (0, "none"),
        "under" | "over" => (1, "under[:RATIO] or over[:RATIO]"),
        "smote" | "nearmiss1" | "nearmiss2" => (2, "smote[:RATIO[:K]] or nearmissN[:RATIO[:K]]"),
        "nearmiss3" => (3, "nearmiss3[:RATIO[:K[:M]]]"),
        "" => return Err("a step is empty".into()),
        other => {
            return Err(format!(
                "\"{other}\" is not a method; use none, under, over, smote, nearmiss1, nearmiss2, nearmiss3, or A+B"
            ));
        }
    };
    if args.len() > max_args {
        return Err(format!("\"{step}\" has too many parts; the form is {usage}"));
    }
    let ratio = match args.first() {
        None => 1.0,
        Some(text) => text.parse::<f64>().map_err(|_| format!("ratio \"{text}\" is not a number"))?,
    };
    let count = |at: usize, default: usize, what: &str| match args.get(at) {
        None => Ok(default),
        Some(text) => text.parse::<usize>().map_err(|_| format!("{what} \"{text}\" is not a whole number")),
    };
    Ok(match name.as_str() {
        "none" => Resampling::None,
        "under" => Resampling::Under { ratio },
        "over" => Resampling::Over { ratio },
        "smote" => Resampling::Smote { ratio, k: count(1, SMOTE_K, "K")? },
        "nearmiss1" => {
            Resampling::NearMiss { version: NearMissVersion::One, ratio, k: count(1, NEARMISS_K, "K")? }
        }
        "nearmiss2" => {
            Resampling::NearMiss { version: NearMissVersion::Two, ratio, k: count(1, NEARMISS_K, "K")? }
        }
        _ => Resampling::NearMiss {
            version: NearMissVersion::Three { shortlist: count(2, NEARMISS3_SHORTLIST, "M")? },
            ratio,
            k: count(1, NEARMISS_K, "K")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_display() {
        for flag in [
            "none",
            "under:0.5",
            "over:1",
            "smote:0.1:5",
            "nearmiss2:0.25:4",
            "nearmiss3:1:3:2",
            "smote:0.2:5+under:0.5",
        ] {
            let parsed: Resampling = flag.parse().unwrap();
            assert_eq!(parsed.to_string(), flag);
        }
        assert_eq!("smote".parse::<Resampling>().unwrap(), Resampling::Smote { ratio: 1.0, k: 5 });
    }

    #[test]
    fn bad_flags_name_the_problem() {
        let err = |s: &str| s.parse::<Resampling>().unwrap_err().to_string();
        assert_eq!(err("smote:abc"), "resampling \"smote:abc\": ratio \"abc\" is not a number");
        assert_eq!(
            err("under:2"),
            "under: ratio 2 is invalid; it is minority rows / majority rows after resampling, in (0, 1]"
        );
        assert!(err("tomek").contains("\"tomek\" is not a method"), "{}", err("tomek"));
        assert!(err("smote:0.1:0").contains("k = 0"), "{}", err("smote:0.1:0"));
        assert!(err("none+under").contains("cannot be a step"), "{}", err("none+under"));
        assert!(err("over:1:2").contains("too many parts"), "{}", err("over:1:2"));
    }
}
