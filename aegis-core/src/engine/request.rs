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

    /// Clears what belongs to one call, keeping the chain and the tool, for a binding that fills
    /// the same request for the next call with this chain (its tokens are then not copied per
    /// call). Small arguments (up to 4 KiB, counting 16 bytes a value) keep their shape, every
    /// string emptied and every number and boolean zeroed, so that arguments of the same shape
    /// are read into them without allocating; larger ones go. The proof, the override token,
    /// the resource, the trace context and the tool call id go.
    pub fn clear_call(&mut self) {
        let mut budget = KEEP_SHAPE_BYTES;
        if !scrub_within(&mut self.args, &mut budget) {
            self.args = Json::Null;
        }
        self.resource = None;
        self.proof = None;
        self.approval_token = None;
        self.tool_call_id = None;
        self.traceparent = None;
    }

    /// Sets what one call names beside its arguments, for a binding that reuses this request
    /// call after call (see [`AuthorizationRequest::clear_call`]): the tool, written into the
    /// request's own string (no allocation for a tool like the last), and the rarely set parts.
    pub fn set_call(
        &mut self,
        tool: &str,
        resource: Option<ResourceRef>,
        proof: Option<String>,
        approval_token: Option<String>,
        traceparent: Option<String>,
        tool_call_id: Option<String>,
    ) {
        self.tool.clear();
        self.tool.push_str(tool);
        self.resource = resource;
        self.proof = proof;
        self.approval_token = approval_token;
        self.traceparent = traceparent;
        self.tool_call_id = tool_call_id;
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

/// The most memory of one call's arguments [`AuthorizationRequest::clear_call`] keeps.
const KEEP_SHAPE_BYTES: usize = 4096;

/// Empties every string of `value` and zeroes its numbers and booleans, keeping its shape, in
/// one pass with the check that it takes at most `budget` bytes (16 a value, plus its strings'
/// capacity), the budget lowered by what it takes. `false` at the first value past the budget
/// (`value` then partly scrubbed: the caller drops it).
fn scrub_within(value: &mut Json, budget: &mut usize) -> bool {
    let cost = match value {
        Json::String(s) => 16 + s.capacity(),
        Json::Object(map) => 16 + map.keys().map(|k| 16 + k.capacity()).sum::<usize>(),
        _ => 16,
    };
    let Some(left) = budget.checked_sub(cost) else { return false };
    *budget = left;
    match value {
        Json::Null => true,
        Json::Bool(b) => {
            *b = false;
            true
        }
        Json::Number(n) => {
            *n = serde_json::Number::from(0u8);
            true
        }
        Json::String(s) => {
            s.clear();
            true
        }
        Json::Array(items) => items.iter_mut().all(|v| scrub_within(v, budget)),
        Json::Object(map) => map.values_mut().all(|v| scrub_within(v, budget)),
    }
}

#[cfg(test)]
mod clear_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cleared_call_keeps_the_shape_of_its_arguments_and_nothing_else() {
        let mut r =
            AuthorizationRequest::new(vec!["t".into()], "pay", json!({"a": "secret", "b": [1, true, "x"], "c": {"d": 2.5}}))
                .with_proof("proof")
                .with_approval_token("token")
                .with_resource(ResourceRef::new("Account", "1"));
        r.traceparent = Some("00-x".into());
        r.tool_call_id = Some("call-1".into());
        r.clear_call();
        assert_eq!(r.args, json!({"a": "", "b": [0, false, ""], "c": {"d": 0}}));
        assert_eq!((r.chain.len(), r.tool.as_str()), (1, "pay"));
        assert!(r.proof.is_none() && r.approval_token.is_none() && r.resource.is_none());
        assert!(r.traceparent.is_none() && r.tool_call_id.is_none());
        // Large arguments go.
        r.args = json!({"memo": "x".repeat(5000)});
        r.clear_call();
        assert_eq!(r.args, Json::Null);
        r.args = Json::Array(vec![json!(1); 300]);
        r.clear_call();
        assert_eq!(r.args, Json::Null);
    }
}
