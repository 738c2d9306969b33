//! Throughput of the built-in simulator on the default (handbook-sized) configuration, in
//! transactions per second, sorting and fraud labelling included.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exporter::NoProgress;
use exporter::simulate::{SimulationConfig, simulate};
use std::hint::black_box;
use std::time::Duration;

fn simulate_default(c: &mut Criterion) {
    let config = SimulationConfig::default();
    let transactions = match simulate(&config, &NoProgress) {
        Ok(tx) => tx.len() as u64,
        Err(e) => panic!("the default configuration must simulate: {e}"),
    };
    let mut group = c.benchmark_group("simulate");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(transactions));
    group.bench_function("default_config", |b| b.iter(|| simulate(black_box(&config), &NoProgress)));
    group.finish();
}

criterion_group!(benches, simulate_default);
criterion_main!(benches);
