//! The HTTP half of `serve`: the JSON API, the cache, the pages, OpenAPI.

use std::collections::HashSet;

use order_svc::generate::{GenerateOptions, Generator};
use serde_json::Value;

use crate::helpers::{Reply, Serve, TestDb, count, header, http, http_get, wait_for};
use crate::kafka::{TestTopic, producer, send_all};

pub const CANONICAL: &str = include_str!("../data/model.json");

/// Orders of a test's own, stored through ingest (a `serve --role ingest` that is stopped
/// again): the database, and the JSON of each stored order.
pub struct Stored {
    pub db: TestDb,
    pub topic: TestTopic,
    pub orders: Vec<Value>,
}

impl Stored {
    pub async fn new(extra: Vec<Value>) -> Self {
        let db = TestDb::unique();
        crate::helpers::migrate(&db.url);
        let topic = TestTopic::create().await;
        let mut generator = Generator::new(GenerateOptions {
            seed: 31,
            ..GenerateOptions::default()
        });
        let mut orders: Vec<Value> = (0..20)
            .map(|_| serde_json::to_value(generator.valid_order()).unwrap())
            .collect();
        orders.push(serde_json::from_str(CANONICAL).unwrap());
        orders.extend(extra);
        let messages: Vec<_> = orders
            .iter()
            .map(|o| {
                (
                    o["order_uid"].as_str().map(str::to_owned),
                    serde_json::to_vec(o).unwrap(),
                )
            })
            .collect();
        send_all(&producer(), &topic.name, &messages).await;
        let mut env = topic.serve_env(&db.url, "ingest");
        env.push(("SERVE_ROLE", "ingest".into()));
        let ingest = Serve::start(&env).await;
        let client = db.client().await;
        wait_for(60, "orders stored", || async {
            (count(&client, "orders").await == orders.len() as i64).then_some(())
        })
        .await;
        drop(ingest);
        Self { db, topic, orders }
    }

