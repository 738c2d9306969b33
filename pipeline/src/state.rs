//! The running state: every entity's [`EntityWindows`] (the batch exporter's own code), the
//! transactions still held by some window (so that a late label finds its events), and the
//! counts of what was not folded.

use crate::ids::{IdKey, IdMap};
use crate::message::{LabelEvent, Reason, Rejection, Transaction};
use scorer::Timestamp;
use scorer::features::{Aggregates, EntityWindows, FeatureSchema, MAX_ENTITIES, TxFacts};
use scorer::snapshot::{EntityKey, IdHashKey};
use scorer::time::SECONDS_PER_DAY;
use std::collections::{BTreeMap, VecDeque};

/// One entity kind's entities: ids interned to dense indices, and their windows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Kind {
    pub(crate) index: IdMap<u32>,
    pub(crate) ids: Vec<Box<[u8]>>,
    pub(crate) windows: Vec<EntityWindows>,
}

/// The held transactions, oldest first, without an allocation per transaction: their times and
/// ids, and per entity kind where their event sits, (entity, absolute index), `kinds` entries a
/// transaction. `ids` maps an id to its sequence number (`first` is the oldest held one's); the
/// ids of forgotten transactions are swept out in bulk (a scan of the map) rather than one by
/// one (a cache miss each).
#[derive(Clone, Debug, Default)]
pub(crate) struct Held {
    pub(crate) ids: IdMap<u64>,
    pub(crate) times: VecDeque<(i64, IdKey)>,
    pub(crate) at: VecDeque<(u32, u64)>,
    pub(crate) first: u64,
}

impl Held {
    /// The sequence number of the held transaction `id`.
    fn seq(&self, id: &[u8]) -> Option<u64> {
        self.ids.get(id).filter(|&seq| seq >= self.first)
    }

    /// Number of transactions held.
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    /// Where the events of the transaction `id` sit, if it is held.
    pub(crate) fn get(&self, id: &[u8], kinds: usize) -> Option<impl Iterator<Item = (u32, u64)> + '_> {
        let i = (self.seq(id)? - self.first) as usize * kinds;
        Some(self.at.range(i..i + kinds).copied())
    }

    /// Forgets the oldest transaction.
    fn pop(&mut self, kinds: usize) {
        if self.times.pop_front().is_some() {
            self.at.drain(..kinds);
            self.first += 1;
        }
        // Sweep once the forgotten ids outnumber the held ones: amortised, a scan of two map
        // entries per transaction.
        if self.ids.len() > 2 * self.times.len() + 1024 {
            let first = self.first;
            self.ids.retain(|seq| seq >= first);
        }
    }

    /// The held transactions in time order: time, id, where their events sit.
    pub(crate) fn iter(&self, kinds: usize) -> impl Iterator<Item = (i64, &IdKey, Vec<(u32, u64)>)> + '_ {
        self.times
            .iter()
            .enumerate()
            .map(move |(i, (t, id))| (*t, id, self.at.range(i * kinds..(i + 1) * kinds).copied().collect()))
    }

    /// Holds one more transaction (its events' places pushed onto `at` already).
    pub(crate) fn push(&mut self, time: i64, id: IdKey) {
        self.ids.insert(id.clone(), self.first + self.times.len() as u64);
        self.times.push_back((time, id));
    }
}

/// The entity of a held transaction in a kind it was not folded into.
pub(crate) const NOT_HERE: u32 = u32::MAX;

/// The entity kinds a transaction is folded into: all of them (one exporter), or the kinds an
/// instance of a scale-out owns through the topic the transaction came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindSet(u32);

impl KindSet {
    /// Every entity kind.
    pub const ALL: KindSet = KindSet(u32::MAX);

    /// Only entity kind `k` (schema order).
    pub fn only(k: usize) -> KindSet {
        KindSet(1u32.checked_shl(k as u32).unwrap_or(0))
    }

    /// Whether kind `k` is in the set.
    pub fn contains(self, k: usize) -> bool {
        (self.0.checked_shr(k as u32).unwrap_or(0)) & 1 == 1
    }
}

