//! The whole request path: a [`Request`] (ids, amount, time) → entity lookups (unknown entities
//! get the all-zero cold start) → features → model → hard rules and thresholds → an [`Outcome`]
//! with reasons. [`Scorer`] owns a loaded snapshot and its scratch space, so scoring does not
//! allocate; `score_bytes` is the wire path (MessagePack or JSON in, the same format out) that
//! `scorer.wasm` exports and native hosts call to get the very same bytes.

mod decimal;
mod request;
mod response;
pub(crate) mod wire;

pub use wire::{Format, MAX_DEPTH};

use crate::Timestamp;
use crate::features::{Aggregates, FeatureSchema, MAX_ENTITIES, TxFacts};
use crate::model::{CompiledTrees, Model, PathTable, TreeExplainer};
use crate::policy::{Decision, Policy, RuleHits};
use crate::snapshot::{EntityKey, PartMissing, Snapshot, SnapshotError};
use alloc::vec::Vec;
use core::fmt;

/// Longest entity or transaction id, in bytes (numbers count as their decimal text).
pub const MAX_ID_LEN: usize = 128;
/// Most reasons a response can carry.
pub const MAX_REASONS: usize = 8;
/// Reasons per response unless [`Scorer::set_top_reasons`] says otherwise.
pub const DEFAULT_REASONS: usize = 3;
/// The policy of snapshots without one (a `static`, so that it can be borrowed).
static DEFAULT_POLICY: Policy = Policy::DEFAULT;

/// Earliest time a request may carry: 0000-01-01 00:00:00 UTC.
pub const MIN_TIME: Timestamp = Timestamp(-62_167_219_200);
/// Latest time a request may carry: 9999-12-31 23:59:59 UTC.
pub const MAX_TIME: Timestamp = Timestamp(253_402_300_799);

/// An entity or transaction id, borrowed from the request: UTF-8 text of 1 to [`MAX_ID_LEN`]
/// bytes, or a whole number. Numbers are hashed as their canonical decimal text, so `42`, `42.0`
/// and `"42"` find the same entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id<'a>(IdRepr<'a>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdRepr<'a> {
    Text(&'a str),
    Number { neg: bool, abs: u64 },
    // JSON string contents with escapes still in, checked to decode to valid id text.
    Escaped(&'a [u8]),
}

impl<'a> Id<'a> {
    /// A text id; `None` when empty or longer than [`MAX_ID_LEN`] bytes.
    pub fn text(text: &'a str) -> Option<Id<'a>> {
        (1..=MAX_ID_LEN).contains(&text.len()).then_some(Id(IdRepr::Text(text)))
    }

    /// A numeric id of sign `neg` and magnitude `abs` (`-0` is `0`).
    pub fn number(neg: bool, abs: u64) -> Id<'a> {
        Id(IdRepr::Number { neg: neg && abs != 0, abs })
    }

    /// JSON string contents holding escapes; `None` unless they decode to valid id text.
    fn escaped(raw: &'a [u8]) -> Option<Id<'a>> {
        let mut buf = [0u8; MAX_ID_LEN];
        let len = wire::unescape(raw, &mut buf)?;
        let text = core::str::from_utf8(&buf[..len]).ok()?;
        Id::text(text).map(|_| Id(IdRepr::Escaped(raw)))
    }

    /// The bytes that are hashed (the text, or the number's decimal text), written into `buf`.
    pub fn canonical<'b>(&self, buf: &'b mut [u8; MAX_ID_LEN]) -> &'b [u8] {
        let len = match self.0 {
            IdRepr::Text(text) => {
                buf[..text.len()].copy_from_slice(text.as_bytes());
                text.len()
            }
            IdRepr::Number { neg, abs } => {
                let mut digits = [0u8; 21];
                let mut at = digits.len();
                let mut v = abs;
                loop {
                    at -= 1;
                    digits[at] = b'0' + (v % 10) as u8;
                    v /= 10;
                    if v == 0 {
                        break;
                    }
                }
                if neg {
                    at -= 1;
                    digits[at] = b'-';
                }
                let len = digits.len() - at;
                buf[..len].copy_from_slice(&digits[at..]);
                len
            }
            // Checked on construction to fit; an impossible failure hashes as the empty id.
            IdRepr::Escaped(raw) => wire::unescape(raw, buf).unwrap_or(0),
        };
        &buf[..len]
    }

    /// True when the id was given as a number.
    pub fn is_number(&self) -> bool {
        matches!(self.0, IdRepr::Number { .. })
    }

    /// The number as sign and magnitude, when the id was given as one.
    fn as_number(&self) -> Option<(bool, u64)> {
        match self.0 {
            IdRepr::Number { neg, abs } => Some((neg, abs)),
            _ => None,
        }
    }
}

