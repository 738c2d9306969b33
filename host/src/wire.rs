//! Reading requests and responses on the host side (JSON or MessagePack, as `docs/abi.md`
//! says), for what the host itself needs: transaction ids, decisions, log fields.

pub use scorer::score::Format;
use serde_json::Value;

/// Why bytes could not be read as a JSON or MessagePack value.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not valid JSON.
    #[error("is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Not valid MessagePack (or a value JSON cannot hold, such as binary).
    #[error("is not valid MessagePack: {0}")]
    MsgPack(#[from] rmp_serde::decode::Error),
}

/// Parses `bytes` in the format its first byte tells.
pub fn parse(bytes: &[u8]) -> Result<Value, WireError> {
    Ok(match Format::sniff(bytes) {
        Format::Json => serde_json::from_slice(bytes)?,
        Format::MsgPack => rmp_serde::from_slice(bytes)?,
    })
}

/// Encodes `value` in `format` (MessagePack maps keep text keys).
pub fn encode(value: &Value, format: Format) -> Vec<u8> {
    match format {
        // Serialising a Value to memory cannot fail (its keys are text).
        Format::Json => serde_json::to_vec(value).unwrap_or_default(),
        Format::MsgPack => rmp_serde::to_vec_named(value).unwrap_or_default(),
    }
}

/// The value of `key` in a map, the key matched without regard to ASCII case (as the scorer does).
pub fn get<'v>(map: &'v Value, key: &str) -> Option<&'v Value> {
    map.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// A request's `transaction_id`, or null.
pub fn transaction_id(request: &Value) -> Value {
    get(request, "transaction_id").cloned().unwrap_or(Value::Null)
}

/// The text a transaction id is keyed by (idempotency, logs): text as is, numbers in decimal.
pub fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
