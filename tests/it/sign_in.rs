//! Web sign-in end to end: a real OpenID provider (the npm package `oidc-provider`,
//! scripts/oidc), a real `serve`, and headless Chromium signing in through the provider's
//! own login form.

use std::process::{Child, Command, Stdio};

use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::helpers::{Serve, http_get, wait_for};
use crate::lookup::Stored;
use crate::ui::{browser, url, wait_visible};

const SECRET: &str = "sign-in-test-secret";
const ROLES: &str = "support=orders:read,orders:search,pii:read;viewer=orders:read,orders:search";

/// The local provider (scripts/oidc/provider.mjs) on a port of its own, stopped when dropped.
pub struct Provider {
    child: Child,
    pub issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    pub async fn start() -> Self {
        let root = env!("CARGO_MANIFEST_DIR");
        assert!(
            std::path::Path::new(&format!("{root}/scripts/oidc/node_modules/oidc-provider"))
                .exists(),
            "the local OpenID provider is not installed: npm ci --prefix scripts/oidc"
        );
        let (child, port) = crate::own::spawn_listening("the OpenID provider", |port| {
            let mut cmd = Command::new("node");
            cmd.arg(format!("{root}/scripts/oidc/provider.mjs"))
                .env("OIDC_PORT", port.to_string())
                .env("OIDC_CLIENT_SECRET", SECRET)
                // A loopback client: the provider takes this path on whatever port serve has.
                .env("OIDC_REDIRECT_URI", "http://127.0.0.1/auth/callback")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd
        });
        let issuer = format!("http://127.0.0.1:{port}");
        wait_for(30, "the OpenID provider to answer", || async {
            http_get(port, "/.well-known/openid-configuration", &[])
                .await
                .filter(|(s, _, _)| *s == 200)
                .map(|_| ())
        })
        .await;
        Self { child, issuer }
    }

    /// serve's settings for web sign-in with this provider, and nothing anonymous.
    pub fn serve_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AUTH_ANONYMOUS_SCOPES", String::new()),
            ("AUTH_ISSUER", self.issuer.clone()),
            ("AUTH_CLIENT_ID", "order-svc".into()),
            ("AUTH_CLIENT_SECRET", SECRET.into()),
            ("AUTH_SIGN_IN_SCOPES", "openid profile roles".into()),
            ("AUTH_ROLES_CLAIM", "roles".into()),
            ("AUTH_ROLE_SCOPES", ROLES.into()),
            ("METRICS_ADDR", "127.0.0.1:0".into()),
        ]
    }
}

async fn api(stored: &Stored, provider: &Provider) -> Serve {
    let env = provider.serve_env();
    let extra: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serve = stored.api(&extra).await;
    serve.wait_ready().await;
    serve
}

