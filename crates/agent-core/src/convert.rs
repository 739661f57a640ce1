//! Explicit conversions from Waldur wire DTOs to the domain types backends see.

use backend_api::{Limits, OfferingUserView, OrderView, ResourceView, UserGrant};
use serde_json::{Map, Value};
use waldur_client::{Amounts, OfferingUser, Order, ProjectUser, ProviderResource};

/// Waldur amounts → limits in Waldur units, unchanged: fractions stay fractions and nothing is
/// rounded or saturated here; the check and the conversion to site integers happen in
/// `backend_api::units` (see [`crate::limits`]).
pub fn limits_from_amounts(amounts: &Amounts) -> Limits {
    amounts.clone()
}

pub fn resource_view(r: &ProviderResource) -> ResourceView {
    ResourceView {
        uuid: r.uuid.clone(),
        name: r.name.clone(),
        slug: r.slug.clone(),
        backend_id: r.backend_id.trim().to_owned(),
        state: r.state.as_str().to_owned(),
        offering_uuid: r.offering_uuid.clone().unwrap_or_default(),
        plan_uuid: r.plan_uuid.clone(),
        project_uuid: r.project_uuid.clone().unwrap_or_default(),
        project_slug: r.project_slug.clone(),
        project_name: r.project_name.clone(),
        project_description: r.project_description.clone(),
        customer_uuid: r.customer_uuid.clone().unwrap_or_default(),
        customer_slug: r.customer_slug.clone(),
        customer_name: r.customer_name.clone(),
        limits: limits_from_amounts(&r.limits),
        paused: r.paused,
        downscaled: r.downscaled,
        restrict_member_access: r.restrict_member_access,
        attributes: r.attributes.clone(),
        offering_plugin_options: r.offering_plugin_options.clone(),
        backend_metadata: r.backend_metadata.clone(),
        end_date: r.end_date.clone(),
    }
}

pub fn order_view(o: &Order) -> OrderView {
    OrderView {
        uuid: o.uuid.clone(),
        kind: o.order_type.as_str().to_owned(),
        resource_name: o.resource_name.clone(),
        project_uuid: o.project_uuid.clone().unwrap_or_default(),
        customer_uuid: o.customer_uuid.clone().unwrap_or_default(),
        limits: limits_from_amounts(&o.limits),
        attributes: o.attributes.clone(),
        created_by_username: o.created_by_username.clone(),
    }
}

pub fn offering_user_view(u: &OfferingUser) -> OfferingUserView {
    OfferingUserView {
        uuid: u.uuid.clone(),
        user_uuid: u.user_uuid.clone(),
        username: u.username().map(str::to_owned),
        user_username: u.user_username.clone(),
        user_email: u.user_email.clone(),
        user_full_name: u.user_full_name.clone(),
        state: u.state.as_str().to_owned(),
    }
}

/// The exposed profile attributes of an offering user (`user_*` fields), keyed without the
/// `user_` prefix; username is left out (it is the key itself).
pub fn user_attributes(u: &OfferingUser) -> Map<String, Value> {
    let mut attrs = Map::new();
    let mut put = |key: &str, value: Option<&String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            attrs.insert(key.to_owned(), Value::String(v.clone()));
        }
    };
    put("full_name", u.user_full_name.as_ref());
    put("first_name", u.user_first_name.as_ref());
    put("last_name", u.user_last_name.as_ref());
    put("email", u.user_email.as_ref());
    for (key, value) in &u.extra {
        if let Some(name) = key.strip_prefix("user_") {
            if name != "username" && name != "uuid" && !value.is_null() {
                attrs.insert(name.to_owned(), value.clone());
            }
        }
    }
    attrs
}

/// A team member with an offering user that has a site username → what the backend grants.
pub fn user_grant(
    member: &ProjectUser,
    offering_user: Option<&OfferingUser>,
    username: &str,
    attributes: std::sync::Arc<Map<String, Value>>,
) -> UserGrant {
    UserGrant {
        username: username.to_owned(),
        waldur_username: Some(member.username.clone()).filter(|u| !u.is_empty()),
        role: Some(member.role.clone()).filter(|r| !r.is_empty()),
        email: member
            .email
            .clone()
            .or_else(|| offering_user.and_then(|u| u.user_email.clone())),
        full_name: Some(member.full_name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| offering_user.and_then(|u| u.user_full_name.clone())),
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_view_carries_what_backends_need() {
        let r: ProviderResource = serde_json::from_value(serde_json::json!({
            "uuid": "00000000-0000-0000-0000-000000000001", "slug": "alloc", "backend_id": " acc1 ",
            "state": "OK", "limits": {"cpu": 10.4, "mem": "20"}, "project_slug": "proj"
        }))
        .expect("resource");
        let view = resource_view(&r);
        assert_eq!(view.uuid, "00000000000000000000000000000001");
        assert_eq!(view.backend_id, "acc1");
        assert_eq!(view.state, "OK");
        assert_eq!(view.limits.get("cpu"), Some(&10.4), "not rounded");
        assert_eq!(view.limits.get("mem"), Some(&20.0));
    }

    #[test]
    fn attributes_drop_the_user_prefix() {
        let u: OfferingUser = serde_json::from_value(serde_json::json!({
            "uuid": "00000000000000000000000000000001", "user_uuid": "00000000000000000000000000000002",
            "user_email": "a@b", "user_organization": "Org", "user_username": "alice"
        }))
        .expect("ou");
        let attrs = user_attributes(&u);
        assert_eq!(attrs.get("email"), Some(&Value::String("a@b".into())));
        assert_eq!(
            attrs.get("organization"),
            Some(&Value::String("Org".into()))
        );
        assert!(!attrs.contains_key("username"));
    }
}
