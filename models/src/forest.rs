//! Random forests as scikit-learn's `RandomForestClassifier` grows them: bootstrap rows (as
//! integer weights), at each node a random subset of features (`sqrt` by default; constant ones
//! do not count), the split with the best weighted Gini, trees grown until pure, and the score the
//! mean over trees of the leaf's fraud share. Each leaf's cover is the number of training rows the
//! tree drew into it (bootstrap copies counted, class weights not), so every forest carries what
//! attribution needs. Trees grow in parallel, each from its own seed, so the forest does not
//! depend on the number of threads.

use crate::train::{ClassWeight, Samples, TrainError, bad};
use crate::tree::{Columns, Grown, lay_out, split_between};
use exporter::Progress;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use scorer::model::{Model, TreeEnsemble, TreeOutput};

const TRAINER: &str = "random forest";

/// How many features each node draws.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxFeatures {
    /// `floor(sqrt(features))`, at least 1 (scikit-learn's default).
    Sqrt,
    /// `floor(log2(features))`, at least 1.
    Log2,
    /// Every feature (bagged trees).
    All,
    /// This many (at most all).
    Count(usize),
    /// This share of the features, at least 1.
    Share(f64),
}

impl MaxFeatures {
    fn count(self, n_features: usize) -> usize {
        let n = n_features as f64;
        let k = match self {
            MaxFeatures::Sqrt => n.sqrt().floor() as usize,
            MaxFeatures::Log2 => n.log2().floor() as usize,
            MaxFeatures::All => n_features,
            MaxFeatures::Count(k) => k,
            MaxFeatures::Share(s) => (n * s).floor() as usize,
        };
        k.clamp(1, n_features)
    }
}

/// Random forest settings. [`Default`] is scikit-learn's `RandomForestClassifier()`.
#[derive(Clone, Debug, PartialEq)]
pub struct ForestConfig {
    /// Number of trees.
    pub trees: usize,
    /// Maximum depth; `None` grows until the leaves are pure or too small.
    pub max_depth: Option<u32>,
    /// A node with fewer (distinct, in-bag) rows is not split.
    pub min_samples_split: usize,
    /// Each child keeps at least this many (distinct, in-bag) rows.
    pub min_samples_leaf: usize,
    /// Features drawn at each node.
    pub max_features: MaxFeatures,
    /// Draw each tree's rows with replacement (otherwise every tree sees every row once).
    pub bootstrap: bool,
    /// Class weights (multiplying the bootstrap counts).
    pub class_weight: ClassWeight,
    /// Seed of the bootstrap and feature draws.
    pub seed: u64,
}

impl Default for ForestConfig {
    fn default() -> ForestConfig {
        ForestConfig {
            trees: 100,
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: MaxFeatures::Sqrt,
            bootstrap: true,
            class_weight: ClassWeight::None,
            seed: 0,
        }
    }
}

/// How each tree draws its training rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Draw {
    /// As [`ForestConfig::bootstrap`] says: `n` draws with replacement, or every row once.
    Configured,
    /// As configured, then the genuine draws undersampled at random, without replacement, to
    /// `int(fraud draws / ratio)` (all of them when there are fewer, none dropped when no fraud
    /// was drawn). With a bootstrap, imbalanced-learn's `BalancedBaggingClassifier` with its
    /// `RandomUnderSampler`.
    Balanced(f64),
}

impl ForestConfig {
    /// Trains on `train` (every feature finite, both classes present).
    pub fn fit(&self, train: Samples<'_>, progress: &dyn Progress) -> Result<Model, TrainError> {
        self.fit_drawing(train, Draw::Configured, progress)
    }

