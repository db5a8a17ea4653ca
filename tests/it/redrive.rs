//! `order-svc redrive` end to end: an order rejected as `inconsistent` under
//! VALIDATION_CONSISTENCY=reject is stored once the setting changes and its dead letter is
//! sent back, with its key and original headers; a repeated letter goes once; --dry-run
//! sends nothing; a failed send exits non-zero.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

use crate::browse::{three_orders, uid};
use crate::helpers::{Serve, count, http_get, migrated_db, order_svc, run, wait_for};
use crate::kafka::{TestTopic, producer, read_topic, send_all};

fn redrive(
    topic: &TestTopic,
    db_url: &str,
    args: &[&str],
    extra: &[(&str, &str)],
) -> (bool, String, String) {
    let mut cmd = order_svc();
    cmd.arg("redrive")
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("KAFKA_BROKERS", &topic.brokers)
        .env("KAFKA_TOPIC", &topic.name)
        .env("KAFKA_DLQ_TOPIC", &topic.dlq);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let (output, stdout, stderr) = run(&mut cmd);
    (output.status.success(), stdout, stderr)
}

#[tokio::test]
async fn an_order_rejected_as_inconsistent_is_stored_after_the_rule_changes_and_a_redrive() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let [valid, inconsistent, bad_phone] = three_orders(5);
    let messages: Vec<(Option<String>, Vec<u8>)> = [&valid, &inconsistent, &bad_phone]
        .iter()
        .map(|o| (Some(uid(o)), serde_json::to_vec(o).unwrap()))
        .collect();
    let positions = send_all(&producer(), &topic.name, &messages).await;

    let mut env = topic.serve_env(&db.url, "redrive");
    env.push(("VALIDATION_CONSISTENCY", "reject".into()));
    let strict = Serve::start(&env).await;
    let client = db.client().await;
    wait_for(60, "one order stored and two set aside", || async {
        (count(&client, "orders").await == 1 && count(&client, "dead_letters").await == 2)
            .then_some(())
    })
    .await;
    drop(strict);

    // The inconsistent order's letter once more, as after a crash between publishing it and
    // recording it: same origin, so a run sends it once.
    let letters = read_topic(&topic.dlq, 2, Duration::from_millis(500)).await;
    let letter = letters
        .iter()
        .find(|l| l.headers.get("x-dlq-reason").map(String::as_str) == Some("inconsistent"))
        .expect("the inconsistent order's dead letter");
    let headers = letter
        .header_list
        .iter()
        .fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k.as_str(),
                value: Some(v.as_bytes()),
            })
        });
    let key = letter.key.clone().unwrap();
    producer()
        .send(
            FutureRecord::to(&topic.dlq)
                .key(&key)
                .payload(&letter.payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("the repeat is published");

    let (ok, stdout, stderr) = redrive(
        &topic,
        &db.url,
        &["--dry-run", "--reason", "inconsistent"],
        &[],
    );
    assert!(ok, "{stdout}{stderr}");
    let origin = format!("{}/{}@{}", topic.name, positions[1].0, positions[1].1);
    assert_eq!(
        stdout.matches("would send ").count(),
        2,
        "one line and the summary: {stdout}"
    );
    assert!(
        stdout.contains(&format!("would send {origin} (inconsistent)")),
        "{stdout}"
    );
    assert!(
        stdout.contains("read 3 dead letters") && stdout.contains("1 repeated"),
        "{stdout}"
    );

    // The rule changes: inconsistent totals are now stored with a warning.
    let mut env = topic.serve_env(&db.url, "redrive");
    env.push(("VALIDATION_CONSISTENCY", "warn".into()));
    let relaxed = Serve::start(&env).await;
    relaxed.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&client, "orders").await, 1, "a dry run sent nothing");

    let (ok, stdout, stderr) = redrive(&topic, &db.url, &["--reason=inconsistent,schema"], &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("sent {origin} (inconsistent)")),
        "{stdout}"
    );
    assert!(
        stdout.contains("sent 1 to")
            && stdout.contains("failed 0")
            && stdout.contains("1 not selected")
            && stdout.contains("1 repeated"),
        "{stdout}"
    );
    wait_for(60, "the redriven order stored", || async {
        (count(&client, "orders").await == 2).then_some(())
    })
    .await;
    let reply = http_get(
        relaxed.http_port,
        &format!("/order/{}", uid(&inconsistent)),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(reply.0, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.2).unwrap(),
        inconsistent
    );
    let reply = http_get(
        relaxed.http_port,
        &format!("/order/{}", uid(&bad_phone)),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(reply.0, 404, "not selected, not sent");

    // Back on the orders topic as the original: its key, its headers, none of ours.
    let orders = read_topic(&topic.name, 4, Duration::from_millis(500)).await;
    assert_eq!(orders.len(), 4, "three sent at first, one redriven");
    let again: Vec<_> = orders
        .iter()
        .filter(|m| m.key.as_deref() == Some(uid(&inconsistent).as_bytes()))
        .collect();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].payload, again[1].payload);
    assert_eq!(again[0].header_list, again[1].header_list);
    assert!(again[1].headers.contains_key("trace-id"));
    assert!(
        !again[1]
            .header_list
            .iter()
            .any(|(k, _)| k.starts_with("x-dlq-"))
    );

    // A send that fails (the message is larger than the producer may send) is said, and
    // the exit is not 0.
    let (ok, stdout, stderr) = redrive(
        &topic,
        &db.url,
        &["--reason", "invalid"],
        &[("KAFKA_PROPERTY_MESSAGE_MAX_BYTES", "1000")],
    );
    assert!(!ok, "{stdout}{stderr}");
    assert!(stderr.contains("failed "), "{stderr}");
    assert!(stdout.contains("failed 1"), "{stdout}");
}

