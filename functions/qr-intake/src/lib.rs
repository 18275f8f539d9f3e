//! QR intake: `GET /q/{code}` shows the form with the asset's context,
//! `POST /q/{code}` stores the report as a RECEIVED proposal,
//! `GET /s/{ref}` shows the technician where the report stands, and `/k`
//! opens the form of a sticker whose code was typed instead of scanned.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::get;
use fieldgate::clock::{Clock, new_proposal_id};
use fieldgate::compose::{BuildError, Components, QrKeys};
use fieldgate::domain::Timestamp;
use fieldgate::domain::form_context::{self, Vouched};
use fieldgate::domain::{
    CsrfKey, Intake, PhotoRef, Proposal, ProposalId, SlidingLimit, TokenBucket, TokenError,
    WindowCount, Workflow, Workflows,
};
use fieldgate::http::{BodyBytes, ClientIp, MAX_BODY, Segment, header, multipart, urlencoded};
use fieldgate::ports::{
    AssetDirectory, CachedAsset, Counted, Counter, Created, Freshness, IntakeReads, IntakeView,
    MediaStore, ProposalStore, Quota,
};
use fieldgate::web::sticker::StickerCodePage;
use fieldgate::web::{self, IntakeDone, IntakeForm, StatusPage};
use fieldgate::{AppError, RateScope, UserError};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How much intake takes. Only stored reports count (in the write that
/// stores them, on the condition that they fit): junk, a refused report or
/// a failed write cannot use up a sticker's budget, and an offline resend
/// of a report already stored is answered without counting.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest notes accepted, in characters.
    pub max_notes: usize,
    /// Reports per QR code (asset and workflow), sliding, across servers.
    pub per_code: SlidingLimit,
    /// Reports per client address (IPv6 by /64), sliding, across servers.
    pub per_client: SlidingLimit,
    /// Typed sticker codes looked up per client address: what makes a
    /// 40-bit code unguessable.
    pub lookups_per_client: SlidingLimit,
    /// Reports this process takes at once and per second (a token bucket):
    /// the one-machine server's ceiling. On AWS, the HTTP API's route
    /// throttling is the ceiling across containers (template.yaml).
    pub ceiling_burst: u32,
    pub ceiling_per_sec: u32,
}

impl Limits {
    /// No rate limit at all (load and crash tests); the size limits stay.
    pub fn unlimited() -> Self {
        let none = SlidingLimit {
            limit: u64::MAX,
            window_secs: 600,
        };
        Self {
            per_code: none,
            per_client: none,
            lookups_per_client: none,
            ceiling_burst: u32::MAX,
            ceiling_per_sec: u32::MAX,
            ..Self::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_notes: 10_000,
            per_code: SlidingLimit {
                limit: 30,
                window_secs: 600,
            },
            // A site behind one NAT sends many technicians' reports.
            per_client: SlidingLimit {
                limit: 120,
                window_secs: 600,
            },
            // A crew at one site mistyping now and then, not a guesser.
            lookups_per_client: SlidingLimit {
                limit: 30,
                window_secs: 600,
            },
            ceiling_burst: 500,
            ceiling_per_sec: 200,
        }
    }
}

pub struct IntakeDeps {
    pub store: Arc<dyn ProposalStore>,
    pub media: Arc<dyn MediaStore>,
    pub assets: Arc<dyn AssetDirectory>,
    pub workflows: Arc<Workflows>,
    /// Follows a key rotation without a restart.
    pub qr: Arc<QrKeys>,
    /// Signs the technician's status links.
    pub links: Arc<CsrfKey>,
    pub limits: Limits,
    /// The process's ceiling (see [`Limits::ceiling_burst`]).
    pub ceiling: std::sync::Mutex<TokenBucket>,
    pub clock: Arc<dyn Clock>,
    /// Responses carry HSTS (the site is served over https).
    pub hsts: bool,
}

