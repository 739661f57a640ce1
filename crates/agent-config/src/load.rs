//! Loading the YAML file: parse → `${VAR}` expansion → legacy-layout normalisation → typed
//! deserialisation → validation. Every problem found is collected (not just the first) and carries
//! the file name and the key path (`FILE: offerings[2].backend_settings.foo: reason`), or the line
//! for YAML syntax errors (`FILE:LINE: reason`). Unknown keys are warnings, never failures.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::expand::{self, ExpandError};
use crate::model::{AgentConfig, BackendComponent, BackendRole, OfferingConfig};

/// One problem (error or warning) in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file name (or another origin label given to [`load_str`]); may be empty.
    pub origin: String,
    /// 1-based line, for YAML syntax errors.
    pub line: Option<u64>,
    /// Key path such as `offerings[2].backend_settings.foo`; empty for whole-file problems.
    pub path: String,
    pub reason: String,
}

/// A problem that makes the configuration unusable.
pub type ConfigError = ConfigIssue;
/// A problem worth telling the operator about that does not stop the agent (unknown keys, ...).
pub type ConfigWarning = ConfigIssue;

impl ConfigIssue {
    fn new(origin: &str, path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigIssue {
            origin: origin.to_owned(),
            line: None,
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The same issue, attributed to `origin` (for issues found after loading).
    pub fn in_file(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.origin.is_empty(), self.line, self.path.is_empty()) {
            (false, Some(line), _) => write!(f, "{}:{}: {}", self.origin, line, self.reason),
            (true, Some(line), _) => write!(f, "line {}: {}", line, self.reason),
            (false, None, false) => write!(f, "{}: {}: {}", self.origin, self.path, self.reason),
            (false, None, true) => write!(f, "{}: {}", self.origin, self.reason),
            (true, None, false) => write!(f, "{}: {}", self.path, self.reason),
            (true, None, true) => f.write_str(&self.reason),
        }
    }
}

/// Every error found in a configuration file, plus the warnings gathered on the way.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigWarning>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Secret strings found in the file (after expansion), for log redaction. `Debug` hides them.
#[derive(Clone, Default)]
pub struct SecretValues(Vec<String>);

impl SecretValues {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn push(&mut self, value: &str) {
        let value = value.trim();
        if !value.is_empty() && !self.0.iter().any(|v| v == value) {
            self.0.push(value.to_owned());
        }
    }
}

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValues({} hidden)", self.0.len())
    }
}

/// A successfully loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: AgentConfig,
    pub warnings: Vec<ConfigWarning>,
    /// Every secret-looking value in the file, including ones under unknown keys.
    pub secrets: SecretValues,
}

/// The largest configuration file read (16 MiB; real ones are a few KiB).
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Read and load a configuration file; the origin shown in messages is the path as given.
///
/// Only a regular file (or a symlink to one) of at most [`MAX_CONFIG_FILE_BYTES`] is read:
/// `-c /dev/zero`, a FIFO or a directory is refused before reading anything.
pub fn load_file(path: impl AsRef<Path>) -> Result<Loaded, ConfigErrors> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    match read_config_file(path, MAX_CONFIG_FILE_BYTES) {
        Ok(text) => load_str(&text, &origin),
        Err(reason) => Err(ConfigErrors {
            errors: vec![ConfigIssue::new(&origin, "", reason)],
            warnings: Vec::new(),
        }),
    }
}

/// The text of a regular file of at most `max` bytes, or why not.
fn read_config_file(path: &Path, max: u64) -> Result<String, String> {
    use std::io::Read as _;
    let unreadable = |e: std::io::Error| format!("cannot read the configuration file: {e}");
    let not_a_file = |meta: &std::fs::Metadata| {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a device, FIFO or socket)"
        };
        format!("cannot read the configuration file: it is {kind}; give the path of a YAML file")
    };
    // stat before open: opening a FIFO would block until someone writes to it.
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(not_a_file(&meta));
    }
    // Inspect the opened file too, so what is checked is what is read.
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(not_a_file(&meta));
    }
    let too_big = || {
        let limit = if max % (1024 * 1024) == 0 {
            format!("{} MiB", max / (1024 * 1024))
        } else {
            format!("{max} bytes")
        };
        format!(
            "cannot read the configuration file: it is larger than {limit}; this is not an agent configuration"
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    // A regular file may still grow while read, or report size 0 (procfs): read at most max + 1.
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("cannot read the configuration file: it is not UTF-8 text ({e})"))
}

