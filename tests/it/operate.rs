//! What the people who run `serve` use: the request id, the health check command, and the
//! metrics of the process, the pools and the build.

use crate::helpers::{Serve, free_port, header, http_get, order_svc, run, wait_for};

#[tokio::test]
async fn a_request_id_is_answered_and_written_on_the_log_lines_of_its_request() {
    let db = crate::helpers::migrated_db();
    let serve = Serve::start(&[
        ("SERVE_ROLE", "api".to_owned()),
        ("DATABASE_URL", db.url.clone()),
    ])
    .await;
    serve.wait_ready().await;
    let reply = http_get(
        serve.http_port,
        "/order/nosuchorder7",
        &[("X-Request-Id", "it-req-7")],
    )
    .await
    .unwrap();
    assert_eq!(reply.0, 404);
    assert_eq!(header(&reply, "x-request-id"), Some("it-req-7"));
    // The access line (debug) of that request carries its id.
    let line = logged_line(&serve, "/order/nosuchorder7").await;
    assert!(line.contains("request_id=it-req-7"), "{line}");
    // Without one, the answer has a made-up id, and the log line the same.
    let reply = http_get(serve.http_port, "/order/nosuchorder8", &[])
        .await
        .unwrap();
    let id = header(&reply, "x-request-id").expect("an id");
    let line = logged_line(&serve, "/order/nosuchorder8").await;
    assert!(line.contains(&format!("request_id={id}")), "{line}");

    // From a peer that is not a trusted proxy, the caller's id is not ours to answer or
    // file the request under: ours is made up, the caller's logged beside it.
    let direct = Serve::start(&[
        ("SERVE_ROLE", "api".to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("HTTP_TRUSTED_PROXIES", "10.0.0.0/8".to_owned()),
    ])
    .await;
    direct.wait_ready().await;
    let reply = http_get(
        direct.http_port,
        "/order/nosuchorder6",
        &[("X-Request-Id", "forged-id-6")],
    )
    .await
    .unwrap();
    let id = header(&reply, "x-request-id").expect("an id");
    assert_ne!(id, "forged-id-6");
    let line = logged_line(&direct, "/order/nosuchorder6").await;
    assert!(
        line.contains(&format!("request_id={id}"))
            && line.contains("client_request_id=\"forged-id-6\""),
        "{line}"
    );
    drop(direct);

    // JSON logs, and a line written deep in the handling (the database is down: 503).
    let unreachable = format!("postgres://postgres@127.0.0.1:{}/x", free_port());
    let down = Serve::start(&[
        ("SERVE_ROLE", "api".to_owned()),
        ("DATABASE_URL", unreachable),
        ("LOG_FORMAT", "json".to_owned()),
    ])
    .await;
    let (status, _, _) = http_get(
        down.http_port,
        "/order/anyorder1",
        &[("X-Request-Id", "it-req-9")],
    )
    .await
    .unwrap();
    assert_eq!(status, 503);
    let line = logged_line(&down, "store unavailable").await;
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(event["request_id"], "it-req-9", "{line}");
}

/// The first log line of `serve` that mentions `path`.
async fn logged_line(serve: &Serve, path: &str) -> String {
    wait_for(10, "the request's log line", || async {
        serve
            .logs()
            .lines()
            .find(|l| l.contains(path))
            .map(str::to_owned)
    })
    .await
}

fn healthcheck(port: u16, extra: &[&str]) -> (bool, String) {
    let (out, stdout, stderr) = run(order_svc()
        .arg("healthcheck")
        .args(extra)
        .env("HTTP_ADDR", format!("0.0.0.0:{port}")));
    (out.status.success(), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn healthcheck_exits_0_only_when_serve_answers_alive_or_ready() {
    // A database nobody answers on: alive, never ready.
    let unreachable = format!("postgres://postgres@127.0.0.1:{}/x", free_port());
    let serve = Serve::start(&[
        ("SERVE_ROLE", "api".to_owned()),
        ("DATABASE_URL", unreachable),
    ])
    .await;
    let (ok, out) = healthcheck(serve.http_port, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("/healthz: 200"), "{out}");
    let (ok, out) = healthcheck(serve.http_port, &["--ready"]);
    assert!(!ok, "{out}");
    assert!(out.contains("/readyz answered 503"), "{out}");
    drop(serve);
    // Nobody listening.
    let (ok, out) = healthcheck(free_port(), &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("cannot connect"), "{out}");

    let db = crate::helpers::migrated_db();
    let serve = Serve::start(&[
        ("SERVE_ROLE", "api".to_owned()),
        ("DATABASE_URL", db.url.clone()),
    ])
    .await;
    serve.wait_ready().await;
    let (ok, out) = healthcheck(serve.http_port, &["--ready"]);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn metrics_name_the_build_and_show_the_process_and_the_pools() {
    let db = crate::helpers::migrated_db();
    let serve = Serve::start(&[
        ("SERVE_ROLE", "api".to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("DATABASE_POOL_SIZE", "7".to_owned()),
    ])
    .await;
    serve.wait_ready().await;
    // The commit this test was built at (build.rs sets it for every target of the package):
    // HEAD read now may have moved on while the run goes, and the binary is the run's copy.
    let commit = env!("ORDER_SVC_COMMIT");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        serve
            .metric(&format!(
                "order_svc_build_info{{version=\"{version}\",commit=\"{commit}\"}}"
            ))
            .await,
        1.0
    );
    assert!(serve.metric("process_resident_memory_bytes").await > 1_000_000.0);
    assert!(serve.metric("process_open_fds").await >= 3.0);
    assert!(serve.metric("process_start_time_seconds").await > 1.7e9);
    let _ = serve.metric("process_cpu_seconds_total").await;
    assert_eq!(
        serve
            .metric("order_svc_db_pool_max_connections{pool=\"lookup\"}")
            .await,
        7.0
    );
    // Readiness pings the database every second: the lookup pool holds a connection.
    let open = serve
        .metric("order_svc_db_pool_connections{pool=\"lookup\",state=\"idle\"}")
        .await
        + serve
            .metric("order_svc_db_pool_connections{pool=\"lookup\",state=\"in_use\"}")
            .await;
    assert!(open >= 1.0, "{open}");
    assert_eq!(
        serve
            .metric("order_svc_db_pool_waiting{pool=\"lookup\"}")
            .await,
        0.0
    );
}
