//! Test support: [`MemoryBackend`], an in-memory site with fault injection and a call log;
//! [`RecordingRunner`], the command runner of CLI backend tests (records every command, answers
//! from responders, then from a stateful [`SiteDouble`] of the site); and [`conformance`], the
//! checks every real backend must pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::domain::*;
use crate::error::{BackendError, BackendResult};
use crate::names::validate_site_name;
use crate::registry::BackendHandles;
use crate::traits::*;

/// One resource held by [`MemoryBackend`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryResource {
    pub parent: String,
    pub limits: Limits,
    pub users: BTreeSet<String>,
    pub paused: bool,
    pub downscaled: bool,
    pub user_limits: BTreeMap<String, Limits>,
}

/// Which kind of failure to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Transient,
    Permanent,
}

#[derive(Default)]
struct State {
    resources: BTreeMap<String, MemoryResource>,
    /// (backend id, "YYYY-MM") → usage
    usage: BTreeMap<(String, String), UsageReport>,
    /// operation name → faults to return, consumed front first
    faults: BTreeMap<String, Vec<Fault>>,
    calls: Vec<String>,
    usernames: BTreeMap<String, String>,
    /// username → attribute keys of the last grant `add_users` got for them.
    grant_attributes: BTreeMap<String, Vec<String>>,
}

/// An in-memory site implementing every capability; for processor tests.
///
/// Operation names for [`MemoryBackend::fail_next`] and [`MemoryBackend::calls`]: `ping`,
/// `pull`, `create`, `set_limits`, `delete`, `add_users`, `remove_users`, `pause`, `downscale`,
/// `restore`, `usage`, `generate_username`.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
    /// `allocation_prefix` equivalent.
    pub prefix: String,
    pub decreasing_usage: bool,
    /// Say (in `capabilities`) that grants' attributes are not read, as SLURM does.
    pub ignores_user_attributes: bool,
}

impl MemoryBackend {
    pub fn new() -> Self {
        MemoryBackend::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The attribute keys of the last grant `add_users` got for `username`.
    pub fn grant_attribute_keys(&self, username: &str) -> Option<Vec<String>> {
        self.lock().grant_attributes.get(username).cloned()
    }

    /// Make the next `count` calls of `op` fail with `fault`.
    pub fn fail_next(&self, op: &str, fault: Fault, count: usize) {
        self.lock()
            .faults
            .entry(op.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(fault, count));
    }

    /// Calls made so far, as `op:detail` strings.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn count_calls(&self, op: &str) -> usize {
        let prefix = format!("{op}:");
        self.lock()
            .calls
            .iter()
            .filter(|c| c.starts_with(&prefix) || c.as_str() == op)
            .count()
    }

    pub fn resource(&self, backend_id: &str) -> Option<MemoryResource> {
        self.lock().resources.get(backend_id).cloned()
    }

    pub fn resource_ids(&self) -> Vec<String> {
        self.lock().resources.keys().cloned().collect()
    }

    /// Put a resource on the site directly (as if created out of band).
    pub fn insert_resource(&self, backend_id: &str, resource: MemoryResource) {
        self.lock()
            .resources
            .insert(backend_id.to_owned(), resource);
    }

    pub fn remove_resource(&self, backend_id: &str) {
        self.lock().resources.remove(backend_id);
    }

    /// Set the usage the site reports for `backend_id` in `year-month`.
    pub fn set_usage(&self, backend_id: &str, year: i16, month: i8, report: UsageReport) {
        self.lock().usage.insert(
            (backend_id.to_owned(), format!("{year:04}-{month:02}")),
            report,
        );
    }

    /// The username `generate_username` gives for a Waldur username.
    pub fn set_generated_username(&self, waldur_username: &str, username: &str) {
        self.lock()
            .usernames
            .insert(waldur_username.to_owned(), username.to_owned());
    }

    /// Build registry handles sharing this instance.
    pub fn handles(&self) -> BackendHandles {
        let me = Arc::new(self.clone());
        BackendHandles {
            kind: "memory",
            health: me.clone(),
            orders: Some(me.clone()),
            membership: Some(me.clone()),
            usage: Some(me.clone()),
            usernames: Some(me),
        }
    }

    fn enter(&self, op: &str, detail: &str) -> BackendResult<()> {
        let mut state = self.lock();
        state.calls.push(if detail.is_empty() {
            op.to_owned()
        } else {
            format!("{op}:{detail}")
        });
        let fault = state.faults.get_mut(op).and_then(|f| {
            if f.is_empty() {
                None
            } else {
                Some(f.remove(0))
            }
        });
        match fault {
            Some(Fault::Transient) => Err(BackendError::transient(format!(
                "injected transient failure in {op}"
            ))),
            Some(Fault::Permanent) => Err(BackendError::permanent(format!(
                "injected permanent failure in {op}"
            ))),
            None => Ok(()),
        }
    }