/// Load configuration text, expanding `${VAR}` from the process environment.
pub fn load_str(text: &str, origin: &str) -> Result<Loaded, ConfigErrors> {
    load_str_with_env(text, origin, &|name| std::env::var(name).ok())
}

/// Load configuration text, with `env` standing for the environment (tests, dry runs).
pub fn load_str_with_env(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let mut ctx = Ctx {
        origin,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let loaded = load_inner(text, env, &mut ctx);
    match loaded {
        Some((config, secrets)) if ctx.errors.is_empty() => Ok(Loaded {
            config,
            warnings: ctx.warnings,
            secrets,
        }),
        _ => {
            if ctx.errors.is_empty() {
                ctx.error("", "the configuration could not be loaded");
            }
            Err(ConfigErrors {
                errors: ctx.errors,
                warnings: ctx.warnings,
            })
        }
    }
}

/// Check every backend name the offerings use against the backends this build has.
///
/// `known` answers whether `name` may serve `role` (e.g. `backend_api::Registry::knows`);
/// `known_names` is listed in the message. Errors carry the key path but no origin: attach it with
/// [`ConfigIssue::in_file`].
pub fn validate_backend_names(
    config: &AgentConfig,
    known: impl Fn(BackendRole, &str) -> bool,
    known_names: &[&str],
) -> Vec<ConfigError> {
    const ROLES: [BackendRole; 4] = [
        BackendRole::OrderProcessing,
        BackendRole::MembershipSync,
        BackendRole::Reporting,
        BackendRole::UsernameManagement,
    ];
    let listed = if known_names.is_empty() {
        "none".to_owned()
    } else {
        known_names.join(", ")
    };
    let mut errors = Vec::new();
    for (i, offering) in config.offerings.iter().enumerate() {
        for role in ROLES {
            if let Some(name) = offering.role_backend(role)
                && !known(role, name)
            {
                errors.push(ConfigIssue::new(
                    "",
                    format!("offerings[{i}].{}", role.config_key()),
                    format!("unknown backend '{name}' (this build has: {listed})"),
                ));
            }
        }
    }
    errors
}

/// Secret values of an already-typed configuration (tokens, OIDC secrets, Sentry DSN, secret-looking
/// `backend_settings` entries), for redaction when no [`Loaded`] is at hand.
pub fn secret_values_of(config: &AgentConfig) -> SecretValues {
    let mut secrets = SecretValues::default();
    if let Some(dsn) = &config.sentry_dsn {
        secrets.push(dsn.expose());
    }
    for offering in &config.offerings {
        secrets.push(offering.waldur_api_token.expose());
        if let Some(s) = &offering.oidc_client_secret {
            secrets.push(s.expose());
        }
        collect_secrets_map(&offering.backend_settings, &mut secrets);
    }
    secrets
}

/// Whether a key names a secret: `password`, `passwd`, `secret`, `passcode`, `credentials` or `dsn`
/// anywhere in it, or a `token`/`key` word (`api_key`, `refresh_token`) — except where the last
/// word says the value is not the secret itself (`token_type`, `token_file_path`, `api_key_url`).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let words: Vec<&str> = key
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    const NOT_THE_SECRET: [&str; 12] = [
        "type", "path", "file", "url", "uri", "enabled", "id", "name", "username", "endpoint",
        "realm", "verify",
    ];
    if words.last().is_some_and(|w| NOT_THE_SECRET.contains(w)) {
        return false;
    }
    [
        "password",
        "passwd",
        "secret",
        "passcode",
        "credentials",
        "dsn",
    ]
    .iter()
    .any(|s| key.contains(s))
        || words
            .iter()
            .any(|w| matches!(*w, "token" | "key" | "apikey" | "pass"))
}

fn collect_secrets_map(map: &Map<String, Value>, secrets: &mut SecretValues) {
    for (k, v) in map {
        match v {
            Value::String(s) if is_secret_key(k) => secrets.push(s),
            Value::Object(m) => collect_secrets_map(m, secrets),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(m) = item {
                        collect_secrets_map(m, secrets);
                    }
                }
            }
            _ => {}
        }
    }
}

struct Ctx<'a> {
    origin: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
}

