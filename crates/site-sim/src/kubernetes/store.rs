//! The object store: every stored object as JSON with its system fields, one global
//! `resourceVersion` counter (like etcd's revision), a bounded event history for watches,
//! namespace termination and the quota controller.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::quantity::{Format, Quantity};
use super::resources::{
    self, CLUSTER_ROLES, NAMESPACES, RESOURCE_QUOTAS, ROLE_BINDINGS, ResourceDef,
};

/// How many events a watch can resume from (older `resourceVersion`s get 410 Expired).
pub const HISTORY: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub plural: &'static str,
    pub namespace: String,
    pub kind: EventType,
    /// The object with `kind`/`apiVersion`, at `rv`.
    pub object: Value,
}

/// What runs in a namespace, as far as its quotas can tell (set by tests through
/// `/__sim/kubernetes/namespaces/{ns}/usage`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    /// Running pods: `{"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {...}}`.
    #[serde(default)]
    pub pods: Vec<PodUsage>,
    /// Bound claims: `{"storage": "10Gi"}`.
    #[serde(default)]
    pub persistentvolumeclaims: Vec<BTreeMap<String, String>>,
    /// `status.used` values that win over the computed ones.
    #[serde(default)]
    pub used: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PodUsage {
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

fn sum<'a>(values: impl Iterator<Item = Option<&'a String>>) -> String {
    let mut total: Option<Quantity> = None;
    for v in values.flatten() {
        if let Ok(q) = Quantity::parse(v) {
            total = Some(match total {
                Some(t) => t.plus(q),
                None => q,
            });
        }
    }
    total
        .unwrap_or(Quantity::zero(Format::DecimalSI))
        .to_string()
}

impl Usage {
    /// `status.used` for the keys of `hard`, as the quota controller computes it.
    pub fn used_for(&self, hard: &Map<String, Value>) -> Map<String, Value> {
        let pods = &self.pods;
        let req = |r: &str| sum(pods.iter().map(|p| p.requests.get(r)));
        let lim = |r: &str| sum(pods.iter().map(|p| p.limits.get(r)));
        hard.keys()
            .map(|k| {
                let v = match k.as_str() {
                    "pods" | "count/pods" => pods.len().to_string(),
                    "cpu" | "requests.cpu" => req("cpu"),
                    "memory" | "requests.memory" => req("memory"),
                    "ephemeral-storage" | "requests.ephemeral-storage" => req("ephemeral-storage"),
                    "limits.cpu" => lim("cpu"),
                    "limits.memory" => lim("memory"),
                    "limits.ephemeral-storage" => lim("ephemeral-storage"),
                    "requests.storage" => {
                        sum(self.persistentvolumeclaims.iter().map(|c| c.get("storage")))
                    }
                    "persistentvolumeclaims" | "count/persistentvolumeclaims" => {
                        self.persistentvolumeclaims.len().to_string()
                    }
                    _ => "0".to_string(),
                };
                let v = self.used.get(k).cloned().unwrap_or(v);
                let v = Quantity::parse(&v).map(|q| q.to_string()).unwrap_or(v);
                (k.clone(), json!(v))
            })
            .collect()
    }
}

