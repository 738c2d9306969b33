//! Growing one regression tree on gradient pairs, level by level (XGBoost's depth-wise policy):
//! at each level, find every open node's best split by the second-order gain (in parallel over
//! features), then move the rows down. Two searches:
//!
//! * exact (XGBoost's `colmaker`): every feature presorted once; each level scans each feature's
//!   whole sorted column and tries every boundary between two distinct f32 values. The rows'
//!   gradients are gathered into each column's order once per tree, so that the scans of every
//!   level read them in sequence rather than row by row at random;
//! * histogram: rows binned once; each node keeps its rows and a gradient histogram, built from
//!   the rows for the smaller child and by subtraction from the parent for the larger one.

use crate::tree::{Columns, Grown, split_between};
use rayon::prelude::*;

/// A row outside every open node (in a finished leaf, or not sampled for this tree).
const INACTIVE: u32 = u32::MAX;
/// The bin of a missing value.
const MISSING_BIN: u16 = u16::MAX;
/// XGBoost's `kRtEps`: a split must gain more than this.
const MIN_GAIN: f64 = 1e-6;

/// Sums of gradients and hessians.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Stats {
    pub g: f64,
    pub h: f64,
}

impl Stats {
    fn add(self, o: Stats) -> Stats {
        Stats { g: self.g + o.g, h: self.h + o.h }
    }
    fn sub(self, o: Stats) -> Stats {
        Stats { g: self.g - o.g, h: self.h - o.h }
    }
}

/// The tree-shape settings growing needs.
pub(super) struct GrowParams {
    pub max_depth: u32,
    pub lambda: f64,
    pub min_child_weight: f64,
    pub gamma: f64,
    pub learning_rate: f64,
    /// Round gains and leaf weights to f32 where XGBoost 1.x does.
    pub f32_gains: bool,
}

impl GrowParams {
    /// `G^2 / (H + lambda)`.
    fn score(&self, s: Stats) -> f64 {
        let score = s.g * s.g / (s.h + self.lambda);
        if self.f32_gains { f64::from(score as f32) } else { score }
    }

    /// `score(left) + score(right) - score(parent)`; XGBoost adds and subtracts in f32.
    fn gain(&self, left: Stats, right: Stats, parent_score: f64) -> f64 {
        let (l, r) = (self.score(left), self.score(right));
        if self.f32_gains {
            f64::from((l as f32 + r as f32) - parent_score as f32)
        } else {
            l + r - parent_score
        }
    }

    /// A leaf of the rows summing to `s`: its value, and as its cover their hessian sum (what
    /// XGBoost records as `sum_hess`, and what TreeSHAP weighs XGBoost's subtrees by). A leaf no
    /// row reached (an empty row sample, or a split under `min_child_weight = 0`) gets the least
    /// positive cover, as 0 would mean "unknown" and cost the whole model its reasons.
    fn leaf(&self, s: Stats) -> Grown {
        Grown::Leaf { value: self.leaf_value(s), cover: (s.h as f32).max(f32::MIN_POSITIVE) }
    }

    /// The leaf value `-eta G / (H + lambda)` (0 under the minimum child weight, as XGBoost).
    fn leaf_value(&self, s: Stats) -> f32 {
        if s.h < self.min_child_weight || s.h <= 0.0 {
            return 0.0;
        }
        let weight = -s.g / (s.h + self.lambda);
        if self.f32_gains {
            (weight as f32) * self.learning_rate as f32
        } else {
            (weight * self.learning_rate) as f32
        }
    }
}

/// How candidate splits are enumerated, prepared once per fit.
pub(super) enum Finder {
    /// Per feature, the non-NaN entries `(row, value)` by increasing value; whether NaNs exist.
    /// `gathered[f][k]` is the current tree's gradient pair of the row of entry `k` of feature `f`
    /// (buffers kept from tree to tree).
    Exact { sorted: Vec<(Vec<(u32, f32)>, bool)>, gathered: Vec<Vec<Stats>> },
    /// Every row's bin of every feature.
    Histogram(Bins),
}

