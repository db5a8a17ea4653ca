//! Access control against a real `serve`: API keys from `order-svc keys`, bearer JWTs
//! checked against a JWKS served by a provider of the test's own (keys it makes and rotates,
//! tokens as a hostile client would forge them), the audit trail in PostgreSQL, rate limits.

use std::sync::{Arc, Mutex};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestDb, header, http_get, order_svc, run, wait_for};
use crate::lookup::Stored;

const AUDIENCE: &str = "order-svc-tests";
const CANONICAL_UID: &str = "b563feb7b2b84b6test";

/// An EC P-256 signing key and its public JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        assert_eq!(raw.len(), 65, "an uncompressed P-256 point");
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                        "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }
}

/// An OpenID provider's discovery document and key set, served on a port of its own.
struct Provider {
    issuer: String,
    keys: Arc<Mutex<Vec<Value>>>,
    _server: actix_web::dev::ServerHandle,
}

impl Provider {
    async fn start(keys: Vec<Value>) -> Self {
        use actix_web::{App, HttpResponse, HttpServer, web};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issuer = format!("http://127.0.0.1:{port}");
        let keys = Arc::new(Mutex::new(keys));
        let (shared, base) = (keys.clone(), issuer.clone());
        let server = HttpServer::new(move || {
            let (keys, base) = (shared.clone(), base.clone());
            App::new()
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(move || {
                        let base = base.clone();
                        async move {
                            HttpResponse::Ok()
                                .json(json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}))
                        }
                    }),
                )
                .route(
                    "/jwks",
                    web::get().to(move || {
                        let keys = keys.lock().unwrap().clone();
                        async move { HttpResponse::Ok().json(json!({"keys": keys})) }
                    }),
                )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            issuer,
            keys,
            _server: handle,
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(issuer: &str, extra: Value) -> Value {
    let mut c = json!({"iss": issuer, "aud": AUDIENCE, "sub": "alice", "azp": "support-ui",
                       "iat": now(), "exp": now() + 300});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

pub async fn get(port: u16, path: &str, bearer: Option<&str>) -> Reply {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http_get(port, path, &headers).await.expect("serve answers")
}

pub fn body(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.2).into_owned()
}

pub fn create_key(url: &str, name: &str, scopes: &str) -> String {
    let (out, stdout, stderr) = run(order_svc()
        .args(["keys", "create", "--name", name, "--scopes", scopes])
        .env("DATABASE_URL", url));
    assert!(out.status.success(), "{stderr}");
    stdout.trim().to_owned()
}

/// The settings of a `serve` that takes keys and the provider's tokens and nothing else.
fn closed(provider: &Provider) -> Vec<(&'static str, String)> {
    vec![
        ("AUTH_ANONYMOUS_SCOPES", String::new()),
        ("AUTH_API_KEYS", "true".into()),
        ("AUTH_ISSUER", provider.issuer.clone()),
        ("AUTH_AUDIENCE", AUDIENCE.into()),
        ("AUTH_ROLES_CLAIM", "groups".into()),
        (
            "AUTH_ROLE_SCOPES",
            "support=orders:read,orders:search,pii:read;viewer=orders:read".into(),
        ),
        ("AUDIT_HASH_KEY", "k".repeat(40)),
        ("METRICS_ADDR", "127.0.0.1:0".into()),
    ]
}

#[tokio::test]
async fn tokens_are_checked_against_the_providers_keys_and_forgeries_are_refused() {
    let signing = SigningKey::new("k1");
    let provider = Provider::start(vec![signing.jwk.clone()]).await;
    let stored = Stored::new(Vec::new()).await;
    let env: Vec<(&'static str, String)> = closed(&provider);
    let env: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serve = stored.api(&env).await;
    serve.wait_ready().await;
    let port = serve.http_port;
    let path = format!("/order/{CANONICAL_UID}");
    let iss = provider.issuer.clone();

    // Nothing presented: 401 with a challenge; /metrics is not on this port.
    let none = get(port, &path, None).await;
    assert_eq!(none.0, 401, "{}", body(&none));
    assert!(
        header(&none, "www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(get(port, "/metrics", None).await.0, 404);
    assert_eq!(get(port, "/healthz", None).await.0, 200);

    // A viewer sees the order masked; support sees it whole.
    let viewer = signing.sign(&claims(&iss, json!({"groups": ["viewer"]})));
    let masked = get(port, &path, Some(&viewer)).await;
    assert_eq!(masked.0, 200, "{}", body(&masked));
    assert!(!body(&masked).contains("Test Testov") && body(&masked).contains("T. T."));
    let support = signing.sign(&claims(&iss, json!({"groups": ["support"]})));
    let whole = get(port, &path, Some(&support)).await;
    assert_eq!(whole.0, 200);
    assert!(body(&whole).contains("+9720000000"));
    // Scopes straight from the scope claim work as well; unknown ones are ignored.
    let scoped = signing.sign(&claims(&iss, json!({"scope": "openid orders:search"})));
    assert_eq!(get(port, "/orders", Some(&scoped)).await.0, 200);
    assert_eq!(get(port, &path, Some(&scoped)).await.0, 403);

    // Forgeries and tokens out of their time, issuer or audience: 401 invalid_token.
    let other = SigningKey::new("k1");
    let good = claims(&iss, json!({"groups": ["support"]}));
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "k1"})),
        b64(&good)
    );
    // HS256 keyed with the public key's own JWK text: the classic confusion attack.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &good,
        &EncodingKey::from_secret(signing.jwk.to_string().as_bytes()).unwrap(),
    )
    .unwrap();
    let forged = [
        ("another key", other.sign(&good)),
        ("alg none", unsigned),
        ("HS256 with the public key", confused),
        (
            "expired",
            signing.sign(&claims(
                &iss,
                json!({"groups": ["support"], "exp": now() - 120}),
            )),
        ),
        (
            "not yet valid",
            signing.sign(&claims(
                &iss,
                json!({"groups": ["support"], "nbf": now() + 120}),
            )),
        ),
        (
            "another issuer",
            signing.sign(&claims(
                "http://127.0.0.1:1",
                json!({"groups": ["support"]}),
            )),
        ),
        (
            "another audience",
            signing.sign(&claims(
                &iss,
                json!({"groups": ["support"], "aud": "other"}),
            )),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in &forged {
        let reply = get(port, &path, Some(token)).await;
        assert_eq!(reply.0, 401, "{what}: {}", body(&reply));
        let challenge = header(&reply, "www-authenticate").unwrap_or_default();
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
        assert!(!body(&reply).contains("Testov"), "{what}");
    }

    // A key the provider has not published yet is refused; once it is (a rotation), the
    // service fetches the set again and accepts it.
    let rotated = SigningKey::new("k2");
    let next = rotated.sign(&claims(&iss, json!({"groups": ["viewer"]})));
    assert_eq!(get(port, &path, Some(&next)).await.0, 401);
    provider.keys.lock().unwrap().push(rotated.jwk.clone());
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let reply = get(port, &path, Some(&next)).await;
    assert_eq!(reply.0, 200, "after the rotation: {}", body(&reply));

    // The unmasked reads were audited with who and which client; the masked ones not.
    let client = stored.db.client().await;
    let rows = client
        .query(
            "SELECT subject, client, via, action, order_uid FROM audit_log ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<String> = rows
        .iter()
        .map(|r| {
            let client: Option<String> = r.get(1);
            let uid: Option<String> = r.get(4);
            format!(
                "{} {} {} {} {}",
                r.get::<_, String>(0),
                client.unwrap_or_default(),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                uid.unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        seen,
        [format!("alice support-ui token order {CANONICAL_UID}")],
        "one record: the unmasked read only"
    );

    // Concurrent unmasked reads are written in groups, and each still leaves exactly one
    // record, with its own request id, before its answer.
    let reads = (0..40).map(|i| {
        let (support, path) = (support.clone(), path.clone());
        async move {
            let auth = format!("Bearer {support}");
            let id = format!("group-{i}");
            let reply = http_get(
                port,
                &path,
                &[
                    ("Authorization", auth.as_str()),
                    ("X-Request-Id", id.as_str()),
                ],
            )
            .await
            .expect("serve answers");
            assert_eq!(reply.0, 200, "{}", body(&reply));
        }
    });
    futures::future::join_all(reads).await;
    let ids: Vec<String> = client
        .query(
            "SELECT request_id FROM audit_log WHERE request_id LIKE 'group-%' ORDER BY request_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected: Vec<String> = (0..40).map(|i| format!("group-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn api_keys_are_made_used_revoked_and_stored_only_as_hashes() {
    let provider = Provider::start(Vec::new()).await;
    let stored = Stored::new(Vec::new()).await;
    let url = stored.db.url.clone();
    let support = create_key(&url, "support-bot", "orders:read,orders:search,pii:read");
    let viewer = create_key(&url, "viewer-bot", "orders:read");
    assert!(support.starts_with("osk_"), "{support}");
    // The same name again is refused, naming it.
    let (out, _, stderr) = run(order_svc()
        .args(["keys", "create", "--name", "viewer-bot", "--scopes", "all"])
        .env("DATABASE_URL", &url));
    assert!(
        !out.status.success() && stderr.contains("viewer-bot"),
        "{stderr}"
    );

    let mut env = closed(&provider);
    env.push(("RATE_LOOKUPS_PER_SECOND", "1".into()));
    let env: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serve = stored.api(&env).await;
    serve.wait_ready().await;
    let port = serve.http_port;
    let path = format!("/order/{CANONICAL_UID}");

    let reply = get(port, &path, Some(&support)).await;
    assert_eq!(reply.0, 200, "{}", body(&reply));
    assert!(body(&reply).contains("test@gmail.com"));
    let reply = get(port, &path, Some(&viewer)).await;
    assert!(body(&reply).contains("t•••@gmail.com"), "{}", body(&reply));

    // Over its budget (1/s, a burst of 2) one key gets 429 while the other is still served.
    let mut limited = None;
    for _ in 0..5 {
        let reply = get(port, &path, Some(&viewer)).await;
        if reply.0 == 429 {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the viewer key was limited");
    assert!(header(&limited, "retry-after").is_some());
    assert_eq!(get(port, &path, Some(&support)).await.0, 200);

    // A search by phone is audited with a keyed hash of the value, never the value.
    let reply = get(port, "/orders?phone=%2B9720000000", Some(&support)).await;
    assert_eq!(reply.0, 200, "{}", body(&reply));
    let client = stored.db.client().await;
    let dump: String = client
        .query_one("SELECT string_agg(a::text, ' ') FROM audit_log a", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        dump.contains("phone") && dump.contains("support-bot"),
        "{dump}"
    );
    assert!(!dump.contains("9720000000"), "{dump}");
    assert!(
        !serve.logs().contains("9720000000"),
        "the value is in the log"
    );

    // Only hashes are stored.
    let keys: String = client
        .query_one("SELECT string_agg(k::text, ' ') FROM api_keys k", &[])
        .await
        .unwrap()
        .get(0);
    let secret = support.rsplit('_').next().unwrap();
    assert!(!keys.contains(secret), "{keys}");

    // Revoked: refused within the documented bound (10 s).
    let (out, stdout, stderr) = run(order_svc()
        .args(["keys", "revoke", "support-bot"])
        .env("DATABASE_URL", &url));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("revoked"), "{stdout}");
    wait_for(15, "the revoked key refused", || async {
        (get(port, &path, Some(&support)).await.0 == 401).then_some(())
    })
    .await;
    let (_, list, _) = run(order_svc().args(["keys", "list"]).env("DATABASE_URL", &url));
    assert!(
        list.lines()
            .any(|l| l.starts_with("support-bot") && !l.ends_with("\t-")),
        "{list}"
    );

    // The audit trail cannot be written: the read it records is refused, and counted.
    client
        .batch_execute("ALTER TABLE audit_log ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
        .await
        .unwrap();
    let key = create_key(&url, "auditless", "orders:read,pii:read");
    let reply = get(port, &path, Some(&key)).await;
    assert_eq!(reply.0, 503, "{}", body(&reply));
    assert!(!body(&reply).contains("Testov"));
    let metrics_port =
        crate::helpers::logged_port(&serve.logs(), "serving /metrics").expect("METRICS_ADDR");
    let metrics = http_get(metrics_port, "/metrics", &[]).await.unwrap();
    let line = body(&metrics)
        .lines()
        .find(|l| l.starts_with("order_svc_audit_failures_total "))
        .map(str::to_owned)
        .expect("the audit failures are counted");
    assert_ne!(line, "order_svc_audit_failures_total 0", "{line}");
}

#[test]
fn serve_without_any_way_in_refuses_to_start_naming_the_settings() {
    let db = TestDb::unique();
    let (out, _, stderr) = run(order_svc().arg("serve").env("DATABASE_URL", &db.url));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("AUTH_ANONYMOUS_SCOPES") && stderr.contains("AUTH_ISSUER"),
        "{stderr}"
    );
}

/// The web sign-in's ID tokens: checked as bearer tokens are (key, algorithm, issuer, times),
/// for the sign-in's client as audience, and for the sign-in that sent the nonce.
#[tokio::test]
async fn an_id_token_opens_a_session_only_for_its_own_client_and_sign_in() {
    use order_svc::adapters::auth::{JwtSettings, JwtVerifier};
    let key = SigningKey::new("k1");
    let provider = Provider::start(vec![key.jwk.clone()]).await;
    let verifier = JwtVerifier::new(JwtSettings {
        issuer: provider.issuer.clone(),
        audience: None,
        jwks_url: None,
        scope_claim: "scope".into(),
        roles_claim: None,
        role_scopes: Vec::new(),
    })
    .unwrap();
    let token = |extra: Value| key.sign(&claims(&provider.issuer, extra));
    let good = token(json!({"aud": "order-svc", "nonce": "n-1"}));
    assert!(
        verifier
            .verify_id_token(&good, "order-svc", "n-1")
            .await
            .is_ok()
    );
    // Replayed into another sign-in, issued to another client, or forged without the key.
    assert!(
        verifier
            .verify_id_token(&good, "order-svc", "n-2")
            .await
            .is_err()
    );
    let other_client = token(json!({"aud": "another-app", "nonce": "n-1"}));
    assert!(
        verifier
            .verify_id_token(&other_client, "order-svc", "n-1")
            .await
            .is_err()
    );
    let no_nonce = token(json!({"aud": "order-svc"}));
    assert!(
        verifier
            .verify_id_token(&no_nonce, "order-svc", "n-1")
            .await
            .is_err()
    );
    let forger = SigningKey::new("k1");
    let forged = forger.sign(&claims(
        &provider.issuer,
        json!({"aud": "order-svc", "nonce": "n-1"}),
    ));
    assert!(
        verifier
            .verify_id_token(&forged, "order-svc", "n-1")
            .await
            .is_err()
    );
    // And no bearer token passes where no audience is configured for bearer tokens.
    assert!(verifier.verify(&good).await.is_err());
}
