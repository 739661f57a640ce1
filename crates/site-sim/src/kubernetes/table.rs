//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which
//! `kubectl get` asks for: the columns the real server prints for each type.

use serde_json::{Value, json};

use super::resources::ResourceDef;
use super::store::meta_str;

/// Go's `duration.HumanDuration`, as the AGE column prints.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        let y = d / 365;
        if d % 365 == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{}d", d % 365)
        }
    } else {
        format!("{}y", d / 365)
    }
}

fn age(obj: &Value) -> String {
    let created = meta_str(obj, "creationTimestamp");
    match created.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn column(name: &str, ty: &str, format: &str, priority: i32, description: &str) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn quota_column(obj: &Value, limits: bool) -> String {
    let hard = obj.pointer("/status/hard").and_then(Value::as_object);
    let used = obj.pointer("/status/used").and_then(Value::as_object);
    let mut parts: Vec<String> = hard
        .map(|h| {
            h.iter()
                .filter(|(k, _)| k.starts_with("limits.") == limits)
                .map(|(k, v)| {
                    let u = used
                        .and_then(|u| u.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("0");
                    format!("{k}: {u}/{}", v.as_str().unwrap_or(""))
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts.join(", ")
}

fn subjects_of(obj: &Value, kind: &str) -> String {
    obj.get("subjects")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter(|x| x.get("kind").and_then(Value::as_str) == Some(kind))
                .map(|x| {
                    let name = x.get("name").and_then(Value::as_str).unwrap_or("");
                    match x.get("namespace").and_then(Value::as_str) {
                        Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                        _ => name.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Columns and cells of a type.
/// How a row's cells are made from an object.
type Cells = fn(&Value) -> Vec<Value>;

fn layout(def: &ResourceDef) -> (Vec<Value>, Cells) {
    let name = column(
        "Name",
        "string",
        "name",
        0,
        "Name must be unique within a namespace.",
    );
    let age_col = column(
        "Age",
        "string",
        "",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match def.plural {
        "namespaces" => (
            vec![
                name,
                column("Status", "string", "", 0, "The status of the namespace"),
                age_col,
            ],
            |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(
                        o.pointer("/status/phase")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                    json!(age(o)),
                ]
            },
        ),
        "projects" => (
            vec![
                name,
                column(
                    "Display Name",
                    "string",
                    "",
                    0,
                    "The user-facing name of this project",
                ),
                column("Status", "string", "", 0, "The status of this project"),
            ],
            |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(
                        o.pointer("/metadata/annotations/openshift.io~1display-name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                    json!(
                        o.pointer("/status/phase")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                ]
            },
        ),
        "resourcequotas" => (
            vec![
                name,
                age_col,
                column(
                    "Request",
                    "string",
                    "",
                    0,
                    "Request represents a minimum amount of cpu/memory that a container may consume.",
                ),
                column(
                    "Limit",
                    "string",
                    "",
                    0,
                    "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
                ),
            ],
            |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(age(o)),
                    json!(quota_column(o, false)),
                    json!(quota_column(o, true)),
                ]
            },
        ),
        "rolebindings" => (
            vec![
                name,
                column("Role", "string", "", 0, "Role of the binding"),
                age_col,
                column("Users", "string", "", 1, "Users in the binding"),
                column("Groups", "string", "", 1, "Groups in the binding"),
                column(
                    "ServiceAccounts",
                    "string",
                    "",
                    1,
                    "ServiceAccounts in the binding",
                ),
            ],
            |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(format!(
                        "{}/{}",
                        o.pointer("/roleRef/kind")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        o.pointer("/roleRef/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    )),
                    json!(age(o)),
                    json!(subjects_of(o, "User")),
                    json!(subjects_of(o, "Group")),
                    json!(subjects_of(o, "ServiceAccount")),
                ]
            },
        ),
        "clusterroles" => (
            vec![
                name,
                column(
                    "Created At",
                    "date",
                    "",
                    0,
                    "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.",
                ),
            ],
            |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(meta_str(o, "creationTimestamp")),
                ]
            },
        ),
        "leases" => (
            vec![
                name,
                column(
                    "Holder",
                    "string",
                    "",
                    0,
                    "holderIdentity contains the identity of the holder of a current lease.",
                ),
                age_col,
            ],
            |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(
                        o.pointer("/spec/holderIdentity")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                    json!(age(o)),
                ]
            },
        ),
        _ => (vec![name, age_col], |o| {
            vec![json!(meta_str(o, "name")), json!(age(o))]
        }),
    }
}

/// Whether the client asked for a Table (`as=Table` with group `meta.k8s.io`).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        let params: Vec<&str> = first.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

/// A Table of `objects` (full objects with kind/apiVersion), `include_object` being the
/// `includeObject` parameter (`None`, `Metadata` (default), `Object`).
pub fn table(
    def: &ResourceDef,
    objects: &[Value],
    list_meta: Value,
    include_object: &str,
) -> Value {
    let (columns, cells) = layout(def);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(o)});
            match include_object {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400), "3d");
        assert_eq!(human_duration(400 * 86400), "400d");
    }

    #[test]
    fn table_is_asked_for_by_kubectl_accept() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
