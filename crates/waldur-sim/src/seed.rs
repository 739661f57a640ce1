//! Seed datasets (YAML): users, customers, projects with members, offerings with components and
//! plans, SSH keys. Names link objects together; UUIDs and tokens may be pinned or generated.
//!
//! ```yaml
//! users:
//!   - {username: staff, is_staff: true, token: "s3cr3t"}
//!   - {username: owner}
//!   - {username: alice, full_name: Alice Liddell}
//! customers:
//!   - {name: HPC Center, owners: [owner], service_provider: true}
//!   - {name: University, owners: [owner]}
//! projects:
//!   - name: Physics
//!     customer: University
//!     members: [{user: alice, role: PROJECT.MEMBER}]
//! offerings:
//!   - name: Cluster
//!     customer: HPC Center
//!     type: Marketplace.Slurm
//!     plugin_options: {username_generation_policy: waldur_username}
//!     components:
//!       - {type: cpu, name: CPU, measured_unit: k-Hours, billing_type: usage, unit_factor: 60000}
//!     plans: [{name: Default}]
//! brokers:            # optional; --rabbitmq-admin/--stomp/--mqtt flags override it
//!   rabbitmq_admin: http://waldur:waldur@127.0.0.1:15672
//!   stomp: 127.0.0.1:61613
//! ```

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::error::SimError;
use crate::model::*;
use crate::store::{Store, new_uuid, now, slugify};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub customers: Vec<SeedCustomer>,
    #[serde(default)]
    pub projects: Vec<SeedProject>,
    #[serde(default)]
    pub offerings: Vec<SeedOffering>,
    #[serde(default)]
    pub ssh_keys: Vec<SeedSshKey>,
    /// Project service accounts (state OK unless given).
    #[serde(default)]
    pub service_accounts: Vec<SeedAccount>,
    /// Course accounts; `user` links the Waldur user.
    #[serde(default)]
    pub course_accounts: Vec<SeedAccount>,
    /// Whether `set_usage` accepts past billing months (default true).
    #[serde(default)]
    pub allow_usage_backfill: Option<bool>,
    /// Event brokers (see [`crate::broker::BrokerOptions`]); command-line flags override these.
    #[serde(default)]
    pub brokers: Option<crate::broker::BrokerOptions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub username: String,
    #[serde(default)]
    pub uuid: Option<Uuid>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub is_staff: bool,
    #[serde(default)]
    pub is_active: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCustomer {
    pub name: String,
    #[serde(default)]
    pub uuid: Option<Uuid>,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub service_provider: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedProject {
    pub name: String,
    pub customer: String,
    #[serde(default)]
    pub uuid: Option<Uuid>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
    #[serde(default)]
    pub members: Vec<SeedMember>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMember {
    pub user: String,
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "PROJECT.MEMBER".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedOffering {
    pub name: String,
    pub customer: String,
    #[serde(default)]
    pub uuid: Option<Uuid>,
    #[serde(default = "default_type", rename = "type")]
    pub type_: String,
    #[serde(default = "default_state")]
    pub state: String,
    #[serde(default)]
    pub backend_id: String,
    #[serde(default)]
    pub plugin_options: IndexMap<String, Value>,
    #[serde(default)]
    pub secret_options: IndexMap<String, Value>,
    #[serde(default)]
    pub partitions: Vec<String>,
    #[serde(default)]
    pub components: Vec<SeedComponent>,
    #[serde(default)]
    pub plans: Vec<SeedPlan>,
}

fn default_type() -> String {
    "Marketplace.Slurm".into()
}
fn default_state() -> String {
    "Active".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedComponent {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub measured_unit: String,
    #[serde(default = "default_billing")]
    pub billing_type: String,
    #[serde(default = "one")]
    pub unit_factor: i64,
    #[serde(default)]
    pub limit_amount: Option<i64>,
    #[serde(default)]
    pub limit_period: Option<String>,
    #[serde(default)]
    pub description: String,
    /// Mastermind's `OfferingComponent.max_value` / `min_value` (0 or absent: no bound).
    #[serde(default)]
    pub max_value: Option<i64>,
    #[serde(default)]
    pub min_value: Option<i64>,
}

fn default_billing() -> String {
    "usage".into()
}
fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPlan {
    pub name: String,
    #[serde(default)]
    pub uuid: Option<Uuid>,
    #[serde(default = "default_unit")]
    pub unit: String,
    #[serde(default)]
    pub quotas: IndexMap<String, Value>,
    #[serde(default)]
    pub prices: IndexMap<String, Value>,
}

fn default_unit() -> String {
    "month".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSshKey {
    pub user: String,
    pub name: String,
    pub public_key: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAccount {
    /// Project name.
    pub project: String,
    pub username: String,
    #[serde(default)]
    pub uuid: Option<Uuid>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `OK` (default), `Closed`, `Erred`, `Pending`.
    #[serde(default)]
    pub state: Option<String>,
    /// Username of the Waldur user (course accounts).
    #[serde(default)]
    pub user: Option<String>,
}

pub fn random_token() -> String {
    format!("{}{}", new_uuid().simple(), new_uuid().simple())
}

impl Seed {
    pub fn from_yaml(text: &str) -> Result<Seed, SimError> {
        serde_saphyr::from_str(text).map_err(|e| SimError::Seed(e.to_string()))
    }

    pub fn from_file(path: &std::path::Path) -> Result<Seed, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::SeedRead {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// Adds the dataset to the store; unknown references are errors, never silently dropped.
    pub fn apply(&self, store: &mut Store) -> Result<(), SimError> {
        let ts = now();
        if let Some(b) = self.allow_usage_backfill {
            store.allow_usage_backfill = b;
        }
        let user_by_name = |store: &Store, name: &str| -> Result<Uuid, SimError> {
            store
                .users
                .values()
                .find(|u| u.username == name)
                .map(|u| u.uuid)
                .ok_or_else(|| SimError::Seed(format!("unknown user {name:?}")))
        };
        let customer_by_name = |store: &Store, name: &str| -> Result<Uuid, SimError> {
            store
                .customers
                .values()
                .find(|c| c.name == name)
                .map(|c| c.uuid)
                .ok_or_else(|| SimError::Seed(format!("unknown customer {name:?}")))
        };
        for u in &self.users {
            if store.users.values().any(|x| x.username == u.username) {
                return Err(SimError::Seed(format!("duplicate user {:?}", u.username)));
            }
            let user = User {
                uuid: u.uuid.unwrap_or_else(new_uuid),
                username: u.username.clone(),
                full_name: u.full_name.clone().unwrap_or_else(|| u.username.clone()),
                email: u
                    .email
                    .clone()
                    .unwrap_or_else(|| format!("{}@example.com", u.username)),
                token: u.token.clone().unwrap_or_else(random_token),
                is_staff: u.is_staff,
                is_active: u.is_active.unwrap_or(true),
                created: ts,
            };
            store.users.insert(user.uuid, user);
        }
        for c in &self.customers {
            let owners = c
                .owners
                .iter()
                .map(|o| user_by_name(store, o))
                .collect::<Result<Vec<_>, _>>()?;
            let customer = Customer {
                uuid: c.uuid.unwrap_or_else(new_uuid),
                slug: slugify(&c.name),
                abbreviation: c
                    .name
                    .chars()
                    .filter(|ch| ch.is_ascii_uppercase())
                    .collect(),
                name: c.name.clone(),
                owners,
                created: ts,
            };
            if c.service_provider {
                let sp = ServiceProvider {
                    uuid: new_uuid(),
                    customer: customer.uuid,
                    created: ts,
                };
                store.service_providers.insert(sp.uuid, sp);
            }
            store.customers.insert(customer.uuid, customer);
        }
        for p in &self.projects {
            let customer = customer_by_name(store, &p.customer)?;
            let project = Project {
                uuid: p.uuid.unwrap_or_else(new_uuid),
                name: p.name.clone(),
                slug: p.slug.clone().unwrap_or_else(|| slugify(&p.name)),
                description: p.description.clone().unwrap_or_default(),
                customer,
                end_date: p.end_date.clone(),
                created: ts,
            };
            for m in &p.members {
                let user = user_by_name(store, &m.user)?;
                store.project_roles.push(ProjectRole {
                    uuid: new_uuid(),
                    project: project.uuid,
                    user,
                    role: m.role.clone(),
                    expiration_time: None,
                    created: ts,
                    created_by: None,
                });
            }
            store.projects.insert(project.uuid, project);
        }
        for o in &self.offerings {
            let customer = customer_by_name(store, &o.customer)?;
            if !store
                .service_providers
                .values()
                .any(|s| s.customer == customer)
            {
                let sp = ServiceProvider {
                    uuid: new_uuid(),
                    customer,
                    created: ts,
                };
                store.service_providers.insert(sp.uuid, sp);
            }
            let offering = Offering {
                uuid: o.uuid.unwrap_or_else(new_uuid),
                name: o.name.clone(),
                slug: slugify(&o.name),
                description: String::new(),
                type_: o.type_.clone(),
                state: o.state.clone(),
                customer,
                backend_id: o.backend_id.clone(),
                shared: true,
                billable: true,
                plugin_options: o.plugin_options.clone().into_iter().collect(),
                secret_options: o.secret_options.clone().into_iter().collect(),
                service_attributes: Default::default(),
                attributes: Default::default(),
                components: o
                    .components
                    .iter()
                    .map(|c| Component {
                        uuid: new_uuid(),
                        type_: c.type_.clone(),
                        name: c.name.clone().unwrap_or_else(|| c.type_.to_uppercase()),
                        description: c.description.clone(),
                        measured_unit: c.measured_unit.clone(),
                        billing_type: c.billing_type.clone(),
                        unit_factor: c.unit_factor,
                        limit_period: c.limit_period.clone(),
                        limit_amount: c.limit_amount,
                        article_code: String::new(),
                        max_value: c.max_value,
                        min_value: c.min_value,
                        max_available_limit: None,
                        is_boolean: false,
                        default_limit: None,
                        is_prepaid: false,
                        is_builtin: false,
                    })
                    .collect(),
                partitions: o.partitions.clone(),
                created: ts,
                integration_status: Default::default(),
            };
            for p in &o.plans {
                let plan = Plan {
                    uuid: p.uuid.unwrap_or_else(new_uuid),
                    offering: offering.uuid,
                    name: p.name.clone(),
                    description: String::new(),
                    unit: p.unit.clone(),
                    unit_price: "0.0000000".into(),
                    prices: p.prices.clone().into_iter().collect(),
                    quotas: p.quotas.clone().into_iter().collect(),
                    archived: false,
                    backend_id: String::new(),
                };
                store.plans.insert(plan.uuid, plan);
            }
            store.offerings.insert(offering.uuid, offering);
        }
        for k in &self.ssh_keys {
            let user = user_by_name(store, &k.user)?;
            let key = SshKey {
                uuid: new_uuid(),
                user,
                name: k.name.clone(),
                public_key: k.public_key.clone(),
            };
            store.ssh_keys.insert(key.uuid, key);
        }
        let kinds = [
            (
                crate::accounts::AccountKind::Service,
                &self.service_accounts,
            ),
            (crate::accounts::AccountKind::Course, &self.course_accounts),
        ];
        for (kind, accounts) in kinds {
            for a in accounts {
                let project = store
                    .projects
                    .values()
                    .find(|p| p.name == a.project)
                    .map(|p| p.uuid)
                    .ok_or_else(|| SimError::Seed(format!("unknown project {:?}", a.project)))?;
                let user = a
                    .user
                    .as_deref()
                    .map(|u| user_by_name(store, u))
                    .transpose()?;
                let ts = now();
                // Seeded state is the starting point: no events.
                let account = crate::accounts::ProjectAccount {
                    uuid: a.uuid.unwrap_or_else(new_uuid),
                    kind,
                    project,
                    username: a.username.clone(),
                    state: a.state.clone().unwrap_or_else(|| "OK".into()),
                    email: a.email.clone().unwrap_or_default(),
                    description: a.description.clone().unwrap_or_default(),
                    user,
                    created: ts,
                    modified: ts,
                };
                store.project_accounts.insert(account.uuid, account);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
users:
  - {username: staff, is_staff: true, token: "s3cr3t"}
  - {username: owner}
  - {username: alice, full_name: Alice Liddell}
customers:
  - {name: HPC Center, owners: [owner], service_provider: true}
  - {name: University, owners: [owner]}
projects:
  - name: Physics
    customer: University
    members: [{user: alice, role: PROJECT.MEMBER}]
offerings:
  - name: Cluster
    customer: HPC Center
    type: Marketplace.Slurm
    plugin_options: {username_generation_policy: waldur_username}
    components:
      - {type: cpu, name: CPU, measured_unit: k-Hours, billing_type: usage, unit_factor: 60000}
    plans: [{name: Default}]
brokers:
  rabbitmq_admin: http://waldur:waldur@127.0.0.1:15672
  stomp: 127.0.0.1:61613
"#;

    #[test]
    fn documented_example_loads() {
        let seed = Seed::from_yaml(EXAMPLE).expect("example parses");
        let mut store = Store::new("http://sim".into());
        seed.apply(&mut store).expect("example applies");
        assert_eq!(store.users.len(), 3);
        assert!(store.user_by_token("s3cr3t").is_some_and(|u| u.is_staff));
        let off = store.offerings.values().next().expect("offering");
        assert_eq!(off.components[0].unit_factor, 60000);
        assert_eq!(store.service_providers.len(), 1);
        assert_eq!(store.project_roles.len(), 1);
        assert_eq!(store.plans.len(), 1);
        let brokers = seed.brokers.expect("brokers section");
        assert_eq!(brokers.stomp.as_deref(), Some("127.0.0.1:61613"));
        assert!(brokers.mqtt.is_none());
        assert!(
            Seed::from_yaml("brokers: {stomp_host: x}").is_err(),
            "typos in broker keys are reported"
        );
    }

    #[test]
    fn unknown_references_and_keys_are_errors() {
        let bad_ref = "projects: [{name: P, customer: Nope}]";
        let mut store = Store::new("http://sim".into());
        let err = Seed::from_yaml(bad_ref).expect("parses").apply(&mut store);
        assert!(matches!(err, Err(SimError::Seed(m)) if m.contains("Nope")));
        assert!(
            Seed::from_yaml("userz: []").is_err(),
            "typos in keys are reported"
        );
    }
}