/// Binned features for the histogram search.
pub(super) struct Bins {
    n_features: usize,
    /// Per feature, the thresholds between its bins: bin `b` holds `cuts[b-1] <= x < cuts[b]`.
    cuts: Vec<Vec<f32>>,
    /// Feature `f`'s bins are entries `offsets[f]..offsets[f + 1]` of a node histogram.
    offsets: Vec<usize>,
    /// Row-major: `rows[i * n_features + f]` is row `i`'s bin of feature `f` ([`MISSING_BIN`]).
    rows: Vec<u16>,
    /// Per feature, whether any value is missing.
    missing: Vec<bool>,
}

impl Finder {
    /// Builds the exact finder: every feature sorted once.
    pub fn exact(columns: &Columns, n_features: usize) -> Finder {
        let sorted: Vec<_> = (0..n_features).into_par_iter().map(|f| columns.sorted(f)).collect();
        let gathered = sorted.iter().map(|(entries, _)| Vec::with_capacity(entries.len())).collect();
        Finder::Exact { sorted, gathered }
    }

    /// Builds the histogram finder: at most `max_bins` bins per feature at quantiles of the
    /// distinct values (each distinct value its own bin when there are few enough, which makes
    /// the histogram search partition rows as the exact one does).
    pub fn histogram(columns: &Columns, n_features: usize, max_bins: usize) -> Finder {
        let per_feature: Vec<(Vec<f32>, bool)> = (0..n_features)
            .into_par_iter()
            .map(|f| {
                let (sorted, missing) = columns.sorted(f);
                (quantile_cuts(&sorted, max_bins), missing)
            })
            .collect();
        let mut offsets = vec![0];
        for (cuts, _) in &per_feature {
            offsets.push(offsets[offsets.len() - 1] + cuts.len() + 1);
        }
        let n = columns.rows;
        let mut rows = vec![0u16; n * n_features];
        rows.par_chunks_mut(n_features.max(1)).enumerate().for_each(|(i, row)| {
            for (f, bin) in row.iter_mut().enumerate() {
                let x = columns.values[f * n + i];
                let cuts = &per_feature[f].0;
                *bin = if x.is_nan() { MISSING_BIN } else { cuts.partition_point(|&c| c <= x) as u16 };
            }
        });
        let missing = per_feature.iter().map(|(_, m)| *m).collect();
        let cuts = per_feature.into_iter().map(|(c, _)| c).collect();
        Finder::Histogram(Bins { n_features, cuts, offsets, rows, missing })
    }
}

/// The best split of one open node on one feature.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    gain: f64,
    feature: usize,
    threshold: f32,
    /// Histogram search: rows with a bin below this go left (the same rows as `x < threshold`).
    bin: u16,
    default_left: bool,
    left: Stats,
    right: Stats,
}

impl Candidate {
    /// Whether a row with value `x` goes left.
    fn goes_left(&self, x: f32) -> bool {
        if x.is_nan() { self.default_left } else { x < self.threshold }
    }
}

/// An open node of the current level.
struct Open {
    /// Its index in the grown tree.
    node: usize,
    stats: Stats,
    /// Which features it may split on.
    features: Vec<bool>,
}

/// Tracks one node's best candidate while a feature is scanned.
struct Best<'a> {
    params: &'a GrowParams,
    node: Stats,
    parent_score: f64,
    best: Option<Candidate>,
}

impl Best<'_> {
    fn new<'a>(params: &'a GrowParams, node: Stats) -> Best<'a> {
        Best { params, node, parent_score: params.score(node), best: None }
    }

    fn consider(
        &mut self,
        feature: usize,
        threshold: f32,
        bin: u16,
        default_left: bool,
        left: Stats,
        right: Stats,
    ) {
        let mcw = self.params.min_child_weight;
        if left.h < mcw || right.h < mcw {
            return;
        }
        let gain = self.params.gain(left, right, self.parent_score);
        if self.best.is_none_or(|b| gain > b.gain) {
            self.best = Some(Candidate { gain, feature, threshold, bin, default_left, left, right });
        }
    }

    /// A boundary where `right` holds the non-missing rows `>= threshold` of a node whose
    /// non-missing rows sum to `present`: missing rows left, and (when there are any) right.
    fn boundary(
        &mut self,
        f: usize,
        threshold: f32,
        bin: u16,
        right: Stats,
        present: Stats,
        any_missing: bool,
    ) {
        self.consider(f, threshold, bin, true, self.node.sub(right), right);
        if any_missing {
            let missing = self.node.sub(present);
            self.consider(f, threshold, bin, false, present.sub(right), right.add(missing));
        }
    }
}

