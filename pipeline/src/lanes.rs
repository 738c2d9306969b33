//! Scale-out lanes and group membership: a [`Lane`] is a state with the input it reflects (the
//! single exporter's whole state, or one partition of a transaction topic), opened from its
//! checkpoint; a group member's transaction consumers carry a [`MemberContext`] whose rebalance
//! callback opens the lanes of assigned partitions and leaves the [`Change`]s for the loop.

use crate::checkpoint::{self, CheckpointError, Position};
use crate::run::RunError;
use crate::shard::Lane as ShardLane;
use crate::state::{KindSet, State};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use scorer::features::FeatureSchema;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A state and the input it reflects, checkpointed together: the single exporter's whole state,
/// or, in a scale-out, one lane (one partition of a transaction topic, its kind's entities).
pub(crate) struct Lane {
    /// Scale-out: the topic (index), the partition and the shard lane; `None` for the single
    /// exporter.
    pub(crate) id: Option<(usize, i32, ShardLane)>,
    pub(crate) kinds: KindSet,
    pub(crate) state: State,
    pub(crate) position: Position,
    /// Per label partition, the first offset this lane folds (`None`: from the beginning); the
    /// labels before it are in its state already.
    pub(crate) label_from: Vec<Option<i64>>,
    /// Whether it has been following the labels consumer (it has seen every label before the
    /// consumer's position); a lane just opened has not.
    pub(crate) following: bool,
    /// Its checkpoint directory.
    pub(crate) dir: PathBuf,
}

impl Lane {
    /// Whether the label at `offset` of label partition `partition` is still to be folded here.
    pub(crate) fn takes_label(&self, partition: i32, offset: i64) -> bool {
        let from = usize::try_from(partition).ok().and_then(|q| self.label_from.get(q)).copied().flatten();
        from.is_none_or(|from| offset >= from)
    }

    /// Whether this lane is partition `partition` of topic `topic` (the single exporter's lane is
    /// every partition).
    pub(crate) fn is(&self, topic: usize, partition: i32) -> bool {
        self.id.is_none_or(|(t, p, _)| t == topic && p == partition)
    }
}

/// The topics and schema a lane is opened with.
pub(crate) struct Layout {
    pub(crate) topics: Vec<String>,
    pub(crate) labels: usize,
    pub(crate) label_partitions: usize,
    pub(crate) schema: FeatureSchema,
    pub(crate) every: i64,
}

impl Layout {
    /// Opens a lane from its checkpoint in `dir`, or empty if there is none; `(lane, resumed)`.
    pub(crate) fn open(
        &self,
        dir: PathBuf,
        id: Option<(usize, i32, ShardLane)>,
        kinds: KindSet,
    ) -> Result<(Lane, bool), RunError> {
        let expected = id.map(|(t, p, _)| (self.topics[t].clone(), p));
        let (state, position, resumed) = match checkpoint::load(&dir, &self.schema)? {
            Some((state, position)) => (state, position, true),
            None => {
                let position = Position { every: self.every, lane: expected.clone(), ..Position::default() };
                (State::new(self.schema.clone()), position, false)
            }
        };
        let mismatch = |found: String, expected: String| CheckpointError::Mismatch {
            path: checkpoint::path_in(&dir),
            found,
            expected,
        };
        let name = |lane: &Option<(String, i32)>| {
            lane.as_ref().map_or("a single exporter".to_string(), |(t, p)| format!("partition {p} of {t}"))
        };
        if position.lane != expected {
            return Err(mismatch(name(&position.lane), name(&expected)).into());
        }
        if position.every != self.every {
            let found = format!("snapshots every {} s", position.every);
            return Err(mismatch(found, format!("every {} s", self.every)).into());
        }
        let label_topic = &self.topics[self.labels];
        let own = |topic: &str| {
            topic == label_topic
                || id.map_or(self.topics.iter().any(|t| t == topic), |(t, _, _)| self.topics[t] == topic)
        };
        if let Some((topic, _, _)) = position.offsets.iter().find(|(t, _, _)| !own(t)) {
            let expected =
                id.map_or(self.topics.join(", "), |(t, _, _)| format!("{}, {label_topic}", self.topics[t]));
            return Err(mismatch(format!("topic {topic}"), format!("topics {expected}")).into());
        }
        let label_from =
            (0..self.label_partitions as i32).map(|q| position.offset_of(label_topic, q)).collect();
        Ok((Lane { id, kinds, state, position, label_from, following: false, dir }, resumed))
    }
}

