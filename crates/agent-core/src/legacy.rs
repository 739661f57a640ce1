//! Mastermind from 2024, as far as the order processor needs to know it:
//!
//! - its provider resources carry no `project_slug` / `customer_slug` (its orders do), so the
//!   slugs backend ids and site accounts are named after come from the order;
//! - it still keeps a SLURM allocation behind every Marketplace.Slurm resource, which the
//!   agents of that time set OK after a Create and an Update
//!   (`marketplace-slurm-remote/{resource}/set_state/`). Left in "Creation Scheduled" or
//!   "Update Scheduled", the server errs the next Update order itself when it is approved
//!   ("Can't switch from state ... using method 'schedule_updating'").
//!
//! On a current Mastermind the allocation endpoint does not exist: one 404, logged at debug,
//! and it is not called again for an hour.

use waldur_client::{Order, ProviderResource};

use crate::context::Offering;
use crate::features::{Absence, endpoint, optional};

/// The resource with the order's project and customer slugs where it has none.
pub fn with_order_slugs(mut resource: ProviderResource, order: &Order) -> ProviderResource {
    if resource.project_slug.trim().is_empty() {
        resource.project_slug = order.project_slug.trim().to_owned();
    }
    if resource.customer_slug.trim().is_empty() {
        resource.customer_slug = order.customer_slug.trim().to_owned();
    }
    resource
}

/// Set the resource's SLURM allocation OK where the server tracks one. Never fails the order:
/// the site has what was ordered; a failure here is logged (the next Update would show it).
pub async fn allocation_ok(offering: &Offering, resource_uuid: &str) {
    let result = optional(
        offering,
        endpoint::SLURM_ALLOCATION_STATE,
        "no SLURM allocation behind resources (a Mastermind from 2025 on)",
        Absence::Debug,
        offering
            .client
            .set_slurm_allocation_state(resource_uuid, "ok"),
    )
    .await;
    match result {
        Ok(Some(())) => {
            tracing::info!(offering = %offering.name(), resource = resource_uuid, "SLURM allocation set OK in Waldur")
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(offering = %offering.name(), resource = resource_uuid, error = %e, "cannot set the resource's SLURM allocation OK in Waldur; its next Update order may be refused by Waldur")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_come_from_the_order_only_where_the_resource_lacks_them() {
        let order: Order = serde_json::from_value(serde_json::json!({
            "uuid": "00000000000000000000000000000001", "project_slug": "proj", "customer_slug": "cust"
        }))
        .expect("order");
        let bare: ProviderResource = serde_json::from_value(serde_json::json!({
            "uuid": "00000000000000000000000000000002", "slug": "alloc"
        }))
        .expect("resource");
        let r = with_order_slugs(bare, &order);
        assert_eq!(
            (r.project_slug.as_str(), r.customer_slug.as_str()),
            ("proj", "cust")
        );
        let own: ProviderResource = serde_json::from_value(serde_json::json!({
            "uuid": "00000000000000000000000000000002", "project_slug": "mine", "customer_slug": "c2"
        }))
        .expect("resource");
        let r = with_order_slugs(own, &order);
        assert_eq!(
            (r.project_slug.as_str(), r.customer_slug.as_str()),
            ("mine", "c2")
        );
    }
}
