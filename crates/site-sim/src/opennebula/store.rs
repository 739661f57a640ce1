//! The state of the OpenNebula double and the XML-RPC methods on it. Error texts and codes are
//! those of OpenNebula 7.3 (`src/rm/Request.cc`, the pools' "NAME is already taken by ..."),
//! documents follow the vendored XSDs (`tests/opennebula-xsd/`) element for element.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use http_kit::xml::escape;
use http_kit::xmlrpc::Value;

use super::template::{AttrValue, Template, attr_xml, cdata};

/// OpenNebula's error codes (`include/Request.h`).
pub const AUTHENTICATION: i64 = 0x100;
pub const AUTHORIZATION: i64 = 0x200;
pub const NO_EXISTS: i64 = 0x400;
pub const ACTION: i64 = 0x800;
pub const INTERNAL: i64 = 0x2000;

/// VM states (`VirtualMachine.h`).
pub mod vm_state {
    pub const PENDING: i64 = 1;
    pub const ACTIVE: i64 = 3;
    pub const DONE: i64 = 6;
    pub const FAILED: i64 = 7;
    pub const POWEROFF: i64 = 8;
    pub const CLONING_FAILURE: i64 = 11;
}
/// LCM states used by the double.
pub mod lcm {
    pub const LCM_INIT: i64 = 0;
    pub const PROLOG: i64 = 1;
    pub const BOOT: i64 = 2;
    pub const RUNNING: i64 = 3;
    pub const SHUTDOWN: i64 = 12;
    pub const SHUTDOWN_POWEROFF: i64 = 18;
    pub const BOOT_POWEROFF: i64 = 20;
}

/// The failure LCM states a test may ask a booting VM to end in, by name.
pub const LCM_FAILURES: &[(&str, i64)] = &[
    ("FAILURE", 14),
    ("BOOT_FAILURE", 36),
    ("BOOT_MIGRATE_FAILURE", 37),
    ("PROLOG_MIGRATE_FAILURE", 38),
    ("PROLOG_FAILURE", 39),
    ("EPILOG_FAILURE", 40),
    ("EPILOG_STOP_FAILURE", 41),
    ("EPILOG_UNDEPLOY_FAILURE", 42),
    ("PROLOG_MIGRATE_POWEROFF_FAILURE", 44),
    ("PROLOG_MIGRATE_SUSPEND_FAILURE", 46),
    ("BOOT_UNDEPLOY_FAILURE", 47),
    ("BOOT_STOPPED_FAILURE", 48),
    ("PROLOG_RESUME_FAILURE", 49),
    ("PROLOG_UNDEPLOY_FAILURE", 50),
    ("PROLOG_MIGRATE_UNKNOWN_FAILURE", 60),
];

pub type RpcResult = Result<Value, (i64, String)>;

#[derive(Debug, Clone, Default)]
pub struct Quota {
    /// VM section: CPU, MEMORY, VMS limits ("-1" default, "-2" unlimited) and base usage.
    pub vm: Option<[String; 3]>,
    pub vm_used_base: [f64; 3],
    /// DATASTORE sections: ID → (IMAGES, SIZE) limits, (IMAGES_USED, SIZE_USED).
    pub datastore: BTreeMap<String, ([String; 2], [i64; 2])>,
    /// NETWORK sections: ID → LEASES limit, LEASES_USED.
    pub network: BTreeMap<String, (String, i64)>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub template: Template,
    pub admins: BTreeSet<i64>,
    pub quota: Quota,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub auth_driver: String,
    pub gid: i64,
    pub groups: BTreeSet<i64>,
    pub template: Template,
}

#[derive(Debug, Clone, Default)]
pub struct Vdc {
    pub name: String,
    pub groups: BTreeSet<i64>,
    pub clusters: BTreeSet<(i64, i64)>,
    pub vnets: BTreeSet<(i64, i64)>,
    pub template: Template,
}

#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub name: String,
    pub vnets: BTreeSet<i64>,
}

#[derive(Debug, Clone)]
pub struct Ar {
    pub first: Ipv4Addr,
    pub size: u32,
    /// Leased address offsets → (VM id or -1, VROUTER id or -1).
    pub leases: BTreeMap<u32, (i64, i64)>,
}

#[derive(Debug, Clone)]
pub struct Vnet {
    pub name: String,
    pub uid: i64,
    pub gid: i64,
    pub clusters: BTreeSet<i64>,
    pub vn_mad: String,
    pub phydev: String,
    pub bridge: String,
    pub vlan_id: String,
    pub vlan_auto: bool,
    pub template: Template,
    pub ars: Vec<Ar>,
}

#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub uid: i64,
    pub gid: i64,
    pub template: Template,
}

#[derive(Debug, Clone)]
pub struct Vrouter {
    pub named: Named,
    pub vms: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub state: i64,
    pub size_mb: i64,
}

#[derive(Debug, Clone)]
pub struct Vm {
    pub name: String,
    pub uid: i64,
    pub gid: i64,
    pub state: i64,
    pub lcm: i64,
    pub prev: (i64, i64),
    pub stime: i64,
    pub etime: i64,
    pub template: Template,
    pub user_template: Template,
    /// Timed transitions still to happen: (when, STATE, LCM_STATE).
    pub pending: VecDeque<(Instant, i64, i64)>,
}

/// A rule making booting VMs fail: the next VMs whose name contains `name_contains`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct VmFailure {
    #[serde(default)]
    pub name_contains: String,
    /// A failure LCM state name (BOOT_FAILURE, PROLOG_FAILURE, ...) or FAILED/CLONING_FAILURE.
    pub state: String,
    /// How many VMs it applies to (default: every matching VM).
    #[serde(default)]
    pub count: Option<u32>,
}

pub struct Store {
    next: BTreeMap<&'static str, i64>,
    pub groups: BTreeMap<i64, Group>,
    pub users: BTreeMap<i64, User>,
    pub vdcs: BTreeMap<i64, Vdc>,
    pub clusters: BTreeMap<i64, Cluster>,
    pub vnets: BTreeMap<i64, Vnet>,
    pub vrouters: BTreeMap<i64, Vrouter>,
    pub secgroups: BTreeMap<i64, Named>,
    pub templates: BTreeMap<i64, Named>,
    pub images: BTreeMap<i64, Image>,
    pub vms: BTreeMap<i64, Vm>,
    pub failures: Vec<VmFailure>,
    /// Time a VM takes from PENDING to RUNNING (three equal steps) and for other transitions.
    pub step: Duration,
    epoch: i64,
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn err<T>(code: i64, method: &str, msg: impl std::fmt::Display) -> Result<T, (i64, String)> {
    Err((code, format!("[{method}] {msg}")))
}

fn not_found<T>(method: &str, what: &str, id: i64) -> Result<T, (i64, String)> {
    err(NO_EXISTS, method, format!("Error getting {what} [{id}]."))
}

fn ok_id(id: i64) -> RpcResult {
    Ok(Value::Int(id))
}

const PERMISSIONS: &str = "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>";

fn ids(tag: &str, ids: impl IntoIterator<Item = i64>) -> String {
    let mut s = format!("<{tag}>");
    for i in ids {
        let _ = write!(s, "<ID>{i}</ID>");
    }
    let _ = write!(s, "</{tag}>");
    s
}

fn el(tag: &str, v: impl std::fmt::Display) -> String {
    format!("<{tag}>{}</{tag}>", escape(&v.to_string()))
}

/// Params: (index, method) accessors with OpenNebula's "wrong type" answer.
struct Args<'a> {
    method: &'a str,
    params: &'a [Value],
}

impl Args<'_> {
    fn int(&self, i: usize) -> Result<i64, (i64, String)> {
        match self.params.get(i) {
            Some(Value::Int(v)) => Ok(*v),
            _ => err(
                0x1000,
                self.method,
                format!("Parameter {i} is missing or is not an integer."),
            ),
        }
    }
    fn int_or(&self, i: usize, d: i64) -> Result<i64, (i64, String)> {
        if self.params.len() <= i {
            Ok(d)
        } else {
            self.int(i)
        }
    }
    fn str(&self, i: usize) -> Result<&str, (i64, String)> {
        match self.params.get(i) {
            Some(Value::String(v)) => Ok(v),
            _ => err(
                0x1000,
                self.method,
                format!("Parameter {i} is missing or is not a string."),
            ),
        }
    }
    fn str_or<'b>(&'b self, i: usize, d: &'b str) -> Result<&'b str, (i64, String)> {
        if self.params.len() <= i {
            Ok(d)
        } else {
            self.str(i)
        }
    }
    fn bool_or(&self, i: usize, d: bool) -> Result<bool, (i64, String)> {
        match self.params.get(i) {
            None => Ok(d),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(v)) => Ok(*v != 0),
            _ => err(
                0x1000,
                self.method,
                format!("Parameter {i} is not a boolean."),
            ),
        }
    }
    fn template(&self, i: usize) -> Result<Template, (i64, String)> {
        let s = self.str_or(i, "")?;
        Template::parse(s).map_err(|e| (INTERNAL, format!("[{}] Parse error: {e}", self.method)))
    }
}

