//! Publishing orders (the `produce` subcommand): keyed by uid, stamped with the send time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::domain::message::PRODUCED_AT_HEADER;

pub struct OrderPublisher {
    producer: FutureProducer,
    topic: String,
}

impl OrderPublisher {
    pub fn new(kafka: &super::Connection, topic: &str) -> anyhow::Result<Self> {
        let producer = kafka
            .producer_config()
            .create()
            .context("cannot create the Kafka producer")?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Queues one message and returns the future of its delivery report. When librdkafka's
    /// queue is full this waits for room instead of failing.
    pub async fn enqueue(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<DeliveryFuture, KafkaError> {
        // With tracing on, each message starts a trace of its own (a producer span) and
        // carries it in `traceparent`, for the ingest that stores it to link to.
        let trace = if crate::adapters::trace::tracing_enabled() {
            let span = tracing::info_span!(
                "send order",
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.destination.name = %self.topic,
            );
            span.in_scope(crate::adapters::trace::current_context_headers)
        } else {
            Vec::new()
        };
        loop {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let stamp = now_ms.to_string();
            let mut headers = OwnedHeaders::new().insert(Header {
                key: PRODUCED_AT_HEADER,
                value: Some(stamp.as_bytes()),
            });
            for (name, value) in &trace {
                headers = headers.insert(Header {
                    key: name.as_str(),
                    value: Some(value.as_bytes()),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
                .payload(payload)
                .headers(headers);
            if let Some(key) = key {
                record = record.key(key);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
