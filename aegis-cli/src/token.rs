//! `aegis token issue | delegate | inspect`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::{call, read};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Issue a root credential signed by an issuer key.
    Issue(IssueArgs),
    /// Delegate a narrowed credential from a parent credential.
    Delegate(DelegateArgs),
    /// Decode a credential without verifying it (for display only).
    Inspect {
        /// The compact JWS.
        token: String,
    },
}

/// What issuing and delegating share.
#[derive(Args)]
pub struct LinkArgs {
    /// The signing key's private JWK file (the issuer's, or the parent agent's).
    #[arg(long)]
    key: PathBuf,
    /// The agent id the credential is for.
    #[arg(long)]
    agent: String,
    /// The agent's public JWK file.
    #[arg(long)]
    agent_key: PathBuf,
    /// The tools granted, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    scope: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(i64).range(1..))]
    ttl: i64,
    /// The audience (default `aegis`).
    #[arg(long)]
    audience: Option<String>,
}

#[derive(Args)]
pub struct IssueArgs {
    /// The issuer's name (`iss`).
    #[arg(long)]
    issuer: String,
    /// The task id.
    #[arg(long)]
    task: String,
    /// Why the task exists, in words.
    #[arg(long)]
    intent: String,
    /// A role the issuer attests for this identity (repeatable; roots only).
    #[arg(long = "role")]
    roles: Vec<String>,
    #[command(flatten)]
    link: LinkArgs,
}

#[derive(Args)]
pub struct DelegateArgs {
    /// The parent credential (a compact JWS).
    #[arg(long)]
    parent: String,
    #[command(flatten)]
    link: LinkArgs,
}

pub fn run(command: TokenCommand) -> Result<(), String> {
    match command {
        TokenCommand::Issue(args) => {
            let mut request = link_request(&args.link)?;
            request["issuer"] = json!(args.issuer);
            request["task_id"] = json!(args.task);
            request["intent"] = json!(args.intent);
            request["roles"] = json!(args.roles);
            print_token(&call(None, "issue", &request)?)
        }
        TokenCommand::Delegate(args) => {
            let mut request = link_request(&args.link)?;
            request["parent"] = json!(args.parent);
            print_token(&call(None, "issue", &request)?)
        }
        TokenCommand::Inspect { token } => {
            let inspected = call(None, "inspect", &json!({ "token": token }))?;
            let value: Value = serde_json::from_str(&inspected).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?);
            Ok(())
        }
    }
}

fn link_request(args: &LinkArgs) -> Result<Value, String> {
    let jwk = |path: &PathBuf| -> Result<Value, String> {
        serde_json::from_str(&read(path)?).map_err(|e| format!("`{}`: {e}", path.display()))
    };
    let scope: Vec<&str> = args.scope.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    Ok(json!({
        "signing_key": jwk(&args.key)?,
        "agent_id": args.agent,
        "agent_key": jwk(&args.agent_key)?,
        "audience": args.audience,
        "scope": scope,
        "ttl_secs": args.ttl,
    }))
}

/// Tokens are printed bare, for shells: the operation returns a JSON string.
fn print_token(json: &str) -> Result<(), String> {
    let token: String = serde_json::from_str(json).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}
