//! The proposal: everything known about one intake, and the only way to
//! change it — a [`Transition`] that carries its own audit event.

use super::assistant::AssistantProposal;
use super::audit::{Actor, AuditEvent, GENESIS};
use super::revision::{Fields, Revision};
use super::workflow::{NotifyPolicy, looks_like_email};
use super::{AssetId, ProposalId, Status, Timestamp, WorkflowId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the technician saw on the form: a snapshot of the asset at intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetContext {
    pub id: AssetId,
    pub name: String,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoRef {
    /// Media-store key; never shown to anyone.
    pub key: String,
    pub content_type: String,
    pub bytes: u64,
    pub sha256: String,
    pub file_name: String,
}

/// Reads a list stored before it was one: `null` (nothing), one value (the
/// single `photo` / `photo_version_id` of earlier versions) or a list.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(d)? {
        None => vec![],
        Some(OneOrMany::One(v)) => vec![v],
        Some(OneOrMany::Many(v)) => v,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intake {
    pub notes: String,
    pub reporter: Option<String>,
    /// In the order the technician added them. Proposals stored before
    /// there could be several have one `photo` (or `null`): read as a list.
    #[serde(default, alias = "photo", deserialize_with = "one_or_many")]
    pub photos: Vec<PhotoRef>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: Timestamp,
    /// Set when an assistant proposed the fields over MCP: `notes` are then
    /// the user's own words it quoted from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<AssistantProposal>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StructuringInfo {
    pub structurer: String,
    pub model: Option<String>,
    /// Why the configured structurer was not the one used (fallback).
    pub fallback_reason: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub latency_ms: u64,
}

/// One reviewer's link. Only the SHA-256 of the link's nonce is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewGrant {
    pub reviewer: String,
    pub token_hash: String,
}

/// The links of one round of review (a new round starts when Salesforce
/// refuses an approved record and it goes back to the reviewers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReviewRound {
    pub round: u32,
    pub grants: Vec<ReviewGrant>,
    /// Hashes of links that were issued and have ended (replaced by a
    /// newer round, spent by a decision, expired).
    #[serde(default)]
    pub replaced: Vec<String>,
    pub mailed: bool,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<Timestamp>,
    /// When this round's links were mailed (absent on older items).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub mailed_at: Option<Timestamp>,
    /// When the first round was mailed: the technician's "sent to the
    /// reviewers" (later rounds are Salesforce's business, not theirs).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first_mailed_at: Option<Timestamp>,
    /// When the round's links were issued: reminders and escalation count
    /// from here. Absent on rounds stored before it was recorded (then
    /// `expires_at` minus the link lifetime).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub issued_at: Option<Timestamp>,
    /// The reminder and the escalation of this round, each claimed once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nudges: Vec<Nudge>,
}

/// A mail the sweep sends while a round waits for a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NudgeKind {
    /// The reviewers again, with fresh links (their first ones still work).
    Reminder,
    /// The workflow's second list, with links of their own.
    Escalation,
}

impl NudgeKind {
    pub const ALL: [NudgeKind; 2] = [NudgeKind::Reminder, NudgeKind::Escalation];

    pub fn as_str(self) -> &'static str {
        match self {
            NudgeKind::Reminder => "reminder",
            NudgeKind::Escalation => "escalation",
        }
    }
}

/// One claimed reminder or escalation. The claim (a conditional write) is
/// what makes it happen once; `mailed` is recorded after the mail, so a
/// claim whose driver died before mailing is taken over after a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nudge {
    pub kind: NudgeKind,
    pub to: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub claimed_at: Timestamp,
    /// The links this nudge issued (hashes of `grants`), so a take-over
    /// replaces exactly those.
    pub grant_hashes: Vec<String>,
    #[serde(default)]
    pub mailed: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub mailed_at: Option<Timestamp>,
}

/// What the technician's status page says happened during review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewMilestone {
    Reminded(Timestamp),
    Escalated(Timestamp),
    Expired(Timestamp),
}

impl ReviewRound {
    /// Ends the round's links. Their hashes are kept, so a late click is
    /// told what happened ("already decided", "a newer link was sent")
    /// instead of "not found".
    pub fn retire_grants(&mut self) {
        let old = self.grants.drain(..).map(|g| g.token_hash);
        self.replaced.extend(old);
    }

