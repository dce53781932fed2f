//! Verifying credential chains, and what a verified chain says about the caller.
//!
//! A chain is root → … → leaf. The root is signed by a trusted issuer key; each delegated link
//! is signed by the key its parent binds in `cnf`, names the parent by digest in `par`, and may
//! only narrow what the parent granted.

use std::collections::HashMap;
#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::credential::{digest, CredentialClaims, CREDENTIAL_TYP};
use super::external::{unverified_issuer, ExternalIssuer};
use super::jws::UnverifiedJws;
use super::keys::{Jwk, PublicKey};
use crate::cache::BoundedCache;
use crate::error::{Error, ErrorCode, Result};
use crate::policy::eval::ChainContext;

/// Upper bound on cached verified chains. When it is reached, expired entries are pruned, and
/// if that frees nothing, half the entries are evicted.
const CHAIN_CACHE_CAPACITY: usize = 16_384;

/// Upper bound on cached decompressed agent keys.
const KEY_CACHE_CAPACITY: usize = 16_384;

/// A chain whose every link verified: who is calling, on whose behalf, for which task.
///
/// Every id here is an attested identity, never a name a delegator wrote: the root's id and
/// roles are what its issuer attests; a delegated agent's id is the `sub` its delegator gave it,
/// namespaced under the delegator's id (`planner/finance-agent`), so no delegation can produce
/// the id of anyone else (`finance-approver`), and it holds no roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The leaf agent: the one making the call.
    pub agent_id: String,
    /// The roles the root's issuer attests; empty below the root (roles are not delegated).
    pub roles: Vec<String>,
    /// The issuer that attested the root.
    pub issuer: String,
    /// The root's bound key thumbprint: the same identity across credentials.
    pub root_kid: String,
    /// The agent that delegated to the leaf, if any.
    pub parent_agent_id: Option<String>,
    /// The root agent, which initiated the task.
    pub initiator: String,
    /// Every agent above the leaf, root first.
    pub lineage: Vec<String>,
    /// The task id shared by every link.
    pub task_id: String,
    /// The root's intent.
    pub intent: String,
    /// The leaf's scope.
    pub scope: Vec<String>,
    /// 0 for a root credential, 1 for its delegate, ...
    pub depth: usize,
    /// The leaf's bound key; `None` for an external identity, which binds no key Aegis knows
    /// (it can neither delegate nor sign proofs of possession).
    pub leaf_key: Option<PublicKey>,
    /// The credential ids (`jti`) of every link, root first.
    pub credential_ids: Vec<String>,
    /// The chain is valid from this time (latest `nbf`), seconds.
    pub not_before: i64,
    /// The chain is valid until this time (earliest `exp`), seconds.
    pub expires_at: i64,
    /// The leaf's `sub` as its delegator wrote it (a delegated link's `iss` names it).
    pub(crate) leaf_sub: String,
    /// Every link's bound key thumbprint, root first: a key appears at most once.
    pub(crate) kids: Vec<String>,
    /// The chain's part of the Cedar context, built once per verified chain.
    pub(crate) context: ChainContext,
}

