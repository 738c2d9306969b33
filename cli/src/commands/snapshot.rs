//! `tollgate snapshot build | inspect | delta`: signed feature snapshots for the edge, and the
//! deltas between two of them.

use crate::commands::ingest::SourceArgs;
use crate::commands::train::SchemaArgs;
use crate::progress::Bars;
use anyhow::{Context, bail};
use exporter::snapshot::{Decisioning, build_with};
use scorer::Timestamp;
use scorer::features::{Aggregate, FeatureSchema};
use scorer::model::Model;
use scorer::policy::{BlockList, Policy, ReasonCode};
use scorer::snapshot::{
    DeltaInfo, EdgeKey, ModelLineage, Snapshot, SnapshotSigner, apply_delta, build_delta, is_delta, write_hex,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Signed feature snapshots.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Build a signed snapshot of every entity's windowed aggregates as of a time, from a
    /// transaction history.
    Build(Box<BuildArgs>),
    /// Verify a snapshot and print its meta, its sizes and, on request, one entity's row; or
    /// describe a snapshot delta (and, with --base, inspect the snapshot it makes).
    Inspect(InspectArgs),
    /// Write the delta that turns snapshot BASE into snapshot NEXT (`docs/snapshot-format.md`,
    /// "Deltas") and print its size, raw and gzipped, against NEXT's.
    Delta(DeltaArgs),
}

/// Arguments of `tollgate snapshot delta`.
#[derive(clap::Args)]
pub struct DeltaArgs {
    /// The snapshot the receiver holds.
    base: PathBuf,
    /// The snapshot the receiver should hold after applying the delta.
    next: PathBuf,
    /// Where to write the delta.
    #[arg(short, long)]
    out: PathBuf,
}

/// Arguments of `tollgate snapshot build`.
#[derive(clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The snapshot holds every transaction before this time (UTC, `YYYY-MM-DD[ HH:MM:SS]`);
    /// default: one second after the last transaction.
    #[arg(long)]
    as_of: Option<String>,
    /// The signing key file (from `tollgate keys new`).
    #[arg(long, default_value = "keys/signing.key")]
    key: PathBuf,
    /// Where to write the snapshot.
    #[arg(long, short, default_value = "snapshot.tgs")]
    output: PathBuf,
    #[command(flatten)]
    decisioning: DecisioningArgs,
    /// Carry the drift reference: each feature's (and, with a model, the score's) distribution
    /// over this many days before the as-of time, as decile bins, for the host's drift monitor
    /// (`/v1/monitoring`, `tollgate_feature_psi`). 0: no reference.
    #[arg(long, value_name = "N", default_value_t = 28)]
    reference_days: u32,
    #[command(flatten)]
    schema: SchemaArgs,
}

/// The model, the policy and the table split of a snapshot: shared by `tollgate snapshot build`
/// and `tollgate exporter run`.
#[derive(clap::Args)]
pub struct DecisioningArgs {
    /// The model the edge scores with (a file from `tollgate train` or `tollgate import`); without
    /// it the snapshot carries aggregates only.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The model's id, recorded in the snapshot and in every response; default: the id in the
    /// model card (MODEL_FILE.json) when there is one, else the file name.
    #[arg(long, requires = "model")]
    pub model_id: Option<String>,
    /// Take the current model of this model registry (`tollgate retrain --models DIR`) and record
    /// its lineage (training data range, code version, metrics) in the snapshot's meta.
    #[arg(long, value_name = "DIR", conflicts_with = "model")]
    pub models: Option<PathBuf>,
    /// Scores from this one up are reviewed.
    #[arg(long, default_value_t = Policy::DEFAULT.review_at())]
    pub review: f64,
    /// Scores from this one up are declined.
    #[arg(long, default_value_t = Policy::DEFAULT.decline_at())]
    pub decline: f64,
    /// Hard rule before the model: decline any amount above this (reason code AMOUNT_CAP).
    #[arg(long, value_name = "AMOUNT")]
    pub amount_cap: Option<f64>,
    /// Hard rule before the model: decline this entity (`KIND=ID`, e.g. `CUSTOMER_ID=42`;
    /// reason code BLOCKED_<KIND>; repeatable). Ids are stored hashed, never raw.
    #[arg(long = "block", value_name = "KIND=ID")]
    pub blocks: Vec<String>,
    /// Split each entity table into parts of at most this many bytes (by the entity keys' top
    /// bits; each part verifiable on its own), so that an edge can keep them as separate KV values
    /// and load only the parts its traffic needs (`tollgate push --to kv-local:DIR` stores them
    /// apart). Default: one part per table.
    #[arg(long, value_name = "BYTES")]
    pub part_bytes: Option<usize>,
}

