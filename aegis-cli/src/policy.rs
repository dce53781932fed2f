//! `aegis policy validate <dir>`.

use aegis_core::Bundle;

use crate::args::{show, Args};

pub fn validate(words: &[&str]) -> Result<(), String> {
    let args = Args::parse(words, &[])?;
    let dir = args.positional(0, "bundle-dir")?;
    let bundle = Bundle::from_dir(dir).map_err(show)?;
    let mut tools: Vec<&str> = bundle.tools().collect();
    tools.sort_unstable();
    println!("ok: {} ({} tools: {})", bundle.policy_version(), tools.len(), tools.join(", "));
    Ok(())
}
