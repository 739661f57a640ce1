//! Waldur limits ↔ the `waldur-quota` ResourceQuota, and Kubernetes quantities.
//!
//! | component | unit | `spec.hard` |
//! | --- | --- | --- |
//! | `cpu` | cores | `requests.cpu` = v, `limits.cpu` = 2v |
//! | `memory` | GiB | `requests.memory` = `<v>Gi`, `limits.memory` = `<2v>Gi` |
//! | `storage` | GiB | `requests.storage` = `<v>Gi` |
//! | `pods` | count | `pods` = v |
//!
//! Waldur amounts go through [`backend_api::units::site_amount`] with the component's
//! `unit_factor` (checked, never saturated): a quota holds whole site units.

use std::collections::BTreeMap;

use agent_config::BackendComponent;
use backend_api::units::{LimitError, site_amount};
use backend_api::{Amounts, Limits};
use indexmap::IndexMap;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quota's `spec.hard` or `status.used`.
pub type Hard = BTreeMap<String, Quantity>;

/// The components the quota knows.
pub const COMPONENTS: [&str; 4] = ["cpu", "memory", "storage", "pods"];

/// The largest site amount: `2 × v` must stay an exact integer.
pub const SITE_MAX: i64 = (1 << 52) - 1;

/// The quota's `spec.hard` keys written for each component.
pub fn hard_keys(component: &str) -> &'static [&'static str] {
    match component {
        "cpu" => &["requests.cpu", "limits.cpu"],
        "memory" => &["requests.memory", "limits.memory"],
        "storage" => &["requests.storage"],
        "pods" => &["pods"],
        _ => &[],
    }
}

fn factor(components: &IndexMap<String, BackendComponent>, key: &str) -> f64 {
    components.get(key).map_or(1.0, |c| c.unit_factor)
}

/// Waldur limits → site amounts (whole cores, GiB, pods), checked. Keys other than
/// [`COMPONENTS`] are refused: the quota could not hold them.
pub fn site_limits(
    limits: &Limits,
    components: &IndexMap<String, BackendComponent>,
) -> Result<Vec<(String, i64)>, LimitError> {
    let mut out = Vec::new();
    for (key, value) in limits {
        if !COMPONENTS.contains(&key.as_str()) {
            return Err(LimitError::new(
                key,
                *value,
                "is not a component of an OKD quota (cpu, memory, storage, pods)",
                0.0,
                0.0,
            ));
        }
        out.push((
            key.clone(),
            site_amount(key, *value, factor(components, key), SITE_MAX)?,
        ));
    }
    Ok(out)
}

/// Site amounts → `spec.hard`.
pub fn hard_from_site(site: &[(String, i64)]) -> Hard {
    let mut hard = Hard::new();
    for (key, v) in site {
        let mut put = |k: &str, q: String| {
            hard.insert(k.to_owned(), Quantity(q));
        };
        match key.as_str() {
            "cpu" => {
                put("requests.cpu", v.to_string());
                put("limits.cpu", (2 * v).to_string());
            }
            "memory" => {
                put("requests.memory", gi(*v));
                put("limits.memory", gi(2 * v));
            }
            "storage" => put("requests.storage", gi(*v)),
            "pods" => put("pods", v.to_string()),
            _ => {}
        }
    }
    hard
}

fn gi(v: i64) -> String {
    if v == 0 {
        "0".to_owned()
    } else {
        format!("{v}Gi")
    }
}

/// Two `spec.hard` maps hold the same quantities (`1000m` = `1`).
pub fn same_hard(a: &Hard, b: &Hard) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            let q = |v: &Quantity| parse_quantity(&v.0);
            b.get(k).is_some_and(|w| q(v).is_some() && q(v) == q(w))
        })
}

/// The same components, every amount `value` (pause: 0, downscale: 1).
pub fn uniform_hard(components: &[String], value: i64) -> Hard {
    let site: Vec<(String, i64)> = components.iter().map(|c| (c.clone(), value)).collect();
    hard_from_site(&site)
}

/// A Kubernetes quantity (`500m`, `16Gi`, `1e3`, `2k`) as a number of base units.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let suffixes: [(&str, f64); 14] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    for (suffix, mult) in suffixes {
        if let Some(num) = q.strip_suffix(suffix) {
            return num.parse::<f64>().ok().map(|n| n * mult);
        }
    }
    if let Some(num) = q.strip_suffix('E') {
        return num.parse::<f64>().ok().map(|n| n * 1e18);
    }
    q.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Site amount of one component from a quota map (`spec.hard` or `status.used`):
