//! Resampling against its definitions and against imbalanced-learn 0.14.2: class counts for a
//! ratio, NearMiss's kept rows (imbalanced-learn's own choice and a brute-force computation),
//! SMOTE rows on segments towards one of the k nearest minority rows, reproducible seeds.
//! `fixtures/resample_imblearn.txt` comes from `fixtures/resample_reference.py`.

use models::{NearMissVersion, Origin, Resampled, Resampling, Samples};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::HashMap;

/// The fixture: rows (3 features), labels, and the reference lines by kind.
struct Fixture {
    features: Vec<f64>,
    labels: Vec<bool>,
    kept: Vec<(String, Vec<usize>)>,
    neighbours: HashMap<usize, Vec<usize>>,
    counts: Vec<(String, usize, usize)>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resample_imblearn.txt");
    let text = std::fs::read_to_string(path).expect("resample fixture");
    let mut f = Fixture {
        features: Vec::new(),
        labels: Vec::new(),
        kept: Vec::new(),
        neighbours: HashMap::new(),
        counts: Vec::new(),
    };
    let numbers = |s: &str| s.split_whitespace().map(|v| v.parse::<usize>().unwrap()).collect::<Vec<_>>();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (kind, rest) = line.split_once(' ').unwrap();
        match kind {
            "row" => {
                let v: Vec<&str> = rest.split(',').collect();
                f.features.extend(v[..3].iter().map(|x| x.parse::<f64>().unwrap()));
                f.labels.push(v[3] == "1");
            }
            "kept" => {
                let (spec, rows) = rest.split_once(' ').unwrap();
                f.kept.push((spec.to_string(), numbers(rows)));
            }
            "neighbours" => {
                let all = numbers(rest);
                f.neighbours.insert(all[0], all[1..].to_vec());
            }
            "counts" => {
                let all: Vec<&str> = rest.split_whitespace().collect();
                f.counts.push((all[0].to_string(), all[1].parse().unwrap(), all[2].parse().unwrap()));
            }
            other => panic!("unknown fixture line kind {other}"),
        }
    }
    f
}

impl Fixture {
    fn samples(&self) -> Samples<'_> {
        Samples::new(&self.features, 3, &self.labels).unwrap()
    }
}

fn resample(spec: &str, rows: Samples<'_>, seed: u64) -> Resampled {
    spec.parse::<Resampling>().unwrap().apply(rows, seed).unwrap()
}

/// Genuine input rows kept as they were, sorted.
fn kept_genuine(out: &Resampled) -> Vec<usize> {
    let mut kept: Vec<usize> = out
        .origins
        .iter()
        .zip(&out.rows.labels)
        .filter(|(_, y)| !**y)
        .map(|(o, _)| match o {
            Origin::Original(i) => *i,
            other => panic!("an under-sampler made a new row {other:?}"),
        })
        .collect();
    kept.sort_unstable();
    kept
}

/// Every row marked `Original` or `Copy` equals its input row, and the label follows its origin.
fn assert_rows_come_from_their_origins(rows: Samples<'_>, out: &Resampled) {
    for (i, origin) in out.origins.iter().enumerate() {
        assert_eq!(out.rows.labels[i], rows.labels()[origin.row()], "row {i}: label of {origin:?}");
        if !matches!(origin, Origin::Synthetic(_)) {
            assert_eq!(out.rows.row(i), rows.row(origin.row()), "row {i}: {origin:?}");
        }
    }
}

#[test]
fn class_counts_match_imbalanced_learn_for_each_ratio() {
    let f = fixture();
    let rows = f.samples();
    assert!(!f.counts.is_empty());
    for (spec, frauds, genuine) in &f.counts {
        let out = resample(spec, rows, 1);
        assert_eq!((out.rows.frauds(), out.rows.len() - out.rows.frauds()), (*frauds, *genuine), "{spec}");
        assert_rows_come_from_their_origins(rows, &out);
    }
}

#[test]
fn under_sampling_keeps_every_fraud_and_distinct_genuine_rows_in_input_order() {
    let f = fixture();
    let rows = f.samples();
    let out = resample("under:0.5", rows, 3);
    let frauds: Vec<usize> = (0..rows.len()).filter(|&i| rows.labels()[i]).collect();
    let kept_frauds: Vec<usize> =
        out.origins.iter().zip(&out.rows.labels).filter(|(_, y)| **y).map(|(o, _)| o.row()).collect();
    assert_eq!(kept_frauds, frauds);
    let order: Vec<usize> = out.origins.iter().map(|o| o.row()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "rows are distinct and in input order: {order:?}");
    assert_eq!(kept_genuine(&out).len(), 48);
}

