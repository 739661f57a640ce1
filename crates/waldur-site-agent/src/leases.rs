//! Safe replicas through Kubernetes Leases (`coordination.k8s.io/v1`), off by default.
//!
//! Each (offering, mode) of a process is one Lease, `waldur-agent-<mode>-<offering uuid>`, held
//! by at most one replica at a time. Replicas share the offerings: every replica also renews a
//! membership Lease (`waldur-agent-member-<identity>`, annotated with its modes), and takes free
//! or expired offering Leases only up to its fair share, `ceil(offerings / live replicas)` per
//! mode; a replica above its share releases the surplus, so a replica that joins gets work.
//!
//! Safety: a replica works on an offering only through a [`WorkGuard`] from [`LeaseGate::begin`],
//! which exists only while the Lease is held and its local deadline (the start of the last
//! successful renewal + the lease duration − [`SAFETY`]) is ahead. When the deadline passes
//! without renewal, the offering's cancellation token fires, so its processors stop starting
//! new items before any other replica can see the Lease as expired (at renewTime + duration
//! by its own clock). A release (surplus, shutdown) first cancels the token and waits for the
//! work in hand to finish, renewing meanwhile, then clears `holderIdentity`.
//!
//! Configuration (environment): [`ENABLE_ENV`] and the `WALDUR_SITE_AGENT_LEASE_*` variables
//! documented in `--help`; the API server is the pod's own (service account) unless
//! `WALDUR_SITE_AGENT_LEASE_API_URL` names one, with a token file or token.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_kit::{AuthScheme, FileToken, HttpSettings, RetryPolicy, Secret, StaticToken};
use kube_kit::k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube_kit::k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube_kit::k8s_openapi::chrono::{self, Utc};
use kube_kit::kube::api::{Api, ListParams, PostParams};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use tokio_util::sync::CancellationToken;

use crate::cli::Mode;

pub const ENABLE_ENV: &str = "WALDUR_SITE_AGENT_LEADER_ELECTION";
pub const API_URL_ENV: &str = "WALDUR_SITE_AGENT_LEASE_API_URL";
pub const TOKEN_FILE_ENV: &str = "WALDUR_SITE_AGENT_LEASE_TOKEN_FILE";
pub const TOKEN_ENV: &str = "WALDUR_SITE_AGENT_LEASE_TOKEN";
pub const CA_FILE_ENV: &str = "WALDUR_SITE_AGENT_LEASE_CA_FILE";
pub const NAMESPACE_ENV: &str = "WALDUR_SITE_AGENT_LEASE_NAMESPACE";
pub const DURATION_ENV: &str = "WALDUR_SITE_AGENT_LEASE_DURATION_SECONDS";
pub const RENEW_ENV: &str = "WALDUR_SITE_AGENT_LEASE_RENEW_SECONDS";
pub const IDENTITY_ENV: &str = "WALDUR_SITE_AGENT_LEASE_IDENTITY";

/// Label on every Lease this agent writes.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "waldur-site-agent");
const ROLE_LABEL: &str = "waldur.com/lease-role";
const MODES_ANNOTATION: &str = "waldur.com/modes";
/// A holder stops work this long before its Lease could expire for the others.
pub const SAFETY: Duration = Duration::from_secs(2);
/// How often the lease loop looks at the Leases (expired ones are taken at this pace).
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq)]
pub struct LeaseSettings {
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub renew: Duration,
}

/// Whether `value` (of [`ENABLE_ENV`]) turns leader election on.
pub fn parse_enabled(value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(other) => Err(format!("{ENABLE_ENV}={other:?} is not true or false")),
    }
}

fn seconds(name: &str, value: Option<&str>, default: f64) -> Result<Duration, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(Duration::from_secs_f64(default)),
        Some(text) => match text.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
            _ => Err(format!(
                "{name}={text:?} is not a positive number of seconds"
            )),
        },
    }
}

/// Durations from their variables: the lease duration (default 15 s, at least 3 s, since a
/// holder stops [`SAFETY`] early) and the renewal period (default a third of it, below it).
pub fn durations(
    duration: Option<&str>,
    renew: Option<&str>,
) -> Result<(Duration, Duration), String> {
    let d = seconds(DURATION_ENV, duration, 15.0)?;
    if d < Duration::from_secs(3) {
        return Err(format!("{DURATION_ENV} must be at least 3 seconds"));
    }
    let r = seconds(RENEW_ENV, renew, d.as_secs_f64() / 3.0)?;
    if r + SAFETY >= d {
        return Err(format!(
            "{RENEW_ENV} ({}s) must be below the lease duration ({}s) minus {}s",
            r.as_secs_f64(),
            d.as_secs_f64(),
            SAFETY.as_secs()
        ));
    }
    Ok((d, r))
}

