//! A stateful Keystone v3 double on wiremock: the calls `backend-openstack` makes (tokens,
//! domains, roles, services, projects, users, role grants and assignments, registered and
//! project limits), with Keystone's status codes (201 on create, 204 on grants and deletes, 404
//! for what is missing, 409 for a name or limit that exists) and error body
//! (`{"error": {"code", "message", "title"}}`). `set_down(true)` answers 503 to everything.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Default)]
struct State {
    next_id: u64,
    projects: BTreeMap<String, Value>,
    users: BTreeMap<String, Value>,
    /// (project id, user id, role id)
    grants: Vec<(String, String, String)>,
    registered: Vec<Value>,
    limits: BTreeMap<String, Value>,
    down: bool,
}

#[derive(Clone, Default)]
pub struct KeystoneDouble {
    state: Arc<Mutex<State>>,
}

const DOMAIN: &str = "default";
const ROLE: (&str, &str) = ("role-member", "member");
const SERVICE: (&str, &str, &str) = ("svc-compute", "compute", "nova");

fn error(code: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(code)
        .set_body_json(json!({"error": {"code": code, "message": message, "title": "Error"}}))
}

fn query(req: &Request, key: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

impl KeystoneDouble {
    /// Start the double; the Keystone URL is `{uri}/v3`.
    pub async fn start() -> (MockServer, KeystoneDouble) {
        let server = MockServer::start().await;
        let double = KeystoneDouble::default();
        Mock::given(wiremock::matchers::any())
            .respond_with(double.clone())
            .mount(&server)
            .await;
        (server, double)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    fn answer(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.lock();
        if s.down {
            return error(503, "Service Unavailable");
        }
        let method = req.method.as_str().to_owned();
        let path = req.url.path().trim_start_matches("/v3").to_owned();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let new_id = |s: &mut State| {
            s.next_id += 1;
            format!("id{:08}", s.next_id)
        };
        match (method.as_str(), parts.as_slice()) {
            ("POST", ["auth", "tokens"]) => {
                let now = jiff::Timestamp::now();
                ResponseTemplate::new(201)
                    .insert_header("X-Subject-Token", "double-token")
                    .set_body_json(json!({"token": {
                        "issued_at": now.to_string(),
                        "expires_at": (now + jiff::SignedDuration::from_hours(1)).to_string(),
                        "user": {"id": "admin-id", "name": "admin"},
                        "project": {"id": "admin-project", "name": "admin"},
                        "roles": [{"id": "r-admin", "name": "admin"}],
                        "catalog": [{"type": SERVICE.1, "name": SERVICE.2, "endpoints": []}]
                    }}))
            }
            ("GET", ["auth", "tokens"]) => ResponseTemplate::new(200).set_body_json(json!({})),
            ("GET", ["domains"]) => {
                let all = query(req, "name").is_none_or(|n| n == "Default");
                let list = if all {
                    vec![json!({"id": DOMAIN, "name": "Default"})]
                } else {
                    vec![]
                };
                ResponseTemplate::new(200).set_body_json(json!({"domains": list}))
            }
            ("GET", ["roles"]) => {
                let list: Vec<Value> = if query(req, "name").is_none_or(|n| n == ROLE.1) {
                    vec![json!({"id": ROLE.0, "name": ROLE.1})]
                } else {
                    vec![]
                };
                ResponseTemplate::new(200).set_body_json(json!({"roles": list}))
            }
            ("GET", ["services"]) => ResponseTemplate::new(200).set_body_json(
                json!({"services": [{"id": SERVICE.0, "type": SERVICE.1, "name": SERVICE.2}]}),
            ),
            ("GET", ["projects"]) => {
                let name = query(req, "name");
                let list: Vec<&Value> = s
                    .projects
                    .values()
                    .filter(|p| name.as_deref().is_none_or(|n| p["name"] == n))
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"projects": list}))
            }
            ("POST", ["projects"]) => {
                let p = &body["project"];
                if s.projects.values().any(|x| x["name"] == p["name"]) {
                    return error(409, "Conflict occurred attempting to store project");
                }
                let id = new_id(&mut s);
                let project = json!({"id": id, "name": p["name"], "domain_id": DOMAIN,
                    "description": p["description"], "enabled": p["enabled"].as_bool().unwrap_or(true),
                    "tags": p["tags"]});
                s.projects.insert(id, project.clone());
                ResponseTemplate::new(201).set_body_json(json!({"project": project}))
            }
            ("PATCH", ["projects", id]) => match s.projects.get_mut(*id) {
                Some(p) => {
                    if let Some(enabled) = body["project"]["enabled"].as_bool() {
                        p["enabled"] = json!(enabled);
                    }
                    ResponseTemplate::new(200).set_body_json(json!({"project": p.clone()}))
                }
                None => error(404, "Could not find project"),
            },
            ("DELETE", ["projects", id]) => {
                if s.projects.remove(*id).is_none() {
                    return error(404, "Could not find project");
                }
                s.grants.retain(|g| g.0 != *id);
                s.limits.retain(|_, l| l["project_id"] != *id);
                ResponseTemplate::new(204)
            }
            ("GET", ["users"]) => {
                let name = query(req, "name");
                let list: Vec<&Value> = s
                    .users
                    .values()
                    .filter(|u| name.as_deref().is_none_or(|n| u["name"] == n))
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"users": list}))
            }
            ("POST", ["users"]) => {
                let u = &body["user"];
                if s.users.values().any(|x| x["name"] == u["name"]) {
                    return error(409, "Conflict occurred attempting to store user");
                }
                let id = new_id(&mut s);
                let user = json!({"id": id, "name": u["name"], "domain_id": DOMAIN,
                    "email": u["email"], "enabled": true});
                s.users.insert(id, user.clone());
                ResponseTemplate::new(201).set_body_json(json!({"user": user}))
            }
            ("PATCH", ["users", id]) => match s.users.get_mut(*id) {
                Some(u) => {
                    if let Some(email) = body["user"].get("email") {
                        u["email"] = email.clone();
                    }
                    ResponseTemplate::new(200).set_body_json(json!({"user": u.clone()}))
                }
                None => error(404, "Could not find user"),
            },
            (m, ["projects", project, "users", user, "roles", role]) => {
                let grant = (
                    (*project).to_owned(),
                    (*user).to_owned(),
                    (*role).to_owned(),
                );
                let exists = s.grants.contains(&grant);
                match m {
                    "PUT" => {
                        if !s.projects.contains_key(*project) || !s.users.contains_key(*user) {
                            return error(404, "Could not find project or user");
                        }
                        if !exists {
                            s.grants.push(grant);
                        }
                        ResponseTemplate::new(204)
                    }
                    "HEAD" if exists => ResponseTemplate::new(204),
                    "DELETE" if exists => {
                        s.grants.retain(|g| *g != grant);
                        ResponseTemplate::new(204)
                    }
                    _ => error(404, "Could not find role assignment"),
                }
            }
            ("GET", ["role_assignments"]) => {
                let project = query(req, "scope.project.id");
                let role = query(req, "role.id");
                let list: Vec<Value> = s
                    .grants
                    .iter()
                    .filter(|g| project.as_deref().is_none_or(|p| g.0 == p))
                    .filter(|g| role.as_deref().is_none_or(|r| g.2 == r))
                    .map(|g| {
                        let user = &s.users[&g.1];
                        let project = &s.projects[&g.0];
                        json!({"user": {"id": g.1, "name": user["name"]},
                            "role": {"id": g.2, "name": ROLE.1},
                            "scope": {"project": {"id": g.0, "name": project["name"]}}})
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"role_assignments": list}))
            }
            ("GET", ["registered_limits"]) => {
                let service = query(req, "service_id");
                let resource = query(req, "resource_name");
                let list: Vec<&Value> = s
                    .registered
                    .iter()
                    .filter(|r| service.as_deref().is_none_or(|v| r["service_id"] == v))
                    .filter(|r| resource.as_deref().is_none_or(|v| r["resource_name"] == v))
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"registered_limits": list}))
            }
            ("POST", ["registered_limits"]) => {
                let mut created = Vec::new();
                for entry in body["registered_limits"].as_array().into_iter().flatten() {
                    if s.registered.iter().any(|r| {
                        r["service_id"] == entry["service_id"]
                            && r["resource_name"] == entry["resource_name"]
                    }) {
                        return error(409, "Duplicate entry");
                    }
                    let mut r = entry.clone();
                    r["id"] = json!(new_id(&mut s));
                    s.registered.push(r.clone());
                    created.push(r);
                }
                ResponseTemplate::new(201).set_body_json(json!({"registered_limits": created}))
            }
            ("GET", ["limits"]) => {
                let project = query(req, "project_id");
                let list: Vec<&Value> = s
                    .limits
                    .values()
                    .filter(|l| project.as_deref().is_none_or(|p| l["project_id"] == p))
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"limits": list}))
            }
            ("POST", ["limits"]) => {
                let mut created = Vec::new();
                for entry in body["limits"].as_array().into_iter().flatten() {
                    if s.limits.values().any(|l| {
                        l["project_id"] == entry["project_id"]
                            && l["service_id"] == entry["service_id"]
                            && l["resource_name"] == entry["resource_name"]
                    }) {
                        return error(409, "Duplicate entry");
                    }
                    let id = new_id(&mut s);
                    let mut l = entry.clone();
                    l["id"] = json!(id);
                    s.limits.insert(id, l.clone());
                    created.push(l);
                }
                ResponseTemplate::new(201).set_body_json(json!({"limits": created}))
            }
            ("PATCH", ["limits", id]) => match s.limits.get_mut(*id) {
                Some(l) => {
                    l["resource_limit"] = body["limit"]["resource_limit"].clone();
                    ResponseTemplate::new(200).set_body_json(json!({"limit": l.clone()}))
                }
                None => error(404, "Could not find limit"),
            },
            ("DELETE", ["limits", id]) => match s.limits.remove(*id) {
                Some(_) => ResponseTemplate::new(204),
                None => error(404, "Could not find limit"),
            },
            _ => error(404, &format!("the double does not model {method} {path}")),
        }
    }
}

impl Respond for KeystoneDouble {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.answer(request)
    }
}
