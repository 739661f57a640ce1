//! PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch (for the types served:
//! the list merge keys of their Go types, and the `$patch`, `$retainKeys`,
//! `$setElementOrder` and `$deleteFromPrimitiveList` directives) and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// How a list field merges under a strategic merge patch.
enum ListStrategy {
    /// Replaced whole (no `patchStrategy` on the Go field).
    Replace,
    /// Objects merged by this key.
    MergeKey(&'static str),
    /// Primitive values: union.
    Primitive,
}

fn list_strategy(path: &str) -> ListStrategy {
    match path {
        "metadata.ownerReferences" => ListStrategy::MergeKey("uid"),
        "metadata.finalizers" => ListStrategy::Primitive,
        "status.conditions" => ListStrategy::MergeKey("type"),
        _ => ListStrategy::Replace,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Applies a strategic merge patch to `target` (the object at `path`).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    smp(target, patch, "")
}

fn smp(target: &mut Value, patch: &Value, path: &str) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut rest = p.clone();
            rest.remove("$patch");
            *target = Value::Object(rest);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other}")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone: Vec<&Value> = v.as_array().map(|a| a.iter().collect()).unwrap_or_default();
            if let Some(Value::Array(list)) = t.get_mut(field) {
                list.retain(|x| !gone.contains(&x));
            }
            continue;
        }
        let child = join(path, k);
        if v.is_null() || v.get("$patch").and_then(Value::as_str) == Some("delete") {
            t.remove(k);
            continue;
        }
        match (v, list_strategy(&child)) {
            (Value::Array(items), ListStrategy::MergeKey(key)) => {
                let existing = t.entry(k.clone()).or_insert(Value::Array(vec![]));
                if !existing.is_array() {
                    *existing = Value::Array(vec![]);
                }
                if let Value::Array(list) = existing {
                    for item in items {
                        let id = item.get(key).cloned();
                        let pos = list
                            .iter()
                            .position(|x| id.is_some() && x.get(key) == id.as_ref());
                        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                            if let Some(i) = pos {
                                list.remove(i);
                            }
                        } else if let Some(i) = pos {
                            smp(&mut list[i], item, &child)?;
                        } else {
                            let mut fresh = Value::Null;
                            smp(&mut fresh, item, &child)?;
                            list.push(fresh);
                        }
                    }
                }
            }
            (Value::Array(items), ListStrategy::Primitive) => {
                let existing = t.entry(k.clone()).or_insert(Value::Array(vec![]));
                if let Value::Array(list) = existing {
                    for item in items {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                } else {
                    *existing = v.clone();
                }
            }
            (Value::Object(_), _) => {
                smp(t.entry(k.clone()).or_insert(Value::Null), v, &child)?;
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(ptr: &str) -> Result<(String, String), String> {
    if ptr.is_empty() {
        return Err("the root of the document cannot be patched".into());
    }
    let (parent, last) = ptr
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid JSON pointer {ptr:?}"))?;
    Ok((parent.to_string(), unescape(last)))
}

fn add(doc: &mut Value, ptr: &str, value: Value) -> Result<(), String> {
    let (parent, last) = split_pointer(ptr)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("add operation does not apply: doc is missing path: {ptr:?}"))?;
    match target {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let idx = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| {
                        format!("add operation does not apply: index out of range: {ptr:?}")
                    })?
            };
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path: {ptr:?}"
        )),
    }
}

fn remove(doc: &mut Value, ptr: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(ptr)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {ptr:?}");
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// RFC 6902.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be a list of operations")?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("operation is missing path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or(format!("operation {kind} is missing value"))
        };
        match kind {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path).map_err(|_| {
                    format!("replace operation does not apply: doc is missing key: {path}")
                })?;
                add(doc, path, value()?)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("operation is missing from")?;
                let v = if kind == "move" {
                    remove(doc, from)?
                } else {
                    doc.pointer(from).cloned().ok_or(format!(
                        "copy operation does not apply: doc is missing from path: {from}"
                    ))?
                };
                add(doc, path, v)?;
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes() {
        let mut t = json!({"spec": {"hard": {"cpu": "1", "pods": "2"}}, "a": [1]});
        merge_patch(
            &mut t,
            &json!({"spec": {"hard": {"cpu": "4", "pods": null}}, "a": [2]}),
        );
        assert_eq!(t, json!({"spec": {"hard": {"cpu": "4"}}, "a": [2]}));
    }

    #[test]
    fn strategic_patch_directives() {
        let mut t = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
                           "spec": {"hard": {"cpu": "1", "pods": "2"}},
                           "subjects": [{"kind": "User", "name": "a"}]});
        strategic_merge_patch(
            &mut t,
            &json!({
                "metadata": {"finalizers": ["b"], "labels": {"$patch": "replace", "z": "3"}},
                "spec": {"hard": {"pods": null, "$retainKeys": ["cpu"]}},
                "subjects": [{"kind": "User", "name": "b"}],
                "$setElementOrder/subjects": [{"name": "b"}]
            }),
        )
        .expect("test value");
        assert_eq!(
            t,
            json!({"metadata": {"finalizers": ["a", "b"], "labels": {"z": "3"}},
                             "spec": {"hard": {"cpu": "1"}},
                             "subjects": [{"kind": "User", "name": "b"}]})
        );
        strategic_merge_patch(&mut t, &json!({"$deleteFromPrimitiveList/metadata": [], "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})).expect("test value");
        assert_eq!(t["metadata"]["finalizers"], json!(["b"]));
        assert!(strategic_merge_patch(&mut t, &json!({"$patch": "bogus"})).is_err());
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"spec": {"hard": {"cpu": "1"}}, "l": [1, 2]});
        json_patch(
            &mut d,
            &json!([
                {"op": "replace", "path": "/spec/hard/cpu", "value": "2"},
                {"op": "add", "path": "/spec/hard/pods", "value": "3"},
                {"op": "add", "path": "/l/-", "value": 3},
                {"op": "remove", "path": "/l/0"},
                {"op": "test", "path": "/l/0", "value": 2},
                {"op": "copy", "from": "/spec/hard/cpu", "path": "/spec/hard/x~1y"}
            ]),
        )
        .expect("test value");
        assert_eq!(
            d,
            json!({"spec": {"hard": {"cpu": "2", "pods": "3", "x/y": "2"}}, "l": [2, 3]})
        );
        assert!(json_patch(&mut d, &json!([{"op": "test", "path": "/l/0", "value": 9}])).is_err());
        assert!(json_patch(&mut d, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
