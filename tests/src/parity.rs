//! The parity corpus: one signed snapshot (model and policy included) and more than 10,000
//! requests, deterministic, that every runtime (native, wasmtime, workerd, Chromium) must answer
//! byte for byte like the native scorer.

use anyhow::{Context, Result};
use exporter::ingest::{IngestOptions, read_transactions};
use exporter::simulate::{SimulationConfig, simulate};
use exporter::snapshot::aggregate_history;
use exporter::{NoProgress, Transactions};
use rmp::encode::{self as enc, ByteBuf};
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::model::{Logistic, Model, Node, TreeEnsemble, TreeOutput};
use scorer::policy::{BlockList, Policy, ReasonCode};
use scorer::snapshot::{
    IdHashKey, Snapshot, SnapshotMeta, SnapshotSigner, build_snapshot_in_parts, build_snapshot_with,
};

/// SplitMix64: a small deterministic generator, so that the corpus is the same on every run.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The corpus's signer: fixed keys, so that every runtime can be given its edge key.
pub fn signer() -> SnapshotSigner {
    SnapshotSigner::from_secret([21; 32], IdHashKey([42; 16]))
}

/// A hand-made logistic regression over the handbook's 15 features: amount, night and the
/// terminal's recent fraud share raise the score.
pub fn logistic() -> Model {
    let weights = vec![0.012, 0.15, 0.6, 0.08, 0.004, 0.03, 0.002, 0.01, 0.001, 0.0, 4.0, 0.0, 3.0, 0.0, 1.5];
    Model::Logistic(Logistic { weights, intercept: -3.5 })
}

/// Two stumps over the amount and the 7-day terminal risk, to check the tree evaluator too. The
/// leaves carry covers (training rows), so responses carry tree reasons as well.
pub fn trees() -> Model {
    let leaf = Node::leaf;
    let split = |feature, value, left, right| Node { feature, default_left: true, value, left, right };
    Model::Trees(TreeEnsemble {
        n_features: 15,
        nodes: vec![
            split(0, 120.0, 1, 2),
            leaf(-1.5, 700.0),
            leaf(0.75, 300.0),
            split(12, 0.05, 4, 5),
            leaf(-0.5, 900.0),
            leaf(2.5, 100.0),
        ],
        roots: vec![0, 3],
        base_margin: -1.0,
        output: TreeOutput::Logistic,
    })
}

/// A GBDT of `trees` random trees over `schema`'s features, up to `depth` deep, some leaves early,
/// thresholds where the corpus's values lie (exact zeros among them, on a grid of `steps` per
/// feature) and random default directions: it sends the corpus down paths of every length through
/// every compiled walk (scalar, AVX2, SIMD128), which must all give the reference walk's bits.
pub fn random_trees(schema: &FeatureSchema, trees: usize, depth: u32, steps: usize, seed: u64) -> Model {
    let mut rng = Rng(seed);
    let scales: Vec<f32> = schema
        .features()
        .iter()
        .map(|f| match &f.name {
            n if n.contains("RISK") => 0.2,
            n if n.contains("AMOUNT_TO") => 3.0,
            n if n.contains("AMOUNT") => 200.0,
            n if n.contains("NB_TX") => 40.0,
            _ => 1.0,
        })
        .collect();
    let mut nodes = Vec::new();
    let roots = (0..trees).map(|_| grow(&mut nodes, &mut rng, (&scales, steps), 0, depth)).collect();
    Model::Trees(TreeEnsemble {
        n_features: schema.len(),
        nodes,
        roots,
        base_margin: -2.0,
        output: TreeOutput::Logistic,
    })
}

/// One random subtree (see [`random_trees`]), its root's index.
fn grow(nodes: &mut Vec<Node>, rng: &mut Rng, grid: (&[f32], usize), level: u32, depth: u32) -> u32 {
    let (scales, steps) = grid;
    let at = nodes.len();
    if level == depth || (level > 0 && rng.below(6) == 0) {
        let value = (rng.below(2_001) as f32 - 1_000.0) / 2_000.0;
        nodes.push(Node::leaf(value, 1.0 + rng.below(100) as f32));
        return at as u32;
    }
    let feature = rng.below(scales.len());
    let value = scales[feature] * (rng.below(steps + 1) as f32 / steps as f32);
    nodes.push(Node { feature: feature as u16, default_left: rng.below(2) == 0, value, left: 0, right: 0 });
    let left = grow(nodes, rng, grid, level + 1, depth);
    let right = grow(nodes, rng, grid, level + 1, depth);
    (nodes[at].left, nodes[at].right) = (left, right);
    at as u32
}

