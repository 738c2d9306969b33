//! Behaviour of the tree trainers on small synthetic data: the layouts the scorer accepts,
//! histogram vs exact splits, missing values, early stopping, pruning, class weighting,
//! determinism whatever the thread count, and parameter errors that name the parameter.

use exporter::NoProgress;
use models::{
    EarlyStopping, ForestConfig, GbdtConfig, MaxFeatures, Samples, SplitMethod, StopMetric, TrainError,
    Trainer, metrics,
};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use scorer::model::{Model, TreeEnsemble};

/// `rows` rows of 4 features; fraud is likelier when x0 + x1 is high; x2 is noise; x3 takes 5
/// values. Values are rounded to `grid` steps.
fn synthetic(rows: usize, seed: u64, grid: f64) -> (Vec<f64>, Vec<bool>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut features = Vec::with_capacity(rows * 4);
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let x: [f64; 4] = [
            (rng.random::<f64>() * grid).round() / grid,
            (rng.random::<f64>() * grid).round() / grid,
            (rng.random::<f64>() * grid).round() / grid,
            f64::from(rng.random_range(0..5u8)),
        ];
        let p = 1.0 / (1.0 + (-(6.0 * (x[0] + x[1]) - 9.0 + 0.3 * x[3])).exp());
        labels.push(rng.random::<f64>() < p);
        features.extend(x);
    }
    (features, labels)
}

fn trees(model: &Model) -> &TreeEnsemble {
    match model {
        Model::Trees(t) => t,
        other => panic!("expected trees, got {}", other.family()),
    }
}

fn auc(model: &Model, samples: Samples<'_>) -> f64 {
    let scores: Vec<f64> = (0..samples.len()).map(|i| model.score(samples.row(i))).collect();
    metrics::roc_auc(&scores, samples.labels()).unwrap()
}

#[test]
fn gbdt_and_forest_learn_the_signal_and_survive_the_codec() {
    let (features, labels) = synthetic(3000, 1, 1000.0);
    let (train, test) = Samples::new(&features, 4, &labels).unwrap().split_at(2000);
    let gbdt = GbdtConfig { trees: 30, max_depth: 3, ..Default::default() }.fit(train, &NoProgress).unwrap();
    let forest = ForestConfig { trees: 20, ..Default::default() }.fit(train, &NoProgress).unwrap();
    for model in [&gbdt.model, &forest] {
        assert!(auc(model, test) > 0.75, "{}: {}", model.family(), auc(model, test));
        assert_eq!(Model::decode(&model.encode()).as_ref(), Ok(model));
    }
    assert_eq!(gbdt.model.family(), "gbdt");
    assert_eq!(forest.family(), "forest");
    assert_eq!(trees(&gbdt.model).roots.len(), 30);
}

/// Every training row's score, bit for bit.
fn score_bits(model: &Model, samples: Samples<'_>) -> Vec<u64> {
    (0..samples.len()).map(|i| model.score(samples.row(i)).to_bits()).collect()
}

#[test]
fn histogram_splits_equal_exact_ones_when_every_value_has_its_bin() {
    // 21 distinct values per feature: 32 bins hold them all, so every split partitions the rows
    // as the exact one does (thresholds may differ where a node lacks some values).
    let (features, labels) = synthetic(2000, 2, 20.0);
    let train = Samples::new(&features, 4, &labels).unwrap();
    let exact = GbdtConfig { trees: 20, ..Default::default() }.fit(train, &NoProgress).unwrap();
    let hist =
        GbdtConfig { trees: 20, split_method: SplitMethod::Histogram { max_bins: 32 }, ..Default::default() }
            .fit(train, &NoProgress)
            .unwrap();
    assert_eq!(score_bits(&exact.model, train), score_bits(&hist.model, train));
    let coarse =
        GbdtConfig { trees: 20, split_method: SplitMethod::Histogram { max_bins: 4 }, ..Default::default() }
            .fit(train, &NoProgress)
            .unwrap();
    assert_ne!(
        score_bits(&exact.model, train),
        score_bits(&coarse.model, train),
        "4 bins cannot hold 21 values"
    );
}