/// One transaction to score, borrowing its ids from the request bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request<'a> {
    /// The caller's id of the transaction, echoed in the response (optional).
    pub transaction_id: Option<Id<'a>>,
    /// The id of each entity kind, in schema order (customer, terminal, ...); all required.
    pub entity_ids: [Option<Id<'a>>; MAX_ENTITIES],
    /// The amount: finite and >= 0.
    pub amount: f64,
    /// When it happens.
    pub time: Timestamp,
}

impl<'a> Request<'a> {
    /// A request with no ids yet.
    pub fn new(time: Timestamp, amount: f64) -> Request<'a> {
        Request { transaction_id: None, entity_ids: [None; MAX_ENTITIES], amount, time }
    }
}

/// Decodes one score request (MessagePack, or JSON when it starts with `{`) against `schema`:
/// the reader the wire path uses, for callers that need the transaction without scoring it.
pub fn decode_request<'i>(input: &'i [u8], schema: &FeatureSchema) -> Result<Request<'i>, RequestError> {
    request::decode(input, schema)
}

/// The part of a request an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The request as a whole (its encoding, its shape).
    Request,
    /// A batch as a whole.
    Batch,
    /// `transaction_id`.
    TransactionId,
    /// The id of entity kind `i` (schema order), named after the schema's id column in lower case.
    Entity(u8),
    /// `amount`.
    Amount,
    /// `time`.
    Time,
}

/// What is wrong with a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The bytes are not valid MessagePack or JSON.
    Malformed,
    /// The request is not a map.
    NotAMap,
    /// The batch is not an array.
    NotAnArray,
    /// Bytes follow the request.
    TrailingBytes,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A required field is absent.
    Missing,
    /// A field is given twice.
    Repeated,
    /// An id that is neither text nor a whole number.
    NotAnId,
    /// An id text that is empty, too long or not UTF-8.
    BadIdText,
    /// A numeric id beyond what numbers carry exactly.
    IdTooLarge,
    /// An amount that is not a finite number >= 0.
    NotAnAmount,
    /// A time that is neither whole Unix seconds nor date-time text.
    NotATime,
    /// A time outside years 0000 to 9999 or with a field out of range.
    TimeOutOfRange,
    /// The bytes lie outside the memory they should be in (a bad pointer or length from a host).
    OutOfBounds,
}

impl Problem {
    fn text(self, format: Format) -> &'static str {
        match self {
            Problem::Malformed => match format {
                Format::MsgPack => "is not valid MessagePack",
                Format::Json => "is not valid JSON",
            },
            Problem::NotAMap => "must be a map (a JSON object)",
            Problem::NotAnArray => "must be an array",
            Problem::TrailingBytes => "has bytes after its end",
            Problem::TooDeep => "is nested more than 32 levels deep",
            Problem::Missing => "is missing",
            Problem::Repeated => "is given twice",
            Problem::NotAnId => "must be text or a whole number",
            Problem::BadIdText => "must be 1 to 128 bytes of UTF-8 text",
            Problem::IdTooLarge => "is a number too large to be an exact id; send it as text",
            Problem::NotAnAmount => "must be a finite number >= 0",
            Problem::NotATime => "must be whole Unix seconds or text YYYY-MM-DD HH:MM:SS",
            Problem::TimeOutOfRange => "is out of range (years 0000 to 9999, valid dates)",
            Problem::OutOfBounds => "lies outside the module's memory (bad pointer or length)",
        }
    }
}