impl Store {
    pub fn new(admin_password: &str, demo: bool, step: Duration) -> Store {
        let mut s = Store {
            next: BTreeMap::new(),
            groups: BTreeMap::new(),
            users: BTreeMap::new(),
            vdcs: BTreeMap::new(),
            clusters: BTreeMap::new(),
            vnets: BTreeMap::new(),
            vrouters: BTreeMap::new(),
            secgroups: BTreeMap::new(),
            templates: BTreeMap::new(),
            images: BTreeMap::new(),
            vms: BTreeMap::new(),
            failures: Vec::new(),
            step,
            epoch: now_secs(),
        };
        // What every OpenNebula install has: oneadmin and users groups, the oneadmin user,
        // the default cluster and VDC. Objects users create start at 100 like in oned.
        for (id, name) in [(0, "oneadmin"), (1, "users")] {
            s.groups.insert(
                id,
                Group {
                    name: name.into(),
                    template: Template::default(),
                    admins: BTreeSet::new(),
                    quota: Quota::default(),
                },
            );
        }
        s.users.insert(
            0,
            User {
                name: "oneadmin".into(),
                password: admin_password.into(),
                auth_driver: "core".into(),
                gid: 0,
                groups: [0].into(),
                template: Template::default(),
            },
        );
        s.clusters.insert(
            0,
            Cluster {
                name: "default".into(),
                ..Default::default()
            },
        );
        s.vdcs.insert(
            0,
            Vdc {
                name: "default".into(),
                groups: [1].into(),
                clusters: [(0, -10)].into(),
                ..Default::default()
            },
        );
        for k in [
            "group", "user", "vdc", "vn", "vrouter", "secgroup", "template", "image", "vm",
        ] {
            s.next.insert(
                k,
                if matches!(k, "group" | "user" | "vdc") {
                    100
                } else {
                    0
                },
            );
        }
        s.next.insert("cluster", 100);
        if demo {
            s.seed_demo();
        }
        s
    }

    /// Demo data matching the seed's offering examples: clusters 0 and 100, the provider
    /// network 10, a VM template 0 and the VNF appliance template 8 with their images, the
    /// default security group.
    fn seed_demo(&mut self) {
        self.clusters.insert(
            100,
            Cluster {
                name: "edge".into(),
                ..Default::default()
            },
        );
        self.next.insert("cluster", 101);
        let mut t = Template::default();
        t.set("DNS", "8.8.8.8");
        t.set("GATEWAY", "192.168.100.1");
        self.vnets.insert(
            10,
            Vnet {
                name: "public".into(),
                uid: 0,
                gid: 0,
                clusters: [0, 100].into(),
                vn_mad: "bridge".into(),
                phydev: String::new(),
                bridge: "br0".into(),
                vlan_id: String::new(),
                vlan_auto: false,
                template: t,
                ars: vec![Ar {
                    first: Ipv4Addr::new(192, 168, 100, 2),
                    size: 200,
                    leases: BTreeMap::new(),
                }],
            },
        );
        self.clusters.get_mut(&0).map(|c| c.vnets.insert(10));
        self.clusters.get_mut(&100).map(|c| c.vnets.insert(10));
        self.next.insert("vn", 11);
        self.images.insert(
            0,
            Image {
                name: "ubuntu-24.04".into(),
                state: 1,
                size_mb: 2252,
            },
        );
        self.images.insert(
            1,
            Image {
                name: "service-vnf".into(),
                state: 1,
                size_mb: 1024,
            },
        );
        self.next.insert("image", 2);
        for (id, name, image, cpu, mem) in [
            (0, "ubuntu-24.04", 0, "1", "1024"),
            (8, "service-vnf", 1, "1", "512"),
        ] {
            let t = Template::parse(&format!(
                "CPU=\"{cpu}\"\nVCPU=\"{cpu}\"\nMEMORY=\"{mem}\"\nDISK=[IMAGE_ID=\"{image}\"]\nGRAPHICS=[LISTEN=\"0.0.0.0\", TYPE=\"VNC\"]\nOS=[ARCH=\"x86_64\"]\nCONTEXT=[NETWORK=\"YES\"]\n"
            ))
            .unwrap_or_default();
            self.templates.insert(
                id,
                Named {
                    name: name.into(),
                    uid: 0,
                    gid: 0,
                    template: t,
                },
            );
        }
        self.next.insert("template", 9);
        self.secgroups.insert(
            0,
            Named {
                name: "default".into(),
                uid: 0,
                gid: 0,
                template: Template::parse(
                    "DESCRIPTION=\"The default security group\"\nRULE=[PROTOCOL=\"ALL\", RULE_TYPE=\"OUTBOUND\"]\nRULE=[PROTOCOL=\"ALL\", RULE_TYPE=\"INBOUND\"]",
                )
                .unwrap_or_default(),
            },
        );
        self.next.insert("secgroup", 1);
    }

    fn alloc(&mut self, kind: &'static str) -> i64 {
        let n = self.next.entry(kind).or_insert(0);
        let id = *n;
        *n += 1;
        id
    }

    /// The user a session string `user:password` authenticates, if any.
    pub fn authenticate(&self, session: &str) -> Option<i64> {
        let (user, pass) = session.split_once(':')?;
        self.users
            .iter()
            .find(|(_, u)| u.name == user && u.password == pass && u.auth_driver == "core")
            .map(|(id, _)| *id)
    }

    /// Applies every timed VM transition that is due.
    pub fn advance(&mut self, now: Instant) {
        let mut freed = Vec::new();
        for (id, vm) in self.vms.iter_mut() {
            while vm.pending.front().is_some_and(|(at, _, _)| *at <= now) {
                if let Some((_, st, l)) = vm.pending.pop_front() {
                    vm.prev = (vm.state, vm.lcm);
                    vm.state = st;
                    vm.lcm = l;
                    if st == vm_state::DONE {
                        vm.etime = now_secs();
                        freed.push(*id);
                    }
                }
            }
        }
        for id in freed {
            self.release_leases(id);
        }
    }

    fn release_leases(&mut self, vm: i64) {
        for v in self.vnets.values_mut() {
            for ar in &mut v.ars {
                ar.leases.retain(|_, (owner, _)| *owner != vm);
            }
        }
        for vr in self.vrouters.values_mut() {
            vr.vms.retain(|v| *v != vm);
        }
    }

    fn uname(&self, uid: i64) -> String {
        self.users
            .get(&uid)
            .map(|u| u.name.clone())
            .unwrap_or_default()
    }
    fn gname(&self, gid: i64) -> String {
        self.groups
            .get(&gid)
            .map(|g| g.name.clone())
            .unwrap_or_default()
    }

