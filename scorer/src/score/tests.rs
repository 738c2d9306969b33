use super::*;
use crate::features::FeatureSchema;
use crate::model::{Logistic, Node, TreeEnsemble};
use crate::policy::{BlockList, ReasonCode};
use crate::snapshot::{IdHashKey, SnapshotMeta, SnapshotSigner, build_snapshot_with};
use alloc::string::{String, ToString};
use alloc::vec;
use proptest::prelude::*;

fn signer() -> SnapshotSigner {
    SnapshotSigner::from_secret([3; 32], IdHashKey([5; 16]))
}

fn logistic() -> Model {
    // Amount, weekend, night, then customer count / mean and terminal count / risk per window.
    let weights = vec![0.01, 0.2, 0.5, 0.1, 0.001, 0.05, 0.002, 0.0, 0.0, 0.0, 3.0, 0.0, 2.0, 0.0, 1.0];
    Model::Logistic(Logistic { weights, intercept: -4.0 })
}

fn policy(s: &SnapshotSigner) -> Policy {
    Policy::new(0.3, 0.8)
        .unwrap()
        .with_amount_cap(5000.0, ReasonCode::new("AMOUNT_CAP").unwrap())
        .unwrap()
        .with_block_list(BlockList::from_ids(
            1,
            ReasonCode::new("BLOCKED_TERMINAL").unwrap(),
            [b"666".as_slice()],
            s.id_hash(),
        ))
        .unwrap()
}

/// Customer 42 (3 transactions of 10 in the last day, 7 over 30 days) and terminal 7 (2 frauds in
/// 10 transactions in each delayed window).
fn snapshot_bytes(model: Option<&Model>, with_policy: bool) -> Vec<u8> {
    snapshot_bytes_of(FeatureSchema::handbook(), model, with_policy)
}

/// [`snapshot_bytes`] with another schema over the handbook's rows.
fn snapshot_bytes_of(schema: FeatureSchema, model: Option<&Model>, with_policy: bool) -> Vec<u8> {
    let s = signer();
    let meta = SnapshotMeta {
        snapshot_id: "tg-test".into(),
        as_of: Timestamp(1_533_686_400),
        created_at: Timestamp(1_700_000_000),
        data_range: None,
        exporter_version: "test".into(),
        id_key_fingerprint: s.id_hash().fingerprint(),
        schema,
        model_id: model.map(|_| String::from("lr-test")),
        lineage: None,
        reference: None,
    };
    let mut customer = Aggregates::ZERO;
    customer.0[..6].copy_from_slice(&[3.0, 30.0, 5.0, 50.0, 7.0, 70.0]);
    let mut terminal = Aggregates::ZERO;
    terminal.0[..6].copy_from_slice(&[10.0, 2.0, 10.0, 2.0, 10.0, 2.0]);
    let tables = vec![vec![(s.id_hash().hash(b"42"), customer)], vec![(s.id_hash().hash(b"7"), terminal)]];
    let p = policy(&s);
    build_snapshot_with(&meta, tables, model, with_policy.then_some(&p), &s).unwrap()
}

fn scorer(bytes: &[u8]) -> Scorer<'_> {
    Scorer::new(Snapshot::load(bytes, &[signer().edge_key()]).unwrap())
}

fn json(scorer: &mut Scorer<'_>, request: &str) -> String {
    let mut out = Vec::new();
    scorer.score_bytes(request.as_bytes(), &mut out);
    String::from_utf8(out).unwrap()
}

const SATURDAY_NIGHT: &str = "2018-08-11 03:00:00";

