//! `tollgate simulate`: the built-in transaction simulator.

use crate::progress::Bars;
use anyhow::Context;
use exporter::simulate::{Shift, SimulationConfig, simulate};
use exporter::summary::Summary;
use scorer::Timestamp;
use std::path::PathBuf;
use std::time::Instant;

/// Simulate card transactions with the handbook's generative process: customers and terminals on a
/// 100 x 100 grid, daily Poisson transaction counts, normal amounts, and three fraud scenarios
/// (amount > 220; compromised terminals for 28 days; compromised customers for 14 days).
/// The same seed always gives the same file.
#[derive(clap::Args)]
pub struct Args {
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of simulated days.
    #[arg(long, default_value_t = 183)]
    days: u32,
    /// Number of customers.
    #[arg(long, default_value_t = 5_000)]
    customers: usize,
    /// Number of terminals.
    #[arg(long, default_value_t = 10_000)]
    terminals: usize,
    /// A customer uses the terminals within this distance on the 100 x 100 grid.
    #[arg(long, default_value_t = 5.0)]
    radius: f64,
    /// First simulated day (UTC), YYYY-MM-DD.
    #[arg(long, default_value = "2018-04-01")]
    start: String,
    /// Drift to monitor: multiply a parameter by a factor on some days, `PARAMETER=FACTORx@dayN..M`
    /// (days counted from day0, the first simulated day; M exclusive; `dayN` alone is one day).
    /// E.g. `amount=2x@day40..41` doubles every genuine amount on day 40. Parameters: amount.
    /// Without it the output is exactly the unshifted simulation's.
    #[arg(long, value_name = "SHIFT")]
    shift: Option<Shift>,
    /// Where to write the transactions: .csv, .csv.gz or .parquet (the handbook's column layout).
    #[arg(long, short)]
    output: PathBuf,
}

/// Runs `tollgate simulate`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let start: Timestamp = args.start.parse().with_context(|| format!("--start {:?}", args.start))?;
    let config = SimulationConfig {
        seed: args.seed,
        customers: args.customers,
        terminals: args.terminals,
        days: args.days,
        start: start.start_of_day(),
        radius: args.radius,
        shift: args.shift,
    };
    exporter::FileFormat::from_path(&args.output)?;
    let began = Instant::now();
    let transactions = simulate(&config, &Bars::default())?;
    let simulated = began.elapsed();
    exporter::write::write_transactions(&args.output, &transactions)
        .with_context(|| format!("writing {}", args.output.display()))?;
    print!("{}", Summary::of(&transactions));
    println!(
        "simulated {} transactions in {:.2} s, wrote {} in {:.2} s",
        transactions.len(),
        simulated.as_secs_f64(),
        args.output.display(),
        (began.elapsed() - simulated).as_secs_f64()
    );
    Ok(())
}
