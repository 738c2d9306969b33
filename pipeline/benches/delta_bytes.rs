//! Bytes per snapshot delta, printed as a table (`cargo bench -p pipeline --bench delta_bytes`):
//! the handbook file folded in event order as the continuous exporter folds it (transactions, and
//! each fraud's label reported up to 6 days later as `exporter replay-to-kafka` sends them), an
//! hourly snapshot built exactly as `pipeline::run` builds it over two weeks, and the delta from
//! each snapshot to the next (`scorer::snapshot::build_delta`): raw and gzipped, for all deltas,
//! within a UTC day, and across a UTC day boundary, against the full snapshot. Also, for the
//! worker's KV layout (one value per table part), how many parts of at most 16 KiB change from
//! one hourly snapshot to the next: the parts a KV delta would have to write.
//! `DELTA_BENCH_FROM=YYYY-MM-DD` and `DELTA_BENCH_DAYS=N` move the measured window.

use exporter::NoProgress;
use exporter::ingest::{IngestOptions, read_transactions};
use exporter::snapshot::{Decisioning, build_from_aggregates};
use pipeline::message::LabelEvent;
use pipeline::replay::label_times;
use pipeline::{State, Transaction};
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::snapshot::{
    DeltaInfo, IdHashKey, SnapshotPieces, SnapshotSigner, apply_delta, build_delta, build_snapshot_in_parts,
};
use std::io::Write;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One hourly delta.
struct Measured {
    /// As-of of the snapshot the delta makes.
    to: Timestamp,
    raw: usize,
    gzipped: usize,
    full: usize,
    full_gzipped: usize,
    rows: u64,
    apply: Duration,
    /// Table parts (of at most [`PART_BYTES`]) whose bytes differ from the previous snapshot's,
    /// their bytes, and the parts in all.
    parts_changed: usize,
    part_bytes_changed: usize,
    parts: usize,
}

/// The part size of the KV measurement (the smallest that keeps a part a useful KV value).
const PART_BYTES: usize = 16 * 1024;

/// A table part: (entity kind, part) and its bytes.
type Part = ((usize, usize), Vec<u8>);

/// A snapshot's table parts.
fn parts_of(bytes: &[u8]) -> Result<Vec<Part>> {
    let pieces = SnapshotPieces::split(bytes)?;
    Ok(pieces.parts.into_iter().map(|(e, p, range)| ((e, p), bytes[range].to_vec())).collect())
}

fn gzipped(bytes: &[u8]) -> Result<usize> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes)?;
    Ok(gz.finish()?.len())
}

/// The value at quantile `q` (nearest rank) of `values`.
fn quantile(values: &mut [usize], q: f64) -> usize {
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len().max(1));
    values.get(rank - 1).copied().unwrap_or(0)
}

