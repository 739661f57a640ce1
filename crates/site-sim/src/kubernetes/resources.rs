//! The resource types the double serves, and the discovery documents built from them.

use serde_json::{Value, json};

/// How a resource type is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Objects of its own.
    Stored,
    /// OpenShift `projects`: a view of the namespaces.
    Projects,
    /// OpenShift `projectrequests`: create-only, makes a project from the template.
    ProjectRequests,
}

#[derive(Debug, PartialEq)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// A PUT of a missing object creates it (the strategy's `AllowCreateOnUpdate`).
    pub create_on_update: bool,
    /// A PUT without `metadata.resourceVersion` is accepted (`AllowUnconditionalUpdate`).
    pub unconditional_update: bool,
    /// Served only in OpenShift mode.
    pub openshift: bool,
    pub storage: Storage,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `namespaces`, `rolebindings.rbac.authorization.k8s.io`: how messages name the type.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `/api/v1` or `/apis/<group>/<version>`.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NO_COLLECTION_DELETE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

pub static NAMESPACES: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    short_names: &["ns"],
    verbs: NO_COLLECTION_DELETE,
    categories: &[],
    create_on_update: false,
    unconditional_update: true,
    openshift: false,
    storage: Storage::Stored,
};

pub static RESOURCE_QUOTAS: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    plural: "resourcequotas",
    singular: "resourcequota",
    kind: "ResourceQuota",
    namespaced: true,
    short_names: &["quota"],
    verbs: ALL_VERBS,
    categories: &[],
    create_on_update: false,
    unconditional_update: true,
    openshift: false,
    storage: Storage::Stored,
};

pub static ROLE_BINDINGS: ResourceDef = ResourceDef {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "rolebindings",
    singular: "rolebinding",
    kind: "RoleBinding",
    namespaced: true,
    short_names: &[],
    verbs: ALL_VERBS,
    categories: &[],
    create_on_update: true,
    unconditional_update: true,
    openshift: false,
    storage: Storage::Stored,
};

pub static CLUSTER_ROLES: ResourceDef = ResourceDef {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "clusterroles",
    singular: "clusterrole",
    kind: "ClusterRole",
    namespaced: false,
    short_names: &[],
    verbs: ALL_VERBS,
    categories: &[],
    create_on_update: true,
    unconditional_update: true,
    openshift: false,
    storage: Storage::Stored,
};

pub static LEASES: ResourceDef = ResourceDef {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    singular: "lease",
    kind: "Lease",
    namespaced: true,
    short_names: &[],
    verbs: ALL_VERBS,
    categories: &[],
    create_on_update: true,
    unconditional_update: false,
    openshift: false,
    storage: Storage::Stored,
};

pub static CONFIG_MAPS: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    short_names: &["cm"],
    verbs: ALL_VERBS,
    categories: &[],
    create_on_update: false,
    unconditional_update: true,
    openshift: false,
    storage: Storage::Stored,
};

pub static SECRETS: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    short_names: &[],
    verbs: ALL_VERBS,
    categories: &[],
    create_on_update: false,
    unconditional_update: true,
    openshift: false,
    storage: Storage::Stored,
};

pub static DEPLOYMENTS: ResourceDef = ResourceDef {
    group: "apps",
    version: "v1",
    plural: "deployments",
    singular: "deployment",
    kind: "Deployment",
    namespaced: true,
    short_names: &["deploy"],
    verbs: ALL_VERBS,
    categories: &["all"],
    create_on_update: false,
    unconditional_update: true,
    openshift: false,
    storage: Storage::Stored,
};

pub static JOBS: ResourceDef = ResourceDef {
    group: "batch",
    version: "v1",
    plural: "jobs",
    singular: "job",
    kind: "Job",
    namespaced: true,
    short_names: &[],
    verbs: ALL_VERBS,
    categories: &["all"],
    create_on_update: false,
    unconditional_update: true,
    openshift: false,
    storage: Storage::Stored,
};

