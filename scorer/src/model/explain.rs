//! Per-feature attribution for tree ensembles, both weighted by the leaves' covers:
//!
//! * [`TreeExplainer::shap`]: exact path-dependent TreeSHAP (Lundberg, Erion and Lee, 2018,
//!   algorithm 2): the Shapley values of `v(S) = E[f(x) | x_S]`, where the expectation over the
//!   features outside `S` follows the training data's share of each branch (the covers). Cost
//!   O(trees x leaves x depth^2).
//! * [`TreeExplainer::path`]: the path attribution (Saabas): along the path `x` takes, each split
//!   adds `E[child] - E[node]` to its feature. It also sums to `f(x) - E[f]`, costs no more than a
//!   second walk of the trees, and is the scorer's default for tree reasons.
//!
//! Contributions are to the margin (the sum of leaves) for gradient boosting, and to the
//! averaged probability for forests.

use super::trees::{LEAF, TreeEnsemble, TreeOutput};
use alloc::vec::Vec;

/// Deepest tree an explainer takes: TreeSHAP's scratch grows with the square of the depth.
pub const MAX_EXPLAIN_DEPTH: usize = 64;

/// One entry of TreeSHAP's path of unique features.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct PathElement {
    feature: i32,
    zero_fraction: f64,
    one_fraction: f64,
    weight: f64,
}

/// The covers, expected values and scratch space that attribution needs, built once per model.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeExplainer {
    /// Cover of every node (a split's is the sum of its leaves').
    cover: Vec<f64>,
    /// Cover-weighted mean leaf value under every node.
    expected: Vec<f64>,
    /// Deepest leaf over all trees (root = 0).
    max_depth: usize,
    /// TreeSHAP's paths, one slice per recursion level.
    scratch: Vec<PathElement>,
}

impl TreeExplainer {
    /// The explainer of `trees`, or `None` when a leaf has no cover (see
    /// [`TreeEnsemble::has_covers`]) or a tree is deeper than [`MAX_EXPLAIN_DEPTH`].
    pub fn new(trees: &TreeEnsemble) -> Option<TreeExplainer> {
        if !trees.has_covers() {
            return None;
        }
        let n = trees.nodes.len();
        let mut cover = alloc::vec![0.0f64; n];
        let mut weighted = alloc::vec![0.0f64; n];
        // Children come after their parents: a backward pass sums leaves into their ancestors.
        for i in (0..n).rev() {
            let node = &trees.nodes[i];
            if node.is_leaf() {
                cover[i] = f64::from(node.leaf_cover());
                weighted[i] = cover[i] * f64::from(node.value);
            } else {
                let (l, r) = (node.left as usize, node.right as usize);
                cover[i] = cover[l] + cover[r];
                weighted[i] = weighted[l] + weighted[r];
            }
        }
        let expected = cover.iter().zip(&weighted).map(|(c, w)| w / c).collect();
        let mut depth = alloc::vec![0usize; n];
        for (i, node) in trees.nodes.iter().enumerate() {
            if !node.is_leaf() {
                depth[node.left as usize] = depth[i] + 1;
                depth[node.right as usize] = depth[i] + 1;
            }
        }
        let max_depth = depth.iter().copied().max().unwrap_or(0);
        if max_depth > MAX_EXPLAIN_DEPTH {
            return None;
        }
        let scratch = alloc::vec![PathElement::default(); (max_depth + 2) * (max_depth + 3) / 2];
        Some(TreeExplainer { cover, expected, max_depth, scratch })
    }

    /// The expected output `E[f]` over the training data, in the contributions' units.
    pub fn expected_value(&self, trees: &TreeEnsemble) -> f64 {
        let sum: f64 = trees.roots.iter().map(|&r| self.expected[r as usize]).sum();
        match trees.output {
            TreeOutput::Logistic => trees.base_margin + sum,
            TreeOutput::Average => trees.base_margin + sum / trees.roots.len().max(1) as f64,
        }
    }

    /// Adds the path attribution of `features` to `phi` (one slot per feature): walks every tree
    /// from its root the way `features` go and adds `E[child] - E[node]` of each split passed to
    /// the split's feature.
    pub fn path(&self, trees: &TreeEnsemble, features: &[f64], phi: &mut [f64]) {
        let scale = output_scale(trees);
        for &root in &trees.roots {
            let mut at = root as usize;
            loop {
                let node = &trees.nodes[at];
                if node.is_leaf() {
                    break;
                }
                let next = if node.goes_left(features) { node.left } else { node.right } as usize;
                if let Some(p) = phi.get_mut(usize::from(node.feature)) {
                    *p += (self.expected[next] - self.expected[at]) * scale;
                }
                at = next;
            }
        }
    }