#[test]
fn scores_a_known_transaction_with_exact_reasons() {
    let model = logistic();
    let bytes = snapshot_bytes(Some(&model), true);
    let mut s = scorer(&bytes);
    let request = r#"{"transaction_id": 9, "customer_id": 42, "terminal_id": "7", "amount": 20, "time": "2018-08-11 03:00:00"}"#;
    let req = s.decode_request(request.as_bytes()).unwrap();
    let outcome = s.score(&req).unwrap();
    let time: Timestamp = SATURDAY_NIGHT.parse().unwrap();
    let mut customer = Aggregates::ZERO;
    customer.0[..6].copy_from_slice(&[3.0, 30.0, 5.0, 50.0, 7.0, 70.0]);
    let mut terminal = Aggregates::ZERO;
    terminal.0[..6].copy_from_slice(&[10.0, 2.0, 10.0, 2.0, 10.0, 2.0]);
    let mut x = [0.0; 15];
    FeatureSchema::handbook().compute(&TxFacts { time, amount: 20.0 }, &[customer, terminal], &mut x);
    assert_eq!(outcome.score.map(f64::to_bits), Some(model.score(&x).to_bits()));
    assert_eq!(outcome.known[..2], [true, true]);
    assert_eq!(outcome.attribution, Attribution::Exact);
    // Terminal risk 0.2 x 3, the night flag x 0.5, then a tie at 0.4 between the customer's day
    // count (4 x 0.1) and the 7-day terminal risk (0.2 x 2): the lower feature index wins.
    let reasons: Vec<(u16, f64)> =
        outcome.reasons.as_slice().iter().map(|r| (r.feature, r.contribution)).collect();
    assert_eq!(reasons, [(10, 3.0 * 0.2), (2, 0.5), (3, 0.1 * 4.0)]);
    assert_eq!(outcome.decision, Policy::new(0.3, 0.8).unwrap().decide(model.score(&x)));
}

#[test]
fn a_ratio_schema_scores_with_the_amount_over_the_customers_mean() {
    // Only the 30-day ratio weighs: 20 over the 30-day mean (70 + 20) / 8.
    let mut weights = vec![0.0; 18];
    weights[17] = 1.5;
    let model = Model::Logistic(Logistic { weights, intercept: -2.0 });
    let bytes = snapshot_bytes_of(FeatureSchema::handbook_ratios(), Some(&model), false);
    let mut s = scorer(&bytes);
    let request = r#"{"transaction_id": 9, "customer_id": 42, "terminal_id": "7", "amount": 20, "time": "2018-08-11 03:00:00"}"#;
    let req = s.decode_request(request.as_bytes()).unwrap();
    let outcome = s.score(&req).unwrap();
    let ratio = 20.0 / ((70.0 + 20.0) / 8.0);
    assert_eq!(outcome.score, Some(1.0 / (1.0 + libm::exp(2.0 - 1.5 * ratio))));
    let reasons: Vec<(u16, f64)> =
        outcome.reasons.as_slice().iter().map(|r| (r.feature, r.contribution)).collect();
    assert_eq!(reasons[0], (17, 1.5 * ratio));
}

#[test]
fn the_json_response_is_the_documented_one() {
    let bytes = snapshot_bytes(Some(&logistic()), true);
    let mut s = scorer(&bytes);
    s.set_top_reasons(1);
    let response = json(
        &mut s,
        r#"{"transaction_id":"t-1","customer_id":"42","terminal_id":7,"amount":20.0,"time":1533956400,"channel":{"x":[1,2]}}"#,
    );
    let expected = concat!(
        r#"{"ok":true,"transaction_id":"t-1","score":0.23791100470404158,"decision":"allow","rules":[],"#,
        r#""reasons":[{"feature":"TERMINAL_ID_RISK_1DAY_WINDOW","value":0.2,"contribution":0.6000000000000001}],"#,
        r#""attribution":"exact","known":{"CUSTOMER_ID":true,"TERMINAL_ID":true},"#,
        r#""snapshot_id":"tg-test","model_id":"lr-test"}"#
    );
    assert_eq!(response, expected);
}

#[test]
fn unknown_entities_score_from_the_cold_start() {
    let model = logistic();
    let bytes = snapshot_bytes(Some(&model), true);
    let mut s = scorer(&bytes);
    let mut req = Request::new(SATURDAY_NIGHT.parse().unwrap(), 20.0);
    req.entity_ids[0] = Id::text("never-seen");
    req.entity_ids[1] = Some(Id::number(false, 7));
    let outcome = s.score(&req).unwrap();
    assert_eq!(outcome.known[..2], [false, true]);
    assert_eq!(s.features()[3..5], [1.0, 20.0], "count 1 and mean = this amount");
}

