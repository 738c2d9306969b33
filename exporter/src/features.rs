//! Features for a whole transaction history in one streaming pass, through `scorer::features`
//! (never a second implementation). Exact mode reproduces the handbook; "as served" mode gives
//! each transaction the features the edge would compute from the snapshot it holds at that time.

use crate::{EntityIds, Progress, Transactions};
use rayon::prelude::*;
use scorer::Timestamp;
use scorer::features::{Aggregates, EntityLayout, EntityWindows, FeatureSchema, MAX_ENTITIES, TxFacts};

/// When the entity aggregates behind a transaction's features were taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// Lag 0: aggregates as of the transaction itself (the handbook's features).
    Exact,
    /// As served: aggregates of the latest snapshot, built every this many seconds (aligned to the
    /// Unix epoch, so hourly snapshots fall on the hour); a snapshot as of `T` holds every
    /// transaction before `T`.
    Every(i64),
}

impl Cadence {
    /// The as-of time of the latest snapshot the edge holds at `t`, or `None` in exact mode.
    pub fn snapshot_before(self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Cadence::Exact => None,
            Cadence::Every(seconds) => Some(Timestamp(t.0.div_euclid(seconds) * seconds)),
        }
    }
}

/// Why features could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// The schema names an entity kind that transactions do not carry.
    #[error("the feature schema's entity {0} is not a transaction column (known: CUSTOMER_ID, TERMINAL_ID)")]
    UnknownEntity(String),
    /// Transactions are not in time order.
    #[error(
        "transaction {transaction_id} at {time} comes before the one above it ({previous}); features need time order (ingest with --sort)"
    )]
    NotInTimeOrder {
        /// The out-of-order transaction.
        transaction_id: u64,
        /// Its time.
        time: Timestamp,
        /// The time of the transaction before it.
        previous: Timestamp,
    },
    /// A cadence of zero or negative seconds.
    #[error("a snapshot cadence must be at least one second, not {0} s")]
    BadCadence(i64),
}

/// The features of every transaction, row-major: row `i` is transaction `i`.
#[derive(Clone, Debug)]
pub struct FeatureTable {
    /// The schema the values follow.
    pub schema: FeatureSchema,
    /// `len() * schema.len()` values.
    pub values: Vec<f64>,
}