/// One split search's per-tree state.
trait Search: Sync {
    /// The best candidate of every open node on feature `f`.
    fn best_on_feature(
        &self,
        f: usize,
        open: &[Open],
        gpair: &[Stats],
        params: &GrowParams,
    ) -> Vec<Option<Candidate>>;

    /// Moves the rows of each open node with a split to its children (`child_slot[s]` is the
    /// next level's slot of node `s`'s left child, the right one follows) and drops the rows of
    /// nodes that stay leaves. `next` is the next level's open nodes.
    fn descend(&mut self, chosen: &[Option<Candidate>], child_slot: &[u32], next: &[Open], gpair: &[Stats]);
}

/// The exact search: each row's open node, and the presorted columns.
struct ExactSearch<'a> {
    sorted: &'a [(Vec<(u32, f32)>, bool)],
    /// The gradient pairs in each column's order ([`Finder::Exact`]'s `gathered`).
    gathered: &'a [Vec<Stats>],
    columns: &'a Columns,
    /// Each row's slot among the open nodes, or [`INACTIVE`].
    position: Vec<u32>,
}

impl Search for ExactSearch<'_> {
    fn best_on_feature(
        &self,
        f: usize,
        open: &[Open],
        _gpair: &[Stats],
        params: &GrowParams,
    ) -> Vec<Option<Candidate>> {
        let mut best: Vec<Best<'_>> = open.iter().map(|o| Best::new(params, o.stats)).collect();
        let allowed: Vec<bool> = open.iter().map(|o| o.features[f]).collect();
        let slot_of = |row: u32| {
            let s = self.position[row as usize];
            (s != INACTIVE && allowed[s as usize]).then_some(s as usize)
        };
        let (entries, any_missing) = (&self.sorted[f].0, self.sorted[f].1);
        let gathered = &self.gathered[f];
        let mut present: Vec<Stats> = open.iter().map(|o| o.stats).collect();
        if any_missing {
            present.fill(Stats::default());
            for (&(row, _), &g) in entries.iter().zip(gathered) {
                if let Some(s) = slot_of(row) {
                    present[s] = present[s].add(g);
                }
            }
        }
        // Backward, as XGBoost scans dense columns: `acc` sums the rows >= the boundary.
        let mut acc = vec![Stats::default(); open.len()];
        let mut last = vec![f32::NAN; open.len()];
        let mut highest = vec![f32::NAN; open.len()];
        for (&(row, v), &g) in entries.iter().zip(gathered).rev() {
            let Some(s) = slot_of(row) else { continue };
            if last[s].is_nan() {
                highest[s] = v;
            } else if v != last[s] {
                best[s].boundary(f, split_between(v, last[s]), 0, acc[s], present[s], any_missing);
            }
            acc[s] = acc[s].add(g);
            last[s] = v;
        }
        if any_missing {
            // Missing rows alone on one side: every present row right, or every one left.
            for (s, b) in best.iter_mut().enumerate() {
                if last[s].is_nan() {
                    continue;
                }
                let missing = b.node.sub(present[s]);
                b.consider(f, last[s], 0, true, missing, present[s]);
                let above = highest[s].next_up();
                if above.is_finite() {
                    b.consider(f, above, 0, false, present[s], missing);
                }
            }
        }
        best.into_iter().map(|b| b.best).collect()
    }

    fn descend(
        &mut self,
        chosen: &[Option<Candidate>],
        child_slot: &[u32],
        _next: &[Open],
        _gpair: &[Stats],
    ) {
        let columns = self.columns;
        let rows = columns.rows;
        self.position.par_chunks_mut(8192).enumerate().for_each(|(chunk, part)| {
            for (k, p) in part.iter_mut().enumerate() {
                if *p == INACTIVE {
                    continue;
                }
                let s = *p as usize;
                *p = match chosen[s] {
                    None => INACTIVE,
                    Some(c) => {
                        let x = columns.values[c.feature * rows + chunk * 8192 + k];
                        child_slot[s] + u32::from(!c.goes_left(x))
                    }
                };
            }
        });
    }
}

