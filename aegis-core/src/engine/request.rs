//! What a caller asks the engine to decide.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// What a resource reference names: a Cedar entity type and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ResourceRef {
    /// The entity type, e.g. `Account` (namespaced if the bundle is).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// The entity id.
    pub id: String,
}

impl ResourceRef {
    /// A reference to `entity_type::"id"`.
    pub fn new(entity_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self { entity_type: entity_type.into(), id: id.into() }
    }
}

/// One tool call to decide on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthorizationRequest {
    /// The credential chain, root first, leaf (the caller) last.
    pub chain: Vec<String>,
    /// The tool, i.e. the Cedar action id.
    pub tool: String,
    /// The tool's arguments: a JSON object.
    #[serde(default = "empty_object")]
    pub args: Json,
    /// What the call targets; defaults to `<resource_type>::"<tool>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    /// A proof of possession by the leaf key, when the tool requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// An override token from an approval of exactly this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_token: Option<String>,
    /// The agent framework's id for this tool call (`gen_ai.tool.call.id`): recorded, never
    /// decided on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The host's W3C trace context (`traceparent` header value): the decision's span nests
    /// under it. Never decided on; an invalid value starts a new trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl AuthorizationRequest {
    /// A call of `tool` with `args` by the leaf of `chain` (root first).
    pub fn new(chain: Vec<String>, tool: impl Into<String>, args: Json) -> Self {
        Self {
            chain,
            tool: tool.into(),
            args,
            resource: None,
            proof: None,
            approval_token: None,
            tool_call_id: None,
            traceparent: None,
        }
    }

    /// The call targets `resource` instead of the tool's default resource.
    pub fn with_resource(mut self, resource: ResourceRef) -> Self {
        self.resource = Some(resource);
        self
    }

    /// The call carries a proof of possession by the leaf key.
    pub fn with_proof(mut self, proof: impl Into<String>) -> Self {
        self.proof = Some(proof.into());
        self
    }

    /// The call carries an override token from an approval of exactly this call.
    pub fn with_approval_token(mut self, token: impl Into<String>) -> Self {
        self.approval_token = Some(token.into());
        self
    }

    /// The call carries the agent framework's id for it (`gen_ai.tool.call.id`).
    pub fn with_tool_call_id(mut self, id: impl Into<String>) -> Self {
        self.tool_call_id = Some(id.into());
        self
    }

    /// The decision's span nests under the host's span, given as a W3C `traceparent`.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }
}

fn empty_object() -> Json {
    Json::Object(serde_json::Map::new())
}
