//! The API paths: discovery, and get/list/watch/create/update/patch/delete of every served
//! type, with the real status codes and `Status` bodies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::KubeState;
use super::patch;
use super::resources::{self, NAMESPACES, PROJECTS, ROLE_BINDINGS, ResourceDef, Storage};
use super::schema;
use super::select::{FieldSelector, LabelSelector};
use super::status::{self, Cause, KubeError, KubeResult};
use super::store::{EventType, Store, WatchEvent, meta_str};
use super::table;

/// Namespaces the lifecycle admission plugin never lets go.
const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// Who a request runs as.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
}

/// A parsed API path.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Version,
    Health,
    OpenApiRoot,
    OpenApiDoc(String),
    CoreVersions,
    Groups,
    Group(String),
    ResourceList(String, String),
    Collection(&'static ResourceDef, Option<String>),
    Object(&'static ResourceDef, Option<String>, String),
}

/// Parses a path into what it names; `None` when this server does not serve it.
pub fn parse_path(openshift: bool, path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => return Some(Target::Version),
        ["healthz"] | ["livez"] | ["readyz"] => return Some(Target::Health),
        ["api"] => return Some(Target::CoreVersions),
        ["openapi", "v3"] => return Some(Target::OpenApiRoot),
        ["openapi", "v3", gv @ ..] => {
            let gv = gv.join("/");
            return super::openapi::document(openshift, &gv).map(|_| Target::OpenApiDoc(gv));
        }
        ["apis"] => return Some(Target::Groups),
        ["apis", g] => {
            return resources::groups(openshift)
                .contains(g)
                .then(|| Target::Group(g.to_string()));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    resources::api_resource_list(openshift, group, version)?;
    let find = |plural: &str| resources::find(openshift, group, version, plural);
    match rest {
        [] => Some(Target::ResourceList(group.into(), version.into())),
        [plural] => Some(Target::Collection(find(plural)?, None)),
        ["namespaces", ns, plural] if group.is_empty() || *plural != "status" => {
            let def = find(plural)?;
            def.namespaced
                .then(|| Target::Collection(def, Some(ns.to_string())))
        }
        [plural, name] => {
            let def = find(plural)?;
            (!def.namespaced).then(|| Target::Object(def, None, name.to_string()))
        }
        ["namespaces", ns, plural, name] => {
            let def = find(plural)?;
            def.namespaced
                .then(|| Target::Object(def, Some(ns.to_string()), name.to_string()))
        }
        _ => None,
    }
    .filter(|t| {
        // `/api/v1/namespaces/{name}/{x}` where x is no namespaced type is a subresource.
        !matches!(t, Target::Collection(d, Some(_)) if !d.namespaced)
    })
}

/// The route template of a path, for the request counters and fault rules.
pub fn route_template(openshift: bool, path: &str) -> String {
    match parse_path(openshift, path) {
        Some(Target::Version)
        | Some(Target::Health)
        | Some(Target::CoreVersions)
        | Some(Target::Groups)
        | Some(Target::OpenApiRoot)
        | Some(Target::OpenApiDoc(_)) => path.to_string(),
        Some(Target::Group(g)) => format!("/apis/{g}"),
        Some(Target::ResourceList(g, v)) => {
            if g.is_empty() {
                format!("/api/{v}")
            } else {
                format!("/apis/{g}/{v}")
            }
        }
        Some(Target::Collection(d, ns)) => match ns {
            Some(_) => format!("{}/namespaces/{{namespace}}/{}", d.prefix(), d.plural),
            None => format!("{}/{}", d.prefix(), d.plural),
        },
        Some(Target::Object(d, ns, _)) => match ns {
            Some(_) => format!(
                "{}/namespaces/{{namespace}}/{}/{{name}}",
                d.prefix(),
                d.plural
            ),
            None => format!("{}/{}/{{name}}", d.prefix(), d.plural),
        },
        None => "<unmatched>".into(),
    }
}

/// What a handler answers.
pub enum Reply {
    Json {
        status: StatusCode,
        body: Value,
        warnings: Vec<String>,
    },
    Raw(Response),
}

fn ok(body: Value) -> Reply {
    Reply::Json {
        status: StatusCode::OK,
        body,
        warnings: vec![],
    }
}

fn with_status(status: StatusCode, body: Value, warnings: Vec<String>) -> Reply {
    Reply::Json {
        status,
        body,
        warnings,
    }
}

/// Request context.
pub struct Req<'a> {
    pub method: &'a Method,
    pub query: HashMap<String, String>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub user: User,
}

impl Req<'_> {
    fn q(&self, k: &str) -> &str {
        self.query.get(k).map(String::as_str).unwrap_or("")
    }
    fn strict(&self) -> bool {
        self.q("fieldValidation") == "Strict"
    }
    fn warn(&self) -> bool {
        self.q("fieldValidation") != "Ignore"
    }
    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }
    fn accept(&self) -> &str {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .unwrap_or("")
    }
}

