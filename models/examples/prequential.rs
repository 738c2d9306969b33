//! The handbook's prequential protocol on a transaction file, without the CLI:
//! `cargo run -p models --example prequential -- FILE [exact|SECONDS] [lr,rf,gbdt,bb]`.
//! `tollgate evaluate --protocol prequential` runs the same code with progress bars.

use exporter::NoProgress;
use exporter::features::{Cadence, compute_features};
use exporter::ingest::{IngestOptions, read_transactions};
use models::protocol::{Family, Prequential, default_grid};
use scorer::features::FeatureSchema;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        return Err("usage: prequential FILE [exact|SECONDS] [lr,rf,gbdt,bb]".into());
    };
    let cadence = match args.get(1).map(String::as_str) {
        None | Some("exact") => Cadence::Exact,
        Some(s) => Cadence::Every(s.parse()?),
    };
    let families: Vec<Family> = args
        .get(2)
        .map_or("lr,rf,gbdt", String::as_str)
        .split(',')
        .map(str::parse::<Family>)
        .collect::<Result<_, _>>()?;
    let began = Instant::now();
    let tx = read_transactions(path.as_ref(), &IngestOptions::default(), &NoProgress)?.transactions;
    let table = compute_features(&tx, &FeatureSchema::handbook(), cadence, &NoProgress)?;
    eprintln!("read and features: {:.1} s", began.elapsed().as_secs_f64());
    let grid = default_grid(&families);
    let result = Prequential::handbook().run(&tx, &table, &grid, &NoProgress)?;
    println!("{cadence:?} features, {} candidates, {:.0} s\n", grid.len(), began.elapsed().as_secs_f64());
    print!("{}", result.markdown());
    Ok(())
}
