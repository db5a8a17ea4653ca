//! deploy/: every metric the Grafana dashboard and the Prometheus rules query is one that
//! `serve` really exports.

use std::collections::HashSet;

use crate::helpers::{Serve, TestDb, http_get, order_svc, run, wait_for};
use crate::kafka::{TestTopic, brokers};

const DASHBOARD: &str = include_str!("../../deploy/grafana/dashboards/order-svc.json");
const RULES: &str = include_str!("../../deploy/prometheus/rules.yml");

/// PromQL words that are not metric names.
const PROMQL: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "by",
    "without",
    "on",
    "ignoring",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "and",
    "or",
    "unless",
    "le",
    "bool",
    "absent",
    // Prometheus's own series, not serve's.
    "up",
    "offset",
    "e",
];

/// The metric names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut cleaned = String::new();
    let mut depth = 0;
    // Drop label matchers `{...}` and ranges `[...]`: what is left names metrics and functions.
    for c in expr.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    // Drop the label lists of `by (...)` / `without (...)`.
    let mut words: Vec<String> = Vec::new();
    let mut skip_group = false;
    for token in cleaned.split(|c: char| {
        !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '(' || c == ')')
    }) {
        for part in token.split_inclusive(['(', ')']) {
            let word = part.trim_matches(['(', ')']);
            if skip_group {
                if part.ends_with(')') {
                    skip_group = false;
                }
                continue;
            }
            if word == "by" || word == "without" {
                skip_group = !part.ends_with(')');
                continue;
            }
            if !word.is_empty()
                && !word.chars().next().unwrap().is_ascii_digit()
                && !PROMQL.contains(&word)
            {
                words.push(word.to_owned());
            }
        }
    }
    words
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_query_only_metrics_serve_exports() {
    let db = TestDb::unique();
    crate::helpers::migrate(&db.url);
    let topic = TestTopic::create().await;
    let serve = Serve::start(&topic.serve_env(&db.url, "dash")).await;
    serve.wait_ready().await;
    // Traffic of every kind, so that every histogram has observations.
    let (out, _, stderr) = run(order_svc()
        .args([
            "produce",
            "--count",
            "60",
            "--rps",
            "1000",
            "--invalid-rate",
            "0.3",
            "--seed",
            "4",
        ])
        .env("KAFKA_BROKERS", brokers())
        .env("KAFKA_TOPIC", &topic.name));
    assert!(out.status.success(), "{stderr}");
    http_get(serve.http_port, "/order/nosuchorder", &[])
        .await
        .unwrap();
    let exported: HashSet<String> = wait_for(30, "every metric to be exported", || async {
        let (_, _, body) = http_get(serve.http_port, "/metrics", &[]).await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        let names: HashSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
            .collect();
        let ready = [
            "order_svc_kafka_consumer_lag_messages",
            "order_svc_ingest_end_to_end_seconds_bucket",
            "order_svc_http_request_duration_seconds_bucket",
        ]
        .iter()
        .all(|n| names.contains(*n));
        ready.then_some(names)
    })
    .await;

    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 15, "the dashboard has its panels");
    exprs.extend(
        RULES
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr:"))
            .map(|e| e.trim().to_owned()),
    );
    let mut queried = HashSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "`{name}` (in `{expr}`) is not exported by serve"
            );
            queried.insert(name);
        }
    }
    for must in [
        "order_svc_orders_ingested_total",
        "order_svc_dead_letters_total",
        "order_svc_kafka_consumer_lag_messages",
        "order_svc_cache_entries",
        "order_svc_cache_bytes",
        "order_svc_db_errors_total",
    ] {
        assert!(queried.contains(must), "the dashboard shows {must}");
    }
}

