//! `tollgate train`: train a model on a transaction history (features through `exporter`) or on
//! any CSV of numeric columns, print its metrics and write it in the scorer's model format; also
//! the input and feature options `tollgate evaluate` shares, and its single-model evaluation.

use crate::progress::Bars;
use anyhow::{Context, bail};
use exporter::Transactions;
use exporter::features::{Cadence, FeatureTable, compute_features};
use exporter::ingest::{IngestOptions, TimeOrder, read_transactions};
use models::report::{ModelCard, PageFormat, Report, write_scores};
use models::tabular::{Split, TabularData};
use models::threshold::{Outcomes, ThresholdChoice};
use models::{
    ClassWeight, ConfusionMatrix, Dataset, ForestConfig, GbdtConfig, Holdout, LogisticConfig, MaxFeatures,
    MlpConfig, Resampling, Samples, SplitMethod, SvmConfig, Trainer, metrics,
};
use scorer::Timestamp;
use scorer::features::{FeatureSchema, SCHEMA_NAMES};
use scorer::model::Model;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where transactions come from (the handbook's column layout).
#[derive(clap::Args)]
pub struct InputArgs {
    /// The transaction file: .csv, .csv.gz or .parquet, in the handbook's column layout.
    #[arg(long, value_name = "TX_FILE")]
    pub input: Option<PathBuf>,
    /// Accept rows out of time order and sort them.
    #[arg(long)]
    pub sort: bool,
}

impl InputArgs {
    /// Reads and validates the transactions (the first bad row stops the run, named).
    pub fn read(&self) -> anyhow::Result<Transactions> {
        let Some(path) = &self.input else { bail!("--input TX_FILE is required") };
        let mut options = IngestOptions::default();
        if self.sort {
            options.time_order = TimeOrder::Sort;
        }
        Ok(read_transactions(path, &options, &Bars::default())?.transactions)
    }
}

/// Which features, and how they are computed.
#[derive(clap::Args)]
pub struct FeatureArgs {
    /// As served: features from snapshots built every DURATION (e.g. 1h); default exact.
    #[arg(long, value_name = "DURATION")]
    pub snapshot_every: Option<humantime::Duration>,
    #[command(flatten)]
    pub schema: SchemaArgs,
}

/// The feature schema, by name.
#[derive(clap::Args, Clone, Default)]
pub struct SchemaArgs {
    /// Feature schema: `handbook` (the handbook's 15 features) or `handbook-ratios` (those and
    /// the amount over the customer's mean amount in the last 1, 7 and 30 days). Default: the
    /// model's (from its model card) where there is a model, else `handbook`.
    #[arg(long = "schema", value_name = "NAME", value_parser = SCHEMA_NAMES)]
    name: Option<String>,
}

impl SchemaArgs {
    /// The schema named; without `--schema`, the built-in one whose feature names are
    /// `trained_on` (a model card's), else the handbook's.
    pub fn schema(&self, trained_on: Option<&[String]>) -> anyhow::Result<FeatureSchema> {
        if let Some(name) = &self.name {
            return FeatureSchema::named(name).with_context(|| format!("--schema {name}: no such schema"));
        }
        let fits = |s: &FeatureSchema| {
            trained_on.is_some_and(|names| s.features().iter().map(|f| &f.name).eq(names))
        };
        Ok(SCHEMA_NAMES
            .iter()
            .filter_map(|n| FeatureSchema::named(n))
            .find(fits)
            .unwrap_or_else(FeatureSchema::handbook))
    }
}

impl FeatureArgs {
    /// The cadence asked for.
    pub fn cadence(&self) -> anyhow::Result<Cadence> {
        Ok(match self.snapshot_every {
            None => Cadence::Exact,
            Some(d) if d.as_secs() == 0 => bail!("--snapshot-every must be at least one second"),
            Some(d) => Cadence::Every(i64::try_from(d.as_secs()).context("--snapshot-every is too long")?),
        })
    }

    /// The schema's features of every transaction (see [`SchemaArgs::schema`] for
    /// `trained_on`), and a description of the cadence.
    pub fn compute(
        &self,
        tx: &Transactions,
        trained_on: Option<&[String]>,
    ) -> anyhow::Result<(FeatureTable, String)> {
        let cadence = self.cadence()?;
        let table = compute_features(tx, &self.schema.schema(trained_on)?, cadence, &Bars::default())?;
        Ok((table, cadence_name(cadence)))
    }
}

fn cadence_name(cadence: Cadence) -> String {
    match cadence {
        Cadence::Exact => "exact".into(),
        Cadence::Every(s) => format!("as served every {s} s"),
    }
}

/// Reads a day, `YYYY-MM-DD`, as its midnight (UTC).
pub fn parse_day(text: &str) -> anyhow::Result<Timestamp> {
    let t: Timestamp = text.parse().map_err(|e| anyhow::anyhow!("{text:?} is not a day YYYY-MM-DD: {e}"))?;
    if t.start_of_day() != t {
        bail!("{text:?}: give a day (YYYY-MM-DD), not a time");
    }
    Ok(t)
}

/// The model family and its settings: what `tollgate train` and `tollgate retrain` share.
#[derive(clap::Args)]
pub struct TrainerArgs {
    /// Model family: lr (logistic regression), rf (random forest), gbdt (gradient-boosted
    /// trees), svm (linear SVM, Platt-scaled), mlp (small neural network; default settings).
    #[arg(long, default_value = "gbdt", value_parser = ["lr", "rf", "gbdt", "svm", "mlp"])]
    model: String,
    /// Rebalance the training rows first, e.g. `under:0.5`, `over:0.1`, `smote:0.1:5`,
    /// `nearmiss1:0.5:3`, or a chain `smote:0.1+under:0.5` (ratio = frauds per genuine row after).
    #[arg(long, value_name = "SPEC")]
    pub resample: Option<String>,
    /// Class weights: `balanced`, or the weight of a fraud row (genuine rows weigh 1). For gbdt
    /// this is scale_pos_weight.
    #[arg(long, value_name = "balanced|N")]
    class_weight: Option<String>,
    /// rf, gbdt: number of trees (default 100).
    #[arg(long)]
    trees: Option<usize>,
    /// rf, gbdt: maximum depth (gbdt default 6; rf default unlimited).
    #[arg(long)]
    max_depth: Option<u32>,
    /// gbdt: learning rate (eta).
    #[arg(long, default_value_t = 0.3)]
    learning_rate: f64,
    /// gbdt: minimum hessian sum in a child.
    #[arg(long, default_value_t = 1.0)]
    min_child_weight: f64,
    /// gbdt: L2 penalty on leaves (lambda).
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// gbdt: minimum split gain (gamma).
    #[arg(long, default_value_t = 0.0)]
    gamma: f64,
    /// gbdt: share of rows per tree.
    #[arg(long, default_value_t = 1.0)]
    subsample: f64,
    /// gbdt: share of features per tree.
    #[arg(long, default_value_t = 1.0)]
    colsample_bytree: f64,
    /// gbdt: histogram split finding with this many bins (default exact splits).
    #[arg(long, value_name = "BINS")]
    hist_bins: Option<usize>,
    /// lr: inverse L2 strength C.
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// rf: features per node: sqrt, log2, all, or a count.
    #[arg(long, default_value = "sqrt")]
    max_features: String,
    /// Seed of every random draw (subsampling, bootstrap, the random split).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl TrainerArgs {
    /// Trains on `rows`, resampled first when asked.
    pub fn fit(&self, trainer: &Trainer, rows: Samples<'_>) -> anyhow::Result<Model> {
        let Some(spec) = &self.resample else { return Ok(trainer.fit(rows, &Bars::default())?) };
        let resampling: Resampling = spec.parse()?;
        let resampled = resampling.apply(rows, self.seed)?;
        let rows = resampled.rows.samples()?;
        println!("resampled ({resampling}): {} rows, {} frauds", rows.len(), rows.frauds());
        Ok(trainer.fit(rows, &Bars::default())?)
    }

    /// The trainer the options describe.
    pub fn trainer(&self) -> anyhow::Result<Trainer> {
        let weight = match self.class_weight.as_deref() {
            None => ClassWeight::None,
            Some("balanced") => ClassWeight::Balanced,
            Some(n) => ClassWeight::Fraud(
                n.parse().map_err(|_| anyhow::anyhow!("--class-weight {n:?}: use `balanced` or a number"))?,
            ),
        };
        Ok(match self.model.as_str() {
            "lr" => {
                Trainer::Logistic(LogisticConfig { c: self.c, class_weight: weight, ..Default::default() })
            }
            "svm" => Trainer::Svm(SvmConfig {
                c: self.c,
                class_weight: weight,
                seed: self.seed,
                ..Default::default()
            }),
            "mlp" => Trainer::Mlp(MlpConfig { class_weight: weight, seed: self.seed, ..Default::default() }),
            "rf" => Trainer::Forest(ForestConfig {
                trees: self.trees.unwrap_or(100),
                max_depth: self.max_depth,
                max_features: match self.max_features.as_str() {
                    "sqrt" => MaxFeatures::Sqrt,
                    "log2" => MaxFeatures::Log2,
                    "all" => MaxFeatures::All,
                    n => MaxFeatures::Count(n.parse().map_err(|_| {
                        anyhow::anyhow!("--max-features {n:?}: use sqrt, log2, all or a count")
                    })?),
                },
                class_weight: weight,
                seed: self.seed,
                ..Default::default()
            }),
            _ => Trainer::Gbdt(GbdtConfig {
                trees: self.trees.unwrap_or(100),
                max_depth: self.max_depth.unwrap_or(6),
                learning_rate: self.learning_rate,
                min_child_weight: self.min_child_weight,
                lambda: self.lambda,
                gamma: self.gamma,
                subsample: self.subsample,
                colsample_bytree: self.colsample_bytree,
                scale_pos_weight: match weight {
                    ClassWeight::None => 1.0,
                    ClassWeight::Fraud(w) => w,
                    ClassWeight::Balanced => {
                        bail!("--class-weight balanced: give gbdt a number (scale_pos_weight)")
                    }
                },
                split_method: match self.hist_bins {
                    Some(max_bins) => SplitMethod::Histogram { max_bins },
                    None => SplitMethod::Exact,
                },
                seed: self.seed,
                ..Default::default()
            }),
        })
    }
}

/// Train a fraud model and write it in the scorer's model format (plus MODEL_FILE.json: its id,
/// features, training range and metrics).
///
/// On transactions (`--input`): the handbook's 15 features, exact or as served
/// (`--snapshot-every`), training on --train-start .. --train-end (default the handbook's week,
/// 2018-07-25 .. 07-31); metrics are printed on the training rows and on the holdout week after a
/// 7-day delay (known compromised customers dropped), when the file covers it.
///
/// On any CSV of numeric columns (`--csv FILE --label COLUMN`): every other column is a feature;
/// `--split random:0.3 --seed N` or `--split time:COLUMN:0.3` holds rows out for validation.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    features: FeatureArgs,
    /// Generic tabular mode: a CSV file of numeric columns with a header.
    #[arg(long, value_name = "FILE", conflicts_with = "input")]
    csv: Option<PathBuf>,
    /// With --csv: the label column (0/1 or false/true).
    #[arg(long, requires = "csv", value_name = "COLUMN")]
    label: Option<String>,
    /// With --csv: columns that are not features (ids, ...), comma-separated.
    #[arg(long, requires = "csv", value_delimiter = ',', value_name = "COLUMN")]
    drop: Vec<String>,
    /// With --csv: `random:FRACTION` (with --seed) or `time:COLUMN:FRACTION` (the latest rows by
    /// COLUMN are held out; COLUMN is not a feature).
    #[arg(long, requires = "csv", default_value = "random:0.3")]
    split: String,
    /// With --csv: the decision threshold F1, precision and recall are reported at.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// First training day (YYYY-MM-DD).
    #[arg(long, value_name = "DAY", default_value = "2018-07-25")]
    train_start: String,
    /// Day after the last training day (YYYY-MM-DD, exclusive); default 7 days after the start.
    #[arg(long, value_name = "DAY")]
    train_end: Option<String>,
    #[command(flatten)]
    fit: TrainerArgs,
    /// Where to write the model (the scorer's encoding); MODEL_FILE.json gets its description.
    #[arg(long, short, value_name = "MODEL_FILE")]
    output: PathBuf,
}

