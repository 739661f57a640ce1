//! agent-events