/// The incremental state of the continuous exporter.
#[derive(Clone, Debug)]
pub struct State {
    pub(crate) schema: FeatureSchema,
    pub(crate) kinds: Vec<Kind>,
    // The held transactions in time order, to forget them once they leave every window.
    pub(crate) held: Held,
    pub(crate) clock: Timestamp,
    pub(crate) first_tx: Option<Timestamp>,
    pub(crate) last_tx: Option<Timestamp>,
    pub(crate) counts: Counts,
    // A transaction leaves every window once it is this many seconds old.
    span: i64,
}

/// What the state has taken in, and what it has turned away by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Transactions folded.
    pub transactions: u64,
    /// Labels applied to a held transaction.
    pub labels: u64,
    /// Messages not used (or used without effect), by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Scale-out only: labels of transactions this instance does not hold (another instance
    /// holds them, or nobody does); not a rejection.
    pub not_held_here: u64,
}

impl Counts {
    /// All messages rejected, whatever the reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub(crate) fn reject(&mut self, reason: &Reason) {
        *self.rejected.entry(reason.to_string()).or_default() += 1;
    }

    /// Adds `other`'s counts to these (the lanes of a scale-out instance, or of an as-of).
    pub fn add(&mut self, other: &Counts) {
        self.transactions += other.transactions;
        self.labels += other.labels;
        self.not_held_here += other.not_held_here;
        for (reason, n) in &other.rejected {
            *self.rejected.entry(reason.clone()).or_default() += n;
        }
    }
}

/// What a state holds (or the states of a scale-out instance's lanes together), for progress
/// reports and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// What was folded and rejected.
    pub counts: Counts,
    /// The latest event time folded, once something was.
    pub clock: Option<Timestamp>,
    /// Entities known, per kind (schema order).
    pub entities: Vec<usize>,
    /// Transactions held by some window.
    pub held: usize,
    /// States summed: in a scale-out, the lanes held; 1 for a single exporter.
    pub lanes: usize,
}

impl Status {
    /// Adds a state's holdings to this status.
    pub fn add(&mut self, state: &State) {
        self.counts.add(&state.counts);
        if state.clock != Timestamp(i64::MIN) {
            self.clock = Some(self.clock.map_or(state.clock, |c| c.max(state.clock)));
        }
        self.entities.resize(self.entities.len().max(state.kinds.len()), 0);
        for (n, kind) in self.entities.iter_mut().zip(&state.kinds) {
            *n += kind.ids.len();
        }
        self.held += state.held.len();
        self.lanes += 1;
    }
}

impl State {
    /// An empty state for `schema`.
    pub fn new(schema: FeatureSchema) -> State {
        let span = schema
            .entities()
            .iter()
            .flat_map(|e| &e.layout.windows)
            .map(|w| (i64::from(w.days) + i64::from(w.delay_days)) * SECONDS_PER_DAY)
            .max()
            .unwrap_or(0);
        let kinds = vec![Kind::default(); schema.entities().len()];
        State {
            schema,
            kinds,
            held: Held::default(),
            clock: Timestamp(i64::MIN),
            first_tx: None,
            last_tx: None,
            counts: Counts::default(),
            span,
        }
    }

    /// The schema the state follows.
    pub fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    /// The latest event time folded.
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// What was folded and rejected so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Entities known, per kind.
    pub fn entities(&self) -> Vec<usize> {
        self.kinds.iter().map(|k| k.ids.len()).collect()
    }

    /// Transactions held by some window (those a label can still find).
    pub fn held_transactions(&self) -> usize {
        self.held.len()
    }

    /// Folds a transaction in. Transactions must come in event-time order (with labels between
    /// them in theirs); an earlier one is refused as late.
    pub fn fold_transaction(&mut self, tx: &Transaction) -> Result<(), Rejection> {
        self.fold_transaction_into(tx, KindSet::ALL)
    }

