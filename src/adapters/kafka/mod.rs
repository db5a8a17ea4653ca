//! Kafka through rdkafka: the consumer that drives ingest, the dead-letter publisher, the
//! order publisher of `produce`, and topic administration.

pub mod consumer;
pub mod dead_letters;
pub mod producer;

use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

/// Settings every client shares.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "order-svc")
        // librdkafka logs through our subscriber at its own levels; keep it to real problems.
        .set("log_level", "4");
    config
}

/// A producer that waits for every in-sync replica and never writes a message twice when it
/// retries: what both the dead-letter sink and `produce` need.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000")
        // Above the default 1 MB: an order over INGEST_MAX_MESSAGE_BYTES must still reach the
        // dead-letter topic unchanged (and `produce` must be able to send one to test it).
        .set("message.max.bytes", MAX_MESSAGE_BYTES);
    config
}

/// Largest message our producers send, and the `max.message.bytes` of topics we create.
const MAX_MESSAGE_BYTES: &str = "16777216";

/// Creates the topics that do not exist yet, with `partitions` partitions and one replica
/// (a development default: production clusters should create their topics themselves).
/// Brokers such as tansu do not create topics on first use.
pub async fn ensure_topics(brokers: &str, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .context("cannot create the Kafka admin client")?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| format!("cannot reach Kafka at {brokers} (KAFKA_BROKERS)"))?;
    let missing: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|t| {
            !metadata
                .topics()
                .iter()
                .any(|m| m.name() == **t && m.error().is_none())
        })
        .map(|t| {
            NewTopic::new(t, partitions, TopicReplication::Fixed(1))
                .set("max.message.bytes", MAX_MESSAGE_BYTES)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .create_topics(&missing, &options)
        .await
        .context("cannot create Kafka topics")?
    {
        match result {
            Ok(topic) => tracing::info!(topic, partitions, "created Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create Kafka topic {topic}: {code}"),
        }
    }
    Ok(())
}
