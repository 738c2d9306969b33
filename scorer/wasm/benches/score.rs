//! Time per score of a 300-tree, depth-6 GBDT over the handbook's 15 features, natively, in
//! wasmtime and in tract, one transaction at a time, printed as a table (`cargo bench -p
//! scorer-wasm --bench score`).
//!
//! The model is trained by `models::GbdtConfig` on the training week of a simulated handbook
//! history (histogram splits, 256 bins), its leaf covers set from the training rows, and cached
//! under `<target>/bench/` (delete it to retrain). The requests are the parity corpus's
//! (`tollgate_tests::parity`): real transactions of the 15 days after the snapshot, MessagePack.
//!
//! Options (after `--`):
//! - `--only=NAME` runs one measurement alone (`reference`, `compiled`, `portable`, `score`, `wire`, `wasm`,
//!   `wasm-path`, `tract`, `path`, `shap`), for `valgrind --tool=callgrind --toggle-collect='score::run_*'`
//!   to count instructions per score: the collected instructions over `(rounds + 1) x items`,
//!   both printed (see docs/benchmarks.md);
//! - `--rounds=N` timed rounds (default 15; each measurement also runs once to warm up);
//! - `--export=DIR` writes the model and its inputs for other engines, then stops: `model.json`
//!   (the GBDT as an XGBoost JSON model, checked by importing it back), `rows.f32` (the feature
//!   rows the model sees, little-endian f32, 15 a row), `scores.f64` (our score of each row);
//! - `--onnx=FILE` adds tract-onnx running that ONNX model (the same GBDT, converted by
//!   `benchsuite/scorer/`) over the first 100 of the same rows (it takes ~10 ms a row);
//! - `--json=FILE` also writes the results as JSON (for `benchsuite/scorer/scorer_peers.py`).

use anyhow::{Context, Result, bail, ensure};
use exporter::NoProgress;
use exporter::features::{Cadence, compute_features};
use exporter::simulate::{SimulationConfig, simulate};
use models::{GbdtConfig, Holdout, SplitMethod};
use scorer::features::FeatureSchema;
use scorer::model::{CompiledTrees, LEAF, Model, TreeEnsemble, TreeOutput, to_f32};
use scorer::score::{Request, Scorer, TreeAttribution};
use scorer::snapshot::Snapshot;
use serde_json::{Value, json};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tollgate_tests::parity::{fixture, signer};
use tract_onnx::prelude::{
    DatumExt, Framework, InferenceModelExt, IntoRunnable, IntoTValue, TValue, Tensor, TypedSimpleState, tvec,
};
use wasmtime::{Engine, Linker, Memory, Module, Store, TypedFunc};

const TREES: usize = 300;
const DEPTH: u32 = 6;
/// Timed rounds per measurement by default; the table shows the median and the best.
const ROUNDS: usize = 15;
/// Rows tract scores per round (it takes about 20 ms a row on this model).
const TRACT_ROWS: usize = 100;

/// The command line (after `--`).
struct Args {
    only: Option<String>,
    rounds: usize,
    export: Option<PathBuf>,
    onnx: Option<PathBuf>,
    json: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args { only: None, rounds: ROUNDS, export: None, onnx: None, json: None };
        // cargo bench passes `--bench` to harness-less benches.
        for arg in std::env::args().skip(1).filter(|a| a != "--bench") {
            let (key, value) = arg.split_once('=').with_context(|| format!("unknown argument {arg:?}"))?;
            match key {
                "--only" => args.only = Some(value.to_owned()),
                "--rounds" => args.rounds = value.parse().with_context(|| format!("--rounds={value}"))?,
                "--export" => args.export = Some(value.into()),
                "--onnx" => args.onnx = Some(value.into()),
                "--json" => args.json = Some(value.into()),
                _ => bail!("unknown argument {arg:?} (see the doc comment of scorer/wasm/benches/score.rs)"),
            }
        }
        Ok(args)
    }
}

/// One measurement: its `--only` name, what it is, items per run, nanoseconds per item per round.
struct Measured {
    key: &'static str,
    label: &'static str,
    items: usize,
    ns: Vec<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse()?;
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
    // The feature vectors the model sees for these requests (a hard rule decides the others).
    let mut rows = Vec::new();
    for r in &requests {
        if scorer.score(r)?.score.is_some() {
            rows.push(scorer.features().to_vec());
        }
    }
    let compiled = CompiledTrees::new(trees);
    let portable = CompiledTrees::portable(trees);
    if let Some(dir) = &args.export {
        return export(dir, trees, &compiled, &rows);
    }
    let rounds = args.rounds;
    let mut results: Vec<Measured> = Vec::new();
    let want = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
    let mut measure = |key: &'static str, label: &'static str, items: usize, f: &mut dyn FnMut()| {
        if want(key) {
            results.push(Measured { key, label, items, ns: time(items, rounds, f) });
        }
    };

