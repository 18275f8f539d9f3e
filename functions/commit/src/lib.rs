//! Commit step: reacts to APPROVED proposals; writes the record to
//! Salesforce exactly once (upsert by the proposal id as external id),
//! attaches the photos, reads the record back, marks the proposal COMMITTED
//! and publishes the handoff. Three writes on the way: the claim before any
//! Salesforce call; the record, the photos and COMMITTED in one; the
//! handoff and the reporter's mail in one, after both sends. Every
//! failure records what was done before it is handled, and a crash
//! anywhere leaves a state the next delivery completes (the record is
//! found by its external id, each photo by its title, each send repeated
//! with its dedupe id).

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use fieldgate::clock::Clock;
use fieldgate::compose::{BuildError, Components};
use fieldgate::domain::{
    Actor, OpenRecord, Operation, Proposal, ProposalId, RecordChange, SalesforceProblem, Status,
    UpdateTarget, Workflow, Workflows,
};
use fieldgate::ports::{
    Attachment, HandoffMessage, HandoffPublisher, MediaStore, ProposalStore, RecordWriter,
    ReviewNotifier, Updated, WriteError,
};
use fieldgate::stream::drive_images;
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
    /// Signs the status link in the reporter's mail.
    pub links: Arc<fieldgate::domain::CsrfKey>,
    pub clock: Arc<dyn Clock>,
    /// How long commits wait after the org's API limit ([`LIMIT_PAUSE`];
    /// `fieldgate serve --limit-pause` sets it).
    pub limit_pause: time::Duration,
    /// Lookup fields' ids by (object, field, name), found once per process:
    /// an org's work types hardly change, and each lookup is an API call.
    lookups: std::sync::Mutex<std::collections::HashMap<(String, String, String), String>>,
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
            links: c.links().await?,
            clock: c.clock(),
            limit_pause: LIMIT_PAUSE,
            lookups: Default::default(),
        })
    }
}

/// The statuses this step acts on (mirrors the template's filter).
/// REJECTED is here for the reporter's mail: this stream-driven function
/// already sends mail (SES), so the outcome mail needs no new permission.
pub const STATUSES: [Status; 5] = [
    Status::Approved,
    Status::Committing,
    Status::Committed,
    Status::NeedsAttention,
    Status::Rejected,
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

/// How long a driver's claim on a proposal lasts without a write. Longer
/// than the slowest step (a file upload with every retry and its lookups);
/// each recorded step renews it.
pub const COMMIT_LEASE: time::Duration = time::Duration::minutes(5);

/// Most proposals one sweep looks at.
const SWEEP_BATCH: usize = 100;

/// The wait before another driver may claim a proposal whose drive failed
/// `failures` times in a row: the first retry is immediate (the stream's
/// redelivery), then 30 s doubling up to [`COMMIT_LEASE`], so an outage
/// costs one probe per proposal per back-off, not a loop.
pub fn backoff(failures: u32) -> time::Duration {
    match failures {
        0 | 1 => time::Duration::ZERO,
        n => (time::Duration::seconds(30) * 2i32.pow((n - 2).min(8))).min(COMMIT_LEASE),
    }
}

/// One driver: a stream delivery or one sweep's re-drive of one proposal.
/// Its owner token names it in the proposal's lease.
struct Driver<'a> {
    deps: &'a Commit,
    owner: String,
    now: fieldgate::domain::Timestamp,
}

impl Driver<'_> {
    fn owns(&self, p: &Proposal) -> bool {
        p.commit.lease_owner.as_deref() == Some(self.owner.as_str())
    }
}

/// Whether this step has work left on `p` (which a lease protects).
fn has_work(deps: &Commit, p: &Proposal) -> bool {
    has_work_in(deps, p.status, p)
}

/// [`has_work`] for `p` once in `status` (a transition's closure sees the
/// proposal before its status changes).
fn has_work_in(deps: &Commit, status: Status, p: &Proposal) -> bool {
    match status {
        Status::Approved | Status::Committing => true,
        Status::Committed => !p.commit.handoff_published || reporter_due(deps, status, p),
        Status::NeedsAttention => !p.review.mailed,
        Status::Rejected => reporter_due(deps, status, p),
        _ => false,
    }
}

/// Whether the reporter's outcome mail is still to be sent for `p` once
/// in `status` (the workflow's `[notify] reporter` decides; an unknown
/// workflow sends none).
fn reporter_due(deps: &Commit, status: Status, p: &Proposal) -> bool {
    let Some(wf) = deps.workflows.get(&p.workflow) else {
        return false;
    };
    p.reporter_mail_due_in(status, &wf.notify).is_some()
}

