//! `order-svc redrive`'s Kafka side: the dead-letter topic read from its beginning to the
//! end it had when the run started (no consumer group: nothing is committed, and running
//! twice reads the same letters), and the originals sent back to the orders topic.
//!
//! Where a partition ends is not taken on one answer of the broker's: some brokers answer a
//! wrong end offset (tansu's memory storage says 1 for every partition, see the README's
//! "Broker"). Each partition is read until the broker says there is nothing more (partition
//! EOF). The end offset asked at start only tells letters that were there before the run from
//! letters written during it (by `serve`, setting aside again what this run sends back):
//! a letter at or past it counts only if it was set aside before the run began, and then the
//! broker's answer is shown wrong and said so.

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
    /// The partitions not read to their end yet, with the end the broker gave at start.
    ends: HashMap<i32, i64>,
    /// Partitions whose end offset at start proved wrong (said once each).
    wrong_ends: std::collections::HashSet<i32>,
    /// When the run began: letters set aside later are this run's own echoes.
    started: chrono::DateTime<chrono::Utc>,
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
            // The end of a partition is where the broker says there is nothing more.
            .set("enable.partition.eof", "true")
            .create()
            .context("cannot create the Kafka consumer")?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        let started = chrono::Utc::now();
        for p in partitions {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("cannot read where {topic} partition {p} ends"))?;
            // Every partition, from its beginning, whatever the broker says it holds.
            assignment.add_partition_offset(topic, p, Offset::Beginning)?;
            ends.insert(p, high);
        }
        consumer
            .assign(&assignment)
            .with_context(|| format!("cannot read {topic}"))?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            ends,
            wrong_ends: std::collections::HashSet::new(),
            started,
        })
    }

    /// Partitions whose end offset the broker gave wrong at start.
    pub fn wrong_ends(&self) -> usize {
        self.wrong_ends.len()
    }

    /// The next letter, or `None` once every partition is read to where it ended at start.
    pub async fn next(&mut self) -> anyhow::Result<Option<Letter>> {
        loop {
            if self.ends.is_empty() {
                return Ok(None);
            }
            let received = tokio::time::timeout(SILENCE, self.consumer.recv())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "nothing read from {} for {} s, with {} partition(s) not read to their end",
                        self.topic,
                        SILENCE.as_secs(),
                        self.ends.len()
                    )
                })?;
            let message = match received {
                Err(KafkaError::PartitionEOF(partition)) => {
                    self.ends.remove(&partition);
                    continue;
                }
                other => other.with_context(|| format!("cannot read {}", self.topic))?,
            };
            let partition = message.partition();
            let Some(&end) = self.ends.get(&partition) else {
                continue;
            };
            let letter = letter(&message);
            if message.offset() < end {
                return Ok(Some(letter));
            }
            // Past the end given at start: a letter of this run's (skipped), or one that was
            // there all along and the broker's end was wrong (read, and said).
            let before_run = letter.set_aside_at.is_some_and(|at| at <= self.started);
            if before_run {
                if self.wrong_ends.insert(partition) {
                    tracing::warn!(
                        topic = %self.topic, partition, said = end, read = message.offset(),
                        "the broker's end offset of this partition was wrong; reading it to its end"
                    );
                }
                return Ok(Some(letter));
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
