//! OpenNebula's XML-RPC API on `http-kit` (TLS, CA bundle, proxy, timeouts, retries, request
//! counter). Every call sends the session string first and gets `[success, body, code, ...]`;
//! failures map once to [`BackendError`] by OpenNebula's error code.
//!
//! Retries: reads are idempotent and retried after transport errors; so are writes that are
//! idempotent by nature (quota, template update, chown, actions, deletes of what is gone).
//! An `allocate` is never sent twice blindly: after a lost reply the object is looked up by
//! name and reused, and a retry that meets "already taken" reuses it too ([`OneRpc::allocate`]).
//! A name taken before our first attempt is someone else's object ([`Origin::Found`]).

use std::time::Duration;

use agent_config::Secret;
use backend_api::BackendError;
use http_kit::xml::{self, Element};
use http_kit::xmlrpc::{self, Value};
use http_kit::{HttpError, HttpSettings, Request, RestClient, RetryPolicy};

use crate::settings::{OneSettings, Verify};

pub const AUTHENTICATION: i64 = 0x100;
pub const AUTHORIZATION: i64 = 0x200;
pub const NO_EXISTS: i64 = 0x400;
pub const ACTION: i64 = 0x800;
pub const API: i64 = 0x1000;
pub const INTERNAL: i64 = 0x2000;

/// A failed call: OpenNebula's answer, or the transport's.
#[derive(Debug)]
pub enum OneError {
    /// `[false, message, code]`.
    Api {
        code: i64,
        message: String,
    },
    Http(HttpError),
    /// An answer that is not what OpenNebula sends.
    Decode(String),
}

impl OneError {
    pub fn no_exists(&self) -> bool {
        matches!(
            self,
            OneError::Api {
                code: NO_EXISTS,
                ..
            }
        )
    }
    pub fn taken(&self) -> bool {
        matches!(self, OneError::Api { message, .. } if message.contains("already taken"))
    }
    pub fn assigned(&self) -> bool {
        matches!(self, OneError::Api { message, .. } if message.contains("already assigned") || message.contains("already an administrator"))
    }
    /// The reply may have been lost after OpenNebula acted.
    pub fn transport(&self) -> bool {
        matches!(self, OneError::Http(e) if e.is_transient())
    }
}

impl std::fmt::Display for OneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OneError::Api { code, message } => write!(f, "OpenNebula error 0x{code:x}: {message}"),
            OneError::Http(e) => write!(f, "{e}"),
            OneError::Decode(d) => write!(f, "unexpected OpenNebula answer: {d}"),
        }
    }
}

impl From<OneError> for BackendError {
    fn from(e: OneError) -> Self {
        match e {
            OneError::Http(h) => BackendError::from(h),
            OneError::Api {
                code: AUTHENTICATION,
                message,
            } => BackendError::Config(format!(
                "OpenNebula refused the session ({message}); check backend_settings.credentials (`user:password` of an administrator)"
            )),
            OneError::Api {
                code: AUTHORIZATION,
                message,
            } => BackendError::Permanent(format!(
                "OpenNebula: not allowed ({message}); the user of backend_settings.credentials needs oneadmin rights"
            )),
            OneError::Api { code, message } if code < 0 => BackendError::Permanent(format!(
                "OpenNebula does not know this call ({message}); the backend needs OpenNebula 6 or later"
            )),
            other => BackendError::Permanent(other.to_string()),
        }
    }
}

pub type OneResult<T> = Result<T, OneError>;

/// The XML-RPC client of one offering.
#[derive(Clone)]
pub struct OneRpc {
    rest: RestClient,
    session: Secret,
}

impl std::fmt::Debug for OneRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneRpc")
            .field("url", &self.rest.base_url())
            .finish_non_exhaustive()
    }
}

