//! The limit check of orders and per-user limits (issue #21: limits are checked, never
//! saturated). Before any site call, every amount must be finite, not negative, within the
//! offering component's `min_value`/`max_value` (Mastermind's semantics, see
//! [`LimitBounds::from_waldur`]) and representable on the site
//! ([`backend_api::OrderBackend::check_limits`], which runs the backend's own conversion).
//!
//! What happens to an order whose limits fail:
//! - `executing` (Create, Restore, Update): set erred with the message (component, value, allowed
//!   range); nothing reaches the site, an Updated resource keeps its old limits;
//! - `pending-provider` (Create, Update): rejected by the provider with the same message as the
//!   rejection comment. Approving it would only err it afterwards, and an order is never erred
//!   before provisioning started; the bounds used here are the site's only (the order carries no
//!   offering components, and Mastermind checked `min_value`/`max_value` when it was placed).

use std::collections::BTreeMap;

use backend_api::units::{LimitBounds, check_limits};
use backend_api::{BackendError, Limits, OrderBackend, ResourceView};
use waldur_client::OfferingComponent;

/// Component type → the bounds Waldur gives for it.
pub fn bounds(components: &[OfferingComponent]) -> BTreeMap<String, LimitBounds> {
    components
        .iter()
        .map(|c| {
            (
                c.component_type.clone(),
                LimitBounds::from_waldur(c.min_value, c.max_value),
            )
        })
        .collect()
}

/// Waldur's bounds, then the site's: the first refusal as a (permanent) backend error.
pub fn check_order_limits(
    backend: &dyn OrderBackend,
    resource: &ResourceView,
    limits: &Limits,
    components: &[OfferingComponent],
) -> Result<(), BackendError> {
    check_limits(limits, &bounds(components))?;
    backend.check_limits(resource, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_api::testkit::MemoryBackend;

    fn component(kind: &str, min: Option<f64>, max: Option<f64>) -> OfferingComponent {
        OfferingComponent {
            component_type: kind.to_owned(),
            min_value: min,
            max_value: max,
            ..OfferingComponent::default()
        }
    }

    #[test]
    fn waldur_bounds_then_site_bounds() {
        let site = MemoryBackend::new();
        let view = ResourceView::default();
        let components = [
            component("gpu", Some(1.0), Some(10.0)),
            component("cpu", None, Some(0.0)),
        ];
        let check = |pairs: &[(&str, f64)]| {
            let limits: Limits = pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
            check_order_limits(&site, &view, &limits, &components)
        };
        check(&[("gpu", 10.0), ("cpu", 1e6)]).expect("within bounds; cpu max 0 = none");
        let e = check(&[("gpu", 11.0)]).expect_err("above max_value");
        assert_eq!(
            e.to_string(),
            "limit gpu=11 refused: above the component's max_value 10; allowed for gpu: 1 to 10"
        );
        let e = check(&[("gpu", 0.5)]).expect_err("below min_value");
        assert!(e.to_string().contains("min_value 1"), "{e}");
        let e = check(&[("cpu", 1e30)]).expect_err("above the site's maximum");
        assert!(e.to_string().contains("cpu=1e30"), "{e}");
        assert!(e.to_string().contains("site's maximum"), "{e}");
        assert!(matches!(
            check(&[("cpu", f64::NAN)]),
            Err(BackendError::Limit(_))
        ));
        assert!(
            !check(&[("cpu", -1.0)])
                .expect_err("negative")
                .is_transient()
        );
        assert_eq!(
            site.calls(),
            Vec::<String>::new(),
            "a check is no site call"
        );
    }
}
