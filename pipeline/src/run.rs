//! The always-on loop: read both topics' partitions (assigned by hand at the checkpoint's
//! offsets), merge them by event time, fold every event into the [`State`](crate::State), publish a signed
//! snapshot at every boundary the watermark passes, and checkpoint state and offsets together.
//! As one member of a scale-out consumer group ([`run_instance`]) it reads the partitions Kafka
//! assigns it, keeps one state per partition (a lane), checkpoints each lane where every instance
//! can load it, and writes a shard per lane instead of a snapshot.

use crate::checkpoint::{self, CheckpointError};
use crate::lanes::{Change, Lane, Layout, MemberContext, Membership};
use crate::message::{Label, LabelEvent, Reason, Rejection, Transaction};
use crate::shard::{self, Shard, ShardError};
use crate::state::{Counts, KindSet, Status};
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
use std::sync::{Arc, Mutex};
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
    /// The directory of the checkpoint file; in a scale-out, the directory every instance of the
    /// group shares, with one checkpoint per lane (`lanes/<topic>/<partition>/`).
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
    /// The feature schema: the state's aggregates, the snapshots' tables and the sampled features.
    pub schema: FeatureSchema,
}

/// Scale-out: this process is one member of a consumer group whose instances share the entities.
#[derive(Clone, Debug)]
pub struct ScaleOut {
    /// The consumer group's name. Kafka assigns the partitions of both transaction topics among
    /// the running members (groups `<group>.<topic>`, one per topic) and moves them when a member
    /// joins, leaves or stops answering; the new owner of a partition loads its lane's checkpoint
    /// from the shared checkpoint directory and goes on from its offsets.
    pub group: String,
    /// The same transactions as `Config::transactions`, keyed by terminal id: the terminal kind
    /// is folded from it (the customer kind from `Config::transactions`).
    pub by_terminal: String,
    /// Shards are written under this directory (`<as_of>/k<kind>-p<partition>-of-<P>.shard`).
    pub shards: PathBuf,
}

/// What the loop tells its caller, as it happens.
#[derive(Debug)]
pub enum Report<'a> {
    /// The inputs are assigned; `resumed` when a checkpoint was loaded.
    Started {
        /// A checkpoint was loaded.
        resumed: bool,
        /// Partitions and their start offsets (`None`: from the beginning); in a scale-out none
        /// yet (the group assigns them: [`Report::Rebalanced`]).
        partitions: Vec<(String, i32, Option<i64>)>,
        /// What the state it starts from holds (the checkpoint's, or nothing).
        status: Status,
    },
    /// Scale-out: the group moved partitions to or from this instance.
    Rebalanced {
        /// Partitions taken over, with the offset each goes on from (`None`: the beginning) and
        /// whether its lane's checkpoint was loaded.
        assigned: Vec<(String, i32, Option<i64>, bool)>,
        /// Partitions given up (their lanes checkpointed first).
        revoked: Vec<(String, i32)>,
        /// What the lanes held now hold.
        status: Status,
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
        /// The state (all lanes together): its counts, event time, entities and held
        /// transactions.
        status: Status,
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
    /// The counts (over every run since the first checkpoint; in a scale-out, of the lanes held
    /// at the end plus the labels not held here in this run).
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
    // A transaction partition's lane (index into the lanes); unused for labels.
    lane: usize,
    next_offset: Option<i64>,
    queue: VecDeque<Pending>,
    // Since when the partition has been read to its end with nothing new (librdkafka's
    // partition EOF); `None` while there is more to read.
    caught_up: Option<Instant>,
    paused: bool,
}

impl Source {
    fn new(topic: usize, partition: i32, next_offset: Option<i64>) -> Source {
        Source {
            topic,
            partition,
            lane: 0,
            next_offset,
            queue: VecDeque::new(),
            caught_up: None,
            paused: false,
        }
    }

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
    /// Scale-out: each lane's shard.
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

/// Runs one member of a scale-out group as [`run`] runs the exporter, except that it reads the
/// partitions of the two transaction topics that the group assigns it (and every label), keeps
/// a state per partition checkpointed in the shared directory, and writes each one's shard at
/// every boundary instead of a snapshot (the assembler, `crate::assemble`, signs and publishes).
pub fn run_instance(
    config: &Config,
    scale_out: &ScaleOut,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
) -> Result<Summary, RunError> {
    if scale_out.group.is_empty() {
        return Err(RunError::Config("the consumer group's name is empty".into()));
    }
    run_with(config, &Output::Shard(scale_out), sink, stop)
}

/// The partition count of `topic`.
fn partitions_of(consumer: &BaseConsumer<MemberContext>, topic: &str) -> Result<usize, RunError> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|m| m.name() == topic)
        .filter(|m| m.error().is_none())
        .map(|m| m.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        return Err(RunError::Topic {
            topic: topic.to_string(),
            reason: "does not exist or has no partitions".into(),
        });
    }
    Ok(partitions)
}

