//! A tree ensemble re-laid for speed when a scorer loads it. Every tree becomes a *complete*
//! binary tree of the ensemble's depth D (a leaf above depth D is pushed down by splits whose
//! leaves all carry its value): the children of split `p` are `2p + 1` (right) and `2p + 2`
//! (left), so a walk is D steps of `p = 2p + 1 + left` with no child indices, no leaf test and no
//! branch. "Left" is the sign bit of `x - threshold`: thresholds are finite, and a difference is
//! exactly +0 only when equal, so it is `x < threshold` without a compare-and-branch. Trees go in
//! groups of eight, walked side by side so that their loads overlap, their splits interleaved
//! (`group + 8p + lane`) so that one base serves the eight. The sum is taken in tree order in
//! f64, so the score has exactly the bits of [`TreeEnsemble::score`].
//!
//! On x86-64 CPUs with AVX2 the same layout is walked eight trees to a register ([`simd`]); in
//! wasm built with the `simd128` feature, ensembles up to depth 7 are decided sixteen trees at a
//! time level by level (`levelled`). A feature vector holding a NaN takes a second variant of the
//! scalar walk that honours the splits' default directions. Ensembles deeper than
//! [`MAX_COMPILED_DEPTH`] or reading more than 256 features are not re-laid: they take the
//! reference walk (same bits, slower).

use super::trees::{LEAF, TreeEnsemble, TreeOutput};
use alloc::vec::Vec;

#[cfg(all(target_arch = "wasm32", feature = "simd128"))]
mod levelled;
#[cfg(target_arch = "x86_64")]
mod simd;

/// Trees walked side by side.
const LANES: usize = 8;
// The walk moves the sign bit (bit 31) to bit 3 with one shift: `LANES * left`.
const _: () = assert!(LANES == 8);
/// Deepest ensemble that is compiled (a complete tree of depth 10 has 1023 splits).
pub const MAX_COMPILED_DEPTH: u32 = 10;
/// Most features a compiled ensemble reads (feature indices are one byte).
const MAX_FEATURES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Split {
    threshold: f32,
    feature: u8,
    default_left: bool,
}

/// A [`TreeEnsemble`] compiled for evaluation (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledTrees {
    /// Per group of [`LANES`] trees, `(2^depth - 1) x LANES` splits, interleaved.
    splits: Vec<Split>,
    /// Per group, `2^depth x LANES` leaf values, interleaved.
    leaves: Vec<f32>,
    depth: u32,
    /// The source, when the layout does not take it.
    reference: Option<TreeEnsemble>,
    n_trees: usize,
    base_margin: f64,
    output: TreeOutput,
    n_features: usize,
    /// The splits ranked for the AVX2 walk, where it runs.
    #[cfg(target_arch = "x86_64")]
    ranked: Option<simd::Ranked>,
    /// The splits by level for the SIMD128 walk, where it is built in.
    #[cfg(all(target_arch = "wasm32", feature = "simd128"))]
    levelled: Option<levelled::Levelled>,
}

impl CompiledTrees {
    /// Compiles `trees` (validated: trees contiguous, children after parents, features in range).
    pub fn new(trees: &TreeEnsemble) -> CompiledTrees {
        let c = Self::portable(trees);
        #[cfg(target_arch = "x86_64")]
        let c = CompiledTrees {
            ranked: c
                .reference
                .is_none()
                .then(|| simd::Ranked::new(&c.splits, c.depth, c.n_features))
                .flatten(),
            ..c
        };
        #[cfg(all(target_arch = "wasm32", feature = "simd128"))]
        let c = CompiledTrees {
            levelled: c
                .reference
                .is_none()
                .then(|| levelled::Levelled::new(&c.splits, &c.leaves, c.depth, c.n_trees, c.n_features))
                .flatten(),
            ..c
        };
        c
    }

