//! `site-sim`: run a site double until killed; prints one JSON line with its URL and credentials.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use site_sim::{FaultConfig, KeycloakOptions, KeycloakServer, KubeOptions, KubeServer};

#[derive(Parser)]
#[command(
    name = "site-sim",
    version,
    about = "Site doubles for the Waldur site agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A Kubernetes API server, with OpenShift's project API unless --no-openshift.
    Kubernetes(KubeArgs),
    /// Keycloak: the OIDC token endpoint and the admin REST API (realms, users, groups).
    Keycloak(KeycloakArgs),
    /// Rancher v3 with its downstream cluster (a Kubernetes double behind `/k8s/clusters/<id>/`)
    /// and a Keycloak double, in one process; prints each URL.
    Rancher(RancherArgs),
    /// OpenNebula's XML-RPC API (`/RPC2`, session `oneadmin:PASSWORD`).
    Opennebula(OneArgs),
    /// MOAB Accounting Manager: writes the `mam-*` programs into DIR/bin, prints the PATH entry.
    Moab(MoabArgs),
    /// Run one `mam-*` program against the state in --state (what DIR/bin/mam-* call).
    #[command(name = "moab-exec", hide = true)]
    MoabExec(MoabExecArgs),
}

#[derive(clap::Args)]
struct MoabArgs {
    /// Directory of the state file and of bin/mam-*.
    #[arg(long)]
    state: PathBuf,
    /// Demo data (none needed yet: the agent creates every account).
    #[arg(long)]
    demo: bool,
    /// Print the JSON line and exit instead of waiting until killed.
    #[arg(long)]
    no_wait: bool,
}