pub static CRON_JOBS: ResourceDef = ResourceDef {
    group: "batch",
    version: "v1",
    plural: "cronjobs",
    singular: "cronjob",
    kind: "CronJob",
    namespaced: true,
    short_names: &["cj"],
    verbs: ALL_VERBS,
    categories: &["all"],
    create_on_update: false,
    unconditional_update: true,
    openshift: false,
    storage: Storage::Stored,
};

pub static PROJECTS: ResourceDef = ResourceDef {
    group: "project.openshift.io",
    version: "v1",
    plural: "projects",
    singular: "project",
    kind: "Project",
    namespaced: false,
    short_names: &[],
    verbs: &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ],
    categories: &[],
    create_on_update: false,
    unconditional_update: true,
    openshift: true,
    storage: Storage::Projects,
};

pub static PROJECT_REQUESTS: ResourceDef = ResourceDef {
    group: "project.openshift.io",
    version: "v1",
    plural: "projectrequests",
    singular: "projectrequest",
    kind: "ProjectRequest",
    namespaced: false,
    short_names: &[],
    verbs: &["create", "list"],
    categories: &[],
    create_on_update: false,
    unconditional_update: false,
    openshift: true,
    storage: Storage::ProjectRequests,
};

pub static ALL: &[&ResourceDef] = &[
    &NAMESPACES,
    &RESOURCE_QUOTAS,
    &ROLE_BINDINGS,
    &CLUSTER_ROLES,
    &LEASES,
    &CONFIG_MAPS,
    &SECRETS,
    &DEPLOYMENTS,
    &JOBS,
    &CRON_JOBS,
    &PROJECTS,
    &PROJECT_REQUESTS,
];

/// The types served in this mode.
pub fn served(openshift: bool) -> impl Iterator<Item = &'static ResourceDef> {
    ALL.iter()
        .copied()
        .filter(move |d| openshift || !d.openshift)
}

/// The type at `group`/`version`/`plural`, when served.
pub fn find(
    openshift: bool,
    group: &str,
    version: &str,
    plural: &str,
) -> Option<&'static ResourceDef> {
    served(openshift).find(|d| d.group == group && d.version == version && d.plural == plural)
}

/// The groups served, in discovery order (core excluded).
pub fn groups(openshift: bool) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for d in served(openshift) {
        if !d.group.is_empty() && !out.contains(&d.group) {
            out.push(d.group);
        }
    }
    out
}

fn storage_version_hash(def: &ResourceDef) -> String {
    use base64::Engine;
    // An opaque 8-byte value per type, as the real server publishes (FNV-1a of the type's name).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{}/{}", def.api_version(), def.kind).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    base64::engine::general_purpose::STANDARD.encode(h.to_be_bytes())
}

/// `GET /api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `GET /apis`.
pub fn api_group_list(openshift: bool) -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups(openshift).into_iter().map(group_json).collect::<Vec<_>>(),
    })
}

/// `GET /apis/<group>`.
pub fn api_group(openshift: bool, group: &str) -> Option<Value> {
    groups(openshift).contains(&group).then(|| {
        let mut g = group_json(group);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`.
pub fn api_resource_list(openshift: bool, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = served(openshift)
        .filter(|d| d.group == group && d.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let resources: Vec<Value> = defs
        .iter()
        .map(|d| {
            let mut r = json!({
                "name": d.plural,
                "singularName": d.singular,
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": d.verbs,
            });
            if !d.short_names.is_empty() {
                r["shortNames"] = json!(d.short_names);
            }
            if !d.categories.is_empty() {
                r["categories"] = json!(d.categories);
            }
            if d.storage == Storage::Stored {
                r["storageVersionHash"] = json!(storage_version_hash(d));
            }
            r
        })
        .collect();
    let mut v = json!({"kind": "APIResourceList", "groupVersion": defs[0].api_version(), "resources": resources});
    if !group.is_empty() {
        v["apiVersion"] = json!("v1");
    }
    Some(v)
}

/// `GET /version`: the Kubernetes version an OKD 4.20 cluster reports.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.5",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-10-01T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
