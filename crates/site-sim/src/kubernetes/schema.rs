//! What the API server does to a written object before storing it: decoding against the Go
//! type (unknown fields dropped, or refused under `fieldValidation=Strict`; wrong types
//! refused), defaulting, canonical quantities, and validation (422 `Invalid` with causes).

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::quantity::{PARSE_ERROR, Quantity};
use super::resources::{self, ResourceDef};
use super::status::{Cause, KubeError, KubeResult};

fn meta() -> Value {
    json!({
        "name": "s", "generateName": "s", "namespace": "s", "selfLink": "s", "uid": "s",
        "resourceVersion": "s", "generation": "i", "creationTimestamp": "s",
        "deletionTimestamp": "s", "deletionGracePeriodSeconds": "i", "labels": "smap",
        "annotations": "smap", "ownerReferences": "any", "finalizers": "any", "managedFields": "any",
    })
}

fn schema_of(def: &ResourceDef) -> &'static Value {
    static SCHEMAS: OnceLock<Vec<(&'static str, Value)>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        let base = |extra: Value| {
            let mut v = json!({"apiVersion": "s", "kind": "s", "metadata": meta()});
            if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
                m.extend(e);
            }
            v
        };
        vec![
            ("namespaces", base(json!({"spec": {"finalizers": "any"}, "status": {"phase": "s", "conditions": "any"}}))),
            ("projects", base(json!({"spec": {"finalizers": "any"}, "status": {"phase": "s", "conditions": "any"}}))),
            ("projectrequests", base(json!({"displayName": "s", "description": "s"}))),
            ("resourcequotas", base(json!({"spec": {"hard": "qmap", "scopes": "any", "scopeSelector": "any"}, "status": {"hard": "qmap", "used": "qmap"}}))),
            ("rolebindings", base(json!({"roleRef": {"apiGroup": "s", "kind": "s", "name": "s"}, "subjects": [{"apiGroup": "s", "kind": "s", "name": "s", "namespace": "s"}]}))),
            ("clusterroles", base(json!({"rules": "any", "aggregationRule": "any"}))),
            ("leases", base(json!({"spec": {"holderIdentity": "s", "leaseDurationSeconds": "i", "acquireTime": "s", "renewTime": "s", "leaseTransitions": "i", "strategy": "s", "preferredHolder": "s"}}))),
            // Workloads: the pod template is kept as written (not pruned field by field).
            ("configmaps", base(json!({"data": "smap", "binaryData": "smap", "immutable": "b"}))),
            ("secrets", base(json!({"data": "smap", "stringData": "smap", "type": "s", "immutable": "b"}))),
            ("deployments", base(json!({"spec": {"replicas": "i", "selector": "any", "template": "any", "strategy": "any", "minReadySeconds": "i", "revisionHistoryLimit": "i", "paused": "b", "progressDeadlineSeconds": "i"}, "status": "any"}))),
            ("jobs", base(json!({"spec": {"parallelism": "i", "completions": "i", "activeDeadlineSeconds": "i", "podFailurePolicy": "any", "successPolicy": "any", "backoffLimit": "i", "backoffLimitPerIndex": "i", "maxFailedIndexes": "i", "selector": "any", "manualSelector": "b", "template": "any", "ttlSecondsAfterFinished": "i", "completionMode": "s", "suspend": "b", "podReplacementPolicy": "s", "managedBy": "s"}, "status": "any"}))),
            ("cronjobs", base(json!({"spec": {"schedule": "s", "timeZone": "s", "startingDeadlineSeconds": "i", "concurrencyPolicy": "s", "suspend": "b", "jobTemplate": {"metadata": "any", "spec": "any"}, "successfulJobsHistoryLimit": "i", "failedJobsHistoryLimit": "i"}, "status": "any"}))),
        ]
    });
    all.iter()
        .find(|(p, _)| *p == def.plural)
        .map(|(_, s)| s)
        .unwrap_or_else(|| &all[0].1)
}

fn type_error(def: &ResourceDef, path: &str, got: &Value, want: &str) -> KubeError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    KubeError::bad_request(format!(
        "{kind} in version \"{v}\" cannot be handled as a {kind}: json: cannot unmarshal {got} into Go struct field {path} of type {want}",
        kind = def.kind,
        v = def.version,
    ))
}