impl VerifiedChain {
    /// The chain a decision record describes, for replaying the decision under another
    /// bundle: the attested ids, roles and task as recorded (never used to authorize). Each
    /// agent stands for one key holder in the duty ledger.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replayed(
        agent_id: String,
        roles: Vec<String>,
        issuer: String,
        parent_agent_id: Option<String>,
        initiator: String,
        lineage: Vec<String>,
        task_id: String,
        intent: String,
        tool: &str,
    ) -> Self {
        let kid = |id: &str| format!("replay:{id}");
        let mut kids: Vec<String> = lineage.iter().map(|id| kid(id)).collect();
        kids.push(kid(&agent_id));
        let mut chain = Self {
            roles,
            issuer,
            root_kid: kids[0].clone(),
            parent_agent_id,
            initiator,
            depth: lineage.len(),
            lineage,
            task_id,
            intent,
            scope: vec![tool.to_owned()],
            leaf_key: None,
            credential_ids: Vec::new(),
            not_before: i64::MIN,
            expires_at: i64::MAX,
            leaf_sub: agent_id.rsplit(DELEGATE_SEPARATOR).next().unwrap_or(&agent_id).to_owned(),
            agent_id,
            kids,
            context: ChainContext::default(),
        };
        chain.context = ChainContext::of(&chain);
        chain
    }

    /// Whether the leaf's scope grants `tool`.
    pub fn grants(&self, tool: &str) -> bool {
        self.scope.iter().any(|s| scope_entry_covers(s, tool))
    }

    /// Whether the caller is a root identity (a person or an agent its issuer attests), not a
    /// delegate: only roots approve and open break-glass.
    pub fn is_root(&self) -> bool {
        self.depth == 0
    }

    /// The `sub` of every link as written, root first (for the cycle check).
    fn raw_subs(&self) -> Vec<&str> {
        let mut subs: Vec<&str> = self.lineage.iter().map(|id| id.rsplit(DELEGATE_SEPARATOR).next().unwrap_or(id)).collect();
        subs.push(&self.leaf_sub);
        subs
    }

    /// Whether `agent` is the caller or anyone above it in its chain.
    pub fn involves(&self, agent: &str) -> bool {
        self.agent_id == agent || self.lineage.iter().any(|a| a == agent)
    }
}

/// The separator of a delegated id: `planner/finance-agent`.
pub const DELEGATE_SEPARATOR: char = '/';

/// The id a delegate is attested under: its `sub`, namespaced under its delegator's id.
pub(crate) fn delegate_id(parent: &str, sub: &str) -> String {
    format!("{parent}{DELEGATE_SEPARATOR}{sub}")
}

/// How the engine names the agent of a chain of Aegis credentials, read without verifying
/// anything: for display and for keying (a guard's cache, a sub-agent's name). The engine
/// verifies every link when the chain is presented.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct InspectedChain {
    /// The leaf's id as the engine attests it: the ids along the chain, each delegate under its
    /// delegator (`planner/finance-agent`).
    pub agent_id: String,
    /// The ids above the leaf, root first.
    pub lineage: Vec<String>,
    /// The leaf's task.
    pub task_id: String,
    /// The leaf's scope.
    pub scope: Vec<String>,
}

/// Reads a chain (root first) as the engine names it, without verifying it; a token that is not
/// an Aegis credential is an error.
pub fn inspect_chain(tokens: &[String]) -> Result<InspectedChain> {
    let mut lineage = Vec::with_capacity(tokens.len().saturating_sub(1));
    let mut current: Option<String> = None;
    let mut leaf = None;
    for token in tokens {
        let claims = super::credential::inspect(token)?.claims;
        let id = match current.take() {
            None => claims.sub.clone(),
            Some(parent) => {
                let id = delegate_id(&parent, &claims.sub);
                lineage.push(parent);
                id
            }
        };
        current = Some(id);
        leaf = Some((claims.task, claims.scope));
    }
    let ((task_id, scope), agent_id) =
        leaf.zip(current).ok_or_else(|| Error::malformed_request("a credential chain holds at least one credential"))?;
    Ok(InspectedChain { agent_id, lineage, task_id, scope })
}

/// A trusted issuer of root credentials.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The `iss` a root credential must carry.
    pub name: String,
    /// The issuer's public key; root credentials name it by `kid`.
    pub key: PublicKey,
}

/// Verification settings.
#[derive(Debug, Clone)]
pub(crate) struct ChainPolicy {
    pub audience: String,
    pub leeway_secs: i64,
    pub max_depth: usize,
    pub max_lifetime_secs: i64,
}

/// Verifies chains and caches the verified result by the chain's exact bytes.
#[derive(Debug)]
pub(crate) struct ChainVerifier {
    issuers: HashMap<String, TrustedIssuer>,
    external: HashMap<String, ExternalIssuer>,
    policy: ChainPolicy,
    cache: BoundedCache<String, Arc<CachedChain>>,
    keys: BoundedCache<String, (Jwk, PublicKey)>,
    /// Signatures checked so far, so tests can tell what the caches spared.
    #[cfg(test)]
    signatures_checked: AtomicU64,
}

