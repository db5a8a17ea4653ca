//! Ingest under input nobody here chose: bytes other clients may send, and versions of one
//! uid racing through batches written in parallel.

use std::collections::HashMap;
use std::time::Duration;

use order_svc::domain::order::Order;
use order_svc::generate::{GenerateOptions, Generator};

use crate::helpers::{Serve, count, migrated_db};
use crate::kafka::{TestTopic, producer, read_topic, send_all, wait_committed};
use crate::wire::{RawRecord, produce_raw};

#[tokio::test]
async fn headers_keys_and_payloads_of_any_bytes_neither_stop_nor_bend_ingest() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let serve = Serve::start(&topic.serve_env(&db.url, "g")).await;
    serve.wait_ready().await;

    let mut g = Generator::new(GenerateOptions::default());
    let (a, b) = (g.valid_order().to_json(), g.valid_order().to_json());
    let mut invalid = g.valid_order();
    invalid.customer_id = " ".into();
    let invalid = invalid.to_json();
    let huge_key = vec![0xffu8; 200_000];
    produce_raw(
        &topic.name,
        0,
        &[
            // A valid order whose first header name is not UTF-8: rdkafka panics reading it.
            RawRecord {
                key: Some(b"a"),
                value: Some(&a),
                headers: vec![(b"\xff\xfename", Some(b"v")), (b"trace", Some(b"1"))],
            },
            // An invalid order that forges our dead-letter headers, with another bad name.
            RawRecord {
                key: None,
                value: Some(&invalid),
                headers: vec![
                    (b"x-dlq-reason", Some(b"forged")),
                    (b"x-dlq-original-offset", Some(b"999999")),
                    (b"\xc3\x28", None),
                ],
            },
            // No payload at all, and a 200 kB key of bytes that are not UTF-8.
            RawRecord {
                key: Some(&huge_key),
                value: None,
                headers: vec![],
            },
            RawRecord {
                key: None,
                value: Some(&b),
                headers: vec![],
            },
        ],
    )
    .await;

    wait_committed(&topic.name, "g", 4).await;
    let client = db.client().await;
    assert_eq!(
        count(&client, "orders").await,
        2,
        "both valid orders are stored"
    );
    assert_eq!(serve.status("/readyz").await, Some(200), "{}", serve.logs());
    assert_eq!(serve.status("/healthz").await, Some(200));
    assert_eq!(
        serve
            .metric("order_svc_kafka_headers_unreadable_total")
            .await,
        2.0
    );

    let letters = read_topic(&topic.dlq, 2, Duration::from_secs(2)).await;
    assert_eq!(letters.len(), 2);
    let forged = letters
        .iter()
        .find(|l| l.payload == invalid)
        .expect("the invalid order is dead-lettered");
    let reasons: Vec<&str> = forged
        .header_list
        .iter()
        .filter(|(k, _)| k == "x-dlq-reason")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        reasons,
        ["invalid"],
        "incoming x-dlq-* headers never shadow ours"
    );
    assert_eq!(forged.headers["x-dlq-original-offset"], "1");
    assert!(
        forged.header_list.iter().any(|(k, _)| k == "\u{FFFD}"),
        "the unreadable header is kept under U+FFFD: {:?}",
        forged.header_list
    );
    let empty = letters
        .iter()
        .find(|l| l.payload.is_empty())
        .expect("the message without payload is dead-lettered");
    assert_eq!(empty.headers["x-dlq-reason"], "malformed");
    assert_eq!(
        empty.key.as_deref(),
        Some(huge_key.as_slice()),
        "the key is kept"
    );
}

/// Versions of one uid in batches written at the same time: the first in partition order is
/// stored, whichever batch finishes first. The first versions are made slow to write (many
/// items) and the second fast (one item), so that without the rule the later batch often
/// wins.
#[tokio::test]
async fn the_first_version_of_a_uid_wins_across_batches_in_flight() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let mut g = Generator::new(GenerateOptions {
        seed: 8,
        min_items: 40,
        max_items: 40,
        ..GenerateOptions::default()
    });
    let firsts: Vec<Order> = (0..300).map(|_| g.valid_order()).collect();
    let mut messages = Vec::new();
    for chunk in firsts.chunks(20) {
        for o in chunk {
            messages.push((Some(o.order_uid.clone()), o.to_json()));
        }
        for o in chunk {
            let mut later = o.clone();
            later.items.truncate(1);
            messages.push((Some(o.order_uid.clone()), later.to_json()));
        }
    }
    send_all(&producer(), &topic.name, &messages).await;

    let mut env = topic.serve_env(&db.url, "g");
    env.push(("INGEST_BATCH_MAX", "20".into()));
    env.push(("INGEST_PARALLEL_BATCHES", "4".into()));
    env.push(("DATABASE_POOL_SIZE", "8".into()));
    let _serve = Serve::start(&env).await;
    wait_committed(&topic.name, "g", messages.len()).await;

    let client = db.client().await;
    let items: HashMap<String, i64> = client
        .query(
            "SELECT order_uid, count(*) FROM items GROUP BY order_uid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let later_won: Vec<&str> = firsts
        .iter()
        .filter(|o| items.get(&o.order_uid) != Some(&40))
        .map(|o| o.order_uid.as_str())
        .collect();
    assert!(
        later_won.is_empty(),
        "{} of {} uids kept a later version: {:?}",
        later_won.len(),
        firsts.len(),
        &later_won[..later_won.len().min(5)]
    );
    let letters = read_topic(&topic.dlq, firsts.len(), Duration::from_secs(2)).await;
    assert_eq!(letters.len(), firsts.len());
    assert!(
        letters
            .iter()
            .all(|l| l.headers["x-dlq-reason"] == "conflict")
    );
}
