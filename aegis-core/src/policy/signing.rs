//! Signed bundles: an Ed25519 signature (a compact JWS, `typ: aegis-bundle+jws`) over a
//! bundle's name, version and the SHA-256 of all its files, kept beside them as `bundle.sig`.
//! An engine can refuse any bundle not signed by a key it trusts for bundles.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Bundle, BundleSources};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::jws::{sign, UnverifiedJws};
use crate::identity::{KeyPair, PublicKey};

/// The file a bundle's signature is kept in (not part of what it signs).
pub const BUNDLE_SIGNATURE_FILE: &str = "bundle.sig";
const TYP: &str = "aegis-bundle+jws";

/// What a bundle signature states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleClaims {
    /// The manifest's name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
    /// The SHA-256 (hex) of every file of the bundle.
    pub digest: String,
    /// `name@version+digest`, as the engine reports it.
    pub policy_version: String,
    /// When it was signed, seconds since the epoch.
    pub iat: i64,
}

fn invalid(why: impl Into<String>) -> Error {
    Error::new(ErrorCode::BundleSignatureInvalid, why)
}

/// Signs the bundle in `dir` with `key` and writes `bundle.sig` beside it; returns the
/// signature. The bundle must load: a bundle that would be refused is never signed.
pub fn sign_bundle(dir: impl AsRef<Path>, key: &KeyPair, now: i64) -> Result<String> {
    let dir = dir.as_ref();
    let sources = BundleSources::read_dir(dir)?;
    let bundle = Bundle::from_sources(&sources)?;
    let claims = BundleClaims {
        name: bundle.manifest().name.clone(),
        version: bundle.manifest().version.clone(),
        digest: bundle.digest().to_owned(),
        policy_version: bundle.policy_version().to_owned(),
        iat: now,
    };
    let token = sign(&claims, TYP, key)?;
    let path = dir.join(BUNDLE_SIGNATURE_FILE);
    std::fs::write(&path, format!("{token}\n"))
        .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("cannot write `{}`: {e}", path.display())))?;
    Ok(token)
}

/// Checks `signature` over `bundle` against the trusted keys; returns the signing key's
/// thumbprint and what it signed.
pub fn verify_bundle_signature(bundle: &Bundle, signature: &str, trusted: &[PublicKey]) -> Result<(String, BundleClaims)> {
    let jws =
        UnverifiedJws::<BundleClaims>::parse(signature.trim(), TYP).map_err(|e| invalid(format!("bundle signature: {e}")))?;
    let kid = jws.header.kid.clone().unwrap_or_default();
    let key = trusted
        .iter()
        .find(|k| k.kid() == kid)
        .ok_or_else(|| invalid(format!("the bundle is signed by `{kid}`, a key not trusted for bundles")))?;
    jws.verify(key).map_err(|_| invalid("the bundle signature does not verify"))?;
    let claims = jws.claims;
    if claims.digest != bundle.digest()
        || claims.policy_version != bundle.policy_version()
        || claims.name != bundle.manifest().name
        || claims.version != bundle.manifest().version
    {
        return Err(invalid(format!(
            "the signature covers `{}`, not this bundle (`{}`): a file changed after signing",
            claims.policy_version,
            bundle.policy_version()
        )));
    }
    Ok((kid, claims))
}

impl Bundle {
    /// Loads the bundle in `dir` and checks its `bundle.sig` against `trusted`: the bundle
    /// comes back marked as signed by that key.
    pub fn from_dir_signed(dir: impl AsRef<Path>, trusted: &[PublicKey]) -> Result<Self> {
        let dir = dir.as_ref();
        let mut bundle = Self::from_dir(dir)?;
        let path = dir.join(BUNDLE_SIGNATURE_FILE);
        let signature = std::fs::read_to_string(&path)
            .map_err(|_| invalid(format!("bundle `{}` has no `{BUNDLE_SIGNATURE_FILE}`", dir.display())))?;
        let (kid, _) = verify_bundle_signature(&bundle, &signature, trusted)?;
        bundle.set_signed_by(kid);
        Ok(bundle)
    }
}
