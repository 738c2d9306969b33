//! A transaction history held column by column: the form every exporter step works on.
//! Entity ids are interned to dense `u32` indices so that per-entity state is a plain `Vec`.

use foldhash::HashMap;
use scorer::Timestamp;

/// The handbook's label for a genuine transaction, and its three fraud scenarios.
pub mod scenario {
    /// Genuine transaction.
    pub const GENUINE: u8 = 0;
    /// Scenario 1: any amount above 220 is fraud.
    pub const HIGH_AMOUNT: u8 = 1;
    /// Scenario 2: every transaction on a compromised terminal for 28 days.
    pub const COMPROMISED_TERMINAL: u8 = 2;
    /// Scenario 3: a third of a compromised customer's transactions for 14 days, amount x5.
    pub const COMPROMISED_CUSTOMER: u8 = 3;
}

/// Interned entity ids (customers or terminals): the original id text and a dense index for each.
#[derive(Clone, Debug, Default)]
pub struct EntityIds {
    ids: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl EntityIds {
    /// An empty table.
    pub fn new() -> EntityIds {
        EntityIds::default()
    }

    /// The dense index of `id`, adding it when new; `None` once the table holds `u32::MAX` entities.
    pub fn intern(&mut self, id: &str) -> Option<u32> {
        if let Some(&i) = self.index.get(id) {
            return Some(i);
        }
        let i = u32::try_from(self.ids.len()).ok().filter(|&i| i < u32::MAX)?;
        self.ids.push(id.into());
        self.index.insert(id.into(), i);
        Some(i)
    }

    /// The dense index of `id`, if it was interned.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The original id text of dense index `i`.
    pub fn id(&self, i: u32) -> &str {
        &self.ids[i as usize]
    }

    /// Number of distinct entities.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no entity was interned.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A transaction history in the handbook's model, one `Vec` per column, all of equal length.
///
/// Row `i` is one transaction. `customer[i]` and `terminal[i]` index into [`Transactions::customers`]
/// and [`Transactions::terminals`]. Labels (`fraud`, `scenario`) may be absent in the source, in
/// which case they are 0.
#[derive(Clone, Debug, Default)]
pub struct Transactions {
    /// TRANSACTION_ID.
    pub transaction_id: Vec<u64>,
    /// TX_DATETIME.
    pub time: Vec<Timestamp>,
    /// CUSTOMER_ID, as an index into `customers`.
    pub customer: Vec<u32>,
    /// TERMINAL_ID, as an index into `terminals`.
    pub terminal: Vec<u32>,
    /// TX_AMOUNT.
    pub amount: Vec<f64>,
    /// TX_FRAUD (1 fraud, 0 genuine).
    pub fraud: Vec<u8>,
    /// TX_FRAUD_SCENARIO (see [`scenario`]).
    pub scenario: Vec<u8>,
    /// The customers' original ids.
    pub customers: EntityIds,
    /// The terminals' original ids.
    pub terminals: EntityIds,
    /// The origin of TX_TIME_SECONDS and TX_TIME_DAYS (the handbook's is 2018-04-01 00:00:00).
    pub origin: Timestamp,
}

impl Transactions {
    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.transaction_id.len()
    }

    /// True when there is no transaction.
    pub fn is_empty(&self) -> bool {
        self.transaction_id.is_empty()
    }

    /// Transaction `i` as the JSON score request the edge accepts (transaction id, time in Unix
    /// seconds, customer and terminal ids, amount): what replays, Kafka producers and tests send.
    pub fn score_request(&self, i: usize) -> String {
        serde_json::json!({
            "transaction_id": self.transaction_id[i],
            "time": self.time[i].0,
            "customer_id": self.customers.id(self.customer[i]),
            "terminal_id": self.terminals.id(self.terminal[i]),
            "amount": self.amount[i],
        })
        .to_string()
    }

    /// Keeps the first `n` transactions (all of them when there are fewer).
    pub fn truncate(&mut self, n: usize) {
        self.transaction_id.truncate(n);
        self.time.truncate(n);
        self.customer.truncate(n);
        self.terminal.truncate(n);
        self.amount.truncate(n);
        self.fraud.truncate(n);
        self.scenario.truncate(n);
    }

    /// Seconds from [`Transactions::origin`] to transaction `i` (TX_TIME_SECONDS).
    pub fn time_seconds(&self, i: usize) -> i64 {
        self.time[i].0 - self.origin.0
    }

    /// Whole days from [`Transactions::origin`] to transaction `i` (TX_TIME_DAYS).
    pub fn time_days(&self, i: usize) -> i64 {
        self.time_seconds(i).div_euclid(scorer::time::SECONDS_PER_DAY)
    }
}
