//! The always-on loop: read both topics' partitions (assigned by hand at the checkpoint's
//! offsets), merge them by event time, fold every event into the [`State`], publish a signed
//! snapshot at every boundary the watermark passes, and checkpoint state and offsets together.
//! As one instance of a scale-out ([`run_instance`]) it reads its share of the partitions and
//! writes a shard instead of a snapshot.

use crate::checkpoint::{self, CheckpointError, Position};
use crate::message::{Label, LabelEvent, Reason, Rejection, Transaction};
use crate::shard::{self, Instance, Shard, ShardError};
use crate::state::{Counts, KindSet, State};
use exporter::snapshot::{BuiltSnapshot, Decisioning, ExportError, build_from_aggregates};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use scorer::Timestamp;
use scorer::features::FeatureSchema;
use scorer::snapshot::SnapshotSigner;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the exporter runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`.
    pub brokers: String,
    /// The transactions topic (score requests).
    pub transactions: String,
    /// The labels topic.
    pub labels: String,
    /// Snapshot interval: a snapshot as of every multiple of it (Unix time) the watermark passes.
    pub every: Duration,
    /// A partition with nothing new for this long (wall time) stops holding the watermark back.
    pub idle: Duration,
    /// The directory of the checkpoint file.
    pub checkpoint_dir: PathBuf,
    /// Checkpoint at least this often (besides at every published snapshot).
    pub checkpoint_every: Duration,
    /// Stop once every partition is idle (all input read).
    pub until_idle: bool,
    /// Stop before the first event at or after this time (a final checkpoint is written).
    pub stop_at: Option<Timestamp>,
    /// Extra librdkafka properties (`key=value`), e.g. security settings.
    pub kafka: Vec<(String, String)>,
    /// Compute the features of every this-many-th transaction (against the state just before
    /// it) and report them ([`Report::Features`]), for drift monitoring; 0: none. Not in
    /// scale-out, where an instance holds only some entity kinds.
    pub feature_sample: u32,
}

/// Scale-out: this process is one of N instances, each owning a share of the entities.
#[derive(Clone, Debug)]
pub struct ScaleOut {
    /// Which instance (owns the partitions `p % N == I` of both transaction topics).
    pub instance: Instance,
    /// The same transactions as `Config::transactions`, keyed by terminal id: the terminal kind
    /// is folded from it (the customer kind from `Config::transactions`).
    pub by_terminal: String,
    /// Shards are written under this directory (`<as_of>/<I>-of-<N>.shard`).
    pub shards: PathBuf,
}

/// What the loop tells its caller, as it happens.
#[derive(Debug)]
pub enum Report<'a> {
    /// The inputs are assigned; `resumed` when a checkpoint was loaded.
    Started {
        /// A checkpoint was loaded.
        resumed: bool,
        /// Partitions and their start offsets (`None`: from the beginning).
        partitions: Vec<(String, i32, Option<i64>)>,
        /// The state it starts from (the checkpoint's, or empty).
        state: &'a State,
    },
    /// A message was not used (it is counted under its reason).
    Rejected {
        /// Its topic.
        topic: &'a str,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// Why.
        rejection: &'a Rejection,
    },
    /// A snapshot was built and handed to the sink.
    Published {
        /// The snapshot.
        snapshot: &'a BuiltSnapshot,
        /// Time to aggregate, build and sign it.
        build: Duration,
    },
    /// Scale-out: this instance's shard of a boundary was written.
    Sharded {
        /// The boundary.
        as_of: Timestamp,
        /// The file.
        path: &'a std::path::Path,
        /// Rows per entity kind.
        rows: Vec<usize>,
        /// Size in bytes.
        bytes: usize,
        /// Time to aggregate and write it.
        took: Duration,
    },
    /// State and offsets were written.
    Checkpointed {
        /// Size in bytes.
        bytes: usize,
        /// Time it took.
        took: Duration,
    },
    /// Periodic progress (every few seconds).
    Progress {
        /// The state: its counts, event time, entities and held transactions.
        state: &'a State,
    },
    /// The features of a sampled transaction (see [`Config::feature_sample`]), one value per
    /// feature of the schema, as the exporter's training sets compute them.
    Features {
        /// The transaction's event time.
        time: Timestamp,
        /// Its features.
        values: &'a [f64],
    },
}

/// Where snapshots and reports go.
pub trait Sink {
    /// Publishes one snapshot (to every target); an error stops the run before it is
    /// checkpointed, so that the snapshot is published again after a restart.
    fn publish(&mut self, snapshot: &BuiltSnapshot) -> Result<(), String>;
    /// Takes a report (logging, metrics).
    fn report(&mut self, report: Report<'_>);
}

/// Why the exporter stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A topic is missing or has no partitions.
    #[error("topic {topic}: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A snapshot could not be built.
    #[error("building the snapshot as of {as_of}: {source}")]
    Build {
        /// Its as-of.
        as_of: Timestamp,
        /// The failure.
        source: ExportError,
    },
    /// A snapshot could not be published.
    #[error("publishing the snapshot as of {as_of}: {reason}")]
    Publish {
        /// Its as-of.
        as_of: Timestamp,
        /// The sink's reason.
        reason: String,
    },
    /// A shard could not be written.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// A bad option.
    #[error("{0}")]
    Config(String),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every partition went idle (`until_idle`).
    Idle,
    /// The next event was at or after `stop_at`.
    StopAt,
    /// Asked to stop (a signal).
    Asked,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Why it stopped.
    pub stopped: Stopped,
    /// Snapshots published (or, scale-out, shards written) in this run.
    pub published: usize,
    /// The counts (over every run since the first checkpoint).
    pub counts: Counts,
}

enum Item {
    Transaction(Transaction),
    Label(LabelEvent),
    Bad(Rejection),
}

struct Pending {
    offset: i64,
    item: Item,
}

impl Pending {
    fn time(&self) -> Option<Timestamp> {
        match &self.item {
            Item::Transaction(t) => Some(t.time),
            Item::Label(l) => Some(l.reported_at),
            Item::Bad(_) => None,
        }
    }
}

struct Source {
    topic: usize,
    partition: i32,
    next_offset: Option<i64>,
    queue: VecDeque<Pending>,
    // Since when the partition has been read to its end with nothing new (librdkafka's
    // partition EOF); `None` while there is more to read.
    caught_up: Option<Instant>,
    paused: bool,
}

impl Source {
    /// Caught up and quiet for `idle`: it no longer holds the watermark back.
    fn idle(&self, idle: Duration) -> bool {
        self.queue.is_empty() && self.caught_up.is_some_and(|since| since.elapsed() >= idle)
    }
}

/// Fetching of a partition stops above this many queued messages, and starts again below the
/// low mark: a partition far ahead of the others in event time cannot fill memory.
const PAUSE_ABOVE: usize = 50_000;
const RESUME_BELOW: usize = 10_000;

/// What a boundary produces.
enum Output<'a> {
    /// One exporter: a whole snapshot, built, signed and handed to the sink.
    Snapshot { signer: &'a SnapshotSigner, decisioning: &'a Decisioning<'a> },
    /// Scale-out: this instance's shard.
    Shard(&'a ScaleOut),
}

/// What a topic is read for.
#[derive(Clone, Copy)]
enum Role {
    /// Transactions, folded into these entity kinds.
    Transactions(KindSet),
    /// Labels.
    Labels,
}

/// Runs the exporter until `stop` is set, every partition is idle (`until_idle`) or `stop_at`
/// is reached, then writes a final checkpoint.
pub fn run(
    config: &Config,
    signer: &SnapshotSigner,
    decisioning: &Decisioning<'_>,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
) -> Result<Summary, RunError> {
    run_with(config, &Output::Snapshot { signer, decisioning }, sink, stop)
}

/// Runs one instance of a scale-out as [`run`] runs the exporter, except that it reads only its
/// partitions of the two transaction topics (and every label), and writes its shard at every
/// boundary instead of a snapshot (the assembler, `crate::assemble`, signs and publishes).
pub fn run_instance(
    config: &Config,
    scale_out: &ScaleOut,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
) -> Result<Summary, RunError> {
    let Instance { index, count } = scale_out.instance;
    if index >= count {
        return Err(RunError::Config(format!("instance {index}/{count}: I must be less than N")));
    }
    run_with(config, &Output::Shard(scale_out), sink, stop)
}

fn run_with(
    config: &Config,
    output: &Output<'_>,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
) -> Result<Summary, RunError> {
    let every = i64::try_from(config.every.as_secs()).unwrap_or(i64::MAX);
    if every <= 0 {
        return Err(RunError::Config("the snapshot interval must be at least one second".into()));
    }
    let schema = FeatureSchema::handbook();
    let scale_out = match output {
        Output::Shard(s) => Some(*s),
        Output::Snapshot { .. } => None,
    };
    let instance = scale_out.map(|s| (s.instance.index, s.instance.count));
    if scale_out.is_some() && schema.entities().len() != 2 {
        return Err(RunError::Config(
            "scale-out needs a schema of two entity kinds (customer, terminal)".into(),
        ));
    }
    let (mut state, mut position, resumed) = match checkpoint::load(&config.checkpoint_dir, &schema)? {
        Some((state, position)) => (state, position, true),
        None => (State::new(schema.clone()), Position { every, instance, ..Position::default() }, false),
    };
    if position.instance != instance {
        let name = |i: Option<(u32, u32)>| {
            i.map_or("a single exporter".to_string(), |(i, n)| format!("instance {i}/{n}"))
        };
        return Err(CheckpointError::Mismatch {
            path: checkpoint::path_in(&config.checkpoint_dir),
            found: name(position.instance),
            expected: name(instance),
        }
        .into());
    }
    if position.every != every {
        return Err(CheckpointError::Mismatch {
            path: checkpoint::path_in(&config.checkpoint_dir),
            found: format!("snapshots every {} s", position.every),
            expected: format!("every {every} s"),
        }
        .into());
    }
    // Transaction topics first: at equal times a transaction folds before a label, as in one
    // exporter.
    let (topics, roles): (Vec<&str>, Vec<Role>) = match scale_out {
        None => [
            (config.transactions.as_str(), Role::Transactions(KindSet::ALL)),
            (config.labels.as_str(), Role::Labels),
        ]
        .into_iter()
        .unzip(),
        Some(s) => [
            (config.transactions.as_str(), Role::Transactions(KindSet::only(0))),
            (s.by_terminal.as_str(), Role::Transactions(KindSet::only(1))),
            (config.labels.as_str(), Role::Labels),
        ]
        .into_iter()
        .unzip(),
    };
    if resumed
        && let Some((topic, _, _)) = position.offsets.iter().find(|(t, _, _)| !topics.contains(&t.as_str()))
    {
        return Err(CheckpointError::Mismatch {
            path: checkpoint::path_in(&config.checkpoint_dir),
            found: format!("topic {topic}"),
            expected: format!("topics {}", topics.join(", ")),
        }
        .into());
    }

    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        // Offsets live in the checkpoint; the group id only names the client.
        .set("group.id", "tollgate-exporter")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A checkpointed offset the broker no longer holds means lost input: stop with an error
        // rather than skip to what is left (a first start asks for the beginning explicitly).
        .set("auto.offset.reset", "error");
    for (k, v) in &config.kafka {
        client.set(k, v);
    }
    // One consumer per topic: librdkafka's end-of-partition events name the partition only.
    client.set("enable.partition.eof", "true");
    let consumers: Vec<BaseConsumer> = topics.iter().map(|_| client.create()).collect::<Result<_, _>>()?;
    let mut sources = Vec::new();
    let mut started = Vec::new();
    for (t, topic) in topics.iter().enumerate() {
        let consumer = &consumers[t];
        let mut assignment = TopicPartitionList::new();
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|m| m.name() == *topic)
            .filter(|m| m.error().is_none())
            .map(|m| m.partitions().len())
            .unwrap_or(0);
        if partitions == 0 {
            return Err(RunError::Topic {
                topic: topic.to_string(),
                reason: "does not exist or has no partitions".into(),
            });
        }
        if let (Some(s), Role::Transactions(_)) = (scale_out, roles[t])
            && partitions < s.instance.count as usize
        {
            return Err(RunError::Topic {
                topic: topic.to_string(),
                reason: format!(
                    "{partitions} partitions for {} instances: some instances would own none",
                    s.instance.count
                ),
            });
        }
        for p in 0..partitions as i32 {
            if let (Some(s), Role::Transactions(_)) = (scale_out, roles[t])
                && !s.instance.owns(p)
            {
                continue;
            }
            let stored =
                position.offsets.iter().find(|(name, q, _)| name == topic && *q == p).map(|&(_, _, o)| o);
            let offset = stored.map_or(Offset::Beginning, Offset::Offset);
            assignment.add_partition_offset(topic, p, offset)?;
            started.push((topic.to_string(), p, stored));
            sources.push(Source {
                topic: t,
                partition: p,
                next_offset: stored,
                queue: VecDeque::new(),
                caught_up: None,
                paused: false,
            });
        }
        consumer.assign(&assignment)?;
    }
    sink.report(Report::Started { resumed, partitions: started, state: &state });

    let mut published = 0;
    // An instance holds some entity kinds only: it cannot compute a transaction's features.
    let sample = if scale_out.is_some() { 0 } else { config.feature_sample };
    let (mut features, mut until_sample) = (vec![0.0; schema.len()], sample);
    let mut last_checkpoint = Instant::now();
    let mut last_progress = Instant::now();
    let save = |state: &State, position: &mut Position, sources: &[Source], sink: &mut dyn Sink| {
        position.offsets = sources
            .iter()
            .filter_map(|s| s.next_offset.map(|o| (topics[s.topic].to_string(), s.partition, o)))
            .collect();
        let began = Instant::now();
        let bytes = checkpoint::save(&config.checkpoint_dir, state, position)?;
        sink.report(Report::Checkpointed { bytes, took: began.elapsed() });
        Ok::<(), RunError>(())
    };

    let stopped = 'run: loop {
        if stop.load(Ordering::Relaxed) {
            break Stopped::Asked;
        }
        // Read what has arrived.
        for (t, consumer) in consumers.iter().enumerate() {
            let mut got = 0;
            while got < 20_000 {
                let timeout = if got == 0 { Duration::from_millis(10) } else { Duration::ZERO };
                let message = match consumer.poll(timeout) {
                    None => break,
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        if let Some(s) = sources.iter_mut().find(|s| s.topic == t && s.partition == p) {
                            s.caught_up.get_or_insert_with(Instant::now);
                        }
                        continue;
                    }
                    Some(message) => message?,
                };
                let p = message.partition();
                let Some(source) = sources.iter_mut().find(|s| s.topic == t && s.partition == p) else {
                    continue;
                };
                let payload = message.payload().unwrap_or_default();
                let item = match roles[t] {
                    Role::Transactions(_) => {
                        Transaction::decode(payload, &schema).map_or_else(Item::Bad, Item::Transaction)
                    }
                    Role::Labels => Label::decode(payload).map_or_else(Item::Bad, Item::Label),
                };
                source.queue.push_back(Pending { offset: message.offset(), item });
                source.caught_up = None;
                got += 1;
            }
        }
        for s in &mut sources {
            let pause = !s.paused && s.queue.len() > PAUSE_ABOVE;
            let resume = s.paused && s.queue.len() < RESUME_BELOW;
            if pause || resume {
                let mut list = TopicPartitionList::new();
                list.add_partition(topics[s.topic], s.partition);
                let consumer = &consumers[s.topic];
                if pause {
                    consumer.pause(&list)?
                } else {
                    consumer.resume(&list)?
                }
                s.paused = pause;
            }
        }

        // Fold in event-time order while no partition that may still deliver is empty.
        for _ in 0..100_000 {
            for s in &mut sources {
                while let Some(Pending { item: Item::Bad(_), .. }) = s.queue.front() {
                    if let Some(Pending { offset, item: Item::Bad(rejection) }) = s.queue.pop_front() {
                        state.count_rejection(&rejection);
                        let (topic, partition) = (topics[s.topic], s.partition);
                        sink.report(Report::Rejected { topic, partition, offset, rejection: &rejection });
                        s.next_offset = Some(offset + 1);
                    }
                }
            }
            // An empty partition that may still deliver holds the watermark back.
            let holding = sources.iter().any(|s| s.queue.is_empty() && !s.idle(config.idle));
            if holding {
                break;
            }
            let head = sources
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    s.queue.front().and_then(|p| p.time().map(|t| ((t, s.topic, s.partition, p.offset), i)))
                })
                .min();
            let Some(((time, _, _, _), i)) = head else { break };
            if config.stop_at.is_some_and(|at| time >= at) {
                break 'run Stopped::StopAt;
            }
            // Every boundary the watermark has passed: its snapshot, then a checkpoint.
            let boundary = *position.next_boundary.get_or_insert((time.0.div_euclid(every) + 1) * every);
            if time.0 >= boundary {
                let mut as_of = boundary;
                while time.0 >= as_of {
                    let began = Instant::now();
                    match output {
                        Output::Snapshot { signer, decisioning } => {
                            let tables = state.aggregates_as_of(Timestamp(as_of), signer.id_hash());
                            let snapshot = build_from_aggregates(
                                tables,
                                &schema,
                                Timestamp(as_of),
                                // Deterministic: a snapshot built again after a restart is the same bytes.
                                Timestamp(as_of),
                                state.data_range(),
                                signer,
                                decisioning,
                            )
                            .map_err(|source| RunError::Build { as_of: Timestamp(as_of), source })?;
                            let build = began.elapsed();
                            sink.publish(&snapshot)
                                .map_err(|reason| RunError::Publish { as_of: Timestamp(as_of), reason })?;
                            sink.report(Report::Published { snapshot: &snapshot, build });
                        }
                        Output::Shard(scale_out) => {
                            let rows = state.rows_as_of(Timestamp(as_of));
                            let shard = Shard {
                                as_of: Timestamp(as_of),
                                instance: scale_out.instance,
                                schema_hash: schema.hash(),
                                data_range: state.data_range(),
                                counts: state.counts().clone(),
                                rows,
                            };
                            let (path, bytes) = shard::write(&scale_out.shards, &shard)?;
                            let rows = shard.rows.iter().map(Vec::len).collect();
                            let took = began.elapsed();
                            let as_of = Timestamp(as_of);
                            sink.report(Report::Sharded { as_of, path: &path, rows, bytes, took });
                        }
                    }
                    published += 1;
                    as_of += every;
                    position.next_boundary = Some(as_of);
                    save(&state, &mut position, &sources, sink)?;
                    last_checkpoint = Instant::now();
                }
            }
            let source = &mut sources[i];
            let Some(pending) = source.queue.pop_front() else { break };
            let folded = match (&pending.item, roles[source.topic]) {
                (Item::Transaction(tx), Role::Transactions(kinds)) => {
                    if sample > 0 && tx.time >= state.clock() {
                        until_sample = until_sample.saturating_sub(1);
                        if until_sample == 0 {
                            until_sample = sample;
                            state.features_of(tx, &mut features);
                            sink.report(Report::Features { time: tx.time, values: &features });
                        }
                    }
                    state.fold_transaction_into(tx, kinds)
                }
                (Item::Label(label), _) => state.fold_label(label),
                _ => Ok(()),
            };
            match folded {
                // Scale-out: another instance holds the transaction (or nobody does).
                Err(rejection) if scale_out.is_some() && rejection.reason == Reason::UnknownTransaction => {
                    state.count_not_held_here();
                }
                Ok(()) => {}
                Err(rejection) => {
                    state.count_rejection(&rejection);
                    let (topic, partition) = (topics[source.topic], source.partition);
                    sink.report(Report::Rejected {
                        topic,
                        partition,
                        offset: pending.offset,
                        rejection: &rejection,
                    });
                }
            }
            source.next_offset = Some(pending.offset + 1);
            if last_checkpoint.elapsed() >= config.checkpoint_every {
                save(&state, &mut position, &sources, sink)?;
                last_checkpoint = Instant::now();
            }
        }
        if config.until_idle && sources.iter().all(|s| s.idle(config.idle)) {
            break Stopped::Idle;
        }
        if last_checkpoint.elapsed() >= config.checkpoint_every {
            save(&state, &mut position, &sources, sink)?;
            last_checkpoint = Instant::now();
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            sink.report(Report::Progress { state: &state });
            last_progress = Instant::now();
        }
    };
    save(&state, &mut position, &sources, sink)?;
    Ok(Summary { stopped, published, counts: state.counts().clone() })
}
