//! The documented demo dataset (`waldur-sim --demo`):
//!
//! - `staff` (staff user);
//! - `provider-owner`, owner of the service-provider customer "HPC Provider";
//! - `consumer-owner`, owner of the customer "Research University" and its project "Demo project";
//! - `alice`, `bob`, `carol`: ordinary users, not yet in any project (add them with `add_user`);
//! - offering "Demo SLURM cluster" (`Marketplace.Slurm`, Active) with usage components `cpu`
//!   (k-Hours, unit factor 60000) and `mem` (gb-Hours, unit factor 61440), the limit component
//!   `gpu` (gpu-Hours, unit factor 60), and one plan "Default";
//! - plugin options: `username_generation_policy` (`waldur_username` by default),
//!   `service_provider_can_create_offering_user: true`, `account_name_generation_policy: project_slug`.
//!
//! `--offering-kind okd` replaces the SLURM offering by "Demo OKD cluster" (the site-agent type
//! `Marketplace.Slurm`, backend id `okd`) with the OKD plugin's `limit` components `cpu` (Core),
//! `memory` (GB), `storage` (GB) and `pods` (Count), unit factor 1, and one plan "Default".
//!
//! `--offering-kind rancher` replaces it by "Demo Rancher cluster" (backend id `rancher`) with the
//! Rancher plugin's `limit` components `cpu` (cores), `memory` (GB), `storage` (GB) and `gpu`
//! (units), unit factor 1, and one plan "Default".
//! `--offering-kind opennebula-vdc` replaces it by "Demo OpenNebula VDC" (backend id
//! `opennebula`) with the OpenNebula plugin's `limit` components `cpu` (cores), `ram` (MB),
//! `storage` (MB) and `floating_ip` (IPs), and the networking `plugin_options` of the seed's
//! example (clusters 0 and 100, provider network 10, virtual router template 8, an SSH rule), which
//! match `site-sim opennebula --demo`. `--offering-kind opennebula-vm` replaces it by "Demo
//! OpenNebula VM" with `fixed` components `vcpu` (cores), `vm_ram` (MB), `vm_disk` (MB), plans
//! Small (1/512/5120), Medium (2/2048/10240) and Large (4/8192/51200) and `template_id: 0`; its
//! resources can switch plans (`switch_plan`).
//!
//! `--offering-kind moab` replaces it by "Demo MOAB cluster" (backend id `moab`) with the MOAB
//! plugin's one `limit` component `deposit` (credits, unit factor 1) and one plan "Default".

use serde::Serialize;
use serde_json::json;

use crate::seed::{
    Seed, SeedComponent, SeedCustomer, SeedMember, SeedOffering, SeedPlan, SeedProject, SeedUser,
};
use crate::store::Store;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DemoUser {
    pub uuid: String,
    pub username: String,
    pub token: String,
}

/// What the demo JSON line carries (and [`crate::SimServer::demo`] returns).
#[derive(Clone, Serialize, PartialEq, Default)]
pub struct DemoInfo {
    pub api_url: String,
    pub staff_token: String,
    pub provider_token: String,
    pub consumer_token: String,
    pub offering_uuid: String,
    pub plan_uuid: String,
    pub project_uuid: String,
    pub customer_uuid: String,
    pub provider_customer_uuid: String,
    pub users: Vec<DemoUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stomp_ws_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stomp_ws_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stomp_ws_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_ws_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_ws_path: Option<String>,
}

impl std::fmt::Debug for DemoInfo {
    // Tokens are credentials: never in Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoInfo")
            .field("api_url", &self.api_url)
            .field("offering_uuid", &self.offering_uuid)
            .field("project_uuid", &self.project_uuid)
            .field("tokens", &"***")
            .finish()
    }
}