/// Everything a corpus needs: the history, the snapshot and what to probe it with.
pub struct Fixture {
    /// The signed snapshot, with the model and a policy.
    pub snapshot: Vec<u8>,
    /// Requests in MessagePack and JSON, known and unknown entities, and broken ones.
    pub requests: Vec<Vec<u8>>,
}

/// The corpus for one model over the handbook's features: a snapshot of a simulated history (the
/// handbook's generator) and the requests of the 15 days after it.
pub fn fixture(model: &Model, model_id: &str) -> Result<Fixture> {
    fixture_with(model, model_id, FeatureSchema::handbook())
}

/// [`fixture`] over another feature schema (the model's).
pub fn fixture_with(model: &Model, model_id: &str, schema: FeatureSchema) -> Result<Fixture> {
    let config = SimulationConfig { seed: 5, customers: 400, terminals: 800, days: 45, ..Default::default() };
    let tx = simulate(&config, &NoProgress)?;
    let as_of = Timestamp(config.start.0 + 30 * 86_400);
    fixture_from(&tx, (as_of, Timestamp(i64::MAX)), model, model_id, schema)
}

/// The corpus over the handbook's own data (`../shared/data/handbook/`), the test week of its
/// protocol: a snapshot as of 2018-08-08 of every transaction before, and the requests of
/// 2018-08-08 .. 08-14 (about 67,600) with the cold-start and broken ones. `None` when the file
/// is absent and `TOLLGATE_SKIP_HANDBOOK=1`; an error when it is absent otherwise.
pub fn handbook_fixture(model: &Model, model_id: &str) -> Result<Option<Fixture>> {
    let Some(path) = handbook_data::for_test(handbook_data::TRANSACTIONS).map_err(anyhow::Error::msg)? else {
        return Ok(None);
    };
    let tx = read_transactions(&path, &IngestOptions::default(), &NoProgress)?.transactions;
    let week: (Timestamp, Timestamp) = ("2018-08-08 00:00:00".parse()?, "2018-08-15 00:00:00".parse()?);
    fixture_from(&tx, week, model, model_id, FeatureSchema::handbook()).map(Some)
}

/// The corpus over `tx`: a snapshot as of `requests.0` of the history before it, and the
/// requests of the transactions from `requests.0` until `requests.1`, then cold-start and broken
/// ones.
fn fixture_from(
    tx: &Transactions,
    requests: (Timestamp, Timestamp),
    model: &Model,
    model_id: &str,
    schema: FeatureSchema,
) -> Result<Fixture> {
    let (as_of, until) = requests;
    let s = signer();
    let tables = aggregate_history(tx, &schema, as_of, s.id_hash(), &NoProgress)?;
    let meta = SnapshotMeta {
        snapshot_id: format!("tg-parity-{model_id}"),
        as_of,
        created_at: Timestamp(1_700_000_000),
        data_range: Some((tx.time[0], as_of)),
        exporter_version: "parity".into(),
        id_key_fingerprint: s.id_hash().fingerprint(),
        schema,
        model_id: Some(model_id.into()),
        lineage: None,
        reference: None,
    };
    let code = |c| ReasonCode::new(c).expect("a valid code");
    let blocked_customers: Vec<&[u8]> = vec![b"3", b"77", b"150"];
    let policy = Policy::new(0.25, 0.6)?
        .with_amount_cap(400.0, code("AMOUNT_CAP"))?
        .with_block_list(BlockList::from_ids(0, code("BLOCKED_CUSTOMER"), blocked_customers, s.id_hash()))?
        .with_block_list(BlockList::from_ids(1, code("BLOCKED_TERMINAL"), [b"11".as_slice()], s.id_hash()))?;
    let snapshot = build_snapshot_with(&meta, tables, Some(model), Some(&policy), &s)?;

    let mut rng = Rng(17);
    let mut requests = Vec::new();
    let start = tx.time.partition_point(|t| *t < as_of);
    let end = tx.time.partition_point(|t| *t < until);
    anyhow::ensure!(end > start, "no transaction from {as_of} until {until}");
    for i in start..end {
        let customer = tx.customers.id(tx.customer[i]);
        let terminal = tx.terminals.id(tx.terminal[i]);
        requests.push(request(&mut rng, i, customer, terminal, tx.amount[i], tx.time[i]));
    }
    // Unknown entities: the cold start.
    for i in 0..2_000 {
        let (customer, terminal) = match i % 3 {
            0 => (format!("new-{i}"), tx.terminals.id(tx.terminal[start + i % 500]).to_string()),
            1 => (tx.customers.id(tx.customer[start + i % 500]).to_string(), format!("{}", 1_000_000 + i)),
            _ => (format!("{}", 5_000_000 + i), format!("t-{i}")),
        };
        let amount = (rng.below(50_000) as f64) / 100.0;
        requests.push(request(&mut rng, i, &customer, &terminal, amount, Timestamp(as_of.0 + i as i64 * 97)));
    }
    requests.extend(broken_requests());
    Ok(Fixture { snapshot, requests })
}

