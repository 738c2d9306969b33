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

/// The text of a request's `transaction_id` (key matched without regard to ASCII case), as
/// [`id_text`] of [`transaction_id`] gives it, read without building the request as a [`Value`]:
/// the other fields are skipped, so the idempotency check costs a scan, not a parse into a tree.
/// `None` for a request that is not a map, has no id, or an id that is neither text nor number.
pub fn transaction_id_text(bytes: &[u8]) -> Option<String> {
    match Format::sniff(bytes) {
        Format::Json => {
            serde::de::DeserializeSeed::deserialize(IdOfMap, &mut serde_json::Deserializer::from_slice(bytes))
                .ok()
                .flatten()
        }
        Format::MsgPack => {
            serde::de::DeserializeSeed::deserialize(IdOfMap, &mut rmp_serde::Deserializer::new(bytes))
                .ok()
                .flatten()
        }
    }
}

/// Reads a map, keeping only the text of its transaction id.
struct IdOfMap;

impl<'de> serde::de::DeserializeSeed<'de> for IdOfMap {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IdOfMap {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a request map")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut id = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if id.is_none() && key.eq_ignore_ascii_case("transaction_id") {
                id = Some(id_text(&map.next_value::<Value>()?));
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(id.flatten())
    }
}

/// The text a transaction id is keyed by (idempotency, logs): text as is, numbers in decimal.
pub fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_id_scan_agrees_with_the_full_parse() {
        let requests = [
            r#"{"transaction_id":"t-1","customer_id":1,"amount":2.5}"#,
            r#"{"amount":2.5,"extra":{"transaction_id":"nested","x":[1,{"a":null}]},"TRANSACTION_ID":42}"#,
            r#"{"Transaction_Id":42.0,"time":1}"#,
            r#"{"transaction_id":-7}"#,
            r#"{"transaction_id":18446744073709551615}"#,
            r#"{"transaction_id":"esc\"aped\u00e9"}"#,
            r#"{"transaction_id":null,"customer_id":1}"#,
            r#"{"transaction_id":[1]}"#,
            r#"{"customer_id":1}"#,
            r#"[{"transaction_id":"in a batch"}]"#,
            r#"{"transaction_id":"broken""#,
            "",
        ];
        for json in requests {
            let old = parse(json.as_bytes()).ok().and_then(|v| id_text(&transaction_id(&v)));
            assert_eq!(transaction_id_text(json.as_bytes()), old, "JSON {json}");
            if let Ok(v) = serde_json::from_str::<Value>(json) {
                let packed = rmp_serde::to_vec_named(&v).unwrap_or_default();
                let old = parse(&packed).ok().and_then(|v| id_text(&transaction_id(&v)));
                assert_eq!(transaction_id_text(&packed), old, "MessagePack of {json}");
            }
        }
        assert_eq!(transaction_id_text(br#"{"transaction_id":"t-1"}"#).as_deref(), Some("t-1"));
    }
}
