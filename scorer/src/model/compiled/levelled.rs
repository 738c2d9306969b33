//! The compiled trees decided sixteen at a time in wasm SIMD128 (the `simd128` feature, for
//! `scorer-fast.wasm`: wasmtime, V8 and every other engine with SIMD).
//!
//! Thresholds become ranks, as in the AVX2 walk (`simd.rs`), but as bytes: every split's threshold
//! is replaced by its rank among the distinct thresholds of its feature (at most 255 of them), and
//! each feature value of a row by the number of those thresholds at or below it, so that
//! `x < threshold` is exactly `rank(x) <= rank(threshold)`. wasm has no gather, so a level of
//! sixteen trees does not fetch each tree's split: it goes over the level's split positions, and
//! each lane keeps the feature and threshold rank of the position its tree has reached (a lane
//! compare with the position and two masks). Then one swizzle per sixteen features picks each
//! lane's feature rank from the row's ranks, one unsigned compare decides the sixteen splits, and
//! the decision is the position's next bit. A level costs its width, so only shallow ensembles
//! take this walk ([`MAX_LEVELLED_DEPTH`]); there it does about half the work of the scalar walk
//! with no chain of dependent loads. Same leaves, same summation order as the scalar walk: the same
//! bits. Rows holding a NaN take the scalar walk (default directions).

use super::{LANES, Split};
use alloc::vec::Vec;
use core::arch::wasm32::*;

/// Trees decided side by side: one byte lane each.
const TREES: usize = 16;
/// Deepest ensemble walked this way: a level costs its width (`2^level` positions).
pub(super) const MAX_LEVELLED_DEPTH: u32 = 7;
/// Most features: two swizzles of sixteen ranks.
const MAX_FEATURES: usize = 2 * TREES;
/// Most distinct thresholds of one feature: ranks are bytes.
const MAX_THRESHOLDS: usize = 255;

/// The splits of a [`super::CompiledTrees`] as byte ranks by level, for the SIMD128 walk.
#[derive(Clone, Debug)]
pub(super) struct Levelled {
    /// Per feature, its distinct thresholds ascending: `thresholds[starts[f]..starts[f + 1]]`.
    thresholds: Vec<f32>,
    starts: Vec<usize>,
    /// Per group of sixteen trees, per split position of the complete tree (level by level), the
    /// sixteen trees' features and their thresholds' ranks.
    splits: Vec<[v128; 2]>,
    /// Per tree, its `2^depth` leaves by position in the bottom level.
    leaves: Vec<f32>,
    depth: u32,
    n_trees: usize,
}

impl PartialEq for Levelled {
    fn eq(&self, other: &Levelled) -> bool {
        let same = |a: &[v128; 2], b: &[v128; 2]| {
            i8x16_all_true(i8x16_eq(a[0], b[0])) && i8x16_all_true(i8x16_eq(a[1], b[1]))
        };
        self.thresholds == other.thresholds
            && self.starts == other.starts
            && self.splits.len() == other.splits.len()
            && self.splits.iter().zip(&other.splits).all(|(a, b)| same(a, b))
            && self.leaves == other.leaves
            && (self.depth, self.n_trees) == (other.depth, other.n_trees)
    }
}

