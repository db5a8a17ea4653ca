//! The dead-letter topic: the message as it came (key, value, headers) plus headers that
//! say why and where from. Every send is awaited until the broker acknowledges it.

use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use metrics::counter;

use crate::domain::message::DeadLetter;
use crate::domain::metrics as m;
use crate::domain::ports::{DeadLetterError, DeadLetterSink};

pub const REASON: &str = "x-dlq-reason";
pub const DETAIL: &str = "x-dlq-detail";
pub const ORIGINAL_TOPIC: &str = "x-dlq-original-topic";
pub const ORIGINAL_PARTITION: &str = "x-dlq-original-partition";
pub const ORIGINAL_OFFSET: &str = "x-dlq-original-offset";
pub const ORIGINAL_TIMESTAMP: &str = "x-dlq-original-timestamp";

pub struct KafkaDeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl KafkaDeadLetters {
    pub fn new(brokers: &str, topic: &str) -> anyhow::Result<Self> {
        let producer = super::producer_config(brokers)
            .create()
            .context("cannot create the dead-letter producer")?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Waits for messages still in flight; called once at shutdown.
    pub fn flush(&self) {
        use rdkafka::producer::Producer;
        // Every dead letter was already acknowledged before its offset moved; this only
        // waits for stragglers, and must leave SIGTERM room to finish within 10 s.
        if let Err(e) = self.producer.flush(Duration::from_secs(2)) {
            tracing::warn!(error = %e, "dead-letter producer did not flush");
        }
    }
}

impl DeadLetterSink for KafkaDeadLetters {
    async fn send(&self, letters: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
        let sends = letters.iter().map(|letter| {
            let m = letter.message;
            let mut headers = OwnedHeaders::new_with_capacity(m.headers.len() + 6);
            for (key, value) in &m.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            let (partition, offset) = (m.partition.to_string(), m.offset.to_string());
            let timestamp = m.timestamp_ms.map(|t| t.to_string()).unwrap_or_default();
            for (key, value) in [
                (REASON, letter.reason),
                (DETAIL, letter.detail.as_str()),
                (ORIGINAL_TOPIC, m.topic.as_str()),
                (ORIGINAL_PARTITION, partition.as_str()),
                (ORIGINAL_OFFSET, offset.as_str()),
                (ORIGINAL_TIMESTAMP, timestamp.as_str()),
            ] {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(payload) = &m.payload {
                record = record.payload(payload.as_slice());
            }
            if let Some(key) = &m.key {
                record = record.key(key.as_slice());
            }
            self.producer.send(record, Duration::from_secs(30))
        });
        let failed: Vec<String> = join_all(sends)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(|(e, _)| e.to_string()))
            .collect();
        let ok = letters.len() - failed.len();
        counter!(m::PRODUCER_SENDS, "producer" => "dead_letters", "result" => "ok")
            .increment(ok as u64);
        counter!(m::PRODUCER_SENDS, "producer" => "dead_letters", "result" => "error")
            .increment(failed.len() as u64);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(DeadLetterError(anyhow::anyhow!(
                "{} of {} not acknowledged by topic {}: {}",
                failed.len(),
                letters.len(),
                self.topic,
                failed[0]
            )))
        }
    }
}