fn prune(
    def: &ResourceDef,
    v: &mut Value,
    schema: &Value,
    path: &str,
    unknown: &mut Vec<String>,
) -> KubeResult<()> {
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match schema {
        Value::String(t) => match (t.as_str(), &*v) {
            (_, Value::Null) | ("any", _) => Ok(()),
            ("s", Value::String(_)) => Ok(()),
            ("b", Value::Bool(_)) => Ok(()),
            ("b", other) => Err(type_error(def, path, other, "bool")),
            ("i", Value::Number(n)) if n.is_i64() => Ok(()),
            ("smap", Value::Object(m)) => match m.iter().find(|(_, x)| !x.is_string()) {
                Some((k, x)) => Err(type_error(def, &child(k), x, "string")),
                None => Ok(()),
            },
            ("qmap", Value::Object(m)) => {
                for (_, x) in m {
                    Quantity::from_json(x).map_err(|e| {
                        KubeError::bad_request(format!(
                            "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
                            kind = def.kind,
                            v = def.version
                        ))
                    })?;
                }
                Ok(())
            }
            ("s", other) => Err(type_error(def, path, other, "string")),
            ("i", other) => Err(type_error(def, path, other, "int32")),
            (_, other) => Err(type_error(def, path, other, "map[string]string")),
        },
        Value::Array(items) => match v {
            Value::Null => Ok(()),
            Value::Array(list) => {
                for (i, x) in list.iter_mut().enumerate() {
                    prune(def, x, &items[0], &format!("{path}[{i}]"), unknown)?;
                }
                Ok(())
            }
            other => Err(type_error(def, path, other, "[]")),
        },
        Value::Object(fields) => match v {
            Value::Null => Ok(()),
            Value::Object(m) => {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    match fields.get(&k) {
                        Some(s) => {
                            if let Some(x) = m.get_mut(&k) {
                                prune(def, x, s, &child(&k), unknown)?;
                            }
                        }
                        None => {
                            unknown.push(child(&k));
                            m.remove(&k);
                        }
                    }
                }
                Ok(())
            }
            other => Err(type_error(def, path, other, "struct")),
        },
        _ => Ok(()),
    }
}

/// Decodes a written object: drops unknown fields (their paths are returned, for the
/// `Warning` header) or refuses them when `strict`; refuses wrong JSON types.
pub fn decode(
    def: &ResourceDef,
    content_type: &str,
    body: &[u8],
    strict: bool,
) -> KubeResult<(Value, Vec<String>)> {
    let mut v: Value = match content_type {
        "" | "application/json" => serde_json::from_slice(body).map_err(|e| {
            KubeError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        super::protobuf::CONTENT_TYPE
            if matches!(def.kind, "Namespace" | "ResourceQuota" | "RoleBinding") =>
        {
            super::protobuf::decode(body, def.kind, &def.api_version()).map_err(|e| {
                KubeError::bad_request(format!(
                    "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
                    kind = def.kind,
                    v = def.version
                ))
            })?
        }
        other => {
            return Err(KubeError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf (got {other:?})"
                ),
            ));
        }
    };
    if !v.is_object() {
        return Err(KubeError::bad_request(format!(
            "couldn't get version/kind; json parse error: expected an object, got {}",
            if v.is_array() { "an array" } else { "a scalar" }
        )));
    }
    check_kind(def, &v)?;
    let mut unknown = Vec::new();
    prune(def, &mut v, schema_of(def), "", &mut unknown)?;
    if strict && !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|u| format!("unknown field {}", json!(u)))
            .collect();
        return Err(KubeError::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    Ok((v, unknown))
}

/// Prunes an object produced by a patch (the patch may add fields of any name).
pub fn prune_patched(def: &ResourceDef, v: &mut Value, strict: bool) -> KubeResult<Vec<String>> {
    let mut unknown = Vec::new();
    prune(def, v, schema_of(def), "", &mut unknown)?;
    if strict && !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|u| format!("unknown field {}", json!(u)))
            .collect();
        return Err(KubeError::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    Ok(unknown)
}

/// `kind`/`apiVersion` in a body, when given, must be the URL's.
fn check_kind(def: &ResourceDef, v: &Value) -> KubeResult<()> {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if !kind.is_empty() && kind != def.kind {
        return Err(KubeError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): object of kind {kind:?} ({kind} in version {api_version:?} cannot be handled as a {})",
            def.kind, def.kind
        )));
    }
    if !api_version.is_empty() && api_version != def.api_version() {
        return Err(KubeError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            def.api_version()
        )));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Why `name` is not a valid name of this type (the real rule of each type).
