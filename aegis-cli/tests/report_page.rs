//! `aegis report` in a real browser: the demo's log becomes a page that headless Chromium
//! (Debian's `chromium`) renders without script errors, a screenshot is taken, and every figure
//! in the rendered DOM equals the figure the core computed from the log (`--json`).
//!
//! Chromium is required: a machine without it fails this test with a message saying how to
//! install it (`.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{figures, headless};
use serde_json::Value;

fn aegis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_aegis")).args(args).current_dir(repo_root()).output().unwrap()
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_report_renders_in_chromium_with_the_cores_figures() {
    let dir = std::env::temp_dir().join(format!("aegis-report-page-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let demo = aegis(&["demo", "--audit-log", log.to_str().unwrap()]);
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let (page, json) = (dir.join("report.html"), dir.join("report.json"));
    let report = aegis(&["report", log.to_str().unwrap(), "-o", page.to_str().unwrap(), "--json", json.to_str().unwrap()]);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let core: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    let url = format!("file://{}", page.display());
    let dumped = headless(&dir.join("profile"), &["--dump-dom", &url]);
    assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
    let dom = String::from_utf8(dumped.stdout).unwrap();
    assert!(dom.contains("data-rendered=\"ok\""), "the page's charts did not draw: {}", &dom[..dom.len().min(2000)]);
    assert!(!dom.contains("data-errors="), "script errors on the page");
    let shot = dir.join("report.png");
    let screenshot =
        headless(&dir.join("profile2"), &[&format!("--screenshot={}", shot.display()), "--window-size=1280,3000", &url]);
    assert!(screenshot.status.success(), "{}", String::from_utf8_lossy(&screenshot.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());

    // Every figure the DOM shows equals the core's.
    let shown = figures(&dom);
    let total: u64 = core["decisions"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(shown["decisions-total"], total.to_string());
    for outcome in ["allow", "sanitize", "approval_needed", "deny"] {
        assert_eq!(shown[&format!("decisions-{outcome}")], core["decisions"][outcome].as_u64().unwrap_or(0).to_string());
    }
    assert!(core["sod_prevented"].as_u64().unwrap() >= 1, "the demo's refusals include SoD ones: {core}");
    assert_eq!(shown["sod-prevented"], core["sod_prevented"].to_string());
    for week in core["sod_prevented_by_week"].as_array().unwrap() {
        assert_eq!(shown[&format!("sod-week-{}", week["name"].as_str().unwrap())], week["count"].to_string());
    }
    let latency = &core["approval_latency"];
    assert_eq!(shown["approvals-resolved"], latency["count"].to_string());
    for (figure, field) in
        [("approval-latency-p50", "p50_ms"), ("approval-latency-p95", "p95_ms"), ("approval-latency-avg", "avg_ms")]
    {
        let ms = latency[field].as_f64().unwrap();
        assert_eq!(shown[figure], format!("{:.3} s", ms / 1000.0));
    }
    let coverage = &core["coverage"];
    assert_eq!(shown["coverage-share"], format!("{:.1}%", coverage["share"].as_f64().unwrap() * 100.0));
    for spend in core["budget_by_agent"].as_array().unwrap() {
        let figure = format!("spend-{}-{}", spend["agent_id"].as_str().unwrap(), spend["budget"].as_str().unwrap());
        assert_eq!(shown[&figure], spend["amount"].to_string());
    }
    assert!(!core["budget_by_agent"].as_array().unwrap().is_empty());
    for agent in core["would_block_by_agent"].as_array().unwrap() {
        assert_eq!(shown[&format!("would-block-agent-{}", agent["name"].as_str().unwrap())], agent["count"].to_string());
    }
    assert_eq!(shown["logs-intact"], "every log verified");
    assert_eq!(shown["log-0-records"], core["logs"][0]["records"].to_string());
    assert_eq!(shown["break-glass-grants"], core["break_glass"].as_array().unwrap().len().to_string());

    // The page of a tampered log says so, and the command fails.
    let segment = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&segment).unwrap().replacen("\"outcome\":\"deny\"", "\"outcome\":\"allow\"", 1);
    std::fs::write(&segment, text).unwrap();
    let tampered = aegis(&["report", log.to_str().unwrap(), "-o", page.to_str().unwrap()]);
    assert!(!tampered.status.success());
    assert!(String::from_utf8_lossy(&tampered.stderr).contains("failed verification"));
    assert!(std::fs::read_to_string(&page).unwrap().contains("a log failed verification"));
}