    /// Runs one XML-RPC method (session already checked) for user `uid`.
    pub fn call(&mut self, uid: i64, method: &str, params: &[Value]) -> RpcResult {
        let a = Args { method, params };
        let read_only = method.ends_with(".info") || method.ends_with("pool.info");
        if uid != 0 && !read_only && !(method == "one.user.passwd" && a.int(1).ok() == Some(uid)) {
            let object = method.split('.').nth(1).unwrap_or("");
            return err(
                AUTHORIZATION,
                method,
                format!("User [{uid}] not authorized to perform action on {object}."),
            );
        }
        match method {
            // ---- groups
            "one.grouppool.info" => Ok(Value::from(self.group_pool_xml())),
            "one.group.info" => {
                let id = a.int(1)?;
                match self.groups.get(&id) {
                    Some(_) => Ok(Value::from(self.group_xml(id))),
                    None => not_found(method, "group", id),
                }
            }
            "one.group.allocate" => {
                let name = a.str(1)?.trim().to_owned();
                self.check_name(method, &name)?;
                if let Some((id, _)) = self.groups.iter().find(|(_, g)| g.name == name) {
                    return err(
                        INTERNAL,
                        method,
                        format!("NAME is already taken by GROUP {id}."),
                    );
                }
                let id = self.alloc("group");
                self.groups.insert(
                    id,
                    Group {
                        name,
                        template: Template::default(),
                        admins: BTreeSet::new(),
                        quota: Quota::default(),
                    },
                );
                ok_id(id)
            }
            "one.group.delete" => {
                let id = a.int(1)?;
                if !self.groups.contains_key(&id) {
                    return not_found(method, "group", id);
                }
                if id < 100 {
                    return err(
                        ACTION,
                        method,
                        "System Groups (ID < 100) cannot be deleted.",
                    );
                }
                if self.users.values().any(|u| u.gid == id) {
                    return err(ACTION, method, format!("Group {id} is not empty."));
                }
                self.groups.remove(&id);
                for u in self.users.values_mut() {
                    u.groups.remove(&id);
                }
                for v in self.vdcs.values_mut() {
                    v.groups.remove(&id);
                }
                ok_id(id)
            }
            "one.group.update" => {
                let id = a.int(1)?;
                let t = a.template(2)?;
                let merge = a.int_or(3, 0)? == 1;
                let Some(g) = self.groups.get_mut(&id) else {
                    return not_found(method, "group", id);
                };
                if merge {
                    g.template.merge(t);
                } else {
                    g.template = t;
                }
                ok_id(id)
            }
            "one.group.addadmin" => {
                let (id, user) = (a.int(1)?, a.int(2)?);
                if !self.users.contains_key(&user) {
                    return not_found(method, "user", user);
                }
                let Some(g) = self.groups.get_mut(&id) else {
                    return not_found(method, "group", id);
                };
                if !g.admins.insert(user) {
                    return err(
                        INTERNAL,
                        method,
                        format!("User {user} is already an administrator of Group {id}."),
                    );
                }
                ok_id(id)
            }
            "one.group.quota" => {
                let id = a.int(1)?;
                let t = a.template(2)?;
                let Some(g) = self.groups.get_mut(&id) else {
                    return not_found(method, "group", id);
                };
                set_quota(&mut g.quota, &t).map_err(|m| (INTERNAL, format!("[{method}] {m}")))?;
                ok_id(id)
            }
            // ---- users
            "one.userpool.info" => Ok(Value::from(self.user_pool_xml())),
            "one.user.info" => {
                let id = a.int_or(1, -1)?;
                let id = if id == -1 { uid } else { id };
                match self.users.get(&id) {
                    Some(_) => Ok(Value::from(self.user_xml(id))),
                    None => not_found(method, "user", id),
                }
            }
            "one.user.allocate" => {
                let name = a.str(1)?.trim().to_owned();
                let password = a.str(2)?.to_owned();
                let driver = a.str_or(3, "core")?;
                let driver = if driver.is_empty() { "core" } else { driver }.to_owned();
                self.check_name(method, &name)?;
                if let Some((id, _)) = self.users.iter().find(|(_, u)| u.name == name) {
                    return err(
                        INTERNAL,
                        method,
                        format!("NAME is already taken by USER {id}."),
                    );
                }
                if password.is_empty() && driver == "core" {
                    return err(INTERNAL, method, "Invalid password, it cannot be empty.");
                }
                let id = self.alloc("user");
                self.users.insert(
                    id,
                    User {
                        name,
                        password,
                        auth_driver: driver,
                        gid: 1,
                        groups: [1].into(),
                        template: Template::default(),
                    },
                );
                ok_id(id)
            }
            "one.user.delete" => {
                let id = a.int(1)?;
                if id == 0 {
                    return err(ACTION, method, "oneadmin cannot be deleted.");
                }
                if self.users.remove(&id).is_none() {
                    return not_found(method, "user", id);
                }
                for g in self.groups.values_mut() {
                    g.admins.remove(&id);
                }
                ok_id(id)
            }
            "one.user.chgrp" => {
                let (id, gid) = (a.int(1)?, a.int(2)?);
                if !self.groups.contains_key(&gid) {
                    return not_found(method, "group", gid);
                }
                let Some(u) = self.users.get_mut(&id) else {
                    return not_found(method, "user", id);
                };
                u.groups.remove(&u.gid);
                u.gid = gid;
                u.groups.insert(gid);
                ok_id(id)
            }
            "one.user.update" => {
                let id = a.int(1)?;
                let t = a.template(2)?;
                let merge = a.int_or(3, 0)? == 1;
                let Some(u) = self.users.get_mut(&id) else {
                    return not_found(method, "user", id);
                };
                if merge {
                    u.template.merge(t);
                } else {
                    u.template = t;
                }
                ok_id(id)
            }
            "one.user.passwd" => {
                let id = a.int(1)?;
                let p = a.str(2)?.to_owned();
                if p.is_empty() {
                    return err(INTERNAL, method, "Invalid password, it cannot be empty.");
                }
                let Some(u) = self.users.get_mut(&id) else {
                    return not_found(method, "user", id);
                };
                u.password = p;
                ok_id(id)
            }
            // ---- VDCs
            "one.vdcpool.info" => Ok(Value::from(format!(
                "<VDC_POOL>{}</VDC_POOL>",
                self.vdcs
                    .keys()
                    .map(|id| self.vdc_xml(*id))
                    .collect::<String>()
            ))),
            "one.vdc.info" => {
                let id = a.int(1)?;
                match self.vdcs.get(&id) {
                    Some(_) => Ok(Value::from(self.vdc_xml(id))),
                    None => not_found(method, "VDC", id),
                }
            }
            "one.vdc.allocate" => {
                let t = a.template(1)?;
                let name = t.get("NAME").unwrap_or("").to_owned();
                self.check_name(method, &name)?;
                if let Some((id, _)) = self.vdcs.iter().find(|(_, v)| v.name == name) {
                    return err(
                        INTERNAL,
                        method,
                        format!("NAME is already taken by Vdc {id}."),
                    );
                }
                let mut template = t;
                template.remove("NAME");
                let id = self.alloc("vdc");
                self.vdcs.insert(
                    id,
                    Vdc {
                        name,
                        template,
                        ..Default::default()
                    },
                );
                ok_id(id)
            }
            "one.vdc.delete" => {
                let id = a.int(1)?;
                if self.vdcs.remove(&id).is_none() {
                    return not_found(method, "VDC", id);
                }
                ok_id(id)
            }
            "one.vdc.addgroup" | "one.vdc.delgroup" => {
                let (id, gid) = (a.int(1)?, a.int(2)?);
                if !self.vdcs.contains_key(&id) {
                    return not_found(method, "VDC", id);
                }
                if !self.groups.contains_key(&gid) {
                    return not_found(method, "group", gid);
                }
                let v = self.vdcs.get_mut(&id).expect("checked above");
                if method.ends_with("addgroup") {
                    if !v.groups.insert(gid) {
                        return err(
                            INTERNAL,
                            method,
                            format!("Group {gid} is already assigned to the VDC {id}"),
                        );
                    }
                } else if !v.groups.remove(&gid) {
                    return err(
                        INTERNAL,
                        method,
                        format!("Group {gid} is not assigned to the VDC {id}"),
                    );
                }
                ok_id(id)
            }
            "one.vdc.addcluster" | "one.vdc.addvnet" => {
                let (id, zone, obj) = (a.int(1)?, a.int(2)?, a.int(3)?);
                let cluster = method.ends_with("addcluster");
                if !self.vdcs.contains_key(&id) {
                    return not_found(method, "VDC", id);
                }
                if zone != 0 {
                    return not_found(method, "zone", zone);
                }
                if obj != -10 {
                    let exists = if cluster {
                        self.clusters.contains_key(&obj)
                    } else {
                        self.vnets.contains_key(&obj)
                    };
                    if !exists {
                        return not_found(
                            method,
                            if cluster {
                                "cluster"
                            } else {
                                "virtual network"
                            },
                            obj,
                        );
                    }
                }
                let v = self.vdcs.get_mut(&id).expect("checked above");
                let set = if cluster {
                    &mut v.clusters
                } else {
                    &mut v.vnets
                };
                if !set.insert((zone, obj)) {
                    let kind = if cluster { "CLUSTER" } else { "NET" };
                    return err(
                        INTERNAL,
                        method,
                        format!("{kind} {obj} from Zone {zone} is already assigned to the VDC"),
                    );
                }
                ok_id(id)
            }
            // ---- clusters
            "one.clusterpool.info" => Ok(Value::from(format!(
                "<CLUSTER_POOL>{}</CLUSTER_POOL>",
                self.clusters
                    .keys()
                    .map(|id| self.cluster_xml(*id))
                    .collect::<String>()
            ))),
            "one.cluster.info" => {
                let id = a.int(1)?;
                match self.clusters.get(&id) {
                    Some(_) => Ok(Value::from(self.cluster_xml(id))),
                    None => not_found(method, "cluster", id),
                }
            }
            "one.cluster.addvnet" | "one.cluster.delvnet" => {
                let (id, vn) = (a.int(1)?, a.int(2)?);
                if !self.clusters.contains_key(&id) {
                    return not_found(method, "cluster", id);
                }
                let Some(v) = self.vnets.get_mut(&vn) else {
                    return not_found(method, "virtual network", vn);
                };
                let c = self.clusters.get_mut(&id).expect("checked above");
                if method.ends_with("addvnet") {
                    c.vnets.insert(vn);
                    v.clusters.insert(id);
                } else {
                    c.vnets.remove(&vn);
                    v.clusters.remove(&id);
                }
                ok_id(id)
            }
            // ---- virtual networks
            "one.vnpool.info" => Ok(Value::from(format!(
                "<VNET_POOL>{}</VNET_POOL>",
                self.vnets
                    .keys()
                    .map(|id| self.vnet_xml(*id, false))
                    .collect::<String>()
            ))),
            "one.vn.info" => {
                let id = a.int(1)?;
                match self.vnets.get(&id) {
                    Some(_) => Ok(Value::from(self.vnet_xml(id, true))),
                    None => not_found(method, "virtual network", id),
                }
            }
            "one.vn.allocate" => {
                let t = a.template(1)?;
                let cluster = a.int_or(2, -1)?;
                self.vn_allocate(method, uid, t, cluster)
            }
            "one.vn.delete" => {
                let id = a.int(1)?;
                let Some(v) = self.vnets.get(&id) else {
                    return not_found(method, "virtual network", id);
                };
                if v.ars.iter().any(|ar| !ar.leases.is_empty()) {
                    return err(
                        ACTION,
                        method,
                        "Can not remove a virtual network with leases in use",
                    );
                }
                self.vnets.remove(&id);
                for c in self.clusters.values_mut() {
                    c.vnets.remove(&id);
                }
                for v in self.vdcs.values_mut() {
                    v.vnets.retain(|(_, n)| *n != id);
                }
                ok_id(id)
            }
            // ---- virtual routers
            "one.vrouterpool.info" => Ok(Value::from(format!(
                "<VROUTER_POOL>{}</VROUTER_POOL>",
                self.vrouters
                    .keys()
                    .map(|id| self.vrouter_xml(*id))
                    .collect::<String>()
            ))),
            "one.vrouter.info" => {
                let id = a.int(1)?;
                match self.vrouters.get(&id) {
                    Some(_) => Ok(Value::from(self.vrouter_xml(id))),
                    None => not_found(method, "virtual router", id),
                }
            }
            "one.vrouter.allocate" => {
                let t = a.template(1)?;
                let name = t.get("NAME").unwrap_or("").to_owned();
                self.check_name(method, &name)?;
                let mut template = t;
                template.remove("NAME");
                let id = self.alloc("vrouter");
                self.vrouters.insert(
                    id,
                    Vrouter {
                        named: Named {
                            name,
                            uid,
                            gid: self.users.get(&uid).map(|u| u.gid).unwrap_or(0),
                            template,
                        },
                        vms: Vec::new(),
                    },
                );
                ok_id(id)
            }
            "one.vrouter.instantiate" => {
                let (id, n, tpl) = (a.int(1)?, a.int(2)?, a.int(3)?);
                let name = a.str_or(4, "")?.to_owned();
                let hold = a.bool_or(5, false)?;
                let extra = a.template(6)?;
                let Some(vr) = self.vrouters.get(&id) else {
                    return not_found(method, "virtual router", id);
                };
                if !(1..=16).contains(&n) {
                    return err(INTERNAL, method, "Number of VMs must be between 1 and 16.");
                }
                let vr_name = vr.named.name.clone();
                let mut extra = extra;
                // The router's NICs (from its own template) come first, like oned does.
                let mut merged = Template::default();
                for (k, v) in &vr.named.template.attrs {
                    if k == "NIC" {
                        merged.attrs.push((k.clone(), v.clone()));
                    }
                }
                if merged.attrs.is_empty() {
                    merged
                        .attrs
                        .extend(extra.attrs.iter().filter(|(k, _)| k == "NIC").cloned());
                }
                extra.attrs.retain(|(k, _)| k != "NIC");
                merged.attrs.extend(extra.attrs);
                merged.set("VROUTER_ID", id.to_string());
                let mut created = Vec::new();
                for i in 0..n {
                    let vm_name = if name.is_empty() {
                        format!("vr-{vr_name}-{i}")
                    } else {
                        name.replace("%i", &i.to_string())
                    };
                    match self.instantiate(method, uid, tpl, &vm_name, hold, merged.clone(), id) {
                        Ok(vm) => created.push(vm),
                        Err(e) => {
                            for vm in created {
                                self.vms.remove(&vm);
                                self.release_leases(vm);
                            }
                            return Err(e);
                        }
                    }
                }
                if let Some(vr) = self.vrouters.get_mut(&id) {
                    vr.vms.extend(created);
                }
                ok_id(id)
            }
            "one.vrouter.delete" => {
                let id = a.int(1)?;
                let Some(vr) = self.vrouters.remove(&id) else {
                    return not_found(method, "virtual router", id);
                };
                let now = Instant::now();
                for vm in vr.vms {
                    self.terminate(vm, now);
                }
                ok_id(id)
            }
            // ---- security groups
            "one.secgrouppool.info" => Ok(Value::from(format!(
                "<SECURITY_GROUP_POOL>{}</SECURITY_GROUP_POOL>",
                self.secgroups
                    .keys()
                    .map(|id| self.secgroup_xml(*id))
                    .collect::<String>()
            ))),
            "one.secgroup.info" => {
                let id = a.int(1)?;
                match self.secgroups.get(&id) {
                    Some(_) => Ok(Value::from(self.secgroup_xml(id))),
                    None => not_found(method, "security group", id),
                }
            }
            "one.secgroup.allocate" => {
                let t = a.template(1)?;
                let name = t.get("NAME").unwrap_or("").to_owned();
                self.check_name(method, &name)?;
                if let Some((id, _)) = self.secgroups.iter().find(|(_, s)| s.name == name) {
                    return err(
                        INTERNAL,
                        method,
                        format!("NAME is already taken by SecurityGroup {id}."),
                    );
                }
                let mut template = t;
                template.remove("NAME");
                let id = self.alloc("secgroup");
                self.secgroups.insert(
                    id,
                    Named {
                        name,
                        uid,
                        gid: self.users.get(&uid).map(|u| u.gid).unwrap_or(0),
                        template,
                    },
                );
                ok_id(id)
            }
            "one.secgroup.delete" => {
                let id = a.int(1)?;
                if id == 0 {
                    return err(
                        ACTION,
                        method,
                        "The default security group (ID 0) cannot be deleted.",
                    );
                }
                if self.secgroups.remove(&id).is_none() {
                    return not_found(method, "security group", id);
                }
                ok_id(id)
            }
            // ---- templates and images
            "one.templatepool.info" => Ok(Value::from(format!(
                "<VMTEMPLATE_POOL>{}</VMTEMPLATE_POOL>",
                self.templates
                    .keys()
                    .map(|id| self.vmtemplate_xml(*id))
                    .collect::<String>()
            ))),
            "one.template.info" => {
                let id = a.int(1)?;
                match self.templates.get(&id) {
                    Some(_) => Ok(Value::from(self.vmtemplate_xml(id))),
                    None => not_found(method, "virtual machine template", id),
                }
            }
            "one.template.instantiate" => {
                let id = a.int(1)?;
                let name = a.str_or(2, "")?.to_owned();
                let hold = a.bool_or(3, false)?;
                let extra = a.template(4)?;
                self.instantiate(method, uid, id, &name, hold, extra, -1)
                    .map(Value::Int)
            }
            "one.imagepool.info" => Ok(Value::from(format!(
                "<IMAGE_POOL>{}</IMAGE_POOL>",
                self.images
                    .keys()
                    .map(|id| self.image_xml(*id))
                    .collect::<String>()
            ))),
            "one.image.info" => {
                let id = a.int(1)?;
                match self.images.get(&id) {
                    Some(_) => Ok(Value::from(self.image_xml(id))),
                    None => not_found(method, "image", id),
                }
            }
            // ---- VMs
            "one.vmpool.info" => {
                let state = a.int_or(4, -1)?;
                let body: String = self
                    .vms
                    .iter()
                    .filter(|(_, v)| match state {
                        -2 => true,
                        -1 => v.state != vm_state::DONE,
                        s => v.state == s,
                    })
                    .map(|(id, _)| self.vm_pool_entry_xml(*id))
                    .collect();
                Ok(Value::from(format!("<VM_POOL>{body}</VM_POOL>")))
            }
            "one.vm.info" => {
                let id = a.int(1)?;
                match self.vms.get(&id) {
                    Some(_) => Ok(Value::from(self.vm_xml(id))),
                    None => not_found(method, "virtual machine", id),
                }
            }
            "one.vm.chown" => {
                let (id, new_uid, new_gid) = (a.int(1)?, a.int(2)?, a.int(3)?);
                if new_uid >= 0 && !self.users.contains_key(&new_uid) {
                    return not_found(method, "user", new_uid);
                }
                if new_gid >= 0 && !self.groups.contains_key(&new_gid) {
                    return not_found(method, "group", new_gid);
                }
                let Some(vm) = self.vms.get_mut(&id) else {
                    return not_found(method, "virtual machine", id);
                };
                if new_uid >= 0 {
                    vm.uid = new_uid;
                }
                if new_gid >= 0 {
                    vm.gid = new_gid;
                }
                ok_id(id)
            }
            "one.vm.action" => {
                let action = a.str(1)?.to_owned();
                let id = a.int(2)?;
                self.vm_action(method, &action, id)
            }
            "one.vm.resize" => {
                let id = a.int(1)?;
                let t = a.template(2)?;
                let Some(vm) = self.vms.get_mut(&id) else {
                    return not_found(method, "virtual machine", id);
                };
                if !matches!(vm.state, vm_state::POWEROFF | vm_state::PENDING | 2 | 9) {
                    return err(
                        ACTION,
                        method,
                        format!(
                            "Resize action is not available for state {}",
                            state_name(vm.state, vm.lcm)
                        ),
                    );
                }
                for key in ["CPU", "VCPU", "MEMORY"] {
                    if let Some(v) = t.get(key) {
                        if v.parse::<f64>().map_or(true, |n| n <= 0.0) {
                            return err(
                                INTERNAL,
                                method,
                                format!("{key} must be a positive number"),
                            );
                        }
                        vm.template.set(key, v);
                    }
                }
                ok_id(id)
            }
            "one.vm.diskresize" => {
                let (id, disk) = (a.int(1)?, a.int(2)?);
                let size: i64 = a.str(3)?.trim().parse().map_err(|_| {
                    (
                        INTERNAL,
                        format!("[{method}] Wrong size for disk: not a number"),
                    )
                })?;
                let Some(vm) = self.vms.get_mut(&id) else {
                    return not_found(method, "virtual machine", id);
                };
                if !(vm.state == vm_state::POWEROFF
                    || (vm.state == vm_state::ACTIVE && vm.lcm == lcm::RUNNING))
                {
                    return err(
                        ACTION,
                        method,
                        format!(
                            "Could not resize disk: the VM is in state {}",
                            state_name(vm.state, vm.lcm)
                        ),
                    );
                }
                let mut found = false;
                for (k, v) in vm.template.attrs.iter_mut() {
                    if let (true, AttrValue::Vector(items)) = (k == "DISK", v)
                        && items
                            .iter()
                            .any(|(ik, iv)| ik == "DISK_ID" && iv == &disk.to_string())
                    {
                        found = true;
                        let cur: i64 = items
                            .iter()
                            .find(|(ik, _)| ik == "SIZE")
                            .and_then(|(_, v)| v.parse().ok())
                            .unwrap_or(0);
                        if size <= cur {
                            return err(
                                ACTION,
                                method,
                                "New disk size has to be greater than current one",
                            );
                        }
                        set_item(items, "SIZE", size.to_string());
                    }
                }
                if !found {
                    return err(ACTION, method, format!("VM disk does not exist: {disk}"));
                }
                ok_id(id)
            }
            _ => Err((-506, format!("method '{method}' not defined"))),
        }
    }