/// A loaded model and its id, and the policy, as [`DecisioningArgs`] ask.
pub struct LoadedDecisioning {
    model: Option<(Model, String)>,
    lineage: Option<ModelLineage>,
    policy: Policy,
    part_bytes: Option<usize>,
}

impl LoadedDecisioning {
    /// What the exporter's builders take.
    pub fn decisioning(&self) -> Decisioning<'_> {
        Decisioning {
            model: self.model.as_ref().map(|(m, id)| (m, id.as_str())),
            policy: Some(&self.policy),
            max_part_bytes: self.part_bytes,
            lineage: self.lineage.as_ref(),
            // A reference needs the history's features: `snapshot build` sets it.
            reference_days: 0,
            reference: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl DecisioningArgs {
    /// The schema `named` says; without `--schema`, the one whose feature names the model card
    /// beside `--model` lists ([`SchemaArgs::schema`]).
    pub fn schema(&self, named: &SchemaArgs) -> anyhow::Result<FeatureSchema> {
        let trained_on = match self.model.as_deref().map(models::report::ModelCard::sidecar_path) {
            Some(path) if path.exists() => Some(models::report::ModelCard::read(&path)?.features),
            _ => None,
        };
        named.schema(trained_on.as_deref())
    }

    /// Reads the model file (if any) and makes the policy.
    pub fn load(&self, schema: &FeatureSchema, signer: &SnapshotSigner) -> anyhow::Result<LoadedDecisioning> {
        let args = self;
        let (model, lineage) = match (&args.model, &args.models) {
            (Some(path), _) => (Some(model_file(path, args.model_id.as_deref(), schema)?), None),
            (None, Some(dir)) => {
                let registry = models::registry::Registry::open(dir)?;
                let Some(current) = registry.current() else {
                    bail!(
                        "{}: the model registry has no current model (no retraining promoted one yet)",
                        dir.display()
                    )
                };
                let model = registry.load_model(current)?;
                check_features(&model, schema, &registry.model_path(current))?;
                (Some((model, current.model_id.clone())), Some(current.to_snapshot()?))
            }
            (None, None) => (None, None),
        };
        if let Some(n) = args.part_bytes.filter(|&n| n < 4096) {
            bail!("--part-bytes {n}: parts must be at least 4096 bytes (a KV value holds up to 25 MiB)");
        }
        let policy = policy(args, schema, signer)?;
        Ok(LoadedDecisioning { model, lineage, policy, part_bytes: args.part_bytes })
    }
}

/// Arguments of `tollgate snapshot inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// The snapshot file.
    file: PathBuf,
    /// The edge key file that verifies it (from `tollgate keys new`).
    #[arg(long, default_value = "keys/edge.key")]
    key: PathBuf,
    /// Print the row of one entity, e.g. `--entity CUSTOMER_ID=596` (repeatable).
    #[arg(long = "entity", value_name = "KIND=ID")]
    entities: Vec<String>,
    /// When FILE is a delta: the base snapshot to apply it to, then inspect the result.
    #[arg(long, value_name = "BASE")]
    base: Option<PathBuf>,
}

/// Runs `tollgate snapshot ...`.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Build(args) => build(*args),
        Command::Inspect(args) => inspect(args),
        Command::Delta(args) => delta(args),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn delta(args: DeltaArgs) -> anyhow::Result<()> {
    let (base, next) = (read(&args.base)?, read(&args.next)?);
    let began = Instant::now();
    let delta = build_delta(&base, &next)?;
    let took = began.elapsed();
    std::fs::write(&args.out, &delta).with_context(|| format!("writing {}", args.out.display()))?;
    let info = DeltaInfo::read(&delta)?;
    println!("{:<18} {}", "delta", args.out.display());
    println!("{:<18} {} bytes ({} gzipped), built in {took:.1?}", "size", delta.len(), gzipped_len(&delta)?);
    println!("{:<18} {} bytes ({} gzipped)", "next snapshot", next.len(), gzipped_len(&next)?);
    print_delta(&info);
    Ok(())
}

/// Bytes of `bytes` gzipped at the default level (what an HTTP transfer with gzip would carry).
pub fn gzipped_len(bytes: &[u8]) -> anyhow::Result<usize> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes)?;
    Ok(gz.finish()?.len())
}

