//! Approval links: `GET /r/{token}` shows the proposed record and changes
//! nothing (mail scanners open links); `POST /r/{token}` records the
//! reviewer's decision, bound to the revision they saw.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::Response;
use axum::routing::get;
use fieldgate::admin::AdminDeps;
use fieldgate::clock::Clock;
use fieldgate::compose::{BuildError, Components};
use fieldgate::domain::{
    Actor, CsrfKey, Decision, DecisionKind, FieldValue, Proposal, ReviewGrant, ReviewToken, Status,
    Workflow, Workflows,
};
use fieldgate::http::{BodyBytes, MAX_BODY, Segment, urlencoded};
use fieldgate::ports::{MediaStore, ProposalStore, StoreError};
use fieldgate::web::review::{ReviewPage, field_views, group, highlight};
use fieldgate::web::{self, human_time};
use fieldgate::{AppError, UserError};
use http::HeaderMap;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct ApprovalDeps {
    pub store: Arc<dyn ProposalStore>,
    pub media: Arc<dyn MediaStore>,
    pub workflows: Arc<Workflows>,
    pub csrf: Arc<CsrfKey>,
    pub clock: Arc<dyn Clock>,
    /// Responses carry HSTS (the site is served over https).
    pub hsts: bool,
    /// The read-only `/admin` pages, only when a credential is configured
    /// (`FIELDGATE_ADMIN_TOKEN_HASH`; in AWS the `AdminTokenHash`
    /// parameter): otherwise the routes do not exist.
    pub admin: Option<Arc<AdminDeps>>,
}

impl ApprovalDeps {
    /// The function's dependencies from the composition root.
    pub async fn build(c: &Components) -> Result<Self, BuildError> {
        let store = c.store().await?;
        let csrf = c.links().await?;
        let admin = c.config().admin.clone().map(|credential| {
            Arc::new(AdminDeps::new(
                store.clone(),
                csrf.clone(),
                c.clock(),
                credential,
                c.hsts(),
            ))
        });
        Ok(Self {
            store,
            media: c.media().await?,
            workflows: c.workflows().await?,
            csrf,
            clock: c.clock(),
            hsts: c.hsts(),
            admin,
        })
    }
}

type Deps = State<Arc<ApprovalDeps>>;

/// The function's routes. `/static` belongs to qr-intake (template.yaml),
/// so the two routers merge without overlap in `fieldgate dev`.
pub fn router(deps: Arc<ApprovalDeps>) -> Router {
    let headers = web::security_headers_for(deps.hsts);
    let admin = deps.admin.clone();
    let r = Router::new()
        .route("/r/{token}", get(show).post(decide))
        .route("/r/{token}/photo", get(photo))
        .route("/r/{token}/photo/{n}", get(photo_n))
        .method_not_allowed_fallback(web::method_not_allowed)
        .fallback(web::not_found)
        // The same cap as API Gateway's (and as qr-intake), not axum's 2 MB.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(headers)
        .with_state(deps);
    match admin {
        Some(a) => r.merge(fieldgate::admin::router(a)),
        None => r,
    }
}

struct Link {
    proposal: Proposal,
    grant: ReviewGrant,
    workflow: Arc<Workflow>,
}

fn decided_text(p: &Proposal) -> String {
    match &p.decision {
        Some(d) => format!(
            "This report was already {} by {} on {}. It is now: {}.",
            match d.kind {
                DecisionKind::Approve => "approved",
                DecisionKind::Reject => "rejected",
            },
            d.by,
            human_time(d.at),
            lower_first(p.status.label())
        ),
        None => format!("This report is {}.", lower_first(p.status.label())),
    }
}

