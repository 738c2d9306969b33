//! Tree ensembles as one flat array of 16-byte nodes: gradient-boosted trees (leaf values summed
//! onto a base margin, then the logistic function) and random forests (leaf probabilities
//! averaged). A node sends `x` left when `x < threshold` (as f32, XGBoost's rule; `<=` rules are
//! converted by moving the threshold up one f32 step) and a missing value (NaN) its default way.
//!
//! A leaf may carry its *cover* (the training rows, or hessian sum, that reached it) in its
//! otherwise unused `left` field, as f32 bits (0 = unknown). Covers are what TreeSHAP and the
//! path attribution weigh subtrees by (`super::explain`); a split's cover is the sum of its leaves'.

use alloc::vec::Vec;

/// Marks a leaf in [`Node::feature`].
pub const LEAF: u16 = u16::MAX;

/// One node of a tree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    /// Feature index, or [`LEAF`].
    pub feature: u16,
    /// True when a missing value goes left.
    pub default_left: bool,
    /// Split threshold (internal node) or leaf value (leaf).
    pub value: f32,
    /// Index of the left child in the ensemble's node array.
    pub left: u32,
    /// Index of the right child.
    pub right: u32,
}

impl Node {
    /// A leaf of value `value` reached by `cover` training rows (or hessian sum; 0 = unknown).
    pub fn leaf(value: f32, cover: f32) -> Node {
        Node { feature: LEAF, default_left: false, value, left: cover.to_bits(), right: 0 }
    }

    /// Whether a split sends `features` left (XGBoost's rule; NaN or absent goes the default way).
    pub fn goes_left(&self, features: &[f64]) -> bool {
        let x = features.get(usize::from(self.feature)).copied().unwrap_or(f64::NAN) as f32;
        if x.is_nan() { self.default_left } else { x < self.value }
    }

    /// True for a leaf.
    pub fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }

    /// A leaf's cover (0 when unknown, or for a split).
    pub fn leaf_cover(&self) -> f32 {
        if self.is_leaf() { f32::from_bits(self.left) } else { 0.0 }
    }
}

/// How leaf values become a score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeOutput {
    /// Gradient boosting: `sigmoid(base_margin + sum of leaves)`.
    Logistic,
    /// Random forest: `base_margin + mean of leaves` (leaves hold probabilities; base is 0).
    Average,
}

/// A tree ensemble.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeEnsemble {
    /// Number of features the trees read.
    pub n_features: usize,
    /// All nodes of all trees.
    pub nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    pub roots: Vec<u32>,
    /// Added to the leaf sum (GBDT: the base score as a margin).
    pub base_margin: f64,
    /// How leaves combine.
    pub output: TreeOutput,
}

impl TreeEnsemble {
    /// The leaf reached in the tree rooted at `root` (checked acyclic and in bounds on load).
    pub fn leaf(&self, root: u32, features: &[f64]) -> &Node {
        &self.nodes[self.leaf_index(root, features)]
    }

    /// The index in `nodes` of the leaf reached in the tree rooted at `root`.
    pub fn leaf_index(&self, root: u32, features: &[f64]) -> usize {
        let mut at = root as usize;
        loop {
            let node = &self.nodes[at];
            if node.feature == LEAF {
                return at;
            }
            at = if node.goes_left(features) { node.left } else { node.right } as usize;
        }
    }

    /// Sum of the leaf values over all trees, in tree order, in f64.
    pub fn leaf_sum(&self, features: &[f64]) -> f64 {
        let mut sum = 0.0f64;
        for &root in &self.roots {
            sum += f64::from(self.leaf(root, features).value);
        }
        sum
    }

    /// True when every leaf carries a cover above 0, as attribution needs.
    pub fn has_covers(&self) -> bool {
        self.nodes.iter().filter(|n| n.is_leaf()).all(|n| n.leaf_cover() > 0.0)
    }

    /// Sets every leaf's cover to the number of `rows` that reach it (the trainers' rows; what
    /// scikit-learn calls `n_node_samples`). Leaves no row reaches get a cover of 1, so that a
    /// cover is never 0.
    pub fn set_leaf_covers<'r>(&mut self, rows: impl IntoIterator<Item = &'r [f64]>) {
        let mut counts = alloc::vec![0u32; self.nodes.len()];
        for row in rows {
            for &root in &self.roots {
                let at = self.leaf_index(root, row);
                counts[at] = counts[at].saturating_add(1);
            }
        }
        for (node, count) in self.nodes.iter_mut().zip(counts) {
            if node.is_leaf() {
                node.left = (count.max(1) as f32).to_bits();
            }
        }
    }

    /// The score in [0, 1].
    pub fn score(&self, features: &[f64]) -> f64 {
        let sum = self.leaf_sum(features);
        match self.output {
            TreeOutput::Logistic => super::sigmoid(self.base_margin + sum),
            TreeOutput::Average => self.base_margin + sum / self.roots.len().max(1) as f64,
        }
    }
}

#[cfg(test)]
impl TreeEnsemble {
    /// The smallest ensemble, for tests: one split of feature 0 at `threshold` (missing values go
    /// left when `default_left`) over the leaves `left` and `right`.
    pub(crate) fn stump(
        n_features: usize,
        threshold: f32,
        default_left: bool,
        left: Node,
        right: Node,
    ) -> TreeEnsemble {
        TreeEnsemble {
            n_features,
            nodes: alloc::vec![
                Node { feature: 0, default_left, value: threshold, left: 1, right: 2 },
                left,
                right
            ],
            roots: alloc::vec![0],
            base_margin: 0.0,
            output: TreeOutput::Logistic,
        }
    }
}