/// Runs `tollgate train`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let trainer = args.fit.trainer()?;
    if args.csv.is_some() { train_tabular(&args, &trainer) } else { train_transactions(&args, &trainer) }
}

fn train_transactions(args: &Args, trainer: &Trainer) -> anyhow::Result<()> {
    let train_start = parse_day(&args.train_start).context("--train-start")?;
    let train_days = match &args.train_end {
        None => 7,
        Some(end) => {
            let end = parse_day(end).context("--train-end")?;
            let days = (end.0 - train_start.0) / scorer::time::SECONDS_PER_DAY;
            u32::try_from(days).ok().filter(|&d| d > 0).with_context(|| {
                format!("--train-end {end} must come at least a day after --train-start {train_start}")
            })?
        }
    };
    let tx = args.input.read()?;
    let (table, cadence) = args.features.compute(&tx, None)?;
    let holdout = Holdout { train_start, train_days, ..Holdout::handbook() };
    let (train, test) = match holdout.split(&tx, &table) {
        Ok(split) => (split.train, Some(split.test)),
        // Without a holdout week in the file, train anyway and report the training rows only.
        Err(models::DatasetError::EmptyPeriod { part: "test", .. }) => {
            let first = models::dataset::day_of(train_start);
            let rows: Vec<usize> = (0..tx.len())
                .filter(|&i| {
                    (first..first + i64::from(train_days)).contains(&models::dataset::day_of(tx.time[i]))
                })
                .collect();
            (Dataset::from_rows(&tx, &table, &rows)?, None)
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "training {} on {} rows ({} frauds), {} .. {} ({} days), {cadence} features",
        trainer.family(),
        train.len(),
        train.frauds(),
        train_start,
        train_start.plus_seconds(i64::from(train_days) * scorer::time::SECONDS_PER_DAY),
        train_days
    );
    let began = Instant::now();
    let model = args.fit.fit(trainer, train.samples()?)?;
    let seconds = began.elapsed().as_secs_f64();
    println!("trained in {seconds:.2} s");
    let mut card = ModelCard::new(&model, &train.feature_names, format!("{trainer:?}"));
    card.cadence = cadence;
    card.cadence_seconds = match args.features.cadence()? {
        Cadence::Exact => None,
        Cadence::Every(s) => Some(s),
    };
    card.train_start = Some(train_start.to_string()[..10].to_string());
    card.train_days = Some(train_days);
    card.rows = train.len();
    card.frauds = train.frauds();
    card.train_seconds = seconds;
    println!("| rows | AUC ROC | Average precision | Card precision@100 |");
    println!("| --- | --- | --- | --- |");
    for (name, set) in [("training", Some(&train)), ("holdout (after a 7-day delay)", test.as_ref())] {
        let Some(set) = set else { continue };
        let scores = set.scores(&model);
        let e = set.evaluate(&scores, 100).with_context(|| format!("metrics on the {name} rows"))?;
        println!("| {name} | {:.4} | {:.4} | {:.4} |", e.roc_auc, e.average_precision, e.card_precision.mean);
        let key = if name == "training" { "training" } else { "holdout" };
        card.metrics.insert(format!("{key}_auc_roc"), e.roc_auc);
        card.metrics.insert(format!("{key}_average_precision"), e.average_precision);
        card.metrics.insert(format!("{key}_card_precision_at_100"), e.card_precision.mean);
    }
    write_model(&args.output, &model, &card)
}

/// Writes `model` to `path` and its card beside it (`path`.json), and says so.
pub(crate) fn write_model(path: &Path, model: &Model, card: &ModelCard) -> anyhow::Result<()> {
    std::fs::write(path, model.encode())
        .with_context(|| format!("writing the model to {}", path.display()))?;
    let sidecar = ModelCard::sidecar_path(path);
    card.write(&sidecar)?;
    println!("wrote {} (model {}) and {}", path.display(), card.model_id, sidecar.display());
    Ok(())
}

fn train_tabular(args: &Args, trainer: &Trainer) -> anyhow::Result<()> {
    let (Some(path), Some(label)) = (&args.csv, &args.label) else {
        bail!("--csv FILE needs --label COLUMN");
    };
    let split: Split = args.split.parse()?;
    let mut drop = args.drop.clone();
    if let Split::Time { column, .. } = &split {
        drop.push(column.clone());
    }
    let data = TabularData::read(path, label, &drop, split.time_column())?;
    let (train, valid) = data.split(&split, args.fit.seed)?;
    println!(
        "{}: {} rows x {} features; training {} on {} rows ({} frauds), validating on {} rows ({} frauds)",
        path.display(),
        data.len(),
        data.feature_names.len(),
        trainer.family(),
        train.len(),
        train.frauds(),
        valid.len(),
        valid.frauds()
    );
    let began = Instant::now();
    let model = args.fit.fit(trainer, train.samples()?)?;
    let seconds = began.elapsed().as_secs_f64();
    let scores: Vec<f64> = (0..valid.len()).map(|i| model.score(valid.row(i))).collect();
    let auc = metrics::roc_auc(&scores, &valid.labels).context("AUC ROC on the validation rows")?;
    let ap = metrics::average_precision(&scores, &valid.labels).context("AP on the validation rows")?;
    let m = ConfusionMatrix::at_threshold(&scores, &valid.labels, args.threshold)?;
    println!("trained in {seconds:.2} s");
    println!("validation AUC ROC          {auc:.4}");
    println!("validation average precision {ap:.4}");
    println!(
        "at threshold {}: F1 {:.4}, precision {:.4}, recall {:.4} (tp {}, fp {}, fn {}, tn {})",
        args.threshold,
        m.f1(),
        m.precision(),
        m.recall(),
        m.true_positives,
        m.false_positives,
        m.false_negatives,
        m.true_negatives
    );
    let mut card = ModelCard::new(&model, &data.feature_names, format!("{trainer:?}"));
    card.cadence = "tabular".into();
    card.rows = train.len();
    card.frauds = train.frauds();
    card.train_seconds = seconds;
    card.metrics.insert("validation_auc_roc".into(), auc);
    card.metrics.insert("validation_average_precision".into(), ap);
    card.metrics.insert("validation_f1".into(), m.f1());
    card.metrics.insert("threshold".into(), args.threshold);
    write_model(&args.output, &model, &card)
}

/// The options of a single-model evaluation.
pub struct EvaluateOptions<'a> {
    /// First test day, if not the default.
    pub test_start: Option<Timestamp>,
    /// Day after the last test day, if not the default.
    pub test_end: Option<Timestamp>,
    /// Report directory.
    pub report: Option<&'a Path>,
    /// HTML (else Markdown) page.
    pub html: bool,
    /// Where to write per-transaction scores.
    pub scores: Option<&'a Path>,
    /// Confusion matrix threshold, if given.
    pub threshold: Option<f64>,
    /// Alert budget per day.
    pub alerts_per_day: usize,
    /// Cost of one review.
    pub review_cost: f64,
}

