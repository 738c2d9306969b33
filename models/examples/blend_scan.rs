//! Would a blend of a GBDT and a random forest, trained by `models` itself, beat the published
//! prequential AUC? (docs/accuracy.md, "Blends of a GBDT and a forest".)
//!
//! `cargo run --release -p models --example blend_scan -- FILE [exact|SECONDS]`
//!
//! On the handbook-ratios features, it scores every blend `w * p_gbdt + (1 - w) * p_forest` of
//! the grid below on the four **validation** folds, picks the blend with the best mean validation
//! AUC ROC, and only then runs that one blend (and its GBDT alone, for comparison) on the four
//! test folds. The scorer has no model kind for such a blend: this measures what one would give.

use exporter::NoProgress;
use exporter::features::{Cadence, compute_features};
use exporter::ingest::{IngestOptions, read_transactions};
use models::dataset::TrainTest;
use models::forest::ForestConfig;
use models::gbdt::GbdtConfig;
use models::protocol::{MeanStd, Prequential, Stage};
use models::train::Trainer;
use scorer::features::FeatureSchema;

/// The GBDTs: the default grid's two validation AUC leaders (exact and hourly features).
fn gbdts() -> [(&'static str, Trainer); 2] {
    let gbdt = |trees, learning_rate, sub| {
        Trainer::Gbdt(GbdtConfig {
            trees,
            learning_rate,
            max_depth: 3,
            subsample: sub,
            colsample_bytree: sub,
            ..Default::default()
        })
    };
    [("gbdt 100/0.3/3", gbdt(100, 0.3, 1.0)), ("gbdt 200/0.1/3 sub=0.8", gbdt(200, 0.1, 0.8))]
}

/// The forests: the default grid's, and one shallow enough for the scorer's compiled walk.
fn forests() -> [(&'static str, Trainer); 2] {
    let forest =
        |depth| Trainer::Forest(ForestConfig { trees: 100, max_depth: Some(depth), ..Default::default() });
    [("forest 100/20", forest(20)), ("forest 100/10", forest(10))]
}

/// The GBDT's weight in the blend.
const WEIGHTS: [f64; 3] = [0.5, 0.7, 0.85];

/// One blend of the grid: indices into [`gbdts`] and [`forests`], and the GBDT's weight.
#[derive(Clone, Copy)]
struct Blend {
    gbdt: usize,
    forest: usize,
    weight: f64,
}

impl Blend {
    fn name(self) -> String {
        format!(
            "{} x {} + {} x {:.2}",
            gbdts()[self.gbdt].0,
            self.weight,
            forests()[self.forest].0,
            1.0 - self.weight
        )
    }
}

/// Per fold of `stage`: the test scores of each GBDT and each forest trained on the fold.
struct FoldScores {
    split: TrainTest,
    gbdt: Vec<Vec<f64>>,
    forest: Vec<Vec<f64>>,
}

fn fold_scores(
    tx: &exporter::Transactions,
    table: &exporter::features::FeatureTable,
    stage: Stage,
    gbdt: &[usize],
    forest: &[usize],
) -> Result<Vec<FoldScores>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for holdout in Prequential::handbook().folds(stage) {
        let split = holdout.split(tx, table)?;
        let samples = split.train.samples()?;
        let fit = |trainer: &Trainer| -> Result<Vec<f64>, Box<dyn std::error::Error>> {
            Ok(split.test.scores(&trainer.fit(samples, &NoProgress)?))
        };
        let gbdt = gbdt.iter().map(|&g| fit(&gbdts()[g].1)).collect::<Result<_, _>>()?;
        let forest = forest.iter().map(|&f| fit(&forests()[f].1)).collect::<Result<_, _>>()?;
        eprintln!("{stage} fold from {:?} trained", holdout.train_start);
        out.push(FoldScores { split, gbdt, forest });
    }
    Ok(out)
}

/// AUC ROC, average precision and card precision@100 of `scores` on each fold, as mean ± std.
fn metrics(
    folds: &[FoldScores],
    scores: impl Fn(&FoldScores) -> Vec<f64>,
) -> Result<[MeanStd; 3], Box<dyn std::error::Error>> {
    let mut per_fold = Vec::new();
    for fold in folds {
        let e = fold.split.test.evaluate(&scores(fold), 100)?;
        per_fold.push([e.roc_auc, e.average_precision, e.card_precision.mean]);
    }
    Ok([0, 1, 2].map(|m| MeanStd::of(per_fold.iter().map(|v| v[m]))))
}

fn blended(gbdt: &[f64], forest: &[f64], weight: f64) -> Vec<f64> {
    gbdt.iter().zip(forest).map(|(g, f)| weight * g + (1.0 - weight) * f).collect()
}

fn print(name: &str, m: &[MeanStd; 3]) {
    println!(
        "| {name} | {:.4} ± {:.3} | {:.4} ± {:.3} | {:.4} ± {:.3} |",
        m[0].mean, m[0].std, m[1].mean, m[1].std, m[2].mean, m[2].std
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        return Err("usage: blend_scan FILE [exact|SECONDS]".into());
    };
    let cadence = match args.get(1).map(String::as_str) {
        None | Some("exact") => Cadence::Exact,
        Some(s) => Cadence::Every(s.parse()?),
    };
    let tx = read_transactions(path.as_ref(), &IngestOptions::default(), &NoProgress)?.transactions;
    let table = compute_features(&tx, &FeatureSchema::handbook_ratios(), cadence, &NoProgress)?;
    let all_gbdts: Vec<usize> = (0..gbdts().len()).collect();
    let all_forests: Vec<usize> = (0..forests().len()).collect();
    let validation = fold_scores(&tx, &table, Stage::Validation, &all_gbdts, &all_forests)?;
    println!("{cadence:?} features, handbook-ratios. Validation folds:\n");
    println!("| candidate | AUC ROC | average precision | card precision@100 |\n| --- | --- | --- | --- |");
    for &g in &all_gbdts {
        print(&format!("{} alone", gbdts()[g].0), &metrics(&validation, |f| f.gbdt[g].clone())?);
    }
    for &f in &all_forests {
        print(&format!("{} alone", forests()[f].0), &metrics(&validation, |s| s.forest[f].clone())?);
    }
    let mut best: Option<(f64, Blend)> = None;
    for gbdt in all_gbdts.iter().copied() {
        for forest in all_forests.iter().copied() {
            for weight in WEIGHTS {
                let blend = Blend { gbdt, forest, weight };
                let m = metrics(&validation, |f| blended(&f.gbdt[gbdt], &f.forest[forest], weight))?;
                print(&blend.name(), &m);
                if best.is_none_or(|(auc, _)| m[0].mean > auc) {
                    best = Some((m[0].mean, blend));
                }
            }
        }
    }
    let Some((_, chosen)) = best else { return Err("the grid is empty".into()) };
    println!("\nChosen on validation AUC: {}. Test folds (run only now):\n", chosen.name());
    let test = fold_scores(&tx, &table, Stage::Test, &[chosen.gbdt], &[chosen.forest])?;
    println!("| candidate | AUC ROC | average precision | card precision@100 |\n| --- | --- | --- | --- |");
    print(&format!("{} alone", gbdts()[chosen.gbdt].0), &metrics(&test, |f| f.gbdt[0].clone())?);
    print(&chosen.name(), &metrics(&test, |f| blended(&f.gbdt[0], &f.forest[0], chosen.weight))?);
    Ok(())
}
