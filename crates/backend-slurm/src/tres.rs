//! Waldur components ↔ SLURM TRES: limit conversion (with `unit_factor` or `target_components`),
//! TRES strings (`cpu=10,mem=2000M`), elapsed times and usage conversion.

use std::collections::{BTreeMap, BTreeSet};

use agent_config::{AccountingType, BackendComponent};
use backend_api::units::{LimitError, limits_from_site, site_amount, usage_from_site};
use backend_api::{Amounts, Limits};
use indexmap::IndexMap;
use jiff::civil::Date;

/// TRES name → amount in site units (TRES-minutes, MB-minutes for `mem`).
pub type TresAmounts = BTreeMap<String, i64>;

/// The largest TRES-minutes limit written: 2^53 − 1 ([`backend_api::units::MAX_EXACT_INTEGER`],
/// about 17 billion CPU-years). sacctmgr keeps TRES limits as `uint64_t` with `INFINITE64`
/// (2^64 − 1) and `NO_VAL64` (2^64 − 2) as "no limit" sentinels, and anything near them (such as
/// the `i64::MAX` an unchecked `as i64` saturates to) is unlimited in practice. Staying at 2^53
/// keeps every accepted limit a real budget, exact in `f64` (so it reads back unchanged), and
/// far from the sentinels.
pub const MAX_TRES_MINUTES: i64 = backend_api::units::MAX_EXACT_INTEGER;

/// The offering's components and how they map onto TRES.
#[derive(Clone, Debug, Default)]
pub struct ComponentMap {
    components: IndexMap<String, BackendComponent>,
    /// source component → [(TRES, factor)] when `target_components` is used.
    targets: BTreeMap<String, Vec<(String, f64)>>,
}

impl ComponentMap {
    pub fn new(components: IndexMap<String, BackendComponent>) -> Self {
        let mut targets = BTreeMap::new();
        for (key, component) in &components {
            let Some(serde_json::Value::Object(map)) = component.extra.get("target_components")
            else {
                continue;
            };
            let mut list: Vec<(String, f64)> = map
                .iter()
                .map(|(tres, spec)| {
                    let factor = spec
                        .get("factor")
                        .and_then(serde_json::Value::as_f64)
                        .or_else(|| spec.as_f64())
                        .unwrap_or(1.0);
                    (tres.clone(), factor)
                })
                .collect();
            list.sort_by(|a, b| a.0.cmp(&b.0));
            targets.insert(key.clone(), list);
        }
        ComponentMap {
            components,
            targets,
        }
    }

    /// Whether `target_components` is in use by some component (components without targets still
    /// apply their own `unit_factor`; upstream dropped it there, which silently turned k-Hours
    /// into minutes as soon as one component of the offering was mapped).
    pub fn is_mapped(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Every TRES name the offering touches.
    pub fn tres_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for key in self.components.keys() {
            match self.targets.get(key) {
                Some(list) => names.extend(list.iter().map(|(t, _)| t.clone())),
                None => {
                    names.insert(key.clone());
                }
            }
        }
        names
    }

    pub fn components(&self) -> &IndexMap<String, BackendComponent> {
        &self.components
    }

    /// Limits to write, in Waldur units: usage components with a configured `limit`, then the
    /// ordered limits of limit/prepaid components. Each comes with the multiplier it gets on top
    /// of its factors (`prepaid_months` for prepaid ones, else 1).
    pub fn resource_limits(
        &self,
        ordered: &Limits,
        prepaid_months: i64,
    ) -> Vec<(String, f64, f64)> {
        let mut limits = Vec::new();
        for (key, component) in &self.components {
            match component.accounting_type {
                AccountingType::Usage => {
                    if let Some(limit) = component.limit {
                        limits.push((key.clone(), limit, 1.0));
                    }
                }
                AccountingType::Limit => {
                    if let Some(v) = ordered.get(key) {
                        limits.push((key.clone(), *v, 1.0));
                    }
                }
                AccountingType::One => {
                    if let Some(v) = ordered.get(key) {
                        limits.push((key.clone(), *v, prepaid_months.max(1) as f64));
                    }
                }
                AccountingType::Fixed => {}
            }
        }
        // Ordered limits for keys that are not components are ignored: they are not TRES.
        limits
    }

