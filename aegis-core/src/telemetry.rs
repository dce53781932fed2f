//! OpenTelemetry spans and metrics (feature `otel`), made from the same events the audit log
//! records, so a trace and the log always say the same thing.
//!
//! Every event is a span: a decision's span runs from the start of `authorize` to its end and
//! nests under the host's span when the request carries a W3C `traceparent`; approvals,
//! break-glass grants, task ends and bundle changes are spans of their own. Attributes follow
//! the GenAI semantic conventions where they apply (`gen_ai.operation.name`,
//! `gen_ai.tool.name`, `gen_ai.tool.call.id`, `gen_ai.agent.id`) and carry `aegis.*` beside them.
//!
//! Metrics: `aegis.decisions` (by outcome, tool and deciding policy), `aegis.would_block` (by
//! shadow policy and agent), `aegis.approval.latency` (seconds, by status and tool),
//! `aegis.budget.consumed` (by budget and agent) and `aegis.break_glass.open`.
//!
//! Telemetry never decides: an exporter that is down loses spans, not decisions.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde_json::Value as Json;

use crate::audit::{kind, Event};
use crate::error::{Error, ErrorCode, Result};

/// The instrumentation scope of every span and metric.
pub const INSTRUMENTATION_SCOPE: &str = "aegis";

/// Where an [`Engine`](crate::Engine) sends its spans and metrics. Dropping it flushes and
/// shuts down the providers it owns.
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    tracer: SdkTracer,
    instruments: Instruments,
    /// Whether this value built the providers (and so shuts them down when dropped).
    owns_providers: bool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("owns_providers", &self.owns_providers).finish_non_exhaustive()
    }
}

struct Instruments {
    decisions: Counter<u64>,
    candidate_would_block: Counter<u64>,
    would_block: Counter<u64>,
    approval_latency: Histogram<f64>,
    budget_consumed: Counter<u64>,
    break_glass_open: UpDownCounter<i64>,
}

impl Instruments {
    fn new(meter: &Meter) -> Self {
        Self {
            decisions: meter.u64_counter("aegis.decisions").with_description("decisions, by outcome, tool and policy").build(),
            candidate_would_block: meter
                .u64_counter("aegis.candidate.would_block")
                .with_description("calls a candidate bundle's rule would have refused, by policy")
                .build(),
            would_block: meter
                .u64_counter("aegis.would_block")
                .with_description("calls a shadow policy would have blocked, by policy and agent")
                .build(),
            approval_latency: meter
                .f64_histogram("aegis.approval.latency")
                .with_unit("s")
                .with_description("time from a call put before a human to its approval or rejection")
                .build(),
            budget_consumed: meter
                .u64_counter("aegis.budget.consumed")
                .with_description("what allowed calls spent, by budget and agent")
                .build(),
            break_glass_open: meter
                .i64_up_down_counter("aegis.break_glass.open")
                .with_description("break-glass grants opened and not yet closed")
                .build(),
        }
    }
}

/// OTLP/HTTP export settings.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://127.0.0.1:4318`); spans go to `/v1/traces` and
    /// metrics to `/v1/metrics` under it.
    pub endpoint: String,
    /// The `service.name` resource attribute (default `aegis`).
    pub service_name: String,
    /// How often metrics are exported (default 60 s).
    pub export_interval: Duration,
}

impl OtlpConfig {
    /// Export to the collector at `endpoint` with the defaults.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self { endpoint: endpoint.into(), service_name: "aegis".into(), export_interval: Duration::from_secs(60) }
    }
}

fn otel_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::MalformedRequest, format!("cannot set up OpenTelemetry {what}: {e}"))
}

