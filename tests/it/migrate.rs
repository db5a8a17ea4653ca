use crate::helpers::{TestDb, order_svc, run};

/// Every migration in `migrations/`: each is applied once and recorded.
fn migrations() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sql"))
        })
        .count()
}

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
    assert_eq!(history as usize, migrations());
    assert!(migrations() >= 5, "the migrations are found");
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
    // Free text has its bound in storage too (migrations/V10): 256 characters, not bytes.
    for (customer, ok) in [("é".repeat(256), true), ("é".repeat(257), false)] {
        let result = client
            .execute(
                "INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature,
                    customer_id, delivery_service, shardkey, sm_id, date_created, oof_shard,
                    content_hash)
                 VALUES ($1, 'WBILMTESTTRACK', 'WBIL', 'en', '', $2, 'meest', '9', 1,
                    now(), '1', decode(repeat('ab', 32), 'hex'))",
                &[&if ok { "long1" } else { "long2" }, &customer],
            )
            .await;
        match result {
            Ok(_) => assert!(ok, "257 characters stored"),
            Err(e) => {
                assert!(!ok, "{e}");
                assert_eq!(
                    e.code(),
                    Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
                );
            }
        }
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

/// deploy/postgres/purge.sql, run by psql as documented: the orders older than `keep` go
/// with every part of them, the newer ones stay whole and still read back.
#[tokio::test]
async fn the_documented_purge_deletes_old_orders_with_their_parts_and_keeps_the_rest() {
    let stored = crate::lookup::Stored::new(vec![]).await;
    let client = stored.db.client().await;
    let old: Vec<String> = (0..5).map(|i| stored.uid(i).to_owned()).collect();
    client
        .execute(
            "UPDATE orders SET ingested_at = now() - interval '100 days' WHERE order_uid = ANY($1)",
            &[&old],
        )
        .await
        .unwrap();
    let total = stored.orders.len() as i64;
    let (out, _, stderr) = run(std::process::Command::new("psql").arg(&stored.db.url).args(
        ["-v", "keep=90 days", "-f", "../deploy/postgres/purge.sql"]
            .map(|a| a.replace("../", concat!(env!("CARGO_MANIFEST_DIR"), "/"))),
    ));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("purged 5 orders"), "{stderr}");
    for table in ["orders", "deliveries", "payments"] {
        assert_eq!(
            crate::helpers::count(&client, table).await,
            total - 5,
            "{table}"
        );
    }
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM items WHERE order_uid = ANY($1)",
            &[&old],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    // The rest reads back through the API as it arrived.
    let api = stored.api(&[]).await;
    api.wait_ready().await;
    let (status, _, body) =
        crate::helpers::http_get(api.http_port, &format!("/order/{}", stored.uid(7)), &[])
            .await
            .unwrap();
    assert_eq!(status, 200);
    let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(got, stored.orders[7]);
    let (status, _, _) =
        crate::helpers::http_get(api.http_port, &format!("/order/{}", old[0]), &[])
            .await
            .unwrap();
    assert_eq!(status, 404);
}

/// `just test`'s cleanup (scripts/test-services.sh) drops the databases of runs that are over
/// and keeps those of a run still going: the run's lease is an advisory lock its process
/// holds, whatever user or PID namespace the cleanup runs in.
#[tokio::test]
async fn the_cleanup_keeps_a_live_runs_databases_and_drops_those_of_runs_that_are_over() {
    use crate::helpers::{LEASE_CLASS, connect, lease};
    let ours = crate::helpers::migrated_db();
    let admin = connect(&crate::helpers::admin_url()).await;
    let held: bool = admin
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&LEASE_CLASS, &lease()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!held, "this run's lease is held by its own session");
    // A database of a run that is over: a lease nobody holds.
    let over = lease().wrapping_add(1).max(1);
    let theirs = format!("itl_{over}_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE \"{theirs}\""))
        .await
        .unwrap();

    let out = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/test-services.sh"
    ))
    .output()
    .expect("the cleanup runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exists = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(
        exists(ours.name.clone()).await,
        "a live run's database was dropped"
    );
    assert!(!exists(theirs).await, "a finished run's database was kept");
}
