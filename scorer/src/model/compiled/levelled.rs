//! The compiled trees decided sixteen at a time in wasm SIMD128 (the `simd128` feature, for
//! `scorer-fast.wasm`: wasmtime, V8 and every other engine with SIMD).
//!
//! Thresholds become ranks, as in the AVX2 walk (`simd.rs`), but as bytes: every split's threshold
//! is replaced by its rank among the distinct thresholds of its feature, and each feature value of
//! a row by the number of those thresholds at or below it, so that `x < threshold` is exactly
//! `rank(x) <= rank(threshold)`. A feature with more than 255 distinct thresholds is cut into
//! *parts* of 255, each a byte-ranked feature of its own: a split of part `c` keeps its rank minus
//! `255c`, and the row's rank for part `c` is its rank minus `255c` clamped into 0..=255, which
//! keeps the comparison exact (a value below the part compares as 0, one above it as 255, more
//! than any rank in the part). At most 64 parts in all. wasm has no gather, so a level of
//! sixteen trees does not fetch each tree's split: it goes over the level's split positions, and
//! each lane keeps the feature and threshold rank of the position its tree has reached (a lane
//! compare with the position and two masks). Then one swizzle per sixteen parts picks each
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
/// Most feature parts: four swizzles of sixteen ranks.
const MAX_PARTS: usize = 4 * TREES;
/// Distinct thresholds in one part of a feature: ranks are bytes.
const PART: usize = 255;

/// The splits of a [`super::CompiledTrees`] as byte ranks by level, for the SIMD128 walk.
#[derive(Clone, Debug)]
pub(super) struct Levelled {
    /// Per feature, its distinct thresholds ascending: `thresholds[starts[f]..starts[f + 1]]`.
    thresholds: Vec<f32>,
    starts: Vec<usize>,
    /// Per feature, its first part: its parts are `parts[f]..parts[f + 1]`.
    parts: Vec<usize>,
    /// Per group of sixteen trees, per split position of the complete tree (level by level), the
    /// sixteen trees' feature parts and their thresholds' ranks in them.
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
            && self.parts == other.parts
            && self.splits.len() == other.splits.len()
            && self.splits.iter().zip(&other.splits).all(|(a, b)| same(a, b))
            && self.leaves == other.leaves
            && (self.depth, self.n_trees) == (other.depth, other.n_trees)
    }
}

