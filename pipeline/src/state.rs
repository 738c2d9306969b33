//! The running state: every entity's [`EntityWindows`] (the batch exporter's own code), the
//! transactions still held by some window (so that a late label finds its events), and the
//! counts of what was not folded.

use crate::message::{LabelEvent, Reason, Rejection, Transaction};
use scorer::Timestamp;
use scorer::features::{Aggregates, EntityWindows, FeatureSchema, TxFacts};
use scorer::snapshot::{EntityKey, IdHashKey};
use scorer::time::SECONDS_PER_DAY;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One entity kind's entities: ids interned to dense indices, and their windows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Kind {
    pub(crate) index: Map<Box<[u8]>, u32>,
    pub(crate) ids: Vec<Box<[u8]>>,
    pub(crate) windows: Vec<EntityWindows>,
}

/// Where a held transaction's event sits: per entity kind, (entity, absolute index); the entity
/// is [`NOT_HERE`] for a kind this state did not fold it into (scale-out).
pub(crate) type Held = Box<[(u32, u64)]>;

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
    pub(crate) held: Map<Arc<[u8]>, Held>,
    // The held transaction ids in time order, to forget them once they leave every window.
    pub(crate) retained: VecDeque<(i64, Arc<[u8]>)>,
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
            held: Map::default(),
            retained: VecDeque::new(),
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
        let already = match &tx.id {
            Some(id) => self.held.get(id).map(|at| at.to_vec()),
            None => None,
        };
        if let (Some(id), Some(at)) = (&tx.id, &already)
            && at.iter().enumerate().any(|(k, &(e, _))| e != NOT_HERE && kinds.contains(k))
        {
            return Err(Rejection {
                reason: Reason::DuplicateTransaction,
                detail: format!("transaction_id {} is already held", String::from_utf8_lossy(id)),
            });
        }
        self.clock = tx.time;
        self.forget_older_than(tx.time);
        let mut at = already.unwrap_or_else(|| vec![(NOT_HERE, 0); self.kinds.len()]);
        let new = at.iter().all(|&(e, _)| e == NOT_HERE);
        for (k, ((kind, id), def)) in
            self.kinds.iter_mut().zip(&tx.entities).zip(self.schema.entities()).enumerate()
        {
            if !kinds.contains(k) {
                continue;
            }
            let layout = &def.layout;
            let e = match kind.index.get(id) {
                Some(&e) => e,
                None => {
                    let e = kind.ids.len() as u32;
                    kind.index.insert(id.clone(), e);
                    kind.ids.push(id.clone());
                    kind.windows.push(EntityWindows::new(layout));
                    e
                }
            };
            let windows = &mut kind.windows[e as usize];
            // Advancing as we go drops what no window needs any more, as the batch exporter does.
            windows.advance_to(layout, tx.time);
            at[k] = (e, windows.push(tx.time, tx.amount, false));
        }
        if let Some(id) = &tx.id {
            self.held.insert(id.clone(), at.into_boxed_slice());
            if new {
                self.retained.push_back((tx.time.0, id.clone()));
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
                Some(&k) => {
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
        let Some(at) = self.held.get(&label.transaction_id[..]) else {
            return Err(Rejection {
                reason: Reason::UnknownTransaction,
                detail: format!(
                    "transaction_id {} is not held (unknown, not yet seen, or older than every window)",
                    String::from_utf8_lossy(&label.transaction_id)
                ),
            });
        };
        let mut applied = false;
        for ((kind, &(k, index)), def) in self.kinds.iter_mut().zip(at.iter()).zip(self.schema.entities()) {
            if k == NOT_HERE {
                continue;
            }
            let windows = &mut kind.windows[k as usize];
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

    fn tables_as_of<K>(&mut self, as_of: Timestamp, key: impl Fn(&[u8]) -> K) -> Vec<Vec<(K, Aggregates)>> {
        self.forget_older_than(as_of);
        let mut tables = Vec::with_capacity(self.kinds.len());
        for (kind, def) in self.kinds.iter_mut().zip(self.schema.entities()) {
            let layout = &def.layout;
            let mut rows = Vec::new();
            for (windows, id) in kind.windows.iter_mut().zip(&kind.ids) {
                windows.advance_to(layout, as_of);
                let aggregates = windows.aggregates(layout);
                if aggregates != Aggregates::ZERO {
                    rows.push((key(id), aggregates));
                }
            }
            tables.push(rows);
        }
        tables
    }

    /// First and last transaction time folded (a snapshot's data range).
    pub fn data_range(&self) -> Option<(Timestamp, Timestamp)> {
        self.first_tx.zip(self.last_tx)
    }

    /// Forgets the ids of transactions that have left every window by `now`.
    fn forget_older_than(&mut self, now: Timestamp) {
        let limit = now.0.saturating_sub(self.span);
        while let Some((t, _)) = self.retained.front() {
            if *t > limit {
                break;
            }
            if let Some((_, id)) = self.retained.pop_front() {
                self.held.remove(&id);
            }
        }
    }
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