/// A name usable in a Lease name: lowercase letters, digits and '-', at most 40 characters.
pub fn dns_part(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(40);
    let trimmed = out.trim_matches('-').to_owned();
    if trimmed.is_empty() {
        "agent".to_owned()
    } else {
        trimmed
    }
}

/// The Lease of `mode` for the offering `offering_uuid`.
pub fn lease_name(mode: Mode, offering_uuid: &str) -> String {
    format!(
        "waldur-agent-{}-{}",
        mode.as_str().replace('_', "-"),
        dns_part(&offering_uuid.replace('-', ""))
    )
}

fn member_name(identity: &str) -> String {
    format!("waldur-agent-member-{}", dns_part(identity))
}

/// The default identity: the host name (a pod's name) and the process id.
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The Kubernetes client and settings from the environment; `Ok(None)` when leader election
/// is off. Must run inside the Tokio runtime.
pub fn from_env() -> Result<Option<(kube_kit::Kube, LeaseSettings)>, String> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    if !parse_enabled(var(ENABLE_ENV).as_deref())? {
        return Ok(None);
    }
    let (duration, renew) = durations(var(DURATION_ENV).as_deref(), var(RENEW_ENV).as_deref())?;
    let retry = RetryPolicy {
        max_retries: 1,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_millis(500),
        jitter: true,
    };
    let (kube, default_ns) = match var(API_URL_ENV) {
        Some(url) => {
            let url = url
                .trim()
                .parse()
                .map_err(|e| format!("{API_URL_ENV}: not a URL: {e}"))?;
            let mut settings = HttpSettings::new("leader election", "kubernetes", url);
            settings.ca_bundle = var(CA_FILE_ENV).map(Into::into);
            settings.timeout = renew;
            settings.connect_timeout = renew.min(Duration::from_secs(3));
            settings.retry = retry;
            let token: Arc<dyn http_kit::TokenSource> = match (var(TOKEN_FILE_ENV), var(TOKEN_ENV))
            {
                (Some(path), _) => Arc::new(FileToken::new(
                    "leader election",
                    path.trim(),
                    AuthScheme::Bearer,
                )),
                (None, Some(token)) => Arc::new(StaticToken::bearer(Secret::new(token.trim()))),
                (None, None) => {
                    return Err(format!(
                        "{API_URL_ENV} is set without {TOKEN_FILE_ENV} or {TOKEN_ENV}"
                    ));
                }
            };
            let kube =
                kube_kit::Kube::new(&settings, token, "default").map_err(|e| e.to_string())?;
            (kube, "default".to_owned())
        }
        None => {
            let mut ic =
                kube_kit::in_cluster("leader election", None).map_err(|e| e.to_string())?;
            ic.settings.timeout = renew;
            ic.settings.connect_timeout = renew.min(Duration::from_secs(3));
            ic.settings.retry = retry;
            let kube = kube_kit::Kube::new(&ic.settings, ic.token, &ic.namespace)
                .map_err(|e| e.to_string())?;
            (kube, ic.namespace)
        }
    };
    let settings = LeaseSettings {
        namespace: var(NAMESPACE_ENV).unwrap_or(default_ns).trim().to_owned(),
        identity: var(IDENTITY_ENV)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(default_identity),
        duration,
        renew,
    };
    Ok(Some((kube, settings)))
}

struct Held {
    token: CancellationToken,
    work: Arc<RwLock<()>>,
    /// Work stops at this instant unless a renewal moves it.
    deadline: Instant,
    last_renew: Instant,
    /// Cancelled and waiting for the work in hand before the Lease is cleared.
    releasing: bool,
    epoch: u64,
}

/// Which offerings this replica may work on now. Shared by the lease loop and the runners.
pub struct LeaseGate {
    identity: String,
    held: Mutex<HashMap<String, Held>>,
    epochs: std::sync::atomic::AtomicU64,
}

/// Permission to work on one offering: its cancellation token fires when the Lease is lost or
/// released; the release waits until every guard is dropped.
pub struct WorkGuard {
    token: CancellationToken,
    epoch: u64,
    _work: OwnedRwLockReadGuard<()>,
}