    fn check_name(&self, method: &str, name: &str) -> Result<(), (i64, String)> {
        if name.is_empty() {
            return err(INTERNAL, method, "NAME cannot be empty.");
        }
        if name.len() > 128 || name.contains(['&', '|', ':', '\\', '"', '\'', '#', '<', '>']) {
            return err(
                INTERNAL,
                method,
                "Invalid NAME, it contains invalid characters.",
            );
        }
        Ok(())
    }

    fn vn_allocate(&mut self, method: &str, uid: i64, t: Template, cluster: i64) -> RpcResult {
        let name = t.get("NAME").unwrap_or("").to_owned();
        self.check_name(method, &name)?;
        if let Some((id, _)) = self.vnets.iter().find(|(_, v)| v.name == name) {
            return err(
                INTERNAL,
                method,
                format!("NAME is already taken by NET {id}."),
            );
        }
        let cluster = if cluster < 0 { 0 } else { cluster };
        if !self.clusters.contains_key(&cluster) {
            return not_found(method, "cluster", cluster);
        }
        let vn_mad = t.get("VN_MAD").unwrap_or("").to_owned();
        if vn_mad.is_empty() {
            return err(
                INTERNAL,
                method,
                "VN_MAD is mandatory for the Virtual Network.",
            );
        }
        let phydev = t.get("PHYDEV").unwrap_or("").to_owned();
        if vn_mad == "vxlan" && phydev.is_empty() {
            return err(INTERNAL, method, "PHYDEV is mandatory for driver vxlan.");
        }
        let mut ars = Vec::new();
        for ar in t.vectors("AR") {
            let get = |k: &str| ar.iter().find(|(ik, _)| ik == k).map(|(_, v)| v.as_str());
            if get("TYPE") != Some("IP4") {
                return err(
                    INTERNAL,
                    method,
                    "Unknown or missing TYPE in address range, only IP4 is supported here.",
                );
            }
            let first: Ipv4Addr = get("IP").and_then(|v| v.parse().ok()).ok_or((
                INTERNAL,
                format!("[{method}] Wrong IP address in address range."),
            ))?;
            // The range must end inside the IPv4 space.
            let size: u32 = get("SIZE")
                .and_then(|v| v.parse().ok())
                .filter(|s: &u32| *s > 0 && u32::from(first).checked_add(*s - 1).is_some())
                .ok_or((
                    INTERNAL,
                    format!("[{method}] Wrong SIZE for address range."),
                ))?;
            ars.push(Ar {
                first,
                size,
                leases: BTreeMap::new(),
            });
        }
        let id = self.alloc("vn");
        let vlan_auto = t.get("AUTOMATIC_VLAN_ID") == Some("YES");
        let vlan_id = match t.get("VLAN_ID") {
            Some(v) => v.to_owned(),
            None if vlan_auto || vn_mad == "vxlan" => (id + 2).to_string(),
            None => String::new(),
        };
        let bridge = t.get("BRIDGE").map(str::to_owned).unwrap_or_else(|| {
            format!(
                "onebr.{}",
                if vlan_id.is_empty() {
                    id.to_string()
                } else {
                    vlan_id.clone()
                }
            )
        });
        let mut template = t;
        template.attrs.retain(|(k, _)| k != "AR" && k != "NAME");
        let gid = self.users.get(&uid).map(|u| u.gid).unwrap_or(0);
        self.vnets.insert(
            id,
            Vnet {
                name,
                uid,
                gid,
                clusters: [cluster].into(),
                vn_mad,
                phydev,
                bridge,
                vlan_id,
                vlan_auto,
                template,
                ars,
            },
        );
        if let Some(c) = self.clusters.get_mut(&cluster) {
            c.vnets.insert(id);
        }
        ok_id(id)
    }

