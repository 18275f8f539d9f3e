//! `fieldgate dev`: the whole flow in one process. The four Lambda handlers
//! run unchanged behind one HTTP server (the two HTTP functions' routers,
//! merged as they are); the SQLite store's outbox (`changes`, written in
//! the same transaction as each change) plays the DynamoDB stream; the Salesforce emulator answers under
//! `/services/...` on the same origin, like a real instance URL.

use anyhow::Context;
use askama::Template;
use aws_lambda_events::dynamodb::{Event, EventRecord};
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fieldgate::clock::Clock;
use fieldgate::compose::{Components, Keys};
use fieldgate::config::{Config, StructurerConfig};
use fieldgate::domain::{AssetId, Workflows};
use fieldgate::embedded::{Change, FileMedia, HandoffLog, Outbox, Outcome, SqliteStore};
use fieldgate::ports::AssistantTokens;
use fieldgate::salesforce::{SalesforceClient, SalesforceConfig};
use fieldgate::stream::subject_of;
use fieldgate::{AppError, Chain, UserError};
use fieldgate_approval::ApprovalDeps;
use fieldgate_commit::Commit;
use fieldgate_mcp::McpDeps;
use fieldgate_qr_intake::IntakeDeps;
use fieldgate_sf_emulator::{Emulator, EmulatorConfig};
use fieldgate_structure::Structure;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// The dev org's connected-app pair (documented in the README).
pub const DEV_CLIENT_ID: &str = "fieldgate-dev-client";
pub const DEV_CLIENT_SECRET: &str = "fieldgate-dev-secret";

#[derive(Clone)]
pub struct DevOptions {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Base of links in mail and QR codes; default `http://{addr}`.
    pub public_url: Option<String>,
    /// Retries of a failed stream record before it is set aside.
    pub stream_retries: u32,
    /// Leave approved proposals for someone else to commit (fault tests
    /// drive the commit step themselves).
    pub pause_commit: bool,
    /// Reports per QR code per 10 minutes before 429.
    pub reports_per_code: u64,
    /// How often the commit sweep re-drives paused or stuck approvals
    /// (AWS: the scheduled rule on the commit function).
    pub sweep_every: Duration,
    /// The model structurers (from `FIELDGATE_*`/`ANTHROPIC_API_KEY` in the
    /// `fieldgate dev` command; none in tests unless they ask).
    pub structurers: StructurerConfig,
    /// Where every step reads the time (tests pass a clock they move).
    pub clock: Arc<dyn Clock>,
    /// The workflows; default the configured (built-in) ones.
    pub workflows: Option<Arc<Workflows>>,
}

impl DevOptions {
    pub fn new(addr: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            addr,
            data_dir,
            public_url: None,
            stream_retries: 5,
            pause_commit: false,
            reports_per_code: fieldgate_qr_intake::Limits::default().per_code,
            sweep_every: Duration::from_secs(60),
            structurers: StructurerConfig::default(),
            clock: fieldgate::clock::system(),
            workflows: None,
        }
    }
}

pub struct DevStack {
    pub base_url: String,
    pub public_url: String,
    pub emulator: Emulator,
    pub store: Arc<SqliteStore>,
    pub outbox: Arc<Outbox>,
    pub handoff: Arc<HandoffLog>,
    pub media: Arc<FileMedia>,
    pub salesforce: Arc<SalesforceClient>,
    pub keys: Keys,
    pub workflows: Arc<Workflows>,
    /// The MCP assistants' tokens (the file `fieldgate mcp token` writes).
    pub assistants: Arc<dyn AssistantTokens>,
    pub structure: Arc<Structure>,
    pub commit: Arc<Commit>,
    pub clock: Arc<dyn Clock>,
    /// The outbox sequence up to which the dispatcher handled every change.
    delivered: watch::Receiver<u64>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
    commit_sweeper: Option<tokio::task::JoinHandle<()>>,
}

/// What the `/dev/...` pages read.
struct App {
    store: Arc<SqliteStore>,
    delivered: watch::Receiver<u64>,
    outbox: Arc<Outbox>,
    handoff: Arc<HandoffLog>,
    emulator: Emulator,
    keys: Keys,
    workflows: Arc<Workflows>,
    public_url: String,
}

