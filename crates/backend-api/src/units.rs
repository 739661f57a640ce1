//! Unit conversion between Waldur units and site units: the one place `unit_factor` is applied,
//! and the one place a limit is checked.
//!
//! `site = waldur × unit_factor` for limits; `waldur = site ÷ reporting factor` for usage.
//!
//! # Limits are checked, never saturated
//!
//! Waldur sends limits as JSON numbers, which may be fractional, huge (`1e30`,
//! `99999999999999999999`) or, as decimal strings, `NaN`/`inf`. [`Limits`] keeps them as `f64` in
//! Waldur units up to the site conversion, and every conversion to a site integer goes through
//! [`site_amount`], which refuses instead of saturating (a Rust `as i64` turns `1e30` into
//! `i64::MAX`, which SLURM reads as unlimited). A limit is accepted when it is
//! - a finite number, not negative ([`check_limit`]),
//! - within the offering component's `min_value`/`max_value` when Waldur gives them
//!   ([`LimitBounds::from_waldur`], Mastermind's semantics: `0`/absent = no bound),
//! - after `unit_factor` (and a backend's own factors), a whole number of site units no larger
//!   than the site's maximum (each backend names its own: [`MAX_EXACT_INTEGER`] by default).
//!
//! Fractions are converted exactly where the site can represent them (0.5 gpu-Hours × 60 = 30
//! GPU-minutes); an amount that is not a whole number of site units (0.001 gpu-Hours = 0.06
//! minutes) is refused rather than rounded, so what the site enforces is what was ordered.
//! Reading back divides by the same factor without rounding, so a value written reads back
//! as the same `f64` (both are the correctly rounded quotient of the same integers) and limits
//! never change by echo.

use std::collections::BTreeMap;

use agent_config::BackendComponent;
use indexmap::IndexMap;

use crate::domain::{Amounts, Limits};

/// Component key → amount in **site units** (what is written to the site).
pub type SiteLimits = BTreeMap<String, i64>;

/// 2^53 − 1: the largest integer an `f64` holds exactly, and the default largest site amount.
/// Above it `waldur × factor` is no longer exact and `site ÷ factor` no longer reads back
/// what was written; it is also far below every "infinite" sentinel sites use (SLURM's
/// `INFINITE64`/`NO_VAL64` near 2^64, `i64::MAX`), so no accepted limit can mean "unlimited".
pub const MAX_EXACT_INTEGER: i64 = (1 << 53) - 1;

/// A limit that was refused: names the component, the value and the range that is allowed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error(
    "limit {component}={value} refused: {reason}; allowed for {component}: {range}",
    value = fmt_amount(*.value),
    range = self.range()
)]
pub struct LimitError {
    pub component: String,
    /// The refused amount, in Waldur units.
    pub value: f64,
    pub reason: String,
    /// Smallest allowed amount, in Waldur units.
    pub min: f64,
    /// Largest allowed amount, in Waldur units (infinite: no upper bound but finiteness).
    pub max: f64,
}

impl LimitError {
    pub fn new(component: &str, value: f64, reason: impl Into<String>, min: f64, max: f64) -> Self {
        LimitError {
            component: component.to_owned(),
            value,
            reason: reason.into(),
            min,
            max,
        }
    }

    fn range(&self) -> String {
        if self.max.is_finite() {
            format!("{} to {}", fmt_amount(self.min), fmt_amount(self.max))
        } else {
            format!("a finite number of at least {}", fmt_amount(self.min))
        }
    }
}

/// An amount for messages: plain decimals for ordinary values, exponent form for huge ones.
pub fn fmt_amount(value: f64) -> String {
    if value.is_finite() && value.abs() < 1e16 {
        format!("{value}")
    } else {
        format!("{value:?}")
    }
}

/// What Waldur allows for one component, in Waldur units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitBounds {
    pub min: f64,
    pub max: f64,
}

impl Default for LimitBounds {
    /// Not negative, otherwise unbounded (the site conversion bounds it).
    fn default() -> Self {
        LimitBounds {
            min: 0.0,
            max: f64::INFINITY,
        }
    }
}

