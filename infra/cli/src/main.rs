//! `fieldgate`: run the dev stack, print QR links, structure notes.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldgate::domain::AssetId;
use fieldgate_cli::dev::{DevOptions, DevStack};
use fieldgate_cli::serve::{PipelineOptions, ServeOptions, ServeStack};
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
        /// Reports per QR code per 10 minutes before 429.
        #[arg(long)]
        reports_per_code: Option<u64>,
        /// Lift every intake rate limit (per code, per client, the
        /// ceiling): for load and crash tests on this machine only.
        #[arg(long)]
        no_intake_limits: bool,
        /// Behind a reverse proxy: take the client address from the last
        /// X-Forwarded-For hop (only if the proxy sets it).
        #[arg(long)]
        trust_proxy: bool,
        /// Serve the demo pages (`/`, `/dev/*`: live review links) and the
        /// emulated org to other machines too; by default only this machine
        /// reaches them, even with --host 0.0.0.0.
        #[arg(long)]
        expose_dev_pages: bool,
        /// Every *.toml in DIR instead of the built-in workflow; the server
        /// refuses to start if one is invalid.
        #[arg(long, value_name = "DIR")]
        workflows: Option<PathBuf>,
    },
    /// Run the pipeline on this machine against a real org (SALESFORCE_*),
    /// mailing reviewers over SMTP (FIELDGATE_SMTP_URL): a pilot.
    Serve {
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Address to listen on (behind a reverse proxy: 127.0.0.1).
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Where the database, photos and keys live (back it up).
        #[arg(long, default_value = "/var/lib/fieldgate")]
        data: PathBuf,
        /// Base URL in QR codes and review mail: the proxy's https URL.
        #[arg(long, env = "FIELDGATE_PUBLIC_URL")]
        public_url: Option<String>,
        /// Every *.toml in DIR (default: the built-in workflow). Each is
        /// validated and checked against the org before anything starts.
        #[arg(long, value_name = "DIR", env = "FIELDGATE_WORKFLOWS_DIR")]
        workflows: Option<PathBuf>,
        /// Start even when a workflow does not fit the org (its proposals
        /// will fail to commit). Says so loudly.
        #[arg(long)]
        skip_check: bool,
        /// Reports per QR code per 10 minutes before 429.
        #[arg(long)]
        reports_per_code: Option<u64>,
        /// Seconds between the commit sweeps that re-drive paused or
        /// unfinished commits.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        sweep_every: u64,
        /// Seconds commits wait after the org answered that its daily API
        /// limit is used up, before one of them probes again.
        #[arg(long, value_name = "SECS", default_value_t = 900)]
        limit_pause: u64,
        /// Behind a reverse proxy on this machine: take the client address
        /// from the last X-Forwarded-For hop (the proxy must set it).
        #[arg(long)]
        trust_proxy: bool,
    },
    /// Print the signed scan link of an asset for a workflow (and write a
    /// PNG of its QR code), with the keys of a server's data directory;
    /// `fieldgate qr revoke ASSET` withdraws a sticker's code.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Qr {
        #[command(subcommand)]
        cmd: Option<QrCmd>,
        #[arg(required = true)]
        asset: Option<String>,
        /// The workflow the link reports to (default: the first one).
        #[arg(long)]
        workflow: Option<String>,
        /// The server's workflows (as given to serve/dev), to check the id.
        #[arg(long, value_name = "DIR")]
        workflows: Option<PathBuf>,
        #[arg(long, default_value = "http://127.0.0.1:8787")]
        base: String,
        #[arg(long)]
        png: Option<PathBuf>,
        /// The data directory whose keys sign the link (as for `dev`/`serve`).
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
    },
    /// A print-ready sheet of QR stickers for the org's assets (SALESFORCE_*
    /// env: a real org; otherwise the built-in demo org), each with the
    /// asset's name and serial number and a code to type at /k.
    Stickers {
        /// The workflow the stickers report to.
        #[arg(long)]
        workflow: String,
        /// Which assets: a SOQL condition on Asset, e.g.
        /// "Account.Name = 'Northwind' AND Status = 'Installed'".
        #[arg(long = "where", value_name = "SOQL")]
        condition: Option<String>,
        /// The sheet: FILE.html (one page per sheet, print from a browser)
        /// or FILE.svg (one file per sheet: FILE-1.svg, FILE-2.svg, …).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The label sheet: a4-3x7, a4-2x7, letter-3x10, letter-2x5.
        #[arg(long, default_value = "a4-3x7")]
        layout: String,
        /// Draw each label's outline (a plain-paper proof).
        #[arg(long)]
        outline: bool,
        /// The server's public URL (as for `fieldgate qr`).
        #[arg(long, default_value = "http://127.0.0.1:8787")]
        base: String,
        /// The server's data directory: its keys sign the codes, its store
        /// learns the typed codes (or FIELDGATE_TABLE).
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
        /// The server's workflows (as given to serve/dev).
        #[arg(long, value_name = "DIR")]
        workflows: Option<PathBuf>,
    },
    /// The QR signing keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
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
        /// A corpus folder; give it more than once to score several as one.
        #[arg(long, default_value = "tests/corpus")]
        corpus: Vec<PathBuf>,
        /// Override the workflow's structurer: rules, claude, bedrock, openai.
        #[arg(long)]
        structurer: Option<String>,
        /// List every miss.
        #[arg(long)]
        verbose: bool,
        /// Instead: K-fold cross-validation of the rules structurer's model
        /// on the corpora (trained on the other folds each time).
        #[arg(long, value_name = "K")]
        cv: Option<usize>,
        /// With --cv: also print right/empty/wrong over a grid of cue
        /// weights and margins (how the shipped decisions were chosen).
        #[arg(long, requires = "cv")]
        grid: bool,
        /// With --cv: model parameters to try instead of the shipped ones,
        /// e.g. "alpha=0.5,kinds=1:0.5:0.25:0.5,min_df=2,len_norm=0.5".
        #[arg(long)]
        params: Option<String>,
        /// Score the rules structurer with a model trained on these corpora
        /// instead of the shipped ones (notes of another author).
        #[arg(long, value_name = "DIR")]
        train_on: Vec<PathBuf>,
        /// With --train-on: per picklist "cue_weight:margin" instead of the
        /// shipped decisions (priority, type, reason).
        #[arg(long, requires = "train_on")]
        decisions: Option<String>,
    },
    /// The MCP endpoint's assistants (their bearer tokens).
    Mcp {
        #[command(subcommand)]
        cmd: McpCmd,
    },
    /// Verify or export the hash-chained audit record of every proposal.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
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
enum QrCmd {
    /// Withdraw an asset's code at once, on the running server too: a
    /// scan answers 410 "withdrawn"; `fieldgate qr ASSET` then issues a
    /// new code that works. With FIELDGATE_TABLE set, in the table.
    Revoke {
        asset: String,
        /// Only the code of this workflow (default: every workflow a
        /// sticker can report to).
        #[arg(long)]
        workflow: Option<String>,
        /// The server's workflows (as given to serve/dev).
        #[arg(long, value_name = "DIR")]
        workflows: Option<PathBuf>,
        /// The server's data directory (as for `dev`/`serve`).
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
        /// Revoke even if no report of this asset was ever stored here.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Add a new QR key that signs from now on; the current one keeps
    /// verifying for --grace, then its stickers answer 410 "expired".
    /// A running server follows the file without a restart.
    Rotate {
        /// The data directory whose keys.json to rotate.
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
        /// A keys document elsewhere (AWS: the secret's value saved to a
        /// file, put back with `aws secretsmanager put-secret-value`).
        #[arg(long, conflicts_with = "data")]
        file: Option<PathBuf>,
        /// How long codes of the old key keep working (e.g. 30d, 12h).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Re-compute every chain (from the store, or offline from an export
    /// with --file); names each break; non-zero if any.
    Verify {
        /// The data directory (as for `dev`); with FIELDGATE_TABLE set,
        /// the table instead.
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
        /// Only this proposal.
        #[arg(long, conflicts_with = "file")]
        proposal: Option<String>,
        /// An export (`fieldgate audit export`) to check without the store.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Write proposals' heads and events, with the revision values they
    /// bind, as JSON lines to stdout.
    Export {
        #[arg(long, default_value = ".fieldgate")]
        data: PathBuf,
        /// Only proposals created at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only proposals of this workflow.
        #[arg(long)]
        workflow: Option<String>,
    },
    /// Make a token for the read-only `/admin` page: prints the token
    /// (shown once) and its SHA-256, which goes into
    /// FIELDGATE_ADMIN_TOKEN_HASH (AWS: the AdminTokenHash parameter).
    AdminToken,
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

async fn audit_command(cmd: AuditCmd) -> anyhow::Result<()> {
    use fieldgate_cli::audit;
    match cmd {
        AuditCmd::AdminToken => {
            let (token, cred) = fieldgate::admin::AdminCredential::generate(&mut rand::rng());
            eprintln!("The admin token (shown once; only its hash is configured):");
            println!("{token}");
            eprintln!("Its SHA-256, for {}:", fieldgate::admin::TOKEN_HASH_VAR);
            println!("{}", cred.to_hex());
            Ok(())
        }
        AuditCmd::Verify {
            file: Some(file), ..
        } => {
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let report = audit::verify_file(std::io::BufReader::new(f))?;
            report.print(&mut std::io::stdout())?;
            if !report.breaks.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        AuditCmd::Verify { data, proposal, .. } => {
            let only = proposal
                .map(|p| {
                    p.parse::<fieldgate::domain::ProposalId>()
                        .map_err(|_| anyhow::anyhow!("--proposal must be a proposal id"))
                })
                .transpose()?;
            let store = existing_store(data).await?;
            let report = audit::verify_store(store.as_ref(), only).await?;
            report.print(&mut std::io::stdout())?;
            if !report.breaks.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        AuditCmd::Export {
            data,
            since,
            workflow,
        } => {
            let since = since
                .map(|s| {
                    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "--since must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"
                            )
                        })
                })
                .transpose()?;
            let store = existing_store(data).await?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = audit::export(store.as_ref(), since, workflow.as_deref(), &mut out).await?;
            eprintln!("exported {n} proposals");
            Ok(())
        }
    }
}

fn has_store(data: &std::path::Path) -> bool {
    std::env::var_os("FIELDGATE_TABLE").is_some() || data.join("fieldgate.db").exists()
}

async fn qr_command(cmd: QrCmd) -> anyhow::Result<()> {
    let QrCmd::Revoke {
        asset,
        workflow,
        workflows,
        data,
        force,
    } = cmd;
    let id: AssetId = asset
        .parse()
        .map_err(|_| anyhow::anyhow!("{asset:?} is not an Asset id (02i…, 15 or 18 characters)"))?;
    let list = fieldgate_cli::serve::load_workflows(workflows.as_deref())?;
    let chosen = fieldgate_cli::codes::chosen_workflows(&list, workflow.as_deref())?;
    let c = components(data.clone())?;
    let store = existing_store(data).await?;
    // With an org configured, an asset never reported on here is looked up.
    let directory = match c.config().salesforce {
        Some(_) => Some(c.assets().await?),
        None => None,
    };
    let now = c.clock().now();
    let done = fieldgate_cli::codes::revoke(
        store.as_ref(),
        directory.as_deref(),
        &id,
        &chosen,
        &fieldgate_cli::codes::operator(),
        now,
        force,
    )
    .await?;
    for (wf, r) in &done {
        println!(
            "revoked the code of {id} for {}: scans now answer 410 (generation {}, by {} at {})",
            wf.id,
            r.generation,
            r.revoked_by,
            r.revoked_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        );
    }
    eprintln!(
        "A new sticker: fieldgate qr {id} --workflow ID (the same --data) prints a code that works."
    );
    Ok(())
}

fn keys_command(cmd: KeysCmd) -> anyhow::Result<()> {
    let KeysCmd::Rotate { data, file, grace } = cmd;
    let path = file.unwrap_or_else(|| data.join("keys.json"));
    let grace =
        time::Duration::try_from(grace).map_err(|_| anyhow::anyhow!("--grace is too long"))?;
    let now = fieldgate::clock::Clock::now(&fieldgate::clock::SystemClock);
    let r = fieldgate_cli::codes::rotate(&path, grace, now)?;
    let until = r
        .old_valid_until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    println!(
        "{}: key {} signs new codes from now on; codes of {} work until {until}, then answer 410 (expired).",
        path.display(),
        r.new_kid,
        r.old_kid
    );
    eprintln!(
        "Reprint the stickers before then: fieldgate qr ASSET --workflow ID prints codes of the new key.\nA running server picks the change up by itself; in AWS, put the file back into the keys secret (README, \"Rotating the QR key\")."
    );
    Ok(())
}

/// The store of an existing deployment: an admin command must not create
/// an empty data directory where it expected one.
async fn existing_store(
    data: PathBuf,
) -> anyhow::Result<std::sync::Arc<dyn fieldgate::ports::ProposalStore>> {
    if std::env::var_os("FIELDGATE_TABLE").is_none() && !data.join("fieldgate.db").exists() {
        anyhow::bail!(
            "no fieldgate data in {} (no fieldgate.db); give the server's --data directory, or set FIELDGATE_TABLE",
            data.display()
        );
    }
    Ok(components(data)?.store().await?)
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
    let cli = Cli::parse();
    // A server's logs go to the journal as JSON lines; a person's terminal
    // gets text.
    if matches!(cli.cmd, Cmd::Serve { .. }) {
        fieldgate::telemetry::init_json();
    } else {
        fieldgate::telemetry::init_text();
    }
    match cli.cmd {
        Cmd::Mcp { cmd } => mcp_command(cmd).await,
        Cmd::Audit { cmd } => audit_command(cmd).await,
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
            no_intake_limits,
            trust_proxy,
            expose_dev_pages,
            workflows,
        } => {
            let mut opts = DevOptions::new(SocketAddr::new(host, port), data.clone());
            opts.public_url = public_url;
            if no_intake_limits {
                eprintln!("warning: --no-intake-limits: every intake rate limit is off");
                opts.intake_limits = fieldgate_qr_intake::Limits::unlimited();
            }
            if let Some(n) = reports_per_code {
                opts.intake_limits.per_code.limit = n;
            }
            opts.trust_proxy = trust_proxy;
            opts.expose_dev = expose_dev_pages;
            if let Some(dir) = &workflows {
                opts.workflows = Some(std::sync::Arc::new(fieldgate_cli::serve::load_workflows(
                    Some(dir),
                )?));
            }
            opts.structurers =
                fieldgate::config::StructurerConfig::from_lookup(&|k| std::env::var(k).ok())?;
            let stack = DevStack::start(opts).await?;
            for w in &stack.warnings {
                eprintln!("WARNING: {w}");
            }
            println!("fieldgate dev is running at {}", stack.public_url);
            println!("  data:        {}", data.display());
            println!("  review mail: {}/dev/outbox", stack.public_url);
            println!("  handoff:     {}/dev/handoff", stack.public_url);
            if let Some(token) = &stack.admin_token {
                println!(
                    "  admin:       {}/admin (read-only; token for this run: {token})",
                    stack.public_url
                );
            }
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
            println!("\nScan links of the demo assets (asset × workflow):");
            let links = stack.links();
            for (name, wf, url) in &links {
                println!("  {:<28} {:<24} {}", name, wf.id.as_str(), url);
            }
            if let Some((name, _, url)) = links.first() {
                println!("\n{}  ({})\n", fieldgate_cli::qr::terminal(url)?, name);
            }
            println!("Press Ctrl-C to stop.");
            stack.wait().await;
            Ok(())
        }
        Cmd::Serve {
            port,
            host,
            data,
            public_url,
            workflows,
            skip_check,
            reports_per_code,
            sweep_every,
            limit_pause,
            trust_proxy,
        } => {
            let mut pipeline = PipelineOptions {
                trust_proxy,
                sweep_every: std::time::Duration::from_secs(sweep_every.max(1)),
                limit_pause: Some(std::time::Duration::from_secs(limit_pause)),
                ..PipelineOptions::default()
            };
            if let Some(n) = reports_per_code {
                pipeline.intake_limits.per_code.limit = n;
            }
            let opts = ServeOptions {
                addr: SocketAddr::new(host, port),
                data_dir: data.clone(),
                public_url,
                workflows_dir: workflows,
                skip_check,
                pipeline,
            };
            // A refusal exits 2 (the systemd unit does not restart on it:
            // the admin has to fix something first).
            let config = match fieldgate::config::Config::from_env() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("fieldgate serve: {}", fieldgate::Chain(&e));
                    std::process::exit(2);
                }
            };
            let stack = match ServeStack::start(opts, config).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "fieldgate serve refused to start");
                    eprintln!("fieldgate serve: {e:#}");
                    std::process::exit(2);
                }
            };
            for w in &stack.warnings {
                eprintln!("WARNING: {w}");
            }
            let p = &stack.pipeline;
            println!("fieldgate serve is running at {}", p.public_url);
            println!("  data:      {}", data.display());
            println!("  health:    {}/healthz", p.base_url);
            println!(
                "  MCP:       {}/mcp (a token: fieldgate mcp token create --name NAME --workflows ID --data {})",
                p.public_url,
                data.display()
            );
            println!("  workflows:");
            for wf in p.workflows.iter() {
                println!("    {:<24} {} → {}", wf.id.as_str(), wf.name, wf.object);
            }
            println!(
                "\nA sticker's link: fieldgate qr ASSET_ID --workflow ID --data {} --base {} --png sticker.png",
                data.display(),
                p.public_url
            );
            println!("Press Ctrl-C to stop.");
            stack.pipeline.wait().await;
            Ok(())
        }
        Cmd::Qr { cmd: Some(cmd), .. } => qr_command(cmd).await,
        Cmd::Keys { cmd } => keys_command(cmd),
        Cmd::Stickers {
            workflow,
            condition,
            out,
            layout,
            outline,
            base,
            data,
            workflows,
        } => {
            use fieldgate_cli::stickers;
            let layout = stickers::Layout::named(&layout).ok_or_else(|| {
                let known: Vec<&str> = stickers::LAYOUTS.iter().map(|l| l.name).collect();
                anyhow::anyhow!("no layout {layout:?} (known: {})", known.join(", "))
            })?;
            let format = stickers::Format::of(&out)?;
            let list = fieldgate_cli::serve::load_workflows(workflows.as_deref())?;
            let wf = fieldgate_cli::codes::chosen_workflows(&list, Some(&workflow))?.remove(0);
            let path = data.join("keys.json");
            let Some(keys) = fieldgate::compose::Keys::load(&path)? else {
                anyhow::bail!(
                    "no keys in {} ({} does not exist): give the data directory of the server that will answer the stickers (--data DIR); a server makes its keys on first start",
                    data.display(),
                    path.display()
                );
            };
            let c = components(data.clone())?;
            let store = existing_store(data).await?;
            let org = fieldgate_cli::check::org(&c).await?;
            let labels = stickers::labels(
                &org.client,
                store.as_ref(),
                &keys,
                &wf,
                condition.as_deref(),
                &base,
                c.clock().now(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", fieldgate::Chain(&e)))?;
            let pages = stickers::pages(&labels, layout, &base, outline)?;
            let files = stickers::write(&out, format, &pages, layout, &wf, labels.len())?;
            eprintln!(
                "{} stickers for {} from {} on {} sheet(s) of {}:",
                labels.len(),
                wf.id.as_str(),
                org.about,
                pages.len(),
                layout.about
            );
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        Cmd::Qr {
            cmd: None,
            asset,
            workflow,
            workflows,
            base,
            png,
            data,
        } => {
            let asset = asset.expect("clap requires it");
            let id: AssetId = asset.parse().map_err(|_| {
                anyhow::anyhow!("{asset:?} is not an Asset id (02i…, 15 or 18 characters)")
            })?;
            let list = fieldgate_cli::serve::load_workflows(workflows.as_deref())?;
            let wf = match &workflow {
                None => list.iter().next().expect("at least one workflow").clone(),
                Some(w) => list
                    .iter()
                    .find(|x| x.id.as_str() == w)
                    .cloned()
                    .ok_or_else(|| {
                        let known: Vec<&str> = list.iter().map(|x| x.id.as_str()).collect();
                        anyhow::anyhow!(
                            "no workflow {w:?} (known: {}); give the server's --workflows DIR",
                            known.join(", ")
                        )
                    })?,
            };
            let path = data.join("keys.json");
            // Keys made here would sign links no running server accepts.
            let Some(keys) = fieldgate::compose::Keys::load(&path)? else {
                eprintln!(
                    "fieldgate qr: no keys in {} ({} does not exist).\nGive the data directory of the server that will answer the link (--data DIR, as for `fieldgate serve` or `dev`); a server makes its keys on first start.",
                    data.display(),
                    path.display()
                );
                std::process::exit(1);
            };
            // A revoked code's successor: the generation the store says.
            // No store yet means nothing was ever revoked.
            let generation = if has_store(&data) {
                let store = existing_store(data.clone()).await?;
                fieldgate_cli::codes::generation(store.as_ref(), &id, &wf).await?
            } else {
                0
            };
            let url = fieldgate_cli::codes::url(&keys, &wf, &base, &id, generation);
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
            cv,
            grid,
            params,
            train_on,
            decisions,
        } => {
            let (wf, s) =
                fieldgate_cli::eval::setup(workflow.as_deref(), structurer.as_deref()).await?;
            let mut cases = Vec::new();
            for dir in &corpus {
                cases.extend(fieldgate_cli::eval::load_corpus(dir, &wf)?);
            }
            if let Some(k) = cv {
                anyhow::ensure!(
                    k >= 2 && k <= cases.len(),
                    "--cv wants 2..={} folds",
                    cases.len()
                );
                let params = fieldgate_cli::eval::parse_params(params.as_deref())?;
                let cue_grid = [0.0, 0.5, 1.0, 2.0, 3.0, 4.0];
                let margin_grid: Vec<f64> = (0..=16).map(|i| f64::from(i) * 0.25).collect();
                fieldgate_cli::eval::cross_validate(
                    &wf,
                    &cases,
                    k,
                    &params,
                    &cue_grid,
                    &margin_grid,
                )
                .print(grid);
                return Ok(());
            }
            if !train_on.is_empty() {
                let mut train = Vec::new();
                for dir in &train_on {
                    train.extend(fieldgate_cli::eval::load_corpus(dir, &wf)?);
                }
                let params = fieldgate_cli::eval::parse_params(params.as_deref())?;
                let clf = fieldgate::structuring::classifier::Classifier::train(
                    &fieldgate_cli::eval::examples(&wf, &train),
                    params,
                );
                let d = fieldgate_cli::eval::parse_decisions(decisions.as_deref())?;
                let s = fieldgate_cli::eval::TrainedRules(clf, d);
                fieldgate_cli::eval::run(&wf, &cases, &s)
                    .await?
                    .print(verbose);
                return Ok(());
            }
            fieldgate_cli::eval::run(&wf, &cases, s.as_ref())
                .await?
                .print(verbose);
            Ok(())
        }
    }
}
