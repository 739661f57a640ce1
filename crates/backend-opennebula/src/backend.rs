//! [`OneBackend`]: a Waldur resource as an OpenNebula VDC (group + VDC + clusters + quota +
//! optional tenant network and user) or as a VM in a parent VDC, sized by the plan.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use agent_config::BackendComponent;
use async_trait::async_trait;
use backend_api::RetryPolicy;
use backend_api::names::validate_site_name;
use backend_api::units::{LimitError, site_amount};
use backend_api::{
    BackendError, BackendHealth, BackendResourceInfo, BackendResult, BillingPeriod, Capabilities,
    CreateRequest, Diagnostics, Limits, MembershipBackend, OrderBackend, ResourceView,
    UsageBackend, UsageReport, UserGrant,
};
use http_kit::xml::Element;
use http_kit::xmlrpc::Value as X;
use indexmap::IndexMap;
use keycloak_admin::KeycloakAdmin;
use serde_json::{Map, Value, json};

use crate::rpc::{OneError, OneRpc, Origin, Pool, quote};
use crate::saml::Saml;
use crate::settings::{
    NetworkConfig, OneSettings, ResourceType, clusters_and_zone, int_option, text_option,
};

/// VDC components → OpenNebula quota attribute.
pub const VDC_COMPONENTS: &[&str] = &["cpu", "ram", "storage", "floating_ip"];
/// VM components (plan quotas).
pub const VM_COMPONENTS: &[&str] = &["vcpu", "vm_ram", "vm_disk"];
/// The largest amount written into a quota or a VM template.
pub const SITE_MAX: i64 = 1 << 40;

/// VM STATE values.
const ACTIVE: i64 = 3;
const DONE: i64 = 6;
const FAILED: i64 = 7;
const POWEROFF: i64 = 8;
const CLONING_FAILURE: i64 = 11;
const RUNNING: i64 = 3;
/// LCM failure states (the seed's list), by value.
const LCM_FAILURES: &[(i64, &str)] = &[
    (14, "FAILURE"),
    (36, "BOOT_FAILURE"),
    (37, "BOOT_MIGRATE_FAILURE"),
    (38, "PROLOG_MIGRATE_FAILURE"),
    (39, "PROLOG_FAILURE"),
    (40, "EPILOG_FAILURE"),
    (41, "EPILOG_STOP_FAILURE"),
    (42, "EPILOG_UNDEPLOY_FAILURE"),
    (44, "PROLOG_MIGRATE_POWEROFF_FAILURE"),
    (46, "PROLOG_MIGRATE_SUSPEND_FAILURE"),
    (47, "BOOT_UNDEPLOY_FAILURE"),
    (48, "BOOT_STOPPED_FAILURE"),
    (49, "PROLOG_RESUME_FAILURE"),
    (50, "PROLOG_UNDEPLOY_FAILURE"),
    (60, "PROLOG_MIGRATE_UNKNOWN_FAILURE"),
];

fn int(e: &Element, path: &str) -> Option<i64> {
    e.path(path)
        .and_then(|x| x.text.trim().parse::<f64>().ok())
        .map(|f| f as i64)
}
fn num(e: &Element, path: &str) -> Option<f64> {
    e.path(path).and_then(|x| x.text.trim().parse().ok())
}

/// What a create made, undone in reverse order when a later step fails.
#[derive(Debug)]
enum Made {
    Group(i64),
    Vdc(i64),
    Vnet(i64),
    Vrouter(i64),
    SecGroup(i64),
    User(i64),
}

/// The `opennebula` backend of one offering.
pub struct OneBackend {
    offering: String,
    settings: OneSettings,
    components: IndexMap<String, BackendComponent>,
    rpc: OneRpc,
    /// Subnet choice and VNet allocation of this agent run one at a time, so that two VDCs
    /// created at once never take the same subnet.
    subnets: tokio::sync::Mutex<()>,
    /// Keycloak/SAML role groups and membership (`keycloak_enabled`, VDC mode).
    saml: Option<Saml>,
}

impl std::fmt::Debug for OneBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneBackend")
            .field("offering", &self.offering)
            .field("resource_type", &self.settings.resource_type)
            .finish_non_exhaustive()
    }
}

impl OneBackend {
    pub fn new(
        offering: &str,
        settings: OneSettings,
        components: IndexMap<String, BackendComponent>,
        proxy: Option<&str>,
    ) -> BackendResult<OneBackend> {
        let rpc = OneRpc::new(offering, &settings, proxy)?;
        let saml = match &settings.saml {
            Some(s) => Some(Saml {
                kc: KeycloakAdmin::new(
                    &format!("offering '{offering}'"),
                    &s.keycloak,
                    proxy,
                    settings.timeout,
                    RetryPolicy {
                        max_retries: settings.max_retries,
                        ..RetryPolicy::default()
                    },
                )?,
                settings: s.clone(),
            }),
            None => None,
        };
        Ok(OneBackend {
            offering: offering.to_owned(),
            settings,
            components,
            rpc,
            subnets: tokio::sync::Mutex::new(()),
            saml,
        })
    }

    /// Whether project members are synchronised (Keycloak role groups of VDCs).
    pub fn manages_members(&self) -> bool {
        self.saml.is_some()
    }

    fn saml(&self) -> BackendResult<&Saml> {
        self.saml.as_ref().ok_or(BackendError::Unsupported {
            backend: crate::BACKEND_NAME,
            operation: "membership without keycloak_enabled",
        })
    }

    /// The id of an existing VDC.
    async fn require_vdc(&self, name: &str) -> BackendResult<i64> {
        self.rpc.find(Pool::Vdc, name).await?.ok_or_else(|| {
            BackendError::permanent(format!("VDC '{name}' does not exist in OpenNebula"))
        })
    }

    fn factor(&self, key: &str) -> f64 {
        self.components.get(key).map_or(1.0, |c| c.unit_factor)
    }