    pub fn nudge(&self, kind: NudgeKind) -> Option<&Nudge> {
        self.nudges.iter().find(|n| n.kind == kind)
    }

    /// When this round's links were issued (see `issued_at`).
    pub fn issued(&self, link_ttl: time::Duration) -> Option<Timestamp> {
        self.issued_at.or(self.expires_at.map(|e| e - link_ttl))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Approve,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub kind: DecisionKind,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    pub revision_hash: String,
    pub reason: Option<String>,
    /// Which link decided (hash), so that link is consumed.
    pub token_hash: String,
    /// "Add to this open Case": the approval goes onto this existing
    /// record (one the duplicate lookup listed) instead of a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_to: Option<OpenRecord>,
}

/// An open record of the workflow's object for the same asset, as the
/// duplicate lookup found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRecord {
    pub id: String,
    /// The Case number (what people say on the phone).
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// `CreatedDate` as Salesforce wrote it.
    #[serde(default)]
    pub created: Option<String>,
}

impl OpenRecord {
    /// What the review page and the audit call it.
    pub fn label(&self) -> String {
        match (&self.number, &self.subject) {
            (Some(n), Some(s)) => format!("{n} — {s}"),
            (Some(n), None) => n.clone(),
            (None, Some(s)) => s.clone(),
            (None, None) => self.id.clone(),
        }
    }
}

/// Another report on the same asset still waiting for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReport {
    pub id: ProposalId,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: Timestamp,
}

/// What the structure step found before the review mail: records that
/// may already cover this report. A lookup that failed does not hold up
/// the review; it is named in `failed` and the page says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DuplicateCheck {
    pub window_days: u32,
    #[serde(default)]
    pub open_records: Vec<OpenRecord>,
    #[serde(default)]
    pub pending: Vec<PendingReport>,
    /// One line per lookup that failed ("Salesforce: unavailable").
    #[serde(default)]
    pub failed: Vec<String>,
}

impl DuplicateCheck {
    /// The listed open record with this id, if any (the only ones a
    /// reviewer may add to).
    pub fn candidate(&self, id: &str) -> Option<&OpenRecord> {
        self.open_records.iter().find(|r| r.id == id)
    }
}

/// Salesforce's answer when it refused the record, shown to the reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesforceProblem {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// How far the commit got; each step is recorded before the next starts, so
/// a retry after a crash resumes instead of repeating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CommitProgress {
    pub attempts: u32,
    pub record_id: Option<String>,
    pub record_url: Option<String>,
    /// Set with the record write when there are photos to upload.
    #[serde(default)]
    pub photo_started: bool,
    /// The ContentVersion ids of the attached photos, in the intake's
    /// order; recorded with "committed". A retry before then finds each
    /// photo already uploaded by its title instead of uploading it again.
    /// (Earlier versions kept one `photo_version_id`: read as a list.)
    #[serde(default, alias = "photo_version_id", deserialize_with = "one_or_many")]
    pub photo_version_ids: Vec<String>,
    /// The number Salesforce gave the record (`CaseNumber`, ...), read back
    /// after the write; `None` for objects without one.
    #[serde(default)]
    pub record_number: Option<String>,
    /// When the record was read back and the proposal marked COMMITTED.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub committed_at: Option<Timestamp>,
    /// When the handoff was published.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub handed_off_at: Option<Timestamp>,
    /// "Add to this open Case": set before the comment is created, so a
    /// retry that finds it set but no `comment_id` looks for the comment
    /// (by the marker in its body) before creating another.
    #[serde(default)]
    pub comment_started: bool,
    #[serde(default)]
    pub comment_id: Option<String>,
    #[serde(default)]
    pub readback_mismatches: Vec<String>,
    pub handoff_published: bool,
    pub last_error: Option<SalesforceProblem>,
    /// Set when Salesforce answered REQUEST_LIMIT_EXCEEDED: the proposal
    /// waits in APPROVED until then and is re-driven by the commit sweep.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub paused_until: Option<Timestamp>,
    /// The driver (one stream delivery or one sweep) that claimed the
    /// remaining work with a conditional write; only it works on the
    /// proposal until `lease_until`.
    #[serde(default)]
    pub lease_owner: Option<String>,
    /// When the claim ends: a crashed or stuck driver's work is taken over
    /// by the sweep after this.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub lease_until: Option<Timestamp>,
    /// Drives in a row that failed (Salesforce unwell); sets the back-off
    /// before the next claim.
    #[serde(default)]
    pub failures: u32,
}