/// cores, GiB or a count.
pub fn component_amount(map: &Hard, component: &str) -> Option<f64> {
    let key = hard_keys(component).first()?;
    let q = parse_quantity(&map.get(*key)?.0)?;
    Some(match component {
        "memory" | "storage" => q / 1024f64.powi(3),
        _ => q,
    })
}

/// `spec.hard` → Waldur limits (components present only).
pub fn limits_from_hard(hard: &Hard, components: &IndexMap<String, BackendComponent>) -> Limits {
    COMPONENTS
        .iter()
        .filter_map(|c| {
            component_amount(hard, c).map(|v| ((*c).to_owned(), v / factor(components, c)))
        })
        .collect()
}

/// `status.used` → usage in site units (cores, GiB, pods) of the given components.
pub fn usage_from_used(used: &Hard) -> Amounts {
    COMPONENTS
        .iter()
        .map(|c| ((*c).to_owned(), component_amount(used, c).unwrap_or(0.0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn as_json(hard: &Hard) -> Value {
        serde_json::to_value(hard).expect("json")
    }

    fn limits(pairs: &[(&str, f64)]) -> Limits {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn the_seed_table() {
        let none = IndexMap::new();
        let site = site_limits(
            &limits(&[
                ("cpu", 4.0),
                ("memory", 16.0),
                ("storage", 100.0),
                ("pods", 50.0),
            ]),
            &none,
        )
        .expect("ok");
        let hard = hard_from_site(&site);
        assert_eq!(
            as_json(&hard),
            json!({"requests.cpu": "4", "limits.cpu": "8", "requests.memory": "16Gi",
                   "limits.memory": "32Gi", "requests.storage": "100Gi", "pods": "50"})
        );
        assert_eq!(
            limits_from_hard(&hard, &none),
            limits(&[
                ("cpu", 4.0),
                ("memory", 16.0),
                ("storage", 100.0),
                ("pods", 50.0)
            ])
        );
    }

    #[test]
    fn refused_not_saturated() {
        let none = IndexMap::new();
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e30, 0.5] {
            let e = site_limits(&limits(&[("cpu", bad)]), &none).expect_err("refused");
            assert_eq!(e.component, "cpu");
        }
        let e = site_limits(&limits(&[("gpu", 1.0)]), &none).expect_err("unknown");
        assert_eq!(e.component, "gpu");
    }

    #[test]
    fn unit_factor_applies() {
        let mut comps = IndexMap::new();
        comps.insert(
            "memory".to_owned(),
            BackendComponent {
                measured_unit: "MiB".into(),
                unit_factor: 1.0 / 1024.0,
                unit_factor_reporting: None,
                accounting_type: agent_config::AccountingType::Limit,
                label: "m".into(),
                limit: None,
                extra: Default::default(),
            },
        );
        let site = site_limits(&limits(&[("memory", 2048.0)]), &comps).expect("ok");
        assert_eq!(site, vec![("memory".to_owned(), 2)]);
        assert_eq!(
            limits_from_hard(&hard_from_site(&site), &comps),
            limits(&[("memory", 2048.0)])
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("512Mi"), Some(536870912.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("2k"), Some(2000.0));
        assert_eq!(parse_quantity("x"), None);
        let used = json!({"requests.cpu": "1500m", "requests.memory": "512Mi", "pods": "3"});
        let used: Hard = serde_json::from_value(used).expect("quantities");
        let u = usage_from_used(&used);
        assert_eq!(u["cpu"], 1.5);
        assert_eq!(u["memory"], 0.5);
        assert_eq!(u["storage"], 0.0);
        assert_eq!(u["pods"], 3.0);
    }

    #[test]
    fn pause_and_downscale_amounts() {
        let comps = vec!["cpu".to_owned(), "pods".to_owned()];
        assert_eq!(
            as_json(&uniform_hard(&comps, 0)),
            json!({"requests.cpu": "0", "limits.cpu": "0", "pods": "0"})
        );
        assert_eq!(
            as_json(&uniform_hard(&comps, 1)),
            json!({"requests.cpu": "1", "limits.cpu": "2", "pods": "1"})
        );
    }
}