pub struct Store {
    rv: u64,
    objects: HashMap<&'static str, BTreeMap<(String, String), Value>>,
    history: VecDeque<WatchEvent>,
    events: broadcast::Sender<WatchEvent>,
    /// Namespaces being deleted, and when their content is gone.
    terminating: HashMap<String, Instant>,
    usage: HashMap<String, Usage>,
    openshift: bool,
    uid_blocks: u32,
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn key(def: &ResourceDef, ns: &str, name: &str) -> (String, String) {
    (
        if def.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Store {
    pub fn new(openshift: bool) -> Store {
        let (events, _) = broadcast::channel(4096);
        let mut s = Store {
            rv: 1000,
            objects: HashMap::new(),
            history: VecDeque::new(),
            events,
            terminating: HashMap::new(),
            usage: HashMap::new(),
            openshift,
            uid_blocks: 0,
        };
        s.bootstrap();
        s
    }

    /// What every cluster has: the system namespaces and the user-facing ClusterRoles.
    fn bootstrap(&mut self) {
        let mut namespaces = vec!["default", "kube-node-lease", "kube-public", "kube-system"];
        if self.openshift {
            namespaces.extend(["openshift", "openshift-config", "openshift-infra"]);
        }
        for ns in namespaces {
            self.create(&NAMESPACES, json!({"metadata": {"name": ns}}));
        }
        let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
        let read = ["get", "list", "watch"];
        let write = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let aggregate =
            |to: &str| json!({"rbac.authorization.k8s.io/aggregate-to-".to_string() + to: "true"});
        let roles = vec![
            (
                "cluster-admin",
                vec![
                    rule(&["*"], &["*"], &["*"]),
                    json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
                ],
                None,
            ),
            (
                "admin",
                vec![
                    rule(
                        &[""],
                        &[
                            "pods",
                            "services",
                            "configmaps",
                            "secrets",
                            "persistentvolumeclaims",
                            "resourcequotas",
                        ],
                        &write,
                    ),
                    rule(
                        &["rbac.authorization.k8s.io"],
                        &["roles", "rolebindings"],
                        &write,
                    ),
                    rule(&["coordination.k8s.io"], &["leases"], &write),
                ],
                None,
            ),
            (
                "edit",
                vec![
                    rule(
                        &[""],
                        &[
                            "pods",
                            "services",
                            "configmaps",
                            "secrets",
                            "persistentvolumeclaims",
                        ],
                        &write,
                    ),
                    rule(&[""], &["namespaces", "resourcequotas"], &read),
                ],
                Some(aggregate("admin")),
            ),
            (
                "view",
                vec![rule(
                    &[""],
                    &[
                        "pods",
                        "services",
                        "configmaps",
                        "persistentvolumeclaims",
                        "resourcequotas",
                        "namespaces",
                    ],
                    &read,
                )],
                Some(aggregate("edit")),
            ),
        ];
        for (name, rules, labels) in roles {
            let mut meta = json!({"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}});
            if let Some(Value::Object(extra)) = labels
                && let Some(Value::Object(l)) = meta.get_mut("labels")
            {
                l.extend(extra);
            }
            self.create(&CLUSTER_ROLES, json!({"metadata": meta, "rules": rules}));
        }
        if self.openshift {
            for (name, rules) in [
                (
                    "system:image-puller",
                    vec![rule(
                        &["", "image.openshift.io"],
                        &["imagestreams/layers"],
                        &["get"],
                    )],
                ),
                (
                    "system:image-builder",
                    vec![rule(
                        &["", "image.openshift.io"],
                        &["imagestreams/layers"],
                        &["get", "update"],
                    )],
                ),
                (
                    "system:deployer",
                    vec![rule(
                        &[""],
                        &["replicationcontrollers"],
                        &["get", "list", "watch", "update", "patch", "delete"],
                    )],
                ),
            ] {
                self.create(
                    &CLUSTER_ROLES,
                    json!({"metadata": {"name": name}, "rules": rules}),
                );
            }
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.events.subscribe()
    }

    /// The events after `rv`, or `Err(oldest)` when `rv` is older than the history kept.
    pub fn history_since(&self, rv: u64) -> Result<Vec<WatchEvent>, u64> {
        let oldest = self.history.front().map(|e| e.rv).unwrap_or(self.rv + 1);
        if rv + 1 < oldest && self.history.len() >= HISTORY {
            return Err(oldest);
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    fn emit(&mut self, def: &ResourceDef, kind: EventType, object: &Value) {
        let ev = WatchEvent {
            rv: self.rv,
            plural: def.plural,
            namespace: meta_str(object, "namespace").to_string(),
            kind,
            object: object.clone(),
        };
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        let _ = self.events.send(ev);
    }

    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(def.plural)?.get(&key(def, ns, name))
    }

    /// Objects of a type in key order (namespace, name), in one namespace or all.
    pub fn list(&self, def: &ResourceDef, ns: Option<&str>) -> Vec<&Value> {
        let Some(m) = self.objects.get(def.plural) else {
            return vec![];
        };
        m.iter()
            .filter(|((n, _), _)| ns.is_none_or(|ns| !def.namespaced || n == ns))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn namespace_phase(&self, ns: &str) -> Option<&str> {
        self.get(&NAMESPACES, "", ns).map(|n| {
            n.pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Active")
        })
    }

    /// Stores a new (validated) object: system fields, type defaults, ADDED event.
    pub fn create(&mut self, def: &ResourceDef, mut obj: Value) -> Value {
        let rv = self.next_rv();
        obj["kind"] = json!(def.kind);
        obj["apiVersion"] = json!(def.api_version());
        let name = meta_str(&obj, "name").to_string();
        let ns = meta_str(&obj, "namespace").to_string();
        if let Some(Value::Object(m)) = obj.get_mut("metadata") {
            for f in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
                "generation",
                "managedFields",
                "generateName",
            ] {
                m.remove(f);
            }
            if !def.namespaced {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("resourceVersion".into(), json!(rv.to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        }
        match def.plural {
            "namespaces" => {
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
                if self.openshift {
                    self.uid_blocks += 1;
                    let base = 1_000_000_000u64 + u64::from(self.uid_blocks) * 10_000;
                    let a = &mut obj["metadata"]["annotations"];
                    a["openshift.io/sa.scc.mcs"] = json!(format!(
                        "s0:c{},c{}",
                        10 + self.uid_blocks,
                        5 + self.uid_blocks % 5
                    ));
                    a["openshift.io/sa.scc.supplemental-groups"] = json!(format!("{base}/10000"));
                    a["openshift.io/sa.scc.uid-range"] = json!(format!("{base}/10000"));
                }
            }
            "resourcequotas" => {
                let hard = obj
                    .pointer("/spec/hard")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let used = self
                    .usage
                    .get(&ns)
                    .cloned()
                    .unwrap_or_default()
                    .used_for(&hard);
                obj["status"] = json!({"hard": hard, "used": used});
            }
            _ => {}
        }
        self.objects
            .entry(def.plural)
            .or_default()
            .insert(key(def, &ns, &name), obj.clone());
        self.emit(def, EventType::Added, &obj);
        if def.plural == "namespaces" && self.openshift {
            self.default_role_bindings(&name);
        }
        obj
    }

    /// What OpenShift's controllers add to every namespace.
    fn default_role_bindings(&mut self, ns: &str) {
        let bindings = [
            (
                "system:image-pullers",
                "system:image-puller",
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("system:serviceaccounts:{ns}")}),
            ),
            (
                "system:image-builders",
                "system:image-builder",
                json!({"kind": "ServiceAccount", "name": "builder", "namespace": ns}),
            ),
            (
                "system:deployers",
                "system:deployer",
                json!({"kind": "ServiceAccount", "name": "deployer", "namespace": ns}),
            ),
        ];
        for (name, role, subject) in bindings {
            self.create(&ROLE_BINDINGS, json!({
                "metadata": {"name": name, "namespace": ns, "annotations": {"openshift.io/description": "Allows default service accounts to use their roles."}},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [subject],
            }));
        }
    }

    /// Stores a new version of an existing object; a write changing nothing keeps its
    /// `resourceVersion` and sends no event (as etcd's guaranteed update does).
    pub fn update(&mut self, def: &ResourceDef, mut obj: Value) -> Value {
        let name = meta_str(&obj, "name").to_string();
        let ns = meta_str(&obj, "namespace").to_string();
        let k = key(def, &ns, &name);
        let old = self
            .objects
            .get(def.plural)
            .and_then(|m| m.get(&k))
            .cloned();
        obj["kind"] = json!(def.kind);
        obj["apiVersion"] = json!(def.api_version());
        if let Some(old) = &old {
            for f in ["uid", "creationTimestamp", "deletionTimestamp"] {
                match old["metadata"].get(f) {
                    Some(v) => obj["metadata"][f] = v.clone(),
                    None => {
                        if let Some(m) = obj["metadata"].as_object_mut() {
                            m.remove(f);
                        }
                    }
                }
            }
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("generation");
                m.remove("managedFields");
                m.remove("selfLink");
            }
            match def.plural {
                "namespaces" => {
                    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                    obj["spec"] = old["spec"].clone();
                    obj["status"] = old["status"].clone();
                }
                "resourcequotas" => {
                    let hard = obj
                        .pointer("/spec/hard")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    let used = self
                        .usage
                        .get(&ns)
                        .cloned()
                        .unwrap_or_default()
                        .used_for(&hard);
                    obj["status"] = json!({"hard": hard, "used": used});
                }
                _ => {}
            }
            obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if &obj == old {
                return obj;
            }
        }
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects
            .entry(def.plural)
            .or_default()
            .insert(k, obj.clone());
        self.emit(def, EventType::Modified, &obj);
        obj
    }

    /// Removes an object now; the DELETED event carries the deletion's resourceVersion.
    pub fn remove(&mut self, def: &ResourceDef, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self
            .objects
            .get_mut(def.plural)?
            .remove(&key(def, ns, name))?;
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(def, EventType::Deleted, &obj);
        Some(obj)
    }

    /// Starts deleting a namespace: `Terminating` now, gone with its content after `after`.
    pub fn begin_terminate(&mut self, name: &str, after: Duration) -> Option<Value> {
        let mut ns = self.get(&NAMESPACES, "", name)?.clone();
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            return Some(ns);
        }
        ns["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        ns["status"] = json!({
            "phase": "Terminating",
            "conditions": [{
                "type": "NamespaceDeletionContentFailure",
                "status": "False",
                "reason": "ContentDeleted",
                "message": "All content successfully deleted, may be waiting on finalization",
                "lastTransitionTime": now_rfc3339(),
            }],
        });
        let rv = self.next_rv();
        ns["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects
            .entry("namespaces")
            .or_default()
            .insert(key(&NAMESPACES, "", name), ns.clone());
        self.emit(&NAMESPACES, EventType::Modified, &ns);
        self.terminating
            .insert(name.to_string(), Instant::now() + after);
        Some(ns)
    }

    /// Finishes the namespace deletions that are due (the namespace controller's work).
    pub fn finish_terminations(&mut self, now: Instant) {
        let due: Vec<String> = self
            .terminating
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for ns in due {
            self.terminating.remove(&ns);
            for def in resources::ALL.iter().filter(|d| d.namespaced) {
                let names: Vec<String> = self
                    .list(def, Some(&ns))
                    .iter()
                    .map(|o| meta_str(o, "name").to_string())
                    .collect();
                for n in names {
                    self.remove(def, &ns, &n);
                }
            }
            self.usage.remove(&ns);
            self.remove(&NAMESPACES, "", &ns);
        }
    }

    pub fn usage(&self, ns: &str) -> Usage {
        self.usage.get(ns).cloned().unwrap_or_default()
    }

    /// Sets what runs in a namespace and refreshes its quotas' `status.used`.
    pub fn set_usage(&mut self, ns: &str, usage: Usage) {
        self.usage.insert(ns.to_string(), usage);
        let quotas: Vec<Value> = self
            .list(&RESOURCE_QUOTAS, Some(ns))
            .into_iter()
            .cloned()
            .collect();
        for q in quotas {
            self.update(&RESOURCE_QUOTAS, q);
        }
    }

    /// Counts of stored objects per type.
    pub fn summary(&self) -> BTreeMap<&'static str, usize> {
        self.objects.iter().map(|(k, v)| (*k, v.len())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_used_follows_running_pods() {
        let hard: Map<String, Value> = serde_json::from_value(json!({
            "pods": "10", "requests.cpu": "4", "limits.cpu": "8", "requests.memory": "16Gi",
            "requests.storage": "100Gi", "services": "5"
        }))
        .expect("test value");
        let usage = Usage {
            pods: vec![
                PodUsage {
                    requests: [
                        ("cpu".into(), "500m".into()),
                        ("memory".into(), "512Mi".into()),
                    ]
                    .into(),
                    limits: [("cpu".into(), "1".into())].into(),
                },
                PodUsage {
                    requests: [("cpu".into(), "1".into()), ("memory".into(), "1Gi".into())].into(),
                    limits: [("cpu".into(), "2".into())].into(),
                },
            ],
            persistentvolumeclaims: vec![[("storage".into(), "10Gi".into())].into()],
            used: [("services".into(), "2".into())].into(),
        };
        let used = usage.used_for(&hard);
        assert_eq!(
            Value::Object(used),
            json!({
                "pods": "2", "requests.cpu": "1500m", "limits.cpu": "3", "requests.memory": "1536Mi",
                "requests.storage": "10Gi", "services": "2"
            })
        );
        assert_eq!(Usage::default().used_for(&hard)["requests.cpu"], json!("0"));
    }

    #[test]
    fn unchanged_update_keeps_resource_version() {
        let mut s = Store::new(false);
        let ns = s.create(&NAMESPACES, json!({"metadata": {"name": "a"}}));
        let again = s.update(&NAMESPACES, ns.clone());
        assert_eq!(
            again["metadata"]["resourceVersion"],
            ns["metadata"]["resourceVersion"]
        );
        let mut changed = ns.clone();
        changed["metadata"]["labels"]["x"] = json!("1");
        let after = s.update(&NAMESPACES, changed);
        assert_ne!(
            after["metadata"]["resourceVersion"],
            ns["metadata"]["resourceVersion"]
        );
    }
}
