//! `waldur-site-agent`: the binary. Command line, logging, metrics, the tick loop; the modes
//! themselves live in `agent-core`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_config::{Loaded, OfferingConfig};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use waldur_site_agent::cli::{self, Cli, Command, Mode};
use waldur_site_agent::logging::{self, Redactor};
use waldur_site_agent::metrics::{self, Metrics};
use waldur_site_agent::modes::{
    EventListeners, EventlessPolling, Offerings, PollingRunner, StatusReconciliation,
};
use waldur_site_agent::scheduler::{self, ModeRunner, Scheduler};
use waldur_site_agent::{backends, healthz};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const LOG_LEVEL_ENV: &str = "WALDUR_SITE_AGENT_LOG_LEVEL";
const STATUS_RECONCILIATION_ENV: &str = "WALDUR_SITE_AGENT_RESOURCE_STATUS_RECONCILIATION_MINUTES";
const HEARTBEAT_PATH_ENV: &str = "WALDUR_SITE_AGENT_HEARTBEAT_PATH";
const METRICS_LISTEN_ENV: &str = "WALDUR_SITE_AGENT_METRICS_LISTEN";

fn main() -> ExitCode {
    waldur_site_agent::memory::return_large_blocks();
    let cli = Cli::parse_from(cli::dispatch_argv0(std::env::args_os().collect()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match &cli.command {
        Some(Command::Version) => {
            println!("waldur-site-agent {VERSION}");
            ExitCode::SUCCESS
        }
        Some(Command::ExportPluginCatalogue { output }) => {
            export_plugin_catalogue(output.as_deref())
        }
        Some(Command::ValidateConfig { known_backends }) => {
            validate_config(&cli.config_file, known_backends.as_deref())
        }
        Some(Command::Healthz {
            max_age,
            liveness_only,
            heartbeat_file,
            readiness_timeout,
        }) => {
            run_healthz(
                &cli.config_file,
                Duration::from_secs(*max_age),
                *liveness_only,
                heartbeat_file.as_deref(),
                Duration::from_secs_f64(readiness_timeout.max(0.1)),
            )
            .await
        }
        Some(Command::Diagnostics { offline }) => diagnostics(&cli, *offline).await,
        Some(Command::LoadComponents) => load_components(&cli.config_file).await,
        Some(Command::SyncOfferingUsers) => sync_offering_users(&cli.config_file).await,
        None => run_agent(&cli).await,
    }
}

/// `export-plugin-catalogue`: the catalogue as pretty JSON, to `output` or stdout. Needs no
/// configuration file.
fn export_plugin_catalogue(output: Option<&Path>) -> ExitCode {
    let catalogue = backend_api::spec::catalogue(VERSION, &backends::registry().specs());
    let text = match serde_json::to_string_pretty(&catalogue) {
        Ok(t) => t + "\n",
        Err(e) => {
            eprintln!("cannot render the catalogue: {e}");
            return ExitCode::FAILURE;
        }
    };
    let written = match output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to standard output: {e}")),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Load the config or print every problem (and the warnings) to stderr.
fn load_or_report(path: &Path) -> Option<Loaded> {
    match agent_config::load_file(path) {
        Ok(l) => Some(l),
        Err(e) => {
            let mut err = std::io::stderr().lock();
            for w in &e.warnings {
                let _ = writeln!(err, "warning: {w}");
            }
            for problem in &e.errors {
                let _ = writeln!(err, "{problem}");
            }
            None
        }
    }
}

fn validate_config(path: &Path, known_override: Option<&[String]>) -> ExitCode {
    let origin = path.display().to_string();
    let Some(loaded) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    let registry = backends::registry();
    let errors = match known_override {
        Some(list) => {
            let names: Vec<&str> = list.iter().map(String::as_str).collect();
            agent_config::validate_backend_names(
                &loaded.config,
                |role, name| {
                    names.contains(&name)
                        || (role == agent_config::BackendRole::UsernameManagement && name == "base")
                },
                &names,
            )
        }
        None => agent_config::validate_backend_names(
            &loaded.config,
            |role, name| registry.knows(role, name),
            &registry.names(),
        ),
    };
    let (backend_errors, backend_warnings) = check_backends(&loaded.config, &registry);
    let errors: Vec<_> = errors.into_iter().chain(backend_errors).collect();
    let warnings: Vec<_> = loaded
        .warnings
        .iter()
        .cloned()
        .chain(
            backend_warnings
                .into_iter()
                .map(|w| w.in_file(origin.clone())),
        )
        .collect();
    let mut err = std::io::stderr().lock();
    for w in &warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    for e in &errors {
        let _ = writeln!(err, "{}", e.clone().in_file(origin.clone()));
    }
    if errors.is_empty() {
        println!(
            "{origin}: OK ({} offering(s), {} warning(s))",
            loaded.config.offerings.len(),
            warnings.len()
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Each offering against the declarations of the backends it names, offline: roles the backend
/// lacks and wrong values are errors, unknown `backend_settings` keys warnings (key paths under
/// `offerings[i]`, no origin yet).
fn check_backends(
    config: &agent_config::AgentConfig,
    registry: &backend_api::Registry,
) -> (
    Vec<agent_config::ConfigIssue>,
    Vec<agent_config::ConfigIssue>,
) {
    let specs = registry.specs();
    let issue = |i: usize, s: backend_api::spec::SettingIssue| agent_config::ConfigIssue {
        origin: String::new(),
        line: None,
        path: format!("offerings[{i}].{}", s.path),
        reason: s.reason,
    };
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for (i, offering) in config.offerings.iter().enumerate() {
        let check = backend_api::spec::check_offering(offering, &specs);
        errors.extend(check.errors.into_iter().map(|s| issue(i, s)));
        warnings.extend(check.warnings.into_iter().map(|s| issue(i, s)));
    }
    (errors, warnings)
}

/// Contexts for a helper tool (User-Agent of `mode`), or every problem printed.
async fn tool_contexts(
    config: &Path,
    mode: Mode,
) -> Option<(Loaded, Vec<Arc<agent_core::OfferingContext>>)> {
    let loaded = load_or_report(config)?;
    let agent = Arc::new(loaded.config.clone());
    match Offerings::new(
        agent.clone(),
        Arc::new(backends::registry_for(&agent)),
        mode,
    ) {
        Ok(offerings) => {
            let contexts = offerings.contexts().await;
            Some((loaded, contexts))
        }
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            None
        }
    }
}

async fn load_components(config: &Path) -> ExitCode {
    let Some((loaded, contexts)) = tool_contexts(config, Mode::OrderProcess).await else {
        return ExitCode::FAILURE;
    };
    let redactor = Redactor::new(loaded.secrets.iter());
    let mut ok = contexts.len() == loaded.config.offerings.len();
    for ctx in &contexts {
        match agent_core::tools::load_components(ctx).await {
            Ok(report) => {
                println!(
                    "{}: created [{}], updated [{}], only in Waldur [{}]",
                    ctx.name(),
                    report.created.join(", "),
                    report.updated.join(", "),
                    report.only_in_waldur.join(", ")
                );
                for (component, error) in &report.errors {
                    println!(
                        "{}: component {component}: {}",
                        ctx.name(),
                        redactor.scrub(error)
                    );
                }
                ok &= report.ok();
            }
            Err(e) => {
                println!("{}: {}", ctx.name(), redactor.scrub(&e.to_string()));
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn sync_offering_users(config: &Path) -> ExitCode {
    let Some((loaded, contexts)) = tool_contexts(config, Mode::MembershipSync).await else {
        return ExitCode::FAILURE;
    };
    let redactor = Redactor::new(loaded.secrets.iter());
    let mut ok = contexts.len() == loaded.config.offerings.len();
    for ctx in &contexts {
        match agent_core::tools::sync_offering_users(ctx).await {
            Ok(run) => {
                println!(
                    "{}: username generation {}, {} offering user(s) considered, {} changed",
                    ctx.name(),
                    if run.generation_enabled {
                        "enabled"
                    } else {
                        "not enabled for this offering"
                    },
                    run.considered,
                    run.changed
                );
                for (user, error) in &run.errors {
                    println!(
                        "{}: offering user {user}: {}",
                        ctx.name(),
                        redactor.scrub(error)
                    );
                }
                ok &= run.errors.is_empty();
            }
            Err(e) => {
                println!("{}: {}", ctx.name(), redactor.scrub(&e.to_string()));
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The heartbeat file: `WALDUR_SITE_AGENT_HEARTBEAT_PATH` (upstream 1.0.8; agents sharing a
/// host need one each), else the config's `heartbeat_path`, else the upstream default.
fn heartbeat_path(configured: Option<&str>) -> PathBuf {
    std::env::var(HEARTBEAT_PATH_ENV)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .or_else(|| configured.map(str::to_owned))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/waldur-site-agent-heartbeat"))
}

async fn run_healthz(
    config_path: &Path,
    max_age: Duration,
    liveness_only: bool,
    heartbeat_file: Option<&Path>,
    readiness_timeout: Duration,
) -> ExitCode {
    // Liveness must not depend on the config being readable.
    let env_path = std::env::var(HEARTBEAT_PATH_ENV).is_ok_and(|p| !p.trim().is_empty());
    let loaded = if liveness_only && (heartbeat_file.is_some() || env_path) {
        None
    } else {
        agent_config::load_file(config_path).ok()
    };
    let heartbeat = heartbeat_file.map(Path::to_path_buf).unwrap_or_else(|| {
        heartbeat_path(loaded.as_ref().map(|l| l.config.heartbeat_path.as_str()))
    });
    match healthz::check_liveness(&heartbeat, max_age) {
        Ok(age) => println!("live: heartbeat {}s old", age.as_secs()),
        Err(reason) => {
            println!("not live: {reason}");
            return ExitCode::FAILURE;
        }
    }
    if liveness_only {
        return ExitCode::SUCCESS;
    }
    let Some(loaded) = loaded.or_else(|| load_or_report(config_path)) else {
        println!("not ready: the configuration does not load");
        return ExitCode::FAILURE;
    };
    let redactor = Redactor::new(loaded.secrets.iter());
    let ua = format!("waldur-site-agent-healthz/{VERSION}");
    match healthz::check_readiness(&loaded.config, &ua, readiness_timeout).await {
        Ok(offering) => {
            println!("ready: Waldur answers for offering '{offering}'");
            ExitCode::SUCCESS
        }
        Err(failures) => {
            for f in failures {
                println!("not ready: {}", redactor.scrub(&f));
            }
            ExitCode::FAILURE
        }
    }
}

/// Backend settings for display: secret-looking values masked (the redactor also runs over the
/// whole output).
fn masked_settings(o: &OfferingConfig) -> serde_json::Value {
    fn mask(v: &serde_json::Value, key: &str) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), mask(v, k))).collect())
            }
            serde_json::Value::String(_) if agent_config::is_secret_key(key) => {
                serde_json::Value::from("***")
            }
            // A URL setting may carry a password in its user info.
            serde_json::Value::String(s) => {
                serde_json::Value::from(waldur_client::mask_url_password(s))
            }
            other => other.clone(),
        }
    }
    mask(&serde_json::Value::Object(o.backend_settings.clone()), "")
}

async fn diagnostics(cli: &Cli, offline: bool) -> ExitCode {
    let Some(loaded) = load_or_report(&cli.config_file) else {
        return ExitCode::FAILURE;
    };
    let redactor = Redactor::new(loaded.secrets.iter());
    let registry = backends::registry();
    let mut out = String::new();
    let mut ok = true;
    let cfg = &loaded.config;
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(&mut out, format!("waldur-site-agent {VERSION}"));
    line(
        &mut out,
        format!("config file: {}", cli.config_file.display()),
    );
    line(
        &mut out,
        format!(
            "timezone: {}, log_level: {}, reporting_periods: {}, sentry: {}",
            cfg.timezone,
            cfg.log_level,
            cfg.reporting_periods,
            if cfg.sentry_dsn.is_some() {
                "configured"
            } else {
                "off"
            }
        ),
    );
    line(
        &mut out,
        format!("backends in this build: [{}]", registry.names().join(", ")),
    );
    for w in &loaded.warnings {
        line(&mut out, format!("warning: {w}"));
    }
    for (i, o) in cfg.offerings.iter().enumerate() {
        line(&mut out, format!("offering[{i}] {}", o.name));
        line(
            &mut out,
            format!(
                "  waldur_api_url: {}",
                waldur_client::mask_url_password(&o.waldur_api_url)
            ),
        );
        line(
            &mut out,
            format!("  waldur_offering_uuid: {}", o.waldur_offering_uuid),
        );
        line(
            &mut out,
            format!(
                "  auth: {}",
                if o.waldur_api_token.is_empty() {
                    "OIDC client credentials"
                } else {
                    "token ***"
                }
            ),
        );
        line(&mut out, format!("  backend_type: {}", o.backend_type));
        for role in [
            agent_config::BackendRole::OrderProcessing,
            agent_config::BackendRole::MembershipSync,
            agent_config::BackendRole::Reporting,
            agent_config::BackendRole::UsernameManagement,
        ] {
            let name = o.role_backend(role).unwrap_or("(disabled)");
            let known = o.role_backend(role).is_none_or(|n| registry.knows(role, n));
            line(
                &mut out,
                format!(
                    "  {}: {name}{}",
                    role.config_key(),
                    if known { "" } else { "  <- not in this build" }
                ),
            );
        }
        line(
            &mut out,
            format!("  backend_settings: {}", masked_settings(o)),
        );
        for (key, c) in &o.backend_components {
            line(
                &mut out,
                format!(
                    "  component {key}: label={:?} unit={:?} accounting_type={} unit_factor={}",
                    c.label,
                    c.measured_unit,
                    c.accounting_type.billing_type(),
                    c.unit_factor
                ),
            );
        }
        line(
            &mut out,
            format!(
                "  events: stomp={} mqtt={} membership_via_events={}",
                o.stomp_enabled,
                o.mqtt_enabled,
                o.membership_via_events()
            ),
        );
        if !offline {
            let ua = format!("waldur-site-agent-{}/{VERSION}", cli.modes[0].as_str());
            match healthz::check_offering(cfg, o, &ua, std::time::Duration::from_secs(20)).await {
                Ok(uuid) => line(
                    &mut out,
                    format!("  waldur: reachable, authenticated as user {uuid}"),
                ),
                Err(e) => {
                    ok = false;
                    line(&mut out, format!("  waldur: FAILED: {e:#}"));
                }
            }
        }
    }
    if !offline {
        let agent = Arc::new(cfg.clone());
        if let Ok(offerings) = Offerings::new(
            agent.clone(),
            Arc::new(backends::registry_for(&agent)),
            cli.modes[0],
        ) {
            for ctx in offerings.contexts().await {
                let mut report = agent_core::tools::diagnostics(&ctx).await;
                report.scrub(
                    &loaded
                        .secrets
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>(),
                );
                ok &= report.ok;
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => line(
                        &mut out,
                        format!("offering '{}' diagnostics:\n{json}", ctx.name()),
                    ),
                    Err(e) => line(
                        &mut out,
                        format!("offering '{}' diagnostics: {e}", ctx.name()),
                    ),
                }
            }
        }
    }
    print!("{}", redactor.scrub(&out));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_agent(cli: &Cli) -> ExitCode {
    let Some(loaded) = load_or_report(&cli.config_file) else {
        return ExitCode::FAILURE;
    };
    let cfg = &loaded.config;
    let log_level = match std::env::var(LOG_LEVEL_ENV) {
        Ok(level) if !level.trim().is_empty() => level.trim().to_ascii_uppercase(),
        _ => cfg.log_level.clone(),
    };
    if !["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"].contains(&log_level.as_str()) {
        eprintln!(
            "{LOG_LEVEL_ENV}={log_level:?} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
        );
        return ExitCode::from(2);
    }
    let redactor = Redactor::new(loaded.secrets.iter());
    let sentry_guard = match &cfg.sentry_dsn {
        Some(dsn) => match logging::init_sentry(
            dsn.expose(),
            &format!("waldur-site-agent@{VERSION}"),
            redactor.clone(),
        ) {
            Ok(guard) => Some(guard),
            Err(e) => {
                eprintln!("{}", redactor.scrub(&e));
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    if let Err(e) = logging::init(&log_level, redactor, sentry_guard.is_some()) {
        eprintln!("cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let mut modes: Vec<Mode> = Vec::new();
    for m in &cli.modes {
        if !modes.contains(m) {
            modes.push(*m);
        }
    }
    let mut periods = Vec::new();
    for m in &modes {
        let (name, default) = m.period_env();
        match cli::parse_period_minutes(name, std::env::var(name).ok().as_deref(), default) {
            Ok(p) => periods.push(p),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    tracing::info!(
        config_file = %cli.config_file.display(),
        "Using {} as a config source",
        cli.config_file.display()
    );
    let mode_names: Vec<&str> = modes.iter().map(|m| m.as_str()).collect();
    tracing::info!(
        version = VERSION,
        modes = mode_names.join(","),
        "Running waldur-site-agent"
    );
    for w in &loaded.warnings {
        tracing::warn!(path = w.path.as_str(), "Configuration: {}", w.reason);
    }
    let registry = backends::registry_for(cfg);
    for e in
        agent_config::validate_backend_names(cfg, |r, n| registry.knows(r, n), &registry.names())
    {
        tracing::warn!(path = e.path.as_str(), "Configuration: {}", e.reason);
    }
    if sentry_guard.is_some() {
        tracing::info!("Reporting errors to Sentry");
    }
    if cfg.log_shipping.enabled {
        tracing::warn!(
            "log_shipping is not supported by this agent and is ignored; collect the JSON log lines from stdout instead"
        );
    }
    if cfg.elastic_apm_server_url.is_some() {
        tracing::warn!(
            "elastic_apm_server_url is not supported by this agent and is ignored; use metrics_listen (Prometheus) or sentry_dsn"
        );
    }

    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let mut server = None;
    // WALDUR_SITE_AGENT_METRICS_LISTEN (a container's port, set by the Helm chart) overrides
    // metrics_listen from the file.
    let metrics_listen = match std::env::var(METRICS_LISTEN_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            if v.trim().parse::<std::net::SocketAddr>().is_err() {
                tracing::error!(
                    "{METRICS_LISTEN_ENV}={v:?} is not an address:port such as 0.0.0.0:9100"
                );
                return ExitCode::from(2);
            }
            Some(v.trim().to_owned())
        }
        _ => cfg.metrics_listen.clone(),
    };
    if let Some(listen) = &metrics_listen {
        match metrics::serve(
            listen,
            metrics.clone(),
            Duration::from_secs(300),
            cancel.clone(),
        )
        .await
        {
            Ok(handle) => server = Some(handle),
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        }
    }

    // Leader election (off by default; not for --once runs, which cron starts one at a time).
    let mut lease_manager = None;
    let gate = if cli.once {
        None
    } else {
        match waldur_site_agent::leases::from_env() {
            Ok(None) => None,
            Ok(Some((kube, settings))) => {
                let keys = modes
                    .iter()
                    .flat_map(|m| {
                        cfg.offerings.iter().map(move |o| {
                            waldur_site_agent::leases::LeaseKey::new(*m, &o.waldur_offering_uuid)
                        })
                    })
                    .collect();
                let manager = waldur_site_agent::leases::LeaseManager::new(
                    kube,
                    settings,
                    keys,
                    cancel.child_token(),
                );
                let gate = manager.gate();
                lease_manager = Some(manager);
                Some(gate)
            }
            Err(e) => {
                tracing::error!("leader election: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let lease_stop = CancellationToken::new();
    let lease_task = lease_manager
        .map(|m| tokio::spawn(m.run(lease_stop.clone(), scheduler::shutdown_timeout())));

    let tick = Duration::from_secs_f64(cli.tick_seconds.max(0.01));
    let mut scheduler = Scheduler::new(tick, heartbeat_path(Some(&cfg.heartbeat_path)), metrics);
    let agent = Arc::new(cfg.clone());
    let registry = Arc::new(registry);
    let mut listeners = None;
    for (mode, minutes) in modes.iter().zip(periods) {
        let offerings = match Offerings::new(agent.clone(), registry.clone(), *mode) {
            Ok(o) => o
                .with_cancellation(cancel.clone())
                .with_leases(gate.clone()),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        };
        if *mode == Mode::EventProcess && !cli.once {
            let started =
                EventListeners::start(&offerings, scheduler.metrics(), cancel.clone()).await;
            if !started.without_events.is_empty() {
                // Offerings without events are polled at the order_process period.
                let (name, default) = Mode::OrderProcess.period_env();
                let minutes =
                    cli::parse_period_minutes(name, std::env::var(name).ok().as_deref(), default)
                        .unwrap_or(default);
                if let Ok(o) = Offerings::new(agent.clone(), registry.clone(), *mode) {
                    scheduler.add_after_first_period(
                        Arc::new(EventlessPolling::new(
                            o.with_cancellation(cancel.clone())
                                .with_leases(gate.clone()),
                            started.without_events.clone(),
                        )),
                        Duration::from_secs_f64(minutes * 60.0),
                    );
                }
            }
            let watchdog = Arc::new(started.watchdog());
            scheduler
                .set_liveness_gate(Arc::new(move || watchdog.check(std::time::Instant::now())));
            listeners = Some(started);
            // Upstream 1.0.8: re-apply paused/downscaled every
            // WALDUR_SITE_AGENT_RESOURCE_STATUS_RECONCILIATION_MINUTES (0: off); the first pass
            // is one period away (the initial pass has just applied every status).
            let status_period =
                waldur_site_agent::watchdog::minutes_from_env(STATUS_RECONCILIATION_ENV, 60.0);
            if !status_period.is_zero() {
                let status_offerings =
                    Offerings::new(agent.clone(), registry.clone(), *mode).map(|o| {
                        o.with_cancellation(cancel.clone())
                            .with_leases(gate.clone())
                    });
                if let Ok(o) = status_offerings {
                    scheduler.add_after_first_period(
                        Arc::new(StatusReconciliation::new(o)),
                        status_period,
                    );
                }
            }
        }
        // event_process: the runner is the reconciliation pass (the first one at start-up is
        // the initial full processing).
        let runner: Arc<dyn ModeRunner> = Arc::new(PollingRunner::new(offerings));
        scheduler.add(runner, Duration::from_secs_f64(minutes * 60.0));
    }

    scheduler::cancel_on_signals(cancel.clone(), scheduler::shutdown_timeout());
    let code = if cli.once {
        let ok = scheduler.run_once(&cancel).await;
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    } else {
        scheduler.run(cancel.clone()).await;
        tracing::info!("Stopped");
        ExitCode::SUCCESS
    };
    // Leases: release after the work in hand (the runners have stopped), before the rest.
    lease_stop.cancel();
    if let Some(t) = lease_task {
        let _ = t.await;
    }
    cancel.cancel();
    if let Some(l) = listeners {
        l.join().await;
    }
    if let Some(h) = server {
        let _ = h.await;
    }
    // Flushes pending Sentry events.
    drop(sentry_guard);
    code
}
