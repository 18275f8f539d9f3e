//! Structure step: reacts to RECEIVED proposals on the table's stream,
//! structures the notes against the workflow, moves the proposal to
//! PENDING_REVIEW and mails each reviewer a link of their own.

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use fieldgate::clock::Clock;
use fieldgate::compose::{BuildError, Components};
use fieldgate::domain::{
    Actor, DuplicateCheck, Fields, PendingReport, Proposal, ProposalId, Status, StructurerKind,
    StructuringInfo, Workflow, Workflows,
};
use fieldgate::ports::{
    MediaStore, ProposalStore, RecordFinder, ReviewNotifier, Structurer, StructuringInput,
};
use fieldgate::stream::drive_with;
use fieldgate::structuring::{self, RulesStructurer};
use fieldgate::{AppError, review};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Structure {
    pub store: Arc<dyn ProposalStore>,
    pub media: Arc<dyn MediaStore>,
    pub notifier: Arc<dyn ReviewNotifier>,
    pub workflows: Arc<Workflows>,
    /// Configured model structurers; a workflow asking for one that is not
    /// configured gets the rules structurer, recorded as a fallback.
    pub structurers: HashMap<StructurerKind, Arc<dyn Structurer>>,
    pub rules: RulesStructurer,
    /// Base of the review links in the mail.
    pub public_url: String,
    pub clock: Arc<dyn Clock>,
    /// Reads open records for the duplicate lookup (`None`: Salesforce is
    /// not configured for this step; the lookup records that).
    pub finder: Option<Arc<dyn RecordFinder>>,
}

impl Structure {
    /// The step's dependencies from the composition root.
    pub async fn build(c: &Components) -> Result<Self, BuildError> {
        Ok(Self {
            store: c.store().await?,
            media: c.media().await?,
            notifier: c.notifier().await?,
            workflows: c.workflows().await?,
            structurers: c.structurers().await?,
            rules: RulesStructurer,
            public_url: c.public_url()?,
            clock: c.clock(),
            // The lookup must not keep reviews from going out: without its
            // credential the step runs, and each lookup says Salesforce
            // was not asked.
            finder: c.finder().await.unwrap_or_else(|e| {
                tracing::error!(error = %fieldgate::Chain(&e), "duplicate lookup: Salesforce client not built; reviews go out without it");
                None
            }),
        })
    }
}

/// The statuses this step acts on (the event-source filter in the template
/// says the same; this is defence in depth).
pub const STATUSES: [Status; 1] = [Status::Received];

/// Each record's image of the new report is where the step starts (no
/// read first), when the workflow's duplicate lookup can tell a stale one
/// (see [`process_from`]).
pub async fn handle_stream(deps: &Structure, event: Event) -> DynamoDbEventResponse {
    drive_with(
        &event,
        &STATUSES,
        "structure",
        |rec, id, _| fieldgate::stream::received_image(rec, id),
        |id, image| process_from(deps, id, image),
    )
    .await
}

/// Drives one proposal from whatever state it is in now: a retry after a
/// crash at any point resumes the remaining work.
#[tracing::instrument(name = "structure", skip(deps), fields(proposal = %id))]
pub async fn process(deps: &Structure, id: ProposalId) -> Result<(), AppError> {
    process_as(deps, id, false, None).await
}

/// [`process`] starting from `image`, the new report as its stream record
/// shows it. The image is what a read of the inbox item would give, but
/// possibly stale (a record delivered again after the report moved on),
/// and a stale one must not cost a model call: the duplicate lookup's
/// query of the asset's reports waiting for review comes first and tells
/// it (the report is among them once structured), and a stale image that
/// slips through (a report past review already, an index behind) loses the
/// conditional move and changes nothing. A workflow without the lookup
/// reads first, as without an image.
#[tracing::instrument(name = "structure", skip(deps, image), fields(proposal = %id))]
pub async fn process_from(
    deps: &Structure,
    id: ProposalId,
    image: Option<Proposal>,
) -> Result<(), AppError> {
    process_as(deps, id, false, image).await
}

