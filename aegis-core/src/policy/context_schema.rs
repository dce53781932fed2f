//! The schema's common context: every action's `context` gets the attributes the engine fills
//! in (docs/CONTEXT.md) unless the schema declares them itself, so a bundle's schema declares
//! only each tool's `args` and never repeats the rest per action.

use serde_json::{json, Map, Value as Json};

use super::manifest::Manifest;
use crate::approval::APPROVE_ACTION;

fn string() -> Json {
    json!({"type": "String"})
}

fn strings() -> Json {
    json!({"type": "Set", "element": {"type": "String"}})
}

/// The attributes the engine fills in for `action`, in the schema's JSON form.
fn aegis_attributes(action: &str, manifest: &Manifest) -> Vec<(&'static str, Json)> {
    let predicates: Map<String, Json> = manifest
        .predicates
        .iter()
        .filter(|(_, p)| p.tools.as_ref().is_none_or(|tools| tools.iter().any(|t| t == action)))
        .map(|(name, _)| (name.clone(), json!({"type": "Boolean"})))
        .collect();
    let mut attributes = vec![
        ("agent_id", string()),
        ("parent_agent_id", json!({"type": "String", "required": false})),
        ("initiator", string()),
        ("lineage", strings()),
        ("depth", json!({"type": "Long"})),
        ("task_id", string()),
        ("intent", string()),
        ("now", json!({"type": "Long"})),
        ("predicates", json!({"type": "Record", "attributes": predicates})),
        (
            "task",
            json!({"type": "Record", "attributes": {
                "duties_by_agent": strings(), "duties_by_lineage": strings(), "performed": strings(), "actors": strings(),
            }}),
        ),
        ("break_glass", json!({"type": "Boolean"})),
    ];
    if !manifest.temporal.is_empty() && action != APPROVE_ACTION {
        let facts: Map<String, Json> = manifest
            .temporal
            .iter()
            .map(|(name, spec)| {
                let ty = match spec {
                    super::manifest::TemporalSpec::Formerly { .. } => "Boolean",
                    _ => "Long",
                };
                (name.clone(), json!({"type": ty}))
            })
            .collect();
        attributes.push(("temporal", json!({"type": "Record", "attributes": facts})));
    }
    if action == APPROVE_ACTION {
        attributes.push((
            "approval",
            json!({"type": "Record", "attributes": {
                "approval_id": string(), "tool": string(), "requester": string(), "initiator": string(),
                "task_id": string(), "roles": strings(), "policy_ids": strings(),
            }}),
        ));
    }
    attributes
}

/// Sets the engine's attributes in every action's context in `schema` (JSON form), replacing
/// any declaration of them; the schema's own attributes (`args`, ...) are kept. A context given
/// as a named common type is left as the author wrote it.
pub(crate) fn add_common_context(schema: &mut Json, manifest: &Manifest) {
    let Some(namespaces) = schema.as_object_mut() else { return };
    for namespace in namespaces.values_mut() {
        let Some(actions) = namespace.get_mut("actions").and_then(Json::as_object_mut) else { continue };
        for (name, action) in actions.iter_mut() {
            let Some(applies) = action.get_mut("appliesTo").and_then(Json::as_object_mut) else { continue };
            let context = applies.entry("context").or_insert_with(|| json!({"type": "Record", "attributes": {}}));
            if context.get("type").and_then(Json::as_str) != Some("Record") {
                continue;
            }
            let Some(declared) = context.as_object_mut().map(|c| c.entry("attributes").or_insert_with(|| json!({}))) else {
                continue;
            };
            let Some(declared) = declared.as_object_mut() else { continue };
            // The engine's types win over a declaration: a policy written against another
            // type (`context.depth != "0"`) must fail validation, not hold at run time.
            for (attribute, ty) in aegis_attributes(name, manifest) {
                declared.insert(attribute.to_owned(), ty);
            }
        }
    }
}

/// The schema of `sources` as the engine validates against it: the author's declarations plus
/// the common context, in Cedar schema syntax (what `aegis policy compile` prints).
pub fn schema_with_common_context(sources: &super::BundleSources) -> crate::error::Result<String> {
    use crate::error::{Error, ErrorCode};
    let bad = |e: &dyn std::fmt::Display| Error::new(ErrorCode::InvalidBundle, format!("`{}`: {e}", sources.schema_file));
    let manifest: Manifest = serde_norway::from_str(&sources.manifest)
        .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`manifest.yaml`: {e}")))?;
    let (fragment, _) = cedar_policy::SchemaFragment::from_cedarschema_str(&sources.schema).map_err(|e| bad(&e))?;
    let mut json = fragment.to_json_value().map_err(|e| bad(&e))?;
    add_common_context(&mut json, &manifest);
    let full = cedar_policy::SchemaFragment::from_json_value(json).map_err(|e| bad(&e))?;
    full.to_cedarschema().map_err(|e| bad(&e))
}
