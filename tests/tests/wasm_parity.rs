//! `scorer.wasm` in wasmtime against the native scorer: the same snapshot and the same requests
//! (a deterministic corpus from a simulated history, unknown entities, broken requests) must give
//! byte-identical responses, and no input may trap the module.
//!
//! The module is taken from `TOLLGATE_SCORER_WASM` when set (`cargo xtask test` builds it first
//! with `cargo build -p scorer-wasm --target wasm32-unknown-unknown --profile wasm`); otherwise
//! this test builds it itself, into its own target directory next to the test binary's.

use anyhow::{Context, Result, bail, ensure};
use rmp::encode::{self as enc, ByteBuf};
use scorer::features::FeatureSchema;
use scorer::model::{Model, TreeEnsemble};
use scorer::score::{Request, Scorer};
use scorer::snapshot::Snapshot;
use std::hint::black_box;
use std::time::Instant;
use tollgate_tests::parity::{
    Fixture, Rng, fixture, fixture_with, handbook_fixture, logistic, random_trees, signer, trees,
};
use tollgate_tests::{scorer_wasm, scorer_wasm_small};
use wasmtime::{Engine, Linker, Memory, Module, Store, TypedFunc};

/// Transactions scored per run at least (the issue's parity bar).
const MIN_CORPUS: usize = 10_000;
/// Random and damaged inputs thrown at `tg_score` and `tg_score_batch`.
const FUZZ_CASES: usize = 20_000;

/// One instance of `scorer.wasm` and its exports.
struct Guest {
    store: Store<()>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), ()>,
    set_edge_keys: TypedFunc<(u32, u32), u32>,
    load_snapshot: TypedFunc<(u32, u32), u32>,
    last_error: TypedFunc<(), u64>,
    score: TypedFunc<(u32, u32), u64>,
    score_batch: TypedFunc<(u32, u32), u64>,
    version: TypedFunc<(), u32>,
    // A request buffer reused across calls, as hosts are meant to.
    buf: (u32, u32),
}

impl Guest {
    fn new(engine: &Engine, module: &Module) -> Result<Guest> {
        let mut store = Store::new(engine, ());
        // The host's imports (ed25519 and BLAKE3 for the snapshot checks), as the host gives them.
        let mut linker = Linker::new(engine);
        host::imports::add_imports(&mut linker)?;
        let instance = linker.instantiate(&mut store, module)?;
        let memory = instance.get_memory(&mut store, "memory").context("no memory export")?;
        Ok(Guest {
            memory,
            alloc: instance.get_typed_func(&mut store, "tg_alloc")?,
            free: instance.get_typed_func(&mut store, "tg_free")?,
            set_edge_keys: instance.get_typed_func(&mut store, "tg_set_edge_keys")?,
            load_snapshot: instance.get_typed_func(&mut store, "tg_load_snapshot")?,
            last_error: instance.get_typed_func(&mut store, "tg_last_error")?,
            score: instance.get_typed_func(&mut store, "tg_score")?,
            score_batch: instance.get_typed_func(&mut store, "tg_score_batch")?,
            version: instance.get_typed_func(&mut store, "tg_version")?,
            store,
            buf: (0, 0),
        })
    }

    /// Copies `bytes` into a fresh guest buffer of exactly their length.
    fn put(&mut self, bytes: &[u8]) -> Result<u32> {
        let ptr = self.alloc.call(&mut self.store, bytes.len() as u32)?;
        ensure!(ptr != 0 || bytes.is_empty(), "tg_alloc({}) returned 0", bytes.len());
        self.memory.write(&mut self.store, ptr as usize, bytes)?;
        Ok(ptr)
    }

    /// Writes a request into the reused buffer, growing it when needed.
    fn put_request(&mut self, bytes: &[u8]) -> Result<u32> {
        if bytes.len() as u32 > self.buf.1 {
            if self.buf.1 > 0 {
                self.free.call(&mut self.store, self.buf)?;
            }
            let cap = (bytes.len() as u32).next_power_of_two().max(256);
            let ptr = self.alloc.call(&mut self.store, cap)?;
            ensure!(ptr != 0, "tg_alloc({cap}) returned 0");
            self.buf = (ptr, cap);
        }
        self.memory.write(&mut self.store, self.buf.0 as usize, bytes)?;
        Ok(self.buf.0)
    }

