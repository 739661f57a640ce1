//! `backend_settings` of an `opennebula` offering: the upstream plugin's keys and defaults (seed
//! `004`, spec §5.1), plus TLS, timeouts, retries and VM waits. The networking keys and the VM
//! keys may also come from the offering's `plugin_options`, which win ([`NetworkConfig::resolve`],
//! [`VmDefaults`]). `parse` returns every problem with its key path.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use agent_config::Secret;
use backend_api::spec::{Kind, Setting, SettingIssue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    Vdc,
    Vm,
}

/// `verify_cert`: a bool, or the path of a CA bundle.
#[derive(Clone, Debug, PartialEq)]
pub enum Verify {
    On,
    Off,
    CaBundle(PathBuf),
}

/// One `security_group_defaults` rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgRule {
    pub direction: String,
    pub protocol: String,
    #[serde(default)]
    pub range: Option<String>,
    #[serde(default, rename = "type")]
    pub icmp_type: Option<String>,
}

/// Parsed `backend_settings`.
#[derive(Clone, Debug)]
pub struct OneSettings {
    pub api_url: Url,
    /// `user:password`, the XML-RPC session string.
    pub credentials: Secret,
    pub resource_type: ResourceType,
    pub zone_id: i64,
    pub cluster_ids: Vec<i64>,
    pub create_opennebula_user: bool,
    pub allocation_prefix: String,
    pub verify: Verify,
    pub timeout: Duration,
    pub max_retries: u32,
    /// How long a create waits for a VM (or the virtual router's VM) to run.
    pub vm_wait: Duration,
    pub vm_poll: Duration,
    /// Fallbacks of the offering's `plugin_options`.
    pub options: Map<String, Value>,
    /// `Some` with `keycloak_enabled` (VDC mode only).
    pub saml: Option<SamlSettings>,
}

/// One entry of `vdc_roles`: the Keycloak child group `role` of `vdc_<vdc>`, mapped to the
/// OpenNebula group `<vdc>-<suffix>` with these FireEdge views.
#[derive(Clone, Debug, PartialEq)]
pub struct VdcRole {
    pub role: String,
    pub group_suffix: String,
    pub default_view: String,
    pub views: String,
    /// Members are group administrators (`one.group.addadmin` of oneadmin, the group admin views).
    pub group_admin: bool,
}

