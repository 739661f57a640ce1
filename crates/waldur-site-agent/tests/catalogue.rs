//! `export-plugin-catalogue`: valid JSON, one entry per backend of this build, and settings
//! schemas that accept the seed examples (and refuse what `validate-config` refuses).

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

fn catalogue() -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalogue.json");
    let out = Command::cargo_bin("waldur-site-agent")
        .expect("binary")
        .args(["export-plugin-catalogue", "-o"])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("written")).expect("valid JSON")
}

/// The subset of JSON Schema the catalogue uses: type, enum, pattern, properties, required,
/// minimum/exclusiveMinimum. Returns the problems found, with their paths.
fn validate(schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(kind) = schema["type"].as_str() {
        let ok = match kind {
            "object" => value.is_object(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "array" => value.is_array(),
            other => panic!("schema type {other} not expected"),
        };
        if !ok && !value.is_null() {
            problems.push(format!("{at}: not {kind}: {value}"));
            return;
        }
    }
    if let (Some(options), Some(v)) = (schema["enum"].as_array(), value.as_str())
        && !options.iter().any(|o| o.as_str() == Some(v))
    {
        problems.push(format!("{at}: {v} not in {options:?}"));
    }
    if let (Some(pattern), Some(v)) = (schema["pattern"].as_str(), value.as_str())
        && !regex::Regex::new(pattern).expect("pattern").is_match(v)
    {
        problems.push(format!("{at}: '{v}' does not match {pattern}"));
    }
    if let Some(n) = value.as_f64() {
        if schema["exclusiveMinimum"].as_f64().is_some_and(|m| n <= m)
            || schema["minimum"].as_f64().is_some_and(|m| n < m)
        {
            problems.push(format!("{at}: {n} below the minimum"));
        }
    }
    if let Some(required) = schema["required"].as_array() {
        for key in required.iter().filter_map(Value::as_str) {
            if value.get(key).is_none() {
                problems.push(format!("{at}.{key}: required"));
            }
        }
    }
    if let (Some(properties), Some(object)) = (schema["properties"].as_object(), value.as_object())
    {
        for (key, v) in object {
            if let Some(s) = properties.get(key) {
                validate(s, v, &format!("{at}.{key}"), problems);
            }
        }
    }
}

fn seeds() -> Vec<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent-config/tests/fixtures/seeds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("seeds")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn catalogue_lists_every_backend_with_schemas() {
    let c = catalogue();
    assert_eq!(c["catalogue_version"], 1);
    assert_eq!(c["agent_version"], env!("CARGO_PKG_VERSION"));
    let backends = c["backends"].as_array().expect("backends");
    let names: Vec<&str> = backends.iter().filter_map(|b| b["name"].as_str()).collect();
    assert!(
        names.contains(&"slurm") && names.contains(&"openstack"),
        "{names:?}"
    );
    let openstack = backends
        .iter()
        .find(|b| b["name"] == "openstack")
        .expect("openstack");
    assert_eq!(
        openstack["roles"],
        serde_json::json!(["order_processing_backend", "membership_sync_backend"])
    );
    assert_eq!(
        openstack["secret_fields"],
        serde_json::json!(["password", "application_credential_secret"])
    );
    for b in backends {
        assert_eq!(b["settings_schema"]["type"], "object", "{}", b["name"]);
        assert_eq!(b["component_schema"]["type"], "object", "{}", b["name"]);
    }
}

#[test]
fn settings_schemas_validate_the_seed_examples() {
    let c = catalogue();
    let env = |name: &str| Some(format!("{name}-value"));
    let mut checked = 0;
    for path in seeds() {
        let text = std::fs::read_to_string(&path).expect("seed");
        let loaded = agent_config::load_str_with_env(&text, "seed", &env)
            .unwrap_or_else(|e| panic!("{} loads: {e}", path.display()));
        for (i, offering) in loaded.config.offerings.iter().enumerate() {
            let Some(entry) = c["backends"].as_array().and_then(|b| {
                b.iter()
                    .find(|b| b["name"] == offering.backend_type.as_str())
            }) else {
                continue;
            };
            let mut problems = Vec::new();
            let settings = Value::Object(offering.backend_settings.clone());
            validate(
                &entry["settings_schema"],
                &settings,
                "backend_settings",
                &mut problems,
            );
            let components = serde_json::to_value(&offering.backend_components).expect("json");
            for (key, component) in components.as_object().expect("map") {
                validate(
                    &entry["component_schema"],
                    component,
                    &format!("backend_components.{key}"),
                    &mut problems,
                );
            }
            assert!(
                problems.is_empty(),
                "{} offerings[{i}]: {problems:?}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "the SLURM and OpenStack seed offerings were checked"
    );

    // And a hostile prefix or a wrong type is refused by the schema too.
    let slurm = c["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "slurm"))
        .expect("slurm");
    let mut problems = Vec::new();
    validate(
        &slurm["settings_schema"],
        &serde_json::json!({"allocation_prefix": "a b", "batch_load": "yes"}),
        "backend_settings",
        &mut problems,
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}
