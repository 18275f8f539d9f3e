//! `fieldgate serve`: the whole pipeline on one machine against a real
//! org, and the [`Pipeline`] that `fieldgate dev` runs too (dev adds the
//! demo parts around it: the emulator, the outbox, the demo org).
//!
//! The four Lambda handlers run unchanged behind one HTTP server (the two
//! HTTP functions' routers and `/mcp`, merged as they are); the SQLite
//! store's outbox (`changes`, written in the same transaction as each
//! change) plays the DynamoDB stream; a dispatcher ([`crate::dispatch`])
//! hands each change to the step whose filter matches, as Lambda's
//! event-source mappings do.

use anyhow::Context;
use axum::Router;
use axum::response::Response;
use axum::routing::get;
use fieldgate::Chain;
use fieldgate::clock::Clock;
use fieldgate::compose::{Components, Keys};
use fieldgate::config::{Config, KeysConfig, MailConfig, WebhookConfig};
use fieldgate::domain::{AssetId, Workflow, Workflows};
use fieldgate::embedded::webhook::{Backoff, WebhookRelay};
use fieldgate::embedded::{FileMedia, HandoffLog, SqliteStore};
use fieldgate::ports::AssistantTokens;
use fieldgate_approval::ApprovalDeps;
use fieldgate_commit::Commit;
use fieldgate_mcp::McpDeps;
use fieldgate_qr_intake::IntakeDeps;
use fieldgate_structure::Structure;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How the pipeline's background work runs (the same in serve and dev).
#[derive(Clone)]
pub struct PipelineOptions {
    /// Retries of a failed stream record before it is set aside.
    pub stream_retries: u32,
    /// Leave approved proposals for someone else to commit (fault tests
    /// drive the commit step themselves).
    pub pause_commit: bool,
    /// Intake's rate limits (load and crash tests lift them).
    pub intake_limits: fieldgate_qr_intake::Limits,
    /// The client address of a request is the last `X-Forwarded-For` hop
    /// (behind a reverse proxy), not the socket's peer.
    pub trust_proxy: bool,
    /// How often the commit sweep re-drives paused or stuck approvals
    /// (AWS: the scheduled rule on the commit function).
    pub sweep_every: Duration,
    /// Where every step reads the time (tests pass a clock they move).
    pub clock: Arc<dyn Clock>,
    /// Pacing of webhook retries.
    pub webhook_backoff: Backoff,
    /// How long commits wait after the org's API limit (default
    /// `fieldgate_commit::LIMIT_PAUSE`).
    pub limit_pause: Option<Duration>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            stream_retries: 5,
            pause_commit: false,
            intake_limits: fieldgate_qr_intake::Limits::default(),
            trust_proxy: false,
            sweep_every: Duration::from_secs(60),
            clock: fieldgate::clock::system(),
            webhook_backoff: Backoff::default(),
            limit_pause: None,
        }
    }
}

/// A bound listener and the URLs that reach it.
pub struct Bound {
    pub listener: tokio::net::TcpListener,
    /// Loopback: what the server uses to call itself.
    pub base_url: String,
    /// Base of links in mail and QR codes.
    pub public_url: String,
    /// Set when links point at 127.0.0.1 although the server listens on
    /// every interface: phones on the network cannot open them.
    pub warning: Option<String>,
}

pub async fn bind(addr: SocketAddr, public_url: Option<String>) -> anyhow::Result<Bound> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    // The server calls itself (the dev org): over loopback, unless it
    // listens on one other address only.
    let base_url = if local.ip().is_unspecified() || local.ip().is_loopback() {
        format!("http://127.0.0.1:{}", local.port())
    } else {
        format!("http://{local}")
    };
    let warning = (public_url.is_none() && local.ip().is_unspecified()).then(|| {
        format!(
            "listening on {} but the printed links point at {base_url}, which only this machine can open; pass --public-url http://THIS-MACHINE:{} (or the proxy's https URL)",
            local.ip(),
            local.port()
        )
    });
    let public_url = public_url
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| {
            if local.ip().is_unspecified() {
                base_url.clone()
            } else {
                format!("http://{local}")
            }
        });
    Ok(Bound {
        listener,
        base_url,
        public_url,
        warning,
    })
}

/// The embedded parts every step shares, in one data directory (0700;
/// every file in it 0600).
pub struct Data {
    pub dir: PathBuf,
    pub store: Arc<SqliteStore>,
    pub media: Arc<FileMedia>,
    pub handoff: Arc<HandoffLog>,
}