/// Keycloak/SAML role groups of VDCs (`keycloak_enabled: true`).
#[derive(Clone, Debug)]
pub struct SamlSettings {
    pub keycloak: keycloak_admin::KeycloakConfig,
    pub mapping_file: PathBuf,
    pub default_user_role: String,
    pub roles: Vec<VdcRole>,
    /// Waldur usernames are Keycloak user ids (members reported by id).
    pub use_user_id: bool,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawRole {
    group_suffix: Option<String>,
    default_view: Option<String>,
    views: Option<String>,
    group_admin: Option<bool>,
}

/// The upstream defaults of `vdc_roles`.
pub fn default_roles() -> Vec<VdcRole> {
    let role = |role: &str, suffix: &str, default_view: &str, views: &str, admin: bool| VdcRole {
        role: role.into(),
        group_suffix: suffix.into(),
        default_view: default_view.into(),
        views: views.into(),
        group_admin: admin,
    };
    vec![
        role(
            "admin",
            "admins",
            "groupadmin",
            "groupadmin,user,cloud",
            true,
        ),
        role("user", "users", "user", "user", false),
        role("cloud", "cloud", "cloud", "cloud", false),
    ]
}

fn parse_roles(raw: Option<&Map<String, Value>>, issues: &mut Vec<SettingIssue>) -> Vec<VdcRole> {
    let Some(raw) = raw else {
        return default_roles();
    };
    let mut out = Vec::new();
    for (role, v) in raw {
        let path = format!("vdc_roles.{role}");
        if let Err(reason) = agent_config::names::check_name(role) {
            issues.push(SettingIssue::setting(&path, reason));
            continue;
        }
        let r: RawRole = match serde_json::from_value(v.clone()) {
            Ok(r) => r,
            Err(e) => {
                issues.push(SettingIssue::setting(&path, e.to_string()));
                continue;
            }
        };
        let suffix = r.group_suffix.unwrap_or_else(|| role.clone());
        if let Err(reason) = agent_config::names::check_name(&suffix) {
            issues.push(SettingIssue::setting(
                &format!("{path}.group_suffix"),
                reason,
            ));
            continue;
        }
        let default_view = r.default_view.unwrap_or_else(|| "user".into());
        let views = r.views.unwrap_or_else(|| default_view.clone());
        if [&default_view, &views]
            .iter()
            .any(|v| v.is_empty() || v.contains(['"', '\\', ']', '\n']))
        {
            issues.push(SettingIssue::setting(
                &path,
                "default_view and views are view names (views comma separated)",
            ));
            continue;
        }
        out.push(VdcRole {
            role: role.clone(),
            group_suffix: suffix,
            default_view,
            views,
            group_admin: r.group_admin.unwrap_or(false),
        });
    }
    if out.is_empty() && issues.is_empty() {
        issues.push(SettingIssue::setting("vdc_roles", "at least one role"));
    }
    out
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct RawSettings {
    api_url: Option<String>,
    credentials: Option<Secret>,
    zone_id: Option<i64>,
    cluster_ids: Option<Vec<i64>>,
    resource_type: Option<String>,
    create_opennebula_user: Option<bool>,
    parent_vdc_backend_id: Option<String>,
    template_id: Option<i64>,
    sched_requirements: Option<String>,
    engine_image_id: Option<i64>,
    external_network_id: Option<i64>,
    virtual_router_template_id: Option<i64>,
    vn_mad: Option<String>,
    vxlan_phydev: Option<String>,
    default_dns: Option<String>,
    internal_network_base: Option<String>,
    internal_network_prefix: Option<u8>,
    subnet_prefix_length: Option<u8>,
    security_group_defaults: Option<Vec<SgRule>>,
    keycloak_enabled: Option<bool>,
    keycloak: Option<Value>,
    keycloak_use_user_id: Option<bool>,
    saml_mapping_file: Option<String>,
    default_user_role: Option<String>,
    vdc_roles: Option<Map<String, Value>>,
    allocation_prefix: Option<String>,
    verify_cert: Option<Value>,
    timeout_seconds: Option<f64>,
    max_retries: Option<u32>,
    vm_wait_seconds: Option<f64>,
    vm_poll_seconds: Option<f64>,
}

/// The keys that may also come from `plugin_options` (which win).
pub const OPTION_KEYS: &[&str] = &[
    "zone_id",
    "cluster_ids",
    "parent_vdc_backend_id",
    "template_id",
    "sched_requirements",
    "engine_image_id",
    "external_network_id",
    "virtual_router_template_id",
    "vn_mad",
    "vxlan_phydev",
    "default_dns",
    "internal_network_base",
    "internal_network_prefix",
    "subnet_prefix_length",
    "security_group_defaults",
];

pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "api_url",
        Kind::Url,
        "required",
        "OpenNebula XML-RPC endpoint, `http://host:2633/RPC2`",
    ),
    Setting::new(
        "credentials",
        Kind::String,
        "required",
        "`user:password` session string of an OpenNebula administrator",
    )
    .secret(),
    Setting::new(
        "resource_type",
        Kind::Enum(&["vdc", "vm"]),
        "`vdc`",
        "`vdc`: a resource is a Virtual Data Center (group, VDC, quotas, network); `vm`: a virtual machine in a parent VDC, sized by the plan",
    ),
    Setting::new(
        "zone_id",
        Kind::Integer,
        "0",
        "zone of the VDC's clusters and VNets (`plugin_options.zone_id` wins)",
    ),
    Setting::new(
        "cluster_ids",
        Kind::List,
        "all clusters",
        "cluster ids added to each VDC and used for VNets and placement (`plugin_options.cluster_ids` wins)",
    ),
    Setting::new(
        "create_opennebula_user",
        Kind::Bool,
        "false",
        "create a user `<vdc>_admin` in the VDC's group; its credentials are published in `backend_metadata`",
    ),
    Setting::new(
        "allocation_prefix",
        Kind::Prefix,
        "empty",
        "prefix of every VDC name (the backend id is prefix + resource slug)",
    ),
    Setting::new(
        "parent_vdc_backend_id",
        Kind::Name,
        "none",
        "VM mode: the VDC the VMs belong to (attribute `parent_backend_id` and `plugin_options` win)",
    ),
    Setting::new(
        "template_id",
        Kind::Integer,
        "none",
        "VM mode: VM template to instantiate (attribute and `plugin_options` win)",
    ),
    Setting::new(
        "sched_requirements",
        Kind::String,
        "clusters of `cluster_ids`",
        "OpenNebula scheduling expression for VMs and virtual routers",
    ),
    Setting::new(
        "engine_image_id",
        Kind::Integer,
        "none",
        "VM mode (inference offerings upstream): accepted, not used by this backend",
    ),
    Setting::new(
        "external_network_id",
        Kind::Integer,
        "none",
        "provider network of the virtual router's uplink; with `virtual_router_template_id` it turns networking on",
    ),
    Setting::new(
        "virtual_router_template_id",
        Kind::Integer,
        "none",
        "VNF appliance template of the virtual router",
    ),
    Setting::new(
        "vn_mad",
        Kind::String,
        "`vxlan`",
        "driver of the tenant network",
    ),
    Setting::new(
        "vxlan_phydev",
        Kind::String,
        "`eth0`",
        "physical interface of VXLAN tunnels",
    ),
    Setting::new(
        "default_dns",
        Kind::String,
        "`8.8.8.8`",
        "DNS server of tenant networks",
    ),
    Setting::new(
        "internal_network_base",
        Kind::String,
        "`10.0.0.0`",
        "base address of the tenant subnet pool",
    ),
    Setting::new(
        "internal_network_prefix",
        Kind::Integer,
        "8",
        "prefix length of the tenant subnet pool",
    ),
    Setting::new(
        "subnet_prefix_length",
        Kind::Integer,
        "24",
        "prefix length of each tenant subnet",
    ),
    Setting::new(
        "security_group_defaults",
        Kind::Object,
        "none",
        "list of rules (`direction`, `protocol`, `range`, `type`) of each VDC's default security group",
    ),
    Setting::new(
        "keycloak_enabled",
        Kind::Bool,
        "false",
        "VDC mode: Keycloak role groups `vdc_<vdc>/<role>` mapped by SAML to OpenNebula groups `<vdc>-<suffix>`, and membership sync of the project's users into the `default_user_role` group",
    ),
    Setting::new(
        "keycloak",
        Kind::Object,
        "none",
        "the Keycloak admin login (with `keycloak_enabled`): the keys of the `keycloak-admin` block, as for `rancher`; `keycloak_password` and `keycloak_client_secret` are secrets",
    )
    .secret(),
    Setting::new(
        "keycloak_use_user_id",
        Kind::Bool,
        "true",
        "Waldur usernames are Keycloak user ids (looked up by id, then by username; members reported by id); `false`: by username",
    ),
    Setting::new(
        "saml_mapping_file",
        Kind::Path,
        "`/var/lib/one/keycloak_groups.yaml`",
        "YAML map of Keycloak group path → OpenNebula group id read by OpenNebula's SAML auth; entries merged under a lock, written atomically (temp file + rename)",
    ),
    Setting::new(
        "default_user_role",
        Kind::Name,
        "`user`",
        "the `vdc_roles` role whose Keycloak group the project's members join",
    ),
    Setting::new(
        "vdc_roles",
        Kind::Object,
        "admin (`admins`, groupadmin; views groupadmin,user,cloud; group admin), user (`users`, user), cloud (`cloud`, cloud)",
        "role → `{group_suffix, default_view, views, group_admin}`: the OpenNebula group suffix and its FireEdge views",
    ),
    Setting::new(
        "verify_cert",
        Kind::BoolOrPath,
        "true",
        "`true`/`false`, or a PEM CA bundle for an https endpoint",
    ),
    Setting::new(
        "timeout_seconds",
        Kind::Number,
        "30",
        "timeout of every XML-RPC call",
    ),
    Setting::new(
        "max_retries",
        Kind::Integer,
        "3",
        "retries of reads after transport errors (writes are answered by reusing what a lost reply made)",
    ),
    Setting::new(
        "vm_wait_seconds",
        Kind::Number,
        "300",
        "how long a create waits for a VM to reach RUNNING",
    ),
    Setting::new(
        "vm_poll_seconds",
        Kind::Number,
        "5",
        "how often a waiting create reads the VM's state",
    ),
];