#[derive(Debug)]
struct CachedChain {
    tokens: Vec<String>,
    chain: Arc<VerifiedChain>,
}

impl ChainVerifier {
    /// The audience every link must name.
    pub(crate) fn audience(&self) -> &str {
        &self.policy.audience
    }

    pub fn new(issuers: Vec<TrustedIssuer>, external: Vec<ExternalIssuer>, policy: ChainPolicy) -> Self {
        let issuers = issuers.into_iter().map(|i| (i.key.kid().to_owned(), i)).collect();
        let external = external.into_iter().map(|e| (e.issuer().to_owned(), e)).collect();
        Self {
            issuers,
            external,
            policy,
            cache: BoundedCache::new(CHAIN_CACHE_CAPACITY),
            keys: BoundedCache::new(KEY_CACHE_CAPACITY),
            #[cfg(test)]
            signatures_checked: AtomicU64::new(0),
        }
    }

    /// Verifies `tokens` (root first) at time `now` (seconds).
    pub fn verify(&self, tokens: &[String], now: i64) -> Result<Arc<VerifiedChain>> {
        let Some(leaf) = tokens.last() else {
            return Err(Error::new(ErrorCode::MissingCredential, "no credential chain was presented"));
        };
        // The longest cached prefix, the whole chain included. A whole-chain hit verifies
        // nothing; a new delegation under a chain already verified (a planner's own chain, a
        // sibling's parent) verifies only its new links. Only Aegis chains are cached, so the
        // warm path never re-reads a token to ask whether it is external.
        let prefix = self.cached_prefix(tokens);
        if let Some(prefix) = &prefix {
            self.check_window(prefix.not_before, prefix.expires_at, now)?;
            if prefix.depth + 1 == tokens.len() {
                return Ok(Arc::clone(prefix));
            }
        } else if let Some(external) = self.external_issuer_of(&tokens[0]) {
            if tokens.len() > 1 {
                return Err(Error::new(ErrorCode::ParentMismatch, "an external identity cannot delegate").at_link(1));
            }
            return self.verify_external(external, leaf, now).map_err(|e| e.at_link(0));
        }
        let chain = Arc::new(self.verify_links(tokens, prefix.as_deref(), now)?);
        let key = leaf.rsplit('.').next().unwrap_or_default();
        let leeway = self.policy.leeway_secs;
        let entry = Arc::new(CachedChain { tokens: tokens.to_vec(), chain: Arc::clone(&chain) });
        self.cache.insert(key.to_owned(), entry, |c| c.chain.expires_at.saturating_add(leeway) <= now);
        Ok(chain)
    }

    /// Replaces the key set of external issuer `issuer` once `accepted` (its record) succeeds.
    pub fn update_jwks(&self, issuer: &str, jwks_json: &str, accepted: impl FnOnce() -> Result<()>) -> Result<()> {
        let issuer = self.external.get(issuer).ok_or_else(|| {
            Error::new(ErrorCode::UntrustedIssuer, format!("`{issuer}` is not an external issuer of this engine"))
        })?;
        issuer.update_jwks_after(jwks_json, accepted)
    }

    /// The external issuer of `token`: an `iss` configured as external, on a token that is not
    /// an Aegis credential.
    fn external_issuer_of(&self, token: &str) -> Option<&ExternalIssuer> {
        if self.external.is_empty() {
            return None;
        }
        let aegis = UnverifiedJws::<serde_json::Value>::parse(token, CREDENTIAL_TYP).is_ok();
        if aegis {
            return None;
        }
        self.external.get(&unverified_issuer(token)?)
    }