impl FeatureTable {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.schema.len()).unwrap_or(0)
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The features of transaction `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        let n = self.schema.len();
        &self.values[i * n..(i + 1) * n]
    }

    /// The values of feature `f` for every transaction.
    pub fn column(&self, f: usize) -> impl Iterator<Item = f64> + '_ {
        self.values.iter().skip(f).step_by(self.schema.len().max(1)).copied()
    }
}

/// For each of the schema's entity kinds, the column of [`Transactions`] holding its dense ids and
/// their original ids.
pub(crate) fn entity_columns<'a>(
    tx: &'a Transactions,
    schema: &FeatureSchema,
) -> Result<Vec<(&'a [u32], &'a EntityIds)>, FeatureError> {
    schema
        .entities()
        .iter()
        .map(|e| match e.name.as_str() {
            "CUSTOMER_ID" => Ok((tx.customer.as_slice(), &tx.customers)),
            "TERMINAL_ID" => Ok((tx.terminal.as_slice(), &tx.terminals)),
            other => Err(FeatureError::UnknownEntity(other.to_string())),
        })
        .collect()
}

/// Transaction indices grouped by entity: `order[offsets[k]..offsets[k + 1]]` are entity `k`'s
/// transactions, in their original (time) order. A counting sort, O(transactions + entities).
pub(crate) struct ByEntity {
    pub(crate) offsets: Vec<usize>,
    pub(crate) order: Vec<u32>,
}

impl ByEntity {
    pub(crate) fn group(column: &[u32], entities: usize) -> ByEntity {
        let mut offsets = vec![0usize; entities + 1];
        for &k in column {
            offsets[k as usize + 1] += 1;
        }
        for k in 0..entities {
            offsets[k + 1] += offsets[k];
        }
        let mut next = offsets.clone();
        let mut order = vec![0u32; column.len()];
        for (i, &k) in column.iter().enumerate() {
            order[next[k as usize]] = i as u32;
            next[k as usize] += 1;
        }
        ByEntity { offsets, order }
    }

    /// Splits the entities into about `parts` contiguous blocks of similar transaction counts,
    /// each with its share of `out` (`width` values per transaction, grouped order).
    pub(crate) fn blocks<'a, T>(
        &self,
        parts: usize,
        width: usize,
        mut out: &'a mut [T],
    ) -> Vec<(std::ops::Range<usize>, &'a mut [T])> {
        let entities = self.offsets.len() - 1;
        let target = self.order.len().div_ceil(parts.max(1)).max(1);
        let mut blocks = Vec::with_capacity(parts + 1);
        let mut first = 0;
        while first < entities {
            let mut last = first + 1;
            while last < entities && self.offsets[last] - self.offsets[first] < target {
                last += 1;
            }
            let (head, tail) =
                std::mem::take(&mut out).split_at_mut((self.offsets[last] - self.offsets[first]) * width);
            blocks.push((first..last, head));
            out = tail;
            first = last;
        }
        blocks
    }
}

/// Checks that transactions are in time order.
fn check_time_order(tx: &Transactions) -> Result<(), FeatureError> {
    match tx.time.windows(2).position(|w| w[1] < w[0]) {
        Some(i) => Err(FeatureError::NotInTimeOrder {
            transaction_id: tx.transaction_id[i + 1],
            time: tx.time[i + 1],
            previous: tx.time[i],
        }),
        None => Ok(()),
    }
}

/// For every transaction, its entity's aggregates (of one entity kind) at `cadence`, as the
/// layout's slots: `n_slots` values per transaction, in `groups` order.
///
/// Each entity's transactions are replayed on their own, so an entity's recent history stays in
/// cache, and entities are spread over threads; the result does not depend on either.
fn entity_aggregates(
    tx: &Transactions,
    groups: &ByEntity,
    layout: &EntityLayout,
    cadence: Cadence,
    progress: &dyn Progress,
) -> Vec<f64> {
    let n_slots = layout.slots.len();
    let mut sorted = vec![0.0; tx.len() * n_slots];
    let blocks = groups.blocks(4 * rayon::current_num_threads(), n_slots, &mut sorted);
    blocks.into_par_iter().for_each(|(entities, out)| {
        let mut at = 0;
        for k in entities {
            let mut state = EntityWindows::new(layout);
            let mut cached: Option<(Timestamp, Aggregates)> = None;
            for &i in &groups.order[groups.offsets[k]..groups.offsets[k + 1]] {
                let i = i as usize;
                let time = tx.time[i];
                let aggregates = match cadence.snapshot_before(time) {
                    None => {
                        state.advance_to(layout, time);
                        state.aggregates(layout)
                    }
                    Some(boundary) => match cached {
                        Some((at_boundary, aggregates)) if at_boundary == boundary => aggregates,
                        _ => {
                            state.advance_to(layout, boundary);
                            let aggregates = state.aggregates(layout);
                            cached = Some((boundary, aggregates));
                            aggregates
                        }
                    },
                };
                out[at..at + n_slots].copy_from_slice(&aggregates.0[..n_slots]);
                at += n_slots;
                state.push(time, tx.amount[i], tx.fraud[i] != 0);
            }
        }
        progress.advance((at / n_slots.max(1)) as u64);
    });
    sorted
}

/// Computes `schema`'s features for every transaction of `tx` (which must be in time order),
/// with entity aggregates taken at `cadence`.
pub fn compute_features(
    tx: &Transactions,
    schema: &FeatureSchema,
    cadence: Cadence,
    progress: &dyn Progress,
) -> Result<FeatureTable, FeatureError> {
    if let Cadence::Every(s) = cadence
        && s <= 0
    {
        return Err(FeatureError::BadCadence(s));
    }
    let columns = entity_columns(tx, schema)?;
    check_time_order(tx)?;
    let n_entities = columns.len();
    progress.start("features", (tx.len() * n_entities) as u64);
    // Per entity kind: the slots in grouped order, and each transaction's place in that order.
    let mut per_kind = Vec::with_capacity(n_entities);
    for ((column, ids), entity) in columns.iter().zip(schema.entities()) {
        let groups = ByEntity::group(column, ids.len());
        let slots = entity_aggregates(tx, &groups, &entity.layout, cadence, progress);
        let mut place = vec![0u32; tx.len()];
        for (j, &i) in groups.order.iter().enumerate() {
            place[i as usize] = j as u32;
        }
        per_kind.push((slots, place, entity.layout.slots.len()));
    }
    progress.finish();

    let n_features = schema.len();
    let mut values = vec![0.0; tx.len() * n_features];
    if n_features == 0 {
        return Ok(FeatureTable { schema: schema.clone(), values });
    }
    values.par_chunks_mut(n_features * 4096).enumerate().for_each(|(chunk, rows)| {
        let mut aggregates = [Aggregates::ZERO; MAX_ENTITIES];
        for (r, row) in rows.chunks_exact_mut(n_features).enumerate() {
            let i = chunk * 4096 + r;
            for (e, (slots, place, n_slots)) in per_kind.iter().enumerate() {
                let at = place[i] as usize * n_slots;
                aggregates[e].0[..*n_slots].copy_from_slice(&slots[at..at + n_slots]);
            }
            let facts = TxFacts { time: tx.time[i], amount: tx.amount[i] };
            schema.compute(&facts, &aggregates[..n_entities], row);
        }
    });
    Ok(FeatureTable { schema: schema.clone(), values })
}

/// How one feature differs between two tables of the same transactions (e.g. as served vs exact).
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureDifference {
    /// The feature's name.
    pub name: String,
    /// Share of transactions whose value differs.
    pub differing_share: f64,
    /// Mean absolute difference over all transactions.
    pub mean_abs: f64,
    /// Median absolute difference over the transactions that differ (0 when none does).
    pub p50_abs: f64,
    /// 99th percentile of the absolute difference over the transactions that differ.
    pub p99_abs: f64,
    /// Largest absolute difference.
    pub max_abs: f64,
}

/// Per feature, how `other` differs from `reference` (same schema, same transactions).
pub fn compare_tables(reference: &FeatureTable, other: &FeatureTable) -> Vec<FeatureDifference> {
    let rows = reference.len().min(other.len());
    reference
        .schema
        .features()
        .iter()
        .enumerate()
        .map(|(f, def)| {
            let mut diffs: Vec<f64> = reference
                .column(f)
                .zip(other.column(f))
                .take(rows)
                .map(|(a, b)| (a - b).abs())
                .filter(|d| *d != 0.0)
                .collect();
            diffs.sort_by(f64::total_cmp);
            let quantile = |q: f64| {
                if diffs.is_empty() { 0.0 } else { diffs[((diffs.len() - 1) as f64 * q).round() as usize] }
            };
            FeatureDifference {
                name: def.name.clone(),
                differing_share: diffs.len() as f64 / rows.max(1) as f64,
                mean_abs: diffs.iter().fold(0.0, |a, d| a + d) / rows.max(1) as f64,
                p50_abs: quantile(0.5),
                p99_abs: quantile(0.99),
                max_abs: diffs.last().copied().unwrap_or(0.0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use crate::simulate::{SimulationConfig, simulate};

    fn small() -> Transactions {
        let config =
            SimulationConfig { customers: 200, terminals: 400, days: 60, ..SimulationConfig::default() };
        simulate(&config, &NoProgress).expect("simulate")
    }

    #[test]
    fn as_served_features_are_what_the_snapshot_of_that_time_gives() {
        let tx = small();
        let schema = FeatureSchema::handbook();
        let cadence = Cadence::Every(6 * 3600);
        let served = compute_features(&tx, &schema, cadence, &NoProgress).unwrap();
        let id_hash = scorer::snapshot::IdHashKey([1; 16]);
        for i in (0..tx.len()).step_by(tx.len() / 40) {
            let as_of = cadence.snapshot_before(tx.time[i]).unwrap();
            let tables =
                crate::snapshot::aggregate_history(&tx, &schema, as_of, &id_hash, &NoProgress).unwrap();
            let ids = [tx.customers.id(tx.customer[i]), tx.terminals.id(tx.terminal[i])];
            let aggregates: Vec<Aggregates> = tables
                .iter()
                .zip(ids)
                .map(|(rows, id)| {
                    let key = id_hash.hash(id.as_bytes());
                    rows.iter().find(|(k, _)| *k == key).map(|(_, a)| *a).unwrap_or(Aggregates::ZERO)
                })
                .collect();
            let mut edge = vec![0.0; schema.len()];
            schema.compute(&TxFacts { time: tx.time[i], amount: tx.amount[i] }, &aggregates, &mut edge);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&edge), bits(served.row(i)), "transaction {i}");
        }
    }

    #[test]
    fn as_served_differs_from_exact_only_in_entity_windows() {
        let tx = small();
        let schema = FeatureSchema::handbook();
        let exact = compute_features(&tx, &schema, Cadence::Exact, &NoProgress).unwrap();
        let served = compute_features(&tx, &schema, Cadence::Every(3600), &NoProgress).unwrap();
        assert_eq!(exact.len(), tx.len());
        let diffs = compare_tables(&exact, &served);
        for transaction_local in &diffs[..3] {
            assert_eq!(transaction_local.differing_share, 0.0, "{}", transaction_local.name);
        }
        assert!(diffs[3].differing_share > 0.0, "hourly snapshots miss same-hour transactions");
    }

    #[test]
    fn refuses_transactions_out_of_time_order() {
        let mut tx = small();
        tx.time.swap(10, 11);
        tx.time[10] = tx.time[11].plus_seconds(1);
        let err = compute_features(&tx, &FeatureSchema::handbook(), Cadence::Exact, &NoProgress).unwrap_err();
        assert!(err.to_string().contains("features need time order"), "{err}");
    }

    #[test]
    fn refuses_a_cadence_below_one_second() {
        let err = compute_features(&small(), &FeatureSchema::handbook(), Cadence::Every(0), &NoProgress)
            .unwrap_err();
        assert!(matches!(err, FeatureError::BadCadence(0)));
    }
}