impl Ctx<'_> {
    fn error(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors
            .push(ConfigIssue::new(self.origin, path, reason));
    }
    fn warn(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.warnings
            .push(ConfigIssue::new(self.origin, path, reason));
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn load_inner(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    ctx: &mut Ctx<'_>,
) -> Option<(AgentConfig, SecretValues)> {
    let mut root = parse_yaml(text, ctx)?;
    expand_tree(&mut root, "", env, ctx);
    let mut secrets = SecretValues::default();
    if let Value::Object(map) = &root {
        collect_secrets_map(map, &mut secrets);
    }
    let Value::Object(mut root) = root else {
        ctx.error(
            "",
            "the file must be a YAML mapping with an `offerings` list at the top",
        );
        return None;
    };
    normalise_legacy_layout(&mut root, ctx);

    let offerings_value = root.remove("offerings");
    let offering_values = match offerings_value {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => {
            ctx.error("offerings", "required key is missing (a list of offerings)");
            Vec::new()
        }
        Some(other) => {
            ctx.error(
                "offerings",
                format!("expected a list of offerings, found {}", kind_of(&other)),
            );
            Vec::new()
        }
    };
    root.insert("offerings".to_owned(), Value::Array(Vec::new()));
    let mut config: Option<AgentConfig> = typed(Value::Object(root), "", ctx);

    let mut offerings = Vec::with_capacity(offering_values.len());
    for (i, value) in offering_values.into_iter().enumerate() {
        if let Some(offering) = load_offering(value, i, ctx) {
            offerings.push(offering);
        }
    }
    if let Some(cfg) = config.as_mut() {
        cfg.offerings = offerings;
        validate_root(cfg, ctx);
    }
    if let Some(cfg) = &config {
        for s in secret_values_of(cfg).iter() {
            secrets.push(s);
        }
    }
    config.map(|c| (c, secrets))
}

fn parse_yaml(text: &str, ctx: &mut Ctx<'_>) -> Option<Value> {
    match serde_saphyr::from_str::<Value>(text) {
        Ok(Value::Null) => {
            ctx.error(
                "",
                "the file is empty: expected a mapping with an `offerings` list",
            );
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.location().map(|l| l.line());
            let reason = e.without_snippet().to_string();
            // Library advice that means nothing to an operator.
            let reason = strip_location_suffix(&reason)
                .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
            ctx.errors.push(ConfigIssue {
                origin: ctx.origin.to_owned(),
                line: Some(line.unwrap_or(1)),
                path: String::new(),
                reason: format!("invalid YAML: {reason}"),
            });
            None
        }
    }
}

/// serde-saphyr appends " at line L column C"; the line is already in our prefix.
fn strip_location_suffix(msg: &str) -> String {
    let msg = msg.trim();
    match msg.rfind(" at line ") {
        Some(pos) => msg[..pos].to_owned(),
        None => msg.to_owned(),
    }
}

fn expand_tree(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    ctx: &mut Ctx<'_>,
) {
    match value {
        Value::String(s) if expand::has_reference(s) || s.contains("$${") => {
            match expand::expand(s, env) {
                Ok(expanded) => *s = expanded,
                Err(e @ (ExpandError::Unset(_) | ExpandError::Malformed(_))) => {
                    ctx.error(path, e.to_string());
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &format!("{path}[{i}]"), env, ctx);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                expand_tree(v, &join(path, k), env, ctx);
            }
        }
        _ => {}
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Older layouts seen in plugin READMEs (the Rancher one): a top-level `waldur: {api_url, token}`,
/// per-offering `backend` / `components`, per-component `name` / `billing_type`, and
/// `logging: {level}`. Each is read as its current key, with a warning.
fn normalise_legacy_layout(root: &mut Map<String, Value>, ctx: &mut Ctx<'_>) {
    if let Some(Value::Object(logging)) = root.get("logging")
        && logging.len() == 1
        && !root.contains_key("log_level")
        && let Some(level) = logging.get("level").cloned()
    {
        root.remove("logging");
        root.insert("log_level".to_owned(), level);
        ctx.warn("logging.level", "legacy key, read as `log_level`");
    }

    let mut default_url = None;
    let mut default_token = None;
    if let Some(Value::Object(waldur)) = root.remove("waldur") {
        for (k, v) in waldur {
            match k.as_str() {
                "api_url" | "waldur_api_url" => default_url = Some(v),
                "token" | "api_token" | "waldur_api_token" => default_token = Some(v),
                _ => ctx.warn(format!("waldur.{k}"), "unknown key, ignored"),
            }
        }
        ctx.warn(
            "waldur",
            "legacy section: its api_url/token apply to every offering without waldur_api_url/waldur_api_token; prefer the per-offering keys",
        );
    }

    let Some(Value::Array(offerings)) = root.get_mut("offerings") else {
        return;
    };
    for (i, offering) in offerings.iter_mut().enumerate() {
        let Value::Object(o) = offering else { continue };
        let at = format!("offerings[{i}]");
        if let Some(url) = &default_url
            && !o.contains_key("waldur_api_url")
            && !o.contains_key("api_url")
        {
            o.insert("waldur_api_url".to_owned(), url.clone());
        }
        if let Some(token) = &default_token
            && !o.contains_key("waldur_api_token")
            && !o.contains_key("api_token")
        {
            o.insert("waldur_api_token".to_owned(), token.clone());
        }
        rename_legacy(o, "backend", "backend_settings", &at, ctx);
        rename_legacy(o, "components", "backend_components", &at, ctx);
        if let Some(Value::Object(components)) = o.get_mut("backend_components") {
            for (key, component) in components.iter_mut() {
                if let Value::Object(c) = component {
                    let at = format!("{at}.backend_components.{key}");
                    rename_legacy(c, "billing_type", "accounting_type", &at, ctx);
                    rename_legacy(c, "name", "label", &at, ctx);
                }
            }
        }
    }
}

fn rename_legacy(map: &mut Map<String, Value>, old: &str, new: &str, at: &str, ctx: &mut Ctx<'_>) {
    if map.contains_key(new) {
        return;
    }
    if let Some(v) = map.remove(old) {
        map.insert(new.to_owned(), v);
        ctx.warn(join(at, old), format!("legacy key, read as `{new}`"));
    }
}

/// Deserialise `value` as `T`; a failure is reported at its key path under `prefix`, and keys that
/// `T` does not know become warnings.
fn typed<T: DeserializeOwned>(value: Value, prefix: &str, ctx: &mut Ctx<'_>) -> Option<T> {
    let mut ignored = Vec::new();
    let result = {
        let mut on_ignored = |p: serde_ignored::Path<'_>| ignored.push(ignored_path(&p));
        let de = serde_ignored::Deserializer::new(value, &mut on_ignored);
        serde_path_to_error::deserialize::<_, T>(de)
    };
    for path in ignored {
        ctx.warn(join(prefix, &path), "unknown key, ignored");
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = e.into_inner().to_string();
            let (path, reason) = match missing_field(&message) {
                Some(field) => (join(&path, field), "required key is missing".to_owned()),
                None => (path, message),
            };
            let full = match (prefix.is_empty(), path.is_empty()) {
                (_, true) => prefix.to_owned(),
                (true, false) => path,
                (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
                (false, false) => format!("{prefix}.{path}"),
            };
            ctx.error(full, reason);
            None
        }
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => join(&ignored_path(parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// `backend_components` keys that `load-components` passes through to Waldur when set (§2.3).
pub const WALDUR_COMPONENT_FIELDS: &[&str] = &[
    "description",
    "min_value",
    "max_value",
    "max_available_limit",
    "default_limit",
    "limit_period",
    "article_code",
    "is_boolean",
    "is_prepaid",
    "min_prepaid_duration",
    "max_prepaid_duration",
    "prepaid_duration_step",
    "min_renewal_duration",
    "max_renewal_duration",
    "renewal_duration_step",
];

/// Component keys read by backends rather than Waldur. Anything beyond these, the typed fields and
/// [`WALDUR_COMPONENT_FIELDS`] still passes through, with a warning (usually a typo).
const BACKEND_COMPONENT_KEYS: &[&str] = &["target_components", "type", "factor"];

const LIMIT_PERIODS: [&str; 4] = ["annual", "month", "quarterly", "total"];

fn load_offering(value: Value, i: usize, ctx: &mut Ctx<'_>) -> Option<OfferingConfig> {
    let at = format!("offerings[{i}]");
    let Value::Object(mut map) = value else {
        ctx.error(at, format!("expected a mapping, found {}", kind_of(&value)));
        return None;
    };
    let token_key_present = ["waldur_api_token", "api_token"]
        .iter()
        .any(|k| map.contains_key(*k));
    let components = match map.remove("backend_components") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            ctx.error(
                format!("{at}.backend_components"),
                format!(
                    "expected a mapping of component name to settings, found {}",
                    kind_of(&other)
                ),
            );
            Map::new()
        }
    };
    let offering: Option<OfferingConfig> = typed(Value::Object(map), &at, ctx);

    let mut typed_components = indexmap::IndexMap::new();
    let mut components_ok = true;
    for (key, value) in components {
        let cat = format!("{at}.backend_components.{key}");
        match load_component(value, &key, &cat, ctx) {
            Some(c) => {
                typed_components.insert(key, c);
            }
            None => components_ok = false,
        }
    }
    let mut offering = offering?;
    offering.backend_components = typed_components;
    validate_offering(&mut offering, i, token_key_present, ctx);
    components_ok.then_some(offering)
}

fn load_component(
    value: Value,
    key: &str,
    at: &str,
    ctx: &mut Ctx<'_>,
) -> Option<BackendComponent> {
    let Value::Object(mut map) = value else {
        ctx.error(at, format!("expected a mapping, found {}", kind_of(&value)));
        return None;
    };
    if !map.contains_key("label") {
        // Only Waldur's display name; README examples omit it, so fall back to the key.
        map.insert("label".to_owned(), Value::String(key.to_owned()));
        ctx.warn(
            format!("{at}.label"),
            format!("missing, using the component key '{key}'"),
        );
    }
    const TYPED: [&str; 6] = [
        "measured_unit",
        "unit_factor",
        "unit_factor_reporting",
        "accounting_type",
        "label",
        "limit",
    ];
    for k in map.keys() {
        let k_str = k.as_str();
        if !TYPED.contains(&k_str)
            && !WALDUR_COMPONENT_FIELDS.contains(&k_str)
            && !BACKEND_COMPONENT_KEYS.contains(&k_str)
        {
            ctx.warn(
                join(at, k),
                "not a known component key; passed to the backend as-is",
            );
        }
    }
    let component: BackendComponent = typed(Value::Object(map), at, ctx)?;
    let mut ok = true;
    for (name, v) in [
        ("unit_factor", Some(component.unit_factor)),
        ("unit_factor_reporting", component.unit_factor_reporting),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            ctx.error(
                join(at, name),
                format!("must be a positive number, found {v}"),
            );
            ok = false;
        }
    }
    if let Some(limit) = component.limit
        && !(limit.is_finite() && limit >= 0.0)
    {
        ctx.error(
            join(at, "limit"),
            format!("must be zero or a positive number, found {limit}"),
        );
        ok = false;
    }
    match component.extra.get("limit_period") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if LIMIT_PERIODS.contains(&p.as_str()) => {}
        Some(other) => {
            ctx.error(
                join(at, "limit_period"),
                format!("must be one of {}, found {other}", LIMIT_PERIODS.join(", ")),
            );
            ok = false;
        }
    }
    ok.then_some(component)
}

const LOG_LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

fn validate_root(cfg: &mut AgentConfig, ctx: &mut Ctx<'_>) {
    if cfg.sentry_dsn.as_ref().is_some_and(|d| d.is_empty()) {
        cfg.sentry_dsn = None;
    }
    if let Some(dsn) = &cfg.sentry_dsn
        && let Err(reason) = check_http_url(dsn.expose())
    {
        // The DSN carries a key: never echo it.
        ctx.error("sentry_dsn", reason.replace(dsn.expose(), "***"));
    }
    if cfg
        .elastic_apm_server_url
        .as_deref()
        .is_some_and(|u| u.trim().is_empty())
    {
        cfg.elastic_apm_server_url = None;
    }
    if let Some(u) = &cfg.elastic_apm_server_url
        && let Err(reason) = check_http_url(u)
    {
        ctx.error("elastic_apm_server_url", reason);
    }
    if cfg
        .global_proxy
        .as_deref()
        .is_some_and(|u| u.trim().is_empty())
    {
        cfg.global_proxy = None;
    }
    if let Some(proxy) = &cfg.global_proxy {
        match url::Url::parse(proxy) {
            Ok(u) if u.scheme() == "https" && cfg.offerings.iter().any(|o| o.stomp_enabled) => {
                // As upstream 1.0.8: REST calls use it; the event WebSocket cannot be tunnelled
                // through TLS to the proxy and connects without it.
                ctx.warn(
                    "global_proxy",
                    "an https:// proxy carries the REST calls, but not the STOMP WebSocket, which connects directly; use http:// or socks5:// to route it too",
                );
            }
            Ok(u) if matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") => {}
            Ok(u) => ctx.error(
                "global_proxy",
                format!(
                    "scheme '{}' is not supported (use http, https, socks5 or socks5h)",
                    u.scheme()
                ),
            ),
            Err(e) => ctx.error("global_proxy", format!("not a valid URL: {e}")),
        }
    }
    if let Err(e) = jiff::tz::TimeZone::get(&cfg.timezone) {
        ctx.error(
            "timezone",
            format!(
                "'{}' is not a known IANA time zone (e.g. UTC, Europe/Tallinn): {e}",
                cfg.timezone
            ),
        );
    }
    let level = cfg.log_level.trim().to_ascii_uppercase();
    if LOG_LEVELS.contains(&level.as_str()) {
        cfg.log_level = level;
    } else {
        ctx.error(
            "log_level",
            format!(
                "'{}' is not one of {} (case-insensitive)",
                cfg.log_level,
                LOG_LEVELS.join(", ")
            ),
        );
    }
    if !(1..=12).contains(&cfg.reporting_periods) {
        ctx.error(
            "reporting_periods",
            format!(
                "must be between 1 and 12 (months reported), found {}",
                cfg.reporting_periods
            ),
        );
    }
    if cfg.log_shipping.ship_interval_seconds < 10 {
        ctx.error(
            "log_shipping.ship_interval_seconds",
            format!(
                "must be at least 10, found {}",
                cfg.log_shipping.ship_interval_seconds
            ),
        );
    }
    if cfg.log_shipping.buffer_size_mb < 1 {
        ctx.error(
            "log_shipping.buffer_size_mb",
            format!(
                "must be at least 1, found {}",
                cfg.log_shipping.buffer_size_mb
            ),
        );
    }
    if let Some(listen) = &cfg.metrics_listen
        && listen.parse::<std::net::SocketAddr>().is_err()
    {
        ctx.error(
            "metrics_listen",
            format!("'{listen}' is not an address:port such as 127.0.0.1:9090"),
        );
    }
    if cfg.order_concurrency == 0 {
        ctx.error("order_concurrency", "must be at least 1");
    }
    if cfg.heartbeat_path.trim().is_empty() {
        ctx.error("heartbeat_path", "must not be empty");
    }
    if cfg.offerings.is_empty() && ctx.errors.is_empty() {
        ctx.warn(
            "offerings",
            "no offerings configured: the agent has nothing to do",
        );
    }
}

fn check_http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must start with http:// or https://, found scheme '{}'",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(url)
}

fn validate_offering(o: &mut OfferingConfig, i: usize, token_key_present: bool, ctx: &mut Ctx<'_>) {
    let at = format!("offerings[{i}]");
    let key = |k: &str| format!("{at}.{k}");

    if o.name.trim().is_empty() {
        let fallback = if o.waldur_offering_uuid.trim().is_empty() {
            format!("offering-{}", i + 1)
        } else {
            o.waldur_offering_uuid.trim().to_owned()
        };
        ctx.warn(
            key("name"),
            format!("missing, the offering is called '{fallback}' in logs"),
        );
        o.name = fallback;
    }

    match check_http_url(&o.waldur_api_url) {
        Ok(_) => {
            let trimmed = o.waldur_api_url.trim();
            o.waldur_api_url = if trimmed.ends_with('/') {
                trimmed.to_owned()
            } else {
                format!("{trimmed}/")
            };
        }
        Err(reason) => ctx.error(key("waldur_api_url"), reason),
    }

    for v in [&mut o.oidc_token_url, &mut o.oidc_client_id] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    }
    if o.oidc_client_secret.as_ref().is_some_and(|s| s.is_empty()) {
        o.oidc_client_secret = None;
    }
    if let Some(u) = &o.oidc_token_url
        && let Err(reason) = check_http_url(u)
    {
        ctx.error(key("oidc_token_url"), reason);
    }
    let oidc_set = [
        o.oidc_token_url.is_some(),
        o.oidc_client_id.is_some(),
        o.oidc_client_secret.is_some(),
    ];
    if !o.waldur_api_token.is_empty() && oidc_set.contains(&true) && oidc_set.contains(&false) {
        // Upstream 1.0.8: the three OIDC keys go together, even next to a static token.
        let missing: Vec<&str> = ["oidc_token_url", "oidc_client_id", "oidc_client_secret"]
            .into_iter()
            .zip(oidc_set)
            .filter(|(_, set)| !set)
            .map(|(k, _)| k)
            .collect();
        ctx.error(
            key(missing[0]),
            format!(
                "oidc_token_url, oidc_client_id and oidc_client_secret must be set together; missing: {}",
                missing.join(", ")
            ),
        );
    }
    if o.stomp_enabled && o.waldur_api_token.is_empty() && !oidc_set.contains(&false) {
        // RabbitMQ takes the static token as the STOMP passcode: an OIDC-only offering gets no
        // events (upstream 1.0.8 refuses the configuration too).
        ctx.error(
            key("stomp_enabled"),
            "stomp_enabled needs waldur_api_token: the STOMP session logs in with the static API token, which an OIDC-only offering does not have (use polling, or set waldur_api_token)",
        );
    }
    if o.waldur_api_token.is_empty() {
        let missing: Vec<&str> = [
            ("oidc_token_url", o.oidc_token_url.is_none()),
            ("oidc_client_id", o.oidc_client_id.is_none()),
            ("oidc_client_secret", o.oidc_client_secret.is_none()),
        ]
        .iter()
        .filter(|(_, missing)| *missing)
        .map(|(k, _)| *k)
        .collect();
        if missing.len() == 3 {
            if token_key_present {
                // A blank placeholder, as in upstream's reference example: loadable, but say it.
                ctx.warn(
                    key("waldur_api_token"),
                    "empty and no OIDC client configured: requests to Waldur will be rejected until a token is set",
                );
            } else {
                ctx.error(
                    key("waldur_api_token"),
                    "no credentials: set waldur_api_token, or all of oidc_token_url, oidc_client_id and oidc_client_secret",
                );
            }
        } else if !missing.is_empty() {
            ctx.error(
                key(missing[0]),
                format!(
                    "OIDC needs oidc_token_url, oidc_client_id and oidc_client_secret together; missing: {}",
                    missing.join(", ")
                ),
            );
        }
    }

    let hex = o.offering_uuid_hex();
    if hex.is_empty() {
        ctx.warn(
            key("waldur_offering_uuid"),
            "empty: set it to the offering's UUID from Waldur",
        );
    } else if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        ctx.warn(
            key("waldur_offering_uuid"),
            format!("'{}' does not look like a UUID", o.waldur_offering_uuid),
        );
    }

    let backend_type = o.backend_type.trim().to_ascii_lowercase();
    if backend_type.is_empty() {
        ctx.error(key("backend_type"), "must not be empty");
    }
    o.backend_type = backend_type;

    for umask_key in ["default_homedir_umask", "homedir_umask"] {
        if let Some(v) = o.backend_settings.get(umask_key)
            && let Err(reason) = check_umask(v)
        {
            ctx.error(format!("{at}.backend_settings.{umask_key}"), reason);
        }
    }

    check_site_names(&o.backend_settings, &at, ctx);

    if o.stomp_ws_port == Some(0) {
        ctx.error(key("stomp_ws_port"), "must be between 1 and 65535");
    }
    if o.mqtt_port == Some(0) {
        ctx.error(key("mqtt_port"), "must be between 1 and 65535");
    }

    // Event-transport consistency: legal, but probably not what was meant.
    if o.stomp_enabled && o.mqtt_enabled {
        ctx.warn(
            key("mqtt_enabled"),
            "both stomp_enabled and mqtt_enabled are set: the offering receives every event twice (handlers are idempotent, but pick one)",
        );
    }
    if o.stomp_membership_sync_enabled == Some(true) && !o.events_enabled() {
        ctx.warn(
            key("stomp_membership_sync_enabled"),
            "MISCONFIGURATION: true while stomp_enabled and mqtt_enabled are off: nobody syncs membership for this offering",
        );
    }
    if !o.stomp_enabled
        && (o.stomp_ws_host.is_some() || o.stomp_ws_port.is_some() || o.stomp_ws_path.is_some())
    {
        ctx.warn(
            key("stomp_enabled"),
            "stomp_ws_* settings are present but stomp_enabled is false: they are unused",
        );
    }
    if !o.mqtt_enabled
        && (o.mqtt_host.is_some() || o.mqtt_port.is_some() || o.mqtt_ws_path.is_some())
    {
        ctx.warn(
            key("mqtt_enabled"),
            "mqtt_* settings are present but mqtt_enabled is false: they are unused",
        );
    }
    if o.events_enabled()
        && o.order_processing_backend.is_none()
        && o.membership_sync_backend.is_none()
    {
        ctx.warn(
            key("order_processing_backend"),
            "events are enabled but neither order_processing_backend nor membership_sync_backend is set: events are received and ignored",
        );
    }
}