impl DevStack {
    pub async fn start(opts: DevOptions) -> anyhow::Result<DevStack> {
        let dir = &opts.data_dir;
        fieldgate::embedded::create_private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .with_context(|| format!("binding {}", opts.addr))?;
        let local = listener.local_addr()?;
        // The server calls itself for Salesforce; loopback always works.
        let base_url = format!("http://127.0.0.1:{}", local.port());
        let public_url = opts.public_url.clone().unwrap_or_else(|| {
            if local.ip().is_unspecified() {
                base_url.clone()
            } else {
                format!("http://{local}")
            }
        });

        let emulator = Emulator::new(EmulatorConfig {
            persist_path: Some(dir.join("salesforce.json")),
            client_id: DEV_CLIENT_ID.into(),
            client_secret: DEV_CLIENT_SECRET.into(),
            ..EmulatorConfig::default()
        })
        .map_err(|e| anyhow::anyhow!("Salesforce emulator: {e}"))?;
        let store = Arc::new(
            SqliteStore::open_dir(dir)
                .map_err(|e| anyhow::anyhow!("{}", Chain(&e)))
                .with_context(|| format!("opening the store in {}", dir.display()))?,
        );
        let media = Arc::new(FileMedia::open(dir)?);
        let outbox = Arc::new(Outbox::open(Some(dir))?);
        let handoff = Arc::new(HandoffLog::open(Some(dir))?);
        let mut sf =
            SalesforceConfig::client_credentials(&base_url, DEV_CLIENT_ID, DEV_CLIENT_SECRET);
        sf.retry_base = Duration::from_millis(50);
        let salesforce = Arc::new(SalesforceClient::new(sf)?);
        // The concrete embedded parts are handed in: the dispatcher drives
        // the store's feed, and the dev pages read the outbox and log.
        let parts = Components::new(Config {
            public_url: Some(public_url.clone()),
            structurers: opts.structurers.clone(),
            ..Config::embedded(dir)
        })
        .with_clock(opts.clock.clone())
        .with_store(store.clone())
        .with_media(media.clone())
        .with_notifier(outbox.clone())
        .with_handoff(handoff.clone())
        .with_salesforce(salesforce.clone())
        .with_asset_ttl(time::Duration::minutes(10));
        let parts = match opts.workflows.clone() {
            Some(w) => parts.with_workflows(w),
            None => parts,
        };
        let keys = parts.keys().await?;
        let workflows = parts.workflows().await?;
        let structure = Arc::new(Structure::build(&parts).await?);
        let commit = Arc::new(Commit::build(&parts).await?);
        let limits = fieldgate_qr_intake::Limits {
            per_code: opts.reports_per_code,
            ..Default::default()
        };
        let intake = Arc::new(IntakeDeps::build(&parts, limits).await?);
        let approval = Arc::new(ApprovalDeps::build(&parts).await?);
        let mcp = Arc::new(McpDeps::build(&parts).await?);
        let assistants = parts.assistants().await?;
        let (delivered_tx, delivered) = watch::channel(0);
        let app = Arc::new(App {
            store: store.clone(),
            delivered: delivered.clone(),
            outbox: outbox.clone(),
            handoff: handoff.clone(),
            emulator: emulator.clone(),
            keys: keys.clone(),
            workflows: workflows.clone(),
            public_url: public_url.clone(),
        });

        let router = routes(intake, approval, mcp, emulator.router(), app);
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %Chain(&e), "dev server stopped");
            }
        });

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
        let commit_sweeper = (!opts.pause_commit).then(|| {
            let commit = commit.clone();
            let every = opts.sweep_every;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = fieldgate_commit::sweep(&commit, commit.clock.now()).await {
                        tracing::error!(error = %Chain(&e), "commit sweep failed");
                    }
                }
            })
        });
        let dispatcher = tokio::spawn(dispatch(
            store.clone(),
            delivered_tx,
            structure.clone(),
            (!opts.pause_commit).then(|| commit.clone()),
            opts.stream_retries,
        ));

        // Unanswered reviews expire, and structure work nobody finished is
        // re-driven, as the scheduled sweeps do in AWS.
        let sweep_store = store.clone();
        let clock = opts.clock.clone();
        let structure_sweep = structure.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                if let Err(e) = fieldgate_structure::sweep(&structure_sweep, clock.now()).await {
                    tracing::warn!(error = %Chain(&e), "structure sweep failed");
                }
                match fieldgate::review::expire_due(sweep_store.as_ref(), clock.now(), 100).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(expired = n, "review links expired"),
                    Err(e) => tracing::warn!(error = %Chain(&e), "expiry sweep failed"),
                }
            }
        });

        Ok(DevStack {
            base_url,
            public_url,
            emulator,
            store,
            outbox,
            handoff,
            media,
            salesforce,
            keys,
            workflows,
            assistants,
            structure,
            commit,
            clock: opts.clock,
            delivered,
            shutdown: Some(tx),
            server: Some(server),
            dispatcher: Some(dispatcher),
            sweeper: Some(sweeper),
            commit_sweeper,
        })
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

    /// The signed scan link of an asset for the first workflow.
    pub fn qr_url(&self, asset: &AssetId) -> String {
        qr_url(&self.keys, &self.workflows, &self.public_url, asset)
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
        let tasks = [
            self.dispatcher.take(),
            self.sweeper.take(),
            self.commit_sweeper.take(),
        ];
        for task in tasks.into_iter().flatten() {
            task.abort();
        }
    }

    /// Runs until Ctrl-C.
    pub async fn wait(mut self) {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("\nstopping…");
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }
}