pub fn name_errors(def: &ResourceDef, name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    match def.plural {
        "namespaces" | "projects" | "projectrequests" => {
            if name.len() > 63 {
                errs.push("must be no more than 63 characters".to_string());
            }
            if !is_dns_label(name) {
                errs.push(LABEL_MSG.to_string());
            }
        }
        "rolebindings" | "clusterroles" => {
            if name == "." || name == ".." {
                errs.push(format!("may not be '{name}'"));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    errs.push(format!("may not contain '{bad}'"));
                }
            }
        }
        _ => {
            if name.len() > 253 {
                errs.push("must be no more than 253 characters".to_string());
            }
            if !name.split('.').all(is_dns_label) {
                errs.push(SUBDOMAIN_MSG.to_string());
            }
        }
    }
    errs
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Defaulting of the versioned type, then canonical quantities.
pub fn default_and_canonicalize(def: &ResourceDef, obj: &mut Value) {
    use base64::Engine;
    let mut set_default = |ptr: &str, value: Value| {
        let (parent, key) = ptr.rsplit_once('/').unwrap_or(("", ptr));
        if let Some(Value::Object(m)) = obj.pointer_mut(parent) {
            m.entry(key.to_owned()).or_insert(value);
        }
    };
    match def.plural {
        "secrets" => {
            set_default("/type", json!("Opaque"));
            // stringData is write-only: merged into data (base64), as the API server does.
            if let Some(Value::Object(plain)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                let data = obj
                    .as_object_mut()
                    .map(|m| m.entry("data").or_insert_with(|| json!({})));
                if let Some(Value::Object(data)) = data {
                    for (k, v) in plain {
                        let text = v.as_str().unwrap_or_default();
                        data.insert(
                            k,
                            json!(base64::engine::general_purpose::STANDARD.encode(text)),
                        );
                    }
                }
            }
        }
        "deployments" => {
            set_default("/spec/replicas", json!(1));
            set_default("/spec/revisionHistoryLimit", json!(10));
            set_default("/spec/progressDeadlineSeconds", json!(600));
            set_default(
                "/spec/strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
        }
        "jobs" => {
            set_default("/spec/backoffLimit", json!(6));
            set_default("/spec/completions", json!(1));
            set_default("/spec/parallelism", json!(1));
            set_default("/spec/completionMode", json!("NonIndexed"));
            set_default("/spec/suspend", json!(false));
        }
        "cronjobs" => {
            set_default("/spec/concurrencyPolicy", json!("Allow"));
            set_default("/spec/suspend", json!(false));
            set_default("/spec/successfulJobsHistoryLimit", json!(3));
            set_default("/spec/failedJobsHistoryLimit", json!(1));
        }
        "rolebindings" => {
            if let Some(Value::Array(subjects)) = obj.get_mut("subjects") {
                for s in subjects {
                    let kind = str_at(s, "/kind").to_string();
                    if s.get("apiGroup").is_none_or(|g| g.as_str() == Some(""))
                        && (kind == "User" || kind == "Group")
                    {
                        s["apiGroup"] = json!("rbac.authorization.k8s.io");
                    }
                }
            }
        }
        "resourcequotas" => {
            for section in ["/spec/hard", "/status/hard", "/status/used"] {
                if let Some(Value::Object(m)) = obj.pointer_mut(section) {
                    for (_, q) in m.iter_mut() {
                        if let Ok(parsed) = Quantity::from_json(q) {
                            *q = json!(parsed.to_string());
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Validation of a new or updated object (`old` for updates).
pub fn validate(def: &ResourceDef, obj: &Value, old: Option<&Value>) -> KubeResult<()> {
    let name = str_at(obj, "/metadata/name");
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    } else {
        for e in name_errors(def, name) {
            causes.push(Cause::invalid("metadata.name", name, &e));
        }
    }
    match def.plural {
        "resourcequotas" => {
            if let Some(Value::Object(hard)) = obj.pointer("/spec/hard") {
                for (k, q) in hard {
                    let q =
                        Quantity::from_json(q).map_err(|_| KubeError::bad_request(PARSE_ERROR))?;
                    if q.nanos < 0 {
                        causes.push(Cause::invalid(
                            format!("spec.hard[{k}]"),
                            &q.to_string(),
                            "must be greater than or equal to 0",
                        ));
                    }
                    if !k.contains('.')
                        && !k.contains('/')
                        && ![
                            "cpu",
                            "memory",
                            "pods",
                            "services",
                            "secrets",
                            "configmaps",
                            "persistentvolumeclaims",
                            "replicationcontrollers",
                            "resourcequotas",
                            "ephemeral-storage",
                            "storage",
                        ]
                        .contains(&k.as_str())
                    {
                        causes.push(Cause::invalid(
                            format!("spec.hard[{k}]"),
                            k,
                            "must be a standard resource for quota",
                        ));
                    }
                }
            }
        }
        "rolebindings" => {
            let kind = str_at(obj, "/roleRef/kind");
            if !["Role", "ClusterRole"].contains(&kind) {
                causes.push(Cause::not_supported(
                    "roleRef.kind",
                    kind,
                    &["Role", "ClusterRole"],
                ));
            }
            let group = str_at(obj, "/roleRef/apiGroup");
            if group != "rbac.authorization.k8s.io" {
                causes.push(Cause::not_supported(
                    "roleRef.apiGroup",
                    group,
                    &["rbac.authorization.k8s.io"],
                ));
            }
            if str_at(obj, "/roleRef/name").is_empty() {
                causes.push(Cause::required("roleRef.name"));
            }
            if let Some(Value::Array(subjects)) = obj.get("subjects") {
                for (i, s) in subjects.iter().enumerate() {
                    let kind = str_at(s, "/kind");
                    let group = str_at(s, "/apiGroup");
                    if str_at(s, "/name").is_empty() {
                        causes.push(Cause::required(format!("subjects[{i}].name")));
                    }
                    match kind {
                        "ServiceAccount" => {
                            if !group.is_empty() {
                                causes.push(Cause::not_supported(
                                    format!("subjects[{i}].apiGroup"),
                                    group,
                                    &[""],
                                ));
                            }
                        }
                        "User" | "Group" => {
                            if group != "rbac.authorization.k8s.io" {
                                causes.push(Cause::not_supported(
                                    format!("subjects[{i}].apiGroup"),
                                    group,
                                    &["rbac.authorization.k8s.io"],
                                ));
                            }
                        }
                        other => causes.push(Cause::not_supported(
                            format!("subjects[{i}].kind"),
                            other,
                            &["ServiceAccount", "User", "Group"],
                        )),
                    }
                }
            }
            if let Some(old) = old
                && old.get("roleRef") != obj.get("roleRef")
            {
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    field: "roleRef".into(),
                    message: format!(
                        "Invalid value: {}: cannot change roleRef",
                        obj.get("roleRef").cloned().unwrap_or(Value::Null)
                    ),
                });
            }
        }
        "secrets" => {
            use base64::Engine;
            if let Some(Value::Object(data)) = obj.get("data") {
                for (k, v) in data {
                    if base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap_or_default())
                        .is_err()
                    {
                        return Err(KubeError::bad_request(format!(
                            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data.{k}"
                        )));
                    }
                }
            }
        }
        "deployments" => {
            let template_labels = obj.pointer("/spec/template/metadata/labels");
            match obj
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
            {
                None => causes.push(Cause {
                    reason: "FieldValueRequired",
                    field: "spec.selector".into(),
                    message: "Required value".into(),
                }),
                Some(want) => {
                    let ok = want
                        .iter()
                        .all(|(k, v)| template_labels.and_then(|l| l.get(k)) == Some(v));
                    if !ok {
                        causes.push(Cause::invalid(
                            "spec.template.metadata.labels",
                            &template_labels.cloned().unwrap_or(Value::Null).to_string(),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
            pod_template_causes(
                obj.pointer("/spec/template"),
                "spec.template",
                false,
                &mut causes,
            );
        }
        "jobs" => {
            pod_template_causes(
                obj.pointer("/spec/template"),
                "spec.template",
                true,
                &mut causes,
            );
        }
        "cronjobs" => {
            let schedule = str_at(obj, "/spec/schedule");
            if schedule.is_empty() {
                causes.push(Cause {
                    reason: "FieldValueRequired",
                    field: "spec.schedule".into(),
                    message: "Required value".into(),
                });
            } else if !schedule.starts_with('@') && schedule.split_whitespace().count() != 5 {
                causes.push(Cause::invalid(
                    "spec.schedule",
                    schedule,
                    "unparseable schedule: expected exactly 5 fields",
                ));
            }
            pod_template_causes(
                obj.pointer("/spec/jobTemplate/spec/template"),
                "spec.jobTemplate.spec.template",
                true,
                &mut causes,
            );
        }
        "leases" => {
            if let Some(d) = obj
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                && d <= 0
            {
                causes.push(Cause::invalid(
                    "spec.leaseDurationSeconds",
                    &d.to_string(),
                    "must be greater than 0",
                ));
            }
            if let Some(t) = obj
                .pointer("/spec/leaseTransitions")
                .and_then(Value::as_i64)
                && t < 0
            {
                causes.push(Cause::invalid(
                    "spec.leaseTransitions",
                    &t.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
            for f in ["acquireTime", "renewTime"] {
                let s = str_at(obj, &format!("/spec/{f}"));
                if !s.is_empty() && s.parse::<jiff::Timestamp>().is_err() {
                    return Err(KubeError::bad_request(format!(
                        "Lease in version \"v1\" cannot be handled as a Lease: parsing time {s:?} as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse"
                    )));
                }
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(KubeError::invalid(def, name, causes))
    }
}

/// What the API server checks in a pod template that an agent's manifests can get wrong: at
/// least one container, each with a name and an image; for Jobs a restartPolicy of `Never` or
/// `OnFailure`.
fn pod_template_causes(template: Option<&Value>, at: &str, job: bool, causes: &mut Vec<Cause>) {
    let containers = template
        .and_then(|t| t.pointer("/spec/containers"))
        .and_then(Value::as_array);
    match containers {
        None => causes.push(Cause {
            reason: "FieldValueRequired",
            field: format!("{at}.spec.containers"),
            message: "Required value".into(),
        }),
        Some(list) => {
            for (i, c) in list.iter().enumerate() {
                for f in ["name", "image"] {
                    if c.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                        causes.push(Cause {
                            reason: "FieldValueRequired",
                            field: format!("{at}.spec.containers[{i}].{f}"),
                            message: "Required value".into(),
                        });
                    }
                }
            }
        }
    }
    if job {
        let policy = template
            .and_then(|t| t.pointer("/spec/restartPolicy"))
            .and_then(Value::as_str)
            .unwrap_or("Always");
        if policy != "Never" && policy != "OnFailure" {
            causes.push(Cause::not_supported(
                format!("{at}.spec.restartPolicy"),
                policy,
                &["OnFailure", "Never"],
            ));
        }
    }
}

/// The resource definition a stored kind belongs to.
pub fn def_of_kind(kind: &str) -> Option<&'static ResourceDef> {
    resources::ALL.iter().copied().find(|d| d.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::resources::{NAMESPACES, RESOURCE_QUOTAS, ROLE_BINDINGS};

    #[test]
    fn unknown_fields_are_dropped_or_refused() {
        let body = br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a","bogus":1},"spec":{"x":1}}"#;
        let (v, unknown) = decode(&NAMESPACES, "", body, false).expect("test value");
        assert_eq!(
            unknown,
            vec!["metadata.bogus".to_string(), "spec.x".to_string()]
        );
        assert_eq!(v["metadata"], json!({"name": "a"}));
        let e = decode(&NAMESPACES, "", body, true).expect_err("test error");
        assert!(
            e.message
                .starts_with("strict decoding error: unknown field \"metadata.bogus\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn wrong_kind_and_types_are_bad_requests() {
        let e = decode(
            &NAMESPACES,
            "",
            br#"{"kind":"Pod","metadata":{"name":"a"}}"#,
            false,
        )
        .expect_err("test error");
        assert_eq!(e.code, 400);
        let e =
            decode(&NAMESPACES, "", br#"{"metadata":{"name":5}}"#, false).expect_err("test error");
        assert_eq!(e.code, 400);
        let e = decode(
            &RESOURCE_QUOTAS,
            "",
            br#"{"metadata":{"name":"q"},"spec":{"hard":{"cpu":"x"}}}"#,
            false,
        )
        .expect_err("test error");
        assert_eq!(e.code, 400);
    }

    #[test]
    fn validation_causes() {
        let e = validate(
            &NAMESPACES,
            &json!({"metadata": {"name": "Bad_Name"}}),
            None,
        )
        .expect_err("test error");
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.details.as_ref().expect("test value")["causes"][0]["field"],
            "metadata.name"
        );
        let rb = json!({"metadata": {"name": "waldur-alice@example.com"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]});
        validate(&ROLE_BINDINGS, &rb, None).expect("test value");
        let mut changed = rb.clone();
        changed["roleRef"]["name"] = json!("view");
        let e = validate(&ROLE_BINDINGS, &changed, Some(&rb)).expect_err("test error");
        assert!(e.message.contains("cannot change roleRef"), "{}", e.message);
        let mut q = json!({"metadata": {"name": "q"}, "spec": {"hard": {"cpu": "1000m", "requests.memory": "1.5Gi"}}});
        default_and_canonicalize(&RESOURCE_QUOTAS, &mut q);
        assert_eq!(
            q["spec"]["hard"],
            json!({"cpu": "1", "requests.memory": "1536Mi"})
        );
    }
}
