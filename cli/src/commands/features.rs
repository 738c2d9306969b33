//! `tollgate features`: every transaction with its features, exact or as served.

use crate::commands::ingest::SourceArgs;
use crate::commands::train::SchemaArgs;
use crate::progress::Bars;
use anyhow::{Context, bail};
use exporter::features::{Cadence, FeatureTable, compare_tables, compute_features};
use exporter::write::{ExtraColumns, HANDBOOK_COLUMNS, write_transactions_with};
use std::path::PathBuf;
use std::time::Instant;

/// Compute the schema's features (by default the handbook's 15) for every transaction in one
/// streaming pass, with the very code the edge scores with, and write each transaction with its
/// features (named as in the handbook's golden file).
///
/// By default features are exact (lag 0): entity windows as of the transaction itself. With
/// `--snapshot-every`, they are "as served": what the edge computes from the latest snapshot it
/// holds at that time plus the transaction itself; this is what a model should be trained on.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// Where to write: .parquet, .csv or .csv.gz.
    #[arg(long, short)]
    output: PathBuf,
    /// Exact features (lag 0); the default.
    #[arg(long, conflicts_with = "snapshot_every")]
    exact: bool,
    /// As served: snapshots built every DURATION (e.g. 1h, 15m, 24h), aligned to the Unix epoch.
    #[arg(long, value_name = "DURATION")]
    snapshot_every: Option<humantime::Duration>,
    /// With --snapshot-every, also print how each feature differs from the exact one.
    #[arg(long, requires = "snapshot_every")]
    compare_exact: bool,
    #[command(flatten)]
    schema: SchemaArgs,
}

/// Runs `tollgate features`.
pub fn run(args: Args) -> anyhow::Result<()> {
    exporter::FileFormat::from_path(&args.output)?;
    let cadence = match args.snapshot_every {
        None => Cadence::Exact,
        Some(d) if d.as_secs() == 0 => bail!("--snapshot-every must be at least one second"),
        Some(d) => Cadence::Every(i64::try_from(d.as_secs()).context("--snapshot-every is too long")?),
    };
    let tx = args.source.read()?.transactions;
    let schema = args.schema.schema(None)?;
    let began = Instant::now();
    let table = compute_features(&tx, &schema, cadence, &Bars::default())?;
    let computed = began.elapsed();
    let (names, values) = output_columns(&table);
    write_transactions_with(&args.output, &tx, ExtraColumns { names: &names, values: &values })?;
    println!(
        "{} transactions x {} features ({}) in {:.3} s; wrote {}",
        tx.len(),
        schema.len(),
        match cadence {
            Cadence::Exact => "exact".to_string(),
            Cadence::Every(s) => format!("as served, snapshots every {s} s"),
        },
        computed.as_secs_f64(),
        args.output.display()
    );
    if args.compare_exact {
        let exact = compute_features(&tx, &schema, Cadence::Exact, &Bars::default())?;
        println!(
            "\n| feature | differs (share) | mean abs diff | p50 abs diff | p99 abs diff | max abs diff |"
        );
        println!("| --- | --- | --- | --- | --- | --- |");
        for d in compare_tables(&exact, &table) {
            println!(
                "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
                d.name, d.differing_share, d.mean_abs, d.p50_abs, d.p99_abs, d.max_abs
            );
        }
    }
    Ok(())
}

/// The features that are not already transaction columns (TX_AMOUNT is both), row-major.
fn output_columns(table: &FeatureTable) -> (Vec<String>, Vec<f64>) {
    let keep: Vec<usize> = (0..table.schema.len())
        .filter(|&f| !HANDBOOK_COLUMNS.contains(&table.schema.features()[f].name.as_str()))
        .collect();
    let names = keep.iter().map(|&f| table.schema.features()[f].name.clone()).collect();
    let mut values = Vec::with_capacity(table.len() * keep.len());
    for i in 0..table.len() {
        let row = table.row(i);
        values.extend(keep.iter().map(|&f| row[f]));
    }
    (names, values)
}
