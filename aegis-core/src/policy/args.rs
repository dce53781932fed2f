//! The tool's arguments: paths into them, and redaction (the `@sanitize` obligation).

use serde_json::Value as Json;

/// Text that replaces a redacted argument.
pub const REDACTED: &str = "[REDACTED]";

/// Looks up a dotted path in a JSON object.
pub(crate) fn lookup<'v>(value: &'v Json, path: &[String]) -> Option<&'v Json> {
    path.iter().try_fold(value, |v, key| member(v.as_object()?, key))
}

/// The member `key` of `map`: found by comparing names in a small map (a tool's arguments are a
/// handful: hashing the name, with the map's seeded SipHash, costs more than the comparisons),
/// by the map's index otherwise.
pub(crate) fn member<'v>(map: &'v serde_json::Map<String, Json>, key: &str) -> Option<&'v Json> {
    const SMALL: usize = 8;
    match map.len() <= SMALL {
        true => map.iter().find_map(|(k, v)| (k == key).then_some(v)),
        false => map.get(key),
    }
}

/// Replaces the value at each path with the redaction marker; missing paths are ignored.
pub(crate) fn redact(args: &mut Json, paths: &[&[String]]) {
    for path in paths {
        let Some((last, parents)) = path.split_last() else { continue };
        let parent = parents.iter().try_fold(&mut *args, |v, key| v.as_object_mut()?.get_mut(key));
        if let Some(slot) = parent.and_then(|p| p.as_object_mut()).and_then(|m| m.get_mut(last)) {
            *slot = Json::String(REDACTED.into());
        }
    }
}

/// The type the schema declares for a tool's `context.args`, checked on every call: a bundle
/// whose forbid is written as a negative test (`unless { context.args.amount < 5000 }`) would
/// fail open if a caller could send the amount as a string, so a type mismatch denies
/// (`args_invalid`) before any policy runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgsType {
    /// A Cedar `Long`: a JSON integer.
    Long,
    /// A Cedar `String`.
    String,
    /// A Cedar `Bool`.
    Bool,
    /// An extension type such as `decimal` (a JSON number) or `ipaddr` (a string).
    Extension(std::string::String),
    /// A Cedar `Set`: a JSON array of the element type.
    Set(Box<ArgsType>),
    /// A Cedar record: declared attributes (required or not); others are refused unless
    /// `open`.
    Record { attributes: Vec<(std::string::String, ArgsType, bool)>, open: bool },
    /// An entity reference or a type this check does not model: not checked here.
    Unchecked,
}

impl ArgsType {
    /// The declared type of `context.args` for `action` in the schema's JSON form, or `None`
    /// when the schema declares none.
    pub(crate) fn of_action(schema: &Json, action: &str) -> Option<Self> {
        let namespaces = schema.as_object()?;
        // The action may be declared in any namespace of the schema.
        namespaces.values().find_map(|ns| {
            let context = ns.get("actions")?.get(action)?.get("appliesTo")?.get("context")?;
            let context = resolve(ns, context, 0)?;
            let args = context.get("attributes")?.get("args")?;
            Some(Self::from_json(ns, args, 0))
        })
    }

