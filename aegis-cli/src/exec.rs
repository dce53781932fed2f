//! `aegis exec JOB.json`: runs a batch of engine operations and prints one JSON line per step.
//!
//! The job is `{"engine": <EngineConfig>, "start_at_ms": <optional>, "steps": [...]}`; a step
//! is `{"op": "authorize" | "approve" | "reject", "request": {...}}`, `{"op": "pending"}`,
//! `{"op": "ledger", "task_id": "..."}`, `{"op": "end_task", "task_id": "..."}` or
//! `{"op": "hang"}` (prints a line, then waits to be killed). Each line is `{"ok": <result>}` or
//! `{"err": {"code", "message"}}`. Scripts use it to drive an engine on a shared store; the
//! cross-process tests use it to race processes against each other.

use std::io::Write;
use std::time::Duration;

use aegis_core::{ffi, Clock, SystemClock};
use serde_json::{json, Value};

use crate::args::{read, show, Args};

pub fn run(words: &[&str]) -> Result<(), String> {
    let args = Args::parse(words, &[])?;
    let path = args.positional(0, "job.json")?;
    let job: Value = serde_json::from_str(&read(path)?).map_err(|e| format!("`{path}`: {e}"))?;
    let engine = ffi::engine_from_json(&job["engine"].to_string()).map_err(show)?;
    if let Some(at) = job["start_at_ms"].as_i64() {
        let wait = at - SystemClock.now_millis();
        if wait > 0 {
            std::thread::sleep(Duration::from_millis(wait.unsigned_abs()));
        }
    }
    let mut out = std::io::stdout();
    for step in job["steps"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let request = step["request"].to_string();
        let task = step["task_id"].as_str().unwrap_or_default();
        let result = match step["op"].as_str().unwrap_or_default() {
            "authorize" => ffi::authorize_json(&engine, &request),
            "approve" => ffi::approve_json(&engine, &request),
            "reject" => ffi::reject_json(&engine, &request),
            "pending" => ffi::pending_approvals_json(&engine),
            "ledger" => ffi::ledger_json(&engine, task),
            "end_task" => engine.end_task(task).map(|()| "null".to_owned()),
            "hang" => {
                writeln!(out, "{}", json!({"ok": "hanging"})).map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            other => return Err(format!("unknown op `{other}`")),
        };
        let line = match result {
            Ok(text) => json!({"ok": serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))}),
            Err(e) => json!({"err": {"code": e.code(), "message": e.message()}}),
        };
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
        // Flushed per line: a reader (or a SIGKILL right after) sees every completed step.
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}