    fn info(backend_id: &str, r: &MemoryResource) -> BackendResourceInfo {
        BackendResourceInfo {
            backend_id: backend_id.to_owned(),
            parent_id: r.parent.clone(),
            users: r.users.iter().cloned().collect(),
            limits: r.limits.clone(),
            backend_metadata: Map::new(),
            endpoints: Vec::new(),
        }
    }
}

#[async_trait]
impl BackendHealth for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn ping(&self) -> BackendResult<()> {
        self.enter("ping", "")
    }
    async fn diagnostics(&self) -> Diagnostics {
        let mut d = Diagnostics::new("memory");
        d.check(
            "reachable",
            true,
            format!("{} resources", self.lock().resources.len()),
        );
        d
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            supports_decreasing_usage: self.decreasing_usage,
            uses_user_attributes: !self.ignores_user_attributes,
            ..Capabilities::default()
        }
    }
}

#[async_trait]
impl OrderBackend for MemoryBackend {
    fn backend_id_for(&self, base_slug: &str) -> BackendResult<String> {
        let id = format!("{}{}", self.prefix, base_slug).to_lowercase();
        validate_site_name("resource name", &id)?;
        Ok(id)
    }

    async fn pull_resource(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Option<BackendResourceInfo>> {
        self.enter("pull", &resource.backend_id)?;
        Ok(self
            .lock()
            .resources
            .get(&resource.backend_id)
            .map(|r| Self::info(&resource.backend_id, r)))
    }

    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo> {
        self.enter("create", &request.backend_id)?;
        validate_site_name("resource name", &request.backend_id)?;
        check_plain_limits(&request.resource.limits)?;
        let mut state = self.lock();
        if state.resources.contains_key(&request.backend_id) {
            return Err(BackendError::Duplicate {
                backend_id: request.backend_id,
            });
        }
        let r = MemoryResource {
            parent: request.resource.project_slug.clone(),
            limits: request.resource.limits.clone(),
            ..MemoryResource::default()
        };
        let info = Self::info(&request.backend_id, &r);
        state.resources.insert(request.backend_id, r);
        Ok(info)
    }

    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        self.enter("set_limits", &resource.backend_id)?;
        check_plain_limits(limits)?;
        let mut state = self.lock();
        let r = state
            .resources
            .get_mut(&resource.backend_id)
            .ok_or_else(|| {
                BackendError::permanent(format!("no resource '{}'", resource.backend_id))
            })?;
        r.limits = limits.clone();
        Ok(())
    }

    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()> {
        self.enter("delete", &resource.backend_id)?;
        self.lock().resources.remove(&resource.backend_id);
        Ok(())
    }

    async fn add_users_after_create(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        MembershipBackend::add_users(self, resource, users).await
    }
}

#[async_trait]
impl MembershipBackend for MemoryBackend {
    async fn pull_resources(
        &self,
        resources: &[ResourceView],
    ) -> BackendResult<BTreeMap<String, BackendResourceInfo>> {
        self.enter("pull", &format!("{} resources", resources.len()))?;
        let state = self.lock();
        Ok(resources
            .iter()
            .filter_map(|rv| {
                state
                    .resources
                    .get(&rv.backend_id)
                    .map(|r| (rv.backend_id.clone(), Self::info(&rv.backend_id, r)))
            })
            .collect())
    }