/// Whether a driver other than the lease owner may claim `p` at `now`.
fn claimable(p: &Proposal, now: fieldgate::domain::Timestamp) -> bool {
    p.commit.lease_until.is_none_or(|until| until <= now)
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    App(AppError),
    #[error("Salesforce")]
    Salesforce(#[source] WriteError),
    /// A proposal's photo is gone from the media store: a person must look.
    #[error("photo {0} is missing from the media store")]
    PhotoMissing(String),
    #[error("the event is not a DynamoDB stream batch")]
    Event(#[source] serde_json::Error),
}

impl CommitError {
    /// Another driver wrote first (a conditional write lost).
    fn is_conflict(&self) -> bool {
        matches!(self, CommitError::App(e) if e.is_conflict())
    }
}

impl<E: Into<AppError>> From<E> for CommitError {
    fn from(e: E) -> Self {
        CommitError::App(e.into())
    }
}

/// Each record's image is where the drive starts: the records of this
/// step's own writes show the lease of the driver that made them, so they
/// are left alone without a read while that lease lasts.
pub async fn handle_stream(deps: &Commit, event: Event) -> DynamoDbEventResponse {
    drive_images(&event, &STATUSES, "commit", |id, image| {
        process_from(deps, id, image)
    })
    .await
}

/// Drives one proposal until there is nothing left for this step to do.
#[tracing::instrument(name = "commit", skip(deps), fields(proposal = %id))]
pub async fn process(deps: &Commit, id: ProposalId) -> Result<(), CommitError> {
    process_at(deps, id, deps.clock.now(), None).await
}

/// [`process`] starting from `image`, the proposal as a stream record
/// shows it (no read first); `None` reads the store.
#[tracing::instrument(name = "commit", skip(deps, image), fields(proposal = %id))]
pub async fn process_from(
    deps: &Commit,
    id: ProposalId,
    image: Option<Proposal>,
) -> Result<(), CommitError> {
    process_at(deps, id, deps.clock.now(), image).await
}

/// [`process`] with the clock given (the sweep and tests pass theirs).
///
/// Only one driver works on a proposal at a time: APPROVED → COMMITTING is
/// the claim (conditional on the version read), and a proposal another
/// driver left mid-way is claimed with the same kind of conditional write
/// once its lease has ended. A driver that finds a live lease of someone
/// else's leaves the proposal alone.
async fn process_at(
    deps: &Commit,
    id: ProposalId,
    now: fieldgate::domain::Timestamp,
    start_from: Option<Proposal>,
) -> Result<(), CommitError> {
    let d = Driver {
        deps,
        owner: hex::encode(rand::random::<[u8; 8]>()),
        now,
    };
    // Each pass makes one recorded step. The next pass starts from what
    // that step wrote: its write was conditional on the version and status
    // it was made from, so the stored item is exactly the one written. Only
    // a lost race (or no image to start from) reads the store.
    let mut known = start_from;
    // Set when this very call claimed the proposal out of APPROVED: then no
    // earlier driver of this attempt can have written the record without
    // recording it, so the record is upserted without a lookup first.
    let mut claimed_here = false;
    for _ in 0..16 {
        let p = match known.take() {
            Some(p) => p,
            None => match deps.store.get(id).await? {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        if !has_work(deps, &p) {
            return Ok(());
        }
        let wf = deps
            .workflows
            .get(&p.workflow)
            .ok_or_else(|| AppError::UnknownWorkflow(p.workflow.clone()))?;
        if p.status != Status::Approved && !d.owns(&p) {
            if !claimable(&p, now) {
                tracing::debug!(proposal = %p.id, "another driver holds the commit; leaving it");
                return Ok(());
            }
            match claim(&d, &p).await {
                Ok(claimed) => {
                    known = Some(claimed);
                    continue;
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        let step = match p.status {
            Status::Approved => {
                let r = start(&d, &p).await;
                claimed_here = matches!(r, Ok(Some(_)));
                r
            }
            Status::Committing => commit_step(&d, &wf, &p, claimed_here).await,
            Status::Committed if !p.commit.handoff_published => publish(&d, &wf, &p).await,
            Status::Committed | Status::Rejected => mail_reporter(&d, &wf, &p).await,
            Status::NeedsAttention => review::send_round(
                deps.store.as_ref(),
                deps.notifier.as_ref(),
                &wf,
                &deps.public_url,
                &p,
                "commit",
                now,
            )
            .await
            .map(Some)
            .map_err(CommitError::from),
            _ => Ok(None),
        };
        match step {
            Ok(Some(next)) => known = Some(next),
            Ok(None) => return Ok(()),
            // Someone else moved it: see what they left.
            Err(e) if e.is_conflict() => continue,
            Err(e) => {
                release_after_failure(&d, id).await;
                return Err(e);
            }
        }
    }
    Err(AppError::Internal("commit did not settle after 16 steps").into())
}

/// Takes over work another driver left (crashed, timed out, or failed and
/// backed off): a conditional write, so of two claimers one wins.
async fn claim(d: &Driver<'_>, p: &Proposal) -> Result<Proposal, CommitError> {
    tracing::info!(proposal = %p.id, status = %p.status, "claiming unfinished commit work");
    let owner = d.owner.clone();
    let until = d.now + COMMIT_LEASE;
    let t = p.transition(
        p.status,
        Actor::system("commit"),
        "commit_resumed",
        json!({"attempt": p.commit.attempts + 1}),
        d.deps.clock.now(),
        |n| {
            n.commit.attempts += 1;
            n.commit.lease_owner = Some(owner);
            n.commit.lease_until = Some(until);
        },
    )?;
    d.deps.store.apply(&t).await?;
    Ok(t.proposal)
}

/// Ends every live commit lease: for a process that is the only driver of
/// its store (`fieldgate dev` at start), a lease left in the store belongs
/// to a process that is gone (killed mid-commit), so its work may be taken
/// over at once instead of after the lease. Each release is a conditional
/// write with its audit event.
pub async fn release_dead_leases(deps: &Commit) -> Result<usize, CommitError> {
    let now = deps.clock.now();
    let mut released = 0;
    for status in [
        Status::Committing,
        Status::Committed,
        Status::NeedsAttention,
        Status::Rejected,
    ] {
        for p in deps.store.list_by_status(status, 1000).await? {
            if p.commit.lease_until.is_none_or(|until| until <= now) {
                continue;
            }
            let t = p.transition(
                p.status,
                Actor::system("commit"),
                "commit_lease_released",
                json!({"reason": "the driver's process is gone (restart)"}),
                now,
                |n| {
                    n.commit.lease_owner = None;
                    n.commit.lease_until = None;
                },
            )?;
            match deps.store.apply(&t).await {
                Ok(()) => released += 1,
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(released)
}

/// After a failed step: gives the lease up with a back-off, recorded, so
/// the stream's redelivery or the next sweep resumes, and an outage is not
/// a loop of immediate retries. Best effort: if even this write fails, the
/// lease simply runs out.
async fn release_after_failure(d: &Driver<'_>, id: ProposalId) {
    let p = match d.deps.store.get(id).await {
        Ok(Some(p)) if d.owns(&p) => p,
        _ => return,
    };
    let failures = p.commit.failures + 1;
    let wait = backoff(failures);
    let t = p.transition(
        p.status,
        Actor::system("commit"),
        "commit_interrupted",
        json!({"failures": failures, "retry_in_s": wait.whole_seconds()}),
        d.deps.clock.now(),
        |n| {
            n.commit.failures = failures;
            n.commit.lease_owner = None;
            n.commit.lease_until = Some(d.now + wait);
        },
    );
    let stored = match t {
        Ok(t) => d.deps.store.apply(&t).await.map_err(AppError::from),
        Err(e) => Err(AppError::from(e)),
    };
    if let Err(e) = stored {
        tracing::warn!(proposal = %id, error = %Chain(&e), "recording the failed commit drive failed; the lease runs out instead");
    }
}

/// Records one step. While work is left the driver's lease is renewed;
/// once there is none (handed off, paused) the lease ends.
async fn save(
    d: &Driver<'_>,
    p: &Proposal,
    to: Status,
    action: &str,
    detail: Value,
    change: impl FnOnce(&mut Proposal),
) -> Result<Proposal, CommitError> {
    let t = mark(d, p, to, action, detail, change)?;
    d.deps.store.apply(&t).await?;
    Ok(t.proposal)
}

/// The transition [`save`] writes, made but not applied (several marks
/// go in one write with `apply_all`).
fn mark(
    d: &Driver<'_>,
    p: &Proposal,
    to: Status,
    action: &str,
    detail: Value,
    change: impl FnOnce(&mut Proposal),
) -> Result<fieldgate::domain::Transition, CommitError> {
    let owner = d.owner.clone();
    let until = d.now + COMMIT_LEASE;
    let t = p.transition(
        to,
        Actor::system("commit"),
        action,
        detail,
        d.deps.clock.now(),
        |n| {
            change(n);
            if to != Status::Approved && has_work_in(d.deps, to, n) {
                n.commit.lease_owner = Some(owner);
                n.commit.lease_until = Some(until);
            } else {
                n.commit.lease_owner = None;
                n.commit.lease_until = None;
                n.commit.failures = 0;
            }
        },
    )?;
    Ok(t)
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

/// Re-drives every proposal whose commit work is not done: APPROVED ones
/// whose limit pause is over or that sat untouched past [`STUCK_AFTER`],
/// and COMMITTING, COMMITTED-without-handoff and unmailed NEEDS_ATTENTION
/// ones whose driver's lease has ended (crashed, or backed off after a
/// failure). Each re-drive claims the proposal with a conditional write
/// first, so it never works alongside a stream delivery. Runs on a schedule
/// (AWS: EventBridge rule → this function; dev: the dispatcher's timer).
/// Oldest first; once Salesforce says no (budget spent, or unwell) the rest
/// wait for the next sweep instead of each spending a call on it.
pub async fn sweep(deps: &Commit, now: fieldgate::domain::Timestamp) -> Result<Sweep, CommitError> {
    let mut candidates = Vec::new();
    for status in STATUSES {
        candidates.extend(
            deps.store
                .list_by_status(status, SWEEP_BATCH)
                .await?
                .into_iter()
                .filter(|p| has_work(deps, p)),
        );
    }
    candidates.sort_by_key(|p| p.updated_at);
    let mut out = Sweep::default();
    let mut stop_probing = false;
    for p in candidates {
        let due = match (p.status, p.commit.paused_until) {
            (Status::Approved, Some(until)) => until <= now,
            (Status::Approved, None) => now - p.updated_at >= STUCK_AFTER,
            _ => claimable(&p, now),
        };
        if !due || stop_probing {
            out.waiting += 1;
            continue;
        }
        tracing::info!(proposal = %p.id, status = %p.status, paused = p.commit.paused_until.is_some(), "sweep: re-driving unfinished commit");
        if let Err(e) = process_at(deps, p.id, now, None).await {
            // Salesforce failed: the state stays resumable, with a back-off.
            tracing::warn!(proposal = %p.id, error = %Chain(&e), "sweep: re-drive failed; a later sweep retries");
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
            // Another driver holds it (its lease is live): not ours to count.
            Some(after) if has_work(deps, &after) => out.waiting += 1,
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

async fn start(d: &Driver<'_>, p: &Proposal) -> Result<Option<Proposal>, CommitError> {
    if p.commit.paused_until.is_some_and(|until| until > d.now) {
        // Paused by REQUEST_LIMIT_EXCEEDED: the sweep picks it up later.
        return Ok(None);
    }
    let attempt = p.commit.attempts + 1;
    // The claim: conditional on the version read, so of a stream delivery
    // and a sweep only one starts.
    let saved = save(
        d,
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
    Ok(Some(saved))
}

fn approved_values(p: &Proposal) -> std::collections::BTreeMap<String, Value> {
    p.current().map(|r| r.values()).unwrap_or_default()
}

/// The write: the record, then the photos, then the read-back, recorded
/// in one write at the end (`record_written`, one `photo_attached` per
/// photo, `committed`: one transaction, every event). Any failure after
/// the record was written records what was done so far first (`flush`),
/// so a failed upload or read-back never costs a second upsert; only a
/// crash in between leaves the record unrecorded, and the next driver
/// finds it by its external id instead of writing it again.
async fn commit_step(
    d: &Driver<'_>,
    wf: &Workflow,
    p: &Proposal,
    claimed_here: bool,
) -> Result<Option<Proposal>, CommitError> {
    let deps = d.deps;
    if wf.operation == Operation::Update {
        return update_step(d, wf, p).await;
    }
    let record = match with_lookups(deps, wf, wf.record(&approved_values(p), &p.asset)).await {
        Ok(r) => r,
        Err(e) => return refused(d, p, e).await,
    };
    let mut before: Vec<fieldgate::domain::Transition> = Vec::new();
    // Whether photos of this proposal may already be on the record: not
    // when this very call created the record.
    let (record_id, look_up_photos) = match p.commit.record_id.clone() {
        Some(id) => (id, true),
        None => {
            if let Some(target) = adding_to(p) {
                return comment_step(d, wf, p, target).await;
            }
            let ext_field = wf
                .external_id_field
                .as_deref()
                .ok_or(AppError::Internal("workflow has no external id field"))?;
            // A driver that did not claim the proposal out of APPROVED
            // itself may follow one that wrote the record and stopped
            // before recording it: that record is found, not written
            // again (a second upsert would undo an edit made since).
            let found = if claimed_here {
                None
            } else {
                match deps
                    .writer
                    .find_ids(&wf.object, ext_field, &p.id.to_string())
                    .await
                {
                    Ok(ids) => <[String; 1]>::try_from(ids).ok().map(|[id]| id),
                    Err(e) => return refused(d, p, e).await,
                }
            };
            let was_found = found.is_some();
            let (id, created) = match found {
                Some(id) => (id, false),
                None => match deps
                    .writer
                    .upsert(&wf.object, ext_field, &p.id.to_string(), &record)
                    .await
                {
                    Ok(up) => (up.id, up.created),
                    Err(e) => return refused(d, p, e).await,
                },
            };
            let url = deps.writer.record_url(&wf.object, &id);
            before.push(mark(
                d,
                p,
                Status::Committing,
                "record_written",
                json!({"salesforce_id": id, "created": created, "found": was_found}),
                |n| {
                    n.commit.record_id = Some(id.clone());
                    n.commit.record_url = Some(url);
                    n.commit.photo_started = !n.intake.photos.is_empty();
                },
            )?);
            (id, !created)
        }
    };
    // Every photo is uploaded in this step and all are recorded with the
    // read-back's "committed", in one write: the store's writes do not
    // grow with the photos. A crash part-way leaves uploads unrecorded;
    // the retry finds each by its title before uploading it, so photos
    // 1-2 of 4 are found and only 3-4 go up. Only this recovery path (or a
    // record this call did not create) pays the queries.
    for (n, photo) in p.intake.photos().skip(p.commit.photo_version_ids.len()) {
        let title = fieldgate::domain::photo_title(p.id, n);
        let version_id = match attach_photo(deps, &record_id, &title, photo, look_up_photos).await {
            Ok(v) => v,
            Err(Upload::Refused(e)) => {
                let at = flush(d, p, before).await?;
                return refused(d, &at, e).await;
            }
            Err(Upload::Failed(e)) => {
                flush(d, p, before).await?;
                return Err(e);
            }
        };
        let from = before.last().map_or(p, |t| &t.proposal);
        let attached = mark(
            d,
            from,
            Status::Committing,
            "photo_attached",
            json!({"photo": n, "content_version_id": version_id}),
            |q| {
                q.commit.photo_version_ids.push(version_id.clone());
            },
        )?;
        before.push(attached);
    }
    finish(d, wf, p, &record, &record_id, before).await
}

/// Records the marks made so far (the record, the photos uploaded) before
/// a failure is handled: the proposal they leave, or `p` when there are
/// none.
async fn flush(
    d: &Driver<'_>,
    p: &Proposal,
    before: Vec<fieldgate::domain::Transition>,
) -> Result<Proposal, CommitError> {
    match before.last() {
        None => Ok(p.clone()),
        Some(last) => {
            let last = last.proposal.clone();
            d.deps.store.apply_all(&before).await?;
            Ok(last)
        }
    }
}

/// How one photo's upload failed: Salesforce refused it (handled as any
/// refusal), or something else went wrong.
enum Upload {
    Refused(WriteError),
    Failed(CommitError),
}

/// Uploads one photo to the record, or finds it there (`look_up`) by its
/// title from an earlier, unrecorded upload.
async fn attach_photo(
    deps: &Commit,
    record_id: &str,
    title: &str,
    photo: &fieldgate::domain::PhotoRef,
    look_up: bool,
) -> Result<String, Upload> {
    if look_up
        && let Some(v) = deps
            .writer
            .find_attachment(record_id, title)
            .await
            .map_err(|e| Upload::Failed(CommitError::Salesforce(e)))?
    {
        return Ok(v);
    }
    let data = deps
        .media
        .get(&photo.key)
        .await
        .map_err(|e| Upload::Failed(e.into()))?
        .ok_or_else(|| Upload::Failed(CommitError::PhotoMissing(photo.key.clone())))?;
    let file = Attachment {
        title,
        file_name: &photo.file_name,
        content_type: &photo.content_type,
        data: &data,
    };
    deps.writer
        .attach(record_id, &file)
        .await
        .map_err(Upload::Refused)
}

/// The open record the reviewer chose to add this report to, if any.
fn adding_to(p: &Proposal) -> Option<&OpenRecord> {
    p.decision.as_ref().and_then(|d| d.add_to.as_ref())
}

/// After the record (and photo): a new record is read back and compared;
/// a comment on an existing one is done (its fields are not ours).
async fn finish(
    d: &Driver<'_>,
    wf: &Workflow,
    p: &Proposal,
    record: &serde_json::Map<String, Value>,
    record_id: &str,
    mut before: Vec<fieldgate::domain::Transition>,
) -> Result<Option<Proposal>, CommitError> {
    let Some(target) = adding_to(p) else {
        return read_back(d, wf, p, record, record_id, before).await;
    };
    let from = before.last().map_or(p, |t| &t.proposal);
    let at = d.deps.clock.now();
    let number = target.number.clone();
    let committed = mark(
        d,
        from,
        Status::Committed,
        "committed",
        json!({
            "salesforce_id": record_id,
            "added_to": target.label(),
            "comment_id": p.commit.comment_id,
        }),
        |n| {
            // The status page and the outcome mail name the open Case the
            // report went onto.
            n.commit.record_number = number.clone();
            n.commit.committed_at = Some(at);
        },
    )?;
    before.push(committed);
    d.deps.store.apply_all(&before).await?;
    Ok(before.pop().map(|t| t.proposal))
}

/// The error code of an open record that closed (or went) before the
/// comment could be added.
pub const CASE_CLOSED: &str = "CASE_CLOSED";

/// "Add to this open Case", first step: the comment, exactly once. The
/// Case must still be open (checked before every attempt to create); the
/// claim (`comment_started`) is recorded before the create, and a retry
/// that finds a claim without a recorded comment looks for the comment by
/// the proposal's marker before creating one. The photo then goes to the
/// Case through the same steps as for a new record.
async fn comment_step(
    d: &Driver<'_>,
    wf: &Workflow,
    p: &Proposal,
    target: &OpenRecord,
) -> Result<Option<Proposal>, CommitError> {
    let deps = d.deps;
    let marker = p.comment_marker();
    let found = if p.commit.comment_started {
        deps.writer
            .find_comment(&target.id, &marker)
            .await
            .map_err(CommitError::Salesforce)?
    } else {
        None
    };
    let (comment_id, from) = match found {
        Some(id) => (id, p.clone()),
        None => {
            match deps
                .writer
                .read(&wf.object, &target.id, &["IsClosed".to_owned()])
                .await
            {
                Ok(rec) if rec.get("IsClosed") == Some(&Value::Bool(false)) => {}
                Ok(_) => return case_closed(d, p, target, "was closed").await,
                // A 404 is a configuration answer in general (an unknown
                // object); here it means the Case is gone.
                Err(WriteError::Config(m)) if m.contains("NOT_FOUND") => {
                    return case_closed(d, p, target, "no longer exists").await;
                }
                Err(e) => return refused(d, p, e).await,
            }
            let claimed = if p.commit.comment_started {
                p.clone()
            } else {
                save(
                    d,
                    p,
                    Status::Committing,
                    "comment_started",
                    json!({"salesforce_id": target.id}),
                    |n| n.commit.comment_started = true,
                )
                .await?
            };
            let mut comment = serde_json::Map::new();
            comment.insert("ParentId".into(), json!(target.id));
            comment.insert("CommentBody".into(), json!(wf.comment_body(&claimed)));
            comment.insert("IsPublished".into(), json!(false));
            match deps.writer.create("CaseComment", &comment).await {
                Ok(id) => (id, claimed),
                Err(e) => return refused(d, &claimed, e).await,
            }
        }
    };
    let url = deps.writer.record_url(&wf.object, &target.id);
    let by = p.decision.as_ref().map(|x| x.by.clone());
    let saved = save(
        d,
        &from,
        Status::Committing,
        "case_commented",
        json!({
            "salesforce_id": target.id,
            "case": target.label(),
            "comment_id": comment_id,
            "by": by,
            "why": "the reviewer added this report to an open Case the duplicate lookup listed for the asset, instead of opening a new one",
        }),
        |n| {
            n.commit.comment_id = Some(comment_id.clone());
            n.commit.record_id = Some(target.id.clone());
            n.commit.record_url = Some(url);
            n.commit.photo_started = !n.intake.photos.is_empty();
        },
    )
    .await?;
    Ok(Some(saved))
}

/// The chosen Case closed (or was deleted) after the lookup listed it:
/// nothing was written; the reviewer gets the report back, the Case no
/// longer offered, to approve as a new Case, add to another, or reject.
async fn case_closed(
    d: &Driver<'_>,
    p: &Proposal,
    target: &OpenRecord,
    what: &str,
) -> Result<Option<Proposal>, CommitError> {
    let problem = SalesforceProblem {
        code: CASE_CLOSED.into(),
        message: format!(
            "Case {} {what} in Salesforce after it was listed for this report. Nothing was written: approve it as a new Case, add it to another open one, or reject it.",
            target.label()
        ),
        fields: vec![],
    };
    tracing::warn!(case = %target.id, "the chosen open Case {what}; back to the reviewer");
    let saved = save(
        d,
        p,
        Status::NeedsAttention,
        "salesforce_refused",
        json!({"error": problem, "salesforce_id": target.id}),
        |n| {
            n.commit.last_error = Some(problem.clone());
            n.commit.comment_started = false;
            if let Some(dup) = &mut n.duplicates {
                dup.open_records.retain(|r| r.id != target.id);
            }
            n.review.mailed = false;
            n.review.retire_grants();
        },
    )
    .await?;
    Ok(Some(saved))
}

/// The error code of a lookup value the org has no record for.
pub const LOOKUP_NOT_FOUND: &str = "LOOKUP_NOT_FOUND";

/// The record with each lookup field's name replaced by the id of the
/// record it names (e.g. a work type's). A name the org has not (or has
/// twice) goes back to the reviewer, who picks another.
async fn with_lookups(
    deps: &Commit,
    wf: &Workflow,
    mut record: serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, WriteError> {
    for (field, lookup) in wf.lookups() {
        let Some(name) = record.get(&field.name).and_then(Value::as_str) else {
            continue;
        };
        let key = (lookup.object.clone(), lookup.by.clone(), name.to_owned());
        let cached = deps.lookups.lock().ok().and_then(|c| c.get(&key).cloned());
        let id = match cached {
            Some(id) => id,
            None => {
                let ids = deps
                    .writer
                    .find_ids(&lookup.object, &lookup.by, name)
                    .await?;
                let [id] = <[String; 1]>::try_from(ids).map_err(|ids| WriteError::Rejected {
                    code: LOOKUP_NOT_FOUND.into(),
                    message: format!(
                        "{}: the org has {} {} with {} \"{name}\"; choose another value",
                        field.label,
                        if ids.is_empty() {
                            "no"
                        } else {
                            "more than one"
                        },
                        lookup.object,
                        lookup.by
                    ),
                    fields: vec![field.name.clone()],
                })?;
                if let Ok(mut c) = deps.lookups.lock() {
                    c.insert(key, id.clone());
                }
                id
            }
        };
        record.insert(field.name.clone(), Value::String(id));
    }
    Ok(record)
}

/// Reads the record back, compares every approved field with what
/// Salesforce holds and records COMMITTED, after the marks in `before`
/// (made from `p` on), in one write.
async fn read_back(
    d: &Driver<'_>,
    wf: &Workflow,
    p: &Proposal,
    record: &serde_json::Map<String, Value>,
    record_id: &str,
    mut before: Vec<fieldgate::domain::Transition>,
) -> Result<Option<Proposal>, CommitError> {
    let deps = d.deps;
    // Read back and compare every approved field with what Salesforce
    // holds; the same read brings the number Salesforce gave the record.
    let number_field = fieldgate::domain::record_number_field(&wf.object);
    let mut names: Vec<String> = record.keys().cloned().collect();
    names.extend(number_field.map(str::to_owned));
    let stored = match deps.writer.read(&wf.object, record_id, &names).await {
        Ok(stored) => stored,
        Err(e) => {
            // What was done is recorded: the retry reads back only.
            flush(d, p, before).await?;
            return Err(CommitError::Salesforce(e));
        }
    };
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
    let number = record_number(number_field, &stored);
    let from = before.last().map_or(p, |t| &t.proposal);
    let at = deps.clock.now();
    let committed = mark(
        d,
        from,
        Status::Committed,
        "committed",
        json!({"salesforce_id": record_id, "record_number": number, "mismatches": mismatches}),
        |n| {
            n.commit.readback_mismatches = mismatches.clone();
            n.commit.record_number = number.clone();
            n.commit.committed_at = Some(at);
        },
    )?;
    before.push(committed);
    deps.store.apply_all(&before).await?;
    Ok(before.pop().map(|t| t.proposal))
}

/// The record's number as Salesforce holds it (a string auto-number),
/// when the object has one and the read brought it.
fn record_number(field: Option<&str>, stored: &serde_json::Map<String, Value>) -> Option<String> {
    let v = stored.get(field?)?;
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The error code of a record changed in Salesforce after the proposal.
pub const RECORD_CHANGED: &str = "RECORD_CHANGED";

/// An `update` workflow's write, in one step: read the record; if it
/// already holds the approved values (our own write, whose recording a
/// crash interrupted) it is done; if it changed since the proposal (its
/// `LastModifiedDate` moved) it goes back to the reviewer with the new
/// values; otherwise only the approved fields are written, conditional on
/// the record being unmodified since (`If-Unmodified-Since`, 412).
async fn update_step(
    d: &Driver<'_>,
    wf: &Workflow,
    p: &Proposal,
) -> Result<Option<Proposal>, CommitError> {
    let deps = d.deps;
    let target = p
        .update
        .as_ref()
        .ok_or(AppError::Internal("an update proposal without its record"))?;
    let record = wf.record(&approved_values(p), &p.asset);
    let url = deps.writer.record_url(&wf.object, &target.record_id);
    let read = || async {
        let rec = deps
            .writer
            .read(
                &wf.object,
                &target.record_id,
                &fieldgate::update::read_fields(wf),
            )
            .await
            .map_err(CommitError::Salesforce)?;
        let fresh = fieldgate::update::snapshot(wf, &target.record_id, &rec).ok_or(
            AppError::Internal("the record was read without its LastModifiedDate"),
        )?;
        Ok::<_, CommitError>((rec, fresh))
    };
    let (rec, fresh) = read().await?;
    let holds =
        |rec: &serde_json::Map<String, Value>| record.iter().all(|(k, v)| rec.get(k) == Some(v));
    let written = if holds(&rec) {
        // Nothing to write: the record already holds every approved value.
        false
    } else if fresh.last_modified != target.last_modified {
        return record_changed(d, p, target, fresh).await;
    } else {
        match deps
            .writer
            .update(
                &wf.object,
                &target.record_id,
                &record,
                Some(&target.last_modified),
            )
            .await
        {
            Ok(Updated::Written) => true,
            Ok(Updated::ChangedSince) => {
                let (_, fresh) = read().await?;
                return record_changed(d, p, target, fresh).await;
            }
            Err(e) => return refused(d, p, e).await,
        }
    };
    let fields: Vec<&String> = record.keys().collect();
    let number = record_number(fieldgate::domain::record_number_field(&wf.object), &rec);
    let at = deps.clock.now();
    let saved = save(
        d,
        p,
        Status::Committed,
        "committed",
        json!({"salesforce_id": target.record_id, "record_number": number, "updated_fields": fields, "written": written}),
        |n| {
            n.commit.record_id = Some(target.record_id.clone());
            n.commit.record_url = Some(url.clone());
            n.commit.record_number = number.clone();
            n.commit.committed_at = Some(at);
        },
    )
    .await?;
    Ok(Some(saved))
}

/// The record changed in Salesforce since the proposal (or the last
/// review): nothing was written; the reviewer gets it back with the new
/// values, which a new approval is then compared against.
async fn record_changed(
    d: &Driver<'_>,
    p: &Proposal,
    before: &UpdateTarget,
    mut now: UpdateTarget,
) -> Result<Option<Proposal>, CommitError> {
    now.changed = Some(RecordChange {
        previous_last_modified: before.last_modified.clone(),
        previous: before.current.clone(),
    });
    let fields = now.changed_fields();
    let problem = SalesforceProblem {
        code: RECORD_CHANGED.into(),
        message: format!(
            "{} was changed in Salesforce at {}, after this proposal was made (it was read at {}). Nothing was written.",
            now.label, now.last_modified, before.last_modified
        ),
        fields: fields.clone(),
    };
    tracing::warn!(record = %now.record_id, ?fields, "record changed in Salesforce since the proposal; back to the reviewer");
    let saved = save(
        d,
        p,
        Status::NeedsAttention,
        "record_changed_in_salesforce",
        json!({"error": problem, "last_modified": now.last_modified}),
        |n| {
            n.update = Some(now.clone());
            n.commit.last_error = Some(problem.clone());
            n.review.mailed = false;
            n.review.retire_grants();
        },
    )
    .await?;
    Ok(Some(saved))
}

/// Maps a Salesforce failure to what happens next.
async fn refused(
    d: &Driver<'_>,
    p: &Proposal,
    e: WriteError,
) -> Result<Option<Proposal>, CommitError> {
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
            let saved = save(
                d,
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
            Ok(Some(saved))
        }
        WriteError::LimitExceeded(m) => {
            // Wait for the budget instead of burning retries: back to
            // APPROVED with a pause; the stream record is done (no retry)
            // and the sweep re-drives it once the pause is over.
            let until = d.now + d.deps.limit_pause;
            tracing::warn!(reason = %m, %until, "Salesforce API budget exhausted; commit paused");
            let saved = save(
                d,
                p,
                Status::Approved,
                "commit_paused",
                json!({"reason": m, "until": until.unix_timestamp()}),
                |n| {
                    n.commit.paused_until = Some(until);
                },
            )
            .await?;
            Ok(Some(saved))
        }
        other => Err(CommitError::Salesforce(other)),
    }
}

async fn publish(
    d: &Driver<'_>,
    wf: &Workflow,
    p: &Proposal,
) -> Result<Option<Proposal>, CommitError> {
    let values = approved_values(p);
    let text = |f: &str| values.get(f).and_then(Value::as_str).map(str::to_owned);
    // A report added to an open Case says so: subscribers see which
    // record was updated rather than a new one.
    let event = if adding_to(p).is_some() {
        "added_to_existing"
    } else {
        "committed"
    };
    let msg = HandoffMessage {
        schema: HANDOFF_SCHEMA.into(),
        event: event.into(),
        dedupe_key: format!("{}:{event}", p.id),
        proposal_id: p.id,
        workflow: wf.id.to_string(),
        object: wf.object.clone(),
        salesforce_id: p.commit.record_id.clone().unwrap_or_default(),
        salesforce_url: p.commit.record_url.clone().unwrap_or_default(),
        summary: text(&wf.handoff.summary_field).unwrap_or_default(),
        priority: wf.handoff.priority_field.as_deref().and_then(text),
        asset: p.asset.clone(),
        approved_by: p.decision.as_ref().map(|d| d.by.clone()),
        photos: p.commit.photo_version_ids.len(),
        committed_at: p.updated_at,
    };
    d.deps.handoff.publish(&msg).await?;
    let at = d.deps.clock.now();
    let published = mark(
        d,
        p,
        Status::Committed,
        "handoff_published",
        json!({"dedupe_key": msg.dedupe_key}),
        |n| {
            n.commit.handoff_published = true;
            n.commit.handed_off_at = Some(at);
        },
    )?;
    // The reporter's outcome mail, when due, goes out before either send
    // is recorded, and both are recorded in one write: each send is
    // at-least-once with its own dedupe id (the message's `dedupe_key`,
    // the mail's `Message-ID`), so a crash before the write repeats them
    // recognisably, never loses one. A failed mail records the handoff
    // alone and leaves the mail to the retry.
    let Some(to) = published.proposal.reporter_mail_due(&wf.notify) else {
        d.deps.store.apply(&published).await?;
        return Ok(Some(published.proposal));
    };
    let to = to.to_owned();
    if let Err(e) = send_reporter_mail(d, wf, &published.proposal, &to).await {
        d.deps.store.apply(&published).await?;
        return Err(e);
    }
    let mailed = reporter_mailed(d, &published.proposal)?;
    d.deps.store.apply_all(&[published, mailed.clone()]).await?;
    Ok(Some(mailed.proposal))
}

/// Tells the reporter the outcome, once: the mail, then its record (a
/// conditional write, so of two drivers only one records it; the lease
/// keeps a second from sending meanwhile). A crash between the two sends
/// it again on the retry, with the same `Message-ID`, so a mail client
/// (and a person) sees the repeat for what it is.
async fn mail_reporter(
    d: &Driver<'_>,
    wf: &Workflow,
    p: &Proposal,
) -> Result<Option<Proposal>, CommitError> {
    let Some(to) = p.reporter_mail_due(&wf.notify) else {
        return Ok(None);
    };
    send_reporter_mail(d, wf, p, to).await?;
    let mailed = reporter_mailed(d, p)?;
    d.deps.store.apply(&mailed).await?;
    Ok(Some(mailed.proposal))
}

/// Sends `p`'s outcome mail to `to` (the reporter).
async fn send_reporter_mail(
    d: &Driver<'_>,
    wf: &Workflow,
    p: &Proposal,
    to: &str,
) -> Result<(), CommitError> {
    let status_url = format!(
        "{}/s/{}",
        d.deps.public_url.trim_end_matches('/'),
        fieldgate::review::status_ref(&d.deps.links, p.id)
    );
    let mail = fieldgate::notice::reporter_mail(wf, p, to, &status_url);
    d.deps.notifier.send(&mail).await?;
    Ok(())
}

/// The record of `p`'s outcome mail (made, not applied).
fn reporter_mailed(
    d: &Driver<'_>,
    p: &Proposal,
) -> Result<fieldgate::domain::Transition, CommitError> {
    let at = d.deps.clock.now();
    mark(
        d,
        p,
        p.status,
        "reporter_mail_sent",
        json!({"outcome": p.status}),
        |n| {
            n.reporter_mailed_at = Some(at);
        },
    )
}

#[cfg(test)]
mod tests;
