//! Behaviour of the tree trainers on small synthetic data: the layouts the scorer accepts,
//! histogram vs exact splits, missing values, early stopping, pruning, class weighting,
//! determinism whatever the thread count, leaf covers, and parameter errors that name the
//! parameter.

use exporter::NoProgress;
use models::{
    Arithmetic, BalancedBaggingConfig, EarlyStopping, ForestConfig, GbdtConfig, MaxFeatures, Samples,
    SplitMethod, StopMetric, TrainError, Trainer, metrics,
};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use scorer::model::{Model, TreeEnsemble, TreeExplainer};

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
        Trainer::BalancedBagging(BalancedBaggingConfig {
            trees: 8,
            sampling_strategy: 0.5,
            seed: 11,
            ..Default::default()
        }),
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
            Trainer::BalancedBagging(c) => c.seed = 12,
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

/// Each leaf's cover, by node index (0 for splits).
fn covers(t: &TreeEnsemble) -> Vec<f32> {
    t.nodes.iter().map(|n| n.leaf_cover()).collect()
}

/// The trees' own covers replaced by `set_leaf_covers` over `rows`: training rows per leaf.
fn row_counts(t: &TreeEnsemble, rows: Samples<'_>) -> Vec<f32> {
    let mut counted = t.clone();
    counted.set_leaf_covers((0..rows.len()).map(|i| rows.row(i)));
    covers(&counted)
}

#[test]
fn gbdt_leaf_covers_are_the_hessian_sums_of_their_training_rows() {
    // XGBoost's cover (`sum_hess`) is the sum of the hessians of the rows in a leaf, not their
    // count; `set_leaf_covers` counts rows. The two agree only where every hessian is the same:
    // in the first tree, where every row is at the base score 0.5 and has hessian 0.25. So: tree 0
    // is compared with `set_leaf_covers` (times 0.25, exactly), and every tree with the hessians
    // recomputed here by replaying the boosting through the scorer's own tree walk.
    let (mut features, labels) = synthetic(3000, 21, 1000.0);
    for i in (0..3000).step_by(7) {
        features[i * 4 + 1] = f64::NAN; // default directions carry rows too
    }
    let train = Samples::new(&features, 4, &labels).unwrap();
    for config in [
        GbdtConfig { trees: 20, max_depth: 4, learning_rate: 0.3, gamma: 0.5, ..Default::default() },
        GbdtConfig {
            trees: 20,
            max_depth: 3,
            scale_pos_weight: 3.0,
            split_method: SplitMethod::Histogram { max_bins: 32 },
            arithmetic: Arithmetic::F64,
            ..Default::default()
        },
    ] {
        let fit = config.fit(train, &NoProgress).unwrap();
        let t = trees(&fit.model);
        assert!(t.has_covers(), "every leaf has a cover");
        let (got, counts) = (covers(t), row_counts(t, train));
        let tree0 = t.roots[0] as usize..t.roots[1] as usize;
        if config.scale_pos_weight == 1.0 {
            for i in tree0.filter(|&i| t.nodes[i].is_leaf()) {
                assert_eq!(got[i], 0.25 * counts[i], "tree 0, node {i}: a quarter per row");
            }
        }
        // Replay: each round's hessians from the margins before it, summed per leaf.
        let xgb = config.arithmetic == Arithmetic::Xgboost;
        let mut margins = vec![t.base_margin; train.len()];
        for &root in &t.roots {
            let mut sums = vec![0.0f64; t.nodes.len()];
            for (i, m) in margins.iter_mut().enumerate() {
                let w = if labels[i] { config.scale_pos_weight } else { 1.0 };
                let h = if xgb {
                    let p = 1.0f32 / (1.0f32 + (-(*m as f32)).exp());
                    f64::from((p * (1.0 - p)).max(1e-16) * w as f32)
                } else {
                    let p = 1.0 / (1.0 + (-*m).exp());
                    (p * (1.0 - p)).max(1e-16) * w
                };
                let leaf = t.leaf_index(root, train.row(i));
                sums[leaf] += h;
                let value = t.nodes[leaf].value;
                *m = if xgb { f64::from(*m as f32 + value) } else { *m + f64::from(value) };
            }
            for (i, &sum) in sums.iter().enumerate().filter(|&(i, _)| t.nodes[i].is_leaf()) {
                if sum == 0.0 {
                    continue; // another tree's leaf
                }
                let rel = (f64::from(got[i]) - sum).abs() / sum;
                assert!(rel < 1e-6, "node {i}: cover {} vs hessian sum {sum}", got[i]);
                assert!(got[i] <= 0.25 * counts[i] * config.scale_pos_weight as f32 * (1.0 + 1e-6));
            }
        }
    }
}

