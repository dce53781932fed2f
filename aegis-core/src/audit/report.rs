//! The page an operator reads: figures computed from one or more audit logs, and the
//! self-contained HTML that shows them (inline SVG charts, no network at view time).
//!
//! Every figure comes from the records alone, so a report of a log an auditor verified is as
//! trustworthy as the log. Each figure in the HTML carries `data-figure="<name>"` with the value
//! [`Report`] holds, which the page test compares.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value as Json;

use super::export::{civil_from_days, rfc3339};
use super::record::{kind, string_list as strings, AuditRecord};
use super::verify::ReadLog;

/// How many agents and tools the would-block rankings show.
const TOP: usize = 10;

/// One log's verification status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogStatus {
    /// Where the log was read from.
    pub source: String,
    /// Its name (the checkpoints' origin).
    pub origin: String,
    /// Records that checked out.
    pub records: u64,
    /// Whether every check held.
    pub intact: bool,
    /// The first record that cannot be trusted, with why.
    pub first_bad: Option<String>,
    /// The size of the signed checkpoint stored beside it.
    pub checkpoint_size: Option<u64>,
}

/// Approval latency, from a call put before a human to its approval or rejection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// Resolved approvals.
    pub count: u64,
    /// Mean, in milliseconds.
    pub avg_ms: Option<f64>,
    /// Median (nearest rank), in milliseconds.
    pub p50_ms: Option<i64>,
    /// 95th percentile (nearest rank), in milliseconds.
    pub p95_ms: Option<i64>,
}

/// Policy coverage of the bundle in force at the end of the logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    /// The bundle version it describes.
    pub policy_version: String,
    /// The tools that must be covered (the manifest's `critical_tools`, else every tool).
    pub critical_tools: Vec<String>,
    /// Those under at least one enforced forbid.
    pub covered: Vec<String>,
    /// `covered / critical_tools`, from 0 to 1.
    pub share: f64,
}

/// A count for one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The agent, tool, policy or week.
    pub name: String,
    /// How many.
    pub count: u64,
}

/// What one agent spent against one budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spend {
    /// The agent.
    pub agent_id: String,
    /// The budget's name (summed over its tasks, agents or initiators).
    pub budget: String,
    /// The sum spent by its allowed calls.
    pub amount: i64,
}

/// A break-glass grant and its review state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakGlassEntry {
    /// The grant id.
    pub id: String,
    /// Why it was opened.
    pub reason: String,
    /// Who opened it.
    pub approvers: Vec<String>,
    /// Opened and expiring, in seconds since the epoch.
    pub opened_at: i64,
    /// When it stops lifting forbids.
    pub expires_at: i64,
    /// The review reference it was closed with.
    pub review_ref: Option<String>,
    /// `reviewed` (closed with a reference), `open` (not yet expired) or `awaiting review`
    /// (expired, not closed).
    pub state: String,
    /// Decisions it turned into allows.
    pub uses: u64,
}

/// Figures computed from audit logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Each log's verification status.
    pub logs: Vec<LogStatus>,
    /// Decisions by outcome.
    pub decisions: BTreeMap<String, u64>,
    /// Calls refused by a segregation-of-duties policy (`@category("sod")`), by ISO week
    /// (named by its Monday, UTC), oldest first.
    pub sod_prevented_by_week: Vec<Count>,
    /// All of them.
    pub sod_prevented: u64,
    /// Approval latency.
    pub approval_latency: Latency,
    /// Policy coverage, when a log records the bundle's coverage.
    pub coverage: Option<Coverage>,
    /// Agents by calls a shadow policy would have blocked, most first.
    pub would_block_by_agent: Vec<Count>,
    /// Tools by the same, most first.
    pub would_block_by_tool: Vec<Count>,
    /// Shadow policies by the same, most first.
    pub would_block_by_policy: Vec<Count>,
    /// Candidate rules (shadow rollout) by calls the enforced bundle let run and they would
    /// have refused, most first.
    pub candidate_would_block: Vec<Count>,
    /// Decisions where a candidate bundle decided otherwise than the enforced one.
    pub candidate_divergences: u64,
    /// What each agent spent per budget.
    pub budget_by_agent: Vec<Spend>,
    /// Break-glass grants, oldest first.
    pub break_glass: Vec<BreakGlassEntry>,
    /// The last record's time, in milliseconds since the epoch (the report's "as of").
    pub as_of_ms: Option<i64>,
}

