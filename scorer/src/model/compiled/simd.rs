//! The compiled walk with eight trees in one AVX2 register (x86-64, detected at run time).
//!
//! Every split's threshold is replaced by its *rank* among the distinct thresholds of its feature,
//! and each feature value of a row by the number of those thresholds at or below it. Then
//! `x < threshold` is exactly `rank(x) <= rank(threshold)` (for distinct ascending thresholds
//! `t_0 < t_1 < ...`: `x < t_k` means that at most `t_0 .. t_{k-1}` are at or below `x`). A split
//! is one word, `rank << 16 | feature`, and a row's ranks are kept shifted the same way, so that
//! "goes right" is `rank(x) << 16 > word` (the feature in the low bits never reaches the next rank).
//! A level of eight trees is then one gather of words, the row's ranks picked per lane by two
//! register permutes (which read the feature from the word's low three bits) and a blend on its
//! fourth bit, one compare and the slot update of the scalar walk. Same slots, same leaves, same
//! summation order as the scalar walk: the same bits. Rows holding a NaN take the scalar walk
//! (default directions).
//!
//! This module and `snapshot::crypto` are the scorer's only `unsafe` code: the gathers read through
//! raw pointers (each index is clamped into its slice first) and the AVX2 function may only be
//! called once AVX2 was detected.

use super::{LANES, Split};
use alloc::vec::Vec;
use core::arch::x86_64::*;

/// Most features the AVX2 walk reads (two 8-lane permutes).
const MAX_RANKED_FEATURES: usize = 16;
/// Groups of eight trees walked side by side, so that their gathers overlap.
const INTERLEAVE: usize = 6;

cpufeatures::new!(avx2_cpuid, "avx2");

/// The splits of a [`super::CompiledTrees`] as threshold ranks, for the AVX2 walk.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Ranked {
    /// Per feature, its distinct thresholds ascending in blocks of eight, the last block padded
    /// with NaN (never at or below anything): `blocks[starts[f]..starts[f + 1]]`.
    blocks: Vec<[f32; LANES]>,
    /// The first threshold of each block.
    fences: Vec<f32>,
    starts: [usize; MAX_RANKED_FEATURES + 1],
    /// Per split slot (the layout of `CompiledTrees::splits`): `rank << 16 | feature`.
    words: Vec<u32>,
}

impl Ranked {
    /// The ranked splits, when this CPU has AVX2 and the ensemble fits the walk (at least one
    /// level, at most 16 features, fewer than 32,768 distinct thresholds per feature, so that a
    /// shifted rank stays positive).
    pub(super) fn new(splits: &[Split], depth: u32, n_features: usize) -> Option<Ranked> {
        if depth == 0 || n_features > MAX_RANKED_FEATURES || !avx2_cpuid::get() {
            return None;
        }
        let mut per_feature: [Vec<f32>; MAX_RANKED_FEATURES] = Default::default();
        for s in splits {
            per_feature.get_mut(usize::from(s.feature))?.push(s.threshold);
        }
        let (mut blocks, mut fences) = (Vec::new(), Vec::new());
        let mut starts = [0; MAX_RANKED_FEATURES + 1];
        for (f, t) in per_feature.iter_mut().enumerate() {
            if t.iter().any(|v| v.is_nan()) {
                return None;
            }
            // -0.0 and 0.0 are one threshold: they compare equal.
            t.sort_by(f32::total_cmp);
            t.dedup_by(|a, b| a == b);
            if t.len() >= 1 << 15 {
                return None;
            }
            for block in t.chunks(LANES) {
                let mut padded = [f32::NAN; LANES];
                padded[..block.len()].copy_from_slice(block);
                blocks.push(padded);
                fences.push(block[0]);
            }
            starts[f + 1] = blocks.len();
        }
        let words = splits
            .iter()
            .map(|s| {
                let f = usize::from(s.feature);
                let t = per_feature[f].as_slice();
                let rank = t.partition_point(|&t| t < s.threshold);
                (rank as u32) << 16 | u32::from(s.feature)
            })
            .collect();
        Some(Ranked { blocks, fences, starts, words })
    }

    /// [`super::CompiledTrees::leaf_sum`] for a row without NaN and with every feature present.
    pub(super) fn leaf_sum(&self, xs: &[f32], leaves: &[f32], depth: u32) -> f64 {
        // SAFETY: a `Ranked` exists only where AVX2 was detected (`Ranked::new`).
        unsafe { walk(self, xs, leaves, depth) }
    }

