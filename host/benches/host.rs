//! `cargo bench -p host`: the library path of the host, no HTTP. Prints one table: module load
//! (compile vs cache), instance start, time per score natively and through the host, and
//! throughput with 1, 2 and 4 threads, one by one and in batches.

use host::{Scorer, ScorerConfig};
use scorer::score::Scorer as NativeScorer;
use scorer::snapshot::Snapshot;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tollgate_tests::parity::{fixture, logistic, signer};

fn main() -> anyhow::Result<()> {
    let wasm = std::fs::read(tollgate_tests::scorer_wasm()?)?;
    let keys = signer().edge_key().to_text();
    let f = fixture(&logistic(), "lr-parity-v1")?;
    // Real transactions in MessagePack, as a gateway would send them.
    let requests: Vec<Vec<u8>> = f
        .requests
        .iter()
        .filter(|r| r.first().is_some_and(|b| b & 0xf0 == 0x80))
        .take(4_000)
        .cloned()
        .collect();
    let mut rows: Vec<(String, String)> = Vec::new();

    let cache = tempfile::tempdir()?;
    let config = ScorerConfig { cache_dir: Some(cache.path().to_path_buf()), ..Default::default() };
    let compiled = Scorer::new(config.clone(), &wasm, &keys)?.status().module.load_time;
    let cached = Scorer::new(config.clone(), &wasm, &keys)?.status().module.load_time;
    rows.push(("module: compile (Cranelift)".into(), format!("{compiled:.2?}")));
    rows.push(("module: deserialize from the disk cache".into(), format!("{cached:.2?}")));

    // A host that keeps no idle instance makes a new one for every call.
    let cold = Scorer::new(ScorerConfig { pool_size: 0, ..config.clone() }, &wasm, &keys)?;
    cold.load_snapshot(f.snapshot.clone())?;
    let n = 300;
    let t = Instant::now();
    for r in requests.iter().take(n) {
        black_box(cold.score(r));
    }
    let cold_per = t.elapsed() / n as u32;

    let host = Scorer::new(config, &wasm, &keys)?;
    host.load_snapshot(f.snapshot.clone())?;
    let mut native = NativeScorer::new(Snapshot::load(&f.snapshot, &[signer().edge_key()])?);
    let rounds = 10;
    let mut out = Vec::with_capacity(1024);
    let t = Instant::now();
    for _ in 0..rounds {
        for r in &requests {
            out.clear();
            native.score_bytes(black_box(r), &mut out);
        }
    }
    let native_ns = t.elapsed().as_nanos() as f64 / (rounds * requests.len()) as f64;
    let t = Instant::now();
    for _ in 0..rounds {
        for r in &requests {
            black_box(host.score(black_box(r)));
        }
    }
    let host_ns = t.elapsed().as_nanos() as f64 / (rounds * requests.len()) as f64;
    let warm_ns = host_ns;
    rows.push((
        format!(
            "new instance per call (instantiate + keys + {} KiB snapshot + score)",
            f.snapshot.len() / 1024
        ),
        format!("{cold_per:.2?}"),
    ));
    rows.push(("per score, native score_bytes (MessagePack)".into(), format!("{native_ns:.0} ns")));
    rows.push((
        "per score, host::Scorer::score (pooled instance)".into(),
        format!("{host_ns:.0} ns ({:.2}x native)", host_ns / native_ns),
    ));
    rows.push((
        "instance start saved per call by the pool".into(),
        format!("{:.0} ns", cold_per.as_nanos() as f64 - warm_ns),
    ));

    let batch: Vec<u8> = {
        let mut b = vec![0xdc, 1, 0]; // a MessagePack array of 256
        requests.iter().take(256).for_each(|r| b.extend_from_slice(r));
        b
    };
    wire_formats(&host, &mut native, &f, &batch, &mut rows);
    for threads in [1usize, 2, 4] {
        let per_thread = |batch_mode: bool| -> f64 {
            let budget = Duration::from_millis(1500);
            let start = Instant::now();
            let counts: Vec<u64> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        let (host, requests, batch) = (host.clone(), &requests, &batch);
                        s.spawn(move || {
                            let mut done = 0u64;
                            while start.elapsed() < budget {
                                if batch_mode {
                                    black_box(host.score_batch(batch));
                                    done += 256;
                                } else {
                                    for r in requests.iter().take(256) {
                                        black_box(host.score(r));
                                    }
                                    done += 256;
                                }
                            }
                            done
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
            });
            counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64()
        };
        rows.push((
            format!("throughput, {threads} thread(s), one request per call"),
            format!("{:.0} scores/s", per_thread(false)),
        ));
        rows.push((
            format!("throughput, {threads} thread(s), batches of 256"),
            format!("{:.0} scores/s", per_thread(true)),
        ));
    }
    drift_overhead(&wasm, &keys, &mut rows)?;
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    println!(
        "host library path ({} cores, {} requests)",
        std::thread::available_parallelism()?.get(),
        requests.len()
    );
    for (k, v) in rows {
        println!("{k:width$}  {v}");
    }
    Ok(())
}

