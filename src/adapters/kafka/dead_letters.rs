//! The dead-letter topic: the message as it came (key, value, headers) plus headers that
//! say why and where from. Every send is awaited until the broker acknowledges it.

use std::borrow::Cow;
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use metrics::counter;
use sha2::{Digest, Sha256};

use super::metrics::{PRODUCER_SENDS, Producer, SendResult};
use crate::domain::message::DeadLetter;
use crate::domain::metrics::Label;
use crate::domain::ports::{DeadLetterError, DeadLetterSink};

/// Cheap to clone: the producer is shared.
#[derive(Clone)]
pub struct KafkaDeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl KafkaDeadLetters {
    pub fn new(kafka: &super::Connection, topic: &str) -> anyhow::Result<Self> {
        let producer = kafka
            .producer_config()
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

// A letter too large to publish goes out truncated (`x-dlq-truncated`): its payload is
// replaced by a JSON note of the original's size and SHA-256, its key (when over 1 KiB) by
// the key's SHA-256, and its original headers dropped.

/// Keys above this are replaced by their hash in a truncated letter.
const MAX_TRUNCATED_KEY: usize = 1024;

/// Whether a send failed because the message is too large for the producer or the topic:
/// sending it again unchanged fails the same way.
fn too_large(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

impl KafkaDeadLetters {
    async fn send_one(&self, letter: &DeadLetter<'_>, truncated: bool) -> Result<(), KafkaError> {
        let m = letter.message;
        let headers = letter.headers(truncated).iter().fold(
            OwnedHeaders::new_with_capacity(m.headers.len() + 7),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: value.as_deref(),
                })
            },
        );
        let (payload, key) = if truncated {
            let payload = m.payload.as_ref().map(|p| {
                serde_json::json!({
                    "truncated": true,
                    "bytes": p.len(),
                    "sha256": hex::encode(Sha256::digest(p)),
                })
                .to_string()
                .into_bytes()
            });
            let key = m.key.as_ref().map(|k| {
                if k.len() > MAX_TRUNCATED_KEY {
                    hex::encode(Sha256::digest(k)).into_bytes()
                } else {
                    k.clone()
                }
            });
            (payload.map(Cow::Owned), key.map(Cow::Owned))
        } else {
            (
                m.payload.as_deref().map(Cow::Borrowed),
                m.key.as_deref().map(Cow::Borrowed),
            )
        };
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(payload) = &payload {
            record = record.payload(payload.as_ref());
        }
        if let Some(key) = &key {
            record = record.key(key.as_ref());
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

impl DeadLetterSink for KafkaDeadLetters {
    async fn send(&self, letters: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
        let results = join_all(letters.iter().map(|l| self.send_one(l, false))).await;
        let mut failed = Vec::new();
        let mut too_big = Vec::new();
        for (letter, result) in letters.iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(e) if too_large(&e) => too_big.push(letter),
                Err(e) => failed.push(e.to_string()),
            }
        }
        // A permanent refusal must not be retried forever: the letter goes out truncated.
        let mut truncated = 0;
        for result in join_all(too_big.iter().map(|l| self.send_one(l, true))).await {
            match result {
                Ok(()) => truncated += 1,
                Err(e) => failed.push(e.to_string()),
            }
        }
        if truncated > 0 {
            tracing::warn!(
                truncated,
                "dead letters too large to publish were sent truncated"
            );
        }
        let whole = letters.len() - failed.len() - truncated;
        for (result, n) in [
            (SendResult::Ok, whole),
            (SendResult::Truncated, truncated),
            (SendResult::Error, failed.len()),
        ] {
            let producer = Producer::DeadLetters.as_str();
            counter!(PRODUCER_SENDS, "producer" => producer, "result" => result.as_str())
                .increment(n as u64);
        }
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