#[test]
fn forest_leaf_covers_are_the_rows_each_tree_drew() {
    let (features, labels) = synthetic(2000, 22, 1000.0);
    let train = Samples::new(&features, 4, &labels).unwrap();
    // Without bootstrap every tree draws each training row once: its covers are exactly what
    // `set_leaf_covers` counts on the training rows (the same definition).
    let config = ForestConfig { trees: 5, bootstrap: false, max_depth: Some(8), ..Default::default() };
    let whole = config.fit(train, &NoProgress).unwrap();
    let t = trees(&whole);
    assert!(t.has_covers());
    assert_eq!(covers(t), row_counts(t, train));
    // With bootstrap a tree's covers count its draws (copies included, out-of-bag rows not), so
    // each tree's covers sum to the number of training rows; class weights do not change them.
    let config = ForestConfig {
        trees: 5,
        max_depth: Some(8),
        class_weight: models::ClassWeight::Balanced,
        ..Default::default()
    };
    let bagged = config.fit(train, &NoProgress).unwrap();
    let t = trees(&bagged);
    assert!(t.has_covers());
    let mut ends: Vec<usize> = t.roots[1..].iter().map(|&r| r as usize).collect();
    ends.push(t.nodes.len());
    for (&root, end) in t.roots.iter().zip(ends) {
        let drawn: f32 = t.nodes[root as usize..end].iter().map(|n| n.leaf_cover()).sum();
        assert_eq!(drawn, train.len() as f32, "tree at {root}");
    }
    assert_ne!(covers(t), row_counts(t, train), "bootstrap draws are not the training rows");
}

#[test]
fn trained_tree_models_explain_themselves_without_a_second_pass() {
    let (features, labels) = synthetic(2000, 23, 1000.0);
    let (train, test) = Samples::new(&features, 4, &labels).unwrap().split_at(1500);
    let gbdt = GbdtConfig { trees: 10, max_depth: 3, ..Default::default() }.fit(train, &NoProgress).unwrap();
    let forest =
        ForestConfig { trees: 5, max_depth: Some(6), ..Default::default() }.fit(train, &NoProgress).unwrap();
    for model in [&gbdt.model, &forest] {
        let decoded = Model::decode(&model.encode()).unwrap();
        let t = trees(&decoded);
        let mut explainer = TreeExplainer::new(t).expect("covers survive the codec");
        for i in 0..test.len() {
            let mut phi = [0.0; 4];
            explainer.shap(t, test.row(i), &mut phi);
            let margin = match model.family() {
                "gbdt" => t.leaf_sum(test.row(i)) + t.base_margin,
                _ => model.score(test.row(i)),
            };
            let want = margin - explainer.expected_value(t);
            assert!((phi.iter().sum::<f64>() - want).abs() < 1e-9, "{} row {i}", model.family());
        }
    }
}

/// Per tree: (fraud draws, genuine draws) of its bag, from its leaves (cover = draws, value =
/// fraud share of them).
fn bag_sizes(t: &TreeEnsemble) -> Vec<(u64, u64)> {
    let mut ends: Vec<usize> = t.roots[1..].iter().map(|&r| r as usize).collect();
    ends.push(t.nodes.len());
    t.roots
        .iter()
        .zip(ends)
        .map(|(&root, end)| {
            let (mut frauds, mut all) = (0u64, 0u64);
            for n in t.nodes[root as usize..end].iter().filter(|n| n.is_leaf()) {
                let cover = n.leaf_cover();
                frauds += (f64::from(n.value) * f64::from(cover)).round() as u64;
                all += cover as u64;
            }
            (frauds, all - frauds)
        })
        .collect()
}

#[test]
fn balanced_bagging_trees_learn_from_bootstraps_undersampled_to_the_ratio() {
    // About 14 % fraud: ratios 0.5 and 1 undersample; 0.02 asks for more genuine rows than any
    // bootstrap holds, so it keeps them all (a plain bootstrap).
    let (features, labels) = synthetic(3000, 24, 1000.0);
    let (train, test) = Samples::new(&features, 4, &labels).unwrap().split_at(2000);
    let frauds = train.frauds() as u64;
    for ratio in [1.0, 0.5, 0.02] {
        let config = BalancedBaggingConfig { trees: 15, sampling_strategy: ratio, ..Default::default() };
        let model = config.fit(train, &NoProgress).unwrap();
        assert_eq!(model.family(), "forest", "averaged like a forest");
        let t = trees(&model);
        assert!(t.has_covers());
        for (i, (f, g)) in bag_sizes(t).into_iter().enumerate() {
            // A bootstrap draws about as many frauds as the training rows hold.
            assert!(f.abs_diff(frauds) < frauds / 4, "ratio {ratio}, tree {i}: {f} fraud draws of {frauds}");
            if ratio == 0.02 {
                assert_eq!(f + g, train.len() as u64, "ratio {ratio}, tree {i}: the whole bootstrap");
            } else {
                assert_eq!(g, (f as f64 / ratio) as u64, "ratio {ratio}, tree {i}: int(frauds / ratio)");
            }
        }
        assert!(auc(&model, test) > 0.75, "ratio {ratio}: {}", auc(&model, test));
        assert_eq!(Model::decode(&model.encode()).as_ref(), Ok(&model));
    }
    // Balanced bags raise every score: the mean score follows the bags' fraud share.
    let mean = |m: &Model| (0..test.len()).map(|i| m.score(test.row(i))).sum::<f64>() / test.len() as f64;
    let balanced = BalancedBaggingConfig { trees: 15, ..Default::default() }.fit(train, &NoProgress).unwrap();
    let plain = BalancedBaggingConfig { trees: 15, sampling_strategy: 0.02, ..Default::default() }
        .fit(train, &NoProgress)
        .unwrap();
    assert!(mean(&balanced) > mean(&plain) + 0.05, "{} vs {}", mean(&balanced), mean(&plain));
    let err = BalancedBaggingConfig { sampling_strategy: 0.0, ..Default::default() }
        .fit(train, &NoProgress)
        .unwrap_err();
    assert_eq!(err.to_string(), "balanced bagging: sampling_strategy = 0 is invalid; a ratio in (0, 1]");
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
