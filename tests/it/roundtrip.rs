//! The gate is the contract with storage: every order validation accepts is stored without
//! refusal and read back from PostgreSQL as the very bytes served first. A property test over
//! orders whose fields take values at and past every rule's edge, in a database whose
//! `TimeZone` has historical offsets in seconds.

use std::str::FromStr;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use order_svc::adapters::postgres::DatabaseUrl;
use order_svc::adapters::postgres::pool::{PgStore, pool};
use order_svc::domain::order::OrderUid;
use order_svc::domain::ports::{OrderReader, OrderStore, StoreOutcome};
use order_svc::domain::validate::{Consistency, accept};

use crate::helpers::TestDb;

const CANONICAL: &str = include_str!("../data/model.json");

/// Strings near the edges of the text rules, and well past them.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        Just("\t\u{a0}\u{2028}".to_owned()),
        Just("a\0b".to_owned()),
        Just("\u{1}\u{7f}\u{1b}[0m".to_owned()),
        Just("😀 Ünïcödé \u{202e}rtl".to_owned()),
        Just("<script>alert(1)</script>\"'\\".to_owned()),
        Just("x".repeat(5000)),
        Just("a".repeat(64)),
        Just("a".repeat(65)),
        // The free-text bound (256 characters, counted as PostgreSQL's char_length does).
        Just("é".repeat(256)),
        Just("é".repeat(257)),
        Just("9".repeat(32)),
        Just("9".repeat(33)),
        "[a-zA-Z0-9]{1,70}",
        "[0-9]{1,20}",
        "\\PC{0,40}",
        any::<String>(),
    ]
}

fn email() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("a@b.co".to_owned()),
        1 => Just("a@b c[127.0.0.1]".to_owned()),
        1 => Just("\"a b\"@example.com".to_owned()),
        1 => Just("a@[127.0.0.1]".to_owned()),
        1 => Just("ü@exämple.de".to_owned()),
        1 => Just("a@b@c".to_owned()),
        8 => "[a-z.+]{1,10}@[a-z]{1,10}\\.[a-z]{2,5}",
        1 => text(),
    ]
}

fn locale() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("en".to_owned()),
        1 => Just("x--".to_owned()),
        1 => Just("zh-Hant-TW".to_owned()),
        1 => Just("i-klingon".to_owned()),
        1 => Just("x-private".to_owned()),
        1 => Just("en-US-u-ca-gregory".to_owned()),
        1 => "[a-zA-Z0-9-]{1,12}",
        1 => text(),
    ]
}

fn date() -> impl Strategy<Value = String> {
    let year = prop_oneof![
        1 => Just(0),
        8 => 1900..2100,
        1 => Just(1),
        1 => Just(2),
        1 => Just(1883),
        1 => Just(1969),
        1 => Just(2021),
        1 => Just(9998),
        1 => Just(9999)
    ];
    let frac = prop_oneof![
        Just(String::new()),
        Just(".5".to_owned()),
        Just(".123456".to_owned()),
        Just(".123456789".to_owned()),
        Just(".000000001".to_owned()),
        Just(".999999999".to_owned()),
    ];
    let offset = prop_oneof![
        Just("Z".to_owned()),
        Just("+00:00".to_owned()),
        Just("-23:59".to_owned()),
        Just("+23:59".to_owned()),
        Just("+05:45".to_owned()),
    ];
    let second = prop_oneof![8 => 0u32..=59, 1 => Just(60)];
    (
        year,
        1u32..=12,
        1u32..=28,
        0u32..=23,
        0u32..=59,
        second,
        frac,
        offset,
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(-1),
        Just(0),
        Just(1),
        Just(100),
        Just(101),
        Just(i64::MAX),
        any::<i64>()
    ]
}

