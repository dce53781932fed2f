//! External identities as roots: OIDC ID tokens and SPIFFE JWT-SVIDs, verified against the
//! issuer's JWKS with the maintained `jsonwebtoken` crate (RS256, ES256, EdDSA), under Aegis's
//! rules: the algorithms allowed per issuer, `aud` required and matched, `exp` required,
//! `nbf` honoured, keys only from the configured JWKS (never from the token's header: `jwk`,
//! `jku`, `x5u`, `x5c` and `crit` are refused), a `kid` that names a key of the set.
//!
//! An external identity is a one-link chain: it binds no key Aegis knows, so it cannot
//! delegate. Its id is its `sub` (a SPIFFE id for an SVID), its roles the strings of the
//! issuer's configured roles claim (`groups`, `roles`, ...), its scope the issuer's configured
//! scope (typically `aegis.approve` for the people an identity provider attests).

use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::error::{Error, ErrorCode, Result};

/// An issuer of external identities (an OIDC provider, a SPIFFE trust domain's JWT issuer).
#[derive(Clone)]
pub struct ExternalIssuer {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    roles_claim: Option<String>,
    scope: Vec<String>,
    task: String,
    keys: Arc<RwLock<JwkSet>>,
    /// Held while a new key set is accepted and put in place: updates apply one at a time, in
    /// the order the engine recorded them.
    updates: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer").field("issuer", &self.issuer).field("audience", &self.audience).finish_non_exhaustive()
    }
}

/// What an external token attests, once verified.
pub(crate) struct ExternalIdentity {
    pub id: String,
    pub issuer: String,
    pub roles: Vec<String>,
    pub scope: Vec<String>,
    pub task: String,
    pub not_before: i64,
    pub expires_at: i64,
    pub jti: String,
}

