//! What each backend declares about itself: the roles it really supports, its `backend_settings`
//! (one [`Setting`] per key: type, default, meaning, whether it is a secret) and the check it
//! applies at start-up. From that one declaration come
//! - `validate-config`'s offline checks ([`check_offering`]): unknown keys are warnings naming
//!   the key path, wrong values and roles the backend lacks are errors;
//! - the plugin catalogue's JSON Schemas ([`BackendSpec::settings_schema`]);
//! - the settings table of `docs/backends/<name>.md` ([`BackendSpec::settings_table`]), which a
//!   test of each backend compares with the page.

use agent_config::{BackendRole, OfferingConfig};
use serde_json::{Map, Value, json};

use crate::registry::Constructor;

/// The type of one setting, as the JSON Schema and the offline check see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    /// A name that reaches the site as it is (the site-name rule of `agent_config::names`).
    Name,
    /// The start of site names: empty, or the site-name rule.
    Prefix,
    /// An `http(s)://` URL.
    Url,
    Path,
    Bool,
    Integer,
    Number,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A mapping (its entries are checked by the backend).
    Object,
    /// A list of strings.
    List,
    /// `true`/`false`, or the path of a file (e.g. `verify_cert`: a CA bundle).
    BoolOrPath,
}

/// One key of `backend_settings`.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub key: &'static str,
    pub kind: Kind,
    /// As shown in the docs (`"normal"`, `none`, `required`, ...).
    pub default: &'static str,
    pub meaning: &'static str,
    /// Masked in output, listed in the catalogue's `secret_fields`.
    pub secret: bool,
}

impl Setting {
    pub const fn new(
        key: &'static str,
        kind: Kind,
        default: &'static str,
        meaning: &'static str,
    ) -> Self {
        Setting {
            key,
            kind,
            default,
            meaning,
            secret: false,
        }
    }

    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

/// A problem the backend's own start-up check found, at a path relative to the offering
/// (`backend_settings.execution_mode`, `backend_components.cpu.unit_factor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingIssue {
    pub path: String,
    pub reason: String,
}

impl SettingIssue {
    pub fn setting(key: &str, reason: impl Into<String>) -> Self {
        SettingIssue {
            path: format!("backend_settings.{key}"),
            reason: reason.into(),
        }
    }
    pub fn component(key: &str, reason: impl Into<String>) -> Self {
        SettingIssue {
            path: format!("backend_components.{key}"),
            reason: reason.into(),
        }
    }
}

/// Everything a backend declares. One `static` per backend crate.
pub struct BackendSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// The roles it implements; the registry refuses the others.
    pub roles: &'static [BackendRole],
    pub settings: &'static [Setting],
    /// What `backend_components` keys mean for this backend (catalogue and docs).
    pub components: &'static str,
    /// The backend's start-up check, without any site call: the same parse the constructor does.
    pub check: fn(&OfferingConfig) -> Vec<SettingIssue>,
    pub build: Constructor,
}

/// Every role, in config order.
pub const ALL_ROLES: [BackendRole; 4] = [
    BackendRole::OrderProcessing,
    BackendRole::MembershipSync,
    BackendRole::Reporting,
    BackendRole::UsernameManagement,
];

/// What a role means in messages and the catalogue.
pub fn role_name(role: BackendRole) -> &'static str {
    match role {
        BackendRole::OrderProcessing => "order processing",
        BackendRole::MembershipSync => "membership sync",
        BackendRole::Reporting => "usage reporting",
        BackendRole::UsernameManagement => "username generation",
    }
}

impl BackendSpec {
    pub fn supports(&self, role: BackendRole) -> bool {
        self.roles.contains(&role)
    }