    pub async fn api(&self, extra: &[(&'static str, &str)]) -> Serve {
        let mut env = self.topic.serve_env(&self.db.url, "api");
        env.push(("SERVE_ROLE", "api".into()));
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        Serve::start(&env).await
    }

    pub fn uid(&self, i: usize) -> &str {
        self.orders[i]["order_uid"].as_str().unwrap()
    }
}

async fn get(serve: &Serve, path: &str) -> Reply {
    http_get(serve.http_port, path, &[])
        .await
        .expect("the server answers")
}

fn json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.2)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&reply.2)))
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.0, status, "{}", String::from_utf8_lossy(&reply.2));
    assert_eq!(header(reply, "content-type"), Some("application/json"));
    let body = json(reply);
    assert_eq!(body["error"], code);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn an_uncached_order_is_a_miss_then_a_hit_and_equals_what_arrived() {
    let stored = Stored::new(vec![]).await;
    let serve = stored.api(&[("CACHE_PRELOAD", "0")]).await;
    serve.wait_ready().await;
    let canonical = stored.orders.len() - 1;
    let first = get(&serve, &format!("/order/{}", stored.uid(canonical))).await;
    assert_eq!(first.0, 200);
    assert_eq!(header(&first, "x-cache"), Some("miss"));
    assert_eq!(
        json(&first),
        serde_json::from_str::<Value>(CANONICAL).unwrap(),
        "the canonical order comes back equal"
    );
    let second = get(&serve, &format!("/order/{}", stored.uid(canonical))).await;
    assert_eq!(header(&second, "x-cache"), Some("hit"));
    assert_eq!(second.2, first.2, "a hit writes the same bytes");
    // Kept by the browser only (personal data), revalidated by its tag each time.
    assert_eq!(header(&second, "cache-control"), Some("private, no-cache"));
    assert!(
        serve
            .metric("order_svc_cache_requests_total{result=\"hit\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn after_a_restart_the_preload_makes_the_first_lookup_a_hit() {
    let stored = Stored::new(vec![]).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    for i in [0, 5, stored.orders.len() - 1] {
        let reply = get(&serve, &format!("/order/{}", stored.uid(i))).await;
        assert_eq!(
            (reply.0, header(&reply, "x-cache")),
            (200, Some("hit")),
            "order {i}"
        );
        assert_eq!(json(&reply), stored.orders[i]);
    }
    assert!(
        serve.logs().contains("cache preloaded"),
        "the preload is reported in the log"
    );
}

#[tokio::test]
async fn unknown_and_malformed_uids_get_json_errors() {
    let stored = Stored::new(vec![]).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    assert_error(&get(&serve, "/order/nosuchorder1").await, 404, "not_found");
    let too_long = format!("/order/{}", "a".repeat(65));
    for path in [
        "/order/not-alnum",
        "/order/",
        "/order/%C3%A9t%C3%A9",
        too_long.as_str(),
        "/order/a/b",
    ] {
        assert_error(&get(&serve, path).await, 400, "invalid_uid");
    }
    assert_eq!(
        get(&serve, &format!("/order/{}", "a".repeat(64))).await.0,
        404,
        "64 characters is a valid uid"
    );
    assert_error(&get(&serve, "/no/such/route").await, 404, "not_found");
    let long_path = format!("/{}", "x".repeat(600));
    let refused = get(&serve, &long_path).await;
    assert_error(&refused, 414, "uri_too_long");
    // Answered before routing, still with every header every answer has.
    for name in [
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
        "x-request-id",
    ] {
        assert!(header(&refused, name).is_some(), "414 without {name}");
    }
}

#[tokio::test]
async fn a_matching_etag_gets_304_and_a_wrong_method_gets_405() {
    let stored = Stored::new(vec![]).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    let path = format!("/order/{}", stored.uid(3));
    let first = get(&serve, &path).await;
    let etag = header(&first, "etag").expect("an ETag").to_owned();
    let again = http_get(serve.http_port, &path, &[("If-None-Match", &etag)])
        .await
        .unwrap();
    assert_eq!(again.0, 304);
    assert!(again.2.is_empty());
    let other = http_get(serve.http_port, &path, &[("If-None-Match", "\"0000\"")])
        .await
        .unwrap();
    assert_eq!(other.0, 200);

    let post = http(serve.http_port, "POST", &path, &[]).await.unwrap();
    assert_error(&post, 405, "method_not_allowed");
    assert_eq!(header(&post, "allow"), Some("GET, HEAD"));
    assert_eq!(
        http(serve.http_port, "DELETE", "/", &[]).await.unwrap().0,
        405
    );
}

#[tokio::test]
async fn with_postgres_down_a_cached_order_is_200_and_an_uncached_one_is_503() {
    let stored = Stored::new(vec![]).await;
    let proxy = crate::proxy::CutProxy::start(crate::helpers::pg_addr()).await;
    let url = stored.db.url.replace(
        &crate::helpers::pg_host_port(),
        &format!("127.0.0.1:{}", proxy.port),
    );
    let mut env = stored.topic.serve_env(&url, "api");
    // Masked reads need no audit record, so the cache answers them with the database gone;
    // an unmasked read cannot be audited then, and is refused.
    env.extend([
        ("SERVE_ROLE", "api".to_owned()),
        ("CACHE_PRELOAD", "0".to_owned()),
        ("AUTH_ANONYMOUS_SCOPES", "orders:read".to_owned()),
        ("AUTH_API_KEYS", "true".to_owned()),
    ]);
    let support = crate::access::create_key(&stored.db.url, "support", "orders:read,pii:read");
    let serve = Serve::start(&env).await;
    serve.wait_ready().await;
    assert_eq!(
        get(&serve, &format!("/order/{}", stored.uid(0))).await.0,
        200
    );

    proxy.cut();
    wait_for(15, "readiness to turn false", || async {
        (serve.status("/readyz").await == Some(503)).then_some(())
    })
    .await;
    let cached = get(&serve, &format!("/order/{}", stored.uid(0))).await;
    assert_eq!((cached.0, header(&cached, "x-cache")), (200, Some("hit")));
    let unmasked = http_get(
        serve.http_port,
        &format!("/order/{}", stored.uid(0)),
        &[("Authorization", &format!("Bearer {support}"))],
    )
    .await
    .unwrap();
    // Refused: its key cannot be checked (auth_unavailable) or, while the key is still
    // remembered, its read cannot be audited (audit_unavailable). Never the order.
    assert_eq!(unmasked.0, 503);
    let code = json(&unmasked)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(code.ends_with("_unavailable"), "{code}");
    assert!(!String::from_utf8_lossy(&unmasked.2).contains("delivery"));
    assert_error(
        &get(&serve, &format!("/order/{}", stored.uid(1))).await,
        503,
        "unavailable",
    );
    proxy.restore();
    serve.wait_ready().await;
    assert_eq!(
        get(&serve, &format!("/order/{}", stored.uid(1))).await.0,
        200
    );
}

#[tokio::test]
async fn hostile_field_values_are_shown_as_text_on_the_server_rendered_page() {
    let mut hostile: Value = serde_json::from_str(CANONICAL).unwrap();
    hostile["order_uid"] = "hostile1".into();
    hostile["delivery"]["name"] = "<script>alert(1)</script>".into();
    hostile["items"][0]["brand"] = "\"><img src=x onerror=alert(2)>".into();
    let stored = Stored::new(vec![hostile]).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    let page = get(&serve, "/orders/hostile1").await;
    assert_eq!(page.0, 200);
    let html = String::from_utf8(page.2.clone()).unwrap();
    assert!(
        !html.contains("<script>alert(1)"),
        "the name must not become markup"
    );
    assert!(
        !html.contains("<img src=x"),
        "the brand must not become markup"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
        "the name is shown escaped"
    );
    assert!(
        html.contains("Kiryat Mozkin") && html.contains("1,817.00 USD"),
        "the order's fields are on the page"
    );
    let csp = header(&page, "content-security-policy").unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(get(&serve, "/orders/nosuchorder").await.0, 404);
    assert_eq!(get(&serve, "/orders/bad-uid").await.0, 400);
}

/// The described API against the real answers: every schema the document gives for a
/// response is checked on a response of that status.
#[tokio::test]
async fn openapi_describes_the_real_responses() {
    let stored = Stored::new(vec![]).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    let spec = json(&get(&serve, "/openapi.json").await);
    let order_path = &spec["paths"]["/order/{order_uid}"]["get"]["responses"];
    let cases = [
        ("200", format!("/order/{}", stored.uid(2))),
        ("400", "/order/not-alnum".to_owned()),
        ("404", "/order/nosuchorder".to_owned()),
    ];
    for (status, path) in &cases {
        let reply = get(&serve, path).await;
        assert_eq!(reply.0.to_string(), *status, "{path}");
        let at = [
            "paths",
            "/order/{order_uid}",
            "get",
            "responses",
            status,
            "content",
            "application/json",
            "schema",
        ];
        conforms(&spec, &at, &json(&reply), path);
    }
    for (path, status) in [("/healthz", "200"), ("/readyz", "200")] {
        let reply = get(&serve, path).await;
        let at = [
            "paths",
            path,
            "get",
            "responses",
            status,
            "content",
            "application/json",
            "schema",
        ];
        conforms(&spec, &at, &json(&reply), path);
    }
    // The check can fail: a wrong error code, and an order with a date that is no date.
    let error_at = [
        "paths",
        "/order/{order_uid}",
        "get",
        "responses",
        "404",
        "content",
        "application/json",
        "schema",
    ];
    let wrong = serde_json::json!({"error": "nope", "message": "x"});
    assert!(!violations(&spec, &error_at, &wrong, "wrong").is_empty());
    let order_at = [
        "paths",
        "/order/{order_uid}",
        "get",
        "responses",
        "200",
        "content",
        "application/json",
        "schema",
    ];
    let mut order = json(&get(&serve, &format!("/order/{}", stored.uid(2))).await);
    order["date_created"] = "yesterday".into();
    assert!(!violations(&spec, &order_at, &order, "bad date").is_empty());
    let documented: HashSet<&str> = order_path
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for status in ["200", "304", "400", "404", "405", "503"] {
        assert!(
            documented.contains(status),
            "status {status} of /order/{{order_uid}} is documented"
        );
    }
}

/// Checks `value` against the schema at `at` in the OpenAPI document with a real JSON
/// Schema validator (formats and patterns included; OpenAPI 3.0 schemas are draft 4's
/// dialect). A missing schema or a dangling `$ref` fails.
pub fn conforms(spec: &Value, at: &[&str], value: &Value, path: &str) {
    let errors = violations(spec, at, value, path);
    assert!(
        errors.is_empty(),
        "{path}: {value} does not conform: {errors:#?}"
    );
}

fn violations(spec: &Value, at: &[&str], value: &Value, path: &str) -> Vec<String> {
    let mut node = spec;
    for part in at {
        node = node
            .get(*part)
            .unwrap_or_else(|| panic!("{path}: the document has no schema at {at:?}"));
    }
    assert!(
        node.is_object(),
        "{path}: the schema at {at:?} is not an object"
    );
    let pointer: String = at
        .iter()
        .map(|p| {
            let escaped = p.replace('~', "~0").replace('/', "~1");
            format!("/{}", escaped.replace('{', "%7B").replace('}', "%7D"))
        })
        .collect();
    // The whole document is the root, so that `#/components/...` references resolve.
    let mut root = spec.clone();
    nullable_as_json_schema(&mut root);
    root["$ref"] = Value::String(format!("#{pointer}"));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{path}: the schema at {at:?} does not compile: {e}"));
    validator
        .iter_errors(value)
        .map(|e| format!("{e} (at {})", e.instance_path))
        .collect()
}

/// OpenAPI 3.0's `nullable: true` beside a `type`, as draft 4 says it: the type or null.
fn nullable_as_json_schema(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true))
                && let Some(Value::String(t)) = map.get("type").cloned()
            {
                map.insert("type".into(), serde_json::json!([t, "null"]));
            }
            map.values_mut().for_each(nullable_as_json_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_as_json_schema),
        _ => {}
    }
}