impl Levelled {
    /// The levelled splits of the compiled layout (`splits`, `leaves` as in
    /// [`super::CompiledTrees`]), when the ensemble fits the walk: at least one level and at most
    /// [`MAX_LEVELLED_DEPTH`], at most 32 features, at most 255 distinct thresholds per feature.
    pub(super) fn new(
        splits: &[Split],
        leaves: &[f32],
        depth: u32,
        n_trees: usize,
        n_features: usize,
    ) -> Option<Levelled> {
        if depth == 0 || depth > MAX_LEVELLED_DEPTH || n_features > MAX_FEATURES {
            return None;
        }
        let mut per_feature: Vec<Vec<f32>> = alloc::vec![Vec::new(); n_features.max(1)];
        for s in splits {
            per_feature.get_mut(usize::from(s.feature))?.push(s.threshold);
        }
        let (mut thresholds, mut starts) = (Vec::new(), alloc::vec![0]);
        for t in per_feature.iter_mut() {
            if t.iter().any(|v| v.is_nan()) {
                return None;
            }
            // -0.0 and 0.0 are one threshold: they compare equal.
            t.sort_by(f32::total_cmp);
            t.dedup_by(|a, b| a == b);
            if t.len() > MAX_THRESHOLDS {
                return None;
            }
            thresholds.extend_from_slice(t);
            starts.push(thresholds.len());
        }
        let internal = (1usize << depth) - 1;
        let groups = n_trees.div_ceil(TREES);
        let mut levelled = Vec::with_capacity(groups * internal);
        for h in 0..groups {
            for pos in 0..internal {
                let (mut features, mut ranks) = ([0u8; TREES], [0u8; TREES]);
                for j in 0..TREES.min(n_trees - h * TREES) {
                    let t = h * TREES + j;
                    let s = splits.get((t / LANES) * internal * LANES + pos * LANES + t % LANES)?;
                    let f = usize::from(s.feature);
                    features[j] = s.feature;
                    // At most 254: the feature has at most 255 distinct thresholds.
                    ranks[j] = per_feature[f].partition_point(|&t| t < s.threshold) as u8;
                }
                levelled.push([bytes(features), bytes(ranks)]);
            }
        }
        let mut by_tree = Vec::with_capacity(n_trees << depth);
        for t in 0..n_trees {
            let base = (t / LANES) * (internal + 1) * LANES + t % LANES;
            for q in 0..=internal {
                by_tree.push(*leaves.get(base + q * LANES)?);
            }
        }
        Some(Levelled { thresholds, starts, splits: levelled, leaves: by_tree, depth, n_trees })
    }

    /// [`super::CompiledTrees::leaf_sum`] for a row without NaN and with every feature present.
    #[target_feature(enable = "simd128")]
    pub(super) fn leaf_sum(&self, xs: &[f32]) -> f64 {
        let mask = (1usize << self.depth) - 1;
        let mut sum = 0.0f64;
        self.walk(xs, |first, trees, at| {
            let leaves = &self.leaves[first << self.depth..(first + trees) << self.depth];
            let leaf = |j: usize| leaves[(j << self.depth) | usize::from(at[j]) & mask];
            if trees == TREES {
                // Sixteen adds in a row: in a loop, wasmtime keeps the sum in memory.
                let values: [f32; TREES] = core::array::from_fn(leaf);
                for v in values {
                    sum += f64::from(v);
                }
            } else {
                for j in 0..trees {
                    sum += f64::from(leaf(j));
                }
            }
        });
        sum
    }

    /// [`super::CompiledTrees::leaf_positions`] for a row without NaN and with every feature
    /// present: each tree's leaf as its position in the complete tree, in tree order, into `out`.
    #[target_feature(enable = "simd128")]
    pub(super) fn leaf_positions(&self, xs: &[f32], out: &mut Vec<u32>) {
        // The bottom level's first position.
        let first_leaf = (1u32 << self.depth) - 1;
        self.walk(xs, |_, trees, at| out.extend(at[..trees].iter().map(|&q| first_leaf + u32::from(q))));
    }

    /// Every group of sixteen trees down to the bottom level; `done` gets the group's first tree,
    /// its number of trees and their positions in the bottom level (its bits are the ways taken).
    #[target_feature(enable = "simd128")]
    fn walk(&self, xs: &[f32], mut done: impl FnMut(usize, usize, &[u8; TREES])) {
        // Per feature, how many of its thresholds are at or below the value (-0.0 counts as 0.0).
        let mut ranks = [0u8; MAX_FEATURES];
        for ((r, w), &x) in ranks.iter_mut().zip(self.starts.windows(2)).zip(xs) {
            // At most 255: a feature has at most 255 distinct thresholds.
            *r = self.thresholds[w[0]..w[1]].partition_point(|&t| t <= x) as u8;
        }
        let (low, high) = (bytes_at(&ranks, 0), bytes_at(&ranks, TREES));
        let two_swizzles = self.starts.len() > TREES + 1;
        let per_group = (1usize << self.depth) - 1;
        for (h, group) in self.splits.chunks_exact(per_group).enumerate() {
            let position = if two_swizzles {
                self.bottom::<true>(group, low, high)
            } else {
                self.bottom::<false>(group, low, high)
            };
            let first = h * TREES;
            done(first, (self.n_trees - first).min(TREES), &lanes(position));
        }
    }