impl IntakeDeps {
    /// The function's dependencies from the composition root.
    pub async fn build(c: &Components, limits: Limits) -> Result<Self, BuildError> {
        // At once: the keys and the Salesforce credential are two secrets,
        // and a cold start should wait for one round trip, not two.
        let (store, media, assets, workflows, qr, links) = tokio::try_join!(
            c.store(),
            c.media(),
            c.assets(),
            c.workflows(),
            c.qr_keys(),
            c.links()
        )?;
        Ok(Self {
            store,
            media,
            assets,
            workflows,
            qr,
            links,
            ceiling: std::sync::Mutex::new(TokenBucket::new(
                limits.ceiling_burst,
                limits.ceiling_per_sec,
            )),
            limits,
            clock: c.clock(),
            hsts: c.hsts(),
        })
    }
}

type Deps = State<Arc<IntakeDeps>>;

/// The function's routes (template.yaml routes `/static` here too). Never
/// fails: errors become pages with a status, unknown paths the 404 page.
pub fn router(deps: Arc<IntakeDeps>) -> Router {
    let headers = web::security_headers_for(deps.hsts);
    Router::new()
        // The home-screen app's start page; a static segment wins over
        // `{code}` (no code is "home": codes carry a signature).
        .route("/q/home", get(|| async { web::IntakeHome::page() }))
        .route("/q/{code}", get(form).post(submit))
        .route("/s/{reference}", get(status))
        .route("/k", get(sticker_code).post(sticker_lookup))
        .route("/static/{name}", get(static_asset))
        .method_not_allowed_fallback(web::method_not_allowed)
        .fallback(web::not_found)
        // A report with its photo is larger than axum's 2 MB default.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(headers)
        .with_state(deps)
}

async fn static_asset(Segment(name): Segment) -> Result<Response, AppError> {
    web::static_asset(&name).ok_or(UserError::NotFound.into())
}

/// The 410 pages of a code that was genuine: what happened, that nothing
/// was saved, and what to do.
const WITHDRAWN: &str = "This code has been withdrawn, so reports can no longer be sent with it. Nothing was saved. Please ask the office (or whoever looks after this equipment) for a new sticker.";
const RETIRED: &str = "This sticker has expired: its code was replaced by a newer one. Nothing was saved. Please ask the office for a new sticker for this equipment.";

/// A scanned code's claims and workflow: the signature checked, no I/O.
async fn verify(
    deps: &IntakeDeps,
    code: &str,
) -> Result<(fieldgate::domain::QrClaims, Arc<Workflow>), AppError> {
    let ring = deps.qr.for_code(code).await;
    let claims = ring.verify(code, deps.clock.now()).map_err(|e| match e {
        TokenError::Retired => UserError::Gone(RETIRED.into()),
        _ => UserError::NotFound,
    })?;
    // An update workflow changes a record by id (an assistant proposes
    // it): a sticker for one is not a working code.
    let wf = deps
        .workflows
        .get(&claims.workflow)
        .filter(|w| w.operation != fieldgate::domain::Operation::Update)
        .ok_or(UserError::NotFound)?;
    Ok((claims, wf))
}

/// What the intake reads of a code before answering: its revocation
/// record and the asset cache entry, with `more` (the submission's
/// idempotency key and rate-limit counters), in one store request.
fn reads_for(
    deps: &IntakeDeps,
    claims: &fieldgate::domain::QrClaims,
    wf: &Workflow,
    more: IntakeReads,
) -> IntakeReads {
    IntakeReads {
        code: Some((claims.asset.clone(), wf.id.clone())),
        asset: deps.assets.reads_cache().then(|| claims.asset.clone()),
        ..more
    }
}

/// The asset a form or report is about, and where it came from.
struct Admitted {
    asset: fieldgate::AssetContext,
    fresh: Freshness,
    /// When Salesforce said so (what the form's signed context carries).
    confirmed_at: Timestamp,
    /// A cache entry newer than the one stored, for the report's write to
    /// store; a form drops it (a scan alone writes nothing).
    refresh: Option<CachedAsset>,
}

