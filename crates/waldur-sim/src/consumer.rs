//! Consumer-side helpers that go through the real HTTP API, as a Waldur user would: place
//! orders, change limits, terminate, manage project members. Used by tests and the demo CLI.

use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("Waldur answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected response: {0}")]
    Unexpected(String),
}

/// A small authenticated client; the token never appears in Debug output.
#[derive(Clone)]
pub struct ConsumerClient {
    api_url: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for ConsumerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerClient")
            .field("api_url", &self.api_url)
            .field("token", &"***")
            .finish()
    }
}

impl ConsumerClient {
    pub fn new(api_url: &str, token: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let api_url = format!("{}/", api_url.trim_end_matches('/'));
        Self {
            api_url,
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ConsumerError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.api_url, path))
            .header("Authorization", format!("Token {}", self.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(ConsumerError::Status {
                status: status.as_u16(),
                body: text,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ConsumerError::Unexpected(e.to_string()))
    }

    pub async fn get(&self, path: &str) -> Result<Value, ConsumerError> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, ConsumerError> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Places a Create order; returns the order UUID (hex).
    pub async fn create_order(
        &self,
        offering: &str,
        project: &str,
        plan: Option<&str>,
        limits: Map<String, Value>,
        name: &str,
    ) -> Result<String, ConsumerError> {
        let mut body = json!({
            "offering": offering,
            "project": project,
            "limits": limits,
            "attributes": {"name": name},
        });
        if let Some(p) = plan {
            body["plan"] = json!(p);
        }
        let v = self.post("marketplace-orders/", body).await?;
        uuid_field(&v, "uuid")
    }

    pub async fn approve_by_consumer(&self, order: &str) -> Result<(), ConsumerError> {
        self.post(
            &format!("marketplace-orders/{order}/approve_by_consumer/"),
            json!({}),
        )
        .await
        .map(|_| ())
    }

    pub async fn cancel_order(&self, order: &str) -> Result<(), ConsumerError> {
        self.post(&format!("marketplace-orders/{order}/cancel/"), json!({}))
            .await
            .map(|_| ())
    }

    pub async fn order(&self, order: &str) -> Result<Value, ConsumerError> {
        self.get(&format!("marketplace-orders/{order}/")).await
    }

    pub async fn resource(&self, resource: &str) -> Result<Value, ConsumerError> {
        self.get(&format!("marketplace-resources/{resource}/"))
            .await
    }

    /// Creates an Update order; returns its UUID.
    pub async fn update_limits(
        &self,
        resource: &str,
        limits: Map<String, Value>,
    ) -> Result<String, ConsumerError> {
        let v = self
            .post(
                &format!("marketplace-resources/{resource}/update_limits/"),
                json!({"limits": limits}),
            )
            .await?;
        uuid_field(&v, "order_uuid")
    }

    /// Creates an Update order switching the resource to another plan; returns its UUID.
    pub async fn switch_plan(&self, resource: &str, plan: &str) -> Result<String, ConsumerError> {
        let v = self
            .post(
                &format!("marketplace-resources/{resource}/switch_plan/"),
                json!({"plan": plan}),
            )
            .await?;
        uuid_field(&v, "order_uuid")
    }

    /// Creates a Terminate order; returns its UUID.
    pub async fn terminate(&self, resource: &str) -> Result<String, ConsumerError> {
        let v = self
            .post(
                &format!("marketplace-resources/{resource}/terminate/"),
                json!({}),
            )
            .await?;
        uuid_field(&v, "order_uuid")
    }

    pub async fn add_user_to_project(
        &self,
        project: &str,
        user: &str,
        role: &str,
    ) -> Result<(), ConsumerError> {
        self.post(
            &format!("projects/{project}/add_user/"),
            json!({"user": user, "role": role}),
        )
        .await
        .map(|_| ())
    }

    pub async fn remove_user_from_project(
        &self,
        project: &str,
        user: &str,
        role: &str,
    ) -> Result<(), ConsumerError> {
        self.post(
            &format!("projects/{project}/delete_user/"),
            json!({"user": user, "role": role}),
        )
        .await
        .map(|_| ())
    }
}

fn uuid_field(v: &Value, key: &str) -> Result<String, ConsumerError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ConsumerError::Unexpected(format!("no {key} in {v}")))
}

/// Parses `cpu=10` style limit arguments.
pub fn parse_limits(args: &[String]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("limit {a:?} is not NAME=NUMBER"))?;
        let n: f64 = v
            .parse()
            .map_err(|_| format!("limit {a:?} is not NAME=NUMBER"))?;
        out.insert(
            k.to_string(),
            if n.fract() == 0.0 {
                json!(n as i64)
            } else {
                json!(n)
            },
        );
    }
    Ok(out)
}
