//! Commit step: reacts to APPROVED proposals; writes the record to
//! Salesforce exactly once (upsert by the proposal id as external id),
//! attaches the photo, reads the record back, marks the proposal COMMITTED
//! and publishes the handoff. Every step is recorded before the next, so a
//! crash anywhere leaves a state the next delivery completes.

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use fieldgate::clock::Clock;
use fieldgate::compose::{BuildError, Components};
use fieldgate::domain::{
    Actor, Proposal, ProposalId, SalesforceProblem, Status, Workflow, Workflows,
};
use fieldgate::ports::{
    Attachment, HandoffMessage, HandoffPublisher, MediaStore, ProposalStore, RecordWriter,
    ReviewNotifier, WriteError,
};
use fieldgate::stream::drive;
use fieldgate::{AppError, Chain, review};
use serde_json::{Value, json};
use std::sync::Arc;

pub struct Commit {
    pub store: Arc<dyn ProposalStore>,
    pub writer: Arc<dyn RecordWriter>,
    pub media: Arc<dyn MediaStore>,
    pub handoff: Arc<dyn HandoffPublisher>,
    pub notifier: Arc<dyn ReviewNotifier>,
    pub workflows: Arc<Workflows>,
    pub public_url: String,
    pub clock: Arc<dyn Clock>,
}

impl Commit {
    /// The step's dependencies from the composition root.
    pub async fn build(c: &Components) -> Result<Self, BuildError> {
        Ok(Self {
            store: c.store().await?,
            writer: c.writer().await?,
            media: c.media().await?,
            handoff: c.handoff().await?,
            notifier: c.notifier().await?,
            workflows: c.workflows().await?,
            public_url: c.public_url()?,
            clock: c.clock(),
        })
    }
}

/// The statuses this step acts on (mirrors the template's filter).
pub const STATUSES: [Status; 4] = [
    Status::Approved,
    Status::Committing,
    Status::Committed,
    Status::NeedsAttention,
];

pub const HANDOFF_SCHEMA: &str = "fieldgate.handoff/v1";

/// How long commits wait after Salesforce answered REQUEST_LIMIT_EXCEEDED.
/// The org's budget is a rolling 24 h window shared with other
/// integrations; probing it more often only spends what others need.
pub const LIMIT_PAUSE: time::Duration = time::Duration::minutes(15);

/// APPROVED proposals untouched for this long are re-driven by the sweep
/// even without a pause (e.g. their stream record went to the on-failure
/// queue).
pub const STUCK_AFTER: time::Duration = time::Duration::minutes(10);