impl LimitBounds {
    /// An offering component's `min_value`/`max_value` the way Mastermind reads them
    /// (`validate_min_max_limit`): a bound of `0`, a negative one or none is no bound.
    pub fn from_waldur(min_value: Option<f64>, max_value: Option<f64>) -> Self {
        let set = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0);
        LimitBounds {
            min: set(min_value).unwrap_or(0.0),
            max: set(max_value).unwrap_or(f64::INFINITY),
        }
    }
}

/// Checks one Waldur-unit amount: finite, not negative, within `bounds`.
pub fn check_limit(component: &str, value: f64, bounds: LimitBounds) -> Result<(), LimitError> {
    let refuse = |reason: String| {
        Err(LimitError::new(
            component, value, reason, bounds.min, bounds.max,
        ))
    };
    if !value.is_finite() {
        return refuse("not a finite number".into());
    }
    if value < 0.0 {
        return refuse("negative".into());
    }
    if value < bounds.min {
        return refuse(format!(
            "below the component's min_value {}",
            fmt_amount(bounds.min)
        ));
    }
    if value > bounds.max {
        return refuse(format!(
            "above the component's max_value {}",
            fmt_amount(bounds.max)
        ));
    }
    Ok(())
}

/// For a site that stores Waldur amounts as they are (factor 1, fractions allowed): finite, not
/// negative, at most `site_max`.
pub fn check_plain_limit(component: &str, value: f64, site_max: i64) -> Result<(), LimitError> {
    let max = site_max as f64;
    check_limit(component, value, LimitBounds::default()).map_err(|e| LimitError { max, ..e })?;
    if value > max {
        return Err(LimitError::new(
            component,
            value,
            format!("above the site's maximum {site_max}"),
            0.0,
            max,
        ));
    }
    Ok(())
}

/// Checks every amount of `limits` against the bounds of its component (default bounds for
/// components without an entry); the first refusal, in key order.
pub fn check_limits(
    limits: &Limits,
    bounds: &BTreeMap<String, LimitBounds>,
) -> Result<(), LimitError> {
    for (key, value) in limits {
        check_limit(key, *value, bounds.get(key).copied().unwrap_or_default())?;
    }
    Ok(())
}

/// `value × factor` when it is a whole number (within the rounding of the multiplication).
fn whole(product: f64) -> Option<f64> {
    let rounded = product.round();
    let tolerance = (product.abs() * 1e-15).max(1e-9);
    ((product - rounded).abs() <= tolerance).then_some(rounded)
}

/// The largest Waldur amount whose product with `factor` stays within `site_max` (for messages).
fn allowed_max(site_max: i64, factor: f64) -> f64 {
    if factor <= 0.0 || factor.is_nan() {
        return f64::INFINITY;
    }
    let max = site_max as f64 / factor;
    if max > 0.0 && max * factor > site_max as f64 {
        // The quotient was rounded up: step down to the next smaller f64.
        f64::from_bits(max.to_bits() - 1)
    } else {
        max
    }
}

/// The checked conversion: a Waldur-unit amount × `factor` → a site integer in `0..=site_max`.
/// Refuses (never saturates) non-finite and negative amounts, amounts above `site_max` after the
/// factor, and amounts that are not a whole number of site units.
pub fn site_amount(
    component: &str,
    value: f64,
    factor: f64,
    site_max: i64,
) -> Result<i64, LimitError> {
    let max_waldur = allowed_max(site_max, factor);
    check_limit(
        component,
        value,
        LimitBounds {
            min: 0.0,
            max: f64::INFINITY,
        },
    )
    .map_err(|e| LimitError {
        max: max_waldur,
        ..e
    })?;
    let refuse = |reason: String| Err(LimitError::new(component, value, reason, 0.0, max_waldur));
    let product = value * factor;
    if product.is_nan() || product < 0.0 {
        return refuse(format!(
            "× unit factor {} gives {} site units",
            fmt_amount(factor),
            fmt_amount(product)
        ));
    }
    if product > site_max as f64 {
        return refuse(format!(
            "{} site units (× {}) exceed the site's maximum {site_max}",
            fmt_amount(product),
            fmt_amount(factor)
        ));
    }
    let Some(rounded) = whole(product) else {
        return refuse(format!(
            "{} site units (× {}) is not a whole number; the site counts whole units",
            fmt_amount(product),
            fmt_amount(factor)
        ));
    };
    // In range and whole: exact, since rounded ≤ site_max < 2^63.
    Ok(rounded as i64)
}

