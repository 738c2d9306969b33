//! Snapshots at scale: two simulated weeks of 1M customers and 100k terminals. Measures building
//! (aggregating the history and signing), loading with full verification, and one entity lookup.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use exporter::NoProgress;
use exporter::simulate::{SimulationConfig, simulate};
use exporter::snapshot::build_from_history;
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::snapshot::{EntityKey, IdHashKey, Snapshot, SnapshotSigner};
use std::hint::black_box;

fn snapshots(c: &mut Criterion) {
    // Two weeks: terminal windows end 7 days back, so a shorter history leaves them empty.
    let config = SimulationConfig {
        customers: 1_000_000,
        terminals: 100_000,
        days: 14,
        ..SimulationConfig::default()
    };
    let tx = match simulate(&config, &NoProgress) {
        Ok(tx) => tx,
        Err(e) => panic!("simulate: {e}"),
    };
    let schema = FeatureSchema::handbook();
    let signer = SnapshotSigner::from_secret([1; 32], IdHashKey([2; 16]));
    let as_of = tx.time.last().map_or(Timestamp(0), |t| t.plus_seconds(1));
    let build = || match build_from_history(&tx, &schema, as_of, as_of, &signer, &NoProgress) {
        Ok(built) => built,
        Err(e) => panic!("build: {e}"),
    };
    let built = build();
    let edge = [signer.edge_key()];
    println!(
        "snapshot: {} transactions, rows {:?}, {} bytes ({:.1} MB)",
        tx.len(),
        built.rows,
        built.bytes.len(),
        built.bytes.len() as f64 / 1e6
    );

    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tx.len() as u64));
    group.bench_function("build_1M_customers_100k_terminals", |b| b.iter(|| black_box(build().bytes.len())));
    group.throughput(Throughput::Bytes(built.bytes.len() as u64));
    group.bench_function("load_and_verify_1M_customers_100k_terminals", |b| {
        b.iter(|| black_box(Snapshot::load(&built.bytes, &edge).map(|s| s.size()).unwrap_or(0)))
    });
    group.finish();

    let snapshot = match Snapshot::load(&built.bytes, &edge) {
        Ok(s) => s,
        Err(e) => panic!("load: {e}"),
    };
    let Some(customers) = snapshot.table(0) else { panic!("no customer table") };
    // Probe keys in a scattered order, as traffic would: every 7919th customer, and unknown ones.
    let present: Vec<EntityKey> = customers.rows().step_by(7919).map(|(key, _)| key).collect();
    let absent: Vec<EntityKey> =
        (0..present.len() as u64).map(|i| signer.id_hash().hash(format!("new-{i}").as_bytes())).collect();
    let mut group = c.benchmark_group("lookup");
    for (name, keys) in [("known_customer", &present), ("unknown_customer", &absent)] {
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new(name, customers.len()), keys, |b, keys| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(customers.lookup(keys[i]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
