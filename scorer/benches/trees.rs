//! Tree evaluation and attribution alone, on a random 300-tree depth-6 ensemble over 15 features
//! (`cargo bench -p scorer --bench trees`). No snapshot, no wasm: the quick loop for work on the
//! evaluator. The full path, natively and in wasmtime, is `cargo bench -p scorer-wasm`.

use scorer::model::{CompiledTrees, Node, TreeEnsemble, TreeExplainer, TreeOutput, to_f32};
use std::hint::black_box;
use std::time::Instant;

const FEATURES: usize = 15;

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Full trees of depth `depth`, breadth first, thresholds uniform in [0, 10).
fn ensemble(rng: &mut Rng, trees: usize, depth: u32) -> TreeEnsemble {
    let mut nodes = Vec::new();
    let mut roots = Vec::new();
    for _ in 0..trees {
        let base = nodes.len() as u32;
        roots.push(base);
        let internal = (1u32 << depth) - 1;
        for i in 0..(2 * internal + 1) {
            if i < internal {
                nodes.push(Node {
                    feature: (rng.next() % FEATURES as u64) as u16,
                    default_left: rng.next().is_multiple_of(2),
                    value: (rng.unit() * 10.0) as f32,
                    left: base + 2 * i + 1,
                    right: base + 2 * i + 2,
                });
            } else {
                nodes.push(Node::leaf((rng.unit() - 0.5) as f32 / 10.0, 1.0 + (rng.next() % 100) as f32));
            }
        }
    }
    TreeEnsemble { n_features: FEATURES, nodes, roots, base_margin: -2.0, output: TreeOutput::Logistic }
}

fn per_row(rows: usize, rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_nanos() as f64 / rows as f64);
    }
    best
}

fn main() {
    // `--quick`: one short round each, for `valgrind --tool=callgrind` (instructions per row are
    // then the inclusive cost of `CompiledTrees::score` etc. over the calls).
    let quick = std::env::args().any(|a| a == "--quick");
    let (n_rows, rounds, shap_rows) = if quick { (500, 1, 20) } else { (2_000, 20, 200) };
    let mut rng = Rng(7);
    let trees = ensemble(&mut rng, 300, 6);
    let rows: Vec<Vec<f64>> =
        (0..n_rows).map(|_| (0..FEATURES).map(|_| rng.unit() * 10.0).collect()).collect();
    let compiled = CompiledTrees::new(&trees);
    let portable = CompiledTrees::portable(&trees);
    let mut explainer = TreeExplainer::new(&trees).expect("covers");
    let mut xs = Vec::new();
    let mut phi = vec![0.0; FEATURES];
    let reference = per_row(rows.len(), rounds, || {
        for r in &rows {
            black_box(trees.score(black_box(r)));
        }
    });
    let fast = per_row(rows.len(), rounds, || run_compiled(&compiled, &rows, &mut xs));
    let scalar = per_row(rows.len(), rounds, || run_portable(&portable, &rows, &mut xs));
    let path = per_row(rows.len(), rounds, || {
        for r in &rows {
            phi.fill(0.0);
            explainer.path(&trees, black_box(r), &mut phi);
        }
    });
    let shap = per_row(shap_rows, rounds, || {
        for r in &rows[..shap_rows] {
            phi.fill(0.0);
            explainer.shap(&trees, black_box(r), &mut phi);
        }
    });
    println!("300 full trees of depth 6 ({} nodes), best of rounds, ns per row:", trees.nodes.len());
    println!("| what | ns/row | vs compiled |");
    println!("|---|---|---|");
    for (name, ns) in [
        ("reference walk (Model::score)", reference),
        ("compiled trees (AVX2 where the CPU has it)", fast),
        ("compiled trees, scalar walk (what scorer.wasm runs)", scalar),
        ("path attribution", path),
        ("exact TreeSHAP", shap),
    ] {
        println!("| {name} | {ns:.0} | {:.1}x |", ns / fast);
    }
}

/// Scores `rows` with `compiled`.
#[inline(always)]
fn score_rows(compiled: &CompiledTrees, rows: &[Vec<f64>], xs: &mut Vec<f32>) {
    for r in rows {
        to_f32(black_box(r), xs);
        black_box(compiled.score(xs));
    }
}

/// [`score_rows`] for [`CompiledTrees::new`], in a function of its own so that callgrind
/// (`--toggle-collect=trees::run_compiled`) counts it apart.
#[inline(never)]
fn run_compiled(compiled: &CompiledTrees, rows: &[Vec<f64>], xs: &mut Vec<f32>) {
    // Distinct bodies: identical functions would be folded into one symbol.
    black_box("compiled");
    score_rows(compiled, rows, xs);
}

/// The same for [`CompiledTrees::portable`] (`--toggle-collect=trees::run_portable`).
#[inline(never)]
fn run_portable(portable: &CompiledTrees, rows: &[Vec<f64>], xs: &mut Vec<f32>) {
    black_box("portable");
    score_rows(portable, rows, xs);
}