    fn verify_external(&self, issuer: &ExternalIssuer, token: &str, now: i64) -> Result<Arc<VerifiedChain>> {
        let who = issuer.verify(token, now, self.policy.leeway_secs)?;
        if who.expires_at.saturating_sub(who.not_before.max(now)) > self.policy.max_lifetime_secs {
            return Err(Error::new(ErrorCode::LifetimeTooLong, "external token lives longer than the engine allows"));
        }
        // No key: the identity itself stands for one holder in the duty ledger.
        let pseudo_kid = format!("ext:{}#{}", who.issuer, who.id);
        let mut chain = VerifiedChain {
            agent_id: who.id.clone(),
            roles: who.roles,
            issuer: who.issuer,
            root_kid: pseudo_kid.clone(),
            parent_agent_id: None,
            initiator: who.id.clone(),
            lineage: Vec::new(),
            task_id: who.task,
            intent: String::new(),
            scope: who.scope,
            depth: 0,
            leaf_key: None,
            credential_ids: vec![who.jti],
            not_before: who.not_before,
            expires_at: who.expires_at,
            leaf_sub: who.id,
            kids: vec![pseudo_kid],
            context: ChainContext::default(),
        };
        chain.context = ChainContext::of(&chain);
        Ok(Arc::new(chain))
    }

    /// The longest prefix of `tokens` (all of them included) cached as a verified chain. The
    /// cache key is a chain's leaf signature segment, and a hit must match every token byte for
    /// byte, so a forged token that reuses a cached signature finds nothing.
    fn cached_prefix(&self, tokens: &[String]) -> Option<Arc<VerifiedChain>> {
        (1..=tokens.len()).rev().find_map(|len| {
            let key = tokens[len - 1].rsplit('.').next().unwrap_or_default();
            self.cache.read(key, |hit| (hit.tokens.as_slice() == &tokens[..len]).then(|| Arc::clone(&hit.chain)))
        })
    }