/// A row written before the date rule existed (or by another writer) cannot be read back as
/// an order: the preload skips it, the service still becomes ready, and its lookup says so.
#[tokio::test]
async fn an_unreadable_row_is_skipped_by_the_preload_and_answered_with_a_json_error() {
    let stored = Stored::new(vec![]).await;
    let client = stored.db.client().await;
    client
        .batch_execute(&format!(
            "ALTER TABLE orders DROP CONSTRAINT orders_date_created_check;
             UPDATE orders SET date_created = '0001-06-01 00:00:00+00 BC' WHERE order_uid = '{}'",
            stored.uid(0)
        ))
        .await
        .unwrap();
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    assert_eq!(serve.metric("order_svc_orders_unreadable_total").await, 1.0);

    let bad = get(&serve, &format!("/order/{}", stored.uid(0))).await;
    assert_eq!(bad.0, 500);
    assert_eq!(json(&bad)["error"], "order_unreadable");
    let good = get(&serve, &format!("/order/{}", stored.uid(1))).await;
    assert_eq!(good.0, 200);
    assert_eq!(
        header(&good, "x-cache"),
        Some("hit"),
        "the other rows were preloaded"
    );
}

#[tokio::test]
async fn every_route_answers_a_wrong_method_with_405_and_allow() {
    let stored = Stored::new(vec![]).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    let order = format!("/order/{}", stored.uid(0));
    let page = format!("/orders/{}", stored.uid(0));
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/static/app.js",
        "/",
        order.as_str(),
        page.as_str(),
    ] {
        for method in ["POST", "PUT", "DELETE", "BREW"] {
            let reply = http(serve.http_port, method, path, &[]).await.unwrap();
            assert_error(&reply, 405, "method_not_allowed");
            assert_eq!(
                header(&reply, "allow"),
                Some("GET, HEAD"),
                "{method} {path}"
            );
        }
        let head = http(serve.http_port, "HEAD", path, &[]).await.unwrap();
        assert_eq!(head.0, 200, "HEAD {path}");
    }
    // An invented method is counted as `other`, never under its own name.
    let metrics = String::from_utf8(get(&serve, "/metrics").await.2).unwrap();
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    assert!(!metrics.contains("BREW"));
}