    pub fn setting(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == key)
    }

    pub fn secret_fields(&self) -> Vec<&'static str> {
        self.settings
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.key)
            .collect()
    }

    /// JSON Schema (draft 2020-12) of `backend_settings`. Unknown keys are allowed (they are
    /// warnings, not errors, as in upstream).
    pub fn settings_schema(&self) -> Value {
        let mut properties = Map::new();
        for s in self.settings {
            let mut schema = kind_schema(s.kind);
            if let Value::Object(m) = &mut schema {
                m.insert("description".into(), json!(s.meaning));
                m.insert("x-default".into(), json!(s.default));
                if s.secret {
                    m.insert("writeOnly".into(), json!(true));
                }
            }
            properties.insert(s.key.to_owned(), schema);
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": format!("{} backend_settings", self.name),
            "type": "object",
            "properties": properties,
            "additionalProperties": true,
        })
    }

    /// JSON Schema of one `backend_components` entry (the fields every backend reads, plus what
    /// this backend makes of the keys in `description`).
    pub fn component_schema(&self) -> Value {
        let mut properties = Map::new();
        let typed = [
            ("measured_unit", json!({"type": "string"})),
            (
                "unit_factor",
                json!({"type": "number", "exclusiveMinimum": 0}),
            ),
            (
                "unit_factor_reporting",
                json!({"type": "number", "exclusiveMinimum": 0}),
            ),
            (
                "accounting_type",
                json!({"type": "string", "enum": ["usage", "limit", "one", "fixed"]}),
            ),
            ("label", json!({"type": "string"})),
            ("limit", json!({"type": "number", "minimum": 0})),
            ("target_components", json!({"type": "object"})),
            (
                "limit_period",
                json!({"type": "string", "enum": ["annual", "month", "quarterly", "total"]}),
            ),
        ];
        for (key, schema) in typed {
            properties.insert(key.to_owned(), schema);
        }
        for key in agent_config::WALDUR_COMPONENT_FIELDS {
            properties
                .entry(key.to_string())
                .or_insert_with(|| json!({"description": "passed to Waldur by load-components"}));
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": format!("{} backend_components entry", self.name),
            "description": self.components,
            "type": "object",
            "required": ["measured_unit", "accounting_type"],
            "properties": properties,
            "additionalProperties": true,
        })
    }

    /// This backend's entry of the plugin catalogue.
    pub fn catalogue_entry(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "roles": self.roles.iter().map(|r| r.config_key()).collect::<Vec<_>>(),
            "settings_schema": self.settings_schema(),
            "component_schema": self.component_schema(),
            "secret_fields": self.secret_fields(),
        })
    }

    /// The settings table of `docs/backends/<name>.md` (between the `settings-table` markers).
    pub fn settings_table(&self) -> String {
        let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
        for s in self.settings {
            let secret = if s.secret { " (secret)" } else { "" };
            out.push_str(&format!(
                "| `{}` | {}{secret} | {} | {} |\n",
                s.key,
                kind_label(s.kind),
                s.default,
                s.meaning
            ));
        }
        out
    }
}

/// Version of the catalogue's layout (bumped when a field changes meaning).
pub const CATALOGUE_VERSION: u32 = 1;

/// The plugin catalogue (`export-plugin-catalogue`): what each backend of this build is, its
/// roles and the JSON Schemas of its settings and components, from the same declarations the
/// agent runs with.
pub fn catalogue(agent_version: &str, specs: &[&BackendSpec]) -> Value {
    json!({
        "catalogue_version": CATALOGUE_VERSION,
        "agent_version": agent_version,
        "backends": specs.iter().map(|s| s.catalogue_entry()).collect::<Vec<_>>(),
    })
}

/// The table between `<!-- settings-table:begin -->` and `<!-- settings-table:end -->` in `page`.
pub fn documented_table(page: &str) -> Option<&str> {
    let begin = "<!-- settings-table:begin -->\n";
    let start = page.find(begin)? + begin.len();
    let end = start + page[start..].find("<!-- settings-table:end -->")?;
    Some(&page[start..end])
}