/// The code's asset, once the code is known not to be withdrawn: the
/// revocation record and the cache entry come from `view`. `vouched` is
/// the context a report's form was signed with (verified by the caller):
/// it stands in for Salesforce, unless the cache holds a later answer.
async fn admit(
    deps: &IntakeDeps,
    claims: &fieldgate::domain::QrClaims,
    view: &mut IntakeView,
    vouched: Option<Vouched>,
    now: Timestamp,
) -> Result<Admitted, AppError> {
    // Before the asset lookup: a withdrawn code costs no Salesforce query.
    if let Some(r) = &view.revocation
        && r.withdraws(claims.generation)
    {
        return Err(UserError::Gone(WITHDRAWN.into()).into());
    }
    if !deps.assets.reads_cache() {
        if let Some(v) = vouched {
            return Ok(Admitted {
                asset: v.asset,
                fresh: Freshness::Confirmed,
                confirmed_at: v.confirmed_at,
                refresh: None,
            });
        }
        let (asset, fresh) = deps
            .assets
            .lookup_checked(&claims.asset)
            .await?
            .ok_or(UserError::NotFound)?;
        return Ok(Admitted {
            asset,
            fresh,
            confirmed_at: now,
            refresh: None,
        });
    }
    let cached = view.asset.take();
    if let Some(v) = vouched {
        return Ok(match cached {
            Some(c) if c.fetched_at >= v.confirmed_at => Admitted {
                asset: c.asset,
                fresh: Freshness::Confirmed,
                confirmed_at: c.fetched_at,
                refresh: None,
            },
            _ => Admitted {
                refresh: Some(CachedAsset {
                    asset: v.asset.clone(),
                    fetched_at: v.confirmed_at,
                }),
                asset: v.asset,
                fresh: Freshness::Confirmed,
                confirmed_at: v.confirmed_at,
            },
        });
    }
    let found = deps
        .assets
        .lookup_read(&claims.asset, cached, now)
        .await?
        .ok_or(UserError::NotFound)?;
    Ok(Admitted {
        asset: found.asset,
        fresh: found.freshness,
        confirmed_at: found.confirmed_at,
        refresh: found.refreshed,
    })
}

fn new_idem(now: Timestamp) -> String {
    // A per-form-load key: a double submit or an offline resend of the same
    // form makes one proposal, not two.
    new_proposal_id(now).to_string()
}

async fn form(State(deps): Deps, Segment(code): Segment) -> Result<Response, AppError> {
    let (claims, wf) = verify(&deps, &code).await?;
    let now = deps.clock.now();
    let mut view = deps
        .store
        .intake_reads(&reads_for(&deps, &claims, &wf, IntakeReads::default()))
        .await?;
    // No cache write here: the report's write stores what this form shows
    // (signed into it), so a scan costs one read.
    let found = admit(&deps, &claims, &mut view, None, now).await?;
    let fresh = found.fresh;
    // Only Salesforce's word is signed: a form showing a cached copy (it
    // could not be reached) leaves its report to look the asset up again.
    let context = match fresh {
        Freshness::Confirmed => {
            form_context::sign(&deps.links, &code, &found.asset, found.confirmed_at)
        }
        Freshness::Unconfirmed => String::new(),
    };
    let asset = found.asset;
    Ok(IntakeForm {
        asset: &asset,
        context: &context,
        workflow_name: &wf.name,
        idem: new_idem(deps.clock.now()),
        max_notes: deps.limits.max_notes,
        photo_allowed: wf.photo.allowed,
        max_photos: wf.photo.max_count,
        accept: wf.photo.content_types.join(","),
        notes: "",
        reporter: "",
        error: None,
        unconfirmed: fresh == Freshness::Unconfirmed,
    }
    .page(200))
}

struct Submission {
    notes: String,
    reporter: Option<String>,
    /// Each photo's bytes, type (from the bytes) and file name.
    photos: Vec<(bytes::Bytes, String, String)>,
    idem: Option<String>,
    /// The asset context the form was signed with, unverified.
    context: Option<String>,
}