/// Waldur-unit limits → site-unit limits, each through [`site_amount`]. Components without a
/// definition pass through with factor 1.
pub fn limits_to_site(
    limits: &Limits,
    components: &IndexMap<String, BackendComponent>,
    site_max: i64,
) -> Result<SiteLimits, LimitError> {
    limits
        .iter()
        .map(|(key, amount)| {
            let factor = components.get(key).map_or(1.0, |c| c.unit_factor);
            Ok((key.clone(), site_amount(key, *amount, factor, site_max)?))
        })
        .collect()
}

/// Site-unit limits → Waldur-unit limits: divided by the factor, not rounded, so reading back a
/// limit we wrote gives the same number (and a fraction stays a fraction).
pub fn limits_from_site(
    limits: &SiteLimits,
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
            (key.clone(), waldur)
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
            ("cpu".to_owned(), 7.0),
            ("mem".to_owned(), 3.0),
            ("gpu".to_owned(), 2.0),
        ]
        .into();
        let site = limits_to_site(&waldur, &components, MAX_EXACT_INTEGER).expect("in range");
        assert_eq!(site["cpu"], 420_000);
        assert_eq!(site["gpu"], 2, "unknown components pass through");
        for _ in 0..5 {
            let site = limits_to_site(&waldur, &components, MAX_EXACT_INTEGER).expect("in range");
            assert_eq!(limits_from_site(&site, &components), waldur);
        }
    }

    #[test]
    fn fractions_convert_exactly_and_read_back_unchanged() {
        // 0.5 gpu-Hours × 60 = 30 GPU-minutes, and decimals whose product is whole in decimal
        // but not in binary floating point (0.07 × 100 = 7.000000000000001 in f64).
        let cases = [
            (0.5, 60.0, 30),
            (0.07, 100.0, 7),
            (1.1, 60_000.0, 66_000),
            (0.1, 61_440.0, 6_144),
            (10.4, 60_000.0, 624_000),
            (0.25, 4.0, 1),
        ];
        for (value, factor, expected) in cases {
            let site = site_amount("gpu", value, factor, MAX_EXACT_INTEGER).expect("whole");
            assert_eq!(site, expected, "{value} × {factor}");
            assert_eq!(site as f64 / factor, value, "{value} reads back as written");
        }
    }

    #[test]
    fn a_fraction_of_a_site_unit_is_refused_not_rounded() {
        let e = site_amount("gpu", 0.001, 60.0, MAX_EXACT_INTEGER).expect_err("0.06 minutes");
        assert!(e.reason.contains("not a whole number"), "{e}");
        let e = site_amount("cores", 0.5, 1.0, i64::from(i32::MAX)).expect_err("half a core");
        assert_eq!(e.component, "cores");
        assert_eq!(e.value, 0.5);
    }

    #[test]
    fn non_finite_and_negative_amounts_are_refused() {
        for value in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            -0.5,
            -1e30,
        ] {
            let e = site_amount("gpu", value, 60.0, MAX_EXACT_INTEGER)
                .expect_err("refused before any arithmetic");
            assert_eq!(e.component, "gpu");
            assert!(
                e.value.is_nan() && value.is_nan() || e.value == value,
                "{e:?}"
            );
            let e = check_limit("gpu", value, LimitBounds::default()).expect_err("refused");
            assert!(
                e.reason == "not a finite number" || e.reason == "negative",
                "{e}"
            );
        }
        // Negative zero is zero.
        assert_eq!(site_amount("gpu", -0.0, 60.0, MAX_EXACT_INTEGER), Ok(0));
    }

    #[test]
    fn huge_amounts_are_refused_never_saturated() {
        // `as i64` would give i64::MAX (SLURM: unlimited) for both.
        let from_json: f64 = serde_json::from_str("99999999999999999999").expect("json number");
        for value in [1e30, from_json, 1e17, f64::MAX] {
            let e = site_amount("gpu", value, 60.0, MAX_EXACT_INTEGER).expect_err("too large");
            assert!(e.reason.contains("exceed the site's maximum"), "{e}");
            assert!(e.max * 60.0 <= MAX_EXACT_INTEGER as f64, "{e:?}");
            assert!(e.max > 1.5e14, "{e:?}");
            let message = e.to_string();
            assert!(message.contains("gpu="), "{message}");
            assert!(message.contains("allowed for gpu: 0 to "), "{message}");
        }
        let e = site_amount("gpu", 1e30, 60.0, MAX_EXACT_INTEGER).expect_err("too large");
        assert_eq!(
            e.to_string(),
            "limit gpu=1e30 refused: 6e31 site units (× 60) exceed the site's maximum \
             9007199254740991; allowed for gpu: 0 to 150119987579016.5"
        );
        // The largest allowed amount itself is accepted, one site unit more is not.
        assert_eq!(
            site_amount("cpu", MAX_EXACT_INTEGER as f64, 1.0, MAX_EXACT_INTEGER),
            Ok(MAX_EXACT_INTEGER)
        );
        assert!(site_amount("cpu", 2_147_483_648.0, 1.0, i64::from(i32::MAX)).is_err());
        assert_eq!(
            site_amount("cpu", 2_147_483_647.0, 1.0, i64::from(i32::MAX)),
            Ok(2_147_483_647)
        );
    }

    #[test]
    fn waldur_bounds_follow_mastermind() {
        let bounds = LimitBounds::from_waldur(Some(2.0), Some(100.0));
        assert!(check_limit("cpu", 50.0, bounds).is_ok());
        assert!(check_limit("cpu", 2.0, bounds).is_ok());
        assert!(check_limit("cpu", 100.0, bounds).is_ok());
        let e = check_limit("cpu", 100.5, bounds).expect_err("above max");
        assert_eq!(
            e.to_string(),
            "limit cpu=100.5 refused: above the component's max_value 100; allowed for cpu: 2 to 100"
        );
        let e = check_limit("cpu", 1.0, bounds).expect_err("below min");
        assert!(e.reason.contains("min_value 2"), "{e}");
        // 0 or absent is no bound, as in Mastermind's `if component.max_value and ...`.
        let open = LimitBounds::from_waldur(Some(0.0), None);
        assert_eq!(open, LimitBounds::default());
        assert!(check_limit("cpu", 1e300, open).is_ok());
        let e = check_limit("cpu", f64::NAN, open).expect_err("NaN");
        assert!(
            e.to_string().contains("a finite number of at least 0"),
            "{e}"
        );
    }

    #[test]
    fn check_limits_uses_each_components_bounds() {
        let bounds: BTreeMap<String, LimitBounds> =
            [("gpu".to_owned(), LimitBounds::from_waldur(None, Some(10.0)))].into();
        assert!(
            check_limits(
                &[("gpu".to_owned(), 10.0), ("cpu".to_owned(), 1e6)].into(),
                &bounds
            )
            .is_ok()
        );
        let e = check_limits(&[("gpu".to_owned(), 11.0)].into(), &bounds).expect_err("over");
        assert_eq!(e.component, "gpu");
        let e = check_limits(&[("cpu".to_owned(), -1.0)].into(), &bounds).expect_err("neg");
        assert_eq!(e.component, "cpu");
    }

    #[test]
    fn usage_is_divided_by_the_factor() {
        let mut components = IndexMap::new();
        components.insert("cpu".to_owned(), comp(60_000.0));
        let usage = usage_from_site(&[("cpu".to_owned(), 120_000.0)].into(), &components);
        assert_eq!(usage["cpu"], 2.0);
    }
}