/// The record an update proposal changes, as Salesforce held it when the
/// proposal was made (or, after a conflict, when the commit last looked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateTarget {
    pub record_id: String,
    /// What people call it (a Case's number and subject).
    pub label: String,
    /// The record's `LastModifiedDate`, as Salesforce wrote it: the commit
    /// writes only while the record still has it.
    pub last_modified: String,
    /// The record's values of the workflow's fields.
    pub current: BTreeMap<String, serde_json::Value>,
    /// Set when the commit found the record changed in Salesforce since:
    /// what it held before, for the reviewer to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<RecordChange>,
}

/// A change made in Salesforce after the proposal (or the last review).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordChange {
    pub previous_last_modified: String,
    pub previous: BTreeMap<String, serde_json::Value>,
}

impl UpdateTarget {
    /// The fields whose value differs between `previous` and `current`.
    pub fn changed_fields(&self) -> Vec<String> {
        let Some(c) = &self.changed else {
            return vec![];
        };
        self.current
            .iter()
            .filter(|(k, v)| c.previous.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub workflow: WorkflowId,
    pub status: Status,
    /// Bumped by every write; every write is conditional on it.
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    pub asset: AssetContext,
    pub intake: Intake,
    /// For an `update` workflow: the record it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateTarget>,
    #[serde(default)]
    pub revisions: Vec<Revision>,
    pub structuring: Option<StructuringInfo>,
    #[serde(default)]
    pub review: ReviewRound,
    /// Open records and pending reports for the same asset (`None`: the
    /// workflow does not look, or the proposal predates the lookup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<DuplicateCheck>,
    pub decision: Option<Decision>,
    #[serde(default)]
    pub commit: CommitProgress,
    /// When the reporter was mailed the outcome (written or rejected):
    /// set once, by the conditional write that records the mail.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub reporter_mailed_at: Option<Timestamp>,
    /// Audit chain head, so the next event can link to it without a read.
    pub event_count: u32,
    pub last_event_hash: String,
    /// DynamoDB TTL (epoch seconds): when the item may be removed.
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("a proposal in status {from} cannot move to {to}")]
    IllegalTransition { from: Status, to: Status },
    /// An intake record no intake writes (see [`Proposal::admitted`]).
    #[error("the intake record of proposal {id} is not a fresh RECEIVED one: {why}")]
    NotAnIntake { id: ProposalId, why: &'static str },
}

/// A proposed write: the new proposal and its audit event, to be stored
/// atomically and only if the stored proposal still has `expected_version`
/// and `expected_status` (version 0: the proposal must not exist yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub expected_version: u64,
    pub expected_status: Option<Status>,
    pub proposal: Proposal,
    pub event: AuditEvent,
}

/// How long a proposal item lives after its last change (the audit trail is
/// kept the same way; long enough for any review plus investigation).
pub const RETENTION_DAYS: i64 = 400;

impl Intake {
    /// The photos with their 1-based number, as the review page, the
    /// commit and the handoff count them.
    pub fn photos(&self) -> impl ExactSizeIterator<Item = (usize, &PhotoRef)> {
        self.photos.iter().enumerate().map(|(i, p)| (i + 1, p))
    }