impl WorkGuard {
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Changes at every acquisition of the Lease (contexts built under an older one are stale).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl LeaseGate {
    pub fn new(identity: &str) -> Self {
        LeaseGate {
            identity: identity.to_owned(),
            held: Mutex::new(HashMap::new()),
            epochs: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A guard to work on `offering_uuid` in `mode`, when this replica holds its Lease.
    pub fn begin(&self, mode: Mode, offering_uuid: &str) -> Option<WorkGuard> {
        let held = self.held();
        let h = held.get(&lease_name(mode, offering_uuid))?;
        if h.releasing || h.token.is_cancelled() || Instant::now() >= h.deadline {
            return None;
        }
        let work = h.work.clone().try_read_owned().ok()?;
        Some(WorkGuard {
            token: h.token.clone(),
            epoch: h.epoch,
            _work: work,
        })
    }

    /// Names of the Leases held now (not being released).
    pub fn held_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .held()
            .iter()
            .filter(|(_, h)| !h.releasing)
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }
}

/// One key this process competes for.
#[derive(Debug, Clone)]
pub struct LeaseKey {
    pub mode: Mode,
    pub offering_uuid: String,
    pub name: String,
}

impl LeaseKey {
    pub fn new(mode: Mode, offering_uuid: &str) -> Self {
        LeaseKey {
            mode,
            offering_uuid: offering_uuid.to_owned(),
            name: lease_name(mode, offering_uuid),
        }
    }
}

/// The lease loop of one process.
pub struct LeaseManager {
    kube: kube_kit::Kube,
    api: Api<Lease>,
    settings: LeaseSettings,
    gate: Arc<LeaseGate>,
    keys: Vec<LeaseKey>,
    modes: Vec<Mode>,
    parent: CancellationToken,
    member_renewed: Option<Instant>,
}

fn now_micro() -> MicroTime {
    MicroTime(Utc::now())
}

fn secs_i32(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// Whether `lease` is free for the taking at `now`: no holder, or not renewed within its
/// duration.
fn is_free(lease: &Lease, now: chrono::DateTime<Utc>) -> bool {
    let Some(spec) = lease.spec.as_ref() else {
        return true;
    };
    if spec.holder_identity.as_deref().unwrap_or("").is_empty() {
        return true;
    }
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1));
    renewed.0 + chrono::Duration::seconds(duration) < now
}

fn holder(lease: &Lease) -> &str {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("")
}

/// Stable per-replica order of the keys, so replicas racing for free Leases try different
/// ones first.
fn spread(identity: &str, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes().chain([0]).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl LeaseManager {
    pub fn new(
        kube: kube_kit::Kube,
        settings: LeaseSettings,
        keys: Vec<LeaseKey>,
        parent: CancellationToken,
    ) -> Self {
        let api = Api::namespaced(kube.client(), &settings.namespace);
        let mut modes: Vec<Mode> = keys.iter().map(|k| k.mode).collect();
        modes.sort_by_key(|m| m.as_str());
        modes.dedup();
        LeaseManager {
            gate: Arc::new(LeaseGate::new(&settings.identity)),
            kube,
            api,
            settings,
            keys,
            modes,
            parent,
            member_renewed: None,
        }
    }

    pub fn gate(&self) -> Arc<LeaseGate> {
        self.gate.clone()
    }

    fn labels(role: &str, mode: Option<Mode>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            (ROLE_LABEL.to_owned(), role.to_owned()),
        ]);
        if let Some(m) = mode {
            l.insert("waldur.com/mode".to_owned(), m.as_str().to_owned());
        }
        l
    }

