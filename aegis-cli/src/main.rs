//! `aegis`: validate bundles, manage keys and credentials, authorize calls, run the demo.
//!
//! A thin shell over the core: every subcommand is one file, and each calls the core's JSON
//! operation table or its typed API.

mod audit;
mod authorize;
mod bundle;
mod demo;
mod exec;
mod keys;
mod policy;
mod report;
mod serve;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Aegis: stops AI agents from authorizing their own high-risk actions.
#[derive(Parser)]
#[command(name = "aegis", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the end-to-end payments scenario on the embedded defaults.
    Demo(demo::DemoArgs),
    /// Work with policy bundles.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Sign and verify policy bundles.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Work with Ed25519 keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Issue, delegate and inspect credentials.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Decide on one request (the JSON of an authorization request).
    Authorize(authorize::AuthorizeArgs),
    /// Check, prove, read and export audit logs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write the operator's report (HTML, JSON) from audit logs.
    Report(report::ReportArgs),
    /// Run a batch of engine operations on a (shared) store, one JSON line per step.
    Exec(exec::ExecArgs),
    /// Run the decision service: HTTP API, Envoy ext_authz (HTTP, gRPC), Slack and Teams
    /// approvals, Prometheus metrics, the live report.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => exit_with_usage(e),
    };
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Policy(command) => policy::run(command),
        Command::Keys(command) => keys::run(command),
        Command::Bundle(command) => bundle::run(command),
        Command::Token(command) => token::run(command),
        Command::Authorize(args) => authorize::run(&args),
        Command::Exec(args) => exec::run(&args),
        Command::Audit(command) => audit::run(command),
        Command::Report(args) => report::run(&args),
        Command::Serve(args) => serve::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Every parse error carries the usage line of the (sub)command it was found in: clap prints it
/// for unknown flags, not for bad values.
fn exit_with_usage(error: clap::Error) -> ! {
    use clap::CommandFactory;
    if !error.use_stderr() || error.render().to_string().contains("Usage:") {
        error.exit();
    }
    let mut command = Cli::command();
    command.build();
    let mut current = &command;
    for word in std::env::args().skip(1) {
        match current.find_subcommand(&word) {
            Some(sub) => current = sub,
            None if word.starts_with('-') => continue,
            None => break,
        }
    }
    eprint!("{}", error.render());
    eprintln!("\n{}", current.clone().render_usage());
    std::process::exit(2);
}

/// Renders a core error with its stable code.
pub(crate) fn show(error: aegis_sod::Error) -> String {
    format!("[{}] {}", error.code(), error.message())
}

/// Reads a file, naming it on failure.
pub(crate) fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

/// Calls one operation of the core's JSON operation table.
pub(crate) fn call(engine: Option<&aegis_sod::Engine>, op: &str, input: &serde_json::Value) -> Result<String, String> {
    aegis_sod::json_api::call(engine, op, &input.to_string()).map_err(show)
}