/// Signs in at the provider's form, from wherever the service sent the browser.
async fn sign_in_as(client: &Client, user: &str) {
    wait_visible(client, "input[name=login]").await;
    let login = client
        .find(Locator::Css("input[name=login]"))
        .await
        .unwrap();
    login.send_keys(user).await.unwrap();
    let password = client
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap();
    password.send_keys(user).await.unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn page_text(client: &Client, ready: &str) -> String {
    wait_visible(client, ready).await;
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn people_sign_in_at_the_provider_and_see_what_their_role_allows_until_they_sign_out() {
    let provider = Provider::start().await;
    let stored = Stored::new(Vec::new()).await;
    let serve = api(&stored, &provider).await;
    // The canonical order (lookup::Stored puts it after 20 generated ones).
    let uid = stored.uid(20).to_owned();
    assert_eq!(uid, "b563feb7b2b84b6test");
    let port = serve.http_port;

    // support: sent to the provider, back to the page asked for, unmasked.
    let (_driver, client) = browser().await;
    client
        .goto(&format!("http://127.0.0.1:{port}/orders/{uid}"))
        .await
        .unwrap();
    assert!(
        url(&client).await.starts_with(&provider.issuer),
        "not sent to the provider: {}",
        url(&client).await
    );
    sign_in_as(&client, "support").await;
    let text = page_text(&client, "form.sign-out").await;
    assert!(
        url(&client).await.ends_with(&format!("/orders/{uid}")),
        "{}",
        url(&client).await
    );
    assert!(text.contains("Signed in as support"), "{text}");
    assert!(
        text.contains("+9720000000") && text.contains("Test Testov"),
        "support sees personal data:\n{text}"
    );

    let cookie = client
        .get_named_cookie("order_svc_session")
        .await
        .expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
    assert_ne!(cookie.secure(), Some(true), "plain http here: not Secure");
    assert!(cookie.expires().is_some(), "the cookie expires");
    let header = format!("order_svc_session={}", cookie.value());

    // The same cookie works for the JSON API (the pages' script uses it), unmasked.
    let (status, _, body) = http_get(port, &format!("/order/{uid}"), &[("Cookie", &header)])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let order: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(order["delivery"]["phone"], "+9720000000");

    // Every read of personal data through the session is audited under the subject.
    let db = stored.db.client().await;
    let row = db
        .query_one(
            "SELECT count(*) FROM audit_log WHERE subject = 'support' AND via = 'session' \
             AND client = 'order-svc' AND order_uid = $1",
            &[&uid],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2, "the page and the API read");
    // The database holds the session's hash only.
    let hashes = db.query("SELECT id_hash FROM sessions", &[]).await.unwrap();
    assert_eq!(hashes.len(), 1);
    let stored_hash: Vec<u8> = hashes[0].get(0);
    assert_ne!(stored_hash, cookie.value().as_bytes());

    // A sign-out that does not carry the page's token (another site's form) changes nothing.
    let forged = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/auth/logout"))
        .header("Cookie", &header)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=guessed")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let still = http_get(port, &format!("/order/{uid}"), &[("Cookie", &header)])
        .await
        .unwrap();
    assert_eq!(still.0, 200, "a forged sign-out ends nothing");

    // Sign out: the old cookie opens nothing any more.
    client
        .find(Locator::Css("form.sign-out button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let text = page_text(&client, "main .notice").await;
    assert!(text.contains("Signed out"), "{text}");
    let (status, headers, _) = http_get(port, &format!("/order/{uid}"), &[("Cookie", &header)])
        .await
        .unwrap();
    assert_eq!(status, 401, "{headers:?}");
    assert_eq!(
        http_get(port, &format!("/orders/{uid}"), &[("Cookie", &header)])
            .await
            .unwrap()
            .0,
        303,
        "the page sends the old cookie to sign in again"
    );
    client.close().await.unwrap();

    // viewer, in another browser: the same page, masked.
    let (_driver, client) = browser().await;
    client
        .goto(&format!("http://127.0.0.1:{port}/orders/{uid}"))
        .await
        .unwrap();
    sign_in_as(&client, "viewer").await;
    let text = page_text(&client, "form.sign-out").await;
    assert!(text.contains("Signed in as viewer"), "{text}");
    assert!(
        !text.contains("+9720000000") && !text.contains("Test Testov") && text.contains("•••"),
        "viewer sees personal data masked:\n{text}"
    );
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_sign_in_not_started_by_this_browser_is_refused() {
    let provider = Provider::start().await;
    let stored = Stored::new(Vec::new()).await;
    let serve = api(&stored, &provider).await;
    let port = serve.http_port;

    // Started here: the provider's URL carries PKCE S256 and the state of our cookie.
    let (status, headers, _) = http_get(port, "/auth/login?next=/orders", &[])
        .await
        .unwrap();
    assert_eq!(status, 303);
    let location = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(location.starts_with(&provider.issuer), "{location}");
    assert!(
        location.contains("code_challenge_method=S256"),
        "{location}"
    );
    let set_cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(set_cookie.starts_with("order_svc_sign_in="), "{set_cookie}");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );

    // A callback without the sign-in's cookie, or with another state: nobody signed in.
    let (status, headers, _) = http_get(port, "/auth/callback?code=abc&state=xyz", &[])
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("set-cookie")
                && v.contains("order_svc_session=")
                && !v.contains("Max-Age=0")),
        "{headers:?}"
    );
    let pending = set_cookie.split(';').next().unwrap().to_owned();
    let (status, _, _) = http_get(
        port,
        "/auth/callback?code=abc&state=not-the-cookies",
        &[("Cookie", &pending)],
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    let (status, _, _) = http_get(port, "/auth/callback?error=access_denied", &[])
        .await
        .unwrap();
    assert_eq!(status, 403);

    // Somewhere else after sign-in: only a path of ours.
    let next_of = |reply: crate::helpers::Reply| -> String {
        use base64::Engine as _;
        let cookie = crate::helpers::header(&reply, "set-cookie").unwrap();
        let value = cookie
            .trim_start_matches("order_svc_sign_in=")
            .split(';')
            .next()
            .unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .unwrap();
        let pending: Value = serde_json::from_slice(&bytes).unwrap();
        pending["next"].as_str().unwrap().to_owned()
    };
    let kept = http_get(port, "/auth/login?next=%2Forders%3Fq%3Dx", &[])
        .await
        .unwrap();
    assert_eq!(next_of(kept), "/orders?q=x");
    for elsewhere in [
        "https://evil.example/",
        "//evil.example/",
        "/%5Cevil.example",
    ] {
        let reply = http_get(port, &format!("/auth/login?next={elsewhere}"), &[])
            .await
            .unwrap();
        assert_eq!(next_of(reply), "/", "{elsewhere}");
    }

    // No session: pages go to sign in, the API says 401.
    let (status, headers, _) = http_get(port, "/?q=x", &[]).await.unwrap();
    assert_eq!(status, 303);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("location") && v == "/auth/login?next=%2F%3Fq%3Dx"),
        "{headers:?}"
    );
    assert_eq!(serve.status("/orders").await, Some(401));
}