    /// Per feature, how many of its thresholds are at or below `xs[f]` (-0.0 counts as 0.0),
    /// shifted left by 16: a binary search for the block, then one compare of its eight.
    #[target_feature(enable = "avx2")]
    fn ranks(&self, xs: &[f32]) -> [i32; MAX_RANKED_FEATURES] {
        let mut ranks = [0i32; MAX_RANKED_FEATURES];
        for ((r, w), &x) in ranks.iter_mut().zip(self.starts.windows(2)).zip(xs) {
            let below = self.fences[w[0]..w[1]].partition_point(|&t| t <= x);
            if let Some(b) = below.checked_sub(1) {
                let t = &self.blocks[w[0] + b];
                let block = _mm256_setr_ps(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
                let at_or_below = _mm256_cmp_ps::<_CMP_LE_OQ>(block, _mm256_set1_ps(x));
                let n = (LANES * b) as u32 + (_mm256_movemask_ps(at_or_below) as u32).count_ones();
                *r = (n as i32) << 16;
            }
        }
        ranks
    }
}

/// The walk itself: per chunk of [`INTERLEAVE`] groups, `depth` levels, then the leaves summed in
/// tree order.
#[target_feature(enable = "avx2")]
fn walk(ranked: &Ranked, xs: &[f32], leaves: &[f32], depth: u32) -> f64 {
    let (ranks, words) = (ranked.ranks(xs), &ranked.words);
    let internal = (1usize << depth) - 1;
    let r = |k: usize| {
        _mm256_setr_epi32(
            ranks[k],
            ranks[k + 1],
            ranks[k + 2],
            ranks[k + 3],
            ranks[k + 4],
            ranks[k + 5],
            ranks[k + 6],
            ranks[k + 7],
        )
    };
    let k = Consts {
        ranks_low: r(0),
        ranks_high: r(8),
        split_slots: internal * LANES,
        leaf_slots: (internal + 1) * LANES,
        depth,
    };
    let (mut sum, whole) = (0.0f64, INTERLEAVE * k.split_slots);
    let (mut split_chunks, mut leaf_chunks) =
        (words.chunks_exact(whole), leaves.chunks_exact(INTERLEAVE * k.leaf_slots));
    for (w, l) in split_chunks.by_ref().zip(leaf_chunks.by_ref()) {
        sum = chunk::<INTERLEAVE>(w, l, &k, sum);
    }
    let rest = split_chunks.remainder().chunks_exact(k.split_slots);
    for (w, l) in rest.zip(leaf_chunks.remainder().chunks_exact(k.leaf_slots)) {
        sum = chunk::<1>(w, l, &k, sum);
    }
    sum
}

/// What every chunk of a walk shares.
struct Consts {
    ranks_low: __m256i,
    ranks_high: __m256i,
    split_slots: usize,
    leaf_slots: usize,
    depth: u32,
}

/// Walks the `G` groups whose splits are `words` (`G * split_slots` of them) and whose leaves are
/// `leaves` (`G * leaf_slots`), and adds their leaves to `sum` in tree order.
#[target_feature(enable = "avx2")]
fn chunk<const G: usize>(words: &[u32], leaves: &[f32], k: &Consts, mut sum: f64) -> f64 {
    assert!(words.len() == G * k.split_slots && leaves.len() == G * k.leaf_slots);
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // The scalar walk's update: `2 * slot + (16 - lane)` goes left, 8 less goes right.
    let step_left = _mm256_castsi256_ps(_mm256_setr_epi32(16, 15, 14, 13, 12, 11, 10, 9));
    let step_right = _mm256_castsi256_ps(_mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1));
    let last_split = _mm256_set1_epi32(k.split_slots as i32 - 1);
    let mut slot = [lane; G];
    for _ in 0..k.depth {
        for (j, slot) in slot.iter_mut().enumerate() {
            let at = _mm256_min_epu32(*slot, last_split);
            // SAFETY: group `j`'s words start `j * split_slots` into `words`, which holds
            // `G * split_slots` of them (asserted above), and every index is at most
            // `split_slots - 1` (clamped above).
            let w = unsafe {
                _mm256_i32gather_epi32::<4>(words.as_ptr().wrapping_add(j * k.split_slots).cast(), at)
            };
            // The permutes read the feature's low three bits; its fourth, moved to the sign bit,
            // picks the high half.
            let low = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(k.ranks_low, w));
            let high = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(k.ranks_high, w));
            let pick = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(w));
            let rank = _mm256_castps_si256(_mm256_blendv_ps(low, high, pick));
            // rank(x) > rank(threshold): x is not below the threshold, the walk goes right.
            let right = _mm256_castsi256_ps(_mm256_cmpgt_epi32(rank, w));
            let step = _mm256_castps_si256(_mm256_blendv_ps(step_left, step_right, right));
            *slot = _mm256_add_epi32(_mm256_add_epi32(*slot, *slot), step);
        }
    }
    let first_leaf = _mm256_set1_epi32(k.split_slots as i32);
    let last_leaf = _mm256_set1_epi32(k.leaf_slots as i32 - 1);
    for (j, s) in slot.iter().enumerate() {
        let at = _mm256_min_epu32(_mm256_sub_epi32(*s, first_leaf), last_leaf);
        // SAFETY: group `j`'s leaves start `j * leaf_slots` into `leaves`, which holds
        // `G * leaf_slots` of them (asserted above), and every index is at most `leaf_slots - 1`
        // (clamped above; a wrapped difference is a large unsigned number and clamps too).
        let v = unsafe { _mm256_i32gather_ps::<4>(leaves.as_ptr().wrapping_add(j * k.leaf_slots), at) };
        let low = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        let high = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
        let mut values = [0.0f64; LANES];
        let (l, h) = values.split_at_mut(LANES / 2);
        // SAFETY: each half of `values` has room for four f64.
        unsafe {
            _mm256_storeu_pd(l.as_mut_ptr(), low);
            _mm256_storeu_pd(h.as_mut_ptr(), high);
        }
        // The last group's missing trees have 0.0 leaves: adding +0.0 leaves the sum's bits alone
        // (a sum that starts at +0.0 is never -0.0), so all eight lanes are added.
        for v in values {
            sum += v;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::super::tests::random_trees;
    use super::super::{CompiledTrees, to_f32};
    use alloc::vec::Vec;

    /// Values that sit on, just beside and far from the random thresholds (tenths in 0..10),
    /// signed zeros and infinities.
    fn edge_value(i: usize, f: usize) -> f64 {
        let tenths = ((i * 7 + f * 13) % 101) as f64 / 10.0;
        match (i + 3 * f) % 9 {
            0 => -0.0,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => f64::from(f32::from_bits((tenths as f32).to_bits() + 1)),
            4 => f64::from(f32::from_bits((tenths as f32).to_bits().saturating_sub(1))),
            5 => -tenths,
            _ => tenths,
        }
    }

    #[test]
    fn the_avx2_walk_gives_the_scalar_walks_bits() {
        let avx2 = super::avx2_cpuid::get();
        let mut rows = 0;
        for seed in 0..60u64 {
            let nf = 1 + (seed % 16) as u16;
            let t = random_trees(seed, 1 + seed as usize * 7, 1 + (seed % 10) as u32, nf);
            let (fast, portable) = (CompiledTrees::new(&t), CompiledTrees::portable(&t));
            assert_eq!(
                fast.ranked.is_some(),
                avx2,
                "seed {seed}: the AVX2 walk is taken exactly where AVX2 is"
            );
            assert!(portable.ranked.is_none());
            let mut xs = Vec::new();
            for i in 0..300usize {
                let row: Vec<f64> = (0..usize::from(nf)).map(|f| edge_value(i, f)).collect();
                to_f32(&row, &mut xs);
                let want = t.leaf_sum(&row);
                assert_eq!(portable.leaf_sum(&xs).to_bits(), want.to_bits(), "seed {seed} row {i}: scalar");
                assert_eq!(fast.leaf_sum(&xs).to_bits(), want.to_bits(), "seed {seed} row {i}: AVX2");
                rows += 1;
            }
        }
        assert_eq!(rows, 60 * 300);
    }

    #[test]
    fn ensembles_the_avx2_walk_cannot_take_fall_back() {
        // 17 features: more than the two permutes hold.
        let t = random_trees(7, 40, 4, 17);
        let c = CompiledTrees::new(&t);
        assert!(c.ranked.is_none());
        let row: Vec<f64> = (0..17).map(|f| f as f64 / 2.0).collect();
        let mut xs = Vec::new();
        to_f32(&row, &mut xs);
        assert_eq!(c.leaf_sum(&xs).to_bits(), t.leaf_sum(&row).to_bits());
    }
}
