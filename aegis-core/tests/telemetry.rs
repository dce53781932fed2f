//! OpenTelemetry: the engine's spans and metrics, exported over OTLP/HTTP to a real receiver on
//! loopback that decodes the protobuf with the collector's own message definitions
//! (`opentelemetry-proto`), not a mock of the SDK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_sod::telemetry::{OtlpConfig, Telemetry};
use aegis_sod::{BreakGlassRequest, Outcome};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use prost::Message;

/// A span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
}

/// One data point of a metric: its attributes and its value.
#[derive(Debug, Clone)]
struct Point {
    metric: String,
    attributes: BTreeMap<String, String>,
    value: f64,
}

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    points: Vec<Point>,
    requests: Vec<String>,
}

fn any_value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::ArrayValue(a)) => a.values.iter().map(|v| any_value(&Some(v.clone()))).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

fn attributes(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
    attrs.iter().map(|kv| (kv.key.clone(), any_value(&kv.value))).collect()
}

/// An OTLP/HTTP receiver on loopback: decodes `/v1/traces` and `/v1/metrics` protobuf bodies.
struct Receiver {
    endpoint: String,
    received: Arc<Mutex<Received>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Self { endpoint, received }
    }

    fn spans(&self) -> Vec<Span> {
        self.received.lock().unwrap().spans.clone()
    }

    fn points(&self, metric: &str) -> Vec<Point> {
        self.received.lock().unwrap().points.iter().filter(|p| p.metric == metric).cloned().collect()
    }
}

/// Serves HTTP/1.1 requests on one connection (the exporter keeps it alive).
fn serve(stream: TcpStream, sink: &Mutex<Received>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => content_type = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
        assert_eq!(content_type, "application/x-protobuf", "OTLP/HTTP binary protobuf");
        let response = decode(&path, &body, sink);
        let reply =
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n", response.len());
        out.write_all(reply.as_bytes()).unwrap();
        out.write_all(&response).unwrap();
        out.flush().unwrap();
    }
}

fn decode(path: &str, body: &[u8], sink: &Mutex<Received>) -> Vec<u8> {
    let mut sink = sink.lock().unwrap();
    sink.requests.push(path.to_owned());
    match path {
        "/v1/traces" => {
            let request = ExportTraceServiceRequest::decode(body).unwrap();
            for rs in request.resource_spans {
                let service = rs.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        sink.spans.push(Span {
                            service: service.get("service.name").cloned().unwrap_or_default(),
                            name: span.name,
                            trace_id: hex::encode(span.trace_id),
                            span_id: hex::encode(span.span_id),
                            parent_span_id: hex::encode(span.parent_span_id),
                            attributes: attributes(&span.attributes),
                        });
                    }
                }
            }
        }
        "/v1/metrics" => {
            let request = ExportMetricsServiceRequest::decode(body).unwrap();
            for rm in request.resource_metrics {
                for sm in rm.scope_metrics {
                    for metric in sm.metrics {
                        let points: Vec<Point> = match metric.data {
                            Some(Data::Sum(sum)) => sum
                                .data_points
                                .iter()
                                .map(|p| Point {
                                    metric: metric.name.clone(),
                                    attributes: attributes(&p.attributes),
                                    value: match p.value {
                                        Some(NumberValue::AsInt(i)) => i as f64,
                                        Some(NumberValue::AsDouble(d)) => d,
                                        None => f64::NAN,
                                    },
                                })
                                .collect(),
                            Some(Data::Histogram(h)) => h
                                .data_points
                                .iter()
                                .map(|p| Point {
                                    metric: metric.name.clone(),
                                    attributes: attributes(&p.attributes),
                                    value: p.count as f64,
                                })
                                .collect(),
                            other => panic!("unexpected metric data {other:?}"),
                        };
                        sink.points.extend(points);
                    }
                }
            }
        }
        other => panic!("unexpected OTLP path {other}"),
    }
    Vec::new()
}

