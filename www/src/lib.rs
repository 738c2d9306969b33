//! The browser demo page's bindings: wasm-bindgen over [`scorer`], so that the page scores in the
//! browser with the very code the edge runs. One type, [`Edge`]: it holds the trusted edge keys and
//! the loaded snapshot, answers JSON requests with exactly the bytes of
//! [`Scorer::score_bytes`](scorer::score::Scorer::score_bytes), and explains a request (the
//! entities' snapshot rows, every feature and its contribution) for display.
//!
//! Nothing here panics on input: refused keys and snapshots are thrown as `Error`s whose message
//! says in plain words what was wrong; bad requests are error responses, as in every runtime.

use scorer::Timestamp;
use scorer::features::{Aggregate, Aggregates, TxFacts, Window};
use scorer::model::Model;
use scorer::score::{MAX_ID_LEN, ScoreError, Scorer, error_response};
use scorer::snapshot::{EdgeKey, MAX_EDGE_KEYS, Snapshot, SnapshotError, edge_keys_from_text};
use serde::Serialize;
use wasm_bindgen::prelude::*;

self_cell::self_cell!(
    /// A verified snapshot and the scorer borrowing it: the page owns the bytes.
    struct Loaded {
        owner: Vec<u8>,
        #[covariant]
        dependent: Scorer,
    }
);

/// A scorer as the page holds it: trusted edge keys, the loaded snapshot (if any) and a response
/// buffer reused across calls.
#[wasm_bindgen]
pub struct Edge {
    keys: Vec<EdgeKey>,
    loaded: Option<Loaded>,
    reasons: usize,
    out: Vec<u8>,
}

#[wasm_bindgen]
impl Edge {
    /// An edge trusting the edge key file(s) `edge_keys` (one or more `tollgate keys` edge key
    /// files, concatenated), with no snapshot yet.
    #[wasm_bindgen(constructor)]
    pub fn new(edge_keys: &str) -> Result<Edge, JsError> {
        let keys = parse_edge_keys(edge_keys).map_err(|e| JsError::new(&e))?;
        Ok(Edge { keys, loaded: None, reasons: scorer::score::DEFAULT_REASONS, out: Vec::new() })
    }

    /// Adds the edge key file(s) in `text` to the trusted keys (a user's own key, dropped next to
    /// their snapshot). Keys already trusted stay trusted.
    #[wasm_bindgen(js_name = trustEdgeKeys)]
    pub fn trust_edge_keys(&mut self, text: &str) -> Result<(), JsError> {
        let new = parse_edge_keys(text).map_err(|e| JsError::new(&e))?;
        for key in new {
            if !self.keys.iter().any(|k| k.key_id() == key.key_id()) {
                if self.keys.len() == MAX_EDGE_KEYS {
                    return Err(JsError::new(&format!(
                        "edge keys: at most {MAX_EDGE_KEYS} keys can be trusted at once"
                    )));
                }
                self.keys.push(key);
            }
        }
        Ok(())
    }

    /// Verifies and loads a snapshot, replacing the one loaded; returns its description (the JSON
    /// of [`SnapshotInfo`]). A refused snapshot throws, in plain words, and the previous one keeps
    /// serving.
    #[wasm_bindgen(js_name = loadSnapshot)]
    pub fn load_snapshot(&mut self, bytes: Vec<u8>) -> Result<String, JsError> {
        if self.keys.is_empty() {
            return Err(JsError::new("no trusted edge key: give the page an edge key file first"));
        }
        let keys = &self.keys;
        let mut loaded = Loaded::try_new(bytes, |b| Snapshot::load(b, keys).map(Scorer::new))
            .map_err(|e| JsError::new(&plain_words(&e)))?;
        let reasons = self.reasons;
        loaded.with_dependent_mut(|_, s| s.set_top_reasons(reasons));
        let info = info_json(loaded.borrow_dependent());
        self.loaded = Some(loaded);
        Ok(info)
    }

    /// The loaded snapshot's description (the JSON of [`SnapshotInfo`]), or `undefined`.
    pub fn info(&self) -> Option<String> {
        self.loaded.as_ref().map(|l| info_json(l.borrow_dependent()))
    }

    /// How many reasons responses carry, 0 to 8 (default 3).
    #[wasm_bindgen(js_name = setReasons)]
    pub fn set_reasons(&mut self, n: usize) {
        self.reasons = n.min(scorer::score::MAX_REASONS);
        let reasons = self.reasons;
        if let Some(l) = self.loaded.as_mut() {
            l.with_dependent_mut(|_, s| s.set_top_reasons(reasons));
        }
    }

    /// Scores one JSON request; the JSON response is byte for byte the native scorer's (errors
    /// are responses too; `no_snapshot` before a snapshot is loaded).
    pub fn score(&mut self, request: &str) -> String {
        self.respond(request.as_bytes(), false);
        text(&self.out)
    }