impl Telemetry {
    /// Exports over OTLP/HTTP (protobuf) with providers of its own: spans in batches, metrics
    /// every `export_interval`.
    pub fn otlp(config: &OtlpConfig) -> Result<Self> {
        let base = config.endpoint.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(otel_error("export", format!("the endpoint `{base}` is not an http(s) url")));
        }
        let resource = Resource::builder().with_service_name(config.service_name.clone()).build();
        let spans = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/traces"))
            .build()
            .map_err(|e| otel_error("span export", e))?;
        let metrics = MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/metrics"))
            .build()
            .map_err(|e| otel_error("metric export", e))?;
        let tracer_provider = SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();
        let reader = PeriodicReader::builder(metrics).with_interval(config.export_interval).build();
        let meter_provider = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
        let mut telemetry = Self::from_providers(tracer_provider, meter_provider);
        telemetry.owns_providers = true;
        Ok(telemetry)
    }

    /// Uses the host's providers (the host flushes and shuts them down).
    pub fn from_providers(tracer_provider: SdkTracerProvider, meter_provider: SdkMeterProvider) -> Self {
        let tracer = tracer_provider.tracer(INSTRUMENTATION_SCOPE);
        let instruments = Instruments::new(&meter_provider.meter(INSTRUMENTATION_SCOPE));
        Self { tracer_provider, meter_provider, tracer, instruments, owns_providers: false }
    }

    /// Exports every span and metric recorded so far, now.
    pub fn flush(&self) -> Result<()> {
        let spans = self.tracer_provider.force_flush();
        let metrics = self.meter_provider.force_flush();
        spans.map_err(|e| Error::new(ErrorCode::Internal, format!("cannot export spans: {e}")))?;
        metrics.map_err(|e| Error::new(ErrorCode::Internal, format!("cannot export metrics: {e}")))
    }

    /// Turns an event into its span and metrics. A decision's span starts at `started` and
    /// nests under `traceparent` when one is given and valid.
    pub(crate) fn observe(&self, event: &Event, started: Option<SystemTime>, traceparent: Option<&str>) {
        let ended = event.get("time_ms").and_then(Json::as_i64).map_or_else(SystemTime::now, millis_to_time);
        let parent = traceparent.map_or_else(Context::new, parent_context);
        let event_kind = event.kind();
        let (name, attributes) = if event_kind == kind::DECISION {
            self.decision_metrics(event);
            let tool = str_field(event, "tool");
            (format!("aegis.authorize {tool}"), decision_attributes(event))
        } else {
            self.event_metrics(event);
            (format!("aegis.{event_kind}"), event_attributes(event))
        };
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(started.unwrap_or(ended).min(ended))
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        if event.get("outcome").and_then(Json::as_str) == Some("deny") {
            // A refusal is the engine working, not failing; the reasons say why.
            span.set_status(Status::Unset);
        }
        span.end_with_timestamp(ended);
    }

    fn decision_metrics(&self, event: &Event) {
        let tool = str_field(event, "tool");
        let agent = str_field(event, "agent_id");
        let policy = event
            .get("policy_ids")
            .and_then(Json::as_array)
            .and_then(|ids| ids.first())
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned();
        self.instruments.decisions.add(
            1,
            &[
                KeyValue::new("aegis.decision", str_field(event, "outcome")),
                KeyValue::new("gen_ai.tool.name", tool),
                KeyValue::new("aegis.policy_id", policy),
            ],
        );
        for policy in strings(event, "shadow_policies") {
            self.instruments
                .would_block
                .add(1, &[KeyValue::new("aegis.policy_id", policy), KeyValue::new("gen_ai.agent.id", agent.clone())]);
        }
        if let Some(candidate) = event.get("candidate").filter(|c| c["would_block"].as_bool() == Some(true)) {
            for policy in candidate["policy_ids"].as_array().into_iter().flatten().filter_map(Json::as_str) {
                self.instruments.candidate_would_block.add(1, &[KeyValue::new("aegis.policy_id", policy.to_owned())]);
            }
        }
        for spent in event.get("spent").and_then(Json::as_array).into_iter().flatten() {
            let (Some(budget), Some(amount)) = (spent["budget"].as_str(), spent["amount"].as_u64()) else { continue };
            self.instruments.budget_consumed.add(
                amount,
                &[KeyValue::new("aegis.budget", budget.to_owned()), KeyValue::new("gen_ai.agent.id", agent.clone())],
            );
        }
    }

    fn event_metrics(&self, event: &Event) {
        match event.kind() {
            kind::APPROVAL_APPROVED | kind::APPROVAL_REJECTED => {
                if let Some(ms) = event.get("latency_ms").and_then(Json::as_i64) {
                    let status = if event.kind() == kind::APPROVAL_APPROVED { "approved" } else { "rejected" };
                    self.instruments.approval_latency.record(
                        ms.max(0) as f64 / 1000.0,
                        &[
                            KeyValue::new("aegis.approval.status", status),
                            KeyValue::new("gen_ai.tool.name", str_field(event, "tool")),
                        ],
                    );
                }
            }
            kind::BREAK_GLASS_OPENED => self.instruments.break_glass_open.add(1, &[]),
            kind::BREAK_GLASS_CLOSED => self.instruments.break_glass_open.add(-1, &[]),
            _ => {}
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if self.owns_providers {
            // Shutting down flushes what is queued; an exporter that is down loses it.
            let _ = self.tracer_provider.shutdown();
            let _ = self.meter_provider.shutdown();
        }
    }
}