    /// Compiles `trees` for the scalar walk only, the one wasm runs (also on CPUs with AVX2):
    /// same bits as [`CompiledTrees::new`], for benchmarks and tests that compare the two.
    pub fn portable(trees: &TreeEnsemble) -> CompiledTrees {
        let mut depth = alloc::vec![0u32; trees.nodes.len()];
        for (i, n) in trees.nodes.iter().enumerate() {
            if n.feature != LEAF {
                depth[n.left as usize] = depth[i] + 1;
                depth[n.right as usize] = depth[i] + 1;
            }
        }
        let max_depth = depth.iter().copied().max().unwrap_or(0);
        let mut c = CompiledTrees {
            splits: Vec::new(),
            leaves: Vec::new(),
            depth: max_depth,
            reference: None,
            n_trees: trees.roots.len(),
            base_margin: trees.base_margin,
            output: trees.output,
            n_features: trees.n_features,
            #[cfg(target_arch = "x86_64")]
            ranked: None,
            #[cfg(all(target_arch = "wasm32", feature = "simd128"))]
            levelled: None,
        };
        if max_depth > MAX_COMPILED_DEPTH || trees.n_features > MAX_FEATURES {
            c.reference = Some(trees.clone());
            return c;
        }
        let internal = (1usize << max_depth) - 1;
        let groups = trees.roots.len().div_ceil(LANES);
        // Padding (pushed-down leaves, the last group's missing trees): any split will do, since
        // every leaf under it has the same value (0 for missing trees, which are not summed).
        let pad = Split { threshold: 0.0, feature: 0, default_left: false };
        c.splits = alloc::vec![pad; groups * internal * LANES];
        c.leaves = alloc::vec![0.0; groups * (internal + 1) * LANES];
        expand(trees, max_depth, |t, pos, node| {
            let n = &trees.nodes[node];
            if pos >= internal {
                c.leaves[leaf_slot(internal, t, pos)] = n.value;
            } else if n.feature != LEAF {
                let (group, lane) = (t / LANES, t % LANES);
                // Features fit a byte: checked above.
                let (threshold, feature, default_left) = (n.value, n.feature as u8, n.default_left);
                c.splits[group * internal * LANES + lane + pos * LANES] =
                    Split { threshold, feature, default_left };
            }
        });
        c
    }

