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
    /// Make signing and edge keys.
    #[command(subcommand)]
    Keys(commands::keys::Command),
    /// Build and inspect signed feature snapshots.
    #[command(subcommand)]
    Snapshot(commands::snapshot::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Ingest(args) => commands::ingest::run(args),
        Command::Features(args) => commands::features::run(args),
        Command::Keys(command) => commands::keys::run(command),
        Command::Snapshot(command) => commands::snapshot::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
