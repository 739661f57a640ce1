//! Configuration of the agent: upstream's YAML file format, loaded, expanded and validated.
//!
//! [`model`] holds the typed configuration every other crate reads. Loading (`${VAR}` expansion in
//! string values only, validation with file + key path in every error, warnings for unknown keys)
//! lives in [`load`]. [`names`] is the one rule for names that reach a site (also applied to the
//! configured prefixes and account names).

pub mod expand;
pub mod load;
pub mod model;
pub mod names;
pub mod redact;

pub use load::{
    ConfigError, ConfigErrors, ConfigIssue, ConfigWarning, Loaded, MAX_CONFIG_FILE_BYTES,
    SecretValues, WALDUR_COMPONENT_FIELDS, is_secret_key, load_file, load_str, load_str_with_env,
    secret_values_of, validate_backend_names,
};
pub use model::{
    AccountingType, AgentConfig, BackendComponent, BackendRole, LogShipping, OfferingConfig, Secret,
};
pub use redact::Redactor;
