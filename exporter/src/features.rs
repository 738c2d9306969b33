//! Features for a whole transaction history in one streaming pass, through `scorer::features`
//! (never a second implementation). Exact mode reproduces the handbook; "as served" mode gives
//! each transaction the features the edge would compute from the snapshot it holds at that time.

use crate::{EntityIds, Progress, Transactions};
use rayon::prelude::*;
use scorer::Timestamp;
use scorer::features::{
    Aggregate, EntityLayout, FeatureSchema, FixedAmount, MAX_ENTITIES, MAX_SLOTS, TxFacts, Window,
    WindowTotals,
};

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
    /// More transactions than one feature pass takes (window counts are kept in 32 bits).
    #[error("features take at most 4,294,967,295 transactions at once, not {0}")]
    TooManyTransactions(usize),
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

/// One entity kind's windows for every entity at once, as a stretch of the history streams by.
///
/// A transaction enters a window, and later leaves it, at times fixed by its own time alone
/// (when the window's end, then its start, passes it), so the windows of all entities advance
/// by a few pointers into the transaction columns, one per delay for entering and one per
/// window for leaving; a step updates the totals of the one entity whose transaction it is.
/// Only those totals are random access, and they are small (see [`KindState`]).
struct Kind<'a> {
    /// The kind's dense entity id of every transaction.
    column: &'a [u32],
    /// Number of entities.
    entities: usize,
    /// The layout's windows.
    windows: &'a [Window],
    /// The distinct delays (as windows of no length: their end is where transactions enter),
    /// each with the windows it opens.
    delays: Vec<(Window, Vec<usize>)>,
    /// For each window, the index of its delay in `delays`.
    delay_of: Vec<usize>,
    /// Whether some slot sums amounts.
    amounts: bool,
    /// For each slot of the layout, its window's index and its quantity.
    slots: Vec<(usize, Aggregate)>,
}

/// Where one [`Kind`]'s stream stands, and the totals of every entity's windows: window `w`
/// of entity `k` is cell `k * windows + w` of `counts` (the count in the low 32 bits and the
/// fraud count in the high 32: neither exceeds the number of transactions, which
/// [`compute_features`] keeps below 2^32) and of `sums` (left empty when no slot sums amounts).
struct KindState {
    /// Per delay: the next transaction to enter the windows with that delay.
    enter: Vec<usize>,
    /// Per window: the next transaction to leave it.
    exit: Vec<usize>,
    counts: Vec<u64>,
    sums: Vec<FixedAmount>,
}

/// Transaction `y` in a packed count word: one transaction, and one fraud when it is one.
#[inline(always)]
fn count_step(tx: &Transactions, y: usize) -> u64 {
    1 | u64::from(tx.fraud[y] != 0) << 32
}

