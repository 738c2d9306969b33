//! The two input topics' messages: a transaction is a score request (the scorer's own reader,
//! so the exporter and the edge accept the very same bytes); a label is a small JSON document.
//! A message that cannot be used is a [`Rejection`]: counted by reason, never dropped silently.

use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::score::{Field, MAX_ID_LEN, ScoreError, decode_request};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// One transaction as the state folds it: ids in their canonical bytes (numbers as decimal
/// text), the way the edge hashes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    /// The transaction id (needed for a label to find it later); shared, not copied, by the
    /// state's index.
    pub id: Option<Arc<[u8]>>,
    /// The id of each entity kind, in schema order.
    pub entities: Vec<Box<[u8]>>,
    /// When it happened.
    pub time: Timestamp,
    /// Its amount.
    pub amount: f64,
}

impl Transaction {
    /// Reads a score request (JSON or MessagePack, field names matched without regard to case).
    pub fn decode(payload: &[u8], schema: &FeatureSchema) -> Result<Transaction, Rejection> {
        let request = decode_request(payload, schema).map_err(|e| {
            let field = match e.field {
                Field::Request | Field::Batch => "request".to_string(),
                Field::TransactionId => "transaction_id".to_string(),
                Field::Entity(k) => schema
                    .entities()
                    .get(usize::from(k))
                    .map_or_else(|| format!("entity {k}"), |d| d.name.to_ascii_lowercase()),
                Field::Amount => "amount".to_string(),
                Field::Time => "time".to_string(),
            };
            let detail = ScoreError::Request(e).describe(Some(schema)).to_string();
            Rejection { reason: Reason::BadTransaction { field }, detail }
        })?;
        let mut buf = [0u8; MAX_ID_LEN];
        let id = request.transaction_id.map(|id| Arc::from(id.canonical(&mut buf)));
        let entities = request.entity_ids[..schema.entities().len()]
            .iter()
            // The reader has checked that every entity id is there.
            .map(|id| id.map_or_else(|| Box::from(&b""[..]), |id| Box::from(id.canonical(&mut buf))))
            .collect();
        Ok(Transaction { id, entities, time: request.time, amount: request.amount })
    }
}

/// A label message: `{"transaction_id": 123, "fraud": true, "reported_at": "2018-04-03T10:00:00Z"}`.
/// `fraud: false` marks the transaction genuine (and clears an earlier fraud label).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// The labelled transaction's id, as a number or as text.
    pub transaction_id: LabelId,
    /// Fraud (true) or genuine (false).
    pub fraud: bool,
    /// When the label became known: `YYYY-MM-DDTHH:MM:SSZ` (or with a space for `T`), or whole
    /// Unix seconds.
    pub reported_at: LabelTime,
}

/// A transaction id in a label: a whole number or text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelId {
    /// A whole number.
    Number(u64),
    /// Text.
    Text(String),
}

/// A label's time: date-time text or whole Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelTime {
    /// Whole Unix seconds.
    Seconds(i64),
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    Text(String),
}

/// A label as the state folds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelEvent {
    /// The transaction id, canonical bytes (the same as a transaction's).
    pub transaction_id: Box<[u8]>,
    /// Fraud or genuine.
    pub fraud: bool,
    /// When it became known.
    pub reported_at: Timestamp,
}

impl Label {
    /// A label for transaction `id`, reported at `at` (text form, UTC).
    pub fn new(id: u64, fraud: bool, at: Timestamp) -> Label {
        let d = at.to_datetime();
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            d.year, d.month, d.day, d.hour, d.minute, d.second
        );
        Label { transaction_id: LabelId::Number(id), fraud, reported_at: LabelTime::Text(text) }
    }

    /// Reads and checks a label message.
    pub fn decode(payload: &[u8]) -> Result<LabelEvent, Rejection> {
        let bad = |field: &str, detail: String| Rejection {
            reason: Reason::BadLabel { field: field.into() },
            detail,
        };
        let label: Label = serde_json::from_slice(payload).map_err(|e| {
            // serde names the missing or wrong field in its message; the count keys on the kind.
            let text = e.to_string();
            let field = ["transaction_id", "fraud", "reported_at"]
                .into_iter()
                .find(|f| text.contains(&format!("`{f}`")))
                .unwrap_or("label");
            bad(field, text)
        })?;
        let transaction_id: Box<[u8]> = match &label.transaction_id {
            LabelId::Number(n) => n.to_string().into_bytes().into(),
            LabelId::Text(t) if (1..=MAX_ID_LEN).contains(&t.len()) => t.as_bytes().into(),
            LabelId::Text(t) => {
                return Err(bad("transaction_id", format!("{t:?} must be 1 to {MAX_ID_LEN} bytes")));
            }
        };
        let reported_at = match &label.reported_at {
            LabelTime::Seconds(s) => Timestamp(*s),
            LabelTime::Text(t) => {
                t.parse::<Timestamp>().map_err(|e| bad("reported_at", format!("reported_at {t:?} {e}")))?
            }
        };
        Ok(LabelEvent { transaction_id, fraud: label.fraud, reported_at })
    }
}

