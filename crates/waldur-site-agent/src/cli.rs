//! The command line: a drop-in for the Python agent's `-m MODE -c FILE`, plus subcommands for the
//! helper tools upstream ships as separate executables.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

pub const AFTER_HELP: &str = "\
MODES (-m, several allowed: -m order_process,report):
  order_process    fetch pending orders from Waldur and apply them to the site (default)
  report           report usage of every resource to Waldur
  membership_sync  sync project members, resource status and limits
  event_process    react to Waldur events over STOMP/MQTT, with periodic reconciliation

ENVIRONMENT:
  WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES     order_process period (default 5; decimals allowed)
  WALDUR_SITE_AGENT_REPORT_PERIOD_MINUTES            report period (default 30)
  WALDUR_SITE_AGENT_MEMBERSHIP_SYNC_PERIOD_MINUTES   membership_sync period (default 5)
  WALDUR_SITE_AGENT_RECONCILIATION_PERIOD_MINUTES    event_process reconciliation sweep period (default 60)
  WALDUR_SITE_AGENT_SHUTDOWN_TIMEOUT_SECONDS         on SIGTERM, wait this long for items in hand (default 10)
  WALDUR_SITE_AGENT_LOG_LEVEL                        overrides log_level from the config file
  SENTRY_ENVIRONMENT                                 Sentry environment name (with sentry_dsn)
  WALDUR_SITE_AGENT_MAX_RESPONSE_MB                  largest Waldur response body read, in MiB (default 64)
  WALDUR_SITE_AGENT_MAX_PAGES                        most pages one Waldur listing follows (default 10000)
  WALDUR_SITE_AGENT_HEARTBEAT_PATH                   heartbeat file (default: heartbeat_path from the config)
  WALDUR_SITE_AGENT_METRICS_LISTEN                   serve /metrics and /healthz here (overrides metrics_listen)
  WALDUR_SITE_AGENT_STOMP_UNHEALTHY_AFTER_MINUTES    event outage that stops the heartbeat (default 15)
  WALDUR_SITE_AGENT_STOMP_HANDLER_STUCK_AFTER_MINUTES  event handler time counted as an outage (default 30)
  WALDUR_SITE_AGENT_RESOURCE_STATUS_RECONCILIATION_MINUTES  event_process status pass period (default 60, 0 = off)
  WALDUR_SITE_AGENT_LEADER_ELECTION                  true: share offerings between replicas through Kubernetes Leases (default false)
  WALDUR_SITE_AGENT_LEASE_API_URL                    API server for the Leases (default: the pod's, in-cluster service account)
  WALDUR_SITE_AGENT_LEASE_TOKEN_FILE / _LEASE_TOKEN  bearer token for that API server (file re-read when it changes)
  WALDUR_SITE_AGENT_LEASE_CA_FILE                    CA bundle for that API server
  WALDUR_SITE_AGENT_LEASE_NAMESPACE                  namespace of the Leases (default: the pod's, else default)
  WALDUR_SITE_AGENT_LEASE_DURATION_SECONDS           lease duration (default 15)
  WALDUR_SITE_AGENT_LEASE_RENEW_SECONDS              renewal period (default a third of the duration)
  WALDUR_SITE_AGENT_LEASE_IDENTITY                   this replica's name (default: host name and pid)
  Config values may reference ${VAR} and ${VAR:-default}; write $${ for a literal ${.

EXAMPLES:
  waldur-site-agent -m order_process -c /etc/waldur/waldur-site-agent-config.yaml
  waldur-site-agent -m order_process,report,membership_sync -c config.yaml
  waldur-site-agent -m report -c config.yaml --once
  waldur-site-agent validate-config -c config.yaml
  waldur-site-agent export-plugin-catalogue -o catalogue.json
  waldur-site-agent healthz -c config.yaml --liveness-only --max-age 300";

#[derive(Debug, Parser)]
#[command(
    name = "waldur-site-agent",
    version,
    about = "Connects a service provider's site (SLURM, OpenStack, ...) to Waldur Mastermind",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Mode(s) to run, comma-separated
    #[arg(
        short = 'm',
        long = "mode",
        global = true,
        value_enum,
        value_delimiter = ',',
        default_value = "order_process"
    )]
    pub modes: Vec<Mode>,

    /// Path to the YAML configuration file
    #[arg(
        short = 'c',
        long = "config-file",
        global = true,
        default_value = "waldur-site-agent-config.yaml"
    )]
    pub config_file: PathBuf,

    /// Run one full cycle of each mode, then exit (0 when every offering was processed)
    #[arg(long)]
    pub once: bool,

    /// Seconds between scheduler ticks (tests)
    #[arg(long, hide = true, default_value_t = 60.0)]
    pub tick_seconds: f64,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration offline: exit 0, or print every problem and exit 1
    ValidateConfig {
        /// Backend names to accept instead of the ones compiled in (tests)
        #[arg(long, hide = true, value_delimiter = ',')]
        known_backends: Option<Vec<String>>,
    },
    /// Print the configuration (secrets masked), the backends and Waldur connectivity
    Diagnostics {
        /// Do not contact Waldur
        #[arg(long)]
        offline: bool,
    },
    /// Create/update the offering components in Waldur from backend_components
    LoadComponents,
    /// Run username generation / offering-user state transitions once
    SyncOfferingUsers,
    /// Liveness/readiness probe: heartbeat file age, then GET /api/users/me/
    Healthz {
        /// Maximum heartbeat age in seconds
        #[arg(long, default_value_t = 300)]
        max_age: u64,
        /// Only check the heartbeat file
        #[arg(long)]
        liveness_only: bool,
        /// Heartbeat file (default: $WALDUR_SITE_AGENT_HEARTBEAT_PATH, else heartbeat_path from
        /// the config, else /tmp/waldur-site-agent-heartbeat)
        #[arg(long)]
        heartbeat_file: Option<PathBuf>,
        /// Seconds the readiness call to Waldur may take (below the probe's own timeout)
        #[arg(long, default_value_t = 5.0)]
        readiness_timeout: f64,
    },
    /// Print the plugin catalogue (JSON): every backend of this build with its roles, settings
    /// schema, component schema and secret fields
    ExportPluginCatalogue {
        /// Write to this file instead of standard output
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Print the version
    Version,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Mode {
    #[value(name = "order_process")]
    OrderProcess,
    #[value(name = "report")]
    Report,
    #[value(name = "membership_sync")]
    MembershipSync,
    #[value(name = "event_process")]
    EventProcess,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::OrderProcess => "order_process",
            Mode::Report => "report",
            Mode::MembershipSync => "membership_sync",
            Mode::EventProcess => "event_process",
        }
    }

    /// The environment variable holding this mode's period, and its default in minutes.
    pub fn period_env(self) -> (&'static str, f64) {
        match self {
            Mode::OrderProcess => ("WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES", 5.0),
            Mode::Report => ("WALDUR_SITE_AGENT_REPORT_PERIOD_MINUTES", 30.0),
            Mode::MembershipSync => ("WALDUR_SITE_AGENT_MEMBERSHIP_SYNC_PERIOD_MINUTES", 5.0),
            Mode::EventProcess => ("WALDUR_SITE_AGENT_RECONCILIATION_PERIOD_MINUTES", 60.0),
        }
    }
}