/// Per score in each wire format, natively and through the host, in alternating rounds: one
/// JSON request per call, and batches of 256 in JSON and in MessagePack (the parity corpus's
/// first 256 requests of each format).
fn wire_formats(
    host: &Scorer,
    native: &mut NativeScorer<'_>,
    f: &tollgate_tests::parity::Fixture,
    msgpack_batch: &[u8],
    rows: &mut Vec<(String, String)>,
) {
    let json: Vec<&str> = f.json_requests().into_iter().take(256).collect();
    let json_batch = format!("[{}]", json.join(",")).into_bytes();
    let mut out = Vec::with_capacity(1 << 20);
    let mut best = [f64::INFINITY; 6];
    for _ in 0..15 {
        let mut time = |i: usize, n: usize, run: &mut dyn FnMut()| {
            let t = Instant::now();
            run();
            best[i] = best[i].min(t.elapsed().as_nanos() as f64 / n as f64);
        };
        time(0, json.len(), &mut || {
            for r in &json {
                out.clear();
                native.score_bytes(black_box(r.as_bytes()), &mut out);
            }
        });
        time(1, json.len(), &mut || {
            for r in &json {
                black_box(host.score(black_box(r.as_bytes())));
            }
        });
        time(2, json.len(), &mut || {
            out.clear();
            native.score_batch_bytes(black_box(&json_batch), &mut out);
        });
        time(3, json.len(), &mut || {
            black_box(host.score_batch(black_box(&json_batch)));
        });
        time(4, 256, &mut || {
            out.clear();
            native.score_batch_bytes(black_box(msgpack_batch), &mut out);
        });
        time(5, 256, &mut || {
            black_box(host.score_batch(black_box(msgpack_batch)));
        });
    }
    for (what, i) in
        [("JSON, one request per call", 0), ("JSON, batches of 256", 2), ("MessagePack, batches of 256", 4)]
    {
        rows.push((
            format!("per score, {what}: native / host (best of 15)"),
            format!("{:.0} / {:.0} ns ({:.2}x)", best[i], best[i + 1], best[i + 1] / best[i]),
        ));
    }
}

/// Drift monitoring's cost on the per-request path: the same requests through a host with the
/// monitor off and on, over a snapshot that carries a reference (15 features and the score
/// binned per request), in alternating rounds so that drifting clock speeds hit both alike.
fn drift_overhead(wasm: &[u8], keys: &str, rows: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    use exporter::simulate::{SimulationConfig, simulate};
    use exporter::snapshot::{Decisioning, build_with};
    let config =
        SimulationConfig { seed: 9, customers: 2_000, terminals: 4_000, days: 71, ..Default::default() };
    let tx = simulate(&config, &exporter::NoProgress)?;
    let as_of = scorer::Timestamp(config.start.0 + 70 * 86_400);
    let model = logistic();
    let decisioning =
        Decisioning { model: Some((&model, "lr-drift")), reference_days: 28, ..Default::default() };
    let schema = scorer::features::FeatureSchema::handbook();
    let built = build_with(&tx, &schema, as_of, as_of, &signer(), &decisioning, &exporter::NoProgress)?;
    let start = tx.time.partition_point(|t| *t < as_of);
    let requests: Vec<Vec<u8>> = (start..tx.len())
        .map(|i| {
            rmp_serde::to_vec_named(&serde_json::json!({
                "transaction_id": tx.transaction_id[i],
                "customer_id": tx.customers.id(tx.customer[i]),
                "terminal_id": tx.terminals.id(tx.terminal[i]),
                "amount": tx.amount[i],
                "time": tx.time[i].0,
            }))
        })
        .collect::<Result<_, _>>()?;
    let make = |monitor: Option<host::monitor::MonitorConfig>| -> anyhow::Result<Scorer> {
        let host = Scorer::new(ScorerConfig { monitor, ..Default::default() }, wasm, keys)?;
        host.load_snapshot(built.bytes.clone())?;
        Ok(host)
    };
    let off = make(None)?;
    let on = make(Some(host::monitor::MonitorConfig { log: false, ..Default::default() }))?;
    let batch: Vec<u8> = {
        let mut b = vec![0xdc, 1, 0]; // a MessagePack array of 256
        requests.iter().take(256).for_each(|r| b.extend_from_slice(r));
        b
    };
    let (mut t_off, mut t_on, mut b_off, mut b_on) = (0.0, 0.0, 0.0, 0.0);
    let rounds = 20;
    for _ in 0..rounds {
        for (host, total) in [(&off, &mut t_off), (&on, &mut t_on)] {
            let t = Instant::now();
            for r in &requests {
                black_box(host.score(black_box(r)));
            }
            *total += t.elapsed().as_nanos() as f64 / requests.len() as f64;
        }
        for (host, total) in [(&off, &mut b_off), (&on, &mut b_on)] {
            let t = Instant::now();
            for _ in 0..8 {
                black_box(host.score_batch(black_box(&batch)));
            }
            *total += t.elapsed().as_nanos() as f64 / (8.0 * 256.0);
        }
    }
    let (t_off, t_on, b_off, b_on) =
        (t_off / rounds as f64, t_on / rounds as f64, b_off / rounds as f64, b_on / rounds as f64);
    let samples = on.monitor().map_or(0, |m| m.report().samples);
    // The monitor's own share: one row (15 features and a score) recorded, no guest involved.
    let row: Vec<u8> = (0..16).flat_map(|i| (f64::from(i) * 3.7).to_le_bytes()).collect();
    let record_ns = match on.monitor() {
        Some(m) => {
            let n = 200_000;
            let t = Instant::now();
            for _ in 0..n {
                black_box(m.record(black_box(&built.meta.snapshot_id), black_box(&row)));
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        }
        None => 0.0,
    };
    rows.push(("drift monitor, Monitor::record of one row alone".into(), format!("{record_ns:.0} ns")));
    rows.push((
        format!("drift monitor, one request per call ({} requests, window {samples})", requests.len()),
        format!("{t_off:.0} ns off, {t_on:.0} ns on: +{:.0} ns ({:.3}x)", t_on - t_off, t_on / t_off),
    ));
    rows.push((
        "drift monitor, batches of 256, per score".into(),
        format!("{b_off:.0} ns off, {b_on:.0} ns on: +{:.0} ns ({:.3}x)", b_on - b_off, b_on / b_off),
    ));
    Ok(())
}
