//! `aegis authorize --bundle DIR --trust NAME=KEY.jwk --request REQUEST.json`.

use std::path::PathBuf;

use aegis_sod::json_api::{engine_from_json, StoreConfig};
use clap::Args;
use serde_json::{json, Value};

use crate::{read, show};

#[derive(Args)]
pub struct AuthorizeArgs {
    /// The policy bundle directory.
    #[arg(long)]
    bundle: PathBuf,
    /// A trusted issuer and its public JWK file: `NAME=ISSUER.jwk` (repeatable).
    #[arg(long, required = true, value_parser = parse_trust)]
    trust: Vec<(String, PathBuf)>,
    /// The request: a JSON file with `chain`, `tool`, `args`, ...
    #[arg(long)]
    request: PathBuf,
    /// The audience credentials must name (default `aegis`).
    #[arg(long)]
    audience: Option<String>,
    /// Where state lives: `memory` (default), `sqlite:PATH` or `redis://...`.
    #[arg(long, value_parser = parse_store)]
    store: Option<String>,
}

fn parse_trust(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text.split_once('=').ok_or_else(|| "`--trust` takes NAME=ISSUER.jwk".to_owned())?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

fn parse_store(text: &str) -> Result<String, String> {
    StoreConfig::from_url(text).map(|_| text.to_owned()).map_err(show)
}

pub fn run(args: &AuthorizeArgs) -> Result<(), String> {
    let mut issuers = Vec::new();
    for (issuer, path) in &args.trust {
        let jwk: Value = serde_json::from_str(&read(path)?).map_err(|e| format!("`{}`: {e}", path.display()))?;
        issuers.push(json!({ "issuer": issuer, "jwk": jwk }));
    }
    let config = json!({
        "bundle_dir": args.bundle,
        "trusted_issuers": issuers,
        "audience": args.audience,
        "store": args.store,
    });
    let engine = engine_from_json(&config.to_string()).map_err(show)?;
    // The file's text goes to the core as is: its strict parser refuses duplicate keys.
    let decision = aegis_sod::json_api::call(Some(&engine), "authorize", &read(&args.request)?).map_err(show)?;
    println!("{decision}");
    Ok(())
}