    measure("reference", "model: Model::score (reference walk, f64 features)", rows.len(), &mut || {
        run_reference(&model, &rows)
    });
    let mut xs = Vec::new();
    measure(
        "compiled",
        "model: compiled trees (f32 features, 8 trees at a time; AVX2 where the CPU has it)",
        rows.len(),
        &mut || run_compiled(&compiled, &rows, &mut xs),
    );
    measure(
        "portable",
        "model: compiled trees, scalar walk (what scorer.wasm runs)",
        rows.len(),
        &mut || run_portable(&portable, &rows, &mut xs),
    );
    measure(
        "score",
        "full score: Scorer::score (lookups, features, model, policy; reasons off)",
        requests.len(),
        &mut || run_score(&mut scorer, &requests),
    );
    let mut out = Vec::with_capacity(1024);
    measure(
        "wire",
        "full score, wire: Scorer::score_bytes (MessagePack in and out; reasons off)",
        msgpack.len(),
        &mut || run_wire(&mut scorer, &msgpack, &mut out),
    );
    for (key, reasons, label) in [
        ("wasm", 0, "full score, wasmtime: tg_score (MessagePack in and out; reasons off)"),
        ("wasm-path", 3, "full score + 3 reasons, path attribution, wasmtime: tg_score (MessagePack)"),
    ] {
        if want(key) {
            let mut guest = Guest::new(&fixture.snapshot, reasons)?;
            let placed: Vec<(u32, u32)> =
                msgpack.iter().map(|r| Ok((guest.put(r)?, r.len() as u32))).collect::<Result<_>>()?;
            measure(key, label, placed.len(), &mut || run_wasm(&mut guest, &placed));
        }
    }
    let mut tract_diff = None;
    if let Some(onnx) = args.onnx.as_deref().filter(|_| want("tract")) {
        // tract takes milliseconds a row: the first rows only.
        let mut tract = Tract::new(onnx, &compiled, &rows[..TRACT_ROWS.min(rows.len())])?;
        tract_diff = Some(tract.diff);
        measure(
            "tract",
            "model: tract-onnx 0.23, the same GBDT as ONNX (TreeEnsembleClassifier)",
            tract.inputs.len(),
            &mut || run_tract(&mut tract),
        );
    }
    for (key, how, label) in [
        ("path", TreeAttribution::Path, "full score + 3 reasons, path attribution (default)"),
        ("shap", TreeAttribution::Shap, "full score + 3 reasons, exact TreeSHAP"),
    ] {
        if want(key) {
            scorer.set_top_reasons(3);
            scorer.set_tree_attribution(how);
            // TreeSHAP is slow: a tenth of the requests.
            let n = if key == "shap" { requests.len() / 10 } else { requests.len() };
            measure(key, label, n, &mut || run_score(&mut scorer, &requests[..n]));
            scorer.set_top_reasons(0);
        }
    }

    println!(
        "\nscorer: {TREES}-tree depth-{DEPTH} GBDT ({nodes} nodes), {} feature rows, {} requests ({} reach the \
         model), {rounds} rounds",
        rows.len(),
        requests.len(),
        rows.len(),
    );
    println!("| what | median ns/score | best ns/score |");
    println!("|---|---|---|");
    for m in &results {
        println!("| {} | {:.0} | {:.0} |", m.label, median(&m.ns), best(&m.ns));
    }
    let get = |key: &str| results.iter().find(|m| m.key == key).map(|m| median(&m.ns));
    if let (Some(native), Some(wasm)) = (get("wire"), get("wasm")) {
        println!("wasmtime / native (wire path): {:.2}x", wasm / native);
    }
    if let (Some(reference), Some(compiled)) = (get("reference"), get("compiled")) {
        println!("compiled / reference model walk: {:.2}x faster", reference / compiled);
    }
    if let (Some(tract), Some(compiled)) = (get("tract"), get("compiled")) {
        println!("compiled trees / tract: {:.1}x faster", tract / compiled);
    }
    if let [m] = &results[..] {
        // For callgrind: instructions per item = the collected instructions / (runs x items).
        println!("callgrind: run_{} ran {} times over {} items", m.key, rounds + 1, m.items);
    }
    if let Some(path) = &args.json {
        let results: Vec<Value> = results
            .iter()
            .map(|m| {
                let diff = if m.key == "tract" { tract_diff } else { None };
                json!({"key": m.key, "label": m.label, "items": m.items, "runs": rounds + 1,
                       "median_ns": median(&m.ns), "best_ns": best(&m.ns), "ns": m.ns, "max_abs_diff": diff})
            })
            .collect();
        let doc = json!({"trees": TREES, "depth": DEPTH, "nodes": nodes, "rows": rows.len(),
                         "requests": requests.len(), "results": results});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| path.display().to_string())?;
    }
    Ok(())
}