/// `backend_settings` keys whose value starts every site name the backend makes (SLURM account
/// prefixes, OpenStack/OKD/Rancher project and namespace prefixes): empty, or a valid name.
const PREFIX_SETTINGS: [&str; 4] = [
    "allocation_prefix",
    "project_prefix",
    "customer_prefix",
    "namespace_prefix",
];

/// `backend_settings` keys whose value is itself a site name (SLURM accounts and QoS).
const NAME_SETTINGS: [&str; 6] = [
    "default_account",
    "root_account",
    "parent_account",
    "qos_default",
    "qos_paused",
    "qos_downscaled",
];

/// Apply the site-name rule ([`crate::names`]) to the prefixes and names an offering configures,
/// so `validate-config` refuses what a backend would refuse only once an order arrives.
fn check_site_names(settings: &Map<String, Value>, at: &str, ctx: &mut Ctx<'_>) {
    let checks = PREFIX_SETTINGS
        .iter()
        .map(|k| (*k, "prefix", crate::names::check_prefix as fn(&str) -> _))
        .chain(
            NAME_SETTINGS
                .iter()
                .map(|k| (*k, "name", crate::names::check_name as fn(&str) -> _)),
        );
    for (key, kind, check) in checks {
        let path = format!("{at}.backend_settings.{key}");
        match settings.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(value)) => {
                if let Err(reason) = check(value) {
                    ctx.error(
                        path,
                        format!(
                            "'{}' is not a usable {kind}: {reason}",
                            value.escape_default()
                        ),
                    );
                }
            }
            Some(other) => ctx.error(
                path,
                format!("expected a string {kind}, found {}", kind_of(other)),
            ),
        }
    }
}