/// The histogram search: the rows of each open node, contiguous, and its histogram.
struct HistSearch<'a> {
    bins: &'a Bins,
    /// The active rows grouped by open node.
    rows: Vec<u32>,
    /// Each open node's range in `rows`.
    ranges: Vec<(usize, usize)>,
    /// Each open node's histogram: gradient sums per (feature, bin).
    hists: Vec<Vec<Stats>>,
}

impl HistSearch<'_> {
    /// The histogram of `rows`: partial histograms of fixed row chunks, summed in chunk order
    /// (so the sums do not depend on the number of threads).
    fn histogram(&self, rows: &[u32], gpair: &[Stats]) -> Vec<Stats> {
        let bins = self.bins;
        let (nf, size) = (bins.n_features, bins.offsets[bins.n_features]);
        let parts: Vec<Vec<Stats>> = rows
            .par_chunks(16_384)
            .map(|chunk| {
                let mut hist = vec![Stats::default(); size];
                for &r in chunk {
                    let g = gpair[r as usize];
                    let row_bins = &bins.rows[r as usize * nf..(r as usize + 1) * nf];
                    for (&offset, &bin) in bins.offsets.iter().zip(row_bins) {
                        if bin != MISSING_BIN {
                            let cell = &mut hist[offset + usize::from(bin)];
                            *cell = cell.add(g);
                        }
                    }
                }
                hist
            })
            .collect();
        let mut parts = parts.into_iter();
        let mut total = parts.next().unwrap_or_else(|| vec![Stats::default(); size]);
        for part in parts {
            total.iter_mut().zip(&part).for_each(|(t, p)| *t = t.add(*p));
        }
        total
    }
}

impl Search for HistSearch<'_> {
    fn best_on_feature(
        &self,
        f: usize,
        open: &[Open],
        _gpair: &[Stats],
        params: &GrowParams,
    ) -> Vec<Option<Candidate>> {
        let bins = self.bins;
        let cuts = &bins.cuts[f];
        let (start, end) = (bins.offsets[f], bins.offsets[f + 1]);
        open.iter()
            .zip(&self.hists)
            .map(|(o, hist)| {
                if !o.features[f] {
                    return None;
                }
                let h = &hist[start..end];
                let mut best = Best::new(params, o.stats);
                let present = h.iter().fold(Stats::default(), |a, &b| a.add(b));
                let mut acc = Stats::default();
                let mut seen_above = false;
                for bin in (1..h.len()).rev() {
                    acc = acc.add(h[bin]);
                    seen_above |= h[bin] != Stats::default();
                    if seen_above {
                        best.boundary(f, cuts[bin - 1], bin as u16, acc, present, bins.missing[f]);
                    }
                }
                best.best
            })
            .collect()
    }

    fn descend(&mut self, chosen: &[Option<Candidate>], child_slot: &[u32], next: &[Open], gpair: &[Stats]) {
        let bins = self.bins;
        let nf = bins.n_features;
        let mut rows = Vec::with_capacity(self.rows.len());
        let mut ranges = vec![(0, 0); next.len()];
        // (child built from its rows, its sibling, their parent): the smaller child of each
        // pair is built, the larger one is the parent's histogram minus the smaller one's.
        let mut built: Vec<(usize, usize, usize)> = Vec::new();
        for (s, c) in chosen.iter().enumerate() {
            let Some(c) = c else { continue };
            let (lo, hi) = self.ranges[s];
            let start = rows.len();
            let goes_left = |r: u32| {
                let bin = bins.rows[r as usize * nf + c.feature];
                if bin == MISSING_BIN { c.default_left } else { bin < c.bin }
            };
            rows.extend(self.rows[lo..hi].iter().copied().filter(|&r| goes_left(r)));
            let mid = rows.len();
            rows.extend(self.rows[lo..hi].iter().copied().filter(|&r| !goes_left(r)));
            let l = child_slot[s] as usize;
            ranges[l] = (start, mid);
            ranges[l + 1] = (mid, rows.len());
            built.push(if mid - start <= rows.len() - mid { (l, l + 1, s) } else { (l + 1, l, s) });
        }
        self.rows = rows;
        self.ranges = ranges;
        let fresh: Vec<Vec<Stats>> = built
            .par_iter()
            .map(|&(child, _, _)| {
                self.histogram(&self.rows[self.ranges[child].0..self.ranges[child].1], gpair)
            })
            .collect();
        let mut hists = vec![Vec::new(); next.len()];
        for ((child, sibling, parent), hist) in built.into_iter().zip(fresh) {
            hists[sibling] = self.hists[parent].iter().zip(&hist).map(|(p, c)| p.sub(*c)).collect();
            hists[child] = hist;
        }
        self.hists = hists;
    }
}

