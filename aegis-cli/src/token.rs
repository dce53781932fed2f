//! `aegis token issue | delegate | inspect`.

use aegis_core::ffi::{self, IssueRequest};
use aegis_core::json::from_str_strict;

use crate::args::{read, show, Args};

pub fn issue(words: &[&str]) -> Result<(), String> {
    let args = Args::parse(words, &[])?;
    let mut req = request(&args)?;
    req.issuer = Some(args.require("issuer")?.to_owned());
    req.task_id = Some(args.require("task")?.to_owned());
    req.intent = Some(args.require("intent")?.to_owned());
    println!("{}", ffi::issue(req).map_err(show)?);
    Ok(())
}

pub fn delegate(words: &[&str]) -> Result<(), String> {
    let args = Args::parse(words, &[])?;
    let mut req = request(&args)?;
    req.parent = Some(args.require("parent")?.to_owned());
    println!("{}", ffi::issue(req).map_err(show)?);
    Ok(())
}

pub fn inspect(words: &[&str]) -> Result<(), String> {
    let args = Args::parse(words, &[])?;
    let json = ffi::inspect_json(args.positional(0, "token")?).map_err(show)?;
    let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?);
    Ok(())
}

fn request(args: &Args<'_>) -> Result<IssueRequest, String> {
    let jwk = |flag: &str| -> Result<_, String> {
        from_str_strict(&read(args.require(flag)?)?).map_err(|e| format!("`--{flag}`: {}", show(e)))
    };
    Ok(IssueRequest {
        issuer: None,
        signing_key: jwk("key")?,
        parent: None,
        agent_id: args.require("agent")?.to_owned(),
        agent_key: jwk("agent-key")?,
        audience: args.get("audience").map(str::to_owned),
        task_id: args.get("task").map(str::to_owned),
        intent: args.get("intent").map(str::to_owned),
        scope: args.require("scope")?.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        issued_at: None,
        ttl_secs: args.get("ttl").map_or(Ok(900), |t| t.parse().map_err(|_| format!("`--ttl` `{t}` is not a number")))?,
        jti: None,
    })
}