/// One photo part against the workflow's policy; `n` (1-based) names it in
/// the message when there are several.
fn check_photo(
    wf: &Workflow,
    n: usize,
    part: fieldgate::http::Part,
) -> Result<(bytes::Bytes, String, String), UserError> {
    let which = if n == 1 && wf.photo.max_count == 1 {
        "The photo".to_owned()
    } else {
        format!("Photo {n}")
    };
    if part.data.len() as u64 > wf.photo.max_bytes {
        return Err(UserError::PayloadTooLarge(format!(
            "{which} is larger than {} MB.",
            wf.photo.max_bytes / (1024 * 1024)
        )));
    }
    // Trust the bytes, not the declared type or the file name.
    let kind = infer::get(&part.data).filter(|k| k.matcher_type() == infer::MatcherType::Image);
    let Some(kind) = kind.filter(|k| wf.photo.content_types.iter().any(|t| t == k.mime_type()))
    else {
        return Err(UserError::UnsupportedMedia(format!(
            "{which} must be an image ({}).",
            wf.photo.content_types.join(", ")
        )));
    };
    // The declared size, from the header: a few KB can declare a
    // canvas nobody should ever decode.
    match dimensions::dimensions(&part.data) {
        Some(d) if dimensions::acceptable(d) => {}
        Some(_) => {
            return Err(UserError::Unprocessable(format!(
                "{which} is too large in pixels: at most {} px a side and {} megapixels.",
                dimensions::MAX_SIDE,
                dimensions::MAX_PIXELS / 1_000_000
            )));
        }
        None => {
            return Err(UserError::Unprocessable(format!(
                "{which}'s size cannot be read; send it as a JPEG, PNG or WebP image."
            )));
        }
    }
    let name = sanitize_file_name(part.file_name.as_deref(), kind.extension());
    Ok((part.data, kind.mime_type().to_owned(), name))
}

fn text_part(name: &str, data: &[u8]) -> Result<String, UserError> {
    String::from_utf8(data.to_vec())
        .map_err(|_| UserError::BadRequest(format!("the field {name} is not valid UTF-8 text")))
}

fn parse_submission(
    wf: &Workflow,
    limits: &Limits,
    parts: Vec<fieldgate::http::Part>,
) -> Result<Submission, UserError> {
    let mut s = Submission {
        notes: String::new(),
        reporter: None,
        photos: Vec::new(),
        idem: None,
        context: None,
    };
    let mut seen = std::collections::BTreeSet::new();
    for part in parts {
        // Several photos come as several `photo` parts; any other field once.
        if part.name != "photo" && !seen.insert(part.name.clone()) {
            return Err(UserError::BadRequest(format!(
                "the field {} was sent twice",
                part.name
            )));
        }
        match part.name.as_str() {
            "notes" => s.notes = text_part("notes", &part.data)?.trim().to_owned(),
            "reporter" => {
                let r = text_part("reporter", &part.data)?.trim().to_owned();
                if r.chars().count() > 200 || r.contains(['\n', '\r']) {
                    return Err(UserError::BadRequest(
                        "the name or email is too long".into(),
                    ));
                }
                // An address gets the outcome mail: one that cannot be
                // delivered is the technician's typo, said now, not lost.
                if r.contains('@') && !fieldgate::domain::looks_like_email(&r) {
                    return Err(UserError::BadRequest(
                        "the email address does not look complete (name@example.com); correct it, or give just your name".into(),
                    ));
                }
                s.reporter = (!r.is_empty()).then_some(r);
            }
            "idem" => {
                let k = text_part("idem", &part.data)?;
                if !(16..=64).contains(&k.len())
                    || !k
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(UserError::BadRequest(
                        "the form is damaged; reload the page".into(),
                    ));
                }
                s.idem = Some(k);
            }
            // Not UTF-8: not ours, so as if absent (the asset is looked up).
            "context" => s.context = String::from_utf8(part.data.to_vec()).ok(),
            "photo" => {
                // Browsers send an empty file part when no photo was chosen.
                if part.data.is_empty() {
                    continue;
                }
                if !wf.photo.allowed {
                    return Err(UserError::BadRequest(
                        "this workflow takes no photos".into(),
                    ));
                }
                if s.photos.len() >= wf.photo.max_count {
                    return Err(UserError::PayloadTooLarge(format!(
                        "Send at most {} photos with one report.",
                        wf.photo.max_count
                    )));
                }
                s.photos.push(check_photo(wf, s.photos.len() + 1, part)?);
            }
            other => {
                return Err(UserError::BadRequest(format!(
                    "unexpected form field {other:?}"
                )));
            }
        }
    }
    if s.notes.is_empty() {
        return Err(UserError::Unprocessable(
            "Please describe what you found.".into(),
        ));
    }
    if s.notes.chars().count() > limits.max_notes {
        return Err(UserError::PayloadTooLarge(format!(
            "The notes are longer than {} characters.",
            limits.max_notes
        )));
    }
    Ok(s)
}