/// [`process`]; `taken_over`: the caller knows no other driver is alive
/// (one machine, work left by the process before a restart), so an
/// unmailed round is its to mail however recent.
async fn process_as(
    deps: &Structure,
    id: ProposalId,
    taken_over: bool,
    image: Option<Proposal>,
) -> Result<(), AppError> {
    let image = image.filter(|p| {
        deps.workflows
            .get(&p.workflow)
            .is_some_and(|wf| wf.duplicates.is_some())
    });
    let from_image = image.is_some();
    let mut p = match image {
        Some(p) => p,
        None => match deps.store.get_new(id).await? {
            Some(p) => p,
            None => {
                tracing::warn!("proposal vanished; nothing to do");
                return Ok(());
            }
        },
    };
    let wf = deps
        .workflows
        .get(&p.workflow)
        .ok_or_else(|| AppError::UnknownWorkflow(p.workflow.clone()))?;
    // The pending reports of the asset, when the workflow looks for
    // duplicates: read before the model is asked (it also tells a stale
    // image), listed after.
    let mut pending = None;
    if p.status == Status::Received && wf.duplicates.is_some() {
        let found = deps
            .store
            .pending_for_asset(&p.workflow, &p.asset.id, DUPLICATES_SHOWN + 1)
            .await;
        if from_image && found.as_ref().is_ok_and(|f| f.iter().any(|o| o.id == id)) {
            tracing::info!(
                "the record is older than the report (already structured); resuming from the store"
            );
            p = deps.store.get(id).await?.ok_or(AppError::Vanished(id))?;
        } else if from_image && found.is_err() {
            // Not known whether the image is stale: read, as without one.
            p = match deps.store.get_new(id).await? {
                Some(p) => p,
                None => return Ok(()),
            };
        }
        pending = Some(found);
    }
    if p.status == Status::Received {
        // The intake's record is untrusted (in AWS the public functions
        // write it): keep only what an intake sets, refuse what no intake
        // writes. A refused record is dropped, not retried: no retry can
        // make it valid.
        p = match p.admitted() {
            Ok((admitted, reset)) => {
                if reset {
                    tracing::warn!("the intake record carried state no intake sets; ignored");
                }
                admitted
            }
            Err(e) => {
                tracing::error!(error = %e, "not structuring a forged intake record");
                return Ok(());
            }
        };
        let (fields, mut info, author) = if let Some(a) = &p.intake.assistant {
            // An assistant proposed the fields itself: validate them, do
            // not structure again.
            let fields = structuring::validate_assistant(&wf, a, &p.intake.notes);
            let info = StructuringInfo {
                structurer: "assistant".into(),
                ..StructuringInfo::default()
            };
            let author = Actor::Assistant {
                token: a.token_id.clone(),
                name: a.assistant.clone(),
            };
            (fields, info, author)
        } else {
            let (fields, info) = structure_notes(deps, &wf, &p).await?;
            (fields, info, Actor::system("structure"))
        };
        info.latency_ms = info.latency_ms.max(1);
        let flagged: Vec<&String> = fields
            .iter()
            .filter(|(_, f)| f.flag.is_some())
            .map(|(k, _)| k)
            .collect();
        let duplicates = match (wf.duplicates, pending) {
            (Some(policy), Some(pending)) => {
                Some(look_for_duplicates(deps, &wf, &p, policy, pending, deps.clock.now()).await)
            }
            _ => None,
        };
        let detail = json!({
            "structurer": info.structurer,
            "fallback": info.fallback_reason,
            "flagged": flagged,
            "duplicates": duplicates.as_ref().map(|d| json!({
                "open_records": d.open_records.iter().map(|r| &r.id).collect::<Vec<_>>(),
                "pending": d.pending.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(),
                "failed": d.failed,
            })),
        });
        let now = deps.clock.now();
        let t = p.transition(
            Status::PendingReview,
            Actor::system("structure"),
            "structured",
            detail,
            now,
            |next| {
                next.push_revision(fields.clone(), author.clone(), now);
                next.structuring = Some(info.clone());
                next.duplicates = duplicates.clone();
            },
        )?;
        // The first round's links go in the same write: one transaction,
        // two events. A crash before the mail leaves an unmailed round,
        // which the sweep re-issues after MAIL_STUCK_AFTER.
        let round = review::issue_round(&wf, &t.proposal, "structure", now)?;
        match deps.store.apply_all(&[t, round.issue.clone()]).await {
            Ok(()) => {
                review::mail_round(
                    deps.store.as_ref(),
                    deps.notifier.as_ref(),
                    &wf,
                    &deps.public_url,
                    round,
                    "structure",
                    deps.clock.now(),
                )
                .await?;
                return Ok(());
            }
            // A concurrent delivery did it first: continue from its result.
            Err(fieldgate::ports::StoreError::Conflict) => {
                p = deps.store.get(id).await?.ok_or(AppError::Vanished(id))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Mail only a round whose driver is gone (this call's own round was
    // mailed above, a previous run's is taken over): a round issued moments
    // ago by another driver (its links written, the mail on its way) is
    // theirs to finish. The issue write is conditional
    // on the version read, so of two drivers on a stale round one mails.
    let now = deps.clock.now();
    let ours = taken_over || now - p.updated_at >= MAIL_STUCK_AFTER;
    if p.status == Status::PendingReview && !p.review.mailed && ours {
        review::send_round(
            deps.store.as_ref(),
            deps.notifier.as_ref(),
            &wf,
            &deps.public_url,
            &p,
            "structure",
            now,
        )
        .await?;
    }
    Ok(())
}

/// RECEIVED proposals not structured after this long are re-driven by the
/// sweep (their stream record was lost, or every retry failed).
pub const STRUCTURE_STUCK_AFTER: time::Duration = time::Duration::minutes(10);

/// A review round whose links were issued this long ago and whose mail is
/// not recorded as sent is taken over (the driver crashed between the two).
/// Far longer than sending a few mails takes.
pub const MAIL_STUCK_AFTER: time::Duration = time::Duration::minutes(5);

/// Most proposals one sweep looks at per status.
const SWEEP_BATCH: usize = 100;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sweep {
    /// Proposals structured and/or mailed by this sweep.
    pub redriven: usize,
    /// Proposals with work left whose driver may still be at it.
    pub waiting: usize,
    /// Re-drives that failed (the next sweep tries again).
    pub failed: usize,
    /// Reminders and escalations sent for reviews nobody decided.
    pub reminded: usize,
    pub escalated: usize,
    /// Nudges that failed (taken over by a sweep after `MAIL_STUCK_AFTER`).
    pub nudges_failed: usize,
}

/// Finishes this step's work that no stream delivery will: RECEIVED
/// proposals left unstructured past [`STRUCTURE_STUCK_AFTER`] and
/// PENDING_REVIEW proposals whose review mail is not recorded as sent past
/// [`MAIL_STUCK_AFTER`]; and sends the reminders and escalations due on
/// mailed, undecided reviews (the workflow's `[review]`). Runs on a
/// schedule (AWS: EventBridge rule → this function; dev: the stack's
/// sweeper); `now` is the sweep's time, which tests move forward.
pub async fn sweep(deps: &Structure, now: fieldgate::domain::Timestamp) -> Result<Sweep, AppError> {
    let mut out = Sweep::default();
    let received = deps
        .store
        .list_by_status(Status::Received, SWEEP_BATCH)
        .await?;
    let (unmailed, mut waiting): (Vec<Proposal>, Vec<Proposal>) = deps
        .store
        .list_by_status(Status::PendingReview, SWEEP_BATCH)
        .await?
        .into_iter()
        .partition(|p| !p.review.mailed);
    waiting.extend(
        deps.store
            .list_by_status(Status::NeedsAttention, SWEEP_BATCH)
            .await?
            .into_iter()
            .filter(|p| p.review.mailed),
    );
    let nudged = review::send_due_nudges(
        deps.store.as_ref(),
        deps.notifier.as_ref(),
        &deps.workflows,
        &deps.public_url,
        waiting,
        "sweep",
        now,
        MAIL_STUCK_AFTER,
    )
    .await;
    out.reminded = nudged.reminded;
    out.escalated = nudged.escalated;
    out.nudges_failed = nudged.failed;
    for p in received.into_iter().chain(unmailed) {
        let stuck_after = if p.status == Status::Received {
            STRUCTURE_STUCK_AFTER
        } else {
            MAIL_STUCK_AFTER
        };
        if now - p.updated_at < stuck_after {
            out.waiting += 1;
            continue;
        }
        tracing::info!(proposal = %p.id, status = %p.status, "sweep: re-driving unfinished structure work");
        match process(deps, p.id).await {
            Ok(()) => out.redriven += 1,
            // Another sweep won the conditional write: it does the work.
            Err(e) if e.is_conflict() => out.waiting += 1,
            Err(e) => {
                tracing::warn!(proposal = %p.id, error = %fieldgate::Chain(&e), "sweep: re-drive failed; the next sweep retries");
                out.failed += 1;
            }
        }
    }
    Ok(out)
}

/// On one machine after a restart: mails every review round that the
/// previous process issued (links written before `started`) and never
/// recorded as sent. That process is dead, so nobody else will; the
/// scheduled sweep would wait [`MAIL_STUCK_AFTER`] first. Rounds issued
/// since `started` belong to this process's own deliveries. RECEIVED work
/// needs no take-over: its outbox change is delivered again.
pub async fn take_over(
    deps: &Structure,
    started: fieldgate::domain::Timestamp,
) -> Result<Sweep, AppError> {
    let mut out = Sweep::default();
    let mut left = deps
        .store
        .list_by_status(Status::PendingReview, 100_000)
        .await?;
    left.retain(|p| !p.review.mailed && p.updated_at < started);
    for p in left {
        tracing::info!(proposal = %p.id, "taking over a review round the previous run did not mail");
        match process_as(deps, p.id, true, None).await {
            Ok(()) => out.redriven += 1,
            Err(e) if e.is_conflict() => out.waiting += 1,
            Err(e) => {
                tracing::warn!(proposal = %p.id, error = %fieldgate::Chain(&e), "take-over failed; the sweep retries");
                out.failed += 1;
            }
        }
    }
    Ok(out)
}

/// A Lambda event for this function: a DynamoDB stream batch, or anything
/// else (the scheduled EventBridge rule), which runs [`sweep`].
pub async fn handle_event(
    deps: &Structure,
    payload: serde_json::Value,
) -> Result<serde_json::Value, StructureEventError> {
    if payload.get("Records").is_some() {
        let event: Event = serde_json::from_value(payload).map_err(StructureEventError::Event)?;
        let resp = handle_stream(deps, event).await;
        return serde_json::to_value(resp).map_err(StructureEventError::Event);
    }
    let done = sweep(deps, deps.clock.now()).await?;
    tracing::info!(
        redriven = done.redriven,
        waiting = done.waiting,
        failed = done.failed,
        reminded = done.reminded,
        escalated = done.escalated,
        "scheduled structure sweep done"
    );
    serde_json::to_value(done).map_err(StructureEventError::Event)
}

#[derive(Debug, thiserror::Error)]
pub enum StructureEventError {
    #[error("the event is not a DynamoDB stream batch")]
    Event(#[source] serde_json::Error),
    #[error(transparent)]
    App(#[from] AppError),
}

/// Most open records / pending reports listed beside a report.
const DUPLICATES_SHOWN: usize = 5;

/// Before the review mail: open Cases of the asset created within the
/// workflow's window (Salesforce, read-only) and other reports of it still
/// waiting for review (the store). A lookup that fails is recorded and the
/// review goes on without it: a slow or unwell Salesforce must not hold
/// up the report.
async fn look_for_duplicates(
    deps: &Structure,
    wf: &Workflow,
    p: &Proposal,
    policy: fieldgate::domain::DuplicatePolicy,
    pending: Result<Vec<Proposal>, fieldgate::ports::StoreError>,
    now: fieldgate::domain::Timestamp,
) -> DuplicateCheck {
    let mut check = DuplicateCheck {
        window_days: policy.window_days,
        ..DuplicateCheck::default()
    };
    let since = now - time::Duration::days(policy.window_days.into());
    match &deps.finder {
        Some(f) => match f.open_cases(&p.asset.id, since, DUPLICATES_SHOWN).await {
            Ok(found) => check.open_records = found,
            Err(e) => {
                tracing::warn!(error = %fieldgate::Chain(&e), "duplicate lookup in Salesforce failed; reviewing without it");
                check.failed.push(format!("Salesforce: {e}"));
            }
        },
        None => check
            .failed
            .push("Salesforce: not configured for this step".into()),
    }
    match pending {
        Ok(found) => {
            check.pending = found
                .into_iter()
                .filter(|o| o.id != p.id)
                .take(DUPLICATES_SHOWN)
                .map(|o| PendingReport {
                    id: o.id,
                    summary: o
                        .current()
                        .and_then(|r| r.fields.get(&wf.handoff.summary_field))
                        .and_then(|f| f.text())
                        .map(str::to_owned),
                    received_at: o.intake.received_at,
                })
                .collect();
        }
        Err(e) => {
            tracing::warn!(error = %fieldgate::Chain(&e), "looking up pending reports of the asset failed; reviewing without it");
            check
                .failed
                .push("pending reports: the store did not answer".into());
        }
    }
    check
}

/// A report's notes (and its first photo, if the workflow allows: the
/// structurers take one image) through the workflow's structurer, falling
/// back to the rules.
async fn structure_notes(
    deps: &Structure,
    wf: &Workflow,
    p: &Proposal,
) -> Result<(Fields, StructuringInfo), AppError> {
    let photo = match (p.intake.photo(1), wf.photo.send_to_structurer) {
        (Some(ph), true) => deps
            .media
            .get(&ph.key)
            .await?
            .map(|b| (b, ph.content_type.clone())),
        _ => None,
    };
    let input = StructuringInput {
        notes: &p.intake.notes,
        asset: &p.asset,
        photo: photo.as_ref().map(|(b, t)| (b.as_slice(), t.as_str())),
    };
    let (fields, info) = match deps.structurers.get(&wf.structurer) {
        Some(s) => structuring::structure(s.as_ref(), &deps.rules, wf, &input).await,
        None => {
            let (f, mut i) = structuring::structure(&deps.rules, &deps.rules, wf, &input).await;
            if wf.structurer != StructurerKind::Rules {
                i.fallback_reason =
                    Some(format!("{:?} structurer is not configured", wf.structurer));
            }
            (f, i)
        }
    };
    Ok((fields, info))
}

#[cfg(test)]
mod tests;
