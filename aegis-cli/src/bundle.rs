//! `aegis bundle sign|verify`: Ed25519 signatures over a bundle's files (`bundle.sig`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{json, Value};

use crate::{call, read};

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Sign a bundle directory with a private JWK (`aegis keys generate`); writes `bundle.sig`.
    Sign {
        /// The bundle directory.
        bundle_dir: PathBuf,
        /// The signing key: a file holding a private JWK.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a bundle's `bundle.sig` against trusted public JWKs; exits non-zero when it does
    /// not verify or a file changed after signing.
    Verify {
        /// The bundle directory.
        bundle_dir: PathBuf,
        /// A trusted key: a file holding a public JWK. Repeatable.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
    },
}

fn jwk(path: &Path) -> Result<Value, String> {
    serde_json::from_str(&read(path)?).map_err(|e| format!("`{}` is not a JWK: {e}", path.display()))
}

pub fn run(command: BundleCommand) -> Result<(), String> {
    match command {
        BundleCommand::Sign { bundle_dir, key } => {
            let out = call(None, "bundle_sign", &json!({"bundle_dir": bundle_dir, "key": jwk(&key)?}))?;
            let out: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            println!(
                "signed {} ({})",
                out["policy_version"].as_str().unwrap_or_default(),
                bundle_dir.join("bundle.sig").display()
            );
        }
        BundleCommand::Verify { bundle_dir, keys } => {
            let keys = keys.iter().map(|k| jwk(k)).collect::<Result<Vec<_>, _>>()?;
            let out = call(None, "bundle_verify", &json!({"bundle_dir": bundle_dir, "keys": keys}))?;
            let out: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            println!(
                "ok: {} signed by {}",
                out["policy_version"].as_str().unwrap_or_default(),
                out["signed_by"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