/// "Written to Salesforce" -> "written to Salesforce" (names keep their case).
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// Finds the proposal and the reviewer's grant; every way a link can be
/// wrong is a clear 4xx that reveals nothing about other proposals.
async fn resolve(deps: &ApprovalDeps, raw: &str) -> Result<Link, AppError> {
    let token: ReviewToken = raw.parse().map_err(|_| UserError::NotFound)?;
    let p = deps
        .store
        .get(token.proposal)
        .await?
        .ok_or(UserError::NotFound)?;
    let hash = token.hash();
    let grant = p.grant_for(&hash).cloned();
    let known = grant.is_some() || p.review.replaced.contains(&hash);
    if !known {
        return Err(UserError::NotFound.into());
    }
    if p.status == Status::Expired {
        return Err(UserError::Gone(
            "This review link has expired; the report was not decided in time.".into(),
        )
        .into());
    }
    if !p.status.awaits_reviewer() {
        return Err(UserError::Conflict(decided_text(&p)).into());
    }
    let Some(grant) = grant else {
        return Err(UserError::Gone(
            "A newer review link was sent for this report. Please use the most recent mail.".into(),
        )
        .into());
    };
    if p.review.expires_at.is_some_and(|t| t < deps.clock.now()) {
        return Err(UserError::Gone(
            "This review link has expired. Ask for the report to be sent again.".into(),
        )
        .into());
    }
    let workflow = deps
        .workflows
        .get(&p.workflow)
        .ok_or_else(|| AppError::UnknownWorkflow(p.workflow.clone()))?;
    Ok(Link {
        proposal: p,
        grant,
        workflow,
    })
}

/// The proposal a spent link decided, for that link's holder until the
/// link would have expired ([`Proposal::decided_by_link`]): what it shows
/// after the decision (the outcome, the photo). Other spent links, and
/// links replaced by a newer round, get nothing of it.
async fn decided_by(deps: &ApprovalDeps, raw: &str) -> Result<Option<Proposal>, AppError> {
    let Ok(token) = raw.parse::<ReviewToken>() else {
        return Ok(None);
    };
    let Some(p) = deps.store.get(token.proposal).await? else {
        return Ok(None);
    };
    Ok(p.decided_by_link(&token.hash(), deps.clock.now())
        .then_some(p))
}

/// The decider's page once the link is spent: who decided when, where
/// the report stands and, once written, the record in Salesforce.
fn decided_page(deps: &ApprovalDeps, p: &Proposal, raw: &str) -> Response {
    let object = deps
        .workflows
        .get(&p.workflow)
        .map(|w| w.object.clone())
        .unwrap_or_else(|| "record".into());
    let record = match (p.status, &p.commit.record_url) {
        (Status::Committed, Some(url)) => Some((
            match &p.commit.record_number {
                Some(n) => format!("{object} {n}"),
                None => object,
            },
            url.clone(),
        )),
        _ => None,
    };
    let rejected = matches!(&p.decision, Some(d) if d.kind == DecisionKind::Reject);
    web::DecidedPage {
        status: 409,
        title: "Already decided",
        neutral: rejected,
        text: decided_text(p),
        record,
        follow_url: (!p.status.is_final()).then(|| format!("/r/{raw}")),
    }
    .page()
}

fn page(
    deps: &ApprovalDeps,
    link: &Link,
    raw_token: &str,
    overrides: Option<&BTreeMap<String, String>>,
    confirmed: &std::collections::BTreeSet<String>,
    errors: Vec<String>,
    status: u16,
) -> Response {
    let p = &link.proposal;
    let wf = &link.workflow;
    let fixed: Vec<(String, String)> = wf
        .record(&BTreeMap::new(), &p.asset)
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    let mut fields = field_views(wf, p, overrides, confirmed);
    let notes = highlight(&p.intake.notes, &mut fields);
    let (eyes, fine, fine_preview) = group(fields);
    ReviewPage {
        workflow_name: &wf.name,
        object: &wf.object,
        reviewer: &link.grant.reviewer,
        asset: &p.asset,
        reporter: p.intake.reporter.as_deref(),
        assistant: p.intake.assistant.as_ref().map(|a| a.assistant.as_str()),
        received_at: human_time(p.intake.received_at),
        notes,
        photo_urls: p
            .intake
            .photos()
            .map(|(n, _)| format!("/r/{raw_token}/photo/{n}"))
            .collect(),
        flagged: eyes.len(),
        eyes,
        fine,
        fine_preview,
        fixed,
        csrf: deps.csrf.token_for(&link.grant.token_hash),
        revision: p.current_hash().unwrap_or(""),
        expires_at: p.review.expires_at.map(human_time).unwrap_or_default(),
        problem: if p.status == Status::NeedsAttention {
            p.commit.last_error.as_ref()
        } else {
            None
        },
        record: p.update.as_ref(),
        duplicates: p.duplicates.as_ref(),
        errors,
    }
    .page(status)
}

