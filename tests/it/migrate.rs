use crate::helpers::{TestDb, order_svc, run};

const MIGRATIONS: usize = 4;

#[tokio::test]
async fn migrate_creates_the_database_then_applies_nothing_the_second_time() {
    let db = TestDb::unique();

    let (out, stdout, stderr) = run(order_svc().arg("migrate").env("DATABASE_URL", &db.url));
    assert!(out.status.success(), "first migrate failed: {stderr}");
    assert!(
        stdout.contains(&format!("created database {}", db.name)),
        "{stdout}"
    );
    assert!(stdout.contains("applied V1__orders"), "{stdout}");

    let (out, stdout, stderr) = run(order_svc().arg("migrate").env("DATABASE_URL", &db.url));
    assert!(out.status.success(), "second migrate failed: {stderr}");
    assert!(stdout.contains("nothing to apply"), "{stdout}");
    assert!(!stdout.contains("applied V"), "{stdout}");

    let client = db.client().await;
    let history: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history as usize, MIGRATIONS);
    for table in ["orders", "deliveries", "payments", "items"] {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .unwrap()
            .get(0);
        assert!(exists, "table {table} is missing");
    }
}

#[tokio::test]
async fn tables_refuse_what_the_rules_refuse() {
    let db = TestDb::unique();
    let (out, _, stderr) = run(order_svc().arg("migrate").env("DATABASE_URL", &db.url));
    assert!(out.status.success(), "{stderr}");
    let client = db.client().await;

    let insert = |uid: &'static str, sm_id: i64| {
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature,
                        customer_id, delivery_service, shardkey, sm_id, date_created, oof_shard,
                        content_hash)
                     VALUES ($1, 'WBILMTESTTRACK', 'WBIL', 'en', '', 'test', 'meest', '9', $2,
                        now(), '1', decode(repeat('ab', 32), 'hex'))",
                    &[&uid, &sm_id],
                )
                .await
        }
    };
    insert("good1", 99).await.expect("a valid row is stored");
    for (uid, sm_id) in [("bad1", 0), ("not-alnum", 1)] {
        let err = insert(uid, sm_id)
            .await
            .expect_err("a rule-breaking row is refused");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
            "{err}"
        );
    }
    let dup = insert("good1", 99).await.expect_err("order_uid is unique");
    assert_eq!(
        dup.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
}

#[test]
fn unreachable_server_is_named_without_the_password() {
    let (out, _, stderr) = run(order_svc()
        .arg("migrate")
        .env("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/shop"));
    assert!(!out.status.success());
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("shop"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}
