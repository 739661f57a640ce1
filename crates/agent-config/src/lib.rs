//! Configuration of the agent: upstream's YAML file format, loaded, expanded and validated.
//!
//! [`model`] holds the typed configuration every other crate reads. Loading (`${VAR}` expansion in
//! string values only, validation with file + key path in every error, warnings for unknown keys)
//! lives in [`load`].

pub mod model;

pub use model::{
    AccountingType, AgentConfig, BackendComponent, BackendRole, LogShipping, OfferingConfig, Secret,
};