/// Most proposals one sweep looks at.
const SWEEP_BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    App(AppError),
    #[error("Salesforce")]
    Salesforce(#[source] WriteError),
    /// The proposal's photo is gone from the media store: a person must look.
    #[error("photo {0} is missing from the media store")]
    PhotoMissing(String),
    #[error("the event is not a DynamoDB stream batch")]
    Event(#[source] serde_json::Error),
}

impl<E: Into<AppError>> From<E> for CommitError {
    fn from(e: E) -> Self {
        CommitError::App(e.into())
    }
}

pub async fn handle_stream(deps: &Commit, event: Event) -> DynamoDbEventResponse {
    drive(&event, &STATUSES, "commit", |id| process(deps, id)).await
}

/// Drives one proposal until there is nothing left for this step to do.
#[tracing::instrument(name = "commit", skip(deps), fields(proposal = %id))]
pub async fn process(deps: &Commit, id: ProposalId) -> Result<(), CommitError> {
    process_at(deps, id, deps.clock.now()).await
}

/// [`process`] with the clock given (the sweep and tests pass theirs).
async fn process_at(
    deps: &Commit,
    id: ProposalId,
    now: fieldgate::domain::Timestamp,
) -> Result<(), CommitError> {
    // Each pass makes one recorded step; a fresh read after each keeps us
    // honest about what is stored.
    // Set when this very call recorded the record write: then no upload can
    // have happened yet and the photo goes up without a lookup first.
    let mut wrote_record_here = false;
    for _ in 0..16 {
        let Some(p) = deps.store.get(id).await? else {
            return Ok(());
        };
        let wf = deps
            .workflows
            .get(&p.workflow)
            .ok_or_else(|| AppError::UnknownWorkflow(p.workflow.clone()))?;
        let progressed = match p.status {
            Status::Approved => start(deps, &p, now).await?,
            Status::Committing => {
                let had_record = p.commit.record_id.is_some();
                let progressed = commit_step(deps, &wf, &p, wrote_record_here, now).await?;
                wrote_record_here = !had_record;
                progressed
            }
            Status::Committed if !p.commit.handoff_published => publish(deps, &wf, &p).await?,
            Status::NeedsAttention if !p.review.mailed => {
                review::send_round(
                    deps.store.as_ref(),
                    deps.notifier.as_ref(),
                    &wf,
                    &deps.public_url,
                    &p,
                    "commit",
                    now,
                )
                .await?;
                true
            }
            _ => false,
        };
        if !progressed {
            return Ok(());
        }
    }
    Err(AppError::Internal("commit did not settle after 16 steps").into())
}

async fn save(
    deps: &Commit,
    p: &Proposal,
    to: Status,
    action: &str,
    detail: Value,
    change: impl FnOnce(&mut Proposal),
) -> Result<Proposal, CommitError> {
    let t = p.transition(
        to,
        Actor::system("commit"),
        action,
        detail,
        deps.clock.now(),
        change,
    )?;
    deps.store.apply(&t).await?;
    Ok(t.proposal)
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sweep {
    /// Proposals whose commit was started again.
    pub redriven: usize,
    /// Proposals still waiting (pause not over, or a probe found the
    /// budget still exhausted).
    pub waiting: usize,
}

/// Re-drives APPROVED proposals whose limit pause is over, or that sat
/// untouched past [`STUCK_AFTER`]. Runs on a schedule (AWS: EventBridge
/// rule → this function; dev: the dispatcher's timer). Oldest first; when
/// one is paused again the budget is still spent, so the rest wait for the
/// next sweep instead of each spending a call to learn the same thing.
pub async fn sweep(deps: &Commit, now: fieldgate::domain::Timestamp) -> Result<Sweep, CommitError> {
    let mut approved = deps
        .store
        .list_by_status(Status::Approved, SWEEP_BATCH)
        .await?;
    approved.sort_by_key(|p| p.updated_at);
    let mut out = Sweep::default();
    // Set once Salesforce says no (budget still spent, or unwell): the rest
    // wait for the next sweep instead of each spending a call on it.
    let mut stop_probing = false;
    for p in approved {
        let due = match p.commit.paused_until {
            Some(until) => until <= now,
            None => now - p.updated_at >= STUCK_AFTER,
        };
        if !due || stop_probing {
            out.waiting += 1;
            continue;
        }
        tracing::info!(proposal = %p.id, paused = p.commit.paused_until.is_some(), "sweep: re-driving approved proposal");
        if let Err(e) = process_at(deps, p.id, now).await {
            // E.g. the stream delivery got there first (a conditional write
            // lost) or Salesforce failed: the state stays resumable.
            tracing::warn!(proposal = %p.id, error = %Chain(&e), "sweep: re-drive failed; the next sweep retries");
            stop_probing |= matches!(e, CommitError::Salesforce(_));
            out.waiting += 1;
            continue;
        }
        match deps.store.get(p.id).await? {
            Some(after)
                if after.status == Status::Approved
                    && after.commit.paused_until.is_some_and(|u| u > now) =>
            {
                stop_probing = true;
                out.waiting += 1;
            }
            _ => out.redriven += 1,
        }
    }
    Ok(out)
}

/// A Lambda event for this function: a DynamoDB stream batch, or anything
/// else (the scheduled EventBridge rule), which runs [`sweep`].
pub async fn handle_event(deps: &Commit, payload: Value) -> Result<Value, CommitError> {
    if payload.get("Records").is_some() {
        let event: Event = serde_json::from_value(payload).map_err(CommitError::Event)?;
        let resp = handle_stream(deps, event).await;
        return serde_json::to_value(resp).map_err(CommitError::Event);
    }
    // The schedule also ends reviews nobody answered in time.
    let now = deps.clock.now();
    let done = sweep(deps, now).await?;
    let expired = fieldgate::review::expire_due(deps.store.as_ref(), now, 100).await?;
    tracing::info!(
        redriven = done.redriven,
        waiting = done.waiting,
        expired,
        "scheduled sweep done"
    );
    Ok(json!({"commit": done, "expired": expired}))
}

async fn start(
    deps: &Commit,
    p: &Proposal,
    now: fieldgate::domain::Timestamp,
) -> Result<bool, CommitError> {
    if p.commit.paused_until.is_some_and(|until| until > now) {
        // Paused by REQUEST_LIMIT_EXCEEDED: the sweep picks it up later.
        return Ok(false);
    }
    let attempt = p.commit.attempts + 1;
    save(
        deps,
        p,
        Status::Committing,
        "commit_started",
        json!({"attempt": attempt}),
        |n| {
            n.commit.attempts = attempt;
            n.commit.paused_until = None;
        },
    )
    .await?;
    Ok(true)
}

fn approved_values(p: &Proposal) -> std::collections::BTreeMap<String, Value> {
    p.current().map(|r| r.values()).unwrap_or_default()
}

/// One step of the write: the record, then the photo, then the read-back.
async fn commit_step(
    deps: &Commit,
    wf: &Workflow,
    p: &Proposal,
    wrote_record_here: bool,
    now: fieldgate::domain::Timestamp,
) -> Result<bool, CommitError> {
    let record = wf.record(&approved_values(p), &p.asset);
    let Some(record_id) = p.commit.record_id.clone() else {
        let ext_field = wf
            .external_id_field
            .as_deref()
            .ok_or(AppError::Internal("workflow has no external id field"))?;
        match deps
            .writer
            .upsert(&wf.object, ext_field, &p.id.to_string(), &record)
            .await
        {
            Ok(up) => {
                let url = deps.writer.record_url(&wf.object, &up.id);
                save(
                    deps,
                    p,
                    Status::Committing,
                    "record_written",
                    json!({"salesforce_id": up.id, "created": up.created}),
                    |n| {
                        n.commit.record_id = Some(up.id.clone());
                        n.commit.record_url = Some(url);
                        n.commit.photo_started = n.intake.photo.is_some();
                    },
                )
                .await?;
                return Ok(true);
            }
            Err(e) => return refused(deps, p, e, now).await,
        }
    };
    if let Some(photo) = &p.intake.photo
        && p.commit.photo_version_id.is_none()
    {
        let title = format!("fieldgate-{}", p.id);
        // A crash may have come between the upload and recording it: look
        // before uploading again. Only this recovery path pays the query.
        let existing = if !wrote_record_here {
            deps.writer
                .find_attachment(&record_id, &title)
                .await
                .map_err(CommitError::Salesforce)?
        } else {
            None
        };
        let version_id = match existing {
            Some(v) => v,
            None => {
                let data = deps
                    .media
                    .get(&photo.key)
                    .await?
                    .ok_or_else(|| CommitError::PhotoMissing(photo.key.clone()))?;
                let file = Attachment {
                    title: &title,
                    file_name: &photo.file_name,
                    content_type: &photo.content_type,
                    data: &data,
                };
                match deps.writer.attach(&record_id, &file).await {
                    Ok(v) => v,
                    Err(e) => return refused(deps, p, e, now).await,
                }
            }
        };
        save(
            deps,
            p,
            Status::Committing,
            "photo_attached",
            json!({"content_version_id": version_id}),
            |n| {
                n.commit.photo_version_id = Some(version_id.clone());
            },
        )
        .await?;
        return Ok(true);
    }
    // Read back and compare every approved field with what Salesforce holds.
    let names: Vec<String> = record.keys().cloned().collect();
    let stored = deps
        .writer
        .read(&wf.object, &record_id, &names)
        .await
        .map_err(CommitError::Salesforce)?;
    let mismatches: Vec<String> = record
        .iter()
        .filter(|(k, v)| stored.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{k}: approved {v}, Salesforce holds {}",
                stored.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect();
    if !mismatches.is_empty() {
        tracing::warn!(
            ?mismatches,
            "Salesforce holds other values than were approved"
        );
    }
    save(
        deps,
        p,
        Status::Committed,
        "committed",
        json!({"salesforce_id": record_id, "mismatches": mismatches}),
        |n| {
            n.commit.readback_mismatches = mismatches.clone();
        },
    )
    .await?;
    Ok(true)
}

/// Maps a Salesforce failure to what happens next.
async fn refused(
    deps: &Commit,
    p: &Proposal,
    e: WriteError,
    now: fieldgate::domain::Timestamp,
) -> Result<bool, CommitError> {
    match e {
        WriteError::Rejected {
            code,
            message,
            fields,
        } => {
            tracing::warn!(%code, %message, "Salesforce refused the record; back to the reviewer");
            let problem = SalesforceProblem {
                code,
                message,
                fields,
            };
            save(
                deps,
                p,
                Status::NeedsAttention,
                "salesforce_refused",
                json!({"error": problem}),
                |n| {
                    n.commit.last_error = Some(problem.clone());
                    n.review.mailed = false;
                    n.review.retire_grants();
                },
            )
            .await?;
            Ok(true)
        }
        WriteError::LimitExceeded(m) => {
            // Wait for the budget instead of burning retries: back to
            // APPROVED with a pause; the stream record is done (no retry)
            // and the sweep re-drives it once the pause is over.
            let until = now + LIMIT_PAUSE;
            tracing::warn!(reason = %m, %until, "Salesforce API budget exhausted; commit paused");
            save(
                deps,
                p,
                Status::Approved,
                "commit_paused",
                json!({"reason": m, "until": until.unix_timestamp()}),
                |n| {
                    n.commit.paused_until = Some(until);
                },
            )
            .await?;
            Ok(true)
        }
        other => Err(CommitError::Salesforce(other)),
    }
}

async fn publish(deps: &Commit, wf: &Workflow, p: &Proposal) -> Result<bool, CommitError> {
    let values = approved_values(p);
    let text = |f: &str| values.get(f).and_then(Value::as_str).map(str::to_owned);
    let msg = HandoffMessage {
        schema: HANDOFF_SCHEMA.into(),
        event: "committed".into(),
        dedupe_key: format!("{}:committed", p.id),
        proposal_id: p.id,
        workflow: wf.id.to_string(),
        object: wf.object.clone(),
        salesforce_id: p.commit.record_id.clone().unwrap_or_default(),
        salesforce_url: p.commit.record_url.clone().unwrap_or_default(),
        summary: text(&wf.handoff.summary_field).unwrap_or_default(),
        priority: wf.handoff.priority_field.as_deref().and_then(text),
        asset: p.asset.clone(),
        approved_by: p.decision.as_ref().map(|d| d.by.clone()),
        committed_at: p.updated_at,
    };
    deps.handoff.publish(&msg).await?;
    save(
        deps,
        p,
        Status::Committed,
        "handoff_published",
        json!({"dedupe_key": msg.dedupe_key}),
        |n| {
            n.commit.handoff_published = true;
        },
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests;