    /// Run until `cancel`, then release every held Lease (waiting for the work in hand up to
    /// `release_wait`).
    pub async fn run(mut self, cancel: CancellationToken, release_wait: Duration) {
        tracing::info!(
            identity = %self.settings.identity,
            namespace = %self.settings.namespace,
            leases = self.keys.len(),
            duration_s = self.settings.duration.as_secs_f64(),
            "Leader election on: offerings are shared with the other replicas through Leases"
        );
        loop {
            self.tick().await;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        self.release_all(release_wait).await;
    }

    /// One pass: expire, renew, rebalance, acquire.
    pub async fn tick(&mut self) {
        let now_i = Instant::now();
        // Deadlines passed without renewal: stop the work, forget the Lease.
        {
            let mut held = self.gate.held();
            held.retain(|name, h| {
                if now_i >= h.deadline {
                    h.token.cancel();
                    tracing::warn!(lease = %name, "lease not renewed in time: stopped its work");
                    false
                } else {
                    true
                }
            });
        }
        self.renew_membership().await;
        let leases = match self
            .api
            .list(&ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)))
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                let e = self.kube.error("list leases", e);
                tracing::warn!(error = %e, "cannot list leases; holding what is held until its deadline");
                return;
            }
        };
        let by_name: HashMap<&str, &Lease> = leases
            .iter()
            .filter_map(|l| l.metadata.name.as_deref().map(|n| (n, l)))
            .collect();
        let now = Utc::now();

        // Renew what is held (and due), finish releases whose work has stopped.
        let due: Vec<(String, bool)> = self
            .gate
            .held()
            .iter()
            .filter(|(_, h)| h.releasing || now_i >= h.last_renew + self.settings.renew)
            .map(|(n, h)| (n.clone(), h.releasing))
            .collect();
        for (name, releasing) in due {
            let Some(lease) = by_name.get(name.as_str()) else {
                self.lose(&name, "the lease was deleted");
                continue;
            };
            if holder(lease) != self.settings.identity {
                self.lose(&name, "another replica holds the lease");
                continue;
            }
            if releasing && self.work_stopped(&name) {
                if self.clear(lease).await {
                    self.gate.held().remove(&name);
                    tracing::info!(lease = %name, "released lease");
                }
                continue;
            }
            self.renew(&name, lease).await;
        }

        // Fair share per mode, over the live replicas running that mode.
        for mode in self.modes.clone() {
            let members = self.members(&leases, mode, now);
            let keys: Vec<LeaseKey> = self
                .keys
                .iter()
                .filter(|k| k.mode == mode)
                .cloned()
                .collect();
            let share = keys.len().div_ceil(members.max(1));
            let mine: Vec<String> = {
                let held = self.gate.held();
                keys.iter()
                    .filter(|k| held.get(&k.name).is_some_and(|h| !h.releasing))
                    .map(|k| k.name.clone())
                    .collect()
            };
            if mine.len() > share {
                for name in mine.iter().skip(share) {
                    self.start_release(name, "more than a fair share");
                }
                continue;
            }
            let mut candidates: Vec<&LeaseKey> = keys
                .iter()
                .filter(|k| !self.gate.held().contains_key(&k.name))
                .filter(|k| by_name.get(k.name.as_str()).is_none_or(|l| is_free(l, now)))
                .collect();
            candidates.sort_by_key(|k| spread(&self.settings.identity, &k.name));
            let mut have = mine.len();
            for key in candidates {
                if have >= share {
                    break;
                }
                if self
                    .acquire(key, by_name.get(key.name.as_str()).copied())
                    .await
                {
                    have += 1;
                }
            }
        }
    }

    /// Live replicas of `mode`: membership Leases renewed within their duration (this one
    /// counts even before its first membership write succeeds).
    fn members(&self, leases: &[Lease], mode: Mode, now: chrono::DateTime<Utc>) -> usize {
        let mut ids: Vec<&str> = leases
            .iter()
            .filter(|l| {
                l.metadata
                    .labels
                    .as_ref()
                    .and_then(|m| m.get(ROLE_LABEL))
                    .map(String::as_str)
                    == Some("member")
            })
            .filter(|l| !is_free(l, now))
            .filter(|l| {
                l.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(MODES_ANNOTATION))
                    .is_some_and(|m| m.split(',').any(|x| x == mode.as_str()))
            })
            .map(holder)
            .collect();
        ids.push(&self.settings.identity);
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    async fn renew_membership(&mut self) {
        if self
            .member_renewed
            .is_some_and(|t| t.elapsed() < self.settings.renew)
        {
            return;
        }
        let name = member_name(&self.settings.identity);
        let modes: Vec<&str> = self.modes.iter().map(|m| m.as_str()).collect();
        let mut lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(Self::labels("member", None)),
                annotations: Some(BTreeMap::from([(
                    MODES_ANNOTATION.to_owned(),
                    modes.join(","),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(secs_i32(self.settings.duration)),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                ..LeaseSpec::default()
            }),
        };
        let result = match self.api.get_opt(&name).await {
            Ok(Some(existing)) => {
                lease.metadata.resource_version = existing.metadata.resource_version;
                if let (Some(spec), Some(old)) = (lease.spec.as_mut(), existing.spec.as_ref()) {
                    spec.acquire_time = old.acquire_time.clone();
                }
                self.api
                    .replace(&name, &PostParams::default(), &lease)
                    .await
            }
            Ok(None) => self.api.create(&PostParams::default(), &lease).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => self.member_renewed = Some(Instant::now()),
            Err(e) => {
                let e = self.kube.error("renew membership lease", e);
                tracing::debug!(error = %e, "membership lease not renewed");
            }
        }
    }

    async fn acquire(&self, key: &LeaseKey, existing: Option<&Lease>) -> bool {
        let start = Instant::now();
        let transitions = existing
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0);
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(key.name.clone()),
                labels: Some({
                    let mut l = Self::labels("offering", Some(key.mode));
                    l.insert(
                        "waldur.com/offering-uuid".to_owned(),
                        dns_part(&key.offering_uuid),
                    );
                    l
                }),
                resource_version: existing.and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(secs_i32(self.settings.duration)),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(if existing.is_some() {
                    transitions + 1
                } else {
                    0
                }),
                ..LeaseSpec::default()
            }),
        };
        let result = if existing.is_some() {
            self.api
                .replace(&key.name, &PostParams::default(), &lease)
                .await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match result {
            Ok(_) => {
                let epoch = self
                    .gate
                    .epochs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.gate.held().insert(
                    key.name.clone(),
                    Held {
                        token: self.parent.child_token(),
                        work: Arc::new(RwLock::new(())),
                        deadline: start + self.settings.duration.saturating_sub(SAFETY),
                        last_renew: start,
                        releasing: false,
                        epoch,
                    },
                );
                tracing::info!(lease = %key.name, mode = key.mode.as_str(), offering_uuid = %key.offering_uuid, "acquired lease");
                true
            }
            Err(e) => {
                let e = self.kube.error(&format!("take lease {}", key.name), e);
                // 409: another replica was quicker; anything else is worth a line.
                if e.status() == Some(409) {
                    tracing::debug!(lease = %key.name, "another replica took the lease first");
                } else {
                    tracing::warn!(lease = %key.name, error = %e, "cannot take lease");
                }
                false
            }
        }
    }

    async fn renew(&self, name: &str, lease: &Lease) {
        let start = Instant::now();
        let mut renewed = lease.clone();
        if let Some(spec) = renewed.spec.as_mut() {
            spec.renew_time = Some(now_micro());
            spec.lease_duration_seconds = Some(secs_i32(self.settings.duration));
        }
        match self
            .api
            .replace(name, &PostParams::default(), &renewed)
            .await
        {
            Ok(_) => {
                if let Some(h) = self.gate.held().get_mut(name) {
                    h.deadline = start + self.settings.duration.saturating_sub(SAFETY);
                    h.last_renew = start;
                }
            }
            Err(e) => {
                let e = self.kube.error(&format!("renew lease {name}"), e);
                if e.status() == Some(409) || e.status() == Some(404) {
                    self.lose(name, "the lease changed under this replica");
                } else {
                    tracing::warn!(lease = %name, error = %e, "lease not renewed; retrying until its deadline");
                }
            }
        }
    }

    fn lose(&self, name: &str, why: &str) {
        if let Some(h) = self.gate.held().remove(name) {
            h.token.cancel();
            tracing::warn!(lease = %name, "lost lease ({why}): stopped its work");
        }
    }

    fn start_release(&self, name: &str, why: &str) {
        if let Some(h) = self.gate.held().get_mut(name) {
            h.releasing = true;
            h.token.cancel();
            tracing::info!(lease = %name, "releasing lease ({why}) once its work in hand is done");
        }
    }

    fn work_stopped(&self, name: &str) -> bool {
        self.gate
            .held()
            .get(name)
            .is_none_or(|h| h.work.clone().try_write_owned().is_ok())
    }

    /// Clear the holder so another replica can take the Lease at once.
    async fn clear(&self, lease: &Lease) -> bool {
        let Some(name) = lease.metadata.name.as_deref() else {
            return false;
        };
        let mut cleared = lease.clone();
        if let Some(spec) = cleared.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
        }
        match self
            .api
            .replace(name, &PostParams::default(), &cleared)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                let e = self.kube.error(&format!("release lease {name}"), e);
                tracing::warn!(lease = %name, error = %e, "cannot release lease; it expires by itself");
                false
            }
        }
    }

    async fn release_all(&mut self, wait: Duration) {
        let names: Vec<String> = self.gate.held().keys().cloned().collect();
        for name in &names {
            self.start_release(name, "shutting down");
        }
        let until = Instant::now() + wait;
        for name in names {
            let work = self.gate.held().get(&name).map(|h| h.work.clone());
            let Some(work) = work else { continue };
            let left = until.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, work.write_owned())
                .await
                .is_err()
            {
                tracing::warn!(lease = %name, "work still running at shutdown; the lease expires by itself");
                continue;
            }
            if let Ok(Some(lease)) = self.api.get_opt(&name).await
                && holder(&lease) == self.settings.identity
                && self.clear(&lease).await
            {
                tracing::info!(lease = %name, "released lease");
            }
            self.gate.held().remove(&name);
        }
        let member = member_name(&self.settings.identity);
        if let Ok(Some(lease)) = self.api.get_opt(&member).await {
            let _ = self.clear(&lease).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_subdomains() {
        let n = lease_name(Mode::OrderProcess, "0B1C-2D3E4F");
        assert_eq!(n, "waldur-agent-order-process-0b1c2d3e4f");
        assert!(n.len() <= 63);
        assert_eq!(dns_part("Pod_A.example"), "pod-a-example");
        assert_eq!(dns_part("___"), "agent");
        assert_eq!(member_name("agent-0 "), "waldur-agent-member-agent-0");
        let long = lease_name(Mode::MembershipSync, &"f".repeat(64));
        assert!(
            long.len() <= 253 && long.ends_with(&"f".repeat(40)),
            "{long}"
        );
    }

    #[test]
    fn switch_and_durations() {
        assert_eq!(parse_enabled(None), Ok(false));
        assert_eq!(parse_enabled(Some("")), Ok(false));
        assert_eq!(parse_enabled(Some("TRUE")), Ok(true));
        assert_eq!(parse_enabled(Some("off")), Ok(false));
        assert!(parse_enabled(Some("maybe")).is_err());
        assert_eq!(
            durations(None, None),
            Ok((Duration::from_secs(15), Duration::from_secs(5)))
        );
        assert_eq!(
            durations(Some("6"), Some("1.5")),
            Ok((Duration::from_secs(6), Duration::from_millis(1500)))
        );
        assert!(durations(Some("2"), None).is_err());
        assert!(durations(Some("10"), Some("9")).is_err());
        assert!(durations(Some("-1"), None).is_err());
        assert!(durations(Some("soon"), None).is_err());
    }

    fn lease(holder: Option<&str>, renewed_ago_s: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    Utc::now() - chrono::Duration::seconds(renewed_ago_s),
                )),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn free_leases() {
        let now = Utc::now();
        assert!(is_free(&lease(None, 0, 15), now));
        assert!(is_free(&lease(Some(""), 0, 15), now));
        assert!(!is_free(&lease(Some("a"), 5, 15), now));
        assert!(is_free(&lease(Some("a"), 20, 15), now));
        assert!(is_free(&Lease::default(), now));
    }

    #[tokio::test]
    async fn the_gate_gives_work_only_while_held() {
        let gate = LeaseGate::new("me");
        assert!(gate.begin(Mode::OrderProcess, "u1").is_none());
        let parent = CancellationToken::new();
        gate.held().insert(
            lease_name(Mode::OrderProcess, "u1"),
            Held {
                token: parent.child_token(),
                work: Arc::new(RwLock::new(())),
                deadline: Instant::now() + Duration::from_secs(60),
                last_renew: Instant::now(),
                releasing: false,
                epoch: 7,
            },
        );
        let guard = gate.begin(Mode::OrderProcess, "u1").expect("held");
        assert_eq!(guard.epoch(), 7);
        assert!(
            gate.begin(Mode::Report, "u1").is_none(),
            "another mode's lease"
        );
        // a release waits for the guard
        let work = gate
            .held()
            .get(&lease_name(Mode::OrderProcess, "u1"))
            .map(|h| h.work.clone());
        let work = work.expect("held");
        assert!(work.clone().try_write_owned().is_err());
        drop(guard);
        assert!(work.try_write_owned().is_ok());
        // past its deadline, no more work
        if let Some(h) = gate.held().get_mut(&lease_name(Mode::OrderProcess, "u1")) {
            h.deadline = Instant::now();
        }
        assert!(gate.begin(Mode::OrderProcess, "u1").is_none());
        // parent cancelled (shutdown): no more work either
        parent.cancel();
        assert_eq!(gate.held_names().len(), 1);
    }
}
