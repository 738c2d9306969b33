//! `tollgate evaluate`: score a test period with a trained model and write a report, or run the
//! handbook's prequential protocol over a grid of models.

use crate::commands::train::{FeatureArgs, InputArgs, parse_day};
use crate::progress::Bars;
use anyhow::{Context, bail};
use models::protocol::{Family, Prequential, default_grid};
use std::path::PathBuf;
use std::time::Instant;

/// Score a test period with a trained model and write a report (ROC and PR curves, score
/// histograms, confusion matrix, threshold table), or, with `--protocol prequential`, choose
/// hyperparameters on the handbook's validation folds and report the chosen models on its test
/// folds (mean ± std over 4 folds each).
///
/// The test period defaults to the one after the model's training week and a 7-day delay, as
/// recorded in the model's sidecar (MODEL.json); customers with a fraud known before each test
/// day are dropped from it, as in the handbook.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    features: FeatureArgs,
    /// The model file written by `tollgate train` (its sidecar MODEL_FILE.json is read too).
    #[arg(long, required_unless_present = "protocol")]
    model: Option<PathBuf>,
    /// First test day (YYYY-MM-DD); default: 7 days after the training week.
    #[arg(long, value_name = "DAY")]
    test_start: Option<String>,
    /// Day after the last test day (YYYY-MM-DD, exclusive); default: 7 days after --test-start.
    #[arg(long, value_name = "DAY")]
    test_end: Option<String>,
    /// Write the report into this directory (created if needed).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// The report's page: `html` (one page, SVGs inline) or `md` (Markdown linking the SVGs).
    #[arg(long, default_value = "html", value_parser = ["html", "md"])]
    format: String,
    /// Also write every test transaction's id, score and label: .csv or .parquet.
    #[arg(long, value_name = "FILE")]
    scores: Option<PathBuf>,
    /// Flag transactions scoring at least this in the confusion matrix (default: the threshold
    /// from the alert budget).
    #[arg(long)]
    threshold: Option<f64>,
    /// Alert budget: reviews per day the threshold table and default threshold aim at.
    #[arg(long, default_value_t = 100)]
    alerts_per_day: usize,
    /// Cost of reviewing one alert, for the cost-based threshold (same unit as TX_AMOUNT).
    #[arg(long, default_value_t = 5.0)]
    review_cost: f64,
    /// Run a protocol instead of scoring one model: `prequential` (the handbook's ch. 5).
    #[arg(long, value_parser = ["prequential"])]
    protocol: Option<String>,
    /// With --protocol: the model families on the grid (lr, rf, gbdt, bb: balanced bagging, gs:
    /// slower-learning GBDTs).
    #[arg(long, value_delimiter = ',', default_value = "lr,rf,gbdt")]
    families: Vec<String>,
}

/// Runs `tollgate evaluate`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.protocol.as_deref() {
        Some("prequential") => prequential(&args),
        Some(other) => bail!("--protocol {other}: the only protocol is `prequential`"),
        None => crate::commands::train::evaluate_model(
            &args.input,
            &args.features,
            args.model.as_deref().context("--model is required without --protocol")?,
            crate::commands::train::EvaluateOptions {
                test_start: args.test_start.as_deref().map(parse_day).transpose()?,
                test_end: args.test_end.as_deref().map(parse_day).transpose()?,
                report: args.report.as_deref(),
                html: args.format == "html",
                scores: args.scores.as_deref(),
                threshold: args.threshold,
                alerts_per_day: args.alerts_per_day,
                review_cost: args.review_cost,
            },
        ),
    }
}

fn prequential(args: &Args) -> anyhow::Result<()> {
    let mut families = Vec::new();
    for f in &args.families {
        families.push(match f.parse::<Family>() {
            Ok(family) => family,
            Err(e) => bail!("--families: {e}"),
        });
    }
    let grid = default_grid(&families);
    let tx = args.input.read()?;
    let (table, cadence) = args.features.compute(&tx, None)?;
    let protocol = Prequential::handbook();
    let began = Instant::now();
    let result = protocol.run(&tx, &table, &grid, &Bars::default())?;
    println!(
        "prequential protocol, {} features, {} candidates x {} validation folds, chosen candidates x {} test folds, {:.0} s\n",
        cadence,
        grid.len(),
        protocol.folds,
        protocol.folds,
        began.elapsed().as_secs_f64()
    );
    print!("{}", result.markdown());
    Ok(())
}