/// A request that cannot be scored: which field, what is wrong, in which format it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The field.
    pub field: Field,
    /// The problem.
    pub problem: Problem,
    /// The request's format.
    pub format: Format,
}

/// Why no score was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreError {
    /// The request is invalid.
    Request(RequestError),
    /// The snapshot has no model (it serves features only).
    NoModel,
    /// No snapshot is loaded (raised by hosts and `scorer.wasm`, which may have none yet).
    NoSnapshot,
    /// The snapshot's table part that holds one of the request's entities is not loaded (an edge
    /// that loads parts on demand must insert it first; see [`Scorer::needed_parts`]).
    PartMissing(PartMissing),
}

impl ScoreError {
    /// `bad_request`, `no_model` or `no_snapshot`: the `error_kind` of responses.
    pub fn kind(&self) -> &'static str {
        match self {
            ScoreError::Request(_) => "bad_request",
            ScoreError::NoModel => "no_model",
            ScoreError::NoSnapshot => "no_snapshot",
            ScoreError::PartMissing(_) => "part_missing",
        }
    }

    /// The error as text, naming entity fields after `schema`'s id columns when given
    /// (`customer_id: must be text or a whole number`).
    pub fn describe<'e>(&'e self, schema: Option<&'e FeatureSchema>) -> impl fmt::Display + 'e {
        Described(self, schema)
    }

    /// Writes [`ScoreError::describe`]'s text into `out` without `core::fmt`'s formatter.
    pub(crate) fn describe_to(
        &self,
        schema: Option<&FeatureSchema>,
        out: &mut impl fmt::Write,
    ) -> fmt::Result {
        Described(self, schema).write_to(out)
    }
}

struct Described<'e>(&'e ScoreError, Option<&'e FeatureSchema>);

impl Described<'_> {
    /// The text, through `write_str` alone: the wire path stays clear of `core::fmt`'s
    /// formatting machinery (smaller `scorer.wasm`).
    fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match self.0 {
            ScoreError::Request(e) => {
                write_field(f, e.field, self.1)?;
                f.write_str(": ")?;
                f.write_str(e.problem.text(e.format))
            }
            ScoreError::NoModel => f.write_str("snapshot: has no model, it serves features only"),
            ScoreError::NoSnapshot => f.write_str("snapshot: none is loaded"),
            ScoreError::PartMissing(missing) => {
                f.write_str("snapshot: the table part that holds this ")?;
                write_field(f, Field::Entity(missing.entity as u8), self.1)?;
                f.write_str(" is not loaded")
            }
        }
    }
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl fmt::Display for ScoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.describe(None))
    }
}

impl core::error::Error for ScoreError {}

/// Writes a field's name: `customer_id`, `amount`, ...
fn write_field(f: &mut impl fmt::Write, field: Field, schema: Option<&FeatureSchema>) -> fmt::Result {
    let name = match field {
        Field::Request => "request",
        Field::Batch => "batch",
        Field::TransactionId => "transaction_id",
        Field::Amount => "amount",
        Field::Time => "time",
        Field::Entity(e) => {
            return match schema.and_then(|s| s.entities().get(usize::from(e))) {
                Some(def) => def.name.chars().try_for_each(|c| f.write_char(c.to_ascii_lowercase())),
                None => {
                    f.write_str("entity ")?;
                    // Entity kinds number fewer than 10 (`MAX_ENTITIES`).
                    f.write_char(char::from(b'0' + e % 10))
                }
            };
        }
    };
    f.write_str(name)
}

/// How a response's reasons were computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution {
    /// Exact per-feature contributions to the margin (logistic regression: `w_i * x_i`).
    Exact,
    /// No attribution: an MLP, trees without leaf covers, reasons turned off, or a rule decided.
    None,
    /// Tree ensembles: the path attribution (`E[child] - E[node]` along the path taken).
    TreePath,
    /// Tree ensembles: exact path-dependent TreeSHAP values.
    TreeShap,
}