    /// Verifies the links of `tokens` after `prefix` (every link when there is none); `prefix`
    /// is a verified chain made of the first tokens, whose validity window was checked at `now`.
    fn verify_links(&self, tokens: &[String], prefix: Option<&VerifiedChain>, now: i64) -> Result<VerifiedChain> {
        if tokens.len() > self.policy.max_depth + 1 {
            return Err(Error::new(
                ErrorCode::DelegationTooDeep,
                format!("chain has {} links; at most {} are allowed", tokens.len(), self.policy.max_depth + 1),
            ));
        }
        let start = prefix.map_or(0, |p| p.depth + 1);
        let mut links: Vec<CredentialClaims> = Vec::with_capacity(tokens.len().saturating_sub(start));
        let mut kids: Vec<String> = Vec::with_capacity(tokens.len().saturating_sub(start));
        let mut leaf_key: Option<PublicKey> = prefix.and_then(|p| p.leaf_key.clone());
        for (depth, token) in tokens.iter().enumerate().skip(start) {
            let parsed = UnverifiedJws::<CredentialClaims>::parse(token, CREDENTIAL_TYP).map_err(|e| at_link(depth, e))?;
            #[cfg(test)]
            self.signatures_checked.fetch_add(1, Ordering::Relaxed);
            let claims = &parsed.claims;
            let parent = match (links.last(), prefix) {
                (Some(link), _) => Some(ParentLink::of_claims(link)),
                (None, Some(p)) => Some(ParentLink::of_chain(p, &self.policy.audience)),
                (None, None) => None,
            };
            match parent {
                None => {
                    let issuer = parsed.header.kid.as_deref().and_then(|kid| self.issuers.get(kid)).ok_or_else(|| {
                        Error::new(ErrorCode::UntrustedIssuer, "root credential is not signed by a trusted issuer key")
                    })?;
                    parsed.verify(&issuer.key).map_err(|e| at_link(depth, e))?;
                    if claims.iss != issuer.name {
                        return Err(Error::new(
                            ErrorCode::UntrustedIssuer,
                            format!("root credential names issuer `{}`, but its key belongs to `{}`", claims.iss, issuer.name),
                        ));
                    }
                    if claims.par.is_some() {
                        return Err(Error::new(ErrorCode::ParentMismatch, "a root credential cannot name a parent"));
                    }
                }
                Some(parent) => {
                    let parent_key = leaf_key
                        .as_ref()
                        .ok_or_else(|| Error::new(ErrorCode::ParentMismatch, "an external identity cannot delegate"))?;
                    parsed.verify(parent_key).map_err(|e| at_link(depth, e))?;
                    if claims.par.as_deref() != Some(digest(&tokens[depth - 1]).as_str()) {
                        return Err(at_link(
                            depth,
                            Error::new(ErrorCode::ParentMismatch, "`par` does not name the previous credential"),
                        ));
                    }
                    check_narrowing(&parent, claims).map_err(|e| at_link(depth, e))?;
                    if !claims.roles.is_empty() {
                        return Err(at_link(depth, Error::malformed_token("a delegated credential cannot carry roles")));
                    }
                    let raw_subs = prefix.map(|p| p.raw_subs()).unwrap_or_default();
                    if raw_subs.iter().any(|s| *s == claims.sub) || links.iter().any(|l| l.sub == claims.sub) {
                        return Err(at_link(
                            depth,
                            Error::new(ErrorCode::DelegationCycle, format!("agent `{}` appears twice in the chain", claims.sub)),
                        ));
                    }
                }
            }
            if claims.sub.contains(DELEGATE_SEPARATOR) {
                return Err(at_link(
                    depth,
                    Error::malformed_token(format!("`sub` `{}` contains `{DELEGATE_SEPARATOR}`", claims.sub)),
                ));
            }
            self.check_claims(claims, now).map_err(|e| at_link(depth, e))?;
            let key = self
                .cnf_key(&claims.cnf.jwk)
                .map_err(|e| at_link(depth, Error::malformed_token(format!("`cnf` key: {}", e.message()))))?;
            // One key, one holder: a delegator that binds its own key (or an ancestor's) to a
            // "delegate" is still itself, and segregation of duties must not count it twice.
            let seen_key = prefix.is_some_and(|p| p.kids.iter().any(|k| k == key.kid())) || kids.iter().any(|k| k == key.kid());
            if seen_key {
                return Err(at_link(depth, Error::new(ErrorCode::DelegationCycle, "a key appears twice in the chain")));
            }
            kids.push(key.kid().to_owned());
            leaf_key = Some(key);
            links.push(parsed.claims);
        }
        let leaf_key = Some(leaf_key.ok_or_else(|| Error::internal("empty chain after verification"))?);
        let windows = links.iter().map(|l| (l.nbf.max(l.iat), l.exp)).chain(prefix.map(|p| (p.not_before, p.expires_at)));
        let (not_before, expires_at) = windows.fold((i64::MIN, i64::MAX), |(nb, ex), (n, e)| (nb.max(n), ex.min(e)));
        let depth = tokens.len().saturating_sub(1);
        let intent = match (prefix, links.first()) {
            (Some(p), _) => p.intent.clone(),
            (None, Some(root)) => root.intent.clone(),
            (None, None) => String::new(),
        };
        // The claims are taken apart rather than copied: this runs for every cold chain. Ids
        // below the root are namespaced under their delegator.
        let mut lineage = Vec::with_capacity(depth);
        let mut credential_ids = Vec::with_capacity(tokens.len());
        let (mut issuer, mut roles, mut root_kid, mut all_kids) = (String::new(), Vec::new(), String::new(), Vec::new());
        let mut current: Option<String> = None;
        if let Some(p) = prefix {
            lineage.extend(p.lineage.iter().cloned());
            credential_ids.extend(p.credential_ids.iter().cloned());
            (issuer, root_kid) = (p.issuer.clone(), p.root_kid.clone());
            roles.clone_from(&p.roles);
            all_kids.clone_from(&p.kids);
            current = Some(p.agent_id.clone());
        }
        all_kids.extend(kids);
        let mut leaf = None;
        for (i, link) in links.into_iter().enumerate() {
            credential_ids.push(link.jti);
            let id = match current.take() {
                None => {
                    (issuer, roles) = (link.iss, link.roles);
                    root_kid = all_kids.first().cloned().unwrap_or_default();
                    link.sub.clone()
                }
                Some(parent) => {
                    let id = delegate_id(&parent, &link.sub);
                    lineage.push(parent);
                    id
                }
            };
            current = Some(id);
            if start + i == depth {
                leaf = Some((link.sub, link.task, link.scope));
            }
        }
        let ((leaf_sub, task_id, scope), agent_id) =
            leaf.zip(current).ok_or_else(|| Error::internal("empty chain after verification"))?;
        if depth > 0 {
            // Roles are the root's, attested by its issuer; a delegate holds none.
            roles.clear();
        }
        let initiator = lineage.first().unwrap_or(&agent_id).clone();
        let mut chain = VerifiedChain {
            agent_id,
            roles,
            issuer,
            root_kid,
            parent_agent_id: lineage.last().cloned(),
            initiator,
            lineage,
            task_id,
            intent,
            scope,
            depth,
            leaf_key,
            credential_ids,
            not_before,
            expires_at,
            leaf_sub,
            kids: all_kids,
            context: ChainContext::default(),
        };
        chain.context = ChainContext::of(&chain);
        Ok(chain)
    }