impl<'a> Kind<'a> {
    fn new(column: &'a [u32], entities: usize, layout: &'a EntityLayout) -> Kind<'a> {
        let mut delays: Vec<(Window, Vec<usize>)> = Vec::new();
        let mut delay_of = Vec::with_capacity(layout.windows.len());
        for (w, window) in layout.windows.iter().enumerate() {
            let delay = Window::delayed(0, window.delay_days);
            let g = match delays.iter().position(|(d, _)| *d == delay) {
                Some(g) => g,
                None => {
                    delays.push((delay, Vec::new()));
                    delays.len() - 1
                }
            };
            delays[g].1.push(w);
            delay_of.push(g);
        }
        let slots = layout
            .slots
            .iter()
            .map(|slot| (layout.windows.iter().position(|w| *w == slot.window).unwrap_or(0), slot.aggregate))
            .collect();
        let amounts = layout.slots.iter().any(|s| s.aggregate == Aggregate::AmountSum);
        Kind { column, entities, windows: &layout.windows, delays, delay_of, amounts, slots }
    }

    /// Empty windows, every pointer at transaction `first`.
    fn start(&self, first: usize) -> KindState {
        let cells = self.entities * self.windows.len();
        KindState {
            enter: vec![first; self.delays.len()],
            exit: vec![first; self.windows.len()],
            counts: vec![0; cells],
            sums: if self.amounts { vec![FixedAmount::ZERO; cells] } else { Vec::new() },
        }
    }

    /// Moves every window to end at `now`: transactions before `available` enter a window once
    /// its end passes them ([`Window::end`]) and leave it once its start does
    /// ([`Window::start`]), as in `scorer::features::EntityWindows::advance_to`.
    #[inline(always)]
    fn advance(&self, state: &mut KindState, tx: &Transactions, now: Timestamp, available: usize) {
        let n = self.windows.len();
        for (g, (delay, windows)) in self.delays.iter().enumerate() {
            let last_in = delay.end(now);
            let mut next = state.enter[g];
            self.prefetch(tx, next + PREFETCH_AHEAD);
            while next < available && tx.time[next].0 <= last_in {
                let base = self.column[next] as usize * n;
                let step = count_step(tx, next);
                for &w in windows {
                    state.counts[base + w] += step;
                }
                if self.amounts {
                    let amount = FixedAmount::from_f64(tx.amount[next]);
                    for &w in windows {
                        state.sums[base + w] = state.sums[base + w].wrapping_add(amount);
                    }
                }
                next += 1;
            }
            state.enter[g] = next;
        }
        for (w, window) in self.windows.iter().enumerate() {
            let last_out = window.start(now);
            // A transaction old enough to leave a window has entered it (windows are at least a
            // day long), so this bound never stops a step; it only states the invariant.
            let entered = state.enter[self.delay_of[w]];
            let mut next = state.exit[w];
            self.prefetch(tx, next + PREFETCH_AHEAD);
            while next < entered && tx.time[next].0 <= last_out {
                let cell = self.column[next] as usize * n + w;
                state.counts[cell] -= count_step(tx, next);
                if self.amounts {
                    state.sums[cell] = state.sums[cell].wrapping_sub(FixedAmount::from_f64(tx.amount[next]));
                }
                next += 1;
            }
            state.exit[w] = next;
        }
    }

    /// Prefetches what a pointer will read at transaction `y`.
    #[inline(always)]
    fn prefetch(&self, tx: &Transactions, y: usize) {
        prefetch(&tx.time, y);
        prefetch(self.column, y);
        if self.amounts {
            prefetch(&tx.amount, y);
        }
        prefetch(&tx.fraud, y);
    }

    /// The aggregates of `entity` into `out`, in the layout's slot order.
    #[inline(always)]
    fn aggregates(&self, state: &KindState, entity: u32, out: &mut [f64]) {
        let base = entity as usize * self.windows.len();
        for (value, &(w, aggregate)) in out.iter_mut().zip(&self.slots) {
            let count = state.counts[base + w];
            let amount = if self.amounts { state.sums[base + w] } else { FixedAmount::ZERO };
            *value =
                WindowTotals { count: count & 0xffff_ffff, amount, frauds: count >> 32 }.value(aggregate);
        }
    }
}