    /// Folds a transaction into the entity kinds of `kinds` only (scale-out: an instance folds
    /// the customer kind from the customer-keyed topic, the terminal kind from the
    /// terminal-keyed one). The same transaction may come again for other kinds; it is a
    /// duplicate only if a kind it was already folded into comes again.
    pub fn fold_transaction_into(&mut self, tx: &Transaction, kinds: KindSet) -> Result<(), Rejection> {
        if tx.time < self.clock {
            return Err(Rejection {
                reason: Reason::LateTransaction,
                detail: format!("time {} is before the event time already folded, {}", tx.time, self.clock),
            });
        }
        // Scale-out: the copy of a held transaction from the other topic folds into its other kinds.
        let n = self.kinds.len();
        let folded_into = |held: &Held, k: usize| {
            let id = tx.id.as_deref()?;
            let i = (held.seq(id)? - held.first) as usize * n + k;
            held.at.get(i).map(|&(e, _)| e != NOT_HERE)
        };
        if let Some(id) = &tx.id
            && (0..n).any(|k| kinds.contains(k) && folded_into(&self.held, k) == Some(true))
        {
            return Err(Rejection {
                reason: Reason::DuplicateTransaction,
                detail: format!("transaction_id {} is already held", String::from_utf8_lossy(id)),
            });
        }
        self.clock = tx.time;
        self.forget_older_than(tx.time);
        // Every entity found first and its state read ahead, then stepped: the cache misses of
        // the entities overlap. (A transaction built with fewer ids than kinds steps only those.)
        let mut entities = [NOT_HERE; MAX_ENTITIES];
        for (k, (((kind, id), def), e)) in
            self.kinds.iter_mut().zip(&tx.entities).zip(self.schema.entities()).zip(&mut entities).enumerate()
        {
            if !kinds.contains(k) {
                continue;
            }
            *e = match kind.index.get(id) {
                Some(e) => e,
                None => {
                    let e = kind.ids.len() as u32;
                    kind.index.insert(IdKey::new(id), e);
                    kind.ids.push(id.clone());
                    kind.windows.push(EntityWindows::new(&def.layout));
                    e
                }
            };
            kind.windows[*e as usize].prefetch();
        }
        let mut at = [(NOT_HERE, 0u64); MAX_ENTITIES];
        for (((kind, def), &e), at) in
            self.kinds.iter_mut().zip(self.schema.entities()).zip(&entities).zip(&mut at)
        {
            if let Some(windows) = kind.windows.get_mut(e as usize) {
                // Advancing as we go drops what no window needs any more, as the batch exporter
                // does.
                windows.advance_to(&def.layout, tx.time);
                *at = (e, windows.push(tx.time, tx.amount, false));
            }
        }
        if let Some(id) = &tx.id {
            match self.held.seq(id) {
                // Held already (folded into other kinds): its places in the kinds folded now.
                Some(seq) => {
                    let base = (seq - self.held.first) as usize * n;
                    for (k, &place) in at.iter().enumerate().take(n) {
                        if place.0 != NOT_HERE {
                            self.held.at[base + k] = place;
                        }
                    }
                }
                None => {
                    self.held.at.extend(&at[..n]);
                    self.held.push(tx.time.0, IdKey::new(id));
                }
            }
        }
        self.first_tx.get_or_insert(tx.time);
        self.last_tx = Some(tx.time);
        self.counts.transactions += 1;
        Ok(())
    }

    /// The features of `tx` against the state just before it is folded (every earlier event in,
    /// the running windows advanced to its time), written into `out` (one value per feature):
    /// the values the exporter's training sets give the same transaction. The state's windows
    /// advance to `tx.time`, as folding it does next; nothing else changes. For a transaction
    /// at or after [`State::clock`] (an earlier one is refused by the fold).
    pub fn features_of(&mut self, tx: &Transaction, out: &mut [f64]) {
        let mut aggregates = Vec::with_capacity(self.kinds.len());
        for ((kind, id), def) in self.kinds.iter_mut().zip(&tx.entities).zip(self.schema.entities()) {
            let row = match kind.index.get(id) {
                Some(k) => {
                    let windows = &mut kind.windows[k as usize];
                    windows.advance_to(&def.layout, tx.time);
                    windows.aggregates(&def.layout)
                }
                _ => Aggregates::ZERO,
            };
            aggregates.push(row);
        }
        self.schema.compute(&TxFacts { time: tx.time, amount: tx.amount }, &aggregates, out);
    }

