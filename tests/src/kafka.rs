//! Reading back what a test published to a Kafka topic (librdkafka's mock cluster or any broker).

use anyhow::Result;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Every message of `topic`'s `partitions` from the beginning: polls until `expected` arrived (at
/// most 30 s), then until the topic stays quiet for 500 ms, so that extra messages are returned
/// too and the caller can see them.
pub fn read_topic(brokers: &str, topic: &str, partitions: i32, expected: usize) -> Result<Vec<OwnedMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("tollgate-tests-{topic}"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while messages.len() < expected && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            messages.push(m?.detach());
        }
    }
    while let Some(m) = consumer.poll(Duration::from_millis(500)) {
        messages.push(m?.detach());
    }
    Ok(messages)
}
