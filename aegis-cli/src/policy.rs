//! `aegis policy validate|lint|test|dry-run`.

use std::path::{Path, PathBuf};

use aegis_sod::audit::{dry_run, SealKey};
use aegis_sod::{lint_dir, run_policy_tests, schema_with_common_context, Bundle, BundleSources, COMPILED_FILE, MATRIX_FILE};
use clap::Subcommand;

use crate::show;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Load a bundle directory strictly: parse, validate against its schema, index.
    Validate {
        /// The bundle directory.
        bundle_dir: PathBuf,
    },
    /// Static checks (coverage, negative tests over arguments, unholdable approval roles, ...);
    /// exits non-zero when a finding is not allowed with `--allow CODE`.
    Lint {
        /// The bundle directory.
        bundle_dir: PathBuf,
        /// Findings of this code do not fail the run. Repeatable.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-decide the calls of audit logs under a candidate bundle and report every decision
    /// that would change, calls that would now run first; exits non-zero when any changes.
    DryRun {
        /// The candidate bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// An audit log (directory or SQLite database). Repeatable.
        #[arg(long = "log", required = true)]
        logs: Vec<PathBuf>,
        /// The 32-byte key (hex) the logs' raw arguments are sealed under; without it, calls
        /// whose recorded arguments were redacted are reported as not re-evaluable.
        #[arg(long)]
        seal_key_hex: Option<String>,
        /// Exit 0 even when decisions change (the changes were expected).
        #[arg(long)]
        accept_changes: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print what the bundle's SoD matrix (`sod.yaml`) compiles to, and the schema with the
    /// common context Aegis adds to every action.
    Compile {
        /// The bundle directory.
        bundle_dir: PathBuf,
    },
    /// Run the bundle's policy tests (`tests/*.yaml`); exits non-zero when any case fails.
    Test {
        /// The bundle directory.
        bundle_dir: PathBuf,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: PolicyCommand) -> Result<(), String> {
    match command {
        PolicyCommand::Validate { bundle_dir } => validate(&bundle_dir),
        PolicyCommand::Test { bundle_dir, json } => test(&bundle_dir, json),
        PolicyCommand::Compile { bundle_dir } => compile(&bundle_dir),
        PolicyCommand::Lint { bundle_dir, allow, json } => lint_bundle(&bundle_dir, &allow, json),
        PolicyCommand::DryRun { bundle, logs, seal_key_hex, accept_changes, json } => {
            replay(&bundle, &logs, seal_key_hex.as_deref(), accept_changes, json)
        }
    }
}

fn compile(bundle_dir: &Path) -> Result<(), String> {
    let sources = BundleSources::read_dir(bundle_dir).map_err(show)?;
    // It must load as a whole: a matrix that compiles to policies Cedar refuses is an error.
    let bundle = Bundle::from_sources(&sources).map_err(show)?;
    match sources.policies.iter().find(|(name, _)| name == COMPILED_FILE) {
        Some((_, cedar)) => println!("{cedar}"),
        None => println!("// `{}` has no `{MATRIX_FILE}`", bundle_dir.display()),
    }
    println!("// The schema as {} validates against it (the common context added):\n", bundle.policy_version());
    println!("{}", schema_with_common_context(&sources).map_err(show)?);
    Ok(())
}

fn findings(bundle_dir: &Path) -> Result<(Bundle, Vec<aegis_sod::Lint>), String> {
    let bundle = Bundle::from_dir(bundle_dir).map_err(show)?;
    let found = lint_dir(bundle_dir).map_err(show)?;
    Ok((bundle, found))
}

fn print_lint(l: &aegis_sod::Lint) {
    let policy = l.policy_id.as_deref().map(|p| format!(" policy `{p}`")).unwrap_or_default();
    println!("{}:{}:{policy} [{}] {}", l.file, l.line, l.code, l.message);
}

fn lint_bundle(bundle_dir: &Path, allow: &[String], json: bool) -> Result<(), String> {
    let (_, found) = findings(bundle_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found).map_err(|e| e.to_string())?);
    } else {
        found.iter().for_each(print_lint);
    }
    let failing = found.iter().filter(|l| !allow.iter().any(|a| a == l.code)).count();
    println!("{} finding(s), {failing} not allowed", found.len());
    match failing {
        0 => Ok(()),
        n => Err(format!("{n} lint finding(s)")),
    }
}

fn replay(bundle: &Path, logs: &[PathBuf], seal_key_hex: Option<&str>, accept: bool, json: bool) -> Result<(), String> {
    let candidate = Bundle::from_dir(bundle).map_err(show)?;
    let seal = match seal_key_hex {
        Some(hex_key) => {
            let key = hex::decode(hex_key).map_err(|_| "`--seal-key-hex` is not hex".to_owned())?;
            Some(SealKey::new(&key).map_err(show)?)
        }
        None => None,
    };
    let read = logs
        .iter()
        .map(|dir| crate::audit::open_log(dir, &[], &[]).map(|log| (dir.display().to_string(), log)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((source, bad)) = read.iter().find(|(_, log)| !log.report.intact()) {
        return Err(format!("`{source}` fails verification ({:?}): replay only a log that verifies", bad.report.first_bad));
    }
    let report = dry_run(candidate, &read, seal.as_ref()).map_err(show)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "candidate {}: {} decisions, {} replayed, {} changed ({} would now run); not replayed: {} before policies, {} break-glass, {} not re-evaluable",
            report.candidate_version,
            report.decisions,
            report.replayed,
            report.changes.len(),
            report.opened(),
            report.not_policy_decisions,
            report.break_glass,
            report.not_reevaluable.len()
        );
        for c in &report.changes {
            let flip = format!("{}->{}", c.from.to_uppercase(), c.to.to_uppercase());
            println!(
                "  {flip:<28} {} {} by {} in {} (policies: {})",
                c.decision_id,
                c.tool,
                c.agent_id,
                c.task_id,
                c.policies.join(", ")
            );
        }
        for (policy, n) in &report.by_policy {
            println!("  by policy {policy}: {n}");
        }
        for (agent, n) in &report.by_agent {
            println!("  by agent {agent}: {n}");
        }
        for id in &report.not_reevaluable {
            println!("  not re-evaluable (arguments kept redacted): {id}");
        }
    }
    match (report.changes.len(), accept) {
        (0, _) | (_, true) => Ok(()),
        (n, false) => Err(format!("{n} decision(s) would change under the candidate")),
    }
}

fn validate(bundle_dir: &Path) -> Result<(), String> {
    let (bundle, found) = findings(bundle_dir)?;
    let mut tools: Vec<&str> = bundle.tools().collect();
    tools.sort_unstable();
    println!("ok: {} ({} tools: {})", bundle.policy_version(), tools.len(), tools.join(", "));
    for l in &found {
        print!("warning: ");
        print_lint(l);
    }
    Ok(())
}

fn test(bundle_dir: &Path, json: bool) -> Result<(), String> {
    let report = run_policy_tests(bundle_dir).map_err(show)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        for case in &report.cases {
            println!("{} {}: {}", if case.passed() { "ok  " } else { "FAIL" }, case.file, case.name);
            for failure in &case.failures {
                println!("       {failure}");
            }
        }
    }
    let failed = report.cases.iter().filter(|c| !c.passed()).count();
    println!("{}: {} cases, {} passed, {failed} failed", report.policy_version, report.cases.len(), report.cases.len() - failed);
    match (report.cases.is_empty(), failed) {
        (true, _) => Err("the bundle has no policy test cases".into()),
        (false, 0) => Ok(()),
        (false, n) => Err(format!("{n} policy test case(s) failed")),
    }
}