impl Drop for DevStack {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.abort_tasks();
    }
}

pub fn qr_url(keys: &Keys, workflows: &Workflows, public_url: &str, asset: &AssetId) -> String {
    // A QR code reports on an asset: an update workflow (a record by id)
    // is for assistants, not for the form.
    let wf = workflows
        .iter()
        .find(|w| w.operation != fieldgate::domain::Operation::Update)
        .or_else(|| workflows.iter().next())
        .expect("at least one workflow");
    format!(
        "{}/q/{}",
        public_url.trim_end_matches('/'),
        keys.qr.sign(asset, &wf.id)
    )
}

/// How many proposals the dispatcher drives at once (Lambda: the shards
/// and the parallelization factor). Changes of one proposal stay in order.
const PARALLEL: usize = 32;
/// Outbox rows read at a time.
const BATCH: usize = 1024;

/// Plays Lambda's event-source mapping over the outbox: undelivered changes
/// in order, each to the step whose filter matches its new status, a
/// failed one retried with backoff, then set aside (AWS: the on-failure
/// queue). A change is marked delivered only after its step finished, so a
/// crash re-delivers what was in flight (the steps resume from the
/// proposal's state, so a repeat is harmless).
async fn dispatch(
    store: Arc<SqliteStore>,
    delivered: watch::Sender<u64>,
    structure: Arc<Structure>,
    commit: Option<Arc<Commit>>,
    retries: u32,
) {
    let mut committed = store.watch_sequence();
    let mut after = 0;
    loop {
        // Read the sequence before the rows: every change up to it is
        // committed, so it is in what the query returns.
        let target = *committed.borrow_and_update();
        let batch = match store.undelivered(after, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %Chain(&e), "reading the outbox failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(last) = batch.last().map(|c| c.seq) else {
            delivered.send_if_modified(|d| {
                let newer = target > *d;
                *d = (*d).max(target);
                newer
            });
            if committed.changed().await.is_err() {
                return; // the store is gone
            }
            continue;
        };
        // One ordered queue per proposal, driven side by side.
        let mut queues: Vec<(fieldgate::domain::ProposalId, Vec<Change>)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for ch in batch {
            let i = *index.entry(ch.proposal).or_insert_with(|| {
                queues.push((ch.proposal, Vec::new()));
                queues.len() - 1
            });
            queues[i].1.push(ch);
        }
        futures_util::stream::iter(queues)
            .for_each_concurrent(PARALLEL, |(_, changes)| {
                let (store, structure, commit) = (&store, &structure, commit.as_deref());
                async move {
                    for ch in changes {
                        // A paused step's changes stay undelivered: a later
                        // start (with the step running) picks them up.
                        if let Some(outcome) =
                            deliver(&ch.record(), structure, commit, retries).await
                        {
                            mark(store, ch.seq, outcome).await;
                        }
                    }
                }
            })
            .await;
        after = last;
        delivered.send_if_modified(|d| {
            let newer = last > *d;
            *d = (*d).max(last);
            newer
        });
    }
}