    /// Adds the exact path-dependent TreeSHAP values of `features` to `phi` (one slot per feature).
    pub fn shap(&mut self, trees: &TreeEnsemble, features: &[f64], phi: &mut [f64]) {
        let scale = output_scale(trees);
        let mut scratch = core::mem::take(&mut self.scratch);
        for &root in &trees.roots {
            let mut walk = Walk { trees, explainer: self, features, phi, scale };
            walk.recurse(root as usize, &mut scratch, 0, 1.0, 1.0, -1);
        }
        self.scratch = scratch;
    }

    /// The deepest leaf's depth (the root has depth 0).
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }
}

/// The path attribution's terms laid out like [`super::CompiledTrees`]: per tree and position of
/// its complete tree, the split's feature and the `E[child] - E[node]` each way, so that the terms
/// along the paths the compiled walk took are read by position, with no second walk of the trees.
#[derive(Clone, Debug, PartialEq)]
pub struct PathTable {
    depth: u32,
    /// Per tree, `2^depth - 1` positions: the split's feature, or [`LEAF`] where no split stands
    /// (below a leaf that the layout pushed down).
    features: Vec<u16>,
    /// Per position, the term when the path goes right (`[0]`) and left (`[1]`).
    terms: Vec<[f64; 2]>,
}

impl PathTable {
    /// The table of `trees` laid out to `depth` (the compiled trees' [`super::CompiledTrees::depth`]).
    pub fn new(trees: &TreeEnsemble, explainer: &TreeExplainer, depth: u32) -> PathTable {
        let internal = (1usize << depth) - 1;
        let positions = internal * trees.roots.len();
        let (mut features, mut terms) = (alloc::vec![LEAF; positions], alloc::vec![[0.0; 2]; positions]);
        let scale = output_scale(trees);
        let e = &explainer.expected;
        super::compiled::expand(trees, depth, |t, pos, here| {
            let node = &trees.nodes[here];
            if pos < internal && !node.is_leaf() {
                let i = t * internal + pos;
                features[i] = node.feature;
                terms[i] =
                    [(e[node.right as usize] - e[here]) * scale, (e[node.left as usize] - e[here]) * scale];
            }
        });
        PathTable { depth, features, terms }
    }

    /// Adds the path attribution to `phi` along `leaves`, each tree's leaf as
    /// [`super::CompiledTrees::leaf_positions`] gives it: the same additions in the same order
    /// as [`TreeExplainer::path`], so the same bits.
    pub fn add(&self, leaves: &[u32], phi: &mut [f64]) {
        let internal = (1usize << self.depth) - 1;
        for (t, &leaf) in leaves.iter().enumerate() {
            // In the 1-based position `leaf + 1`, bit `depth - 1 - level` is the way taken at
            // `level`: 1 for left (the left child of `p` is `2p + 2`).
            let way = leaf as usize + 1;
            let mut pos = 0;
            for level in 0..self.depth {
                let left = (way >> (self.depth - 1 - level)) & 1;
                let i = t * internal + pos;
                if let (Some(&feature), Some(term)) = (self.features.get(i), self.terms.get(i))
                    && let Some(p) = phi.get_mut(usize::from(feature))
                {
                    *p += term[left];
                }
                pos = 2 * pos + 1 + left;
            }
        }
    }
}

fn output_scale(trees: &TreeEnsemble) -> f64 {
    match trees.output {
        TreeOutput::Logistic => 1.0,
        TreeOutput::Average => 1.0 / trees.roots.len().max(1) as f64,
    }
}

struct Walk<'a, 'p> {
    trees: &'a TreeEnsemble,
    explainer: &'a TreeExplainer,
    features: &'a [f64],
    phi: &'p mut [f64],
    scale: f64,
}

