//! `sf-emulator`: runs the Salesforce emulator on its own port.

use std::path::PathBuf;

use clap::Parser;
use fieldgate_sf_emulator::{Emulator, EmulatorConfig, JwtTrust};

#[derive(Debug, Parser)]
#[command(
    name = "sf-emulator",
    about = "Salesforce REST emulator with a seeded demo org"
)]
struct Args {
    #[arg(long, default_value_t = 8788)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// JSON file the org is loaded from and saved to after every write.
    #[arg(long = "data", value_name = "FILE")]
    data: Option<PathBuf>,
    /// Daily API request limit reported in Sforce-Limit-Info.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    budget: u64,
    #[arg(long, env = "SF_EMULATOR_CLIENT_ID", default_value = fieldgate_sf_emulator::DEFAULT_CLIENT_ID)]
    client_id: String,
    #[arg(long, env = "SF_EMULATOR_CLIENT_SECRET", default_value = fieldgate_sf_emulator::DEFAULT_CLIENT_SECRET)]
    client_secret: String,
    /// instance_url handed out in tokens (default: http:// + Host header).
    #[arg(long)]
    instance_url: Option<String>,
    /// Certificate (PEM) the JWT bearer grant verifies assertions with
    /// (default: the test-only fixtures/dev-jwt.crt).
    #[arg(long, env = "SF_EMULATOR_JWT_CERTIFICATE", value_name = "PEM_FILE")]
    jwt_certificate: Option<PathBuf>,
    /// The username (`sub`) the JWT bearer grant may act as.
    #[arg(long, env = "SF_EMULATOR_JWT_USERNAME", default_value = fieldgate_sf_emulator::DEV_USERNAME)]
    jwt_username: String,
    /// Also serve `/__emulator/faults`, where a test switches faults on
    /// (503s, latency, an exhausted budget, lost answers, an outage).
    #[arg(long)]
    fault_switches: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut jwt = JwtTrust::dev();
    jwt.username = args.jwt_username;
    if let Some(path) = &args.jwt_certificate {
        jwt.certificate_pem = std::fs::read_to_string(path)?;
    }
    let emulator = Emulator::new(EmulatorConfig {
        persist_path: args.data,
        api_budget: args.budget,
        client_id: args.client_id,
        client_secret: args.client_secret,
        instance_url: args.instance_url,
        jwt: Some(jwt),
        ..EmulatorConfig::default()
    })?;
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    for a in emulator.demo_assets() {
        tracing::info!(id = %a.id, name = %a.name, serial = %a.serial_number, "demo asset");
    }
    println!(
        "sf-emulator listening on http://{}:{}",
        args.host,
        addr.port()
    );
    let mut router = emulator.router();
    if args.fault_switches {
        router = router.merge(emulator.fault_switches());
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
