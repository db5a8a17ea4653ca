//! `order-svc redrive`'s Kafka side: the dead-letter topic read from its beginning to the
//! end it had when the run started (no consumer group: nothing is committed, and running
//! twice reads the same letters), and the originals sent back to the orders topic.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::DateTime;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::Connection;
use crate::domain::redrive::{Letter, Resend};

/// Longest wait for the next letter while some partition is not read to its end.
const SILENCE: Duration = Duration::from_secs(30);

pub struct DeadLetterReader {
    consumer: StreamConsumer,
    topic: String,
    /// The partitions not read to their end yet, with that end (the high watermark at start).
    ends: HashMap<i32, i64>,
}

impl DeadLetterReader {
    pub fn open(kafka: &Connection, topic: &str) -> anyhow::Result<Self> {
        let metadata = super::reach(kafka)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .with_context(|| format!("the dead-letter topic {topic} does not exist"))?;
        let mut config = kafka.client_config();
        let consumer: StreamConsumer = config
            .set("group.id", "order-svc-redrive")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .create()
            .context("cannot create the Kafka consumer")?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("cannot read where {topic} partition {p} ends"))?;
            if high > low {
                assignment.add_partition_offset(topic, p, Offset::Offset(low))?;
                ends.insert(p, high);
            }
        }
        consumer
            .assign(&assignment)
            .with_context(|| format!("cannot read {topic}"))?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            ends,
        })
    }

    /// The next letter, or `None` once every partition is read to where it ended at start.
    pub async fn next(&mut self) -> anyhow::Result<Option<Letter>> {
        loop {
            if self.ends.is_empty() {
                return Ok(None);
            }
            let message = tokio::time::timeout(SILENCE, self.consumer.recv())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "nothing read from {} for {} s, with {} partition(s) not read to their end",
                        self.topic,
                        SILENCE.as_secs(),
                        self.ends.len()
                    )
                })?
                .with_context(|| format!("cannot read {}", self.topic))?;
            let partition = message.partition();
            let Some(&end) = self.ends.get(&partition) else {
                continue;
            };
            if message.offset() + 1 >= end {
                self.ends.remove(&partition);
            }
            if message.offset() < end {
                return Ok(Some(letter(&message)));
            }
        }
    }
}

fn letter(message: &BorrowedMessage<'_>) -> Letter {
    Letter {
        set_aside_at: message
            .timestamp()
            .to_millis()
            .and_then(DateTime::from_timestamp_millis),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(super::consumer::copy_headers)
            .unwrap_or_default(),
    }
}

/// Sends originals back to the orders topic.
pub struct Resender {
    producer: FutureProducer,
    topic: String,
}

impl Resender {
    pub fn new(kafka: &Connection, topic: &str) -> anyhow::Result<Self> {
        Ok(Self {
            producer: kafka
                .producer_config()
                .create()
                .context("cannot create the Kafka producer")?,
            topic: topic.to_owned(),
        })
    }

    /// Queues one message (waiting for room when the client's queue is full): its delivery
    /// report comes through the future.
    pub async fn send(&self, resend: &Resend) -> Result<DeliveryFuture, KafkaError> {
        loop {
            match self.try_send(resend) {
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                other => return other,
            }
        }
    }

    fn try_send(&self, resend: &Resend) -> Result<DeliveryFuture, KafkaError> {
        let headers = resend.headers.iter().fold(
            OwnedHeaders::new_with_capacity(resend.headers.len()),
            |headers, (key, value)| {
                headers.insert(Header {
                    key: key.as_str(),
                    value: value.as_deref(),
                })
            },
        );
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(payload) = &resend.payload {
            record = record.payload(payload);
        }
        if let Some(key) = &resend.key {
            record = record.key(key);
        }
        self.producer.send_result(record).map_err(|(e, _)| e)
    }

    pub fn flush(&self) {
        use rdkafka::producer::Producer;
        if let Err(e) = self.producer.flush(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "the producer did not flush");
        }
    }
}
