//! Finding orders without their uid (`GET /orders`) and why an order never arrived (a 404
//! with `rejected`, `GET /rejections`), on real PostgreSQL and Kafka.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use order_svc::generate::{GenerateOptions, Generator};
use serde_json::Value;

use crate::helpers::{Serve, count, http_get, migrated_db, wait_for};
use crate::kafka::{TestTopic, producer, send_all};
use crate::lookup::{Stored, conforms};

/// `body` is what the API document says `path`'s `status` answer holds.
async fn documented(serve: &Serve, path: &str, status: u16, body: &Value) {
    let (_, spec) = get_json(serve, "/openapi.json").await;
    let route = path.split('?').next().unwrap();
    let route = if route.starts_with("/order/") {
        "/order/{order_uid}"
    } else {
        route
    };
    let status = status.to_string();
    let at = [
        "paths",
        route,
        "get",
        "responses",
        &status,
        "content",
        "application/json",
        "schema",
    ];
    conforms(&spec, &at, body, path);
}

async fn get_json(serve: &Serve, path: &str) -> (u16, Value) {
    let reply = http_get(serve.http_port, path, &[])
        .await
        .expect("the server answers");
    let body = serde_json::from_slice(&reply.2)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {:?}", reply.2));
    (reply.0, body)
}

