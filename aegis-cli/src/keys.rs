//! `aegis keys generate`.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::call;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate an Ed25519 key pair; prints the private JWK (or the public one).
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Derive the key from this seed (64 hexadecimal digits) instead of the OS's randomness.
    #[arg(long, value_parser = parse_seed)]
    seed: Option<String>,
    /// Print only the public JWK.
    #[arg(long)]
    public: bool,
}

fn parse_seed(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_owned())
    } else {
        Err("a seed is 64 hexadecimal digits".to_owned())
    }
}

pub fn run(command: KeysCommand) -> Result<(), String> {
    let KeysCommand::Generate(args) = command;
    let private = call(None, "generate_key", &json!({ "seed_hex": args.seed }))?;
    let out = if args.public {
        call(None, "public_jwk", &serde_json::from_str(&private).map_err(|e| e.to_string())?)?
    } else {
        private
    };
    println!("{out}");
    Ok(())
}
