//! `serve` consuming a real broker into a real PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use order_svc::generate::{Corruption, GenerateOptions, Generator};

use crate::helpers::{Serve, TestDb, count, migrated_db, wait_for};
use crate::kafka::{TestTopic, committed_total, producer, read_topic, send_all, wait_committed};

type Messages = Vec<(Option<String>, Vec<u8>)>;

/// `n` generated messages; returns them, the uids `serve` accepts under the default
/// `VALIDATION_CONSISTENCY=warn` (valid, or only inconsistent), and each message's corruption.
fn generate(
    seed: u64,
    n: usize,
    invalid_rate: f64,
) -> (Messages, HashSet<String>, Vec<Option<Corruption>>) {
    let mut g = Generator::new(GenerateOptions {
        seed,
        invalid_rate,
        ..GenerateOptions::default()
    });
    let mut messages = Vec::new();
    let mut valid = HashSet::new();
    let mut kinds = Vec::new();
    for _ in 0..n {
        let m = g.next_message();
        if matches!(m.corruption, None | Some(Corruption::InconsistentTotals)) {
            valid.insert(m.uid.clone().unwrap());
        }
        kinds.push(m.corruption);
        messages.push((m.uid, m.bytes));
    }
    (messages, valid, kinds)
}

async fn wait_for_orders(db: &TestDb, expected: i64, secs: u64) {
    let client = db.client().await;
    wait_for(
        secs,
        &format!("{expected} orders in the database"),
        || async { (count(&client, "orders").await >= expected).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_mixed_stream_lands_exactly_once_each() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let (mut messages, _, mut kinds) = generate(21, 400, 0.4);
    // VALIDATION_CONSISTENCY=reject below: only orders without any corruption are stored.
    let valid: HashSet<String> = messages
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| k.is_none())
        .map(|(m, _)| m.0.clone().unwrap())
        .collect();
    // Exact redeliveries of 20 valid orders, and one order sent again with other content.
    let valid_messages: Vec<_> = messages
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| k.is_none())
        .map(|(m, _)| m.clone())
        .collect();
    for m in valid_messages.iter().take(20) {
        messages.push(m.clone());
        kinds.push(None);
    }
    let mut conflicting: serde_json::Value = serde_json::from_slice(&valid_messages[0].1).unwrap();
    conflicting["delivery_service"] = "other".into();
    messages.push((
        valid_messages[0].0.clone(),
        serde_json::to_vec(&conflicting).unwrap(),
    ));
    let conflict_index = messages.len() - 1;
    kinds.push(None);

    let placed = send_all(&producer(), &topic.name, &messages).await;
    let mut env = topic.serve_env(&db.url, "g1");
    env.push(("VALIDATION_CONSISTENCY", "reject".into()));
    let serve = Serve::start(&env).await;
    serve.wait_ready().await;
    wait_for_orders(&db, valid.len() as i64, 60).await;

    let expected_dead: usize = kinds.iter().filter(|k| k.is_some()).count() + 1;
    let letters = read_topic(&topic.dlq, expected_dead, Duration::from_secs(2)).await;
    assert_eq!(
        letters.len(),
        expected_dead,
        "every rejected message once, and the conflict"
    );

    let by_place: HashMap<(i32, i64), usize> =
        placed.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let mut seen = HashSet::new();
    for letter in &letters {
        let h = &letter.headers;
        let place = (
            h["x-dlq-original-partition"].parse().unwrap(),
            h["x-dlq-original-offset"].parse().unwrap(),
        );
        let i = by_place[&place];
        assert!(seen.insert(i), "message {i} dead-lettered twice");
        let expected_reason = if i == conflict_index {
            "conflict"
        } else {
            kinds[i].unwrap().expected().0.code()
        };
        assert_eq!(
            h["x-dlq-reason"], expected_reason,
            "message {i} ({:?})",
            kinds[i]
        );
        assert!(!h["x-dlq-detail"].is_empty());
        assert_eq!(h["x-dlq-original-topic"], topic.name);
        assert!(h["x-dlq-original-timestamp"].parse::<i64>().unwrap() > 0);
        assert_eq!(h["trace-id"], i.to_string(), "original headers are kept");
        assert_eq!(letter.payload, messages[i].1, "the value is unchanged");
        assert_eq!(
            letter.key.as_deref(),
            messages[i].0.as_deref().map(str::as_bytes),
            "the key is unchanged"
        );
    }

    let client = db.client().await;
    assert_eq!(count(&client, "orders").await, valid.len() as i64);
    for table in ["deliveries", "payments"] {
        assert_eq!(count(&client, table).await, valid.len() as i64, "{table}");
    }
    let expected_items: usize = valid_messages
        .iter()
        .map(|(_, p)| {
            serde_json::from_slice::<serde_json::Value>(p).unwrap()["items"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(count(&client, "items").await, expected_items as i64);
    let stored_uids: HashSet<String> = client
        .query("SELECT order_uid FROM orders", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored_uids, valid);
    assert_eq!(
        serve
            .metric("order_svc_orders_ingested_total{outcome=\"duplicate\"}")
            .await,
        20.0
    );
}

#[tokio::test]
async fn a_new_group_replaying_the_topic_writes_nothing_new_and_sends_no_dead_letter_twice() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let (messages, valid, kinds) = generate(22, 300, 0.3);
    let invalid = messages.len() - valid.len();
    send_all(&producer(), &topic.name, &messages).await;

    let first = Serve::start(&topic.serve_env(&db.url, "first")).await;
    wait_for_orders(&db, valid.len() as i64, 60).await;
    wait_committed(&topic.name, "first", messages.len()).await;
    // Stored under the default `warn`, each counted once.
    let inconsistent = kinds
        .iter()
        .filter(|k| **k == Some(Corruption::InconsistentTotals))
        .count();
    assert!(inconsistent > 0);
    assert_eq!(
        first
            .metric("order_svc_orders_consistency_warnings_total")
            .await,
        inconsistent as f64
    );
    drop(first);

    let replay = Serve::start(&topic.serve_env(&db.url, "second")).await;
    wait_committed(&topic.name, "second", messages.len()).await;
    assert_eq!(
        replay
            .metric("order_svc_orders_ingested_total{outcome=\"stored\"}")
            .await,
        0.0
    );
    assert_eq!(
        replay
            .metric("order_svc_orders_ingested_total{outcome=\"duplicate\"}")
            .await,
        valid.len() as f64
    );
    let client = db.client().await;
    assert_eq!(count(&client, "orders").await, valid.len() as i64);
    let letters = read_topic(&topic.dlq, invalid, Duration::from_secs(2)).await;
    assert_eq!(letters.len(), invalid, "no dead letter is sent twice");
}

#[tokio::test]
async fn serve_killed_mid_stream_and_restarted_stores_every_order_exactly_once() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let (messages, valid, _) = generate(23, 12_000, 0.05);
    send_all(&producer(), &topic.name, &messages).await;

    let mut env = topic.serve_env(&db.url, "crashy");
    env.push(("INGEST_BATCH_MAX", "200".into()));
    let mut serve = Serve::start(&env).await;
    wait_for_orders(&db, 1_000, 60).await;
    serve.child.kill().unwrap(); // SIGKILL: no chance to commit anything more
    serve.child.wait().unwrap();
    let client = db.client().await;
    let at_crash = count(&client, "orders").await;
    assert!(
        at_crash < valid.len() as i64,
        "the crash must come mid-stream ({at_crash} stored)"
    );

    let _again = Serve::start(&env).await;
    wait_for_orders(&db, valid.len() as i64, 120).await;
    wait_committed(&topic.name, "crashy", messages.len()).await;
    assert_eq!(count(&client, "orders").await, valid.len() as i64);
    let items: i64 = client
        .query_one("SELECT count(DISTINCT order_uid) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(items, valid.len() as i64, "every order has its items");
}

#[tokio::test]
async fn sigterm_commits_exactly_what_was_stored_and_exits_cleanly() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let (messages, _, _) = generate(24, 12_000, 0.0);
    send_all(&producer(), &topic.name, &messages).await;

    let mut env = topic.serve_env(&db.url, "graceful");
    env.push(("INGEST_BATCH_MAX", "200".into()));
    let mut serve = Serve::start(&env).await;
    wait_for_orders(&db, 1_000, 60).await;
    serve.terminate();
    let started = std::time::Instant::now();
    let status = wait_for(10, "serve to exit after SIGTERM", || {
        let status = serve.child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(status.success(), "exit status {status:?}: {}", serve.logs());
    assert!(started.elapsed() < Duration::from_secs(10));

    let stored = count(&db.client().await, "orders").await;
    assert!(
        stored < messages.len() as i64,
        "SIGTERM must come mid-stream"
    );
    assert_eq!(
        committed_total(&topic.name, "graceful"),
        stored,
        "committed offsets equal stored messages"
    );
}

#[tokio::test]
async fn two_processes_in_one_group_share_the_work_and_store_each_order_once() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let env = topic.serve_env(&db.url, "shared");
    let a = Serve::start(&env).await;
    let b = Serve::start(&env).await;
    a.wait_ready().await;
    b.wait_ready().await;
    // Let the group settle on two members before the stream starts.
    wait_for(30, "both processes to own partitions", || async {
        (a.logs().contains("partitions assigned") && b.logs().contains("partitions assigned"))
            .then_some(())
    })
    .await;
    let (messages, valid, _) = generate(25, 6_000, 0.0);
    send_all(&producer(), &topic.name, &messages).await;
    wait_for_orders(&db, valid.len() as i64, 90).await;
    wait_committed(&topic.name, "shared", messages.len()).await;

    let stored_a = a
        .metric("order_svc_orders_ingested_total{outcome=\"stored\"}")
        .await;
    let stored_b = b
        .metric("order_svc_orders_ingested_total{outcome=\"stored\"}")
        .await;
    assert!(
        stored_a > 0.0 && stored_b > 0.0,
        "both processes stored orders: {stored_a} + {stored_b}"
    );
    assert_eq!(
        stored_a + stored_b,
        valid.len() as f64,
        "each order stored once"
    );
    // The primary key would hide two processes reading the same partitions; the duplicates
    // they count would not: in a clean run each message is consumed by one process, once.
    let duplicate = "order_svc_orders_ingested_total{outcome=\"duplicate\"}";
    assert_eq!(
        a.metric(duplicate).await + b.metric(duplicate).await,
        0.0,
        "no message was consumed by both processes"
    );
    assert_eq!(
        count(&db.client().await, "orders").await,
        valid.len() as i64
    );
}

#[tokio::test]
async fn a_database_outage_mid_stream_loses_nothing_and_doubles_nothing() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let proxy = crate::proxy::CutProxy::start(crate::helpers::pg_addr()).await;
    let proxied_url = db.url.replace(
        &crate::helpers::pg_host_port(),
        &format!("127.0.0.1:{}", proxy.port),
    );
    assert_ne!(
        proxied_url, db.url,
        "the test reaches PostgreSQL through the proxy"
    );
    let serve = Serve::start(&topic.serve_env(&proxied_url, "outage")).await;
    serve.wait_ready().await;

    let (messages, valid, _) = generate(26, 3_000, 0.1);
    let topic_name = topic.name.clone();
    let stream = tokio::spawn(async move {
        let producer = producer();
        for chunk in messages.chunks(100) {
            send_all(&producer, &topic_name, chunk).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        messages.len()
    });
    wait_for_orders(&db, 300, 60).await;
    proxy.cut();
    wait_for(15, "readiness to turn false", || async {
        (serve.status("/readyz").await == Some(503)).then_some(())
    })
    .await;
    let client = db.client().await;
    let during = count(&client, "orders").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(&client, "orders").await,
        during,
        "nothing is written while the database is away"
    );
    assert_eq!(serve.status("/readyz").await, Some(503));
    proxy.restore();

    let sent = stream.await.unwrap();
    serve.wait_ready().await;
    wait_for_orders(&db, valid.len() as i64, 90).await;
    wait_committed(&topic.name, "outage", sent).await;
    assert_eq!(count(&client, "orders").await, valid.len() as i64);
    let retries = serve.metric("order_svc_ingest_retries_total").await;
    assert!(retries > 0.0, "the outage was felt by ingest");
    // Each retry follows a write the database failed: counted, as unavailable, never as
    // data refused.
    let (_, _, text) = crate::helpers::http_get(serve.http_port, "/metrics", &[])
        .await
        .unwrap();
    let errors = |kind: &str| -> f64 {
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| l.starts_with("order_svc_db_errors_total{"))
            .filter(|l| l.contains(&format!("kind=\"{kind}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(errors("unavailable") >= retries, "{retries} retries");
    assert_eq!(errors("refused"), 0.0);
    let letters = read_topic(&topic.dlq, sent - valid.len(), Duration::from_secs(2)).await;
    assert_eq!(
        letters.len(),
        sent - valid.len(),
        "every rejected message reached the dead letters once"
    );
}

#[tokio::test]
async fn sigterm_during_an_outage_commits_nothing_past_what_was_stored() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let proxy = crate::proxy::CutProxy::start(crate::helpers::pg_addr()).await;
    let proxied_url = db.url.replace(
        &crate::helpers::pg_host_port(),
        &format!("127.0.0.1:{}", proxy.port),
    );
    let mut env = topic.serve_env(&proxied_url, "cut-then-stop");
    env.push(("INGEST_BATCH_MAX", "100".into()));
    let mut serve = Serve::start(&env).await;
    serve.wait_ready().await;
    let (first, _, _) = generate(27, 500, 0.0);
    send_all(&producer(), &topic.name, &first).await;
    wait_for_orders(&db, 500, 60).await;
    wait_committed(&topic.name, "cut-then-stop", 500).await;

    proxy.cut();
    let (second, _, _) = generate(28, 2_000, 0.0);
    send_all(&producer(), &topic.name, &second).await;
    wait_for(30, "ingest to retry", || async {
        (serve.metric("order_svc_ingest_retries_total").await > 0.0).then_some(())
    })
    .await;
    serve.terminate();
    let status = wait_for(10, "serve to exit after SIGTERM", || {
        let status = serve.child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(status.success(), "{}", serve.logs());
    proxy.restore();
    assert_eq!(count(&db.client().await, "orders").await, 500);
    assert_eq!(
        committed_total(&topic.name, "cut-then-stop"),
        500,
        "no offset moved past the abandoned batches"
    );
}

/// `deploy/postgres/serve-role.sql` is the whole of what `serve` needs: ingest (orders and
/// dead letters) and lookups work as that role, and it can change nothing else.
#[tokio::test]
async fn serve_runs_with_only_the_rights_of_the_documented_role() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let role = format!("svc_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let sql = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/postgres/serve-role.sql"
    );
    let out = std::process::Command::new("psql")
        .arg(&db.url)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-v"])
        .arg(format!("role={role}"))
        .args(["-v", "owner=postgres", "-v", "password=unused", "-f", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let as_role = db
        .url
        .replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    assert_ne!(
        as_role, db.url,
        "the test database URL names the user postgres"
    );

    let (messages, _, kinds) = generate(5, 60, 0.3);
    let valid = kinds.iter().filter(|k| k.is_none()).count() as i64;
    send_all(&producer(), &topic.name, &messages).await;
    let mut env = topic.serve_env(&as_role, "least");
    env.push(("VALIDATION_CONSISTENCY", "reject".into()));
    let serve = Serve::start(&env).await;
    serve.wait_ready().await;
    wait_for_orders(&db, valid, 60).await;
    let owner = db.client().await;
    wait_for(30, "every dead letter in the ledger", || async {
        (count(&owner, "dead_letters").await == messages.len() as i64 - valid).then_some(())
    })
    .await;
    let uid = messages[kinds.iter().position(Option::is_none).unwrap()]
        .0
        .clone()
        .unwrap();
    assert_eq!(serve.status(&format!("/order/{uid}")).await, Some(200));
    drop(serve);

    let client = crate::helpers::connect(&as_role).await;
    for statement in [
        "DELETE FROM orders",
        "UPDATE orders SET entry = 'x'",
        "TRUNCATE dead_letters",
        "CREATE TABLE intruder (x int)",
        "DROP TABLE items",
    ] {
        let err = client.batch_execute(statement).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {err:?}"
        );
    }
    drop(client);
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}
