//! The `waldur-site-agent` binary's building blocks: command line, logging with redaction,
//! metrics/health server, the tick-loop scheduler and the backend registry. `main.rs` wires them;
//! the modes themselves come from `agent-core` through [`scheduler::ModeRunner`].

pub mod backends;
pub mod cli;
pub mod healthz;
pub mod leases;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod modes;
pub mod scheduler;
pub mod watchdog;