impl Walk<'_, '_> {
    /// Algorithm 2's RECURSE: `path` holds the parent's path in its first `depth` entries (this
    /// level's starts right after them), extended here by the split that led to `node`.
    fn recurse(
        &mut self,
        node: usize,
        path: &mut [PathElement],
        depth: usize,
        zero_fraction: f64,
        one_fraction: f64,
        feature: i32,
    ) {
        // This level's path: a copy of the parent's, then extended.
        let (parent, rest) = path.split_at_mut(depth);
        rest[..depth].copy_from_slice(parent);
        let path = rest;
        extend(path, depth, zero_fraction, one_fraction, feature);
        let n = &self.trees.nodes[node];
        if n.is_leaf() {
            let value = f64::from(n.value) * self.scale;
            for i in 1..=depth {
                let w = unwound_sum(path, depth, i);
                let e = path[i];
                if let Some(p) = self.phi.get_mut(e.feature as usize) {
                    *p += w * (e.one_fraction - e.zero_fraction) * value;
                }
            }
            return;
        }
        let (hot, cold) = if n.goes_left(self.features) { (n.left, n.right) } else { (n.right, n.left) };
        let (hot, cold) = (hot as usize, cold as usize);
        let cover = &self.explainer.cover;
        let (hot_zero, cold_zero) = (cover[hot] / cover[node], cover[cold] / cover[node]);
        let split = i32::from(n.feature);
        let (mut in_zero, mut in_one) = (1.0, 1.0);
        let mut depth = depth;
        // A feature already on the path: undo its earlier split and fold it into this one.
        if let Some(k) = (1..=depth).find(|&k| path[k].feature == split) {
            in_zero = path[k].zero_fraction;
            in_one = path[k].one_fraction;
            unwind(path, depth, k);
            depth -= 1;
        }
        self.recurse(hot, path, depth + 1, hot_zero * in_zero, in_one, split);
        self.recurse(cold, path, depth + 1, cold_zero * in_zero, 0.0, split);
    }
}

fn extend(path: &mut [PathElement], depth: usize, zero_fraction: f64, one_fraction: f64, feature: i32) {
    path[depth] =
        PathElement { feature, zero_fraction, one_fraction, weight: if depth == 0 { 1.0 } else { 0.0 } };
    let d = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one_fraction * path[i].weight * (i + 1) as f64 / d;
        path[i].weight = zero_fraction * path[i].weight * (depth - i) as f64 / d;
    }
}

fn unwind(path: &mut [PathElement], depth: usize, k: usize) {
    let (one, zero) = (path[k].one_fraction, path[k].zero_fraction);
    let d = (depth + 1) as f64;
    let mut next_one = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].weight;
            path[i].weight = next_one * d / ((i + 1) as f64 * one);
            next_one = tmp - path[i].weight * zero * (depth - i) as f64 / d;
        } else {
            path[i].weight = path[i].weight * d / (zero * (depth - i) as f64);
        }
    }
    for i in k..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

