//! `tollgate import`: read an XGBoost JSON or scikit-learn ONNX model into the scorer's model
//! format, print what it holds, optionally check its scores against the source library's
//! predictions, and write it (with its model card) for `tollgate snapshot`.

use anyhow::{Context, bail};
use models::import::{self, Imported, Summary};
use models::report::ModelCard;
use scorer::features::{FeatureSchema, SCHEMA_NAMES};
use std::path::PathBuf;

/// Arguments of `tollgate import`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["xgboost", "onnx"])))]
pub struct Args {
    /// An XGBoost model saved as JSON (binary:logistic, reg:logistic or binary:logitraw; gbtree).
    #[arg(long, value_name = "FILE")]
    xgboost: Option<PathBuf>,
    /// A scikit-learn binary classifier exported with skl2onnx: logistic regression (optionally
    /// after a StandardScaler), random forest, gradient boosting, MLP.
    #[arg(long, value_name = "FILE")]
    onnx: Option<PathBuf>,
    /// Where to write the model (the scorer's MODEL section bytes); its card goes to FILE.json.
    #[arg(long, value_name = "MODEL_FILE")]
    output: Option<PathBuf>,
    /// The names of the model's inputs, in input order (default: the names the file records,
    /// else f0, f1, ...).
    #[arg(long, value_name = "a,b,c", value_delimiter = ',')]
    features: Vec<String>,
    /// Reorder the model's inputs into a built-in feature schema by name (`handbook`: the
    /// scorer's 15 handbook features; `handbook-ratios`: those and three amount ratios), so that
    /// it fits a snapshot of that schema.
    #[arg(long, value_name = "SCHEMA", value_parser = SCHEMA_NAMES)]
    schema: Option<String>,
    /// Score the rows of this CSV with the imported model and compare with a column of reference
    /// predictions (feature columns by name, or the first columns when the names are unknown).
    #[arg(long, value_name = "CSV")]
    check: Option<PathBuf>,
    /// The column of reference predictions in the --check CSV.
    #[arg(long, value_name = "COLUMN", default_value = "reference")]
    reference: String,
    /// Fail when a --check difference exceeds this.
    #[arg(long, value_name = "MAX_ABS_DIFF")]
    tolerance: Option<f64>,
}

/// Runs `tollgate import`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.output.is_none() && args.check.is_none() {
        bail!("nothing to do: give --output MODEL_FILE, --check CSV, or both");
    }
    let Imported { mut model, feature_names, source } = read(&args)?;
    let mut names = match (&args.features[..], feature_names) {
        ([], Some(names)) => names,
        ([], None) => (0..model.n_features()).map(|i| format!("f{i}")).collect(),
        (given, _) => given.to_vec(),
    };
    if names.len() != model.n_features() {
        bail!("--features names {} inputs, but the model reads {}", names.len(), model.n_features());
    }
    println!("imported {source}: {}", Summary::of(&model));
    println!("features: {}", names.join(","));

    if let Some(schema) = &args.schema {
        let Some(known) = FeatureSchema::named(schema) else { bail!("--schema {schema}: no such schema") };
        let target: Vec<String> = known.features().iter().map(|f| f.name.clone()).collect();
        model = import::remap_features(&model, &names, &target).context("--schema")?;
        names = target;
        println!("reordered into the {schema} schema: {}", Summary::of(&model));
    }

    let mut card = ModelCard::new(&model, &names, format!("imported from {source}"));
    if let Some(csv) = &args.check {
        let file = std::fs::File::open(csv).with_context(|| format!("opening {}", csv.display()))?;
        let known_names =
            !args.features.is_empty() || !names.iter().enumerate().all(|(i, n)| *n == format!("f{i}"));
        let report = import::check_parity(&model, file, known_names.then_some(&names[..]), &args.reference)
            .with_context(|| format!("checking against {}", csv.display()))?;
        println!(
            "parity against {}: {} rows, max |diff| {:.3e} (row {}), mean |diff| {:.3e}",
            csv.display(),
            report.rows,
            report.max_abs_diff,
            report.worst_row + 1,
            report.mean_abs_diff
        );
        card.metrics.insert("parity_max_abs_diff".into(), report.max_abs_diff);
        if let Some(tolerance) = args.tolerance
            // NaN differences fail too.
            && (report.max_abs_diff > tolerance || report.max_abs_diff.is_nan())
        {
            bail!("max |diff| {:e} exceeds the tolerance {tolerance:e}", report.max_abs_diff);
        }
    }
    if let Some(path) = &args.output {
        super::train::write_model(path, &model, &card)?;
    }
    Ok(())
}

fn read(args: &Args) -> anyhow::Result<Imported> {
    let (path, kind) = match (&args.xgboost, &args.onnx) {
        (Some(path), _) => (path, "XGBoost"),
        (None, Some(path)) => (path, "ONNX"),
        (None, None) => bail!("give --xgboost FILE or --onnx FILE"),
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let imported = match kind {
        "XGBoost" => import::xgboost::from_json(&bytes),
        _ => import::onnx::from_bytes(&bytes),
    };
    imported.with_context(|| format!("importing the {kind} model {}", path.display()))
}