impl Attribution {
    /// `exact`, `none`, `path` or `treeshap`.
    pub fn as_str(self) -> &'static str {
        match self {
            Attribution::Exact => "exact",
            Attribution::None => "none",
            Attribution::TreePath => "path",
            Attribution::TreeShap => "treeshap",
        }
    }
}

/// How tree ensembles whose leaves carry covers explain a score (`model::TreeExplainer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TreeAttribution {
    /// The path attribution: about the cost of a second walk of the trees. The default.
    #[default]
    Path,
    /// Exact path-dependent TreeSHAP: O(trees x leaves x depth^2), hundreds of times the score.
    Shap,
}

/// One reason: a feature, its value, and how much it pushed the score's margin up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reason {
    /// Feature index (schema order).
    pub feature: u16,
    /// The feature's value.
    pub value: f64,
    /// Its contribution to the margin.
    pub contribution: f64,
}

/// The top reasons of a score, largest contribution first; only positive contributions count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reasons {
    items: [Reason; MAX_REASONS],
    len: u8,
}

impl Reasons {
    /// No reasons.
    pub const EMPTY: Reasons =
        Reasons { items: [Reason { feature: 0, value: 0.0, contribution: 0.0 }; MAX_REASONS], len: 0 };

    /// The reasons, largest contribution first (ties: lower feature index first).
    pub fn as_slice(&self) -> &[Reason] {
        &self.items[..usize::from(self.len)]
    }

    /// Keeps `r` if it is among the `k` largest positive contributions seen so far.
    fn offer(&mut self, r: Reason, k: usize) {
        // NaN and non-positive contributions never count as reasons.
        if r.contribution.is_nan() || r.contribution <= 0.0 {
            return;
        }
        let len = usize::from(self.len);
        let at = self.items[..len].iter().position(|x| r.contribution > x.contribution).unwrap_or(len);
        if at >= k {
            return;
        }
        let end = len.min(k - 1);
        self.items.copy_within(at..end, at + 1);
        self.items[at] = r;
        self.len = (end + 1) as u8;
    }
}

/// The result of scoring one transaction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// The model's fraud score in [0, 1]; `None` when a hard rule decided before the model ran.
    pub score: Option<f64>,
    /// What to do.
    pub decision: Decision,
    /// The hard rules that fired (each has its reason code in the policy).
    pub rules: RuleHits,
    /// The top reasons.
    pub reasons: Reasons,
    /// How the reasons were computed.
    pub attribution: Attribution,
    /// Per entity kind (schema order): whether the snapshot knew it (else it scored cold).
    pub known: [bool; MAX_ENTITIES],
}

/// A loaded snapshot ready to score: the snapshot, its policy and the scratch space of one request.
#[derive(Clone, Debug)]
pub struct Scorer<'a> {
    snapshot: Snapshot<'a>,
    features: Vec<f64>,
    top_reasons: usize,
    trees: Option<Trees>,
    tree_attribution: TreeAttribution,
    /// With [`Scorer::set_record_features`]: per request of the last wire call, its features and
    /// score (NaN when the model did not run), for drift monitoring by the embedder.
    recorded: Option<Vec<f64>>,
}

/// A tree model compiled for speed, its explainer when the leaves carry covers, and scratch.
#[derive(Clone, Debug)]
struct Trees {
    compiled: CompiledTrees,
    explainer: Option<TreeExplainer>,
    /// The path attribution's terms by position, where the trees are compiled and explained.
    path_table: Option<PathTable>,
    xs: Vec<f32>,
    phi: Vec<f64>,
    /// Each tree's leaf, for the path attribution.
    leaves: Vec<u32>,
}