#[tokio::test]
async fn orders_are_private_to_caches_and_unknown_uids_are_remembered_briefly() {
    let stored = Stored::new(vec![]).await;
    // Unless asked for, nothing says whether an order was read recently.
    let quiet = stored.api(&[("HTTP_DEBUG_HEADERS", "false")]).await;
    quiet.wait_ready().await;
    for _ in 0..2 {
        let reply = get(&quiet, &format!("/order/{}", stored.uid(0))).await;
        assert_eq!(reply.0, 200);
        assert_eq!(header(&reply, "x-cache"), None);
    }
    drop(quiet);
    let serve = stored.api(&[("CACHE_PRELOAD", "0")]).await;
    serve.wait_ready().await;
    // The JSON may be kept by the browser (revalidated by its tag), never by a shared
    // cache; a page of personal data is not kept at all.
    for (path, expected) in [
        (format!("/order/{}", stored.uid(0)), "private, no-cache"),
        (format!("/orders/{}", stored.uid(0)), "no-store"),
    ] {
        let reply = get(&serve, &path).await;
        let control = header(&reply, "cache-control").unwrap_or_default();
        assert_eq!(control, expected, "{path}");
    }

    let finds = serve
        .metric("order_svc_db_query_seconds_count{op=\"find\"}")
        .await;
    let rejection_reads = serve
        .metric_or_zero("order_svc_db_query_seconds_count{op=\"rejections\"}")
        .await;
    for _ in 0..20 {
        assert_error(&get(&serve, "/order/neverstored1").await, 404, "not_found");
    }
    assert_eq!(
        serve
            .metric("order_svc_db_query_seconds_count{op=\"find\"}")
            .await
            - finds,
        1.0,
        "one query for twenty lookups of the same unknown uid"
    );
    assert_eq!(
        serve
            .metric("order_svc_db_query_seconds_count{op=\"rejections\"}")
            .await
            - rejection_reads,
        1.0,
        "its dead letters read once too (each 404 lists them)"
    );
    assert_eq!(
        serve
            .metric("order_svc_cache_requests_total{result=\"negative_hit\"}")
            .await,
        19.0
    );
}