impl OneRpc {
    pub fn new(
        offering: &str,
        s: &OneSettings,
        proxy: Option<&str>,
    ) -> Result<OneRpc, BackendError> {
        let mut http = HttpSettings::new(
            format!("offering '{offering}'"),
            "opennebula",
            s.api_url.clone(),
        );
        match &s.verify {
            Verify::On => {}
            Verify::Off => http.verify_tls = false,
            Verify::CaBundle(p) => http.ca_bundle = Some(p.clone()),
        }
        http.proxy = proxy.map(str::to_owned);
        http.timeout = s.timeout;
        http.retry = RetryPolicy {
            max_retries: s.max_retries,
            base_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        let rest = RestClient::new(&http).map_err(BackendError::from)?;
        Ok(OneRpc {
            rest,
            session: s.credentials.clone(),
        })
    }

    /// One call. `retry`: the call may be sent again after a transport error.
    pub async fn call(&self, method: &str, params: Vec<Value>, retry: bool) -> OneResult<Value> {
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(Value::String(self.session.expose().to_owned()));
        all.extend(params);
        let body = xmlrpc::call_body(method, &all);
        let resp = self
            .rest
            .send(Request::post("").xml(body).idempotent(retry))
            .await
            .map_err(OneError::Http)?;
        let text = String::from_utf8(resp.body)
            .map_err(|_| OneError::Decode(format!("{method}: not UTF-8")))?;
        let reply = match xmlrpc::parse_response(&text) {
            Ok(v) => v,
            Err(xmlrpc::XmlRpcError::Fault { code, message }) => {
                return Err(OneError::Api { code, message });
            }
            Err(e) => return Err(OneError::Decode(format!("{method}: {e}"))),
        };
        let items = reply
            .as_array()
            .ok_or_else(|| OneError::Decode(format!("{method}: not an array")))?;
        match items.first() {
            Some(Value::Bool(true)) => items
                .get(1)
                .cloned()
                .ok_or_else(|| OneError::Decode(format!("{method}: no result"))),
            Some(Value::Bool(false)) => Err(OneError::Api {
                code: items.get(2).and_then(Value::as_i64).unwrap_or(0),
                message: items
                    .get(1)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            }),
            _ => Err(OneError::Decode(format!("{method}: no success flag"))),
        }
    }

    /// A call answering an object id.
    pub async fn call_id(&self, method: &str, params: Vec<Value>, retry: bool) -> OneResult<i64> {
        let v = self.call(method, params, retry).await?;
        v.as_i64()
            .ok_or_else(|| OneError::Decode(format!("{method}: no id")))
    }

    /// A read answering an XML document.
    pub async fn doc(&self, method: &str, params: Vec<Value>) -> OneResult<Element> {
        let v = self.call(method, params, true).await?;
        let text = v
            .as_str()
            .ok_or_else(|| OneError::Decode(format!("{method}: no document")))?;
        xml::parse(text).map_err(|e| OneError::Decode(format!("{method}: {e}")))
    }

    /// `(id, name)` of every object of a pool (`one.grouppool.info`, ...), by element name.
    pub async fn names(
        &self,
        method: &str,
        params: Vec<Value>,
        element: &str,
    ) -> OneResult<Vec<(i64, String)>> {
        let pool = self.doc(method, params).await?;
        Ok(pool
            .children(element)
            .filter_map(|e| {
                Some((
                    e.text_of("ID")?.parse().ok()?,
                    e.text_of("NAME")?.to_owned(),
                ))
            })
            .collect())
    }

    /// The id of the object called `name` in a pool.
    pub async fn find(&self, pool: Pool, name: &str) -> OneResult<Option<i64>> {
        let (method, params, element) = pool.list();
        Ok(self
            .names(method, params, element)
            .await?
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| id))
    }

    /// Allocates the object called `name`, or reuses the one that exists: after "already taken"
    /// and after a transport error (looked up by name; absent: sent again, at most 4 times).
    /// The [`Origin`] says whose the object is: only `Made` and `Recovered` are ours to roll back.
    pub async fn allocate(
        &self,
        pool: Pool,
        name: &str,
        method: &str,
        params: Vec<Value>,
    ) -> OneResult<(i64, Origin)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_id(method, params.clone(), false).await {
                Ok(id) => return Ok((id, Origin::Made)),
                Err(e) if e.taken() => {
                    // Taken at the first attempt: it existed before we asked. Taken at a retry:
                    // most likely our own earlier attempt whose reply was lost.
                    let origin = if attempt == 1 {
                        Origin::Found
                    } else {
                        Origin::Recovered
                    };
                    if let Some(id) = self.find(pool, name).await? {
                        return Ok((id, origin));
                    }
                    return Err(e);
                }
                Err(e) if e.transport() && attempt < 4 => {
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    if let Some(id) = self.find(pool, name).await? {
                        return Ok((id, Origin::Recovered));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A write whose repetition is harmless; "already assigned" counts as done.
    pub async fn idempotent(&self, method: &str, params: Vec<Value>) -> OneResult<()> {
        match self.call(method, params, true).await {
            Ok(_) => Ok(()),
            Err(e) if e.assigned() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A delete; an object already gone counts as deleted (also when a lost reply hid it).
    pub async fn delete(&self, method: &str, id: i64) -> OneResult<()> {
        match self.call(method, vec![Value::Int(id)], true).await {
            Ok(_) => Ok(()),
            Err(e) if e.no_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Whose an allocated object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Made by this call.
    Made,
    /// Made by an earlier attempt of this call whose reply was lost (found by name after it).
    Recovered,
    /// Already there before this call: another agent's, an earlier run's, or an operator's.
    Found,
}

impl Origin {
    /// Made by this agent now, so a rollback may remove it.
    pub fn ours(self) -> bool {
        self != Origin::Found
    }
}

/// The pools looked up by name.
#[derive(Clone, Copy, Debug)]
pub enum Pool {
    Group,
    Vdc,
    Vnet,
    Vrouter,
    SecGroup,
    User,
    Vm,
}

impl Pool {
    fn list(self) -> (&'static str, Vec<Value>, &'static str) {
        let all3 = || vec![Value::Int(-2), Value::Int(-1), Value::Int(-1)];
        match self {
            Pool::Group => ("one.grouppool.info", vec![], "GROUP"),
            Pool::Vdc => ("one.vdcpool.info", vec![], "VDC"),
            Pool::Vnet => (
                "one.vnpool.info",
                vec![
                    Value::Int(-2),
                    Value::Int(-1),
                    Value::Int(-1),
                    Value::Int(-1),
                ],
                "VNET",
            ),
            Pool::Vrouter => ("one.vrouterpool.info", all3(), "VROUTER"),
            Pool::SecGroup => ("one.secgrouppool.info", all3(), "SECURITY_GROUP"),
            Pool::User => ("one.userpool.info", vec![], "USER"),
            Pool::Vm => (
                "one.vmpool.info",
                vec![
                    Value::Int(-2),
                    Value::Int(-1),
                    Value::Int(-1),
                    Value::Int(-1),
                ],
                "VM",
            ),
        }
    }
}

/// `"` and `\` escaped for a value inside an OpenNebula template.
pub fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}