    /// Applies a label at its report time (or at the event time already folded, if later): the
    /// transaction's events get the flag; windows that hold them now are fixed at once.
    pub fn fold_label(&mut self, label: &LabelEvent) -> Result<(), Rejection> {
        self.clock = self.clock.max(label.reported_at);
        let now = self.clock;
        self.forget_older_than(now);
        let Some(at) = self.held.get(&label.transaction_id, self.kinds.len()) else {
            return Err(Rejection {
                reason: Reason::UnknownTransaction,
                detail: format!(
                    "transaction_id {} is not held (unknown, not yet seen, or older than every window)",
                    String::from_utf8_lossy(&label.transaction_id)
                ),
            });
        };
        let mut applied = false;
        for ((kind, (k, index)), def) in self.kinds.iter_mut().zip(at).zip(self.schema.entities()) {
            // NOT_HERE (a kind this instance did not fold it into) is no entity.
            let Some(windows) = kind.windows.get_mut(k as usize) else { continue };
            windows.advance_to(&def.layout, now);
            applied |= windows.set_fraud(index, label.fraud);
        }
        if !applied {
            return Err(Rejection {
                reason: Reason::LabelOutOfWindows,
                detail: format!(
                    "transaction_id {} has left every window",
                    String::from_utf8_lossy(&label.transaction_id)
                ),
            });
        }
        self.counts.labels += 1;
        Ok(())
    }

    /// Counts a label of a transaction this instance does not hold (scale-out).
    pub fn count_not_held_here(&mut self) {
        self.counts.not_held_here += 1;
    }

    /// Counts a message that was not folded.
    pub fn count_rejection(&mut self, rejection: &Rejection) {
        self.counts.reject(&rejection.reason);
    }

    /// The aggregates of every entity as of `as_of` (every event before it folded, none after),
    /// keyed by `id_hash`, all-zero rows left out: the tables
    /// `exporter::snapshot::build_from_aggregates` takes. Advances every entity to `as_of`.
    pub fn aggregates_as_of(
        &mut self,
        as_of: Timestamp,
        id_hash: &IdHashKey,
    ) -> Vec<Vec<(EntityKey, Aggregates)>> {
        self.tables_as_of(as_of, |id| id_hash.hash(id))
    }

    /// [`aggregates_as_of`](State::aggregates_as_of) keyed by the entities' ids themselves (a
    /// scale-out instance's shard: the assembler, which holds the keys, hashes them).
    pub fn rows_as_of(&mut self, as_of: Timestamp) -> Vec<Vec<(Box<[u8]>, Aggregates)>> {
        self.tables_as_of(as_of, |id| Box::from(id))
    }

    /// The rows as of `as_of`; then forgets the entities that hold no event any more, once they
    /// are at least 1/32 of all (see [`State::forget_idle_entities`]).
    fn tables_as_of<K>(&mut self, as_of: Timestamp, key: impl Fn(&[u8]) -> K) -> Vec<Vec<(K, Aggregates)>> {
        self.forget_older_than(as_of);
        let mut tables = Vec::with_capacity(self.kinds.len());
        let mut idle = 0;
        for (kind, def) in self.kinds.iter_mut().zip(self.schema.entities()) {
            let layout = &def.layout;
            let mut rows = Vec::new();
            for (windows, id) in kind.windows.iter_mut().zip(&kind.ids) {
                windows.advance_to(layout, as_of);
                let aggregates = windows.aggregates(layout);
                if aggregates != Aggregates::ZERO {
                    rows.push((key(id), aggregates));
                } else if windows.events().len() == 0 {
                    idle += 1;
                }
            }
            tables.push(rows);
        }
        // Amortised: renumbering scans every entity and held transaction, so it waits until at
        // least 1/32 of the entities are idle.
        let entities: usize = self.kinds.iter().map(|k| k.ids.len()).sum();
        if idle > 0 && idle * 32 >= entities {
            self.forget_idle_entities();
        }
        tables
    }

