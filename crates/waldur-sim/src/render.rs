//! Wire JSON for every model (appendix B): complete objects, nullable fields as null, UUIDs as
//! 32-hex, related objects as absolute URLs.

use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::model::*;
use crate::store::Store;

pub fn h(u: &Uuid) -> String {
    u.simple().to_string()
}
fn ts(t: &Timestamp) -> Value {
    Value::String(t.to_string())
}
fn ots(t: &Option<Timestamp>) -> Value {
    t.as_ref().map(ts).unwrap_or(Value::Null)
}
pub fn amount(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

impl Store {
    fn offering_fields(&self, offering: &Uuid, map: &mut serde_json::Map<String, Value>) {
        let Some(o) = self.offerings.get(offering) else {
            return;
        };
        let cust = self.customers.get(&o.customer);
        let sp = self
            .service_providers
            .values()
            .find(|s| s.customer == o.customer);
        let fields = json!({
            "offering": self.url("marketplace-public-offerings", &o.uuid),
            "offering_name": o.name,
            "offering_uuid": h(&o.uuid),
            "offering_description": o.description,
            "offering_image": "",
            "offering_thumbnail": "",
            "offering_type": o.type_,
            "offering_shared": o.shared,
            "offering_billable": o.billable,
            "offering_plugin_options": o.plugin_options,
            "offering_slug": o.slug,
            "offering_backend_id": o.backend_id,
            "offering_state": o.state,
            "provider_name": cust.map(|c| c.name.clone()).unwrap_or_default(),
            "provider_uuid": sp.map(|s| h(&s.uuid)).unwrap_or_default(),
            "provider_slug": cust.map(|c| c.slug.clone()).unwrap_or_default(),
            "provider_description": "",
            "category_title": "HPC",
            "category_uuid": h(&self.category),
            "category_icon": "",
        });
        if let Value::Object(f) = fields {
            map.extend(f);
        }
    }

    fn plan_fields(&self, plan: &Option<Uuid>, map: &mut serde_json::Map<String, Value>) {
        let p = plan.and_then(|p| self.plans.get(&p));
        map.insert(
            "plan".into(),
            p.map(|p| Value::String(self.url("marketplace-public-plans", &p.uuid)))
                .unwrap_or(Value::Null),
        );
        map.insert(
            "plan_unit".into(),
            p.map(|p| json!(p.unit)).unwrap_or(Value::Null),
        );
        map.insert(
            "plan_name".into(),
            p.map(|p| json!(p.name)).unwrap_or(Value::Null),
        );
        map.insert(
            "plan_uuid".into(),
            p.map(|p| json!(h(&p.uuid))).unwrap_or(Value::Null),
        );
        map.insert(
            "plan_description".into(),
            p.map(|p| json!(p.description)).unwrap_or(Value::Null),
        );
    }

    fn user_brief(&self, user: &Option<Uuid>) -> (Value, Value, Value) {
        match user.and_then(|u| self.users.get(&u)) {
            Some(u) => (
                json!(self.url("users", &u.uuid)),
                json!(u.full_name),
                json!(u.username),
            ),
            None => (Value::Null, Value::Null, Value::Null),
        }
    }

    pub fn render_order(&self, o: &Order) -> Value {
        let mut m = serde_json::Map::new();
        self.offering_fields(&o.offering, &mut m);
        self.plan_fields(&o.plan, &mut m);
        let project = self.projects.get(&o.project);
        let customer = project.and_then(|p| self.customers.get(&p.customer));
        let resource = self.resources.get(&o.resource);
        let creator = self.users.get(&o.created_by);
        let (_, crb_name, crb_user) = self.user_brief(&o.consumer_reviewed_by);
        let (_, prb_name, prb_user) = self.user_brief(&o.provider_reviewed_by);
        let old_plan = o.old_plan.and_then(|p| self.plans.get(&p));
        let new_plan = if o.type_ == "Update" {
            o.plan.and_then(|p| self.plans.get(&p))
        } else {
            None
        };
        let rest = json!({
            "attributes": o.attributes,
            "limits": o.limits,
            "uuid": h(&o.uuid),
            "created": ts(&o.created),
            "modified": ts(&o.modified),
            "resource_uuid": h(&o.resource),
            "marketplace_resource_uuid": h(&o.resource),
            "resource_type": null,
            "resource_name": resource.map(|r| r.name.clone()).unwrap_or_default(),
            "cost": null,
            "state": o.state,
            "output": "",
            "output_updated_at": null,
            "error_message": o.error_message,
            "error_traceback": o.error_traceback,
            "error_updated_at": null,
            "callback_url": null,
            "completed_at": ots(&o.completed_at),
            "request_comment": o.request_comment,
            "attachment": null,
            "type": o.type_,
            "start_date": null,
            "slug": o.slug,
            "url": self.url("marketplace-orders", &o.uuid),
            "consumer_reviewed_by": crb_user.clone(),
            "consumer_reviewed_by_full_name": crb_name,
            "consumer_reviewed_by_username": crb_user,
            "consumer_reviewed_at": ots(&o.consumer_reviewed_at),
            "provider_reviewed_by": prb_user.clone(),
            "provider_reviewed_by_full_name": prb_name,
            "provider_reviewed_by_username": prb_user,
            "provider_reviewed_at": ots(&o.provider_reviewed_at),
            "created_by_username": creator.map(|u| u.username.clone()).unwrap_or_default(),
            "created_by_full_name": creator.map(|u| u.full_name.clone()).unwrap_or_default(),
            "created_by_civil_number": null,
            "created_by_email": creator.map(|u| u.email.clone()),
            "created_by_organization": null,
            "created_by_organization_country": null,
            "created_by_organization_registry_code": null,
            "created_by_organization_vat_code": null,
            "created_by_organization_address": null,
            "customer_name": customer.map(|c| c.name.clone()).unwrap_or_default(),
            "customer_uuid": customer.map(|c| h(&c.uuid)).unwrap_or_default(),
            "customer_slug": customer.map(|c| c.slug.clone()).unwrap_or_default(),
            "project_name": project.map(|p| p.name.clone()).unwrap_or_default(),
            "project_uuid": h(&o.project),
            "project_description": project.map(|p| p.description.clone()).unwrap_or_default(),
            "project_slug": project.map(|p| p.slug.clone()).unwrap_or_default(),
            "old_plan_name": old_plan.map(|p| p.name.clone()),
            "new_plan_name": new_plan.map(|p| p.name.clone()),
            "old_plan_uuid": old_plan.map(|p| h(&p.uuid)),
            "new_plan_uuid": new_plan.map(|p| h(&p.uuid)),
            "old_cost_estimate": 0.0,
            "new_cost_estimate": null,
            "can_terminate": matches!(o.state.as_str(), "pending-consumer" | "pending-provider"),
            "fixed_price": 0.0,
            "activation_price": 0.0,
            "termination_comment": null,
            "backend_id": o.backend_id,
            "order_subtype": null,
            "provider_message": "",
            "provider_message_url": "",
            "provider_message_attachment": null,
            "provider_message_updated_at": null,
            "consumer_message": "",
            "consumer_message_attachment": null,
            "consumer_message_updated_at": null,
            "consumer_rejection_comment": o.consumer_rejection_comment,
            "provider_rejection_comment": o.provider_rejection_comment,
            "auto_approved": false,
            "auto_approved_by_rule_uuid": null,
            "auto_approved_cost_limit_snapshot": null,
            "issue": null,
        });
        if let Value::Object(r) = rest {
            m.extend(r);
        }
        Value::Object(m)
    }

    pub fn render_component(&self, offering: &Uuid, c: &Component) -> Value {
        json!({
            "uuid": h(&c.uuid),
            "offering_uuid": h(offering),
            "billing_type": c.billing_type,
            "type": c.type_,
            "name": c.name,
            "description": c.description,
            "measured_unit": c.measured_unit,
            "unit_factor": c.unit_factor,
            "limit_period": c.limit_period,
            "limit_amount": c.limit_amount,
            "article_code": c.article_code,
            "max_value": c.max_value,
            "min_value": c.min_value,
            "max_available_limit": c.max_available_limit,
            "is_boolean": c.is_boolean,
            "default_limit": c.default_limit,
            "factor": null,
            "is_builtin": c.is_builtin,
            "is_prepaid": c.is_prepaid,
            "overage_component": null,
            "min_prepaid_duration": null,
            "max_prepaid_duration": null,
            "prepaid_duration_step": null,
            "min_renewal_duration": null,
            "max_renewal_duration": null,
            "renewal_duration_step": null,
        })
    }

    pub fn render_resource(&self, r: &Resource) -> Value {
        let mut m = serde_json::Map::new();
        self.offering_fields(&r.offering, &mut m);
        self.plan_fields(&r.plan, &mut m);
        let project = self.projects.get(&r.project);
        let customer = project.and_then(|p| self.customers.get(&p.customer));
        let offering = self.offerings.get(&r.offering);
        let components: Vec<Value> = offering
            .map(|o| {
                o.components
                    .iter()
                    .map(|c| self.render_component(&o.uuid, c))
                    .collect()
            })
            .unwrap_or_default();
        let in_progress = self
            .orders
            .values()
            .rev()
            .find(|o| {
                o.resource == r.uuid
                    && matches!(
                        o.state.as_str(),
                        "pending-consumer" | "pending-provider" | "executing"
                    )
            })
            .map(|o| self.render_order(o))
            .unwrap_or(Value::Null);
        let creation = r
            .creation_order
            .and_then(|o| self.orders.get(&o))
            .map(|o| self.render_order(o))
            .unwrap_or(Value::Null);
        let has =
            |bt: &str| offering.is_some_and(|o| o.components.iter().any(|c| c.billing_type == bt));
        let mut backend_metadata = json!({
            "state": "", "runtime_state": "", "action": "", "instance_name": null,
        });
        if let Value::Object(bm) = &mut backend_metadata {
            for (k, v) in &r.backend_metadata {
                bm.insert(k.clone(), v.clone());
            }
        }
        let restriction = if r.paused {
            "paused"
        } else if r.downscaled {
            "downscaled"
        } else {
            ""
        };
        let rest = json!({
            "attributes": r.attributes,
            "limits": r.limits,
            "uuid": h(&r.uuid),
            "created": ts(&r.created),
            "modified": ts(&r.modified),
            "url": self.url("marketplace-resources", &r.uuid),
            "scope": null,
            "description": r.description,
            "state": r.state,
            "resource_uuid": h(&r.uuid),
            "backend_id": r.backend_id,
            "effective_id": r.effective_id,
            "resource_type": null,
            "project": self.url("projects", &r.project),
            "project_uuid": h(&r.project),
            "project_name": project.map(|p| p.name.clone()).unwrap_or_default(),
            "project_description": project.map(|p| p.description.clone()).unwrap_or_default(),
            "project_end_date": project.and_then(|p| p.end_date.clone()),
            "project_effective_end_date": project.and_then(|p| p.end_date.clone()),
            "resource_effective_end_date": r.end_date,
            "project_is_in_grace_period": false,
            "project_end_date_requested_by": null,
            "customer_uuid": customer.map(|c| h(&c.uuid)).unwrap_or_default(),
            "customer_name": customer.map(|c| c.name.clone()).unwrap_or_default(),
            "backend_metadata": backend_metadata,
            "is_usage_based": has("usage"),
            "is_limit_based": has("limit"),
            "name": r.name,
            "slug": r.slug,
            "current_usages": r.current_usages,
            "can_terminate": matches!(r.state.as_str(), "OK" | "Erred"),
            "report": [],
            "end_date": r.end_date,
            "end_date_requested_by": null,
            "end_date_updated_at": null,
            "username": null,
            "limit_usage": {},
            "downscaled": r.downscaled,
            "restrict_member_access": r.restrict_member_access,
            "paused": r.paused,
            "usage_limit_restriction": restriction,
            "endpoints": r.endpoints.iter().map(|(u, n, url)| json!({"uuid": h(u), "name": n, "url": url})).collect::<Vec<_>>(),
            "error_message": r.error_message,
            "error_traceback": r.error_traceback,
            "options": r.options,
            "available_actions": [],
            "last_sync": ts(&r.last_sync),
            "order_in_progress": in_progress,
            "creation_order": creation,
            "service_settings_uuid": h(&self.category),
            "project_slug": project.map(|p| p.slug.clone()).unwrap_or_default(),
            "customer_slug": customer.map(|c| c.slug.clone()).unwrap_or_default(),
            "user_requires_reconsent": false,
            "renewal_date": null,
            "offering_components": components,
            "has_api_keys": false,
        });
        if let Value::Object(x) = rest {
            m.extend(x);
        }
        if self.api_profile.is_2024() {
            // The 2024 resource serializer had no slugs of its project and customer.
            m.remove("project_slug");
            m.remove("customer_slug");
        }
        Value::Object(m)
    }

    pub fn render_plan_base(&self, p: &Plan) -> Value {
        let offering = self.offerings.get(&p.offering);
        let components: Vec<Value> = offering
            .map(|o| {
                o.components
                    .iter()
                    .map(|c| {
                        json!({
                            "type": c.type_, "name": c.name, "measured_unit": c.measured_unit,
                            "amount": p.quotas.get(&c.type_).and_then(Value::as_i64).unwrap_or(0),
                            "price": p.prices.get(&c.type_).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_else(|| "0".into()),
                            "future_price": null, "discount_formula": "", "discount_aggregation": "resource",
                            "discount_description": null,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let resources_count = self
            .resources
            .values()
            .filter(|r| r.plan == Some(p.uuid) && r.state != "Terminated")
            .count();
        json!({
            "url": self.url("marketplace-plans", &p.uuid),
            "uuid": h(&p.uuid),
            "name": p.name,
            "description": p.description,
            "article_code": "",
            "max_amount": null,
            "archived": p.archived,
            "is_active": !p.archived,
            "unit_price": p.unit_price,
            "unit": p.unit,
            "init_price": 0.0,
            "switch_price": 0.0,
            "backend_id": p.backend_id,
            "organization_groups": [],
            "components": components,
            "prices": p.prices,
            "future_prices": {},
            "quotas": p.quotas,
            "resources_count": resources_count,
            "plan_type": "usage-based",
            "minimal_price": "0",
        })
    }

    pub fn render_plan_details(&self, p: &Plan) -> Value {
        let mut v = self.render_plan_base(p);
        if let Value::Object(m) = &mut v {
            m.insert(
                "offering".into(),
                json!(self.url("marketplace-provider-offerings", &p.offering)),
            );
        }
        v
    }

    pub fn render_offering(&self, o: &Offering, show_secrets: bool) -> Value {
        let cust = self.customers.get(&o.customer);
        let plans: Vec<Value> = self
            .plans
            .values()
            .filter(|p| p.offering == o.uuid)
            .map(|p| self.render_plan_base(p))
            .collect();
        let integration: Vec<Value> = o
            .integration_status
            .iter()
            .map(|(agent, t)| {
                json!({"agent_type": agent, "status": "Active", "last_request_timestamp": ts(t), "service_name": ""})
            })
            .collect();
        let partitions: Vec<Value> = o
            .partitions
            .iter()
            .map(|p| json!({"uuid": h(&Uuid::new_v5(&o.uuid, p.as_bytes())), "partition_name": p, "cpu_arch": "", "gpu_arch": "",
                "cpu_bind": null, "def_cpu_per_gpu": null, "max_cpus_per_node": null, "max_cpus_per_socket": null,
                "def_mem_per_cpu": null, "def_mem_per_gpu": null, "def_mem_per_node": null, "max_mem_per_cpu": null,
                "max_mem_per_node": null, "default_time": null, "max_time": null, "grace_time": null, "max_nodes": null,
                "min_nodes": null, "exclusive_topo": false, "exclusive_user": false, "priority_tier": null, "qos": "",
                "qos_options": [], "req_resv": false}))
            .collect();
        let order_count = self
            .orders
            .values()
            .filter(|x| x.offering == o.uuid)
            .count();
        json!({
            "url": self.url("marketplace-provider-offerings", &o.uuid),
            "uuid": h(&o.uuid),
            "created": ts(&o.created),
            "name": o.name,
            "slug": o.slug,
            "description": o.description,
            "full_description": "",
            "privacy_policy_link": "",
            "helpdesk_url": "",
            "documentation_url": "",
            "access_url": "",
            "endpoints": [],
            "default_access_subnets": [],
            "software_catalogs": [],
            "partitions": partitions,
            "qos_profiles": [],
            "customer": self.url("customers", &o.customer),
            "customer_uuid": h(&o.customer),
            "customer_name": cust.map(|c| c.name.clone()),
            "project": null,
            "project_uuid": null,
            "project_name": null,
            "category": self.url("marketplace-categories", &self.category),
            "category_uuid": h(&self.category),
            "category_title": "HPC",
            "attributes": o.attributes,
            "options": {"order": [], "options": {}},
            "resource_options": {"order": [], "options": {}},
            "components": o.components.iter().map(|c| self.render_component(&o.uuid, c)).collect::<Vec<_>>(),
            "plugin_options": o.plugin_options,
            "secret_options": if show_secrets { Value::Object(o.secret_options.clone()) } else { json!({}) },
            "service_attributes": o.service_attributes,
            "state": o.state,
            "vendor_details": "",
            "getting_started": "",
            "integration_guide": "",
            "thumbnail": null,
            "order_count": order_count,
            "plans": plans,
            "screenshots": [],
            "type": o.type_,
            "shared": o.shared,
            "billable": o.billable,
            "scope": null,
            "scope_uuid": null,
            "scope_name": null,
            "scope_state": null,
            "scope_error_message": null,
            "scope_resource": null,
            "scope_resource_uuid": null,
            "scope_resource_name": null,
            "files": [],
            "quotas": [],
            "paused_reason": "",
            "datacite_doi": "",
            "citation_count": 0,
            "latitude": null,
            "longitude": null,
            "country": "",
            "backend_id": o.backend_id,
            "backend_id_rules": {},
            "organization_groups": [],
            "tags": [],
            "image": null,
            "total_customers": null,
            "total_cost": null,
            "total_cost_estimated": null,
            "parent_description": null,
            "backend_metadata": {},
            "has_compliance_requirements": false,
            "billing_type_classification": "mixed",
            "effective_available_limits": [],
            "compliance_checklist": null,
            "profile_uuid": null,
            "profile_name": null,
            "offering_group": null,
            "offering_group_uuid": null,
            "offering_group_title": null,
            "integration_status": integration,
            "google_calendar_is_public": null,
            "google_calendar_link": null,
        })
    }

    pub fn render_offering_user(&self, ou: &OfferingUser) -> Value {
        let off = self.offerings.get(&ou.offering);
        let user = self.users.get(&ou.user);
        let cust = off.and_then(|o| self.customers.get(&o.customer));
        let s = |f: fn(&User) -> String| user.map(f).unwrap_or_default();
        if self.api_profile.is_2024() {
            // The 2024 OfferingUserSerializer: no state, no comments, no profile attributes.
            return json!({
                "url": self.url("marketplace-offering-users", &ou.uuid),
                "uuid": h(&ou.uuid),
                "user": self.url("users", &ou.user),
                "offering": self.url("marketplace-provider-offerings", &ou.offering),
                "username": ou.username,
                "offering_uuid": h(&ou.offering),
                "offering_name": off.map(|o| o.name.clone()).unwrap_or_default(),
                "user_uuid": h(&ou.user),
                "user_username": s(|u| u.username.clone()),
                "user_full_name": s(|u| u.full_name.clone()),
                "created": ts(&ou.created),
                "modified": ts(&ou.modified),
                "propagation_date": null,
                "customer_uuid": cust.map(|c| h(&c.uuid)).unwrap_or_default(),
                "customer_name": cust.map(|c| c.name.clone()).unwrap_or_default(),
                "is_restricted": ou.is_restricted,
            });
        }
        json!({
            "url": self.url("marketplace-offering-users", &ou.uuid),
            "uuid": h(&ou.uuid),
            "user": self.url("users", &ou.user),
            "offering": self.url("marketplace-public-offerings", &ou.offering),
            "username": ou.username,
            "offering_uuid": h(&ou.offering),
            "offering_name": off.map(|o| o.name.clone()).unwrap_or_default(),
            "user_uuid": h(&ou.user),
            "user_username": s(|u| u.username.clone()),
            "user_full_name": s(|u| u.full_name.clone()),
            "user_first_name": s(|u| u.first_name().to_string()),
            "user_last_name": s(|u| u.last_name()),
            "user_email": s(|u| u.email.clone()),
            "user_phone_number": "",
            "user_organization": "",
            "user_job_title": "",
            "user_affiliations": [],
            "user_gender": null,
            "user_personal_title": "",
            "user_place_of_birth": "",
            "user_address": "",
            "user_country_of_residence": "",
            "user_nationality": "",
            "user_nationalities": [],
            "user_organization_country": "",
            "user_organization_type": "",
            "user_organization_registry_code": "",
            "user_organization_vat_code": "",
            "user_organization_address": "",
            "user_eduperson_assurance": [],
            "user_civil_number": null,
            "user_birth_date": null,
            "user_identity_source": "local",
            "user_uid_number": null,
            "user_primary_gid": null,
            "user_active_isds": [],
            "created": ts(&ou.created),
            "modified": ts(&ou.modified),
            "customer_uuid": cust.map(|c| h(&c.uuid)).unwrap_or_default(),
            "customer_name": cust.map(|c| c.name.clone()).unwrap_or_default(),
            "is_restricted": ou.is_restricted,
            "state": ou.state,
            "runtime_state": ou.runtime_state,
            "service_provider_comment": ou.service_provider_comment,
            "service_provider_comment_url": ou.service_provider_comment_url,
            "has_consent": true,
            "requires_reconsent": false,
            "offering_has_active_tos": false,
            "has_compliance_checklist": false,
            "consent_data": null,
            "is_profile_complete": true,
            "missing_profile_attributes": [],
            "uidnumber": null,
            "primarygroup": null,
            "login_shell": null,
            "home_directory": null,
        })
    }

    pub fn render_component_usage(&self, cu: &ComponentUsage) -> Value {
        let r = self.resources.get(&cu.resource);
        let off = r.and_then(|r| self.offerings.get(&r.offering));
        let comp = off.and_then(|o| o.components.iter().find(|c| c.type_ == cu.component_type));
        let project = r.and_then(|r| self.projects.get(&r.project));
        let cust = project.and_then(|p| self.customers.get(&p.customer));
        json!({
            "uuid": h(&cu.uuid),
            "created": ts(&cu.created),
            "description": cu.description,
            "type": cu.component_type,
            "name": comp.map(|c| c.name.clone()).unwrap_or_default(),
            "measured_unit": comp.map(|c| c.measured_unit.clone()).unwrap_or_default(),
            "usage": amount(cu.usage_cents),
            "date": ts(&cu.date),
            "missing_usage_policy": cu.missing_usage_policy,
            "recurring": cu.recurring,
            "resource_name": r.map(|r| r.name.clone()).unwrap_or_default(),
            "resource_uuid": h(&cu.resource),
            "offering_name": off.map(|o| o.name.clone()).unwrap_or_default(),
            "offering_uuid": off.map(|o| h(&o.uuid)).unwrap_or_default(),
            "project_name": project.map(|p| p.name.clone()).unwrap_or_default(),
            "project_uuid": project.map(|p| h(&p.uuid)).unwrap_or_default(),
            "customer_name": cust.map(|c| c.name.clone()).unwrap_or_default(),
            "customer_uuid": cust.map(|c| h(&c.uuid)).unwrap_or_default(),
            "billing_period": cu.billing_period.to_string(),
            "modified_by": null,
        })
    }

    pub fn render_user_usage(&self, uu: &ComponentUserUsage) -> Value {
        let cu = self.component_usages.get(&uu.component_usage);
        let mut base = cu
            .map(|cu| self.render_component_usage(cu))
            .unwrap_or_else(|| json!({}));
        let component_type = cu.map(|c| c.component_type.clone()).unwrap_or_default();
        if let Value::Object(m) = &mut base {
            m.remove("recurring");
            m.remove("missing_usage_policy");
            m.remove("modified_by");
            m.remove("type");
            m.remove("name");
            m.insert("uuid".into(), json!(h(&uu.uuid)));
            m.insert("user".into(), json!(uu.user));
            m.insert("username".into(), json!(uu.username));
            m.insert(
                "component_usage".into(),
                json!(self.url("marketplace-component-usages", &uu.component_usage)),
            );
            m.insert("usage".into(), json!(amount(uu.usage_cents)));
            m.insert("created".into(), ts(&uu.created));
            m.insert("modified".into(), ts(&uu.modified));
            m.insert("backend_id".into(), json!(""));
            m.insert("component_type".into(), json!(component_type));
            m.insert("date".into(), ts(&uu.date));
            m.insert("description".into(), json!(""));
        }
        base
    }

    pub fn render_user(&self, u: &User, me: bool) -> Value {
        let permissions: Vec<Value> = if me {
            let mut p: Vec<Value> = self
                .customers
                .values()
                .filter(|c| c.owners.contains(&u.uuid))
                .map(|c| json!({"role_name": "CUSTOMER.OWNER", "role_uuid": h(&Uuid::new_v5(&Uuid::NAMESPACE_OID, b"CUSTOMER.OWNER")),
                    "scope_type": "customer", "scope_uuid": h(&c.uuid), "scope_name": c.name, "customer_uuid": h(&c.uuid),
                    "customer_name": c.name, "project_uuid": null, "resource_uuid": null, "expiration_time": null}))
                .collect();
            p.extend(self.project_roles.iter().filter(|r| r.user == u.uuid).filter_map(|r| {
                let proj = self.projects.get(&r.project)?;
                let cust = self.customers.get(&proj.customer)?;
                Some(json!({"role_name": r.role, "role_uuid": h(&Uuid::new_v5(&Uuid::NAMESPACE_OID, r.role.as_bytes())),
                    "scope_type": "project", "scope_uuid": h(&proj.uuid), "scope_name": proj.name, "customer_uuid": h(&cust.uuid),
                    "customer_name": cust.name, "project_uuid": h(&proj.uuid), "resource_uuid": null, "expiration_time": r.expiration_time}))
            }));
            p
        } else {
            vec![]
        };
        let mut v = json!({
            "url": self.url("users", &u.uuid),
            "uuid": h(&u.uuid),
            "username": u.username,
            "slug": slug_of(&u.username),
            "full_name": u.full_name,
            "native_name": "",
            "job_title": "",
            "email": u.email,
            "phone_number": "",
            "organization": "",
            "civil_number": null,
            "description": "",
            "is_staff": u.is_staff,
            "is_active": u.is_active,
            "is_support": false,
            "token_lifetime": null,
            "token_expires_at": null,
            "registration_method": "default",
            "date_joined": ts(&u.created),
            "agreement_date": null,
            "notifications_enabled": true,
            "preferred_language": "",
            "permissions": permissions,
            "requested_email": null,
            "affiliations": [],
            "first_name": u.first_name(),
            "last_name": u.last_name(),
            "birth_date": null,
            "identity_provider_name": "",
            "identity_provider_label": "",
            "identity_provider_management_url": "",
            "identity_provider_fields": [],
            "image": null,
            "identity_source": "local",
            "should_protect_user_details": false,
            "has_active_session": false,
            "has_usable_password": false,
            "ip_address": "",
            "gender": null,
            "personal_title": "",
            "place_of_birth": "",
            "address": "",
            "country_of_residence": "",
            "nationality": "",
            "nationalities": [],
            "organization_country": "",
            "organization_type": "",
            "organization_registry_code": "",
            "organization_vat_code": "",
            "organization_address": "",
            "eduperson_assurance": [],
            "uid_number": null,
            "primary_gid": null,
            "is_identity_manager": false,
            "can_use_personal_access_tokens": false,
            "attribute_sources": {},
            "managed_isds": [],
            "active_isds": [],
            "deactivation_reason": "",
            "is_admin_deactivated": false,
        });
        if me && let Value::Object(m) = &mut v {
            // The token is shown to its owner only, as users/me does.
            m.insert("token".into(), json!(u.token));
            m.insert("profile_completeness".into(), json!({"is_complete": true, "missing_fields": [], "mandatory_fields": [], "enforcement_enabled": false}));
        }
        v
    }

    pub fn render_project(&self, p: &Project) -> Value {
        let c = self.customers.get(&p.customer);
        let count = self
            .resources
            .values()
            .filter(|r| r.project == p.uuid && r.state != "Terminated")
            .count();
        json!({
            "url": self.url("projects", &p.uuid),
            "uuid": h(&p.uuid),
            "name": p.name,
            "slug": p.slug,
            "customer": self.url("customers", &p.customer),
            "customer_uuid": h(&p.customer),
            "customer_name": c.map(|c| c.name.clone()).unwrap_or_default(),
            "customer_slug": c.map(|c| c.slug.clone()).unwrap_or_default(),
            "customer_native_name": "",
            "customer_abbreviation": c.map(|c| c.abbreviation.clone()).unwrap_or_default(),
            "description": p.description,
            "customer_display_billing_info_in_projects": false,
            "display_credit_reports": false,
            "created": ts(&p.created),
            "type": null, "type_name": null, "type_uuid": null,
            "backend_id": "",
            "start_date": null,
            "end_date": p.end_date,
            "end_date_requested_by": null,
            "end_date_updated_at": null,
            "oecd_fos_2007_code": "",
            "oecd_fos_2007_label": "",
            "is_industry": false,
            "image": null,
            "resources_count": count,
            "project_metadata": [],
            "max_service_accounts": null,
            "kind": "default",
            "is_removed": false,
            "termination_metadata": null,
            "staff_notes": "",
            "grace_period_days": null,
            "customer_grace_period_days": null,
            "effective_end_date": p.end_date,
            "is_in_grace_period": false,
            "user_email_patterns": [],
            "user_affiliations": [],
            "user_identity_sources": [],
            "affiliation": null,
            "affiliation_uuid": null,
            "affiliation_name": "",
            "affiliation_code": "",
            "science_sub_domain": null,
            "science_sub_domain_name": "",
            "science_sub_domain_code": "",
            "science_domain_name": "",
            "science_domain_code": "",
            "project_credit": null,
            "marketplace_resource_count": {},
            "billing_price_estimate": {"total": "0", "current": "0", "tax": "0", "tax_current": "0"},
        })
    }

    pub fn render_customer(&self, c: &Customer) -> Value {
        let sp = self
            .service_providers
            .values()
            .find(|s| s.customer == c.uuid);
        json!({
            "url": self.url("customers", &c.uuid), "uuid": h(&c.uuid), "created": ts(&c.created),
            "organization_groups": [], "display_name": c.name, "backend_id": "", "image": null,
            "blocked": false, "archived": false, "display_billing_info_in_projects": false,
            "default_tax_percent": "0.00", "accounting_start_date": ts(&c.created),
            "projects_count": self.projects.values().filter(|p| p.customer == c.uuid).count(),
            "users_count": c.owners.len(), "sponsor_number": null, "country_name": "",
            "max_service_accounts": null, "project_metadata_checklist": null, "grace_period_days": null,
            "user_email_patterns": [], "user_affiliations": [], "user_identity_sources": [],
            "default_affiliations": [], "name": c.name, "slug": c.slug, "native_name": "",
            "abbreviation": c.abbreviation, "description": "", "contact_details": "", "agreement_number": "",
            "email": "", "phone_number": "", "access_subnets": "", "registration_code": "", "homepage": "",
            "domain": "", "vat_code": "", "postal": "", "address": "", "bank_name": "", "latitude": null,
            "longitude": null, "bank_account": "", "country": "", "notification_emails": "", "city": "",
            "state": "", "parish": "", "street": "", "house_nr": "", "apartment_nr": "", "household": "",
            "project_slug_template": null, "payment_profiles": [], "customer_credit": null,
            "customer_unallocated_credit": null, "has_affiliate_links": false,
            "is_service_provider": sp.is_some(),
            "service_provider": sp.map(|s| self.url("marketplace-service-providers", &s.uuid)),
            "service_provider_uuid": sp.map(|s| h(&s.uuid)),
            "call_managing_organization_uuid": null,
            "billing_price_estimate": {"total": "0", "current": "0", "tax": "0", "tax_current": "0"},
            "has_active_helpdesk": false,
        })
    }

    pub fn render_service_provider(&self, sp: &ServiceProvider) -> Value {
        let c = self.customers.get(&sp.customer);
        json!({
            "url": self.url("marketplace-service-providers", &sp.uuid),
            "uuid": h(&sp.uuid),
            "created": ts(&sp.created),
            "description": "",
            "enable_notifications": true,
            "customer": self.url("customers", &sp.customer),
            "customer_name": c.map(|c| c.name.clone()).unwrap_or_default(),
            "customer_uuid": h(&sp.customer),
            "customer_image": "",
            "customer_abbreviation": c.map(|c| c.abbreviation.clone()).unwrap_or_default(),
            "customer_slug": c.map(|c| c.slug.clone()).unwrap_or_default(),
            "customer_native_name": "",
            "customer_country": "",
            "image": null,
            "organization_groups": [],
            "offering_count": self.offerings.values().filter(|o| o.customer == sp.customer).count(),
            "allowed_domains": [],
        })
    }

    pub fn render_ssh_key(&self, k: &SshKey) -> Value {
        json!({
            "url": self.url("keys", &k.uuid), "uuid": h(&k.uuid), "name": k.name, "public_key": k.public_key,
            "fingerprint_md5": "", "fingerprint_sha256": "", "fingerprint_sha512": "",
            "user_uuid": h(&k.user), "is_shared": false, "type": k.public_key.split_whitespace().next().unwrap_or(""),
        })
    }

    /// ProjectUser, as `…/team/` returns it.
    pub fn render_team_member(&self, r: &ProjectRole, offering: &Uuid) -> Value {
        let u = self.users.get(&r.user);
        let ou = self
            .offering_users
            .values()
            .find(|ou| &ou.offering == offering && ou.user == r.user);
        let mut member = json!({
            "url": self.url("users", &r.user),
            "uuid": h(&r.user),
            "username": u.map(|u| u.username.clone()).unwrap_or_default(),
            "full_name": u.map(|u| u.full_name.clone()).unwrap_or_default(),
            "role": r.role,
            "expiration_time": r.expiration_time,
            "offering_user_username": ou.and_then(|o| o.username.clone()),
            "offering_user_state": ou.map(|o| o.state.clone()),
            "email": u.map(|u| u.email.clone()).unwrap_or_default(),
        });
        if self.api_profile.is_2024()
            && let Value::Object(m) = &mut member
        {
            m.remove("offering_user_state");
        }
        member
    }

    pub fn render_user_role(&self, r: &ProjectRole) -> Value {
        let u = self.users.get(&r.user);
        let by = r.created_by.and_then(|b| self.users.get(&b));
        let mut v = json!({
            "uuid": h(&r.uuid),
            "created": ts(&r.created),
            "expiration_time": r.expiration_time,
            "role_name": r.role,
            "role_uuid": h(&Uuid::new_v5(&Uuid::NAMESPACE_OID, r.role.as_bytes())),
            "user_email": u.map(|u| u.email.clone()).unwrap_or_default(),
            "user_full_name": u.map(|u| u.full_name.clone()).unwrap_or_default(),
            "user_username": u.map(|u| u.username.clone()).unwrap_or_default(),
            "user_uuid": h(&r.user),
            "user_image": "",
            "created_by_full_name": by.map(|b| b.full_name.clone()).unwrap_or_default(),
        });
        // A non-nullable UUID in the SDK: omitted (as for seeded roles) rather than null.
        if let (Some(b), Value::Object(m)) = (by, &mut v) {
            m.insert("created_by_uuid".into(), json!(h(&b.uuid)));
        }
        v
    }

    pub fn render_identity(&self, i: &AgentIdentity) -> Value {
        let services: Vec<Value> = self
            .services
            .values()
            .filter(|s| s.identity == i.uuid)
            .map(|s| json!({"uuid": h(&s.uuid), "url": self.url("marketplace-site-agent-services", &s.uuid), "name": s.name,
                "state": s.state, "created": ts(&s.created), "modified": ts(&s.modified), "mode": s.mode, "statistics": s.statistics}))
            .collect();
        json!({
            "uuid": h(&i.uuid),
            "url": self.url("marketplace-site-agent-identities", &i.uuid),
            "offering": h(&i.offering),
            "created_by": h(&i.created_by),
            "name": i.name,
            "created": ts(&i.created),
            "modified": ts(&i.modified),
            "services": services,
            "version": i.version,
            "dependencies": i.dependencies,
            "config_file_path": i.config_file_path,
            "config_file_content": i.config_file_content,
            "last_restarted": ts(&i.last_restarted),
            // Newer Mastermind (py-client 8.1.3) reports whether the agent's version is supported.
            "compatibility": match i.version.as_deref().filter(|v| !v.is_empty()) {
                Some(_) => json!({"status": "compatible", "message": ""}),
                None => json!({"status": "unknown", "message": "The agent reports no version."}),
            },
        })
    }

    pub fn render_processor(&self, p: &AgentProcessor, nested: bool) -> Value {
        let mut v = json!({
            "uuid": h(&p.uuid),
            "url": self.url("marketplace-site-agent-processors", &p.uuid),
            "name": p.name,
            "backend_type": p.backend_type,
            "created": ts(&p.created),
            "modified": ts(&p.modified),
            "last_run": ts(&p.last_run),
            "backend_version": p.backend_version,
        });
        if !nested && let Value::Object(m) = &mut v {
            m.insert("service".into(), json!(h(&p.service)));
            m.insert(
                "service_name".into(),
                json!(
                    self.services
                        .get(&p.service)
                        .map(|s| s.name.clone())
                        .unwrap_or_default()
                ),
            );
        }
        v
    }

    pub fn render_service(&self, s: &AgentService) -> Value {
        let processors: Vec<Value> = self
            .processors
            .values()
            .filter(|p| p.service == s.uuid)
            .map(|p| self.render_processor(p, true))
            .collect();
        json!({
            "uuid": h(&s.uuid),
            "url": self.url("marketplace-site-agent-services", &s.uuid),
            "identity": h(&s.identity),
            "identity_name": self.identities.get(&s.identity).map(|i| i.name.clone()).unwrap_or_default(),
            "name": s.name,
            "state": s.state,
            "created": ts(&s.created),
            "modified": ts(&s.modified),
            "processors": processors,
            "mode": s.mode,
            "statistics": s.statistics,
        })
    }

    pub fn render_subscription(&self, s: &EventSubscription) -> Value {
        let u = self.users.get(&s.user);
        json!({
            "uuid": h(&s.uuid),
            "url": self.url("event-subscriptions", &s.uuid),
            "user": self.url("users", &s.user),
            "user_uuid": h(&s.user),
            "user_username": u.map(|u| u.username.clone()).unwrap_or_default(),
            "user_full_name": u.map(|u| u.full_name.clone()).unwrap_or_default(),
            "created": ts(&s.created),
            "modified": ts(&s.modified),
            "source_ip": "127.0.0.1",
            "description": s.description,
            "observable_objects": s.observable_objects,
        })
    }

    pub fn render_subscription_queue(&self, q: &SubscriptionQueue) -> Value {
        let vhost = self
            .subscriptions
            .get(&q.subscription)
            .map(|s| h(&s.user))
            .unwrap_or_default();
        json!({
            "uuid": h(&q.uuid),
            "url": self.url("event-subscription-queues", &q.uuid),
            "event_subscription": self.url("event-subscriptions", &q.subscription),
            "event_subscription_uuid": h(&q.subscription),
            "offering_uuid": h(&q.offering),
            "object_type": q.object_type,
            "queue_name": q.queue_name(),
            "vhost": vhost,
            "created": ts(&q.created),
        })
    }

    pub fn render_plan_period(&self, pp: &PlanPeriod) -> Value {
        let plan = self.plans.get(&pp.plan);
        let comps: Vec<Value> = self
            .component_usages
            .values()
            .filter(|c| c.resource == pp.resource)
            .map(|c| {
                let mut v = self.render_component_usage(c);
                if let Value::Object(m) = &mut v {
                    m.retain(|k, _| {
                        matches!(
                            k.as_str(),
                            "uuid"
                                | "created"
                                | "type"
                                | "name"
                                | "measured_unit"
                                | "date"
                                | "recurring"
                                | "description"
                                | "usage"
                                | "missing_usage_policy"
                        )
                    });
                }
                v
            })
            .collect();
        json!({
            "uuid": h(&pp.uuid),
            "plan_name": plan.map(|p| p.name.clone()).unwrap_or_default(),
            "plan_uuid": h(&pp.plan),
            "components": comps,
            "start": ts(&pp.start),
            "end": ots(&pp.end),
        })
    }

    pub fn render_backend_resource(&self, b: &BackendResource) -> Value {
        json!({
            "url": self.url("backend-resources", &b.uuid), "uuid": h(&b.uuid), "name": b.name,
            "created": ts(&b.created), "modified": ts(&b.created),
            "project": h(&b.project),
            "project_name": self.projects.get(&b.project).map(|p| p.name.clone()).unwrap_or_default(),
            "project_url": self.url("projects", &b.project),
            "offering": h(&b.offering),
            "offering_name": self.offerings.get(&b.offering).map(|o| o.name.clone()).unwrap_or_default(),
            "offering_url": self.url("marketplace-provider-offerings", &b.offering),
            "backend_id": b.backend_id, "backend_metadata": b.backend_metadata,
        })
    }

    pub fn render_backend_resource_request(&self, b: &BackendResourceRequest) -> Value {
        json!({
            "url": self.url("backend-resource-requests", &b.uuid), "uuid": h(&b.uuid),
            "created": ts(&b.created), "modified": ts(&b.modified),
            "started": ots(&b.started), "finished": ots(&b.finished), "state": b.state,
            "offering": h(&b.offering),
            "offering_name": self.offerings.get(&b.offering).map(|o| o.name.clone()).unwrap_or_default(),
            "offering_url": self.url("marketplace-provider-offerings", &b.offering),
            "error_message": b.error_message, "error_traceback": b.error_traceback,
        })
    }
}

fn slug_of(s: &str) -> String {
    crate::store::slugify(s)
}