    /// Number of features the trees read.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Sum of the leaf values over all trees, in tree order, in f64; `xs` holds the features as
    /// f32 (NaN = missing), [`CompiledTrees::n_features`] of them.
    pub fn leaf_sum(&self, xs: &[f32]) -> f64 {
        if let Some(reference) = &self.reference {
            return reference_sum(reference, xs);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(ranked) = &self.ranked
            && self.complete(xs)
        {
            return ranked.leaf_sum(xs, &self.leaves, self.depth);
        }
        #[cfg(all(target_arch = "wasm32", feature = "simd128"))]
        if let Some(levelled) = &self.levelled
            && self.complete(xs)
        {
            return levelled.leaf_sum(xs);
        }
        let (x, any_nan) = self.padded(xs);
        let internal = (1usize << self.depth) - 1;
        let mut sum = 0.0f64;
        let add = |g: usize, slots: &[usize]| {
            let leaves = &self.leaves[g * (internal + 1) * LANES..(g + 1) * (internal + 1) * LANES];
            for &sl in slots {
                sum += f64::from(leaves[sl - internal * LANES]);
            }
        };
        if any_nan {
            self.walk::<true>(&x, add)
        } else {
            self.walk::<false>(&x, add)
        }
        sum
    }

    /// Each tree's leaf for `xs`, in tree order, as its position in the tree made complete (the
    /// root is 0, the children of `p` are `2p + 1` on the right and `2p + 2` on the left), into
    /// `out`: the path the walk took, for [`super::PathTable::add`]. False (and `out`
    /// empty) for ensembles that are not re-laid (see the module docs).
    pub fn leaf_positions(&self, xs: &[f32], out: &mut Vec<u32>) -> bool {
        out.clear();
        if self.reference.is_some() {
            return false;
        }
        #[cfg(all(target_arch = "wasm32", feature = "simd128"))]
        if let Some(levelled) = &self.levelled
            && self.complete(xs)
        {
            levelled.leaf_positions(xs, out);
            return true;
        }
        // The variant that honours default directions serves rows with and without NaN alike:
        // one more copy of the walk instead of two (scorer.wasm's size).
        let (x, _) = self.padded(xs);
        self.walk::<true>(&x, |_, slots| {
            for &sl in slots {
                out.push((sl / LANES) as u32);
            }
        });
        true
    }

    /// Whether the trees were re-laid as complete trees (see the module docs); if not, they
    /// take the reference walk and [`CompiledTrees::leaf_positions`] gives nothing.
    pub fn is_laid_out(&self) -> bool {
        self.reference.is_none()
    }

    /// The depth of the complete trees (what [`CompiledTrees::leaf_positions`] counts in).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Whether `xs` has every feature and no NaN: what the rank walks (AVX2, SIMD128) take; other
    /// rows go the scalar walk's way, which honours default directions.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", feature = "simd128")))]
    fn complete(&self, xs: &[f32]) -> bool {
        xs.len() >= self.n_features && !xs.iter().any(|v| v.is_nan())
    }

    /// `xs` as the scalar walk reads it, and whether a feature is missing. Absent features read
    /// as NaN, like the reference walk's; -0.0 becomes +0.0 (`-0.0 - 0.0` has the sign bit, but
    /// -0.0 is not below 0.0).
    fn padded(&self, xs: &[f32]) -> ([f32; MAX_FEATURES], bool) {
        let mut x = [f32::NAN; MAX_FEATURES];
        let mut any_nan = xs.len() < self.n_features;
        for (slot, &v) in x.iter_mut().zip(xs) {
            any_nan |= v.is_nan();
            *slot = v + 0.0;
        }
        (x, any_nan)
    }

    /// The scalar walk: every group of trees down to its leaves; `done` gets each group's index
    /// and the final slots (`LANES * position + lane`) of its trees (eight, fewer in the last).
    #[inline(always)]
    fn walk<const NAN: bool>(&self, x: &[f32; MAX_FEATURES], mut done: impl FnMut(usize, &[usize])) {
        let internal = (1usize << self.depth) - 1;
        for g in 0..self.n_trees.div_ceil(LANES) {
            let splits = &self.splits[g * internal * LANES..(g + 1) * internal * LANES];
            // slot = LANES * p + lane; p = 2p + 1 + left becomes the update below.
            let mut slot: [usize; LANES] = core::array::from_fn(|k| k);
            for _ in 0..self.depth {
                for (k, sl) in slot.iter_mut().enumerate() {
                    let s = &splits[*sl];
                    let v = x[usize::from(s.feature)];
                    // LANES * left: the sign bit moved to bit 3.
                    let mut left8 = ((v - s.threshold).to_bits() >> 28) as usize & LANES;
                    if NAN && v.is_nan() {
                        left8 = LANES * usize::from(s.default_left);
                    }
                    *sl = 2 * *sl + (LANES - k) + left8;
                }
            }
            done(g, &slot[..(self.n_trees - g * LANES).min(LANES)]);
        }
    }

    /// The score in [0, 1], bit for bit [`TreeEnsemble::score`].
    pub fn score(&self, xs: &[f32]) -> f64 {
        self.output(self.leaf_sum(xs))
    }

    /// [`CompiledTrees::score`] from the leaves a walk already found (`leaves` as
    /// [`CompiledTrees::leaf_positions`] gives them): their values summed in tree order, the same
    /// additions as the walk's, so the same bits.
    pub fn score_at(&self, leaves: &[u32]) -> f64 {
        let internal = (1usize << self.depth) - 1;
        let mut sum = 0.0f64;
        for (t, &leaf) in leaves.iter().enumerate() {
            let at = leaf_slot(internal, t, (leaf as usize).max(internal));
            sum += f64::from(self.leaves.get(at).copied().unwrap_or(0.0));
        }
        self.output(sum)
    }

    /// The score from the sum of the leaves.
    fn output(&self, sum: f64) -> f64 {
        match self.output {
            TreeOutput::Logistic => super::sigmoid(self.base_margin + sum),
            TreeOutput::Average => self.base_margin + sum / self.n_trees.max(1) as f64,
        }
    }
}

/// Where tree `tree`'s leaf at position `pos` (at least `internal`, the splits above the bottom)
/// of its complete tree lies in [`CompiledTrees`]' leaf values: per group of [`LANES`] trees,
/// `internal + 1` positions of `LANES` interleaved values.
fn leaf_slot(internal: usize, tree: usize, pos: usize) -> usize {
    let (group, lane) = (tree / LANES, tree % LANES);
    (group * (internal + 1) + pos - internal) * LANES + lane
}

/// Lays every tree of `trees` out as a complete binary tree of depth `depth` (the children of
/// position `p` are `2p + 1` on the right and `2p + 2` on the left): calls `visit(tree, position,
/// node index)` for each position, tree by tree. A leaf above the bottom stands at every position under
/// its own, so a split position may hold a leaf (a pushed-down leaf: no split there).
pub(super) fn expand(trees: &TreeEnsemble, depth: u32, mut visit: impl FnMut(usize, usize, usize)) {
    let internal = (1usize << depth) - 1;
    let mut stack = Vec::new();
    for (t, &root) in trees.roots.iter().enumerate() {
        stack.push((root as usize, 0usize));
        while let Some((node, pos)) = stack.pop() {
            visit(t, pos, node);
            if pos >= internal {
                continue;
            }
            let n = &trees.nodes[node];
            let (right, left) =
                if n.feature == LEAF { (node, node) } else { (n.right as usize, n.left as usize) };
            stack.push((right, 2 * pos + 1));
            stack.push((left, 2 * pos + 2));
        }
    }
}

/// [`TreeEnsemble::leaf_sum`] over f32 features.
fn reference_sum(trees: &TreeEnsemble, xs: &[f32]) -> f64 {
    let mut sum = 0.0f64;
    for &root in &trees.roots {
        let mut at = root as usize;
        loop {
            let n = &trees.nodes[at];
            if n.feature == LEAF {
                break;
            }
            let x = xs.get(usize::from(n.feature)).copied().unwrap_or(f32::NAN);
            let left = if x.is_nan() { n.default_left } else { x < n.value };
            at = if left { n.left } else { n.right } as usize;
        }
        sum += f64::from(trees.nodes[at].value);
    }
    sum
}

/// The features as f32 (what every split compares), into `xs`.
pub fn to_f32(features: &[f64], xs: &mut Vec<f32>) {
    xs.clear();
    xs.extend(features.iter().map(|&x| x as f32));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Node;
    use alloc::vec;

    /// A random valid ensemble: `trees` trees of depth up to `depth` over `nf` features.
    pub(crate) fn random_trees(seed: u64, trees: usize, depth: u32, nf: u16) -> TreeEnsemble {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let mut nodes = Vec::new();
        let mut roots = Vec::new();
        for _ in 0..trees {
            roots.push(nodes.len() as u32);
            // Breadth first: (depth of each pending node).
            let mut pending = vec![0u32];
            let mut k = 0;
            while k < pending.len() {
                let d = pending[k];
                let at = nodes.len();
                if d >= depth || (d > 0 && next().is_multiple_of(4)) {
                    nodes.push(Node::leaf((next() % 2000) as f32 / 1000.0 - 1.0, (1 + next() % 50) as f32));
                } else {
                    let left = (at + pending.len() - k) as u32;
                    nodes.push(Node {
                        feature: (next() % u32::from(nf)) as u16,
                        default_left: next().is_multiple_of(2),
                        value: (next() % 100) as f32 / 10.0,
                        left,
                        right: left + 1,
                    });
                    pending.push(d + 1);
                    pending.push(d + 1);
                }
                k += 1;
            }
        }
        TreeEnsemble {
            n_features: usize::from(nf),
            nodes,
            roots,
            base_margin: -0.5,
            output: TreeOutput::Logistic,
        }
    }

    #[test]
    fn compiled_trees_give_the_reference_bits() {
        for seed in 0..20 {
            let mut t = random_trees(seed, 1 + seed as usize * 3, 1 + (seed % 7) as u32, 5);
            if seed % 2 == 1 {
                t.output = TreeOutput::Average;
            }
            let c = CompiledTrees::new(&t);
            let (mut xs, mut leaves) = (Vec::new(), Vec::new());
            for i in 0..200usize {
                let row: Vec<f64> = (0..5)
                    .map(|f| {
                        if (i + f).is_multiple_of(11) {
                            f64::NAN
                        } else {
                            ((i * 7 + f * 13) % 100) as f64 / 10.0
                        }
                    })
                    .collect();
                to_f32(&row, &mut xs);
                assert_eq!(c.score(&xs).to_bits(), t.score(&row).to_bits(), "seed {seed} row {i}");
                // The score from the leaves a walk found: the same bits.
                assert!(c.leaf_positions(&xs, &mut leaves));
                assert_eq!(c.score_at(&leaves).to_bits(), t.score(&row).to_bits(), "seed {seed} row {i}");
            }
        }
    }

    #[test]
    fn very_deep_trees_still_reach_their_leaves() {
        // A chain of 300 splits on feature 0: the walk must go past 255 steps.
        let mut nodes = Vec::new();
        for i in 0..300u32 {
            let at = nodes.len() as u32;
            nodes.push(Node {
                feature: 0,
                default_left: false,
                value: i as f32,
                left: at + 1,
                right: at + 2,
            });
            nodes.push(Node::leaf(-(i as f32), 1.0));
        }
        // Replace the chain's links: split i's right child is split i+1.
        let n = nodes.len() as u32;
        for i in 0..300u32 {
            nodes[2 * i as usize].left = 2 * i + 1;
            nodes[2 * i as usize].right = if i + 1 < 300 { 2 * i + 2 } else { n };
        }
        nodes.push(Node::leaf(1000.0, 1.0));
        let t = TreeEnsemble {
            n_features: 1,
            nodes,
            roots: vec![0],
            base_margin: 0.0,
            output: TreeOutput::Logistic,
        };
        let c = CompiledTrees::new(&t);
        for x in [0.5f64, 120.5, 299.5, 1e9] {
            assert_eq!(c.leaf_sum(&[x as f32]), t.leaf_sum(&[x]), "x = {x}");
        }
    }

    #[test]
    fn negative_zero_is_not_below_a_zero_threshold() {
        let t = TreeEnsemble::stump(1, 0.0, false, Node::leaf(-1.0, 1.0), Node::leaf(1.0, 1.0));
        let c = CompiledTrees::new(&t);
        for x in [-0.0f64, 0.0] {
            assert_eq!(c.leaf_sum(&[x as f32]), t.leaf_sum(&[x]), "x = {x:?}");
            assert_eq!(c.leaf_sum(&[x as f32]), 1.0, "x = {x:?} is not below 0.0: right");
        }
    }
}