pub fn read_keys() -> Vec<String> {
    match serde_json::to_value(RawSettings::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn seconds(key: &str, v: Option<f64>, default: f64, issues: &mut Vec<SettingIssue>) -> Duration {
    let s = v.unwrap_or(default);
    if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
        issues.push(SettingIssue::setting(
            key,
            format!("{s} is not a number of seconds between 0 and 86400"),
        ));
        return Duration::from_secs_f64(default);
    }
    Duration::from_secs_f64(s)
}

impl OneSettings {
    pub fn parse(settings: &Map<String, Value>) -> Result<Self, Vec<SettingIssue>> {
        let mut issues = Vec::new();
        let raw: RawSettings = match serde_json::from_value(Value::Object(settings.clone())) {
            Ok(r) => r,
            Err(e) => {
                return Err(vec![SettingIssue {
                    path: "backend_settings".into(),
                    reason: e.to_string(),
                }]);
            }
        };
        let api_url = match raw.api_url.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::setting(
                    "api_url",
                    "required: the XML-RPC endpoint, e.g. http://one.example.org:2633/RPC2",
                ));
                None
            }
            Some(text) => match Url::parse(text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
                _ => {
                    issues.push(SettingIssue::setting(
                        "api_url",
                        format!("'{text}' is not an http:// or https:// URL"),
                    ));
                    None
                }
            },
        };
        let credentials = match raw.credentials {
            Some(c) if c.expose().contains(':') && !c.expose().starts_with(':') => Some(c),
            Some(_) => {
                issues.push(SettingIssue::setting(
                    "credentials",
                    "must be `user:password`",
                ));
                None
            }
            None => {
                issues.push(SettingIssue::setting(
                    "credentials",
                    "required: `user:password` of an OpenNebula administrator",
                ));
                None
            }
        };
        let resource_type = match raw.resource_type.as_deref().map(str::trim) {
            None | Some("") | Some("vdc") => ResourceType::Vdc,
            Some("vm") => ResourceType::Vm,
            Some(other) => {
                issues.push(SettingIssue::setting(
                    "resource_type",
                    format!("'{other}' is neither `vdc` nor `vm`"),
                ));
                ResourceType::Vdc
            }
        };
        let verify = match raw.verify_cert {
            None | Some(Value::Null) | Some(Value::Bool(true)) => Verify::On,
            Some(Value::Bool(false)) => Verify::Off,
            Some(Value::String(s)) if s.trim().is_empty() => Verify::On,
            Some(Value::String(s)) => Verify::CaBundle(PathBuf::from(s.trim())),
            Some(other) => {
                issues.push(SettingIssue::setting(
                    "verify_cert",
                    format!("must be true, false or a CA bundle path, got {other}"),
                ));
                Verify::On
            }
        };
        let allocation_prefix = raw.allocation_prefix.unwrap_or_default();
        if !allocation_prefix.is_empty()
            && let Err(reason) = agent_config::names::check_name(&allocation_prefix)
        {
            issues.push(SettingIssue::setting("allocation_prefix", reason));
        }
        let saml = if raw.keycloak_enabled.unwrap_or(false) {
            if resource_type == ResourceType::Vm {
                issues.push(SettingIssue::setting(
                    "keycloak_enabled",
                    "role groups belong to VDCs: set it on the VDC offering (`resource_type: vdc`), not on a VM offering",
                ));
            }
            let keycloak = match keycloak_admin::KeycloakConfig::parse(
                "keycloak",
                raw.keycloak.as_ref().unwrap_or(&Value::Null),
            ) {
                Ok(k) => Some(k),
                Err(mut e) => {
                    issues.append(&mut e);
                    None
                }
            };
            let roles = parse_roles(raw.vdc_roles.as_ref(), &mut issues);
            let default_user_role = raw.default_user_role.unwrap_or_else(|| "user".into());
            if !roles.iter().any(|r| r.role == default_user_role) {
                issues.push(SettingIssue::setting(
                    "default_user_role",
                    format!("'{default_user_role}' is not a role of vdc_roles"),
                ));
            }
            let mapping_file = PathBuf::from(
                raw.saml_mapping_file
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .unwrap_or("/var/lib/one/keycloak_groups.yaml"),
            );
            if mapping_file.file_name().is_none() {
                issues.push(SettingIssue::setting(
                    "saml_mapping_file",
                    "must name a file",
                ));
            }
            keycloak.map(|keycloak| SamlSettings {
                keycloak,
                mapping_file,
                default_user_role,
                roles,
                use_user_id: raw.keycloak_use_user_id.unwrap_or(true),
            })
        } else {
            None
        };
        let max_retries = raw.max_retries.unwrap_or(3);
        if max_retries > 10 {
            issues.push(SettingIssue::setting("max_retries", "at most 10"));
        }
        let timeout = seconds("timeout_seconds", raw.timeout_seconds, 30.0, &mut issues);
        let vm_wait = seconds("vm_wait_seconds", raw.vm_wait_seconds, 300.0, &mut issues);
        let vm_poll = seconds("vm_poll_seconds", raw.vm_poll_seconds, 5.0, &mut issues);
        // The fallbacks of plugin_options, checked once here with the same rules.
        let mut options = Map::new();
        for key in OPTION_KEYS {
            if let Some(v) = settings.get(*key).filter(|v| !v.is_null()) {
                options.insert((*key).to_owned(), v.clone());
            }
        }
        if let Err(e) = NetworkConfig::resolve(&Map::new(), &options) {
            issues.push(SettingIssue::setting(&e.0, e.1));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let (Some(api_url), Some(credentials)) = (api_url, credentials) else {
            return Err(issues);
        };
        Ok(OneSettings {
            api_url,
            credentials,
            resource_type,
            zone_id: raw.zone_id.unwrap_or(0),
            cluster_ids: raw.cluster_ids.unwrap_or_default(),
            create_opennebula_user: raw.create_opennebula_user.unwrap_or(false),
            allocation_prefix,
            verify,
            timeout,
            max_retries,
            vm_wait,
            vm_poll,
            options,
            saml,
        })
    }

    /// The user part of `credentials` (for messages).
    pub fn username(&self) -> &str {
        self.credentials.expose().split(':').next().unwrap_or("")
    }
}

