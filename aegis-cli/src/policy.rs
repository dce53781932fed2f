//! `aegis policy validate <dir>`.

use std::path::PathBuf;

use aegis_sod::Bundle;
use clap::Subcommand;

use crate::show;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Load a bundle directory strictly: parse, validate against its schema, index.
    Validate {
        /// The bundle directory.
        bundle_dir: PathBuf,
    },
}

pub fn run(command: PolicyCommand) -> Result<(), String> {
    let PolicyCommand::Validate { bundle_dir } = command;
    let bundle = Bundle::from_dir(&bundle_dir).map_err(show)?;
    let mut tools: Vec<&str> = bundle.tools().collect();
    tools.sort_unstable();
    println!("ok: {} ({} tools: {})", bundle.policy_version(), tools.len(), tools.join(", "));
    Ok(())
}