    fn from_json(ns: &Json, ty: &Json, depth: usize) -> Self {
        let Some(ty) = resolve(ns, ty, depth) else { return Self::Unchecked };
        let name = ty.get("name").and_then(Json::as_str).unwrap_or_default();
        match ty.get("type").and_then(Json::as_str).unwrap_or_default() {
            "Long" => Self::Long,
            "String" => Self::String,
            "Boolean" | "Bool" => Self::Bool,
            "Extension" => Self::Extension(name.to_owned()),
            "Set" => ty.get("element").map_or(Self::Unchecked, |e| Self::Set(Box::new(Self::from_json(ns, e, depth + 1)))),
            "Record" => Self::Record {
                attributes: ty
                    .get("attributes")
                    .and_then(Json::as_object)
                    .map(|attrs| {
                        attrs
                            .iter()
                            .map(|(k, v)| {
                                let required = v.get("required").and_then(Json::as_bool).unwrap_or(true);
                                (k.clone(), Self::from_json(ns, v, depth + 1), required)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                open: ty.get("additionalAttributes").and_then(Json::as_bool).unwrap_or(false),
            },
            _ => Self::Unchecked,
        }
    }

    /// Checks `value` (at `path`) against the type. Nothing is allocated unless it fails:
    /// this runs on every call.
    pub(crate) fn check(&self, value: &Json, path: &str) -> std::result::Result<(), std::string::String> {
        self.check_at(value).map_err(|(segments, why)| {
            let at: std::string::String = segments.iter().rev().map(std::string::String::as_str).collect();
            format!("`{path}{at}` {why}")
        })
    }

    /// The failing position's segments (innermost first) and what is wrong there.
    fn check_at(&self, value: &Json) -> std::result::Result<(), (Vec<std::string::String>, std::string::String)> {
        let wrong = |what: &str| Err((Vec::new(), format!("must be {what}")));
        let within = |segment: std::string::String| {
            move |(mut segments, why): (Vec<std::string::String>, std::string::String)| {
                segments.push(segment);
                (segments, why)
            }
        };
        match (self, value) {
            (Self::Unchecked, _) => Ok(()),
            (Self::Long, Json::Number(n)) if n.as_i64().is_some() => Ok(()),
            (Self::Long, _) => wrong("a whole number (Long)"),
            (Self::String, Json::String(_)) => Ok(()),
            (Self::String, _) => wrong("a string"),
            (Self::Bool, Json::Bool(_)) => Ok(()),
            (Self::Bool, _) => wrong("a boolean"),
            (Self::Extension(name), Json::Number(_)) if name == "decimal" => Ok(()),
            (Self::Extension(name), Json::String(_)) if name != "decimal" => Ok(()),
            (Self::Extension(name), _) => wrong(&format!("a `{name}`")),
            (Self::Set(element), Json::Array(items)) => {
                items.iter().enumerate().try_for_each(|(i, item)| element.check_at(item).map_err(|e| within(format!("[{i}]"))(e)))
            }
            (Self::Set(_), _) => wrong("an array (Set)"),
            (Self::Record { attributes, open }, Json::Object(map)) => {
                for (name, ty, required) in attributes {
                    match member(map, name).filter(|v| !v.is_null()) {
                        Some(v) => ty.check_at(v).map_err(|e| within(format!(".{name}"))(e))?,
                        None if *required => return Err((vec![format!(".{name}")], "is required".into())),
                        None => {}
                    }
                }
                let declared = |k: &std::string::String| attributes.iter().any(|(n, _, _)| n == k);
                // Undeclared names are refused even when null: the tool would receive them.
                match map.keys().find(|k| !declared(k)) {
                    Some(k) if !open => Err((vec![format!(".{k}")], "is not an argument the schema declares".into())),
                    _ => Ok(()),
                }
            }
            (Self::Record { .. }, _) => wrong("an object (record)"),
        }
    }
}

/// Follows common-type references (`{"type": "EntityOrCommon", "name": "TaskDuties"}`) to the
/// type they name; primitive names resolve to themselves.
fn resolve<'s>(ns: &'s Json, ty: &'s Json, depth: usize) -> Option<std::borrow::Cow<'s, Json>> {
    if depth > 32 {
        return None;
    }
    let kind = ty.get("type").and_then(Json::as_str)?;
    if kind != "EntityOrCommon" && ns.get("commonTypes").is_none_or(|c| c.get(kind).is_none()) {
        return Some(std::borrow::Cow::Borrowed(ty));
    }
    let name = if kind == "EntityOrCommon" { ty.get("name").and_then(Json::as_str)? } else { kind };
    let local = name.rsplit("::").next().unwrap_or(name);
    match ns.get("commonTypes").and_then(|c| c.get(local)) {
        Some(common) => resolve(ns, common, depth + 1),
        None => Some(std::borrow::Cow::Owned(match local {
            "Long" | "String" | "Bool" | "Boolean" => serde_json::json!({"type": local}),
            "decimal" | "ipaddr" | "datetime" | "duration" => serde_json::json!({"type": "Extension", "name": local}),
            _ => serde_json::json!({"type": "Entity", "name": name}),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Small maps are searched by name, large ones by their index: both find what `get` finds.
    #[test]
    fn a_member_is_what_get_finds_in_maps_of_every_size() {
        for size in [0usize, 1, 7, 8, 9, 40] {
            let map: serde_json::Map<String, Json> = (0..size).map(|i| (format!("k{i}"), json!(i))).collect();
            for key in (0..size + 2).map(|i| format!("k{i}")).chain(["".to_owned(), "k".to_owned()]) {
                assert_eq!(member(&map, &key), map.get(&key), "size {size}, key {key}");
            }
        }
        let args = json!({"a": {"b": {"c": 7}}});
        assert_eq!(lookup(&args, &["a".into(), "b".into(), "c".into()]), Some(&json!(7)));
        assert_eq!(lookup(&args, &["a".into(), "x".into()]), None);
    }

    #[test]
    fn argument_types_are_checked_against_the_schema() {
        let schema = json!({"": {"commonTypes": {"Money": {"type": "Record", "attributes": {
            "amount": {"type": "EntityOrCommon", "name": "Long"},
            "fee": {"type": "EntityOrCommon", "name": "decimal", "required": false}}}},
            "actions": {"pay": {"appliesTo": {"context": {"type": "Record", "attributes": {
                "args": {"type": "Record", "attributes": {
                    "money": {"type": "EntityOrCommon", "name": "Money"},
                    "tags": {"type": "Set", "element": {"type": "EntityOrCommon", "name": "String"}},
                    "memo": {"type": "EntityOrCommon", "name": "String", "required": false}}}}}}}}}});
        let ty = ArgsType::of_action(&schema, "pay").unwrap();
        let ok = json!({"money": {"amount": 5, "fee": 1.25}, "tags": ["a"], "memo": null});
        assert_eq!(ty.check(&ok, "args"), Ok(()));
        for (bad, why) in [
            (json!({"money": {"amount": "5"}, "tags": []}), "`args.money.amount` must be a whole number (Long)"),
            (json!({"money": {"amount": 5.5}, "tags": []}), "`args.money.amount` must be a whole number (Long)"),
            (json!({"money": {}, "tags": []}), "`args.money.amount` is required"),
            (json!({"money": {"amount": 5}, "tags": [1]}), "`args.tags[0]` must be a string"),
            (json!({"money": {"amount": 5}, "tags": [], "extra": true}), "`args.extra` is not an argument the schema declares"),
            (json!({"money": {"amount": 5}, "tags": [], "extra": null}), "`args.extra` is not an argument the schema declares"),
            (json!({"money": {"amount": 5, "fee": "1"}, "tags": []}), "`args.money.fee` must be a `decimal`"),
        ] {
            assert_eq!(ty.check(&bad, "args"), Err(why.to_owned()), "{bad}");
        }
        assert!(ArgsType::of_action(&schema, "other").is_none());
    }

    #[test]
    fn redaction_touches_only_named_paths() {
        let mut args = json!({"card": {"number": "4242", "exp": "12/30"}, "amount": 5});
        let path = vec!["card".to_owned(), "number".to_owned()];
        let missing = vec!["nope".to_owned(), "x".to_owned()];
        redact(&mut args, &[&path, &missing]);
        assert_eq!(args, json!({"card": {"number": REDACTED, "exp": "12/30"}, "amount": 5}));
    }
}
