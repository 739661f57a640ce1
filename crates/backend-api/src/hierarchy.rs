//! The account hierarchy of accounting-tool backends (SLURM, MOAB), independent of any tool.
//!
//! A resource lives in `root → customer → project → allocation` (or `parent_account → project →
//! allocation` in flat mode). This module decides which accounts a resource needs and, for a batch of
//! resources, which accounts are still missing and how they group into few "add" calls. It knows
//! nothing about sacctmgr or `mam-*`: each backend turns [`AddGroup`]s into its own commands.

use std::collections::{BTreeMap, BTreeSet};

use crate::names::validate_site_name;
use crate::{BackendError, ResourceView};

/// Where an account sits in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Customer,
    Project,
    Allocation,
}

/// One account a resource needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSpec {
    pub tier: Tier,
    /// Lower-case (the accounting tools fold case).
    pub name: String,
    pub description: String,
    pub organization: String,
    pub parent: String,
}

/// Naming rules of the hierarchy (prefixes and tops).
#[derive(Clone, Debug)]
pub struct Hierarchy {
    /// Parent of customer accounts.
    pub root_account: String,
    /// Flat mode: parent of project accounts, no customer tier.
    pub parent_account: Option<String>,
    pub customer_prefix: String,
    pub project_prefix: String,
    pub allocation_prefix: String,
}

/// The accounts of one resource, top first (customer?, project, allocation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountPlan {
    pub accounts: Vec<AccountSpec>,
}

impl AccountPlan {
    pub fn allocation(&self) -> Option<&AccountSpec> {
        self.accounts.iter().find(|a| a.tier == Tier::Allocation)
    }
    pub fn project(&self) -> Option<&AccountSpec> {
        self.accounts.iter().find(|a| a.tier == Tier::Project)
    }
    pub fn customer(&self) -> Option<&AccountSpec> {
        self.accounts.iter().find(|a| a.tier == Tier::Customer)
    }
}

/// Descriptions end up inside one argument and in `|`-separated output: no quotes, no newlines.
pub fn sanitize_description(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '"' && *c != '|')
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Hierarchy {
    /// Allocation account for a resource slug: `lower(allocation_prefix + slug)`, validated.
    pub fn allocation_id(&self, slug: &str) -> Result<String, BackendError> {
        let id = format!("{}{}", self.allocation_prefix, slug).to_lowercase();
        validate_site_name("account name", &id)?;
        Ok(id)
    }

    pub fn project_id(&self, project_slug: &str) -> Result<String, BackendError> {
        if project_slug.trim().is_empty() {
            return Err(BackendError::permanent(
                "the resource has no project slug; cannot name its project account",
            ));
        }
        let id = format!("{}{}", self.project_prefix, project_slug).to_lowercase();
        validate_site_name("account name", &id)?;
        Ok(id)
    }

    pub fn customer_id(&self, customer_slug: &str) -> Result<String, BackendError> {
        if customer_slug.trim().is_empty() {
            return Err(BackendError::permanent(
                "the resource has no customer slug; cannot name its customer account",
            ));
        }
        let id = format!("{}{}", self.customer_prefix, customer_slug).to_lowercase();
        validate_site_name("account name", &id)?;
        Ok(id)
    }

    /// Whether there is a customer tier.
    pub fn is_flat(&self) -> bool {
        self.parent_account.is_some()
    }

    /// The accounts `resource` needs, with `allocation` as its allocation account id.
    /// Every name is validated before anything can run.
    pub fn plan(
        &self,
        resource: &ResourceView,
        allocation: &str,
    ) -> Result<AccountPlan, BackendError> {
        validate_site_name("account name", allocation)?;
        let project = self.project_id(&resource.project_slug)?;
        let mut accounts = Vec::with_capacity(3);
        let project_parent = match &self.parent_account {
            Some(flat_parent) => flat_parent.to_lowercase(),
            None => {
                let customer = self.customer_id(&resource.customer_slug)?;
                accounts.push(AccountSpec {
                    tier: Tier::Customer,
                    name: customer.clone(),
                    description: sanitize_description(&resource.customer_name),
                    organization: customer.clone(),
                    parent: self.root_account.to_lowercase(),
                });
                customer
            }
        };
        accounts.push(AccountSpec {
            tier: Tier::Project,
            name: project.clone(),
            description: sanitize_description(&resource.project_name),
            organization: project.clone(),
            parent: project_parent,
        });
        accounts.push(AccountSpec {
            tier: Tier::Allocation,
            name: allocation.to_lowercase(),
            description: sanitize_description(&resource.name),
            organization: project.clone(),
            parent: project,
        });
        Ok(AccountPlan { accounts })
    }
}

/// Accounts to add with one call: same tier, parent, description, organization and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddGroup {
    pub tier: Tier,
    pub parent: String,
    pub description: String,
    pub organization: String,
    /// Site-unit limits to set at creation (allocation accounts), key-sorted.
    pub limits: BTreeMap<String, i64>,
    pub names: Vec<String>,
}