/// `s` as a query-string value: everything but ASCII letters and digits percent-encoded.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn uids(body: &Value) -> BTreeSet<String> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {body}"))
        .iter()
        .map(|s| s["order_uid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn orders_are_listed_newest_first_a_page_at_a_time_and_found_by_what_people_hold() {
    let stored = Stored::new(vec![]).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;

    // Every order once, pages of 4, in the database's newest-first order.
    let mut listed: Vec<(String, DateTime<Utc>)> = Vec::new();
    let mut path = "/orders?limit=4".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = get_json(&serve, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        pages += 1;
        for s in body["items"].as_array().unwrap() {
            let at: DateTime<Utc> = s["stored_at"].as_str().unwrap().parse().unwrap();
            listed.push((s["order_uid"].as_str().unwrap().to_owned(), at));
        }
        match body["next"].as_str() {
            Some(next) => path = format!("/orders?limit=4&before={next}"),
            None => break,
        }
    }
    let client = stored.db.client().await;
    let expected: Vec<String> = client
        .query(
            "SELECT order_uid FROM orders ORDER BY ingested_at DESC, order_uid DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let got: Vec<String> = listed.iter().map(|(u, _)| u.clone()).collect();
    assert_eq!(got, expected, "each order once, newest first");
    assert_eq!(got.len(), stored.orders.len());
    assert_eq!(pages, stored.orders.len().div_ceil(4));
    assert!(listed.windows(2).all(|w| w[0].1 >= w[1].1));

    // A summary says what the order says.
    let canonical = &stored.orders[stored.orders.len() - 1];
    let uid = canonical["order_uid"].as_str().unwrap();
    let (_, body) = get_json(&serve, &format!("/orders?q={uid}")).await;
    let summary = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["order_uid"] == uid)
        .unwrap_or_else(|| panic!("q={uid} finds its order: {body}"));
    assert_eq!(summary["customer_id"], canonical["customer_id"]);
    assert_eq!(summary["name"], canonical["delivery"]["name"]);
    assert_eq!(summary["city"], canonical["delivery"]["city"]);
    assert_eq!(summary["amount"], canonical["payment"]["amount"]);
    assert_eq!(summary["currency"], canonical["payment"]["currency"]);
    assert_eq!(
        summary["items"],
        canonical["items"].as_array().unwrap().len()
    );
    let created: DateTime<Utc> = summary["date_created"].as_str().unwrap().parse().unwrap();
    let sent: DateTime<Utc> = canonical["date_created"].as_str().unwrap().parse().unwrap();
    assert_eq!(created, sent);

    // Ingest writes each order's item count with it (V6); an order written before that (or
    // by another writer) has none, and its items are counted when it is listed.
    let uncounted: i64 = client
        .query_one(
            "SELECT count(*) FROM orders o WHERE item_count IS DISTINCT FROM \
             (SELECT count(*) FROM items i WHERE i.order_uid = o.order_uid)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(uncounted, 0, "every stored order has its item count");
    let many = stored
        .orders
        .iter()
        .max_by_key(|o| o["items"].as_array().unwrap().len())
        .unwrap();
    let (many_uid, count) = (
        many["order_uid"].as_str().unwrap(),
        many["items"].as_array().unwrap().len(),
    );
    assert!(count > 1, "an order with several items to count");
    client
        .execute(
            "UPDATE orders SET item_count = NULL WHERE order_uid = $1",
            &[&many_uid],
        )
        .await
        .unwrap();
    let (_, body) = get_json(&serve, &format!("/orders?q={many_uid}")).await;
    assert_eq!(body["items"][0]["items"], count, "{body}");

    // Each search finds exactly the orders whose field holds the value, as computed here
    // from the orders sent; phones and e-mails however they are written.
    let holding = |f: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        stored
            .orders
            .iter()
            .filter(|o| f(o))
            .map(|o| o["order_uid"].as_str().unwrap().to_owned())
            .collect()
    };
    let other = &stored.orders[3];
    let track = canonical["track_number"].as_str().unwrap();
    let transaction = other["payment"]["transaction"].as_str().unwrap();
    let customer = other["customer_id"].as_str().unwrap();
    let phone = other["delivery"]["phone"].as_str().unwrap();
    let email = other["delivery"]["email"].as_str().unwrap();
    let spaced_phone = format!("00{} {}-{}", &phone[1..3], &phone[3..6], &phone[6..]);
    let cases: Vec<(String, BTreeSet<String>)> = vec![
        (
            format!("track_number={}", enc(track)),
            holding(&|o| o["track_number"] == track),
        ),
        (
            format!("transaction={}", enc(transaction)),
            holding(&|o| o["payment"]["transaction"] == transaction),
        ),
        (
            format!("customer_id={}", enc(customer)),
            holding(&|o| o["customer_id"] == customer),
        ),
        (
            format!("phone={}", enc(&spaced_phone)),
            holding(&|o| o["delivery"]["phone"] == phone),
        ),
        (
            format!("email={}", enc(&email.to_uppercase())),
            holding(&|o| {
                o["delivery"]["email"]
                    .as_str()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            }),
        ),
        (
            format!("q={}", enc(&phone[1..])),
            holding(&|o| o["delivery"]["phone"] == phone || o["customer_id"] == phone[1..]),
        ),
        (
            format!("track_number={}&email={}", enc(track), enc(email)),
            holding(&|o| o["track_number"] == track && o["delivery"]["email"] == email),
        ),
        ("track_number=NOSUCHTRACK".to_owned(), BTreeSet::new()),
    ];
    for (query, expected) in cases {
        let (status, body) = get_json(&serve, &format!("/orders?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(uids(&body), expected, "{query}");
        assert!(body["next"].is_null(), "{query}: {body}");
    }
    assert!(
        !holding(&|o| o["track_number"] == track).is_empty()
            && !holding(&|o| o["delivery"]["phone"] == phone).is_empty(),
        "the searches above look for values that are there"
    );

    let (status, body) = get_json(&serve, "/orders?phone=12345").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_query"))
    );
}

/// A valid order, one whose amount does not add up (stored only when
/// VALIDATION_CONSISTENCY allows), and one with a phone that is no phone.
pub fn three_orders(seed: u64) -> [Value; 3] {
    let mut generator = Generator::new(GenerateOptions {
        seed,
        ..GenerateOptions::default()
    });
    let mut order = || serde_json::to_value(generator.valid_order()).unwrap();
    let valid = order();
    let mut inconsistent = order();
    inconsistent["payment"]["amount"] =
        (inconsistent["payment"]["amount"].as_i64().unwrap() + 1).into();
    let mut bad_phone = order();
    bad_phone["delivery"]["phone"] = "12".into();
    [valid, inconsistent, bad_phone]
}

pub fn uid(o: &Value) -> String {
    o["order_uid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_rejected_order_answers_404_with_why_and_its_records_say_what_identifies_it() {
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    let [valid, inconsistent, bad_phone] = three_orders(77);
    let messages = vec![
        (Some(uid(&valid)), serde_json::to_vec(&valid).unwrap()),
        (
            Some(uid(&inconsistent)),
            serde_json::to_vec(&inconsistent).unwrap(),
        ),
        (
            Some(uid(&bad_phone)),
            serde_json::to_vec(&bad_phone).unwrap(),
        ),
        (Some("k-garbage".to_owned()), b"\xff{ not json".to_vec()),
    ];
    let positions = send_all(&producer(), &topic.name, &messages).await;
    let mut env = topic.serve_env(&db.url, "rejections");
    env.push(("VALIDATION_CONSISTENCY", "reject".into()));
    let serve = Serve::start(&env).await;
    serve.wait_ready().await;
    let client = db.client().await;
    wait_for(60, "one order and three dead letters", || async {
        (count(&client, "orders").await == 1 && count(&client, "dead_letters").await == 3)
            .then_some(())
    })
    .await;

    let (status, body) = get_json(&serve, &format!("/order/{}", uid(&inconsistent))).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{body}");
    assert_eq!(rejected[0]["reason"], "inconsistent");
    assert!(
        rejected[0]["detail"]
            .as_str()
            .unwrap()
            .contains("payment.amount"),
        "{body}"
    );
    let (_, body) = get_json(&serve, &format!("/order/{}", uid(&bad_phone))).await;
    assert_eq!(body["rejected"][0]["reason"], "invalid", "{body}");
    assert!(
        body["rejected"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("delivery.phone"),
        "{body}"
    );
    let (status, body) = get_json(&serve, "/order/neverseen").await;
    assert_eq!((status, &body["rejected"]), (404, &serde_json::json!([])));
    assert_eq!(
        get_json(&serve, &format!("/order/{}", uid(&valid))).await.0,
        200
    );

    // The record of one uid: where the message was, its key and time.
    let (status, body) = get_json(&serve, &format!("/rejections?uid={}", uid(&inconsistent))).await;
    assert_eq!(status, 200, "{body}");
    let record = &body["items"][0];
    assert_eq!(record["order_uid"], uid(&inconsistent).as_str());
    assert_eq!(record["key"], uid(&inconsistent).as_str());
    assert_eq!(record["topic"], topic.name.as_str());
    assert_eq!(record["partition"], positions[1].0);
    assert_eq!(record["offset"], positions[1].1);
    let time: DateTime<Utc> = record["message_time"].as_str().unwrap().parse().unwrap();
    assert!((Utc::now() - time).num_minutes().abs() < 5, "{record}");

    // All of them, newest first, two pages; the unreadable one has its key but no uid.
    let (_, first) = get_json(&serve, "/rejections?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2, "{first}");
    let next = first["next"].as_str().expect("a second page");
    let (_, second) = get_json(&serve, &format!("/rejections?limit=2&before={next}")).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1, "{second}");
    assert!(second["next"].is_null());
    let all: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .collect();
    let keys: BTreeSet<&str> = all.iter().map(|r| r["key"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = messages[1..]
        .iter()
        .map(|m| m.0.as_deref().unwrap())
        .collect();
    assert_eq!(keys, expected);
    documented(&serve, "/rejections", 200, &first).await;
    documented(&serve, "/rejections", 200, &second).await;
    let path = format!("/order/{}", uid(&bad_phone));
    let (status, body) = get_json(&serve, &path).await;
    documented(&serve, &path, status, &body).await;
    let garbage = all.iter().find(|r| r["key"] == "k-garbage").unwrap();
    assert!(garbage["order_uid"].is_null(), "{garbage}");
    assert_eq!(garbage["reason"], "malformed");
    let ats: Vec<DateTime<Utc>> = all
        .iter()
        .map(|r| r["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ats.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {ats:?}"
    );
}

#[tokio::test]
async fn a_dead_letters_long_key_is_kept_as_a_prefix_and_the_hash_of_the_whole() {
    use sha2::{Digest, Sha256};
    let (db, topic) = (migrated_db(), TestTopic::create().await);
    // A key of 100 kB (any producer may send one) on a payload that is no order.
    let long = "k".repeat(100_000);
    let short = "k-short".to_owned();
    let messages = vec![
        (Some(long.clone()), b"not an order".to_vec()),
        (Some(short.clone()), b"not an order either".to_vec()),
    ];
    send_all(&producer(), &topic.name, &messages).await;
    let serve = Serve::start(&topic.serve_env(&db.url, "long-keys")).await;
    serve.wait_ready().await;
    let client = db.client().await;
    wait_for(60, "two dead letters", || async {
        (count(&client, "dead_letters").await == 2).then_some(())
    })
    .await;
    let rows = client
        .query(
            "SELECT message_key, message_key_sha256 FROM dead_letters ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let (key, hash): (Vec<u8>, Option<Vec<u8>>) = (rows[0].get(0), rows[0].get(1));
    assert_eq!(key, long.as_bytes()[..256].to_vec(), "the first 256 bytes");
    assert_eq!(hash, Some(Sha256::digest(long.as_bytes()).to_vec()));
    let (key, hash): (Vec<u8>, Option<Vec<u8>>) = (rows[1].get(0), rows[1].get(1));
    assert_eq!(
        (key, hash),
        (short.as_bytes().to_vec(), None),
        "a short key whole"
    );

    let (status, body) = get_json(&serve, "/rejections").await;
    assert_eq!(status, 200, "{body}");
    let shown: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    let hex: String = Sha256::digest(long.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(shown[0], short);
    assert_eq!(shown[1], format!("{}… (cut; sha256 {hex})", &long[..256]));
}

/// `n` more copies of order `uid` for customer `crowd`, uids and transactions `crowd<i>`
/// and `crowd<i>` counted on from `from`, each stored a millisecond before the last.
async fn crowd(client: &tokio_postgres::Client, uid: &str, from: i32, n: i32) {
    for table in ["orders", "deliveries", "payments"] {
        let changed = match table {
            "orders" => {
                "'order_uid', 'crowd' || g, 'customer_id', 'crowd', \
                 'ingested_at', o.ingested_at - g * interval '1 ms'"
            }
            "payments" => "'order_uid', 'crowd' || g, 'transaction', 'crowd' || g",
            _ => "'order_uid', 'crowd' || g",
        };
        let sql = format!(
            "INSERT INTO {table} SELECT (jsonb_populate_record(NULL::{table}, \
                 to_jsonb(o) || jsonb_build_object({changed}))).* \
             FROM {table} o, generate_series($2::int, $3::int) g WHERE o.order_uid = $1"
        );
        client
            .execute(&sql, &[&uid, &from, &(from + n - 1)])
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
    }
}

#[tokio::test]
async fn a_search_matching_more_orders_than_it_may_sort_is_refused_and_a_narrower_one_answers() {
    use order_svc::domain::browse::MAX_MATCHES;
    let stored = Stored::new(vec![]).await;
    let client = stored.db.client().await;
    let max = i32::try_from(MAX_MATCHES).unwrap();
    crowd(&client, stored.uid(0), 1, max).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;

    // Exactly the bound: answered, newest first, a page at a time.
    let (status, body) = get_json(&serve, "/orders?customer_id=crowd&limit=3").await;
    assert_eq!(status, 200, "{body}");
    let page: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["order_uid"].as_str().unwrap())
        .collect();
    assert_eq!(page, ["crowd1", "crowd2", "crowd3"]);
    let next = body["next"].as_str().expect("more pages").to_owned();
    let (status, body) = get_json(
        &serve,
        &format!("/orders?customer_id=crowd&limit=1&before={next}"),
    )
    .await;
    assert_eq!(
        (status, &body["items"][0]["order_uid"]),
        (200, &"crowd4".into())
    );

    // One past it: refused, by a code of its own, in the document's words.
    crowd(&client, stored.uid(0), max + 1, 1).await;
    let path = "/orders?customer_id=crowd&limit=3";
    let (status, body) = get_json(&serve, path).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "too_many_matches", "{body}");
    documented(&serve, path, 422, &body).await;
    let (status, body) = get_json(&serve, "/orders?q=crowd").await;
    assert_eq!((status, &body["error"]), (422, &"too_many_matches".into()));
    // Past the first page fewer than the bound are older than the cursor: answered again.
    let (status, body) = get_json(
        &serve,
        &format!("/orders?customer_id=crowd&limit=1&before={next}"),
    )
    .await;
    assert_eq!(
        (status, &body["items"][0]["order_uid"]),
        (200, &"crowd4".into())
    );
    // A criterion more narrows it to what can be sorted.
    let (status, body) = get_json(&serve, "/orders?customer_id=crowd&transaction=crowd77").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(uids(&body), BTreeSet::from(["crowd77".to_owned()]));
    // The unrestricted list is never capped.
    let (status, _) = get_json(&serve, "/orders?limit=1").await;
    assert_eq!(status, 200);
}