    /// The key a credential binds, decompressed once per distinct key: agents keep their keys
    /// across many credentials, and point decompression costs as much as the rest of parsing.
    fn cnf_key(&self, jwk: &Jwk) -> Result<PublicKey> {
        // A hit must be the identical JWK, so every check `from_jwk` makes has already passed.
        if let Some(key) = self.keys.read(&jwk.x, |(cached, key)| (cached == jwk).then(|| key.clone())) {
            return Ok(key);
        }
        let key = PublicKey::from_jwk(jwk)?;
        self.keys.insert(jwk.x.clone(), (jwk.clone(), key.clone()), |_| false);
        Ok(key)
    }

    fn check_claims(&self, claims: &CredentialClaims, now: i64) -> Result<()> {
        if claims.aud != self.policy.audience {
            return Err(Error::new(
                ErrorCode::AudienceMismatch,
                format!("credential is for audience `{}`, not `{}`", claims.aud, self.policy.audience),
            ));
        }
        if claims.exp <= claims.nbf {
            return Err(Error::malformed_token("`exp` is not after `nbf`"));
        }
        // Checked: an agent writes these numbers (`nbf = iat = i64::MIN` once panicked here).
        let lifetime = claims.exp.checked_sub(claims.nbf.min(claims.iat));
        if lifetime.is_none_or(|l| l > self.policy.max_lifetime_secs) {
            return Err(Error::new(
                ErrorCode::LifetimeTooLong,
                format!(
                    "credential lives {} s; at most {} s are allowed",
                    lifetime.map_or_else(|| "too many".to_owned(), |l| l.to_string()),
                    self.policy.max_lifetime_secs
                ),
            ));
        }
        if claims.sub.is_empty() || claims.task.is_empty() {
            return Err(Error::malformed_token("`sub` and `task` must not be empty"));
        }
        self.check_window(claims.nbf.max(claims.iat), claims.exp, now)
    }

    fn check_window(&self, not_before: i64, expires_at: i64, now: i64) -> Result<()> {
        if now.saturating_add(self.policy.leeway_secs) < not_before {
            return Err(Error::new(ErrorCode::CredentialNotYetValid, "credential is not valid yet"));
        }
        if now.saturating_sub(self.policy.leeway_secs) >= expires_at {
            return Err(Error::new(ErrorCode::CredentialExpired, "credential has expired"));
        }
        Ok(())
    }
}

fn at_link(depth: usize, e: Error) -> Error {
    e.at_link(depth)
}

/// What a delegated link is checked against: its parent's claims, taken from the same chain or
/// from a verified prefix.
pub(super) struct ParentLink<'a> {
    sub: &'a str,
    task: &'a str,
    exp: i64,
    aud: &'a str,
    scope: &'a [String],
}