/// The executable names upstream installs as console scripts (`pip install waldur-site-agent`)
/// that this binary answers to when called by them (a symlink or a copy), with upstream's flags,
/// so existing units, cron lines and probes keep working.
pub const PROGRAM_NAMES: [&str; 5] = [
    "waldur_site_agent",
    "waldur_site_healthz",
    "waldur_site_diagnostics",
    "waldur_site_load_components",
    "waldur_sync_offering_users",
];

/// `waldur_site_healthz`'s default configuration file upstream (`--config-file`).
pub const UPSTREAM_HEALTHZ_CONFIG: &str = "/etc/waldur-site-agent/config.yaml";

/// The command line as `Cli` understands it, from the one the process was started with: when
/// `argv[0]`'s file name is one of upstream's helper executables, the matching subcommand is
/// added. Upstream's helpers take `-m MODE -c FILE` (`waldur_site_diagnostics`,
/// `waldur_site_load_components`, `waldur_sync_offering_users`: the mode only names the user
/// agent) or `--config-file FILE --max-age N --liveness-only` (`waldur_site_healthz`, whose
/// config file defaults to `/etc/waldur-site-agent/config.yaml`). Any other name, including
/// `waldur_site_agent` and `waldur-site-agent`, leaves the arguments as they are.
pub fn dispatch_argv0(args: Vec<OsString>) -> Vec<OsString> {
    let mut args = args.into_iter();
    let Some(argv0) = args.next() else {
        return vec![OsString::from("waldur-site-agent")];
    };
    let rest: Vec<OsString> = args.collect();
    let name = Path::new(&argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("");
    let subcommand = match name {
        "waldur_site_healthz" => "healthz",
        "waldur_site_diagnostics" => "diagnostics",
        "waldur_site_load_components" => "load-components",
        "waldur_sync_offering_users" => "sync-offering-users",
        _ => {
            let mut all = vec![argv0];
            all.extend(rest);
            return all;
        }
    };
    let mut all = vec![OsString::from(name), OsString::from(subcommand)];
    if subcommand == "healthz" && !names_config_file(&rest) {
        all.push(OsString::from("--config-file"));
        all.push(OsString::from(UPSTREAM_HEALTHZ_CONFIG));
    }
    all.extend(rest);
    all
}

/// Whether `args` set the configuration file (`-c F`, `-cF`, `--config-file F`,
/// `--config-file=F`).
fn names_config_file(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == "--config-file" || a.starts_with("--config-file=") || a.starts_with("-c")
    })
}

