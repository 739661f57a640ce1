//! agent-config
