//! Time per score of a 300-tree, depth-6 GBDT over the handbook's 15 features, natively and in
//! wasmtime, one transaction at a time, printed as a table (`cargo bench -p scorer-wasm`).
//!
//! The model is trained by `models::GbdtConfig` on the training week of a simulated handbook
//! history (histogram splits, 256 bins), its leaf covers set from the training rows, and cached
//! under `<target>/bench/` (delete it to retrain). The requests are the parity corpus's
//! (`tollgate_tests::parity`): real transactions of the 15 days after the snapshot, MessagePack.
//!
//! `--only=NAME` runs one measurement alone, for `valgrind --tool=callgrind
//! --toggle-collect='score::run_*'` to count instructions per score (see docs/benchmarks.md).

use anyhow::{Context, Result, ensure};
use exporter::NoProgress;
use exporter::features::{Cadence, compute_features};
use exporter::simulate::{SimulationConfig, simulate};
use models::{GbdtConfig, Holdout, SplitMethod};
use scorer::features::FeatureSchema;
use scorer::model::{CompiledTrees, Model, TreeEnsemble, to_f32};
use scorer::score::{Request, Scorer, TreeAttribution};
use scorer::snapshot::Snapshot;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;
use tollgate_tests::parity::{fixture, signer};
use wasmtime::{Engine, Instance, Memory, Module, Store, TypedFunc};

const TREES: usize = 300;
const DEPTH: u32 = 6;
/// Timed rounds per measurement; the table shows the median and the best.
const ROUNDS: usize = 15;

fn main() -> Result<()> {
    let only = std::env::args().find_map(|a| a.strip_prefix("--only=").map(str::to_owned));
    let model = gbdt()?;
    let Model::Trees(trees) = &model else { anyhow::bail!("the GBDT is not a tree ensemble") };
    let nodes = trees.nodes.len();
    let fixture = fixture(&model, "gbdt300-bench")?;
    let snapshot = Snapshot::load(&fixture.snapshot, &[signer().edge_key()])?;
    let mut scorer = Scorer::new(snapshot);
    scorer.set_top_reasons(0);
    let msgpack: Vec<&Vec<u8>> = fixture
        .requests
        .iter()
        .filter(|r| r.first().is_some_and(|&b| b & 0xf0 == 0x80))
        .take(4_000)
        .collect();
    let requests: Vec<Request<'_>> = msgpack.iter().filter_map(|r| scorer.decode_request(r).ok()).collect();
    ensure!(requests.len() > 1_000, "only {} requests decode", requests.len());
    // The feature vectors the model sees for these requests.
    let mut rows = Vec::new();
    for r in &requests {
        if scorer.score(r)?.score.is_some() {
            rows.push(scorer.features().to_vec());
        }
    }
    let compiled = CompiledTrees::new(trees);
    let mut results: Vec<(&str, Vec<f64>)> = Vec::new();
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);

    if want("reference") {
        results.push((
            "model: Model::score (reference walk)",
            time(rows.len(), || run_reference(&model, &rows)),
        ));
    }
    if want("compiled") {
        let mut xs = Vec::new();
        results.push((
            "model: compiled trees (f32 features, 8 trees at a time)",
            time(rows.len(), || run_compiled(&compiled, &rows, &mut xs)),
        ));
    }
    if want("score") {
        results.push((
            "full score: Scorer::score (lookups, features, model, policy; reasons off)",
            time(requests.len(), || run_score(&mut scorer, &requests)),
        ));
    }
    if want("wire") {
        let mut out = Vec::with_capacity(1024);
        results.push((
            "full score, wire: Scorer::score_bytes (MessagePack in and out; reasons off)",
            time(msgpack.len(), || run_wire(&mut scorer, &msgpack, &mut out)),
        ));
    }
    if want("wasm") {
        let mut guest = Guest::new(&fixture.snapshot)?;
        let placed: Vec<(u32, u32)> =
            msgpack.iter().map(|r| Ok((guest.put(r)?, r.len() as u32))).collect::<Result<_>>()?;
        results.push((
            "full score, wasmtime: tg_score (MessagePack in and out; reasons off)",
            time(placed.len(), || run_wasm(&mut guest, &placed)),
        ));
    }
    for (name, how, label) in [
        ("path", TreeAttribution::Path, "full score + 3 reasons, path attribution (default)"),
        ("shap", TreeAttribution::Shap, "full score + 3 reasons, exact TreeSHAP"),
    ] {
        if want(name) {
            scorer.set_top_reasons(3);
            scorer.set_tree_attribution(how);
            // TreeSHAP is slow: a tenth of the requests.
            let n = if name == "shap" { requests.len() / 10 } else { requests.len() };
            results.push((label, time(n, || run_score(&mut scorer, &requests[..n]))));
            scorer.set_top_reasons(0);
        }
    }

    println!(
        "\nscorer: {TREES}-tree depth-{DEPTH} GBDT ({nodes} nodes), {} feature rows, {} requests, {ROUNDS} rounds",
        rows.len(),
        requests.len()
    );
    println!("| what | median ns/score | best ns/score |");
    println!("|---|---|---|");
    for (name, ns) in &results {
        println!("| {name} | {:.0} | {:.0} |", median(ns), ns.iter().copied().fold(f64::INFINITY, f64::min));
    }
    let get = |prefix: &str| results.iter().find(|(n, _)| n.starts_with(prefix)).map(|(_, ns)| median(ns));
    if let (Some(native), Some(wasm)) = (get("full score, wire"), get("full score, wasmtime")) {
        println!("wasmtime / native (wire path): {:.2}x", wasm / native);
    }
    if let (Some(reference), Some(compiled)) = (get("model: Model::score"), get("model: compiled")) {
        println!("compiled / reference model walk: {:.2}x faster", reference / compiled);
    }
    Ok(())
}