    /// Scores a JSON array of requests; a JSON array of responses in the same order.
    #[wasm_bindgen(js_name = scoreBatch)]
    pub fn score_batch(&mut self, requests: &str) -> String {
        self.respond(requests.as_bytes(), true);
        text(&self.out)
    }

    /// Scores one request given as bytes (MessagePack or JSON); the response in the same format.
    #[wasm_bindgen(js_name = scoreBytes)]
    pub fn score_bytes(&mut self, request: &[u8]) -> Vec<u8> {
        self.respond(request, false);
        self.out.clone()
    }

    /// Why a JSON request scores as it does: each entity's snapshot row (known or cold start), and
    /// every feature's value and contribution to the margin (the JSON of [`Explanation`]).
    pub fn explain(&self, request: &str) -> Result<String, JsError> {
        let loaded = self.loaded.as_ref().ok_or_else(|| JsError::new(&ScoreError::NoSnapshot.to_string()))?;
        explain(loaded.borrow_dependent(), request.as_bytes()).map_err(|e| JsError::new(&e))
    }
}

impl Edge {
    fn respond(&mut self, input: &[u8], batch: bool) {
        self.out.clear();
        let out = &mut self.out;
        match self.loaded.as_mut() {
            Some(l) => l.with_dependent_mut(|_, s| {
                if batch { s.score_batch_bytes(input, out) } else { s.score_bytes(input, out) }
            }),
            None => error_response(input, &ScoreError::NoSnapshot, out),
        }
    }
}

/// A JSON response as text. JSON requests get UTF-8 responses; anything else (bytes the sniffer
/// took for MessagePack) is shown with replacement characters rather than thrown.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses one or more concatenated edge key files.
fn parse_edge_keys(text: &str) -> Result<Vec<EdgeKey>, String> {
    edge_keys_from_text(text).map_err(|e| format!("edge keys: {e}"))
}

/// A refused snapshot, in plain words first, then the scorer's exact reason.
fn plain_words(e: &SnapshotError) -> String {
    let hint = match e {
        SnapshotError::NotASnapshot => "This file is not a tollgate snapshot.",
        SnapshotError::Truncated { .. } | SnapshotError::LengthMismatch { .. } => {
            "This snapshot is incomplete: the file was cut short or has extra bytes."
        }
        SnapshotError::UnsupportedVersion { .. } => {
            "This snapshot was written by a newer tollgate than this page."
        }
        SnapshotError::UnknownSigner { .. } => {
            "This snapshot was signed by a key the page does not trust. Drop its edge key file together with it."
        }
        SnapshotError::BadSignature | SnapshotError::SectionDigest { .. } => {
            "This snapshot has been altered or damaged since it was signed, so the page refuses it."
        }
        SnapshotError::IdHashKeyMismatch => {
            "This snapshot's customer and terminal ids were hashed with another key than the trusted edge key's."
        }
        _ => "This snapshot is malformed, so the page refuses it.",
    };
    format!("{hint} ({e}.) The previous snapshot is still in use.")
}

