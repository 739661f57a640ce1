//! Project service accounts and course accounts (§6 `list_project_service_accounts` /
//! `list_course_accounts`, §7.4 `service_account` / `course_account` events).
//!
//! They are created on the consumer side of Mastermind, which the simulator does not model as an
//! API: seed them (`service_accounts:` / `course_accounts:`), or use the staff endpoints
//! `POST /__sim/project-accounts` `{"kind": "service"|"course", "project", "username", "email"?,
//! "description"?, "user"?}` and `POST /__sim/project-accounts/{uuid}/close`.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{AppState, Body, Ctx, path_uuid};
use crate::error::{ApiError, ApiResult};
use crate::store::{SITE_AGENT_OFFERING, Store, new_uuid, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// ProjectServiceAccount (`service_account` events).
    Service,
    /// CourseAccount (`course_account` events).
    Course,
}

impl AccountKind {
    pub fn object_type(self) -> &'static str {
        match self {
            AccountKind::Service => "service_account",
            AccountKind::Course => "course_account",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProjectAccount {
    pub uuid: Uuid,
    pub kind: AccountKind,
    pub project: Uuid,
    pub username: String,
    /// `OK`, `Closed`, `Erred` (and `Pending` for course accounts).
    pub state: String,
    pub email: String,
    pub description: String,
    /// The Waldur user behind a course account.
    pub user: Option<Uuid>,
    pub created: Timestamp,
    pub modified: Timestamp,
}

impl Store {
    /// Adds an account in state OK and sends the `create` event, as Mastermind does when the
    /// username is set.
    pub fn add_project_account(
        &mut self,
        kind: AccountKind,
        project: Uuid,
        username: &str,
        email: &str,
        description: &str,
        user: Option<Uuid>,
    ) -> ApiResult<Uuid> {
        if !self.projects.contains_key(&project) {
            return Err(ApiError::field("project", "Project not found."));
        }
        if username.is_empty() {
            return Err(ApiError::required("username"));
        }
        if let Some(u) = user
            && !self.users.contains_key(&u)
        {
            return Err(ApiError::field("user", "User not found."));
        }
        let ts = now();
        let account = ProjectAccount {
            uuid: new_uuid(),
            kind,
            project,
            username: username.to_string(),
            state: "OK".into(),
            email: email.to_string(),
            description: description.to_string(),
            user,
            created: ts,
            modified: ts,
        };
        let uuid = account.uuid;
        self.project_accounts.insert(uuid, account);
        self.emit_account_event(&uuid, "create");
        Ok(uuid)
    }

    /// Moves an account to Closed and sends the `delete` event.
    pub fn close_project_account(&mut self, uuid: &Uuid) -> ApiResult<()> {
        let account = self
            .project_accounts
            .get_mut(uuid)
            .ok_or_else(ApiError::not_found)?;
        if account.state == "Closed" {
            return Err(ApiError::invalid_state(&["OK", "Erred", "Pending"]));
        }
        account.state = "Closed".into();
        account.modified = now();
        self.emit_account_event(uuid, "delete");
        Ok(())
    }

    /// One event per site-agent offering with a live resource in the account's project.
    fn emit_account_event(&mut self, uuid: &Uuid, action: &str) {
        let Some(a) = self.project_accounts.get(uuid).cloned() else {
            return;
        };
        let project_name = self
            .projects
            .get(&a.project)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let offerings: indexmap::IndexSet<Uuid> = self
            .resources
            .values()
            .filter(|r| r.project == a.project && r.state != "Terminated")
            .map(|r| r.offering)
            .filter(|o| {
                self.offerings
                    .get(o)
                    .is_some_and(|o| o.type_ == SITE_AGENT_OFFERING)
            })
            .collect();
        for o in offerings {
            self.emit(
                &o,
                a.kind.object_type(),
                json!({
                    "account_uuid": a.uuid.simple().to_string(),
                    "account_username": a.username,
                    "scope_type": "project",
                    "project_uuid": a.project.simple().to_string(),
                    "project_name": project_name,
                    "action": action,
                }),
            );
        }
    }

    /// Accounts of `kind` in projects that have resources of `offering`.
    pub fn offering_accounts(&self, offering: &Uuid, kind: AccountKind) -> Vec<Value> {
        let projects: indexmap::IndexSet<Uuid> = self
            .resources
            .values()
            .filter(|r| &r.offering == offering)
            .map(|r| r.project)
            .collect();
        self.project_accounts
            .values()
            .filter(|a| a.kind == kind && projects.contains(&a.project))
            .map(|a| self.render_project_account(a))
            .collect()
    }

    pub fn render_project_account(&self, a: &ProjectAccount) -> Value {
        let h = |u: &Uuid| u.simple().to_string();
        let project = self.projects.get(&a.project);
        let customer = project.and_then(|p| self.customers.get(&p.customer));
        let mut v = json!({
            "url": self.url(
                match a.kind {
                    AccountKind::Service => "marketplace-project-service-accounts",
                    AccountKind::Course => "marketplace-course-accounts",
                },
                &a.uuid,
            ),
            "uuid": h(&a.uuid),
            "created": a.created.to_string(),
            "modified": a.modified.to_string(),
            "project": self.url("projects", &a.project),
            "project_uuid": h(&a.project),
            "project_name": project.map(|p| p.name.clone()).unwrap_or_default(),
            "customer_uuid": customer.map(|c| h(&c.uuid)),
            "customer_name": customer.map(|c| c.name.clone()),
            "username": a.username,
            "state": a.state,
            "email": a.email,
            "description": a.description,
            "error_message": "",
            "error_traceback": "",
        });
        let Value::Object(m) = &mut v else {
            return v;
        };
        match a.kind {
            AccountKind::Service => {
                m.insert("token".into(), Value::Null);
                m.insert("expires_at".into(), Value::Null);
                m.insert(
                    "customer_abbreviation".into(),
                    json!(customer.map(|c| c.abbreviation.clone())),
                );
                m.insert("preferred_identifier".into(), json!(a.username));
            }
            AccountKind::Course => {
                m.insert(
                    "project_slug".into(),
                    json!(project.map(|p| p.slug.clone())),
                );
                m.insert("project_start_date".into(), Value::Null);
                m.insert(
                    "project_end_date".into(),
                    json!(project.and_then(|p| p.end_date.clone())),
                );
                m.insert("user_uuid".into(), json!(a.user.map(|u| h(&u))));
            }
        }
        v
    }
}

fn staff(ctx: &Ctx) -> ApiResult<()> {
    if ctx.store().is_staff(&ctx.user) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

async fn create_account(ctx: Ctx, body: Body) -> ApiResult<Response> {
    staff(&ctx)?;
    let kind: AccountKind = serde_json::from_value(json!(body.required_str("kind")?))
        .map_err(|_| ApiError::field("kind", "Expected \"service\" or \"course\"."))?;
    let project = body
        .uuid_ref("project")?
        .ok_or_else(|| ApiError::required("project"))?;
    let user = body.uuid_ref("user")?;
    let username = body.required_str("username")?.to_string();
    let email = body.str("email").unwrap_or_default().to_string();
    let description = body.str("description").unwrap_or_default().to_string();
    let v = ctx.mutate(|s| {
        let uuid = s.add_project_account(kind, project, &username, &email, &description, user)?;
        let a = s
            .project_accounts
            .get(&uuid)
            .ok_or_else(ApiError::not_found)?;
        Ok(s.render_project_account(a))
    })?;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

async fn close_account(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    staff(&ctx)?;
    let id = path_uuid(&id)?;
    let v = ctx.mutate(|s| {
        s.close_project_account(&id)?;
        let a = s
            .project_accounts
            .get(&id)
            .ok_or_else(ApiError::not_found)?;
        Ok(s.render_project_account(a))
    })?;
    Ok(axum::Json(v).into_response())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/__sim/project-accounts", post(create_account))
        .route("/__sim/project-accounts/{uuid}/close", post(close_account))
}
