//! `tollgate`: the command line over the tollgate crates. Argument parsing and progress output
//! only; the work lives in `exporter`, `scorer`, `models` and `host`.

mod commands;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Fraud scoring at the edge: simulate and ingest transactions, build features and signed
/// snapshots, train models, and score next to the customer.
#[derive(Parser)]
#[command(name = "tollgate", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate card transactions (the handbook's generative process) and write them to a file.
    Simulate(commands::simulate::Args),
    /// Validate a transaction file (CSV, gzip CSV or Parquet) and print what it holds.
    Ingest(commands::ingest::Args),
    /// Compute every transaction's features (exact, or as served from periodic snapshots).
    Features(commands::features::Args),
    /// The continuous exporter: Kafka in, signed snapshots out, exactly once (and a producer
    /// that replays a transaction file into Kafka).
    #[command(subcommand)]
    Exporter(commands::exporter::Command),
    /// Make signing and edge keys.
    #[command(subcommand)]
    Keys(commands::keys::Command),
    /// Build and inspect signed feature snapshots.
    #[command(subcommand)]
    Snapshot(commands::snapshot::Command),
    /// Serve scoring over HTTP: scorer.wasm in wasmtime, snapshot push, rollback, metrics.
    Serve(commands::serve::Args),
    /// Push a snapshot to a running host (http:// or https://HOST:PORT), local Workers KV (kv-local:DIR) or a directory.
    Push(commands::push::Args),
    /// Train a fraud model (lr, rf, gbdt) on transactions or any numeric CSV, and write it.
    Train(commands::train::Args),
    /// Evaluate a model on a test period and write a report, or run the prequential protocol.
    Evaluate(commands::evaluate::Args),
    /// Retrain on the latest labelled window into a model registry; promote the candidate only if
    /// it beats the current model on the same held-back days (exit code 0: promoted, 3: refused).
    Retrain(commands::retrain::Args),
    /// Make an earlier model of a registry current again.
    Rollback(commands::retrain::RollbackArgs),
    /// Import an XGBoost JSON or scikit-learn ONNX model into the scorer's model format.
    Import(commands::import::Args),
    /// Replay a stretch of a transaction history through a running `tollgate serve`, and print the
    /// decisions, their accuracy against the true labels, and the latency.
    Replay(commands::replay::Args),
    /// Serve the browser demo page (built by `cargo xtask demo`) on 127.0.0.1.
    Www(commands::www::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Ingest(args) => commands::ingest::run(args),
        Command::Features(args) => commands::features::run(args),
        Command::Exporter(command) => commands::exporter::run(command),
        Command::Keys(command) => commands::keys::run(command),
        Command::Snapshot(command) => commands::snapshot::run(command),
        Command::Serve(args) => commands::serve::run(args),
        Command::Push(args) => commands::push::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Retrain(args) => match commands::retrain::run(args) {
            Ok(code) => return code,
            Err(err) => Err(err),
        },
        Command::Rollback(args) => commands::retrain::rollback(args),
        Command::Import(args) => commands::import::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Www(args) => commands::www::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