impl Report {
    /// Computes the figures of `logs` (each with the place it was read from). Only records
    /// that checked out are counted; a log that did not verify says so in `logs`.
    pub fn from_logs(logs: &[(String, ReadLog)]) -> Self {
        let mut records: Vec<&AuditRecord> = logs.iter().flat_map(|(_, log)| &log.records).collect();
        records.sort_by_key(|r| r.time_ms);
        let as_of_ms = records.last().map(|r| r.time_ms);
        let mut report = Self {
            logs: logs.iter().map(|(source, log)| status(source, log)).collect(),
            decisions: BTreeMap::new(),
            sod_prevented_by_week: Vec::new(),
            sod_prevented: 0,
            approval_latency: Latency { count: 0, avg_ms: None, p50_ms: None, p95_ms: None },
            coverage: None,
            would_block_by_agent: Vec::new(),
            would_block_by_tool: Vec::new(),
            would_block_by_policy: Vec::new(),
            candidate_would_block: Vec::new(),
            candidate_divergences: 0,
            budget_by_agent: Vec::new(),
            break_glass: Vec::new(),
            as_of_ms,
        };
        let mut weeks: BTreeMap<String, u64> = BTreeMap::new();
        let mut latencies = Vec::new();
        let (mut by_agent, mut by_tool, mut by_policy) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let mut by_candidate_rule: BTreeMap<String, u64> = BTreeMap::new();
        let mut spend: BTreeMap<(String, String), i64> = BTreeMap::new();
        // Grants in the order the logs opened them.
        let (mut grants, mut grant_index): (Vec<BreakGlassEntry>, BTreeMap<String, usize>) = (Vec::new(), BTreeMap::new());
        for record in &records {
            match record.kind.as_str() {
                kind::DECISION => {
                    let outcome = record.str("outcome").unwrap_or("unknown");
                    *report.decisions.entry(outcome.to_owned()).or_default() += 1;
                    let permitted = matches!(outcome, "allow" | "sanitize");
                    if !permitted && has_sod_reason(record) {
                        report.sod_prevented += 1;
                        *weeks.entry(week_of(record.time_ms)).or_default() += 1;
                    }
                    if let Some(candidate) = record.fields.get("candidate").filter(|c| c.is_object()) {
                        if candidate["outcome"].as_str() != Some(outcome) {
                            report.candidate_divergences += 1;
                        }
                        if candidate["would_block"].as_bool() == Some(true) {
                            for policy in strings(candidate.get("policy_ids")) {
                                *by_candidate_rule.entry(policy).or_default() += 1;
                            }
                        }
                    }
                    if record.fields.get("would_block").and_then(Json::as_bool) == Some(true) {
                        *by_agent.entry(record.str("agent_id").unwrap_or("(unverified)").to_owned()).or_default() += 1;
                        *by_tool.entry(record.str("tool").unwrap_or_default().to_owned()).or_default() += 1;
                        for policy in strings(record.fields.get("shadow_policies")) {
                            *by_policy.entry(policy).or_default() += 1;
                        }
                    }
                    if permitted {
                        let agent = record.str("agent_id").unwrap_or_default();
                        for spent in record.fields.get("spent").and_then(Json::as_array).into_iter().flatten() {
                            // The budget's key is `name/scope/value`; a report sums by name.
                            let budget = spent["budget"].as_str().and_then(|key| key.split('/').next());
                            if let (Some(budget), Some(amount)) = (budget, spent["amount"].as_i64()) {
                                let total = spend.entry((agent.to_owned(), budget.to_owned())).or_default();
                                *total = total.saturating_add(amount);
                            }
                        }
                        let grant = record.str("break_glass_id").and_then(|id| grant_index.get(id));
                        if let Some(grant) = grant.and_then(|&i| grants.get_mut(i)) {
                            grant.uses += 1;
                        }
                    }
                }
                kind::APPROVAL_APPROVED | kind::APPROVAL_REJECTED => {
                    if let Some(ms) = record.fields.get("latency_ms").and_then(Json::as_i64) {
                        latencies.push(ms.max(0));
                    }
                }
                kind::BREAK_GLASS_OPENED | kind::BREAK_GLASS_CLOSED => {
                    let Some(id) = record.str("break_glass_id") else { continue };
                    let i = *grant_index.entry(id.to_owned()).or_insert_with(|| {
                        grants.push(BreakGlassEntry {
                            id: id.to_owned(),
                            reason: record.str("reason").unwrap_or_default().to_owned(),
                            approvers: strings(record.fields.get("approvers")),
                            opened_at: record.fields.get("opened_at").and_then(Json::as_i64).unwrap_or_default(),
                            expires_at: record.fields.get("expires_at").and_then(Json::as_i64).unwrap_or_default(),
                            review_ref: None,
                            state: String::new(),
                            uses: 0,
                        });
                        grants.len() - 1
                    });
                    if let (true, Some(entry)) = (record.kind == kind::BREAK_GLASS_CLOSED, grants.get_mut(i)) {
                        entry.review_ref = record.str("review_ref").map(str::to_owned);
                    }
                }
                kind::BUNDLE_LOADED => {
                    if let Some(coverage) = coverage(record) {
                        report.coverage = Some(coverage);
                    }
                }
                _ => {}
            }
        }
        report.sod_prevented_by_week = weeks.into_iter().map(|(name, count)| Count { name, count }).collect();
        report.approval_latency = latency(latencies);
        report.would_block_by_agent = ranked(by_agent);
        report.would_block_by_tool = ranked(by_tool);
        report.would_block_by_policy = ranked(by_policy);
        report.candidate_would_block = ranked(by_candidate_rule);
        report.budget_by_agent =
            spend.into_iter().map(|((agent_id, budget), amount)| Spend { agent_id, budget, amount }).collect();
        let now_secs = as_of_ms.unwrap_or_default().div_euclid(1000);
        report.break_glass = grants
            .into_iter()
            .map(|mut g| {
                g.state = match (&g.review_ref, g.expires_at > now_secs) {
                    (Some(_), _) => "reviewed",
                    (None, true) => "open",
                    (None, false) => "awaiting review",
                }
                .to_owned();
                g
            })
            .collect();
        report
    }