fn sanitize_file_name(given: Option<&str>, ext: &str) -> String {
    let stem: String = given
        .unwrap_or("photo")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("photo")
        .split('.')
        .next()
        .unwrap_or("photo")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(60)
        .collect();
    let stem = if stem.is_empty() {
        "photo".to_owned()
    } else {
        stem
    };
    format!("{stem}.{ext}")
}

#[tracing::instrument(name = "submit", skip_all, fields(proposal))]
async fn submit(
    State(deps): Deps,
    Segment(code): Segment,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Result<Response, AppError> {
    let (claims, wf) = verify(&deps, &code).await?;
    let now = deps.clock.now();
    if let Some(len) = header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok())
        && len > max_body(&wf, &deps.limits) as u64
    {
        return Err(UserError::PayloadTooLarge(
            "The report is too large. Send fewer or smaller photos.".into(),
        )
        .into());
    }
    // The body first (no I/O), so that everything the store is asked
    // before the report is taken is asked at once; a withdrawn or unknown
    // code is still answered before anything wrong with the body.
    let sub = match multipart(
        &headers,
        body,
        max_body(&wf, &deps.limits),
        wf.photo.max_bytes as usize + 1,
    )
    .await
    {
        Ok(parts) => parse_submission(&wf, &deps.limits, parts).map_err(AppError::from),
        Err(e) => Err(AppError::from(e)),
    };
    let idem_key = |asset: &fieldgate::domain::AssetId, k: &str| format!("{asset}#{k}");
    let asked_idem = sub
        .as_ref()
        .ok()
        .and_then(|s| s.idem.as_deref())
        .map(|k| idem_key(&claims.asset, k));
    // The form's asset context, checked before any I/O. One that does not
    // verify (a form older than the context's lifetime, as the offline
    // queue sends; another code's; edited; signed with a key since
    // replaced) is not an error: the report is taken as one without it
    // would be, with the asset looked up.
    let vouched = sub
        .as_ref()
        .ok()
        .and_then(|s| s.context.as_deref())
        .and_then(
            |c| match form_context::verify(&deps.links, &code, c, now) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::info!(reason = %e, "the form's asset context is not used; looking the asset up");
                    None
                }
            },
        );
    let quotas = quotas(&deps, &claims, &wf, client.map(|c| c.0));
    let mut view = deps
        .store
        .intake_reads(&reads_for(
            &deps,
            &claims,
            &wf,
            IntakeReads {
                idempotency_key: asked_idem.clone(),
                counters: quotas
                    .iter()
                    .map(|(_, q)| (q.key.clone(), q.limit.window_secs))
                    .collect(),
                ..IntakeReads::default()
            },
        ))
        .await?;
    let Admitted {
        asset,
        refresh: cache,
        ..
    } = admit(&deps, &claims, &mut view, vouched, now).await?;
    let sub = sub?;
    let idem = sub.idem.as_ref().map(|k| idem_key(&asset.id, k));
    // A resend of a report already stored (a double tap, the offline
    // queue) is answered as the first one was, and counts against nothing.
    let existing = if idem == asked_idem {
        view.existing
    } else {
        // The code names the asset otherwise than Salesforce does (a
        // 15-character id): the key is the stored asset's.
        match &idem {
            Some(k) => deps.store.idempotent(k).await?,
            None => None,
        }
    };
    if let Some(existing) = existing {
        return Ok(done_page(&deps, &code, existing, false));
    }
    let quotas = within_limits(&deps, quotas, &view, now)?;

    let id = new_proposal_id(now);
    let photos: Vec<PhotoRef> = sub
        .photos
        .iter()
        .enumerate()
        .map(|(i, (data, mime, name))| {
            let ext = name.rsplit('.').next().unwrap_or("bin");
            // The first keeps the key one photo always had.
            let key = match i {
                0 => format!("photos/{id}.{ext}"),
                i => format!("photos/{id}-{}.{ext}", i + 1),
            };
            PhotoRef {
                key,
                content_type: mime.clone(),
                bytes: data.len() as u64,
                sha256: hex::encode(Sha256::digest(data)),
                file_name: name.clone(),
            }
        })
        .collect();
    let t = Proposal::receive(
        id,
        wf.id.clone(),
        asset.clone(),
        Intake {
            notes: sub.notes,
            reporter: sub.reporter,
            photos,
            received_at: now,
            assistant: None,
        },
        now,
    );
    // Photos, then the proposal that references them, then (if no proposal
    // of ours references them) their removal: in a task of its own, so a
    // client that hangs up midway cannot leave a photo behind. A failed
    // photo write removes the ones already written.
    let data: Vec<bytes::Bytes> = sub.photos.into_iter().map(|(d, _, _)| d).collect();
    let store_deps = deps.clone();
    let created = tokio::spawn(async move {
        let deps = store_deps;
        let photos = &t.proposal.intake.photos;
        let mut put = Ok(());
        for (photo, data) in photos.iter().zip(&data) {
            put = deps.media.put(&photo.key, data, &photo.content_type).await;
            if put.is_err() {
                break;
            }
        }
        let created = match put {
            Ok(()) => deps
                .store
                .create_counted(&t, idem.as_deref(), &quotas, cache.as_ref(), now)
                .await
                .map_err(AppError::from)
                .and_then(|c| match c {
                    Counted::Stored(created) => Ok(created),
                    // Another report took the last place meanwhile.
                    Counted::Limited { quota, counts } => {
                        let q = &quotas[quota];
                        Err(refuse(scope_of(&q.key), q.limit.retry_after(counts, now)))
                    }
                }),
            Err(e) => Err(AppError::from(e)),
        };
        if !matches!(created, Ok(Created::New)) {
            for photo in photos {
                if let Err(e) = deps.media.delete(&photo.key).await {
                    tracing::warn!(key = %photo.key, error = %fieldgate::Chain(&e), "an unreferenced photo was not deleted");
                }
            }
        }
        created
    })
    .await
    .map_err(|_| AppError::Internal("the intake task panicked"))??;
    let (reference, fresh) = match created {
        Created::New => (id, true),
        Created::Existing(existing) => (existing, false),
    };
    // The span names the proposal the report ended in (an earlier one when
    // this was a resend).
    tracing::Span::current().record("proposal", tracing::field::display(reference));
    tracing::info!(asset = %asset.id, workflow = %wf.id, new = fresh, "report received");
    Ok(done_page(&deps, &code, reference, fresh))
}