#[test]
fn missing_values_go_the_way_that_fits_them() {
    // x0 is missing exactly on fraud rows: a missing x0 must score high.
    let (mut features, labels) = synthetic(2000, 3, 1000.0);
    for (i, &y) in labels.iter().enumerate() {
        if y {
            features[i * 4] = f64::NAN;
        }
    }
    let train = Samples::new(&features, 4, &labels).unwrap();
    let model = GbdtConfig { trees: 10, ..Default::default() }.fit(train, &NoProgress).unwrap().model;
    assert!(model.score(&[f64::NAN, 0.1, 0.5, 1.0]) > 0.9);
    assert!(model.score(&[0.9, 0.9, 0.5, 1.0]) < 0.1);
    let err = ForestConfig::default().fit(train, &NoProgress).unwrap_err();
    assert!(matches!(err, TrainError::NotFinite { feature: 0, .. }), "{err}");
}

#[test]
fn early_stopping_keeps_the_trees_up_to_the_best_round() {
    let (features, labels) = synthetic(3000, 4, 1000.0);
    let train = Samples::new(&features, 4, &labels).unwrap();
    let stop = EarlyStopping { rounds: 5, metric: StopMetric::LogLoss, validation_fraction: 0.3 };
    // A high learning rate overfits quickly.
    let config =
        GbdtConfig { trees: 300, learning_rate: 0.8, early_stopping: Some(stop), ..Default::default() };
    let fit = config.fit(train, &NoProgress).unwrap();
    let best = fit.best_round.expect("validation ran");
    assert_eq!(fit.trees, best + 1);
    assert_eq!(trees(&fit.model).roots.len(), best + 1);
    assert!(fit.validation.len() < 300, "stopped early: {} rounds", fit.validation.len());
    assert_eq!(fit.validation.len(), best + 1 + 5);
    let min = fit.validation.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(fit.validation[best], min);
    assert_eq!(Model::decode(&fit.model.encode()), Ok(fit.model.clone()), "truncation keeps a valid layout");
}

#[test]
fn a_large_gamma_prunes_every_split() {
    let (features, labels) = synthetic(1000, 5, 1000.0);
    let train = Samples::new(&features, 4, &labels).unwrap();
    let fit = GbdtConfig { trees: 3, gamma: 1e9, ..Default::default() }.fit(train, &NoProgress).unwrap();
    let t = trees(&fit.model);
    assert_eq!(t.nodes.len(), 3, "three root-only trees: {:?}", t.nodes);
}

#[test]
fn scale_pos_weight_raises_the_scores_of_fraud() {
    let (features, labels) = synthetic(2000, 6, 1000.0);
    let train = Samples::new(&features, 4, &labels).unwrap();
    let plain = GbdtConfig { trees: 10, ..Default::default() }.fit(train, &NoProgress).unwrap().model;
    let weighted = GbdtConfig { trees: 10, scale_pos_weight: 10.0, ..Default::default() }
        .fit(train, &NoProgress)
        .unwrap()
        .model;
    let mean = |m: &Model| (0..train.len()).map(|i| m.score(train.row(i))).sum::<f64>() / train.len() as f64;
    assert!(mean(&weighted) > mean(&plain) + 0.05, "{} vs {}", mean(&weighted), mean(&plain));
}

#[test]
fn sampled_models_depend_on_the_seed_not_on_the_thread_count() {
    // Enough rows for several histogram chunks, whose partial sums must add up in a fixed order.
    let (features, labels) = synthetic(40_000, 7, 1000.0);
    let train = Samples::new(&features, 4, &labels).unwrap();
    let gbdt = GbdtConfig {
        trees: 10,
        subsample: 0.7,
        colsample_bytree: 0.75,
        colsample_bylevel: 0.7,
        colsample_bynode: 0.7,
        seed: 11,
        ..Default::default()
    };
    let hist = GbdtConfig { split_method: SplitMethod::Histogram { max_bins: 64 }, ..gbdt.clone() };
    let trainers = [
        Trainer::Gbdt(gbdt),
        Trainer::Gbdt(hist),
        Trainer::Forest(ForestConfig { trees: 8, seed: 11, ..Default::default() }),
    ];
    for trainer in &trainers {
        let in_pool = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| trainer.fit(train, &NoProgress).unwrap())
        };
        let one = in_pool(1);
        assert_eq!(one, in_pool(3), "{}", trainer.family());
        assert_eq!(one.family(), trainer.family());
        let mut reseeded = trainer.clone();
        match &mut reseeded {
            Trainer::Gbdt(c) => c.seed = 12,
            Trainer::Forest(c) => c.seed = 12,
            Trainer::Logistic(_) | Trainer::Svm(_) | Trainer::Mlp(_) => unreachable!(),
        }
        assert_ne!(one, reseeded.fit(train, &NoProgress).unwrap(), "{}", trainer.family());
    }
}