impl<'a> Scorer<'a> {
    /// A scorer over a loaded snapshot.
    pub fn new(snapshot: Snapshot<'a>) -> Scorer<'a> {
        let features = alloc::vec![0.0; snapshot.schema().len()];
        let trees = match snapshot.model() {
            Some(Model::Trees(t)) => {
                let compiled = CompiledTrees::new(t);
                let explainer = TreeExplainer::new(t);
                let path_table = explainer
                    .as_ref()
                    .filter(|_| compiled.is_laid_out())
                    .map(|e| PathTable::new(t, e, compiled.depth()));
                Some(Trees {
                    compiled,
                    explainer,
                    path_table,
                    xs: Vec::with_capacity(t.n_features),
                    phi: alloc::vec![0.0; t.n_features],
                    leaves: Vec::with_capacity(t.roots.len()),
                })
            }
            _ => None,
        };
        let tree_attribution = TreeAttribution::default();
        Scorer { snapshot, features, top_reasons: DEFAULT_REASONS, trees, tree_attribution, recorded: None }
    }

    /// The snapshot.
    pub fn snapshot(&self) -> &Snapshot<'a> {
        &self.snapshot
    }

    /// The snapshot's policy, or [`Policy::DEFAULT`] when it carries none.
    pub fn policy(&self) -> &Policy {
        self.snapshot.policy().unwrap_or(&DEFAULT_POLICY)
    }

    /// How many reasons responses carry (at most [`MAX_REASONS`]; 0 turns attribution off).
    pub fn set_top_reasons(&mut self, n: usize) {
        self.top_reasons = n.min(MAX_REASONS);
    }

    /// How tree ensembles explain their scores (the path attribution unless told otherwise).
    pub fn set_tree_attribution(&mut self, how: TreeAttribution) {
        self.tree_attribution = how;
    }

    /// The entity table parts (entity kind, part) that the request (or every request of the batch)
    /// reads, loaded or not, each once, appended to `out`; [`EntityTable::is_loaded`] tells which
    /// must be inserted first. Requests that do not decode need none (they get their error).
    ///
    /// [`EntityTable::is_loaded`]: crate::snapshot::EntityTable::is_loaded
    pub fn needed_parts(&self, input: &[u8], batch: bool, out: &mut Vec<(usize, usize)>) {
        let format = Format::sniff(input);
        let schema = self.snapshot.schema();
        let mut check = |item: &[u8]| {
            let Ok(req) = request::decode_as(item, format, schema) else { return };
            for (e, id) in req.entity_ids.iter().enumerate().take(schema.entities().len()) {
                let (Some(id), Some(table)) = (id, self.snapshot.table(e)) else { continue };
                let mut buf = [0u8; MAX_ID_LEN];
                let part = table.part_of(self.snapshot.id_hash().hash(id.canonical(&mut buf)));
                if !out.contains(&(e, part)) {
                    out.push((e, part));
                }
            }
        };
        if !batch {
            check(input);
        } else if let Ok(items) = request::split_batch(input, format) {
            for (start, end) in items {
                check(&input[start..end]);
            }
        }
    }

    /// Loads a part of the snapshot's entity table `entity` ([`Snapshot::insert_part`]).
    pub fn insert_part(&mut self, entity: usize, part: usize, bytes: Vec<u8>) -> Result<(), SnapshotError> {
        self.snapshot.insert_part(entity, part, bytes)
    }

    /// Forgets a loaded part ([`Snapshot::evict_part`]); returns whether it was loaded.
    pub fn evict_part(&mut self, entity: usize, part: usize) -> bool {
        self.snapshot.evict_part(entity, part)
    }

    /// Whether the wire calls ([`Scorer::score_bytes`], [`Scorer::score_batch_bytes`]) record
    /// each request's features and score for [`Scorer::recorded_features`] (off by default).
    pub fn set_record_features(&mut self, on: bool) {
        self.recorded = on.then(Vec::new);
    }

    /// Per request of the last wire call, in order, `schema.len() + 1` values: the features,
    /// then the score; all NaN for a request the model did not score (an error, or a hard rule
    /// decided). Empty unless recording is on.
    pub fn recorded_features(&self) -> &[f64] {
        self.recorded.as_deref().unwrap_or_default()
    }

    /// The feature vector of the last request scored by the model.
    pub fn features(&self) -> &[f64] {
        &self.features
    }

