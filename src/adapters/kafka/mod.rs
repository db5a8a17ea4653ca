//! Kafka through rdkafka: the consumer that drives ingest, the dead-letter publisher, the
//! order publisher of `produce`, and topic administration.

pub mod consumer;
pub mod dead_letters;
pub mod metrics;
pub mod producer;
pub mod redrive;
pub mod window;

use std::time::Duration;

use anyhow::Context;
use std::sync::Mutex;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

/// How every client of ours reaches the cluster: the bootstrap servers and the librdkafka
/// properties of the connection (security protocol, SASL, TLS files, and whatever else the
/// user passed through), already checked by [`Connection::check`].
#[derive(Clone, Default)]
pub struct Connection {
    pub brokers: String,
    /// librdkafka properties, applied after ours so that the user's word is the last.
    pub properties: Vec<(String, String)>,
}

/// Never prints property values: some are passwords.
impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.properties.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Connection")
            .field("brokers", &self.brokers)
            .field("properties", &names)
            .finish()
    }
}

/// A property librdkafka refused, told without its value.
#[derive(Debug, thiserror::Error)]
#[error("librdkafka property `{name}`: {why}")]
pub struct BadProperty {
    pub name: String,
    pub why: String,
}

impl Connection {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            properties: Vec::new(),
        }
    }

    /// Has librdkafka check every property (its name and its value) without connecting.
    pub fn check(&self) -> Result<(), BadProperty> {
        match self.client_config().create_native_config() {
            Ok(_) => Ok(()),
            Err(KafkaError::ClientConfig(_, why, name, value)) => Err(BadProperty {
                // librdkafka's message quotes the value: a password must not reach a log.
                why: if value.is_empty() {
                    why
                } else {
                    why.replace(&value, "****")
                },
                name,
            }),
            Err(e) => Err(BadProperty {
                name: String::new(),
                why: e.to_string(),
            }),
        }
    }

    /// Settings every client shares.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "order-svc")
            // librdkafka logs through our subscriber at its own levels; keep it to real
            // problems.
            .set("log_level", "4");
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }

    /// A producer that waits for every in-sync replica and never writes a message twice when
    /// it retries: what both the dead-letter sink and `produce` need.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        self.defaults(
            &mut config,
            &[
                ("linger.ms", "5"),
                ("compression.type", "lz4"),
                ("message.timeout.ms", "30000"),
                // Above the default 1 MB: an order over INGEST_MAX_MESSAGE_BYTES must still
                // reach the dead-letter topic unchanged (and `produce` must send one).
                ("message.max.bytes", MAX_MESSAGE_BYTES),
            ],
        );
        // Never the user's to change (settings refuse them).
        config.set("acks", "all").set("enable.idempotence", "true");
        config
    }

    /// What is weak in these settings, each said once per start by the command that
    /// connects: a password sent in clear, a certificate not checked.
    pub fn weaknesses(&self) -> Vec<&'static str> {
        let get = |name: &str| {
            self.properties
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let mut out = Vec::new();
        if get("security.protocol").as_deref() == Some("sasl_plaintext")
            && get("sasl.mechanism").as_deref() == Some("plain")
        {
            out.push(
                "KAFKA_SECURITY_PROTOCOL=sasl_plaintext with PLAIN sends the password in clear: \
                 use sasl_ssl",
            );
        }
        if get("enable.ssl.certificate.verification").as_deref() == Some("false") {
            out.push(
                "KAFKA_SSL_CERTIFICATE_VERIFICATION=false: the broker's certificate is not \
                 checked, anyone on the path can read and change the traffic",
            );
        }
        out
    }

    /// Says [`Self::weaknesses`] in the log.
    pub fn warn_weaknesses(&self) {
        for weakness in self.weaknesses() {
            tracing::warn!("{weakness}");
        }
    }

    /// Sets our defaults, each unless the user passed that property through.
    pub fn defaults(&self, config: &mut ClientConfig, defaults: &[(&str, &str)]) {
        for (name, value) in defaults {
            if !self.properties.iter().any(|(n, _)| n == name) {
                config.set(*name, *value);
            }
        }
    }
}