    fn read_packed(&mut self, packed: u64) -> Result<Vec<u8>> {
        let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        let data = self.memory.data(&self.store);
        Ok(data.get(ptr..ptr + len).context("a packed result points outside memory")?.to_vec())
    }

    fn score(&mut self, request: &[u8]) -> Result<Vec<u8>> {
        let ptr = self.put_request(request)?;
        let packed = self.score.call(&mut self.store, (ptr, request.len() as u32))?;
        self.read_packed(packed)
    }

    fn score_batch(&mut self, batch: &[u8]) -> Result<Vec<u8>> {
        let ptr = self.put_request(batch)?;
        let packed = self.score_batch.call(&mut self.store, (ptr, batch.len() as u32))?;
        self.read_packed(packed)
    }

    fn set_edge_keys(&mut self, text: &str) -> Result<u32> {
        let ptr = self.put(text.as_bytes())?;
        let status = self.set_edge_keys.call(&mut self.store, (ptr, text.len() as u32))?;
        self.free.call(&mut self.store, (ptr, text.len() as u32))?;
        Ok(status)
    }

    /// Hands a snapshot over (the module owns the buffer afterwards, whatever the status).
    fn load(&mut self, snapshot: &[u8]) -> Result<u32> {
        let ptr = self.put(snapshot)?;
        Ok(self.load_snapshot.call(&mut self.store, (ptr, snapshot.len() as u32))?)
    }

    fn last_error(&mut self) -> Result<String> {
        let packed = self.last_error.call(&mut self.store, ())?;
        Ok(String::from_utf8(self.read_packed(packed)?)?)
    }

    fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }
}

fn engine_and_module() -> Result<(Engine, Module)> {
    module_at(&scorer_wasm()?)
}

/// Both builds of the module: the host's (`scorer-fast.wasm`) and the size-optimised one.
fn both_modules() -> Result<Vec<(Engine, Module)>> {
    [scorer_wasm()?, scorer_wasm_small()?].iter().map(|p| module_at(p)).collect()
}

fn module_at(path: &std::path::Path) -> Result<(Engine, Module)> {
    let engine = Engine::default();
    let module =
        Module::from_file(&engine, path).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
    // Only the host's crypto (docs/abi.md, "Imports").
    let imports: Vec<String> = module.imports().map(|i| format!("{}.{}", i.module(), i.name())).collect();
    ensure!(
        imports == ["tollgate.tg_ed25519_verify", "tollgate.tg_blake3"]
            || imports == ["tollgate.tg_blake3", "tollgate.tg_ed25519_verify"],
        "scorer.wasm must import only the host's crypto, imports {imports:?}"
    );
    Ok((engine, module))
}

fn loaded_guest(engine: &Engine, module: &Module, snapshot: &[u8]) -> Result<Guest> {
    let mut guest = Guest::new(engine, module)?;
    ensure!(guest.set_edge_keys(&signer().edge_key().to_text())? == 0, "edge key refused");
    let status = guest.load(snapshot)?;
    ensure!(status == 0, "snapshot refused ({status}): {}", guest.last_error()?);
    Ok(guest)
}

