//! GBDT training time on the handbook's training week (2018-07-25..07-31, the 15 handbook features,
//! 67,240 rows) beside xgboost with the same settings: 100 trees, depth 3, eta 0.1, exact splits and
//! 256-bin histograms, at 2 threads and 1. Each fit is timed from the in-memory matrix to the trained
//! model (ours: `GbdtConfig::fit`, column presort included; xgboost: `DMatrix` then `train`), best
//! and median of `RUNS`, and the test week (2018-08-08..08-14) is scored for both with the same
//! metric code, so equal settings show as equal accuracy.
//!
//! xgboost runs only when `TOLLGATE_PEERS_PYTHON` names a Python with xgboost and numpy (several,
//! comma-separated, for several versions): the bench then writes the matrices to
//! `target/bench/train_peers/` and runs `benchsuite/peers/train_peers.py` on them.

use exporter::features::{Cadence, compute_features};
use exporter::ingest::{IngestOptions, read_transactions};
use exporter::{NoProgress, Progress};
use models::{Dataset, GbdtConfig, Holdout, SplitMethod, TrainTest};
use scorer::features::FeatureSchema;
use scorer::model::Model;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const RUNS: usize = 5;
const THREADS: [usize; 2] = [2, 1];

/// A setting both trainers run: our config and the name `train_peers.py` knows it by.
struct Setting {
    name: &'static str,
    label: &'static str,
    config: GbdtConfig,
}

fn settings() -> Vec<Setting> {
    let base = GbdtConfig { trees: 100, max_depth: 3, learning_rate: 0.1, ..GbdtConfig::default() };
    vec![
        Setting { name: "exact", label: "100 trees, depth 3, eta 0.1, exact", config: base.clone() },
        Setting {
            name: "hist256",
            label: "100 trees, depth 3, eta 0.1, hist 256 bins",
            config: GbdtConfig { split_method: SplitMethod::Histogram { max_bins: 256 }, ..base },
        },
    ]
}

/// One line of the table.
struct Row {
    trainer: String,
    setting: &'static str,
    threads: usize,
    best_s: f64,
    median_s: f64,
    cpu_s: f64,
    auc: f64,
    ap: f64,
}

/// This process's CPU time (all threads), from `/proc/self/stat` in 1/100 s ticks; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may hold spaces, so cut at its closing parenthesis):
    // utime and stime are the 14th and 15th fields, the 12th and 13th after it.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn handbook_split() -> Result<Option<TrainTest>, Box<dyn Error>> {
    let file = handbook_data::file(handbook_data::TRANSACTIONS);
    if !file.exists() {
        eprintln!("train bench: skipped, {} is absent", file.display());
        return Ok(None);
    }
    let tx = read_transactions(&file, &IngestOptions::default(), &NoProgress)?.transactions;
    let table = compute_features(&tx, &FeatureSchema::handbook(), Cadence::Exact, &NoProgress)?;
    Ok(Some(Holdout::handbook().split(&tx, &table)?))
}

/// Times `RUNS` fits of `config` on `threads` threads; the last model, best and median wall
/// seconds, and the CPU seconds of the best run.
fn time_ours(
    config: &GbdtConfig,
    train: &Dataset,
    threads: usize,
) -> Result<(Model, f64, f64, f64), Box<dyn Error>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let samples = train.samples()?;
    let mut runs = Vec::new();
    let mut model = None;
    for _ in 0..RUNS {
        let (began, cpu) = (Instant::now(), cpu_seconds());
        let fit = pool.install(|| config.fit(samples, &NoProgress as &dyn Progress))?;
        runs.push((began.elapsed().as_secs_f64(), cpu_seconds() - cpu));
        model = Some(fit.model);
    }
    let model = model.ok_or("no run")?;
    let best = runs.iter().copied().min_by(|a, b| a.0.total_cmp(&b.0)).ok_or("no run")?;
    let mut walls: Vec<f64> = runs.iter().map(|r| r.0).collect();
    walls.sort_by(f64::total_cmp);
    Ok((model, best.0, walls[RUNS / 2], best.1))
}

/// Writes the matrices `train_peers.py` reads: f32 features row-major, u8 labels, `meta.json`.
fn export(split: &TrainTest, dir: &Path) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let f32s = |d: &Dataset| d.features.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.join("train_x.f32"), f32s(&split.train))?;
    std::fs::write(dir.join("test_x.f32"), f32s(&split.test))?;
    std::fs::write(
        dir.join("train_y.u8"),
        split.train.labels.iter().map(|&y| u8::from(y)).collect::<Vec<u8>>(),
    )?;
    let meta = serde_json::json!({
        "train_rows": split.train.len(),
        "test_rows": split.test.len(),
        "features": split.train.n_features(),
        "names": split.train.feature_names,
    });
    std::fs::write(dir.join("meta.json"), meta.to_string())?;
    Ok(())
}