impl ExternalIssuer {
    /// Trusts tokens whose `iss` is `issuer` and whose `aud` holds `audience`, signed by a key
    /// of `jwks_json` (a JWK Set, RFC 7517). Allowed algorithms default to RS256, ES256 and
    /// EdDSA; the scope defaults to `aegis.approve`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks_json: &str) -> Result<Self> {
        let issuer = issuer.into();
        Ok(Self {
            task: format!("external:{issuer}"),
            issuer,
            audience: audience.into(),
            algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
            roles_claim: None,
            scope: vec![crate::approval::APPROVE_ACTION.to_owned()],
            keys: Arc::new(RwLock::new(parse_jwks(jwks_json)?)),
            updates: Arc::default(),
        })
    }

    /// The algorithms this issuer may use (`RS256`, `ES256`, `EdDSA`, ...); `none` and the
    /// HMAC family are never accepted.
    pub fn algorithms(mut self, names: &[&str]) -> Result<Self> {
        self.algorithms = names
            .iter()
            .map(|n| match n.parse::<Algorithm>() {
                Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => Err(Error::new(
                    ErrorCode::UnsupportedAlgorithm,
                    format!("algorithm `{n}` is not accepted for external identities"),
                )),
                Ok(a) => Ok(a),
            })
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// The claim whose strings are the identity's roles (e.g. `groups`).
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = Some(claim.into());
        self
    }

    /// What these identities may do (default: `aegis.approve`).
    pub fn scope(mut self, scope: Vec<String>) -> Self {
        self.scope = scope;
        self
    }

    /// The task these identities' credentials belong to, for revocation (default
    /// `external:<issuer>`): `end_task` on it revokes every identity of this issuer.
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.task = task.into();
        self
    }

    /// The `iss` this issuer's tokens carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Replaces the key set (the refresh hook for hosts that fetch the JWKS): tokens are
    /// checked against the new keys from the next call on.
    pub fn update_jwks(&self, jwks_json: &str) -> Result<()> {
        self.update_jwks_after(jwks_json, || Ok(()))
    }

    /// Replaces the key set once `accepted` (the engine's record of the change) succeeds: a
    /// change that cannot be recorded is not made.
    pub(crate) fn update_jwks_after(&self, jwks_json: &str, accepted: impl FnOnce() -> Result<()>) -> Result<()> {
        let keys = parse_jwks(jwks_json)?;
        let _one_at_a_time = self.updates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        accepted()?;
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(())
    }

    /// Verifies `token`'s header, signature, issuer, audience and times under this issuer's
    /// rules, requiring `required` claims; returns its claims with its `nbf` and `exp`.
    pub(crate) fn verify_claims(&self, token: &str, now: i64, leeway: i64, required: &[&str]) -> Result<(Value, i64, i64)> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| Error::malformed_token(format!("external token: {e}")))?;
        if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() || header.x5c.is_some() || has_crit(token) {
            return Err(Error::new(ErrorCode::ForbiddenHeader, "an external token may not carry or point to its own keys"));
        }
        if !self.algorithms.contains(&header.alg) {
            return Err(Error::new(
                ErrorCode::UnsupportedAlgorithm,
                format!("issuer `{}` does not use `{:?}`", self.issuer, header.alg),
            ));
        }
        let key = {
            let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let jwk = match &header.kid {
                Some(kid) => keys.find(kid),
                None if keys.keys.len() == 1 => keys.keys.first(),
                None => None,
            };
            let jwk =
                jwk.ok_or_else(|| Error::new(ErrorCode::UntrustedIssuer, "the token's `kid` names no key of the issuer"))?;
            DecodingKey::from_jwk(jwk).map_err(|e| Error::new(ErrorCode::InvalidKey, format!("issuer key: {e}")))?
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(required);
        validation.leeway = u64::try_from(leeway).unwrap_or(0);
        // The engine's clock decides, not the system's: checked below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(map_error)?.claims;
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let exp = number("exp").ok_or_else(|| Error::malformed_token("`exp` must be a number"))?;
        let nbf = number("nbf").or_else(|| number("iat")).unwrap_or(i64::MIN);
        if now.saturating_add(leeway) < nbf {
            return Err(Error::new(ErrorCode::CredentialNotYetValid, "external token is not valid yet"));
        }
        if now.saturating_sub(leeway) >= exp {
            return Err(Error::new(ErrorCode::CredentialExpired, "external token has expired"));
        }
        Ok((claims, nbf, exp))
    }

    /// Verifies `token` at `now` (seconds), with `leeway` seconds of clock skew.
    pub(crate) fn verify(&self, token: &str, now: i64, leeway: i64) -> Result<ExternalIdentity> {
        let (claims, nbf, exp) = self.verify_claims(token, now, leeway, &["exp", "iss", "aud", "sub"])?;
        let id = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && (!s.contains('/') || s.starts_with("spiffe://")));
        let id = id.ok_or_else(|| Error::malformed_token("`sub` must be a non-empty id"))?.to_owned();
        let roles = match &self.roles_claim {
            None => Vec::new(),
            Some(claim) => match claims.get(claim) {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                Some(Value::String(one)) => vec![one.clone()],
                _ => Vec::new(),
            },
        };
        Ok(ExternalIdentity {
            id,
            issuer: self.issuer.clone(),
            roles,
            scope: self.scope.clone(),
            task: self.task.clone(),
            not_before: nbf,
            expires_at: exp,
            jti: claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_owned(),
        })
    }
}

/// The unverified `iss` of a compact JWT, to pick the issuer that verifies it.
pub(crate) fn unverified_issuer(token: &str) -> Option<String> {
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    claims.get("iss").and_then(Value::as_str).map(str::to_owned)
}

fn has_crit(token: &str) -> bool {
    let header = token.split('.').next().unwrap_or_default();
    super::jws::b64_decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|h| h.get("crit").is_some())
}

fn parse_jwks(json: &str) -> Result<JwkSet> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| Error::new(ErrorCode::InvalidKey, format!("jwks: {e}")))?;
    if set.keys.is_empty() {
        return Err(Error::new(ErrorCode::InvalidKey, "jwks holds no key"));
    }
    Ok(set)
}

fn map_error(e: jsonwebtoken::errors::Error) -> Error {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => Error::new(ErrorCode::SignatureInvalid, "external token signature does not verify"),
        ErrorKind::InvalidAudience => Error::new(ErrorCode::AudienceMismatch, "external token is for another audience"),
        ErrorKind::InvalidIssuer => Error::new(ErrorCode::UntrustedIssuer, "external token names another issuer"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            Error::new(ErrorCode::UnsupportedAlgorithm, "external token algorithm not accepted")
        }
        ErrorKind::MissingRequiredClaim(c) => Error::malformed_token(format!("external token lacks `{c}`")),
        _ => Error::malformed_token(format!("external token: {e}")),
    }
}