/// librdkafka properties that order-svc sets itself, because nothing lost and nothing doubled
/// rests on them, with the reason a user may not change them: settings refuse them, and
/// [`Connection::client_config`], [`Connection::producer_config`] and the consumer's config set
/// them after the user's.
pub const GUARANTEED: &[(&str, &str)] = &[
    ("bootstrap.servers", "KAFKA_BROKERS sets it"),
    ("group.id", "KAFKA_GROUP_ID sets it"),
    (
        "enable.auto.offset.store",
        "an offset is stored only once its batch is durable",
    ),
    (
        "enable.auto.commit",
        "stored offsets are committed every second and on every rebalance",
    ),
    (
        "auto.offset.reset",
        "a new consumer group reads the topic from its beginning, or orders would be skipped",
    ),
    (
        "enable.partition.eof",
        "the consumer does not expect end-of-partition events",
    ),
    (
        "acks",
        "a dead letter counts as sent once every in-sync replica holds it",
    ),
    (
        "enable.idempotence",
        "a retried send must not write a message twice",
    ),
];

/// librdkafka properties no setting may pass through, and why.
pub const REFUSED: &[(&str, &str)] = &[
    (
        "plugin.library.paths",
        "librdkafka would load the shared libraries it names, so a settings file or .env \
         would run code",
    ),
    (
        "enable.ssl.certificate.verification",
        "set KAFKA_SSL_CERTIFICATE_VERIFICATION=false instead, which is said at every start",
    ),
];

/// Largest message our producers send, and the `max.message.bytes` of topics we create.
const MAX_MESSAGE_BYTES: &str = "16777216";

/// Remembers the last problem librdkafka reported, to say why the cluster cannot be
/// reached (a TLS handshake refused, a failed login) instead of only that it cannot.
#[derive(Default)]
struct Probe {
    last: Mutex<Option<String>>,
}

impl ClientContext for Probe {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            tracing::warn!(target: "librdkafka", "{fac} {message}");
            self.remember(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        self.remember(reason);
    }
}

impl Probe {
    /// The first problem is the cause; what follows ("1/1 brokers are down") its effect.
    fn remember(&self, message: &str) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| message.to_owned());
    }
}

impl ProducerContext for Probe {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// The cluster's metadata, or why it cannot be had. librdkafka hands its errors and logs
/// to whoever polls the client, so a client that can be polled asks.
fn reach(kafka: &Connection) -> anyhow::Result<Metadata> {
    let brokers = &kafka.brokers;
    let probe: BaseProducer<Probe> = kafka
        .client_config()
        .create_with_context(Probe::default())
        .context("cannot create a Kafka client")?;
    match probe.client().fetch_metadata(None, Duration::from_secs(10)) {
        Ok(metadata) => Ok(metadata),
        Err(e) => {
            probe.poll(Duration::from_millis(100));
            let why = probe
                .context()
                .last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| e.to_string());
            Err(anyhow::anyhow!(
                "cannot reach Kafka at {brokers} (KAFKA_BROKERS): {why}"
            ))
        }
    }
}

/// Creates the topics that do not exist yet, with `partitions` partitions and one replica
/// (a development default: production clusters should create their topics themselves).
/// Brokers such as tansu do not create topics on first use.
pub async fn ensure_topics(
    kafka: &Connection,
    topics: &[&str],
    partitions: i32,
) -> anyhow::Result<()> {
    let metadata = reach(kafka)?;
    let admin: AdminClient<DefaultClientContext> = kafka
        .client_config()
        .create()
        .context("cannot create the Kafka admin client")?;
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

#[cfg(test)]
mod weakness_tests {
    use super::*;

    #[test]
    fn a_password_in_clear_and_unchecked_certificates_are_said() {
        let mut c = Connection::new(String::from("b:9092"));
        assert!(c.weaknesses().is_empty());
        c.properties
            .push(("security.protocol".into(), "sasl_plaintext".into()));
        c.properties
            .push(("sasl.mechanism".into(), "SCRAM-SHA-512".into()));
        assert!(
            c.weaknesses().is_empty(),
            "SCRAM sends no password in clear"
        );
        c.properties.push(("sasl.mechanism".into(), "PLAIN".into()));
        assert_eq!(c.weaknesses().len(), 1);
        assert!(c.weaknesses()[0].contains("in clear"));
        c.properties
            .push(("enable.ssl.certificate.verification".into(), "false".into()));
        assert_eq!(c.weaknesses().len(), 2);
    }
}