/// Compares every request's response natively and in wasmtime, one by one and in batches;
/// returns (requests, native ns per score, wasm ns per score).
fn compare(guest: &mut Guest, scorer: &mut Scorer<'_>, requests: &[Vec<u8>]) -> Result<(usize, f64, f64)> {
    let mut native = Vec::new();
    let mut wasm = Vec::new();
    let mut native_out = Vec::new();
    let t = Instant::now();
    for r in requests {
        native_out.clear();
        scorer.score_bytes(r, &mut native_out);
        native.push(native_out.clone());
    }
    let native_ns = t.elapsed().as_nanos() as f64 / requests.len() as f64;
    let t = Instant::now();
    for r in requests {
        wasm.push(guest.score(r)?);
    }
    let wasm_ns = t.elapsed().as_nanos() as f64 / requests.len() as f64;
    for (i, (n, w)) in native.iter().zip(&wasm).enumerate() {
        if n != w {
            bail!(
                "request {i} ({}) differs:\nnative {}\nwasm   {}",
                String::from_utf8_lossy(&requests[i]),
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(w)
            );
        }
    }
    // Batches of MessagePack requests and of JSON requests.
    for json in [false, true] {
        let same: Vec<&Vec<u8>> = requests
            .iter()
            .filter(|r| {
                r.first() == Some(&b'{') && json || !json && r.first().is_some_and(|&b| b & 0xf0 == 0x80)
            })
            .collect();
        for chunk in same.chunks(64) {
            let batch = if json {
                let mut b = b"[".to_vec();
                for (i, r) in chunk.iter().enumerate() {
                    if i > 0 {
                        b.push(b',');
                    }
                    b.extend_from_slice(r);
                }
                b.push(b']');
                b
            } else {
                let mut b = ByteBuf::new();
                let _ = enc::write_array_len(&mut b, chunk.len() as u32);
                let mut v = b.into_vec();
                chunk.iter().for_each(|r| v.extend_from_slice(r));
                v
            };
            native_out.clear();
            scorer.score_batch_bytes(&batch, &mut native_out);
            ensure!(native_out == guest.score_batch(&batch)?, "a batch differs");
        }
    }
    Ok((requests.len(), native_ns, wasm_ns))
}

#[test]
fn wasm_and_native_give_identical_responses_on_the_parity_corpus() -> Result<()> {
    let fixture = fixture(&logistic(), "lr-parity-v1")?;
    ensure!(fixture.requests.len() >= MIN_CORPUS, "only {} requests", fixture.requests.len());
    let snapshot = Snapshot::load(&fixture.snapshot, &[signer().edge_key()])?;
    let mut scorer = Scorer::new(snapshot);

    // The corpus must reach every path: each decision, rules, known and unknown entities, errors.
    let mut out = Vec::new();
    let count = |needle: &str, out: &mut Vec<u8>, scorer: &mut Scorer<'_>| {
        fixture
            .requests
            .iter()
            .filter(|r| r.first() == Some(&b'{'))
            .filter(|r| {
                out.clear();
                scorer.score_bytes(r, out);
                String::from_utf8_lossy(out).contains(needle)
            })
            .count()
    };
    for needle in [
        r#""decision":"allow""#,
        r#""decision":"review""#,
        r#""decision":"decline""#,
        r#""rules":["AMOUNT_CAP"]"#,
        "BLOCKED_",
        r#""CUSTOMER_ID":false"#,
        r#""TERMINAL_ID":true"#,
        r#""error_kind":"bad_request""#,
    ] {
        let n = count(needle, &mut out, &mut scorer);
        eprintln!("{needle}: {n} JSON responses");
        ensure!(n > 0, "no response in the corpus has {needle}");
    }

    for (build, (engine, module)) in ["scorer-fast.wasm", "scorer.wasm"].iter().zip(both_modules()?) {
        let mut guest = loaded_guest(&engine, &module, &fixture.snapshot)?;
        ensure!(guest.version.call(&mut guest.store, ())? >> 16 == 1, "ABI major version");
        let (n, native_ns, wasm_ns) = compare(&mut guest, &mut scorer, &fixture.requests)?;
        eprintln!(
            "parity ({build}): {n} requests identical; per score (wire path, mixed corpus): native {native_ns:.0} ns, wasmtime {wasm_ns:.0} ns (incl. copying in and out)"
        );
    }
    Ok(())
}