#[test]
fn metric_names_are_read_out_of_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le, route) (rate(order_svc_http_request_duration_seconds_bucket{a=\"b\"}[1m])))"
        ),
        vec!["order_svc_http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            "sum(rate(x_total{result=\"hit\"}[5m])) / clamp_min(sum(rate(y_total[5m])), 1e-9)"
        ),
        vec!["x_total", "y_total"]
    );
}

/// The dashboard works in someone else's Grafana: the data source, the jobs and the
/// instances are variables every query uses, rates follow the scrape interval, and every
/// panel says what it shows and in which unit.
#[test]
fn the_dashboard_is_portable_and_every_panel_is_described_with_its_unit() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(
            panel["description"].as_str().is_some_and(|d| d.len() > 20),
            "{title} has no description"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(
            panel["fieldConfig"]["defaults"]["unit"].is_string(),
            "{title} has no unit"
        );
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            exprs += 1;
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            // Every selector is scoped to the chosen jobs and instances.
            let selectors = expr.matches('{').count();
            assert!(selectors > 0, "{title}: {expr}");
            assert_eq!(
                expr.matches(r#"{job=~"$job", instance=~"$instance""#)
                    .count(),
                selectors,
                "{title}: {expr}"
            );
            // Ranges follow the scrape interval.
            for range in expr.split('[').skip(1) {
                assert!(range.starts_with("$__rate_interval]"), "{title}: {expr}");
            }
        }
    }
    assert!(exprs >= 30);
}

/// Every alert has a severity, a summary, a description, a runbook section that exists, and
/// a promtool unit test (run by `just check-deploy`).
#[test]
fn every_alert_has_its_annotations_a_runbook_section_and_a_unit_test() {
    const RUNBOOKS: &str = include_str!("../../docs/runbooks.md");
    const TESTS: &str = include_str!("../../deploy/prometheus/rules.test.yml");
    let blocks: Vec<&str> = RULES.split("- alert: ").skip(1).collect();
    assert!(blocks.len() >= 12);
    for block in blocks {
        let name = block.lines().next().unwrap().trim();
        for key in ["severity:", "summary:", "description:", "runbook_url:"] {
            assert!(block.contains(key), "{name} has no {key}");
        }
        let anchor = format!("/docs/runbooks.md#{}", name.to_lowercase());
        assert!(
            block.contains(&anchor),
            "{name}: runbook_url is not {anchor}"
        );
        assert!(
            RUNBOOKS.lines().any(|l| l == format!("## {name}")),
            "docs/runbooks.md has no section {name}"
        );
        assert!(
            TESTS.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - exp_labels"
            )),
            "rules.test.yml never sees {name} fire"
        );
    }
}

/// The production overlay as Kubernetes receives it (`kubectl kustomize`).
fn production() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("kubectl")
        .args([
            "kustomize",
            &format!("{root}/deploy/kubernetes/overlays/production"),
        ])
        .output()
        .expect("kubectl runs (apt-get install kubernetes-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_production_overlay_keeps_secrets_to_the_service_and_talks_only_to_what_it_needs() {
    let rendered = production();
    let docs: Vec<&str> = rendered.split("\n---\n").collect();
    let workloads: Vec<&&str> = docs
        .iter()
        .filter(|d| d.contains("\nkind: Deployment") || d.contains("\nkind: Job"))
        .collect();
    assert_eq!(workloads.len(), 3, "api, ingest, migrate");
    for doc in workloads {
        let name = doc
            .lines()
            .find(|l| l.starts_with("  name: "))
            .unwrap_or_default();
        // Secret files readable by the service's group only; images pinned by digest.
        assert_eq!(
            doc.matches("secretName:").count(),
            doc.matches("defaultMode: 288").count(),
            "{name}: every secret volume 0440"
        );
        assert!(doc.contains("fsGroup: 65532"), "{name}");
        for image in doc.lines().filter(|l| l.trim_start().starts_with("image:")) {
            assert!(image.contains("@sha256:"), "{name}: {image}");
        }
    }
    let policy = docs
        .iter()
        .find(|d| d.contains("\nkind: NetworkPolicy"))
        .expect("a NetworkPolicy");
    // In: the API port only from the ingress controller's namespace.
    let ingress = &policy[policy.find("ingress:").unwrap()..];
    let http_rule = ingress
        .split("\n  - ")
        .find(|rule| rule.contains("port: http"))
        .expect("a rule for the API port");
    assert!(http_rule.contains("namespaceSelector"), "{http_rule}");
    // Out: each rule but DNS names where it goes.
    let egress = &policy[policy.find("egress:").unwrap()..policy.find("ingress:").unwrap()];
    for rule in egress.split("\n  - ").skip(1) {
        let dns = rule.lines().any(|l| l.trim_end().ends_with("port: 53"));
        assert!(dns || rule.contains("ipBlock"), "{rule}");
    }
}