/// Nanoseconds per item of each of [`ROUNDS`] runs of `f` over `n` items (after one warm-up).
fn time(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / n.max(1) as f64
        })
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[inline(never)]
fn run_reference(model: &Model, rows: &[Vec<f64>]) {
    for r in rows {
        black_box(model.score(black_box(r)));
    }
}

#[inline(never)]
fn run_compiled(compiled: &CompiledTrees, rows: &[Vec<f64>], xs: &mut Vec<f32>) {
    for r in rows {
        to_f32(black_box(r), xs);
        black_box(compiled.score(xs));
    }
}

#[inline(never)]
fn run_score(scorer: &mut Scorer<'_>, requests: &[Request<'_>]) {
    for r in requests {
        let _ = black_box(scorer.score(black_box(r)));
    }
}

#[inline(never)]
fn run_wire(scorer: &mut Scorer<'_>, requests: &[&Vec<u8>], out: &mut Vec<u8>) {
    for r in requests {
        out.clear();
        scorer.score_bytes(black_box(r), out);
    }
}

#[inline(never)]
fn run_wasm(guest: &mut Guest, placed: &[(u32, u32)]) {
    for &(ptr, len) in placed {
        let _ = black_box(guest.score.call(&mut guest.store, (ptr, len)));
    }
}

/// Where cargo put this binary's target directory (`<target>/release/deps/score-*`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.ancestors().nth(3).context("the bench is not in a cargo target directory")?.to_path_buf())
}

/// The bench's GBDT: loaded from the cache, or trained (a few seconds) and cached.
fn gbdt() -> Result<Model> {
    let dir = target_dir()?.join("bench");
    let path = dir.join(format!("gbdt-{TREES}x{DEPTH}-covers.model"));
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(Model::decode(&bytes)?);
    }
    let t = Instant::now();
    let tx = simulate(&SimulationConfig::default(), &NoProgress)?;
    let table = compute_features(&tx, &FeatureSchema::handbook(), Cadence::Exact, &NoProgress)?;
    let split = Holdout::handbook().split(&tx, &table)?;
    let config = GbdtConfig {
        trees: TREES,
        max_depth: DEPTH,
        learning_rate: 0.1,
        split_method: SplitMethod::Histogram { max_bins: 256 },
        ..GbdtConfig::default()
    };
    let mut model = config.fit(split.train.samples()?, &NoProgress)?.model;
    if let Model::Trees(t) = &mut model {
        set_covers(t, &split.train);
    }
    eprintln!(
        "trained the bench GBDT on {} rows in {:.1} s; cached in {}",
        split.train.len(),
        t.elapsed().as_secs_f64(),
        path.display()
    );
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&path, model.encode())?;
    Ok(model)
}

fn set_covers(trees: &mut TreeEnsemble, train: &models::Dataset) {
    trees.set_leaf_covers((0..train.len()).map(|i| train.row(i)));
}

/// `scorer.wasm` in wasmtime with the bench snapshot loaded and reasons off.
struct Guest {
    store: Store<()>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    score: TypedFunc<(u32, u32), u64>,
}

impl Guest {
    fn new(snapshot: &[u8]) -> Result<Guest> {
        let path = tollgate_tests::scorer_wasm()?;
        let engine = Engine::default();
        let module =
            Module::from_file(&engine, &path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[])?;
        let memory = instance.get_memory(&mut store, "memory").context("no memory export")?;
        let mut guest = Guest {
            alloc: instance.get_typed_func(&mut store, "tg_alloc")?,
            score: instance.get_typed_func(&mut store, "tg_score")?,
            memory,
            store,
        };
        let keys = signer().edge_key().to_text();
        let set_keys = instance.get_typed_func::<(u32, u32), u32>(&mut guest.store, "tg_set_edge_keys")?;
        let ptr = guest.put(keys.as_bytes())?;
        ensure!(set_keys.call(&mut guest.store, (ptr, keys.len() as u32))? == 0, "edge key refused");
        let load = instance.get_typed_func::<(u32, u32), u32>(&mut guest.store, "tg_load_snapshot")?;
        let ptr = guest.put(snapshot)?;
        ensure!(load.call(&mut guest.store, (ptr, snapshot.len() as u32))? == 0, "snapshot refused");
        let reasons = instance.get_typed_func::<u32, ()>(&mut guest.store, "tg_set_reasons")?;
        reasons.call(&mut guest.store, 0)?;
        Ok(guest)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<u32> {
        let ptr = self.alloc.call(&mut self.store, bytes.len() as u32)?;
        ensure!(ptr != 0, "tg_alloc({}) returned 0", bytes.len());
        self.memory.write(&mut self.store, ptr as usize, bytes)?;
        Ok(ptr)
    }
}
