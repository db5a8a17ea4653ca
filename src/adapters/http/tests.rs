//! The handlers with a fake lookup service: each answer of the service becomes the right
//! status, headers and body, without a database or a cache behind it.

use actix_web::test;
use bytes::Bytes;

use super::*;
use crate::domain::access::Scopes;
use crate::domain::browse::{
    Browser, Criterion, IndexError, OrderIndex, OrderSummary, RejectionRecord, Search,
};
use crate::domain::guard::{AuditQuery, AuditRecord, AuditTrail, Recorded, ValueHasher};
use crate::domain::lookup::{FindOrder, Found, LookupError, OrderView, Source};
use crate::domain::order::{ContentHash, OrderUid};
use crate::domain::ports::{Position, StoreError};

const MODEL: &[u8] = include_bytes!("../../../tests/data/model.json");

/// Knows `cached` (from the cache) and `stored` (from the store); `down` finds the store
/// unavailable, `broken` unreadable; anything else is not found.
struct Fake;

impl FindOrder for Fake {
    fn find<'a>(&'a self, uid: &'a OrderUid) -> Found<'a> {
        let json = Bytes::from_static(MODEL);
        let view = OrderView::new(json.clone(), &ContentHash::of_json(&json));
        let answer = match uid.as_str() {
            "cached" => Ok((view, Source::Cache)),
            "stored" => Ok((view, Source::Store)),
            "down" => Err(LookupError::Unavailable("connection refused".into())),
            "broken" => Err(LookupError::Unreadable("year 0".into())),
            _ => Err(LookupError::NotFound),
        };
        Box::pin(async move { answer })
    }
}

/// Echoes what it was asked in the summary it returns (the criteria in `customer_id`,
/// the cursor's uid in `city`), so a test sees what reached the store; `rejected1` has
/// one dead-letter record; a search for `down` finds the store unavailable, one for
/// `everyone` matches too many orders.
#[derive(Clone)]
struct FakeIndex;

impl OrderIndex for FakeIndex {
    async fn summaries(
        &self,
        search: &Search,
        before: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<(Position, OrderSummary)>, IndexError> {
        let said = |c: &Criterion| format!("{}={}", c.field.param(), c.value);
        let all: Vec<String> = search.all.iter().map(said).collect();
        let any: Vec<String> = search.any.iter().map(said).collect();
        if search
            .any
            .iter()
            .chain(&search.all)
            .any(|c| c.value == "down")
        {
            return Err(StoreError::Unavailable(anyhow::anyhow!("refused")).into());
        }
        if search
            .any
            .iter()
            .chain(&search.all)
            .any(|c| c.value == "everyone")
        {
            return Err(IndexError::TooMany);
        }
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Ok((0..limit.min(3))
            .map(|i| {
                let uid = OrderUid::parse(format!("o{i}")).unwrap();
                let summary = OrderSummary {
                    order_uid: uid.to_string(),
                    date_created: at,
                    stored_at: at,
                    customer_id: format!("all:{} any:{}", all.join(","), any.join(",")),
                    name: format!("limit {limit}"),
                    city: before.map(|p| p.uid.to_string()).unwrap_or_default(),
                    amount: 1817,
                    currency: "USD".into(),
                    items: 1,
                };
                (Position { stored_at: at, uid }, summary)
            })
            .collect())
    }

    async fn rejections(
        &self,
        uid: Option<&OrderUid>,
        _: Option<i64>,
        _: usize,
    ) -> Result<Vec<RejectionRecord>, StoreError> {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Ok(match uid.map(OrderUid::as_str) {
            Some("rejected1") => vec![RejectionRecord {
                id: 7,
                at,
                reason: "invalid".into(),
                detail: "delivery.phone: must be an E.164 phone number".into(),
                order_uid: Some("rejected1".into()),
                key: Some("rejected1".into()),
                topic: "orders".into(),
                partition: 0,
                offset: 12,
                message_time: Some(at),
            }],
            _ => Vec::new(),
        })
    }
}

async fn json(path: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = get(path, &[]).await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[actix_web::test]
async fn a_uid_never_stored_but_rejected_says_why() {
    let (status, body) = json("/order/rejected1").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    assert_eq!(
        body["rejected"],
        serde_json::json!([{"at": "2023-11-14T22:13:20Z", "reason": "invalid",
            "detail": "delivery.phone: must be an E.164 phone number"}])
    );
    assert_eq!(
        json("/order/nosuch").await.1["rejected"],
        serde_json::json!([])
    );
    let (status, body) = json("/rejections?uid=rejected1").await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["offset"], 12);
    assert_eq!(body["items"][0]["key"], "rejected1");
    assert_eq!(
        json("/rejections?uid=bad-uid").await.1["error"],
        "invalid_uid"
    );
    assert_eq!(json("/rejections?reason=x").await.0, 400);
}

#[actix_web::test]
async fn browsing_takes_searches_and_pages_and_refuses_what_it_cannot_use() {
    let (status, body) = json("/orders").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["customer_id"], "all: any:");
    assert_eq!(
        body["items"][0]["name"], "limit 51",
        "one more than the page"
    );
    assert!(body["next"].is_null(), "3 rows fit a page of 50: {body}");
    let (_, body) = json("/orders?limit=2").await;
    let next = body["next"].as_str().expect("a next page").to_owned();
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    let (_, older) = json(&format!("/orders?limit=2&before={next}")).await;
    assert_eq!(
        older["items"][0]["city"], "o1",
        "the cursor names the last row shown"
    );
    // Phone and e-mail reach the store normalised; named fields must all match.
    let (_, body) = json("/orders?phone=%2B972%20000-0000&email=A%40B.example").await;
    assert_eq!(
        body["items"][0]["customer_id"],
        "all:phone=+9720000000,email=a@b.example any:"
    );
    let (_, body) = json("/orders?q=x%40y.z").await;
    assert_eq!(
        body["items"][0]["customer_id"],
        "all: any:email=x@y.z,customer_id=x@y.z"
    );
    for bad in [
        "/orders?limit=0",
        "/orders?limit=201",
        "/orders?limit=x",
        "/orders?before=zz",
        "/orders?phone=12",
        "/orders?email=nobody",
        "/orders?track_number=a-b",
        "/orders?track_number=%20abc",
        "/orders?customer_id=",
        "/orders?colour=red",
        "/orders?limit=1&limit=2",
    ] {
        let (status, body) = json(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_query", "{bad}: {body}");
    }
    assert_eq!(json("/orders?customer_id=down").await.0, 503);
    // An empty cursor, as a blank form field sends it, is the first page.
    let (status, body) = json("/orders?limit=2&before=").await;
    assert_eq!(
        (status, &body["items"][0]["city"]),
        (200, &"".into()),
        "{body}"
    );
    assert_eq!(json("/rejections?before=").await.0, 200);
    let (status, body) = json("/orders?customer_id=everyone").await;
    assert_eq!((status, &body["error"]), (422, &"too_many_matches".into()));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("more than 10000"),
        "{body}"
    );
    let (status, _, page) = get("/?q=everyone", &[]).await;
    let page = String::from_utf8_lossy(&page);
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("Too many orders match"), "{page}");
}