/// Cut points between the distinct values of `sorted` (by increasing value) making at most
/// `max_bins` bins of about equal row counts.
fn quantile_cuts(sorted: &[(u32, f32)], max_bins: usize) -> Vec<f32> {
    let mut distinct: Vec<(f32, usize)> = Vec::new();
    for &(_, v) in sorted {
        match distinct.last_mut() {
            Some((last, count)) if *last == v => *count += 1,
            _ => distinct.push((v, 1)),
        }
    }
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| split_between(w[0].0, w[1].0)).collect();
    }
    let n = sorted.len();
    let mut cuts = Vec::with_capacity(max_bins);
    let mut cumulative = 0;
    let mut next_bin = 1;
    for w in distinct.windows(2) {
        cumulative += w[0].1;
        // Close a bin once it reaches its share of the rows.
        if cumulative * max_bins >= next_bin * n {
            cuts.push(split_between(w[0].0, w[1].0));
            while next_bin * n <= cumulative * max_bins {
                next_bin += 1;
            }
            if cuts.len() + 1 >= max_bins {
                break;
            }
        }
    }
    cuts
}

/// Grows one tree on the rows `sample` (indices into the training rows). `level_features`
/// draws the features of a level from the tree's, `node_features` those of a node from its
/// level's.
#[allow(clippy::too_many_arguments)]
pub(super) fn grow(
    finder: &mut Finder,
    columns: &Columns,
    gpair: &[Stats],
    sample: &[u32],
    params: &GrowParams,
    tree_features: &[bool],
    level_features: &mut dyn FnMut(&[bool]) -> Vec<bool>,
    node_features: &mut dyn FnMut(&[bool]) -> Vec<bool>,
) -> Vec<Grown> {
    let root_stats = sample.iter().fold(Stats::default(), |acc, &r| acc.add(gpair[r as usize]));
    match finder {
        Finder::Exact { sorted, gathered } => {
            let mut position = vec![INACTIVE; columns.rows];
            sample.iter().for_each(|&r| position[r as usize] = 0);
            gathered.par_iter_mut().zip(&*sorted).zip(tree_features).for_each(
                |((out, (entries, _)), &on)| {
                    out.clear();
                    if on {
                        out.extend(entries.iter().map(|&(row, _)| gpair[row as usize]));
                    }
                },
            );
            let mut search = ExactSearch { sorted, gathered, columns, position };
            grow_with(&mut search, root_stats, gpair, params, tree_features, level_features, node_features)
        }
        Finder::Histogram(bins) => {
            let mut search =
                HistSearch { bins, rows: sample.to_vec(), ranges: vec![(0, sample.len())], hists: vec![] };
            search.hists = vec![search.histogram(sample, gpair)];
            grow_with(&mut search, root_stats, gpair, params, tree_features, level_features, node_features)
        }
    }
}

