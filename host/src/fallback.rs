//! The fallback decision: what a caller gets when no guest could answer (timeout, trap, no
//! instance). A normal-looking response, in the request's format, with `score` null, the
//! deployment's decision and a `fallback` field saying why.

use crate::guest::GuestError;
use crate::wire::{self, Format};
use serde_json::{Value, json};

/// What to decide when scoring cannot finish: per deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fallback {
    /// Fail open: allow the payment (the usual choice; fraud loss over lost sales).
    #[default]
    Open,
    /// Fail closed: decline the payment.
    Closed,
}

impl Fallback {
    /// The decision it gives: `allow` or `decline`.
    pub fn decision(self) -> &'static str {
        match self {
            Fallback::Open => "allow",
            Fallback::Closed => "decline",
        }
    }
}

impl std::str::FromStr for Fallback {
    type Err = String;
    fn from_str(s: &str) -> Result<Fallback, String> {
        match s {
            "open" | "allow" => Ok(Fallback::Open),
            "closed" | "decline" => Ok(Fallback::Closed),
            _ => Err(format!("fallback must be 'open' or 'closed', not {s:?}")),
        }
    }
}

fn one(
    transaction_id: Value,
    fallback: Fallback,
    why: &GuestError,
    snapshot: Option<&crate::SnapshotInfo>,
) -> Value {
    json!({
        "ok": true,
        "transaction_id": transaction_id,
        "score": null,
        "decision": fallback.decision(),
        "rules": [],
        "reasons": [],
        "attribution": "none",
        "known": {},
        "snapshot_id": snapshot.map(|s| s.snapshot_id.clone()),
        "model_id": snapshot.and_then(|s| s.model_id.clone()),
        "fallback": format!("{}: {why}", why.kind()),
    })
}

/// The fallback response to `input` (one request, or an array of them when `batch`), echoing
/// each request's `transaction_id` when it can be read.
pub(crate) fn response(
    input: &[u8],
    batch: bool,
    fallback: Fallback,
    why: &GuestError,
    snapshot: Option<&crate::SnapshotInfo>,
) -> Vec<u8> {
    let format = Format::sniff(input);
    let parsed = wire::parse(input).ok();
    let value = match (batch, parsed) {
        (true, Some(Value::Array(items))) => Value::Array(
            items.iter().map(|r| one(wire::transaction_id(r), fallback, why, snapshot)).collect(),
        ),
        (_, parsed) => {
            let id = parsed.as_ref().map(wire::transaction_id).unwrap_or(Value::Null);
            one(id, fallback, why, snapshot)
        }
    };
    wire::encode(&value, format)
}
