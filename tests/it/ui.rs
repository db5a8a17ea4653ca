//! The web UI in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`), against a real `serve`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{Serve, count, http_get, wait_for};
use crate::kafka::{producer, send_all};
use crate::lookup::{CANONICAL, Stored};

/// chromedriver on a port of its own, stopped when dropped.
pub struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn browser() -> (Driver, Client) {
    browser_with(&[]).await
}

/// A browser with more Chromium flags.
async fn browser_with(extra: &[&str]) -> (Driver, Client) {
    let (child, port) = crate::own::spawn_listening("chromedriver", |port| {
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    });
    let driver = Driver { child };
    let profile = std::env::temp_dir().join(format!(
        "order-svc-chromium-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut caps = serde_json::Map::new();
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1000",
    ]
    .iter()
    .chain(extra)
    .map(|a| (*a).to_owned())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    let client = ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session");
    (driver, client)
}

async fn search(client: &Client, q: &str) {
    let input = client.find(Locator::Css("#q")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(q).await.unwrap();
    client
        .find(Locator::Css("form.search button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits up to 15 s for an element matching `ready`; fails with the page's source.
pub async fn wait_visible(client: &Client, ready: &str) {
    if let Err(e) = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(ready))
        .await
    {
        let html = client.source().await.unwrap_or_default();
        panic!(
            "{ready} never appeared ({e}) at {}:\n{html}",
            url(client).await
        );
    }
}

async fn main_text(client: &Client, ready: &str) -> String {
    wait_visible(client, ready).await;
    // The page may still be swapping in: wait until nothing loads.
    wait_for(10, "the page to finish loading", || async {
        let busy = client
            .execute(
                "return document.getElementById('main').hasAttribute('aria-busy')",
                vec![],
            )
            .await
            .unwrap();
        (busy == Value::Bool(false)).then_some(())
    })
    .await;
    client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ui-{name}.png"));
    std::fs::write(&artifact, &png).unwrap();
    println!("screenshot: {}", artifact.display());
}

pub async fn url(client: &Client) -> String {
    client.current_url().await.unwrap().to_string()
}

/// A dead-letter record for `uid`, as ingest writes one.
async fn rejected(stored: &Stored, uid: &str, detail: &str) {
    stored
        .db
        .client()
        .await
        .execute(
            "INSERT INTO dead_letters (topic, partition, \"offset\", payload_hash, reason, detail, \
             order_uid, message_key, message_time, sent_at) \
             VALUES ('orders', 0, 99, '\\x00', 'invalid', $2, $1, $1::text::bytea, \
                     '2026-12-02T12:03:00Z', '2026-12-02T12:03:10Z')",
            &[&uid, &detail],
        )
        .await
        .unwrap();
}

const PHONE_RULE: &str = "delivery.phone: must be an E.164 phone number such as +9720000000";

#[tokio::test]
async fn a_person_finds_orders_by_what_they_hold_and_reads_them() {
    let mut hostile: Value = serde_json::from_str(CANONICAL).unwrap();
    hostile["order_uid"] = "hostile2".into();
    hostile["track_number"] = "HOSTILETRACK".into();
    hostile["delivery"]["name"] = "<script>alert(1)</script>".into();
    hostile["delivery"]["phone"] = "+15550001111".into();
    hostile["items"][0]["brand"] = "<img src=x onerror=\"window.pwned=1\">".into();
    let stored = Stored::new(vec![hostile]).await;
    rejected(&stored, "rejected7", PHONE_RULE).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    let (_driver, client) = browser().await;
    let base = format!("http://127.0.0.1:{}", serve.http_port);

    // The home page lists the newest orders, each a link.
    client.goto(&format!("{base}/")).await.unwrap();
    let text = main_text(&client, "table.orders").await;
    assert!(text.contains("Latest orders"), "{text}");
    let rows = client
        .find_all(Locator::Css("table.orders tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), stored.orders.len().min(50));

    // A uid: one match, so the order opens, focus on its heading, the address its own.
    search(&client, "b563feb7b2b84b6test").await;
    let text = main_text(&client, "article.order").await;
    for field in [
        "b563feb7b2b84b6test",
        "WBILMTESTTRACK",
        "Test Testov",
        "+9720000000",
        "Kiryat Mozkin",
        "Mascaras",
        "Vivienne Sabo",
        "30%",
        "wbpay",
        "1,817.00 USD",
        "2021-11-26 06:22 UTC",
    ] {
        assert!(text.contains(field), "{field} is not on the page:\n{text}");
    }
    assert!(url(&client).await.ends_with("/orders/b563feb7b2b84b6test"));
    let focused = client
        .execute("return document.activeElement.tagName", vec![])
        .await
        .unwrap();
    assert_eq!(focused, "H1", "focus moves to what was found");
    let copies = client.find_all(Locator::Css("button.copy")).await.unwrap();
    assert_eq!(copies.len(), 3, "uid, track number, transaction");
    let raw = client.find(Locator::Css("a.raw")).await.unwrap();
    assert_eq!(
        raw.attr("href").await.unwrap().as_deref(),
        Some("/order/b563feb7b2b84b6test")
    );
    screenshot(&client, "order").await;

    // The script shows exactly what the server renders: one formatting of money and time.
    client
        .goto(&format!("{base}/orders/b563feb7b2b84b6test"))
        .await
        .unwrap();
    let served = main_text(&client, "article.order").await;
    assert_eq!(
        served, text,
        "the server-rendered page and the script's agree"
    );

    // A phone as people write it; then back and forward through the history.
    search(&client, "+1 555 000-1111").await;
    let text = main_text(&client, "article.order[data-uid=hostile2]").await;
    assert!(text.contains("<script>alert(1)</script>"), "{text}");
    assert!(
        text.contains("<img src=x onerror=\"window.pwned=1\">"),
        "{text}"
    );
    let pwned = client
        .execute("return window.pwned === undefined", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, Value::Bool(true), "no script from the order ran");
    assert!(client.get_alert_text().await.is_err(), "no alert is open");
    client.back().await.unwrap();
    let text = main_text(&client, "table.orders").await;
    assert!(text.contains("Orders matching"), "{text}");
    assert!(url(&client).await.contains("/?q=%2B1%20555%20000-1111"));

    // Nothing matches; a rejected uid says when and why.
    search(&client, "nosuchorder42").await;
    let text = main_text(&client, "main p.hint").await;
    assert!(text.contains("No order matches"), "{text}");
    search(&client, "rejected7").await;
    let text = main_text(&client, ".notice").await;
    assert!(
        text.contains(&format!(
            "Rejected at 2026-12-02 12:03 UTC because {PHONE_RULE}"
        )),
        "{text}"
    );

    // `/` moves to the search box from anywhere on the page.
    client
        .execute("document.activeElement.blur()", vec![])
        .await
        .unwrap();
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: '/' })
        .then(KeyAction::Up { value: '/' });
    client.perform_actions(keys).await.unwrap();
    let focused = client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, "q");
    client.close().await.unwrap();
}

#[tokio::test]
async fn the_pages_work_without_script_and_the_list_refreshes_with_it() {
    let stored = Stored::new(vec![]).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    // Without script: the form's GET is the search, and the pager a plain link.
    let page = |path: String| {
        let port = serve.http_port;
        async move {
            let reply = http_get(port, &path, &[]).await.unwrap();
            (reply.0, String::from_utf8(reply.2).unwrap())
        }
    };
    let (status, html) = page("/?q=WBILMTESTTRACK".into()).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("href=\"/orders/b563feb7b2b84b6test\""),
        "{html}"
    );
    let (_, html) = page("/?uid=b563feb7b2b84b6test".into()).await;
    assert!(
        html.contains("href=\"/orders/b563feb7b2b84b6test\""),
        "older links still work"
    );
    // Deep links for every state: a page of older orders, a search, an order.
    let (_, first) = page("/".into()).await;
    assert!(first.contains("Older orders") == (stored.orders.len() > 50));

    // With script: a new order appears on the open list without a reload.
    let (_driver, client) = browser().await;
    client
        .goto(&format!("http://127.0.0.1:{}/", serve.http_port))
        .await
        .unwrap();
    main_text(&client, "table.orders").await;
    let mut fresh: Value = serde_json::from_str(CANONICAL).unwrap();
    fresh["order_uid"] = "arrivedjustnow".into();
    send_all(
        &producer(),
        &stored.topic.name,
        &[(
            Some("arrivedjustnow".into()),
            serde_json::to_vec(&fresh).unwrap(),
        )],
    )
    .await;
    let mut env = stored.topic.serve_env(&stored.db.url, "ingest");
    env.push(("SERVE_ROLE", "ingest".into()));
    let ingest = Serve::start(&env).await;
    let db = stored.db.client().await;
    wait_for(60, "the new order stored", || async {
        (count(&db, "orders").await == stored.orders.len() as i64 + 1).then_some(())
    })
    .await;
    drop(ingest);
    wait_for(20, "the list to show the new order", || async {
        let first = client
            .find(Locator::Css("table.orders tbody tr a"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (first == "arrivedjustnow").then_some(())
    })
    .await;
    client.close().await.unwrap();
}

/// axe-core (tests/axe, from npm) injected into the page: its violations, each as
/// `rule (impact): help @ the elements`.
async fn axe_violations(client: &Client) -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/axe/node_modules/axe-core/axe.min.js"
    );
    let axe = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (install it: npm ci --prefix tests/axe)"));
    client
        .execute(&format!("{axe}\n;return true;"), vec![])
        .await
        .unwrap();
    let found = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help
                   + ' @ ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    found
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn axe_finds_no_accessibility_violation_on_any_kind_of_page() {
    let stored = Stored::new(vec![]).await;
    rejected(&stored, "rejected8", PHONE_RULE).await;
    let serve = stored
        .api(&[("LINK_KEYS", "k1=a-key-for-the-ui-test-of-32-characters")])
        .await;
    serve.wait_ready().await;
    let (_driver, client) = browser().await;
    let base = format!("http://127.0.0.1:{}", serve.http_port);
    // A customer link, and the page a customer opens with it.
    let (_, _, made) = http_get(serve.http_port, "/order/b563feb7b2b84b6test/link", &[])
        .await
        .unwrap();
    let made: Value = serde_json::from_slice(&made).unwrap();
    let link_url = made["url"].as_str().unwrap();
    let customer = link_url[link_url.find("/c/").unwrap()..].to_owned();
    let pages = [
        ("home", "/", "table.orders"),
        ("order", "/orders/b563feb7b2b84b6test", "article.order"),
        ("search", "/?q=WBILMTESTTRACK", "table.orders"),
        ("not-found", "/orders/nosuchorder42", ".notice"),
        ("rejected", "/orders/rejected8", ".notice"),
        ("link", "/orders/b563feb7b2b84b6test/link", ".notice"),
        ("customer", customer.as_str(), "article.order"),
    ];
    for (width, suffix) in [(1100, ""), (390, "-phone")] {
        client.set_window_size(width, 1000).await.unwrap();
        for (name, path, ready) in pages {
            client.goto(&format!("{base}{path}")).await.unwrap();
            main_text(&client, ready).await;
            let violations = axe_violations(&client).await;
            assert!(
                violations.is_empty(),
                "{path} at {width}px: {violations:#?}"
            );
            screenshot(&client, &format!("{name}{suffix}")).await;
        }
    }
    // Dark mode (prefers-color-scheme), its contrast checked too.
    let (_dark_driver, dark) = browser_with(&["--force-dark-mode"]).await;
    for (name, path, ready) in pages {
        dark.goto(&format!("{base}{path}")).await.unwrap();
        main_text(&dark, ready).await;
        let is_dark = dark
            .execute(
                "return matchMedia('(prefers-color-scheme: dark)').matches",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(is_dark, Value::Bool(true), "the browser prefers dark");
        let violations = axe_violations(&dark).await;
        assert!(
            violations.is_empty(),
            "{path} in dark mode: {violations:#?}"
        );
        screenshot(&dark, &format!("{name}-dark")).await;
    }
    dark.close().await.unwrap();

    // The check can fail: an image without a text alternative is a violation.
    client
        .execute(
            "const i = document.createElement('img'); i.src = '/static/favicon.svg';
             document.getElementById('main').append(i); return true;",
            vec![],
        )
        .await
        .unwrap();
    let violations = axe_violations(&client).await;
    assert!(
        violations.iter().any(|v| v.starts_with("image-alt")),
        "{violations:#?}"
    );
    client.close().await.unwrap();
}