fn kind_label(kind: Kind) -> String {
    match kind {
        Kind::String => "string".into(),
        Kind::Name => "site name".into(),
        Kind::Prefix => "name prefix".into(),
        Kind::Url => "URL".into(),
        Kind::Path => "path".into(),
        Kind::Bool => "bool".into(),
        Kind::Integer => "integer".into(),
        Kind::Number => "number".into(),
        Kind::Enum(values) => values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" / "),
        Kind::Object => "mapping".into(),
        Kind::List => "list".into(),
        Kind::BoolOrPath => "bool or path".into(),
    }
}

fn kind_schema(kind: Kind) -> Value {
    let name_pattern = "^[A-Za-z0-9_@.][A-Za-z0-9_@.-]*$";
    match kind {
        Kind::String | Kind::Path => json!({"type": "string"}),
        Kind::Name => json!({"type": "string", "pattern": name_pattern}),
        Kind::Prefix => json!({"type": "string", "pattern": "^([A-Za-z0-9_@.][A-Za-z0-9_@.-]*)?$"}),
        Kind::Url => json!({"type": "string", "format": "uri", "pattern": "^https?://"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Integer => json!({"type": "integer"}),
        Kind::Number => json!({"type": "number"}),
        Kind::Enum(values) => json!({"type": "string", "enum": values}),
        Kind::Object => json!({"type": "object"}),
        Kind::List => json!({"type": "array", "items": {"type": "string"}}),
        Kind::BoolOrPath => json!({"type": ["boolean", "string"]}),
    }
}

/// Whether `value` has the setting's type (`null` = unset, always fine). The value rules
/// (names, ranges) are the backend's check.
fn type_problem(kind: Kind, value: &Value) -> Option<String> {
    let found = match value {
        Value::Null => return None,
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    };
    let ok = match kind {
        Kind::String | Kind::Name | Kind::Prefix | Kind::Url | Kind::Path => value.is_string(),
        Kind::Bool => value.is_boolean(),
        Kind::Integer => value.is_i64() || value.is_u64(),
        Kind::Number => value.is_number(),
        Kind::Enum(values) => {
            return match value.as_str() {
                Some(v) if values.contains(&v) => None,
                Some(v) => Some(format!(
                    "'{}' is not one of {}",
                    v.escape_default(),
                    values.join(", ")
                )),
                None => Some(format!(
                    "expected one of {}, found {found}",
                    values.join(", ")
                )),
            };
        }
        Kind::Object => value.is_object(),
        Kind::List => value.is_array(),
        Kind::BoolOrPath => value.is_boolean() || value.is_string(),
    };
    (!ok).then(|| format!("expected {}, found {found}", kind_label(kind)))
}

/// Offline result for one offering: paths are relative to `offerings[i]`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OfferingCheck {
    pub errors: Vec<SettingIssue>,
    pub warnings: Vec<SettingIssue>,
}

/// Check one offering against the specs of the backends it names (`backend_type` and the
/// role keys; unknown backend names are the caller's business): roles the backend lacks,
/// unknown `backend_settings` keys (warnings), value types, then each backend's own check.
pub fn check_offering(offering: &OfferingConfig, specs: &[&BackendSpec]) -> OfferingCheck {
    let mut result = OfferingCheck::default();
    let find = |name: &str| specs.iter().copied().find(|s| s.name == name);
    let mut used: Vec<&BackendSpec> = Vec::new();
    if let Some(spec) = find(offering.backend_type.as_str()) {
        used.push(spec);
    }
    for role in ALL_ROLES {
        let Some(name) = offering.role_backend(role) else {
            continue;
        };
        if role == BackendRole::UsernameManagement && name == "base" {
            continue;
        }
        let Some(spec) = find(name) else { continue };
        if !spec.supports(role) {
            let supported: Vec<&str> = spec.roles.iter().map(|r| r.config_key()).collect();
            result.errors.push(SettingIssue {
                path: role.config_key().to_owned(),
                reason: format!(
                    "backend '{name}' does not support {} (it can be used for: {})",
                    role_name(role),
                    if supported.is_empty() {
                        "nothing".to_owned()
                    } else {
                        supported.join(", ")
                    }
                ),
            });
        }
        if !used.iter().any(|u| u.name == spec.name) {
            used.push(spec);
        }
    }
    if used.is_empty() {
        return result;
    }
    for (key, value) in &offering.backend_settings {
        let declared: Vec<&Setting> = used.iter().filter_map(|s| s.setting(key)).collect();
        if declared.is_empty() {
            let names: Vec<&str> = used.iter().map(|s| s.name).collect();
            let hint = used
                .iter()
                .flat_map(|s| s.settings.iter())
                .map(|s| s.key)
                .min_by_key(|k| edit_distance(k, key))
                .filter(|k| edit_distance(k, key) <= 2)
                .map(|k| format!(" (did you mean '{k}'?)"))
                .unwrap_or_default();
            result.warnings.push(SettingIssue::setting(
                key,
                format!(
                    "unknown key{hint}; ignored by the {} backend",
                    names.join(" and ")
                ),
            ));
            continue;
        }
        if let Some(problem) = declared.iter().find_map(|s| type_problem(s.kind, value)) {
            result.errors.push(SettingIssue::setting(key, problem));
        }
    }
    if !result.errors.is_empty() {
        return result;
    }
    for spec in used {
        for issue in (spec.check)(offering) {
            if !result.errors.contains(&issue) {
                result.errors.push(issue);
            }
        }
    }
    result
}

/// Levenshtein distance, for "did you mean" hints on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &OfferingConfig) -> Vec<SettingIssue> {
        Vec::new()
    }
    fn no_build(
        _: &crate::registry::BuildContext<'_>,
    ) -> Result<crate::BackendHandles, crate::BackendError> {
        Err(crate::BackendError::Config("test".into()))
    }

    static SPEC: BackendSpec = BackendSpec {
        name: "toy",
        description: "a toy",
        roles: &[BackendRole::OrderProcessing],
        settings: &[
            Setting::new("qos_paused", Kind::Name, "none", "pause QoS"),
            Setting::new("mode", Kind::Enum(&["cli"]), "`cli`", "how"),
            Setting::new("password", Kind::String, "required", "login").secret(),
        ],
        components: "any",
        check: never,
        build: no_build,
    };

    fn offering(extra: Value) -> OfferingConfig {
        let mut base = json!({"name": "o", "waldur_api_url": "http://w/api/",
            "waldur_offering_uuid": "u", "backend_type": "toy"});
        if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
            b.extend(e);
        }
        serde_json::from_value(base).expect("offering")
    }

    #[test]
    fn typos_warn_with_a_hint_and_wrong_types_and_roles_are_errors() {
        let o = offering(
            json!({"backend_settings": {"qos_pasued": "x", "mode": "rest"},
            "reporting_backend": "toy"}),
        );
        let check = check_offering(&o, &[&SPEC]);
        assert_eq!(check.warnings.len(), 1);
        assert_eq!(check.warnings[0].path, "backend_settings.qos_pasued");
        assert!(
            check.warnings[0]
                .reason
                .starts_with("unknown key (did you mean 'qos_paused'?)")
        );
        let paths: Vec<&str> = check.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["reporting_backend", "backend_settings.mode"]);
        assert!(check.errors[0].reason.contains("usage reporting"));
    }

    #[test]
    fn schema_and_table_come_from_the_declaration() {
        let schema = SPEC.settings_schema();
        assert_eq!(schema["properties"]["mode"]["enum"], json!(["cli"]));
        assert_eq!(schema["properties"]["password"]["writeOnly"], json!(true));
        assert_eq!(SPEC.secret_fields(), vec!["password"]);
        let table = SPEC.settings_table();
        assert!(table.contains("| `password` | string (secret) | required | login |"));
        let page =
            format!("x\n<!-- settings-table:begin -->\n{table}<!-- settings-table:end -->\n");
        assert_eq!(documented_table(&page), Some(table.as_str()));
    }
}