#[derive(clap::Args)]
struct MoabExecArgs {
    #[arg(long)]
    state: PathBuf,
    program: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn moab_exec(a: MoabExecArgs) -> anyhow::Result<()> {
    let outcome =
        site_sim::moab::run_in_dir(&a.state, &a.program, &a.args, &site_sim::moab::now_local())
            .with_context(|| format!("MAM state in {}", a.state.display()))?;
    use std::io::Write;
    std::io::stdout().write_all(outcome.stdout.as_bytes())?;
    std::io::stderr().write_all(outcome.stderr.as_bytes())?;
    std::io::stdout().flush()?;
    std::process::exit(outcome.code);
}

async fn moab(a: MoabArgs) -> anyhow::Result<()> {
    let dir = std::path::absolute(&a.state)?;
    let exe = std::env::current_exe().context("locating site-sim")?;
    let bin = site_sim::moab::install(&dir, &exe)?;
    let _ = a.demo;
    println!(
        "{}",
        serde_json::json!({
            "kind": "moab",
            "path": bin,
            "state": site_sim::moab::state_file(&dir),
        })
    );
    if a.no_wait {
        return Ok(());
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

#[derive(clap::Args)]
struct KeycloakArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8180")]
    listen: SocketAddr,
    /// Password of `admin` in the master realm (random by default).
    #[arg(long, env = "SITE_SIM_KEYCLOAK_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Secret of the `waldur-site-agent` service-account client (random by default).
    #[arg(long, env = "SITE_SIM_KEYCLOAK_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 60)]
    token_lifespan: u64,
    /// Demo data: the `waldur` realm with users alice, bob, carol and dave.
    #[arg(long)]
    demo: bool,
    /// JSON file with a fault configuration ({"seed": 1, "rules": [...]}).
    #[arg(long)]
    faults: Option<PathBuf>,
}

fn read_faults(path: Option<&PathBuf>) -> anyhow::Result<FaultConfig> {
    let faults: FaultConfig = match path {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => FaultConfig::default(),
    };
    faults.check().map_err(anyhow::Error::msg)?;
    Ok(faults)
}

fn init_logging() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

async fn keycloak(a: KeycloakArgs) -> anyhow::Result<()> {
    init_logging();
    let server = KeycloakServer::start(KeycloakOptions {
        listen: a.listen,
        admin_password: a.admin_password,
        client_secret: a.client_secret,
        token_lifespan: Duration::from_secs(a.token_lifespan.max(1)),
        demo: a.demo,
        faults: read_faults(a.faults.as_ref())?,
    })
    .await?;
    let mut line = serde_json::to_value(server.info())?;
    line["kind"] = "keycloak".into();
    println!("{line}");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown().await;
    Ok(())
}

#[derive(clap::Args)]
struct OneArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:2633")]
    listen: SocketAddr,
    /// oneadmin's password (random by default).
    #[arg(long, env = "SITE_SIM_ONE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Demo data: clusters 0 and 100, provider network 10, VM template 0, VNF template 8.
    #[arg(long)]
    demo: bool,
    /// Duration of one VM state step in milliseconds (booting takes three).
    #[arg(long, default_value_t = 200)]
    vm_step_ms: u64,
    /// JSON file with a fault configuration ({"seed": 1, "rules": [...]}).
    #[arg(long)]
    faults: Option<PathBuf>,
}

async fn opennebula(a: OneArgs) -> anyhow::Result<()> {
    let server = site_sim::OneServer::start(site_sim::OneOptions {
        listen: a.listen,
        password: a.password,
        demo: a.demo,
        vm_step: Duration::from_millis(a.vm_step_ms),
        faults: read_faults(a.faults.as_ref())?,
    })
    .await
    .with_context(|| format!("listening on {}", a.listen))?;
    println!("{}", serde_json::to_string(server.info())?);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown().await;
    Ok(())
}

#[derive(clap::Args)]
struct RancherArgs {
    /// Address of the Rancher API (port 0: any free port); the Kubernetes and Keycloak doubles
    /// listen on free ports of the same address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Keycloak's address (port 0: any free port).
    #[arg(long)]
    keycloak_listen: Option<SocketAddr>,
    /// Id of the downstream cluster.
    #[arg(long, default_value = "c-m-demo1234")]
    cluster_id: String,
    /// Serve the Rancher API over HTTPS with a CA made at start (printed as ca_file).
    #[arg(long)]
    tls: bool,
    /// Where to write the CA certificate (with --tls).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// API key access key (random by default).
    #[arg(long, env = "SITE_SIM_RANCHER_ACCESS_KEY")]
    access_key: Option<String>,
    /// API key secret key (random by default).
    #[arg(long, env = "SITE_SIM_RANCHER_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Password of Keycloak's master `admin` (random by default).
    #[arg(long, env = "SITE_SIM_KEYCLOAK_PASSWORD", hide_env_values = true)]
    keycloak_password: Option<String>,
    /// Demo data: Keycloak's `waldur` realm with users alice, bob, carol and dave.
    #[arg(long)]
    demo: bool,
    /// JSON file with a fault configuration for the Rancher API.
    #[arg(long)]
    faults: Option<PathBuf>,
}

async fn rancher(a: RancherArgs) -> anyhow::Result<()> {
    init_logging();
    let stack = site_sim::RancherStack::start(
        site_sim::RancherOptions {
            listen: a.listen,
            access_key: a.access_key,
            secret_key: a.secret_key,
            admin_password: None,
            cluster_id: a.cluster_id,
            tls: a.tls,
            ca_file: a.ca_file,
            faults: read_faults(a.faults.as_ref())?,
        },
        KeycloakOptions {
            listen: a
                .keycloak_listen
                .unwrap_or_else(|| SocketAddr::new(a.listen.ip(), 0)),
            admin_password: a.keycloak_password,
            demo: a.demo,
            ..Default::default()
        },
        FaultConfig::default(),
    )
    .await?;
    println!("{}", serde_json::to_string(&stack.info())?);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    stack.shutdown().await;
    Ok(())
}

#[derive(clap::Args)]
struct KubeArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Plain Kubernetes: no project.openshift.io group.
    #[arg(long)]
    no_openshift: bool,
    /// Serve HTTPS with a CA made at start (its path is printed as ca_file).
    #[arg(long)]
    tls: bool,
    /// Where to write the CA certificate (with --tls).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Administrator token (random by default).
    #[arg(long, env = "SITE_SIM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Service account token (random by default).
    #[arg(long, env = "SITE_SIM_SA_TOKEN", hide_env_values = true)]
    sa_token: Option<String>,
    /// File the service account token is written to, and rewritten on rotation.
    #[arg(long)]
    sa_token_file: Option<PathBuf>,
    /// Demo data: the waldur-system namespace of the demo service account.
    #[arg(long)]
    demo: bool,
    /// How long a deleted namespace stays Terminating, in milliseconds.
    #[arg(long, default_value_t = 500)]
    terminating_ms: u64,
    /// JSON file with a fault configuration ({"seed": 1, "rules": [...]}).
    #[arg(long)]
    faults: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let a = match cli.command {
        Command::MoabExec(a) => return moab_exec(a),
        Command::Moab(a) => return moab(a).await,
        Command::Keycloak(a) => return keycloak(a).await,
        Command::Rancher(a) => return rancher(a).await,
        Command::Opennebula(a) => {
            init_logging();
            return opennebula(a).await;
        }
        Command::Kubernetes(a) => a,
    };
    init_logging();
    let faults = read_faults(a.faults.as_ref())?;
    let server = KubeServer::start(KubeOptions {
        listen: a.listen,
        openshift: !a.no_openshift,
        tls: a.tls,
        ca_file: a.ca_file,
        token: a.token,
        sa_token: a.sa_token,
        sa_token_file: a.sa_token_file,
        demo: a.demo,
        terminate_after: Duration::from_millis(a.terminating_ms),
        faults,
    })
    .await?;
    println!("{}", serde_json::to_string(server.info())?);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown().await;
    Ok(())
}