#[test]
fn tree_models_and_hot_swaps_stay_identical() -> Result<()> {
    let lr = fixture(&logistic(), "lr-parity-v1")?;
    let gbdt = fixture(&trees(), "gbdt-parity-v1")?;
    for (build, (engine, module)) in ["scorer-fast.wasm", "scorer.wasm"].iter().zip(both_modules()?) {
        swap_to_trees(build, &engine, &module, &lr, &gbdt)?;
    }
    Ok(())
}

/// Deep random ensembles through both builds, every response with the native bits: over 15 and 18
/// features (one and two SIMD128 swizzles, a last group of sixteen trees partly filled), and one
/// whose features have more than 255 distinct thresholds (cut into parts: three swizzles). The
/// host's build must carry the SIMD128 walk: an engine without SIMD refuses it.
#[test]
fn deep_tree_ensembles_give_native_bits_in_both_builds() -> Result<()> {
    let no_simd = Engine::new(wasmtime::Config::new().wasm_simd(false).wasm_relaxed_simd(false))?;
    let fast = scorer_wasm()?;
    ensure!(
        Module::from_file(&no_simd, &fast).is_err(),
        "{} has no SIMD128: build it with --features simd128",
        fast.display()
    );
    let ensembles = [
        (FeatureSchema::handbook(), random_trees(&FeatureSchema::handbook(), 53, 6, 40, 3)),
        (FeatureSchema::handbook_ratios(), random_trees(&FeatureSchema::handbook_ratios(), 53, 6, 40, 4)),
        (FeatureSchema::handbook(), random_trees(&FeatureSchema::handbook(), 200, 6, 100_000, 5)),
    ];
    for (schema, model) in ensembles {
        let Model::Trees(trees) = &model else { bail!("random_trees gave no trees") };
        let most = most_distinct_thresholds(trees);
        let fixture = fixture_with(&model, "random-trees", schema)?;
        let what = format!(
            "{} random trees over {} features, up to {most} distinct thresholds a feature",
            trees.roots.len(),
            trees.n_features
        );
        identical_in_both_builds(&fixture, &what)?;
        if trees.roots.len() == 200 {
            ensure!(most > 255, "the fine-grained ensemble has only {most} distinct thresholds a feature");
        }
    }
    Ok(())
}

/// The handbook's own test week (its data, not the simulator's), scored through both builds with a
/// logistic regression and with deep random trees: every response has the native bits.
#[test]
fn the_handbook_test_week_gives_native_bits_in_both_builds() -> Result<()> {
    let trees = random_trees(&FeatureSchema::handbook(), 53, 6, 1_000, 6);
    for (model, id) in [(logistic(), "lr-handbook"), (trees, "trees-handbook")] {
        let Some(fixture) = handbook_fixture(&model, id)? else { return Ok(()) };
        ensure!(fixture.requests.len() >= MIN_CORPUS, "only {} requests", fixture.requests.len());
        identical_in_both_builds(&fixture, &format!("handbook test week, {id}"))?;
    }
    Ok(())
}

/// Every request of `fixture` (`what`, for the log) scored natively and in both builds of the
/// module: the same bytes (see [`compare`]).
fn identical_in_both_builds(fixture: &Fixture, what: &str) -> Result<()> {
    let mut scorer = Scorer::new(Snapshot::load(&fixture.snapshot, &[signer().edge_key()])?);
    for (build, (engine, module)) in ["scorer-fast.wasm", "scorer.wasm"].iter().zip(both_modules()?) {
        let mut guest = loaded_guest(&engine, &module, &fixture.snapshot)?;
        let (n, native_ns, wasm_ns) = compare(&mut guest, &mut scorer, &fixture.requests)?;
        eprintln!(
            "{what} ({build}): {n} requests identical; native {native_ns:.0} ns, wasmtime {wasm_ns:.0} ns per score"
        );
    }
    Ok(())
}

/// The most distinct thresholds any one feature of `trees` splits on.
fn most_distinct_thresholds(trees: &TreeEnsemble) -> usize {
    (0..trees.n_features)
        .map(|f| {
            let mut t: Vec<u32> = trees
                .nodes
                .iter()
                .filter(|n| usize::from(n.feature) == f)
                .map(|n| n.value.to_bits())
                .collect();
            t.sort_unstable();
            t.dedup();
            t.len()
        })
        .max()
        .unwrap_or(0)
}