/// A period in minutes from `value` (the env var's text), `default` when absent or blank.
pub fn parse_period_minutes(name: &str, value: Option<&str>, default: f64) -> Result<f64, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => match text.parse::<f64>() {
            Ok(m) if m.is_finite() && m > 0.0 => Ok(m),
            _ => Err(format!(
                "{name}={text:?} is not a positive number of minutes"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_comma_separated() {
        let cli = Cli::try_parse_from(["a", "-m", "order_process,report", "-c", "x.yaml"])
            .expect("parses");
        assert_eq!(cli.modes, [Mode::OrderProcess, Mode::Report]);
        assert_eq!(cli.config_file, PathBuf::from("x.yaml"));
        let default = Cli::try_parse_from(["a"]).expect("parses");
        assert_eq!(default.modes, [Mode::OrderProcess]);
        assert_eq!(
            default.config_file,
            PathBuf::from("waldur-site-agent-config.yaml")
        );
        assert!(Cli::try_parse_from(["a", "-m", "orders"]).is_err());
    }

    #[test]
    fn config_flag_works_after_the_subcommand() {
        let cli = Cli::try_parse_from(["a", "healthz", "-c", "y.yaml", "--liveness-only"])
            .expect("parses");
        assert_eq!(cli.config_file, PathBuf::from("y.yaml"));
        assert!(matches!(
            cli.command,
            Some(Command::Healthz {
                liveness_only: true,
                max_age: 300,
                ..
            })
        ));
    }

    #[test]
    fn periods_accept_floats() {
        assert_eq!(parse_period_minutes("X", Some("0.5"), 5.0), Ok(0.5));
        assert_eq!(parse_period_minutes("X", None, 5.0), Ok(5.0));
        assert_eq!(parse_period_minutes("X", Some(" "), 5.0), Ok(5.0));
        assert!(parse_period_minutes("X", Some("-1"), 5.0).is_err());
        assert!(parse_period_minutes("X", Some("soon"), 5.0).is_err());
    }

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn parse_as(words: &[&str]) -> Cli {
        Cli::try_parse_from(dispatch_argv0(argv(words))).expect("parses")
    }

    #[test]
    fn upstream_program_names_dispatch_to_subcommands() {
        let cli = parse_as(&["/usr/bin/waldur_site_agent", "-m", "report", "-c", "a.yaml"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.modes, [Mode::Report]);
        assert_eq!(cli.config_file, PathBuf::from("a.yaml"));

        let cli = parse_as(&["waldur_site_diagnostics", "-m", "report", "-c", "b.yaml"]);
        assert!(matches!(
            cli.command,
            Some(Command::Diagnostics { offline: false })
        ));
        assert_eq!(cli.config_file, PathBuf::from("b.yaml"));

        let cli = parse_as(&[
            "/opt/bin/waldur_site_load_components",
            "--config-file",
            "c.yaml",
        ]);
        assert!(matches!(cli.command, Some(Command::LoadComponents)));
        assert_eq!(cli.config_file, PathBuf::from("c.yaml"));

        let cli = parse_as(&["waldur_sync_offering_users", "-c", "d.yaml"]);
        assert!(matches!(cli.command, Some(Command::SyncOfferingUsers)));
        assert_eq!(cli.config_file, PathBuf::from("d.yaml"));

        // with no -c, upstream's helpers read waldur-site-agent-config.yaml like the agent
        let cli = parse_as(&["waldur_sync_offering_users"]);
        assert_eq!(
            cli.config_file,
            PathBuf::from("waldur-site-agent-config.yaml")
        );
    }

    #[test]
    fn healthz_name_takes_upstreams_flags_and_default_config() {
        let cli = parse_as(&["waldur_site_healthz", "--liveness-only", "--max-age", "60"]);
        assert!(matches!(
            cli.command,
            Some(Command::Healthz {
                liveness_only: true,
                max_age: 60,
                ..
            })
        ));
        assert_eq!(cli.config_file, PathBuf::from(UPSTREAM_HEALTHZ_CONFIG));
        for given in [
            &["waldur_site_healthz", "--config-file", "e.yaml"][..],
            &["waldur_site_healthz", "--config-file=e.yaml"][..],
            &["waldur_site_healthz", "-c", "e.yaml"][..],
        ] {
            let cli = parse_as(given);
            assert_eq!(cli.config_file, PathBuf::from("e.yaml"), "{given:?}");
            assert!(matches!(cli.command, Some(Command::Healthz { .. })));
        }
    }

    #[test]
    fn other_names_leave_the_arguments_alone() {
        for name in ["waldur-site-agent", "/x/waldur_site_agent", "agent", ""] {
            let given = argv(&[name, "validate-config", "-c", "f.yaml"]);
            assert_eq!(dispatch_argv0(given.clone()), given);
        }
        assert_eq!(dispatch_argv0(Vec::new()), argv(&["waldur-site-agent"]));
        // unknown flags for a helper are still errors, not ignored
        assert!(
            Cli::try_parse_from(dispatch_argv0(argv(&["waldur_site_healthz", "--bogus"]))).is_err()
        );
    }
}