/// A value from `plugin_options`, else from the settings' fallbacks.
pub fn option<'a>(
    plugin_options: &'a Map<String, Value>,
    fallback: &'a Map<String, Value>,
    key: &str,
) -> Option<&'a Value> {
    plugin_options
        .get(key)
        .filter(|v| !v.is_null() && v.as_str() != Some(""))
        .or_else(|| fallback.get(key).filter(|v| !v.is_null()))
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Tenant networking of a VDC, when the offering asks for it.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    pub external_network_id: i64,
    pub virtual_router_template_id: i64,
    pub vn_mad: String,
    pub phydev: String,
    pub dns: String,
    pub pool_base: Ipv4Addr,
    pub pool_prefix: u8,
    pub subnet_prefix: u8,
    pub security_group: Vec<SgRule>,
    pub sched_requirements: Option<String>,
}

impl NetworkConfig {
    /// `Ok(None)`: no networking (external network or router template absent). `Err((key, why))`.
    pub fn resolve(
        plugin_options: &Map<String, Value>,
        fallback: &Map<String, Value>,
    ) -> Result<Option<NetworkConfig>, (String, String)> {
        let get = |k: &str| option(plugin_options, fallback, k);
        let int = |k: &str| -> Result<Option<i64>, (String, String)> {
            match get(k) {
                None => Ok(None),
                Some(v) => as_int(v)
                    .map(Some)
                    .ok_or_else(|| (k.to_owned(), format!("{v} is not an integer"))),
            }
        };
        let text = |k: &str, d: &str| {
            get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or(d)
                .to_owned()
        };
        let external = int("external_network_id")?;
        let router = int("virtual_router_template_id")?;
        let pool_base: Ipv4Addr =
            text("internal_network_base", "10.0.0.0")
                .parse()
                .map_err(|_| {
                    (
                        "internal_network_base".to_owned(),
                        "is not an IPv4 address".to_owned(),
                    )
                })?;
        let pool_prefix = int("internal_network_prefix")?.unwrap_or(8);
        let subnet_prefix = int("subnet_prefix_length")?.unwrap_or(24);
        if !(1..=30).contains(&pool_prefix) || !(pool_prefix..=30).contains(&subnet_prefix) {
            return Err((
                "subnet_prefix_length".into(),
                format!(
                    "subnets /{subnet_prefix} must fit in the pool /{pool_prefix} (1 ≤ pool ≤ subnet ≤ 30)"
                ),
            ));
        }
        let security_group = match get("security_group_defaults") {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                (
                    "security_group_defaults".to_owned(),
                    format!("a list of rules (direction, protocol, range, type): {e}"),
                )
            })?,
        };
        let (Some(external_network_id), Some(virtual_router_template_id)) = (external, router)
        else {
            return Ok(None);
        };
        Ok(Some(NetworkConfig {
            external_network_id,
            virtual_router_template_id,
            vn_mad: text("vn_mad", "vxlan"),
            phydev: text("vxlan_phydev", "eth0"),
            dns: text("default_dns", "8.8.8.8"),
            pool_base,
            pool_prefix: pool_prefix as u8,
            subnet_prefix: subnet_prefix as u8,
            security_group,
            sched_requirements: get("sched_requirements")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .filter(|s| !s.trim().is_empty()),
        }))
    }
}

