//! Kafka plumbing for tests: a topic of each test's own, producing, reading dead letters,
//! and a group's committed offsets.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub const PARTITIONS: i32 = 3;

pub fn brokers() -> String {
    std::env::var("TEST_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "127.0.0.1:19092".to_owned())
}

fn config() -> ClientConfig {
    config_on(&brokers())
}

pub fn config_on(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("message.max.bytes", "16777216");
    c
}

/// An orders topic and its dead-letter topic, both new.
pub struct TestTopic {
    pub name: String,
    pub dlq: String,
    pub brokers: String,
}

impl TestTopic {
    pub async fn create() -> Self {
        Self::create_on(&brokers()).await
    }

    /// The topics on another broker than the tests' shared one.
    pub async fn create_on(brokers: &str) -> Self {
        let name = format!("it-{}", uuid::Uuid::new_v4().simple());
        let dlq = format!("{name}.dlq");
        let admin: AdminClient<DefaultClientContext> = config_on(brokers).create().unwrap();
        let topics = [
            NewTopic::new(&name, PARTITIONS, TopicReplication::Fixed(1)),
            NewTopic::new(&dlq, PARTITIONS, TopicReplication::Fixed(1)),
        ];
        for result in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .expect("topics are created")
        {
            result.unwrap_or_else(|(t, e)| {
                panic!("cannot create {t}: {e} (is the broker up? `just test-services`)")
            });
        }
        Self {
            name,
            dlq,
            brokers: brokers.to_owned(),
        }
    }

    /// Settings that point `serve` at this topic and `db`.
    pub fn serve_env(&self, database_url: &str, group: &str) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", database_url.to_owned()),
            ("KAFKA_BROKERS", self.brokers.clone()),
            ("KAFKA_TOPIC", self.name.clone()),
            ("KAFKA_DLQ_TOPIC", self.dlq.clone()),
            ("KAFKA_GROUP_ID", group_id(&self.name, group)),
        ]
    }
}

/// The consumer group a test calls `group` on `topic`: named after the topic too, so that
/// two test runs on one broker never share a group (a shared group would rebalance across
/// them).
pub fn group_id(topic: &str, group: &str) -> String {
    format!("{topic}-{group}")
}

pub fn producer() -> FutureProducer {
    config()
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()
        .unwrap()
}

/// Sends each (key, payload) with a `trace-id` header, returns where each landed.
pub async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    messages: &[(Option<String>, Vec<u8>)],
) -> Vec<(i32, i64)> {
    let sends = messages.iter().enumerate().map(|(i, (key, payload))| {
        let trace = i.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace-id",
            value: Some(trace.as_bytes()),
        });
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .payload(payload.as_slice())
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key.as_str());
        }
        producer.send(record, Duration::from_secs(10))
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| {
            let d = r.map_err(|(e, _)| e).expect("the broker takes the message");
            (d.partition, d.offset)
        })
        .collect()
}

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct Read {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
    /// Every header in order, repeats included.
    pub header_list: Vec<(String, String)>,
}

/// Reads the whole topic from the start with a fresh group until `expected` messages came, then
/// waits `settle` more to catch any extra.
pub async fn read_topic(topic: &str, expected: usize, settle: Duration) -> Vec<Read> {
    read_topic_on(&brokers(), topic, expected, settle).await
}

pub async fn read_topic_on(
    brokers: &str,
    topic: &str,
    expected: usize,
    settle: Duration,
) -> Vec<Read> {
    let consumer: StreamConsumer = config_on(brokers)
        .set(
            "group.id",
            format!("reader-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut settle_until: Option<tokio::time::Instant> = None;
    loop {
        let until = settle_until.unwrap_or(deadline);
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(m)) => {
                let header_list: Vec<(String, String)> = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Read {
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers: header_list.iter().cloned().collect(),
                    header_list,
                })
            }
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
        if out.len() >= expected && settle_until.is_none() {
            settle_until = Some(tokio::time::Instant::now() + settle);
        }
    }
    out
}

/// The offsets `group` committed on `topic`, summed over partitions (offsets start at 0, so
/// the sum counts the messages the group is done with).
pub fn committed_total(topic: &str, group: &str) -> i64 {
    committed_total_on(&brokers(), topic, group)
}

pub fn committed_total_on(brokers: &str, topic: &str, group: &str) -> i64 {
    committed_on(brokers, topic, group).iter().sum()
}

/// The offset `group` committed on each partition of `topic` (0 where none), by partition.
pub fn committed_on(brokers: &str, topic: &str, group: &str) -> Vec<i64> {
    let consumer: BaseConsumer = config_on(brokers)
        .set("group.id", group_id(topic, group))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let mut out = vec![0; PARTITIONS as usize];
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            out[e.partition() as usize] = o;
        }
    }
    out
}

/// Waits until `group` has committed `expected` messages of `topic`.
pub async fn wait_committed(topic: &str, group: &str, expected: usize) {
    crate::helpers::wait_for(
        60,
        &format!("group {group} to commit {expected} messages"),
        || async { (committed_total(topic, group) == expected as i64).then_some(()) },
    )
    .await;
}
