//! The drift reference a snapshot carries: each feature's (and the model score's) distribution
//! over a training window of the history, as fixed bins and the share of transactions in each.
//! Features come from the exact streaming pass ([`crate::features::compute_features`]); hosts
//! bin live traffic with the same edges (`scorer::snapshot::Bins::bin`) and compare (PSI).

use crate::features::{Cadence, FeatureError, compute_features};
use crate::{Progress, Transactions};
use scorer::Timestamp;
use scorer::features::{FeatureKind, FeatureSchema};
use scorer::model::Model;
use scorer::snapshot::{Bins, Reference};
use scorer::time::SECONDS_PER_DAY;

/// Up to this many distinct values, each value gets its own bin; above it, deciles.
pub const MAX_DISTINCT_BINS: usize = 10;

/// The reference over the `days` days before `as_of` (transactions at `as_of - days` or later and
/// before `as_of`), with the score distribution when `model` is given. The window starts no
/// earlier than the history's first transaction plus the schema's longest reach (window plus
/// delay, 37 days for the handbook): before that, windows are still filling and counts read low,
/// which live traffic would show as drift. `None` when `days` is 0 or the window holds no
/// transaction.
pub fn reference(
    tx: &Transactions,
    schema: &FeatureSchema,
    as_of: Timestamp,
    days: u32,
    model: Option<&Model>,
    progress: &dyn Progress,
) -> Result<Option<Reference>, FeatureError> {
    let reach = schema
        .features()
        .iter()
        .filter_map(|f| f.kind.window())
        .map(|window| i64::from(window.days) + i64::from(window.delay_days))
        .max()
        .unwrap_or(0);
    let filled = tx.time.first().map_or(as_of.0, |t| t.0.saturating_add(reach * SECONDS_PER_DAY));
    let from = Timestamp(as_of.0.saturating_sub(i64::from(days) * SECONDS_PER_DAY).max(filled));
    let (start, end) = (tx.time.partition_point(|t| *t < from), tx.time.partition_point(|t| *t < as_of));
    if days == 0 || start >= end {
        return Ok(None);
    }
    // Exact features of the window need the history before it: compute from the first row on.
    let table = compute_features(tx, schema, Cadence::Exact, progress)?;
    let rows = start..end;
    let features = schema
        .features()
        .iter()
        .enumerate()
        .map(|(f, def)| {
            let mut values: Vec<f64> = rows.clone().map(|i| table.row(i)[f]).collect();
            let flag = matches!(def.kind, FeatureKind::DuringWeekend | FeatureKind::DuringNight);
            if flag { with_edges(vec![1.0], &values) } else { bins(&mut values) }
        })
        .collect();
    let score = model.map(|m| {
        let mut scores: Vec<f64> = rows.clone().map(|i| m.score(table.row(i))).collect();
        bins(&mut scores)
    });
    Ok(Some(Reference { from, to: as_of, rows: rows.len() as u64, features, score }))
}

/// Bins for `values` (reordered): one per distinct value when there are at most
/// [`MAX_DISTINCT_BINS`], else cut at the deciles (duplicate cuts merged, and none at the minimum,
/// which would leave an empty first bin). NaN values are left out.
pub fn bins(values: &mut [f64]) -> Bins {
    values.sort_unstable_by(f64::total_cmp);
    let values = trim_nan(values);
    let mut distinct: Vec<f64> = values.to_vec();
    distinct.dedup();
    let edges = if distinct.len() <= MAX_DISTINCT_BINS {
        distinct.get(1..).unwrap_or_default().to_vec()
    } else {
        let n = values.len();
        let mut cuts: Vec<f64> = (1..10).map(|q| values[n * q / 10]).filter(|&v| v > values[0]).collect();
        cuts.dedup();
        cuts
    };
    with_edges(edges, values)
}

/// The sorted values without the NaNs (which `total_cmp` puts at both ends).
fn trim_nan(values: &[f64]) -> &[f64] {
    let start = values.iter().position(|v| !v.is_nan()).unwrap_or(values.len());
    let end = values.iter().rposition(|v| !v.is_nan()).map_or(start, |i| i + 1);
    &values[start..end]
}