    /// The sixteen trees' positions in the bottom level, from `group`, their splits (see
    /// [`Levelled::splits`]); `low` and `high` are the row's ranks of features 0-15 and 16-31.
    #[target_feature(enable = "simd128")]
    fn bottom<const HIGH: bool>(&self, group: &[[v128; 2]], low: v128, high: v128) -> v128 {
        let sixteen = u8x16_splat(TREES as u8);
        // Per lane, the position in the current level: its bits are the ways taken, left = 1.
        let mut position = u8x16_splat(0);
        for level in 0..self.depth {
            let width = 1usize << level;
            let splits = &group[width - 1..2 * width - 1];
            let (feature, threshold) = match width {
                1 => here::<1>(splits, position),
                2 => here::<2>(splits, position),
                _ => here::<4>(splits, position),
            };
            // A swizzle gives 0 for an index past 15, so each half answers for its own features.
            let mut rank = i8x16_swizzle(low, feature);
            if HIGH {
                rank = v128_or(rank, i8x16_swizzle(high, i8x16_sub(feature, sixteen)));
            }
            // All ones where x < threshold: the tree goes left, the position's next bit is 1.
            let left = u8x16_le(rank, threshold);
            position = i8x16_sub(i8x16_add(position, position), left);
        }
        position
    }
}

/// Per lane, the feature and threshold rank of the split at the lane's `position` among a level's
/// `splits`, `K` positions a step (wasm engines do not unroll loops; one running result each,
/// since more spill registers in wasmtime).
#[target_feature(enable = "simd128")]
fn here<const K: usize>(splits: &[[v128; 2]], position: v128) -> (v128, v128) {
    let (zero, one) = (u8x16_splat(0), u8x16_splat(1));
    let (mut feature, mut threshold, mut relative) = (zero, zero, position);
    for step in splits.chunks_exact(K) {
        for s in step {
            let at = i8x16_eq(relative, zero);
            feature = v128_or(feature, v128_and(s[0], at));
            threshold = v128_or(threshold, v128_and(s[1], at));
            relative = i8x16_sub(relative, one);
        }
    }
    (feature, threshold)
}

/// Sixteen bytes as a vector.
fn bytes(b: [u8; TREES]) -> v128 {
    u8x16(
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
    )
}

/// The sixteen bytes of `b` from `at` as a vector.
fn bytes_at(b: &[u8; MAX_FEATURES], at: usize) -> v128 {
    let mut sixteen = [0u8; TREES];
    sixteen.copy_from_slice(&b[at..at + TREES]);
    bytes(sixteen)
}

/// A vector's sixteen bytes.
#[target_feature(enable = "simd128")]
fn lanes(v: v128) -> [u8; TREES] {
    [
        u8x16_extract_lane::<0>(v),
        u8x16_extract_lane::<1>(v),
        u8x16_extract_lane::<2>(v),
        u8x16_extract_lane::<3>(v),
        u8x16_extract_lane::<4>(v),
        u8x16_extract_lane::<5>(v),
        u8x16_extract_lane::<6>(v),
        u8x16_extract_lane::<7>(v),
        u8x16_extract_lane::<8>(v),
        u8x16_extract_lane::<9>(v),
        u8x16_extract_lane::<10>(v),
        u8x16_extract_lane::<11>(v),
        u8x16_extract_lane::<12>(v),
        u8x16_extract_lane::<13>(v),
        u8x16_extract_lane::<14>(v),
        u8x16_extract_lane::<15>(v),
    ]
}