/// Why a message was not folded into the state (or folded without effect).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// A transaction message the request reader refused.
    BadTransaction {
        /// The field at fault (`request` for the encoding as a whole).
        field: String,
    },
    /// A label message that is not a valid label.
    BadLabel {
        /// The field at fault (`label` for the document as a whole).
        field: String,
    },
    /// A transaction older than the event time already folded (its partition was idle, so the
    /// watermark had passed it): snapshots already published cannot take it.
    LateTransaction,
    /// A transaction id already held: a redelivery, folded once.
    DuplicateTransaction,
    /// A label for a transaction id not held (unknown, or older than every window).
    UnknownTransaction,
    /// A label for a held transaction that has left every window (nothing left to fix).
    LabelOutOfWindows,
}

impl Reason {
    /// A stable snake_case name of the reason, for metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::BadTransaction { .. } => "bad_transaction",
            Reason::BadLabel { .. } => "bad_label",
            Reason::LateTransaction => "late_transaction",
            Reason::DuplicateTransaction => "duplicate_transaction",
            Reason::UnknownTransaction => "unknown_transaction",
            Reason::LabelOutOfWindows => "label_out_of_windows",
        }
    }

    /// The field at fault, for a bad transaction or label.
    pub fn field(&self) -> Option<&str> {
        match self {
            Reason::BadTransaction { field } | Reason::BadLabel { field } => Some(field),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::BadTransaction { field } => write!(f, "bad transaction ({field})"),
            Reason::BadLabel { field } => write!(f, "bad label ({field})"),
            Reason::LateTransaction => f.write_str("late transaction"),
            Reason::DuplicateTransaction => f.write_str("duplicate transaction"),
            Reason::UnknownTransaction => f.write_str("label of an unknown transaction"),
            Reason::LabelOutOfWindows => f.write_str("label of a transaction out of every window"),
        }
    }
}

/// A message that was not used, with the reason it is counted under and the details logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// What it is counted as.
    pub reason: Reason,
    /// What exactly was wrong.
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_are_read_by_the_scorers_reader() {
        let schema = FeatureSchema::handbook();
        let tx = Transaction::decode(
            br#"{"TRANSACTION_ID": 7, "tx_datetime": "2018-04-01 00:00:31", "customer_id": 596, "terminal_id": "3156", "TX_AMOUNT": 57.16}"#,
            &schema,
        )
        .expect("valid");
        assert_eq!(tx.id.as_deref(), Some(&b"7"[..]));
        assert_eq!(tx.entities, vec![Box::from(&b"596"[..]), Box::from(&b"3156"[..])]);
        assert_eq!(tx.time, "2018-04-01 00:00:31".parse().expect("time"));
        assert_eq!(tx.amount, 57.16);
        let missing = Transaction::decode(br#"{"customer_id": 1, "terminal_id": 2, "amount": 1}"#, &schema)
            .expect_err("no time");
        assert_eq!(missing.reason, Reason::BadTransaction { field: "time".into() });
        let malformed = Transaction::decode(b"{\"customer_id\": ", &schema).expect_err("malformed");
        assert_eq!(malformed.reason, Reason::BadTransaction { field: "request".into() });
    }

    #[test]
    fn labels_round_trip_and_name_the_bad_field() {
        let label = Label::new(42, true, "2018-04-03 10:00:00".parse().expect("time"));
        let bytes = serde_json::to_vec(&label).expect("json");
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf8"),
            r#"{"transaction_id":42,"fraud":true,"reported_at":"2018-04-03T10:00:00Z"}"#
        );
        let event = Label::decode(&bytes).expect("valid");
        assert_eq!(&*event.transaction_id, b"42");
        assert_eq!(event.reported_at, "2018-04-03 10:00:00".parse().expect("time"));
        let missing = Label::decode(br#"{"transaction_id": 1, "reported_at": 5}"#).expect_err("no fraud");
        assert_eq!(missing.reason, Reason::BadLabel { field: "fraud".into() });
        let bad_time = Label::decode(br#"{"transaction_id": 1, "fraud": true, "reported_at": "soon"}"#)
            .expect_err("bad time");
        assert_eq!(bad_time.reason, Reason::BadLabel { field: "reported_at".into() });
    }
}