impl<'a> ParentLink<'a> {
    pub(super) fn of_claims(claims: &'a CredentialClaims) -> Self {
        Self { sub: &claims.sub, task: &claims.task, exp: claims.exp, aud: &claims.aud, scope: &claims.scope }
    }

    /// A verified chain's leaf: every link carried the engine's audience, and since each link
    /// expires no later than its parent, the leaf's own expiry is the chain's.
    fn of_chain(chain: &'a VerifiedChain, audience: &'a str) -> Self {
        Self { sub: &chain.leaf_sub, task: &chain.task_id, exp: chain.expires_at, aud: audience, scope: &chain.scope }
    }
}

/// A delegated link may only narrow its parent.
pub(super) fn check_narrowing(parent: &ParentLink<'_>, child: &CredentialClaims) -> Result<()> {
    if child.iss != parent.sub {
        return Err(Error::new(
            ErrorCode::ParentMismatch,
            format!("delegated credential names issuer `{}`, but its parent is `{}`", child.iss, parent.sub),
        ));
    }
    if child.task != parent.task {
        return Err(Error::new(
            ErrorCode::TaskMismatch,
            format!("delegated credential is for task `{}`, its parent for `{}`", child.task, parent.task),
        ));
    }
    if child.exp > parent.exp {
        return Err(Error::new(ErrorCode::LifetimeExceedsParent, "delegated credential expires after its parent"));
    }
    if child.aud != parent.aud {
        return Err(Error::new(ErrorCode::AudienceMismatch, "delegated credential changes the audience"));
    }
    if let Some(extra) = child.scope.iter().find(|c| !parent.scope.iter().any(|p| scope_entry_covers(p, c))) {
        return Err(Error::new(ErrorCode::ScopeWidened, format!("delegated scope `{extra}` is not within the parent's scope")));
    }
    Ok(())
}

/// The prefix of Aegis's own actions (`aegis.approve`, `aegis.break_glass`, administration).
pub const AEGIS_ACTION_PREFIX: &str = "aegis.";