impl Data {
    pub fn open(dir: &Path) -> anyhow::Result<Data> {
        fieldgate::embedded::create_private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let store = Arc::new(
            SqliteStore::open_dir(dir)
                .map_err(|e| anyhow::anyhow!("{}", Chain(&e)))
                .with_context(|| format!("opening the store in {}", dir.display()))?,
        );
        let media = Arc::new(FileMedia::open(dir)?);
        let handoff = Arc::new(HandoffLog::open(Some(dir))?);
        Ok(Data {
            dir: dir.to_owned(),
            store,
            media,
            handoff,
        })
    }
}

/// The running pipeline: server, dispatcher and sweeps.
pub struct Pipeline {
    pub base_url: String,
    pub public_url: String,
    pub store: Arc<SqliteStore>,
    pub handoff: Arc<HandoffLog>,
    pub media: Arc<FileMedia>,
    pub keys: Keys,
    pub workflows: Arc<Workflows>,
    /// The MCP assistants' tokens (the file `fieldgate mcp token` writes).
    pub assistants: Arc<dyn AssistantTokens>,
    pub structure: Arc<Structure>,
    pub commit: Arc<Commit>,
    pub clock: Arc<dyn Clock>,
    /// The outbox sequence up to which the dispatcher handled every change.
    pub delivered: watch::Receiver<u64>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pipeline {
    /// Builds every step from `parts` (which the caller made over `data`'s
    /// store, media and handoff log), serves them with the caller's pages
    /// (`pages` sees the built pipeline) and starts the background work.
    pub async fn start(
        bound: Bound,
        data: &Data,
        parts: Components,
        opts: PipelineOptions,
        webhook: Option<WebhookConfig>,
        pages: impl FnOnce(&Pipeline) -> Router,
    ) -> anyhow::Result<Pipeline> {
        let store = data.store.clone();
        let keys = parts.keys().await?;
        let workflows = parts.workflows().await?;
        let structure = Arc::new(Structure::build(&parts).await?);
        let mut commit = Commit::build(&parts).await?;
        if let Some(d) = opts.limit_pause {
            commit.limit_pause = time::Duration::try_from(d).context("--limit-pause")?;
        }
        let commit = Arc::new(commit);
        let started = opts.clock.now();
        let intake = Arc::new(IntakeDeps::build(&parts, opts.intake_limits).await?);
        let approval = Arc::new(ApprovalDeps::build(&parts).await?);
        let mcp = Arc::new(McpDeps::build(&parts).await?);
        let assistants = parts.assistants().await?;
        let (delivered_tx, delivered) = watch::channel(0);
        let mut p = Pipeline {
            base_url: bound.base_url,
            public_url: bound.public_url,
            store: store.clone(),
            handoff: data.handoff.clone(),
            media: data.media.clone(),
            keys,
            workflows,
            assistants,
            structure: structure.clone(),
            commit: commit.clone(),
            clock: opts.clock.clone(),
            delivered,
            shutdown: None,
            server: None,
            tasks: Vec::new(),
        };

        // Each function's own 404 fallback gives way to the pages' one
        // (axum refuses to merge two fallbacks); it is the same page.
        let router = Router::new()
            .merge(fieldgate_qr_intake::router(intake).reset_fallback())
            .merge(fieldgate_approval::router(approval).reset_fallback())
            .merge(fieldgate_mcp::router(mcp))
            .merge(pages(&p))
            .layer(axum::middleware::from_fn_with_state(
                opts.trust_proxy,
                fieldgate::http::client_ip_from_socket,
            ));
        let listener = bound.listener;
        let (tx, rx) = oneshot::channel::<()>();
        p.shutdown = Some(tx);
        p.server = Some(tokio::spawn(async move {
            let r = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
            if let Err(e) = r {
                tracing::error!(error = %Chain(&e), "server stopped");
            }
        }));

        // What failed every retry last time gets another chance (AWS: the
        // on-failure queue redriven).
        let redriven = store.redrive_set_aside().await?;
        // This process is the only driver of its data: leases left by the
        // one before it (killed mid-commit) are dead.
        let released = fieldgate_commit::release_dead_leases(&commit).await?;
        if released > 0 {
            tracing::info!(
                proposals = released,
                "commit leases of the previous run released"
            );
        }
        if redriven > 0 {
            tracing::info!(
                changes = redriven,
                "set-aside changes handed to the steps again"
            );
        }
        if !opts.pause_commit {
            let commit = commit.clone();
            let every = opts.sweep_every;
            p.tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = fieldgate_commit::sweep(&commit, commit.clock.now()).await {
                        tracing::error!(error = %Chain(&e), "commit sweep failed");
                    }
                }
            }));
        }
        p.tasks.push(tokio::spawn(crate::dispatch::dispatch(
            store.clone(),
            delivered_tx,
            crate::dispatch::Steps {
                structure: structure.clone(),
                commit: (!opts.pause_commit).then(|| commit.clone()),
                retries: opts.stream_retries,
            },
        )));

        // Review rounds the previous run issued and never mailed: it is
        // dead, so they are this run's to mail now, not after the sweep's
        // wait.
        {
            let structure = structure.clone();
            p.tasks.push(tokio::spawn(async move {
                match fieldgate_structure::take_over(&structure, started).await {
                    Ok(s) if s.redriven + s.failed > 0 => tracing::info!(
                        mailed = s.redriven,
                        failed = s.failed,
                        "review rounds of the previous run taken over"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %Chain(&e), "taking over unmailed reviews failed")
                    }
                }
            }));
        }

        // Unanswered reviews expire, and structure work nobody finished is
        // re-driven, as the scheduled sweeps do in AWS.
        let clock = opts.clock.clone();
        p.tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                if let Err(e) = fieldgate_structure::sweep(&structure, clock.now()).await {
                    tracing::warn!(error = %Chain(&e), "structure sweep failed");
                }
                match fieldgate::review::expire_due(store.as_ref(), clock.now(), 100).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(expired = n, "review links expired"),
                    Err(e) => tracing::warn!(error = %Chain(&e), "expiry sweep failed"),
                }
            }
        }));

        if let Some(hook) = webhook {
            let relay =
                WebhookRelay::new(data.handoff.clone(), hook, &data.dir, opts.webhook_backoff)?;
            p.tasks.push(tokio::spawn(async move {
                if let Err(e) = relay.run().await {
                    tracing::error!(error = %Chain(&e), "the webhook relay stopped");
                }
            }));
        }
        Ok(p)
    }

    /// Waits until the dispatcher has handled every change written so far,
    /// and the changes those caused: the flow has settled. What tests wait
    /// on instead of the clock.
    pub async fn settled(&self) {
        let mut delivered = self.delivered.clone();
        loop {
            let target = self.store.sequence();
            if delivered.wait_for(|&d| d >= target).await.is_err() {
                return; // the dispatcher stopped: nothing more will happen
            }
            if self.store.sequence() == target {
                return;
            }
        }
    }

    /// The signed scan link of an asset for a workflow.
    pub fn qr_url(&self, asset: &AssetId, workflow: &Workflow) -> String {
        qr_url(&self.keys, workflow, &self.public_url, asset)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.abort_tasks();
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }

    fn abort_tasks(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }

    /// Runs until Ctrl-C or SIGTERM (systemd's stop), then lets requests
    /// in flight finish.
    pub async fn wait(mut self) {
        shutdown_signal().await;
        eprintln!("\nstopping…");
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.abort_tasks();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The signed scan link of `asset` for `workflow`.
pub fn qr_url(keys: &Keys, workflow: &Workflow, public_url: &str, asset: &AssetId) -> String {
    format!(
        "{}/q/{}",
        public_url.trim_end_matches('/'),
        keys.qr.sign(asset, &workflow.id)
    )
}

/// The admin's workflows: every file of `dir` (refused whole, naming file,
/// line and problem, if one is invalid), or the built-in one.
pub fn load_workflows(dir: Option<&Path>) -> anyhow::Result<Workflows> {
    match dir {
        Some(d) => fieldgate::workflows::load_dir(d).map_err(|e| {
            anyhow::anyhow!(
                "{}\nfix the workflow file and start again (nothing was started)",
                Chain(&e)
            )
        }),
        None => Ok(fieldgate::workflows::builtin()),
    }
}

/// What `fieldgate serve` is told on its command line.
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    /// `--workflows DIR`; default the built-in workflow.
    pub workflows_dir: Option<PathBuf>,
    /// Start even when a workflow does not fit the org.
    pub skip_check: bool,
    pub pipeline: PipelineOptions,
}

