//! One row of the decision log ([`DecisionRecord`]) and how rows are read off a scored exchange:
//! the decision, score, rules, reasons and ids come from the scorer's response (never re-scored),
//! the amount and the entity ids from the request, the ids hashed before anything is stored.

use crate::wire::Format;
use scorer::policy::Decision;
use scorer::snapshot::IdHashKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// One reason of a decision, as the response gave it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// The feature's name, e.g. `TERMINAL_ID_RISK_1DAY_WINDOW`.
    pub feature: String,
    /// The feature's value (null when it was not finite).
    pub value: Option<f64>,
    /// Its contribution to the margin (forests: to the probability).
    pub contribution: Option<f64>,
}

/// One logged decision: one row of the Parquet files (`docs/host.md` lists the columns).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// When the host decided: microseconds since the Unix epoch (UTC).
    pub decided_at_us: i64,
    /// The HTTP request it answered (`x-request-id`, given or made by the host).
    pub request_id: String,
    /// The position in a batch; none for a single request.
    pub batch_index: Option<u32>,
    /// The caller's transaction id (numbers in decimal).
    pub transaction_id: Option<String>,
    /// The customer id, hashed with the edge key's id-hash key (raw ids are never stored).
    pub customer_key: Option<u64>,
    /// The terminal id, hashed like the customer id.
    pub terminal_key: Option<u64>,
    /// The amount the request carried.
    pub amount: Option<f64>,
    /// The model's score; none when a hard rule decided or on a fallback.
    pub score: Option<f64>,
    /// What the gateway was told.
    #[serde(with = "decision_text")]
    pub decision: Decision,
    /// Reason codes of the hard rules that fired.
    pub rules: Vec<String>,
    /// The top reasons, largest first.
    pub reasons: Vec<Reason>,
    /// The snapshot that answered.
    pub snapshot_id: Option<String>,
    /// The model that answered.
    pub model_id: Option<String>,
    /// Microseconds from the request received to its decision made (a batch: the whole batch).
    pub latency_us: u64,
    /// Why the deployment's fallback decided instead of the model (`timeout: ...`); none otherwise.
    pub fallback: Option<String>,
    /// What the shadow snapshot answered to the same request; none when no shadow was loaded.
    /// (`default`: segments written before this field existed still read.)
    #[serde(default)]
    pub shadow: Option<ShadowDecision>,
}

/// The shadow snapshot's answer to a logged request: scored, never sent to the caller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowDecision {
    /// The shadow snapshot.
    pub snapshot_id: Option<String>,
    /// The shadow's model.
    pub model_id: Option<String>,
    /// The shadow model's score; none when a hard rule decided, on a fallback or an error.
    pub score: Option<f64>,
    /// What the shadow would have decided; none when it answered with an error.
    #[serde(with = "optional_decision_text")]
    pub decision: Option<Decision>,
    /// Reason codes of the shadow's hard rules that fired.
    pub rules: Vec<String>,
    /// Why the fallback answered for the shadow; none otherwise.
    pub fallback: Option<String>,
    /// The shadow's error message, when it could not score a request the live snapshot scored.
    pub error: Option<String>,
}

/// `allow`, `review` or `decline` as the [`Decision`] it names.
pub fn parse_decision(text: &str) -> Option<Decision> {
    match text {
        "allow" => Some(Decision::Allow),
        "review" => Some(Decision::Review),
        "decline" => Some(Decision::Decline),
        _ => None,
    }
}

mod decision_text {
    use scorer::policy::Decision;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::borrow::Cow;

    pub fn serialize<S: Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decision, D::Error> {
        let text = <Cow<'de, str>>::deserialize(d)?;
        super::parse_decision(&text).ok_or_else(|| D::Error::custom(format!("{text:?} is not a decision")))
    }
}

mod optional_decision_text {
    use scorer::policy::Decision;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::borrow::Cow;

    pub fn serialize<S: Serializer>(d: &Option<Decision>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(d.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decision>, D::Error> {
        match <Option<Cow<'de, str>>>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse_decision(&text)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("{text:?} is not a decision"))),
        }
    }
}

/// One scoring call as the host saw it: what [`records`] turns into rows.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    /// The request id the rows carry.
    pub request_id: &'a str,
    /// The request body (one request, or an array of them when `batch`).
    pub request: &'a [u8],
    /// The response body, in the request's format.
    pub response: &'a [u8],
    /// Whether it was a batch.
    pub batch: bool,
    /// When the decision was made, in microseconds since the Unix epoch.
    pub decided_at_us: i64,
    /// Microseconds from request received to decision made.
    pub latency_us: u64,
    /// The shadow snapshot's response to the same call (same format and shape), when one is loaded.
    pub shadow: Option<&'a [u8]>,
}

