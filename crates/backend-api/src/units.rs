//! Unit conversion between Waldur units and site units: the one place `unit_factor` is applied.
//!
//! `site = waldur × unit_factor` for limits; `waldur = site ÷ reporting factor` for usage.

use agent_config::BackendComponent;
use indexmap::IndexMap;

use crate::domain::{Amounts, Limits};

/// Waldur-unit limits → site-unit limits (truncated to integers, as upstream does).
/// Components without a definition pass through with factor 1.
pub fn limits_to_site(limits: &Limits, components: &IndexMap<String, BackendComponent>) -> Limits {
    limits
        .iter()
        .map(|(key, amount)| {
            let factor = components.get(key).map_or(1.0, |c| c.unit_factor);
            (key.clone(), (*amount as f64 * factor) as i64)
        })
        .collect()
}

/// Site-unit limits → Waldur-unit limits (rounded to the nearest integer, so that reading back a
/// limit we wrote gives the same number and never grows it).
pub fn limits_from_site(
    limits: &Limits,
    components: &IndexMap<String, BackendComponent>,
) -> Limits {
    limits
        .iter()
        .map(|(key, amount)| {
            let factor = components.get(key).map_or(1.0, |c| c.unit_factor);
            let waldur = if factor == 0.0 {
                0.0
            } else {
                *amount as f64 / factor
            };
            (key.clone(), waldur.round() as i64)
        })
        .collect()
}

/// Site-unit usage → Waldur-unit usage (reporting factor; a factor of 0 gives 0).
pub fn usage_from_site(
    amounts: &Amounts,
    components: &IndexMap<String, BackendComponent>,
) -> Amounts {
    amounts
        .iter()
        .map(|(key, amount)| {
            let factor = components
                .get(key)
                .map_or(1.0, BackendComponent::reporting_factor);
            let waldur = if factor == 0.0 { 0.0 } else { amount / factor };
            (key.clone(), waldur)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_config::AccountingType;

    fn comp(factor: f64) -> BackendComponent {
        BackendComponent {
            measured_unit: "k-Hours".into(),
            unit_factor: factor,
            unit_factor_reporting: None,
            accounting_type: AccountingType::Usage,
            label: "CPU".into(),
            limit: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn limits_round_trip_never_grows() {
        let mut components = IndexMap::new();
        components.insert("cpu".to_owned(), comp(60_000.0));
        components.insert("mem".to_owned(), comp(61_440.0));
        let waldur: Limits = [
            ("cpu".to_owned(), 7),
            ("mem".to_owned(), 3),
            ("gpu".to_owned(), 2),
        ]
        .into();
        let site = limits_to_site(&waldur, &components);
        assert_eq!(site["cpu"], 420_000);
        assert_eq!(site["gpu"], 2, "unknown components pass through");
        for _ in 0..5 {
            assert_eq!(
                limits_from_site(&limits_to_site(&waldur, &components), &components),
                waldur
            );
        }
    }

    #[test]
    fn usage_is_divided_by_the_factor() {
        let mut components = IndexMap::new();
        components.insert("cpu".to_owned(), comp(60_000.0));
        let usage = usage_from_site(&[("cpu".to_owned(), 120_000.0)].into(), &components);
        assert_eq!(usage["cpu"], 2.0);
    }
}