    fn allowed(&self) -> &'static [&'static str] {
        match self.settings.resource_type {
            ResourceType::Vdc => VDC_COMPONENTS,
            ResourceType::Vm => VM_COMPONENTS,
        }
    }

    /// Waldur limits → site amounts, refusing what the site cannot take.
    fn site_limits(&self, limits: &Limits) -> BackendResult<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        for (key, value) in limits {
            if !self.allowed().contains(&key.as_str()) {
                return Err(BackendError::Limit(LimitError::new(
                    key,
                    *value,
                    format!(
                        "is not a component of an OpenNebula {} (use {})",
                        if self.settings.resource_type == ResourceType::Vdc {
                            "VDC"
                        } else {
                            "VM"
                        },
                        self.allowed().join(", ")
                    ),
                    0.0,
                    0.0,
                )));
            }
            out.insert(
                key.clone(),
                site_amount(key, *value, self.factor(key), SITE_MAX)?,
            );
        }
        Ok(out)
    }

    fn to_waldur(&self, key: &str, site: f64) -> f64 {
        let f = self.factor(key);
        if f == 0.0 { 0.0 } else { site / f }
    }

    // ------------------------------------------------------------------ VDC

    /// `one.group.quota` template with only the sections the limits name.
    fn quota_template(site: &BTreeMap<String, i64>) -> String {
        let mut t = String::new();
        let (cpu, ram) = (site.get("cpu"), site.get("ram"));
        if cpu.is_some() || ram.is_some() {
            let v = |o: Option<&i64>| o.map_or("-1".to_owned(), |v| v.to_string());
            t.push_str(&format!(
                "VM=[CPU=\"{}\", MEMORY=\"{}\", VMS=\"-1\"]\n",
                v(cpu),
                v(ram)
            ));
        }
        if let Some(s) = site.get("storage") {
            t.push_str(&format!(
                "DATASTORE=[ID=\"-1\", SIZE=\"{s}\", IMAGES=\"-1\"]\n"
            ));
        }
        if let Some(l) = site.get("floating_ip") {
            t.push_str(&format!("NETWORK=[ID=\"-1\", LEASES=\"{l}\"]\n"));
        }
        t
    }

    /// Limits (Waldur units) from a GROUP document's quotas.
    fn vdc_limits(&self, group: &Element) -> Limits {
        let mut l = Limits::new();
        if let Some(vm) = group.path("VM_QUOTA/VM") {
            if let Some(c) = num(vm, "CPU").filter(|v| *v >= 0.0) {
                l.insert("cpu".into(), self.to_waldur("cpu", c.trunc()));
            }
            if let Some(m) = num(vm, "MEMORY").filter(|v| *v >= 0.0) {
                l.insert("ram".into(), self.to_waldur("ram", m));
            }
        }
        if let Some(s) = group
            .path("DATASTORE_QUOTA/DATASTORE")
            .and_then(|d| num(d, "SIZE"))
            .filter(|v| *v >= 0.0)
        {
            l.insert("storage".into(), self.to_waldur("storage", s));
        }
        let leases: f64 = group
            .path("NETWORK_QUOTA")
            .map(|n| {
                n.children("NETWORK")
                    .filter_map(|e| num(e, "LEASES"))
                    .filter(|v| *v >= 0.0)
                    .sum()
            })
            .unwrap_or(0.0);
        if group.path("NETWORK_QUOTA/NETWORK").is_some() {
            l.insert("floating_ip".into(), self.to_waldur("floating_ip", leases));
        }
        l
    }

    /// Usage (Waldur units) from a GROUP document's quota counters.
    fn vdc_usage(&self, group: &Element) -> BTreeMap<String, f64> {
        let mut u = BTreeMap::new();
        let vm = group.path("VM_QUOTA/VM");
        u.insert(
            "cpu".into(),
            self.to_waldur("cpu", vm.and_then(|v| num(v, "CPU_USED")).unwrap_or(0.0)),
        );
        u.insert(
            "ram".into(),
            self.to_waldur("ram", vm.and_then(|v| num(v, "MEMORY_USED")).unwrap_or(0.0)),
        );
        let sum = |section: &str, item: &str, key: &str| -> f64 {
            group
                .path(section)
                .map(|s| s.children(item).filter_map(|e| num(e, key)).sum())
                .unwrap_or(0.0)
        };
        u.insert(
            "storage".into(),
            self.to_waldur("storage", sum("DATASTORE_QUOTA", "DATASTORE", "SIZE_USED")),
        );
        u.insert(
            "floating_ip".into(),
            self.to_waldur(
                "floating_ip",
                sum("NETWORK_QUOTA", "NETWORK", "LEASES_USED"),
            ),
        );
        u
    }

    async fn group_doc(&self, name: &str) -> BackendResult<Option<Element>> {
        let Some(id) = self.rpc.find(Pool::Group, name).await? else {
            return Ok(None);
        };
        match self.rpc.doc("one.group.info", vec![X::Int(id)]).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.no_exists() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_vdc(&self, request: &CreateRequest) -> BackendResult<BackendResourceInfo> {
        let name = request.backend_id.as_str();
        let site = self.site_limits(&request.resource.limits)?;
        let net = NetworkConfig::resolve(
            &request.resource.offering_plugin_options,
            &self.settings.options,
        )
        .map_err(|(k, why)| {
            BackendError::Config(format!(
                "offering '{}': plugin_options.{k}: {why}",
                self.offering
            ))
        })?;
        if self.rpc.find(Pool::Vdc, name).await?.is_some() {
            return Err(BackendError::Duplicate {
                backend_id: name.to_owned(),
            });
        }
        let mut made = Vec::new();
        match self
            .build_vdc(name, &site, net.as_ref(), request, &mut made)
            .await
        {
            Ok(info) => Ok(info),
            Err(e) => {
                tracing::warn!(offering = %self.offering, vdc = name, error = %e, "VDC create failed; removing what it made");
                self.rollback(made).await;
                Err(e)
            }
        }
    }

    /// The error for a name whose object existed before this create asked for it.
    fn name_held(&self, what: &str, name: &str, id: i64) -> BackendError {
        tracing::warn!(offering = %self.offering, name, what, id, "the name is held by an object this agent did not make; leaving it alone");
        BackendError::Duplicate {
            backend_id: name.to_owned(),
        }
    }

    async fn build_vdc(
        &self,
        name: &str,
        site: &BTreeMap<String, i64>,
        net: Option<&NetworkConfig>,
        request: &CreateRequest,
        made: &mut Vec<Made>,
    ) -> BackendResult<BackendResourceInfo> {
        // The group (OpenNebula keeps its names unique) is the claim on the name: one that was
        // there before we asked belongs to another agent or an earlier run, and is not ours to
        // build on or to roll back.
        let (group, origin) = self
            .rpc
            .allocate(Pool::Group, name, "one.group.allocate", vec![X::from(name)])
            .await?;
        if !origin.ours() {
            return Err(self.name_held("group", name, group));
        }
        made.push(Made::Group(group));
        let (vdc, origin) = self
            .rpc
            .allocate(
                Pool::Vdc,
                name,
                "one.vdc.allocate",
                vec![X::from(format!("NAME={}", quote(name)))],
            )
            .await?;
        if !origin.ours() {
            return Err(self.name_held("VDC", name, vdc));
        }
        made.push(Made::Vdc(vdc));
        self.rpc
            .idempotent("one.vdc.addgroup", vec![X::Int(vdc), X::Int(group)])
            .await?;
        let (mut clusters, zone) =
            clusters_and_zone(&request.resource.offering_plugin_options, &self.settings);
        if clusters.is_empty() {
            clusters = self
                .rpc
                .names("one.clusterpool.info", vec![], "CLUSTER")
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
        }
        for c in &clusters {
            self.rpc
                .idempotent(
                    "one.vdc.addcluster",
                    vec![X::Int(vdc), X::Int(zone), X::Int(*c)],
                )
                .await?;
        }
        let quota = Self::quota_template(site);
        if !quota.is_empty() {
            self.rpc
                .idempotent("one.group.quota", vec![X::Int(group), X::String(quota)])
                .await?;
        }
        let mut metadata = Map::new();
        metadata.insert("vdc_id".into(), json!(vdc));
        metadata.insert("group_id".into(), json!(group));
        if let Some(net) = net {
            self.build_network(
                name,
                vdc,
                zone,
                &clusters,
                net,
                request,
                made,
                &mut metadata,
            )
            .await?;
        }
        if let Some(saml) = &self.saml {
            let mut groups = Vec::new();
            let result = saml
                .ensure(&self.offering, &self.rpc, name, vdc, &mut groups)
                .await;
            made.extend(groups.into_iter().map(Made::Group));
            result?;
        }
        if self.settings.create_opennebula_user {
            let (user, password) = self.ensure_user(name, group, made).await?;
            metadata.insert("opennebula_username".into(), json!(user));
            metadata.insert("opennebula_password".into(), json!(password));
        }
        Ok(BackendResourceInfo {
            backend_id: name.to_owned(),
            limits: request.resource.limits.clone(),
            backend_metadata: metadata,
            ..Default::default()
        })
    }

    /// The subnets every VNet's address ranges touch, as (network, prefix) of the pool's size.
    fn subnet_of(ip: Ipv4Addr, prefix: u8) -> u32 {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        u32::from(ip) & mask
    }

    async fn choose_subnet(
        &self,
        net: &NetworkConfig,
        wanted: Option<&str>,
    ) -> BackendResult<(Ipv4Addr, u8)> {
        if let Some(cidr) = wanted {
            let (ip, len) = cidr
                .split_once('/')
                .and_then(|(a, l)| Some((a.trim().parse::<Ipv4Addr>().ok()?, l.trim().parse::<u8>().ok()?)))
                .filter(|(_, l)| (8..=30).contains(l))
                .ok_or_else(|| BackendError::permanent(format!("subnet_cidr '{cidr}' is not an IPv4 CIDR between /8 and /30, e.g. 192.168.50.0/24")))?;
            return Ok((Ipv4Addr::from(Self::subnet_of(ip, len)), len));
        }
        let pool = self
            .rpc
            .doc(
                "one.vnpool.info",
                vec![X::Int(-2), X::Int(-1), X::Int(-1), X::Int(-1)],
            )
            .await?;
        // Every address range of every VNet counts, whatever its name (upstream only looked at
        // `waldur_*_internal`, so other networks could be handed out twice).
        let mut used = std::collections::BTreeSet::new();
        for vnet in pool.children("VNET") {
            if let Some(ars) = vnet.child("AR_POOL") {
                for ar in ars.children("AR") {
                    if let Some(ip) = ar.text_of("IP").and_then(|s| s.parse::<Ipv4Addr>().ok()) {
                        used.insert(Self::subnet_of(ip, net.subnet_prefix));
                    }
                }
            }
        }
        let base = Self::subnet_of(net.pool_base, net.pool_prefix);
        let step = 1u64 << (32 - u32::from(net.subnet_prefix));
        let count = 1u64 << (u32::from(net.subnet_prefix) - u32::from(net.pool_prefix));
        for i in 1..count {
            let candidate = (u64::from(base) + i * step) as u32;
            if !used.contains(&candidate) {
                return Ok((Ipv4Addr::from(candidate), net.subnet_prefix));
            }
        }
        Err(BackendError::permanent(format!(
            "no free /{} subnet left in {}/{}; widen internal_network_base/internal_network_prefix in the offering's plugin_options",
            net.subnet_prefix, net.pool_base, net.pool_prefix
        )))
    }

    #[allow(clippy::too_many_arguments)]
    async fn build_network(
        &self,
        name: &str,
        vdc: i64,
        zone: i64,
        clusters: &[i64],
        net: &NetworkConfig,
        request: &CreateRequest,
        made: &mut Vec<Made>,
        metadata: &mut Map<String, Value>,
    ) -> BackendResult<()> {
        let vnet_name = format!("{name}_internal");
        let first_cluster = clusters.first().copied().unwrap_or(-1);
        let wanted = request
            .resource
            .attributes
            .get("subnet_cidr")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let (vnet, subnet) = {
            let _one_at_a_time = self.subnets.lock().await;
            match self.rpc.find(Pool::Vnet, &vnet_name).await? {
                Some(id) => (id, None),
                None => {
                    let (network, len) = self.choose_subnet(net, wanted).await?;
                    let id = self
                        .allocate_vnet(&vnet_name, network, len, net, first_cluster)
                        .await?;
                    (id, Some((network, len)))
                }
            }
        };
        // Another agent may have taken the same subnet at the same moment: the VNet with the
        // lower id keeps it, ours is made again in the next free one.
        let (vnet, subnet) = match subnet {
            Some(chosen) if wanted.is_none() => {
                let (id, s) = self
                    .keep_subnet_unique(&vnet_name, vnet, chosen, net, first_cluster)
                    .await?;
                (id, Some(format!("{}/{}", s.0, s.1)))
            }
            Some((n, l)) => (vnet, Some(format!("{n}/{l}"))),
            None => (vnet, None),
        };
        made.push(Made::Vnet(vnet));
        for c in clusters.iter().skip(1) {
            self.rpc
                .idempotent("one.cluster.addvnet", vec![X::Int(*c), X::Int(vnet)])
                .await?;
        }
        self.rpc
            .idempotent(
                "one.vdc.addvnet",
                vec![X::Int(vdc), X::Int(zone), X::Int(vnet)],
            )
            .await?;
        let vnet_doc = self.rpc.doc("one.vn.info", vec![X::Int(vnet)]).await?;
        let gateway = vnet_doc
            .path("AR_POOL/AR")
            .and_then(|a| a.text_of("IP"))
            .unwrap_or("")
            .to_owned();
        let subnet = subnet.unwrap_or_else(|| {
            let len = vnet_doc
                .path("TEMPLATE/NETWORK_MASK")
                .map(|m| {
                    m.text
                        .trim()
                        .parse::<Ipv4Addr>()
                        .map(|m| u32::from(m).count_ones())
                        .unwrap_or(24)
                })
                .unwrap_or(24);
            let addr = vnet_doc
                .path("TEMPLATE/NETWORK_ADDRESS")
                .map(|a| a.text.trim().to_owned())
                .unwrap_or_default();
            format!("{addr}/{len}")
        });

        // Virtual router: names are not unique in OpenNebula, so look before allocating.
        let vr_name = format!("{name}_router");
        let vr = match self.rpc.find(Pool::Vrouter, &vr_name).await? {
            Some(id) => id,
            None => {
                let (id, _) = self
                    .rpc
                    .allocate(
                        Pool::Vrouter,
                        &vr_name,
                        "one.vrouter.allocate",
                        vec![X::String(format!("NAME={}", quote(&vr_name)))],
                    )
                    .await?;
                id
            }
        };
        made.push(Made::Vrouter(vr));
        let vr_doc = self.rpc.doc("one.vrouter.info", vec![X::Int(vr)]).await?;
        let mut vr_vm = vr_doc
            .path("VMS")
            .and_then(|v| v.text_of("ID"))
            .and_then(|s| s.parse::<i64>().ok());
        if vr_vm.is_none() {
            let mut extra = format!(
                "NIC=[NETWORK_ID=\"{vnet}\", IP=\"{gateway}\"]\nNIC=[NETWORK_ID=\"{}\"]\n",
                net.external_network_id
            );
            if let Some(s) = self.sched(net.sched_requirements.as_deref(), clusters) {
                extra.push_str(&format!("SCHED_REQUIREMENTS={}\n", quote(&s)));
            }
            let sent = self
                .rpc
                .call(
                    "one.vrouter.instantiate",
                    vec![
                        X::Int(vr),
                        X::Int(1),
                        X::Int(net.virtual_router_template_id),
                        X::from(format!("{vr_name}_vm")),
                        X::Bool(false),
                        X::String(extra),
                    ],
                    false,
                )
                .await;
            if let Err(e) = sent
                && !e.transport()
            {
                return Err(e.into());
            }
            let vr_doc = self.rpc.doc("one.vrouter.info", vec![X::Int(vr)]).await?;
            vr_vm = vr_doc
                .path("VMS")
                .and_then(|v| v.text_of("ID"))
                .and_then(|s| s.parse::<i64>().ok());
        }
        let vr_vm = vr_vm.ok_or_else(|| {
            BackendError::transient(format!("virtual router {vr_name} has no VM yet"))
        })?;
        self.wait_running(vr_vm, &vr_name).await?;
        metadata.insert("vnet_id".into(), json!(vnet));
        metadata.insert("subnet".into(), json!(subnet));
        metadata.insert("gateway".into(), json!(gateway));
        metadata.insert("vrouter_id".into(), json!(vr));
        if !net.security_group.is_empty() {
            let sg_name = format!("{name}_default");
            let mut t = format!("NAME={}\n", quote(&sg_name));
            for r in &net.security_group {
                let mut parts = vec![
                    format!("PROTOCOL={}", quote(&r.protocol.to_ascii_uppercase())),
                    format!("RULE_TYPE={}", quote(&r.direction.to_ascii_lowercase())),
                ];
                if let Some(range) = &r.range {
                    parts.push(format!("RANGE={}", quote(range)));
                }
                if let Some(t) = &r.icmp_type {
                    parts.push(format!("ICMP_TYPE={}", quote(t)));
                }
                t.push_str(&format!("RULE=[{}]\n", parts.join(", ")));
            }
            let (sg, origin) = self
                .rpc
                .allocate(
                    Pool::SecGroup,
                    &sg_name,
                    "one.secgroup.allocate",
                    vec![X::String(t)],
                )
                .await?;
            if origin.ours() {
                made.push(Made::SecGroup(sg));
            }
            metadata.insert("security_group_id".into(), json!(sg));
        }
        Ok(())
    }

    /// `one.vn.allocate` of the tenant network `name` in subnet `network/len` (gateway: the
    /// first address, held by the virtual router).
    async fn allocate_vnet(
        &self,
        name: &str,
        network: Ipv4Addr,
        len: u8,
        net: &NetworkConfig,
        cluster: i64,
    ) -> BackendResult<i64> {
        let gateway = Ipv4Addr::from(u32::from(network) + 1);
        let size = (1u32 << (32 - u32::from(len))) - 2;
        let mut t = format!(
            "NAME={}\nVN_MAD={}\nAR=[TYPE=\"IP4\", IP=\"{gateway}\", SIZE=\"{size}\"]\nDNS={}\nGATEWAY=\"{gateway}\"\nNETWORK_ADDRESS=\"{network}\"\nNETWORK_MASK=\"{}\"\n",
            quote(name),
            quote(&net.vn_mad),
            quote(&net.dns),
            Ipv4Addr::from(u32::MAX << (32 - u32::from(len))),
        );
        if net.vn_mad == "vxlan" {
            t.push_str(&format!(
                "AUTOMATIC_VLAN_ID=\"YES\"\nPHYDEV={}\n",
                quote(&net.phydev)
            ));
        }
        let (id, _) = self
            .rpc
            .allocate(
                Pool::Vnet,
                name,
                "one.vn.allocate",
                vec![X::String(t), X::Int(cluster)],
            )
            .await?;
        Ok(id)
    }

    /// Keeps our VNet only if no VNet with a lower id has an address range in its subnet;
    /// otherwise deletes it and makes it again in the next free subnet (a few times at most).
    async fn keep_subnet_unique(
        &self,
        name: &str,
        mut vnet: i64,
        mut chosen: (Ipv4Addr, u8),
        net: &NetworkConfig,
        cluster: i64,
    ) -> BackendResult<(i64, (Ipv4Addr, u8))> {
        for _ in 0..5 {
            let pool = self
                .rpc
                .doc(
                    "one.vnpool.info",
                    vec![X::Int(-2), X::Int(-1), X::Int(-1), X::Int(-1)],
                )
                .await?;
            let ours = u32::from(chosen.0);
            let clash = pool.children("VNET").any(|v| {
                int(v, "ID").is_some_and(|id| id < vnet)
                    && v.child("AR_POOL").is_some_and(|ars| {
                        ars.children("AR").any(|ar| {
                            ar.text_of("IP")
                                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                                .map(|ip| Self::subnet_of(ip, chosen.1))
                                == Some(ours)
                        })
                    })
            });
            if !clash {
                return Ok((vnet, chosen));
            }
            tracing::info!(vnet = name, subnet = %chosen.0, "another VNet took this subnet at the same time; choosing again");
            self.rpc.delete("one.vn.delete", vnet).await?;
            chosen = self.choose_subnet(net, None).await?;
            vnet = self
                .allocate_vnet(name, chosen.0, chosen.1, net, cluster)
                .await?;
        }
        Err(BackendError::transient(format!(
            "no subnet for {name} that no other VNet takes at the same time; try again"
        )))
    }

    fn sched(&self, custom: Option<&str>, clusters: &[i64]) -> Option<String> {
        custom.map(str::to_owned).or_else(|| {
            (!clusters.is_empty()).then(|| {
                clusters
                    .iter()
                    .map(|c| format!("CLUSTER_ID={c}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
        })
    }

    /// The VDC's user `<vdc>_admin`: its password is kept in its template (`WALDUR_PASSWORD`),
    /// so it can be published again after a restart.
    async fn ensure_user(
        &self,
        vdc: &str,
        group: i64,
        made: &mut Vec<Made>,
    ) -> BackendResult<(String, String)> {
        let user = format!("{vdc}_admin");
        let fresh = new_password();
        let (id, origin) = self
            .rpc
            .allocate(
                Pool::User,
                &user,
                "one.user.allocate",
                vec![
                    X::from(user.as_str()),
                    X::from(fresh.as_str()),
                    X::from("core"),
                ],
            )
            .await?;
        if origin.ours() {
            made.push(Made::User(id));
        }
        let doc = self.rpc.doc("one.user.info", vec![X::Int(id)]).await?;
        let stored = doc
            .path("TEMPLATE/WALDUR_PASSWORD")
            .map(|p| p.text.trim().to_owned())
            .filter(|p| !p.is_empty());
        let password = match (origin, stored) {
            (Origin::Made, _) => fresh,
            (_, Some(p)) => p,
            (_, None) => {
                // Reused (a lost reply, or an earlier run): we do not know its password.
                self.rpc
                    .idempotent("one.user.passwd", vec![X::Int(id), X::from(fresh.as_str())])
                    .await?;
                fresh
            }
        };
        self.rpc
            .idempotent("one.user.chgrp", vec![X::Int(id), X::Int(group)])
            .await?;
        self.rpc
            .idempotent(
                "one.user.update",
                vec![
                    X::Int(id),
                    X::String(format!("WALDUR_PASSWORD={}", quote(&password))),
                    X::Int(1),
                ],
            )
            .await?;
        Ok((user, password))
    }

    /// A new password for the VDC's user; returns the new credentials (the upstream
    /// `reset_vdc_user_password`).
    pub async fn reset_vdc_user_password(&self, vdc: &str) -> BackendResult<Map<String, Value>> {
        let user = format!("{vdc}_admin");
        let id = self.rpc.find(Pool::User, &user).await?.ok_or_else(|| {
            BackendError::permanent(format!(
                "VDC {vdc} has no user {user}; is create_opennebula_user on?"
            ))
        })?;
        let password = new_password();
        self.rpc
            .idempotent(
                "one.user.passwd",
                vec![X::Int(id), X::from(password.as_str())],
            )
            .await?;
        self.rpc
            .idempotent(
                "one.user.update",
                vec![
                    X::Int(id),
                    X::String(format!("WALDUR_PASSWORD={}", quote(&password))),
                    X::Int(1),
                ],
            )
            .await?;
        let mut m = Map::new();
        m.insert("opennebula_username".into(), json!(user));
        m.insert("opennebula_password".into(), json!(password));
        Ok(m)
    }

    async fn rollback(&self, made: Vec<Made>) {
        for m in made.into_iter().rev() {
            let result = match &m {
                Made::User(id) => self.rpc.delete("one.user.delete", *id).await,
                Made::SecGroup(id) => self.rpc.delete("one.secgroup.delete", *id).await,
                Made::Vrouter(id) => self.delete_vrouter(*id).await,
                Made::Vnet(id) => self.rpc.delete("one.vn.delete", *id).await,
                Made::Vdc(id) => self.rpc.delete("one.vdc.delete", *id).await,
                Made::Group(id) => self.rpc.delete("one.group.delete", *id).await,
            };
            if let Err(e) = result {
                tracing::warn!(offering = %self.offering, object = ?m, error = %e, "rollback could not remove an object; remove it by hand");
            }
        }
    }

    /// Deletes a virtual router and waits until its VMs are gone (their leases block the VNet).
    async fn delete_vrouter(&self, id: i64) -> Result<(), OneError> {
        let vms: Vec<i64> = match self.rpc.doc("one.vrouter.info", vec![X::Int(id)]).await {
            Ok(d) => d
                .path("VMS")
                .map(|v| {
                    v.children("ID")
                        .filter_map(|i| i.text.trim().parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) if e.no_exists() => return Ok(()),
            Err(e) => return Err(e),
        };
        self.rpc.delete("one.vrouter.delete", id).await?;
        for vm in vms {
            self.wait_state(vm, DONE).await?;
        }
        Ok(())
    }

    async fn delete_vdc(&self, name: &str) -> BackendResult<()> {
        if let Some(u) = self.rpc.find(Pool::User, &format!("{name}_admin")).await? {
            self.rpc.delete("one.user.delete", u).await?;
        }
        if let Some(vr) = self
            .rpc
            .find(Pool::Vrouter, &format!("{name}_router"))
            .await?
        {
            self.delete_vrouter(vr).await?;
        }
        if let Some(vn) = self
            .rpc
            .find(Pool::Vnet, &format!("{name}_internal"))
            .await?
        {
            self.rpc.delete("one.vn.delete", vn).await?;
        }
        if let Some(sg) = self
            .rpc
            .find(Pool::SecGroup, &format!("{name}_default"))
            .await?
        {
            self.rpc.delete("one.secgroup.delete", sg).await?;
        }
        if let Some(vdc) = self.rpc.find(Pool::Vdc, name).await? {
            self.rpc.delete("one.vdc.delete", vdc).await?;
        }
        if let Some(g) = self.rpc.find(Pool::Group, name).await? {
            self.rpc.delete("one.group.delete", g).await?;
        }
        if let Some(saml) = &self.saml {
            saml.remove(&self.offering, &self.rpc, name).await?;
        }
        Ok(())
    }

    async fn vdc_metadata(&self, name: &str, group: &Element) -> BackendResult<Map<String, Value>> {
        let mut m = Map::new();
        if let Some(id) = int(group, "ID") {
            m.insert("group_id".into(), json!(id));
        }
        if let Some(vn) = self
            .rpc
            .find(Pool::Vnet, &format!("{name}_internal"))
            .await?
        {
            m.insert("vnet_id".into(), json!(vn));
        }
        if let Some(vr) = self
            .rpc
            .find(Pool::Vrouter, &format!("{name}_router"))
            .await?
        {
            m.insert("vrouter_id".into(), json!(vr));
        }
        if self.settings.create_opennebula_user {
            let user = format!("{name}_admin");
            if let Some(u) = self.rpc.find(Pool::User, &user).await? {
                let doc = self.rpc.doc("one.user.info", vec![X::Int(u)]).await?;
                if let Some(p) = doc.path("TEMPLATE/WALDUR_PASSWORD") {
                    m.insert("opennebula_username".into(), json!(user));
                    m.insert("opennebula_password".into(), json!(p.text.trim()));
                }
            }
        }
        Ok(m)
    }

    // ------------------------------------------------------------------ VM

    /// The running (not DONE) VM called `name`.
    async fn find_vm(&self, name: &str) -> BackendResult<Option<Element>> {
        let pool = self
            .rpc
            .doc(
                "one.vmpool.info",
                vec![X::Int(-2), X::Int(-1), X::Int(-1), X::Int(-1)],
            )
            .await?;
        let Some(id) = pool
            .children("VM")
            .find(|v| v.text_of("NAME") == Some(name))
            .and_then(|v| int(v, "ID"))
        else {
            return Ok(None);
        };
        match self.rpc.doc("one.vm.info", vec![X::Int(id)]).await {
            Ok(d) if int(&d, "STATE") != Some(DONE) => Ok(Some(d)),
            Ok(_) => Ok(None),
            Err(e) if e.no_exists() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn vm_limits(&self, vm: &Element) -> Limits {
        let mut l = Limits::new();
        let vcpu = num(vm, "TEMPLATE/VCPU")
            .or_else(|| num(vm, "TEMPLATE/CPU"))
            .unwrap_or(0.0);
        l.insert("vcpu".into(), self.to_waldur("vcpu", vcpu));
        l.insert(
            "vm_ram".into(),
            self.to_waldur("vm_ram", num(vm, "TEMPLATE/MEMORY").unwrap_or(0.0)),
        );
        let disk: f64 = vm
            .child("TEMPLATE")
            .map(|t| t.children("DISK").filter_map(|d| num(d, "SIZE")).sum())
            .unwrap_or(0.0);
        l.insert("vm_disk".into(), self.to_waldur("vm_disk", disk));
        l
    }

    fn vm_metadata(vm: &Element) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(id) = int(vm, "ID") {
            m.insert("vm_id".into(), json!(id));
        }
        if let Some(ip) = vm.path("TEMPLATE/NIC").and_then(|n| n.text_of("IP")) {
            m.insert("ip_address".into(), json!(ip));
        }
        if let Some(t) = vm.path("TEMPLATE/TEMPLATE_ID") {
            m.insert("template_id".into(), json!(t.text.trim()));
        }
        m
    }

    async fn create_vm(&self, request: &CreateRequest) -> BackendResult<BackendResourceInfo> {
        let name = request.backend_id.as_str();
        let r = &request.resource;
        let plan = if request.context.plan_quotas.is_empty() {
            &r.limits
        } else {
            &request.context.plan_quotas
        };
        let plan: Limits = plan
            .iter()
            .filter(|(k, _)| VM_COMPONENTS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let site = self.site_limits(&plan)?;
        let (Some(vcpu), Some(ram)) = (
            site.get("vcpu").copied().filter(|v| *v > 0),
            site.get("vm_ram").copied().filter(|v| *v > 0),
        ) else {
            return Err(BackendError::permanent(
                "a VM needs its plan's vcpu and vm_ram (fixed components of the offering's plan)",
            ));
        };
        let template_id = int_option(&r.attributes, &r.offering_plugin_options, &self.settings.options, &["template_id"])
            .ok_or_else(|| BackendError::Config(format!("offering '{}': no VM template: set template_id in plugin_options or backend_settings", self.offering)))?;
        let parent = text_option(&r.attributes, &r.offering_plugin_options, &self.settings.options, &["parent_backend_id", "parent_vdc_backend_id"])
            .ok_or_else(|| BackendError::Config(format!("offering '{}': no parent VDC: set parent_vdc_backend_id in plugin_options or backend_settings", self.offering)))?;
        validate_site_name("parent VDC", &parent)?;
        if self.find_vm(name).await?.is_some() {
            return Err(BackendError::Duplicate {
                backend_id: name.to_owned(),
            });
        }
        let group = self.rpc.find(Pool::Group, &parent).await?.ok_or_else(|| BackendError::permanent(format!("the parent VDC's group '{parent}' does not exist in OpenNebula; create the VDC first")))?;
        let vnet = self.rpc.find(Pool::Vnet, &format!("{parent}_internal")).await?.ok_or_else(|| BackendError::permanent(format!("the parent VDC '{parent}' has no network {parent}_internal; create it with networking")))?;
        let sg = self
            .rpc
            .find(Pool::SecGroup, &format!("{parent}_default"))
            .await?;
        let tpl = self
            .rpc
            .doc("one.template.info", vec![X::Int(template_id)])
            .await?;
        let mut extra = format!("CPU=\"{vcpu}\"\nVCPU=\"{vcpu}\"\nMEMORY=\"{ram}\"\n");
        let disk = site.get("vm_disk").copied().filter(|d| *d > 0);
        // The plan's disk applies at creation (upstream only grew it on a later resize).
        if let Some(t) = tpl.child("TEMPLATE") {
            for (i, d) in t.children("DISK").enumerate() {
                let Some(image) = d.text_of("IMAGE_ID") else {
                    continue;
                };
                match (i, disk) {
                    (0, Some(size)) => extra.push_str(&format!(
                        "DISK=[IMAGE_ID={}, SIZE=\"{size}\"]\n",
                        quote(image)
                    )),
                    _ => extra.push_str(&format!("DISK=[IMAGE_ID={}]\n", quote(image))),
                }
            }
        }
        match sg {
            Some(sg) => extra.push_str(&format!(
                "NIC=[NETWORK_ID=\"{vnet}\", SECURITY_GROUPS=\"{sg}\"]\n"
            )),
            None => extra.push_str(&format!("NIC=[NETWORK_ID=\"{vnet}\"]\n")),
        }
        let mut context = vec!["NETWORK=\"YES\"".to_owned()];
        if let Some(key) = ssh_key(&r.attributes, &request.context.ssh_keys)? {
            context.push(format!("SSH_PUBLIC_KEY={}", quote(&key)));
        }
        extra.push_str(&format!("CONTEXT=[{}]\n", context.join(", ")));
        let (clusters, _) = clusters_and_zone(&r.offering_plugin_options, &self.settings);
        let custom = text_option(
            &Map::new(),
            &r.offering_plugin_options,
            &self.settings.options,
            &["sched_requirements"],
        );
        if let Some(s) = self.sched(custom.as_deref(), &clusters) {
            extra.push_str(&format!("SCHED_REQUIREMENTS={}\n", quote(&s)));
        }
        let id = match self
            .rpc
            .call_id(
                "one.template.instantiate",
                vec![
                    X::Int(template_id),
                    X::from(name),
                    X::Bool(false),
                    X::String(extra),
                    X::Bool(false),
                ],
                false,
            )
            .await
        {
            Ok(id) => id,
            Err(e) if e.transport() => match self.find_vm(name).await? {
                Some(vm) => {
                    int(&vm, "ID").ok_or_else(|| BackendError::transient("VM without ID"))?
                }
                None => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self
            .rpc
            .idempotent("one.vm.chown", vec![X::Int(id), X::Int(-1), X::Int(group)])
            .await
        {
            let _ = self
                .rpc
                .call(
                    "one.vm.action",
                    vec![X::from("terminate-hard"), X::Int(id)],
                    true,
                )
                .await;
            return Err(e.into());
        }
        if let Err(e) = self.wait_running(id, name).await {
            tracing::warn!(offering = %self.offering, vm = name, error = %e, "VM did not start; terminating it");
            let _ = self
                .rpc
                .call(
                    "one.vm.action",
                    vec![X::from("terminate-hard"), X::Int(id)],
                    true,
                )
                .await;
            return Err(e);
        }
        let vm = self.rpc.doc("one.vm.info", vec![X::Int(id)]).await?;
        let mut metadata = Self::vm_metadata(&vm);
        metadata.insert("parent_vdc".into(), json!(parent));
        Ok(BackendResourceInfo {
            backend_id: name.to_owned(),
            parent_id: parent,
            limits: self.vm_limits(&vm),
            backend_metadata: metadata,
            ..Default::default()
        })
    }

    /// Waits for ACTIVE/RUNNING; a failure state ends the wait with an error naming it.
    async fn wait_running(&self, id: i64, name: &str) -> BackendResult<()> {
        let deadline = Instant::now() + self.settings.vm_wait;
        loop {
            let vm = self.rpc.doc("one.vm.info", vec![X::Int(id)]).await?;
            let (state, lcm) = (
                int(&vm, "STATE").unwrap_or(-1),
                int(&vm, "LCM_STATE").unwrap_or(-1),
            );
            if state == ACTIVE && lcm == RUNNING {
                return Ok(());
            }
            let failed = match state {
                FAILED => Some("FAILED".to_owned()),
                CLONING_FAILURE => Some("CLONING_FAILURE".to_owned()),
                ACTIVE => LCM_FAILURES
                    .iter()
                    .find(|(v, _)| *v == lcm)
                    .map(|(_, n)| format!("ACTIVE/{n}")),
                DONE => Some("DONE".to_owned()),
                _ => None,
            };
            if let Some(s) = failed {
                return Err(BackendError::permanent(format!(
                    "VM {name} (id {id}) failed to start: OpenNebula state {s}"
                )));
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Timeout {
                    what: format!("VM {name} (id {id}) reaching RUNNING (state {state}/{lcm})"),
                    seconds: self.settings.vm_wait.as_secs(),
                });
            }
            tokio::time::sleep(self.settings.vm_poll).await;
        }
    }

    async fn wait_state(&self, id: i64, want: i64) -> Result<(), OneError> {
        let deadline = Instant::now() + self.settings.vm_wait;
        loop {
            match self.rpc.doc("one.vm.info", vec![X::Int(id)]).await {
                Ok(vm) if int(&vm, "STATE") == Some(want) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.no_exists() => return Ok(()),
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(OneError::Decode(format!(
                    "VM {id} did not reach state {want} in {} s",
                    self.settings.vm_wait.as_secs()
                )));
            }
            tokio::time::sleep(self.settings.vm_poll).await;
        }
    }

    /// Plan switch: power off, resize CPU/RAM, grow the disk, resume.
    async fn resize_vm(&self, name: &str, site: &BTreeMap<String, i64>) -> BackendResult<()> {
        let vm = self.find_vm(name).await?.ok_or_else(|| {
            BackendError::permanent(format!("VM {name} does not exist in OpenNebula"))
        })?;
        let id = int(&vm, "ID").ok_or_else(|| BackendError::permanent("VM without ID"))?;
        if site.values().all(|v| *v == 0) {
            return Ok(());
        }
        let current = self.site_limits(&self.vm_limits(&vm))?;
        if current == *site {
            return Ok(());
        }
        let state = int(&vm, "STATE").unwrap_or(-1);
        let resume = match state {
            ACTIVE => {
                self.rpc
                    .idempotent("one.vm.action", vec![X::from("poweroff-hard"), X::Int(id)])
                    .await?;
                self.wait_state(id, POWEROFF).await?;
                true
            }
            POWEROFF => false,
            other => {
                return Err(BackendError::permanent(format!(
                    "VM {name} is in state {other}; a resize needs ACTIVE or POWEROFF"
                )));
            }
        };
        let mut t = String::new();
        if let Some(c) = site.get("vcpu").filter(|v| **v > 0) {
            t.push_str(&format!("CPU=\"{c}\"\nVCPU=\"{c}\"\n"));
        }
        if let Some(m) = site.get("vm_ram").filter(|v| **v > 0) {
            t.push_str(&format!("MEMORY=\"{m}\"\n"));
        }
        let result = async {
            if !t.is_empty() {
                self.rpc.idempotent("one.vm.resize", vec![X::Int(id), X::String(t.clone()), X::Bool(false)]).await?;
            }
            if let Some(d) = site.get("vm_disk").filter(|v| **v > 0) {
                let now = current.get("vm_disk").copied().unwrap_or(0);
                if *d > now {
                    self.rpc.idempotent("one.vm.diskresize", vec![X::Int(id), X::Int(0), X::String(d.to_string())]).await?;
                } else if *d < now {
                    tracing::warn!(vm = name, "the new plan's disk is smaller; OpenNebula cannot shrink a disk, kept at {now} MB");
                }
            }
            Ok::<(), OneError>(())
        }
        .await;
        if resume {
            self.rpc
                .idempotent("one.vm.action", vec![X::from("resume"), X::Int(id)])
                .await?;
            self.wait_running(id, name).await?;
        }
        result.map_err(BackendError::from)
    }

    async fn delete_vm(&self, name: &str) -> BackendResult<()> {
        let Some(vm) = self.find_vm(name).await? else {
            return Ok(());
        };
        let id = int(&vm, "ID").ok_or_else(|| BackendError::permanent("VM without ID"))?;
        match self
            .rpc
            .call(
                "one.vm.action",
                vec![X::from("terminate-hard"), X::Int(id)],
                true,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.no_exists() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.wait_state(id, DONE).await?;
        Ok(())
    }
}

fn new_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..22)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// The order's SSH key: a raw public key, or the UUID of one of the service provider's keys.
fn ssh_key(
    attributes: &Map<String, Value>,
    keys: &BTreeMap<String, String>,
) -> BackendResult<Option<String>> {
    let Some(v) = attributes
        .get("ssh_public_key")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    if v.starts_with("ssh-") || v.starts_with("ecdsa-") || v.starts_with("sk-") {
        if v.contains(['\n', '\r']) {
            return Err(BackendError::permanent(
                "ssh_public_key holds more than one line",
            ));
        }
        return Ok(Some(v.to_owned()));
    }
    let uuid = v.replace('-', "").to_ascii_lowercase();
    keys.iter()
        .find(|(k, _)| k.replace('-', "").to_ascii_lowercase() == uuid)
        .map(|(_, key)| Some(key.trim().to_owned()))
        .ok_or_else(|| BackendError::permanent(format!("ssh_public_key '{v}' is neither a public key nor the UUID of one of the service provider's SSH keys")))
}

#[async_trait]
impl BackendHealth for OneBackend {
    fn kind(&self) -> &'static str {
        crate::BACKEND_NAME
    }

    async fn ping(&self) -> BackendResult<()> {
        self.rpc
            .doc("one.vdcpool.info", vec![])
            .await
            .map_err(BackendError::from)?;
        if let Some(saml) = &self.saml {
            saml.kc.ping().await?;
        }
        Ok(())
    }

    async fn diagnostics(&self) -> Diagnostics {
        let mut d = Diagnostics::new(crate::BACKEND_NAME);
        d.check(
            "settings",
            true,
            format!(
                "{} as {}, resource_type {:?}",
                self.settings.api_url,
                self.settings.username(),
                self.settings.resource_type
            ),
        );
        match self.rpc.doc("one.vdcpool.info", vec![]).await {
            Ok(_) => d.check("xml-rpc", true, "one.vdcpool.info answered"),
            Err(e) => d.check("xml-rpc", false, BackendError::from(e).to_string()),
        }
        if let Some(saml) = &self.saml {
            match saml.kc.ping().await {
                Ok(()) => d.check(
                    "keycloak",
                    true,
                    format!("realm {} at {}", saml.kc.realm(), saml.kc.target()),
                ),
                Err(e) => d.check("keycloak", false, BackendError::from(e).to_string()),
            }
            let dir = saml
                .settings
                .mapping_file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            d.check(
                "saml mapping file",
                dir.is_dir(),
                format!(
                    "{} (directory must exist)",
                    saml.settings.mapping_file.display()
                ),
            );
        }
        d
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Usage is what runs now (quota counters, VM size), so it can go down.
            supports_decreasing_usage: true,
            ..Capabilities::default()
        }
    }
}

#[async_trait]
impl OrderBackend for OneBackend {
    fn backend_id_for(&self, base_slug: &str) -> BackendResult<String> {
        let id = format!("{}{}", self.settings.allocation_prefix, base_slug).to_lowercase();
        validate_site_name("OpenNebula name", &id)?;
        if id.len() > 100 {
            return Err(BackendError::InvalidName {
                what: "OpenNebula name",
                value: id,
                reason: "at most 100 characters (suffixes such as _internal are added)".into(),
            });
        }
        Ok(id)
    }

    async fn pull_resource(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Option<BackendResourceInfo>> {
        let name = resource.backend_id.as_str();
        if name.is_empty() {
            return Ok(None);
        }
        match self.settings.resource_type {
            ResourceType::Vdc => {
                if self.rpc.find(Pool::Vdc, name).await?.is_none() {
                    return Ok(None);
                }
                let Some(group) = self.group_doc(name).await? else {
                    return Ok(None);
                };
                let users = match &self.saml {
                    Some(saml) => saml.members(name).await?,
                    None => Vec::new(),
                };
                // A paused VDC reports the limits it is restored to.
                let limits = match saved_limits(&group) {
                    Some(saved) if !template_text(&group, STATE_ATTR).is_empty() => saved,
                    _ => self.vdc_limits(&group),
                };
                Ok(Some(BackendResourceInfo {
                    backend_id: name.to_owned(),
                    limits,
                    backend_metadata: self.vdc_metadata(name, &group).await?,
                    users,
                    ..Default::default()
                }))
            }
            ResourceType::Vm => Ok(self.find_vm(name).await?.map(|vm| BackendResourceInfo {
                backend_id: name.to_owned(),
                limits: self.vm_limits(&vm),
                backend_metadata: Self::vm_metadata(&vm),
                ..Default::default()
            })),
        }
    }

    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo> {
        validate_site_name("OpenNebula name", &request.backend_id)?;
        match self.settings.resource_type {
            ResourceType::Vdc => self.create_vdc(&request).await,
            ResourceType::Vm => self.create_vm(&request).await,
        }
    }

    fn check_limits(&self, _resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        self.site_limits(limits).map(|_| ())
    }

    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        let site = self.site_limits(limits)?;
        let name = resource.backend_id.as_str();
        match self.settings.resource_type {
            ResourceType::Vdc => {
                let group = self.rpc.find(Pool::Group, name).await?.ok_or_else(|| {
                    BackendError::permanent(format!(
                        "VDC group '{name}' does not exist in OpenNebula"
                    ))
                })?;
                let t = Self::quota_template(&site);
                if !t.is_empty() {
                    self.rpc
                        .idempotent("one.group.quota", vec![X::Int(group), X::String(t)])
                        .await?;
                }
                Ok(())
            }
            ResourceType::Vm => self.resize_vm(name, &site).await,
        }
    }

    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()> {
        let name = resource.backend_id.as_str();
        if name.is_empty() {
            return Ok(());
        }
        validate_site_name("OpenNebula name", name)?;
        match self.settings.resource_type {
            ResourceType::Vdc => self.delete_vdc(name).await,
            ResourceType::Vm => self.delete_vm(name).await,
        }
    }
}

/// Group template attributes of a paused or downscaled VDC: the state and the limits (Waldur
/// units, `key=value,…`) a restore puts back.
const STATE_ATTR: &str = "WALDUR_STATE";
const SAVED_ATTR: &str = "WALDUR_SAVED_LIMITS";

fn template_text(group: &Element, attr: &str) -> String {
    group
        .path(&format!("TEMPLATE/{attr}"))
        .map(|e| e.text.trim().to_owned())
        .unwrap_or_default()
}

fn saved_limits(group: &Element) -> Option<Limits> {
    let text = template_text(group, SAVED_ATTR);
    let limits: Limits = text
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_owned(), v.trim().parse::<f64>().ok()?))
        })
        .collect();
    (!limits.is_empty()).then_some(limits)
}

impl OneBackend {
    /// The VDC's group, or a permanent error naming it.
    async fn require_group(&self, name: &str) -> BackendResult<Element> {
        self.group_doc(name).await?.ok_or_else(|| {
            BackendError::permanent(format!("VDC group '{name}' does not exist in OpenNebula"))
        })
    }

    /// Pause (every quota 0) or downscale (CPU quota 1 core); the limits are kept in the group
    /// template for `restore`. `false`: already in that state.
    async fn set_state(&self, r: &ResourceView, state: &str) -> BackendResult<bool> {
        if self.settings.resource_type == ResourceType::Vm {
            return Ok(false);
        }
        let name = r.backend_id.as_str();
        let doc = self.require_group(name).await?;
        let gid = int(&doc, "ID").unwrap_or(-1);
        let current = template_text(&doc, STATE_ATTR);
        if current == state {
            return Ok(false);
        }
        let saved = match saved_limits(&doc) {
            Some(l) if !current.is_empty() => l,
            _ => {
                let l = self.vdc_limits(&doc);
                if l.is_empty() { r.limits.clone() } else { l }
            }
        };
        let mut site = self.site_limits(&saved)?;
        for (k, v) in site.iter_mut() {
            *v = match (state, k.as_str()) {
                ("downscaled", "cpu") => (*v).min(1),
                ("downscaled", _) => *v,
                _ => 0,
            };
        }
        let text: Vec<String> = saved.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.rpc
            .idempotent(
                "one.group.update",
                vec![
                    X::Int(gid),
                    X::String(format!(
                        "{STATE_ATTR}={}\n{SAVED_ATTR}={}",
                        quote(state),
                        quote(&text.join(","))
                    )),
                    X::Int(1),
                ],
            )
            .await?;
        let t = Self::quota_template(&site);
        if !t.is_empty() {
            self.rpc
                .idempotent("one.group.quota", vec![X::Int(gid), X::String(t)])
                .await?;
        }
        tracing::info!(offering = %self.offering, vdc = name, state, "VDC quota set");
        Ok(true)
    }
}

#[async_trait]
impl MembershipBackend for OneBackend {
    async fn pull_resources(
        &self,
        resources: &[ResourceView],
    ) -> BackendResult<BTreeMap<String, BackendResourceInfo>> {
        let mut out = BTreeMap::new();
        for r in resources {
            if let Some(info) = OrderBackend::pull_resource(self, r).await? {
                out.insert(info.backend_id.clone(), info);
            }
        }
        Ok(out)
    }

    async fn add_users(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        let saml = self.saml()?;
        let name = resource.backend_id.as_str();
        validate_site_name("OpenNebula name", name)?;
        let vdc = self.require_vdc(name).await?;
        // Groups made by an earlier run (or missing, e.g. a VDC made before keycloak_enabled)
        // are found or made; OpenNebula groups made here stay (no rollback outside a create).
        let group = saml
            .ensure(&self.offering, &self.rpc, name, vdc, &mut Vec::new())
            .await?;
        let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
        saml.add(&self.offering, &group, &names).await
    }

    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>> {
        let saml = self.saml()?;
        saml.remove_members(&self.offering, &resource.backend_id, usernames)
            .await
    }

    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_state(resource, "paused").await
    }

    async fn downscale(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_state(resource, "downscaled").await
    }

    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool> {
        if self.settings.resource_type == ResourceType::Vm {
            return Ok(false);
        }
        let name = resource.backend_id.as_str();
        let doc = self.require_group(name).await?;
        if template_text(&doc, STATE_ATTR).is_empty() {
            return Ok(false);
        }
        let gid = int(&doc, "ID").unwrap_or(-1);
        let saved = saved_limits(&doc).unwrap_or_else(|| resource.limits.clone());
        let t = Self::quota_template(&self.site_limits(&saved)?);
        if !t.is_empty() {
            self.rpc
                .idempotent("one.group.quota", vec![X::Int(gid), X::String(t)])
                .await?;
        }
        self.rpc
            .idempotent(
                "one.group.update",
                vec![
                    X::Int(gid),
                    X::String(format!("{STATE_ATTR}=\"\"\n{SAVED_ATTR}=\"\"")),
                    X::Int(1),
                ],
            )
            .await?;
        tracing::info!(offering = %self.offering, vdc = name, "VDC quota restored");
        Ok(true)
    }

    async fn resource_metadata(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Map<String, Value>> {
        Ok(OrderBackend::pull_resource(self, resource)
            .await?
            .map(|i| i.backend_metadata)
            .unwrap_or_default())
    }
}

#[async_trait]
impl UsageBackend for OneBackend {
    async fn usage_report(
        &self,
        backend_ids: &[String],
        _period: &BillingPeriod,
    ) -> BackendResult<BTreeMap<String, UsageReport>> {
        let mut out = BTreeMap::new();
        for id in backend_ids {
            let total = match self.settings.resource_type {
                ResourceType::Vdc => match self.group_doc(id).await? {
                    Some(g) => self.vdc_usage(&g),
                    None => continue,
                },
                ResourceType::Vm => match self.find_vm(id).await? {
                    Some(vm) => self.vm_limits(&vm),
                    None => continue,
                },
            };
            out.insert(
                id.clone(),
                UsageReport {
                    total,
                    per_user: BTreeMap::new(),
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_template_has_only_the_sections_present() {
        let site: BTreeMap<String, i64> = [("cpu".to_owned(), 4)].into();
        assert_eq!(
            OneBackend::quota_template(&site),
            "VM=[CPU=\"4\", MEMORY=\"-1\", VMS=\"-1\"]\n"
        );
        let site: BTreeMap<String, i64> =
            [("storage".to_owned(), 10), ("floating_ip".to_owned(), 2)].into();
        let t = OneBackend::quota_template(&site);
        assert!(
            t.contains("DATASTORE=[ID=\"-1\", SIZE=\"10\"")
                && t.contains("NETWORK=[ID=\"-1\", LEASES=\"2\"]")
                && !t.contains("VM=")
        );
    }

    #[test]
    fn ssh_keys_raw_or_by_uuid() {
        let keys: BTreeMap<String, String> = [(
            "0a1b2c3d-0000-0000-0000-000000000001".to_owned(),
            "ssh-ed25519 AAAA k".to_owned(),
        )]
        .into();
        let attrs = |v: &str| {
            serde_json::json!({"ssh_public_key": v})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(
            ssh_key(&attrs("ssh-rsa AAAB x"), &keys)
                .ok()
                .flatten()
                .as_deref(),
            Some("ssh-rsa AAAB x")
        );
        assert_eq!(
            ssh_key(&attrs("0a1b2c3d000000000000000000000001"), &keys)
                .ok()
                .flatten()
                .as_deref(),
            Some("ssh-ed25519 AAAA k")
        );
        assert!(ssh_key(&attrs("nonsense"), &keys).is_err());
        assert!(ssh_key(&attrs("ssh-rsa A\nssh-rsa B"), &keys).is_err());
    }
}