    /// Photo number `n` (1-based), if there is one.
    pub fn photo(&self, n: usize) -> Option<&PhotoRef> {
        n.checked_sub(1).and_then(|i| self.photos.get(i))
    }
}

/// The Salesforce title of a proposal's photo number `n` (1-based): how a
/// retry finds an upload it did not get to record. The first keeps the
/// title one photo had before there could be several.
pub fn photo_title(id: ProposalId, n: usize) -> String {
    if n <= 1 {
        format!("fieldgate-{id}")
    } else {
        format!("fieldgate-{id}-{n}")
    }
}

impl Proposal {
    /// A new proposal in RECEIVED, with its first audit event.
    pub fn receive(
        id: ProposalId,
        workflow: WorkflowId,
        asset: AssetContext,
        intake: Intake,
        now: Timestamp,
    ) -> Transition {
        let actor = match &intake.assistant {
            Some(a) => Actor::Assistant {
                token: a.token_id.clone(),
                name: a.assistant.clone(),
            },
            None => Actor::Technician {
                reporter: intake.reporter.clone(),
            },
        };
        let proposal = Proposal {
            id,
            workflow,
            status: Status::Received,
            version: 0,
            created_at: now,
            updated_at: now,
            asset,
            intake,
            update: None,
            revisions: vec![],
            structuring: None,
            review: ReviewRound::default(),
            duplicates: None,
            decision: None,
            commit: CommitProgress::default(),
            reporter_mailed_at: None,
            event_count: 0,
            last_event_hash: GENESIS.to_owned(),
            expires_at: 0,
        };
        let mut t = proposal
            .transition(
                Status::Received,
                actor,
                "received",
                serde_json::json!({}),
                now,
                |_| {},
            )
            .expect("a fresh proposal can always be received");
        t.expected_version = 0;
        t.expected_status = None;
        t.event.from = None;
        t.event = t.event.sealed();
        t.proposal.last_event_hash = t.event.hash.clone();
        t
    }

    /// The proposal as an intake may have made it, for the step that takes
    /// it further (structuring). The intake's record is untrusted input: in
    /// AWS the public functions write it, and a compromised one could write
    /// anything. So it must be a fresh RECEIVED proposal (version 1, only
    /// its "received" event), and of what it says only the intake's part is
    /// kept -- workflow, asset, notes, photo, the assistant's proposal, the
    /// update target's snapshot -- while everything a later step sets
    /// (revisions, review links, a decision, commit progress) is reset, so a
    /// review grant or a decision written by the intake never counts.
    /// Returns the admitted proposal and whether anything had to be reset.
    pub fn admitted(&self) -> Result<(Proposal, bool), DomainError> {
        let refuse = |why| DomainError::NotAnIntake { id: self.id, why };
        if self.status != Status::Received {
            return Err(refuse("its status is not RECEIVED"));
        }
        if self.version != 1 || self.event_count != 1 {
            return Err(refuse(
                "it is not as intake stores it (version 1, one event)",
            ));
        }
        let mut p = self.clone();
        p.revisions = vec![];
        p.structuring = None;
        p.review = ReviewRound::default();
        p.duplicates = None;
        p.decision = None;
        p.commit = CommitProgress::default();
        p.reporter_mailed_at = None;
        if let Some(u) = &mut p.update {
            u.changed = None;
        }
        let reset = p != *self;
        Ok((p, reset))
    }

    pub fn current(&self) -> Option<&Revision> {
        self.revisions.last()
    }

    pub fn current_hash(&self) -> Option<&str> {
        self.current().map(|r| r.hash.as_str())
    }

    /// Builds the write that moves this proposal to `to` after `change` is
    /// applied to a copy. The audit event records actor, action, detail and
    /// the revision hash before and after.
    pub fn transition(
        &self,
        to: Status,
        actor: Actor,
        action: &str,
        detail: serde_json::Value,
        now: Timestamp,
        change: impl FnOnce(&mut Proposal),
    ) -> Result<Transition, DomainError> {
        if !self.status.can_move_to(to) {
            return Err(DomainError::IllegalTransition {
                from: self.status,
                to,
            });
        }
        let mut next = self.clone();
        change(&mut next);
        next.status = to;
        next.version = self.version + 1;
        next.updated_at = now;
        next.expires_at = now.unix_timestamp() + RETENTION_DAYS * 86_400;
        let event = AuditEvent {
            proposal: self.id,
            seq: self.event_count + 1,
            at: now,
            actor,
            action: action.to_owned(),
            from: Some(self.status),
            to,
            before: self.current_hash().map(str::to_owned),
            after: next.current_hash().map(str::to_owned),
            detail,
            prev: self.last_event_hash.clone(),
            hash: String::new(),
        }
        .sealed();
        next.event_count = event.seq;
        next.last_event_hash = event.hash.clone();
        Ok(Transition {
            expected_version: self.version,
            expected_status: Some(self.status),
            proposal: next,
            event,
        })
    }

    /// Adds a revision with the given fields (a reviewer's edit or the
    /// structurer's output) and returns its hash.
    pub fn push_revision(&mut self, fields: Fields, author: Actor, at: Timestamp) -> String {
        let number = self.revisions.len() as u32 + 1;
        let rev = Revision::new(number, fields, author, at);
        let hash = rev.hash.clone();
        self.revisions.push(rev);
        hash
    }