fn unwound_sum(path: &[PathElement], depth: usize, k: usize) -> f64 {
    let (one, zero) = (path[k].one_fraction, path[k].zero_fraction);
    let d = (depth + 1) as f64;
    let mut next_one = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = next_one * d / ((i + 1) as f64 * one);
            total += tmp;
            next_one = path[i].weight - tmp * zero * ((depth - i) as f64 / d);
        } else if zero != 0.0 {
            total += path[i].weight / zero / ((depth - i) as f64 / d);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Node;
    use crate::model::compiled::tests::random_trees;
    use alloc::vec;

    /// `E[f(x) | x_S]` for one tree, by its definition: follow `x` at splits on features in `S`,
    /// average the two children by cover elsewhere.
    fn conditional(t: &TreeEnsemble, e: &TreeExplainer, node: usize, x: &[f64], s: u32) -> f64 {
        let n = &t.nodes[node];
        if n.is_leaf() {
            return f64::from(n.value);
        }
        let (l, r) = (n.left as usize, n.right as usize);
        if s & (1 << n.feature) != 0 {
            conditional(t, e, if n.goes_left(x) { l } else { r }, x, s)
        } else {
            (e.cover[l] * conditional(t, e, l, x, s) + e.cover[r] * conditional(t, e, r, x, s))
                / e.cover[node]
        }
    }

    /// Shapley values by enumerating every coalition of the `m` features.
    fn brute_force(t: &TreeEnsemble, e: &TreeExplainer, x: &[f64], m: usize) -> Vec<f64> {
        let v = |s: u32| -> f64 { t.roots.iter().map(|&r| conditional(t, e, r as usize, x, s)).sum() };
        let fact = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
        let mut phi = vec![0.0; m];
        for (i, p) in phi.iter_mut().enumerate() {
            for s in 0u32..(1 << m) {
                if s & (1 << i) != 0 {
                    continue;
                }
                let size = s.count_ones() as usize;
                let weight = fact(size) * fact(m - size - 1) / fact(m);
                *p += weight * (v(s | (1 << i)) - v(s));
            }
        }
        phi
    }

    #[test]
    fn tree_shap_equals_brute_force_shapley_values_on_small_trees() {
        let m = 4;
        for seed in 0..40 {
            let t = random_trees(seed, 1 + seed as usize % 4, 1 + (seed % 5) as u32, m as u16);
            let mut e = TreeExplainer::new(&t).unwrap();
            for i in 0..12 {
                let x: Vec<f64> = (0..m)
                    .map(|f| {
                        if (i + f + seed as usize).is_multiple_of(9) {
                            f64::NAN
                        } else {
                            ((i * 31 + f * 17) % 100) as f64 / 10.0
                        }
                    })
                    .collect();
                let mut phi = vec![0.0; m];
                e.shap(&t, &x, &mut phi);
                let want = brute_force(&t, &e, &x, m);
                for f in 0..m {
                    assert!(
                        (phi[f] - want[f]).abs() < 1e-9,
                        "seed {seed} row {i} feature {f}: {phi:?} vs {want:?}"
                    );
                }
                // Local accuracy: the values sum to f(x) - E[f(x)] (in the margin).
                let total: f64 = phi.iter().sum();
                let expected = e.expected_value(&t) - t.base_margin;
                assert!((total - (t.leaf_sum(&x) - expected)).abs() < 1e-9, "seed {seed} row {i}");
            }
        }
    }

    #[test]
    fn path_attribution_sums_to_the_margin_minus_its_expectation() {
        let t = random_trees(7, 12, 6, 6);
        let e = TreeExplainer::new(&t).unwrap();
        for i in 0..50 {
            let x: Vec<f64> = (0..6).map(|f| ((i * 13 + f * 7) % 100) as f64 / 10.0).collect();
            let mut phi = vec![0.0; 6];
            e.path(&t, &x, &mut phi);
            let want = t.leaf_sum(&x) + t.base_margin - e.expected_value(&t);
            assert!((phi.iter().sum::<f64>() - want).abs() < 1e-9);
        }
    }

    #[test]
    fn the_path_table_along_the_compiled_walk_gives_the_path_attributions_bits() {
        use crate::model::{CompiledTrees, to_f32};
        let mut rows = 0;
        for seed in 0..40u64 {
            // Depths 1-10 with early leaves (pushed down in the compiled layout), NaN now and then.
            let t = random_trees(seed, 1 + seed as usize * 3, 1 + (seed % 10) as u32, 6);
            let (e, c) = (TreeExplainer::new(&t).unwrap(), CompiledTrees::new(&t));
            let table = PathTable::new(&t, &e, c.depth());
            let (mut xs, mut leaves) = (Vec::new(), Vec::new());
            for i in 0..100usize {
                let x: Vec<f64> = (0..6)
                    .map(
                        |f| if (i + f) % 13 == 0 { f64::NAN } else { ((i * 13 + f * 7) % 100) as f64 / 10.0 },
                    )
                    .collect();
                to_f32(&x, &mut xs);
                assert!(c.leaf_positions(&xs, &mut leaves));
                assert_eq!(leaves.len(), t.roots.len());
                let (mut want, mut got) = (vec![0.0; 6], vec![0.0; 6]);
                e.path(&t, &x, &mut want);
                table.add(&leaves, &mut got);
                let bits = |v: &[f64]| v.iter().map(|p| p.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "seed {seed} row {i}");
                rows += 1;
            }
        }
        assert_eq!(rows, 4_000);
    }

    #[test]
    fn a_stump_gives_its_whole_effect_to_its_feature() {
        // x0 < 1 ? -1 (3 rows) : +1 (1 row): E = -0.5; x0 = 5 gives phi0 = 1 - (-0.5) = 1.5.
        let t = TreeEnsemble::stump(2, 1.0, true, Node::leaf(-1.0, 3.0), Node::leaf(1.0, 1.0));
        let mut e = TreeExplainer::new(&t).unwrap();
        let mut phi = [0.0; 2];
        e.shap(&t, &[5.0, 0.0], &mut phi);
        assert_eq!(phi, [1.5, 0.0]);
        let mut phi = [0.0; 2];
        e.path(&t, &[5.0, 0.0], &mut phi);
        assert_eq!(phi, [1.5, 0.0]);
    }

    #[test]
    fn trees_without_covers_have_no_explainer() {
        let mut t = random_trees(1, 3, 3, 3);
        t.nodes.iter_mut().filter(|n| n.is_leaf()).for_each(|n| n.left = 0);
        assert!(TreeExplainer::new(&t).is_none());
    }
}