/// The host's span context from a W3C `traceparent`; an invalid one gives a new trace (the
/// W3C rule: a malformed header is ignored).
fn parent_context(traceparent: &str) -> Context {
    let carrier: HashMap<String, String> = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

fn millis_to_time(ms: i64) -> SystemTime {
    u64::try_from(ms).map_or(UNIX_EPOCH, |ms| UNIX_EPOCH + Duration::from_millis(ms))
}

fn str_field(event: &Event, name: &str) -> String {
    event.get(name).and_then(Json::as_str).unwrap_or_default().to_owned()
}

fn strings(event: &Event, name: &str) -> Vec<String> {
    event.get(name).and_then(Json::as_array).map_or_else(Vec::new, |a| {
        a.iter().filter_map(|v| v.as_str().map(str::to_owned).or_else(|| v.get("code")?.as_str().map(str::to_owned))).collect()
    })
}

fn string_array(values: Vec<String>) -> Value {
    Value::Array(values.into_iter().map(StringValue::from).collect::<Vec<_>>().into())
}

/// `aegis.<name>` for each string, number or boolean field present; `aegis.<name>` as a string
/// array for lists of strings.
fn aegis_attributes(event: &Event, names: &[&str], out: &mut Vec<KeyValue>) {
    for name in names {
        let key = format!("aegis.{name}");
        match event.get(name) {
            Some(Json::String(s)) => out.push(KeyValue::new(key, s.clone())),
            Some(Json::Bool(b)) => out.push(KeyValue::new(key, *b)),
            Some(Json::Number(n)) => match n.as_i64() {
                Some(i) => out.push(KeyValue::new(key, i)),
                None => out.push(KeyValue::new(key, n.as_f64().unwrap_or_default())),
            },
            Some(Json::Array(_)) => out.push(KeyValue::new(key, string_array(strings(event, name)))),
            _ => {}
        }
    }
}

fn decision_attributes(event: &Event) -> Vec<KeyValue> {
    let mut out = vec![
        KeyValue::new("gen_ai.operation.name", "execute_tool"),
        KeyValue::new("gen_ai.tool.name", str_field(event, "tool")),
        KeyValue::new("gen_ai.agent.id", str_field(event, "agent_id")),
        KeyValue::new("aegis.decision", str_field(event, "outcome")),
    ];
    if let Some(id) = event.get("tool_call_id").and_then(Json::as_str) {
        out.push(KeyValue::new("gen_ai.tool.call.id", id.to_owned()));
    }
    if let Some(candidate) = event.get("candidate").filter(|c| c.is_object()) {
        out.push(KeyValue::new("aegis.candidate.outcome", candidate["outcome"].as_str().unwrap_or_default().to_owned()));
        out.push(KeyValue::new("aegis.candidate.would_block", candidate["would_block"].as_bool() == Some(true)));
    }
    aegis_attributes(
        event,
        &[
            "decision_id",
            "agent_id",
            "parent_agent_id",
            "initiator",
            "task_id",
            "policy_version",
            "approval_id",
            "break_glass_id",
            "call_digest",
            "would_block",
            "shadow_policies",
            "policy_ids",
            "reasons",
            "lineage",
        ],
        &mut out,
    );
    out
}

fn event_attributes(event: &Event) -> Vec<KeyValue> {
    let mut out = vec![KeyValue::new("aegis.event", event.kind().to_owned())];
    if let Some(tool) = event.get("tool").and_then(Json::as_str) {
        out.push(KeyValue::new("gen_ai.tool.name", tool.to_owned()));
    }
    if let Some(agent) = event.get("agent_id").and_then(Json::as_str) {
        out.push(KeyValue::new("gen_ai.agent.id", agent.to_owned()));
    }
    aegis_attributes(
        event,
        &[
            "approval_id",
            "agent_id",
            "task_id",
            "policy_version",
            "approver_id",
            "latency_ms",
            "status",
            "break_glass_id",
            "review_ref",
            "reason",
            "approvers",
            "previous_version",
            "action",
        ],
        &mut out,
    );
    out
}