    /// Scores one request.
    pub fn score(&mut self, req: &Request<'_>) -> Result<Outcome, ScoreError> {
        let Scorer { snapshot, features, top_reasons, trees, tree_attribution, .. } = self;
        let invalid =
            |field, problem| ScoreError::Request(RequestError { field, problem, format: Format::MsgPack });
        let model = snapshot.model().ok_or(ScoreError::NoModel)?;
        if !(req.amount.is_finite() && req.amount >= 0.0) {
            return Err(invalid(Field::Amount, Problem::NotAnAmount));
        }
        if !(MIN_TIME..=MAX_TIME).contains(&req.time) {
            return Err(invalid(Field::Time, Problem::TimeOutOfRange));
        }
        let n = snapshot.schema().entities().len();
        let mut keys = [EntityKey(0); MAX_ENTITIES];
        let mut rows = [Aggregates::ZERO; MAX_ENTITIES];
        let mut known = [false; MAX_ENTITIES];
        for e in 0..n {
            let id = req.entity_ids[e].as_ref().ok_or(invalid(Field::Entity(e as u8), Problem::Missing))?;
            let mut buf = [0u8; MAX_ID_LEN];
            keys[e] = snapshot.id_hash().hash(id.canonical(&mut buf));
            if let Some(table) = snapshot.table(e)
                && let Some(row) = table.lookup(keys[e]).map_err(ScoreError::PartMissing)?
            {
                rows[e] = row;
                known[e] = true;
            }
        }
        // -0.0 would give -0.0 products and so other bits than 0.0 in the reasons.
        let amount = req.amount + 0.0;
        let policy = snapshot.policy().unwrap_or(&DEFAULT_POLICY);
        let rules = policy.rules(amount, &keys[..n]);
        if rules.any() {
            let (reasons, attribution) = (Reasons::EMPTY, Attribution::None);
            return Ok(Outcome {
                score: None,
                decision: Decision::Decline,
                rules,
                reasons,
                attribution,
                known,
            });
        }
        snapshot.schema().compute(&TxFacts { time: req.time, amount }, &rows[..n], features);
        // With path reasons to give, one walk finds each tree's leaf for both the score and the
        // reasons (the leaves summed in tree order: the bits of the score's own walk).
        let path_reasons = *top_reasons > 0 && *tree_attribution == TreeAttribution::Path;
        let mut walked = false;
        let score = match trees {
            Some(t) => {
                crate::model::to_f32(features, &mut t.xs);
                walked =
                    path_reasons && t.path_table.is_some() && t.compiled.leaf_positions(&t.xs, &mut t.leaves);
                if walked { t.compiled.score_at(&t.leaves) } else { t.compiled.score(&t.xs) }
            }
            None => model.score(features),
        };
        let mut reasons = Reasons::EMPTY;
        let attribution = match (model, trees) {
            (Model::Logistic(m), _) if *top_reasons > 0 => {
                for (i, (w, x)) in m.weights.iter().zip(features.iter()).enumerate() {
                    reasons.offer(Reason { feature: i as u16, value: *x, contribution: w * x }, *top_reasons);
                }
                Attribution::Exact
            }
            (
                Model::Trees(m),
                Some(Trees { explainer: Some(explainer), path_table, phi, compiled, xs, leaves }),
            ) if *top_reasons > 0 => {
                phi.fill(0.0);
                let attribution = match tree_attribution {
                    TreeAttribution::Path => {
                        // The compiled walk found the paths without a branch on the data, and the
                        // table gives their terms by position.
                        match path_table {
                            Some(table) if walked => table.add(leaves, phi),
                            _ => explainer.path(m, features, phi),
                        }
                        Attribution::TreePath
                    }
                    TreeAttribution::Shap => {
                        explainer.shap(m, features, phi);
                        Attribution::TreeShap
                    }
                };
                for (i, (c, x)) in phi.iter().zip(features.iter()).enumerate() {
                    reasons.offer(Reason { feature: i as u16, value: *x, contribution: *c }, *top_reasons);
                }
                attribution
            }
            _ => Attribution::None,
        };
        Ok(Outcome { score: Some(score), decision: policy.decide(score), rules, reasons, attribution, known })
    }

