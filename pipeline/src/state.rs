//! The running state: every entity's [`EntityWindows`] (the batch exporter's own code), the
//! transactions still held by some window (so that a late label finds its events), and the
//! counts of what was not folded.

use crate::ids::{IdKey, IdMap};
use crate::message::{LabelEvent, Reason, Rejection, Transaction};
use scorer::Timestamp;
use scorer::features::{Aggregates, EntityWindows, FeatureSchema, MAX_ENTITIES};
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

    /// Whether the transaction `id` is held.
    pub(crate) fn contains(&self, id: &[u8]) -> bool {
        self.seq(id).is_some()
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
        if tx.time < self.clock {
            return Err(Rejection {
                reason: Reason::LateTransaction,
                detail: format!("time {} is before the event time already folded, {}", tx.time, self.clock),
            });
        }
        if let Some(id) = &tx.id
            && self.held.contains(id)
        {
            return Err(Rejection {
                reason: Reason::DuplicateTransaction,
                detail: format!("transaction_id {} is already held", String::from_utf8_lossy(id)),
            });
        }
        self.clock = tx.time;
        self.forget_older_than(tx.time);
        // Every entity found first and its state read ahead, then stepped: the cache misses of
        // the entities overlap.
        // (A transaction built with fewer ids than kinds steps only those, as ever.)
        let mut entities = [u32::MAX; MAX_ENTITIES];
        for (((kind, id), def), k) in
            self.kinds.iter_mut().zip(&tx.entities).zip(self.schema.entities()).zip(&mut entities)
        {
            *k = match kind.index.get(id) {
                Some(k) => k,
                None => {
                    let k = kind.ids.len() as u32;
                    kind.index.insert(IdKey::new(id), k);
                    kind.ids.push(id.clone());
                    kind.windows.push(EntityWindows::new(&def.layout));
                    k
                }
            };
            kind.windows[*k as usize].prefetch();
        }
        for ((kind, def), &k) in self.kinds.iter_mut().zip(self.schema.entities()).zip(&entities) {
            let index = match kind.windows.get_mut(k as usize) {
                Some(windows) => {
                    // Advancing as we go drops what no window needs any more, as the batch
                    // exporter does.
                    windows.advance_to(&def.layout, tx.time);
                    windows.push(tx.time, tx.amount, false)
                }
                None => 0,
            };
            if tx.id.is_some() {
                self.held.at.push_back((k, index));
            }
        }
        if let Some(id) = &tx.id {
            self.held.push(tx.time.0, IdKey::new(id));
        }
        self.first_tx.get_or_insert(tx.time);
        self.last_tx = Some(tx.time);
        self.counts.transactions += 1;
        Ok(())
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
        self.forget_older_than(as_of);
        let mut tables = Vec::with_capacity(self.kinds.len());
        for (kind, def) in self.kinds.iter_mut().zip(self.schema.entities()) {
            let layout = &def.layout;
            let mut rows = Vec::new();
            for (windows, id) in kind.windows.iter_mut().zip(&kind.ids) {
                windows.advance_to(layout, as_of);
                let aggregates = windows.aggregates(layout);
                if aggregates != Aggregates::ZERO {
                    rows.push((id_hash.hash(id), aggregates));
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
        while let Some((t, _)) = self.held.times.front() {
            if *t > limit {
                break;
            }
            self.held.pop(self.kinds.len());
        }
    }
}
