//! `fieldgate dev`: `fieldgate serve`'s [`Pipeline`] with the demo parts
//! around it: the Salesforce emulator answers under `/services/...` on the
//! same origin (like a real instance URL) as the org, review mail goes to
//! an outbox file (`/dev/outbox`), the demo org's assets get QR links, and
//! the `/dev/*` pages show what happened.

use crate::serve::{Data, Pipeline, PipelineOptions, bind};
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fieldgate::clock::Clock;
use fieldgate::compose::{Components, Keys};
use fieldgate::config::{Config, StructurerConfig, WebhookConfig};
use fieldgate::domain::{AssetId, Workflow, Workflows};
use fieldgate::embedded::{FileMedia, HandoffLog, Outbox, SqliteStore};
use fieldgate::ports::AssistantTokens;
use fieldgate::salesforce::{SalesforceClient, SalesforceConfig};
use fieldgate::{AppError, UserError};
use fieldgate_commit::Commit;
use fieldgate_sf_emulator::{Emulator, EmulatorConfig};
use fieldgate_structure::Structure;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The dev org's connected-app pair (documented in the README).
pub const DEV_CLIENT_ID: &str = "fieldgate-dev-client";
pub const DEV_CLIENT_SECRET: &str = "fieldgate-dev-secret";

/// Intake's rate limits, as the options take them.
pub use fieldgate_qr_intake::Limits as IntakeLimits;

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
    /// Intake's rate limits (load and crash tests lift them).
    pub intake_limits: IntakeLimits,
    /// The client address of a request is the last `X-Forwarded-For` hop
    /// (behind a reverse proxy), not the socket's peer.
    pub trust_proxy: bool,
    /// Serve `/`, `/dev/*` and the emulated org to other machines too (by
    /// default only this machine reaches them, whatever `addr` is).
    pub expose_dev: bool,
    /// How often the commit sweep re-drives paused or stuck approvals
    /// (AWS: the scheduled rule on the commit function).
    pub sweep_every: Duration,
    /// The model structurers (from `FIELDGATE_*`/`ANTHROPIC_API_KEY` in the
    /// `fieldgate dev` command; none in tests unless they ask).
    pub structurers: StructurerConfig,
    /// Where every step reads the time (tests pass a clock they move).
    pub clock: Arc<dyn Clock>,
    /// The workflows (`--workflows DIR`); default the built-in one.
    pub workflows: Option<Arc<Workflows>>,
    /// Handoffs also POSTed to a webhook (`FIELDGATE_HANDOFF_WEBHOOK_*`).
    pub webhook: Option<WebhookConfig>,
    /// Serve `/admin` with a fresh token made at start ([`DevStack::admin_token`]),
    /// to this machine only like `/dev/*`.
    pub admin: bool,
}

