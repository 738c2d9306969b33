//! What the tree trainers share: the training matrix as f32 columns (the precision the scorer
//! compares in), split thresholds between two f32 values under the `x < t` rule, and a grown
//! tree laid out into the scorer's flat node array.

use crate::train::{Samples, TrainError};
use scorer::model::{LEAF as LEAF_FEATURE, Node};

/// The training features column by column as f32: `values[f * rows + i]` is row `i`, feature `f`.
pub(crate) struct Columns {
    pub rows: usize,
    pub values: Vec<f32>,
}

impl Columns {
    pub fn new(samples: Samples<'_>) -> Result<Columns, TrainError> {
        let nf = samples.n_features();
        if nf >= usize::from(LEAF_FEATURE) {
            return Err(TrainError::TooManyFeatures(nf));
        }
        let rows = samples.len();
        if u32::try_from(rows).is_err() {
            return Err(TrainError::TooManyRows(rows));
        }
        let mut values = vec![0.0f32; rows * nf];
        for (i, row) in samples.features().chunks_exact(nf).enumerate() {
            for (f, &x) in row.iter().enumerate() {
                values[f * rows + i] = x as f32;
            }
        }
        Ok(Columns { rows, values })
    }

    /// Feature `f` of every row.
    pub fn column(&self, f: usize) -> &[f32] {
        &self.values[f * self.rows..(f + 1) * self.rows]
    }

    /// Row indices of the non-NaN values of feature `f` with the values, by increasing value
    /// (ties by row), and whether any value was NaN.
    pub fn sorted(&self, f: usize) -> (Vec<(u32, f32)>, bool) {
        let mut entries: Vec<(u32, f32)> = self
            .column(f)
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, &v)| (i as u32, v))
            .collect();
        let missing = entries.len() < self.rows;
        entries.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        (entries, missing)
    }
}

/// A threshold `t` with `lo < t <= hi` for `lo < hi`, so that `x < t` sends `lo` left and `hi`
/// right: the f32 midpoint (XGBoost's choice), or `hi` when the midpoint rounds onto `lo`.
pub(crate) fn split_between(lo: f32, hi: f32) -> f32 {
    let mid = (lo + hi) * 0.5;
    if mid > lo && mid <= hi { mid } else { hi }
}

/// A node of a tree while it grows.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Grown {
    /// A leaf with its value and cover (the training rows, or hessian sum, that reached it; the
    /// weights attribution gives its subtrees, see `scorer::model::TreeExplainer`).
    Leaf { value: f32, cover: f32 },
    /// A split: `x < threshold` goes to `left` (indices into the grown tree).
    Split { feature: u16, threshold: f32, default_left: bool, left: usize, right: usize },
}

/// Appends the tree rooted at `grown[0]` to `nodes` in breadth-first order (every child after
/// its parent, the tree contiguous) and returns its root index.
pub(crate) fn lay_out(
    grown: &[Grown],
    nodes: &mut Vec<Node>,
    trainer: &'static str,
) -> Result<u32, TrainError> {
    let base = nodes.len();
    let too_many = || TrainError::TooManyNodes { trainer };
    let mut order = vec![0usize];
    let mut k = 0;
    while k < order.len() {
        let index = |position: usize| u32::try_from(base + position).map_err(|_| too_many());
        match grown[order[k]] {
            Grown::Leaf { value, cover } => nodes.push(Node::leaf(value, cover)),
            Grown::Split { feature, threshold, default_left, left, right } => {
                let (l, r) = (index(order.len())?, index(order.len() + 1)?);
                order.push(left);
                order.push(right);
                nodes.push(Node { feature, default_left, value: threshold, left: l, right: r });
            }
        }
        k += 1;
    }
    u32::try_from(base).map_err(|_| too_many())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_split_threshold_separates_two_f32_values(a in any::<f32>(), b in any::<f32>()) {
            prop_assume!(a.is_finite() && b.is_finite() && a != b);
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            let t = split_between(lo, hi);
            prop_assert!(lo < t && t <= hi, "{lo} {t} {hi}");
        }
    }

    #[test]
    fn adjacent_f32_values_split_at_the_upper_one() {
        let lo = 1.0f32;
        let hi = f32::from_bits(lo.to_bits() + 1);
        assert_eq!(split_between(lo, hi), hi);
        assert_eq!(split_between(1.0, 2.0), 1.5);
    }

    #[test]
    fn lays_trees_out_with_children_after_parents() {
        let grown = [
            Grown::Split { feature: 0, threshold: 1.0, default_left: true, left: 2, right: 1 },
            Grown::Leaf { value: 3.0, cover: 5.0 },
            Grown::Split { feature: 1, threshold: 2.0, default_left: false, left: 3, right: 4 },
            Grown::Leaf { value: 1.0, cover: 6.0 },
            Grown::Leaf { value: 2.0, cover: 7.0 },
        ];
        let mut nodes =
            vec![Node { feature: LEAF_FEATURE, default_left: false, value: 9.0, left: 0, right: 0 }];
        let root = lay_out(&grown, &mut nodes, "test").unwrap();
        assert_eq!(root, 1);
        let values: Vec<f32> = nodes.iter().map(|n| n.value).collect();
        assert_eq!(values, [9.0, 1.0, 2.0, 3.0, 1.0, 2.0]);
        assert_eq!((nodes[1].left, nodes[1].right), (2, 3));
        assert_eq!((nodes[2].left, nodes[2].right), (4, 5));
        let covers: Vec<f32> = nodes[3..].iter().map(Node::leaf_cover).collect();
        assert_eq!(covers, [5.0, 6.0, 7.0], "covers travel with their leaves");
    }
}