fn grow_with(
    search: &mut dyn Search,
    root_stats: Stats,
    gpair: &[Stats],
    params: &GrowParams,
    tree_features: &[bool],
    level_features: &mut dyn FnMut(&[bool]) -> Vec<bool>,
    node_features: &mut dyn FnMut(&[bool]) -> Vec<bool>,
) -> Vec<Grown> {
    let n_features = tree_features.len();
    // The grown tree with each node's stats and split gain, for pruning by gamma afterwards.
    let mut grown = vec![params.leaf(root_stats)];
    let mut stats = vec![root_stats];
    let mut gains = vec![0.0f64];
    let level0 = level_features(tree_features);
    let mut open = vec![Open { node: 0, stats: root_stats, features: node_features(&level0) }];
    for depth in 0..params.max_depth {
        if open.is_empty() {
            break;
        }
        let searching = &*search;
        let per_feature: Vec<Vec<Option<Candidate>>> = (0..n_features)
            .into_par_iter()
            .map(|f| {
                if open.iter().any(|o| o.features[f]) {
                    searching.best_on_feature(f, &open, gpair, params)
                } else {
                    Vec::new()
                }
            })
            .collect();
        // Per node, the best over features; on equal gain the lower feature wins (XGBoost).
        let mut chosen: Vec<Option<Candidate>> = vec![None; open.len()];
        for candidates in &per_feature {
            for (c, cand) in chosen.iter_mut().zip(candidates) {
                if let Some(cand) = cand
                    && c.is_none_or(|b| cand.gain > b.gain)
                {
                    *c = Some(*cand);
                }
            }
        }
        chosen.iter_mut().for_each(|c| *c = c.filter(|c| c.gain > MIN_GAIN));
        let level = level_features(tree_features);
        let mut next = Vec::new();
        // Slot of each open node's left child in `next` (the right one follows it).
        let mut child_slot = vec![INACTIVE; open.len()];
        for (s, o) in open.iter().enumerate() {
            let Some(c) = chosen[s] else { continue };
            let (l, r) = (grown.len(), grown.len() + 1);
            grown[o.node] = Grown::Split {
                feature: c.feature as u16,
                threshold: c.threshold,
                default_left: c.default_left,
                left: l,
                right: r,
            };
            gains[o.node] = c.gain;
            for child_stats in [c.left, c.right] {
                grown.push(params.leaf(child_stats));
                stats.push(child_stats);
                gains.push(0.0);
            }
            child_slot[s] = next.len() as u32;
            next.push(Open { node: l, stats: c.left, features: node_features(&level) });
            next.push(Open { node: r, stats: c.right, features: node_features(&level) });
        }
        if depth + 1 < params.max_depth && !next.is_empty() {
            search.descend(&chosen, &child_slot, &next, gpair);
        }
        open = next;
    }
    prune(&mut grown, &stats, &gains, params);
    grown
}

/// XGBoost's pruner: bottom up, a split whose two children are leaves and whose gain is below
/// `gamma` becomes a leaf. Children come after their parents, so one backward pass suffices;
/// pruned subtrees stay in the vector, unreachable.
fn prune(grown: &mut [Grown], stats: &[Stats], gains: &[f64], params: &GrowParams) {
    if params.gamma <= 0.0 {
        return;
    }
    for p in (0..grown.len()).rev() {
        if let Grown::Split { left, right, .. } = grown[p]
            && matches!(grown[left], Grown::Leaf { .. })
            && matches!(grown[right], Grown::Leaf { .. })
            && gains[p] < params.gamma
        {
            grown[p] = params.leaf(stats[p]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_one_bin_each() {
        let sorted: Vec<(u32, f32)> =
            [1.0, 1.0, 2.0, 3.0].iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
        assert_eq!(quantile_cuts(&sorted, 256), [1.5, 2.5]);
    }

    #[test]
    fn many_distinct_values_get_at_most_max_bins() {
        let sorted: Vec<(u32, f32)> = (0..1000).map(|i| (i, i as f32)).collect();
        let cuts = quantile_cuts(&sorted, 10);
        assert_eq!(cuts.len(), 9, "{cuts:?}");
        assert!(cuts.windows(2).all(|w| w[0] < w[1]));
        assert!((cuts[4] - 500.0).abs() <= 1.0, "{cuts:?}");
    }
}