/// The canonical order with a handful of its fields replaced by edge values.
fn order() -> impl Strategy<Value = serde_json::Value> {
    let strings = proptest::collection::vec(
        (
            prop::sample::select(vec![
                "/entry",
                "/internal_signature",
                "/customer_id",
                "/delivery_service",
                "/shardkey",
                "/oof_shard",
                "/track_number",
                "/delivery/name",
                "/delivery/phone",
                "/delivery/zip",
                "/delivery/city",
                "/delivery/address",
                "/delivery/region",
                "/payment/transaction",
                "/payment/request_id",
                "/payment/currency",
                "/payment/provider",
                "/payment/bank",
                "/items/0/name",
                "/items/0/size",
                "/items/0/brand",
                "/items/0/rid",
                "/items/0/track_number",
            ]),
            text(),
        ),
        0..3,
    );
    let ints = proptest::collection::vec(
        (
            prop::sample::select(vec![
                "/sm_id",
                "/payment/amount",
                "/payment/payment_dt",
                "/payment/delivery_cost",
                "/payment/goods_total",
                "/payment/custom_fee",
                "/items/0/chrt_id",
                "/items/0/price",
                "/items/0/sale",
                "/items/0/total_price",
                "/items/0/nm_id",
                "/items/0/status",
            ]),
            int(),
        ),
        0..2,
    );
    (
        strings,
        ints,
        email(),
        locale(),
        date(),
        "[a-zA-Z0-9]{1,64}",
        1usize..4,
    )
        .prop_map(|(strings, ints, email, locale, date, uid, copies)| {
            let mut o: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
            let item = o["items"][0].clone();
            o["items"] = serde_json::Value::Array(vec![item; copies]);
            for (path, v) in strings {
                *o.pointer_mut(path).unwrap() = v.into();
            }
            for (path, v) in ints {
                *o.pointer_mut(path).unwrap() = v.into();
            }
            o["delivery"]["email"] = email.into();
            o["locale"] = locale.into();
            o["date_created"] = date.into();
            o["order_uid"] = uid.into();
            o
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_accepted_order_is_stored_and_read_back_from_postgres_unchanged() {
    let db = TestDb::unique();
    crate::helpers::migrate(&db.url);
    // Local mean time offsets in seconds before 1892 here: RFC 3339 cannot write them.
    db.client()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET timezone = 'Europe/Amsterdam'",
            db.name
        ))
        .await
        .unwrap();
    let url = DatabaseUrl::from_str(&db.url).unwrap();
    let timeout = std::time::Duration::from_secs(30);
    let store = Arc::new(PgStore::new(pool(&url, 2, timeout).unwrap(), timeout));
    let handle = tokio::runtime::Handle::current();

    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (store2, accepted2) = (store.clone(), accepted.clone());
    let first2 = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        (order_svc::domain::order::ContentHash, Vec<u8>),
    >::new()));
    let result = tokio::task::spawn_blocking(move || {
        // A fixed seed: the same 1 000 orders every run, so a failure always reproduces.
        let config = Config {
            cases: 1_000,
            failure_persistence: None,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
        let mut runner = TestRunner::new_with_rng(config, rng);
        runner.run(&order(), |value| {
            let raw = serde_json::to_vec(&value).unwrap();
            let Ok(checked) = accept(&raw, 1 << 20, Consistency::Warn) else {
                return Ok(());
            };
            accepted2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let uid = OrderUid::parse(checked.uid().as_str()).unwrap();
            let (outcome, back) = handle.block_on(async {
                let outcome = store2.store_batch(std::slice::from_ref(&checked)).await;
                (outcome, store2.find(&uid).await)
            });
            // What this uid must give: the first version stored in this run is the one kept.
            let mut first = first2.lock().unwrap();
            let expected = match first.get(uid.as_str()) {
                None => StoreOutcome::Inserted,
                Some((hash, _)) if hash == checked.content_hash() => StoreOutcome::SameContent,
                Some(_) => StoreOutcome::OtherContent,
            };
            let kept = first
                .entry(uid.as_str().to_owned())
                .or_insert_with(|| (*checked.content_hash(), checked.json().to_vec()));
            match outcome {
                Ok(o) => prop_assert_eq!(&o[0], &expected, "{}", value),
                Err(e) => prop_assert!(false, "accepted but refused by PostgreSQL: {e}\n{value}"),
            }
            let back =
                back.map_err(|e| TestCaseError::fail(format!("read back failed: {e}\n{value}")))?;
            let back = back.ok_or_else(|| TestCaseError::fail("not found after storing"))?;
            prop_assert_eq!(&back.hash, &kept.0, "another hash read back");
            prop_assert_eq!(
                String::from_utf8_lossy(&back.json),
                String::from_utf8_lossy(&kept.1),
                "read back other bytes than were served"
            );
            // The same order again is a redelivery; one that differs in one field, a conflict
            // that changes nothing stored.
            let mut other = value.clone();
            let sm_id = other["sm_id"].as_i64().unwrap_or(1);
            other["sm_id"] = (if sm_id == 1 { 2 } else { 1 }).into();
            let other = serde_json::to_vec(&other).unwrap();
            let other = accept(&other, 1 << 20, Consistency::Warn)
                .map_err(|e| TestCaseError::fail(format!("sm_id 1 or 2 refused: {e:?}")))?;
            let (again, conflict, back) = handle.block_on(async {
                let again = store2.store_batch(std::slice::from_ref(&checked)).await;
                let conflict = store2.store_batch(std::slice::from_ref(&other)).await;
                (again, conflict, store2.find(&uid).await)
            });
            let again = again.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let conflict = conflict.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let same = if kept.0 == *checked.content_hash() {
                StoreOutcome::SameContent
            } else {
                StoreOutcome::OtherContent
            };
            prop_assert_eq!(again[0], same, "stored again");
            prop_assert_eq!(conflict[0], StoreOutcome::OtherContent, "another sm_id");
            let back = back
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .ok_or_else(|| TestCaseError::fail("gone after a conflict"))?;
            prop_assert_eq!(&back.json, &kept.1, "a conflict changed what is stored");
            Ok(())
        })
    })
    .await
    .unwrap();
    if let Err(e) = result {
        panic!("{e}");
    }
    let accepted = accepted.load(std::sync::atomic::Ordering::Relaxed);
    println!("round trip: {accepted} of 1 000 generated orders accepted, each read back unchanged");
    assert!(
        accepted >= 150,
        "only {accepted} of 1 000 generated orders were valid: the generator needs tuning"
    );
}

