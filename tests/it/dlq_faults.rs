//! Dead letters the broker will not take: librdkafka's mock cluster refuses the dead-letter
//! producer's requests (tansu cannot be made to), while `serve` runs as it does in production.

use std::time::Duration;

use order_svc::generate::{GenerateOptions, Generator};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::helpers::{Serve, TestDb, migrate, wait_for};
use crate::kafka::{PARTITIONS, committed_total_on, config_on, group_id, read_topic_on};

/// Offsets hold while dead letters cannot be published; refused publishes are retried (and
/// counted) rather than skipped; a letter the broker calls too large goes out truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_hold_until_dead_letters_are_published_and_a_too_large_one_goes_out_truncated() {
    let cluster = MockCluster::new(1).expect("librdkafka's mock cluster");
    let brokers = cluster.bootstrap_servers();
    let (topic, dlq) = ("orders", "orders.dlq");
    cluster.create_topic(topic, PARTITIONS, 1).unwrap();
    cluster.create_topic(dlq, PARTITIONS, 1).unwrap();

    let mut g = Generator::new(GenerateOptions::default());
    let mut messages: Vec<Vec<u8>> = (0..10).map(|_| g.valid_order().to_json()).collect();
    messages.push(b"{\"not\": \"an order\"}".to_vec());
    messages.extend((0..10).map(|_| g.valid_order().to_json()));
    // The bad message's key is over the 1 KiB a truncated letter keeps.
    let long_key = vec![b'k'; 2048];
    let producer: FutureProducer = config_on(&brokers).create().unwrap();
    for (i, m) in messages.iter().enumerate() {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(m);
        if i == 10 {
            record = record.key(&long_key);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    // From now on the only producer is serve's dead-letter producer: its next five
    // publishes are refused outright (enough of them, with the retries' backoff, to outlast
    // more than one auto-commit), the next is called too large.
    let refused = RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    let too_large = RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[refused, refused, refused, refused, refused, too_large],
    );

    let db = TestDb::unique();
    migrate(&db.url);
    let serve = Serve::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("KAFKA_BROKERS", brokers.clone()),
        ("KAFKA_TOPIC", topic.to_owned()),
        ("KAFKA_DLQ_TOPIC", dlq.to_owned()),
        ("KAFKA_GROUP_ID", group_id(topic, "g")),
    ])
    .await;

    wait_for(60, "the dead-letter producer to be refused", || async {
        let n = serve
            .metric("order_svc_producer_sends_total{producer=\"dead_letters\",result=\"error\"}")
            .await;
        (n >= 1.0).then_some(())
    })
    .await;
    // Until the letter is out, not everything is committed, however many auto-commits (every
    // second) pass meanwhile: read until it is published.
    let refused_at = std::time::Instant::now();
    let mut reads = 0;
    loop {
        let truncated = serve
            .metric_or_zero(
                "order_svc_producer_sends_total{producer=\"dead_letters\",result=\"truncated\"}",
            )
            .await;
        if truncated >= 1.0 {
            break;
        }
        let held = committed_total_on(&brokers, topic, "g");
        assert!(
            held < messages.len() as i64,
            "everything was committed ({held}) while a dead letter was undelivered"
        );
        reads += 1;
        assert!(
            refused_at.elapsed() < Duration::from_secs(90),
            "never published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let undelivered = refused_at.elapsed();
    eprintln!("undelivered for {undelivered:?}, {reads} reads");
    assert!(
        undelivered > Duration::from_millis(1500) && reads >= 5,
        "the letter was out after {undelivered:?}: too soon to see an auto-commit"
    );

    wait_for(90, "every message committed", || async {
        (committed_total_on(&brokers, topic, "g") == messages.len() as i64).then_some(())
    })
    .await;
    assert!(serve.metric("order_svc_ingest_retries_total").await >= 5.0);
    assert_eq!(
        serve
            .metric(
                "order_svc_producer_sends_total{producer=\"dead_letters\",result=\"truncated\"}"
            )
            .await,
        1.0
    );
    let letters = read_topic_on(&brokers, dlq, 1, Duration::from_secs(1)).await;
    assert_eq!(letters.len(), 1, "one dead letter, published once");
    let letter = &letters[0];
    assert_eq!(letter.headers["x-dlq-reason"], "schema");
    assert_eq!(letter.headers["x-dlq-truncated"], "true");
    let note: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(note["bytes"], messages[10].len());
    assert_eq!(note["truncated"], true);
    use sha2::Digest;
    assert_eq!(
        letter.key.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&long_key)).as_bytes()),
        "a long key goes out as its SHA-256"
    );
}
