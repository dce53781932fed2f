//! `aegis authorize --bundle DIR --trust NAME=KEY.jwk --request REQUEST.json`.

use aegis_core::ffi::{self, EngineConfig, IssuerConfig};
use aegis_core::json::from_str_strict;

use crate::args::{read, show, Args};

pub fn run(words: &[&str]) -> Result<(), String> {
    let args = Args::parse(words, &[])?;
    let (issuer, key_path) = args
        .require("trust")?
        .split_once('=')
        .ok_or_else(|| "`--trust` takes NAME=ISSUER.jwk".to_owned())?;
    let config = EngineConfig {
        bundle_dir: Some(args.require("bundle")?.to_owned()),
        bundle: None,
        trusted_issuers: vec![IssuerConfig {
            issuer: issuer.to_owned(),
            jwk: from_str_strict(&read(key_path)?).map_err(show)?,
        }],
        audience: args.get("audience").map(str::to_owned),
        leeway_secs: None,
        max_delegation_depth: None,
        max_credential_lifetime_secs: None,
        fixed_time: None,
        store: None,
        approval_key: None,
        override_ttl_secs: None,
    };
    let engine = ffi::engine_from_config(config).map_err(show)?;
    let decision = ffi::authorize_json(&engine, &read(args.require("request")?)?).map_err(show)?;
    println!("{decision}");
    Ok(())
}