/// What the page shows about a loaded snapshot.
#[derive(Serialize)]
pub struct SnapshotInfo {
    /// The snapshot's id.
    snapshot_id: String,
    /// Aggregates hold every transaction before this time (`YYYY-MM-DD HH:MM:SS`).
    as_of: String,
    /// When the exporter built it.
    created_at: String,
    /// First and last transaction folded in.
    data_range: Option<(String, String)>,
    /// The exporter's version.
    exporter_version: String,
    /// The model's id and family (`logistic`, `gbdt`, ...), when the snapshot carries one.
    model: Option<(String, &'static str)>,
    /// Entity kinds (id columns) and their rows.
    entities: Vec<(String, usize)>,
    /// Feature names, in model input order.
    features: Vec<String>,
    /// Review and decline thresholds of the policy.
    review_at: f64,
    /// Decline threshold.
    decline_at: f64,
    /// Hard rules: an amount cap (if any) and the number of block lists.
    amount_cap: Option<f64>,
    /// Number of block lists.
    block_lists: usize,
    /// Size of the snapshot in bytes.
    bytes: usize,
}

fn info_json(s: &Scorer<'_>) -> String {
    let snap = s.snapshot();
    let meta = snap.meta();
    let schema = snap.schema();
    let info = SnapshotInfo {
        snapshot_id: meta.snapshot_id.clone(),
        as_of: meta.as_of.to_string(),
        created_at: meta.created_at.to_string(),
        data_range: meta.data_range.map(|(a, b)| (a.to_string(), b.to_string())),
        exporter_version: meta.exporter_version.clone(),
        model: snap.model().map(|m| (meta.model_id.clone().unwrap_or_default(), m.family())),
        entities: schema
            .entities()
            .iter()
            .enumerate()
            .map(|(e, def)| (def.name.clone(), snap.table(e).map_or(0, |t| t.len())))
            .collect(),
        features: schema.features().iter().map(|f| f.name.clone()).collect(),
        review_at: s.policy().review_at(),
        decline_at: s.policy().decline_at(),
        amount_cap: s.policy().amount_cap().map(|c| c.max),
        block_lists: s.policy().block_lists().len(),
        bytes: snap.size(),
    };
    serde_json::to_string(&info).unwrap_or_default()
}

/// Why a request scores as it does.
#[derive(Serialize)]
pub struct Explanation {
    /// Each entity's snapshot row.
    entities: Vec<EntityRow>,
    /// Every feature, in model input order.
    features: Vec<FeatureValue>,
    /// The logistic model's intercept (`null` for other families).
    intercept: Option<f64>,
}

/// One entity's row in the snapshot, as aggregates over windows.
#[derive(Serialize)]
pub struct EntityRow {
    /// The id column, e.g. `CUSTOMER_ID`.
    kind: String,
    /// Whether the snapshot has a row (else the cold start: all zeros).
    known: bool,
    /// The aggregates, labelled.
    aggregates: Vec<(String, f64)>,
}

/// One feature of the request.
#[derive(Serialize)]
pub struct FeatureValue {
    /// Its name.
    name: String,
    /// What it is.
    doc: String,
    /// Its value for this request.
    value: f64,
    /// `w_i * x_i` for a logistic model, else `null`.
    contribution: Option<f64>,
}

fn explain(s: &Scorer<'_>, input: &[u8]) -> Result<String, String> {
    let snap = s.snapshot();
    let schema = snap.schema();
    let req =
        s.decode_request(input).map_err(|e| ScoreError::Request(e).describe(Some(schema)).to_string())?;
    let n = schema.entities().len();
    let mut rows = vec![Aggregates::ZERO; n];
    let mut entities = Vec::with_capacity(n);
    for (e, def) in schema.entities().iter().enumerate() {
        let id = req
            .entity_ids
            .get(e)
            .copied()
            .flatten()
            .ok_or_else(|| format!("{}: is missing", def.name.to_ascii_lowercase()))?;
        let mut buf = [0u8; MAX_ID_LEN];
        let key = snap.id_hash().hash(id.canonical(&mut buf));
        // The page loads whole files: every part is there.
        let row = snap.table(e).and_then(|t| t.lookup(key).ok().flatten());
        if let Some(r) = row {
            rows[e] = r;
        }
        let aggregates = def
            .layout
            .slots
            .iter()
            .zip(rows[e].0.iter())
            .map(|(slot, v)| (slot_label(slot.aggregate, slot.window), *v))
            .collect();
        entities.push(EntityRow { kind: def.name.clone(), known: row.is_some(), aggregates });
    }
    let mut values = vec![0.0; schema.len()];
    let amount = req.amount + 0.0;
    if amount.is_finite() && amount >= 0.0 {
        schema.compute(&TxFacts { time: req.time, amount }, &rows, &mut values);
    }
    let (weights, intercept) = match snap.model() {
        Some(Model::Logistic(m)) => (Some(&m.weights), Some(m.intercept)),
        _ => (None, None),
    };
    let features = schema
        .features()
        .iter()
        .zip(&values)
        .enumerate()
        .map(|(i, (f, &value))| FeatureValue {
            name: f.name.clone(),
            doc: f.doc.clone(),
            value,
            contribution: weights.and_then(|w| w.get(i)).map(|w| w * value),
        })
        .collect();
    serde_json::to_string(&Explanation { entities, features, intercept }).map_err(|e| e.to_string())
}

/// `transactions, last 7 days` / `frauds, 7 days ending 7 days before`.
fn slot_label(aggregate: Aggregate, window: Window) -> String {
    let what = match aggregate {
        Aggregate::Count => "transactions",
        Aggregate::AmountSum => "amount spent",
        Aggregate::FraudCount => "known frauds",
    };
    let days = if window.days == 1 { "day".to_string() } else { format!("{} days", window.days) };
    if window.delay_days == 0 {
        format!("{what}, last {days}")
    } else {
        format!("{what}, {days} ending {} days before", window.delay_days)
    }
}

/// Unix seconds of `text` (`YYYY-MM-DD HH:MM:SS`), for the page's time field; `undefined` when
/// the text is not a valid time.
#[wasm_bindgen(js_name = parseTime)]
pub fn parse_time(text: &str) -> Option<f64> {
    text.trim().parse::<Timestamp>().ok().map(|t| t.0 as f64)
}