    /// Forgets the entities whose windows hold no event (every transaction of theirs has left
    /// every window): their rows are all zero, and one that comes back starts from an empty
    /// state whose aggregates are the same (exact sums and counts), so no snapshot changes.
    /// Without this, the state would grow with every entity ever seen. The held transactions'
    /// places are renumbered; an event of a forgotten entity becomes "not here" (a label of it
    /// could not have changed any window).
    pub fn forget_idle_entities(&mut self) {
        let n = self.kinds.len();
        for (k, kind) in self.kinds.iter_mut().enumerate() {
            let mut renumber = vec![NOT_HERE; kind.windows.len()];
            let mut next = 0u32;
            for (e, windows) in kind.windows.iter().enumerate() {
                if windows.events().len() > 0 {
                    renumber[e] = next;
                    next += 1;
                }
            }
            if next as usize == kind.windows.len() {
                continue;
            }
            keep_renumbered(&mut kind.windows, &renumber);
            keep_renumbered(&mut kind.ids, &renumber);
            kind.index.remap(|e| Some(renumber[e as usize]).filter(|&r| r != NOT_HERE));
            for (entity, _) in self.held.at.iter_mut().skip(k).step_by(n.max(1)) {
                if *entity != NOT_HERE {
                    *entity = renumber[*entity as usize];
                }
            }
        }
    }

    /// First and last transaction time folded (a snapshot's data range).
    pub fn data_range(&self) -> Option<(Timestamp, Timestamp)> {
        self.first_tx.zip(self.last_tx)
    }

    /// Forgets the ids of transactions that have left every window by `now`.
    fn forget_older_than(&mut self, now: Timestamp) {
        let limit = now.0.saturating_sub(self.span);
        while let Some((t, _)) = self.held.times.front() {
            if *t > limit {
                break;
            }
            self.held.pop(self.kinds.len());
        }
    }
}