/// What the log needs from a scalar of either format.
trait Scalar {
    /// The number it holds, read exactly; none for null, text or a non-finite value.
    fn number(&self) -> Option<f64>;
    /// An id as text: text as is, a whole number in decimal (`42.0` is `42`, as the scorer hashes it).
    fn id(&self) -> Option<Cow<'_, str>>;
}

/// serde_json reads floats to within one ulp only; the raw text parsed by the standard library
/// gives exactly the f64 the scorer wrote (Ryu's shortest text reads back to the same bits).
impl Scalar for &RawValue {
    fn number(&self) -> Option<f64> {
        self.get().trim().parse::<f64>().ok().filter(|v| v.is_finite())
    }

    fn id(&self) -> Option<Cow<'_, str>> {
        let text = self.get().trim();
        if text.starts_with('"') {
            serde_json::from_str::<String>(text).ok().map(Cow::Owned)
        } else if let Ok(n) = text.parse::<i64>() {
            Some(Cow::Owned(n.to_string()))
        } else if let Ok(n) = text.parse::<u64>() {
            Some(Cow::Owned(n.to_string()))
        } else {
            whole(text.parse::<f64>().ok()?).map(Cow::Owned)
        }
    }
}

impl Scalar for Value {
    fn number(&self) -> Option<f64> {
        self.as_f64().filter(|v| v.is_finite())
    }

    fn id(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(Cow::Owned(n.to_string())),
            Value::Number(n) => whole(n.as_f64()?).map(Cow::Owned),
            _ => None,
        }
    }
}

/// A float id in decimal, when it is a whole number the scorer accepts (at most 2^53).
fn whole(v: f64) -> Option<String> {
    (v.is_finite() && v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0).then(|| format!("{}", v as i64))
}

#[derive(Deserialize)]
struct Answer<S> {
    ok: bool,
    transaction_id: Option<S>,
    score: Option<S>,
    decision: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default = "Vec::new")]
    reasons: Vec<AnswerReason<S>>,
    snapshot_id: Option<String>,
    model_id: Option<String>,
    fallback: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct AnswerReason<S> {
    feature: String,
    value: Option<S>,
    contribution: Option<S>,
}

/// The fields of one request, keys as given (looked up without regard to ASCII case).
struct Fields<S>(BTreeMap<String, S>);

impl<S: Scalar> Fields<S> {
    fn get(&self, names: &[&str]) -> Option<&S> {
        self.0.iter().find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n))).map(|(_, v)| v)
    }
}

/// The rows of one exchange: one per decision in the response. Error responses (and error
/// items of a batch) are not decisions and give none.
pub fn records(exchange: &Exchange<'_>, id_hash: &IdHashKey) -> Vec<DecisionRecord> {
    match Format::sniff(exchange.response) {
        Format::Json => json_records(exchange, id_hash),
        Format::MsgPack => msgpack_records(exchange, id_hash),
    }
}

