//! The web UI in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`), against a real `serve`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{free_port, wait_for};
use crate::lookup::{CANONICAL, Stored};

/// chromedriver on a port of its own, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser() -> (Driver, Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (apt-get install chromium chromium-driver)");
    let driver = Driver { child, port };
    wait_for(20, "chromedriver to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", driver.port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let profile = std::env::temp_dir().join(format!(
        "order-svc-chromium-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1100,1000", format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let client = ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session");
    (driver, client)
}

async fn search(client: &Client, uid: &str) {
    let input = client.find(Locator::Css("#uid")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(uid).await.unwrap();
    client
        .find(Locator::Css("form.search button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn main_text(client: &Client, ready: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(ready))
        .await
        .unwrap_or_else(|e| panic!("{ready} never appeared: {e}"));
    client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_person_searches_a_uid_and_reads_the_order() {
    let mut hostile: Value = serde_json::from_str(CANONICAL).unwrap();
    hostile["order_uid"] = "hostile2".into();
    hostile["delivery"]["name"] = "<script>alert(1)</script>".into();
    hostile["items"][0]["brand"] = "<img src=x onerror=\"window.pwned=1\">".into();
    let stored = Stored::new(vec![hostile]).await;
    let serve = stored.api(&[]).await;
    serve.wait_ready().await;
    let (_driver, client) = browser().await;
    let base = format!("http://127.0.0.1:{}", serve.http_port);

    client.goto(&format!("{base}/")).await.unwrap();
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
    ] {
        assert!(text.contains(field), "{field} is not on the page:\n{text}");
    }
    assert!(
        text.contains("1,817.00"),
        "the amount is formatted as money:\n{text}"
    );
    let url = client.current_url().await.unwrap();
    assert!(
        url.as_str().ends_with("/?uid=b563feb7b2b84b6test"),
        "the uid goes into the address: {url}"
    );
    let png = client.screenshot().await.unwrap();
    let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-order.png");
    std::fs::write(&artifact, &png).unwrap();
    println!("screenshot: {}", artifact.display());

    // A shared link shows the order on load.
    client
        .goto(&format!("{base}/?uid=b563feb7b2b84b6test"))
        .await
        .unwrap();
    assert!(
        main_text(&client, "article.order")
            .await
            .contains("Test Testov")
    );

    search(&client, "nosuchorder42").await;
    let text = main_text(&client, ".notice").await;
    assert!(text.contains("Not found"), "{text}");
    search(&client, "bad-uid").await;
    assert!(
        main_text(&client, ".notice.error")
            .await
            .contains("Invalid uid")
    );

    // Hostile values arrive as text, and nothing in them runs.
    search(&client, "hostile2").await;
    let text = main_text(&client, "article.order").await;
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
    client.close().await.unwrap();
}
