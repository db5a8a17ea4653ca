//! A PostgreSQL that stops answering without closing anything (a hung server, a network
//! that drops packets): ingest and lookups must notice by their timeouts, report not ready,
//! and carry on once it answers again.

use std::time::{Duration, Instant};

use order_svc::generate::{GenerateOptions, Generator};

use crate::helpers::{Serve, TestDb, count, http_get, migrate, wait_for};
use crate::kafka::{TestTopic, producer, send_all, wait_committed};
use crate::proxy::CutProxy;

fn orders(g: &mut Generator, n: usize) -> Vec<(Option<String>, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let o = g.valid_order();
            (Some(o.order_uid.clone()), o.to_json())
        })
        .collect()
}

#[tokio::test]
async fn a_silent_database_makes_serve_not_ready_and_ingest_resumes_when_it_answers() {
    let db = TestDb::unique();
    migrate(&db.url);
    let topic = TestTopic::create().await;
    let proxy = CutProxy::start(crate::helpers::pg_addr()).await;
    let url = db.url.replace(
        &crate::helpers::pg_host_port(),
        &format!("127.0.0.1:{}", proxy.port),
    );
    let mut env = topic.serve_env(&url, "g");
    env.push(("DATABASE_STATEMENT_TIMEOUT_MS", "2000".into()));
    let serve = Serve::start(&env).await;
    serve.wait_ready().await;

    let mut g = Generator::new(GenerateOptions {
        seed: 5,
        ..GenerateOptions::default()
    });
    let first = orders(&mut g, 100);
    send_all(&producer(), &topic.name, &first).await;
    let client = db.client().await;
    wait_for(60, "the first orders stored", || async {
        (count(&client, "orders").await == 100).then_some(())
    })
    .await;

    proxy.silence();
    wait_for(15, "readyz to turn 503", || async {
        (serve.status("/readyz").await == Some(503)).then_some(())
    })
    .await;
    let (within_before, all_before) = lookups_within(&serve, 10.0).await;
    let asked = Instant::now();
    let (status, _, _) = http_get(serve.http_port, "/order/neverstoredsilent", &[])
        .await
        .expect("a lookup answers while the database is silent");
    assert_eq!(status, 503);
    // How long the database call waited, measured inside the service (its own histogram), so
    // a loaded machine's client cannot make it pass or fail: its 5 s limit, not the 15 s TCP
    // user timeout nor forever.
    let (within, all) = lookups_within(&serve, 10.0).await;
    assert!(all > all_before, "the lookup's database call was measured");
    assert_eq!(
        all - all_before,
        within - within_before,
        "a lookup's database call took over 10 s"
    );
    // The client's own bound only tells an answer from a hang.
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );

    let second = orders(&mut g, 100);
    send_all(&producer(), &topic.name, &second).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(&client, "orders").await,
        100,
        "nothing written while silent"
    );

    proxy.restore();
    wait_committed(&topic.name, "g", 200).await;
    assert_eq!(count(&client, "orders").await, 200);
    wait_for(15, "readyz back to 200", || async {
        (serve.status("/readyz").await == Some(200)).then_some(())
    })
    .await;
    assert!(serve.metric("order_svc_ingest_retries_total").await >= 1.0);
}

/// Lookups' database calls (`op="find"`) that `serve` measured within `seconds`, and all of
/// them, read off its histogram.
async fn lookups_within(serve: &crate::helpers::Serve, seconds: f64) -> (f64, f64) {
    let (_, _, body) = http_get(serve.http_port, "/metrics", &[])
        .await
        .expect("metrics answer");
    let text = String::from_utf8_lossy(&body);
    let (mut within, mut all) = (0.0, 0.0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("order_svc_db_query_seconds_") else {
            continue;
        };
        if !rest.contains(r#"op="find""#) {
            continue;
        }
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if rest.starts_with("count") {
            all = value;
        } else if let Some(le) = rest
            .split(r#"le=""#)
            .nth(1)
            .and_then(|l| l.split('"').next())
            && le.parse::<f64>().is_ok_and(|le| le == seconds)
        {
            within = value;
        }
    }
    (within, all)
}