/// Why `fieldgate serve` refused to start: the admin's to fix.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "fieldgate serve runs on this machine's embedded store; unset FIELDGATE_TABLE (the Lambdas use it)"
    )]
    InAws,
    #[error(
        "fieldgate serve needs an org: set SALESFORCE_LOGIN_URL, SALESFORCE_CLIENT_ID and SALESFORCE_USERNAME + SALESFORCE_PRIVATE_KEY_FILE (JWT bearer) or SALESFORCE_CLIENT_SECRET"
    )]
    NoOrg,
    #[error(
        "fieldgate serve mails reviewers over SMTP: set FIELDGATE_SMTP_URL (e.g. smtp://user:password@mail.example.com) and FIELDGATE_MAIL_FROM"
    )]
    NoMail,
    #[error(
        "{0} workflow check(s) failed against the org (above); fix them, or start with --skip-check to run anyway"
    )]
    Check(usize),
}

/// `fieldgate serve`, started.
pub struct ServeStack {
    pub pipeline: Pipeline,
    /// Said at start: the bind warning, a skipped check.
    pub warnings: Vec<String>,
}

impl ServeStack {
    /// `config` is the environment's (`Config::from_env`).
    pub async fn start(opts: ServeOptions, mut config: Config) -> anyhow::Result<ServeStack> {
        let workflows = load_workflows(opts.workflows_dir.as_deref())?;
        if config.in_aws() {
            return Err(Refusal::InAws.into());
        }
        let Some(org) = config.salesforce.as_ref().map(|s| s.login_url.clone()) else {
            return Err(Refusal::NoOrg.into());
        };
        if !matches!(config.mail, MailConfig::Smtp { .. }) {
            return Err(Refusal::NoMail.into());
        }
        let workflows = match &config.reviewers {
            Some(list) => fieldgate::workflows::with_reviewers(&workflows, list),
            None => workflows,
        };
        let workflows = Arc::new(workflows);
        let bound = bind(opts.addr, opts.public_url.clone()).await?;
        let mut warnings: Vec<String> = bound.warning.iter().cloned().collect();
        config.data_dir = opts.data_dir.clone();
        // The keys beside the data they sign (the environment's default
        // directory was resolved before --data was known).
        if matches!(config.keys, KeysConfig::File(_)) {
            config.keys = KeysConfig::File(opts.data_dir.join("keys.json"));
        }
        config.public_url = Some(bound.public_url.clone());
        let webhook = config.webhook.clone();
        let data = Data::open(&opts.data_dir)?;
        let parts = Components::new(config)
            .with_clock(opts.pipeline.clock.clone())
            .with_store(data.store.clone())
            .with_media(data.media.clone())
            .with_handoff(data.handoff.clone())
            .with_workflows(workflows.clone());

        // The `fieldgate check` checks, before anything is accepted.
        let sf = parts.salesforce().await?;
        let mut problems = 0;
        for wf in workflows.iter() {
            let report = crate::check::run(wf, &sf, &org)
                .await
                .map_err(|e| anyhow::anyhow!("{}", Chain(&e)))
                .with_context(|| format!("checking workflow {} against {org}", wf.id))?;
            println!("{report}");
            problems += report.problems.len();
        }
        if problems > 0 {
            if !opts.skip_check {
                return Err(Refusal::Check(problems).into());
            }
            let w = format!(
                "--skip-check: starting although {problems} workflow check(s) failed; proposals will fail to commit on those fields"
            );
            tracing::warn!(problems, "{w}");
            warnings.push(w);
        }

        let pipeline =
            Pipeline::start(bound, &data, parts, opts.pipeline, webhook, |_| pages()).await?;
        Ok(ServeStack { pipeline, warnings })
    }
}

/// No demo pages, no `/dev`: a plain front page and a health check (for the
/// reverse proxy and monitoring).
fn pages() -> Router {
    Router::new()
        .route("/", get(front))
        .route("/healthz", get(|| async { "ok\n" }))
        .method_not_allowed_fallback(fieldgate::web::method_not_allowed)
        .fallback(fieldgate::web::not_found)
        .layer(fieldgate::web::security_headers())
}

async fn front() -> Response {
    fieldgate::web::html(
        200,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>fieldgate</title><link rel="stylesheet" href="/static/app.css"></head><body><main><section class="card"><h1>fieldgate</h1><p>Scan the QR code on the equipment to report a problem.</p></section></main></body></html>"#
            .to_owned(),
    )
}