#[test]
fn over_sampling_adds_exact_copies_right_after_their_fraud_row() {
    let f = fixture();
    let rows = f.samples();
    let out = resample("over:0.5", rows, 3);
    assert_rows_come_from_their_origins(rows, &out);
    let copies = out.origins.iter().filter(|o| matches!(o, Origin::Copy(_))).count();
    assert_eq!(copies, 108 - 24);
    for (i, o) in out.origins.iter().enumerate() {
        if let Origin::Copy(r) = o {
            assert!(rows.labels()[*r], "only fraud rows are copied");
            assert!(out.origins[..i].contains(&Origin::Original(*r)), "a copy follows its original");
        }
    }
}

#[test]
fn nearmiss_keeps_the_genuine_rows_imbalanced_learn_keeps() {
    let f = fixture();
    assert_eq!(f.kept.len(), 6);
    for (spec, expected) in &f.kept {
        let out = resample(spec, f.samples(), 0);
        assert_eq!(&kept_genuine(&out), expected, "{spec}");
        assert_eq!(out.rows.frauds(), 24, "{spec}: NearMiss keeps every fraud");
    }
}

/// Random rows (4 features on different scales, 15 % fraud).
fn random_rows(n: usize, seed: u64) -> (Vec<f64>, Vec<bool>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        let fraud = rng.random_bool(0.15);
        let shift = if fraud { 1.0 } else { 0.0 };
        features.extend([
            100.0 * (rng.random::<f64>() + shift),
            rng.random::<f64>() * 3.0 - shift,
            (rng.random::<f64>() * 10.0).floor(),
            0.01 * rng.random::<f64>(),
        ]);
        labels.push(fraud);
    }
    (features, labels)
}