/// Writes lane `i`'s checkpoint: its state, its transaction partitions' next offsets and, per
/// label partition, the next label it has not folded.
fn save_lane(
    lanes: &mut [Lane],
    i: usize,
    sources: &[Source],
    layout: &Layout,
    sink: &mut dyn Sink,
) -> Result<(), RunError> {
    let lane = &mut lanes[i];
    lane.position.offsets = sources
        .iter()
        .filter_map(|s| {
            let next = if s.topic == layout.labels {
                let from =
                    usize::try_from(s.partition).ok().and_then(|q| lane.label_from.get(q)).copied().flatten();
                from.max(s.next_offset)
            } else if s.lane == i {
                s.next_offset
            } else {
                None
            };
            next.map(|o| (layout.topics[s.topic].clone(), s.partition, o))
        })
        .collect();
    let began = Instant::now();
    let bytes = checkpoint::save(&lane.dir, &lane.state, &lane.position)?;
    sink.report(Report::Checkpointed { bytes, took: began.elapsed() });
    Ok(())
}

/// Points each transaction source at its lane (after lanes came or went).
fn link_lanes(sources: &mut [Source], lanes: &[Lane], labels: usize) {
    for s in sources.iter_mut().filter(|s| s.topic != labels) {
        s.lane = lanes.iter().position(|l| l.is(s.topic, s.partition)).unwrap_or(usize::MAX);
    }
}