/// Cluster ids and zone: `plugin_options` first, then settings.
pub fn clusters_and_zone(plugin_options: &Map<String, Value>, s: &OneSettings) -> (Vec<i64>, i64) {
    let clusters = plugin_options
        .get("cluster_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(as_int).collect())
        .unwrap_or_else(|| s.cluster_ids.clone());
    let zone = plugin_options
        .get("zone_id")
        .and_then(as_int)
        .unwrap_or(s.zone_id);
    (clusters, zone)
}

/// An integer option (attribute → plugin_options → settings).
pub fn int_option(
    attributes: &Map<String, Value>,
    plugin_options: &Map<String, Value>,
    fallback: &Map<String, Value>,
    keys: &[&str],
) -> Option<i64> {
    keys.iter()
        .find_map(|k| attributes.get(*k).and_then(as_int))
        .or_else(|| {
            keys.iter()
                .find_map(|k| option(plugin_options, fallback, k).and_then(as_int))
        })
}

/// A text option (attribute → plugin_options → settings).
pub fn text_option(
    attributes: &Map<String, Value>,
    plugin_options: &Map<String, Value>,
    fallback: &Map<String, Value>,
    keys: &[&str],
) -> Option<String> {
    let pick = |v: &Value| {
        v.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    keys.iter()
        .find_map(|k| attributes.get(*k).and_then(pick))
        .or_else(|| {
            keys.iter()
                .find_map(|k| option(plugin_options, fallback, k).and_then(pick))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<OneSettings, Vec<SettingIssue>> {
        OneSettings::parse(v.as_object().expect("object"))
    }

    #[test]
    fn settings_table_covers_every_key() {
        let mut a: Vec<String> = read_keys();
        let mut b: Vec<String> = SETTINGS.iter().map(|s| s.key.to_owned()).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn the_seed_examples_parse() {
        let vdc = parse(json!({"api_url": "http://opennebula-host:2633/RPC2", "credentials": "oneadmin:password", "create_opennebula_user": true})).expect("vdc");
        assert_eq!(vdc.resource_type, ResourceType::Vdc);
        assert!(vdc.create_opennebula_user);
        let vm = parse(json!({"api_url": "http://opennebula-host:2633/RPC2", "credentials": "oneadmin:password", "resource_type": "vm", "parent_vdc_backend_id": "my-vdc-1", "template_id": 0})).expect("vm");
        assert_eq!(vm.resource_type, ResourceType::Vm);
        assert_eq!(vm.options.get("template_id"), Some(&json!(0)));
    }

    #[test]
    fn every_problem_is_reported_and_no_secret_shown() {
        let issues = parse(json!({"api_url": "ftp://x", "credentials": "nocolon", "resource_type": "vmx", "subnet_prefix_length": 4, "timeout_seconds": -1, "keycloak_enabled": true, "keycloak": {}})).expect_err("bad");
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for p in [
            "api_url",
            "credentials",
            "resource_type",
            "subnet_prefix_length",
            "timeout_seconds",
            "keycloak.keycloak_username",
        ] {
            assert!(paths.iter().any(|x| x.ends_with(p)), "{p} in {paths:?}");
        }
        assert!(!format!("{issues:?}").contains("nocolon"));
        assert!(parse(json!({"api_url": "http://h/RPC2"})).is_err());
    }

    #[test]
    fn plugin_options_win_and_networking_needs_both_ids() {
        let fallback = json!({"external_network_id": 10, "vn_mad": "bridge"});
        let fallback = fallback.as_object().expect("object");
        assert_eq!(NetworkConfig::resolve(&Map::new(), fallback), Ok(None));
        let opts = json!({"virtual_router_template_id": "8", "vn_mad": "vxlan", "security_group_defaults": [{"direction": "INBOUND", "protocol": "TCP", "range": "22:22"}]});
        let n = NetworkConfig::resolve(opts.as_object().expect("object"), fallback)
            .expect("ok")
            .expect("networking");
        assert_eq!(
            (
                n.external_network_id,
                n.virtual_router_template_id,
                n.vn_mad.as_str()
            ),
            (10, 8, "vxlan")
        );
        assert_eq!(n.security_group[0].range.as_deref(), Some("22:22"));
    }
}