pub const DEMO_OFFERING: &str = "Demo SLURM cluster";
pub const DEMO_OKD_OFFERING: &str = "Demo OKD cluster";
pub const DEMO_MOAB_OFFERING: &str = "Demo MOAB cluster";
pub const DEMO_RANCHER_OFFERING: &str = "Demo Rancher cluster";
pub const DEMO_ONE_VDC_OFFERING: &str = "Demo OpenNebula VDC";
pub const DEMO_ONE_VM_OFFERING: &str = "Demo OpenNebula VM";

/// Which demo offering `--demo` seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoOfferingKind {
    #[default]
    Slurm,
    Okd,
    Moab,
    Rancher,
    OpennebulaVdc,
    OpennebulaVm,
}

impl DemoOfferingKind {
    pub const NAMES: &'static [&'static str] = &[
        "slurm",
        "okd",
        "moab",
        "rancher",
        "opennebula-vdc",
        "opennebula-vm",
    ];

    pub fn offering_name(self) -> &'static str {
        match self {
            DemoOfferingKind::Slurm => DEMO_OFFERING,
            DemoOfferingKind::Okd => DEMO_OKD_OFFERING,
            DemoOfferingKind::Moab => DEMO_MOAB_OFFERING,
            DemoOfferingKind::Rancher => DEMO_RANCHER_OFFERING,
            DemoOfferingKind::OpennebulaVdc => DEMO_ONE_VDC_OFFERING,
            DemoOfferingKind::OpennebulaVm => DEMO_ONE_VM_OFFERING,
        }
    }
}

