//! Prometheus metrics of the decisions and approvals made through the service, in the text
//! exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use aegis_sod::{ApprovalResolution, Decision};

/// Upper bounds of the approval latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0];

#[derive(Default)]
struct Counts {
    /// By (outcome, tool).
    decisions: BTreeMap<(String, String), u64>,
    /// By tool.
    would_block: BTreeMap<String, u64>,
    /// By (channel, result).
    channel_answers: BTreeMap<(String, String), u64>,
    /// By (channel, result).
    deliveries: BTreeMap<(String, String), u64>,
    latency_buckets: [u64; LATENCY_BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
}

/// The service's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    counts: Mutex<Counts>,
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// Counts a decision; a tool the bundle does not know is counted as `unknown` (callers
    /// choose tool names, and every label value is kept for good).
    pub fn decision(&self, bundle: &aegis_sod::Bundle, tool: &str, decision: &Decision) {
        let tool = if bundle.tools().any(|t| t == tool) { tool } else { "unknown" };
        self.with(|c| {
            *c.decisions.entry((decision.outcome.to_string(), tool.to_owned())).or_default() += 1;
            if decision.would_block {
                *c.would_block.entry(tool.to_owned()).or_default() += 1;
            }
        });
    }

    /// Records a resolved approval's latency.
    pub fn resolution(&self, resolution: &ApprovalResolution) {
        let Some(ms) = resolution.approval.latency_ms().filter(|_| resolution.accepted) else { return };
        let secs = ms as f64 / 1000.0;
        self.with(|c| {
            for (bucket, bound) in c.latency_buckets.iter_mut().zip(LATENCY_BUCKETS) {
                if secs <= bound {
                    *bucket += 1;
                }
            }
            c.latency_count += 1;
            c.latency_sum += secs;
        });
    }

    /// Counts an answer from a chat platform (`accepted`, `refused`, `unverified`).
    pub fn channel_answer(&self, channel: &str, result: &str) {
        self.with(|c| *c.channel_answers.entry((channel.to_owned(), result.to_owned())).or_default() += 1);
    }

    /// Counts a message delivery to a chat platform (`ok`, `failed`).
    pub fn delivery(&self, channel: &str, result: &str) {
        self.with(|c| *c.deliveries.entry((channel.to_owned(), result.to_owned())).or_default() += 1);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let c = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        let _ = writeln!(out, "# HELP aegis_decisions_total Decisions made through the service, by outcome and tool.");
        let _ = writeln!(out, "# TYPE aegis_decisions_total counter");
        for ((outcome, tool), n) in &c.decisions {
            let _ = writeln!(out, "aegis_decisions_total{{outcome=\"{}\",tool=\"{}\"}} {n}", label(outcome), label(tool));
        }
        let _ = writeln!(out, "# HELP aegis_would_block_total Calls a shadow policy or log-only mode would have blocked.");
        let _ = writeln!(out, "# TYPE aegis_would_block_total counter");
        for (tool, n) in &c.would_block {
            let _ = writeln!(out, "aegis_would_block_total{{tool=\"{}\"}} {n}", label(tool));
        }
        let _ = writeln!(out, "# HELP aegis_approval_latency_seconds Time from an approval request to its answer.");
        let _ = writeln!(out, "# TYPE aegis_approval_latency_seconds histogram");
        for (bound, n) in LATENCY_BUCKETS.iter().zip(c.latency_buckets) {
            let _ = writeln!(out, "aegis_approval_latency_seconds_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "aegis_approval_latency_seconds_bucket{{le=\"+Inf\"}} {}", c.latency_count);
        let _ = writeln!(out, "aegis_approval_latency_seconds_sum {}", c.latency_sum);
        let _ = writeln!(out, "aegis_approval_latency_seconds_count {}", c.latency_count);
        let _ = writeln!(out, "# HELP aegis_channel_answers_total Answers received from chat platforms, by result.");
        let _ = writeln!(out, "# TYPE aegis_channel_answers_total counter");
        for ((channel, result), n) in &c.channel_answers {
            let _ =
                writeln!(out, "aegis_channel_answers_total{{channel=\"{}\",result=\"{}\"}} {n}", label(channel), label(result));
        }
        let _ = writeln!(out, "# HELP aegis_channel_deliveries_total Approval messages posted to chat platforms, by result.");
        let _ = writeln!(out, "# TYPE aegis_channel_deliveries_total counter");
        for ((channel, result), n) in &c.deliveries {
            let _ = writeln!(
                out,
                "aegis_channel_deliveries_total{{channel=\"{}\",result=\"{}\"}} {n}",
                label(channel),
                label(result)
            );
        }
        out
    }
}

/// A label value escaped as the exposition format requires.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