fn warnings_of(req: &Req<'_>, unknown: &[String]) -> Vec<String> {
    if req.warn() {
        unknown
            .iter()
            .map(|u| format!("unknown field {}", json!(u)))
            .collect()
    } else {
        vec![]
    }
}

/// The entry point of every non-admin request.
pub async fn dispatch(
    State(st): State<Arc<KubeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let result = match st.authenticate(&headers) {
        None => Err(KubeError::unauthorized()),
        Some(user) => {
            let req = Req {
                method: &method,
                query,
                headers: &headers,
                body: &body,
                user,
            };
            handle(&st, &path, &req)
        }
    };
    let (status, body, warnings) = match result {
        Ok(Reply::Raw(resp)) => return resp,
        Ok(Reply::Json {
            status,
            body,
            warnings,
        }) => (status, body, warnings),
        Err(e) => (e.status_code(), e.to_json(), vec![]),
    };
    st.record(method.as_str(), &path, status.as_u16(), &body);
    json_response(status, &body, &warnings)
}

pub fn json_response(status: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("audit-id", v);
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", json!(w))) {
            h.append(header::WARNING, v);
        }
    }
    resp
}

fn handle(st: &Arc<KubeState>, path: &str, req: &Req<'_>) -> KubeResult<Reply> {
    let target = parse_path(st.openshift, path).ok_or_else(KubeError::no_such_path)?;
    let get_only = |r: Value| {
        if req.method == Method::GET {
            Ok(ok(r))
        } else {
            Err(KubeError::method_not_allowed())
        }
    };
    match target {
        Target::Version => get_only(resources::version()),
        Target::Health => Ok(Reply::Raw((StatusCode::OK, "ok").into_response())),
        Target::CoreVersions => get_only(resources::api_versions(&st.server_address())),
        Target::OpenApiRoot => get_only(super::openapi::root(st.openshift)),
        Target::OpenApiDoc(gv) => get_only(
            super::openapi::document(st.openshift, &gv).ok_or_else(KubeError::no_such_path)?,
        ),
        Target::Groups => get_only(resources::api_group_list(st.openshift)),
        Target::Group(g) => {
            get_only(resources::api_group(st.openshift, &g).ok_or_else(KubeError::no_such_path)?)
        }
        Target::ResourceList(g, v) => get_only(
            resources::api_resource_list(st.openshift, &g, &v)
                .ok_or_else(KubeError::no_such_path)?,
        ),
        Target::Collection(def, ns) => {
            let verb = match *req.method {
                Method::GET if matches!(req.q("watch"), "true" | "1") => "watch",
                Method::GET => "list",
                Method::POST if ns.is_some() || !def.namespaced => "create",
                Method::DELETE if ns.is_some() || !def.namespaced => "deletecollection",
                _ => return Err(KubeError::method_not_allowed()),
            };
            if !def.supports(verb) {
                return Err(KubeError::method_not_allowed());
            }
            match (def.storage, verb) {
                (_, "watch") => watch(st, def, ns, req),
                (Storage::ProjectRequests, "list") => Ok(ok(status::success(None))),
                (Storage::ProjectRequests, _) => project_request(st, req),
                (Storage::Projects, "list") => {
                    let store = st.lock();
                    let objs: Vec<Value> = store
                        .list(&NAMESPACES, None)
                        .into_iter()
                        .map(project_of)
                        .collect();
                    list_reply(def, objs, store.resource_version(), req)
                }
                (Storage::Projects, _) => create_project(st, req),
                (_, "list") => {
                    let store = st.lock();
                    let objs: Vec<Value> = store
                        .list(def, ns.as_deref())
                        .into_iter()
                        .cloned()
                        .collect();
                    list_reply(def, objs, store.resource_version(), req)
                }
                (_, "create") => create(st, def, ns.as_deref().unwrap_or(""), req),
                _ => delete_collection(st, def, ns.as_deref().unwrap_or(""), req),
            }
        }
        Target::Object(def, ns, name) => {
            let verb = match *req.method {
                Method::GET => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => return Err(KubeError::method_not_allowed()),
            };
            if !def.supports(verb) {
                return Err(KubeError::method_not_allowed());
            }
            let ns = ns.unwrap_or_default();
            if def.storage == Storage::Projects {
                return project_object(st, &name, verb, req);
            }
            match verb {
                "get" => {
                    let store = st.lock();
                    let obj = store
                        .get(def, &ns, &name)
                        .ok_or_else(|| KubeError::not_found(def, &name))?;
                    single(def, obj.clone(), store.resource_version(), req)
                }
                "update" => update(st, def, &ns, &name, req),
                "patch" => patch_object(st, def, &ns, &name, req),
                _ => delete(st, def, &ns, &name, req),
            }
        }
    }
}