#[tokio::test]
async fn metrics_can_be_served_on_an_address_of_their_own() {
    let db = crate::helpers::migrated_db();
    let serve = Serve::start(&[
        ("SERVE_ROLE", "api".to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
    ])
    .await;
    serve.wait_ready().await;
    let port: u16 = wait_for(10, "the metrics address in the log", || async {
        crate::helpers::logged_port(&serve.logs(), "serving /metrics")
    })
    .await;
    assert_ne!(port, serve.http_port);
    let (status, _, body) = http_get(port, "/metrics", &[]).await.expect("an answer");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("order_svc_orders_ingested_total"));
    // Not on the API's address any more, and nothing else on the metrics one.
    let (status, _, _) = http_get(serve.http_port, "/metrics", &[]).await.unwrap();
    assert_eq!(status, 404);
    let (status, _, _) = http_get(port, "/order/x", &[]).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(serve.status("/healthz").await, Some(200));
}

/// The preload's reads on a real PostgreSQL: where the newest N begin, and pages that
/// follow one another without a gap or an overlap, oldest first.
#[tokio::test]
async fn the_preload_pages_through_the_newest_orders_in_the_order_they_were_stored() {
    use std::ops::Bound;
    use std::str::FromStr;

    use order_svc::adapters::postgres::DatabaseUrl;
    use order_svc::adapters::postgres::pool::{PgStore, pool};
    use order_svc::domain::ports::{OrderReader, OrderStore};
    use order_svc::domain::validate::{Consistency, accept};

    let db = crate::helpers::migrated_db();
    let url = DatabaseUrl::from_str(&db.url).unwrap();
    let timeout = std::time::Duration::from_secs(30);
    let store = PgStore::new(pool(&url, 2, timeout).unwrap(), timeout);
    let mut generator = Generator::new(GenerateOptions::default());
    let mut stored_order = Vec::new();
    // Three statements, so that some orders share nothing but their uid order in time.
    for _ in 0..3 {
        let batch: Vec<_> = (0..7)
            .map(|_| {
                accept(
                    &generator.valid_order().to_json(),
                    1 << 20,
                    Consistency::Warn,
                )
                .unwrap()
            })
            .collect();
        store.store_batch(&batch).await.unwrap();
        stored_order.extend(batch.iter().map(|c| c.uid().as_str().to_owned()));
    }
    // Where the newest 10 begin, then those 10 in pages of 4.
    let start = store.newest_start(10).await.unwrap().unwrap();
    let mut from = Bound::Included(start);
    let mut read = Vec::new();
    // Bounded: pages that overlapped would never end.
    for _ in 0..10 {
        let page = store.page(from.as_ref(), 4).await.unwrap();
        let Some((last, _)) = page.last() else { break };
        from = Bound::Excluded(last.clone());
        read.extend(page.iter().map(|(_, o)| o.uid.as_str().to_owned()));
    }
    let mut by_time: Vec<(chrono::DateTime<chrono::Utc>, String)> = Vec::new();
    let client = db.client().await;
    for row in client
        .query(
            "SELECT ingested_at, order_uid FROM orders ORDER BY ingested_at, order_uid",
            &[],
        )
        .await
        .unwrap()
    {
        by_time.push((row.get(0), row.get(1)));
    }
    let expected: Vec<String> = by_time[by_time.len() - 10..]
        .iter()
        .map(|(_, u)| u.clone())
        .collect();
    assert_eq!(read, expected, "no gap, no overlap, oldest first");
    assert_eq!(by_time.len(), stored_order.len());
    // More asked for than stored: from the oldest.
    let all = store.newest_start(100).await.unwrap().unwrap();
    assert_eq!(all.uid.as_str(), by_time[0].1);
}