/// Runs `train_peers.py` under `python` and turns its results into rows.
fn run_peer(
    python: &str,
    chosen: &[Setting],
    split: &TrainTest,
    dir: &Path,
) -> Result<Vec<Row>, Box<dyn Error>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benchsuite/peers/train_peers.py");
    let json = dir.join("peers.json");
    let threads = THREADS.map(|t| t.to_string()).join(",");
    let names = chosen.iter().map(|s| s.name).collect::<Vec<_>>().join(",");
    let status = Command::new(python)
        .arg(&script)
        .args(["--data", &dir.to_string_lossy(), "--json", &json.to_string_lossy()])
        .args(["--runs", &RUNS.to_string(), "--threads", &threads, "--settings", &names])
        .status()?;
    if !status.success() {
        return Err(format!("{python} {}: {status}", script.display()).into());
    }
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let version = results["version"].as_str().unwrap_or("?");
    let mut rows = Vec::new();
    for r in results["results"].as_array().ok_or("peers.json: no results")? {
        let setting = settings()
            .into_iter()
            .find(|s| Some(s.name) == r["setting"].as_str())
            .ok_or("peers.json: unknown setting")?;
        let file = r["predictions"].as_str().ok_or("peers.json: no predictions")?;
        let bytes = std::fs::read(dir.join(file))?;
        let scores: Vec<f64> =
            bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect();
        if scores.len() != split.test.len() {
            return Err(
                format!("{file}: {} predictions for {} test rows", scores.len(), split.test.len()).into()
            );
        }
        let e = split.test.evaluate(&scores, 100)?;
        let number = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
        rows.push(Row {
            trainer: format!("xgboost {version}"),
            setting: setting.label,
            threads: r["threads"].as_u64().unwrap_or(0) as usize,
            best_s: number("best_s"),
            median_s: number("median_s"),
            cpu_s: number("best_cpu_s"),
            auc: e.roc_auc,
            ap: e.average_precision,
        });
    }
    Ok(rows)
}

fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` passes `--bench`; a filter that names neither this bench nor one of its
    // settings (`exact`, `hist256`) skips it; naming settings runs those alone.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<Setting> =
        settings().into_iter().filter(|s| filter.iter().any(|f| f == s.name)).collect();
    if !filter.is_empty() && chosen.is_empty() && !filter.iter().any(|f| "train".contains(f.as_str())) {
        return Ok(());
    }
    let chosen = if chosen.is_empty() { settings() } else { chosen };
    let began = Instant::now();
    let Some(split) = handbook_split()? else { return Ok(()) };
    eprintln!(
        "train bench: {} training rows ({} frauds), {} test rows, read in {:.1} s; load average {}",
        split.train.len(),
        split.train.frauds(),
        split.test.len(),
        began.elapsed().as_secs_f64(),
        load_average()
    );
    let mut rows = Vec::new();
    for s in &chosen {
        for threads in THREADS {
            let (model, best_s, median_s, cpu_s) = time_ours(&s.config, &split.train, threads)?;
            let e = split.test.evaluate(&split.test.scores(&model), 100)?;
            eprintln!("  tollgate {} {threads} threads: best {best_s:.3} s", s.name);
            rows.push(Row {
                trainer: format!("tollgate {}", models::VERSION),
                setting: s.label,
                threads,
                best_s,
                median_s,
                cpu_s,
                auc: e.roc_auc,
                ap: e.average_precision,
            });
        }
    }
    match std::env::var("TOLLGATE_PEERS_PYTHON") {
        Ok(pythons) => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
            let dir = target.join("bench/train_peers");
            export(&split, &dir)?;
            for python in pythons.split(',').filter(|p| !p.is_empty()) {
                rows.extend(run_peer(python, &chosen, &split, &dir)?);
            }
        }
        Err(_) => eprintln!("train bench: set TOLLGATE_PEERS_PYTHON to a Python with xgboost to time it too"),
    }
    println!(
        "\nGBDT training, handbook training week ({} rows x {} features), test week {} rows; \
         best / median of {RUNS} fits; load average {} at the end",
        split.train.len(),
        split.train.n_features(),
        split.test.len(),
        load_average()
    );
    println!(
        "| trainer | settings | threads | best s | median s | CPU s (best run) | vs tollgate | test AUC | test AP |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let ours = rows
            .iter()
            .find(|o| o.trainer.starts_with("tollgate") && o.setting == r.setting && o.threads == r.threads);
        let ratio = ours.map_or(f64::NAN, |o| r.best_s / o.best_s);
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.2} | {ratio:.2}x | {:.4} | {:.4} |",
            r.trainer, r.setting, r.threads, r.best_s, r.median_s, r.cpu_s, r.auc, r.ap
        );
    }
    Ok(())
}