    /// The TRES limits a resource gets for its ordered limits (see [`Self::resource_limits`]),
    /// checked like [`Self::limits_to_tres`].
    pub fn resource_tres(
        &self,
        ordered: &Limits,
        prepaid_months: i64,
    ) -> Result<TresAmounts, LimitError> {
        self.to_tres(self.resource_limits(ordered, prepaid_months))
    }

    /// Waldur-unit limits → TRES limits (site units), through the checked conversion of
    /// [`backend_api::units::site_amount`]: an amount that is not finite, negative, not a whole
    /// number of TRES-minutes or above [`MAX_TRES_MINUTES`] (also as the sum of several
    /// components mapped onto one TRES) is refused, never saturated. Keys that are not
    /// components are not TRES and are left out.
    pub fn limits_to_tres(&self, limits: &Limits) -> Result<TresAmounts, LimitError> {
        self.to_tres(
            limits
                .iter()
                .filter(|(k, _)| self.components.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v, 1.0))
                .collect(),
        )
    }

    fn to_tres(&self, limits: Vec<(String, f64, f64)>) -> Result<TresAmounts, LimitError> {
        let mut out = TresAmounts::new();
        for (key, amount, multiplier) in limits {
            let own;
            let targets: &[(String, f64)] = match self.targets.get(&key) {
                Some(list) => list,
                // A component without targets keeps its own `unit_factor`, mapped mode or not.
                None => {
                    let factor = self.components.get(&key).map_or(1.0, |c| c.unit_factor);
                    own = [(key.clone(), factor)];
                    &own
                }
            };
            for (tres, factor) in targets {
                let site = site_amount(&key, amount, factor * multiplier, MAX_TRES_MINUTES)?;
                let total = out.entry(tres.clone()).or_default();
                match total.checked_add(site).filter(|t| *t <= MAX_TRES_MINUTES) {
                    Some(sum) => *total = sum,
                    None => {
                        return Err(LimitError::new(
                            &key,
                            amount,
                            format!(
                                "the TRES {tres} would total more than the site's maximum \
                                 {MAX_TRES_MINUTES} minutes with the other components mapped onto it"
                            ),
                            0.0,
                            (MAX_TRES_MINUTES - *total) as f64 / (factor * multiplier),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// TRES limits read from the site → Waldur-unit limits: the exact inverse of
    /// [`Self::limits_to_tres`] for values it wrote (divided, not rounded), so reading back
    /// never changes a limit.
    pub fn tres_to_limits(&self, tres: &TresAmounts) -> Limits {
        if !self.is_mapped() {
            let known: TresAmounts = tres
                .iter()
                .filter(|(k, _)| self.components.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            return limits_from_site(&known, &self.components);
        }
        let mut out = Limits::new();
        for key in self.components.keys() {
            match self.targets.get(key) {
                Some(list) => {
                    // The first target with a non-zero factor determines the source amount.
                    if let Some(v) = list.iter().find_map(|(t, f)| {
                        (*f != 0.0).then(|| tres.get(t).map(|v| *v as f64 / f))?
                    }) {
                        out.insert(key.clone(), v);
                    }
                }
                None => {
                    if let (Some(v), Some(c)) = (tres.get(key), self.components.get(key)) {
                        let factor = if c.unit_factor == 0.0 {
                            1.0
                        } else {
                            c.unit_factor
                        };
                        out.insert(key.clone(), *v as f64 / factor);
                    }
                }
            }
        }
        out
    }

    /// TRES usage (site units) → Waldur-unit usage per component.
    pub fn usage_to_waldur(&self, tres: &BTreeMap<String, f64>) -> Amounts {
        if !self.is_mapped() {
            let known: Amounts = self
                .components
                .keys()
                .map(|k| (k.clone(), tres.get(k).copied().unwrap_or(0.0)))
                .collect();
            return usage_from_site(&known, &self.components);
        }
        let mut out = Amounts::new();
        for key in self.components.keys() {
            let value = match self.targets.get(key) {
                Some(list) => list
                    .iter()
                    .map(|(t, f)| {
                        if *f == 0.0 {
                            0.0
                        } else {
                            tres.get(t).copied().unwrap_or(0.0) / f
                        }
                    })
                    .sum(),
                None => {
                    let factor = self.components[key].reporting_factor();
                    if factor == 0.0 {
                        0.0
                    } else {
                        tres.get(key).copied().unwrap_or(0.0) / factor
                    }
                }
            };
            out.insert(key.clone(), value);
        }
        out
    }

    /// Whether any component is prepaid (`accounting_type: one`).
    pub fn has_prepaid(&self) -> bool {
        self.components
            .values()
            .any(|c| c.accounting_type == AccountingType::One)
    }
}

/// Months a prepaid subscription covers, at least 1 (a started month counts).
pub fn prepaid_months(created: Date, end: Date) -> i64 {
    let months = i64::from(end.year() - created.year()) * 12
        + i64::from(end.month() - created.month())
        + i64::from(end.day() > created.day());
    months.max(1)
}

/// `cpu=10,mem=2000M` → map. Values keep their unit suffix stripped and converted by `scale`.
/// Entries without `=` or without a leading number are skipped.
pub fn parse_tres_list(text: &str) -> Vec<(String, u64, char)> {
    text.split(',')
        .filter_map(|item| {
            let (key, value) = item.split_once('=')?;
            let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
            let number: u64 = digits.parse().ok()?;
            let suffix = value[digits.len()..].chars().next().unwrap_or(' ');
            Some((key.trim().to_owned(), number, suffix))
        })
        .collect()
}

/// Multiplier of a K/M/G/T/P suffix (binary), 1 without suffix.
pub fn suffix_multiplier(suffix: char) -> u64 {
    match suffix.to_ascii_uppercase() {
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        'P' => 1 << 50,
        _ => 1,
    }
}

/// A `GrpTRESMins`/`MaxTRESMins` value as stored by sacctmgr; `mem` is in MB (`2000M` → 2000,
/// `2G` → 2048, bare numbers are MB).
pub fn parse_limit_tres(text: &str) -> TresAmounts {
    parse_tres_list(text)
        .into_iter()
        .map(|(key, number, suffix)| {
            let value = if key == "mem" && suffix != ' ' {
                let bytes = u128::from(number) * u128::from(suffix_multiplier(suffix));
                i64::try_from(bytes >> 20).unwrap_or(i64::MAX)
            } else {
                i64::try_from(number).unwrap_or(i64::MAX)
            };
            (key, value)
        })
        .collect()
}

/// `k1=v1,k2=v2` with keys sorted.
pub fn format_tres(values: &TresAmounts) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// sacct `Elapsed` (`[D-]HH:MM:SS[.ffffff]`, hours may exceed 24) → minutes.
pub fn parse_elapsed_minutes(text: &str) -> Option<f64> {
    let text = text.trim();
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (d.parse::<f64>().ok()?, r),
        None => (0.0, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m, s] => (
            h.parse::<f64>().ok()?,
            m.parse::<f64>().ok()?,
            s.parse::<f64>().ok()?,
        ),
        [m, s] => (0.0, m.parse::<f64>().ok()?, s.parse::<f64>().ok()?),
        _ => return None,
    };
    Some(days * 1440.0 + h * 60.0 + m + s / 60.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(factor: f64, accounting: AccountingType) -> BackendComponent {
        BackendComponent {
            measured_unit: "Hours".into(),
            unit_factor: factor,
            unit_factor_reporting: None,
            accounting_type: accounting,
            label: "x".into(),
            limit: None,
            extra: Default::default(),
        }
    }

    fn standard() -> ComponentMap {
        let mut c = IndexMap::new();
        c.insert("cpu".to_owned(), comp(60_000.0, AccountingType::Limit));
        c.insert("mem".to_owned(), comp(61_440.0, AccountingType::Limit));
        ComponentMap::new(c)
    }

    #[test]
    fn limits_round_trip_exactly_through_sacctmgr_strings() {
        let map = standard();
        let waldur: Limits = [("cpu".to_owned(), 7.0), ("mem".to_owned(), 3.0)].into();
        let tres = map.limits_to_tres(&waldur).expect("in range");
        assert_eq!(format_tres(&tres), "cpu=420000,mem=184320");
        // sacctmgr prints mem with an M suffix.
        let echoed = parse_limit_tres("cpu=420000,mem=184320M");
        for _ in 0..3 {
            assert_eq!(map.tres_to_limits(&echoed), waldur);
        }
    }

    #[test]
    fn mapped_components_convert_both_ways() {
        let mut c = IndexMap::new();
        let mut node_hours = comp(1.0, AccountingType::Limit);
        node_hours.extra.insert(
            "target_components".into(),
            serde_json::json!({"cpu": {"factor": 64.0}, "gres/gpu": {"factor": 4.0}}),
        );
        c.insert("node_hours".to_owned(), node_hours);
        let map = ComponentMap::new(c);
        assert!(map.is_mapped());
        let tres = map
            .limits_to_tres(&[("node_hours".to_owned(), 10.0)].into())
            .expect("in range");
        assert_eq!(format_tres(&tres), "cpu=640,gres/gpu=40");
        assert_eq!(map.tres_to_limits(&tres)["node_hours"], 10.0);
        // A fraction of a node-hour is exact where every target gets whole minutes.
        let tres = map
            .limits_to_tres(&[("node_hours".to_owned(), 0.25)].into())
            .expect("0.25 × 64 and 0.25 × 4 are whole");
        assert_eq!(format_tres(&tres), "cpu=16,gres/gpu=1");
        assert_eq!(map.tres_to_limits(&tres)["node_hours"], 0.25);
        let e = map
            .limits_to_tres(&[("node_hours".to_owned(), 0.1)].into())
            .expect_err("0.1 × 4 = 0.4 GPU-minutes");
        assert_eq!(e.component, "node_hours");
        let usage =
            map.usage_to_waldur(&[("cpu".to_owned(), 128.0), ("gres/gpu".to_owned(), 8.0)].into());
        assert_eq!(usage["node_hours"], 4.0);
    }

    #[test]
    fn unmapped_components_keep_their_unit_factor_next_to_mapped_ones() {
        let mut c = IndexMap::new();
        c.insert("cpu".to_owned(), comp(60_000.0, AccountingType::Usage));
        let mut gpu = comp(1.0, AccountingType::Limit);
        gpu.extra.insert(
            "target_components".into(),
            serde_json::json!({"gres/gpu": {"factor": 60.0}}),
        );
        c.insert("gpu".to_owned(), gpu);
        let map = ComponentMap::new(c);
        let waldur: Limits = [("cpu".to_owned(), 10.0), ("gpu".to_owned(), 20.0)].into();
        let tres = map.limits_to_tres(&waldur).expect("in range");
        assert_eq!(format_tres(&tres), "cpu=600000,gres/gpu=1200");
        assert_eq!(map.tres_to_limits(&tres), waldur);
        let usage = map.usage_to_waldur(
            &[("cpu".to_owned(), 120_000.0), ("gres/gpu".to_owned(), 60.0)].into(),
        );
        assert_eq!(usage["cpu"], 2.0);
        assert_eq!(usage["gpu"], 1.0);
    }

    #[test]
    fn resource_limits_apply_prepaid_months_and_usage_limits() {
        let mut c = IndexMap::new();
        c.insert("cpu".to_owned(), comp(1.0, AccountingType::One));
        let mut gpu = comp(1.0, AccountingType::Usage);
        gpu.limit = Some(50.0);
        c.insert("gres/gpu".to_owned(), gpu);
        let map = ComponentMap::new(c);
        let tres = map
            .resource_tres(
                &[("cpu".to_owned(), 10.0), ("junk".to_owned(), 1.0)].into(),
                3,
            )
            .expect("in range");
        assert_eq!(
            tres,
            [("cpu".to_owned(), 30), ("gres/gpu".to_owned(), 50)].into()
        );
        // The months multiply before the check, and the refusal names the ordered amount.
        let e = map
            .resource_tres(&[("cpu".to_owned(), 4e15)].into(), 3)
            .expect_err("1.2e16 minutes");
        assert_eq!((e.component.as_str(), e.value), ("cpu", 4e15));
        assert!(map.has_prepaid());
    }

    #[test]
    fn gpu_hours_fractions_are_written_exactly() {
        let mut c = IndexMap::new();
        c.insert("gres/gpu".to_owned(), comp(60.0, AccountingType::Limit));
        let map = ComponentMap::new(c);
        let waldur: Limits = [("gres/gpu".to_owned(), 0.5)].into();
        let tres = map.limits_to_tres(&waldur).expect("30 minutes");
        assert_eq!(format_tres(&tres), "gres/gpu=30");
        assert_eq!(map.tres_to_limits(&parse_limit_tres("gres/gpu=30")), waldur);
    }

    #[test]
    fn limits_beyond_the_site_maximum_are_refused_not_saturated() {
        let map = standard();
        let huge: f64 = serde_json::from_str("99999999999999999999").expect("json");
        for bad in [1e30, huge, f64::NAN, f64::INFINITY, -1.0, 1e12] {
            let e = map
                .limits_to_tres(&[("cpu".to_owned(), 1.0), ("mem".to_owned(), bad)].into())
                .expect_err("refused");
            assert_eq!(e.component, "mem", "{e}");
            assert!(
                e.max * 61_440.0 <= MAX_TRES_MINUTES as f64,
                "allowed range within the site maximum: {e}"
            );
        }
        // The largest whole amount below the maximum is written as it is.
        let max_cpu = (MAX_TRES_MINUTES / 60_000) as f64;
        let tres = map
            .limits_to_tres(&[("cpu".to_owned(), max_cpu)].into())
            .expect("at the maximum");
        assert_eq!(tres["cpu"], (MAX_TRES_MINUTES / 60_000) * 60_000);
        assert!(tres["cpu"] < i64::MAX && (tres["cpu"] as u64) < u64::MAX - 1);
    }

    #[test]
    fn components_mapped_onto_one_tres_are_checked_as_a_sum() {
        let mut c = IndexMap::new();
        for key in ["a", "b"] {
            let mut comp = comp(1.0, AccountingType::Limit);
            comp.extra.insert(
                "target_components".into(),
                serde_json::json!({"cpu": {"factor": 1.0}}),
            );
            c.insert(key.to_owned(), comp);
        }
        let map = ComponentMap::new(c);
        let half = (MAX_TRES_MINUTES / 2 + 1) as f64;
        let e = map
            .limits_to_tres(&[("a".to_owned(), half), ("b".to_owned(), half)].into())
            .expect_err("each fits, the sum does not");
        assert!(e.reason.contains("would total more"), "{e}");
        let tres = map
            .limits_to_tres(&[("a".to_owned(), 2.0), ("b".to_owned(), 3.0)].into())
            .expect("small sum");
        assert_eq!(tres["cpu"], 5);
    }

    #[test]
    fn prepaid_month_arithmetic() {
        let d = |y, m, day| Date::new(y, m, day).expect("date");
        assert_eq!(prepaid_months(d(2024, 1, 15), d(2024, 4, 15)), 3);
        assert_eq!(prepaid_months(d(2024, 1, 15), d(2024, 4, 16)), 4);
        assert_eq!(prepaid_months(d(2024, 11, 1), d(2025, 2, 1)), 3);
        assert_eq!(prepaid_months(d(2024, 1, 15), d(2024, 1, 10)), 1);
    }

    #[test]
    fn elapsed_formats() {
        assert_eq!(parse_elapsed_minutes("850:00:00"), Some(51_000.0));
        assert_eq!(parse_elapsed_minutes("1-00:01:30"), Some(1441.5));
        assert_eq!(parse_elapsed_minutes("00:00:03.5"), Some(3.5 / 60.0));
        assert_eq!(parse_elapsed_minutes("garbage"), None);
    }

    #[test]
    fn tres_lists_parse_with_suffixes() {
        let parsed = parse_tres_list("billing=2,cpu=2,mem=1024M,node=1,gres/gpu=1,bogus,x=abc");
        assert_eq!(parsed.len(), 5);
        assert_eq!(parsed[2], ("mem".to_owned(), 1024, 'M'));
        assert_eq!(parse_limit_tres("mem=2G")["mem"], 2048);
        assert_eq!(suffix_multiplier('P'), 1 << 50);
    }
}