    /// [`ForestConfig::fit`], each tree drawing its rows as `draw` says.
    pub(crate) fn fit_drawing(
        &self,
        train: Samples<'_>,
        draw: Draw,
        progress: &dyn Progress,
    ) -> Result<Model, TrainError> {
        if self.trees == 0 {
            return Err(bad(TRAINER, "trees", 0, "at least one tree"));
        }
        if self.min_samples_split < 2 {
            return Err(bad(TRAINER, "min_samples_split", self.min_samples_split, "at least 2"));
        }
        if self.min_samples_leaf == 0 {
            return Err(bad(TRAINER, "min_samples_leaf", 0, "at least 1"));
        }
        if let MaxFeatures::Share(s) = self.max_features
            && !(s > 0.0 && s <= 1.0)
        {
            return Err(bad(TRAINER, "max_features", s, "a share must be in (0, 1]"));
        }
        if self.max_features == MaxFeatures::Count(0) {
            return Err(bad(TRAINER, "max_features", 0, "at least one feature"));
        }
        self.class_weight.validate(TRAINER)?;
        train.require_finite(TRAINER)?;
        train.require_both_classes()?;
        let nf = train.n_features();
        let columns = Columns::new(train)?;
        let sorted: Vec<Vec<u32>> = (0..nf)
            .into_par_iter()
            .map(|f| columns.sorted(f).0.into_iter().map(|(r, _)| r).collect())
            .collect();
        let (w_genuine, w_fraud) = self.class_weight.weights(train.labels());
        let data = Data {
            columns: &columns,
            sorted: &sorted,
            labels: train.labels(),
            class_weight: [w_genuine, w_fraud],
            n_features: nf,
            max_features: self.max_features.count(nf),
        };
        let mut seeder = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let seeds: Vec<u64> = (0..self.trees).map(|_| seeder.random()).collect();
        progress.start("forest trees", self.trees as u64);
        let grown: Vec<Vec<Grown>> = seeds
            .par_iter()
            .map(|&seed| {
                let tree = self.grow(&data, draw, Xoshiro256PlusPlus::seed_from_u64(seed));
                progress.advance(1);
                tree
            })
            .collect();
        progress.finish();
        let mut ensemble = TreeEnsemble {
            n_features: nf,
            nodes: Vec::new(),
            roots: Vec::new(),
            base_margin: 0.0,
            output: TreeOutput::Average,
        };
        for tree in &grown {
            let root = lay_out(tree, &mut ensemble.nodes, TRAINER)?;
            ensemble.roots.push(root);
        }
        Ok(Model::Trees(ensemble))
    }