async fn show(State(deps): Deps, Segment(raw): Segment) -> Result<Response, AppError> {
    let link = match resolve(&deps, &raw).await {
        Ok(link) => link,
        Err(e) => {
            return match decided_by(&deps, &raw).await? {
                Some(p) => Ok(decided_page(&deps, &p, &raw)),
                None => Err(e),
            };
        }
    };
    Ok(page(
        &deps,
        &link,
        &raw,
        None,
        &Default::default(),
        vec![],
        200,
    ))
}

/// The first photo (the address it had before there could be several).
async fn photo(State(deps): Deps, Segment(raw): Segment) -> Result<Response, AppError> {
    photo_bytes(&deps, &raw, 1).await
}

/// Photo number `n` (1-based) of the link's proposal, with the link's checks.
async fn photo_n(
    State(deps): Deps,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, AppError> {
    let Ok(Path((raw, n))) = path else {
        return Err(UserError::NotFound.into());
    };
    // Only plain numbers: "01" or "+1" name no photo.
    let n = n
        .parse::<usize>()
        .ok()
        .filter(|_| n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0'))
        .ok_or(UserError::NotFound)?;
    photo_bytes(&deps, &raw, n).await
}

/// A photo, for a live link, and for the link that decided until it
/// would have expired (the reviewer may look again at what they judged).
async fn photo_bytes(deps: &ApprovalDeps, raw: &str, n: usize) -> Result<Response, AppError> {
    let p = match resolve(deps, raw).await {
        Ok(link) => link.proposal,
        Err(e) => decided_by(deps, raw).await?.ok_or(e)?,
    };
    let ph = p.intake.photo(n).ok_or(UserError::NotFound)?;
    let data = deps.media.get(&ph.key).await?.ok_or(UserError::NotFound)?;
    Ok(web::bytes(200, &ph.content_type, data))
}

/// A decision form as posted, checked for shape: only this form's names
/// and the workflow's fields, each once. The caller compares the CSRF
/// token and the revision with the link's before reading the decision.
#[derive(Debug, Default)]
pub(crate) struct DecisionForm {
    pub csrf: String,
    pub revision: Option<String>,
    decision: Option<String>,
    reason: Option<String>,
    /// The remaining names: the workflow's fields, as edited.
    pub edits: BTreeMap<String, String>,
    /// The fields ticked under "needs your eyes" (`confirm:{field}`).
    pub confirmed: std::collections::BTreeSet<String>,
}

impl DecisionForm {
    pub(crate) fn parse(
        workflow: &fieldgate::domain::Workflow,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Self, UserError> {
        let mut form: BTreeMap<String, String> = BTreeMap::new();
        let mut confirmed = std::collections::BTreeSet::new();
        for (k, v) in urlencoded(headers, body)? {
            if let Some(field) = k.strip_prefix("confirm:") {
                if workflow.field(field).is_none() {
                    return Err(UserError::BadRequest(format!(
                        "{k:?} is not a field of this form"
                    )));
                }
                if !confirmed.insert(field.to_owned()) {
                    return Err(UserError::BadRequest(format!("{k:?} was sent twice")));
                }
                continue;
            }
            let known = matches!(k.as_str(), "decision" | "reason" | "csrf" | "revision")
                || workflow.field(&k).is_some();
            if !known {
                return Err(UserError::BadRequest(format!(
                    "{k:?} is not a field of this form"
                )));
            }
            if form.insert(k.clone(), v).is_some() {
                return Err(UserError::BadRequest(format!("{k:?} was sent twice")));
            }
        }
        Ok(Self {
            csrf: form.remove("csrf").unwrap_or_default(),
            revision: form.remove("revision"),
            decision: form.remove("decision"),
            reason: form.remove("reason"),
            edits: form,
            confirmed,
        })
    }

    pub(crate) fn kind(&self) -> Result<DecisionKind, UserError> {
        match self.decision.as_deref() {
            Some("approve") => Ok(DecisionKind::Approve),
            Some(d) if d.starts_with("add_to:") => Ok(DecisionKind::Approve),
            Some("reject") => Ok(DecisionKind::Reject),
            _ => Err(UserError::BadRequest("Choose approve or reject.".into())),
        }
    }

    /// "Add to this open Case" (`decision=add_to:{record id}`, the
    /// button beside each listed record): the record chosen.
    pub(crate) fn add_to(&self) -> Result<Option<&str>, UserError> {
        match self
            .decision
            .as_deref()
            .and_then(|d| d.strip_prefix("add_to:"))
        {
            Some("") => Err(UserError::BadRequest(
                "Choose the open Case to add this report to.".into(),
            )),
            other => Ok(other),
        }
    }

    /// The reason, trimmed; at most 1000 characters.
    pub(crate) fn reason(&self) -> Result<Option<String>, UserError> {
        let reason = self
            .reason
            .as_deref()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.chars().count() > 1000) {
            return Err(UserError::BadRequest(
                "The reason is longer than 1000 characters.".into(),
            ));
        }
        Ok(reason)
    }
}

#[tracing::instrument(name = "decide", skip_all, fields(proposal))]
async fn decide(
    State(deps): Deps,
    Segment(raw): Segment,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Result<Response, AppError> {
    let link = resolve(&deps, &raw).await?;
    tracing::Span::current().record("proposal", tracing::field::display(link.proposal.id));
    let mut form = DecisionForm::parse(&link.workflow, &headers, &body)?;
    if !deps.csrf.verify(&link.grant.token_hash, &form.csrf) {
        return Err(UserError::Forbidden(
            "The form is not valid for this link. Open the link from your mail again.".into(),
        )
        .into());
    }
    let p = &link.proposal;
    let current = p
        .current()
        .ok_or(AppError::Internal("no revision to decide on"))?;
    if form.revision.as_deref() != Some(current.hash.as_str()) {
        return Err(UserError::Conflict(
            "The report changed since this page was opened. Reload the page and decide again."
                .into(),
        )
        .into());
    }
    let kind = form.kind()?;
    let reason = form.reason()?;
    let confirmed = std::mem::take(&mut form.confirmed);
    let add_to = form.add_to()?.map(str::to_owned);
    let form = std::mem::take(&mut form.edits);
    // Only a record the lookup listed for this report (the page offers no
    // other); the commit checks again that it is still open.
    let add_to = match add_to {
        None => None,
        Some(id) => match p.duplicates.as_ref().and_then(|d| d.candidate(&id)) {
            Some(r) => Some(r.clone()),
            None => {
                return Ok(page(
                    &deps,
                    &link,
                    &raw,
                    Some(&form),
                    &confirmed,
                    vec![format!(
                        "{id} is not one of the open records listed for this report; choose one of those, or approve a new one."
                    )],
                    422,
                ));
            }
        },
    };
    // What remains in `form` are the edited fields.
    let reviewer = Actor::Reviewer {
        email: link.grant.reviewer.clone(),
    };
    let mut edited = current.fields.clone();
    let mut changed = Vec::new();
    if kind == DecisionKind::Approve {
        for (name, value) in &form {
            let v = value.replace("\r\n", "\n").trim().to_owned();
            let new = if v.is_empty() {
                Value::Null
            } else {
                Value::String(v)
            };
            let slot = edited
                .entry(name.clone())
                .or_insert_with(FieldValue::default);
            if slot.value != new {
                changed.push(name.clone());
                // The reviewer's words replace the structurer's: no evidence.
                *slot = FieldValue {
                    value: new,
                    evidence: None,
                    flag: None,
                };
            }
        }
        let values: BTreeMap<String, Value> = edited
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        let mut issues = link.workflow.check(&values);
        // A report added to an open Case writes no field of its own: a
        // required one left open (the structurer could not settle it) does
        // not hold it up.
        if add_to.is_some() {
            issues.retain(|i| i.message != "is required");
        }
        let mut errors: Vec<String> = issues
            .iter()
            .map(|i| format!("{}: {}", label(&link.workflow, &i.field), i.message))
            .collect();
        // Every "needs your eyes" field must be ticked (or changed, which is
        // looking at it): the server decides, whatever the page's script did.
        // Not when the report goes onto an open Case: no field is written.
        let unticked: Vec<String> = fieldgate::domain::needs_eyes(&link.workflow, p)
            .into_keys()
            .filter(|_| add_to.is_none())
            .filter(|f| !confirmed.contains(f) && !changed.contains(f))
            .map(|f| label(&link.workflow, &f))
            .collect();
        if !unticked.is_empty() {
            errors.push(format!(
                "Tick each field under \u{201c}Needs your eyes\u{201d} once you have checked it: {}.",
                unticked.join(", ")
            ));
        }
        if !errors.is_empty() {
            tracing::info!(
                invalid = issues.len(),
                unticked = unticked.len(),
                "approval refused; the form is shown again"
            );
            return Ok(page(
                &deps,
                &link,
                &raw,
                Some(&form),
                &confirmed,
                errors,
                422,
            ));
        }
    }
    let now = deps.clock.now();
    let to = match kind {
        DecisionKind::Approve => Status::Approved,
        DecisionKind::Reject => Status::Rejected,
    };
    let action = match kind {
        DecisionKind::Approve => "approved",
        DecisionKind::Reject => "rejected",
    };
    let detail = json!({
        "edited": changed,
        "reason": reason,
        "round": p.review.round,
        "add_to": add_to.as_ref().map(|r| json!({"salesforce_id": r.id, "label": r.label()})),
    });
    let decide = |on: &Proposal| {
        on.transition(to, reviewer.clone(), action, detail.clone(), now, |next| {
            if !changed.is_empty() {
                next.push_revision(edited.clone(), reviewer.clone(), now);
            }
            next.decision = Some(Decision {
                kind,
                by: link.grant.reviewer.clone(),
                at: now,
                revision_hash: next.current_hash().unwrap_or_default().to_owned(),
                reason: reason.clone(),
                token_hash: link.grant.token_hash.clone(),
                add_to: add_to.clone(),
            });
            // First decision wins: every link of the round is spent.
            next.review.retire_grants();
            next.commit.last_error = None;
            // A decision starts the next phase: the claim a commit driver
            // took to mail this round (NEEDS_ATTENTION) is over, so the
            // outcome's work (the commit, the reporter's mail) starts now
            // instead of when that lease runs out.
            next.commit.lease_owner = None;
            next.commit.lease_until = None;
        })
    };
    let mut t = decide(p)?;
    // A conflict is either another decision (first one wins) or the
    // pipeline's own bookkeeping on the same proposal (the "mailed" mark
    // lands just as the reviewer presses the button): then the decision
    // still stands on the newer version, so it is applied to that one.
    for attempt in 0.. {
        match deps.store.apply(&t).await {
            Ok(()) => break,
            Err(StoreError::Conflict) => {
                let now_p = deps.store.get(p.id).await?.ok_or(UserError::NotFound)?;
                let same_round = now_p.status.awaits_reviewer()
                    && now_p.decision.is_none()
                    && now_p.current_hash() == Some(current.hash.as_str())
                    && now_p
                        .review
                        .grants
                        .iter()
                        .any(|g| g.token_hash == link.grant.token_hash);
                if !same_round || attempt >= 3 {
                    return Err(UserError::Conflict(decided_text(&now_p)).into());
                }
                t = decide(&now_p)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(decision = action, edited = changed.len(), "review decided");
    // The link stays the decider's window on the outcome: it shows the
    // record in Salesforce once written (see `decided_page`).
    let (title, neutral, text, follow_url) = match kind {
        DecisionKind::Approve if add_to.is_some() => (
            "Approved",
            false,
            "Thank you. The report is being added to the open Case as a comment (photos attached); no new Case is made.",
            Some(format!("/r/{raw}")),
        ),
        DecisionKind::Approve => (
            "Approved",
            false,
            "Thank you. The record is being written to Salesforce; the team is told when it is there.",
            Some(format!("/r/{raw}")),
        ),
        DecisionKind::Reject => (
            "Rejected",
            true,
            "Thank you. Nothing was written to Salesforce.",
            None,
        ),
    };
    Ok(web::DecidedPage {
        status: 200,
        title,
        neutral,
        text: text.into(),
        record: None,
        follow_url,
    }
    .page())
}

/// On Lambda: the client address API Gateway saw.
pub use fieldgate::lambda::client_ip_from_api_gateway;

fn label(wf: &Workflow, field: &str) -> String {
    wf.field(field)
        .map(|f| f.label.clone())
        .unwrap_or_else(|| field.to_owned())
}

#[cfg(test)]
mod tests;