fn main() -> Result<()> {
    let path = handbook_data::file(handbook_data::TRANSACTIONS);
    let tx = read_transactions(&path, &IngestOptions::default(), &NoProgress)?.transactions;
    let schema = FeatureSchema::handbook();
    let from: Timestamp =
        std::env::var("DELTA_BENCH_FROM").unwrap_or_else(|_| "2018-08-01".into()).parse()?;
    let days: i64 = std::env::var("DELTA_BENCH_DAYS").ok().and_then(|v| v.parse().ok()).unwrap_or(14);
    let (first, last) = (from.0, from.0 + days * 86_400);
    // The labels as `exporter replay-to-kafka` sends them (its defaults: up to 6 days, seed 1).
    let labels = label_times(&tx, Duration::from_secs(6 * 86_400), 1);
    let signer = SnapshotSigner::from_secret([1; 32], IdHashKey([2; 16]));

    let mut state = State::new(schema.clone());
    let (mut i, mut l) = (0, 0);
    let mut boundary = first;
    let mut previous: Option<Vec<u8>> = None;
    let mut previous_parts: Vec<Part> = Vec::new();
    let mut measured = Vec::new();
    let began = Instant::now();
    while boundary <= last {
        // The next event in time order: a transaction or a label (a transaction first on a tie).
        let next_tx = tx.time.get(i).copied();
        let next_label = labels.get(l).map(|&(t, _)| t);
        let time = match (next_tx, next_label) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => Timestamp(i64::MAX),
        };
        // The exporter publishes a boundary's snapshot before folding the first event at or after it.
        while time.0 >= boundary && boundary <= last {
            let tables = state.aggregates_as_of(Timestamp(boundary), signer.id_hash());
            let copy = tables.clone();
            let built = build_from_aggregates(
                tables,
                &schema,
                Timestamp(boundary),
                Timestamp(boundary),
                state.data_range(),
                &signer,
                &Decisioning::default(),
            )?;
            let parts =
                parts_of(&build_snapshot_in_parts(&built.meta, copy, None, None, &signer, PART_BYTES)?)?;
            if let Some(base) = &previous {
                let changed: Vec<&Vec<u8>> = parts
                    .iter()
                    .filter(|(at, bytes)| !previous_parts.iter().any(|(was, old)| was == at && old == bytes))
                    .map(|(_, bytes)| bytes)
                    .collect();
                let delta = build_delta(base, &built.bytes)?;
                let t = Instant::now();
                let applied = apply_delta(base, &delta)?;
                let apply = t.elapsed();
                if applied != built.bytes {
                    return Err("a delta did not rebuild its snapshot".into());
                }
                let info = DeltaInfo::read(&delta)?;
                measured.push(Measured {
                    to: Timestamp(boundary),
                    raw: delta.len(),
                    gzipped: gzipped(&delta)?,
                    full: built.bytes.len(),
                    full_gzipped: gzipped(&built.bytes)?,
                    rows: info.rows_updated + info.rows_inserted + info.rows_deleted,
                    apply,
                    parts_changed: changed.len(),
                    part_bytes_changed: changed.iter().map(|b| b.len()).sum(),
                    parts: parts.len(),
                });
            }
            previous = Some(built.bytes);
            previous_parts = parts;
            boundary += 3600;
        }
        if boundary > last {
            break;
        }
        if next_tx == Some(time) {
            let request = tx.score_request(i);
            state.fold_transaction(&Transaction::decode(request.as_bytes(), &schema)?)?;
            i += 1;
        } else {
            let (at, j) = labels[l];
            let label = LabelEvent {
                transaction_id: tx.transaction_id[j].to_string().into_bytes().into(),
                fraud: true,
                reported_at: at,
            };
            // A label of a transaction already out of every window is refused: the exporter counts it.
            if let Err(rejection) = state.fold_label(&label) {
                state.count_rejection(&rejection);
            }
            l += 1;
        }
    }
    let secs = began.elapsed().as_secs_f64();

    println!(
        "{} hourly deltas, snapshots as of {} .. {} (handbook data folded from 2018-04-01; {secs:.0} s)",
        measured.len(),
        Timestamp(first),
        Timestamp(last)
    );
    println!();
    println!(
        "| deltas | n | raw median | raw p90 | raw max | gzipped median | gzipped p90 | gzipped max | rows changed, median | apply, median |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let crossing = |m: &&Measured| m.to.0.rem_euclid(86_400) == 0;
    let groups: [(&str, Vec<&Measured>); 3] = [
        ("all", measured.iter().collect()),
        ("within a UTC day", measured.iter().filter(|m| !crossing(m)).collect()),
        ("across a UTC day boundary", measured.iter().filter(crossing).collect()),
    ];
    let kb = |b: usize| format!("{:.1} KB", b as f64 / 1e3);
    for (name, group) in &groups {
        let mut raw: Vec<usize> = group.iter().map(|m| m.raw).collect();
        let mut gz: Vec<usize> = group.iter().map(|m| m.gzipped).collect();
        let mut rows: Vec<usize> = group.iter().map(|m| m.rows as usize).collect();
        let mut apply: Vec<usize> = group.iter().map(|m| m.apply.as_micros() as usize).collect();
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} ms |",
            group.len(),
            kb(quantile(&mut raw, 0.5)),
            kb(quantile(&mut raw, 0.9)),
            kb(quantile(&mut raw, 1.0)),
            kb(quantile(&mut gz, 0.5)),
            kb(quantile(&mut gz, 0.9)),
            kb(quantile(&mut gz, 1.0)),
            quantile(&mut rows, 0.5),
            quantile(&mut apply, 0.5) as f64 / 1e3,
        );
    }
    let mut full: Vec<usize> = measured.iter().map(|m| m.full).collect();
    let mut full_gz: Vec<usize> = measured.iter().map(|m| m.full_gzipped).collect();
    println!(
        "| full snapshot (for comparison) | {} | {} | {} | {} | {} | {} | {} | | |",
        measured.len(),
        kb(quantile(&mut full, 0.5)),
        kb(quantile(&mut full, 0.9)),
        kb(quantile(&mut full, 1.0)),
        kb(quantile(&mut full_gz, 0.5)),
        kb(quantile(&mut full_gz, 0.9)),
        kb(quantile(&mut full_gz, 1.0)),
    );
    let mut changed: Vec<usize> = measured.iter().map(|m| m.parts_changed).collect();
    let mut changed_bytes: Vec<usize> = measured.iter().map(|m| m.part_bytes_changed).collect();
    let mut parts: Vec<usize> = measured.iter().map(|m| m.parts).collect();
    println!();
    println!(
        "KV layout, parts of at most {} KiB: {} parts per snapshot (median); parts changed per hourly snapshot: median {}, min {}, max {}; bytes of changed parts: median {} (what a KV delta writes).",
        PART_BYTES / 1024,
        quantile(&mut parts, 0.5),
        quantile(&mut changed, 0.5),
        quantile(&mut changed, 0.0),
        quantile(&mut changed, 1.0),
        kb(quantile(&mut changed_bytes, 0.5)),
    );
    let per_day =
        |f: &dyn Fn(&Measured) -> usize| measured.iter().map(f).sum::<usize>() as f64 / days as f64 / 1e6;
    println!();
    println!(
        "Per day and target: deltas {:.2} MB raw, {:.2} MB gzipped; full snapshots {:.1} MB raw, {:.1} MB gzipped.",
        per_day(&|m| m.raw),
        per_day(&|m| m.gzipped),
        per_day(&|m| m.full),
        per_day(&|m| m.full_gzipped)
    );
    Ok(())
}