/// What a group member's rebalance callback leaves for the loop. Members rebalance
/// cooperatively (`cooperative-sticky`): a change names only the partitions that move.
pub(crate) enum Change {
    /// Partitions of topic `topic` assigned, their lanes opened and the consumer assigned at their
    /// offsets: `(lane, resumed)`.
    Assigned { topic: usize, lanes: Vec<(Lane, bool)> },
    /// Partitions taken away (the consumer no longer reads them).
    Revoked { topic: usize, partitions: Vec<i32> },
    /// A rebalance could not be followed (the loop stops with this error).
    Failed(RunError),
}

/// A transaction topic's group membership: what its rebalance callback needs.
pub(crate) struct Membership {
    pub(crate) topic: usize,
    pub(crate) kind: u32,
    pub(crate) partitions: u32,
    pub(crate) layout: Arc<Layout>,
    pub(crate) dir: PathBuf,
    pub(crate) changes: Arc<Mutex<Vec<Change>>>,
}

impl Membership {
    /// Opens the lanes of the assigned partitions and assigns the consumer at their offsets.
    fn assign(&self, consumer: &BaseConsumer<MemberContext>, assigned: &TopicPartitionList) -> Change {
        let topic = &self.layout.topics[self.topic];
        let mut lanes = Vec::new();
        let mut list = TopicPartitionList::new();
        for element in assigned.elements() {
            let p = element.partition();
            let lane = ShardLane { kind: self.kind, partition: p as u32, partitions: self.partitions };
            if !(0..self.partitions as i32).contains(&p) {
                let reason = format!(
                    "partition {p} assigned, the topic had {} partitions at start: restart the instances after \
                     repartitioning",
                    self.partitions
                );
                return Change::Failed(RunError::Topic { topic: topic.clone(), reason });
            }
            let dir = checkpoint::lane_dir(&self.dir, topic, p);
            let opened =
                self.layout.open(dir, Some((self.topic, p, lane)), KindSet::only(self.kind as usize));
            let (lane, resumed) = match opened {
                Ok(opened) => opened,
                Err(e) => return Change::Failed(e),
            };
            let stored = lane.position.offset_of(topic, p);
            if let Err(e) =
                list.add_partition_offset(topic, p, stored.map_or(Offset::Beginning, Offset::Offset))
            {
                return Change::Failed(e.into());
            }
            lanes.push((lane, resumed));
        }
        // Cooperative: `assigned` holds the added partitions only; eager: the whole assignment.
        let done = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(&list),
            _ => consumer.assign(&list),
        };
        match done {
            Ok(()) => Change::Assigned { topic: self.topic, lanes },
            Err(e) => Change::Failed(e.into()),
        }
    }
}

/// The consumers' context: a group member's transaction consumers follow rebalances; the others
/// (the single exporter's, the labels') are assigned by hand.
pub(crate) struct MemberContext(pub(crate) Option<Membership>);

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let Some(member) = &self.0 else { return };
        let change = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => member.assign(consumer, partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let done = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_unassign(partitions),
                    _ => consumer.unassign(),
                };
                match done {
                    Ok(()) => Change::Revoked {
                        topic: member.topic,
                        partitions: partitions.elements().iter().map(|e| e.partition()).collect(),
                    },
                    Err(e) => Change::Failed(e.into()),
                }
            }
            other => {
                let _ = consumer.unassign();
                let topic = member.layout.topics[member.topic].clone();
                Change::Failed(RunError::Topic { topic, reason: format!("rebalance failed: {other:?}") })
            }
        };
        // A poisoned lock means the loop panicked: nobody is left to read the change.
        if let Ok(mut changes) = member.changes.lock() {
            changes.push(change);
        }
    }
}