    async fn add_users(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
        self.enter(
            "add_users",
            &format!("{}:{}", resource.backend_id, names.join(",")),
        )?;
        for u in &names {
            validate_site_name("username", u)?;
        }
        let mut state = self.lock();
        for u in users {
            let keys = u.attributes.keys().cloned().collect();
            state.grant_attributes.insert(u.username.clone(), keys);
        }
        let r = state
            .resources
            .get_mut(&resource.backend_id)
            .ok_or_else(|| {
                BackendError::permanent(format!("no resource '{}'", resource.backend_id))
            })?;
        r.users.extend(names.iter().map(|s| s.to_string()));
        Ok(names.iter().map(|s| s.to_string()).collect())
    }

    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>> {
        self.enter(
            "remove_users",
            &format!("{}:{}", resource.backend_id, usernames.join(",")),
        )?;
        let mut state = self.lock();
        if let Some(r) = state.resources.get_mut(&resource.backend_id) {
            for u in usernames {
                r.users.remove(u);
            }
        }
        Ok(usernames.to_vec())
    }

    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.enter("pause", &resource.backend_id)?;
        Ok(self.flag(resource, |r| (!r.paused).then(|| r.paused = true).is_some()))
    }

    async fn downscale(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.enter("downscale", &resource.backend_id)?;
        Ok(self.flag(resource, |r| {
            (!r.downscaled).then(|| r.downscaled = true).is_some()
        }))
    }

    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.enter("restore", &resource.backend_id)?;
        Ok(self.flag(resource, |r| {
            let changed = r.paused || r.downscaled;
            r.paused = false;
            r.downscaled = false;
            changed
        }))
    }

    async fn resource_metadata(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Map<String, Value>> {
        let state = self.lock();
        let mut m = Map::new();
        if let Some(r) = state.resources.get(&resource.backend_id) {
            m.insert("parent".into(), Value::String(r.parent.clone()));
        }
        Ok(m)
    }

    async fn user_limits(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<BTreeMap<String, Limits>> {
        Ok(self
            .lock()
            .resources
            .get(&resource.backend_id)
            .map(|r| r.user_limits.clone())
            .unwrap_or_default())
    }

    async fn set_user_limits(
        &self,
        resource: &ResourceView,
        username: &str,
        limits: &Limits,
    ) -> BackendResult<()> {
        self.enter(
            "set_user_limits",
            &format!("{}:{username}", resource.backend_id),
        )?;
        check_plain_limits(limits)?;
        if let Some(r) = self.lock().resources.get_mut(&resource.backend_id) {
            if limits.is_empty() {
                r.user_limits.remove(username);
            } else {
                r.user_limits.insert(username.to_owned(), limits.clone());
            }
        }
        Ok(())
    }
}

impl MemoryBackend {
    fn flag(&self, resource: &ResourceView, f: impl FnOnce(&mut MemoryResource) -> bool) -> bool {
        self.lock()
            .resources
            .get_mut(&resource.backend_id)
            .map(f)
            .unwrap_or(false)
    }
}

#[async_trait]
impl UsageBackend for MemoryBackend {
    async fn usage_report(
        &self,
        backend_ids: &[String],
        period: &BillingPeriod,
    ) -> BackendResult<BTreeMap<String, UsageReport>> {
        let month = format!("{:04}-{:02}", period.year, period.month);
        self.enter("usage", &month)?;
        let state = self.lock();
        Ok(backend_ids
            .iter()
            .filter_map(|id| {
                state
                    .usage
                    .get(&(id.clone(), month.clone()))
                    .map(|u| (id.clone(), u.clone()))
            })
            .collect())
    }
}

#[async_trait]
impl UsernameBackend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn get_username(&self, _user: &OfferingUserView) -> BackendResult<Option<String>> {
        Ok(None)
    }
    async fn generate_username(&self, user: &OfferingUserView) -> BackendResult<String> {
        self.enter("generate_username", &user.user_username)?;
        Ok(self
            .lock()
            .usernames
            .get(&user.user_username)
            .cloned()
            .unwrap_or_else(|| user.user_username.clone()))
    }
}

/// What a test double answers to one command: `Ok(stdout)` or `Err(output of a failed command)`.
pub type Answer = Result<String, String>;

/// A stateful stand-in for a site's CLI tools (e.g. `backend_slurm::double::SlurmDouble`): it
/// keeps the site's objects and answers the commands it models, `None` for the others.
pub trait SiteDouble: Send + Sync {
    fn answer(&self, command: &crate::command::CommandLine) -> Option<Answer>;
}

type Responder = Box<dyn Fn(&str) -> Option<Answer> + Send + Sync>;

/// A [`crate::command::CommandRunner`] for tests: records every command, answers with the first
/// responder matching the displayed command line (newest rules are not preferred: first added
/// wins), else from its [`SiteDouble`], else with empty success. A failed answer becomes a
/// [`BackendError::Command`] classified by the backend's [`crate::command::TransientRule`], as
/// the process runner would. [`RecordingRunner::set_down`] makes every command fail as a site
/// that is away does.
pub struct RecordingRunner {
    seen: Mutex<Vec<crate::command::CommandLine>>,
    responders: Mutex<Vec<Responder>>,
    site: Option<Arc<dyn SiteDouble>>,
    transient: crate::command::TransientRule,
    down: Mutex<Option<String>>,
}

impl Default for RecordingRunner {
    fn default() -> Self {
        RecordingRunner::new()
    }
}

