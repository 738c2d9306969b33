//! `tollgate replay`: sends a stretch of a transaction history, one request per transaction, to a
//! running `tollgate serve`, and prints what it decided, how accurate that was against the true
//! labels, and how long each score took as the caller saw it.

use crate::commands::ingest::SourceArgs;
use crate::progress::Bars;
use anyhow::{Context, bail};
use exporter::{Progress, Transactions};
use models::metrics::{self, ConfusionMatrix};
use scorer::Timestamp;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use ureq::tls::TlsConfig;

/// Arguments of `tollgate replay`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// The scoring service, e.g. `http://127.0.0.1:8080` or `https://...` (a `tollgate serve`).
    #[arg(long)]
    to: String,
    /// For an https:// service: trust the PEM certificate(s) in FILE (e.g. its self-signed
    /// certificate) instead of the built-in web roots.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// First day to replay (UTC, `YYYY-MM-DD`); default: the last day of the history.
    #[arg(long)]
    day: Option<String>,
    /// How many days to replay from `--day`.
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// Requests in flight at once (one connection each).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

/// What the service answered for one transaction.
struct Answer {
    score: f64,
    decision: String,
    latency: Duration,
}

/// Runs `tollgate replay`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let tls = crate::commands::push::tls_config(args.ca_cert.as_deref())?;
    let tx = args.source.read()?.transactions;
    let Some(&last) = tx.time.last() else { bail!("{}: no transactions", args.source.input().display()) };
    let first_day = match &args.day {
        Some(text) => text.parse::<Timestamp>().with_context(|| format!("--day {text:?}"))?,
        None => Timestamp(last.0.div_euclid(86_400) * 86_400),
    };
    let end = first_day.plus_seconds(i64::from(args.days) * 86_400);
    let rows: Vec<usize> = (0..tx.len()).filter(|&i| tx.time[i] >= first_day && tx.time[i] < end).collect();
    if rows.is_empty() {
        bail!("no transaction between {first_day} and {end}");
    }
    let url = format!("{}/v1/score", args.to.trim_end_matches('/'));
    let bars = Bars::default();
    bars.start("replay", rows.len() as u64);
    let began = Instant::now();
    let answers = score_all(&tx, &rows, &url, args.concurrency.max(1), &tls, &bars)?;
    let wall = began.elapsed();
    bars.finish();

    println!("replayed {} transactions from {first_day} to {end} through {url}", rows.len());
    let count = |d: &str| answers.iter().filter(|a| a.decision == d).count();
    let labels: Vec<bool> = rows.iter().map(|&i| tx.fraud[i] != 0).collect();
    let frauds = labels.iter().filter(|&&y| y).count();
    println!(
        "decisions        allow {}, review {}, decline {} ({} frauds in the stretch)",
        count("allow"),
        count("review"),
        count("decline"),
        frauds
    );
    // Flagged = reviewed or declined: the alerts an analyst sees.
    let flagged: Vec<f64> = answers.iter().map(|a| f64::from(u8::from(a.decision != "allow"))).collect();
    let m = ConfusionMatrix::at_threshold(&flagged, &labels, 1.0)?;
    println!(
        "alerts           precision {:.3}, recall {:.3}, F1 {:.3} (TP {}, FP {}, FN {}, TN {})",
        m.precision(),
        m.recall(),
        m.f1(),
        m.true_positives,
        m.false_positives,
        m.false_negatives,
        m.true_negatives
    );
    let scores: Vec<f64> = answers.iter().map(|a| a.score).collect();
    if frauds > 0 && frauds < labels.len() {
        let cards: Vec<u32> = rows.iter().map(|&i| tx.customer[i]).collect();
        let days: Vec<i64> = rows.iter().map(|&i| tx.time[i].0.div_euclid(86_400)).collect();
        println!(
            "ranking          AUC ROC {:.4}, average precision {:.4}, card precision@100 {:.4}",
            metrics::roc_auc(&scores, &labels)?,
            metrics::average_precision(&scores, &labels)?,
            metrics::card_precision_at_k(&scores, &labels, &cards, &days, 100)?.mean
        );
    } else {
        println!("ranking          (needs both frauds and genuine transactions in the stretch)");
    }
    let mut latencies: Vec<Duration> = answers.iter().map(|a| a.latency).collect();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    println!(
        "latency          p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs per request over HTTP ({:.0} requests/s with {} in flight)",
        at(0.5),
        at(0.99),
        at(1.0),
        rows.len() as f64 / wall.as_secs_f64(),
        args.concurrency.max(1)
    );
    Ok(())
}

/// Scores `rows` of `tx` through the service, `concurrency` requests at a time; answers in row order.
fn score_all(
    tx: &Transactions,
    rows: &[usize],
    url: &str,
    concurrency: usize,
    tls: &TlsConfig,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<Answer>> {
    let chunk = rows.len().div_ceil(concurrency);
    std::thread::scope(|scope| {
        let workers: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> anyhow::Result<Vec<Answer>> {
                    let agent = crate::commands::push::agent(tls.clone());
                    let mut answers = Vec::with_capacity(part.len());
                    for &i in part {
                        answers.push(score_one(&agent, url, tx, i)?);
                        progress.advance(1);
                    }
                    Ok(answers)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(rows.len());
        for worker in workers {
            match worker.join() {
                Ok(answers) => all.extend(answers?),
                Err(_) => bail!("a replay thread panicked"),
            }
        }
        Ok(all)
    })
}

/// One transaction as a JSON request, and the service's answer.
fn score_one(agent: &ureq::Agent, url: &str, tx: &Transactions, i: usize) -> anyhow::Result<Answer> {
    let request = tx.score_request(i);
    let began = Instant::now();
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(request.as_bytes())
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body =
        response.body_mut().read_to_string().with_context(|| format!("reading the answer of {url}"))?;
    let latency = began.elapsed();
    let id = tx.transaction_id[i];
    if !status.is_success() {
        bail!("transaction {id}: {url} answered {status}: {}", body.trim());
    }
    let value: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("transaction {id}: the answer is not JSON: {body}"))?;
    let Some(decision) = value["decision"].as_str() else {
        bail!("transaction {id}: the answer has no decision: {body}")
    };
    // A hard rule decides without the model (score null): such a transaction ranks first.
    let ruled = value["rules"].as_array().is_some_and(|r| !r.is_empty());
    let score = match value["score"].as_f64() {
        Some(score) => score,
        None if ruled => 1.0,
        None => bail!("transaction {id}: the answer has no score and no rule: {body}"),
    };
    Ok(Answer { score, decision: decision.to_string(), latency })
}