/// True when a JSON body's first value is an array.
fn json_array(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// True when a MessagePack body is an array.
fn msgpack_array(body: &[u8]) -> bool {
    body.first().is_some_and(|b| b & 0xf0 == 0x90 || *b == 0xdc || *b == 0xdd)
}

fn json_map(bytes: &[u8]) -> Option<BTreeMap<String, &RawValue>> {
    serde_json::from_slice(bytes).ok()
}

/// The answers of a JSON response body: one, or the items of a batch.
fn json_answers(body: &[u8]) -> Vec<Answer<&RawValue>> {
    if json_array(body) {
        serde_json::from_slice(body).unwrap_or_default()
    } else {
        serde_json::from_slice(body).map(|a| vec![a]).unwrap_or_default()
    }
}

/// The answers of a MessagePack response body: one, or the items of a batch.
fn msgpack_answers(body: &[u8]) -> Vec<Answer<Value>> {
    if msgpack_array(body) {
        rmp_serde::from_slice(body).unwrap_or_default()
    } else {
        rmp_serde::from_slice(body).map(|a| vec![a]).unwrap_or_default()
    }
}

fn json_records(ex: &Exchange<'_>, id_hash: &IdHashKey) -> Vec<DecisionRecord> {
    let answers = json_answers(ex.response);
    let shadow = ex.shadow.map(json_answers);
    let requests: Vec<Option<BTreeMap<String, &RawValue>>> = if ex.batch && json_array(ex.request) {
        let items: Vec<&RawValue> = serde_json::from_slice(ex.request).unwrap_or_default();
        items.iter().map(|raw| json_map(raw.get().as_bytes())).collect()
    } else {
        vec![json_map(ex.request)]
    };
    rows(ex, id_hash, answers, shadow, requests)
}

fn msgpack_records(ex: &Exchange<'_>, id_hash: &IdHashKey) -> Vec<DecisionRecord> {
    let answers = msgpack_answers(ex.response);
    let shadow = ex.shadow.map(msgpack_answers);
    let map = |v: Value| match v {
        Value::Object(m) => Some(m.into_iter().collect::<BTreeMap<String, Value>>()),
        _ => None,
    };
    let requests: Vec<Option<BTreeMap<String, Value>>> = if ex.batch && msgpack_array(ex.request) {
        let items: Vec<Value> = rmp_serde::from_slice(ex.request).unwrap_or_default();
        items.into_iter().map(map).collect()
    } else {
        vec![rmp_serde::from_slice::<Value>(ex.request).ok().and_then(map)]
    };
    rows(ex, id_hash, answers, shadow, requests)
}

/// The shadow's answer as a log entry. An answer missing from the shadow's response (it gave
/// fewer items than the live one) is logged as an error, never silently left out.
fn shadow_decision<S: Scalar>(answer: Option<Answer<S>>) -> ShadowDecision {
    let Some(a) = answer else {
        return ShadowDecision {
            snapshot_id: None,
            model_id: None,
            score: None,
            decision: None,
            rules: Vec::new(),
            fallback: None,
            error: Some("the shadow gave no answer for this item".into()),
        };
    };
    let decision = if a.ok { a.decision.as_deref().and_then(parse_decision) } else { None };
    let error = match (&decision, a.error) {
        (Some(_), _) => None,
        (None, Some(e)) => Some(e),
        (None, None) => Some("the shadow's answer has no decision".into()),
    };
    ShadowDecision {
        snapshot_id: a.snapshot_id,
        model_id: a.model_id,
        score: a.score.as_ref().and_then(Scalar::number),
        decision,
        rules: a.rules,
        fallback: a.fallback,
        error,
    }
}

fn rows<S: Scalar>(
    ex: &Exchange<'_>,
    id_hash: &IdHashKey,
    answers: Vec<Answer<S>>,
    shadow: Option<Vec<Answer<S>>>,
    requests: Vec<Option<BTreeMap<String, S>>>,
) -> Vec<DecisionRecord> {
    let batch = ex.batch && answers.len() == requests.len();
    let mut requests = requests.into_iter();
    let mut shadow = shadow.map(Vec::into_iter);
    let mut out = Vec::with_capacity(answers.len());
    for (i, a) in answers.into_iter().enumerate() {
        let fields = requests.next().flatten().map(Fields);
        let shadow = shadow.as_mut().map(|s| shadow_decision(s.next()));
        if !a.ok {
            continue;
        }
        let Some(decision) = a.decision.as_deref().and_then(parse_decision) else { continue };
        let key = |names: &[&str]| {
            let f = fields.as_ref()?;
            f.get(names)?.id().map(|id| id_hash.hash(id.as_bytes()).0)
        };
        out.push(DecisionRecord {
            decided_at_us: ex.decided_at_us,
            request_id: ex.request_id.to_string(),
            batch_index: if batch { u32::try_from(i).ok() } else { None },
            transaction_id: a.transaction_id.as_ref().and_then(|t| t.id()).map(Cow::into_owned),
            customer_key: key(&["customer_id"]),
            terminal_key: key(&["terminal_id"]),
            amount: fields.as_ref().and_then(|f| f.get(&["amount", "tx_amount"])).and_then(Scalar::number),
            score: a.score.as_ref().and_then(Scalar::number),
            decision,
            rules: a.rules,
            reasons: a
                .reasons
                .into_iter()
                .map(|r| Reason {
                    feature: r.feature,
                    value: r.value.as_ref().and_then(Scalar::number),
                    contribution: r.contribution.as_ref().and_then(Scalar::number),
                })
                .collect(),
            snapshot_id: a.snapshot_id,
            model_id: a.model_id,
            latency_us: ex.latency_us,
            fallback: a.fallback,
            shadow,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange<'a>(request: &'a [u8], response: &'a [u8], batch: bool) -> Exchange<'a> {
        Exchange {
            request_id: "r-1",
            request,
            response,
            batch,
            decided_at_us: 7,
            latency_us: 11,
            shadow: None,
        }
    }

    #[test]
    fn reads_a_json_decision_exactly_and_hashes_the_ids() {
        let key = IdHashKey([9; 16]);
        let request =
            br#"{"transaction_id":"t-1","CUSTOMER_ID":42.0,"terminal_id":"7","amount":20.1,"time":1}"#;
        let response = br#"{"ok":true,"transaction_id":"t-1","score":0.23791100470404158,"decision":"review","rules":["AMOUNT_CAP"],"reasons":[{"feature":"TERMINAL_ID_RISK_1DAY_WINDOW","value":0.2,"contribution":0.6000000000000001}],"attribution":"exact","known":{"CUSTOMER_ID":true,"TERMINAL_ID":true},"snapshot_id":"tg-test","model_id":"lr-test"}"#;
        let rows = records(&exchange(request, response, false), &key);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.score, Some(0.23791100470404158));
        assert_eq!(r.decision, Decision::Review);
        assert_eq!(r.customer_key, Some(key.hash(b"42").0), "42.0 hashes as 42, as the scorer does");
        assert_eq!(r.terminal_key, Some(key.hash(b"7").0));
        assert_eq!(r.amount, Some(20.1));
        assert_eq!(r.rules, vec!["AMOUNT_CAP".to_string()]);
        assert_eq!(r.reasons[0].contribution, Some(0.6000000000000001));
        assert_eq!(r.transaction_id.as_deref(), Some("t-1"));
        assert_eq!((r.batch_index, r.latency_us, r.decided_at_us), (None, 11, 7));
    }

    #[test]
    fn batch_error_items_give_no_row() {
        let key = IdHashKey([1; 16]);
        let request = br#"[{"customer_id":1,"terminal_id":2,"amount":3,"time":4},{"amount":"x"}]"#;
        let response = br#"[{"ok":true,"transaction_id":null,"score":null,"decision":"decline","rules":["BLOCKED"],"reasons":[],"attribution":"none","known":{},"snapshot_id":"s","model_id":"m"},{"ok":false,"transaction_id":null,"error":"amount: bad","error_kind":"bad_request","snapshot_id":"s"}]"#;
        let rows = records(&exchange(request, response, true), &key);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].batch_index, Some(0));
        assert_eq!(rows[0].score, None);
        assert_eq!(rows[0].amount, Some(3.0));
    }

    #[test]
    fn logs_the_shadow_answer_beside_each_live_one() {
        let key = IdHashKey([2; 16]);
        let request = br#"[{"customer_id":1,"terminal_id":2,"amount":3,"time":4},{"customer_id":1,"terminal_id":2,"amount":5,"time":6}]"#;
        let live = br#"[{"ok":true,"score":0.1,"decision":"allow","rules":[],"reasons":[],"snapshot_id":"live","model_id":"m1"},{"ok":true,"score":0.2,"decision":"allow","rules":[],"reasons":[],"snapshot_id":"live","model_id":"m1"}]"#;
        let shadow = br#"[{"ok":true,"score":0.9,"decision":"decline","rules":["R"],"reasons":[],"snapshot_id":"cand","model_id":"m2"},{"ok":false,"error":"features: missing","error_kind":"bad_request","snapshot_id":"cand"}]"#;
        let ex = Exchange { shadow: Some(shadow), ..exchange(request, live, true) };
        let rows = records(&ex, &key);
        assert_eq!(rows.len(), 2);
        let first = rows[0].shadow.as_ref().expect("the shadow is logged");
        assert_eq!(first.decision, Some(Decision::Decline));
        assert_eq!(first.score, Some(0.9));
        assert_eq!((first.snapshot_id.as_deref(), first.model_id.as_deref()), (Some("cand"), Some("m2")));
        assert_eq!(first.rules, vec!["R".to_string()]);
        assert_eq!(first.error, None);
        let second = rows[1].shadow.as_ref().expect("a shadow error is logged, not dropped");
        assert_eq!(second.decision, None);
        assert_eq!(second.error.as_deref(), Some("features: missing"));
        assert_eq!(rows[1].decision, Decision::Allow, "the live answer is what the row says was decided");
        let without = records(&exchange(request, live, true), &key);
        assert!(without.iter().all(|r| r.shadow.is_none()));
    }

    #[test]
    fn reads_messagepack_fallbacks() {
        let key = IdHashKey([1; 16]);
        let request = rmp_serde::to_vec_named(
            &serde_json::json!({"transaction_id": 5, "customer_id": "c", "terminal_id": 9, "amount": 1.5}),
        )
        .unwrap_or_default();
        let response = rmp_serde::to_vec_named(&serde_json::json!({"ok": true, "transaction_id": 5,
            "score": null, "decision": "allow", "rules": [], "reasons": [], "attribution": "none",
            "known": {}, "snapshot_id": "s", "model_id": null, "fallback": "timeout: too slow"}))
        .unwrap_or_default();
        let rows = records(&exchange(&request, &response, false), &key);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].fallback.as_deref(), Some("timeout: too slow"));
        assert_eq!(rows[0].transaction_id.as_deref(), Some("5"));
        assert_eq!(rows[0].customer_key, Some(key.hash(b"c").0));
        assert_eq!(rows[0].terminal_key, Some(key.hash(b"9").0));
    }
}