impl RecordingRunner {
    pub fn new() -> Self {
        RecordingRunner {
            seen: Mutex::new(Vec::new()),
            responders: Mutex::new(Vec::new()),
            site: None,
            transient: crate::command::generic_transient,
            down: Mutex::new(None),
        }
    }

    /// Answer what no responder answers from `site`.
    pub fn with_site(mut self, site: Arc<dyn SiteDouble>) -> Self {
        self.site = Some(site);
        self
    }

    /// Classify failed answers with the backend's own rule.
    pub fn with_transient_rule(mut self, rule: crate::command::TransientRule) -> Self {
        self.transient = rule;
        self
    }

    /// Add a responder: given the displayed command line, `Some(answer)` or `None` to pass.
    pub fn respond(&self, f: impl Fn(&str) -> Option<Answer> + Send + Sync + 'static) {
        lock(&self.responders).push(Box::new(f));
    }

    /// From now on every command fails with `output` (a site that is down); `None` brings it back.
    pub fn set_down(&self, output: Option<&str>) {
        *lock(&self.down) = output.map(str::to_owned);
    }

    /// Every command run so far.
    pub fn commands(&self) -> Vec<crate::command::CommandLine> {
        lock(&self.seen).clone()
    }

    /// Commands as `program-file-name args…`, leaving out the arguments in `skip` (fixed flags).
    pub fn lines_without(&self, skip: &[&str]) -> Vec<String> {
        lock(&self.seen)
            .iter()
            .map(|c| {
                let prog = c
                    .program
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let args: Vec<&str> = c
                    .args
                    .iter()
                    .map(String::as_str)
                    .filter(|a| !skip.contains(a))
                    .collect();
                format!("{prog} {}", args.join(" "))
            })
            .collect()
    }