/// One request in one of four encodings, ids as numbers or text, time as seconds or text.
pub fn request(
    rng: &mut Rng,
    i: usize,
    customer: &str,
    terminal: &str,
    amount: f64,
    time: Timestamp,
) -> Vec<u8> {
    let numeric = |id: &str| id.parse::<u64>().ok();
    match rng.below(4) {
        0 | 1 => {
            let mut b = ByteBuf::new();
            let extra = i.is_multiple_of(5);
            let _ = enc::write_map_len(&mut b, 5 + u32::from(extra));
            let _ = enc::write_str(&mut b, "transaction_id");
            let _ = enc::write_uint(&mut b, i as u64);
            for (key, id) in [("customer_id", customer), ("TERMINAL_ID", terminal)] {
                let _ = enc::write_str(&mut b, key);
                match numeric(id).filter(|_| rng.below(2) == 0) {
                    Some(n) => drop(enc::write_uint(&mut b, n)),
                    None => drop(enc::write_str(&mut b, id)),
                }
            }
            let _ = enc::write_str(&mut b, "amount");
            let _ = enc::write_f64(&mut b, amount);
            let _ = enc::write_str(&mut b, "time");
            if rng.below(2) == 0 {
                let _ = enc::write_sint(&mut b, time.0);
            } else {
                let _ = enc::write_str(&mut b, &time.to_string());
            }
            if extra {
                let _ = enc::write_str(&mut b, "device");
                let _ = enc::write_map_len(&mut b, 1);
                let _ = enc::write_str(&mut b, "ua");
                let _ = enc::write_str(&mut b, "Mozilla/5.0");
            }
            b.into_vec()
        }
        _ => {
            let id = |id: &str, rng: &mut Rng| match numeric(id) {
                Some(n) if rng.below(2) == 0 => n.to_string(),
                _ => format!("{id:?}"),
            };
            let time = if rng.below(2) == 0 { time.0.to_string() } else { format!("\"{time}\"") };
            format!(
                r#"{{"transaction_id":"tx-{i}","customer_id":{},"terminal_id":{},"amount":{amount:?},"time":{time},"channel":"web"}}"#,
                id(customer, rng),
                id(terminal, rng)
            )
            .into_bytes()
        }
    }
}

