//! A minimal OpenAPI v3 (`/openapi/v3` and one document per group-version): the paths and
//! operations of the served types with their query parameters and
//! `x-kubernetes-group-version-kind`, which is what `kubectl` reads to learn that the server
//! validates fields itself (`fieldValidation`). No component schemas: `kubectl explain` and
//! client-side schema validation get nothing from this double.

use serde_json::{Map, Value, json};

use super::resources::{self, ResourceDef};

fn gv_path(def: &ResourceDef) -> String {
    def.prefix().trim_start_matches('/').to_string()
}

fn hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}{h:016X}")
}

/// `GET /openapi/v3`.
pub fn root(openshift: bool) -> Value {
    let mut paths = Map::new();
    for def in resources::served(openshift) {
        let p = gv_path(def);
        paths.entry(p.clone()).or_insert_with(
            || json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&p))}),
        );
    }
    json!({"paths": paths})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(def: &ResourceDef, action: &str, verb_word: &str, scope: &str) -> Value {
    let mut params = vec![query_param(
        "pretty",
        "If 'true', then the output is pretty printed.",
    )];
    if matches!(action, "post" | "put" | "patch") {
        params.push(query_param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ));
        params.push(query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."));
        params.push(query_param(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
        ));
    }
    let group_tag = if def.group.is_empty() {
        "core".to_string()
    } else {
        def.group.split('.').next().unwrap_or("").to_string()
    };
    let mut op = json!({
        "tags": [format!("{group_tag}_{}", def.version)],
        "description": format!("{verb_word} {} {}", scope, def.kind),
        "operationId": format!("{action}{}{}", def.kind, if scope.is_empty() { "" } else { "Namespaced" }),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": def.group, "version": def.version, "kind": def.kind},
    });
    if action == "patch" {
        op["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        }, "required": true});
    }
    op
}

/// The document of one group-version (`api/v1`, `apis/<group>/<version>`).
pub fn document(openshift: bool, gv: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = resources::served(openshift)
        .filter(|d| gv_path(d) == gv)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for def in defs {
        let scope = if def.namespaced { "namespaced" } else { "" };
        let base = if def.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", def.prefix(), def.plural)
        } else {
            format!("{}/{}", def.prefix(), def.plural)
        };
        let mut coll = Map::new();
        if def.supports("list") {
            coll.insert(
                "get".into(),
                operation(def, "list", "list or watch objects of kind", scope),
            );
        }
        if def.supports("create") {
            coll.insert("post".into(), operation(def, "post", "create a", scope));
        }
        if def.supports("deletecollection") {
            coll.insert(
                "delete".into(),
                operation(def, "deletecollection", "delete collection of", scope),
            );
        }
        paths.insert(base.clone(), Value::Object(coll));
        if def.supports("get") {
            let mut item = Map::new();
            item.insert(
                "get".into(),
                operation(def, "get", "read the specified", scope),
            );
            for (method, action, word) in [
                ("put", "put", "replace the specified"),
                ("patch", "patch", "partially update the specified"),
                ("delete", "delete", "delete a"),
            ] {
                if def.supports(if action == "put" { "update" } else { action }) {
                    item.insert(method.into(), operation(def, action, word, scope));
                }
            }
            paths.insert(format!("{base}/{{name}}"), Value::Object(item));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": resources::version()["gitVersion"].clone()},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