fn swap_to_trees(build: &str, engine: &Engine, module: &Module, lr: &Fixture, gbdt: &Fixture) -> Result<()> {
    let mut guest = loaded_guest(engine, module, &lr.snapshot)?;
    // Swap to the tree model in the same instance; a damaged snapshot in between is refused and
    // the trees keep serving.
    ensure!(guest.load(&gbdt.snapshot)? == 0, "{}", guest.last_error()?);
    let mut damaged = gbdt.snapshot.clone();
    let last = damaged.len() - 20;
    damaged[last] ^= 1;
    let status = guest.load(&damaged)?;
    ensure!(status >= 10, "a damaged snapshot was accepted ({status})");
    ensure!(guest.last_error()?.contains("snapshot"), "{}", guest.last_error()?);
    let mut scorer = Scorer::new(Snapshot::load(&gbdt.snapshot, &[signer().edge_key()])?);
    let (n, native_ns, wasm_ns) = compare(&mut guest, &mut scorer, &gbdt.requests[..4_000])?;
    eprintln!(
        "trees ({build}): {n} requests identical; native {native_ns:.0} ns, wasmtime {wasm_ns:.0} ns per score"
    );
    Ok(())
}

/// The snapshot checks run in the module with the host's crypto imports: every damaged or foreign
/// snapshot is refused with the status and text native `Snapshot::load` gives (the in-crate
/// ed25519-dalek and blake3), and the undamaged one still loads and serves afterwards.
#[test]
fn host_crypto_refuses_tampered_snapshots_exactly_as_native_code() -> Result<()> {
    use scorer::snapshot::{IdHashKey, SnapshotError, SnapshotSigner};
    let fixture = fixture(&logistic(), "lr-parity-v1")?;
    let good = &fixture.snapshot;
    let sections = u32::from_le_bytes(good[12..16].try_into()?) as usize;
    let signature_at = 64 + 64 * sections;
    let flip = |at: usize| {
        let mut bytes = good.clone();
        bytes[at] ^= 0x10;
        bytes
    };
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("a flipped signature byte", flip(signature_at + 5), 15),
        ("the signature's last byte flipped", flip(signature_at + 63), 15),
        ("a flipped byte in the signed section table (a digest)", flip(64 + 40), 15),
        ("a flipped byte in the first section", flip(signature_at + 64 + 3), 17),
        ("a flipped byte in the last section", flip(good.len() - 20), 17),
    ];
    let edge = signer().edge_key();
    let stranger = SnapshotSigner::from_secret([3; 32], IdHashKey([5; 16])).edge_key();
    for (build, (engine, module)) in ["fast", "small"].iter().zip(both_modules()?) {
        let mut guest = loaded_guest(&engine, &module, good)?;
        let request = &fixture.requests[0];
        let want = guest.score(request)?;
        for (what, bytes, status) in &cases {
            let native = match Snapshot::load(bytes, std::slice::from_ref(&edge)) {
                Err(e) => e,
                Ok(_) => bail!("{what}: native code loaded it; the case proves nothing"),
            };
            let got = guest.load(bytes)?;
            let text = guest.last_error()?;
            eprintln!("{build}: {what}: status {got}, {text}");
            ensure!(got == *status, "{build}: {what}: status {got}, want {status} ({text})");
            ensure!(text == native.to_string(), "{build}: {what}: {text:?} but native says {native}");
            ensure!(guest.score(request)? == want, "{build}: {what}: the serving snapshot changed");
        }
        // A key the edge does not trust, then a key that is not a valid ed25519 point.
        let mut other = Guest::new(&engine, &module)?;
        ensure!(other.set_edge_keys(&stranger.to_text())? == 0, "{build}: the stranger's key was refused");
        let got = other.load(good)?;
        let native = Snapshot::load(good, std::slice::from_ref(&stranger)).err().context("loaded")?;
        ensure!(matches!(native, SnapshotError::UnknownSigner { .. }), "{native}");
        ensure!(got == 14 && other.last_error()? == native.to_string(), "{build}: unknown signer: {got}");
        // A key that native code finds is no ed25519 point (about half of all y values are not).
        let bad_point = (2u8..=255)
            .map(|y| {
                let mut key = [0u8; 32];
                key[0] = y;
                key
            })
            .find(|k| !scorer::snapshot::crypto::ed25519_key_is_valid(k))
            .context("every candidate is a point")?;
        let text = edge.to_text();
        let start = text.find("verify-key = ").context("no verify-key line")? + "verify-key = ".len();
        let hex: String = bad_point.iter().map(|b| format!("{b:02x}")).collect();
        let bad = format!("{}{}{}", &text[..start], hex, &text[start + 64..]);
        let native =
            scorer::snapshot::edge_keys_from_text(&bad).err().context("native accepted a bad point")?;
        let got = other.set_edge_keys(&bad)?;
        ensure!(got == 3, "{build}: an invalid point was accepted ({got})");
        ensure!(other.last_error()? == format!("edge keys: {native}"), "{build}: {}", other.last_error()?);
        // After all that the good snapshot still loads under the trusted key.
        ensure!(other.set_edge_keys(&edge.to_text())? == 0 && other.load(good)? == 0, "{build}: reload");
        ensure!(other.score(request)? == want, "{build}: another answer after the reload");
    }
    Ok(())
}