impl Levelled {
    /// The levelled splits of the compiled layout (`splits`, `leaves` as in
    /// [`super::CompiledTrees`]), when the ensemble fits the walk: at least one level and at most
    /// [`MAX_LEVELLED_DEPTH`], at most 64 feature parts (each feature has one part per 255 distinct
    /// thresholds, at least one).
    pub(super) fn new(
        splits: &[Split],
        leaves: &[f32],
        depth: u32,
        n_trees: usize,
        n_features: usize,
    ) -> Option<Levelled> {
        if depth == 0 || depth > MAX_LEVELLED_DEPTH || n_features > MAX_PARTS {
            return None;
        }
        let mut per_feature: Vec<Vec<f32>> = alloc::vec![Vec::new(); n_features.max(1)];
        for s in splits {
            per_feature.get_mut(usize::from(s.feature))?.push(s.threshold);
        }
        let (mut thresholds, mut starts, mut parts) = (Vec::new(), alloc::vec![0], alloc::vec![0]);
        for t in per_feature.iter_mut() {
            if t.iter().any(|v| v.is_nan()) {
                return None;
            }
            // -0.0 and 0.0 are one threshold: they compare equal.
            t.sort_by(f32::total_cmp);
            t.dedup_by(|a, b| a == b);
            thresholds.extend_from_slice(t);
            starts.push(thresholds.len());
            parts.push(parts[parts.len() - 1] + t.len().div_ceil(PART).max(1));
        }
        if parts[parts.len() - 1] > MAX_PARTS {
            return None;
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
                    let rank = per_feature[f].partition_point(|&t| t < s.threshold);
                    // At most 63 (checked above), and a rank within its part is at most 254.
                    features[j] = (parts[f] + rank / PART) as u8;
                    ranks[j] = (rank % PART) as u8;
                }
                levelled.push([bytes(&features, 0), bytes(&ranks, 0)]);
            }
        }
        let mut by_tree = Vec::with_capacity(n_trees << depth);
        for t in 0..n_trees {
            let base = (t / LANES) * (internal + 1) * LANES + t % LANES;
            for q in 0..=internal {
                by_tree.push(*leaves.get(base + q * LANES)?);
            }
        }
        Some(Levelled { thresholds, starts, parts, splits: levelled, leaves: by_tree, depth, n_trees })
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
    fn walk(&self, xs: &[f32], done: impl FnMut(usize, usize, &[u8; TREES])) {
        // Per feature part, how many of its thresholds are at or below the value (-0.0 counts as
        // 0.0), clamped into the part.
        let mut ranks = [0u8; MAX_PARTS];
        for ((w, p), &x) in self.starts.windows(2).zip(self.parts.windows(2)).zip(xs) {
            let rank = self.thresholds[w[0]..w[1]].partition_point(|&t| t <= x);
            for (c, r) in ranks[p[0]..p[1]].iter_mut().enumerate() {
                *r = rank.saturating_sub(c * PART).min(PART) as u8;
            }
        }
        let rank_vectors: [v128; MAX_PARTS / TREES] = core::array::from_fn(|c| bytes(&ranks, c * TREES));
        match self.parts[self.parts.len() - 1].div_ceil(TREES) {
            0 | 1 => self.groups::<1>(&rank_vectors, done),
            2 => self.groups::<2>(&rank_vectors, done),
            3 => self.groups::<3>(&rank_vectors, done),
            _ => self.groups::<4>(&rank_vectors, done),
        }
    }

    /// [`Levelled::walk`] over the groups, with `C` vectors of the row's part ranks in use.
    #[target_feature(enable = "simd128")]
    fn groups<const C: usize>(
        &self,
        ranks: &[v128; MAX_PARTS / TREES],
        mut done: impl FnMut(usize, usize, &[u8; TREES]),
    ) {
        let per_group = (1usize << self.depth) - 1;
        for (h, group) in self.splits.chunks_exact(per_group).enumerate() {
            let position = self.bottom::<C>(group, ranks);
            let first = h * TREES;
            done(first, (self.n_trees - first).min(TREES), &lanes(position));
        }
    }

    /// The sixteen trees' positions in the bottom level, from `group`, their splits (see
    /// [`Levelled::splits`]); `ranks` holds the row's ranks of parts 0-15, 16-31, ..., the first
    /// `C` of them in use.
    #[target_feature(enable = "simd128")]
    fn bottom<const C: usize>(&self, group: &[[v128; 2]], ranks: &[v128; MAX_PARTS / TREES]) -> v128 {
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
            // A swizzle gives 0 for an index past 15, so each sixteen answer for their own parts.
            let mut rank = i8x16_swizzle(ranks[0], feature);
            for (c, r) in ranks.iter().enumerate().take(C).skip(1) {
                rank = v128_or(rank, i8x16_swizzle(*r, i8x16_sub(feature, u8x16_splat((c * TREES) as u8))));
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

/// The sixteen bytes of `b` from `at` as a vector (as two 64-bit lanes: two inserts where
/// sixteen byte lanes take sixteen).
fn bytes(b: &[u8], at: usize) -> v128 {
    let word = |at: usize| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(eight)
    };
    u64x2(word(at), word(at + 8))
}

/// A vector's sixteen bytes (as two 64-bit lanes).
#[target_feature(enable = "simd128")]
fn lanes(v: v128) -> [u8; TREES] {
    let mut b = [0u8; TREES];
    b[..8].copy_from_slice(&u64x2_extract_lane::<0>(v).to_le_bytes());
    b[8..].copy_from_slice(&u64x2_extract_lane::<1>(v).to_le_bytes());
    b
}
