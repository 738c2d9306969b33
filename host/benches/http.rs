//! `cargo bench -p host --bench http`: the scoring service over HTTP on loopback, beside a trivial
//! axum endpoint that parses the same JSON body and answers a constant (the HTTP ceiling of the
//! machine). Prints one table: single requests, batches, and single requests while a snapshot is
//! pushed every second, each with requests/s, scores/s, latency percentiles, failures, server CPU
//! time per request and the ratio to the ceiling; then the library path without HTTP for scale.
//! The load comes from `wrk` when it is on PATH, else from threads in this process.
//!
//! Settings (environment): `TOLLGATE_BENCH_SECONDS` per row (default 10), `TOLLGATE_BENCH_THREADS`
//! tokio workers per server (default: one per core, as `tollgate serve` runs; 1 shows the cost of
//! a request with no second core to lean on), `TOLLGATE_BENCH_CONNECTIONS` for single requests (default
//! 32), `TOLLGATE_BENCH_GENERATOR` = `wrk` or `threads` (default: `wrk` when installed).

use anyhow::{Context, Result, bail, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use host::service::{Running, ServiceConfig};
use host::{Scorer, ScorerConfig};
use scorer::score::Scorer as NativeScorer;
use scorer::snapshot::Snapshot;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tollgate_tests::parity::{fixture, logistic, signer};

const TOKEN: &str = "bench-admin-token";
/// Connections for batch rows: enough to keep every server thread busy.
const BATCH_CONNECTIONS: usize = 4;
const JSON: &str = "application/json";
const MSGPACK: &str = "application/msgpack";
/// The service's tokio workers (tokio's default name); the ceiling's are named `ceiling-worker`.
const SERVICE_THREADS: &str = "tokio-rt-worker";
const CEILING_THREADS: &str = "ceiling-worker";

/// What one load run measured.
struct Load {
    requests: u64,
    seconds: f64,
    non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    failed: u64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// How load is made.
#[derive(Clone, Copy, PartialEq)]
enum Generator {
    /// `wrk -t1` with a Lua script that cycles through the bodies.
    Wrk,
    /// One thread per connection here, each with a keep-alive connection (ureq).
    Threads,
}

/// The trivial endpoint on its own runtime: parse the JSON body, answer `constant`.
struct Ceiling {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Ceiling {
    fn start(threads: usize, constant: Bytes) -> Result<Ceiling> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(CEILING_THREADS)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let app = Router::new().route(
            "/v1/score",
            post(move |body: Bytes| {
                let constant = constant.clone();
                async move { parse_and_answer(&body, constant) }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("ceiling".into()).spawn(move || {
            runtime.block_on(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        })?;
        Ok(Ceiling { addr, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The ceiling's handler: the JSON parse every scoring request needs, then a constant answer.
fn parse_and_answer(body: &[u8], constant: Bytes) -> Response {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v.is_object() => (StatusCode::OK, [(header::CONTENT_TYPE, JSON)], constant).into_response(),
        _ => (StatusCode::BAD_REQUEST, "not a JSON object").into_response(),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v.parse().ok().with_context(|| format!("{name}={v:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU time spent in user space and in the kernel.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    user: Duration,
    system: Duration,
}

impl Cpu {
    fn total(self) -> Duration {
        self.user + self.system
    }

    /// The time spent between `earlier` and `self`.
    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// The thread name and CPU time in a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> Option<(&str, Cpu)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    // After the name: state, ppid, ... utime is the 12th field and stime the 13th.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (user, system) = (fields.get(11)?.parse::<u64>().ok()?, fields.get(12)?.parse::<u64>().ok()?);
    Some((comm, Cpu { user: ticks(user), system: ticks(system) }))
}

/// Ticks as time: Linux counts them at USER_HZ = 100.
fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * 10)
}

/// CPU time of this process's live threads named `name`.
fn cpu_time(name: &str) -> Cpu {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Cpu::default() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| stat_cpu(&stat).filter(|(comm, _)| *comm == name).map(|(_, cpu)| cpu))
        .fold(Cpu::default(), |a, b| Cpu { user: a.user + b.user, system: a.system + b.system })
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Cpu {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    stat_cpu(&stat).map(|(_, cpu)| cpu).unwrap_or_default()
}

/// `body` as a Lua string literal: printable ASCII as is, every other byte as a `\ddd` escape.
fn lua_string(body: &[u8]) -> String {
    let mut out = String::with_capacity(body.len() + 2);
    out.push('"');
    for &b in body {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\{b:03}");
        }
    }
    out.push('"');
    out
}

/// Runs `wrk -t1 -cN -dS --latency` against `url`, cycling through `bodies`, and reads the
/// numbers its `done` hook prints.
fn wrk(
    dir: &Path,
    url: &str,
    content_type: &str,
    bodies: &[Vec<u8>],
    connections: usize,
    seconds: u64,
) -> Result<Load> {
    let mut lua = String::from("local bodies = {\n");
    for b in bodies {
        lua.push_str(&lua_string(b));
        lua.push_str(",\n");
    }
    lua.push_str("}\n");
    lua.push_str(&format!("local content_type = {}\n", lua_string(content_type.as_bytes())));
    lua.push_str(
        r#"local requests = {}
local i = 0
init = function(args)
  for k, b in ipairs(bodies) do
    requests[k] = wrk.format("POST", nil, {["Content-Type"] = content_type}, b)
  end
end
request = function()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("TOLLGATE-WRK %.0f %.0f %.0f %.0f %.0f %.0f %.0f\n", summary.duration,
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), latency.max))
end
"#,
    );
    let script = dir.join("post.lua");
    std::fs::write(&script, lua)?;
    let output = Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .args(["--latency", "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "wrk failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TOLLGATE-WRK "))
        .with_context(|| format!("wrk printed no summary line:\n{stdout}"))?;
    let numbers: Vec<f64> = line
        .split_whitespace()
        .map(|n| n.parse::<f64>().with_context(|| format!("{n:?} in wrk's {line:?}")))
        .collect::<Result<_>>()?;
    let &[duration_us, requests, non_2xx, failed, p50_us, p99_us, max_us] = &numbers[..] else {
        bail!("wrk's summary has the wrong shape: {line:?}");
    };
    Ok(Load {
        requests: requests as u64,
        seconds: duration_us / 1e6,
        non_2xx: non_2xx as u64,
        failed: failed as u64,
        p50_us,
        p99_us,
        max_us,
    })
}

/// The p-quantile (0 to 1) of sorted latencies in µs.
fn quantile(sorted: &[u32], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    f64::from(sorted.get(i).copied().unwrap_or(0))
}

/// The same measurement with `connections` threads here, each on its own keep-alive connection.
fn threads(
    url: &str,
    content_type: &str,
    bodies: &[Vec<u8>],
    connections: usize,
    seconds: u64,
) -> Result<Load> {
    let budget = Duration::from_secs(seconds);
    let start = Instant::now();
    let runs: Vec<(Vec<u32>, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                s.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(10)))
                        .build()
                        .into();
                    let (mut latencies, mut non_2xx, mut failed) = (Vec::new(), 0u64, 0u64);
                    let mut k = c * 7919;
                    while start.elapsed() < budget {
                        k += 1;
                        let t = Instant::now();
                        let answer = agent
                            .post(url)
                            .header("content-type", content_type)
                            .send(&bodies[k % bodies.len()][..])
                            .and_then(|mut r| Ok((r.status().as_u16(), r.body_mut().read_to_vec()?)));
                        latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                        match answer {
                            Ok((200..=299, _)) => {}
                            Ok(_) => non_2xx += 1,
                            Err(_) => failed += 1,
                        }
                    }
                    (latencies, non_2xx, failed)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    ensure!(runs.len() == connections, "a load thread panicked");
    let mut all: Vec<u32> = runs.iter().flat_map(|r| r.0.iter().copied()).collect();
    all.sort_unstable();
    Ok(Load {
        requests: all.len() as u64,
        seconds,
        non_2xx: runs.iter().map(|r| r.1).sum(),
        failed: runs.iter().map(|r| r.2).sum(),
        p50_us: quantile(&all, 0.50),
        p99_us: quantile(&all, 0.99),
        max_us: quantile(&all, 1.0),
    })
}

/// The library path on this thread, no HTTP: each body scored in turn for `seconds`. Returns the
/// load, the number of fallback answers and the CPU time this thread spent.
fn library(scorer: &Scorer, bodies: &[Vec<u8>], batch: bool, seconds: u64) -> (Load, u64, Cpu) {
    let (cpu, budget, start) = (thread_cpu_time(), Duration::from_secs(seconds), Instant::now());
    let mut latencies: Vec<u32> = Vec::new();
    let mut fallbacks = 0;
    for body in bodies.iter().cycle() {
        if start.elapsed() >= budget {
            break;
        }
        let t = Instant::now();
        let scored = if batch { scorer.score_batch(body) } else { scorer.score(body) };
        latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        fallbacks += u64::from(scored.fallback.is_some());
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let load = Load {
        requests: latencies.len() as u64,
        seconds,
        non_2xx: 0,
        failed: 0,
        p50_us: quantile(&latencies, 0.5),
        p99_us: quantile(&latencies, 0.99),
        max_us: quantile(&latencies, 1.0),
    };
    (load, fallbacks, thread_cpu_time().since(cpu))
}

/// Pushes `snapshots` to the service one per second until `stop`; returns the pushes that
/// answered 200 and the slowest push.
fn swapper(base: &str, snapshots: &[Vec<u8>], stop: &AtomicBool) -> (usize, Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let (start, mut done, mut slowest) = (Instant::now(), 0, Duration::ZERO);
    for (i, bytes) in snapshots.iter().enumerate() {
        while start.elapsed() < Duration::from_secs(i as u64 + 1) {
            if stop.load(Ordering::SeqCst) {
                return (done, slowest);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = Instant::now();
        let answer = agent
            .put(format!("{base}/v1/snapshot"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .send(&bytes[..]);
        slowest = slowest.max(t.elapsed());
        if answer.is_ok_and(|r| r.status() == 200) {
            done += 1;
        }
    }
    (done, slowest)
}

/// One line of the table.
struct Row {
    what: String,
    /// Open connections; 0 for the library rows (no HTTP).
    connections: usize,
    /// Scores per request.
    per_request: usize,
    load: Load,
    /// The service's fallback answers during the row (none for the ceiling).
    fallbacks: Option<u64>,
    /// CPU time of the server's threads (the calling thread for library rows) during the row.
    cpu: Cpu,
}

fn ms(us: f64) -> String {
    if us >= 10_000.0 { format!("{:.0} ms", us / 1e3) } else { format!("{:.2} ms", us / 1e3) }
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A batch body: `n` requests from `singles` (from the `b`-th batch on), as a JSON or MessagePack
/// array.
fn batch_body(singles: &[Vec<u8>], b: usize, n: usize, json: bool) -> Vec<u8> {
    let items = (0..n).map(|i| &singles[(b * n + i) % singles.len()]);
    if json {
        let mut body = b"[".to_vec();
        for (i, item) in items.enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item);
        }
        body.push(b']');
        body
    } else {
        // array 16: 0xdc and the length in two bytes, big-endian (n < 65,536).
        let mut body = vec![0xdc, (n >> 8) as u8, n as u8];
        items.for_each(|item| body.extend_from_slice(item));
        body
    }
}

fn main() -> Result<()> {
    let seconds: u64 = env_or("TOLLGATE_BENCH_SECONDS", 10)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server_threads: usize = env_or("TOLLGATE_BENCH_THREADS", cores)?;
    let connections: usize = env_or("TOLLGATE_BENCH_CONNECTIONS", 32)?;
    let has_wrk = Command::new("wrk").arg("--version").output().is_ok();
    let generator = match std::env::var("TOLLGATE_BENCH_GENERATOR").as_deref() {
        Ok("wrk") if has_wrk => Generator::Wrk,
        Ok("wrk") => bail!("TOLLGATE_BENCH_GENERATOR=wrk but wrk is not on PATH (apt-get install wrk)"),
        Ok("threads") => Generator::Threads,
        Ok(other) => bail!("TOLLGATE_BENCH_GENERATOR={other:?}: wrk or threads"),
        Err(_) if has_wrk => Generator::Wrk,
        Err(_) => Generator::Threads,
    };
    if generator == Generator::Threads {
        eprintln!("http bench: wrk is not on PATH; threads here make the load and are likely the bottleneck");
    }
    let load_before = load_average();

    let wasm = std::fs::read(tollgate_tests::scorer_wasm()?)?;
    let f = fixture(&logistic(), "lr-parity-v1")?;
    // Real requests that the model scores (status 200), as a gateway sends them.
    let mut native = NativeScorer::new(Snapshot::load(&f.snapshot, &[signer().edge_key()])?);
    let mut scorable = |r: &[u8]| {
        let mut out = Vec::new();
        native.score_bytes(r, &mut out);
        out.starts_with(br#"{"ok":true"#) || out.get(1..5) == Some(b"\xa2ok\xc3")
    };
    let singles: Vec<Vec<u8>> = f
        .json_requests()
        .into_iter()
        .map(|r| r.as_bytes().to_vec())
        .filter(|r| scorable(r))
        .take(4_000)
        .collect();
    let msgpack: Vec<Vec<u8>> = f
        .requests
        .iter()
        .filter(|r| r.first().is_some_and(|b| b & 0xf0 == 0x80) && scorable(r))
        .take(4_000)
        .cloned()
        .collect();
    ensure!(singles.len() >= 1_000 && msgpack.len() >= 1_000, "too few scorable requests");
    let batches = |singles: &[Vec<u8>], n: usize, json: bool| -> Vec<Vec<u8>> {
        (0..singles.len().div_ceil(n).max(4)).map(|b| batch_body(singles, b, n, json)).collect()
    };
    let swaps: Vec<Vec<u8>> =
        (1..=seconds + 2).map(|i| f.resigned(&format!("tg-bench-swap-{i}"))).collect::<Result<_>>()?;

    let scorer = Scorer::new(ScorerConfig::default(), &wasm, &signer().edge_key().to_text())?;
    scorer.load_snapshot(f.snapshot.clone())?;
    // Idempotency off: the bench sends the same transactions again and must measure scoring,
    // not replays from the idempotency window.
    let config = ServiceConfig {
        admin_token: Some(TOKEN.into()),
        idempotency_window: Duration::ZERO,
        max_body: 4 << 20,
        ..Default::default()
    };
    let service: Running =
        host::service::spawn(scorer.clone(), config, "127.0.0.1:0".parse()?, server_threads)?;
    let base = format!("http://{}", service.addr);
    // The ceiling answers with the size of a real answer: the service's to the first request.
    let constant: Bytes = ureq::post(format!("{base}/v1/score"))
        .header("content-type", JSON)
        .send(&singles[0][..])?
        .body_mut()
        .read_to_vec()?
        .into();
    let ceiling = Ceiling::start(server_threads, constant)?;

    let dir = tempfile::tempdir()?;
    let run =
        |url: &str, content_type: &str, bodies: &[Vec<u8>], connections: usize, seconds: u64| match generator
        {
            Generator::Wrk => wrk(dir.path(), url, content_type, bodies, connections, seconds),
            Generator::Threads => threads(url, content_type, bodies, connections, seconds),
        };
    let ceiling_url = format!("http://{}/v1/score", ceiling.addr);
    let score_url = format!("{base}/v1/score");
    let batch_url = format!("{base}/v1/score/batch");
    // Warm both servers (connections, allocator, instance pool) before anything is measured.
    run(&ceiling_url, JSON, &singles, connections, 2)?;
    run(&score_url, JSON, &singles, connections, 2)?;

    // Each row runs alone; it records the server threads' CPU time and the service's fallbacks.
    let fallbacks = || scorer.status().counts.fallbacks;
    let mut rows: Vec<Row> = Vec::new();
    let mut measure =
        |what: &str, threads: &str, per_request: usize, conns: usize, load: &dyn Fn() -> Result<Load>| {
            let (cpu, before) = (cpu_time(threads), fallbacks());
            let load = load()?;
            let cpu = cpu_time(threads).since(cpu);
            let fallbacks = (threads == SERVICE_THREADS).then(|| fallbacks() - before);
            rows.push(Row { what: what.into(), connections: conns, per_request, load, fallbacks, cpu });
            anyhow::Ok(())
        };
    measure(
        "ceiling: trivial axum endpoint (parse JSON, constant answer)",
        CEILING_THREADS,
        1,
        connections,
        &|| run(&ceiling_url, JSON, &singles, connections, seconds),
    )?;
    measure("POST /v1/score, one JSON request", SERVICE_THREADS, 1, connections, &|| {
        run(&score_url, JSON, &singles, connections, seconds)
    })?;
    for (n, json) in [(256, true), (1000, true), (256, false)] {
        let (format, content_type) = if json { ("JSON", JSON) } else { ("MessagePack", MSGPACK) };
        let bodies = batches(if json { &singles } else { &msgpack }, n, json);
        let what = format!("POST /v1/score/batch, {n} {format} requests per batch");
        measure(&what, SERVICE_THREADS, n, BATCH_CONNECTIONS, &|| {
            run(&batch_url, content_type, &bodies, BATCH_CONNECTIONS, seconds)
        })?;
    }
    let stop = AtomicBool::new(false);
    let pushed = Mutex::new((0, Duration::ZERO));
    measure(
        "POST /v1/score while a snapshot is pushed every second",
        SERVICE_THREADS,
        1,
        connections,
        &|| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let done = swapper(&base, &swaps, &stop);
                    if let Ok(mut p) = pushed.lock() {
                        *p = done;
                    }
                });
                let load = run(&score_url, JSON, &singles, connections, seconds);
                stop.store(true, Ordering::SeqCst);
                load
            })
        },
    )?;
    let (swapped, slowest) = pushed.lock().map(|p| *p).unwrap_or_default();
    drop(ceiling);
    drop(service);
    // The same calls without HTTP on this thread: the most one core could score.
    let library_seconds = seconds.div_ceil(3);
    for (what, bodies, per_request) in [
        ("library, no HTTP: host::Scorer::score, one JSON request", singles.clone(), 1),
        ("library, no HTTP: host::Scorer::score_batch, 256 JSON requests", batches(&singles, 256, true), 256),
        (
            "library, no HTTP: host::Scorer::score_batch, 256 MessagePack requests",
            batches(&msgpack, 256, false),
            256,
        ),
    ] {
        let (load, n, cpu) = library(&scorer, &bodies, per_request > 1, library_seconds);
        rows.push(Row { what: what.into(), connections: 0, per_request, load, fallbacks: Some(n), cpu });
    }
    let load_after = load_average();

    let (ceiling_rps, ceiling_p99) = (rows[0].load.per_second(), rows[0].load.p99_us);
    println!(
        "HTTP on loopback, {} cores; generator: {}; servers: {server_threads} tokio worker thread(s) each; \
         {seconds} s per row; idempotency off; load average before {load_before}, after {load_after}",
        std::thread::available_parallelism()?.get(),
        match generator {
            Generator::Wrk => "wrk -t1 (Lua script cycling through the bodies)",
            Generator::Threads => "one thread per connection in the bench (ureq, keep-alive)",
        },
    );
    println!();
    println!(
        "| what | conns | requests/s | scores/s | p50 | p99 | max | non-2xx / failed | fallbacks \
         | server CPU per score | of it in the kernel | req/s vs ceiling | p99 vs ceiling |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &rows {
        let load = &row.load;
        let http = row.connections > 0;
        let or_dash = |text: String| if http { text } else { "–".into() };
        let scores = load.requests as f64 * row.per_request as f64;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} µs | {:.1} µs | {} | {} |",
            row.what,
            or_dash(row.connections.to_string()),
            thousands(load.per_second()),
            thousands(load.per_second() * row.per_request as f64),
            ms(load.p50_us),
            ms(load.p99_us),
            ms(load.max_us),
            or_dash(format!("{} / {}", load.non_2xx, load.failed)),
            row.fallbacks.map(|n| n.to_string()).unwrap_or_else(|| "–".into()),
            row.cpu.total().as_secs_f64() * 1e6 / scores.max(1.0),
            row.cpu.system.as_secs_f64() * 1e6 / scores.max(1.0),
            or_dash(format!("{:.0} %", 100.0 * load.per_second() / ceiling_rps)),
            or_dash(format!("{:.2}x", load.p99_us / ceiling_p99)),
        );
    }
    let single = &rows[1].load;
    let best_batch =
        rows[2..5].iter().map(|r| r.load.per_second() * r.per_request as f64).fold(0.0, f64::max);
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!();
    println!(
        "goal: single requests >= 70 % of the ceiling's requests/s: {:.0} % ({})",
        100.0 * single.per_second() / ceiling_rps,
        verdict(single.per_second() >= 0.7 * ceiling_rps)
    );
    println!(
        "goal: single-request p99 <= 1.5x the ceiling's: {:.2}x ({})",
        single.p99_us / ceiling_p99,
        verdict(single.p99_us <= 1.5 * ceiling_p99)
    );
    println!(
        "goal: batches >= 500,000 scores/s: {} scores/s ({})",
        thousands(best_batch),
        verdict(best_batch >= 500_000.0)
    );
    let c = scorer.status().counts;
    println!(
        "service: {} calls scored, {} fallbacks, {} instances discarded; swaps: {swapped} pushes \
         answered 200, the slowest in {slowest:.1?}",
        c.scored, c.fallbacks, c.discarded
    );
    Ok(())
}