/// `edges` with the share of `values` in each of their bins.
fn with_edges(edges: Vec<f64>, values: &[f64]) -> Bins {
    let mut bins = Bins { proportions: vec![0.0; edges.len() + 1], edges };
    let mut counts = vec![0u64; bins.len()];
    for &v in values {
        if let Some(b) = bins.bin(v) {
            counts[b] += 1;
        }
    }
    let total = counts.iter().sum::<u64>().max(1) as f64;
    bins.proportions = counts.iter().map(|&c| c as f64 / total).collect();
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_one_bin_each() {
        let mut v = vec![3.0, 1.0, 1.0, 2.0, 1.0, 3.0, 1.0, 2.0];
        let b = bins(&mut v);
        assert_eq!(b.edges, vec![2.0, 3.0]);
        assert_eq!(b.proportions, vec![0.5, 0.25, 0.25]);
    }

    #[test]
    fn many_distinct_values_are_cut_at_the_deciles() {
        // 0..100: the deciles are 10, 20, ..., 90, and each bin holds a tenth.
        let mut v: Vec<f64> = (0..100).rev().map(f64::from).collect();
        let b = bins(&mut v);
        assert_eq!(b.edges, (1..10).map(|q| f64::from(q * 10)).collect::<Vec<_>>());
        assert!(b.proportions.iter().all(|&p| (p - 0.1).abs() < 1e-12), "{:?}", b.proportions);
    }

    #[test]
    fn duplicate_deciles_merge_and_none_sits_at_the_minimum() {
        // 60 zeros, then 40 distinct values 1..=40: cuts at 0 are dropped, the rest kept once.
        let mut v: Vec<f64> = std::iter::repeat_n(0.0, 60).chain((1..=40).map(f64::from)).collect();
        let b = bins(&mut v);
        assert_eq!(b.edges, vec![1.0, 11.0, 21.0, 31.0]);
        assert_eq!(b.proportions, vec![0.6, 0.1, 0.1, 0.1, 0.1]);
    }

    #[test]
    fn nan_values_are_left_out_and_a_constant_gets_one_bin() {
        let mut v = vec![f64::NAN, 5.0, 5.0, -f64::NAN];
        let b = bins(&mut v);
        assert!(b.edges.is_empty());
        assert_eq!(b.proportions, vec![1.0]);
    }

    #[test]
    fn a_history_gives_one_distribution_per_feature_over_the_filled_window() {
        use crate::NoProgress;
        use crate::simulate::{SimulationConfig, simulate};
        use scorer::model::Logistic;
        let config =
            SimulationConfig { seed: 4, customers: 200, terminals: 400, days: 60, ..Default::default() };
        let tx = simulate(&config, &NoProgress).unwrap();
        let schema = FeatureSchema::handbook();
        let day = |d: i64| Timestamp(config.start.0 + d * SECONDS_PER_DAY);
        let model = Model::Logistic(Logistic { weights: vec![0.01; 15], intercept: -3.0 });
        let r = reference(&tx, &schema, day(50), 28, Some(&model), &NoProgress).unwrap().unwrap();
        // The 28 days before day 50 would start on day 22, but windows fill until day 37 and a bit.
        assert_eq!(r.to, day(50));
        assert!(r.from > day(37) && r.from < day(38), "{} .. {}", r.from, r.to);
        let in_window = tx.time.iter().filter(|t| **t >= r.from && **t < r.to).count();
        assert_eq!(r.rows, in_window as u64);
        assert_eq!(r.features.len(), schema.len());
        for (bins, def) in r
            .features
            .iter()
            .chain(&r.score)
            .zip(schema.features().iter().map(|f| f.name.as_str()).chain(["score"]))
        {
            let total: f64 = bins.proportions.iter().sum();
            assert!((total - 1.0).abs() < 1e-9, "{def}: shares sum to {total}");
            assert!(bins.edges.len() <= 9, "{def}: {:?}", bins.edges);
        }
        // Flags are cut at 1; the amount at its deciles.
        assert_eq!((r.features[1].edges.clone(), r.features[2].edges.clone()), (vec![1.0], vec![1.0]));
        assert_eq!(r.features[0].edges.len(), 9);
        // No model, no score; no days, no reference.
        assert!(
            reference(&tx, &schema, day(50), 28, None, &NoProgress)
                .unwrap()
                .is_some_and(|r| r.score.is_none())
        );
        assert!(reference(&tx, &schema, day(50), 0, None, &NoProgress).unwrap().is_none());
        assert!(
            reference(&tx, &schema, day(30), 28, None, &NoProgress).unwrap().is_none(),
            "windows still filling"
        );
    }
}
