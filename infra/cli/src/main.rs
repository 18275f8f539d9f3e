//! `fieldgate`: run the dev stack, print QR links, structure notes.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldgate::domain::AssetId;
use fieldgate_cli::dev::{DevOptions, DevStack, qr_url};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "fieldgate",
    version,
    about = "A governed intake layer for Salesforce"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole flow on this machine: no cloud account, no keys.
    Dev {
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Address to listen on; 0.0.0.0 lets a phone on your network scan.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Where proposals, mail, photos and the demo org live.
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
        /// Base URL in QR codes and review mail (e.g. http://192.168.1.20:8787).
        #[arg(long)]
        public_url: Option<String>,
        /// Reports per QR code per 10 minutes before 429 (load and crash
        /// tests raise it).
        #[arg(long)]
        reports_per_code: Option<u64>,
    },
    /// Print the signed scan link of an asset (and write a PNG of its QR code).
    Qr {
        asset: String,
        #[arg(long, default_value = "http://127.0.0.1:8787")]
        base: String,
        #[arg(long)]
        png: Option<PathBuf>,
        /// The data directory whose keys sign the link (as for `dev`).
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
    },
    /// Structure one note and print the fields with their evidence as JSON
    /// (the workflow's structurer, configured from the environment).
    Structure {
        /// A workflow file; default: the built-in field-service-case.
        #[arg(long)]
        workflow: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        text: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        /// Override the workflow's structurer: rules, claude, bedrock, openai.
        #[arg(long)]
        structurer: Option<String>,
    },
    /// Field-level accuracy of a structurer over a corpus of notes.
    Eval {
        #[arg(long)]
        workflow: Option<PathBuf>,
        #[arg(long, default_value = "tests/corpus")]
        corpus: PathBuf,
        /// Override the workflow's structurer: rules, claude, bedrock, openai.
        #[arg(long)]
        structurer: Option<String>,
        /// List every miss.
        #[arg(long)]
        verbose: bool,
    },
    /// The MCP endpoint's assistants (their bearer tokens).
    Mcp {
        #[command(subcommand)]
        cmd: McpCmd,
    },
    /// Check a workflow against the org's describe (SALESFORCE_* env: a
    /// real org; otherwise the built-in emulator); non-zero on any problem.
    Check {
        /// A workflow file; default: the built-in field-service-case.
        #[arg(long)]
        workflow: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum McpCmd {
    /// Bearer tokens of the assistants that may use /mcp.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make a token for one assistant; it is printed once, only its hash is kept.
    Create {
        /// Who this is, as reviewers and the audit trail will see it.
        #[arg(long)]
        name: String,
        /// The workflows it may read and propose to (comma-separated ids).
        #[arg(long, value_delimiter = ',', required = true)]
        workflows: Vec<String>,
        /// Tool calls per minute.
        #[arg(long, default_value_t = fieldgate::domain::AssistantLimits::default().per_minute)]
        per_minute: u32,
        /// Proposals per day.
        #[arg(long, default_value_t = fieldgate::domain::AssistantLimits::default().per_day)]
        per_day: u32,
        /// Mint an OAuth 2.0 client id and secret instead of a bearer token
        /// (for Salesforce Agentforce: it exchanges them at
        /// /mcp/oauth/token for short-lived access tokens).
        #[arg(long)]
        client_credentials: bool,
        /// The data directory of the server (as for `dev`); with
        /// FIELDGATE_TABLE set, the table instead.
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
    },
    /// Every token, revoked ones included.
    List {
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
    },
    /// Revoke a token by its id (as `list` shows it); effective at once.
    Revoke {
        id: String,
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
    },
}

/// The deployment's parts for an admin command: the environment's
/// configuration, with the data directory given on the command line.
fn components(data: PathBuf) -> anyhow::Result<fieldgate::compose::Components> {
    let mut config = fieldgate::config::Config::from_env()?;
    config.data_dir = data;
    Ok(fieldgate::compose::Components::new(config))
}

async fn mcp_command(cmd: McpCmd) -> anyhow::Result<()> {
    let McpCmd::Token { cmd } = cmd;
    match cmd {
        TokenCmd::Create {
            name,
            workflows,
            per_minute,
            per_day,
            client_credentials,
            data,
        } => {
            let c = components(data)?;
            let kind = if client_credentials {
                fieldgate::domain::CredentialKind::ClientCredentials
            } else {
                fieldgate::domain::CredentialKind::Bearer
            };
            let (secret, record) = fieldgate_cli::mcp::create_credential(
                c.assistants().await?.as_ref(),
                &*c.workflows().await?,
                &name,
                &workflows,
                fieldgate::domain::AssistantLimits {
                    per_minute,
                    per_day,
                },
                c.clock().as_ref(),
                kind,
            )
            .await?;
            eprintln!("{}", fieldgate_cli::mcp::describe(&record));
            if client_credentials {
                let base = c
                    .config()
                    .public_url
                    .clone()
                    .unwrap_or_else(|| "https://YOUR-FIELDGATE".into());
                eprintln!(
                    "Token endpoint: {}/mcp/oauth/token (grant_type=client_credentials)",
                    base.trim_end_matches('/')
                );
                eprintln!("Client id:");
                println!("{}", record.id);
                eprintln!("Client secret (shown once; only its hash is stored):");
                println!("{secret}");
            } else {
                eprintln!("The token (shown once; only its hash is stored):");
                println!("{secret}");
            }
            Ok(())
        }
        TokenCmd::List { data } => {
            let c = components(data)?;
            for t in c.assistants().await?.list().await? {
                println!("{}", fieldgate_cli::mcp::describe(&t));
            }
            Ok(())
        }
        TokenCmd::Revoke { id, data } => {
            let c = components(data)?;
            match c.assistants().await?.revoke(&id, c.clock().now()).await? {
                Some(t) => {
                    println!("{}", fieldgate_cli::mcp::describe(&t));
                    Ok(())
                }
                None => anyhow::bail!("no token with id {id:?} (see `fieldgate mcp token list`)"),
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fieldgate::telemetry::init_text();
    match Cli::parse().cmd {
        Cmd::Mcp { cmd } => mcp_command(cmd).await,
        Cmd::Check { workflow } => {
            if !fieldgate_cli::check::command(workflow.as_deref()).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Dev {
            port,
            host,
            data,
            public_url,
            reports_per_code,
        } => {
            let mut opts = DevOptions::new(SocketAddr::new(host, port), data.clone());
            opts.public_url = public_url;
            if let Some(n) = reports_per_code {
                opts.reports_per_code = n;
            }
            opts.structurers =
                fieldgate::config::StructurerConfig::from_lookup(&|k| std::env::var(k).ok())?;
            let stack = DevStack::start(opts).await?;
            println!("fieldgate dev is running at {}", stack.public_url);
            println!("  data:        {}", data.display());
            println!("  review mail: {}/dev/outbox", stack.public_url);
            println!("  handoff:     {}/dev/handoff", stack.public_url);
            println!(
                "  MCP:         {}/mcp (a token: fieldgate mcp token create --name NAME --workflows ID --data {})",
                stack.public_url,
                data.display()
            );
            println!(
                "  Salesforce:  {}/services/ (client id {}, secret {})",
                stack.base_url,
                fieldgate_cli::dev::DEV_CLIENT_ID,
                fieldgate_cli::dev::DEV_CLIENT_SECRET
            );
            println!("\nScan links of the demo assets:");
            let assets = stack.emulator.demo_assets();
            for a in &assets {
                let id: AssetId = a.id.parse().context("demo asset id")?;
                println!("  {:<28} {}", a.name, stack.qr_url(&id));
            }
            if let Some(first) = assets.first() {
                let url = stack.qr_url(&first.id.parse()?);
                println!(
                    "\n{}  ({})\n",
                    fieldgate_cli::qr::terminal(&url)?,
                    first.name
                );
            }
            println!("Press Ctrl-C to stop.");
            stack.wait().await;
            Ok(())
        }
        Cmd::Qr {
            asset,
            base,
            png,
            data,
        } => {
            let id: AssetId = asset.parse().map_err(|_| {
                anyhow::anyhow!("{asset:?} is not an Asset id (02i…, 15 or 18 characters)")
            })?;
            let keys = fieldgate::compose::Keys::load_or_create(&data.join("keys.json"))?;
            let url = qr_url(&keys, &fieldgate::workflows::builtin(), &base, &id);
            println!("{url}");
            if let Some(p) = png {
                fieldgate_cli::qr::png(&url, &p)?;
                eprintln!("wrote {}", p.display());
            }
            Ok(())
        }
        Cmd::Structure {
            workflow,
            text,
            file,
            structurer,
        } => {
            let notes = match (text, file) {
                (Some(t), _) => t,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?,
                (None, None) => anyhow::bail!("give --text or --file"),
            };
            let (wf, s) =
                fieldgate_cli::eval::setup(workflow.as_deref(), structurer.as_deref()).await?;
            let out = fieldgate_cli::eval::structure_one(&wf, s.as_ref(), &notes).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Cmd::Eval {
            workflow,
            corpus,
            structurer,
            verbose,
        } => {
            let (wf, s) =
                fieldgate_cli::eval::setup(workflow.as_deref(), structurer.as_deref()).await?;
            let cases = fieldgate_cli::eval::load_corpus(&corpus, &wf)?;
            fieldgate_cli::eval::run(&wf, &cases, s.as_ref())
                .await?
                .print(verbose);
            Ok(())
        }
    }
}