/// Missing accounts of many plans, grouped for few "add" calls, in creation order (tier by tier).
///
/// `existing` holds lower-case names already on the site; `limits[i]` are the site limits for the
/// allocation account of `plans[i]`. An account shared by several plans is added once.
pub fn missing_account_groups(
    plans: &[&AccountPlan],
    limits: &[&BTreeMap<String, i64>],
    existing: &BTreeSet<String>,
) -> Vec<AddGroup> {
    type Key = (Tier, String, String, String, Vec<(String, i64)>);
    let mut groups: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (i, plan) in plans.iter().enumerate() {
        for account in &plan.accounts {
            if existing.contains(&account.name) || !seen.insert(account.name.clone()) {
                continue;
            }
            let account_limits: Vec<(String, i64)> = if account.tier == Tier::Allocation {
                limits
                    .get(i)
                    .map(|l| l.iter().map(|(k, v)| (k.clone(), *v)).collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            groups
                .entry((
                    account.tier,
                    account.parent.clone(),
                    account.description.clone(),
                    account.organization.clone(),
                    account_limits,
                ))
                .or_default()
                .push(account.name.clone());
        }
    }
    // BTreeMap order puts Customer before Project before Allocation: parents exist first.
    groups
        .into_iter()
        .map(
            |((tier, parent, description, organization, limits), names)| AddGroup {
                tier,
                parent,
                description,
                organization,
                limits: limits.into_iter().collect(),
                names,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy(flat: bool) -> Hierarchy {
        Hierarchy {
            root_account: "root".into(),
            parent_account: flat.then(|| "waldur".to_owned()),
            customer_prefix: "c_".into(),
            project_prefix: "p_".into(),
            allocation_prefix: "A_".into(),
        }
    }

    fn resource(slug: &str, project: &str, customer: &str) -> ResourceView {
        ResourceView {
            slug: slug.into(),
            name: format!("Resource \"{slug}\"\nline"),
            project_slug: project.into(),
            project_name: "Project X".into(),
            customer_slug: customer.into(),
            customer_name: "Customer  Y".into(),
            ..Default::default()
        }
    }

    #[test]
    fn three_tier_plan_names_and_parents() {
        let h = hierarchy(false);
        let id = h.allocation_id("Res1").expect("valid");
        assert_eq!(id, "a_res1");
        let plan = h
            .plan(&resource("Res1", "proj", "cust"), &id)
            .expect("plan");
        let summary: Vec<(Tier, &str, &str, &str)> = plan
            .accounts
            .iter()
            .map(|a| {
                (
                    a.tier,
                    a.name.as_str(),
                    a.parent.as_str(),
                    a.organization.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (Tier::Customer, "c_cust", "root", "c_cust"),
                (Tier::Project, "p_proj", "c_cust", "p_proj"),
                (Tier::Allocation, "a_res1", "p_proj", "p_proj"),
            ]
        );
        assert_eq!(
            plan.allocation().map(|a| a.description.as_str()),
            Some("Resource Res1 line")
        );
        assert_eq!(
            plan.customer().map(|a| a.description.as_str()),
            Some("Customer Y")
        );
    }

    #[test]
    fn flat_plan_has_no_customer() {
        let h = hierarchy(true);
        let plan = h.plan(&resource("r", "proj", ""), "a_r").expect("plan");
        assert!(plan.customer().is_none());
        assert_eq!(plan.project().map(|p| p.parent.as_str()), Some("waldur"));
    }

    #[test]
    fn missing_slugs_and_hostile_names_are_refused() {
        let h = hierarchy(false);
        assert!(h.plan(&resource("r", "", "c"), "a_r").is_err());
        assert!(h.plan(&resource("r", "p", ""), "a_r").is_err());
        assert!(h.plan(&resource("r", "x,parent=root", "c"), "a_r").is_err());
        assert!(h.allocation_id("a b").is_err());
    }

    #[test]
    fn groups_share_parents_and_skip_existing() {
        let h = hierarchy(false);
        let mut r1 = resource("r1", "proj", "cust");
        r1.name = "same".into();
        let mut r2 = resource("r2", "proj", "cust");
        r2.name = "same".into();
        let mut r3 = resource("r3", "proj2", "cust");
        r3.name = "same".into();
        let plans: Vec<AccountPlan> = [&r1, &r2, &r3]
            .iter()
            .map(|r| {
                h.plan(r, &h.allocation_id(&r.slug).expect("id"))
                    .expect("plan")
            })
            .collect();
        let l1: BTreeMap<String, i64> = [("cpu".to_owned(), 10)].into();
        let l3: BTreeMap<String, i64> = [("cpu".to_owned(), 20)].into();
        let existing: BTreeSet<String> = ["c_cust".to_owned()].into();
        let groups = missing_account_groups(
            &plans.iter().collect::<Vec<_>>(),
            &[&l1, &l1, &l3],
            &existing,
        );
        let shape: Vec<(Tier, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.tier, g.names.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            shape,
            vec![
                // organization = the project itself, so projects never share a group
                (Tier::Project, vec!["p_proj"]),
                (Tier::Project, vec!["p_proj2"]),
                (Tier::Allocation, vec!["a_r1", "a_r2"]),
                (Tier::Allocation, vec!["a_r3"]),
            ]
        );
    }
}