fn check_umask(v: &Value) -> Result<(), String> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        // YAML reads an unquoted 0077 as the decimal 77; its digits are what the operator meant.
        Value::Number(n) => n.to_string(),
        other => {
            return Err(format!(
                "expected an octal string such as \"0077\", found {}",
                kind_of(other)
            ));
        }
    };
    let digits = text.strip_prefix("0o").unwrap_or(&text);
    match u32::from_str_radix(digits, 8) {
        Ok(n) if n <= 0o777 && !digits.is_empty() => Ok(()),
        Ok(_) => Err(format!("'{text}' is above 0777")),
        Err(_) => Err(format!(
            "'{text}' is not an octal umask such as \"0077\" (digits 0-7)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys() {
        for k in [
            "password",
            "keycloak_password",
            "client_secret",
            "refresh_token",
            "token",
            "api_key",
            "secret_key",
            "credentials",
            "stomp_passcode",
            "sentry_dsn",
            "OS_PASSWORD",
        ] {
            assert!(is_secret_key(k), "{k} should be secret");
        }
        for k in [
            "keycloak_url",
            "keycloak_realm",
            "token_type",
            "token_file_path",
            "username",
            "api_url",
            "backend_url",
            "keycloak_enabled",
            "keycloak_username",
        ] {
            assert!(!is_secret_key(k), "{k} should not be secret");
        }
    }

    #[test]
    fn umask_rule() {
        assert!(check_umask(&Value::String("0077".into())).is_ok());
        assert!(check_umask(&Value::String("0o700".into())).is_ok());
        assert!(check_umask(&Value::from(77)).is_ok());
        assert!(check_umask(&Value::String("0089".into())).is_err());
        assert!(check_umask(&Value::String("1777".into())).is_err());
        assert!(check_umask(&Value::String("".into())).is_err());
        assert!(check_umask(&Value::Bool(true)).is_err());
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reason = read_config_file(dir.path(), 1024).expect_err("a directory");
        assert!(reason.contains("it is a directory"), "{reason}");

        let reason = read_config_file(Path::new("/dev/zero"), 1024).expect_err("a device");
        assert!(reason.contains("not a regular file"), "{reason}");

        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; 2048]).expect("write");
        let reason = read_config_file(&big, 1024).expect_err("too large");
        assert!(reason.contains("larger than"), "{reason}");
        assert_eq!(
            read_config_file(&big, 4096).expect("small enough").len(),
            2048
        );

        // procfs files are regular and report size 0: the read itself is bounded.
        if let Ok(text) = read_config_file(Path::new("/proc/self/status"), 1 << 20) {
            assert!(text.contains("Name:"));
        }
        let reason = read_config_file(Path::new("/proc/self/maps"), 16).expect_err("bounded");
        assert!(reason.contains("larger than"), "{reason}");
    }

    #[test]
    fn issue_rendering() {
        let mut i = ConfigIssue::new("f.yaml", "offerings[0].x", "bad");
        assert_eq!(i.to_string(), "f.yaml: offerings[0].x: bad");
        i.line = Some(3);
        assert_eq!(i.to_string(), "f.yaml:3: bad");
        assert_eq!(ConfigIssue::new("", "a.b", "bad").to_string(), "a.b: bad");
    }
}