/// Keeps what it is given, or refuses everything when `broken`.
#[derive(Default)]
struct FakeAudit {
    broken: bool,
    records: std::sync::Mutex<Vec<AuditRecord>>,
}

impl AuditTrail for Arc<FakeAudit> {
    fn record(&self, record: AuditRecord) -> Recorded<'_, ()> {
        let result = if self.broken {
            Err(StoreError::Unavailable(anyhow::anyhow!("read-only")))
        } else {
            self.records.lock().unwrap().push(record);
            Ok(())
        };
        Box::pin(async move { result })
    }

    fn read(&self, _: AuditQuery) -> Recorded<'_, Vec<(i64, AuditRecord)>> {
        let rows = self.records.lock().unwrap().clone();
        let rows = rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as i64 + 1, r))
            .collect();
        Box::pin(async move { Ok(rows) })
    }
}

async fn get(path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Bytes) {
    get_as(
        Scopes::all(),
        &Arc::new(FakeAudit::default()),
        path,
        headers,
    )
    .await
}

/// `path` asked by an anonymous caller holding `scopes`, audited into `audit`.
async fn get_as(
    scopes: Scopes,
    audit: &Arc<FakeAudit>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Bytes) {
    let guard = Guard::new(
        Arc::new(Fake),
        Arc::new(Browser::with_newest_ttl(
            FakeIndex,
            std::time::Duration::ZERO,
        )),
        Arc::new(audit.clone()),
        ValueHasher::new(b"test key"),
    );
    let state = web::Data::new(AppState {
        access: Access {
            guard,
            auth: Authenticator {
                anonymous: Some(scopes),
                ..Authenticator::default()
            },
            limits: RateLimits::new(crate::adapters::auth::RateSettings {
                lookups_per_second: 0,
                searches_per_second: 0,
            }),
            links: Some(Links {
                signer: crate::domain::links::LinkSigner::new(
                    vec![crate::domain::links::LinkKey {
                        id: "k1".into(),
                        secret: b"a test key of at least thirty-two bytes".to_vec(),
                    }],
                    3600,
                )
                .unwrap(),
                base: None,
            }),
        },
        readiness: Arc::new(Readiness::new(true, false)),
        templates: pages::templates(true, false).unwrap(),
        debug_headers: true,
    });
    let app = test::init_service(
        App::new()
            .app_data(state)
            .wrap_fn(|req, srv| observe(req, srv, &["127.0.0.1/32".parse().unwrap()]))
            .configure(|cfg| routes(cfg, true)),
    )
    .await;
    // As from a trusted proxy (the app below trusts loopback).
    let mut req = test::TestRequest::get()
        .uri(path)
        .peer_addr("127.0.0.1:40000".parse().unwrap());
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let response = test::call_service(&app, req.to_request()).await;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    (status, headers, test::read_body(response).await)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[actix_web::test]
async fn readiness_names_what_is_missing_and_whether_the_cache_still_warms() {
    let (status, _, body) = get("/readyz", &[]).await;
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "not_ready", "reasons": ["database unreachable"], "cache": "warming"})
    );
}