    /// Decodes one request (MessagePack, or JSON when it starts with `{`) against the snapshot's
    /// schema.
    pub fn decode_request<'i>(&self, input: &'i [u8]) -> Result<Request<'i>, RequestError> {
        decode_request(input, self.snapshot.schema())
    }

    /// The wire path: decodes one request, scores it and appends the response, in the request's
    /// format, to `out`. Errors are responses too; nothing panics.
    pub fn score_bytes(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if let Some(r) = &mut self.recorded {
            r.clear();
        }
        let format = Format::sniff(input);
        response::with_sink(format, out, |sink| self.respond(input, format, sink));
    }

    /// The batch wire path: an array of requests in, an array of responses (same order) out; a
    /// batch that is not a well-formed array gets one error response instead.
    pub fn score_batch_bytes(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if let Some(r) = &mut self.recorded {
            r.clear();
        }
        let format = Format::sniff(input);
        let start = out.len();
        let mut answered = Ok(());
        response::with_sink(format, out, |sink| answered = self.respond_batch(input, format, sink));
        if let Err(problem) = answered {
            // Found part way through: the answers written so far go, one error answers the batch.
            out.truncate(start);
            if let Some(r) = &mut self.recorded {
                r.clear();
            }
            let e = ScoreError::Request(RequestError { field: Field::Batch, problem, format });
            response::with_sink(format, out, |sink| {
                response::write_error(sink, &e, Some(self.snapshot.meta()))
            });
        }
    }

    /// Answers a batch's items as they are read, in one pass over the input; fails as soon as the
    /// batch turns out not to be a well-formed array.
    fn respond_batch(
        &mut self,
        input: &[u8],
        format: Format,
        sink: &mut dyn wire::Sink,
    ) -> Result<(), Problem> {
        match format {
            Format::MsgPack => self.respond_items(&mut wire::MsgPackReader::new(input), format, sink),
            Format::Json => self.respond_items(&mut wire::JsonReader::new(input)?, format, sink),
        }
    }

    fn respond_items<'i>(
        &mut self,
        r: &mut dyn wire::Reader<'i>,
        format: Format,
        sink: &mut dyn wire::Sink,
    ) -> Result<(), Problem> {
        let mut items = r.open_array()?;
        sink.array(items.announced());
        while r.next_item(&mut items)? {
            let start = r.pos();
            let request = request::read(r, self.snapshot.schema(), format, request::Ends::Item);
            if request.is_err() {
                // The item was left part way: read it again, whole, to go on after it (and to
                // find out whether the batch itself is malformed there).
                r.seek(start);
                r.value()?;
            }
            self.answer(request, sink);
        }
        r.finish()?;
        sink.end_array();
        Ok(())
    }

    fn respond(&mut self, input: &[u8], format: Format, sink: &mut dyn wire::Sink) {
        self.answer(request::decode_as(input, format, self.snapshot.schema()), sink);
    }

    /// Scores a decoded request (or answers its error) into `sink`.
    fn answer(&mut self, request: Result<Request<'_>, RequestError>, sink: &mut dyn wire::Sink) {
        let result = request
            .map_err(ScoreError::Request)
            .and_then(|req| self.score(&req).map(|outcome| (req, outcome)));
        if let Some(r) = &mut self.recorded {
            match &result {
                Ok((_, Outcome { score: Some(score), .. })) => {
                    r.extend_from_slice(&self.features);
                    r.push(*score);
                }
                _ => r.extend(core::iter::repeat_n(f64::NAN, self.features.len() + 1)),
            }
        }
        match result {
            Ok((req, outcome)) => response::write_outcome(sink, &req, &outcome, self),
            Err(e) => response::write_error(sink, &e, Some(self.snapshot.meta())),
        }
    }
}

/// The response to a request or a batch that cannot reach a scorer (no snapshot loaded, or
/// bytes a host could not hand over): one error response, in the request's format.
pub fn error_response(input: &[u8], error: &ScoreError, out: &mut Vec<u8>) {
    let format = Format::sniff(input);
    response::with_sink(format, out, |sink| response::write_error(sink, error, None));
}

#[cfg(test)]
mod tests;
