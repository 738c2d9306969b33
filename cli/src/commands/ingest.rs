//! `tollgate ingest`: validate a transaction file and print what it holds; also the input options
//! every command that reads transactions shares.

use crate::progress::Bars;
use anyhow::bail;
use exporter::ingest::{IngestOptions, Ingested, OnError, TimeOrder, read_transactions};
use exporter::summary::Summary;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where transactions come from and how to read them; shared by every command that reads them.
#[derive(clap::Args)]
pub struct SourceArgs {
    /// The transaction file: .csv, .csv.gz or .parquet (the handbook's column layout unless
    /// mapped with --column); also accepted as `--input TX_FILE`.
    #[arg(value_name = "TX_FILE", required_unless_present = "input_flag")]
    input: Option<PathBuf>,
    /// The transaction file, as a flag (the same as the positional TX_FILE).
    #[arg(long = "input", value_name = "TX_FILE", conflicts_with = "input")]
    input_flag: Option<PathBuf>,
    /// What to do with a bad row: `fail` (stop at the first, the default) or `quarantine FILE`
    /// (write every rejected row with its reason to FILE, a CSV, and go on).
    #[arg(long, num_args = 1..=2, value_names = ["MODE", "FILE"], default_values = ["fail"])]
    on_error: Vec<String>,
    /// Map a field to a column of another layout, e.g. `--column amount=AMOUNT_EUR`. Fields:
    /// transaction_id, time, customer_id, terminal_id, amount, fraud, scenario (`fraud=` for none).
    #[arg(long = "column", value_name = "FIELD=COLUMN")]
    columns: Vec<String>,
    /// Accept rows out of time order and sort them (by default a row earlier than the one before
    /// it is a bad row).
    #[arg(long)]
    sort: bool,
}

impl SourceArgs {
    /// The transaction file, given either way.
    pub fn input(&self) -> &Path {
        // clap requires one of the two.
        self.input.as_deref().or(self.input_flag.as_deref()).unwrap_or(Path::new(""))
    }

    /// Reads and validates the transactions, drawing a progress bar.
    pub fn read(&self) -> anyhow::Result<Ingested> {
        let on_error = match self.on_error.as_slice() {
            [mode] if mode == "fail" => OnError::Fail,
            [mode, file] if mode == "quarantine" => OnError::Quarantine(PathBuf::from(file)),
            [mode] if mode == "quarantine" => {
                bail!("--on-error quarantine needs a FILE for the rejected rows")
            }
            other => bail!("--on-error {}: use `fail` or `quarantine FILE`", other.join(" ")),
        };
        let mut options = IngestOptions { on_error, ..IngestOptions::default() };
        for mapping in &self.columns {
            let Some((field, column)) = mapping.split_once('=') else {
                bail!("--column {mapping:?}: expected FIELD=COLUMN, e.g. amount=AMOUNT_EUR");
            };
            options.columns.set(field, column)?;
        }
        if self.sort {
            options.time_order = TimeOrder::Sort;
        }
        // The exporter's errors name the file themselves.
        let ingested = read_transactions(self.input(), &options, &Bars::default())?;
        if ingested.report.rejected > 0 {
            eprintln!(
                "warning: {} of {} rows rejected{}",
                ingested.report.rejected,
                ingested.report.rows_read,
                ingested
                    .report
                    .quarantine
                    .as_ref()
                    .map(|p| format!(", written to {}", p.display()))
                    .unwrap_or_default()
            );
        }
        Ok(ingested)
    }
}

/// Read a transaction file (CSV, gzip CSV or Parquet, chosen by its extension), check every row,
/// and print a summary: rows read, accepted and rejected, frauds, customers, terminals, time range.
///
/// Every bad row is reported with its line (CSV) or row (Parquet), its column and the reason.
/// By default the first bad row stops the run; `--on-error quarantine FILE` writes every rejected
/// row with its reason to FILE and goes on. Nothing is dropped silently.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// Also print one line per day.
    #[arg(long)]
    per_day: bool,
}

/// Runs `tollgate ingest`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let began = Instant::now();
    let ingested = args.source.read()?;
    let elapsed = began.elapsed().as_secs_f64();
    let report = &ingested.report;
    println!("{:<28} {:>12}", "rows read", report.rows_read);
    println!("{:<28} {:>12}", "accepted", report.accepted);
    println!("{:<28} {:>12}", "rejected", report.rejected);
    if let Some(path) = &report.quarantine {
        println!("{:<28} {}", "rejected rows written to", path.display());
    }
    let summary = Summary::of(&ingested.transactions);
    print!("{summary}");
    if args.per_day {
        print!("{}", summary.per_day_table());
    }
    println!("read in {elapsed:.2} s ({:.0} rows/s)", report.rows_read as f64 / elapsed.max(1e-9));
    Ok(())
}
