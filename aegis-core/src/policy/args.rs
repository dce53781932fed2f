//! The tool's arguments: paths into them, and redaction (the `@sanitize` obligation).

use serde_json::Value as Json;

/// Text that replaces a redacted argument.
pub const REDACTED: &str = "[REDACTED]";

/// Looks up a dotted path in a JSON object.
pub(crate) fn lookup<'v>(value: &'v Json, path: &[String]) -> Option<&'v Json> {
    path.iter().try_fold(value, |v, key| v.as_object()?.get(key))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_touches_only_named_paths() {
        let mut args = json!({"card": {"number": "4242", "exp": "12/30"}, "amount": 5});
        let path = vec!["card".to_owned(), "number".to_owned()];
        let missing = vec!["nope".to_owned(), "x".to_owned()];
        redact(&mut args, &[&path, &missing]);
        assert_eq!(args, json!({"card": {"number": REDACTED, "exp": "12/30"}, "amount": 5}));
    }

}