/// Requests every scorer must refuse with a typed error, in both formats.
pub fn broken_requests() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = [
        r#"{"customer_id":1,"terminal_id":2,"amount":-1,"time":0}"#,
        r#"{"customer_id":1,"terminal_id":2,"amount":1e400,"time":0}"#,
        r#"{"customer_id":1,"terminal_id":2,"amount":"12.5","time":0}"#,
        r#"{"customer_id":1,"amount":1,"time":0}"#,
        r#"{"customer_id":1,"terminal_id":2,"time":0}"#,
        r#"{"customer_id":1,"terminal_id":2,"amount":1}"#,
        r#"{"customer_id":[1],"terminal_id":2,"amount":1,"time":0}"#,
        r#"{"customer_id":1.5,"terminal_id":2,"amount":1,"time":0}"#,
        r#"{"customer_id":1e30,"terminal_id":2,"amount":1,"time":0}"#,
        r#"{"customer_id":"","terminal_id":2,"amount":1,"time":0}"#,
        r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":"2018-13-01 00:00:00"}"#,
        r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":"noon"}"#,
        r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":99999999999999}"#,
        r#"{"customer_id":1,"customer_id":1,"terminal_id":2,"amount":1,"time":0}"#,
        r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":0,}"#,
        r#"{"customer_id":1,"terminal_id":2,"amount":1,"time":0}}"#,
        r#"{"customer_id":"\ud800","terminal_id":2,"amount":1,"time":0}"#,
        r#"["customer_id",1]"#,
        "{",
        "",
        "   ",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    out.push(
        format!(r#"{{"customer_id":"{}","terminal_id":2,"amount":1,"time":0}}"#, "x".repeat(200))
            .into_bytes(),
    );
    out.push(
        format!(
            r#"{{"customer_id":1,"terminal_id":2,"amount":1,"time":0,"deep":{}{}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        )
        .into_bytes(),
    );
    // MessagePack: NaN amount, a non-map, a truncated map, a reserved marker, a huge declared array.
    let mut nan = ByteBuf::new();
    let _ = enc::write_map_len(&mut nan, 4);
    for (k, v) in [("customer_id", 1u64), ("terminal_id", 2), ("time", 0)] {
        let _ = enc::write_str(&mut nan, k);
        let _ = enc::write_uint(&mut nan, v);
    }
    let _ = enc::write_str(&mut nan, "amount");
    let _ = enc::write_f64(&mut nan, f64::NAN);
    out.push(nan.into_vec());
    out.extend([vec![0x93, 1, 2, 3], vec![0x84, 0xa1, b'x'], vec![0xc1], vec![0xdd, 0xff, 0xff, 0xff, 0xff]]);
    // Every broken request many times over, so that they weigh in the corpus.
    let copies = out.clone();
    for _ in 0..20 {
        out.extend(copies.iter().cloned());
    }
    out
}

impl Fixture {
    /// The requests that are JSON text (what the worker and the page take), in corpus order.
    pub fn json_requests(&self) -> Vec<&str> {
        self.requests
            .iter()
            .filter(|r| r.first().is_some_and(|b| !matches!(b & 0xf0, 0x80 | 0x90) && *b < 0xc0))
            .filter_map(|r| std::str::from_utf8(r).ok())
            .collect()
    }

    /// The snapshot signed again under another `snapshot_id`, with the same tables, model and
    /// policy: many distinct snapshots (for swap tests) without simulating the history again.
    pub fn resigned(&self, snapshot_id: &str) -> Result<Vec<u8>> {
        self.rebuilt(Some(snapshot_id), usize::MAX)
    }

    /// The same snapshot with its entity tables in parts of at most `max_part_bytes`.
    pub fn in_parts(&self, max_part_bytes: usize) -> Result<Vec<u8>> {
        self.rebuilt(None, max_part_bytes)
    }

    fn rebuilt(&self, snapshot_id: Option<&str>, max_part_bytes: usize) -> Result<Vec<u8>> {
        let s = signer();
        let loaded = Snapshot::load(&self.snapshot, &[s.edge_key()])?;
        let mut meta = loaded.meta().clone();
        if let Some(id) = snapshot_id {
            meta.snapshot_id = id.into();
        }
        let tables = (0..meta.schema.entities().len())
            .map(|e| {
                let t = loaded.table(e).with_context(|| format!("the snapshot has no table {e}"))?;
                Ok(t.rows().collect())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(build_snapshot_in_parts(&meta, tables, loaded.model(), loaded.policy(), &s, max_part_bytes)?)
    }
}