/// Asks the processor to start fetching the cache line holding `values[at]` (clamped to the
/// slice): a hint, with no effect on results. The pointers that trail days behind the stream
/// read columns far from where the hardware prefetcher is looking; without this hint each of
/// their steps waits on memory (measured: about a fifth of the time).
#[inline(always)]
fn prefetch<T>(values: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(value) = values.get(at.min(values.len().saturating_sub(1))) {
        // SAFETY: `_mm_prefetch` only hints the cache and never dereferences its argument (it
        // cannot fault); the pointer comes from a live reference anyway. The `unsafe` is only
        // for the `sse` target feature, which every x86_64 processor has.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((value as *const T).cast())
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (values, at);
}

/// How far ahead of a trailing pointer [`prefetch`] looks, in transactions.
const PREFETCH_AHEAD: usize = 64;

/// The first transaction some window may still hold at transaction `first` (or later: `now`
/// never goes back). Everything before it has entered and left every window: it adds nothing,
/// so a stretch starting at `first` can start its windows empty there.
fn reach_back(tx: &Transactions, kinds: &[Kind<'_>], cadence: Cadence, first: usize) -> usize {
    let now = cadence.snapshot_before(tx.time[first]).unwrap_or(tx.time[first]);
    let reach = kinds.iter().flat_map(|kind| kind.windows.iter()).map(|w| w.start(now)).min();
    reach.map_or(first, |reach| tx.time[..first].partition_point(|t| t.0 <= reach))
}

/// Where each of `threads` stretches of rows starts (and, last, the number of rows). Every
/// stretch but the first also replays the transactions before it that its windows reach, at
/// about a third of the cost of a row (measured), so it gets that many fewer rows.
fn stretch_starts(tx: &Transactions, kinds: &[Kind<'_>], cadence: Cadence, threads: usize) -> Vec<usize> {
    let n = tx.len();
    let warm_up = (n / 2 - reach_back(tx, kinds, cadence, n / 2)) / 3;
    let target = (n + warm_up * (threads - 1)).div_ceil(threads).max(1);
    let mut starts = vec![0];
    let mut at = target.min(n);
    while at < n {
        starts.push(at);
        at += target.saturating_sub(warm_up).max(1);
    }
    starts.push(n);
    starts
}

/// Rows per progress report.
const PROGRESS_ROWS: usize = 1 << 16;

/// Computes the features of transactions `first..first + rows.len() / n_features` into `rows`.
///
/// The windows start empty at [`reach_back`] of `first` and stream forward from there, so the
/// result does not depend on where a stretch starts.
fn compute_stretch(
    tx: &Transactions,
    schema: &FeatureSchema,
    kinds: &[Kind<'_>],
    cadence: Cadence,
    first: usize,
    rows: &mut [f64],
    progress: &dyn Progress,
) {
    let n_features = schema.len();
    let start = reach_back(tx, kinds, cadence, first);
    let mut states: Vec<KindState> = kinds.iter().map(|kind| kind.start(start)).collect();
    // The current transaction's entities' aggregates, one row of slots per kind.
    let mut slots = [[0.0; MAX_SLOTS]; MAX_ENTITIES];
    // As served, a snapshot as of `T` holds the transactions before `T`; exact, those before the
    // transaction itself (the same second included: the history's order decides).
    let mut available = start;
    for (r, row) in rows.chunks_exact_mut(n_features).enumerate() {
        let i = first + r;
        let now = cadence.snapshot_before(tx.time[i]).unwrap_or(tx.time[i]);
        available = match cadence {
            Cadence::Exact => i,
            Cadence::Every(_) => {
                // `now` never goes back, so the bound only moves forward: a step per transaction
                // in all (a binary search per row over the rest of the history cost about a
                // fifth of the as-served time).
                let mut next = available;
                while next < tx.len() && tx.time[next] < now {
                    next += 1;
                }
                next
            }
        };
        for ((kind, state), slots) in kinds.iter().zip(&mut states).zip(&mut slots) {
            kind.advance(state, tx, now, available);
            kind.aggregates(state, kind.column[i], slots);
        }
        let facts = TxFacts { time: tx.time[i], amount: tx.amount[i] };
        let n_kinds = kinds.len();
        schema.compute_with(&facts, |e, slot| (e < n_kinds).then(|| slots[e][slot]), row);
        if (r + 1) % PROGRESS_ROWS == 0 {
            progress.advance((PROGRESS_ROWS * n_kinds) as u64);
        }
    }
    progress.advance(((rows.len() / n_features % PROGRESS_ROWS) * kinds.len()) as u64);
}

/// Computes `schema`'s features for every transaction of `tx` (which must be in time order),
/// with entity aggregates taken at `cadence`.
///
/// The history is cut into one stretch per thread; each streams its transactions in time order
/// with the windows of every entity at hand (see `Kind`), writing its rows in order. The result
/// does not depend on the number of threads.
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
    if u32::try_from(tx.len()).is_err() {
        return Err(FeatureError::TooManyTransactions(tx.len()));
    }
    let columns = entity_columns(tx, schema)?;
    check_time_order(tx)?;
    let kinds: Vec<Kind<'_>> = columns
        .iter()
        .zip(schema.entities())
        .map(|((column, ids), entity)| Kind::new(column, ids.len(), &entity.layout))
        .collect();
    let n_features = schema.len();
    let mut values = vec![0.0; tx.len() * n_features];
    if n_features == 0 || tx.is_empty() {
        return Ok(FeatureTable { schema: schema.clone(), values });
    }
    progress.start("features", (tx.len() * kinds.len()) as u64);
    let starts = stretch_starts(tx, &kinds, cadence, rayon::current_num_threads().max(1));
    let mut stretches = Vec::with_capacity(starts.len());
    let mut rest = values.as_mut_slice();
    for bounds in starts.windows(2) {
        let (rows, tail) = std::mem::take(&mut rest).split_at_mut((bounds[1] - bounds[0]) * n_features);
        stretches.push((bounds[0], rows));
        rest = tail;
    }
    stretches.into_par_iter().for_each(|(first, rows)| {
        compute_stretch(tx, schema, &kinds, cadence, first, rows, progress);
    });
    progress.finish();
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
    use scorer::features::Aggregates;

    fn small() -> Transactions {
        let config =
            SimulationConfig { customers: 200, terminals: 400, days: 60, ..SimulationConfig::default() };
        simulate(&config, &NoProgress).expect("simulate")
    }

    /// The features as the exporter first computed them: each entity's transactions replayed on
    /// their own through `EntityWindows`, one snapshot's aggregates reused until the next.
    fn replayed_one_entity_at_a_time(
        tx: &Transactions,
        schema: &FeatureSchema,
        cadence: Cadence,
    ) -> Vec<f64> {
        use scorer::features::EntityWindows;
        let columns = entity_columns(tx, schema).unwrap();
        let mut per_kind = Vec::new();
        for ((column, ids), entity) in columns.iter().zip(schema.entities()) {
            let layout = &entity.layout;
            let groups = ByEntity::group(column, ids.len());
            let mut aggregates = vec![Aggregates::ZERO; tx.len()];
            for k in 0..ids.len() {
                let mut state = EntityWindows::new(layout);
                let mut cached: Option<(Timestamp, Aggregates)> = None;
                for &i in &groups.order[groups.offsets[k]..groups.offsets[k + 1]] {
                    let (i, time) = (i as usize, tx.time[i as usize]);
                    aggregates[i] = match cadence.snapshot_before(time) {
                        None => {
                            state.advance_to(layout, time);
                            state.aggregates(layout)
                        }
                        Some(boundary) => match cached {
                            Some((at, a)) if at == boundary => a,
                            _ => {
                                state.advance_to(layout, boundary);
                                cached = Some((boundary, state.aggregates(layout)));
                                state.aggregates(layout)
                            }
                        },
                    };
                    state.push(time, tx.amount[i], tx.fraud[i] != 0);
                }
            }
            per_kind.push(aggregates);
        }
        let mut values = vec![0.0; tx.len() * schema.len()];
        for (i, row) in values.chunks_exact_mut(schema.len()).enumerate() {
            let aggregates: Vec<Aggregates> = per_kind.iter().map(|a| a[i]).collect();
            schema.compute(&TxFacts { time: tx.time[i], amount: tx.amount[i] }, &aggregates, row);
        }
        values
    }

    /// A history with many transactions in the same second, some on a snapshot boundary.
    fn with_ties() -> Transactions {
        let mut tx = small();
        for i in (0..tx.len()).step_by(3) {
            tx.time[i] = Timestamp(tx.time[i].0 - tx.time[i].0.rem_euclid(3600));
        }
        for i in 1..tx.len() {
            if tx.time[i] < tx.time[i - 1] {
                tx.time[i] = tx.time[i - 1];
            }
        }
        tx
    }

    #[test]
    fn streaming_gives_the_bits_of_replaying_each_entity_alone() {
        let schemas = [FeatureSchema::handbook(), FeatureSchema::handbook_ratios()];
        for (schema, tx) in schemas.iter().flat_map(|schema| [(schema, small()), (schema, with_ties())]) {
            for cadence in [Cadence::Exact, Cadence::Every(3600), Cadence::Every(86_400), Cadence::Every(7)] {
                let want = replayed_one_entity_at_a_time(&tx, schema, cadence);
                for threads in [1, 2, 3, 8] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let got = pool.install(|| compute_features(&tx, schema, cadence, &NoProgress)).unwrap();
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert!(
                        bits(&got.values) == bits(&want),
                        "{} features, {cadence:?}, {threads} threads",
                        schema.len()
                    );
                }
            }
        }
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