    /// The address to tell the outcome to, when that mail is due: the
    /// report is written (COMMITTED) or rejected, the reporter typed an
    /// email address (not just a name; an assistant's proposal has none),
    /// the workflow says to, and it was not sent yet.
    pub fn reporter_mail_due(&self, notify: &NotifyPolicy) -> Option<&str> {
        self.reporter_mail_due_in(self.status, notify)
    }

    /// [`Self::reporter_mail_due`] once in `status` (a step deciding about
    /// the write it is making).
    pub fn reporter_mail_due_in(&self, status: Status, notify: &NotifyPolicy) -> Option<&str> {
        if !notify.reporter || self.reporter_mailed_at.is_some() {
            return None;
        }
        // Only outcomes this version recorded: an item stored before it
        // (no `committed_at`, no `first_mailed_at`) is never mailed, so an
        // upgrade does not mail every old report's reporter at once.
        let recorded = match status {
            Status::Committed => self.commit.committed_at.is_some(),
            Status::Rejected => self.review.first_mailed_at.is_some(),
            _ => false,
        };
        if !recorded {
            return None;
        }
        self.intake
            .reporter
            .as_deref()
            .filter(|r| looks_like_email(r))
    }

    /// Whether `token_hash` is the link that decided this proposal and may
    /// still open what it showed (the photo, the outcome) at `now`: until
    /// the round's links would have expired, and only once no reviewer is
    /// asked again (a new round has new links).
    pub fn decided_by_link(&self, token_hash: &str, now: Timestamp) -> bool {
        use subtle::ConstantTimeEq;
        let Some(d) = &self.decision else {
            return false;
        };
        bool::from(d.token_hash.as_bytes().ct_eq(token_hash.as_bytes()))
            && !self.status.awaits_reviewer()
            && self.review.replaced.iter().any(|h| h == token_hash)
            && self.review.expires_at.is_some_and(|t| now <= t)
    }

    /// The reminder or escalation the sweep should send now, if any: the
    /// round is mailed, undecided and its links live, the nudge's time has
    /// come (`after` from the round's issue, per kind, `None`: never), and
    /// it was not claimed yet -- or was claimed more than `stuck_after` ago
    /// and never recorded as mailed (its driver died: taken over).
    /// Reminder before escalation.
    pub fn nudge_due(
        &self,
        after: impl Fn(NudgeKind) -> Option<time::Duration>,
        link_ttl: time::Duration,
        now: Timestamp,
        stuck_after: time::Duration,
    ) -> Option<NudgeKind> {
        let r = &self.review;
        if !self.status.awaits_reviewer() || !r.mailed || r.expires_at.is_none_or(|e| e <= now) {
            return None;
        }
        let issued = r.issued(link_ttl)?;
        for kind in NudgeKind::ALL {
            let Some(wait) = after(kind) else { continue };
            match r.nudge(kind) {
                Some(n) if n.mailed => continue,
                // Someone claimed it moments ago and is mailing.
                Some(n) if now - n.claimed_at < stuck_after => return None,
                Some(_) => return Some(kind),
                None if now >= issued + wait => return Some(kind),
                None => return None,
            }
        }
        None
    }

    /// Claims a reminder or an escalation: fresh links (`grants`) for its
    /// recipients, added beside the round's others (which keep working
    /// until the round expires). A claim taken over from a dead driver
    /// retires the links that driver issued and never mailed.
    pub fn claim_nudge(
        &self,
        kind: NudgeKind,
        grants: Vec<ReviewGrant>,
        step: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let to: Vec<String> = grants.iter().map(|g| g.reviewer.clone()).collect();
        let detail = serde_json::json!({
            "round": self.review.round,
            "to": to,
            "taken_over": self.review.nudge(kind).is_some(),
        });
        self.transition(
            self.status,
            Actor::system(step),
            &format!("{}_links_issued", kind.as_str()),
            detail,
            now,
            |p| {
                let r = &mut p.review;
                if let Some(old) = r.nudge(kind) {
                    let dead = old.grant_hashes.clone();
                    r.grants.retain(|g| !dead.contains(&g.token_hash));
                    r.replaced.extend(dead);
                }
                r.nudges.retain(|n| n.kind != kind);
                r.nudges.push(Nudge {
                    kind,
                    to,
                    claimed_at: now,
                    grant_hashes: grants.iter().map(|g| g.token_hash.clone()).collect(),
                    mailed: false,
                    mailed_at: None,
                });
                r.grants.extend(grants);
            },
        )
    }