/// Issue 5's goal for the size-optimised module as `cargo xtask test` ships it (`--profile wasm`,
/// then `wasm-opt -Oz` with the target's features; run here again on the given module, which
/// leaves an optimised one as it is): at most 100 KiB raw and 40 KiB gzipped (level 9).
#[test]
fn scorer_wasm_is_at_most_100_kib_raw_and_40_kib_gzipped() -> Result<()> {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write as _;
    const RAW_GOAL: usize = 100 * 1024;
    const GZIP_GOAL: usize = 40 * 1024;
    let module = scorer_wasm_small()?;
    let wasm_opt = tollgate_tests::worker::wasm_opt();
    let out = std::env::temp_dir().join(format!("tollgate-size-{}.wasm", std::process::id()));
    // The flags xtask passes, from the same file.
    let features =
        include_str!("../../scorer/wasm/wasm-opt.features").lines().map(str::trim).filter(|l| !l.is_empty());
    let status = std::process::Command::new(&wasm_opt)
        .arg("-Oz")
        .args(features)
        .arg(&module)
        .arg("-o")
        .arg(&out)
        .status()
        .with_context(|| format!("running {} (npm ci, or set TOLLGATE_WASM_OPT)", wasm_opt.display()))?;
    ensure!(status.success(), "wasm-opt failed on {}", module.display());
    let bytes = std::fs::read(&out);
    let _ = std::fs::remove_file(&out);
    let bytes = bytes?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&bytes)?;
    let gzip = gz.finish()?.len();
    eprintln!("scorer.wasm after wasm-opt -Oz: {} B raw, {gzip} B gzip -9", bytes.len());
    ensure!(bytes.len() <= RAW_GOAL, "scorer.wasm is {} B, over the {RAW_GOAL} B goal", bytes.len());
    ensure!(gzip <= GZIP_GOAL, "scorer.wasm is {gzip} B gzipped, over the {GZIP_GOAL} B goal");
    Ok(())
}