/// A batch that holds a redelivery, a conflict and a new order: each ends as what it is, the
/// first version stored stays, and nothing is written twice.
#[tokio::test]
async fn a_batch_holding_stored_uids_tells_the_new_the_redelivered_and_the_conflicting() {
    let db = TestDb::unique();
    crate::helpers::migrate(&db.url);
    let url = DatabaseUrl::from_str(&db.url).unwrap();
    let timeout = std::time::Duration::from_secs(30);
    let store = PgStore::new(pool(&url, 2, timeout).unwrap(), timeout);
    let mut generator = order_svc::generate::Generator::new(Default::default());
    let checked = |order: &order_svc::domain::order::Order| {
        accept(
            &serde_json::to_vec(order).unwrap(),
            1 << 20,
            Consistency::Warn,
        )
        .unwrap()
    };
    let (one, two, three) = (
        generator.valid_order(),
        generator.valid_order(),
        generator.valid_order(),
    );
    let first = store
        .store_batch(&[checked(&one), checked(&two)])
        .await
        .unwrap();
    assert_eq!(first, vec![StoreOutcome::Inserted; 2]);

    let mut other = two.clone();
    other.delivery.city = format!("{} (moved)", other.delivery.city);
    let second = store
        .store_batch(&[checked(&one), checked(&other), checked(&three)])
        .await
        .unwrap();
    assert_eq!(
        second,
        vec![
            StoreOutcome::SameContent,
            StoreOutcome::OtherContent,
            StoreOutcome::Inserted
        ]
    );

    let client = db.client().await;
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM orders").await, 3);
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 3);
    assert_eq!(count("SELECT count(*) FROM payments").await, 3);
    let items = [&one, &two, &three]
        .iter()
        .map(|o| o.items.len())
        .sum::<usize>();
    assert_eq!(count("SELECT count(*) FROM items").await, items as i64);
    let kept = store
        .find(&OrderUid::parse(two.order_uid.clone()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &kept.json[..],
        &checked(&two).json()[..],
        "the first version stays"
    );
}

/// The items come back in their positions' order whatever order PostgreSQL reads their rows
/// in: here the rows lie on disk last position first, and index scans are off, so the scan
/// meets them backwards.
#[tokio::test]
async fn items_are_read_back_in_their_order_whatever_order_the_rows_are_scanned_in() {
    let db = TestDb::unique();
    crate::helpers::migrate(&db.url);
    let mut order = order_svc::generate::Generator::new(Default::default()).valid_order();
    let template = order.items[0].clone();
    order.items = (0..5)
        .map(|k| {
            let mut item = template.clone();
            item.chrt_id = 1_000 + k;
            item.name = format!("item {k}");
            item
        })
        .collect();
    let checked = accept(
        &serde_json::to_vec(&order).unwrap(),
        1 << 20,
        Consistency::Warn,
    )
    .unwrap();
    let url = DatabaseUrl::from_str(&db.url).unwrap();
    let timeout = std::time::Duration::from_secs(30);
    let store = PgStore::new(pool(&url, 2, timeout).unwrap(), timeout);
    store
        .store_batch(std::slice::from_ref(&checked))
        .await
        .unwrap();
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE reversed AS SELECT * FROM items ORDER BY position DESC;
             DELETE FROM items;
             INSERT INTO items SELECT * FROM reversed;
             DROP TABLE reversed;
             ALTER DATABASE \"{}\" SET enable_indexscan = off;
             ALTER DATABASE \"{}\" SET enable_bitmapscan = off;",
            db.name, db.name
        ))
        .await
        .unwrap();
    // A new pool: its sessions start with the database's new settings.
    let store = PgStore::new(pool(&url, 2, timeout).unwrap(), timeout);
    let back = store.find(checked.uid()).await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&back.json),
        String::from_utf8_lossy(checked.json())
    );
}