impl DevOptions {
    pub fn new(addr: SocketAddr, data_dir: PathBuf) -> Self {
        let p = PipelineOptions::default();
        Self {
            addr,
            data_dir,
            public_url: None,
            stream_retries: p.stream_retries,
            pause_commit: p.pause_commit,
            intake_limits: p.intake_limits,
            trust_proxy: p.trust_proxy,
            expose_dev: false,
            sweep_every: p.sweep_every,
            structurers: StructurerConfig::default(),
            clock: p.clock,
            workflows: None,
            webhook: None,
            admin: true,
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
    /// Said at start (e.g. links that only this machine can open).
    pub warnings: Vec<String>,
    /// The `/admin` token made at this start (`None`: no admin page).
    pub admin_token: Option<String>,
    pipeline: Pipeline,
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
        let data = Data::open(dir)?;
        let bound = bind(opts.addr, opts.public_url.clone()).await?;
        let warnings: Vec<String> = bound.warning.iter().cloned().collect();
        let (base_url, public_url) = (bound.base_url.clone(), bound.public_url.clone());

        let emulator = Emulator::new(EmulatorConfig {
            persist_path: Some(dir.join("salesforce.json")),
            client_id: DEV_CLIENT_ID.into(),
            client_secret: DEV_CLIENT_SECRET.into(),
            ..EmulatorConfig::default()
        })
        .map_err(|e| anyhow::anyhow!("Salesforce emulator: {e}"))?;
        let outbox = Arc::new(Outbox::open(Some(dir))?);
        // The server calls itself for Salesforce; loopback always works.
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
        .with_store(data.store.clone())
        .with_media(data.media.clone())
        .with_notifier(outbox.clone())
        .with_handoff(data.handoff.clone())
        .with_salesforce(salesforce.clone());
        let parts = match opts.workflows.clone() {
            Some(w) => parts.with_workflows(w),
            None => parts,
        };
        let popts = PipelineOptions {
            stream_retries: opts.stream_retries,
            pause_commit: opts.pause_commit,
            intake_limits: opts.intake_limits,
            trust_proxy: opts.trust_proxy,
            sweep_every: opts.sweep_every,
            clock: opts.clock.clone(),
            ..PipelineOptions::default()
        };
        let em = emulator.clone();
        let ob = outbox.clone();
        let local = bound.listener.local_addr()?.ip();
        let own = (!local.is_unspecified()).then_some(local);
        let expose = opts.expose_dev;
        // A new token every start: nothing to configure on this machine, and
        // nothing that outlives the process.
        let admin = opts
            .admin
            .then(|| fieldgate::admin::AdminCredential::generate(&mut rand::rng()));
        let admin_cred = admin.as_ref().map(|(_, c)| c.clone());
        let https = public_url.starts_with("https://");
        let pipeline = Pipeline::start(bound, &data, parts, popts, opts.webhook.clone(), |p| {
            let app = Arc::new(App {
                store: p.store.clone(),
                delivered: p.delivered.clone(),
                outbox: ob,
                handoff: p.handoff.clone(),
                emulator: em.clone(),
                keys: p.keys.clone(),
                workflows: p.workflows.clone(),
                public_url: p.public_url.clone(),
            });
            let guard = |r: Router| {
                if expose {
                    r
                } else {
                    r.layer(axum::middleware::from_fn_with_state(
                        own,
                        fieldgate::http::this_machine_only,
                    ))
                }
            };
            let pages = routes(em.router(), app);
            let pages = match admin_cred {
                Some(credential) => pages.merge(fieldgate::admin::router(Arc::new(
                    fieldgate::admin::AdminDeps::new(
                        p.store.clone(),
                        Arc::new(p.keys.links.clone()),
                        p.clock.clone(),
                        credential,
                        https,
                    ),
                ))),
                None => pages,
            };
            guard(pages)
        })
        .await?;

        Ok(DevStack {
            base_url,
            public_url,
            emulator,
            store: pipeline.store.clone(),
            outbox,
            handoff: pipeline.handoff.clone(),
            media: pipeline.media.clone(),
            salesforce,
            keys: pipeline.keys.clone(),
            workflows: pipeline.workflows.clone(),
            assistants: pipeline.assistants.clone(),
            structure: pipeline.structure.clone(),
            commit: pipeline.commit.clone(),
            clock: opts.clock,
            warnings,
            admin_token: admin.map(|(token, _)| token),
            pipeline,
        })
    }

    /// Waits until the dispatcher has handled every change written so far,
    /// and the changes those caused: the flow has settled. What tests wait
    /// on instead of the clock.
    pub async fn settled(&self) {
        self.pipeline.settled().await
    }

    /// The signed scan link of an asset for the first workflow.
    pub fn qr_url(&self, asset: &AssetId) -> String {
        qr_url(&self.keys, &self.workflows, &self.public_url, asset)
    }

    /// Every demo asset × workflow: (asset name, workflow, link).
    pub fn links(&self) -> Vec<(String, Arc<Workflow>, String)> {
        links(
            &self.emulator,
            &self.keys,
            &self.workflows,
            &self.public_url,
        )
        .into_iter()
        .map(|l| (l.name, l.workflow, l.url))
        .collect()
    }

    pub async fn stop(self) {
        self.pipeline.stop().await
    }

    /// Runs until Ctrl-C (or SIGTERM).
    pub async fn wait(self) {
        self.pipeline.wait().await
    }
}

/// The signed scan link of an asset for the first workflow.
pub fn qr_url(keys: &Keys, workflows: &Workflows, public_url: &str, asset: &AssetId) -> String {
    // A QR code reports on an asset: an update workflow (a record by id)
    // is for assistants, not for the form.
    let wf = workflows
        .iter()
        .find(|w| w.operation != fieldgate::domain::Operation::Update)
        .or_else(|| workflows.iter().next())
        .expect("at least one workflow");
    crate::serve::qr_url(keys, wf, public_url, asset)
}

/// The demo pages: the emulator under `/services/...` (its routes carry
/// that prefix), the index with every asset × workflow link, and `/dev`.
///
/// All of it is for this machine only unless `--expose-dev-pages` (the
/// caller's guard): the outbox holds live review links, the index every
/// sticker's code, the org its client secret. A phone needs only the
/// functions' form, status and review pages.
fn routes(salesforce: Router, app: Arc<App>) -> Router {
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
    Router::new().merge(salesforce).merge(dev)
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

/// `/dev/qr/{asset}.{workflow}.svg` (axum matches whole segments, so the
/// parts are split here; asset ids have no dots).
async fn qr_svg(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
) -> Result<Response, AppError> {
    let (asset, workflow) = file
        .strip_suffix(".svg")
        .and_then(|f| f.split_once('.'))
        .ok_or(UserError::NotFound)?;
    let asset: AssetId = asset.parse().map_err(|_| UserError::NotFound)?;
    let wf = app
        .workflows
        .iter()
        .find(|w| w.id.as_str() == workflow)
        .ok_or(UserError::NotFound)?;
    // A revoked sticker's successor, as `fieldgate qr` prints it.
    let generation = crate::codes::generation(app.store.as_ref(), &asset, wf)
        .await
        .map_err(|_| AppError::Internal("reading a code's revocation"))?;
    let url = crate::codes::url(&app.keys, wf, &app.public_url, &asset, generation);
    Ok(match crate::qr::svg(&url) {
        Ok(svg) => ([("content-type", "image/svg+xml")], svg).into_response(),
        Err(_) => (http::StatusCode::INTERNAL_SERVER_ERROR, "qr").into_response(),
    })
}

struct DemoLink {
    asset: AssetId,
    name: String,
    detail: String,
    workflow: Arc<Workflow>,
    url: String,
    qr: String,
}

/// Every demo asset × every workflow.
fn links(
    emulator: &Emulator,
    keys: &Keys,
    workflows: &Workflows,
    public_url: &str,
) -> Vec<DemoLink> {
    let mut out = Vec::new();
    for a in emulator.demo_assets() {
        let Ok(id) = a.id.parse::<AssetId>() else {
            continue;
        };
        // An update workflow changes a record by id (assistants): no sticker.
        for wf in workflows
            .iter()
            .filter(|w| w.operation != fieldgate::domain::Operation::Update)
        {
            out.push(DemoLink {
                url: crate::serve::qr_url(keys, wf, public_url, &id),
                detail: format!("{} · {} · {}", a.serial_number, a.account_name, a.location),
                name: a.name.clone(),
                qr: format!("/dev/qr/{}.{}.svg", a.id, wf.id),
                workflow: wf.clone(),
                asset: id.clone(),
            });
        }
    }
    out
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>fieldgate dev</title><link rel="stylesheet" href="/static/app.css"></head>
<body><main><section class="card"><p class="eyebrow">fieldgate dev</p><h1>Demo assets</h1><p>Scan a code with a phone on the same network, or open a link. Each asset carries one code per workflow.</p></section>
{% for a in assets %}<section class="card asset-codes"><h2>{{ a.name }}</h2><p class="fine">{{ a.detail }}</p>{% for l in a.links %}<div class="code"><h3>{{ l.workflow.name }}</h3><p class="fine">Workflow {{ l.workflow.id }} → {{ l.workflow.object }}</p><img src="{{ l.qr }}" alt="QR code for {{ a.name }}, {{ l.workflow.name }}" width="200" height="200"><p class="ref"><a href="{{ l.url }}">{{ l.url }}</a></p></div>{% endfor %}</section>{% endfor %}
<section class="card"><h2>Behind the scenes</h2><p><a href="/dev/outbox">Review mail outbox</a> · <a href="/dev/handoff">Handoff messages</a></p></section></main></body></html>"#
)]
struct Index {
    assets: Vec<AssetCodes>,
}

/// One demo asset and its codes, one per workflow.
struct AssetCodes {
    name: String,
    detail: String,
    links: Vec<DemoLink>,
}

async fn index(State(app): State<Arc<App>>) -> Response {
    let mut links = links(&app.emulator, &app.keys, &app.workflows, &app.public_url);
    // A revoked sticker's successor, as `fieldgate qr` prints it.
    for l in &mut links {
        if let Ok(g @ 1..) =
            crate::codes::generation(app.store.as_ref(), &l.asset, &l.workflow).await
        {
            l.url = crate::codes::url(&app.keys, &l.workflow, &app.public_url, &l.asset, g);
        }
    }
    let mut assets: Vec<AssetCodes> = Vec::new();
    for l in links {
        match assets.last_mut() {
            Some(a) if a.links.first().is_some_and(|f| f.asset == l.asset) => a.links.push(l),
            _ => assets.push(AssetCodes {
                name: l.name.clone(),
                detail: l.detail.clone(),
                links: vec![l],
            }),
        }
    }
    let body = Index { assets }.render().unwrap_or_default();
    fieldgate::web::html(200, body)
}
