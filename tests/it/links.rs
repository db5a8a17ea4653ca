//! Customer links against a real `serve`: made by a caller with `links:create`, opened by
//! anyone holding one, without personal data; refused when changed, expired, or signed by a
//! key rotated out.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::access::{body, create_key, get};
use crate::lookup::Stored;

const UID: &str = "b563feb7b2b84b6test";
const K1: &str = "k1=first-secret-of-at-least-32-characters";
const K2: &str = "k2=second-secret-of-at-least-32-characters";

async fn serve_with(stored: &Stored, link_keys: &str) -> crate::helpers::Serve {
    let serve = stored
        .api(&[
            ("AUTH_ANONYMOUS_SCOPES", ""),
            ("AUTH_API_KEYS", "true"),
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("LINK_KEYS", link_keys),
        ])
        .await;
    serve.wait_ready().await;
    serve
}

/// The path of a link (`/c/<token>`) in its URL.
fn path_of(url: &str) -> String {
    let at = url.find("/c/").expect("a link path");
    url[at..].to_owned()
}

#[tokio::test]
async fn a_customer_link_shows_one_order_without_personal_data_until_it_expires_or_its_key_goes() {
    let stored = Stored::new(Vec::new()).await;
    let url = stored.db.url.clone();
    let agent = create_key(&url, "agent", "orders:read,links:create");
    let viewer = create_key(&url, "viewer", "orders:read,orders:search,pii:read");
    let serve = serve_with(&stored, K1).await;
    let port = serve.http_port;

    // Making one needs links:create; the order must exist.
    let refused = get(port, &format!("/order/{UID}/link"), Some(&viewer)).await;
    assert_eq!(refused.0, 403, "{}", body(&refused));
    assert_eq!(get(port, &format!("/order/{UID}/link"), None).await.0, 401);
    let unknown = get(port, "/order/nosuchorder/link", Some(&agent)).await;
    assert_eq!(unknown.0, 404, "{}", body(&unknown));
    let made = get(port, &format!("/order/{UID}/link"), Some(&agent)).await;
    assert_eq!(made.0, 200, "{}", body(&made));
    let made: Value = serde_json::from_slice(&made.2).unwrap();
    let link = path_of(made["url"].as_str().unwrap());
    let expires: chrono::DateTime<chrono::Utc> =
        made["expires_at"].as_str().unwrap().parse().unwrap();
    let hours = (expires - chrono::Utc::now()).num_hours();
    assert!((71..=72).contains(&hours), "3 days by default: {hours} h");

    // Opened with no credential at all: the order's items and amounts, nobody's details.
    let page = get(port, &link, None).await;
    assert_eq!(page.0, 200, "{}", body(&page));
    let html = body(&page);
    assert!(html.contains("Mascaras") && html.contains(UID), "{html}");
    for personal in [
        "Test Testov",
        "+9720000000",
        "test@gmail.com",
        "Ploshad Mira",
        "Kiryat Mozkin",
        "2639809",
    ] {
        assert!(!html.contains(personal), "{personal} on a customer page");
    }
    assert_eq!(
        crate::helpers::header(&page, "cache-control"),
        Some("no-store")
    );

    // Changed, or a link of another uid made by swapping the uid: not ours.
    let (head, sig) = link.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    for forged in [
        format!("{head}.{flipped}{}", &sig[1..]),
        link.replace(UID, "otherorder1"),
        format!("{link}x"),
    ] {
        assert_eq!(get(port, &forged, None).await.0, 404, "{forged}");
    }
    // Signed with the key but past its expiry: gone.
    let expired = {
        let exp = chrono::Utc::now().timestamp() - 10;
        let secret = K1.split_once('=').unwrap().1;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(b"order-svc customer link v1\0");
        mac.update(format!("{UID}.{exp}.k1").as_bytes());
        use base64::Engine as _;
        let sig =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("/c/{UID}.{exp}.k1.{sig}")
    };
    assert_eq!(get(port, &expired, None).await.0, 410);

    // Making the link is in the audit trail.
    let client = stored.db.client().await;
    let made_by: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'link' AND subject = 'agent' \
             AND order_uid = $1",
            &[&UID],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(made_by, 1);
    drop(serve);

    // Rotation: a new key signs, the old one still checks; taken out, its links are refused.
    let rotating = serve_with(&stored, &format!("{K2},{K1}")).await;
    assert_eq!(get(rotating.http_port, &link, None).await.0, 200);
    let newer = get(
        rotating.http_port,
        &format!("/order/{UID}/link"),
        Some(&agent),
    )
    .await;
    let newer: Value = serde_json::from_slice(&newer.2).unwrap();
    let newer = path_of(newer["url"].as_str().unwrap());
    assert!(newer.contains(".k2."), "{newer}");
    drop(rotating);
    let rotated = serve_with(&stored, K2).await;
    assert_eq!(get(rotated.http_port, &link, None).await.0, 404);
    assert_eq!(get(rotated.http_port, &newer, None).await.0, 200);
}