    /// Creates a VM from template `tpl` with `extra` merged over it; returns its id.
    #[allow(clippy::too_many_arguments)]
    fn instantiate(
        &mut self,
        method: &str,
        uid: i64,
        tpl: i64,
        name: &str,
        hold: bool,
        extra: Template,
        vrouter: i64,
    ) -> Result<i64, (i64, String)> {
        let Some(base) = self.templates.get(&tpl) else {
            return not_found(method, "virtual machine template", tpl);
        };
        let base_name = base.name.clone();
        let mut t = base.template.clone();
        // Vector attributes given in the extra template replace the template's of that name.
        let replaced: BTreeSet<String> = extra.attrs.iter().map(|(k, _)| k.clone()).collect();
        t.attrs.retain(|(k, _)| !replaced.contains(k));
        t.attrs.extend(extra.attrs);
        for key in ["CPU", "MEMORY"] {
            match t.get(key).map(|v| v.parse::<f64>()) {
                Some(Ok(v)) if v > 0.0 => {}
                _ => {
                    return err(
                        INTERNAL,
                        method,
                        format!("{key} attribute must be a positive number"),
                    );
                }
            }
        }
        // The id is taken only once the VM exists; a failed instantiate leaves no gap.
        let id = self.next.get("vm").copied().unwrap_or(0);
        let name = if name.is_empty() {
            format!("{base_name}-{id}")
        } else {
            name.to_owned()
        };
        // Disks: image size unless a larger SIZE is asked for.
        let mut disk_id = 0;
        for (k, v) in t.attrs.iter_mut() {
            if let (true, AttrValue::Vector(items)) = (k == "DISK", v) {
                let image = items
                    .iter()
                    .find(|(ik, _)| ik == "IMAGE_ID")
                    .and_then(|(_, v)| v.parse::<i64>().ok());
                let base_size = match image {
                    Some(img) => match self.images.get(&img) {
                        Some(i) => i.size_mb,
                        None => {
                            return not_found(method, "image", img);
                        }
                    },
                    None => 0,
                };
                let asked: Option<i64> = items
                    .iter()
                    .find(|(ik, _)| ik == "SIZE")
                    .and_then(|(_, v)| v.parse().ok());
                let size = asked.map_or(base_size, |a| a.max(base_size));
                set_item(items, "SIZE", size.to_string());
                set_item(items, "DISK_ID", disk_id.to_string());
                disk_id += 1;
            }
        }
        // NICs: a lease from the network's first address range with room (or the IP asked).
        let mut nic_id = 0;
        let mut leased: Vec<(i64, usize, u32)> = Vec::new();
        let mut nics_out = Vec::new();
        for (k, v) in &t.attrs {
            let (true, AttrValue::Vector(items)) = (k == "NIC", v) else {
                continue;
            };
            let get = |key: &str| {
                items
                    .iter()
                    .find(|(ik, _)| ik == key)
                    .map(|(_, v)| v.clone())
            };
            let vn_id = get("NETWORK_ID")
                .and_then(|v| v.parse::<i64>().ok())
                .or_else(|| {
                    get("NETWORK").and_then(|n| {
                        self.vnets
                            .iter()
                            .find(|(_, v)| v.name == n)
                            .map(|(id, _)| *id)
                    })
                });
            let Some(vn_id) = vn_id else {
                continue;
            };
            let Some(vn) = self.vnets.get_mut(&vn_id) else {
                for (v, ar, off) in leased {
                    if let Some(vn) = self.vnets.get_mut(&v) {
                        vn.ars[ar].leases.remove(&off);
                    }
                }
                return not_found(method, "virtual network", vn_id);
            };
            let want: Option<Ipv4Addr> = get("IP").and_then(|v| v.parse().ok());
            let mut got = None;
            for (ai, ar) in vn.ars.iter_mut().enumerate() {
                let first = u32::from(ar.first);
                let off = match want {
                    Some(ip) => {
                        let o = u32::from(ip).wrapping_sub(first);
                        (o < ar.size && !ar.leases.contains_key(&o)).then_some(o)
                    }
                    None => (0..ar.size).find(|o| !ar.leases.contains_key(o)),
                };
                if let Some(o) = off {
                    ar.leases.insert(o, (id, -1));
                    got = Some((ai, o, Ipv4Addr::from(first + o)));
                    break;
                }
            }
            let Some((ai, off, ip)) = got else {
                for (v, ar, off) in leased {
                    if let Some(vn) = self.vnets.get_mut(&v) {
                        vn.ars[ar].leases.remove(&off);
                    }
                }
                return err(
                    INTERNAL,
                    method,
                    format!("Cannot get IP/MAC lease from virtual network {vn_id}."),
                );
            };
            leased.push((vn_id, ai, off));
            let o = ip.octets();
            let mut nic: Vec<(String, String)> = items
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "IP" | "NETWORK" | "NETWORK_ID" | "MAC" | "NIC_ID" | "AR_ID" | "BRIDGE"
                    )
                })
                .cloned()
                .collect();
            nic.extend([
                ("AR_ID".to_owned(), ai.to_string()),
                ("BRIDGE".to_owned(), vn.bridge.clone()),
                ("IP".to_owned(), ip.to_string()),
                (
                    "MAC".to_owned(),
                    format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]),
                ),
                ("NETWORK".to_owned(), vn.name.clone()),
                ("NETWORK_ID".to_owned(), vn_id.to_string()),
                ("NIC_ID".to_owned(), nic_id.to_string()),
                ("VN_MAD".to_owned(), vn.vn_mad.clone()),
            ]);
            nic_id += 1;
            nics_out.push(nic);
        }
        t.attrs.retain(|(k, _)| k != "NIC");
        t.attrs.extend(
            nics_out
                .into_iter()
                .map(|n| ("NIC".to_owned(), AttrValue::Vector(n))),
        );
        t.set("TEMPLATE_ID", tpl.to_string());
        t.set("VMID", id.to_string());
        t.set("TM_MAD_SYSTEM", "ssh");
        if vrouter >= 0 {
            t.set("VROUTER_ID", vrouter.to_string());
        }
        // Attributes the VM TEMPLATE does not hold go to USER_TEMPLATE, as in oned.
        let (template, user_template): (Vec<_>, Vec<_>) = t
            .attrs
            .into_iter()
            .partition(|(k, _)| VM_TEMPLATE_ORDER.contains(&k.as_str()));
        let now = Instant::now();
        let gid = self.users.get(&uid).map(|u| u.gid).unwrap_or(0);
        let mut vm = Vm {
            name: name.clone(),
            uid,
            gid,
            state: if hold { 2 } else { vm_state::PENDING },
            lcm: lcm::LCM_INIT,
            prev: (0, 0),
            stime: now_secs(),
            etime: 0,
            template: Template { attrs: template },
            user_template: Template {
                attrs: user_template,
            },
            pending: VecDeque::new(),
        };
        if !hold {
            let failure = self.take_failure(&name);
            let s = self.step;
            vm.pending
                .push_back((now + s, vm_state::ACTIVE, lcm::PROLOG));
            vm.pending
                .push_back((now + s * 2, vm_state::ACTIVE, lcm::BOOT));
            let end = match failure {
                Some(f) => f,
                None => (vm_state::ACTIVE, lcm::RUNNING),
            };
            vm.pending.push_back((now + s * 3, end.0, end.1));
        }
        let allocated = self.alloc("vm");
        debug_assert_eq!(allocated, id);
        self.vms.insert(id, vm);
        Ok(id)
    }

    fn take_failure(&mut self, name: &str) -> Option<(i64, i64)> {
        let idx = self
            .failures
            .iter()
            .position(|f| name.contains(&f.name_contains) && f.count != Some(0))?;
        let f = &mut self.failures[idx];
        if let Some(c) = f.count.as_mut() {
            *c -= 1;
        }
        let state = f.state.clone();
        match state.as_str() {
            "FAILED" => Some((vm_state::FAILED, lcm::LCM_INIT)),
            "CLONING_FAILURE" => Some((vm_state::CLONING_FAILURE, lcm::LCM_INIT)),
            s => LCM_FAILURES
                .iter()
                .find(|(n, _)| *n == s)
                .map(|(_, l)| (vm_state::ACTIVE, *l)),
        }
    }

    fn terminate(&mut self, id: i64, now: Instant) {
        let step = self.step;
        if let Some(vm) = self.vms.get_mut(&id) {
            if vm.state == vm_state::DONE {
                return;
            }
            vm.pending.clear();
            if vm.state == vm_state::ACTIVE {
                vm.prev = (vm.state, vm.lcm);
                vm.lcm = lcm::SHUTDOWN;
                vm.pending
                    .push_back((now + step, vm_state::DONE, lcm::LCM_INIT));
            } else {
                vm.prev = (vm.state, vm.lcm);
                vm.state = vm_state::DONE;
                vm.lcm = lcm::LCM_INIT;
                vm.etime = now_secs();
                self.release_leases(id);
            }
        }
    }

    fn vm_action(&mut self, method: &str, action: &str, id: i64) -> RpcResult {
        let now = Instant::now();
        let step = self.step;
        let Some(vm) = self.vms.get_mut(&id) else {
            return not_found(method, "virtual machine", id);
        };
        let refuse = |vm: &Vm| {
            err::<Value>(
                ACTION,
                method,
                format!(
                    "This action is not available for state {}",
                    state_name(vm.state, vm.lcm)
                ),
            )
        };
        match action {
            "terminate" | "terminate-hard" => {
                if vm.state == vm_state::DONE {
                    return refuse(vm);
                }
                self.terminate(id, now);
            }
            "poweroff" | "poweroff-hard" => {
                if !(vm.state == vm_state::ACTIVE && vm.lcm == lcm::RUNNING) {
                    return refuse(vm);
                }
                vm.prev = (vm.state, vm.lcm);
                vm.lcm = lcm::SHUTDOWN_POWEROFF;
                vm.pending
                    .push_back((now + step, vm_state::POWEROFF, lcm::LCM_INIT));
            }
            "resume" => {
                if vm.state != vm_state::POWEROFF {
                    return refuse(vm);
                }
                vm.prev = (vm.state, vm.lcm);
                vm.state = vm_state::ACTIVE;
                vm.lcm = lcm::BOOT_POWEROFF;
                vm.pending
                    .push_back((now + step, vm_state::ACTIVE, lcm::RUNNING));
            }
            "reboot" | "reboot-hard" => {
                if !(vm.state == vm_state::ACTIVE && vm.lcm == lcm::RUNNING) {
                    return refuse(vm);
                }
            }
            _ => {
                return err(
                    0x1000,
                    method,
                    format!("Virtual machine action \"{action}\" is not supported"),
                );
            }
        }
        ok_id(id)
    }

    /// Sets the usage counters of a group's quota (what running VMs and images would count);
    /// a section without limits gets default (-1) limits, as in oned.
    pub fn set_usage(&mut self, group: &str, u: &UsageUpdate) -> Result<(), String> {
        let g = self
            .groups
            .values_mut()
            .find(|g| g.name == group)
            .ok_or_else(|| format!("no group named {group:?}"))?;
        let q = &mut g.quota;
        if u.cpu.is_some() || u.memory.is_some() || u.vms.is_some() {
            q.vm.get_or_insert_with(|| ["-1".into(), "-1".into(), "-1".into()]);
            if let Some(c) = u.cpu {
                q.vm_used_base[0] = c;
            }
            if let Some(m) = u.memory {
                q.vm_used_base[1] = m;
            }
            if let Some(v) = u.vms {
                q.vm_used_base[2] = v;
            }
        }
        if let Some(size) = u.size {
            let e = q
                .datastore
                .entry(u.datastore.clone().unwrap_or_else(|| "1".into()))
                .or_insert_with(|| (["-1".into(), "-1".into()], [0, 0]));
            e.1[1] = size;
        }
        if let Some(leases) = u.leases {
            let e = q
                .network
                .entry(u.network.clone().unwrap_or_else(|| "10".into()))
                .or_insert_with(|| ("-1".into(), 0));
            e.1 = leases;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- documents

    fn quota_xml(&self, gid: i64) -> String {
        let Some(g) = self.groups.get(&gid) else {
            return String::new();
        };
        let q = &g.quota;
        let mut s = String::from("<DATASTORE_QUOTA>");
        for (id, (lim, used)) in &q.datastore {
            let _ = write!(
                s,
                "<DATASTORE>{}{}{}{}{}</DATASTORE>",
                el("ID", id),
                el("IMAGES", &lim[0]),
                el("IMAGES_USED", used[0]),
                el("SIZE", &lim[1]),
                el("SIZE_USED", used[1])
            );
        }
        s.push_str("</DATASTORE_QUOTA><NETWORK_QUOTA>");
        for (id, (lim, used)) in &q.network {
            let _ = write!(
                s,
                "<NETWORK>{}{}{}</NETWORK>",
                el("ID", id),
                el("LEASES", lim),
                el("LEASES_USED", used)
            );
        }
        s.push_str("</NETWORK_QUOTA><VM_QUOTA>");
        if let Some(lim) = &q.vm {
            let (mut cpu, mut mem, mut vms) =
                (q.vm_used_base[0], q.vm_used_base[1], q.vm_used_base[2]);
            for vm in self
                .vms
                .values()
                .filter(|v| v.gid == gid && v.state != vm_state::DONE)
            {
                cpu += vm
                    .template
                    .get("CPU")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                mem += vm
                    .template
                    .get("MEMORY")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                vms += 1.0;
            }
            let _ = write!(
                s,
                "<VM>{}{}{}{}",
                el("CPU", &lim[0]),
                el("CPU_USED", fmt_num(cpu)),
                el("MEMORY", &lim[1]),
                el("MEMORY_USED", fmt_num(mem)),
            );
            for k in [
                "PCI_DEV",
                "PCI_NIC",
                "RUNNING_CPU",
                "RUNNING_MEMORY",
                "RUNNING_PCI_DEV",
                "RUNNING_PCI_NIC",
                "RUNNING_VMS",
                "SYSTEM_DISK_SIZE",
            ] {
                let _ = write!(s, "{}{}", el(k, "-1"), el(&format!("{k}_USED"), "0"));
            }
            let _ = write!(
                s,
                "{}{}</VM>",
                el("VMS", &lim[2]),
                el("VMS_USED", fmt_num(vms))
            );
        }
        s.push_str("</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>");
        s
    }

    fn default_quotas(tag: &str) -> String {
        format!(
            "<{tag}><DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA><VM_QUOTA></VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA></{tag}>"
        )
    }

    pub fn group_xml(&self, id: i64) -> String {
        let Some(g) = self.groups.get(&id) else {
            return String::new();
        };
        format!(
            "<GROUP>{}{}{}{}{}{}<VLAN_RULES><ID>{id}</ID></VLAN_RULES>{}</GROUP>",
            el("ID", id),
            el("NAME", &g.name),
            g.template.to_xml("TEMPLATE"),
            ids(
                "USERS",
                self.users
                    .iter()
                    .filter(|(_, u)| u.groups.contains(&id))
                    .map(|(i, _)| *i)
            ),
            ids("ADMINS", g.admins.iter().copied()),
            self.quota_xml(id),
            Self::default_quotas("DEFAULT_GROUP_QUOTAS"),
        )
    }

    fn group_pool_xml(&self) -> String {
        let mut s = String::from("<GROUP_POOL>");
        for (id, g) in &self.groups {
            let _ = write!(
                s,
                "<GROUP>{}{}{}{}{}</GROUP>",
                el("ID", id),
                el("NAME", &g.name),
                g.template.to_xml("TEMPLATE"),
                ids(
                    "USERS",
                    self.users
                        .iter()
                        .filter(|(_, u)| u.groups.contains(id))
                        .map(|(i, _)| *i)
                ),
                ids("ADMINS", g.admins.iter().copied()),
            );
        }
        for id in self.groups.keys() {
            let _ = write!(
                s,
                "<QUOTAS>{}{}</QUOTAS>",
                el("ID", id),
                self.quota_xml(*id)
            );
        }
        s.push_str(&Self::default_quotas("DEFAULT_GROUP_QUOTAS"));
        s.push_str("</GROUP_POOL>");
        s
    }

    fn user_body(&self, id: i64, u: &User) -> String {
        format!(
            "{}{}{}{}{}{}{}{}{}",
            el("ID", id),
            el("GID", u.gid),
            ids("GROUPS", u.groups.iter().copied()),
            el("GNAME", self.gname(u.gid)),
            el("NAME", &u.name),
            el("PASSWORD", password_digest(&u.password)),
            el("AUTH_DRIVER", &u.auth_driver),
            el("ENABLED", 1),
            u.template.to_xml("TEMPLATE"),
        )
    }

    pub fn user_xml(&self, id: i64) -> String {
        let Some(u) = self.users.get(&id) else {
            return String::new();
        };
        format!(
            "<USER>{}<DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA><VM_QUOTA></VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>{}</USER>",
            self.user_body(id, u),
            Self::default_quotas("DEFAULT_USER_QUOTAS")
        )
    }

    fn user_pool_xml(&self) -> String {
        let mut s = String::from("<USER_POOL>");
        for (id, u) in &self.users {
            let _ = write!(s, "<USER>{}</USER>", self.user_body(*id, u));
        }
        s.push_str(&Self::default_quotas("DEFAULT_USER_QUOTAS"));
        s.push_str("</USER_POOL>");
        s
    }

    pub fn vdc_xml(&self, id: i64) -> String {
        let Some(v) = self.vdcs.get(&id) else {
            return String::new();
        };
        let mut s = format!("<VDC>{}{}", el("ID", id), el("NAME", &v.name));
        s.push_str(&ids("GROUPS", v.groups.iter().copied()));
        s.push_str("<CLUSTERS>");
        for (z, c) in &v.clusters {
            let _ = write!(
                s,
                "<CLUSTER>{}{}</CLUSTER>",
                el("ZONE_ID", z),
                el("CLUSTER_ID", c)
            );
        }
        s.push_str("</CLUSTERS><HOSTS></HOSTS><DATASTORES></DATASTORES><VNETS>");
        for (z, n) in &v.vnets {
            let _ = write!(s, "<VNET>{}{}</VNET>", el("ZONE_ID", z), el("VNET_ID", n));
        }
        s.push_str("</VNETS>");
        s.push_str(&v.template.to_xml("TEMPLATE"));
        s.push_str("</VDC>");
        s
    }

    pub fn cluster_xml(&self, id: i64) -> String {
        let Some(c) = self.clusters.get(&id) else {
            return String::new();
        };
        format!(
            "<CLUSTER>{}{}<HOSTS></HOSTS><DATASTORES></DATASTORES>{}<TEMPLATE></TEMPLATE></CLUSTER>",
            el("ID", id),
            el("NAME", &c.name),
            ids("VNETS", c.vnets.iter().copied())
        )
    }

    pub fn vnet_xml(&self, id: i64, full: bool) -> String {
        let Some(v) = self.vnets.get(&id) else {
            return String::new();
        };
        let used: usize = v.ars.iter().map(|a| a.leases.len()).sum();
        let vrouters: BTreeSet<i64> = v
            .ars
            .iter()
            .flat_map(|a| a.leases.values())
            .filter_map(|(vm, _)| self.vms.get(vm))
            .filter_map(|vm| vm.template.get("VROUTER_ID").and_then(|x| x.parse().ok()))
            .collect();
        let mut s = format!(
            "<VNET>{}{}{}{}{}{}{PERMISSIONS}{}{}{}{}{}{}{}{}{}",
            el("ID", id),
            el("UID", v.uid),
            el("GID", v.gid),
            el("UNAME", self.uname(v.uid)),
            el("GNAME", self.gname(v.gid)),
            el("NAME", &v.name),
            ids("CLUSTERS", v.clusters.iter().copied()),
            el("BRIDGE", &v.bridge),
            el("BRIDGE_TYPE", "linux"),
            el("STATE", 1),
            el("PREV_STATE", 0),
            el("PARENT_NETWORK_ID", ""),
            el("TEMPLATE_ID", "-1"),
            el("VN_MAD", &v.vn_mad),
            el("PHYDEV", &v.phydev),
        );
        if !v.vlan_id.is_empty() {
            s.push_str(&el("VLAN_ID", &v.vlan_id));
        }
        let _ = write!(
            s,
            "{}{}{}{}<UPDATED_VMS></UPDATED_VMS><OUTDATED_VMS></OUTDATED_VMS><UPDATING_VMS></UPDATING_VMS><ERROR_VMS></ERROR_VMS>{}<AR_POOL>",
            el("VLAN_ID_AUTOMATIC", u8::from(v.vlan_auto)),
            el("OUTER_VLAN_ID_AUTOMATIC", 0),
            el("USED_LEASES", used),
            ids("VROUTERS", vrouters),
            v.template.to_xml("TEMPLATE"),
        );
        for (i, ar) in v.ars.iter().enumerate() {
            let o = ar.first.octets();
            let _ = write!(
                s,
                "<AR>{}{}{}{}{}{}",
                el("AR_ID", i),
                el("IP", ar.first),
                el(
                    "MAC",
                    format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
                ),
                el("NEXT_INDEX", ar.leases.len()),
                el("SIZE", ar.size),
                el("TYPE", "IP4"),
            );
            // Only the single VNET document carries the end address and the lease list.
            if full {
                let last = u32::from(ar.first).saturating_add(ar.size.saturating_sub(1));
                let _ = write!(
                    s,
                    "{}{}<LEASES>",
                    el("IP_END", Ipv4Addr::from(last)),
                    el("USED_LEASES", ar.leases.len()),
                );
                for (off, (vm, _)) in &ar.leases {
                    let _ = write!(
                        s,
                        "<LEASE>{}{}</LEASE>",
                        el(
                            "IP",
                            Ipv4Addr::from(u32::from(ar.first).saturating_add(*off))
                        ),
                        el("VM", vm)
                    );
                }
                s.push_str("</LEASES>");
            }
            s.push_str("</AR>");
        }
        s.push_str("</AR_POOL></VNET>");
        s
    }

    pub fn vrouter_xml(&self, id: i64) -> String {
        let Some(v) = self.vrouters.get(&id) else {
            return String::new();
        };
        format!(
            "<VROUTER>{}{}{}{}{}{}{PERMISSIONS}{}{}</VROUTER>",
            el("ID", id),
            el("UID", v.named.uid),
            el("GID", v.named.gid),
            el("UNAME", self.uname(v.named.uid)),
            el("GNAME", self.gname(v.named.gid)),
            el("NAME", &v.named.name),
            ids("VMS", v.vms.iter().copied()),
            v.named.template.to_xml("TEMPLATE"),
        )
    }

    pub fn secgroup_xml(&self, id: i64) -> String {
        let Some(sg) = self.secgroups.get(&id) else {
            return String::new();
        };
        // The XSD admits DESCRIPTION and RULE[PROTOCOL, RULE_TYPE] only.
        let mut t = String::from("<TEMPLATE>");
        if let Some(d) = sg.template.get("DESCRIPTION") {
            t.push_str(&format!("<DESCRIPTION>{}</DESCRIPTION>", cdata(d)));
        }
        for r in sg.template.vectors("RULE") {
            let get = |k: &str| {
                r.iter()
                    .find(|(ik, _)| ik == k)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("")
            };
            let _ = write!(
                t,
                "<RULE><PROTOCOL>{}</PROTOCOL><RULE_TYPE>{}</RULE_TYPE></RULE>",
                cdata(get("PROTOCOL")),
                cdata(get("RULE_TYPE"))
            );
        }
        t.push_str("</TEMPLATE>");
        format!(
            "<SECURITY_GROUP>{}{}{}{}{}{}{PERMISSIONS}<UPDATED_VMS></UPDATED_VMS><OUTDATED_VMS></OUTDATED_VMS><UPDATING_VMS></UPDATING_VMS><ERROR_VMS></ERROR_VMS>{t}</SECURITY_GROUP>",
            el("ID", id),
            el("UID", sg.uid),
            el("GID", sg.gid),
            el("UNAME", self.uname(sg.uid)),
            el("GNAME", self.gname(sg.gid)),
            el("NAME", &sg.name),
        )
    }

    pub fn vmtemplate_xml(&self, id: i64) -> String {
        let Some(t) = self.templates.get(&id) else {
            return String::new();
        };
        format!(
            "<VMTEMPLATE>{}{}{}{}{}{}{PERMISSIONS}{}{}</VMTEMPLATE>",
            el("ID", id),
            el("UID", t.uid),
            el("GID", t.gid),
            el("UNAME", self.uname(t.uid)),
            el("GNAME", self.gname(t.gid)),
            el("NAME", &t.name),
            el("REGTIME", self.epoch),
            t.template.to_xml("TEMPLATE"),
        )
    }

    pub fn image_xml(&self, id: i64) -> String {
        let Some(i) = self.images.get(&id) else {
            return String::new();
        };
        let running: Vec<i64> = self
            .vms
            .iter()
            .filter(|(_, vm)| {
                vm.state != vm_state::DONE
                    && vm.template.vectors("DISK").any(|d| {
                        d.iter()
                            .any(|(k, v)| k == "IMAGE_ID" && v == &id.to_string())
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        let state = if running.is_empty() { i.state } else { 2 };
        format!(
            "<IMAGE>{}{}{}{}{}{}{PERMISSIONS}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}<CLONES></CLONES><APP_CLONES></APP_CLONES><TEMPLATE></TEMPLATE><SNAPSHOTS><ALLOW_ORPHANS>NO</ALLOW_ORPHANS><CURRENT_BASE>-1</CURRENT_BASE><NEXT_SNAPSHOT>0</NEXT_SNAPSHOT></SNAPSHOTS><BACKUP_INCREMENTS></BACKUP_INCREMENTS></IMAGE>",
            el("ID", id),
            el("UID", 0),
            el("GID", 0),
            el("UNAME", "oneadmin"),
            el("GNAME", "oneadmin"),
            el("NAME", &i.name),
            el("TYPE", 0),
            el("DISK_TYPE", 0),
            el("PERSISTENT", 0),
            el("REGTIME", self.epoch),
            el("MODTIME", self.epoch),
            el("SOURCE", format!("/var/lib/one/datastores/1/{id}")),
            el("PATH", ""),
            el("FORMAT", "qcow2"),
            el("FS", ""),
            el("SIZE", i.size_mb),
            el("STATE", state),
            el("PREV_STATE", 1),
            el("RUNNING_VMS", running.len()),
            el("CLONING_OPS", 0),
            el("CLONING_ID", -1),
            el("TARGET_SNAPSHOT", -1),
            el("DATASTORE_ID", 1),
            el("DATASTORE", "default") + &ids("VMS", running),
        )
    }

    fn vm_head(&self, id: i64, vm: &Vm) -> String {
        format!(
            "{}{}{}{}{}{}",
            el("ID", id),
            el("UID", vm.uid),
            el("GID", vm.gid),
            el("UNAME", self.uname(vm.uid)),
            el("GNAME", self.gname(vm.gid)),
            el("NAME", &vm.name),
        )
    }

    fn history(id: i64, vm: &Vm, full: bool) -> String {
        if vm.state == vm_state::PENDING || vm.state == 2 {
            return "<HISTORY_RECORDS></HISTORY_RECORDS>".into();
        }
        let mut h = format!(
            "<HISTORY>{}{}{}{}{}",
            el("OID", id),
            el("SEQ", 0),
            el("HOSTNAME", "node-1"),
            el("HID", 0),
            el("CID", 0),
        );
        if !full {
            let _ = write!(
                h,
                "{}{}{}{}</HISTORY>",
                el("DS_ID", 0),
                el("VM_MAD", "kvm"),
                el("TM_MAD", "ssh"),
                el("ACTION", 0)
            );
            return format!("<HISTORY_RECORDS>{h}</HISTORY_RECORDS>");
        }
        let _ = write!(
            h,
            "{}{}{}{}",
            el("STIME", vm.stime),
            el("ETIME", vm.etime),
            el("VM_MAD", "kvm"),
            el("TM_MAD", "ssh")
        );
        {
            let _ = write!(
                h,
                "{}{}{}",
                el("DS_ID", 0),
                el("PLAN_ID", -1),
                el("ACTION_ID", -1)
            );
            for k in ["PSTIME", "PETIME", "RSTIME", "RETIME", "ESTIME", "EETIME"] {
                h.push_str(&el(k, 0));
            }
            let _ = write!(
                h,
                "{}{}{}{}</HISTORY>",
                el("ACTION", 0),
                el("UID", vm.uid),
                el("GID", vm.gid),
                el("REQUEST_ID", "-1")
            );
        }
        format!("<HISTORY_RECORDS>{h}</HISTORY_RECORDS>")
    }

    fn ordered_template(t: &Template, order: &[&str]) -> String {
        let mut s = String::from("<TEMPLATE>");
        for key in order {
            for (k, v) in &t.attrs {
                if k == key {
                    s.push_str(&attr_xml(k, v));
                }
            }
        }
        s.push_str("</TEMPLATE>");
        s
    }

    pub fn vm_xml(&self, id: i64) -> String {
        let Some(vm) = self.vms.get(&id) else {
            return String::new();
        };
        format!(
            "<VM>{}{PERMISSIONS}{}{}{}{}{}{}{}{}{}<MONITORING></MONITORING><SCHED_ACTIONS></SCHED_ACTIONS>{}{}{}<BACKUPS><BACKUP_CONFIG></BACKUP_CONFIG><BACKUP_IDS></BACKUP_IDS></BACKUPS></VM>",
            self.vm_head(id, vm),
            el("LAST_POLL", 0),
            el("STATE", vm.state),
            el("LCM_STATE", vm.lcm),
            el("PREV_STATE", vm.prev.0),
            el("PREV_LCM_STATE", vm.prev.1),
            el("RESCHED", 0),
            el("STIME", vm.stime),
            el("ETIME", vm.etime),
            el(
                "DEPLOY_ID",
                if vm.state == vm_state::ACTIVE {
                    format!("one-{id}")
                } else {
                    String::new()
                }
            ),
            Self::ordered_template(&vm.template, VM_TEMPLATE_ORDER),
            vm.user_template.to_xml("USER_TEMPLATE"),
            Self::history(id, vm, true),
        )
    }

    fn vm_pool_entry_xml(&self, id: i64) -> String {
        let Some(vm) = self.vms.get(&id) else {
            return String::new();
        };
        format!(
            "<VM>{}{}{}{}{}{}{}{}{}{}{}</VM>",
            self.vm_head(id, vm),
            el("LAST_POLL", 0),
            el("STATE", vm.state),
            el("LCM_STATE", vm.lcm),
            el("RESCHED", 0),
            el("STIME", vm.stime),
            el("ETIME", vm.etime),
            el(
                "DEPLOY_ID",
                if vm.state == vm_state::ACTIVE {
                    format!("one-{id}")
                } else {
                    String::new()
                }
            ),
            Self::ordered_template(
                &vm.template,
                &["CPU", "MEMORY", "VCPU", "DISK", "NIC", "GRAPHICS"]
            ),
            vm.user_template.to_xml("USER_TEMPLATE"),
            Self::history(id, vm, false),
        )
    }
}

/// The VM TEMPLATE elements the XSD admits, in its order (constrained ones left out).
const VM_TEMPLATE_ORDER: &[&str] = &[
    "AUTOMATIC_DS_REQUIREMENTS",
    "AUTOMATIC_NIC_REQUIREMENTS",
    "AUTOMATIC_REQUIREMENTS",
    "CLONING_TEMPLATE_ID",
    "CONTEXT",
    "CPU",
    "CPU_COST",
    "DISK",
    "DISK_COST",
    "EMULATOR",
    "FEATURES",
    "HYPERV_OPTIONS",
    "GRAPHICS",
    "IMPORTED",
    "INPUT",
    "MEMORY",
    "MEMORY_COST",
    "MEMORY_MAX",
    "MEMORY_SLOTS",
    "MEMORY_RESIZE_MODE",
    "NIC",
    "NIC_ALIAS",
    "NIC_DEFAULT",
    "NUMA_NODE",
    "OS",
    "PCI",
    "RAW",
    "SECURITY_GROUP_RULE",
    "SPICE_OPTIONS",
    "SUBMIT_ON_HOLD",
    "TEMPLATE_ID",
    "TM_MAD_SYSTEM",
    "TOPOLOGY",
    "VCPU",
    "VCPU_MAX",
    "VMGROUP",
    "VMID",
    "VROUTER_ID",
    "VROUTER_KEEPALIVED_ID",
];

/// What `/__sim/opennebula/quota-usage` sets.
#[derive(Debug, Default, serde::Deserialize)]
pub struct UsageUpdate {
    pub group: String,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub vms: Option<f64>,
    pub size: Option<i64>,
    pub leases: Option<i64>,
    /// Datastore quota ID the size counts against (default "1").
    pub datastore: Option<String>,
    /// Network quota ID the leases count against (default "10").
    pub network: Option<String>,
}

fn set_item(items: &mut Vec<(String, String)>, key: &str, value: String) {
    match items.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => items.push((key.to_owned(), value)),
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Not OpenNebula's SHA-256 of the password, but an opaque digest of the same shape: the
/// double never returns a password.
fn password_digest(p: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut out = String::new();
    for salt in 0..4u8 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, p).hash(&mut h);
        let _ = write!(out, "{:016x}", h.finish());
    }
    out
}

fn state_name(state: i64, lcm_state: i64) -> String {
    const STATES: [&str; 12] = [
        "INIT",
        "PENDING",
        "HOLD",
        "ACTIVE",
        "STOPPED",
        "SUSPENDED",
        "DONE",
        "FAILED",
        "POWEROFF",
        "UNDEPLOYED",
        "CLONING",
        "CLONING_FAILURE",
    ];
    if state == vm_state::ACTIVE {
        let name = match lcm_state {
            lcm::PROLOG => "PROLOG",
            lcm::BOOT => "BOOT",
            lcm::RUNNING => "RUNNING",
            lcm::SHUTDOWN => "SHUTDOWN",
            lcm::SHUTDOWN_POWEROFF => "SHUTDOWN_POWEROFF",
            lcm::BOOT_POWEROFF => "BOOT_POWEROFF",
            l => LCM_FAILURES
                .iter()
                .find(|(_, v)| *v == l)
                .map(|(n, _)| *n)
                .unwrap_or("ACTIVE"),
        };
        return name.into();
    }
    usize::try_from(state)
        .ok()
        .and_then(|s| STATES.get(s))
        .copied()
        .unwrap_or("UNKNOWN")
        .into()
}

/// `one.group.quota`: the sections present replace the stored ones.
fn set_quota(q: &mut Quota, t: &Template) -> Result<(), String> {
    let num = |v: &str, key: &str| -> Result<String, String> {
        v.trim()
            .parse::<f64>()
            .map(|_| v.trim().to_owned())
            .map_err(|_| format!("Quota {key} must be a number, got {v:?}"))
    };
    for vm in t.vectors("VM") {
        let mut lim =
            q.vm.clone()
                .unwrap_or_else(|| ["-1".into(), "-1".into(), "-1".into()]);
        for (k, v) in vm {
            match k.as_str() {
                "CPU" => lim[0] = num(v, k)?,
                "MEMORY" => lim[1] = num(v, k)?,
                "VMS" => lim[2] = num(v, k)?,
                _ => {}
            }
        }
        q.vm = Some(lim);
    }
    for ds in t.vectors("DATASTORE") {
        let id = ds
            .iter()
            .find(|(k, _)| k == "ID")
            .map(|(_, v)| v.clone())
            .ok_or("DATASTORE quota without ID")?;
        let e = q
            .datastore
            .entry(id)
            .or_insert_with(|| (["-1".into(), "-1".into()], [0, 0]));
        for (k, v) in ds {
            match k.as_str() {
                "IMAGES" => e.0[0] = num(v, k)?,
                "SIZE" => e.0[1] = num(v, k)?,
                _ => {}
            }
        }
    }
    for n in t.vectors("NETWORK") {
        let id = n
            .iter()
            .find(|(k, _)| k == "ID")
            .map(|(_, v)| v.clone())
            .ok_or("NETWORK quota without ID")?;
        let e = q.network.entry(id).or_insert_with(|| ("-1".into(), 0));
        for (k, v) in n {
            if k == "LEASES" {
                e.0 = num(v, k)?;
            }
        }
    }
    Ok(())
}
