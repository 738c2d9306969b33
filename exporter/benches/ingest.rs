//! Reading and writing throughput on the full handbook file (1,754,155 rows): gzip CSV in rows/s
//! and compressed MB/s, plain CSV and Parquet in rows/s (both written from the handbook data to a
//! temporary directory first), and writing each format in rows/s.
//! Run with `cargo bench -p exporter --bench ingest`; skipped when the handbook file is absent.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exporter::NoProgress;
use exporter::ingest::{IngestOptions, read_transactions};
use exporter::write::write_transactions;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn ingest(c: &mut Criterion) {
    let handbook = &handbook_data::file(handbook_data::TRANSACTIONS);
    if !handbook.exists() {
        eprintln!("skipped: {} is absent", handbook.display());
        return;
    }
    let options = IngestOptions::default();
    let read = |path: &Path| match read_transactions(path, &options, &NoProgress) {
        Ok(data) => data.transactions,
        Err(e) => panic!("{e}"),
    };
    let tx = read(handbook);
    let rows = tx.len() as u64;
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("no temporary directory: {e}"),
    };
    let csv = dir.path().join("handbook.csv");
    let parquet = dir.path().join("handbook.parquet");
    for path in [&csv, &parquet] {
        if let Err(e) = write_transactions(path, &tx) {
            panic!("{e}");
        }
    }
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    eprintln!("sizes: csv.gz {} B, csv {} B, parquet {} B", size(handbook), size(&csv), size(&parquet));

    let mut group = c.benchmark_group("ingest");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(rows));
    group.bench_function("csv_gz_rows", |b| b.iter_with_large_drop(|| read(black_box(handbook))));
    group.bench_function("csv_rows", |b| b.iter_with_large_drop(|| read(black_box(&csv))));
    group.bench_function("parquet_rows", |b| b.iter_with_large_drop(|| read(black_box(&parquet))));
    group.throughput(Throughput::Bytes(size(handbook)));
    group.bench_function("csv_gz_compressed_bytes", |b| b.iter_with_large_drop(|| read(black_box(handbook))));
    group.finish();

    let mut group = c.benchmark_group("write");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(rows));
    for name in ["out.csv.gz", "out.csv", "out.parquet"] {
        let path = dir.path().join(name);
        group
            .bench_function(name.replace('.', "_"), |b| b.iter(|| write_transactions(black_box(&path), &tx)));
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