    /// Forget the commands recorded so far (the responders and the site stay).
    pub fn clear(&self) {
        lock(&self.seen).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl crate::command::CommandRunner for RecordingRunner {
    async fn run(
        &self,
        command: &crate::command::CommandLine,
    ) -> Result<crate::command::CommandOutput, BackendError> {
        lock(&self.seen).push(command.clone());
        let line = command.display();
        let down = lock(&self.down).clone();
        let answer = match down {
            Some(output) => Some(Err(output)),
            None => lock(&self.responders)
                .iter()
                .find_map(|r| r(&line))
                .or_else(|| self.site.as_ref().and_then(|s| s.answer(command))),
        };
        match answer {
            Some(Err(output)) => Err(BackendError::Command {
                command: line,
                exit: "1".into(),
                transient: (self.transient)(&output),
                output,
            }),
            Some(Ok(stdout)) => Ok(crate::command::CommandOutput {
                stdout,
                stderr: String::new(),
            }),
            None => Ok(crate::command::CommandOutput::default()),
        }
    }

    fn calls(&self) -> u64 {
        lock(&self.seen).len() as u64
    }
}

/// Lifecycle checks every backend must pass against its real (or faithfully faked) site.
pub mod conformance {
    use super::*;

    /// Inputs for [`order_and_membership_lifecycle`].
    pub struct Fixture {
        /// A resource not yet on the site (unique slug/backend id per run).
        pub resource: ResourceView,
        /// Limits to create with and to change to (Waldur units).
        pub initial_limits: Limits,
        pub updated_limits: Limits,
        /// Users the site can grant access to.
        pub users: Vec<UserGrant>,
    }

    /// Create → read back → idempotent create → change limits → add users (twice) → remove a user →
    /// pause/restore (idempotent) → delete → gone → delete again. Panics with a message naming the step.
    pub async fn order_and_membership_lifecycle<B>(backend: &B, fixture: Fixture)
    where
        B: OrderBackend + MembershipBackend,
    {
        let mut resource = fixture.resource.clone();
        resource.limits = fixture.initial_limits.clone();
        let backend_id = backend
            .backend_id_for(&resource.slug)
            .expect("backend_id_for accepts an ordinary slug");
        resource.backend_id = backend_id.clone();
        assert!(
            OrderBackend::pull_resource(backend, &resource)
                .await
                .expect("pull before create")
                .is_none(),
            "step 1: the resource must not exist before create"
        );

        let request = CreateRequest {
            resource: resource.clone(),
            backend_id: backend_id.clone(),
            context: UserContext::default(),
        };
        let created = backend
            .create_resource(request.clone())
            .await
            .expect("step 2: create");
        assert_eq!(
            created.backend_id, backend_id,
            "step 2: create returns the requested id"
        );

        let pulled = OrderBackend::pull_resource(backend, &resource)
            .await
            .expect("pull")
            .expect("step 3: created resource is found");
        assert_eq!(
            pulled.limits, fixture.initial_limits,
            "step 3: limits read back in Waldur units equal the ordered ones"
        );

        match backend.create_resource(request).await {
            Err(BackendError::Duplicate { .. }) => {}
            other => {
                panic!("step 4: creating the same id again must report Duplicate, got {other:?}")
            }
        }

        backend
            .set_limits(&resource, &fixture.updated_limits)
            .await
            .expect("step 5: set_limits");
        let pulled = OrderBackend::pull_resource(backend, &resource)
            .await
            .expect("pull")
            .expect("exists");
        assert_eq!(
            pulled.limits, fixture.updated_limits,
            "step 5: updated limits read back"
        );
        resource.limits = fixture.updated_limits.clone();

        // Limits are checked, never saturated: an amount no site can take is refused by
        // `check_limits` and by `set_limits`, and the site keeps the limits it had.
        if let Some(key) = fixture.updated_limits.keys().next() {
            let huge: f64 = "99999999999999999999".parse().expect("number");
            for bad in [f64::NAN, f64::INFINITY, -1.0, 1e30, huge] {
                let mut limits = fixture.updated_limits.clone();
                limits.insert(key.clone(), bad);
                match backend.check_limits(&resource, &limits) {
                    Err(BackendError::Limit(e)) => assert_eq!(
                        e.component, *key,
                        "step 5b: the refusal names the component"
                    ),
                    other => panic!("step 5b: check_limits must refuse {key}={bad}, got {other:?}"),
                }
                match backend.set_limits(&resource, &limits).await {
                    Err(BackendError::Limit(_)) => {}
                    other => panic!("step 5b: set_limits must refuse {key}={bad}, got {other:?}"),
                }
                let pulled = OrderBackend::pull_resource(backend, &resource)
                    .await
                    .expect("pull")
                    .expect("exists");
                assert_eq!(
                    pulled.limits, fixture.updated_limits,
                    "step 5b: a refused {key}={bad} leaves the limits as they were"
                );
            }
        }

        let added = backend
            .add_users(&resource, &fixture.users)
            .await
            .expect("step 6: add_users");
        let wanted: BTreeSet<&str> = fixture.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(
            added.iter().map(String::as_str).collect::<BTreeSet<_>>(),
            wanted,
            "step 6: every user added"
        );
        backend
            .add_users(&resource, &fixture.users)
            .await
            .expect("step 6b: adding again is a no-op success");
        let pulled = backend
            .pull_resources(std::slice::from_ref(&resource))
            .await
            .expect("pull_resources");
        let info = pulled
            .get(&backend_id)
            .expect("step 7: pull_resources finds the resource");
        let have: BTreeSet<&str> = info.users.iter().map(String::as_str).collect();
        assert!(
            wanted.is_subset(&have),
            "step 7: users listed {have:?} ⊇ {wanted:?}"
        );

        if let Some(first) = fixture.users.first() {
            backend
                .remove_users(&resource, std::slice::from_ref(&first.username))
                .await
                .expect("step 8: remove_users");
            backend
                .remove_users(&resource, std::slice::from_ref(&first.username))
                .await
                .expect("step 8b: removing again succeeds");
            let pulled = backend
                .pull_resources(std::slice::from_ref(&resource))
                .await
                .expect("pull_resources");
            assert!(
                !pulled[&backend_id].users.contains(&first.username),
                "step 8: removed user is gone"
            );
        }

        assert!(
            backend.pause(&resource).await.expect("step 9: pause"),
            "step 9: first pause changes something"
        );
        assert!(
            !backend.pause(&resource).await.expect("pause again"),
            "step 9: second pause changes nothing"
        );
        assert!(
            backend.restore(&resource).await.expect("step 10: restore"),
            "step 10: restore after pause changes something"
        );
        assert!(
            !backend.restore(&resource).await.expect("restore again"),
            "step 10: restore is idempotent"
        );

        backend
            .delete_resource(&resource)
            .await
            .expect("step 11: delete");
        assert!(
            OrderBackend::pull_resource(backend, &resource)
                .await
                .expect("pull")
                .is_none(),
            "step 11: deleted resource is gone"
        );
        backend
            .delete_resource(&resource)
            .await
            .expect("step 12: deleting again succeeds");
    }
    /// Which resources the batch check creates: three fresh resources (unique slugs) whose
    /// limits the site accepts.
    pub struct BatchFixture {
        pub first: ResourceView,
        pub second: ResourceView,
        pub third: ResourceView,
        pub limits: Limits,
    }

    fn request_for<B: OrderBackend>(
        backend: &B,
        resource: &ResourceView,
        limits: &Limits,
    ) -> CreateRequest {
        let mut resource = resource.clone();
        resource.limits = limits.clone();
        let backend_id = backend
            .backend_id_for(&resource.slug)
            .expect("backend_id_for accepts an ordinary slug");
        resource.backend_id = backend_id.clone();
        CreateRequest {
            resource,
            backend_id,
            context: UserContext::default(),
        }
    }

    /// `create_resources` with `[first, unwritable limits, second, first again, third]`: results
    /// come back in request order, the refused one and the duplicate inside the batch fail
    /// alone (the duplicate as [`BackendError::Duplicate`], never a success on someone else's
    /// object), the others are created with their ids and read back. Everything is removed
    /// afterwards.
    pub async fn batch_partial_failure_and_order<B>(backend: &B, fixture: BatchFixture)
    where
        B: OrderBackend,
    {
        let first = request_for(backend, &fixture.first, &fixture.limits);
        let second = request_for(backend, &fixture.second, &fixture.limits);
        let third = request_for(backend, &fixture.third, &fixture.limits);
        let mut refused = request_for(backend, &fixture.third, &fixture.limits);
        if let Some(key) = fixture.limits.keys().next() {
            refused.resource.limits.insert(key.clone(), f64::NAN);
        }
        refused.backend_id = format!("{}-refused", second.backend_id);
        refused.resource.backend_id = refused.backend_id.clone();
        let batch = vec![
            first.clone(),
            refused.clone(),
            second.clone(),
            first.clone(),
            third.clone(),
        ];
        let results = backend.create_resources(batch).await;
        assert_eq!(results.len(), 5, "batch: one result per request");
        for (i, request) in [(0, &first), (2, &second), (4, &third)] {
            match &results[i] {
                Ok(info) => assert_eq!(
                    info.backend_id, request.backend_id,
                    "batch: result {i} belongs to request {i}"
                ),
                Err(e) => panic!("batch: request {i} must succeed, got {e}"),
            }
        }
        match &results[1] {
            Err(e) => assert!(
                !e.is_transient(),
                "batch: a refused limit is permanent: {e}"
            ),
            Ok(_) => panic!("batch: a NaN limit must be refused"),
        }
        match &results[3] {
            Err(BackendError::Duplicate { .. }) => {}
            other => {
                panic!("batch: the same id twice in one batch must be a Duplicate, got {other:?}")
            }
        }
        for request in [&first, &second, &third] {
            let pulled = backend
                .pull_resource(&request.resource)
                .await
                .expect("pull")
                .unwrap_or_else(|| panic!("batch: {} was created", request.backend_id));
            assert_eq!(pulled.limits, fixture.limits, "batch: limits read back");
        }
        assert!(
            backend
                .pull_resource(&refused.resource)
                .await
                .expect("pull")
                .is_none(),
            "batch: nothing was created for the refused request"
        );
        let gone = backend
            .delete_resources(&[
                first.resource.clone(),
                second.resource.clone(),
                third.resource.clone(),
            ])
            .await;
        assert!(gone.iter().all(Result::is_ok), "batch cleanup: {gone:?}");
    }

    /// Every write twice: `set_limits` with the same limits, `add_users`, `remove_users`,
    /// `pause`, `restore` and `delete_resource` succeed the second time and change nothing;
    /// `create_resource` of an existing id is a `Duplicate`. Each listed value in `limit_steps`
    /// (Waldur units, e.g. fractions the site can hold exactly) is written and read back
    /// unchanged: the unit round trip.
    pub async fn idempotent_writes_and_unit_round_trip<B>(
        backend: &B,
        fixture: Fixture,
        limit_steps: &[Limits],
    ) where
        B: OrderBackend + MembershipBackend,
    {
        let request = request_for(backend, &fixture.resource, &fixture.initial_limits);
        let resource = request.resource.clone();
        backend
            .create_resource(request.clone())
            .await
            .expect("idempotency: create");
        for limits in limit_steps.iter().chain([&fixture.updated_limits]) {
            for round in 0..2 {
                backend
                    .set_limits(&resource, limits)
                    .await
                    .unwrap_or_else(|e| panic!("idempotency: set_limits round {round}: {e}"));
                let pulled = backend
                    .pull_resource(&resource)
                    .await
                    .expect("pull")
                    .expect("exists");
                assert_eq!(
                    &pulled.limits, limits,
                    "unit round trip: limits read back exactly (round {round})"
                );
            }
        }
        match backend.create_resource(request).await {
            Err(BackendError::Duplicate { .. }) => {}
            other => {
                panic!("idempotency: create of an existing id must be Duplicate, got {other:?}")
            }
        }
        for round in 0..2 {
            backend
                .add_users(&resource, &fixture.users)
                .await
                .unwrap_or_else(|e| panic!("idempotency: add_users round {round}: {e}"));
        }
        let names: Vec<String> = fixture.users.iter().map(|u| u.username.clone()).collect();
        for round in 0..2 {
            backend
                .remove_users(&resource, &names)
                .await
                .unwrap_or_else(|e| panic!("idempotency: remove_users round {round}: {e}"));
        }
        let changed: Vec<bool> = vec![
            backend.pause(&resource).await.expect("pause"),
            backend.pause(&resource).await.expect("pause again"),
            backend.restore(&resource).await.expect("restore"),
            backend.restore(&resource).await.expect("restore again"),
        ];
        assert_eq!(
            changed,
            vec![true, false, true, false],
            "idempotency: pause/restore"
        );
        for round in 0..2 {
            backend
                .delete_resource(&resource)
                .await
                .unwrap_or_else(|e| panic!("idempotency: delete round {round}: {e}"));
        }
    }

    /// Usage of `backend_ids` over `period` equals `expected` (Waldur units, per resource total
    /// and per user, compared to 1e-9 relative), and an id the site does not know is absent or
    /// zero: the usage round trip. The caller put `expected` on the site in site units.
    pub async fn usage_round_trip<B>(
        backend: &B,
        backend_ids: &[String],
        period: &BillingPeriod,
        expected: &BTreeMap<String, UsageReport>,
    ) where
        B: UsageBackend,
    {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        let mut ids = backend_ids.to_vec();
        ids.push("conformance-unknown-id".to_owned());
        let report = backend
            .usage_report(&ids, period)
            .await
            .expect("usage_report");
        for (id, want) in expected {
            let got = report
                .get(id)
                .unwrap_or_else(|| panic!("usage: {id} missing from {report:?}"));
            for (component, amount) in &want.total {
                let have = got.total.get(component).copied().unwrap_or(0.0);
                assert!(
                    close(have, *amount),
                    "usage: {id} {component}: {have} != {amount}"
                );
            }
            for (user, amounts) in &want.per_user {
                for (component, amount) in amounts {
                    let have = got
                        .per_user
                        .get(user)
                        .and_then(|a| a.get(component))
                        .copied()
                        .unwrap_or(0.0);
                    assert!(
                        close(have, *amount),
                        "usage: {id} {user} {component}: {have} != {amount}"
                    );
                }
            }
        }
        if let Some(unknown) = report.get("conformance-unknown-id") {
            assert!(
                unknown.total.values().all(|v| *v == 0.0),
                "usage: an unknown id reports nothing: {unknown:?}"
            );
        }
    }

    /// With the site down (or answering 5xx), every call fails transiently, so orders are left
    /// for the next cycle instead of being erred; and no error shows any of `secrets` (in
    /// `Display` or `Debug`).
    pub async fn site_down_is_transient<B>(backend: &B, fixture: &Fixture, secrets: &[&str])
    where
        B: OrderBackend + MembershipBackend,
    {
        let request = request_for(backend, &fixture.resource, &fixture.initial_limits);
        let resource = request.resource.clone();
        let errors: Vec<(&str, BackendError)> = vec![
            ("ping", backend.ping().await.err()),
            (
                "pull_resource",
                OrderBackend::pull_resource(backend, &resource).await.err(),
            ),
            (
                "create_resource",
                backend.create_resource(request).await.err(),
            ),
            (
                "set_limits",
                backend
                    .set_limits(&resource, &fixture.updated_limits)
                    .await
                    .err(),
            ),
            (
                "pull_resources",
                backend
                    .pull_resources(std::slice::from_ref(&resource))
                    .await
                    .err(),
            ),
            (
                "add_users",
                backend.add_users(&resource, &fixture.users).await.err(),
            ),
        ]
        .into_iter()
        .map(|(op, e)| (op, e.unwrap_or_else(|| panic!("site down: {op} must fail"))))
        .collect();
        for (op, e) in &errors {
            assert!(
                e.is_transient(),
                "site down: {op} must be transient, got {e:?}"
            );
        }
        let all: Vec<&BackendError> = errors.iter().map(|(_, e)| e).collect();
        assert_no_secret(&all, secrets);
    }

    /// No error shows a secret, in `Display` or `Debug`.
    pub fn assert_no_secret(errors: &[&BackendError], secrets: &[&str]) {
        for e in errors {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                let shown = format!("{e} {e:?}");
                assert!(!shown.contains(secret), "an error shows a secret: {shown}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_backend_passes_the_conformance_kit() {
        let backend = MemoryBackend::new();
        let fixture = conformance::Fixture {
            resource: ResourceView {
                uuid: "r1".into(),
                slug: "proj-alloc".into(),
                project_slug: "proj".into(),
                ..Default::default()
            },
            initial_limits: [("cpu".to_owned(), 10.0)].into(),
            updated_limits: [("cpu".to_owned(), 20.5)].into(),
            users: vec![
                UserGrant {
                    username: "alice".into(),
                    ..Default::default()
                },
                UserGrant {
                    username: "bob".into(),
                    ..Default::default()
                },
            ],
        };
        conformance::order_and_membership_lifecycle(&backend, fixture).await;
        assert!(backend.count_calls("create") == 2);
    }

    fn view(slug: &str) -> ResourceView {
        ResourceView {
            uuid: format!("uuid-{slug}"),
            slug: slug.into(),
            project_slug: "proj".into(),
            ..Default::default()
        }
    }

    fn fixture(slug: &str) -> conformance::Fixture {
        conformance::Fixture {
            resource: view(slug),
            initial_limits: [("cpu".to_owned(), 10.0)].into(),
            updated_limits: [("cpu".to_owned(), 20.5)].into(),
            users: vec![UserGrant {
                username: "alice".into(),
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn memory_backend_passes_the_extended_checks() {
        let backend = MemoryBackend::new();
        conformance::batch_partial_failure_and_order(
            &backend,
            conformance::BatchFixture {
                first: view("b1"),
                second: view("b2"),
                third: view("b3"),
                limits: [("cpu".to_owned(), 4.0)].into(),
            },
        )
        .await;
        conformance::idempotent_writes_and_unit_round_trip(
            &backend,
            fixture("idem"),
            &[[("cpu".to_owned(), 0.25)].into()],
        )
        .await;
        let usage = UsageReport {
            total: [("cpu".to_owned(), 1.5)].into(),
            per_user: [("alice".to_owned(), [("cpu".to_owned(), 1.5)].into())].into(),
        };
        backend.set_usage("u1", 2025, 3, usage.clone());
        conformance::usage_round_trip(
            &backend,
            &["u1".to_owned()],
            &BillingPeriod::new(2025, 3, jiff::tz::TimeZone::UTC),
            &[("u1".to_owned(), usage)].into(),
        )
        .await;
        for op in ["ping", "pull", "create", "set_limits", "add_users"] {
            backend.fail_next(op, Fault::Transient, 2);
        }
        conformance::site_down_is_transient(&backend, &fixture("down"), &["s3cret"]).await;
    }

    #[tokio::test]
    async fn recording_runner_answers_responders_then_site_and_classifies() {
        use crate::command::{CommandLine, CommandRunner};
        struct Echo;
        impl SiteDouble for Echo {
            fn answer(&self, command: &CommandLine) -> Option<Answer> {
                command.args.first().map(|a| Ok(format!("site:{a}")))
            }
        }
        let runner = RecordingRunner::new()
            .with_site(Arc::new(Echo))
            .with_transient_rule(|out| out.contains("away"));
        runner.respond(|line| line.contains("special").then(|| Err("away".to_owned())));
        let out = runner
            .run(&CommandLine::new("/bin/tool").arg("x"))
            .await
            .expect("site answers");
        assert_eq!(out.stdout, "site:x");
        let err = runner
            .run(&CommandLine::new("/bin/tool").arg("special"))
            .await
            .expect_err("responder fails it");
        assert!(err.is_transient());
        runner.set_down(Some("broken"));
        let err = runner
            .run(&CommandLine::new("/bin/tool").arg("x"))
            .await
            .expect_err("down");
        assert!(!err.is_transient());
        assert_eq!(
            runner.lines_without(&[]),
            vec!["tool x", "tool special", "tool x"]
        );
        assert_eq!(runner.calls(), 3);
    }

    #[tokio::test]
    async fn injected_faults_are_returned_in_order() {
        let backend = MemoryBackend::new();
        backend.fail_next("ping", Fault::Transient, 1);
        backend.fail_next("ping", Fault::Permanent, 1);
        assert!(backend.ping().await.expect_err("transient").is_transient());
        assert!(!backend.ping().await.expect_err("permanent").is_transient());
        backend.ping().await.expect("faults used up");
    }
}