    fn grow(&self, data: &Data<'_>, draw: Draw, mut rng: Xoshiro256PlusPlus) -> Vec<Grown> {
        let n = data.labels.len();
        let mut counts = vec![0u32; n];
        if self.bootstrap {
            for _ in 0..n {
                counts[rng.random_range(0..n)] += 1;
            }
        } else {
            counts.fill(1);
        }
        if let Draw::Balanced(ratio) = draw {
            undersample_genuine(&mut counts, data.labels, ratio, &mut rng);
        }
        let weight: Vec<f64> = counts
            .iter()
            .zip(data.labels)
            .map(|(&c, &y)| f64::from(c) * data.class_weight[usize::from(y)])
            .collect();
        // Per feature, the in-bag rows by increasing value, with their values: feature f's
        // entries are `entries[f * m..(f + 1) * m]`, and a node is one range within each.
        let m = counts.iter().filter(|&&c| c > 0).count();
        let mut entries: Vec<(u32, f32)> = Vec::with_capacity(data.n_features * m);
        for (f, order) in data.sorted.iter().enumerate() {
            let column = data.columns.column(f);
            entries
                .extend(order.iter().filter(|&&r| counts[r as usize] > 0).map(|&r| (r, column[r as usize])));
        }
        let mut scratch = Vec::with_capacity(m);
        let mut goes_left = vec![false; n];
        let mut features: Vec<usize> = (0..data.n_features).collect();

        let root = node_totals(&entries[..m], &counts, &weight, data.labels);
        let mut grown = vec![Grown::Leaf { value: 0.0, cover: 0.0 }];
        // (node, lo, hi, depth, totals)
        let mut stack = vec![(0usize, 0usize, m, 0u32, root)];
        while let Some((node, lo, hi, depth, totals)) = stack.pop() {
            let rows = hi - lo;
            let pure = totals.frauds == 0 || totals.frauds == rows;
            let leaf = Grown::Leaf {
                value: (totals.fraud_weight / totals.weight) as f32,
                cover: totals.drawn as f32,
            };
            if pure
                || rows < self.min_samples_split
                || rows < 2 * self.min_samples_leaf
                || self.max_depth.is_some_and(|d| depth >= d)
            {
                grown[node] = leaf;
                continue;
            }
            let Some(split) = best_split(
                data,
                &entries,
                m,
                lo,
                hi,
                &weight,
                &mut features,
                self.min_samples_leaf,
                &mut rng,
            ) else {
                grown[node] = leaf;
                continue;
            };
            // Mark the rows going left, then partition every feature's range stably.
            let split_range = &entries[split.feature * m + lo..split.feature * m + hi];
            for &(r, _) in &split_range[..split.left_rows] {
                goes_left[r as usize] = true;
            }
            let left_totals = node_totals(&split_range[..split.left_rows], &counts, &weight, data.labels);
            for f in 0..data.n_features {
                let range = &mut entries[f * m + lo..f * m + hi];
                scratch.clear();
                let mut write = 0;
                for k in 0..range.len() {
                    let e = range[k];
                    if goes_left[e.0 as usize] {
                        range[write] = e;
                        write += 1;
                    } else {
                        scratch.push(e);
                    }
                }
                range[write..].copy_from_slice(&scratch);
            }
            for &(r, _) in &entries[split.feature * m + lo..split.feature * m + lo + split.left_rows] {
                goes_left[r as usize] = false;
            }
            let right_totals = Totals {
                weight: totals.weight - left_totals.weight,
                fraud_weight: totals.fraud_weight - left_totals.fraud_weight,
                frauds: totals.frauds - left_totals.frauds,
                drawn: totals.drawn - left_totals.drawn,
            };
            let (l, r) = (grown.len(), grown.len() + 1);
            grown.push(Grown::Leaf { value: 0.0, cover: 0.0 });
            grown.push(Grown::Leaf { value: 0.0, cover: 0.0 });
            grown[node] = Grown::Split {
                feature: split.feature as u16,
                threshold: split.threshold,
                default_left: false,
                left: l,
                right: r,
            };
            let mid = lo + split.left_rows;
            stack.push((r, mid, hi, depth + 1, right_totals));
            stack.push((l, lo, mid, depth + 1, left_totals));
        }
        grown
    }
}

/// Keeps `int(fraud draws / ratio)` of the genuine draws in `counts` (copies counted one by one;
/// every such subset of draws equally likely, by selection sampling), or all of them when there
/// are fewer; leaves `counts` alone when it holds no fraud draw.
fn undersample_genuine(counts: &mut [u32], labels: &[bool], ratio: f64, rng: &mut Xoshiro256PlusPlus) {
    let (mut frauds, mut genuine) = (0u64, 0u64);
    for (&c, &y) in counts.iter().zip(labels) {
        if y { frauds += u64::from(c) } else { genuine += u64::from(c) }
    }
    if frauds == 0 {
        return;
    }
    let mut wanted = ((frauds as f64 / ratio) as u64).min(genuine);
    let mut left = genuine;
    for (c, &y) in counts.iter_mut().zip(labels) {
        if y || *c == 0 {
            continue;
        }
        let mut kept = 0;
        for _ in 0..*c {
            if rng.random_range(0..left) < wanted {
                kept += 1;
                wanted -= 1;
            }
            left -= 1;
        }
        *c = kept;
    }
}

struct Data<'a> {
    columns: &'a Columns,
    sorted: &'a [Vec<u32>],
    labels: &'a [bool],
    class_weight: [f64; 2],
    n_features: usize,
    max_features: usize,
}

#[derive(Clone, Copy, Debug)]
struct Totals {
    weight: f64,
    fraud_weight: f64,
    /// Distinct fraud rows.
    frauds: usize,
    /// Rows drawn, copies counted: the leaf's cover.
    drawn: u64,
}