/// Scores the test period with a model file and writes the report and scores asked for.
pub fn evaluate_model(
    input: &InputArgs,
    features: &FeatureArgs,
    model_path: &Path,
    options: EvaluateOptions<'_>,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(model_path).with_context(|| format!("reading {}", model_path.display()))?;
    let model = Model::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", model_path.display()))?;
    let sidecar = ModelCard::sidecar_path(model_path);
    let card = if sidecar.exists() { Some(ModelCard::read(&sidecar)?) } else { None };
    // The cadence the model was trained with, unless given.
    let snapshot_every = match (features.snapshot_every, card.as_ref().and_then(|c| c.cadence_seconds)) {
        (None, Some(s)) => Some(std::time::Duration::from_secs(s as u64).into()),
        (given, _) => given,
    };
    let features = FeatureArgs { snapshot_every, schema: features.schema.clone() };
    let train_start = match card.as_ref().and_then(|c| c.train_start.as_deref()) {
        Some(day) => parse_day(day)?,
        None => Holdout::handbook().train_start,
    };
    let train_days = card.as_ref().and_then(|c| c.train_days).unwrap_or(7);
    let train_end = train_start.plus_seconds(i64::from(train_days) * scorer::time::SECONDS_PER_DAY);
    let test_start = options.test_start.unwrap_or(train_end.plus_seconds(7 * scorer::time::SECONDS_PER_DAY));
    let test_end = options.test_end.unwrap_or(test_start.plus_seconds(7 * scorer::time::SECONDS_PER_DAY));
    let day = scorer::time::SECONDS_PER_DAY;
    let (Ok(delay_days), Ok(test_days)) =
        (u32::try_from((test_start.0 - train_end.0) / day), u32::try_from((test_end.0 - test_start.0) / day))
    else {
        bail!(
            "the test period {test_start} .. {test_end} must follow the training period ending {train_end}"
        );
    };
    if test_days == 0 {
        bail!("the test period {test_start} .. {test_end} is empty");
    }
    let tx = input.read()?;
    let (table, cadence) = features.compute(&tx, card.as_ref().map(|c| c.features.as_slice()))?;
    if model.n_features() != table.schema.len() {
        bail!(
            "{} reads {} features but the schema has {} (choose the model's with --schema)",
            model_path.display(),
            model.n_features(),
            table.schema.len()
        );
    }
    let holdout = Holdout { train_start, train_days, delay_days, test_days };
    let test = holdout.split(&tx, &table)?.test;
    let scores = test.scores(&model);
    let e = test.evaluate(&scores, 100).context("metrics on the test period")?;
    println!(
        "{} on {} .. {}: {} transactions ({} frauds), {cadence} features",
        model_path.display(),
        test_start,
        test_end,
        test.len(),
        test.frauds()
    );
    println!(
        "AUC ROC {:.4}  average precision {:.4}  card precision@100 {:.4}",
        e.roc_auc, e.average_precision, e.card_precision.mean
    );
    let amounts: Vec<f64> = test.rows.iter().map(|&r| tx.amount[r]).collect();
    let outcomes =
        Outcomes::new(&scores, &test.labels, &test.days, &amounts)?.with_review_cost(options.review_cost)?;
    let budget = outcomes.by_alert_budget(options.alerts_per_day);
    let cost = outcomes.by_cost();
    let precise = outcomes.by_precision(0.5)?;
    let chosen = options.threshold.unwrap_or(budget.threshold);
    for (name, c) in
        [("alert budget", Some(&budget)), ("cost", Some(&cost)), ("precision >= 0.5", precise.as_ref())]
    {
        if let Some(c) = c {
            print_choice(name, c);
        }
    }
    if let Some(path) = options.scores {
        let ids: Vec<u64> = test.rows.iter().map(|&r| tx.transaction_id[r]).collect();
        write_scores(path, &ids, &scores, &test.labels)?;
        println!("wrote {} scores to {}", scores.len(), path.display());
    }
    if let Some(dir) = options.report {
        let title = format!(
            "{} on {} .. {}",
            card.as_ref().map_or("model", |c| c.model_id.as_str()),
            &test_start.to_string()[..10],
            &test_end.to_string()[..10]
        );
        let report = Report {
            title,
            scores: &scores,
            labels: &test.labels,
            days: &test.days,
            cards: &test.cards,
            amounts: &amounts,
            threshold: chosen,
            review_cost: options.review_cost,
            choices: [
                Some(("alert budget", budget)),
                Some(("cost", cost)),
                precise.map(|p| ("precision >= 0.5", p)),
            ]
            .into_iter()
            .flatten()
            .map(|(n, c)| (n.to_string(), c))
            .collect(),
            notes: vec![
                format!("Model file: {}", model_path.display()),
                format!("Features: {cadence}"),
                format!(
                    "Training: {} .. {} ({train_days} days)",
                    &train_start.to_string()[..10],
                    &train_end.to_string()[..10]
                ),
            ],
        };
        let page = report.write(dir, if options.html { PageFormat::Html } else { PageFormat::Markdown })?;
        println!("wrote the report to {}", page.display());
    }
    Ok(())
}

fn print_choice(name: &str, c: &ThresholdChoice) {
    println!(
        "threshold by {name:<17} {:.6}: {:.1} alerts/day, precision {:.4}, recall {:.4}, net saving {:.2}",
        c.threshold, c.alerts_per_day, c.precision, c.recall, c.net_saving
    );
}