    /// Records a claimed nudge's mail as sent (the audit event says to
    /// whom and why).
    pub fn nudge_mailed(
        &self,
        kind: NudgeKind,
        step: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let n = self.review.nudge(kind);
        let detail = serde_json::json!({
            "round": self.review.round,
            "to": n.map(|n| n.to.clone()).unwrap_or_default(),
            "waiting_since": self.review.issued_at.map(|t| t.unix_timestamp()),
        });
        let action = match kind {
            NudgeKind::Reminder => "reminder_sent",
            NudgeKind::Escalation => "escalated",
        };
        self.transition(self.status, Actor::system(step), action, detail, now, |p| {
            if let Some(n) = p.review.nudges.iter_mut().find(|n| n.kind == kind) {
                n.mailed = true;
                n.mailed_at = Some(now);
            }
        })
    }

    /// Reminder sent, escalated, expired: in the order they happened.
    pub fn review_milestones(&self) -> Vec<ReviewMilestone> {
        let mut out: Vec<ReviewMilestone> = self
            .review
            .nudges
            .iter()
            .filter(|n| n.mailed)
            .map(|n| {
                let at = n.mailed_at.unwrap_or(n.claimed_at);
                match n.kind {
                    NudgeKind::Reminder => ReviewMilestone::Reminded(at),
                    NudgeKind::Escalation => ReviewMilestone::Escalated(at),
                }
            })
            .collect();
        if self.status == Status::Expired
            && let Some(e) = self.review.expires_at
        {
            out.push(ReviewMilestone::Expired(e));
        }
        out
    }

    /// The marker the comment of an "add to this open Case" carries: found
    /// by it on a retry, so the comment is made once.
    pub fn comment_marker(&self) -> String {
        format!("[fieldgate {}]", self.id)
    }