/// Whether scope entry `grant` covers `wanted` (a tool name or another scope entry).
///
/// Wildcards never cover Aegis's own actions: `*` and `aegis.*` grant no `aegis.approve`; only
/// the exact name does, so holding "every tool" never makes an agent an approver.
pub(crate) fn scope_entry_covers(grant: &str, wanted: &str) -> bool {
    if grant == wanted {
        return true;
    }
    if wanted.starts_with(AEGIS_ACTION_PREFIX) {
        return false;
    }
    if grant == "*" {
        return true;
    }
    match grant.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('.') => wanted.starts_with(prefix) && wanted != "*",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::credential::{delegate, issue_root, CredentialSpec};
    use crate::identity::keys::KeyPair;

    fn spec(agent: &str, key: &KeyPair, jti: &str) -> CredentialSpec {
        CredentialSpec {
            agent_id: agent.into(),
            agent_key: key.public_key().clone(),
            audience: "aegis".into(),
            task_id: "t".into(),
            intent: "i".into(),
            scope: vec!["*".into()],
            issued_at: 1000,
            expires_at: 1600,
            jti: jti.into(),
            roles: Vec::new(),
        }
    }

    #[test]
    fn a_full_chain_cache_evicts_half_not_everything() {
        let key = |n: u8| KeyPair::from_seed(&[n; 32]).unwrap();
        let issuer = TrustedIssuer { name: "iss".into(), key: key(1).public_key().clone() };
        let policy = ChainPolicy { audience: "aegis".into(), leeway_secs: 5, max_depth: 4, max_lifetime_secs: 3600 };
        let mut verifier = ChainVerifier::new(vec![issuer], Vec::new(), policy);
        verifier.cache.with_capacity_for_tests(4);
        let roots: Vec<String> =
            (0..5).map(|i| issue_root("iss", &key(1), spec("planner", &key(2), &format!("r{i}"))).unwrap()).collect();
        let cached =
            |verifier: &ChainVerifier, token: &String| verifier.cache.any(|c| c.tokens.as_slice() == std::slice::from_ref(token));
        for root in &roots[..4] {
            verifier.verify(std::slice::from_ref(root), 1100).unwrap();
        }
        assert_eq!(verifier.cache.len(), 4);
        verifier.verify(std::slice::from_ref(&roots[4]), 1100).unwrap();
        assert_eq!(verifier.cache.len(), 3);
        assert!(cached(&verifier, &roots[4]));
        assert_eq!(roots[..4].iter().filter(|r| cached(&verifier, r)).count(), 2);
        // Expired entries go first: when every cached chain has expired, pruning them makes
        // the room and nothing is halved.
        verifier.cache.clear();
        for root in &roots[..4] {
            verifier.verify(std::slice::from_ref(root), 1100).unwrap();
        }
        let late =
            issue_root("iss", &key(1), CredentialSpec { issued_at: 1700, expires_at: 2300, ..spec("planner", &key(2), "late") })
                .unwrap();
        verifier.verify(std::slice::from_ref(&late), 1700).unwrap();
        assert_eq!(verifier.cache.len(), 1);
        assert!(cached(&verifier, &late));
    }

    #[test]
    fn new_delegations_under_a_verified_chain_check_only_their_own_signatures() {
        let key = |n: u8| KeyPair::from_seed(&[n; 32]).unwrap();
        let issuer = TrustedIssuer { name: "iss".into(), key: key(1).public_key().clone() };
        let policy = ChainPolicy { audience: "aegis".into(), leeway_secs: 5, max_depth: 4, max_lifetime_secs: 3600 };
        let verifier = ChainVerifier::new(vec![issuer], Vec::new(), policy);
        let checked = || verifier.signatures_checked.load(Ordering::Relaxed);
        let root = issue_root("iss", &key(1), spec("planner", &key(2), "r")).unwrap();
        let coordinator = delegate(&root, &key(2), spec("coordinator", &key(3), "c")).unwrap();
        let leaf_a = delegate(&coordinator, &key(3), spec("a", &key(4), "a")).unwrap();
        let leaf_b = delegate(&coordinator, &key(3), spec("b", &key(5), "b")).unwrap();
        let at = 1100;

        verifier.verify(&[root.clone(), coordinator.clone()], at).unwrap();
        assert_eq!(checked(), 2);
        let a = verifier.verify(&[root.clone(), coordinator.clone(), leaf_a.clone()], at).unwrap();
        assert_eq!(checked(), 3, "only the new link is checked");
        // Ids below the root are namespaced under their delegator.
        assert_eq!(a.lineage, ["planner", "planner/coordinator"]);
        assert_eq!(a.credential_ids, ["r", "c", "a"]);
        verifier.verify(&[root.clone(), coordinator.clone(), leaf_a], at).unwrap();
        assert_eq!(checked(), 3, "a whole chain seen before checks nothing");
        let b = verifier.verify(&[root.clone(), coordinator.clone(), leaf_b.clone()], at).unwrap();
        assert_eq!(checked(), 4);
        assert_eq!(
            (b.agent_id.as_str(), b.depth, b.parent_agent_id.as_deref()),
            ("planner/coordinator/b", 2, Some("planner/coordinator"))
        );
        // A leaf whose parent is not cached is checked from the root.
        let fresh = ChainVerifier::new(Vec::new(), Vec::new(), verifier.policy.clone());
        assert_eq!(fresh.verify(&[root, coordinator, leaf_b], at).unwrap_err().code(), ErrorCode::UntrustedIssuer);
    }

    #[test]
    fn scope_coverage() {
        assert!(scope_entry_covers("*", "stripe.create_payment"));
        assert!(scope_entry_covers("stripe.*", "stripe.create_payment"));
        assert!(scope_entry_covers("stripe.*", "stripe.refunds.*"));
        assert!(!scope_entry_covers("stripe.*", "*"));
        assert!(!scope_entry_covers("stripe.*", "stripeX.pay"));
        assert!(!scope_entry_covers("stripe.create_payment", "stripe.*"));
        assert!(!scope_entry_covers("stripe*", "stripe.x"));
    }
}
