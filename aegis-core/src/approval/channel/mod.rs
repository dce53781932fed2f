//! Approval channels: the messages a human answers in a chat platform, the verification of
//! the platform's requests (Slack's signature, Bot Framework's token), and the attestation of
//! the person who answered as a roster identity.
//!
//! A click proves only that the platform saw an account press a button. The engine turns that
//! into an identity the same way an identity provider would: the signed bundle's roster names
//! the identity (and its roles) each account is, and the engine's channel issuer signs a
//! short-lived root credential for it. The approval then runs through the same checks as any
//! approver's (not the requester, nobody above it, no other duty in the task, the bundle's
//! `aegis.approve` policies), so a chat platform adds a way to answer, never a way around.

mod slack;
mod teams;

use serde::{Deserialize, Serialize};

pub use slack::{slack_message, slack_resolved_message, SlackAction, SlackVerifier};
pub use teams::{teams_card, teams_invoke_response, TeamsAction, TeamsVerifier, BOT_FRAMEWORK_ISSUER};

use super::{ApprovalResolution, PendingApproval, APPROVE_ACTION};
use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::{issue_root, CredentialSpec, KeyPair};
use crate::time::random_id;

/// How long the credential attesting a click lives: it is used at once, by the engine itself.
const CLICK_CREDENTIAL_SECS: i64 = 120;

/// A chat platform people answer approvals in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Slack (accounts `<team id>/<user id>`).
    Slack,
    /// Microsoft Teams (accounts: Entra ID object ids).
    Teams,
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Channel::Slack => "slack",
            Channel::Teams => "teams",
        })
    }
}

/// What the person who answered chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelVerdict {
    /// Approve the call.
    Approve,
    /// Reject it.
    Reject,
}

impl ChannelVerdict {
    /// The verdict of a button's action id (`aegis_approve`, `aegis_reject`).
    pub fn from_action(action: &str) -> Option<Self> {
        match action {
            "aegis_approve" => Some(Self::Approve),
            "aegis_reject" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// The issuer that attests roster identities (see [`crate::EngineBuilder::approval_channels`]).
pub(crate) struct ChannelIssuer {
    pub issuer: String,
    pub key: KeyPair,
}

impl Engine {
    /// Approves or rejects `approval_id` as the person behind `account` of `channel`, once the
    /// caller has verified the platform's request ([`SlackVerifier`], [`TeamsVerifier`]).
    ///
    /// The account must be on the roster of the bundle in force; it is attested as that
    /// identity with the roster's roles and scope `aegis.approve` only, in task
    /// `channel:<issuer>` (ending that task revokes every channel answer), and the approval runs
    /// through [`Engine::approve`] or [`Engine::reject`] with all their checks.
    pub fn resolve_from_channel(
        &self,
        channel: Channel,
        account: &str,
        approval_id: &str,
        verdict: ChannelVerdict,
        note: Option<&str>,
    ) -> Result<ApprovalResolution> {
        let chain = vec![self.attest_channel_account(channel, account)?];
        match verdict {
            ChannelVerdict::Approve => self.approve(approval_id, &chain, note),
            ChannelVerdict::Reject => self.reject(approval_id, &chain, note),
        }
    }

    /// The roster identity `account` is, as a one-link chain of the channel issuer.
    fn attest_channel_account(&self, channel: Channel, account: &str) -> Result<String> {
        let unknown =
            || Error::new(ErrorCode::ChannelUserUnknown, format!("{channel} account `{account}` is on no roster entry"));
        let issuer = self
            .channel_issuer
            .as_ref()
            .ok_or_else(|| Error::new(ErrorCode::ChannelUserUnknown, "this engine has no approval channels configured"))?;
        let bundle = self.bundle.load();
        let (identity, entry) = bundle.roster_identity(channel, account).ok_or_else(unknown)?;
        // A fresh key per answer: the person holds no key the engine knows, and a shared key
        // would make two people one key holder to the duty checks.
        let key = KeyPair::generate(self.random.as_ref())?;
        let now = self.clock.now_secs();
        let spec = CredentialSpec {
            agent_id: identity.to_owned(),
            agent_key: key.public_key().clone(),
            audience: self.verifier.audience().to_owned(),
            task_id: format!("channel:{}", issuer.issuer),
            intent: format!("answer approvals in {channel}"),
            scope: vec![APPROVE_ACTION.to_owned()],
            issued_at: now,
            expires_at: now.saturating_add(CLICK_CREDENTIAL_SECS),
            roles: entry.roles.clone(),
            jti: random_id(self.random.as_ref(), "chn_")?,
        };
        issue_root(&issuer.issuer, &issuer.key, spec)
    }
}

/// The approval's arguments as shown to a human, shortened to what a message can hold.
fn shown_args(pending: &PendingApproval) -> String {
    let mut args = serde_json::to_string_pretty(&pending.args).unwrap_or_default();
    if args.len() > 2500 {
        let cut = (0..=2500).rev().find(|&i| args.is_char_boundary(i)).unwrap_or(0);
        args.truncate(cut);
        args.push_str("\n…");
    }
    args
}

/// Who delegated to the requester, for display.
fn lineage(pending: &PendingApproval) -> String {
    if pending.lineage.is_empty() {
        "(root)".to_owned()
    } else {
        pending.lineage.join(" → ")
    }
}
