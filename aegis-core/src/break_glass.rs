//! Break-glass: a time-boxed emergency grant that lifts `@breakable` forbids, opened by two
//! distinct approvers with a reason, listed until closed with a post-incident review.

use serde::{Deserialize, Serialize};

use crate::audit::{break_glass_event, kind, Event};
use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::DELEGATE_SEPARATOR;
use crate::time::random_id;

/// The scope an approver of break-glass needs.
pub const BREAK_GLASS_SCOPE: &str = "aegis.break_glass";

/// A request to open a break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakGlassRequest {
    /// The agents it covers: their attested ids (a delegate's is `planner/finance-agent`).
    pub agents: Vec<String>,
    /// The tools it covers (`*` for all).
    pub tools: Vec<String>,
    /// The tasks it covers: a grant never reaches a chain of another task.
    pub tasks: Vec<String>,
    /// Why: required, recorded, shown in review.
    pub reason: String,
    /// At least two credential chains of distinct root identities holding `aegis.break_glass`.
    pub approvers: Vec<Vec<String>>,
    /// How long it lifts breakable forbids, in seconds.
    pub duration_secs: i64,
}

/// A time-boxed emergency grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassGrant {
    /// The grant id.
    pub id: String,
    /// The agents it covers.
    pub agents: Vec<String>,
    /// The tools it covers.
    pub tools: Vec<String>,
    /// The tasks it covers.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Why it was opened.
    pub reason: String,
    /// The two (or more) distinct approvers.
    pub approvers: Vec<String>,
    /// Opened at, seconds.
    pub opened_at: i64,
    /// Lifts forbids until this time, seconds.
    pub expires_at: i64,
    /// Closed at, seconds; open (listed) until then, even after it expires.
    #[serde(default)]
    pub closed_at: Option<i64>,
    /// The post-incident review that closed it.
    #[serde(default)]
    pub review_ref: Option<String>,
}

impl BreakGlassGrant {
    /// Whether it lifts breakable forbids for `agent` calling `tool` in `task` at `now`.
    pub fn covers(&self, agent: &str, tool: &str, task: &str, now: i64) -> bool {
        self.closed_at.is_none()
            && now < self.expires_at
            && self.agents.iter().any(|a| a == agent)
            && self.tasks.iter().any(|t| t == task)
            && self.tools.iter().any(|t| t == tool || t == "*")
    }
}

impl BreakGlassRequest {
    /// A request to lift breakable forbids for `agents` calling `tools`, for `duration_secs`,
    /// with a `reason` and the credential chains of its approvers.
    pub fn new(
        agents: Vec<String>,
        tools: Vec<String>,
        tasks: Vec<String>,
        reason: impl Into<String>,
        approvers: Vec<Vec<String>>,
        duration_secs: i64,
    ) -> Self {
        Self { agents, tools, tasks, reason: reason.into(), approvers, duration_secs }
    }
}

impl Engine {
    /// Opens a time-boxed break-glass grant: lifts forbids annotated `@breakable` for the named
    /// agents, tools and tasks. Needs a reason and two approvers that are distinct root
    /// identities (distinct ids and keys) holding `aegis.break_glass` exactly, neither covered by
    /// the grant nor above a covered agent in its delegation, with their own task not ended.
    pub fn break_glass(&self, request: &BreakGlassRequest) -> Result<BreakGlassGrant> {
        let refuse = |m: String| Err(Error::new(ErrorCode::BreakGlassRefused, m));
        if request.reason.trim().is_empty() {
            return refuse("break-glass needs a reason".into());
        }
        if request.agents.is_empty() || request.tools.is_empty() || request.tasks.is_empty() {
            return refuse("break-glass needs at least one agent, one tool and one task".into());
        }
        if request.duration_secs <= 0 || request.duration_secs > self.max_break_glass_secs {
            return refuse(format!("break-glass lasts between 1 and {} seconds", self.max_break_glass_secs));
        }
        let now = self.clock.now_secs();
        let mut approvers: Vec<String> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for chain in &request.approvers {
            let verified = self
                .verify_person(chain, BREAK_GLASS_SCOPE, now)
                .map_err(|e| Error::new(ErrorCode::BreakGlassRefused, format!("approver: [{}] {}", e.code(), e.message())))?;
            let id = verified.agent_id.as_str();
            let covers_itself = request.agents.iter().any(|a| a == id || a.starts_with(&format!("{id}{DELEGATE_SEPARATOR}")));
            if covers_itself {
                return refuse(format!("approver `{id}` may not open break-glass for itself or its own delegates"));
            }
            // Two approvers are two identities: a second name on the same key is the same holder.
            if approvers.iter().any(|a| a == id) || keys.contains(&verified.root_kid) {
                return refuse("break-glass needs two distinct approvers".into());
            }
            approvers.push(id.to_owned());
            keys.push(verified.root_kid.clone());
        }
        if approvers.len() < 2 {
            return refuse("break-glass needs two distinct approvers".into());
        }
        let grant = BreakGlassGrant {
            id: random_id(self.random.as_ref(), "bg_")?,
            agents: request.agents.clone(),
            tools: request.tools.clone(),
            tasks: request.tasks.clone(),
            reason: request.reason.clone(),
            approvers,
            opened_at: now,
            expires_at: now.saturating_add(request.duration_secs),
            closed_at: None,
            review_ref: None,
        };
        self.store.insert_grant(&grant)?;
        self.record(|| break_glass_event(kind::BREAK_GLASS_OPENED, &grant, self.clock.now_millis()))?;
        Ok(grant)
    }

    /// Break-glass grants not yet closed (expired ones included, until reviewed).
    pub fn open_break_glass(&self) -> Result<Vec<BreakGlassGrant>> {
        self.store.open_grants()
    }

    /// Closes a break-glass grant with the reference of its post-incident review (on an
    /// engine that requires two administrators, only through [`Engine::admin`]).
    pub fn close_break_glass(&self, id: &str, review_ref: &str) -> Result<()> {
        self.control.direct_change_allowed("closing break-glass")?;
        self.close_grant(id, review_ref)
    }

    pub(crate) fn close_grant(&self, id: &str, review_ref: &str) -> Result<()> {
        if review_ref.trim().is_empty() {
            return Err(Error::new(ErrorCode::BreakGlassRefused, "closing break-glass needs a review reference"));
        }
        if self.store.close_grant(id, review_ref, self.clock.now_secs())? {
            self.record(|| {
                Event::new(kind::BREAK_GLASS_CLOSED, self.clock.now_millis())
                    .with("break_glass_id", id)
                    .with("review_ref", review_ref)
            })
        } else {
            Err(Error::new(ErrorCode::BreakGlassRefused, format!("no open break-glass grant `{id}`")))
        }
    }
}
