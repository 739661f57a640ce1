//! `site-sim`: run a site double until killed; prints one JSON line with its URL and credentials.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use site_sim::{FaultConfig, KubeOptions, KubeServer};

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

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let a = match cli.command {
        Command::MoabExec(a) => return moab_exec(a),
        Command::Moab(a) => return moab(a).await,
        Command::Kubernetes(a) => a,
        Command::Opennebula(a) => {
            init_tracing();
            return opennebula(a).await;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_tracing();
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
