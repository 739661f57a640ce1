//! Typed async client for the subset of the Waldur Mastermind REST API the site agent uses.
//!
//! - [`WaldurClient`]: auth (static token or OIDC client credentials), TLS, proxy, timeouts,
//!   Link-header pagination, one method per endpoint ([`api`]).
//! - [`WaldurError`]: classified errors ([`WaldurError::is_transient`], [`WaldurError::is_not_found`]);
//!   never carries credentials.
//! - [`models`]: tolerant wire DTOs; [`ids`]: UUID normalisation (dashed or hex → 32 hex).
//!
//! This crate knows nothing about backends.

pub mod api;
pub mod client;
pub mod error;
pub mod ids;
pub mod models;

pub use api::{ListingFingerprint, OfferingUserFilter, ResourceFilter};
pub use client::{
    Auth, ClientOptions, DEFAULT_MAX_PAGES, DEFAULT_MAX_RESPONSE_BYTES, MAX_PAGES_ENV,
    MAX_RESPONSE_MB_ENV, PAGE_SIZE, Params, Secret, WaldurClient, strip_api_suffix,
};
pub use error::{ErrorKind, WaldurError, mask_url_password};
pub use ids::{InvalidUuid, WaldurUuid, normalize_uuid, uuid_from_url};
pub use models::*;
