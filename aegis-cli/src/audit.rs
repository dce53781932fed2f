//! `aegis audit`: check logs, print and check proofs, read records, export CloudEvents, make
//! log keys. Exit status 0 means every check held.

use std::path::{Path, PathBuf};

use aegis_sod::audit::{cloud_event, read_log, rfc3339, verify_consistency, verify_inclusion, LogKey, LogVerifier, ReadLog};
use aegis_sod::OsRandom;
use base64::Engine as _;
use clap::Subcommand;
use serde_json::json;

use crate::{read, show};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Make a log key: the private key goes to `--out` (mode 0600), the verifier key to stdout.
    Keygen {
        /// The log's name, also its checkpoints' origin (e.g. `aegis.example/host-1`).
        #[arg(long)]
        name: String,
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check one or more logs: every record, the checkpoint beside each, and trusted
    /// checkpoints kept elsewhere. Exits non-zero naming the first bad record.
    Verify {
        /// Log directories (one per host).
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// A trusted earlier checkpoint (a file); the log must extend it. Repeatable.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
        /// Pinned verifier keys (`name+id+key`), matched to each log by name; default: the
        /// `log.pub` beside the log (detects edits, not a rewrite by whoever can replace it).
        #[arg(long = "key")]
        keys: Vec<String>,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the inclusion proof of record `--seq` and check it against the signed checkpoint.
    Inclusion {
        /// The log directory.
        log: PathBuf,
        /// The record.
        #[arg(long)]
        seq: u64,
        /// A pinned verifier key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Print the consistency proof from an earlier checkpoint to the log's checkpoint and
    /// check it against both signed roots.
    Consistency {
        /// The log directory.
        log: PathBuf,
        /// The earlier checkpoint (a file).
        #[arg(long)]
        old: PathBuf,
        /// A pinned verifier key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Show the last records readably.
    Tail {
        /// The log directory.
        log: PathBuf,
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Print every record as a CloudEvent (JSON), one per line.
    Export {
        /// Log directories.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
    },
}

pub fn run(command: AuditCommand) -> Result<(), String> {
    match command {
        AuditCommand::Keygen { name, out } => keygen(&name, &out),
        AuditCommand::Verify { logs, checkpoints, keys, json } => verify(&logs, &checkpoints, &keys, json),
        AuditCommand::Inclusion { log, seq, key } => inclusion(&log, seq, key.as_deref()),
        AuditCommand::Consistency { log, old, key } => consistency(&log, &old, key.as_deref()),
        AuditCommand::Tail { log, lines } => tail(&log, lines),
        AuditCommand::Export { logs } => export(&logs),
    }
}

fn keygen(name: &str, out: &Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = LogKey::generate(name, &OsRandom).map_err(show)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("cannot create `{}`: {e}", out.display()))?;
    file.write_all(format!("{}\n", key.to_signer_key().as_str()).as_bytes())
        .map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
    println!("{}", key.verifier_key());
    Ok(())
}

pub(crate) fn pinned(keys: &[String]) -> Result<Vec<LogVerifier>, String> {
    keys.iter().map(|k| LogVerifier::new(k).map_err(show)).collect()
}

/// Reads a log with the pinned key of its name, if one was given.
pub(crate) fn open_log(dir: &Path, keys: &[LogVerifier], trusted: &[String]) -> Result<ReadLog, String> {
    let stored = aegis_sod::audit::stored_verifier_key(dir).map_err(show)?;
    let key = keys.iter().find(|k| k.name() == stored.name());
    if !keys.is_empty() && key.is_none() {
        return Err(format!("no pinned key for the log `{}` in `{}`", stored.name(), dir.display()));
    }
    read_log(dir, key, trusted).map_err(show)
}

fn verify(logs: &[PathBuf], checkpoints: &[PathBuf], keys: &[String], as_json: bool) -> Result<(), String> {
    let keys = pinned(keys)?;
    let trusted: Vec<String> = checkpoints.iter().map(|p| read(p)).collect::<Result<_, _>>()?;
    let mut bad = Vec::new();
    for dir in logs {
        // A trusted checkpoint applies to the log of its origin.
        let origin = aegis_sod::audit::stored_verifier_key(dir).map_err(show)?.name().to_owned();
        let mine: Vec<String> = trusted.iter().filter(|n| n.lines().next() == Some(origin.as_str())).cloned().collect();
        let report = open_log(dir, &keys, &mine)?.report;
        if as_json {
            println!("{}", json!({"log": dir.display().to_string(), "report": report.to_json()}));
        } else {
            let cp = report.checkpoint.as_ref().map_or("none".to_owned(), |c| format!("{} records", c.size));
            let pin = if report.key_from_log { " (key from the log's own directory: pin it with --key)" } else { "" };
            println!("{}: `{}`, {} records, checkpoint {cp}{pin}", dir.display(), report.origin, report.records);
            for size in &report.trusted {
                println!("  extends the trusted checkpoint of {size} records");
            }
        }
        match &report.first_bad {
            Some(b) => {
                if !as_json {
                    println!("  FAILED at record {}: {}", b.seq, b.why);
                }
                bad.push(format!("`{}`: first bad record {}: {}", dir.display(), b.seq, b.why));
            }
            None if !as_json => println!("  intact"),
            None => {}
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn intact_log(dir: &Path, key: Option<&str>) -> Result<ReadLog, String> {
    let keys = pinned(&key.map(str::to_owned).into_iter().collect::<Vec<_>>())?;
    let log = open_log(dir, &keys, &[])?;
    if let Some(b) = &log.report.first_bad {
        return Err(format!("the log fails verification at record {}: {}", b.seq, b.why));
    }
    Ok(log)
}

fn inclusion(dir: &Path, seq: u64, key: Option<&str>) -> Result<(), String> {
    let log = intact_log(dir, key)?;
    let cp = log.report.checkpoint.clone().ok_or("the log has no checkpoint")?;
    let record = log.records.get(usize::try_from(seq).unwrap_or(usize::MAX)).filter(|_| seq < cp.size);
    let record = record.ok_or_else(|| format!("record {seq} is not covered by the checkpoint of {} records", cp.size))?;
    let proof = log.inclusion_proof(seq, cp.size).map_err(show)?;
    verify_inclusion(&proof, seq, cp.size, record.leaf_hash, cp.root).map_err(show)?;
    let out = json!({
        "seq": seq,
        "tree_size": cp.size,
        "leaf_hash": b64(&record.leaf_hash),
        "root": b64(&cp.root),
        "proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        "verified": true,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

fn consistency(dir: &Path, old: &Path, key: Option<&str>) -> Result<(), String> {
    let log = intact_log(dir, key)?;
    let cp = log.report.checkpoint.clone().ok_or("the log has no checkpoint")?;
    let verifier = match key {
        Some(k) => LogVerifier::new(k).map_err(show)?,
        None => aegis_sod::audit::stored_verifier_key(dir).map_err(show)?,
    };
    let old = aegis_sod::audit::verify_checkpoint(&read(old)?, &verifier).map_err(show)?;
    if old.size > cp.size {
        return Err(format!("the earlier checkpoint ({} records) is larger than the log's ({})", old.size, cp.size));
    }
    let proof = log.consistency_proof(old.size, cp.size).map_err(show)?;
    verify_consistency(&proof, old.size, old.root, cp.size, cp.root).map_err(show)?;
    let out = json!({
        "old_size": old.size,
        "old_root": b64(&old.root),
        "new_size": cp.size,
        "new_root": b64(&cp.root),
        "proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        "verified": true,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

fn tail(dir: &Path, lines: usize) -> Result<(), String> {
    let log = read_log(dir, None, &[]).map_err(show)?;
    for r in log.records.iter().skip(log.records.len().saturating_sub(lines)) {
        let field = |name: &str| r.str(name).unwrap_or("-");
        let detail = match r.kind.as_str() {
            "decision" => {
                let reasons: Vec<&str> = r.fields["reasons"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x["code"].as_str()).collect())
                    .unwrap_or_default();
                format!(
                    "{:<15} {} by {} in {} [{}]",
                    field("outcome"),
                    field("tool"),
                    field("agent_id"),
                    field("task_id"),
                    reasons.join(", ")
                )
            }
            k if k.starts_with("approval.") => {
                format!("{} {} for {} by {}", field("approval_id"), field("tool"), field("agent_id"), field("approver_id"))
            }
            k if k.starts_with("break_glass.") => format!("{} review {}", field("break_glass_id"), field("review_ref")),
            "task.ended" => field("task_id").to_owned(),
            "bundle.loaded" => field("policy_version").to_owned(),
            _ => String::new(),
        };
        println!("{:>6}  {}  {:<20} {detail}", r.seq, rfc3339(r.time_ms), r.kind);
    }
    if let Some(b) = &log.report.first_bad {
        println!("(the log fails verification at record {}: {})", b.seq, b.why);
    }
    Ok(())
}

fn export(logs: &[PathBuf]) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for dir in logs {
        let log = read_log(dir, None, &[]).map_err(show)?;
        for record in &log.records {
            // A closed pipe (`| head`) ends the export quietly.
            if writeln!(out, "{}", cloud_event(&log.report.origin, record)).is_err() {
                return Ok(());
            }
        }
        if let Some(b) = &log.report.first_bad {
            return Err(format!("`{}` fails verification at record {}: {}", dir.display(), b.seq, b.why));
        }
    }
    Ok(())
}