    /// Whether every log verified.
    pub fn intact(&self) -> bool {
        self.logs.iter().all(|l| l.intact)
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }

    /// The report as one self-contained HTML page.
    pub fn to_html(&self) -> String {
        html::render(self)
    }
}

fn status(source: &str, log: &ReadLog) -> LogStatus {
    let r = &log.report;
    LogStatus {
        source: source.to_owned(),
        origin: r.origin.clone(),
        records: r.records,
        intact: r.intact(),
        first_bad: r
            .first_bad
            .as_ref()
            .map(|b| format!("record {}: {}", b.seq, b.why))
            .or_else(|| r.torn_bytes.map(|n| format!("{n} torn bytes after the last record"))),
        checkpoint_size: r.checkpoint.as_ref().map(|c| c.size),
    }
}

fn has_sod_reason(record: &AuditRecord) -> bool {
    record
        .fields
        .get("reasons")
        .and_then(Json::as_array)
        .is_some_and(|reasons| reasons.iter().any(|r| r["category"].as_str() == Some("sod")))
}

fn coverage(record: &AuditRecord) -> Option<Coverage> {
    // Logs written before bundle loads recorded their coverage have none to show.
    let forbidden = strings(Some(record.fields.get("forbidden_tools")?));
    let critical = strings(record.fields.get("critical_tools"));
    let covered: Vec<String> = critical.iter().filter(|t| forbidden.contains(t)).cloned().collect();
    let share = if critical.is_empty() { 1.0 } else { covered.len() as f64 / critical.len() as f64 };
    Some(Coverage {
        policy_version: record.str("policy_version").unwrap_or_default().to_owned(),
        critical_tools: critical,
        covered,
        share,
    })
}

/// The Monday (UTC) of the ISO week holding `time_ms`, as `YYYY-MM-DD`.
fn week_of(time_ms: i64) -> String {
    let days = time_ms.div_euclid(86_400_000);
    // 1970-01-01 was a Thursday: (days + 3) mod 7 is the days since Monday.
    let monday = days - (days + 3).rem_euclid(7);
    let (y, m, d) = civil_from_days(monday);
    format!("{y:04}-{m:02}-{d:02}")
}

fn latency(mut ms: Vec<i64>) -> Latency {
    ms.sort_unstable();
    let rank = |p: usize| -> Option<i64> {
        // Nearest rank: the smallest value with at least p% of the values at or below it.
        let n = ms.len();
        (n > 0).then(|| ms[(p * n).div_ceil(100).clamp(1, n) - 1])
    };
    let count = ms.len() as u64;
    let avg_ms = (count > 0).then(|| ms.iter().map(|&v| v as f64).sum::<f64>() / count as f64);
    Latency { count, avg_ms, p50_ms: rank(50), p95_ms: rank(95) }
}