/// Keeps the items of an entity list whose new number (same index in `renumber`) is not
/// [`NOT_HERE`].
fn keep_renumbered<T>(items: &mut Vec<T>, renumber: &[u32]) {
    let mut numbers = renumber.iter();
    items.retain(|_| numbers.next().is_some_and(|&r| r != NOT_HERE));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(id: u64, t: i64, customer: u64, terminal: u64) -> Transaction {
        Transaction {
            id: Some(id.to_string().into_bytes().into()),
            entities: vec![
                customer.to_string().into_bytes().into(),
                terminal.to_string().into_bytes().into(),
            ],
            time: Timestamp(t),
            amount: (id % 97) as f64 + 0.25,
        }
    }

    /// Entity `id`'s owner among `n` instances (a stand-in for Kafka's partitioner).
    fn owner(id: u64, n: u64) -> u64 {
        (id * 2_654_435_761) % 1_000_003 % n
    }

    #[test]
    fn instances_folding_their_kinds_give_the_single_states_rows_between_them() {
        let schema = FeatureSchema::handbook();
        let n = 3;
        let mut single = State::new(schema.clone());
        let mut parts: Vec<State> = (0..n).map(|_| State::new(schema.clone())).collect();
        let t0 = 1_522_540_800;
        for i in 0..3_000u64 {
            let t = t0 + i as i64 * 1_000;
            let (c, m) = (i % 41, (i * 7) % 53);
            let tx = tx(i, t, c, m);
            single.fold_transaction(&tx).expect("fold");
            // In event-time order each instance takes the customer copy, then the terminal copy.
            parts[owner(c, n) as usize].fold_transaction_into(&tx, KindSet::only(0)).expect("customer");
            parts[owner(m, n) as usize].fold_transaction_into(&tx, KindSet::only(1)).expect("terminal");
            if i % 17 == 0 && i > 30 {
                let label = LabelEvent {
                    transaction_id: (i - 30).to_string().into_bytes().into(),
                    fraud: true,
                    reported_at: Timestamp(t),
                };
                single.fold_label(&label).expect("label");
                let applied = parts.iter_mut().map(|p| p.fold_label(&label)).filter(Result::is_ok).count();
                assert!((1..=2).contains(&applied), "applied in {applied} instances");
            }
        }
        let as_of = Timestamp(t0 + 3_000 * 1_000 + 86_400);
        let mut expected = single.rows_as_of(as_of);
        let mut merged: Vec<Vec<(Box<[u8]>, Aggregates)>> = vec![Vec::new(); 2];
        for part in &mut parts {
            for (k, rows) in part.rows_as_of(as_of).into_iter().enumerate() {
                merged[k].extend(rows);
            }
        }
        for (a, b) in expected.iter_mut().zip(&mut merged) {
            a.sort_by(|x, y| x.0.cmp(&y.0));
            b.sort_by(|x, y| x.0.cmp(&y.0));
        }
        assert_eq!(expected, merged);
        assert!(expected[0].len() == 41 && expected[1].len() == 53);
    }

    /// A history with churn (customers and terminals active for ten days each, then gone) and
    /// labels up to 36 days late (some after their customer has been forgotten): every row as of
    /// every day is the same whether idle entities were forgotten at each day's boundary or never.
    #[test]
    fn forgetting_idle_entities_changes_no_row_and_bounds_the_state() {
        let schema = FeatureSchema::handbook();
        let day = 86_400;
        let t0 = 1_522_540_800;
        let days = 90i64;
        let mut events: Vec<(i64, Option<Transaction>, Option<LabelEvent>)> = Vec::new();
        for i in 0..(days * 40) as u64 {
            let t = t0 + i as i64 * day / 40;
            let era = (t - t0) / (10 * day);
            let tx = tx(i, t, i % 23 + 100 * era as u64, i % 31 + 100 * era as u64);
            events.push((t, Some(tx), None));
            if i % 7 == 0 {
                let late = if i % 3 == 0 { 36 * day - 5 } else { (i as i64 % 5 + 1) * day };
                let label = LabelEvent {
                    transaction_id: i.to_string().into_bytes().into(),
                    fraud: true,
                    reported_at: Timestamp(t + late),
                };
                events.push((t + late, None, Some(label)));
            }
        }
        events.sort_by_key(|(t, tx, _)| (*t, tx.is_none()));
        let fold = |state: &mut State, upto: i64, from: &mut usize| {
            while let Some((t, tx, label)) = events.get(*from) {
                if *t >= upto {
                    break;
                }
                if let Some(tx) = tx {
                    state.fold_transaction(tx).expect("fold");
                }
                if let Some(label) = label {
                    // Some labels come after their transaction has left every window.
                    let _ = state.fold_label(label);
                }
                *from += 1;
            }
        };
        let mut forgetting = State::new(schema.clone());
        let mut at = 0;
        let mut most = 0;
        for d in 1..=days {
            let as_of = t0 + d * day;
            fold(&mut forgetting, as_of, &mut at);
            let mut rows = forgetting.rows_as_of(Timestamp(as_of));
            most = most.max(forgetting.entities().iter().sum::<usize>());
            if d % 9 == 0 || d == days {
                // The same history folded into a state that never forgot anything.
                let mut keeping = State::new(schema.clone());
                fold(&mut keeping, as_of, &mut 0);
                let seen = keeping.entities().iter().sum::<usize>();
                let mut expected = keeping.rows_as_of(Timestamp(as_of));
                for (a, b) in rows.iter_mut().zip(&mut expected) {
                    a.sort_by(|x, y| x.0.cmp(&y.0));
                    b.sort_by(|x, y| x.0.cmp(&y.0));
                }
                assert_eq!(rows, expected, "day {d}");
                assert_eq!(forgetting.counts(), keeping.counts(), "day {d}");
                if d == days {
                    assert!(seen >= 9 * (23 + 31), "{seen} entities seen");
                }
            }
        }
        // At most the entities of the last 38 days (the 37-day span and a day to the next
        // boundary: five eras of ten) are held at once, of the nine eras' seen.
        assert!(most <= 5 * (23 + 31), "{most} entities held at once");
    }

    #[test]
    fn a_copy_for_another_kind_is_not_a_duplicate_but_a_second_copy_for_the_same_kind_is() {
        let mut state = State::new(FeatureSchema::handbook());
        let t = tx(1, 1_522_540_800, 5, 6);
        state.fold_transaction_into(&t, KindSet::only(0)).expect("customer copy");
        state.fold_transaction_into(&t, KindSet::only(1)).expect("terminal copy");
        let again = state.fold_transaction_into(&t, KindSet::only(1)).expect_err("redelivered");
        assert_eq!(again.reason, Reason::DuplicateTransaction);
        assert_eq!(state.held_transactions(), 1);
        assert_eq!(state.entities(), vec![1, 1]);
    }
}