#[test]
fn numeric_and_text_ids_find_the_same_entity() {
    let bytes = snapshot_bytes(Some(&logistic()), true);
    let mut s = scorer(&bytes);
    let mut base = |customer: &str| {
        let text = alloc::format!(
            r#"{{"customer_id":{customer},"terminal_id":7,"amount":1,"time":"{SATURDAY_NIGHT}"}}"#
        );
        json(&mut s, &text)
    };
    let expected = base("42");
    assert!(expected.contains(r#""CUSTOMER_ID":true"#), "{expected}");
    assert_eq!(base("\"42\""), expected);
    assert_eq!(base("42.0"), expected);
    assert_eq!(base("4.2e1"), expected);
    assert_eq!(base("\"\\u0034\\u0032\""), expected);
    assert!(base("\"042\"").contains(r#""CUSTOMER_ID":false"#));
    assert!(base("-0").contains(r#""CUSTOMER_ID":false"#));
}

#[test]
fn hard_rules_decline_before_the_model_with_their_codes() {
    let bytes = snapshot_bytes(Some(&logistic()), true);
    let mut s = scorer(&bytes);
    let r = json(&mut s, r#"{"customer_id":1,"terminal_id":666,"amount":5000.01,"time":0}"#);
    assert!(r.starts_with(r#"{"ok":true,"transaction_id":null,"score":null,"decision":"decline","rules":["AMOUNT_CAP","BLOCKED_TERMINAL"],"reasons":[],"attribution":"none""#), "{r}");
    let r = json(&mut s, r#"{"customer_id":1,"terminal_id":666,"amount":5000,"time":0}"#);
    assert!(r.contains(r#""rules":["BLOCKED_TERMINAL"]"#), "{r}");
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let bytes = snapshot_bytes(Some(&logistic()), true);
    let mut s = scorer(&bytes);
    let cases = [
        (
            r#"{"customer_id":1,"terminal_id":2,"amount":-1,"time":0}"#,
            "amount: must be a finite number >= 0",
            "amount",
        ),
        (
            r#"{"customer_id":1,"terminal_id":2,"amount":"12","time":0}"#,
            "amount: must be a finite number >= 0",
            "amount",
        ),
        (r#"{"customer_id":1,"amount":1,"time":0}"#, "terminal_id: is missing", "terminal_id"),
        (
            r#"{"customer_id":1,"CUSTOMER_ID":1,"terminal_id":2,"amount":1,"time":0}"#,
            "customer_id: is given twice",
            "customer_id",
        ),
        (
            r#"{"customer_id":true,"terminal_id":2,"amount":1,"time":0}"#,
            "customer_id: must be text or a whole number",
            "customer_id",
        ),
        (
            r#"{"customer_id":1.5,"terminal_id":2,"amount":1,"time":0}"#,
            "customer_id: must be text or a whole number",
            "customer_id",
        ),
        (
            r#"{"customer_id":"","terminal_id":2,"amount":1,"time":0}"#,
            "customer_id: must be 1 to 128 bytes of UTF-8 text",
            "customer_id",
        ),
        (
            r#"{"customer_id":1e300,"terminal_id":2,"amount":1,"time":0}"#,
            "customer_id: is a number too large to be an exact id; send it as text",
            "customer_id",
        ),
        (
            r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":"2018-02-30 00:00:00"}"#,
            "time: is out of range (years 0000 to 9999, valid dates)",
            "time",
        ),
        (
            r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":"yesterday"}"#,
            "time: must be whole Unix seconds or text YYYY-MM-DD HH:MM:SS",
            "time",
        ),
        (
            r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":1e300}"#,
            "time: is out of range (years 0000 to 9999, valid dates)",
            "time",
        ),
        (r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":0"#, "request: is not valid JSON", ""),
        (
            r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":0} x"#,
            "request: has bytes after its end",
            "",
        ),
        ("[1]", "request: must be a map (a JSON object)", ""),
    ];
    for (request, message, field) in cases {
        let r = json(&mut s, request);
        let field = if field.is_empty() { "null".to_string() } else { alloc::format!("\"{field}\"") };
        let expected = alloc::format!(
            r#"{{"ok":false,"error":"{message}","error_kind":"bad_request","field":{field},"snapshot_id":"tg-test"}}"#
        );
        assert_eq!(r, expected, "{request}");
    }
    let mut out = Vec::new();
    s.score_bytes(&[0x81, 0xa1], &mut out);
    assert!(out.windows(24).any(|w| w == b"is not valid MessagePack"));
}

#[test]
fn a_snapshot_without_a_model_says_so_and_without_a_policy_uses_the_default() {
    let bytes = snapshot_bytes(None, false);
    let mut s = scorer(&bytes);
    let r = json(&mut s, r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":0}"#);
    assert!(r.contains(r#""error_kind":"no_model""#), "{r}");
    let bytes = snapshot_bytes(Some(&logistic()), false);
    assert_eq!(scorer(&bytes).policy(), &Policy::DEFAULT);
}

#[test]
fn trees_score_without_attribution() {
    let leaf = |value| Node { feature: u16::MAX, default_left: false, value, left: 0, right: 0 };
    let trees = Model::Trees(TreeEnsemble::stump(15, 100.0, true, leaf(-1.0), leaf(1.0)));
    let bytes = snapshot_bytes(Some(&trees), true);
    let mut s = scorer(&bytes);
    let r = json(&mut s, r#"{"customer_id":1,"terminal_id":2,"amount":150,"time":0}"#);
    let expected = alloc::format!(r#""score":{:?},"#, crate::model::sigmoid(1.0));
    assert!(r.contains(&expected) && r.contains(r#""reasons":[],"attribution":"none""#), "{r}");
}

#[test]
fn trees_with_leaf_covers_give_path_reasons_by_default_and_treeshap_on_request() {
    // amount < 100 ? -1 (90 rows) : +1 (10 rows): E = -0.8, so amount 150 contributes 1.8.
    let trees =
        Model::Trees(TreeEnsemble::stump(15, 100.0, true, Node::leaf(-1.0, 90.0), Node::leaf(1.0, 10.0)));
    let bytes = snapshot_bytes(Some(&trees), true);
    let mut s = scorer(&bytes);
    let request = r#"{"customer_id":1,"terminal_id":2,"amount":150,"time":0}"#;
    let r = json(&mut s, request);
    let reason = r#""reasons":[{"feature":"TX_AMOUNT","value":150.0,"contribution":1.8}]"#;
    assert!(r.contains(reason) && r.contains(r#""attribution":"path""#), "{r}");
    s.set_tree_attribution(TreeAttribution::Shap);
    let r = json(&mut s, request);
    assert!(r.contains(reason) && r.contains(r#""attribution":"treeshap""#), "{r}");
    s.set_top_reasons(0);
    let r = json(&mut s, request);
    assert!(r.contains(r#""reasons":[],"attribution":"none""#), "{r}");
}

#[test]
fn batches_answer_in_order_and_refuse_broken_arrays_whole() {
    let bytes = snapshot_bytes(Some(&logistic()), true);
    let mut s = scorer(&bytes);
    let one = r#"{"transaction_id":1,"customer_id":42,"terminal_id":7,"amount":1,"time":0}"#;
    let bad = r#"{"transaction_id":2,"customer_id":42}"#;
    let mut batch = Vec::new();
    s.score_batch_bytes(alloc::format!("[{one}, {bad} ,{one}]").as_bytes(), &mut batch);
    let mut singles = b"[".to_vec();
    for (i, r) in [one, bad, one].iter().enumerate() {
        if i > 0 {
            singles.push(b',');
        }
        s.score_bytes(r.as_bytes(), &mut singles);
    }
    singles.push(b']');
    assert_eq!(String::from_utf8(batch).unwrap(), String::from_utf8(singles).unwrap());
    for broken in ["[", "[1,]", "[,1]", "{}", "[1] 2"] {
        let mut out = Vec::new();
        s.score_batch_bytes(broken.as_bytes(), &mut out);
        assert!(out.starts_with(br#"{"ok":false,"error":"batch: "#), "{broken}");
    }
    let mut out = Vec::new();
    s.score_batch_bytes(b"[]", &mut out);
    assert_eq!(out, b"[]");
}

/// `{"customer_id": 42, "terminal_id": "7", "amount": 20.5 (f64), "time": 1533956400 (u32)}` in
/// MessagePack.
fn msgpack_request() -> Vec<u8> {
    let mut req = vec![0x84, 0xab];
    req.extend_from_slice(b"customer_id");
    req.push(42);
    req.push(0xab);
    req.extend_from_slice(b"terminal_id\xa17");
    req.push(0xa6);
    req.extend_from_slice(b"amount\xcb");
    req.extend_from_slice(&20.5f64.to_bits().to_be_bytes());
    req.push(0xa4);
    req.extend_from_slice(b"time\xce");
    req.extend_from_slice(&1_533_956_400u32.to_be_bytes());
    req
}

/// A batch answered the way it was before batches were read in one pass: the whole array
/// checked first ([`request::split_batch`]), then each item decoded and answered on its own.
fn batch_answered_item_by_item(s: &mut Scorer<'_>, input: &[u8]) -> Vec<u8> {
    let format = Format::sniff(input);
    let mut out = Vec::new();
    response::with_sink(format, &mut out, |sink| match request::split_batch(input, format) {
        Ok(items) => {
            sink.array(items.len() as u32);
            for (start, end) in items {
                s.respond(&input[start..end], format, sink);
            }
            sink.end_array();
        }
        Err(problem) => {
            let e = ScoreError::Request(RequestError { field: Field::Batch, problem, format });
            response::write_error(sink, &e, Some(s.snapshot.meta()));
        }
    });
    out
}

#[test]
fn msgpack_requests_get_the_same_answers_as_json() {
    let bytes = snapshot_bytes(Some(&logistic()), true);
    let mut s = scorer(&bytes);
    let req = msgpack_request();
    let from_msgpack = s.score(&s.decode_request(&req).unwrap()).unwrap();
    let from_json = s
        .score(
            &s.decode_request(br#"{"customer_id":42,"terminal_id":"7","amount":20.5,"time":1533956400}"#)
                .unwrap(),
        )
        .unwrap();
    assert_eq!(from_msgpack, from_json);
    let mut out = Vec::new();
    s.score_bytes(&req, &mut out);
    assert_eq!(out[0], 0x8a, "a map of 10 entries");
}

#[test]
fn top_reasons_keep_the_largest_positive_contributions_in_order() {
    let mut r = Reasons::EMPTY;
    for (i, c) in [0.5, -1.0, 2.0, 0.5, 3.0, 0.0, 1.0].into_iter().enumerate() {
        r.offer(Reason { feature: i as u16, value: 1.0, contribution: c }, 3);
    }
    let got: Vec<u16> = r.as_slice().iter().map(|r| r.feature).collect();
    assert_eq!(got, [4, 2, 6]);
    let mut r = Reasons::EMPTY;
    r.offer(Reason { feature: 0, value: 1.0, contribution: 1.0 }, 0);
    assert!(r.as_slice().is_empty());
}

/// The text a JSON string literal written by `JsonWriter` stands for (it writes only `\\"`,
/// `\\\\` and `\\u00XX` escapes); the scorer's own reader must accept the literal too.
fn wire_text_back(literal: &str) -> String {
    let mut reader = wire::JsonReader::new(literal.as_bytes()).unwrap();
    assert!(matches!(wire::Reader::value(&mut reader), Ok(wire::Scalar::Str { .. })), "{literal}");
    let inner = &literal[1..literal.len() - 1];
    let (mut out, mut chars) = (String::new(), inner.chars());
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, false) => out.push(c),
            (_, true) => match chars.next() {
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                }
                Some(e) => out.push(e),
                None => panic!("dangling escape in {literal}"),
            },
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn the_first_special_byte_is_found_eight_at_a_time_as_one_at_a_time(
        s in proptest::collection::vec(prop_oneof![1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x21, 20 => 0x21u8..=0xff, 1 => Just(0x80u8), 1 => Just(0xdcu8)], 0..40),
    ) {
        let naive = s.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\');
        prop_assert_eq!(wire::first_special(&s), naive);
    }

    #[test]
    fn json_numbers_are_ryus_text_whole_numbers_included(
        bits in any::<u64>(),
        whole in -2_000_000_000_000_000i64..2_000_000_000_000_000,
        small in -100_000i64..100_000,
    ) {
        for v in [f64::from_bits(bits), whole as f64, small as f64, -(small as f64), 0.0, -0.0, 1e15, 1e15 - 1.0, 999_999_999_999_999.9] {
            let mut out = Vec::new();
            wire::Sink::f64(&mut wire::JsonWriter::new(&mut out), v);
            let expected = if v.is_finite() { ryu::Buffer::new().format_finite(v).to_string() } else { "null".to_string() };
            prop_assert_eq!(String::from_utf8(out).unwrap(), expected, "{:?}", v);
        }
    }

    #[test]
    fn json_text_is_escaped_exactly_where_json_needs_it(s in "\\PC*|[\\x00-\\x7f]{0,40}") {
        let mut out = Vec::new();
        wire::Sink::str(&mut wire::JsonWriter::new(&mut out), s.as_bytes());
        let text = String::from_utf8(out).unwrap();
        let back: String = wire_text_back(&text);
        prop_assert_eq!(back, s);
        prop_assert!(!text[1..text.len() - 1].bytes().any(|c| c < 0x20), "{}", text);
    }

    #[test]
    fn arbitrary_bytes_get_a_response_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let snapshot = snapshot_bytes(Some(&logistic()), true);
        let mut s = scorer(&snapshot);
        let mut out = Vec::new();
        s.score_bytes(&bytes, &mut out);
        prop_assert!(!out.is_empty());
        out.clear();
        s.score_batch_bytes(&bytes, &mut out);
        prop_assert!(!out.is_empty());
    }

    #[test]
    fn batches_read_in_one_pass_answer_as_item_by_item(
        json in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let snapshot = snapshot_bytes(Some(&logistic()), true);
        let mut s = scorer(&snapshot);
        s.set_record_features(true);
        let mut bytes = if json {
            // Scored, a field error part way through the map, a skipped nested value, not a map.
            br#"[{"customer_id":42,"terminal_id":"7","amount":20.5,"time":1533956400},
                {"customer_id":42,"amount":-1,"terminal_id":[1,{"a":"\""}],"time":0}, 7,
                {"x":[[{}]],"customer_id":"a\u00e9","terminal_id":7,"amount":1.5e1,"time":"2018-08-11 03:00:00"}]"#
                .to_vec()
        } else {
            let mut b = vec![0x93];
            b.extend_from_slice(&msgpack_request());
            b.push(0x07);
            b.extend_from_slice(&msgpack_request());
            b
        };
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let expected = batch_answered_item_by_item(&mut s, &bytes);
        let mut out = Vec::new();
        s.score_batch_bytes(&bytes, &mut out);
        prop_assert_eq!(out, expected);
        if !s.recorded_features().is_empty() {
            let width = s.features().len() + 1;
            prop_assert_eq!(s.recorded_features().len() % width, 0);
        }
    }

    #[test]
    fn damaged_requests_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let snapshot = snapshot_bytes(Some(&logistic()), true);
        let mut s = scorer(&snapshot);
        let mut bytes = br#"[{"transaction_id":"a\u00e9","customer_id":42,"terminal_id":7,"amount":1.5e1,"time":"2018-08-11 03:00:00","x":[{"y":null}]}]"#.to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let mut out = Vec::new();
        s.score_batch_bytes(&bytes, &mut out);
        s.score_bytes(bytes.get(1..).unwrap_or_default(), &mut out);
        prop_assert!(!out.is_empty());
    }
}

#[test]
fn recorded_features_hold_each_requests_features_and_score_and_nan_when_the_model_did_not_run() {
    let model = logistic();
    let bytes = snapshot_bytes(Some(&model), true);
    let mut s = scorer(&bytes);
    let known = r#"{"customer_id":42,"terminal_id":"7","amount":20,"time":"2018-08-11 03:00:00"}"#;
    json(&mut s, known);
    assert!(s.recorded_features().is_empty(), "off by default");
    s.set_record_features(true);
    let one = json(&mut s, known);
    let rows = s.recorded_features().to_vec();
    assert_eq!(rows.len(), 16);
    assert_eq!(&rows[..15], s.features());
    let score: f64 =
        one.split(r#""score":"#).nth(1).and_then(|t| t.split(',').next()).unwrap().parse().unwrap();
    assert_eq!(rows[15].to_bits(), score.to_bits());
    // A batch: a scored request, one a hard rule declines, one with a bad amount.
    let blocked = r#"{"customer_id":1,"terminal_id":666,"amount":5,"time":0}"#;
    let bad = r#"{"customer_id":1,"terminal_id":2,"amount":-1,"time":0}"#;
    let mut out = Vec::new();
    s.score_batch_bytes(alloc::format!("[{known},{blocked},{bad}]").as_bytes(), &mut out);
    let batch = s.recorded_features();
    assert_eq!(batch.len(), 3 * 16);
    assert_eq!(&batch[..16], rows.as_slice(), "the same request, the same row");
    assert!(batch[16..].iter().all(|v| v.is_nan()), "{:?}", &batch[16..]);
    // Each call starts afresh.
    json(&mut s, bad);
    assert!(s.recorded_features().len() == 16 && s.recorded_features().iter().all(|v| v.is_nan()));
}
