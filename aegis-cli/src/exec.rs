//! `aegis exec JOB.json`: runs a batch of engine operations and prints one JSON line per step.
//!
//! The job is `{"engine": <EngineConfig>, "start_at_ms": <optional>, "steps": [...]}`; a step
//! is `{"op": <any operation of the JSON operation table>, "request": <its input>}` or
//! `{"op": "hang"}` (prints a line, then waits to be killed). Each line is `{"ok": <result>}` or
//! `{"err": <the error's JSON>}`. Scripts use it to drive an engine on a shared store; the
//! cross-process tests use it to race processes against each other.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use aegis_sod::json_api::{call, engine_from_json, error_json};
use aegis_sod::{Clock, SystemClock};
use clap::Args;
use serde_json::{json, Value};

use crate::{read, show};

#[derive(Args)]
pub struct ExecArgs {
    /// The job file.
    job: PathBuf,
}

pub fn run(args: &ExecArgs) -> Result<(), String> {
    let path = &args.job;
    let job: Value = serde_json::from_str(&read(path)?).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let engine = engine_from_json(&job["engine"].to_string()).map_err(show)?;
    if let Some(at) = job["start_at_ms"].as_i64() {
        let wait = at - SystemClock.now_millis();
        if wait > 0 {
            std::thread::sleep(Duration::from_millis(wait.unsigned_abs()));
        }
    }
    let mut out = std::io::stdout();
    for step in job["steps"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let op = step["op"].as_str().unwrap_or_default();
        if op == "hang" {
            writeln!(out, "{}", json!({"ok": "hanging"})).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let input = if step["request"].is_null() { "{}".to_owned() } else { step["request"].to_string() };
        let line = match call(Some(&engine), op, &input) {
            Ok(text) => json!({"ok": serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))}),
            Err(e) => json!({"err": serde_json::from_str::<Value>(&error_json(&e)).unwrap_or(Value::Null)}),
        };
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
        // Flushed per line: a reader (or a SIGKILL right after) sees every completed step.
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}