/// A lookup that holds every connection of its pool (the order tables locked away from it)
/// does not make the service report the database unreachable: the readiness check has a
/// connection of its own.
#[tokio::test]
async fn lookups_holding_their_whole_pool_leave_the_readiness_check_its_connection() {
    let stored = Stored::new(vec![]).await;
    let serve = stored
        .api(&[("DATABASE_POOL_SIZE", "1"), ("CACHE_PRELOAD", "0")])
        .await;
    serve.wait_ready().await;
    let mut locker = stored.db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // A miss now waits on the lock, holding the pool's one connection.
    let port = serve.http_port;
    let uid = stored.uid(3).to_owned();
    let blocked = tokio::spawn(async move { http_get(port, &format!("/order/{uid}"), &[]).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!blocked.is_finished(), "the lookup should wait on the lock");
    // Three seconds of the readiness check (it pings every second, giving up after 2 s;
    // the lookup's statement is stopped by the server after 4.5 s, and the lookup gives up
    // after 5).
    for _ in 0..6 {
        assert_eq!(serve.status("/readyz").await, Some(200));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    tx.rollback().await.unwrap();
    let reply = blocked
        .await
        .unwrap()
        .expect("answered once the lock is gone");
    assert_eq!(reply.0, 200);
}

#[tokio::test]
async fn a_lookup_given_up_on_stops_on_the_server_too() {
    let stored = Stored::new(vec![]).await;
    // Preload off, so that the order is read from the table.
    let serve = stored.api(&[("CACHE_PRELOAD", "0")]).await;
    serve.wait_ready().await;
    // A transaction of someone else's holds the orders table: the lookup's read waits.
    let mut locker = stored.db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let reply = get(&serve, &format!("/order/{}", stored.uid(3))).await;
    assert_eq!(reply.0, 503, "the caller is told after 5 s");
    // The server has stopped the statement too (statement_timeout 4.5 s on the lookups'
    // connections), rather than holding a backend in the lock queue for 30 s more.
    let watcher = stored.db.client().await;
    let waiting: i64 = watcher
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'order-svc' \
             AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "a lookup's statement still waits on the server");
    tx.rollback().await.unwrap();
}