#[test]
fn bad_redrive_flags_stop_it_naming_what_to_fix() {
    for (args, says) in [
        (vec!["--reason", "lost"], "must be one of"),
        (vec!["--since", "yesterday"], "RFC 3339"),
        (
            vec![
                "--since",
                "2026-12-02T12:00:00Z",
                "--until",
                "2026-12-01T12:00:00Z",
            ],
            "must be before",
        ),
    ] {
        let (output, stdout, stderr) = run(order_svc().arg("redrive").args(&args));
        assert!(!output.status.success(), "{args:?}: {stdout}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let (output, _, stderr) = run(order_svc()
        .arg("redrive")
        .env("KAFKA_TOPIC", "orders")
        .env("KAFKA_DLQ_TOPIC", "orders"));
    assert!(!output.status.success());
    assert!(stderr.contains("KAFKA_DLQ_TOPIC"), "{stderr}");
}

#[tokio::test]
async fn letters_not_in_the_ledger_are_never_sent_and_nothing_a_producer_wrote_drives_the_terminal()
{
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let [valid, _, _] = three_orders(9);
    // A producer's key that would retitle the terminal and clear the screen.
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2Jk";
    let positions = send_all(
        &producer(),
        &topic.name,
        &[
            (Some(uid(&valid)), serde_json::to_vec(&valid).unwrap()),
            (Some(hostile.to_owned()), b"not an order".to_vec()),
        ],
    )
    .await;
    let strict = Serve::start(&topic.serve_env(&db.url, "redrive")).await;
    let client = db.client().await;
    wait_for(60, "one order stored and one set aside", || async {
        (count(&client, "orders").await == 1 && count(&client, "dead_letters").await == 1)
            .then_some(())
    })
    .await;
    drop(strict);

    // A letter written to the dead-letter topic by someone else: our headers, the origin of
    // the valid order (never set aside), a payload of the writer's choosing.
    let (partition, offset) = positions[0];
    let forged_origin = format!("{}/{partition}@{offset}", topic.name);
    let (partition_text, offset_text) = (partition.to_string(), offset.to_string());
    let headers = [
        ("x-dlq-reason", "invalid"),
        ("x-dlq-original-topic", topic.name.as_str()),
        ("x-dlq-original-partition", partition_text.as_str()),
        ("x-dlq-original-offset", offset_text.as_str()),
    ]
    .iter()
    .fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        })
    });
    producer()
        .send(
            FutureRecord::to(&topic.dlq)
                .key(hostile)
                .payload(b"{\"order_uid\":\"injected\"}")
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("the forged letter is published");
    read_topic(&topic.dlq, 2, Duration::from_millis(500)).await;

    let (ok, stdout, stderr) = redrive(&topic, &db.url, &["--dry-run"], &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "skipped {forged_origin}: the ledger holds no such letter"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("read 2 dead letters") && stdout.contains("would send 1 to"),
        "{stdout}"
    );
    assert!(stdout.contains("1 not in the ledger"), "{stdout}");
    // The genuine letter's key is shown, escaped: no control character reaches the terminal.
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{stdout:?}"
    );
    assert!(
        stdout.contains("key \\u{1b}]0;pwned\\u{7}\\u{1b}[2Jk"),
        "{stdout}"
    );
}

#[tokio::test]
async fn every_dead_letter_is_read_whatever_end_offset_the_broker_reports() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    // More letters than one produce batch holds, on every partition.
    let messages: Vec<(Option<String>, Vec<u8>)> = (0..150)
        .map(|i| {
            (
                Some(format!("key{i}")),
                format!("not an order {i}").into_bytes(),
            )
        })
        .collect();
    send_all(&producer(), &topic.name, &messages).await;
    let ingest = Serve::start(&topic.serve_env(&db.url, "redrive")).await;
    let client = db.client().await;
    wait_for(60, "150 letters recorded", || async {
        (count(&client, "dead_letters").await == 150).then_some(())
    })
    .await;
    drop(ingest);
    let partitions: i64 = client
        .query_one("SELECT count(DISTINCT partition) FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert!(partitions > 1, "the letters' originals span partitions");

    let (ok, stdout, stderr) = redrive(&topic, &db.url, &["--dry-run"], &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("read 150 dead letters") && stdout.contains("would send 150 to"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("the ledger holds"),
        "no difference to name: {stdout}"
    );

    // A letter the ledger records but the topic no longer holds (retention): named.
    client
        .execute(
            "INSERT INTO dead_letters (topic, partition, \"offset\", payload_hash, reason, \
             detail, sent_at) VALUES ($1, 0, 999999, decode(repeat('00', 32), 'hex'), \
             'malformed', 'gone', now() - interval '1 day')",
            &[&topic.name],
        )
        .await
        .unwrap();
    let (ok, stdout, stderr) = redrive(&topic, &db.url, &["--dry-run"], &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("the ledger holds 151 letters set aside before this run; 150 of them")
            && stdout.contains("1 not read"),
        "{stdout}"
    );
}