#[actix_web::test]
async fn each_answer_of_the_lookup_service_has_its_status_and_code() {
    let (status, headers, body) = get("/order/cached", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, Bytes::from_static(MODEL));
    assert_eq!(header(&headers, "x-cache"), Some("hit"));
    let etag = header(&headers, "etag").unwrap().to_owned();
    assert_eq!(
        header(&get("/order/stored", &[]).await.1, "x-cache"),
        Some("miss")
    );
    assert_eq!(
        get("/order/cached", &[("If-None-Match", &etag)]).await.0,
        304
    );

    for (path, status, code) in [
        ("/order/nosuch", 404, "not_found"),
        ("/order/down", 503, "unavailable"),
        ("/order/broken", 500, "order_unreadable"),
        ("/order/not-a-uid!", 400, "invalid_uid"),
    ] {
        let (got, headers, body) = get(path, &[]).await;
        assert_eq!(got, status, "{path}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], code, "{path}: {body}");
    }
    // The server-rendered page tells the same story in HTML.
    assert_eq!(get("/orders/stored", &[]).await.0, 200);
    assert_eq!(get("/orders/nosuch", &[]).await.0, 404);
    assert_eq!(get("/orders/down", &[]).await.0, 503);
}

#[actix_web::test]
async fn every_answer_carries_a_request_id() {
    // Echoed when usable, on success and on failure alike (the log lines of the
    // request carry it too: `lookup::a_request_id_...` reads them from a real serve).
    for path in ["/order/cached", "/order/down", "/healthz", "/no/such/route"] {
        let (_, headers, _) = get(path, &[("X-Request-Id", "req-42.a_b")]).await;
        assert_eq!(
            header(&headers, "x-request-id"),
            Some("req-42.a_b"),
            "{path}"
        );
    }
    // Made up when missing or unusable (too long, control characters, quotes): 32 hex
    // digits, a new one each time.
    let mut seen = std::collections::HashSet::new();
    for sent in [
        None,
        Some("x".repeat(129)),
        Some("a\tb".into()),
        Some("\"q\"".into()),
    ] {
        let headers: Vec<(&str, &str)> = sent
            .as_deref()
            .map(|v| vec![("X-Request-Id", v)])
            .unwrap_or_default();
        let (_, got, _) = get("/order/cached", &headers).await;
        let id = header(&got, "x-request-id").expect("an id").to_owned();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert!(seen.insert(id), "a new id each time");
    }
}

#[actix_web::test]
async fn every_route_answers_each_scope_set_as_the_readme_table_says() {
    use crate::domain::access::Scope::*;
    let set = |list: &[crate::domain::access::Scope]| list.iter().copied().collect::<Scopes>();
    // (path, scopes, status, masked?)
    let cases: &[(&str, Scopes, u16, Option<bool>)] = &[
        ("/order/cached", Scopes::NONE, 403, None),
        ("/order/cached", set(&[OrdersSearch]), 403, None),
        ("/order/cached", set(&[OrdersRead]), 200, Some(true)),
        (
            "/order/cached",
            set(&[OrdersRead, PiiRead]),
            200,
            Some(false),
        ),
        ("/orders/cached", set(&[OrdersRead]), 200, Some(true)),
        (
            "/orders/cached",
            set(&[OrdersRead, PiiRead]),
            200,
            Some(false),
        ),
        ("/orders/cached", set(&[PiiRead]), 403, None),
        ("/orders", set(&[OrdersRead]), 403, None),
        ("/orders", set(&[OrdersSearch]), 200, Some(true)),
        ("/orders", set(&[OrdersSearch, PiiRead]), 200, Some(false)),
        (
            "/orders?phone=%2B9720000000",
            set(&[OrdersSearch]),
            403,
            None,
        ),
        (
            "/orders?phone=%2B9720000000",
            set(&[OrdersSearch, PiiRead]),
            200,
            Some(false),
        ),
        // Tried only as a customer id (the fake echoes what reached it).
        (
            "/orders?q=%2B9720000000",
            set(&[OrdersSearch]),
            200,
            Some(true),
        ),
        (
            "/orders?track_number=WBIL",
            set(&[OrdersSearch]),
            200,
            Some(true),
        ),
        ("/", set(&[OrdersRead]), 403, None),
        ("/", set(&[OrdersSearch]), 200, Some(true)),
        (
            "/rejections",
            set(&[OrdersRead, OrdersSearch, PiiRead]),
            403,
            None,
        ),
        ("/rejections", set(&[RejectionsRead]), 200, None),
        ("/audit", Scopes::all().difference(AuditRead), 403, None),
        ("/audit", set(&[AuditRead]), 200, None),
        (
            "/order/cached/link",
            Scopes::all().difference(LinksCreate),
            403,
            None,
        ),
        ("/order/cached/link", set(&[LinksCreate]), 403, None),
        (
            "/order/cached/link",
            set(&[OrdersRead, LinksCreate]),
            200,
            None,
        ),
        (
            "/orders/cached/link",
            set(&[OrdersRead, LinksCreate]),
            200,
            None,
        ),
        ("/healthz", Scopes::NONE, 200, None),
        ("/openapi.json", Scopes::NONE, 200, None),
    ];
    for (path, scopes, status, masked) in cases {
        let audit = Arc::new(FakeAudit::default());
        let (got, headers, body) = get_as(*scopes, &audit, path, &[]).await;
        assert_eq!(
            got,
            *status,
            "{path} with {scopes}: {}",
            String::from_utf8_lossy(&body)
        );
        if got == 403 {
            let challenge = header(&headers, "www-authenticate").unwrap_or_default();
            assert!(
                challenge.contains("insufficient_scope"),
                "{path}: {challenge}"
            );
        }
        let text = String::from_utf8_lossy(&body);
        if path.contains("q=") && !scopes.has(PiiRead) {
            assert!(
                !text.contains("phone="),
                "a phone search reached the store: {text}"
            );
        }
        if let Some(masked) = masked {
            // The fake index's summaries carry the name "limit N"; the order is model.json.
            let personal = if path.starts_with("/order")
                && !path.starts_with("/orders?")
                && *path != "/orders"
            {
                "Test Testov"
            } else {
                "limit "
            };
            assert_eq!(
                !text.contains(personal),
                *masked,
                "{path} with {scopes}: {text}"
            );
        }
    }
}

#[actix_web::test]
async fn unmasked_reads_and_searches_are_audited_once_and_refused_without_a_record() {
    let audit = Arc::new(FakeAudit::default());
    let all = Scopes::all();
    get_as(all, &audit, "/order/cached", &[("X-Request-Id", "r1")]).await;
    get_as(all, &audit, "/orders?phone=%2B9720000000", &[]).await;
    let masked = Scopes::parse_list("orders:read orders:search").unwrap();
    get_as(masked, &audit, "/order/cached", &[]).await;
    get_as(masked, &audit, "/orders", &[]).await;
    get_as(masked, &audit, "/orders?customer_id=c1", &[]).await;
    let records = audit.records.lock().unwrap().clone();
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[0].action.as_str(), "order");
    assert_eq!(records[0].order_uid.as_deref(), Some("cached"));
    assert_eq!(records[0].request_id, "r1");
    assert_eq!(records[1].fields, ["phone"]);
    assert_eq!(records[1].results, 3);
    let text = format!("{records:?}");
    assert!(
        !text.contains("9720000000") && !text.contains("c1\""),
        "{text}"
    );
    assert_eq!(records[2].fields, ["customer_id"]);

    let broken = Arc::new(FakeAudit {
        broken: true,
        ..FakeAudit::default()
    });
    let (status, headers, body) = get_as(all, &broken, "/order/cached", &[]).await;
    assert_eq!(status, 503);
    assert!(!String::from_utf8_lossy(&body).contains("Testov"));
    assert_eq!(header(&headers, "retry-after"), Some("5"));
    assert_eq!(get_as(all, &broken, "/orders?q=x", &[]).await.0, 503);
    assert_eq!(
        get_as(masked, &broken, "/order/cached", &[]).await.0,
        200,
        "masked: nothing to audit"
    );
}