    /// The grant whose hash matches, in constant time per comparison.
    pub fn grant_for(&self, token_hash: &str) -> Option<&ReviewGrant> {
        use subtle::ConstantTimeEq;
        self.review
            .grants
            .iter()
            .find(|g| bool::from(g.token_hash.as_bytes().ct_eq(token_hash.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{SeededRng, at};
    use crate::{FieldValue, verify_chain};

    fn sample(now: Timestamp) -> Transition {
        crate::fixtures::received(ProposalId::generate(now, &mut SeededRng(7)), now)
    }

    #[test]
    fn transitions_chain_their_events() {
        let now = at(0);
        let t0 = sample(now);
        assert_eq!(t0.expected_version, 0);
        assert_eq!(t0.proposal.version, 1);
        let mut f = Fields::new();
        f.insert(
            "Subject".into(),
            FieldValue {
                value: "Leak".into(),
                ..Default::default()
            },
        );
        let t1 = t0
            .proposal
            .transition(
                Status::PendingReview,
                Actor::system("structure"),
                "structured",
                serde_json::json!({}),
                now,
                |p| {
                    p.push_revision(f, Actor::system("structure"), now);
                },
            )
            .unwrap();
        assert_eq!(t1.expected_version, 1);
        assert_eq!(t1.proposal.version, 2);
        assert!(t1.event.before.is_none() && t1.event.after.is_some());
        verify_chain(&[t0.event.clone(), t1.event.clone()]).unwrap();

        let mut tampered = t1.event.clone();
        tampered.actor = Actor::Reviewer {
            email: "x@y".into(),
        };
        assert!(verify_chain(&[t0.event.clone(), tampered]).is_err());
        assert!(verify_chain(std::slice::from_ref(&t1.event)).is_err());
    }

    /// A proposal waiting for review since `at(0)`, links for 72 h.
    fn waiting() -> Proposal {
        let mut p = sample(at(0)).proposal;
        p.status = Status::PendingReview;
        p.review = ReviewRound {
            round: 1,
            grants: vec![ReviewGrant {
                reviewer: "desk@example.com".into(),
                token_hash: "h1".into(),
            }],
            mailed: true,
            expires_at: Some(at(72 * 3600)),
            issued_at: Some(at(0)),
            ..ReviewRound::default()
        };
        p
    }

    fn policy(k: NudgeKind) -> Option<time::Duration> {
        Some(match k {
            NudgeKind::Reminder => time::Duration::hours(24),
            NudgeKind::Escalation => time::Duration::hours(48),
        })
    }

    const TTL: time::Duration = time::Duration::hours(72);
    const STUCK: time::Duration = time::Duration::minutes(5);

    fn grant(who: &str, hash: &str) -> ReviewGrant {
        ReviewGrant {
            reviewer: who.into(),
            token_hash: hash.into(),
        }
    }

    #[test]
    fn a_reminder_then_an_escalation_fall_due_once_each() {
        let h = |n: i64| at(n * 3600);
        let p = waiting();
        assert_eq!(p.nudge_due(policy, TTL, h(23), STUCK), None);
        assert_eq!(
            p.nudge_due(policy, TTL, h(24), STUCK),
            Some(NudgeKind::Reminder)
        );
        let t = p
            .claim_nudge(
                NudgeKind::Reminder,
                vec![grant("desk@example.com", "r1")],
                "sweep",
                h(24),
            )
            .unwrap();
        assert_eq!(t.event.action, "reminder_links_issued");
        let claimed = t.proposal;
        // Claimed, not mailed yet: nobody else sends it (nor the escalation).
        assert_eq!(claimed.nudge_due(policy, TTL, h(24), STUCK), None);
        assert_eq!(
            claimed.review.grants.len(),
            2,
            "the first link keeps working"
        );
        let mailed = claimed
            .nudge_mailed(NudgeKind::Reminder, "sweep", h(24))
            .unwrap();
        assert_eq!(mailed.event.action, "reminder_sent");
        let m = mailed.proposal;
        assert_eq!(m.nudge_due(policy, TTL, h(47), STUCK), None);
        assert_eq!(
            m.nudge_due(policy, TTL, h(48), STUCK),
            Some(NudgeKind::Escalation)
        );
        let e = m
            .claim_nudge(
                NudgeKind::Escalation,
                vec![grant("lead@example.com", "e1")],
                "sweep",
                h(48),
            )
            .unwrap()
            .proposal
            .nudge_mailed(NudgeKind::Escalation, "sweep", h(48))
            .unwrap()
            .proposal;
        assert_eq!(e.nudge_due(policy, TTL, h(71), STUCK), None);
        assert!(e.grant_for("h1").is_some() && e.grant_for("e1").is_some());
        assert_eq!(
            e.review_milestones(),
            vec![
                ReviewMilestone::Reminded(h(24)),
                ReviewMilestone::Escalated(h(48))
            ]
        );
        // Nothing once the links have expired, or without a policy.
        assert_eq!(waiting().nudge_due(policy, TTL, h(72), STUCK), None);
        assert_eq!(waiting().nudge_due(|_| None, TTL, h(50), STUCK), None);
        // A sweep that comes late sends the reminder first.
        assert_eq!(
            waiting().nudge_due(policy, TTL, h(60), STUCK),
            Some(NudgeKind::Reminder)
        );
    }

    #[test]
    fn a_claim_never_mailed_is_taken_over_and_its_links_replaced() {
        let h = |n: i64| at(n * 3600);
        let claimed = waiting()
            .claim_nudge(
                NudgeKind::Reminder,
                vec![grant("desk@example.com", "r1")],
                "sweep",
                h(24),
            )
            .unwrap()
            .proposal;
        let later = h(24) + STUCK;
        assert_eq!(
            claimed.nudge_due(policy, TTL, later, STUCK),
            Some(NudgeKind::Reminder)
        );
        let t = claimed
            .claim_nudge(
                NudgeKind::Reminder,
                vec![grant("desk@example.com", "r2")],
                "sweep",
                later,
            )
            .unwrap();
        assert_eq!(t.event.detail["taken_over"], true);
        let p = t.proposal;
        assert!(p.grant_for("r1").is_none() && p.review.replaced.contains(&"r1".to_string()));
        assert!(p.grant_for("r2").is_some() && p.grant_for("h1").is_some());
        assert_eq!(p.review.nudges.len(), 1);
    }

    #[test]
    fn old_rounds_load_and_count_from_their_expiry() {
        let mut p = waiting();
        p.review.issued_at = None;
        let json = serde_json::to_value(&p).unwrap();
        let mut v = json.clone();
        v["review"].as_object_mut().unwrap().remove("issued_at");
        v["review"].as_object_mut().unwrap().remove("nudges");
        let back: Proposal = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
        assert_eq!(
            back.nudge_due(policy, TTL, at(24 * 3600), STUCK),
            Some(NudgeKind::Reminder)
        );
    }

    #[test]
    fn stored_proposals_with_one_photo_read_as_a_list() {
        let mut v = serde_json::to_value(sample(at(0)).proposal).unwrap();
        let photo = serde_json::json!({"key": "photos/x.jpg", "content_type": "image/jpeg",
            "bytes": 3, "sha256": "ab", "file_name": "x.jpg"});
        let intake = v["intake"].as_object_mut().unwrap();
        intake.remove("photos");
        intake.insert("photo".into(), photo.clone());
        let commit = v["commit"].as_object_mut().unwrap();
        commit.remove("photo_version_ids");
        commit.insert("photo_version_id".into(), "068000000000001AAA".into());
        let p: Proposal = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(p.intake.photos.len(), 1);
        assert_eq!(p.intake.photo(1).unwrap().key, "photos/x.jpg");
        assert!(p.intake.photo(0).is_none() && p.intake.photo(2).is_none());
        assert_eq!(p.commit.photo_version_ids, vec!["068000000000001AAA"]);
        // `null` (no photo) reads as none; a list round-trips as itself.
        v["intake"]["photo"] = serde_json::Value::Null;
        v["commit"]["photo_version_id"] = serde_json::Value::Null;
        let p: Proposal = serde_json::from_value(v).unwrap();
        assert!(p.intake.photos.is_empty() && p.commit.photo_version_ids.is_empty());
        let mut two = p.clone();
        let one: PhotoRef = serde_json::from_value(photo).unwrap();
        two.intake.photos = vec![one.clone(), one];
        let text = serde_json::to_string(&two).unwrap();
        assert!(text.contains("\"photos\":[") && !text.contains("\"photo\":"));
        assert_eq!(serde_json::from_str::<Proposal>(&text).unwrap(), two);
        assert_eq!(
            two.intake.photos().map(|(n, _)| n).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(photo_title(two.id, 1), format!("fieldgate-{}", two.id));
        assert_eq!(photo_title(two.id, 2), format!("fieldgate-{}-2", two.id));
    }

    #[test]
    fn the_reporter_is_mailed_once_and_only_for_outcomes_this_version_recorded() {
        let mut p = sample(at(0)).proposal;
        p.intake.reporter = Some("tech@example.com".into());
        let notify = NotifyPolicy::default();
        p.status = Status::Committed;
        assert_eq!(p.reporter_mail_due(&notify), None, "an old item: no mail");
        p.commit.committed_at = Some(at(1));
        assert_eq!(p.reporter_mail_due(&notify), Some("tech@example.com"));
        p.reporter_mailed_at = Some(at(2));
        assert_eq!(p.reporter_mail_due(&notify), None, "once");
        p.reporter_mailed_at = None;
        p.intake.reporter = Some("Sam".into());
        assert_eq!(p.reporter_mail_due(&notify), None, "a name is no address");
        p.intake.reporter = Some("tech@example.com".into());
        p.status = Status::Rejected;
        assert_eq!(p.reporter_mail_due(&notify), None);
        p.review.first_mailed_at = Some(at(1));
        assert_eq!(p.reporter_mail_due(&notify), Some("tech@example.com"));
        let off = NotifyPolicy {
            reporter: false,
            ..notify
        };
        assert_eq!(p.reporter_mail_due(&off), None);
        p.status = Status::Expired;
        assert_eq!(p.reporter_mail_due(&NotifyPolicy::default()), None);
    }

    #[test]
    fn illegal_moves_are_refused() {
        let now = at(0);
        let p = sample(now).proposal;
        let err = p
            .transition(
                Status::Approved,
                Actor::system("x"),
                "x",
                serde_json::json!({}),
                now,
                |_| {},
            )
            .unwrap_err();
        assert_eq!(
            err,
            DomainError::IllegalTransition {
                from: Status::Received,
                to: Status::Approved
            }
        );
    }
}