/// The "report received" page: 201 for a new proposal, 200 for a resend.
fn done_page(deps: &IntakeDeps, code: &str, reference: ProposalId, fresh: bool) -> Response {
    let status_url = format!("/s/{}", status_ref(&deps.links, reference));
    let mut page = IntakeDone {
        reference: &reference.to_string(),
        status_url: &status_url,
        again_url: &format!("/q/{code}"),
    }
    .page();
    if !fresh {
        *page.status_mut() = http::StatusCode::OK;
    }
    page
}

/// The rate limits a new report is counted in, client first: its scope
/// and quota. The client's comes first so that one client's flood, refused
/// by its own limit, never reaches the sticker's (a refused report counts
/// in neither).
fn quotas(
    deps: &IntakeDeps,
    claims: &fieldgate::domain::QrClaims,
    wf: &Workflow,
    client: Option<ClientIp>,
) -> Vec<(RateScope, Quota)> {
    let mut out = Vec::new();
    if let Some(ip) = client {
        out.push((
            RateScope::Client,
            Quota {
                key: format!("RLIP#{}", ip.limit_key()),
                limit: deps.limits.per_client,
                seen: None,
            },
        ));
    }
    out.push((
        RateScope::Code,
        Quota {
            key: format!("RL#{}#{}", claims.asset, wf.id),
            limit: deps.limits.per_code,
            seen: None,
        },
    ));
    out
}

/// The scope a quota's key counts (for the refusal page).
fn scope_of(key: &str) -> RateScope {
    if key.starts_with("RLIP#") {
        RateScope::Client
    } else {
        RateScope::Code
    }
}

fn refuse(scope: RateScope, wait: fieldgate::domain::RetryAfter) -> AppError {
    tracing::info!(
        ?scope,
        retry_after = wait.0,
        "report refused by a rate limit"
    );
    AppError::from(UserError::TooManyRequests {
        scope,
        retry_after_secs: wait.0,
    })
}

