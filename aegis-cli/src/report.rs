//! `aegis report`: the page an operator reads, from one or more audit logs (one per host).
//! The page is written even when a log fails verification, and says so; the exit status is
//! then non-zero.

use std::path::PathBuf;

use aegis_sod::audit::Report;
use clap::Args;

use crate::audit::{open_log, pinned};

#[derive(Args)]
pub struct ReportArgs {
    /// Log directories (or SQLite databases keeping a log), one per host.
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// Where to write the self-contained HTML page.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Also write the figures as JSON (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Pinned verifier keys (`name+id+key`), matched to each log by name.
    #[arg(long = "key")]
    keys: Vec<String>,
}

pub fn run(args: &ReportArgs) -> Result<(), String> {
    if args.out.is_none() && args.json.is_none() {
        return Err("say where the report goes: `-o report.html` and/or `--json FILE`".into());
    }
    let keys = pinned(&args.keys)?;
    let logs = args
        .logs
        .iter()
        .map(|dir| open_log(dir, &keys, &[]).map(|log| (dir.display().to_string(), log)))
        .collect::<Result<Vec<_>, _>>()?;
    let report = Report::from_logs(&logs);
    if let Some(out) = &args.out {
        std::fs::write(out, report.to_html()).map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
        eprintln!("report: {} ({} logs)", out.display(), logs.len());
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?;
        if path.as_os_str() == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        }
    }
    match report.logs.iter().find(|l| !l.intact) {
        Some(bad) => Err(format!("`{}` failed verification: {}", bad.source, bad.first_bad.as_deref().unwrap_or("?"))),
        None => Ok(()),
    }
}