/// Loads a large snapshot (`LOAD_ROWS` rows per entity kind, 32 MB) natively and in both
/// modules: each must accept it; the times are printed (`docs/benchmarks.md`, Size: the crypto
/// runs in the host since ABI 1.3). `TOLLGATE_LOAD_MODULES` (paths, `:`-separated) times other
/// modules too, e.g. an older build without the imports.
#[test]
fn reports_snapshot_load_time_for_a_large_snapshot() -> Result<()> {
    use scorer::Timestamp;
    use scorer::features::{Aggregates, FeatureSchema};
    use scorer::snapshot::{EntityKey, SnapshotMeta, build_snapshot_with};
    const LOAD_ROWS: usize = 400_000;
    let signer = signer();
    let schema = FeatureSchema::handbook();
    let meta = SnapshotMeta {
        snapshot_id: "tg-load-time".into(),
        as_of: Timestamp(1_700_000_000),
        created_at: Timestamp(1_700_000_000),
        data_range: None,
        exporter_version: "test".into(),
        id_key_fingerprint: signer.id_hash().fingerprint(),
        schema: schema.clone(),
        model_id: Some("lr-load".into()),
        lineage: None,
        reference: None,
    };
    let mut rng = Rng(7);
    let tables = schema
        .entities()
        .iter()
        .map(|_| {
            let mut keys: Vec<u64> = (0..LOAD_ROWS).map(|_| rng.next_u64()).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.into_iter().map(|k| (EntityKey(k), Aggregates::ZERO)).collect()
        })
        .collect();
    let snapshot = build_snapshot_with(&meta, tables, Some(&logistic()), None, &signer)?;
    let t = Instant::now();
    black_box(Snapshot::load(&snapshot, &[signer.edge_key()])?);
    let native = t.elapsed();
    eprintln!("load {} B snapshot: native Snapshot::load {native:.2?}", snapshot.len());
    let mut paths = vec![scorer_wasm()?, scorer_wasm_small()?];
    if let Some(more) = std::env::var_os("TOLLGATE_LOAD_MODULES") {
        paths.extend(std::env::split_paths(&more));
    }
    for path in paths {
        let engine = Engine::default();
        let module =
            Module::from_file(&engine, &path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut best = std::time::Duration::MAX;
        for _ in 0..3 {
            let mut guest = Guest::new(&engine, &module)?;
            ensure!(guest.set_edge_keys(&signer.edge_key().to_text())? == 0, "edge key refused");
            let ptr = guest.put(&snapshot)?;
            let t = Instant::now();
            let status = guest.load_snapshot.call(&mut guest.store, (ptr, snapshot.len() as u32))?;
            best = best.min(t.elapsed());
            ensure!(status == 0, "{}: refused ({status}): {}", path.display(), guest.last_error()?);
        }
        eprintln!(
            "load {} B snapshot: {} tg_load_snapshot {best:.2?} (best of 3)",
            snapshot.len(),
            path.display()
        );
    }
    Ok(())
}

#[test]
fn no_input_traps_the_module() -> Result<()> {
    let (engine, module) = engine_and_module()?;
    let fixture = fixture(&logistic(), "lr-parity-v1")?;

    // Before any key or snapshot: typed refusals, no trap.
    let mut fresh = Guest::new(&engine, &module)?;
    ensure!(fresh.load(&fixture.snapshot)? == 1, "a snapshot loaded without a trusted key");
    ensure!(fresh.set_edge_keys("not a key")? == 3, "a bad key file was accepted");
    let r = fresh.score(br#"{"customer_id":1}"#)?;
    ensure!(String::from_utf8_lossy(&r).contains("no_snapshot"), "{}", String::from_utf8_lossy(&r));
    let packed = fresh.score.call(&mut fresh.store, (u32::MAX - 4, 100))?;
    ensure!(String::from_utf8_lossy(&fresh.read_packed(packed)?).contains("outside"), "bad pointer");

    let mut guest = loaded_guest(&engine, &module, &fixture.snapshot)?;
    let mut scorer = Scorer::new(Snapshot::load(&fixture.snapshot, &[signer().edge_key()])?);
    let seeds: Vec<&Vec<u8>> = fixture.requests.iter().step_by(97).collect();
    let mut rng = Rng(99);
    let mut native = Vec::new();
    let start_memory = guest.memory_bytes();
    for case in 0..FUZZ_CASES {
        let input: Vec<u8> = match case % 3 {
            0 => (0..rng.below(300)).map(|_| rng.next_u64() as u8).collect(),
            _ => {
                let mut bytes = seeds[rng.below(seeds.len())].clone();
                for _ in 0..=rng.below(4) {
                    let i = rng.below(bytes.len().max(1));
                    if let Some(b) = bytes.get_mut(i) {
                        *b = match rng.below(3) {
                            0 => rng.next_u64() as u8,
                            1 => *b ^ (1 << rng.below(8)),
                            _ => b"{}[],:\"\\0-e."[rng.below(12)],
                        };
                    }
                }
                bytes.truncate(rng.below(bytes.len() + 1).max(bytes.len() * 3 / 4));
                bytes
            }
        };
        let batch = case % 2 == 1;
        let wasm = if batch { guest.score_batch(&input) } else { guest.score(&input) }
            .with_context(|| format!("case {case} trapped on {input:02x?}"))?;
        native.clear();
        if batch {
            scorer.score_batch_bytes(&input, &mut native);
        } else {
            scorer.score_bytes(&input, &mut native);
        }
        ensure!(wasm == native, "case {case}: wasm and native differ on {input:02x?}");
    }
    // A response handed back as a request, and arbitrary snapshots.
    let packed = guest.score.call(&mut guest.store, (guest.buf.0, 0))?;
    let again = guest.score.call(&mut guest.store, ((packed >> 32) as u32, (packed & 0xffff_ffff) as u32))?;
    ensure!(!guest.read_packed(again)?.is_empty(), "no response to a response");
    for len in [0usize, 1, 64, 200, 1000] {
        let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        ensure!(guest.load(&junk)? != 0, "junk loaded as a snapshot");
    }
    let grown = guest.memory_bytes() - start_memory;
    eprintln!(
        "fuzz: {FUZZ_CASES} inputs, no trap, wasm = native on each; memory {} KiB -> {} KiB",
        start_memory / 1024,
        guest.memory_bytes() / 1024
    );
    ensure!(grown < 16 << 20, "memory grew by {grown} bytes");
    Ok(())
}

#[test]
fn reports_time_per_score() -> Result<()> {
    let (engine, module) = engine_and_module()?;
    let fixture = fixture(&logistic(), "lr-parity-v1")?;
    let mut guest = loaded_guest(&engine, &module, &fixture.snapshot)?;
    let mut scorer = Scorer::new(Snapshot::load(&fixture.snapshot, &[signer().edge_key()])?);
    // The first few thousand MessagePack requests come from real transactions.
    let msgpack: Vec<&Vec<u8>> = fixture
        .requests
        .iter()
        .filter(|r| r.first().is_some_and(|&b| b & 0xf0 == 0x80))
        .take(2_000)
        .collect();
    let decoded: Vec<Request> = msgpack.iter().filter_map(|r| scorer.decode_request(r).ok()).collect();
    let rounds = 20;
    let per = |t: Instant, n: usize| t.elapsed().as_nanos() as f64 / (rounds * n) as f64;

    let t = Instant::now();
    for _ in 0..rounds {
        for req in &decoded {
            black_box(scorer.score(black_box(req)).ok());
        }
    }
    let native_struct = per(t, decoded.len());

    let mut out = Vec::with_capacity(1024);
    let t = Instant::now();
    for _ in 0..rounds {
        for r in &msgpack {
            out.clear();
            scorer.score_bytes(black_box(r), &mut out);
        }
    }
    let native_wire = per(t, msgpack.len());

    // In wasm: requests written once, then only the calls are timed.
    let mut placed = Vec::new();
    for r in &msgpack {
        placed.push((guest.put(r)?, r.len() as u32));
    }
    let t = Instant::now();
    for _ in 0..rounds {
        for &(ptr, len) in &placed {
            black_box(guest.score.call(&mut guest.store, (ptr, len))?);
        }
    }
    let wasm_wire = per(t, placed.len());
    eprintln!(
        "time per score (logistic, handbook features, {} requests x {rounds}): native Scorer::score {native_struct:.0} ns; \
         native score_bytes (MessagePack in and out) {native_wire:.0} ns; wasmtime tg_score {wasm_wire:.0} ns",
        decoded.len()
    );
    Ok(())
}