fn print_delta(info: &DeltaInfo) {
    let hex = |d: &[u8; 32]| {
        let mut text = String::new();
        let _ = write_hex(&mut text, d);
        text
    };
    println!("{:<18} {} bytes, blake3:{}", "base", info.base_len, hex(&info.base_digest));
    println!("{:<18} {} bytes, blake3:{}", "result", info.result_len, hex(&info.result_digest));
    println!(
        "{:<18} {} sections: {} copied, {} patched by rows, {} literal",
        "sections", info.sections, info.copied, info.patched, info.literal
    );
    println!(
        "{:<18} {} updated, {} inserted, {} deleted",
        "rows", info.rows_updated, info.rows_inserted, info.rows_deleted
    );
}

/// The text of the key file `path` (given with `--key`), with a hint when it cannot be read.
fn read_key(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the key file {} (name another with --key; `tollgate keys new` makes a pair)",
            path.display()
        )
    })
}

fn build(args: BuildArgs) -> anyhow::Result<()> {
    let signer = SnapshotSigner::from_text(&read_key(&args.key)?)
        .with_context(|| format!("{}", args.key.display()))?;
    let tx = args.source.read()?.transactions;
    let Some(&last) = tx.time.last() else { bail!("{}: no transactions", args.source.input().display()) };
    let as_of = match &args.as_of {
        Some(text) => text.parse::<Timestamp>().with_context(|| format!("--as-of {text:?}"))?,
        None => last.plus_seconds(1),
    };
    let schema = args.decisioning.schema(&args.schema)?;
    let loaded = args.decisioning.load(&schema, &signer)?;
    let decisioning = Decisioning { reference_days: args.reference_days, ..loaded.decisioning() };
    let policy = loaded.policy();
    let began = Instant::now();
    let built = build_with(&tx, &schema, as_of, now(), &signer, &decisioning, &Bars::default())?;
    let elapsed = began.elapsed();
    std::fs::write(&args.output, &built.bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("{:<16} {}", "snapshot", built.meta.snapshot_id);
    println!("{:<16} {}", "as of", as_of);
    for (entity, rows) in schema.entities().iter().zip(&built.rows) {
        println!("{:<16} {rows} rows of {} bytes", entity.name, scorer::snapshot::row_width(&entity.layout));
    }
    println!("{:<16} {}", "model", built.meta.model_id.as_deref().unwrap_or("(none: aggregates only)"));
    if let Some(l) = &built.meta.lineage {
        print_lineage(l, 16);
    }
    println!("{:<16} review from {}, decline from {}", "policy", policy.review_at(), policy.decline_at());
    match &built.meta.reference {
        Some(r) => println!("{:<16} {} transactions from {} to {}", "drift reference", r.rows, r.from, r.to),
        None => println!("{:<16} none", "drift reference"),
    }
    println!("{:<16} {} bytes, built in {:.3} s", "size", built.bytes.len(), elapsed.as_secs_f64());
    println!("wrote {}", args.output.display());
    Ok(())
}

/// A model file (from `tollgate train` or `tollgate import`) and its id: `id`, else the id in its
/// model card (MODEL_FILE.json) when there is one, else the file name.
fn model_file(path: &Path, id: Option<&str>, schema: &FeatureSchema) -> anyhow::Result<(Model, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let model = Model::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    check_features(&model, schema, path)?;
    let card = models::report::ModelCard::sidecar_path(path);
    let id = match id {
        Some(id) => id.to_string(),
        None if card.exists() => models::report::ModelCard::read(&card)?.model_id,
        None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    Ok((model, id))
}

fn check_features(model: &Model, schema: &FeatureSchema, path: &Path) -> anyhow::Result<()> {
    if model.n_features() != schema.len() {
        bail!(
            "{}: the model reads {} features, the snapshot's schema has {} (build with the model's --schema)",
            path.display(),
            model.n_features(),
            schema.len()
        );
    }
    Ok(())
}

/// Prints a model's lineage as `snapshot build` and `snapshot inspect` show it.
fn print_lineage(l: &ModelLineage, width: usize) {
    let day = |t: Timestamp| t.to_string()[..10].to_string();
    println!("{:<width$} {} {}", "lineage", l.kind, l.params);
    println!(
        "{:<width$} trained on {} .. {} ({}-day label delay respected), evaluated on {} .. {}",
        "",
        day(l.train_range.0),
        day(l.train_range.1),
        l.label_delay_days,
        day(l.eval_range.0),
        day(l.eval_range.1)
    );
    let metrics: Vec<String> = l.metrics.iter().map(|(n, v)| format!("{n} {v:.4}")).collect();
    println!("{:<width$} {}", "", metrics.join(", "));
    println!(
        "{:<width$} code {}, trained {}, parent {}",
        "",
        l.code_version,
        l.created_at,
        l.parent.as_deref().unwrap_or("(none)")
    );
}

/// The decision policy from the flags: thresholds, the amount cap and block lists.
fn policy(args: &DecisioningArgs, schema: &FeatureSchema, signer: &SnapshotSigner) -> anyhow::Result<Policy> {
    let code = |text: &str| ReasonCode::new(text).map_err(|e| anyhow::anyhow!("reason code {text:?}: {e}"));
    let mut policy = Policy::new(args.review, args.decline)
        .map_err(|e| anyhow::anyhow!("--review {} --decline {}: {e}", args.review, args.decline))?;
    if let Some(cap) = args.amount_cap {
        policy = policy
            .with_amount_cap(cap, code("AMOUNT_CAP")?)
            .map_err(|e| anyhow::anyhow!("--amount-cap {cap}: {e}"))?;
    }
    let mut lists: Vec<(u8, Vec<&[u8]>)> = Vec::new();
    for block in &args.blocks {
        let Some((kind, id)) = block.split_once('=').filter(|(_, id)| !id.is_empty()) else {
            bail!("--block {block:?}: expected KIND=ID, e.g. CUSTOMER_ID=42")
        };
        let Some(e) = schema.entities().iter().position(|d| d.name == kind) else {
            let known: Vec<&str> = schema.entities().iter().map(|d| d.name.as_str()).collect();
            bail!("--block {block:?}: no entity kind {kind} (known: {})", known.join(", "));
        };
        let e = u8::try_from(e)?;
        match lists.iter_mut().find(|(k, _)| *k == e) {
            Some((_, ids)) => ids.push(id.as_bytes()),
            None => lists.push((e, vec![id.as_bytes()])),
        }
    }
    for (e, ids) in lists {
        let name = &schema.entities()[usize::from(e)].name;
        let code = code(&format!("BLOCKED_{}", name.trim_end_matches("_ID")))?;
        policy = policy
            .with_block_list(BlockList::from_ids(e, code, ids, signer.id_hash()))
            .map_err(|err| anyhow::anyhow!("--block {name}=...: {err}"))?;
    }
    Ok(policy)
}

fn now() -> Timestamp {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let mut bytes = read(&args.file)?;
    if is_delta(&bytes) {
        let info = DeltaInfo::read(&bytes).with_context(|| format!("{}", args.file.display()))?;
        println!("{:<18} {} ({} bytes)", "snapshot delta", args.file.display(), bytes.len());
        print_delta(&info);
        let Some(base) = &args.base else { return Ok(()) };
        bytes =
            apply_delta(&read(base)?, &bytes).with_context(|| format!("applying {}", args.file.display()))?;
        println!("{:<18} applied to {}:", "result", base.display());
    }
    // A delta alone needs no key (it is not signed); a snapshot is verified.
    let key = EdgeKey::from_text(&read_key(&args.key)?).with_context(|| format!("{}", args.key.display()))?;
    let began = Instant::now();
    let snapshot = Snapshot::load(&bytes, std::slice::from_ref(&key))
        .with_context(|| format!("{}", args.file.display()))?;
    let load = began.elapsed();
    let meta = snapshot.meta();
    println!("{:<18} {}", "snapshot", meta.snapshot_id);
    println!("{:<18} {}", "as of", meta.as_of);
    println!("{:<18} {}", "created at", meta.created_at);
    match meta.data_range {
        Some((from, to)) => println!("{:<18} {from} .. {to}", "data"),
        None => println!("{:<18} (none)", "data"),
    }
    println!("{:<18} {}", "exporter", meta.exporter_version);
    println!("{:<18} {:016x} ({} features)", "schema hash", meta.schema.hash(), meta.schema.len());
    println!("{:<18} {}", "model", meta.model_id.as_deref().unwrap_or("(none)"));
    if let Some(l) = &meta.lineage {
        print_lineage(l, 18);
    }
    match &meta.reference {
        Some(r) => println!(
            "{:<18} {} transactions, {} .. {}, {} feature distributions{}",
            "drift reference",
            r.rows,
            r.from,
            r.to,
            r.features.len(),
            if r.score.is_some() { " and the score's" } else { "" }
        ),
        None => println!("{:<18} (none)", "drift reference"),
    }
    for (e, entity) in meta.schema.entities().iter().enumerate() {
        if let Some(table) = snapshot.table(e) {
            let parts = match table.part_count() {
                1 => String::new(),
                n => format!(" in {n} parts"),
            };
            println!("{:<18} {} rows x {} bytes{parts}", entity.name, table.len(), table.row_width());
        }
    }
    println!(
        "{:<18} {} bytes, verified and loaded in {:.3} ms",
        "size",
        snapshot.size(),
        load.as_secs_f64() * 1e3
    );
    for request in &args.entities {
        let Some((kind, id)) = request.split_once('=') else {
            bail!("--entity {request:?}: expected KIND=ID")
        };
        let Some(e) = meta.schema.entities().iter().position(|d| d.name == kind) else {
            let known: Vec<&str> = meta.schema.entities().iter().map(|d| d.name.as_str()).collect();
            bail!("--entity {request:?}: no entity kind {kind} (known: {})", known.join(", "));
        };
        let layout = &meta.schema.entities()[e].layout;
        let entity_key = key.id_hash().hash(id.as_bytes());
        println!("\n{kind} {id} (key {:016x})", entity_key.0);
        // A whole file is loaded: every part is there.
        let Some(aggregates) = snapshot.table(e).and_then(|t| t.lookup(entity_key).ok().flatten()) else {
            println!("  not in the snapshot: scored as a new entity (all aggregates 0)");
            continue;
        };
        for (slot, value) in layout.slots.iter().zip(aggregates.0) {
            let what = match slot.aggregate {
                Aggregate::Count => "transactions",
                Aggregate::AmountSum => "amount sum",
                Aggregate::FraudCount => "frauds",
            };
            let window = if slot.window.delay_days == 0 {
                format!("last {} d", slot.window.days)
            } else {
                format!("{} d before the last {}", slot.window.days, slot.window.delay_days)
            };
            println!("  {what:<14} {window:<22} {value}");
        }
    }
    Ok(())
}