/// The limits a new, well-formed report must be within, before anything
/// is written: the process's ceiling, then each quota with the report
/// added to its counter as read (`view`). The quotas come back carrying
/// what was read, for the write that stores the report to count it on
/// the condition that it still fits (`ProposalStore::create_counted`).
/// Only stored reports count: a refused one counts nowhere.
fn within_limits(
    deps: &IntakeDeps,
    quotas: Vec<(RateScope, Quota)>,
    view: &IntakeView,
    now: Timestamp,
) -> Result<Vec<Quota>, AppError> {
    deps.ceiling
        .lock()
        .map_err(|_| AppError::Internal("the intake ceiling lock is poisoned"))?
        .take(now)
        .map_err(|w| refuse(RateScope::Everyone, w))?;
    let mut out = Vec::new();
    for (i, (scope, mut q)) in quotas.into_iter().enumerate() {
        q.seen = view.counters.get(i).copied().flatten();
        let counts = Counter::at(q.seen.as_ref(), q.limit.window_secs, now);
        let with_this = WindowCount {
            current: counts.current + 1,
            previous: counts.previous,
        };
        if q.limit.check(with_this, now).is_err() {
            // Not counted: when one more fits beside what is stored.
            return Err(refuse(scope, q.limit.retry_after(counts, now)));
        }
        out.push(q);
    }
    Ok(out)
}

fn max_body(wf: &Workflow, limits: &Limits) -> usize {
    let photos = if wf.photo.allowed {
        wf.photo.max_bytes as usize * wf.photo.max_count
    } else {
        0
    };
    (photos + limits.max_notes * 4 + 64 * 1024).min(MAX_BODY)
}

async fn sticker_code() -> Response {
    StickerCodePage {
        typed: "",
        error: None,
    }
    .page(200)
}

/// A typed sticker code: the form of its QR code (303), or the page again
/// with what went wrong. Only a well-formed code counts against the
/// client's lookups, as only a well-formed report counts against its
/// reports.
async fn sticker_lookup(
    State(deps): Deps,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Result<Response, AppError> {
    let typed = urlencoded(&headers, &body)?
        .into_iter()
        .find(|(k, _)| k == "ref")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let again = |status: u16, error: &str| {
        // Bounded: the page shows what was typed, escaped.
        let shown: String = typed.chars().take(32).collect();
        StickerCodePage {
            typed: &shown,
            error: Some(error),
        }
        .page(status)
    };
    let Ok(reference) = typed.parse::<fieldgate::domain::StickerRef>() else {
        return Ok(again(
            400,
            "That is not a sticker code: it has 8 letters and digits, like 7K3M-9QXD.",
        ));
    };
    if let Some(axum::Extension(ip)) = client {
        let l = deps.limits.lookups_per_client;
        let n = deps
            .store
            .count_in_window(
                &format!("RLK#{}", ip.limit_key()),
                l.window_secs,
                deps.clock.now(),
            )
            .await?;
        if let Err(wait) = l.check(n, deps.clock.now()) {
            tracing::info!(
                retry_after = wait.0,
                "sticker lookup refused by a rate limit"
            );
            return Err(UserError::TooManyRequests {
                scope: RateScope::Lookups,
                retry_after_secs: wait.0,
            }
            .into());
        }
    }
    match deps.store.sticker(&reference).await? {
        // Relative: resolves beside `/k` wherever the site is mounted. The
        // form checks the code as if it had been scanned (signature, key,
        // revocation).
        Some(s) => Ok(web::redirect(&format!("q/{}", s.code))),
        None => Ok(again(
            404,
            &format!(
                "No sticker has the code {reference}. Check the letters and digits, or ask the office."
            ),
        )),
    }
}

/// The status link's segment (shared with the MCP endpoint's status links).
pub use fieldgate::review::status_ref;

async fn status(State(deps): Deps, Segment(reference): Segment) -> Result<Response, AppError> {
    let id = fieldgate::review::parse_status_ref(&deps.links, &reference)
        .map_err(|_| UserError::NotFound)?;
    let p = deps.store.get(id).await?.ok_or(UserError::NotFound)?;
    let wf = deps.workflows.get(&p.workflow);
    Ok(StatusPage::new(&id.to_string(), &p, wf.as_deref()).page())
}

/// On Lambda: the client address API Gateway saw.
pub use fieldgate::lambda::client_ip_from_api_gateway;

mod dimensions;

#[cfg(test)]
mod tests;
