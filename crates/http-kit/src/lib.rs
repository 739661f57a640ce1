//! The one HTTP kit of the agent: every REST backend (Keystone today; OKD, Rancher, Keycloak,
//! OpenNebula next) and the Waldur client's OIDC login are built on it.
//!
//! - [`HttpSettings`] → [`RestClient`]: base URL, TLS verification on/off or a CA bundle,
//!   `global_proxy`, connect and whole-request timeouts, a response-size cap, a request counter
//!   per backend ([`request_counts`], for `bench/` and `/metrics`).
//! - [`TokenSource`]: how a request is authenticated — [`StaticToken`], [`FileToken`] (re-read
//!   when the file changes, e.g. a Kubernetes service-account token), [`OAuth2Token`] (client
//!   credentials, refresh token or password grant) and [`LoginToken`] (an API's own login with an
//!   expiry, renewed before it runs out and once more after a 401, as Keystone does).
//! - [`RetryPolicy`]: exponential backoff with jitter, applied only to idempotent requests and
//!   only for errors classed transient (connect, timeout, 5xx, 429). A create is never sent twice.
//! - [`HttpError`]: one classification of status and transport errors; each API gives a hook that
//!   reads its error body ([`ErrorBodyHook`]). `backend_api` maps it to `BackendError` in one place.
//! - [`xml`] and [`xmlrpc`]: a bounded XML tree for untrusted input and the XML-RPC codec
//!   (OpenNebula), shared by the clients and the site doubles.
//! - Secrets are [`Secret`]s: no `Debug` of this crate prints one.

mod client;
mod error;
mod retry;
mod token;
pub mod xml;
pub mod xmlrpc;

pub use agent_config::Secret;
pub use client::{
    ErrorBodyHook, HttpSettings, Request, Response, RestClient, build_reqwest, request_count,
    request_counts,
};
pub use error::{HttpError, HttpErrorKind, HttpResult};
pub use retry::RetryPolicy;
pub use token::{
    AuthScheme, FileToken, Issued, Login, LoginToken, OAuth2Grant, OAuth2Token, StaticToken,
    TokenSource, still_fresh,
};

/// Install the ring crypto provider for rustls (once; a provider already installed is kept).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
