//! `waldur-sim`: run the Mastermind simulator, or act as a consumer against a running one.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use waldur_sim::consumer::{ConsumerClient, parse_limits};
use waldur_sim::{BrokerOptions, DemoOfferingKind, FaultConfig, Seed, SimOptions, SimServer};

#[derive(Parser)]
#[command(
    name = "waldur-sim",
    version,
    about = "Waldur Mastermind simulator for the site agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// YAML seed dataset.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Load the demo dataset and print one JSON line with URLs, tokens and UUIDs.
    #[arg(long)]
    demo: bool,
    /// username_generation_policy of the demo offering (waldur_username or service_provider).
    #[arg(long, default_value = "waldur_username")]
    username_policy: String,
    /// Kind of the demo offering: slurm (default), okd, moab, rancher, opennebula-vdc or
    /// opennebula-vm.
    #[arg(long, default_value = "slurm")]
    offering_kind: DemoOfferingKind,
    /// Public base URL used in hyperlinks (default http://LISTEN).
    #[arg(long)]
    public_url: Option<String>,
    /// JSON file with a fault configuration ({"seed": 1, "rules": [...]}).
    #[arg(long)]
    faults: Option<PathBuf>,
    /// RabbitMQ management API URL with credentials, e.g. http://waldur:waldur@127.0.0.1:15672
    /// (provisions vhosts, users and queues like Mastermind; its user also publishes).
    #[arg(long)]
    rabbitmq_admin: Option<String>,
    /// RabbitMQ STOMP [USER:PASSWORD@]HOST:PORT the events are published to.
    #[arg(long)]
    stomp: Option<String>,
    /// Web-STOMP URL advertised to agents (default ws://<stomp host>:15674/ws).
    #[arg(long)]
    stomp_ws: Option<String>,
    /// MQTT broker [USER:PASSWORD@]HOST:PORT the events are published to (QoS 1).
    #[arg(long)]
    mqtt: Option<String>,
    /// MQTT-over-WebSocket URL advertised to agents, e.g. ws://127.0.0.1:9001/.
    #[arg(long)]
    mqtt_ws: Option<String>,
    /// Which Mastermind to answer as: `current`, or `2024` (no agent identities, event
    /// subscriptions or newer provider actions; see the README).
    #[arg(long, default_value = "current")]
    api_profile: waldur_sim::ApiProfile,
}

#[derive(Subcommand)]
enum Command {
    /// Orders, as a consumer.
    Order {
        #[command(subcommand)]
        action: OrderCmd,
    },
    /// Resources, as a consumer.
    Resource {
        #[command(subcommand)]
        action: ResourceCmd,
    },
    /// Project membership, as a customer owner.
    Project {
        #[command(subcommand)]
        action: ProjectCmd,
    },
}

#[derive(clap::Args)]
struct Conn {
    #[arg(long, env = "WALDUR_API_URL")]
    api_url: String,
    #[arg(long, env = "WALDUR_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Subcommand)]
enum OrderCmd {
    /// Place a Create order; prints the order UUID.
    Create {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        offering: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        plan: Option<String>,
        #[arg(long)]
        name: String,
        /// NAME=NUMBER, repeatable.
        #[arg(long = "limit")]
        limits: Vec<String>,
    },
    /// Print an order as JSON.
    Get {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        order: String,
    },
    /// Approve a pending-consumer order.
    Approve {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        order: String,
    },
}

#[derive(Subcommand)]
enum ResourceCmd {
    Get {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        resource: String,
    },
    /// Create an Update order; prints its UUID.
    UpdateLimits {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        resource: String,
        #[arg(long = "limit")]
        limits: Vec<String>,
    },
    /// Create a Terminate order; prints its UUID.
    Terminate {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        resource: String,
    },
}

#[derive(Subcommand)]
enum ProjectCmd {
    AddUser {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        project: String,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "PROJECT.MEMBER")]
        role: String,
    },
    RemoveUser {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        project: String,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "PROJECT.MEMBER")]
        role: String,
    },
}

async fn run_client(cmd: Command) -> anyhow::Result<()> {
    let client = |c: &Conn| ConsumerClient::new(&c.api_url, &c.token);
    match cmd {
        Command::Order { action } => match action {
            OrderCmd::Create {
                conn,
                offering,
                project,
                plan,
                name,
                limits,
            } => {
                let limits = parse_limits(&limits).map_err(anyhow::Error::msg)?;
                let uuid = client(&conn)
                    .create_order(&offering, &project, plan.as_deref(), limits, &name)
                    .await?;
                println!("{uuid}");
            }
            OrderCmd::Get { conn, order } => println!("{}", client(&conn).order(&order).await?),
            OrderCmd::Approve { conn, order } => client(&conn).approve_by_consumer(&order).await?,
        },
        Command::Resource { action } => match action {
            ResourceCmd::Get { conn, resource } => {
                println!("{}", client(&conn).resource(&resource).await?)
            }
            ResourceCmd::UpdateLimits {
                conn,
                resource,
                limits,
            } => {
                let limits = parse_limits(&limits).map_err(anyhow::Error::msg)?;
                println!("{}", client(&conn).update_limits(&resource, limits).await?);
            }
            ResourceCmd::Terminate { conn, resource } => {
                println!("{}", client(&conn).terminate(&resource).await?)
            }
        },
        Command::Project { action } => match action {
            ProjectCmd::AddUser {
                conn,
                project,
                user,
                role,
            } => {
                client(&conn)
                    .add_user_to_project(&project, &user, &role)
                    .await?
            }
            ProjectCmd::RemoveUser {
                conn,
                project,
                user,
                role,
            } => {
                client(&conn)
                    .remove_user_from_project(&project, &user, &role)
                    .await?
            }
        },
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Some(cmd) = cli.command {
        return run_client(cmd).await;
    }
    let seed = cli.seed.as_deref().map(Seed::from_file).transpose()?;
    let faults: FaultConfig = match &cli.faults {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => FaultConfig::default(),
    };
    let brokers = BrokerOptions {
        rabbitmq_admin: cli.rabbitmq_admin,
        stomp: cli.stomp,
        stomp_ws: cli.stomp_ws,
        mqtt: cli.mqtt,
        mqtt_ws: cli.mqtt_ws,
    };
    let server = SimServer::start(SimOptions {
        listen: cli.listen,
        seed,
        demo: cli.demo,
        demo_username_policy: cli.username_policy,
        demo_offering_kind: cli.offering_kind,
        public_url: cli.public_url,
        faults,
        brokers,
        api_profile: cli.api_profile,
    })
    .await?;
    if cli.demo {
        println!("{}", serde_json::to_string(server.demo())?);
    } else {
        println!("{}", serde_json::json!({"api_url": server.api_url()}));
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown().await;
    Ok(())
}