#[test]
fn forest_min_samples_leaf_and_max_depth_bound_the_trees() {
    let (features, labels) = synthetic(1000, 8, 1000.0);
    let train = Samples::new(&features, 4, &labels).unwrap();
    let shallow =
        ForestConfig { trees: 5, max_depth: Some(2), ..Default::default() }.fit(train, &NoProgress).unwrap();
    assert!(trees(&shallow).nodes.len() <= 5 * 7);
    let config = ForestConfig {
        trees: 1,
        bootstrap: false,
        max_features: MaxFeatures::All,
        min_samples_leaf: 50,
        ..Default::default()
    };
    let t = config.fit(train, &NoProgress).unwrap();
    // Every leaf holds at least 50 rows: count rows per leaf.
    let t = trees(&t);
    let mut per_leaf = std::collections::HashMap::new();
    for i in 0..train.len() {
        let leaf = t.leaf(t.roots[0], train.row(i)) as *const _;
        *per_leaf.entry(leaf).or_insert(0) += 1;
    }
    assert!(per_leaf.values().all(|&n| n >= 50), "{per_leaf:?}");
}

#[test]
fn bad_parameters_are_named() {
    let (features, labels) = synthetic(100, 9, 1000.0);
    let train = Samples::new(&features, 4, &labels).unwrap();
    let err = GbdtConfig { subsample: 0.0, ..Default::default() }.fit(train, &NoProgress).unwrap_err();
    assert_eq!(err.to_string(), "gbdt: subsample = 0 is invalid; a share must be in (0, 1]");
    let err = GbdtConfig { split_method: SplitMethod::Histogram { max_bins: 1 }, ..Default::default() }
        .fit(train, &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("max_bins = 1"), "{err}");
    let err = ForestConfig { min_samples_leaf: 0, ..Default::default() }.fit(train, &NoProgress).unwrap_err();
    assert!(err.to_string().starts_with("random forest: min_samples_leaf = 0"), "{err}");
    let err = Samples::new(&features[..7], 4, &labels).unwrap_err();
    assert_eq!(err.to_string(), "training data: 7 feature values do not make 100 rows of 4 features");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_trained_ensemble_is_one_the_scorer_loads(
        rows in 20usize..300,
        seed in any::<u64>(),
        depth in 1u32..8,
        bins in 2usize..40,
    ) {
        let (features, labels) = synthetic(rows, seed, 50.0);
        let train = Samples::new(&features, 4, &labels).unwrap();
        prop_assume!(train.frauds() > 0 && train.frauds() < rows);
        let configs = [
            Trainer::Gbdt(GbdtConfig { trees: 3, max_depth: depth, ..Default::default() }),
            Trainer::Gbdt(GbdtConfig {
                trees: 3,
                max_depth: depth,
                split_method: SplitMethod::Histogram { max_bins: bins },
                subsample: 0.8,
                seed,
                ..Default::default()
            }),
            Trainer::Forest(ForestConfig { trees: 3, max_depth: Some(depth), seed, ..Default::default() }),
        ];
        for trainer in &configs {
            let model = trainer.fit(train, &NoProgress).unwrap();
            let decoded = Model::decode(&model.encode());
            prop_assert_eq!(decoded.as_ref(), Ok(&model));
            for i in 0..rows {
                let s = model.score(train.row(i));
                prop_assert!((0.0..=1.0).contains(&s));
            }
        }
    }

    #[test]
    fn histogram_with_a_bin_per_value_equals_exact(rows in 20usize..300, seed in any::<u64>()) {
        // 11 distinct values per continuous feature, 5 for x3.
        let (features, labels) = synthetic(rows, seed, 10.0);
        let train = Samples::new(&features, 4, &labels).unwrap();
        prop_assume!(train.frauds() > 0 && train.frauds() < rows);
        let exact = GbdtConfig { trees: 3, ..Default::default() }.fit(train, &NoProgress).unwrap();
        let hist = GbdtConfig { trees: 3, split_method: SplitMethod::Histogram { max_bins: 11 }, ..Default::default() }
            .fit(train, &NoProgress)
            .unwrap();
        prop_assert_eq!(score_bits(&exact.model, train), score_bits(&hist.model, train));
    }
}
