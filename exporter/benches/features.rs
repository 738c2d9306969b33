//! Feature throughput on the handbook file (or, without it, the default simulation), CSV load
//! timed apart: exact (lag 0) and as served at 1 h and 24 h cadence, and beside them the floor
//! no feature code can go below here: allocating the fresh result table and touching each of
//! its pages once (on every thread, as the feature pass does). Prints a table and, with
//! `TOLLGATE_BENCH_JSON=PATH`, writes the timings as JSON for `cargo xtask bench` to set beside
//! the polars and duckdb peers.

use exporter::features::{Cadence, compute_features};
use exporter::ingest::{IngestOptions, read_transactions};
use exporter::simulate::{SimulationConfig, simulate};
use exporter::{NoProgress, Transactions};
use rayon::prelude::*;
use scorer::features::FeatureSchema;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn load() -> (String, Transactions, Duration) {
    let handbook = handbook_data::file(handbook_data::TRANSACTIONS);
    let began = Instant::now();
    if handbook.exists() {
        match read_transactions(&handbook, &IngestOptions::default(), &NoProgress) {
            Ok(ingested) => return ("handbook".into(), ingested.transactions, began.elapsed()),
            Err(e) => panic!("{}: {e}", handbook.display()),
        }
    }
    match simulate(&SimulationConfig::default(), &NoProgress) {
        Ok(tx) => ("simulated (handbook absent)".into(), tx, began.elapsed()),
        Err(e) => panic!("simulate: {e}"),
    }
}

/// Best and median of `RUNS` timings of `f`.
fn time(mut f: impl FnMut()) -> (f64, f64) {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let began = Instant::now();
            f();
            began.elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[0], runs[RUNS / 2])
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name this bench skips it.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filter.is_empty() && !filter.iter().any(|f| "features".contains(f.as_str())) {
        return;
    }
    let (source, tx, load_time) = load();
    let schema = FeatureSchema::handbook();
    let mut rows = Vec::new();
    for (name, cadence) in [
        ("exact", Cadence::Exact),
        ("as served, 1 h", Cadence::Every(3600)),
        ("as served, 24 h", Cadence::Every(86_400)),
    ] {
        let (best, median) = time(|| {
            let table = compute_features(&tx, &schema, cadence, &NoProgress);
            std::hint::black_box(table.map(|t| t.values.len()).unwrap_or(0));
        });
        rows.push((name, best, median));
    }
    let (floor_best, floor_median) = time(|| {
        let mut values = vec![0.0f64; tx.len() * schema.len()];
        // One write per 4 KiB page, the pages split between the threads like the rows are.
        let per_thread = values.len().div_ceil(rayon::current_num_threads()).max(1);
        values
            .par_chunks_mut(per_thread)
            .for_each(|part| part.iter_mut().step_by(512).for_each(|v| *v = 1.0));
        std::hint::black_box(&values);
    });
    println!(
        "\nfeatures: {} transactions ({source}), {} features, best / median of {RUNS}",
        tx.len(),
        schema.len()
    );
    println!("| mode | best (s) | median (s) | transactions/s (best) |");
    println!("| --- | --- | --- | --- |");
    println!("| load CSV.gz (once, apart) | {:.3} | | |", load_time.as_secs_f64());
    for (name, best, median) in &rows {
        println!("| {name} | {best:.3} | {median:.3} | {:.2e} |", tx.len() as f64 / best);
    }
    println!(
        "| floor: fresh {} MB result, each page touched once | {floor_best:.3} | {floor_median:.3} | |",
        tx.len() * schema.len() * 8 / 1_000_000
    );
    if let Ok(path) = std::env::var("TOLLGATE_BENCH_JSON") {
        let json = serde_json::json!({
            "transactions": tx.len(),
            "load_s": load_time.as_secs_f64(),
            "exact_best_s": rows[0].1,
            "exact_median_s": rows[0].2,
            "result_page_touch_best_s": floor_best,
        })
        .to_string();
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("could not write {path}: {e}");
        }
    }
}