const HOST_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const HOST_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn every_decision_and_event_is_a_span_with_metrics_exported_over_otlp() {
    let receiver = Receiver::start();
    let mut config = OtlpConfig::new(&receiver.endpoint);
    config.service_name = "aegis-test".into();
    config.export_interval = Duration::from_secs(3600); // only when flushed
    let telemetry = Arc::new(Telemetry::otlp(&config).unwrap());
    let fx = Fixture::new();
    let engine = fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).telemetry(Arc::clone(&telemetry)).build().unwrap();
    let chain = fx.chain();
    let traceparent = format!("00-{HOST_TRACE}-{HOST_SPAN}-01");

    // Allowed (under the host's span, with the framework's tool call id), denied, and a
    // foreign-currency payment a shadow rule would block.
    let allowed = engine
        .authorize(&req(&chain, pay(120, GOOD_ACCOUNT), None).with_traceparent(&traceparent).with_tool_call_id("call_1"))
        .unwrap();
    assert_eq!(allowed.outcome, Outcome::Allow);
    let denied = engine.authorize(&req(&chain, pay(120, "acct_attacker"), None).with_traceparent(&traceparent)).unwrap();
    assert_eq!(denied.outcome, Outcome::Deny);
    let shadowed = engine
        .authorize(&req(&chain, serde_json::json!({"amount": 2600, "currency": "usd", "destination": GOOD_ACCOUNT}), None))
        .unwrap();
    assert!(shadowed.would_block, "{shadowed:?}");
    // An invalid traceparent is ignored (W3C): the decision is made and gets a trace of its own.
    let untraced = engine.authorize(&req(&chain, pay(10, GOOD_ACCOUNT), None).with_traceparent("00-zz-bad")).unwrap();
    assert_eq!(untraced.outcome, Outcome::Allow);
    // Approval: opened, approved, redeemed.
    let big = engine.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(big.outcome, Outcome::ApprovalNeeded);
    fx.clock.advance_secs(42);
    let resolution =
        engine.approve(big.approval_id.as_deref().unwrap(), &approver_chain("finance-approver", NOW), Some("ok")).unwrap();
    assert!(resolution.accepted);
    // Break-glass opened and closed.
    let grant = engine
        .break_glass(&BreakGlassRequest::new(
            vec!["planner/finance-agent".into()],
            vec![TOOL.into()],
            vec![TASK.into()],
            "outage",
            vec![approver_chain("cfo", NOW), approver_chain("ciso", NOW)],
            600,
        ))
        .unwrap();
    engine.close_break_glass(&grant.id, "INC-7").unwrap();
    engine.end_task(TASK).unwrap();
    engine.flush_telemetry().unwrap();

    let spans = receiver.spans();
    let ids: std::collections::BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(ids.len(), spans.len(), "every event is a span of its own");
    let decision = |id: &str| spans.iter().find(|s| s.attributes.get("aegis.decision_id").map(String::as_str) == Some(id));
    let first = decision(&allowed.decision_id).expect("the allowed decision's span");
    assert_eq!(first.name, format!("aegis.authorize {TOOL}"));
    assert_eq!(first.service, "aegis-test");
    assert_eq!((first.trace_id.as_str(), first.parent_span_id.as_str()), (HOST_TRACE, HOST_SPAN), "nested under the host");
    let a = &first.attributes;
    assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    assert_eq!(a["gen_ai.tool.name"], TOOL);
    assert_eq!(a["gen_ai.tool.call.id"], "call_1");
    assert_eq!(a["gen_ai.agent.id"], "planner/finance-agent");
    assert_eq!(a["aegis.agent_id"], "planner/finance-agent");
    assert_eq!(a["aegis.parent_agent_id"], "planner");
    assert_eq!(a["aegis.task_id"], TASK);
    assert_eq!(a["aegis.policy_version"], engine.policy_version());
    assert_eq!(a["aegis.decision"], "allow");
    assert_eq!(a["aegis.would_block"], "false");

    let refused = decision(&denied.decision_id).expect("a denied call emits its span too");
    assert_eq!(refused.parent_span_id, HOST_SPAN);
    assert_eq!(refused.attributes["aegis.decision"], "deny");
    assert!(refused.attributes["aegis.reasons"].contains("policy_forbid"), "{:?}", refused.attributes);
    assert!(refused.attributes["aegis.policy_ids"].contains("destination-account-pattern"));

    let shadow = decision(&shadowed.decision_id).unwrap();
    assert_eq!(shadow.attributes["aegis.would_block"], "true");
    assert_eq!(shadow.attributes["aegis.shadow_policies"], "shadow-foreign-currency-over-2500");
    assert!(shadow.parent_span_id.is_empty(), "no traceparent: a root span");
    let fresh = decision(&untraced.decision_id).unwrap();
    assert!(fresh.parent_span_id.is_empty() && fresh.trace_id != HOST_TRACE);

    let pending = decision(&big.decision_id).unwrap();
    assert_eq!(pending.attributes["aegis.decision"], "approval_needed");
    assert_eq!(&pending.attributes["aegis.approval_id"], big.approval_id.as_ref().unwrap());
    let event = |name: &str| spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name} in {spans:#?}"));
    let approved = event("aegis.approval.approved");
    assert_eq!(&approved.attributes["aegis.approval_id"], big.approval_id.as_ref().unwrap());
    assert_eq!(approved.attributes["aegis.approver_id"], "finance-approver");
    assert_eq!(approved.attributes["aegis.latency_ms"], "42000");
    event("aegis.approval.opened");
    assert_eq!(event("aegis.break_glass.opened").attributes["aegis.break_glass_id"], grant.id);
    assert_eq!(event("aegis.break_glass.closed").attributes["aegis.review_ref"], "INC-7");
    assert_eq!(event("aegis.task.ended").attributes["aegis.task_id"], TASK);

    // Metrics (cumulative): decisions by outcome, tool and policy; would-block; approval
    // latency; budget consumed; break-glass grants open.
    let count = |metric: &str, pairs: &[(&str, &str)]| -> f64 {
        let points = receiver.points(metric);
        let matching: Vec<&Point> =
            points.iter().filter(|p| pairs.iter().all(|(k, v)| p.attributes.get(*k).map(String::as_str) == Some(*v))).collect();
        // The last export holds the cumulative value.
        matching.last().map_or(0.0, |p| p.value)
    };
    assert_eq!(count("aegis.decisions", &[("aegis.decision", "allow"), ("gen_ai.tool.name", TOOL)]), 3.0);
    assert_eq!(count("aegis.decisions", &[("aegis.decision", "deny"), ("aegis.policy_id", "destination-account-pattern")]), 1.0);
    assert_eq!(count("aegis.decisions", &[("aegis.decision", "approval_needed")]), 1.0);
    assert_eq!(
        count(
            "aegis.would_block",
            &[("aegis.policy_id", "shadow-foreign-currency-over-2500"), ("gen_ai.agent.id", "planner/finance-agent")]
        ),
        1.0
    );
    assert_eq!(count("aegis.approval.latency", &[("aegis.approval.status", "approved")]), 1.0);
    assert_eq!(count("aegis.budget.consumed", &[("gen_ai.agent.id", "planner/finance-agent")]), 120.0 + 2600.0 + 10.0);
    assert_eq!(count("aegis.break_glass.open", &[]), 0.0);
    let requests = receiver.received.lock().unwrap().requests.clone();
    assert!(requests.iter().any(|p| p == "/v1/traces") && requests.iter().any(|p| p == "/v1/metrics"), "{requests:?}");
}

#[test]
fn a_collector_that_is_down_loses_spans_not_decisions() {
    // Nothing listens on this port: exports fail, decisions do not.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let telemetry = Arc::new(Telemetry::otlp(&OtlpConfig::new(format!("http://127.0.0.1:{port}"))).unwrap());
    let fx = Fixture::new();
    let engine = fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).telemetry(telemetry).build().unwrap();
    let chain = fx.chain();
    assert_eq!(engine.authorize(&req(&chain, pay(120, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    assert_eq!(engine.authorize(&req(&chain, pay(120, "acct_attacker"), None)).unwrap().outcome, Outcome::Deny);
    assert!(engine.flush_telemetry().is_err(), "the failed export is reported to whoever flushes");
}

#[test]
fn an_endpoint_that_is_not_a_url_is_refused() {
    let err = Telemetry::otlp(&OtlpConfig::new("127.0.0.1:4318")).unwrap_err();
    assert!(err.to_string().contains("not an http(s) url"), "{err}");
}
