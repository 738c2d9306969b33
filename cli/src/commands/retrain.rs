//! `tollgate retrain` and `tollgate rollback`: the model lifecycle over a registry directory
//! (`models::registry`): train a candidate on the latest labelled window, compare it with the
//! current model on the same held-back days, promote it or record the refusal; go back to an
//! earlier model.

use crate::commands::train::{FeatureArgs, InputArgs, TrainerArgs};
use anyhow::{Context, bail};
use models::registry::{Action, Event, Lineage, Metric, Metrics, Registry, RegistryLock};
use models::report::{ModelCard, PageFormat};
use models::retrain::{Comparison, ReportedModel, RetrainError, RetrainReport, RetrainWindow, Verdict};
use models::threshold::Outcomes;
use scorer::Timestamp;
use scorer::time::SECONDS_PER_DAY;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The exit code of a retraining that refused its candidate (0: promoted; 1: an error).
pub const EXIT_REFUSED: u8 = 3;

/// Retrain on the latest labelled window and promote the candidate only if it beats the current
/// model on the same held-back days.
///
/// As of `--as-of` (default: just after the last transaction), labels are known for the whole
/// days before as-of minus `--label-delay`; transactions after that are not used. The held-back
/// days are the last `--test-days` labelled days; the candidate trains on the `--train-days`
/// before them, separated by the label delay (the handbook's protocol). The candidate and the
/// current model are scored on the same held-back rows, with features built as `tollgate train`
/// builds them, as served from hourly snapshots by default (`--snapshot-every`,
/// `--exact-features`); the candidate is promoted when there is no
/// current model or when its `--metric` beats the current model's by more than `--margin`.
/// Either way the candidate, its lineage and the decision are recorded in the registry, and a
/// report is written under DIR/reports/RUN/: report.md and report.json (both models' metrics on the
/// same days, the decision and why), and candidate/ and current/ pages with each model's ROC and PR
/// curves, score histograms and threshold table on the held-back rows. Exit code 0: promoted;
/// 3: refused; 1: error.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    features: FeatureArgs,
    /// Exact features instead of the default "as served" ones (from snapshots every hour unless
    /// --snapshot-every says otherwise).
    #[arg(long, conflicts_with = "snapshot_every")]
    exact_features: bool,
    /// The model registry directory (made on the first run).
    #[arg(long, value_name = "DIR")]
    models: PathBuf,
    /// Retrain as of this time (UTC, `YYYY-MM-DD[ HH:MM:SS]`); transactions at or after it are
    /// ignored. Default: one second after the last transaction.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
    /// Training days.
    #[arg(long, default_value_t = 7)]
    train_days: u32,
    /// Held-back evaluation days.
    #[arg(long, default_value_t = 7)]
    test_days: u32,
    /// Time until a transaction's label (fraud or not) is known; whole days.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    label_delay: humantime::Duration,
    /// The metric that decides: ap (average precision), auc (AUC ROC) or cp100 (card
    /// precision@100).
    #[arg(long, default_value = "ap")]
    metric: Metric,
    /// How much better (absolute) the candidate's metric must be than the current model's.
    #[arg(long, default_value_t = 0.0)]
    margin: f64,
    #[command(flatten)]
    fit: TrainerArgs,
}

/// Make an earlier model of a registry current again.
///
/// Without `--to`, the model the current one replaced when it was promoted; repeated rollbacks
/// walk back through the promotions. Recorded in the registry's history.
#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The model registry directory.
    #[arg(long, value_name = "DIR")]
    models: PathBuf,
    /// The model to make current (its id, as in DIR/registry.json).
    #[arg(long, value_name = "ID")]
    to: Option<String>,
}