/// Records a delivery; retried, since a change left unmarked would be
/// delivered again after a restart (harmless, but noisy).
async fn mark(store: &SqliteStore, seq: u64, outcome: Outcome) {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.mark_delivered(seq, outcome).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(seq, error = %Chain(&e), "marking a change delivered failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// `None`: the change is for the commit step and it is paused.
async fn deliver(
    rec: &EventRecord,
    structure: &Structure,
    commit: Option<&Commit>,
    retries: u32,
) -> Option<Outcome> {
    let Some((id, Some(status))) = subject_of(rec) else {
        return Some(Outcome::Done);
    };
    if commit.is_none() && fieldgate_commit::STATUSES.contains(&status) {
        return None;
    }
    let mut delay = Duration::from_millis(100);
    for attempt in 0..=retries {
        let mut ev = Event::default();
        ev.records = vec![rec.clone()];
        let resp = if fieldgate_structure::STATUSES.contains(&status) {
            fieldgate_structure::handle_stream(structure, ev).await
        } else if let Some(commit) = commit.filter(|_| fieldgate_commit::STATUSES.contains(&status))
        {
            fieldgate_commit::handle_stream(commit, ev).await
        } else {
            return Some(Outcome::Done);
        };
        if resp.batch_item_failures.is_empty() {
            return Some(Outcome::Done);
        }
        if attempt < retries {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
    tracing::error!(proposal = %id, %status, "record set aside after {retries} retries (AWS: on-failure queue)");
    Some(Outcome::SetAside)
}

/// One origin, as behind API Gateway: the functions' routers (each brings
/// its 10 MB body limit and security headers; MCP at `/mcp`), the emulator under
/// `/services/...` (its routes carry that prefix), and the dev pages.
fn routes(
    intake: Arc<IntakeDeps>,
    approval: Arc<ApprovalDeps>,
    mcp: Arc<McpDeps>,
    salesforce: Router,
    app: Arc<App>,
) -> Router {
    // Pages a person opens get the functions' headers and 404 page.
    let pages = Router::new()
        .route("/", get(index))
        .route("/dev/qr/{file}", get(qr_svg))
        .method_not_allowed_fallback(fieldgate::web::method_not_allowed)
        .fallback(fieldgate::web::not_found)
        .layer(fieldgate::web::security_headers());
    let dev = Router::new()
        .route("/dev/outbox", get(outbox))
        .route("/dev/handoff", get(handoff))
        .route("/dev/status", get(status))
        .merge(pages)
        .with_state(app);
    // Each function's own 404 fallback gives way to the one above (axum
    // refuses to merge two fallbacks); it is the same page.
    Router::new()
        .merge(fieldgate_qr_intake::router(intake).reset_fallback())
        .merge(fieldgate_approval::router(approval).reset_fallback())
        .merge(fieldgate_mcp::router(mcp))
        .merge(salesforce)
        .merge(dev)
}

async fn outbox(State(app): State<Arc<App>>) -> Response {
    axum::Json(serde_json::to_value(app.outbox.mails()).unwrap_or_default()).into_response()
}

/// How far the dispatcher is: settled when `delivered` ≥ `sequence`
/// (what a test outside the process polls; `DevStack::settled` inside).
async fn status(State(app): State<Arc<App>>) -> Response {
    let sequence = app.store.sequence();
    let delivered = *app.delivered.borrow();
    axum::Json(serde_json::json!({
        "sequence": sequence,
        "delivered": delivered,
        "settled": delivered >= sequence,
    }))
    .into_response()
}

async fn handoff(State(app): State<Arc<App>>) -> Response {
    axum::Json(serde_json::to_value(app.handoff.messages()).unwrap_or_default()).into_response()
}

/// `/dev/qr/{asset}.svg` (axum matches whole segments, so the suffix is
/// checked here).
async fn qr_svg(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
) -> Result<Response, AppError> {
    let asset: AssetId = file
        .strip_suffix(".svg")
        .and_then(|a| a.parse().ok())
        .ok_or(UserError::NotFound)?;
    let url = qr_url(&app.keys, &app.workflows, &app.public_url, &asset);
    Ok(match crate::qr::svg(&url) {
        Ok(svg) => ([("content-type", "image/svg+xml")], svg).into_response(),
        Err(_) => (http::StatusCode::INTERNAL_SERVER_ERROR, "qr").into_response(),
    })
}

struct DemoLink {
    name: String,
    detail: String,
    url: String,
    asset: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>fieldgate dev</title><link rel="stylesheet" href="/static/app.css"></head>
<body><main><section class="card"><p class="eyebrow">fieldgate dev</p><h1>Demo assets</h1><p>Scan a code with a phone on the same network, or open a link.</p></section>
{% for l in links %}<section class="card"><h2>{{ l.name }}</h2><p class="fine">{{ l.detail }}</p><img src="/dev/qr/{{ l.asset }}.svg" alt="QR code for {{ l.name }}" width="200" height="200"><p class="ref"><a href="{{ l.url }}">{{ l.url }}</a></p></section>{% endfor %}
<section class="card"><h2>Behind the scenes</h2><p><a href="/dev/outbox">Review mail outbox</a> · <a href="/dev/handoff">Handoff messages</a></p></section></main></body></html>"#
)]
struct Index {
    links: Vec<DemoLink>,
}

async fn index(State(app): State<Arc<App>>) -> Response {
    let links = app
        .emulator
        .demo_assets()
        .into_iter()
        .filter_map(|a| {
            let id: AssetId = a.id.parse().ok()?;
            Some(DemoLink {
                url: qr_url(&app.keys, &app.workflows, &app.public_url, &id),
                detail: format!("{} · {} · {}", a.serial_number, a.account_name, a.location),
                name: a.name,
                asset: a.id,
            })
        })
        .collect();
    let body = Index { links }.render().unwrap_or_default();
    fieldgate::web::html(200, body)
}