fn node_totals(range: &[(u32, f32)], counts: &[u32], weight: &[f64], labels: &[bool]) -> Totals {
    let mut t = Totals { weight: 0.0, fraud_weight: 0.0, frauds: 0, drawn: 0 };
    for &(r, _) in range {
        let w = weight[r as usize];
        t.weight += w;
        t.drawn += u64::from(counts[r as usize]);
        if labels[r as usize] {
            t.fraud_weight += w;
            t.frauds += 1;
        }
    }
    t
}

struct Split {
    feature: usize,
    threshold: f32,
    left_rows: usize,
}

/// The best Gini split of rows `lo..hi` over up to `max_features` randomly drawn non-constant
/// features (more are drawn while the drawn ones are constant), as scikit-learn's best splitter.
#[allow(clippy::too_many_arguments)]
fn best_split(
    data: &Data<'_>,
    entries: &[(u32, f32)],
    m: usize,
    lo: usize,
    hi: usize,
    weight: &[f64],
    features: &mut [usize],
    min_leaf: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<Split> {
    let rows = hi - lo;
    let mut best: Option<(f64, Split)> = None;
    let mut visited = 0;
    for i in 0..features.len() {
        if visited >= data.max_features {
            break;
        }
        let j = rng.random_range(i..features.len());
        features.swap(i, j);
        let f = features[i];
        let range = &entries[f * m + lo..f * m + hi];
        if range[0].1 >= range[rows - 1].1 {
            continue; // constant here: does not count
        }
        visited += 1;
        let (mut total, mut total_fraud) = (0.0, 0.0);
        for &(r, _) in range {
            total += weight[r as usize];
            if data.labels[r as usize] {
                total_fraud += weight[r as usize];
            }
        }
        let (mut wl, mut fl) = (0.0, 0.0);
        for p in 0..rows - 1 {
            let (r, v) = range[p];
            wl += weight[r as usize];
            if data.labels[r as usize] {
                fl += weight[r as usize];
            }
            let next = range[p + 1].1;
            let left_rows = p + 1;
            if next <= v || left_rows < min_leaf || rows - left_rows < min_leaf {
                continue;
            }
            let (wr, fr) = (total - wl, total_fraud - fl);
            // Maximising sum over children of (sum of squared class weights) / weight is
            // maximising the decrease of weighted Gini impurity.
            let proxy = (fl * fl + (wl - fl) * (wl - fl)) / wl + (fr * fr + (wr - fr) * (wr - fr)) / wr;
            if best.as_ref().is_none_or(|(b, _)| proxy > *b) {
                best = Some((proxy, Split { feature: f, threshold: split_between(v, next), left_rows }));
            }
        }
    }
    best.map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exporter::NoProgress;

    #[test]
    fn max_features_follows_scikit_learn() {
        assert_eq!(MaxFeatures::Sqrt.count(15), 3);
        assert_eq!(MaxFeatures::Log2.count(15), 3);
        assert_eq!(MaxFeatures::Share(0.01).count(15), 1);
        assert_eq!(MaxFeatures::Count(99).count(15), 15);
    }

    #[test]
    fn a_deep_forest_fits_its_training_rows_and_scores_are_probabilities() {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..400u32 {
            let (a, b) = (f64::from(i % 20), f64::from(i / 20));
            features.extend([a, b, f64::from(i % 3)]);
            labels.push((a - 10.0).abs() + (b - 10.0).abs() < 5.0);
        }
        let train = Samples::new(&features, 3, &labels).unwrap();
        let config = ForestConfig {
            trees: 20,
            bootstrap: false,
            max_features: MaxFeatures::All,
            ..Default::default()
        };
        let model = config.fit(train, &NoProgress).unwrap();
        for (i, &y) in labels.iter().enumerate() {
            let s = model.score(train.row(i));
            assert_eq!(s, if y { 1.0 } else { 0.0 }, "row {i}: no bootstrap, all features: pure leaves");
        }
        let bagged = ForestConfig { trees: 20, ..Default::default() }.fit(train, &NoProgress).unwrap();
        assert!((0..labels.len()).all(|i| (0.0..=1.0).contains(&bagged.score(train.row(i)))));
        assert_eq!(Model::decode(&bagged.encode()), Ok(bagged.clone()), "the scorer accepts the layout");
    }
}