/// The code version recorded in lineage: the crate version, `+` the git commit the binary was
/// built from (`TOLLGATE_GIT_COMMIT`, set by the build script from git, or by the builder).
pub fn code_version() -> String {
    match option_env!("TOLLGATE_GIT_COMMIT").filter(|c| !c.is_empty()) {
        Some(commit) => format!("{}+{commit}", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    }
}

fn now() -> Timestamp {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn range(from: Timestamp, to: Timestamp) -> String {
    format!("{} .. {}", &from.to_string()[..10], &to.to_string()[..10])
}

/// Runs `tollgate retrain`: exit code 0 when the candidate was promoted, [`EXIT_REFUSED`] when not.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let trainer = args.fit.trainer()?;
    let delay = args.label_delay.as_secs();
    if !delay.is_multiple_of(SECONDS_PER_DAY as u64) {
        bail!("--label-delay {}: give whole days (e.g. 7d)", args.label_delay);
    }
    let delay_days = u32::try_from(delay / SECONDS_PER_DAY as u64).context("--label-delay is too long")?;
    if !args.margin.is_finite() || args.margin < 0.0 {
        bail!("--margin {}: give a number of at least 0", args.margin);
    }
    // The registry first: a damaged or busy one stops the run before any training.
    let _lock = RegistryLock::acquire(&args.models)?;
    let mut registry = Registry::open_or_create(&args.models)?;
    let current = match registry.current() {
        Some(l) => Some((l.clone(), registry.load_model(l)?)),
        None => None,
    };

    let tx = args.input.read()?;
    let Some(&last) = tx.time.iter().max() else { bail!("the transaction file holds no transaction") };
    let as_of = match &args.as_of {
        Some(text) => text.parse::<Timestamp>().with_context(|| format!("--as-of {text:?}"))?,
        None => last.plus_seconds(1),
    };
    let window = RetrainWindow {
        as_of,
        label_delay_days: delay_days,
        train_days: args.train_days,
        test_days: args.test_days,
    };
    let plan = window.plan(&tx.time)?;
    let (train_from, train_to) = plan.train_range();
    let (eval_from, eval_to) = plan.test_range();
    println!(
        "as of {as_of}: labels known before {} ({delay_days}-day delay); {} transactions after it not used \
         (label not known yet), {} after as-of ignored",
        plan.labelled_end, plan.unlabelled, plan.after_as_of
    );
    let features = FeatureArgs {
        snapshot_every: match (args.exact_features, args.features.snapshot_every) {
            (true, _) => None,
            (false, Some(every)) => Some(every),
            (false, None) => Some(std::time::Duration::from_secs(3600).into()),
        },
        schema: args.features.schema.clone(),
    };
    let (table, cadence) = features.compute(&tx, None)?;
    if let Some((l, _)) = &current
        && l.cadence != cadence
    {
        println!(
            "note: the current model {} was trained on {} features; both are evaluated on {cadence} features",
            l.model_id, l.cadence
        );
    }
    let split = plan.holdout.split(&tx, &table)?;
    for (part, set, (from, to)) in
        [("training", &split.train, (train_from, train_to)), ("held-back", &split.test, (eval_from, eval_to))]
    {
        if set.frauds() == 0 {
            return Err(RetrainError::NoFraud { part, from, to, rows: set.len() }.into());
        }
    }
    println!(
        "training {} on {} ({} rows, {} frauds), {cadence} features; held-back days {} ({} rows, {} frauds)",
        trainer.family(),
        range(train_from, train_to),
        split.train.len(),
        split.train.frauds(),
        range(eval_from, eval_to),
        split.test.len(),
        split.test.frauds()
    );
    let began = Instant::now();
    let model = args.fit.fit(&trainer, split.train.samples()?)?;
    let seconds = began.elapsed().as_secs_f64();
    let model_id = ModelCard::id_of(&model);
    let evaluate = |m: &scorer::model::Model, what: &str| -> anyhow::Result<(Metrics, Vec<f64>)> {
        if m.n_features() != split.test.n_features() {
            bail!(
                "the {what} reads {} features, the features here are {}",
                m.n_features(),
                split.test.n_features()
            );
        }
        let scores = split.test.scores(m);
        let e = split.test.evaluate(&scores, 100).with_context(|| format!("metrics of the {what}"))?;
        Ok((Metrics::of(&e), scores))
    };
    let (candidate_metrics, candidate_scores) = evaluate(&model, "candidate")?;
    let (current_metrics, current_scores) = match &current {
        Some((l, m)) => {
            let (metrics, scores) = evaluate(m, &format!("current model {}", l.model_id))?;
            (Some((l, metrics)), Some(scores))
        }
        None => (None, None),
    };
    let comparison = Comparison {
        metric: args.metric,
        margin: args.margin,
        candidate: (model_id.clone(), candidate_metrics),
        current: current_metrics.as_ref().map(|(l, m)| (l.model_id.clone(), *m)),
    };
    let (verdict, reason) = comparison.verdict();

    let created = now();
    let stamp: String = created.to_string().chars().filter(char::is_ascii_digit).collect();
    let report_rel = format!("reports/{stamp}-{model_id}");
    let params = match &args.fit.resample {
        Some(spec) => format!("{trainer:?}; resample {spec}"),
        None => format!("{trainer:?}"),
    };
    let previous = registry.index().current.clone();
    let lineage = Lineage {
        model_id: model_id.clone(),
        kind: trainer.family().to_string(),
        params: params.clone(),
        cadence: cadence.clone(),
        train_from: train_from.to_string(),
        train_to: train_to.to_string(),
        train_rows: split.train.len(),
        train_frauds: split.train.frauds(),
        label_delay_days: delay_days,
        as_of: as_of.to_string(),
        unlabelled_excluded: plan.unlabelled,
        eval_from: eval_from.to_string(),
        eval_to: eval_to.to_string(),
        eval_rows: split.test.len(),
        eval_frauds: split.test.frauds(),
        metrics: candidate_metrics,
        code_version: code_version(),
        created_at: created.to_string(),
        parent: previous.clone(),
        model_file: String::new(),
        report: Some(report_rel.clone()),
    };
    let mut card = ModelCard::new(&model, &split.train.feature_names, params.clone());
    card.cadence = cadence.clone();
    card.cadence_seconds = match features.cadence()? {
        exporter::features::Cadence::Exact => None,
        exporter::features::Cadence::Every(s) => Some(s),
    };
    card.train_start = Some(train_from.to_string()[..10].to_string());
    card.train_days = Some(args.train_days);
    card.rows = split.train.len();
    card.frauds = split.train.frauds();
    card.train_seconds = seconds;
    for (name, value) in candidate_metrics.named() {
        card.metrics.insert(format!("holdout_{name}"), value);
    }
    let report = RetrainReport {
        as_of: as_of.to_string(),
        label_delay_days: delay_days,
        labelled_end: plan.labelled_end.to_string(),
        unlabelled_excluded: plan.unlabelled,
        after_as_of: plan.after_as_of,
        cadence,
        train_range: range(train_from, train_to),
        train_rows: split.train.len(),
        train_frauds: split.train.frauds(),
        eval_range: range(eval_from, eval_to),
        eval_rows: split.test.len(),
        eval_frauds: split.test.frauds(),
        dropped_known_compromised: split.dropped_known_compromised,
        metric: args.metric,
        margin: args.margin,
        candidate: ReportedModel {
            model_id: model_id.clone(),
            kind: trainer.family().to_string(),
            params,
            train_range: range(train_from, train_to),
            metrics: candidate_metrics,
        },
        current: current_metrics.as_ref().map(|(l, m)| ReportedModel {
            model_id: l.model_id.clone(),
            kind: l.kind.clone(),
            params: l.params.clone(),
            train_range: format!("{} .. {}", day(&l.train_from), day(&l.train_to)),
            metrics: *m,
        }),
        verdict,
        reason: reason.clone(),
        code_version: code_version(),
    };
    registry.add(&model, &card, lineage)?;
    registry.record(Event {
        at: created.to_string(),
        action: match verdict {
            Verdict::Promoted => Action::Promoted,
            Verdict::Refused => Action::Refused,
        },
        model_id: model_id.clone(),
        previous,
        metric: Some(args.metric),
        candidate: Some(candidate_metrics.get(args.metric)),
        current: current_metrics.as_ref().map(|(_, m)| m.get(args.metric)),
        margin: Some(args.margin),
        reason: reason.clone(),
        report: Some(report_rel.clone()),
    })?;
    let report_dir = registry.dir().join(&report_rel);
    let page = report.write(&report_dir)?;
    // Each model's curves, histograms and threshold table on the held-back rows, as `tollgate
    // evaluate` draws them.
    let amounts: Vec<f64> = split.test.rows.iter().map(|&r| tx.amount[r]).collect();
    let pages = [
        ("candidate", &model_id, Some(&candidate_scores)),
        (
            "current",
            &report.current.as_ref().map(|c| c.model_id.clone()).unwrap_or_default(),
            current_scores.as_ref(),
        ),
    ];
    for (role, id, scores) in pages {
        let Some(scores) = scores else { continue };
        // `tollgate evaluate`'s default review cost.
        let outcomes =
            Outcomes::new(scores, &split.test.labels, &split.test.days, &amounts)?.with_review_cost(5.0)?;
        let budget = outcomes.by_alert_budget(100);
        let plots = models::report::Report {
            title: format!("{role} {id} on the held-back days {}", report.eval_range),
            scores,
            labels: &split.test.labels,
            days: &split.test.days,
            cards: &split.test.cards,
            amounts: &amounts,
            threshold: budget.threshold,
            review_cost: 5.0,
            choices: vec![
                ("alert budget (100 a day)".to_string(), budget),
                ("cost".to_string(), outcomes.by_cost()),
            ],
            notes: vec![format!("Retraining as of {as_of}; report {}", page.display())],
        };
        plots.write(&report_dir.join(role), PageFormat::Markdown)?;
    }
    registry.save()?;

    println!("trained in {seconds:.2} s");
    println!("| model | role | AUC ROC | AP | CP@100 |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for m in [Some(&report.candidate), report.current.as_ref()].into_iter().flatten() {
        let role = if m.model_id == model_id { "candidate" } else { "current" };
        println!(
            "| {} | {role} | {:.4} | {:.4} | {:.4} |",
            m.model_id, m.metrics.auc_roc, m.metrics.average_precision, m.metrics.card_precision_at_100
        );
    }
    println!("wrote the report to {}", page.display());
    match verdict {
        Verdict::Promoted => {
            println!("PROMOTED {model_id}: {reason}");
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Refused => {
            let kept = registry.index().current.as_deref().unwrap_or("(none)");
            println!("REFUSED {model_id}: {reason}; the current model stays {kept}");
            Ok(ExitCode::from(EXIT_REFUSED))
        }
    }
}

/// The day part of a registry time.
fn day(time: &str) -> &str {
    time.get(..10).unwrap_or(time)
}

/// Runs `tollgate rollback`.
pub fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    // Opened first so that a missing registry is named, not made by the lock; read again under it.
    Registry::open(&args.models)?;
    let _lock = RegistryLock::acquire(&args.models)?;
    let mut registry = Registry::open(&args.models)?;
    let (from, to) = registry.rollback(args.to.as_deref(), now())?;
    registry.save()?;
    let l = registry.current().context("the registry lost its current model")?;
    println!("rolled back from {from} to {to}");
    println!(
        "current model {to}: {} trained on {} .. {}, AP {:.4} on {} .. {}",
        l.kind,
        day(&l.train_from),
        day(&l.train_to),
        l.metrics.average_precision,
        day(&l.eval_from),
        day(&l.eval_to)
    );
    Ok(())
}