/// The definition, computed directly: standardise, score each genuine row by the mean Euclidean
/// distance to its k nearest (version 1) or k farthest (version 2) fraud rows, keep the `keep`
/// smallest.
fn brute_force_near_miss(
    features: &[f64],
    labels: &[bool],
    nf: usize,
    farthest: bool,
    k: usize,
    keep: usize,
) -> Vec<usize> {
    let n = labels.len();
    let mean: Vec<f64> =
        (0..nf).map(|j| (0..n).map(|i| features[i * nf + j]).sum::<f64>() / n as f64).collect();
    let sd: Vec<f64> = (0..nf)
        .map(|j| ((0..n).map(|i| (features[i * nf + j] - mean[j]).powi(2)).sum::<f64>() / n as f64).sqrt())
        .collect();
    let z = |i: usize| (0..nf).map(|j| (features[i * nf + j] - mean[j]) / sd[j]).collect::<Vec<f64>>();
    let frauds: Vec<Vec<f64>> = (0..n).filter(|&i| labels[i]).map(z).collect();
    let mut scored: Vec<(f64, usize)> = (0..n)
        .filter(|&i| !labels[i])
        .map(|i| {
            let zi = z(i);
            let mut d: Vec<f64> = frauds
                .iter()
                .map(|f| f.iter().zip(&zi).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt())
                .collect();
            d.sort_by(f64::total_cmp);
            let chosen = if farthest { &d[d.len() - k..] } else { &d[..k] };
            (chosen.iter().sum::<f64>() / k as f64, i)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut kept: Vec<usize> = scored[..keep].iter().map(|s| s.1).collect();
    kept.sort_unstable();
    kept
}

#[test]
fn nearmiss_1_and_2_keep_the_genuine_rows_a_brute_force_computation_keeps() {
    let (features, labels) = random_rows(400, 11);
    let rows = Samples::new(&features, 4, &labels).unwrap();
    let frauds = rows.frauds();
    for (version, farthest) in [(NearMissVersion::One, false), (NearMissVersion::Two, true)] {
        for (ratio, k) in [(0.5, 3), (0.25, 1), (1.0, 5)] {
            let out = Resampling::NearMiss { version, ratio, k }.apply(rows, 0).unwrap();
            let keep = (frauds as f64 / ratio) as usize;
            let expected = brute_force_near_miss(&features, &labels, 4, farthest, k, keep);
            assert_eq!(kept_genuine(&out), expected, "{version:?} ratio {ratio} k {k}");
        }
    }
}

/// `point` = `a + gap (b - a)` with `gap` in [0, 1), to rounding.
fn on_segment(point: &[f64], a: &[f64], b: &[f64]) -> bool {
    let j = (0..a.len()).max_by(|&x, &y| (b[x] - a[x]).abs().total_cmp(&(b[y] - a[y]).abs())).unwrap();
    if b[j] == a[j] {
        return point == a;
    }
    let gap = (point[j] - a[j]) / (b[j] - a[j]);
    (0.0..1.0 + 1e-12).contains(&gap)
        && (0..a.len()).all(|i| {
            (point[i] - (a[i] + gap * (b[i] - a[i]))).abs() <= 1e-9 * a[i].abs().max(b[i].abs()).max(1.0)
        })
}

#[test]
fn smote_rows_lie_between_a_fraud_row_and_one_of_its_5_nearest_frauds() {
    let f = fixture();
    let rows = f.samples();
    let out = resample("smote:0.4:5", rows, 5);
    assert_rows_come_from_their_origins(rows, &out);
    let mut synthetic = 0;
    let mut used_neighbours = std::collections::HashSet::<usize>::new();
    for (i, o) in out.origins.iter().enumerate() {
        let Origin::Synthetic(base) = *o else { continue };
        synthetic += 1;
        assert!(out.rows.labels[i], "synthetic rows are fraud");
        // scikit-learn's 5 nearest fraud neighbours of the base row, in standardised space.
        let neighbours = &f.neighbours[&base];
        let on =
            neighbours.iter().filter(|&&n| on_segment(out.rows.row(i), rows.row(base), rows.row(n))).count();
        assert!(on >= 1, "row {i} from {base} is on no segment to {neighbours:?}: {:?}", out.rows.row(i));
        used_neighbours
            .extend(neighbours.iter().filter(|&&n| on_segment(out.rows.row(i), rows.row(base), rows.row(n))));
        // And on none towards a fraud row outside the 5 nearest (the fixture has no collinear
        // triples, so this would catch a wrong neighbour set).
        let others = (0..rows.len()).filter(|&r| rows.labels()[r] && r != base && !neighbours.contains(&r));
        assert!(
            others.into_iter().all(|r| !on_segment(out.rows.row(i), rows.row(base), rows.row(r))),
            "row {i}"
        );
    }
    assert_eq!(synthetic, 86 - 24);
    assert!(used_neighbours.len() > 10, "the draws spread over many neighbours");
}

#[test]
fn the_same_seed_reproduces_the_rows_and_another_seed_changes_them() {
    let (features, labels) = random_rows(500, 3);
    let rows = Samples::new(&features, 4, &labels).unwrap();
    for spec in ["under:0.5", "over:0.8", "smote:0.6:4", "smote:0.5:5+under:1", "nearmiss3:0.5:3:2"] {
        let a = resample(spec, rows, 42);
        assert_eq!(a, resample(spec, rows, 42), "{spec}");
        if !spec.starts_with("nearmiss") {
            assert_ne!(a, resample(spec, rows, 43), "{spec}: the seed matters");
        }
    }
}

#[test]
fn smote_then_under_sampling_reaches_both_ratios() {
    let f = fixture();
    let rows = f.samples();
    let out = resample("smote:0.5:5+under:1", rows, 9);
    // SMOTE: 216 genuine, 108 fraud; under-sampling to 1: 108 genuine.
    assert_eq!((out.rows.frauds(), out.rows.len() - out.rows.frauds()), (108, 108));
    assert_rows_come_from_their_origins(rows, &out);
    assert_eq!(out.origins.iter().filter(|o| matches!(o, Origin::Synthetic(_))).count(), 108 - 24);
    let none = resample("none", rows, 9);
    assert_eq!(
        (none.rows.features.as_slice(), none.rows.labels.as_slice()),
        (rows.features(), rows.labels())
    );
}

#[test]
fn impossible_ratios_name_the_method_the_class_and_the_counts() {
    let f = fixture();
    let err = |spec: &str| spec.parse::<Resampling>().unwrap().apply(f.samples(), 0).unwrap_err().to_string();
    assert_eq!(
        err("under:0.05"),
        "under: ratio 0.05 asks for 480 genuine rows, but there are 216 and under can only remove them"
    );
    assert_eq!(
        err("over:0.1"),
        "over: ratio 0.1 asks for 21 fraud rows, but there are 24 and over can only add them"
    );
    let few = [1.0, 2.0, 3.0, 4.0];
    let labels = [true, true, false, false];
    let err =
        Resampling::Smote { ratio: 1.0, k: 5 }.apply(Samples::new(&few, 1, &labels).unwrap(), 0).unwrap_err();
    assert_eq!(err.to_string(), "smote: k = 5 neighbours needs at least 6 fraud rows, but there are 2");
    let nan = [1.0, f64::NAN, 3.0, 4.0];
    let err =
        Resampling::Smote { ratio: 1.0, k: 1 }.apply(Samples::new(&nan, 1, &labels).unwrap(), 0).unwrap_err();
    assert_eq!(err.to_string(), "training data: row 1, feature 0 is NaN; smote needs finite features");
}