/// Nanoseconds per item of each of `rounds` runs of `f` over `n` items (after one warm-up).
fn time(n: usize, rounds: usize, f: &mut dyn FnMut()) -> Vec<f64> {
    f();
    (0..rounds)
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
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

#[inline(never)]
fn run_reference(model: &Model, rows: &[Vec<f64>]) {
    for r in rows {
        black_box(model.score(black_box(r)));
    }
}

#[inline(always)]
fn score_rows(compiled: &CompiledTrees, rows: &[Vec<f64>], xs: &mut Vec<f32>) {
    for r in rows {
        to_f32(black_box(r), xs);
        black_box(compiled.score(xs));
    }
}

#[inline(never)]
fn run_compiled(compiled: &CompiledTrees, rows: &[Vec<f64>], xs: &mut Vec<f32>) {
    score_rows(compiled, rows, xs);
}

#[inline(never)]
fn run_portable(portable: &CompiledTrees, rows: &[Vec<f64>], xs: &mut Vec<f32>) {
    // Not the same body as `run_compiled`, which would fold the two into one symbol.
    black_box("portable");
    score_rows(portable, rows, xs);
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

#[inline(never)]
fn run_tract(tract: &mut Tract) {
    for input in &tract.inputs {
        let _ = black_box(tract.state.run(tvec![input.clone()]));
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

/// Writes the model and the rows for the peers (see the module docs), after checking that the
/// XGBoost JSON imports back to the same scores.
fn export(dir: &Path, trees: &TreeEnsemble, compiled: &CompiledTrees, rows: &[Vec<f64>]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let model_json = serde_json::to_vec(&xgboost_json(trees)?)?;
    let imported = models::import::xgboost::from_json(&model_json)?.model;
    let (mut features, mut scores, mut xs) = (Vec::new(), Vec::new(), Vec::new());
    let mut worst = 0.0f64;
    for row in rows {
        to_f32(row, &mut xs);
        let score = compiled.score(&xs);
        worst = worst.max((imported.score(row) - score).abs());
        features.extend(xs.iter().flat_map(|x| x.to_le_bytes()));
        scores.extend(score.to_le_bytes());
    }
    // The base score travels as an f32 probability: a margin a few 1e-8 off.
    ensure!(worst < 1e-6, "the exported XGBoost model scores up to {worst:e} off ours");
    std::fs::write(dir.join("model.json"), &model_json)?;
    std::fs::write(dir.join("rows.f32"), &features)?;
    std::fs::write(dir.join("scores.f64"), &scores)?;
    eprintln!(
        "exported the bench GBDT ({} trees, {} nodes) as XGBoost JSON and {} rows of {} features to {} \
         (re-imported: max |score diff| {worst:.1e})",
        trees.roots.len(),
        trees.nodes.len(),
        rows.len(),
        trees.n_features,
        dir.display()
    );
    Ok(())
}

/// A gradient-boosted [`TreeEnsemble`] as an XGBoost JSON model (the format of xgboost 3.2's
/// `Booster.save_model("model.json")`), `binary:logistic`: XGBoost's split rule is the scorer's
/// (`x < threshold` on f32, NaN the default way), so the trees carry over node for node.
fn xgboost_json(ensemble: &TreeEnsemble) -> Result<Value> {
    ensure!(ensemble.output == TreeOutput::Logistic, "only gradient-boosted trees export to XGBoost");
    let n_features = ensemble.n_features;
    let mut trees = Vec::new();
    for (id, &root) in ensemble.roots.iter().enumerate() {
        // Breadth-first, so that parents come before children.
        let mut order = vec![root as usize];
        let mut parent = vec![i64::from(i32::MAX)];
        let mut i = 0;
        while i < order.len() {
            let node = &ensemble.nodes[order[i]];
            if node.feature != LEAF {
                for child in [node.left, node.right] {
                    order.push(child as usize);
                    parent.push(i as i64);
                }
            }
            i += 1;
        }
        let local = |global: u32| order.iter().position(|&g| g == global as usize).map_or(-1, |p| p as i64);
        let (mut left, mut right, mut feature, mut condition, mut default_left) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut base_weight = Vec::new();
        for &g in &order {
            let n = &ensemble.nodes[g];
            let leaf = n.is_leaf();
            left.push(if leaf { -1 } else { local(n.left) });
            right.push(if leaf { -1 } else { local(n.right) });
            feature.push(if leaf { 0 } else { n.feature });
            condition.push(n.value);
            default_left.push(u8::from(!leaf && n.default_left));
            base_weight.push(if leaf { n.value } else { 0.0 });
        }
        // Covers: the leaves' own, a split's the sum of its children's (children come later).
        let mut hessian: Vec<f32> = order.iter().map(|&g| ensemble.nodes[g].leaf_cover()).collect();
        for p in (0..order.len()).rev() {
            if left[p] >= 0 {
                hessian[p] = hessian[left[p] as usize] + hessian[right[p] as usize];
            }
        }
        let len = order.len();
        trees.push(json!({
            "base_weights": base_weight, "categories": [], "categories_nodes": [],
            "categories_segments": [], "categories_sizes": [], "default_left": default_left, "id": id,
            "left_children": left, "loss_changes": vec![0.0f32; len], "parents": parent,
            "right_children": right, "split_conditions": condition, "split_indices": feature,
            "split_type": vec![0; len], "sum_hessian": hessian,
            "tree_param": {"num_deleted": "0", "num_feature": n_features.to_string(),
                           "num_nodes": len.to_string(), "size_leaf_vector": "1"},
        }));
    }
    let n_trees = trees.len();
    // binary:logistic keeps the base score as a probability.
    let base_score = (1.0 / (1.0 + (-ensemble.base_margin).exp())) as f32;
    Ok(json!({
        "learner": {
            "attributes": {}, "feature_names": [], "feature_types": [],
            "gradient_booster": {
                "model": {
                    "cats": {"enc": [], "feature_segments": [], "sorted_idx": []},
                    "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": n_trees.to_string()},
                    "iteration_indptr": (0..=n_trees).collect::<Vec<_>>(),
                    "tree_info": vec![0; n_trees],
                    "trees": trees,
                },
                "name": "gbtree",
            },
            "learner_model_param": {"base_score": format!("[{base_score:e}]"), "boost_from_average": "1",
                                    "num_class": "0", "num_feature": n_features.to_string(), "num_target": "1"},
            "objective": {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "1"}},
        },
        "version": [3, 2, 0],
    }))
}

/// tract-onnx running the ONNX conversion of the GBDT, one row per run, its state kept between
/// runs, inputs made before the clock starts.
struct Tract {
    state: TypedSimpleState,
    inputs: Vec<TValue>,
    /// The largest difference between tract's scores and ours.
    diff: f64,
}

impl Tract {
    fn new(onnx: &Path, compiled: &CompiledTrees, rows: &[Vec<f64>]) -> Result<Tract> {
        let n = compiled.n_features();
        let plan = tract_onnx::onnx()
            .model_for_path(onnx)
            .with_context(|| onnx.display().to_string())?
            .with_input_fact(0, f32::fact([1, n]).into())?
            .into_optimized()?
            .into_runnable()?;
        let mut state = plan.spawn()?;
        let mut inputs = Vec::with_capacity(rows.len());
        let (mut xs, mut worst) = (Vec::new(), 0.0f64);
        for row in rows {
            to_f32(row, &mut xs);
            let input = Tensor::from_shape(&[1, n], &xs)?.into_tvalue();
            // Outputs: the label, then the probabilities of classes 0 and 1.
            let out = state.run(tvec![input.clone()])?;
            let p = out.last().context("the ONNX model has no output")?.to_plain_array_view::<f32>()?;
            let p = *p.iter().last().context("empty probabilities")?;
            worst = worst.max((f64::from(p) - compiled.score(&xs)).abs());
            inputs.push(input);
        }
        ensure!(worst < 1e-5, "tract's scores are up to {worst:e} off ours");
        eprintln!("tract-onnx: {} rows, max |score diff| vs ours {worst:.1e}", rows.len());
        Ok(Tract { state, inputs, diff: worst })
    }
}

/// `scorer.wasm` in wasmtime with the bench snapshot loaded, giving `reasons` reasons a score.
struct Guest {
    store: Store<()>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    score: TypedFunc<(u32, u32), u64>,
}

impl Guest {
    fn new(snapshot: &[u8], reasons: u32) -> Result<Guest> {
        let path = tollgate_tests::scorer_wasm()?;
        let engine = Engine::default();
        let module =
            Module::from_file(&engine, &path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut store = Store::new(&engine, ());
        // The host's imports (ed25519 and BLAKE3 for the snapshot checks), as the host gives them.
        let mut linker = Linker::new(&engine);
        host::imports::add_imports(&mut linker)?;
        let instance = linker.instantiate(&mut store, &module)?;
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
        let set_reasons = instance.get_typed_func::<u32, ()>(&mut guest.store, "tg_set_reasons")?;
        set_reasons.call(&mut guest.store, reasons)?;
        Ok(guest)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<u32> {
        let ptr = self.alloc.call(&mut self.store, bytes.len() as u32)?;
        ensure!(ptr != 0, "tg_alloc({}) returned 0", bytes.len());
        self.memory.write(&mut self.store, ptr as usize, bytes)?;
        Ok(ptr)
    }
}