impl std::str::FromStr for DemoOfferingKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "slurm" => Ok(DemoOfferingKind::Slurm),
            "okd" => Ok(DemoOfferingKind::Okd),
            "moab" => Ok(DemoOfferingKind::Moab),
            "rancher" => Ok(DemoOfferingKind::Rancher),
            "opennebula-vdc" => Ok(DemoOfferingKind::OpennebulaVdc),
            "opennebula-vm" => Ok(DemoOfferingKind::OpennebulaVm),
            other => Err(format!(
                "unknown offering kind {other:?} (known: {})",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// The OKD offering's components: the plugin's quota components, all `limit`-based.
fn okd_components() -> Vec<SeedComponent> {
    components(
        &[
            ("cpu", "CPU", "Core"),
            ("memory", "Memory", "GB"),
            ("storage", "Storage", "GB"),
            ("pods", "Pods", "Count"),
        ],
        "limit",
    )
}

/// The Rancher offering's components: the plugin's quota components, all `limit`-based.
fn rancher_components() -> Vec<SeedComponent> {
    components(
        &[
            ("cpu", "CPU", "cores"),
            ("memory", "Memory", "GB"),
            ("storage", "Storage", "GB"),
            ("gpu", "GPU", "units"),
        ],
        "limit",
    )
}

fn components(list: &[(&str, &str, &str)], billing: &str) -> Vec<SeedComponent> {
    list.iter()
        .map(|(type_, name, unit)| SeedComponent {
            type_: (*type_).into(),
            name: Some((*name).into()),
            measured_unit: (*unit).into(),
            billing_type: billing.into(),
            unit_factor: 1,
            ..Default::default()
        })
        .collect()
}

fn opennebula_offering(o: &mut SeedOffering, kind: DemoOfferingKind) {
    o.backend_id = "opennebula".into();
    o.partitions = vec![];
    if kind == DemoOfferingKind::OpennebulaVdc {
        o.name = DEMO_ONE_VDC_OFFERING.into();
        o.components = components(
            &[
                ("cpu", "CPU", "cores"),
                ("ram", "RAM", "MB"),
                ("storage", "Storage", "MB"),
                ("floating_ip", "Floating IPs", "IPs"),
            ],
            "limit",
        );
        for (k, v) in [
            ("zone_id", json!(0)),
            ("cluster_ids", json!([0, 100])),
            ("external_network_id", json!(10)),
            ("vxlan_phydev", json!("eth0")),
            ("virtual_router_template_id", json!(8)),
            ("default_dns", json!("8.8.8.8")),
            ("internal_network_base", json!("10.0.0.0")),
            ("internal_network_prefix", json!(8)),
            ("subnet_prefix_length", json!(24)),
            (
                "security_group_defaults",
                json!([
                    {"direction": "INBOUND", "protocol": "TCP", "range": "22:22"},
                    {"direction": "INBOUND", "protocol": "ICMP", "type": "8"}
                ]),
            ),
        ] {
            o.plugin_options.insert(k.into(), v);
        }
    } else {
        o.name = DEMO_ONE_VM_OFFERING.into();
        o.components = components(
            &[
                ("vcpu", "vCPU", "cores"),
                ("vm_ram", "RAM", "MB"),
                ("vm_disk", "Disk", "MB"),
            ],
            "fixed",
        );
        o.plugin_options.insert("template_id".into(), json!(0));
        o.plans = [
            ("Small", 1, 512, 5120),
            ("Medium", 2, 2048, 10240),
            ("Large", 4, 8192, 51200),
        ]
        .into_iter()
        .map(|(name, vcpu, ram, disk)| SeedPlan {
            name: name.into(),
            unit: "month".into(),
            quotas: [
                ("vcpu".to_owned(), json!(vcpu)),
                ("vm_ram".to_owned(), json!(ram)),
                ("vm_disk".to_owned(), json!(disk)),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        })
        .collect();
    }
}

pub const DEMO_PROJECT: &str = "Demo project";
pub const DEMO_USERS: &[&str] = &["alice", "bob", "carol"];

pub fn demo_seed(username_policy: &str) -> Seed {
    demo_seed_of_kind(username_policy, DemoOfferingKind::Slurm)
}

/// The demo dataset with the demo offering of `kind`.
pub fn demo_seed_of_kind(username_policy: &str, kind: DemoOfferingKind) -> Seed {
    let user = |name: &str, full: &str, staff: bool| SeedUser {
        username: name.into(),
        full_name: Some(full.into()),
        is_staff: staff,
        ..Default::default()
    };
    let mut users = vec![
        user("staff", "Staff Admin", true),
        user("provider-owner", "Paula Provider", false),
        user("consumer-owner", "Connor Consumer", false),
    ];
    users.extend([
        user("alice", "Alice Liddell", false),
        user("bob", "Bob Builder", false),
        user("carol", "Carol Danvers", false),
    ]);
    let plugin_options = [
        ("username_generation_policy", json!(username_policy)),
        ("service_provider_can_create_offering_user", json!(true)),
        ("account_name_generation_policy", json!("project_slug")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut seed = Seed {
        users,
        customers: vec![
            SeedCustomer {
                name: "HPC Provider".into(),
                owners: vec!["provider-owner".into()],
                service_provider: true,
                ..Default::default()
            },
            SeedCustomer {
                name: "Research University".into(),
                owners: vec!["consumer-owner".into()],
                ..Default::default()
            },
        ],
        projects: vec![SeedProject {
            name: DEMO_PROJECT.into(),
            customer: "Research University".into(),
            slug: Some("demo-project".into()),
            description: Some("Project of the waldur-sim demo dataset".into()),
            members: vec![SeedMember {
                user: "consumer-owner".into(),
                role: "PROJECT.MANAGER".into(),
            }],
            ..Default::default()
        }],
        offerings: vec![SeedOffering {
            name: DEMO_OFFERING.into(),
            customer: "HPC Provider".into(),
            type_: "Marketplace.Slurm".into(),
            state: "Active".into(),
            backend_id: "waldur".into(),
            plugin_options,
            partitions: vec!["debug".into()],
            components: vec![
                SeedComponent {
                    type_: "cpu".into(),
                    name: Some("CPU".into()),
                    measured_unit: "k-Hours".into(),
                    billing_type: "usage".into(),
                    unit_factor: 60000,
                    limit_amount: Some(100),
                    ..Default::default()
                },
                SeedComponent {
                    type_: "mem".into(),
                    name: Some("RAM".into()),
                    measured_unit: "gb-Hours".into(),
                    billing_type: "usage".into(),
                    unit_factor: 61440,
                    limit_amount: Some(100),
                    ..Default::default()
                },
                SeedComponent {
                    type_: "gpu".into(),
                    name: Some("GPU".into()),
                    measured_unit: "gpu-Hours".into(),
                    billing_type: "limit".into(),
                    unit_factor: 60,
                    limit_period: Some("total".into()),
                    ..Default::default()
                },
            ],
            plans: vec![SeedPlan {
                name: "Default".into(),
                unit: "month".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    if kind == DemoOfferingKind::Okd
        && let Some(o) = seed.offerings.first_mut()
    {
        o.name = DEMO_OKD_OFFERING.into();
        o.backend_id = "okd".into();
        o.partitions = vec![];
        o.components = okd_components();
    }
    if kind == DemoOfferingKind::Rancher
        && let Some(o) = seed.offerings.first_mut()
    {
        o.name = DEMO_RANCHER_OFFERING.into();
        o.backend_id = "rancher".into();
        o.partitions = vec![];
        o.components = rancher_components();
    }
    if kind == DemoOfferingKind::Moab
        && let Some(o) = seed.offerings.first_mut()
    {
        o.name = DEMO_MOAB_OFFERING.into();
        o.backend_id = "moab".into();
        o.partitions = vec![];
        o.components = vec![SeedComponent {
            type_: "deposit".into(),
            name: Some("Deposit".into()),
            measured_unit: "credits".into(),
            billing_type: "limit".into(),
            unit_factor: 1,
            ..Default::default()
        }];
    }
    if matches!(
        kind,
        DemoOfferingKind::OpennebulaVdc | DemoOfferingKind::OpennebulaVm
    ) && let Some(o) = seed.offerings.first_mut()
    {
        opennebula_offering(o, kind);
    }
    seed
}

pub fn demo_info(store: &Store, api_url: &str) -> DemoInfo {
    demo_info_of_kind(store, api_url, DemoOfferingKind::Slurm)
}

pub fn demo_info_of_kind(store: &Store, api_url: &str, kind: DemoOfferingKind) -> DemoInfo {
    let token = |name: &str| {
        store
            .users
            .values()
            .find(|u| u.username == name)
            .map(|u| u.token.clone())
            .unwrap_or_default()
    };
    let offering = store
        .offerings
        .values()
        .find(|o| o.name == kind.offering_name());
    let project = store.projects.values().find(|p| p.name == DEMO_PROJECT);
    let provider = offering.map(|o| o.customer);
    DemoInfo {
        api_url: api_url.to_string(),
        staff_token: token("staff"),
        provider_token: token("provider-owner"),
        consumer_token: token("consumer-owner"),
        offering_uuid: offering
            .map(|o| o.uuid.simple().to_string())
            .unwrap_or_default(),
        plan_uuid: offering
            .and_then(|o| store.plans.values().find(|p| p.offering == o.uuid))
            .map(|p| p.uuid.simple().to_string())
            .unwrap_or_default(),
        project_uuid: project
            .map(|p| p.uuid.simple().to_string())
            .unwrap_or_default(),
        customer_uuid: project
            .map(|p| p.customer.simple().to_string())
            .unwrap_or_default(),
        provider_customer_uuid: provider.map(|c| c.simple().to_string()).unwrap_or_default(),
        users: DEMO_USERS
            .iter()
            .filter_map(|n| store.users.values().find(|u| u.username == *n))
            .map(|u| DemoUser {
                uuid: u.uuid.simple().to_string(),
                username: u.username.clone(),
                token: u.token.clone(),
            })
            .collect(),
        ..Default::default()
    }
}
