//! Tree ensembles as one flat array of 16-byte nodes: gradient-boosted trees (leaf values summed
//! onto a base margin, then the logistic function) and random forests (leaf probabilities
//! averaged). A node sends `x` left when `x < threshold` (as f32, XGBoost's rule; `<=` rules are
//! converted by moving the threshold up one f32 step) and a missing value (NaN) its default way.

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
        let mut node = &self.nodes[root as usize];
        while node.feature != LEAF {
            let x = features.get(usize::from(node.feature)).copied().unwrap_or(f64::NAN) as f32;
            let left = if x.is_nan() { node.default_left } else { x < node.value };
            node = &self.nodes[if left { node.left } else { node.right } as usize];
        }
        node
    }

    /// Sum of the leaf values over all trees, in tree order, in f64.
    pub fn leaf_sum(&self, features: &[f64]) -> f64 {
        let mut sum = 0.0f64;
        for &root in &self.roots {
            sum += f64::from(self.leaf(root, features).value);
        }
        sum
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