fn ranked(counts: BTreeMap<String, u64>) -> Vec<Count> {
    let mut out: Vec<Count> = counts.into_iter().map(|(name, count)| Count { name, count }).collect();
    // Most first; ties by name, so the page is the same for the same logs.
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    out.truncate(TOP);
    out
}

mod html {
    //! The page: inline CSS and SVG, one small script that checks the charts drew.

    use super::*;

    pub(super) fn render(r: &Report) -> String {
        let mut body = String::new();
        let as_of = r.as_of_ms.map_or("no records".to_owned(), rfc3339);
        let _ = write!(body, "<header><h1>Aegis audit report</h1><p>as of {}</p></header>", esc(&as_of));
        logs(&mut body, r);
        kpis(&mut body, r);
        section(&mut body, "Prevented segregation-of-duties violations per week", |out| {
            let bars: Vec<(String, f64, String)> = r
                .sod_prevented_by_week
                .iter()
                .map(|c| (c.name.clone(), c.count as f64, format!("sod-week-{}", c.name)))
                .collect();
            bar_chart(out, "sod-by-week", &bars, "calls refused");
        });
        section(&mut body, "Approval latency", |out| {
            let l = &r.approval_latency;
            let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), seconds);
            let _ = write!(
                out,
                "<dl class=\"figures\"><dt>approvals resolved</dt><dd data-figure=\"approvals-resolved\">{}</dd>\
                 <dt>average</dt><dd data-figure=\"approval-latency-avg\">{}</dd>\
                 <dt>p50</dt><dd data-figure=\"approval-latency-p50\">{}</dd>\
                 <dt>p95</dt><dd data-figure=\"approval-latency-p95\">{}</dd></dl>",
                l.count,
                ms(l.avg_ms),
                ms(l.p50_ms.map(|v| v as f64)),
                ms(l.p95_ms.map(|v| v as f64))
            );
            let bars: Vec<(String, f64, String)> =
                [("avg", l.avg_ms), ("p50", l.p50_ms.map(|v| v as f64)), ("p95", l.p95_ms.map(|v| v as f64))]
                    .into_iter()
                    .filter_map(|(name, v)| v.map(|v| (name.to_owned(), v / 1000.0, format!("latency-bar-{name}"))))
                    .collect();
            bar_chart(out, "approval-latency", &bars, "seconds");
        });
        section(&mut body, "Policy coverage", |out| match &r.coverage {
            Some(c) => {
                let _ = write!(
                    out,
                    "<p>Critical tools under at least one enforced forbid in <code>{}</code>: \
                     <strong data-figure=\"coverage-share\">{}</strong> ({} of {}).</p>",
                    esc(&c.policy_version),
                    percent(c.share),
                    c.covered.len(),
                    c.critical_tools.len()
                );
                let bars: Vec<(String, f64, String)> = c
                    .critical_tools
                    .iter()
                    .map(|t| (t.clone(), if c.covered.contains(t) { 1.0 } else { 0.0 }, format!("covered-{t}")))
                    .collect();
                bar_chart(out, "coverage", &bars, "covered (1) or not (0)");
            }
            None => out.push_str("<p data-figure=\"coverage-share\">n/a: no bundle load in the logs records its coverage</p>"),
        });
        section(&mut body, "Would-block volume (shadow policies)", |out| {
            for (title, id, counts) in [
                ("Top agents", "would-block-agent", &r.would_block_by_agent),
                ("Top tools", "would-block-tool", &r.would_block_by_tool),
                ("By shadow policy", "would-block-policy", &r.would_block_by_policy),
            ] {
                let _ = write!(out, "<h3>{title}</h3>");
                let bars: Vec<(String, f64, String)> =
                    counts.iter().map(|c| (c.name.clone(), c.count as f64, format!("{id}-{}", c.name))).collect();
                bar_chart(out, id, &bars, "calls");
            }
        });
        section(&mut body, "Candidate bundle (shadow rollout)", |out| {
            let _ = write!(
                out,
                "<p>Decisions where the candidate decided otherwise: <strong data-figure=\"candidate-divergences\">{}</strong></p>",
                r.candidate_divergences
            );
            let bars: Vec<(String, f64, String)> = r
                .candidate_would_block
                .iter()
                .map(|c| (c.name.clone(), c.count as f64, format!("candidate-would-block-{}", c.name)))
                .collect();
            bar_chart(out, "candidate-would-block", &bars, "calls the candidate rule would have refused");
        });
        section(&mut body, "Budget consumption per agent", |out| {
            let bars: Vec<(String, f64, String)> = r
                .budget_by_agent
                .iter()
                .map(|s| {
                    (format!("{} · {}", s.agent_id, s.budget), s.amount as f64, format!("spend-{}-{}", s.agent_id, s.budget))
                })
                .collect();
            bar_chart(out, "budget", &bars, "spent");
        });
        section(&mut body, "Break-glass grants", |out| {
            if r.break_glass.is_empty() {
                out.push_str("<p>none</p>");
                return;
            }
            out.push_str("<table><tr><th>grant</th><th>reason</th><th>approvers</th><th>opened</th><th>expires</th><th>uses</th><th>review</th></tr>");
            for g in &r.break_glass {
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td class=\"state-{}\" data-figure=\"break-glass-{}\">{}{}</td></tr>",
                    esc(&g.id),
                    esc(&g.reason),
                    esc(&g.approvers.join(", ")),
                    rfc3339(g.opened_at.saturating_mul(1000)),
                    rfc3339(g.expires_at.saturating_mul(1000)),
                    g.uses,
                    g.state.replace(' ', "-"),
                    esc(&g.id),
                    esc(&g.state),
                    g.review_ref.as_deref().map(|r| format!(" ({})", esc(r))).unwrap_or_default()
                );
            }
            out.push_str("</table>");
        });
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Aegis audit report</title>\
             <meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head>\
             <body data-intact=\"{}\">{body}<script>{SCRIPT}</script></body></html>",
            r.intact()
        )
    }

    fn logs(out: &mut String, r: &Report) {
        let (class, text) = if r.intact() { ("ok", "every log verified") } else { ("bad", "a log failed verification") };
        let _ = write!(out, "<section><h2>Log verification</h2><p class=\"badge {class}\" data-figure=\"logs-intact\">{text}</p><table><tr><th>log</th><th>origin</th><th>records</th><th>checkpoint</th><th>status</th></tr>");
        for (i, l) in r.logs.iter().enumerate() {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td data-figure=\"log-{i}-records\">{}</td><td>{}</td><td class=\"{}\" data-figure=\"log-{i}-status\">{}</td></tr>",
                esc(&l.source),
                esc(&l.origin),
                l.records,
                l.checkpoint_size.map_or("none".to_owned(), |s| format!("{s} records")),
                if l.intact { "ok" } else { "bad" },
                esc(l.first_bad.as_deref().unwrap_or("intact"))
            );
        }
        out.push_str("</table></section>");
    }

    fn kpis(out: &mut String, r: &Report) {
        out.push_str("<section class=\"kpis\">");
        let mut kpi = |label: &str, figure: &str, value: String| {
            let _ = write!(
                out,
                "<div class=\"kpi\"><span data-figure=\"{figure}\">{}</span><label>{label}</label></div>",
                esc(&value)
            );
        };
        kpi("decisions", "decisions-total", r.decisions.values().sum::<u64>().to_string());
        for outcome in ["allow", "sanitize", "approval_needed", "deny"] {
            kpi(outcome, &format!("decisions-{outcome}"), r.decisions.get(outcome).copied().unwrap_or_default().to_string());
        }
        kpi("SoD violations prevented", "sod-prevented", r.sod_prevented.to_string());
        kpi("break-glass grants", "break-glass-grants", r.break_glass.len().to_string());
        out.push_str("</section>");
    }

    fn section(out: &mut String, title: &str, content: impl FnOnce(&mut String)) {
        let _ = write!(out, "<section><h2>{}</h2>", esc(title));
        content(out);
        out.push_str("</section>");
    }

    /// A horizontal bar chart in SVG; each bar's value label carries its `data-figure`.
    fn bar_chart(out: &mut String, id: &str, bars: &[(String, f64, String)], unit: &str) {
        if bars.is_empty() {
            let _ = write!(out, "<p class=\"empty\" data-chart-empty=\"{id}\">no data</p>");
            return;
        }
        let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(f64::MIN_POSITIVE);
        let (row, label_w, bar_w) = (26, 300, 420);
        let height = row * bars.len() + 24;
        let _ = write!(
            out,
            "<svg class=\"chart\" data-chart=\"{id}\" data-bars=\"{}\" role=\"img\" aria-label=\"{}\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">",
            bars.len(),
            esc(unit),
            label_w + bar_w + 110,
            label_w + bar_w + 110
        );
        for (i, (label, value, figure)) in bars.iter().enumerate() {
            let y = i * row;
            let w = ((value / max) * bar_w as f64).max(if *value > 0.0 { 2.0 } else { 0.0 });
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect class=\"bar\" x=\"{label_w}\" y=\"{}\" width=\"{w:.1}\" height=\"18\"></rect>\
                 <text x=\"{:.1}\" y=\"{}\" data-figure=\"{}\">{}</text>",
                label_w - 8,
                y + 14,
                esc(label),
                y + 2,
                label_w as f64 + w + 6.0,
                y + 14,
                esc(figure),
                number(*value)
            );
        }
        let _ = write!(out, "<text class=\"unit\" x=\"{label_w}\" y=\"{}\">{}</text></svg>", height - 4, esc(unit));
    }

    fn number(v: f64) -> String {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            format!("{v:.3}")
        }
    }

    fn seconds(ms: f64) -> String {
        format!("{:.3} s", ms / 1000.0)
    }

    fn percent(share: f64) -> String {
        format!("{:.1}%", share * 100.0)
    }

    pub(super) fn esc(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
        out
    }

    const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fafbfc}\
        h1{margin:0}header p{color:#57606a;margin:4px 0 16px}section{background:#fff;border:1px solid #d0d7de;\
        border-radius:6px;padding:12px 16px;margin:12px 0}table{border-collapse:collapse}td,th{border-bottom:1px solid #eaeef2;\
        padding:4px 10px;text-align:left}.kpis{display:flex;gap:12px;flex-wrap:wrap}.kpi{padding:8px 14px;border:1px solid #d0d7de;\
        border-radius:6px}.kpi span{display:block;font-size:22px;font-weight:600}.kpi label{color:#57606a}.badge{display:inline-block;\
        padding:2px 10px;border-radius:10px}.ok{color:#1a7f37}.bad{color:#cf222e;font-weight:600}.badge.ok{background:#dafbe1}\
        .badge.bad{background:#ffebe9}svg text{font-size:12px;fill:#1b1f24}svg .unit{fill:#57606a}rect.bar{fill:#0969da}\
        .figures{display:grid;grid-template-columns:max-content max-content;gap:2px 16px}.figures dd{margin:0;font-weight:600}\
        .state-awaiting-review{color:#cf222e}";

    /// Marks the page rendered once every chart holds the bars it declares; any script error
    /// is recorded on the page for the page test.
    const SCRIPT: &str = "window.addEventListener('error',function(e){document.body.dataset.errors=\
        (document.body.dataset.errors||'')+e.message+';'});(function(){var ok=true;\
        document.querySelectorAll('svg[data-chart]').forEach(function(s){\
        if(s.querySelectorAll('rect.bar').length!==Number(s.dataset.bars)||s.getBBox().width<=0)ok=false;});\
        document.body.dataset.rendered=ok?'ok':'broken';})();";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2026-12-02 (a Wednesday) is in the week of Monday 2026-11-30.
        assert_eq!(week_of(1_796_235_763_000), "2026-11-30");
        // 1970-01-01, a Thursday: the week of Monday 1969-12-29.
        assert_eq!(week_of(0), "1969-12-29");
        // A Monday at midnight is its own week; the Sunday before is not.
        let monday = 1_795_996_800_000; // 2026-11-30T00:00:00Z
        assert_eq!(week_of(monday), week_of(monday + 6 * 86_400_000 + 86_399_999));
        assert_ne!(week_of(monday), week_of(monday - 1));
    }

    #[test]
    fn latency_percentiles_are_nearest_rank() {
        let l = latency((1..=20).map(|v| v * 100).collect());
        assert_eq!((l.count, l.p50_ms, l.p95_ms), (20, Some(1000), Some(1900)));
        assert_eq!(l.avg_ms, Some(1050.0));
        let one = latency(vec![7]);
        assert_eq!((one.p50_ms, one.p95_ms), (Some(7), Some(7)));
        assert_eq!(latency(Vec::new()).avg_ms, None);
    }

    #[test]
    fn html_escapes_what_the_log_holds() {
        assert_eq!(html::esc("<script>\"&'"), "&lt;script&gt;&quot;&amp;&#39;");
    }
}