/// A single object, or a one-row Table when asked for.
fn single(def: &ResourceDef, obj: Value, rv: u64, req: &Req<'_>) -> KubeResult<Reply> {
    if table::wants_table(req.accept()) {
        let include = req
            .query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata");
        return Ok(ok(table::table(
            def,
            &[obj],
            json!({"resourceVersion": rv.to_string()}),
            include,
        )));
    }
    Ok(ok(obj))
}

/// The key etcd orders a type's objects by.
fn sort_key(obj: &Value, namespaced: bool) -> String {
    if namespaced {
        format!("{}/{}", meta_str(obj, "namespace"), meta_str(obj, "name"))
    } else {
        meta_str(obj, "name").to_string()
    }
}

fn selectors(def: &ResourceDef, req: &Req<'_>) -> KubeResult<(LabelSelector, FieldSelector)> {
    let extra: &[&str] = if matches!(def.plural, "namespaces" | "projects") {
        &["status.phase"]
    } else {
        &[]
    };
    Ok((
        LabelSelector::parse(req.q("labelSelector"))?,
        FieldSelector::parse(req.q("fieldSelector"), extra)?,
    ))
}

/// A list answer: selectors, `limit`/`continue` pagination, Table or typed list.
fn list_reply(
    def: &ResourceDef,
    mut objs: Vec<Value>,
    rv: u64,
    req: &Req<'_>,
) -> KubeResult<Reply> {
    let (labels, fields) = selectors(def, req)?;
    objs.retain(|o| labels.matches(o) && fields.matches(o));
    objs.sort_by_key(|o| sort_key(o, def.namespaced));
    let mut list_rv = rv;
    let cont = req.q("continue");
    if !cont.is_empty() {
        if !req.q("resourceVersion").is_empty() && req.q("resourceVersion") != "0" {
            return Err(KubeError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let bad = |why: &str| KubeError::bad_request(format!("continue key is not valid: {why}"));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cont.trim_end_matches('='))
            .map_err(|_| bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
        let token: Value = serde_json::from_slice(&raw)
            .map_err(|_| bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
        if token.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
            return Err(bad("server does not recognize this encoded version"));
        }
        let start = token
            .get("start")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('\u{0}')
            .to_string();
        list_rv = token.get("rv").and_then(Value::as_u64).unwrap_or(rv);
        objs.retain(|o| sort_key(o, def.namespaced) > start);
    }
    let limit: usize = req.q("limit").parse().unwrap_or(0);
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if limit > 0 && objs.len() > limit {
        let remaining = objs.len() - limit;
        objs.truncate(limit);
        let last = objs
            .last()
            .map(|o| sort_key(o, def.namespaced))
            .unwrap_or_default();
        let token = json!({"v": "meta.k8s.io/v1", "rv": list_rv, "start": format!("{last}\u{0}")});
        meta["continue"] =
            json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string()));
        if labels.is_empty() && req.q("fieldSelector").is_empty() {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    if table::wants_table(req.accept()) {
        let include = req
            .query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata");
        return Ok(ok(table::table(def, &objs, meta, include)));
    }
    let items: Vec<Value> = objs
        .into_iter()
        .map(|mut o| {
            if let Value::Object(m) = &mut o {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    Ok(ok(
        json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": meta, "items": items}),
    ))
}

/// Refuses new content in a missing or terminating namespace.
fn check_namespace(store: &Store, def: &ResourceDef, ns: &str, name: &str) -> KubeResult<()> {
    match store.namespace_phase(ns) {
        None => Err(KubeError::not_found(&NAMESPACES, ns)),
        Some("Terminating") => {
            let mut e = KubeError::forbidden(
                def,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            );
            if let Some(d) = e.details.as_mut() {
                d["causes"] = json!([{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]);
            }
            Err(e)
        }
        Some(_) => Ok(()),
    }
}

fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Body namespace must be the URL's; the URL's is set.
fn place(def: &ResourceDef, obj: &mut Value, ns: &str) -> KubeResult<()> {
    if def.namespaced {
        let body_ns = meta_str(obj, "namespace");
        if !body_ns.is_empty() && body_ns != ns {
            return Err(KubeError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        obj["metadata"]["namespace"] = json!(ns);
    }
    Ok(())
}

fn create(
    st: &Arc<KubeState>,
    def: &'static ResourceDef,
    ns: &str,
    req: &Req<'_>,
) -> KubeResult<Reply> {
    let (mut obj, unknown) = schema::decode(def, req.content_type(), req.body, req.strict())?;
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    place(def, &mut obj, ns)?;
    if meta_str(&obj, "name").is_empty() && !meta_str(&obj, "generateName").is_empty() {
        obj["metadata"]["name"] = json!(generate_name(meta_str(&obj, "generateName")));
    }
    schema::default_and_canonicalize(def, &mut obj);
    schema::validate(def, &obj, None)?;
    let name = meta_str(&obj, "name").to_string();
    let mut store = st.lock();
    if let Some(existing) = store.get(def, ns, &name) {
        let mut e = KubeError::already_exists(def, &name);
        if existing.pointer("/metadata/deletionTimestamp").is_some() {
            e.message = format!("object is being deleted: {}", e.message);
        }
        return Err(e);
    }
    if def.namespaced {
        check_namespace(&store, def, ns, &name)?;
    }
    let created = if req.dry_run() {
        obj
    } else {
        store.create(def, obj)
    };
    Ok(with_status(
        StatusCode::CREATED,
        created,
        warnings_of(req, &unknown),
    ))
}

fn check_preconditions(
    def: &ResourceDef,
    name: &str,
    current: &Value,
    uid: &str,
    rv: &str,
) -> KubeResult<()> {
    let cur_uid = meta_str(current, "uid");
    if !uid.is_empty() && uid != cur_uid {
        return Err(KubeError::conflict(
            def,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {cur_uid}"
            ),
        ));
    }
    let cur_rv = meta_str(current, "resourceVersion");
    if !rv.is_empty() && rv != cur_rv {
        return Err(KubeError::conflict(
            def,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {cur_rv}"
            ),
        ));
    }
    Ok(())
}

/// The checks every write to an existing object makes, then the write.
fn write_existing(
    store: &mut Store,
    def: &'static ResourceDef,
    mut obj: Value,
    current: &Value,
    unconditional_ok: bool,
    dry_run: bool,
) -> KubeResult<Value> {
    let name = meta_str(current, "name").to_string();
    let rv = meta_str(&obj, "resourceVersion").to_string();
    if rv.is_empty() && !unconditional_ok {
        return Err(KubeError::invalid(
            def,
            &name,
            vec![Cause {
                reason: "FieldValueInvalid",
                field: "metadata.resourceVersion".into(),
                message: "Invalid value: 0x0: must be specified for an update".into(),
            }],
        ));
    }
    if !rv.is_empty() && rv != meta_str(current, "resourceVersion") {
        return Err(KubeError::stale(def, &name));
    }
    let uid = meta_str(&obj, "uid");
    if !uid.is_empty() && uid != meta_str(current, "uid") {
        return Err(KubeError::conflict(
            def,
            &name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(current, "uid")
            ),
        ));
    }
    schema::default_and_canonicalize(def, &mut obj);
    schema::validate(def, &obj, Some(current))?;
    if dry_run {
        return Ok(obj);
    }
    Ok(store.update(def, obj))
}

fn update(
    st: &Arc<KubeState>,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    req: &Req<'_>,
) -> KubeResult<Reply> {
    let (mut obj, unknown) = schema::decode(def, req.content_type(), req.body, req.strict())?;
    let body_name = meta_str(&obj, "name").to_string();
    if body_name != name {
        return Err(KubeError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    place(def, &mut obj, ns)?;
    let warnings = warnings_of(req, &unknown);
    let mut store = st.lock();
    let Some(current) = store.get(def, ns, name).cloned() else {
        if !def.create_on_update {
            return Err(KubeError::not_found(def, name));
        }
        schema::default_and_canonicalize(def, &mut obj);
        schema::validate(def, &obj, None)?;
        if def.namespaced {
            check_namespace(&store, def, ns, name)?;
        }
        let created = if req.dry_run() {
            obj
        } else {
            store.create(def, obj)
        };
        return Ok(with_status(StatusCode::CREATED, created, warnings));
    };
    let written = write_existing(
        &mut store,
        def,
        obj,
        &current,
        def.unconditional_update,
        req.dry_run(),
    )?;
    Ok(with_status(StatusCode::OK, written, warnings))
}

/// Applies a PATCH body of any supported type to `current`.
fn apply_patch(
    def: &ResourceDef,
    current: &Value,
    req: &Req<'_>,
) -> KubeResult<(Value, Vec<String>)> {
    let mut target = current.clone();
    let parse = || -> KubeResult<Value> {
        serde_json::from_slice(req.body)
            .map_err(|e| KubeError::bad_request(format!("error decoding patch: {e}")))
    };
    match req.content_type() {
        "application/merge-patch+json" => patch::merge_patch(&mut target, &parse()?),
        "application/strategic-merge-patch+json" => {
            patch::strategic_merge_patch(&mut target, &parse()?).map_err(KubeError::bad_request)?
        }
        "application/json-patch+json" => patch::json_patch(&mut target, &parse()?)
            .map_err(|e| KubeError::new(422, "Invalid", e))?,
        other => return Err(KubeError::unsupported_media_type(other)),
    }
    let unknown = schema::prune_patched(def, &mut target, req.strict())?;
    Ok((target, unknown))
}

fn patch_object(
    st: &Arc<KubeState>,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    req: &Req<'_>,
) -> KubeResult<Reply> {
    let mut store = st.lock();
    let current = store
        .get(def, ns, name)
        .cloned()
        .ok_or_else(|| KubeError::not_found(def, name))?;
    let (patched, unknown) = apply_patch(def, &current, req)?;
    if meta_str(&patched, "name") != name
        || (def.namespaced && meta_str(&patched, "namespace") != ns)
    {
        return Err(KubeError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(&patched, "name")
        )));
    }
    // A patch is unconditional unless it carries a resourceVersion.
    let written = write_existing(&mut store, def, patched, &current, true, req.dry_run())?;
    Ok(with_status(
        StatusCode::OK,
        written,
        warnings_of(req, &unknown),
    ))
}

/// DeleteOptions from the body (or query): preconditions and dry run.
fn delete_options(req: &Req<'_>) -> KubeResult<(String, String)> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok((String::new(), String::new()));
    }
    let v: Value = serde_json::from_slice(req.body).map_err(|e| {
        KubeError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    let pre = |f: &str| {
        v.pointer(&format!("/preconditions/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok((pre("uid"), pre("resourceVersion")))
}

fn delete(
    st: &Arc<KubeState>,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    req: &Req<'_>,
) -> KubeResult<Reply> {
    let (uid, rv) = delete_options(req)?;
    let mut store = st.lock();
    let current = store
        .get(def, ns, name)
        .cloned()
        .ok_or_else(|| KubeError::not_found(def, name))?;
    check_preconditions(def, name, &current, &uid, &rv)?;
    if def.plural == "namespaces" {
        if IMMORTAL.contains(&name) {
            return Err(KubeError::forbidden(
                def,
                name,
                "this namespace may not be deleted",
            ));
        }
        let out = if req.dry_run() {
            current
        } else {
            store
                .begin_terminate(name, st.terminate_after)
                .unwrap_or(current)
        };
        return Ok(ok(out));
    }
    if !req.dry_run() {
        store.remove(def, ns, name);
    }
    let mut details = json!({"name": name, "kind": def.plural, "uid": meta_str(&current, "uid")});
    if !def.group.is_empty() {
        details["group"] = json!(def.group);
    }
    Ok(ok(status::success(Some(details))))
}

fn delete_collection(
    st: &Arc<KubeState>,
    def: &'static ResourceDef,
    ns: &str,
    req: &Req<'_>,
) -> KubeResult<Reply> {
    let (labels, fields) = selectors(def, req)?;
    let mut store = st.lock();
    let victims: Vec<Value> = store
        .list(def, Some(ns))
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .cloned()
        .collect();
    let mut items = Vec::new();
    for v in victims {
        let removed = if req.dry_run() {
            Some(v.clone())
        } else {
            store.remove(def, ns, meta_str(&v, "name"))
        };
        if let Some(mut o) = removed {
            if let Value::Object(m) = &mut o {
                m.remove("kind");
                m.remove("apiVersion");
            }
            items.push(o);
        }
    }
    Ok(ok(
        json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": items}),
    ))
}

// ---- OpenShift projects -------------------------------------------------------------------

/// The Project view of a namespace.
pub fn project_of(ns: &Value) -> Value {
    json!({
        "kind": "Project",
        "apiVersion": "project.openshift.io/v1",
        "metadata": ns.get("metadata").cloned().unwrap_or(json!({})),
        "spec": ns.get("spec").cloned().unwrap_or(json!({})),
        "status": ns.get("status").cloned().unwrap_or(json!({})),
    })
}

fn project_not_found(name: &str) -> KubeError {
    KubeError::not_found(&PROJECTS, name)
}

/// Namespace metadata a project write may change (labels and annotations).
fn project_to_namespace(project: &Value, ns: &Value) -> Value {
    let mut out = ns.clone();
    for f in ["labels", "annotations"] {
        match project.pointer(&format!("/metadata/{f}")) {
            Some(v) => out["metadata"][f] = v.clone(),
            None => {
                if let Some(m) = out["metadata"].as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
    out["metadata"]["resourceVersion"] = project
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(json!(""));
    out["metadata"]["uid"] = project
        .pointer("/metadata/uid")
        .cloned()
        .unwrap_or(json!(""));
    out
}

fn project_object(st: &Arc<KubeState>, name: &str, verb: &str, req: &Req<'_>) -> KubeResult<Reply> {
    let mut store = st.lock();
    let ns = store
        .get(&NAMESPACES, "", name)
        .cloned()
        .ok_or_else(|| project_not_found(name))?;
    let current = project_of(&ns);
    match verb {
        "get" => single(&PROJECTS, current, store.resource_version(), req),
        "delete" => {
            let (uid, rv) = delete_options(req)?;
            check_preconditions(&PROJECTS, name, &current, &uid, &rv)?;
            if IMMORTAL.contains(&name) {
                return Err(KubeError::forbidden(
                    &PROJECTS,
                    name,
                    "this project may not be deleted",
                ));
            }
            if !req.dry_run() {
                store.begin_terminate(name, st.terminate_after);
            }
            Ok(ok(status::success(None)))
        }
        _ => {
            let (project, unknown) = if verb == "update" {
                let (p, unknown) =
                    schema::decode(&PROJECTS, req.content_type(), req.body, req.strict())?;
                if meta_str(&p, "name") != name {
                    return Err(KubeError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta_str(&p, "name")
                    )));
                }
                (p, unknown)
            } else {
                apply_patch(&PROJECTS, &current, req)?
            };
            let rv = meta_str(&project, "resourceVersion");
            if !rv.is_empty() && rv != meta_str(&current, "resourceVersion") {
                return Err(KubeError::stale(&PROJECTS, name));
            }
            let mut nsobj = project_to_namespace(&project, &ns);
            if rv.is_empty() {
                nsobj["metadata"]["resourceVersion"] = ns["metadata"]["resourceVersion"].clone();
            }
            let written = if req.dry_run() {
                nsobj
            } else {
                store.update(&NAMESPACES, nsobj)
            };
            Ok(with_status(
                StatusCode::OK,
                project_of(&written),
                warnings_of(req, &unknown),
            ))
        }
    }
}

fn create_project(st: &Arc<KubeState>, req: &Req<'_>) -> KubeResult<Reply> {
    let (project, unknown) = schema::decode(&PROJECTS, req.content_type(), req.body, req.strict())?;
    let name = meta_str(&project, "name").to_string();
    schema::validate(&PROJECTS, &project, None)?;
    let mut store = st.lock();
    if store.get(&NAMESPACES, "", &name).is_some() {
        return Err(KubeError::already_exists(&PROJECTS, &name));
    }
    let mut meta = json!({"name": name});
    for f in ["labels", "annotations"] {
        if let Some(v) = project.pointer(&format!("/metadata/{f}")) {
            meta[f] = v.clone();
        }
    }
    let ns = if req.dry_run() {
        json!({"metadata": meta})
    } else {
        store.create(&NAMESPACES, json!({"metadata": meta}))
    };
    Ok(with_status(
        StatusCode::CREATED,
        project_of(&ns),
        warnings_of(req, &unknown),
    ))
}

/// `POST projectrequests`: the default project template (annotations from `displayName` and
/// `description`, the requester, an `admin` RoleBinding for the requester). Annotations in
/// the request's own metadata are not copied: the template does not use them.
fn project_request(st: &Arc<KubeState>, req: &Req<'_>) -> KubeResult<Reply> {
    let def = &resources::PROJECT_REQUESTS;
    let (pr, unknown) = schema::decode(def, req.content_type(), req.body, req.strict())?;
    let name = meta_str(&pr, "name").to_string();
    schema::validate(def, &pr, None)?;
    if name.len() < 2 {
        return Err(KubeError::invalid(
            def,
            &name,
            vec![Cause::invalid(
                "metadata.name",
                &name,
                "must be at least 2 characters long",
            )],
        ));
    }
    let mut store = st.lock();
    if store.get(&NAMESPACES, "", &name).is_some() {
        return Err(KubeError {
            details: Some(Box::new(
                json!({"name": name, "group": "project.openshift.io", "kind": "project"}),
            )),
            ..KubeError::new(
                409,
                "AlreadyExists",
                format!(
                    "project.project.openshift.io {} already exists",
                    json!(name)
                ),
            )
        });
    }
    let text = |f: &str| pr.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let ns = json!({"metadata": {"name": name, "annotations": {
        "openshift.io/description": text("description"),
        "openshift.io/display-name": text("displayName"),
        "openshift.io/requester": req.user.name,
    }}});
    if req.dry_run() {
        return Ok(with_status(
            StatusCode::CREATED,
            project_of(&ns),
            warnings_of(req, &unknown),
        ));
    }
    let created = store.create(&NAMESPACES, ns);
    store.create(&ROLE_BINDINGS, json!({
        "metadata": {"name": "admin", "namespace": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": req.user.name}],
    }));
    Ok(with_status(
        StatusCode::CREATED,
        project_of(&created),
        warnings_of(req, &unknown),
    ))
}

// ---- watch --------------------------------------------------------------------------------

fn event_line(ev_type: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": ev_type, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn watch(
    st: &Arc<KubeState>,
    def: &'static ResourceDef,
    ns: Option<String>,
    req: &Req<'_>,
) -> KubeResult<Reply> {
    let (labels, fields) = selectors(def, req)?;
    let projects = def.storage == Storage::Projects;
    let source: &'static ResourceDef = if projects { &NAMESPACES } else { def };
    let view = move |o: &Value| if projects { project_of(o) } else { o.clone() };
    let timeout = req
        .q("timeoutSeconds")
        .parse::<u64>()
        .unwrap_or(1800)
        .min(1800);
    let as_table = table::wants_table(req.accept());
    let include = req
        .query
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "Metadata".into());
    let render = move |o: Value| {
        if as_table {
            table::table(def, &[o], json!({}), &include)
        } else {
            o
        }
    };
    let wanted = {
        let ns = ns.clone();
        let (labels, fields) = (labels.clone(), fields.clone());
        move |ev: &WatchEvent| {
            ev.plural == source.plural
                && ns.as_deref().is_none_or(|n| ev.namespace == n)
                && labels.matches(&ev.object)
                && fields.matches(&ev.object)
        }
    };
    let rv_param = req.q("resourceVersion").to_string();
    let (initial, rx, expired) = {
        let store = st.lock();
        let mut expired = false;
        let rx = store.subscribe();
        let send_initial = req.q("sendInitialEvents") == "true";
        if send_initial
            && (req.q("resourceVersionMatch") != "NotOlderThan"
                || req.q("allowWatchBookmarks") != "true")
        {
            return Err(KubeError::invalid(
                def,
                "",
                vec![Cause::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan and allowWatchBookmarks to true",
                )],
            ));
        }
        let initial: Vec<Bytes> = if send_initial || rv_param.is_empty() || rv_param == "0" {
            let mut lines: Vec<Bytes> = store
                .list(source, ns.as_deref())
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .map(|o| event_line("ADDED", &render(view(o))))
                .collect();
            if send_initial {
                // The bookmark closing the initial events of a watch list.
                lines.push(event_line(
                    "BOOKMARK",
                    &json!({
                        "kind": def.kind,
                        "apiVersion": def.api_version(),
                        "metadata": {
                            "resourceVersion": store.resource_version().to_string(),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    }),
                ));
            }
            lines
        } else {
            let rv: u64 = rv_param.parse().map_err(|_| {
                KubeError::invalid(
                    def,
                    "",
                    vec![Cause::invalid(
                        "resourceVersion",
                        &rv_param,
                        "must be a valid resource version",
                    )],
                )
            })?;
            match store.history_since(rv) {
                Ok(events) => events
                    .iter()
                    .filter(|e| wanted(e))
                    .map(|e| event_line(ev_name(e.kind), &render(view(&e.object))))
                    .collect(),
                Err(oldest) => {
                    expired = true;
                    vec![event_line(
                        "ERROR",
                        &KubeError::expired(format!("too old resource version: {rv} ({oldest})"))
                            .to_json(),
                    )]
                }
            }
        };
        (initial, rx, expired)
    };
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let live = futures::stream::unfold((rx, expired), move |(mut rx, done)| {
        let wanted = wanted.clone();
        let render = render.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, rx.recv()).await {
                    Ok(Ok(ev)) if wanted(&ev) => {
                        let line = event_line(ev_name(ev.kind), &render(view(&ev.object)));
                        return Some((Ok::<Bytes, std::io::Error>(line), (rx, false)));
                    }
                    Ok(Ok(_)) => continue,
                    // Lagged, closed, or the timeout: the watch ends; the client lists again.
                    _ => return None,
                }
            }
        }
    });
    let stream =
        futures::StreamExt::chain(futures::stream::iter(initial.into_iter().map(Ok)), live);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(Reply::Raw(resp))
}

fn ev_name(k: EventType) -> &'static str {
    match k {
        EventType::Added => "ADDED",
        EventType::Modified => "MODIFIED",
        EventType::Deleted => "DELETED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::resources::{LEASES, RESOURCE_QUOTAS};

    #[test]
    fn paths_parse_like_the_api_server() {
        assert_eq!(
            parse_path(true, "/api/v1/namespaces"),
            Some(Target::Collection(&NAMESPACES, None))
        );
        assert_eq!(
            parse_path(true, "/api/v1/namespaces/a"),
            Some(Target::Object(&NAMESPACES, None, "a".into()))
        );
        assert_eq!(
            parse_path(true, "/api/v1/namespaces/a/resourcequotas"),
            Some(Target::Collection(&RESOURCE_QUOTAS, Some("a".into())))
        );
        assert_eq!(
            parse_path(true, "/api/v1/resourcequotas"),
            Some(Target::Collection(&RESOURCE_QUOTAS, None))
        );
        assert_eq!(
            parse_path(true, "/apis/coordination.k8s.io/v1/namespaces/a/leases/l"),
            Some(Target::Object(&LEASES, Some("a".into()), "l".into()))
        );
        assert_eq!(parse_path(true, "/api/v1/resourcequotas/x"), None);
        assert_eq!(parse_path(true, "/api/v1/namespaces/a/status"), None);
        assert_eq!(parse_path(true, "/api/v1/pods"), None);
        assert_eq!(
            parse_path(false, "/apis/project.openshift.io/v1/projects"),
            None
        );
        assert_eq!(parse_path(false, "/apis/project.openshift.io"), None);
        assert_eq!(
            route_template(true, "/api/v1/namespaces/a/resourcequotas/q"),
            "/api/v1/namespaces/{namespace}/resourcequotas/{name}"
        );
        assert_eq!(
            route_template(true, "/apis/project.openshift.io/v1/projects/p"),
            "/apis/project.openshift.io/v1/projects/{name}"
        );
    }
}
