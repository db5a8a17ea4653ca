//! OpenTelemetry: an OTLP/HTTP receiver inside the test (actix-web, decoding the protobuf
//! with the OpenTelemetry project's own message types) gets the spans of `produce`, of the
//! ingest of its order and of a lookup, joined to the traces they belong to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::helpers::{Serve, count, http_get, order_svc, run, wait_for};
use crate::kafka::{TestTopic, brokers, producer, read_topic};

/// A span as received: its name, ids (hex), the trace ids of its links, its attributes.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    links: Vec<String>,
    attributes: Vec<(String, String)>,
}

impl Got {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn value_text(v: &opentelemetry_proto::tonic::common::v1::AnyValue) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Starts the receiver; returns its endpoint and what it received.
async fn receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
    let sink = spans.clone();
    let server = HttpServer::new(move || {
        let sink = sink.clone();
        App::new()
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let sink = sink.clone();
                    async move {
                        let request = ExportTraceServiceRequest::decode(body.as_ref())
                            .expect("an OTLP protobuf request");
                        let mut got = sink.lock().unwrap();
                        for resource in request.resource_spans {
                            let service = resource
                                .resource
                                .iter()
                                .flat_map(|r| &r.attributes)
                                .find(|a| a.key == "service.name")
                                .and_then(|a| a.value.as_ref())
                                .map(value_text)
                                .unwrap_or_default();
                            for scope in resource.scope_spans {
                                for span in scope.spans {
                                    got.push(Got {
                                        service: service.clone(),
                                        name: span.name,
                                        trace_id: hex::encode(&span.trace_id),
                                        span_id: hex::encode(&span.span_id),
                                        parent_span_id: hex::encode(&span.parent_span_id),
                                        links: span
                                            .links
                                            .iter()
                                            .map(|l| hex::encode(&l.trace_id))
                                            .collect(),
                                        attributes: span
                                            .attributes
                                            .iter()
                                            .map(|a| {
                                                (
                                                    a.key.clone(),
                                                    a.value
                                                        .as_ref()
                                                        .map(value_text)
                                                        .unwrap_or_default(),
                                                )
                                            })
                                            .collect(),
                                    });
                                }
                            }
                        }
                        HttpResponse::Ok()
                            .content_type("application/x-protobuf")
                            .body(Vec::new())
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}"), spans)
}

async fn span_where(spans: &Arc<Mutex<Vec<Got>>>, what: &str, test: impl Fn(&Got) -> bool) -> Got {
    wait_for(30, what, || async {
        spans.lock().unwrap().iter().find(|s| test(s)).cloned()
    })
    .await
}

#[tokio::test]
async fn produce_ingest_and_lookup_spans_reach_an_otlp_receiver_joined_to_their_traces() {
    let (endpoint, spans) = receiver().await;
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
        ("OTEL_SERVICE_NAME", "order-svc-test".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let db = crate::helpers::migrated_db();
    let topic = TestTopic::create().await;
    let mut env = topic.serve_env(&db.url, "traces");
    env.extend(otel.iter().cloned());
    let serve = Serve::start(&env).await;
    serve.wait_ready().await;

    // 1. An order sent by another client with its own traceparent: the batch that stores it
    //    links to that trace. An invalid one keeps its traceparent in its dead letter.
    let trace_a = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent_a = format!("00-{trace_a}-00f067aa0ba902b7-01");
    let order: serde_json::Value = serde_json::from_str(crate::lookup::CANONICAL).unwrap();
    let uid = order["order_uid"].as_str().unwrap().to_owned();
    let kafka = producer();
    for payload in [serde_json::to_vec(&order).unwrap(), b"{not json".to_vec()] {
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(traceparent_a.as_bytes()),
        });
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&topic.name)
            .key(uid.as_str())
            .payload(payload.as_slice())
            .headers(headers);
        kafka.send(record, Duration::from_secs(10)).await.unwrap();
    }
    let batch = span_where(&spans, "the ingest batch span linked to trace A", |s| {
        s.name == "ingest batch" && s.links.iter().any(|l| l == trace_a)
    })
    .await;
    assert_eq!(batch.service, "order-svc-test");
    assert_eq!(batch.attribute("stored"), Some("1"), "{batch:?}");
    assert_eq!(batch.attribute("rejected"), Some("1"), "{batch:?}");
    // The database call of that batch is a child in the batch's trace.
    let write = span_where(&spans, "the batch's store_batch span", |s| {
        s.name == "store_batch" && s.trace_id == batch.trace_id
    })
    .await;
    assert_eq!(write.parent_span_id, batch.span_id);
    assert_eq!(write.attribute("db.system"), Some("postgresql"));
    let dead = read_topic(&topic.dlq, 1, Duration::from_millis(200)).await;
    assert_eq!(dead[0].headers.get("traceparent"), Some(&traceparent_a));

    // 2. A lookup under the caller's trace B: the request's span is a child of its span.
    let trace_b = "0af7651916cd43dd8448eb211c80319c";
    let (status, _, _) = http_get(
        serve.http_port,
        &format!("/order/{uid}"),
        &[("traceparent", &format!("00-{trace_b}-b7ad6b7169203331-01"))],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let lookup = span_where(&spans, "the lookup's span in trace B", |s| {
        s.trace_id == trace_b && s.name.starts_with("GET ")
    })
    .await;
    // The wait for the read's audit record is under it (the caller holds pii:read).
    let audit = span_where(&spans, "the audit record in trace B", |s| {
        s.trace_id == trace_b && s.name == "audit record"
    })
    .await;
    assert_eq!(audit.parent_span_id, lookup.span_id);
    assert_eq!(lookup.name, "GET /order/{order_uid:.*}");
    assert_eq!(lookup.parent_span_id, "b7ad6b7169203331");
    assert_eq!(lookup.attribute("http.response.status_code"), Some("200"));
    assert_eq!(
        lookup.attribute("http.route"),
        Some("/order/{order_uid:.*}")
    );

    // 3. `produce` with tracing on: each message starts a trace, and the batch that stores
    //    it links to it.
    let client = db.client().await;
    let mut cmd = order_svc();
    cmd.args(["produce", "--count", "1", "--rps", "100", "--seed", "5"])
        .env("KAFKA_BROKERS", brokers())
        .env("KAFKA_TOPIC", &topic.name);
    for (k, v) in &otel {
        cmd.env(k, v);
    }
    let (out, _, stderr) = run(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    let sent = span_where(&spans, "the produce span", |s| s.name == "send order").await;
    assert_eq!(sent.parent_span_id, "", "a root span");
    span_where(&spans, "the batch linked to produce's trace", |s| {
        s.name == "ingest batch" && s.links.contains(&sent.trace_id)
    })
    .await;
    assert_eq!(count(&client, "orders").await, 2);
}

#[test]
fn a_protocol_other_than_http_protobuf_stops_the_program_naming_it() {
    let (out, _, stderr) = run(order_svc()
        .args(["generate", "-n", "1"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\" is not supported"),
        "{stderr}"
    );
}