/// Makes the labels consumer read from the earliest label some lane has not folded: at the start,
/// and when a lane loaded from a checkpoint is behind the others. The lanes already past a label
/// skip it when it comes again.
fn align_labels(
    consumer: &BaseConsumer<MemberContext>,
    sources: &mut [Source],
    lanes: &mut [Lane],
    layout: &Layout,
    assigned: &mut bool,
) -> Result<(), RunError> {
    if lanes.is_empty() {
        return Ok(());
    }
    let want = |q: usize| lanes.iter().map(|l| l.label_from.get(q).copied().flatten()).min().flatten();
    let labels = |s: &&mut Source| s.topic == layout.labels;
    let behind = sources.iter_mut().filter(labels).any(|s| want(s.partition as usize) < s.next_offset);
    if *assigned && !behind {
        // Every new lane starts at or after the consumer's position: it follows from here.
        lanes.iter_mut().for_each(|l| l.following = true);
        return Ok(());
    }
    let wanted: Vec<Option<i64>> = (0..layout.label_partitions).map(want).collect();
    let mut list = TopicPartitionList::new();
    for s in sources.iter_mut().filter(labels) {
        let q = s.partition as usize;
        // A lane that has been following has seen the labels up to the consumer's position; a
        // lane just opened starts at its own.
        for lane in lanes.iter_mut().filter(|l| l.following) {
            if let Some(from) = lane.label_from.get_mut(q) {
                *from = (*from).max(s.next_offset);
            }
        }
        let from = if *assigned { wanted[q].min(s.next_offset) } else { wanted[q] };
        s.next_offset = from;
        s.queue.clear();
        s.caught_up = None;
        s.paused = false;
        list.add_partition_offset(
            &layout.topics[layout.labels],
            s.partition,
            from.map_or(Offset::Beginning, Offset::Offset),
        )?;
    }
    consumer.assign(&list)?;
    *assigned = true;
    lanes.iter_mut().for_each(|l| l.following = true);
    Ok(())
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
    let schema = &config.schema;
    let scale_out = match output {
        Output::Shard(s) => Some(*s),
        Output::Snapshot { .. } => None,
    };
    if scale_out.is_some() && schema.entities().len() != 2 {
        return Err(RunError::Config(
            "scale-out needs a schema of two entity kinds (customer, terminal)".into(),
        ));
    }
    // A checkpoint directory holds one single exporter's checkpoint or a group's lanes, not both.
    let dir = &config.checkpoint_dir;
    let (single_file, lanes_dir) = (checkpoint::path_in(dir), dir.join(checkpoint::LANES_DIR));
    let other = match scale_out {
        None if lanes_dir.exists() => Some((lanes_dir, "scale-out lanes", "a single exporter")),
        Some(_) if single_file.exists() => Some((single_file, "a single exporter", "a scale-out instance")),
        _ => None,
    };
    if let Some((path, found, expected)) = other {
        return Err(CheckpointError::Mismatch { path, found: found.into(), expected: expected.into() }.into());
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
    let label_t = topics.len() - 1;

    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        // Offsets live in the checkpoints; the group id only names the client (or, in a
        // scale-out, the group that shares the partitions).
        .set("group.id", "tollgate-exporter")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A checkpointed offset the broker no longer holds means lost input: stop with an error
        // rather than skip to what is left (a first start asks for the beginning explicitly).
        .set("auto.offset.reset", "error");
    // Group members rebalance cooperatively unless told otherwise: a member keeps the lanes it
    // still owns when another joins or leaves; only the partitions that move are revoked and
    // reopened. (Consumers assigned by hand never join a group; the setting does not touch them.)
    client.set("partition.assignment.strategy", "cooperative-sticky");
    for (k, v) in &config.kafka {
        client.set(k, v);
    }
    // One consumer per topic: librdkafka's end-of-partition events name the partition only.
    client.set("enable.partition.eof", "true");
    let probe: BaseConsumer<MemberContext> = client.create_with_context(MemberContext(None))?;
    let partitions: Vec<usize> = topics.iter().map(|t| partitions_of(&probe, t)).collect::<Result<_, _>>()?;
    drop(probe);
    let layout = Arc::new(Layout {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        labels: label_t,
        label_partitions: partitions[label_t],
        schema: schema.clone(),
        every,
    });
    let changes = Arc::new(Mutex::new(Vec::new()));
    let mut consumers = Vec::new();
    for (t, topic) in topics.iter().enumerate() {
        let member = match (scale_out, roles[t]) {
            (Some(s), Role::Transactions(kinds)) => {
                client.set("group.id", format!("{}.{topic}", s.group));
                let kind = (0..schema.entities().len()).find(|&k| kinds.contains(k)).unwrap_or(0) as u32;
                Some(Membership {
                    topic: t,
                    kind,
                    partitions: partitions[t] as u32,
                    layout: layout.clone(),
                    dir: dir.clone(),
                    changes: changes.clone(),
                })
            }
            _ => {
                client.set("group.id", "tollgate-exporter");
                None
            }
        };
        let consumer: BaseConsumer<MemberContext> = client.create_with_context(MemberContext(member))?;
        consumers.push(consumer);
    }

    let mut lanes: Vec<Lane> = Vec::new();
    let mut sources: Vec<Source> =
        (0..partitions[label_t] as i32).map(|q| Source::new(label_t, q, None)).collect();
    let mut labels_assigned = false;
    let mut started = Vec::new();
    let mut resumed = false;
    match scale_out {
        None => {
            let (lane, loaded) = layout.open(dir.clone(), None, KindSet::ALL)?;
            resumed = loaded;
            let mut assignment = TopicPartitionList::new();
            for p in 0..partitions[0] as i32 {
                let stored = lane.position.offset_of(topics[0], p);
                assignment.add_partition_offset(
                    topics[0],
                    p,
                    stored.map_or(Offset::Beginning, Offset::Offset),
                )?;
                started.push((topics[0].to_string(), p, stored));
                sources.push(Source::new(0, p, stored));
            }
            started.extend(
                lane.label_from.iter().enumerate().map(|(q, &o)| (topics[label_t].to_string(), q as i32, o)),
            );
            consumers[0].assign(&assignment)?;
            lanes.push(lane);
        }
        Some(_) => {
            for (t, topic) in topics.iter().enumerate().take(label_t) {
                consumers[t].subscribe(&[topic])?;
            }
        }
    }
    link_lanes(&mut sources, &lanes, label_t);
    align_labels(&consumers[label_t], &mut sources, &mut lanes, &layout, &mut labels_assigned)?;
    // Labels of transactions no lane here holds, and bad label messages (scale-out: no lane's).
    let mut unlaned = Counts::default();
    let status = |lanes: &[Lane], unlaned: &Counts| {
        let mut status = Status::default();
        lanes.iter().for_each(|l| status.add(&l.state));
        status.counts.add(unlaned);
        status
    };
    sink.report(Report::Started { resumed, partitions: started, status: status(&lanes, &unlaned) });

    let mut published = 0;
    // A scale-out lane holds one entity kind: it cannot compute a transaction's features.
    let sample = if scale_out.is_some() { 0 } else { config.feature_sample };
    let (mut features, mut until_sample) = (vec![0.0; schema.len()], sample);
    let mut last_checkpoint = Instant::now();
    let mut last_progress = Instant::now();
    // The earliest next boundary of any lane (`i64::MIN`: to be worked out at the next event).
    let mut next_due = i64::MIN;
    let save_all = |lanes: &mut [Lane], sources: &[Source], sink: &mut dyn Sink| {
        (0..lanes.len()).try_for_each(|i| save_lane(lanes, i, sources, &layout, sink))
    };

    let stopped = 'run: loop {
        if stop.load(Ordering::Relaxed) {
            break Stopped::Asked;
        }
        // Read what has arrived (a group member's rebalances are served here too).
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
                        Transaction::decode(payload, schema).map_or_else(Item::Bad, Item::Transaction)
                    }
                    Role::Labels => Label::decode(payload).map_or_else(Item::Bad, Item::Label),
                };
                source.queue.push_back(Pending { offset: message.offset(), item });
                source.caught_up = None;
                got += 1;
            }
        }
        // What the group's rebalances changed: lanes given up (checkpointed, then dropped) and
        // lanes taken over (opened from their checkpoints by the callback).
        let news = changes.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default();
        if !news.is_empty() {
            let (mut assigned, mut revoked) = (Vec::new(), Vec::new());
            for change in news {
                match change {
                    Change::Failed(e) => return Err(e),
                    Change::Revoked { topic, partitions } => {
                        for p in partitions {
                            if let Some(i) = lanes.iter().position(|l| l.id.is_some() && l.is(topic, p)) {
                                save_lane(&mut lanes, i, &sources, &layout, sink)?;
                                lanes.remove(i);
                                sources.retain(|s| !(s.topic == topic && s.partition == p));
                                link_lanes(&mut sources, &lanes, label_t);
                            }
                            revoked.push((topics[topic].to_string(), p));
                        }
                    }
                    Change::Assigned { topic, lanes: opened } => {
                        for (lane, loaded) in opened {
                            let Some((_, p, _)) = lane.id else { continue };
                            // Taken again without a revoke in between: the opened lane matches
                            // the offsets the consumer was just assigned at.
                            lanes.retain(|l| !(l.id.is_some() && l.is(topic, p)));
                            sources.retain(|s| !(s.topic == topic && s.partition == p));
                            let stored = lane.position.offset_of(topics[topic], p);
                            sources.push(Source::new(topic, p, stored));
                            assigned.push((topics[topic].to_string(), p, stored, loaded));
                            lanes.push(lane);
                        }
                    }
                }
            }
            link_lanes(&mut sources, &lanes, label_t);
            align_labels(&consumers[label_t], &mut sources, &mut lanes, &layout, &mut labels_assigned)?;
            next_due = i64::MIN;
            sink.report(Report::Rebalanced { assigned, revoked, status: status(&lanes, &unlaned) });
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

        // Fold in event-time order while no partition that may still deliver is empty (a
        // group member with no partitions yet folds nothing).
        for _ in 0..if lanes.is_empty() { 0 } else { 100_000 } {
            for s in &mut sources {
                while let Some(Pending { item: Item::Bad(_), .. }) = s.queue.front() {
                    if let Some(Pending { offset, item: Item::Bad(rejection) }) = s.queue.pop_front() {
                        match lanes.get_mut(if s.topic == label_t { 0 } else { s.lane }) {
                            Some(lane) if lane.id.is_none() || s.topic != label_t => {
                                lane.state.count_rejection(&rejection)
                            }
                            _ => unlaned.reject(&rejection.reason),
                        }
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
            // Every boundary the watermark has passed: each lane's snapshot or shard. The single
            // exporter checkpoints after each snapshot (a restart does not publish it again); a
            // scale-out lane on the `checkpoint_every` timer only, since a shard written again is
            // the same file (one fsync per lane and boundary would dominate a catch-up replay).
            if time.0 >= next_due {
                next_due = i64::MAX;
                for l in 0..lanes.len() {
                    let lane = &mut lanes[l];
                    let mut as_of =
                        *lane.position.next_boundary.get_or_insert((time.0.div_euclid(every) + 1) * every);
                    if time.0 >= as_of {
                        while time.0 >= as_of {
                            emit(output, lane, schema, Timestamp(as_of), sink)?;
                            published += 1;
                            as_of += every;
                            lane.position.next_boundary = Some(as_of);
                        }
                        if scale_out.is_none() {
                            save_lane(&mut lanes, l, &sources, &layout, sink)?;
                            last_checkpoint = Instant::now();
                        }
                    }
                    next_due = next_due.min(as_of);
                }
            }
            let source = &mut sources[i];
            let Some(pending) = source.queue.pop_front() else { break };
            match &pending.item {
                Item::Transaction(tx) => {
                    // Sources come and go with their lanes: a source without one is a bug, not
                    // input to drop.
                    let Some(lane) = lanes.get_mut(source.lane) else {
                        let at = format!("{}[{}]", topics[source.topic], source.partition);
                        return Err(RunError::Config(format!("internal error: {at} is read for no lane")));
                    };
                    if sample > 0 && tx.time >= lane.state.clock() {
                        until_sample = until_sample.saturating_sub(1);
                        if until_sample == 0 {
                            until_sample = sample;
                            lane.state.features_of(tx, &mut features);
                            sink.report(Report::Features { time: tx.time, values: &features });
                        }
                    }
                    if let Err(rejection) = lane.state.fold_transaction_into(tx, lane.kinds) {
                        lane.state.count_rejection(&rejection);
                        let (topic, partition, offset) =
                            (topics[source.topic], source.partition, pending.offset);
                        sink.report(Report::Rejected { topic, partition, offset, rejection: &rejection });
                    }
                }
                Item::Label(label) => {
                    let (mut held, mut refused) = (false, None);
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        if !lane.takes_label(source.partition, pending.offset) {
                            continue;
                        }
                        match lane.state.fold_label(label) {
                            Ok(()) => held = true,
                            // Scale-out: another instance holds the transaction (or nobody does).
                            Err(r) if lane.id.is_some() && r.reason == Reason::UnknownTransaction => {}
                            Err(r) => refused = Some((l, r)),
                        }
                    }
                    match refused {
                        Some((l, rejection)) if !held => {
                            lanes[l].state.count_rejection(&rejection);
                            let (topic, partition, offset) =
                                (topics[source.topic], source.partition, pending.offset);
                            sink.report(Report::Rejected { topic, partition, offset, rejection: &rejection });
                        }
                        None if !held => unlaned.not_held_here += 1,
                        _ => {}
                    }
                }
                Item::Bad(_) => {}
            }
            source.next_offset = Some(pending.offset + 1);
            if last_checkpoint.elapsed() >= config.checkpoint_every {
                save_all(&mut lanes, &sources, sink)?;
                last_checkpoint = Instant::now();
            }
        }
        if config.until_idle && !lanes.is_empty() && sources.iter().all(|s| s.idle(config.idle)) {
            break Stopped::Idle;
        }
        if last_checkpoint.elapsed() >= config.checkpoint_every {
            save_all(&mut lanes, &sources, sink)?;
            last_checkpoint = Instant::now();
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            sink.report(Report::Progress { status: status(&lanes, &unlaned) });
            last_progress = Instant::now();
        }
    };
    save_all(&mut lanes, &sources, sink)?;
    Ok(Summary { stopped, published, counts: status(&lanes, &unlaned).counts })
}

/// A lane's output as of one boundary: the single exporter's snapshot (built, signed, published)
/// or a scale-out lane's shard.
fn emit(
    output: &Output<'_>,
    lane: &mut Lane,
    schema: &FeatureSchema,
    as_of: Timestamp,
    sink: &mut dyn Sink,
) -> Result<(), RunError> {
    let began = Instant::now();
    let state = &mut lane.state;
    match (output, lane.id) {
        (Output::Snapshot { signer, decisioning }, _) => {
            let tables = state.aggregates_as_of(as_of, signer.id_hash());
            // Created "at" its as-of: a snapshot built again after a restart is the same bytes.
            let snapshot =
                build_from_aggregates(tables, schema, as_of, as_of, state.data_range(), signer, decisioning)
                    .map_err(|source| RunError::Build { as_of, source })?;
            let build = began.elapsed();
            sink.publish(&snapshot).map_err(|reason| RunError::Publish { as_of, reason })?;
            sink.report(Report::Published { snapshot: &snapshot, build });
        }
        (Output::Shard(scale_out), Some((_, _, lane))) => {
            let shard = Shard {
                as_of,
                lane,
                schema_hash: schema.hash(),
                data_range: state.data_range(),
                counts: state.counts().clone(),
                rows: state.rows_as_of(as_of),
            };
            let (path, bytes) = shard::write(&scale_out.shards, &shard)?;
            let rows = shard.rows.iter().map(Vec::len).collect();
            sink.report(Report::Sharded { as_of, path: &path, rows, bytes, took: began.elapsed() });
        }
        (Output::Shard(_), None) => {}
    }
    Ok(())
}
