//! The ports: small traits the handlers run over. Each has an embedded
//! adapter (this crate) and, for AWS, an adapter over the AWS SDK.

use crate::domain::{
    AssetContext, AssetId, AssistantToken, AuditEvent, Proposal, ProposalId, SlidingLimit, Status,
    Sticker, StickerRef, Timestamp, Transition, WindowCount, Workflow, WorkflowId, window_end,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// ---------------------------------------------------------------- store

/// The cause of an adapter's failure, kept for the log line.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The condition failed: someone else changed the proposal first.
    #[error("the proposal changed meanwhile (stale version or status)")]
    Conflict,
    #[error("store backend: {context}")]
    Backend {
        context: String,
        #[source]
        source: BoxError,
    },
}

/// Only `Conflict` equals itself: two backend failures are never "the
/// same" (like NaN), which keeps `assert_eq!(r, Err(Conflict))` usable.
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        matches!((self, other), (StoreError::Conflict, StoreError::Conflict))
    }
}

impl StoreError {
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict)
    }
}

/// What `create` found: a new proposal, or the one an earlier submission
/// with the same idempotency key already made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New,
    Existing(ProposalId),
}

/// What the intake reads before it takes a report (or shows the form),
/// asked of the store at once: DynamoDB answers it with one
/// `BatchGetItem`.
#[derive(Debug, Clone, Default)]
pub struct IntakeReads {
    /// The QR code's revocation record (asset, workflow).
    pub code: Option<(AssetId, WorkflowId)>,
    /// The asset cache entry.
    pub asset: Option<AssetId>,
    /// The idempotency key of the submission.
    pub idempotency_key: Option<String>,
    /// Rate-limit counters: key and window size in seconds.
    pub counters: Vec<(String, i64)>,
}

/// The answers to [`IntakeReads`], each `None` when not asked or absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntakeView {
    pub revocation: Option<CodeRevocation>,
    pub asset: Option<CachedAsset>,
    /// The proposal the idempotency key already made.
    pub existing: Option<ProposalId>,
    /// Per counter asked, in order: its state, `None` if it never counted.
    pub counters: Vec<Option<Counter>>,
}

/// A rate-limit counter as stored: the newest window it counted (its end,
/// Unix seconds), that window's count, and the count of the window before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub ends_at: i64,
    pub count: u64,
    pub previous: u64,
}

impl Counter {
    /// The counts as of `now` in windows of `window_secs`: the stored
    /// window rolled forward (its count becomes the previous one's, or
    /// nothing when it is older still). A stored window ahead of `now` (a
    /// clock behind) is counted in, as `count_in_window` does.
    pub fn at(counter: Option<&Counter>, window_secs: i64, now: Timestamp) -> WindowCount {
        let size = window_secs.max(1);
        let end = window_end(now, size);
        match counter {
            Some(c) if c.ends_at >= end => WindowCount {
                current: c.count,
                previous: c.previous,
            },
            Some(c) if c.ends_at == end - size => WindowCount {
                current: 0,
                previous: c.count,
            },
            _ => WindowCount::default(),
        }
    }
}

/// One rate limit a new report is counted against in the write that
/// stores it ([`ProposalStore::create_counted`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// The counter (`RL#{asset}#{workflow}`, `RLIP#{client}`); the same
    /// counters `count_in_window` keeps.
    pub key: String,
    pub limit: SlidingLimit,
    /// The counter as the caller read it ([`IntakeView::counters`]): a
    /// store that writes conditionally (DynamoDB) makes its write
    /// conditional on it, and reads again only when it was stale.
    pub seen: Option<Counter>,
}

/// What [`ProposalStore::create_counted`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counted {
    /// Stored (counted in every quota), or an earlier submission with the
    /// same idempotency key answers it (counted in none).
    Stored(Created),
    /// Quota `quota` would go over its limit: nothing was stored or
    /// counted. `counts` are the quota's as stored (the refused report not
    /// among them), for `SlidingLimit::retry_after`.
    Limited { quota: usize, counts: WindowCount },
}

#[async_trait]
pub trait ProposalStore: Send + Sync {
    /// Stores a new proposal and its first event; with `idempotency_key`,
    /// a second create with the same key returns the first proposal's id.
    async fn create(
        &self,
        t: &Transition,
        idempotency_key: Option<&str>,
    ) -> Result<Created, StoreError>;
    /// As `create`, counting the report in each of `quotas` at `now`, in
    /// the same atomic write, on the condition that none goes over its
    /// limit (the sliding estimate of `SlidingLimit::check`). Only stored
    /// reports count: a refused one, a resend answered by its idempotency
    /// key or a failed write counts in no quota. With `cache`, the asset
    /// cache entry is written in the same write too (as `cache_asset`, so
    /// the report costs no write of its own for it), and only when the
    /// report is stored.
    async fn create_counted(
        &self,
        t: &Transition,
        idempotency_key: Option<&str>,
        quotas: &[Quota],
        cache: Option<&CachedAsset>,
        now: Timestamp,
    ) -> Result<Counted, StoreError>;
    /// Everything in `reads` at once (DynamoDB: one `BatchGetItem`); this
    /// default asks for each in turn, and reads no counter (the quotas of
    /// `create_counted` then carry none).
    async fn intake_reads(&self, reads: &IntakeReads) -> Result<IntakeView, StoreError> {
        let revocation = match &reads.code {
            Some((asset, workflow)) => self.code_revocation(asset, workflow).await?,
            None => None,
        };
        let asset = match &reads.asset {
            Some(id) => self.cached_asset(id).await?,
            None => None,
        };
        let existing = match &reads.idempotency_key {
            Some(k) => self.idempotent(k).await?,
            None => None,
        };
        Ok(IntakeView {
            revocation,
            asset,
            existing,
            counters: vec![None; reads.counters.len()],
        })
    }
    /// Applies a transition if the stored proposal still has the expected
    /// version and status; writes the proposal and its event atomically.
    async fn apply(&self, t: &Transition) -> Result<(), StoreError>;
    /// Applies transitions made one from the other (each from the one
    /// before's proposal) on the condition of the first's version and
    /// status. A store that can writes them as one (DynamoDB: the last
    /// proposal and every event in one transaction); this default applies
    /// them in order, each conditional, so a crash between leaves a state
    /// the steps resume from.
    async fn apply_all(&self, ts: &[Transition]) -> Result<(), StoreError> {
        for t in ts {
            self.apply(t).await?;
        }
        Ok(())
    }
    async fn get(&self, id: ProposalId) -> Result<Option<Proposal>, StoreError>;
    /// As `get`, for the step that takes RECEIVED proposals on
    /// (structuring): a store that keeps new proposals apart (DynamoDB's
    /// inbox items) looks there first, so a new one costs one read, not two.
    async fn get_new(&self, id: ProposalId) -> Result<Option<Proposal>, StoreError> {
        self.get(id).await
    }
    async fn events(&self, id: ProposalId) -> Result<Vec<AuditEvent>, StoreError>;
    /// Newest first.
    async fn list_by_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Proposal>, StoreError>;
    /// Proposals of `workflow` about `asset` waiting for review
    /// (PENDING_REVIEW), newest first, at most `limit`: what the duplicate
    /// lookup lists beside a new report.
    async fn pending_for_asset(
        &self,
        workflow: &WorkflowId,
        asset: &AssetId,
        limit: usize,
    ) -> Result<Vec<Proposal>, StoreError>;
    async fn cached_asset(&self, id: &AssetId) -> Result<Option<CachedAsset>, StoreError>;
    async fn cache_asset(&self, asset: &CachedAsset) -> Result<(), StoreError>;
    /// Adds one to the counter of `key` in the fixed window `now` falls in
    /// (windows end at multiples of `window_secs`) and returns the new count
    /// with the previous window's, for a sliding estimate.
    async fn count_in_window(
        &self,
        key: &str,
        window_secs: i64,
        now: Timestamp,
    ) -> Result<WindowCount, StoreError>;
    /// The proposal an idempotency key already made, if any (a resend is
    /// answered before it counts against any limit).
    async fn idempotent(&self, key: &str) -> Result<Option<ProposalId>, StoreError>;
    /// Withdraws every QR code of `asset` × `workflow` issued so far: one
    /// atomic step up of the lowest generation still valid, with who did it
    /// and when. Returns the new record; the next code is issued with its
    /// `generation`.
    async fn revoke_code(
        &self,
        asset: &AssetId,
        workflow: &WorkflowId,
        by: &str,
        at: Timestamp,
    ) -> Result<CodeRevocation, StoreError>;
    /// The revocation record of a code, if it was ever revoked. Read on
    /// every scan (one key lookup), so a revocation counts at once.
    async fn code_revocation(
        &self,
        asset: &AssetId,
        workflow: &WorkflowId,
    ) -> Result<Option<CodeRevocation>, StoreError>;
    /// Registers a printed sticker's typed reference (`fieldgate
    /// stickers`). Printing the same sheet again is a no-op; another code
    /// under a reference already taken is a [`StoreError::Conflict`] (a
    /// 40-bit collision: the sheet must not print a reference that opens
    /// another asset's form).
    async fn put_sticker(&self, sticker: &Sticker) -> Result<(), StoreError>;
    /// The sticker a typed reference names (one key lookup, at `/k`).
    async fn sticker(&self, reference: &StickerRef) -> Result<Option<Sticker>, StoreError>;
}

/// The revocation state of one asset × workflow's QR code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRevocation {
    /// Codes of a lower generation are withdrawn (410); new codes are
    /// issued with this one.
    pub generation: u32,
    /// The last revocation: when, and by whom (the CLI's user).
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: Timestamp,
    pub revoked_by: String,
}

impl CodeRevocation {
    /// Whether a code of `generation` is withdrawn.
    pub fn withdraws(&self, generation: u32) -> bool {
        generation < self.generation
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAsset {
    pub asset: AssetContext,
    #[serde(with = "time::serde::rfc3339")]
    pub fetched_at: Timestamp,
}

// ---------------------------------------------------------------- assistants

/// The assistants' bearer tokens (hashes only). Read on every MCP request,
/// so a token made or revoked by the CLI counts at once, in any container.
#[async_trait]
pub trait AssistantTokens: Send + Sync {
    /// Stores a new token record (its hash is unique: 256 random bits).
    async fn put(&self, token: &AssistantToken) -> Result<(), StoreError>;
    async fn by_hash(&self, token_hash: &str) -> Result<Option<AssistantToken>, StoreError>;
    /// Every token, revoked ones included, oldest first.
    async fn list(&self) -> Result<Vec<AssistantToken>, StoreError>;
    /// Marks the token with this id revoked; `None` if there is none.
    async fn revoke(&self, id: &str, at: Timestamp) -> Result<Option<AssistantToken>, StoreError>;
}

// ---------------------------------------------------------------- structurer

#[derive(Debug, Clone)]
pub struct StructuringInput<'a> {
    pub notes: &'a str,
    pub asset: &'a AssetContext,
    /// The report's first photo, only when the workflow lets the
    /// structurer see it.
    pub photo: Option<(&'a [u8], &'a str)>,
}

/// What a structurer proposes, before validation: field → value + quote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proposed {
    pub fields: Map<String, Value>,
    pub evidence: Map<String, Value>,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Time spent waiting for the model, in microseconds (all calls,
    /// retries included).
    pub model_micros: Option<u64>,
    /// The first answer was invalid and a repair round was made.
    pub repaired: bool,
    /// Fields the structurer looked at and could not settle (the notes
    /// point two ways), with why: left empty for the reviewer, without the
    /// field's default, and flagged.
    pub undecided: std::collections::BTreeMap<String, String>,
    /// Fields with a value the structurer asks the reviewer to check, with
    /// why (flagged).
    pub remarks: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StructureError {
    #[error("structurer unavailable: {0}")]
    Unavailable(String),
    #[error("structurer answered unusably: {0}")]
    BadOutput(String),
}

#[async_trait]
pub trait Structurer: Send + Sync {
    fn name(&self) -> &str;
    async fn structure(
        &self,
        workflow: &Workflow,
        input: &StructuringInput<'_>,
    ) -> Result<Proposed, StructureError>;
}

// ---------------------------------------------------------------- review mail

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewMail {
    pub to: String,
    pub subject: String,
    pub review_url: String,
    pub text: String,
    pub html: String,
    /// Stable for every send of the same mail: the SMTP mailer makes it the
    /// `Message-ID`, both mailers send it as `X-Fieldgate-Dedupe`, so a
    /// repeat after a crash between sending and recording is recognisable.
    #[serde(default)]
    pub dedupe_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The deployment has no such adapter: set the variable.
    #[error("no mail configured: set {0}")]
    Unconfigured(&'static str),
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: BoxError,
    },
}

impl NotifyError {
    pub fn failed(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        NotifyError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[async_trait]
pub trait ReviewNotifier: Send + Sync {
    async fn send(&self, mail: &ReviewMail) -> Result<(), NotifyError>;
}

// ---------------------------------------------------------------- record writer

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub id: String,
    pub created: bool,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Salesforce refused the record (validation): a person must look.
    #[error("Salesforce refused: {code}: {message}")]
    Rejected {
        code: String,
        message: String,
        fields: Vec<String>,
    },
    /// The org's API budget is spent: wait, do not burn retries.
    #[error("Salesforce API limit reached: {0}")]
    LimitExceeded(String),
    /// Worth retrying later (5xx, timeouts, row locks, network).
    #[error("Salesforce unavailable: {0}")]
    Transient(String),
    /// Our configuration is wrong (auth, unknown field): an admin must act.
    #[error("Salesforce configuration problem: {0}")]
    Config(String),
}

/// The duplicate lookup's read-only port on Salesforce.
#[async_trait]
pub trait RecordFinder: Send + Sync {
    /// Open Cases (`IsClosed = false`) of `asset` created at or after
    /// `since`, newest first, at most `limit`.
    async fn open_cases(
        &self,
        asset: &AssetId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<crate::domain::OpenRecord>, WriteError>;
}

#[async_trait]
pub trait RecordWriter: Send + Sync {
    /// Create or update by external id; idempotent for the same value.
    async fn upsert(
        &self,
        object: &str,
        ext_field: &str,
        ext_value: &str,
        record: &Map<String, Value>,
    ) -> Result<Upserted, WriteError>;
    async fn create(&self, object: &str, record: &Map<String, Value>)
    -> Result<String, WriteError>;
    /// Changes the record with this id in the given fields only; with
    /// `unmodified_since` (its `LastModifiedDate` as read) only if nobody
    /// changed it after that (contract: `If-Unmodified-Since`, 412).
    async fn update(
        &self,
        object: &str,
        id: &str,
        record: &Map<String, Value>,
        unmodified_since: Option<&str>,
    ) -> Result<Updated, WriteError> {
        let _ = (object, id, record, unmodified_since);
        Err(WriteError::Config(
            "this record writer cannot update records".into(),
        ))
    }
    async fn read(
        &self,
        object: &str,
        id: &str,
        fields: &[String],
    ) -> Result<Map<String, Value>, WriteError>;
    /// Uploads a file linked to the record; returns the ContentVersion id.
    async fn attach(&self, record_id: &str, file: &Attachment<'_>) -> Result<String, WriteError>;
    /// A file with this title already linked to the record (crash recovery).
    async fn find_attachment(
        &self,
        record_id: &str,
        title: &str,
    ) -> Result<Option<String>, WriteError>;
    /// The ids of the `object` records whose `field` equals `value` (a
    /// lookup field's name → id), at most two: more than one is ambiguous.
    async fn find_ids(
        &self,
        object: &str,
        field: &str,
        value: &str,
    ) -> Result<Vec<String>, WriteError> {
        let _ = (object, field, value);
        Err(WriteError::Config(
            "this record writer cannot look records up".into(),
        ))
    }
    /// The CaseComment on `case_id` whose body contains `marker` (crash
    /// recovery: a comment has no external id).
    async fn find_comment(
        &self,
        case_id: &str,
        marker: &str,
    ) -> Result<Option<String>, WriteError> {
        let _ = (case_id, marker);
        Err(WriteError::Config(
            "this record writer cannot look up comments".into(),
        ))
    }
    /// Link for people to open the record.
    fn record_url(&self, object: &str, id: &str) -> String;
}

/// What a conditional update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    Written,
    /// The record was modified after the given time; nothing was written.
    ChangedSince,
}

#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub title: &'a str,
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub data: &'a [u8],
}

// ---------------------------------------------------------------- handoff

/// The JSON Schema of [`HandoffMessage`] (version 1), shipped in the repository
/// for subscribers: `docs/handoff.schema.json`.
pub const HANDOFF_JSON_SCHEMA: &str = include_str!("../../docs/handoff.schema.json");

/// Version 1 of the handoff message (schema: `docs/handoff.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoffMessage {
    pub schema: String,
    pub event: String,
    /// Stable for one commit: subscribers drop repeats by it.
    pub dedupe_key: String,
    pub proposal_id: ProposalId,
    pub workflow: String,
    pub object: String,
    pub salesforce_id: String,
    pub salesforce_url: String,
    pub summary: String,
    pub priority: Option<String>,
    pub asset: AssetContext,
    pub approved_by: Option<String>,
    /// Photos attached to the record (added in v1.1: absent means 0).
    #[serde(default)]
    pub photos: usize,
    #[serde(with = "time::serde::rfc3339")]
    pub committed_at: Timestamp,
}

impl HandoffMessage {
    /// SNS message attributes for subscription filter policies.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("workflow", self.workflow.clone()),
            (
                "priority",
                self.priority.clone().unwrap_or_else(|| "none".into()),
            ),
            ("event", self.event.clone()),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The deployment has no such adapter: set the variable.
    #[error("no handoff configured: set {0}")]
    Unconfigured(&'static str),
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: BoxError,
    },
}

impl PublishError {
    pub fn failed(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        PublishError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[async_trait]
pub trait HandoffPublisher: Send + Sync {
    async fn publish(&self, msg: &HandoffMessage) -> Result<(), PublishError>;
}

// ---------------------------------------------------------------- media

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A key no photo can have (defence against path tricks).
    #[error("bad media key {0:?}")]
    BadKey(String),
    /// An upload that breaks the workflow's photo policy (deleted).
    #[error("upload refused: {0}")]
    Refused(String),
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: BoxError,
    },
}

impl MediaError {
    pub fn failed(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        MediaError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn put(&self, key: &str, data: &[u8], content_type: &str) -> Result<(), MediaError>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MediaError>;
    /// Removes a photo no proposal references (a deduplicated or failed
    /// submission); a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<(), MediaError>;
}

// ---------------------------------------------------------------- assets

#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct DirectoryError {
    pub context: String,
    #[source]
    pub source: BoxError,
}

impl DirectoryError {
    pub fn new(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[async_trait]
pub trait AssetDirectory: Send + Sync {
    /// `None`: no such asset, or no longer in service (the QR code is stale).
    async fn lookup(&self, id: &AssetId) -> Result<Option<AssetContext>, DirectoryError>;

    /// As `lookup`, saying whether Salesforce confirmed the context (within
    /// the cache's freshness) or a cached copy is all there is because
    /// Salesforce could not be reached. Without a cache: always confirmed.
    async fn lookup_checked(
        &self,
        id: &AssetId,
    ) -> Result<Option<(AssetContext, Freshness)>, DirectoryError> {
        Ok(self.lookup(id).await?.map(|a| (a, Freshness::Confirmed)))
    }

    /// Whether lookups read the store's asset cache: a caller that reads
    /// the store anyway then reads the entry with its own reads
    /// ([`ProposalStore::intake_reads`]) and passes it to [`Self::lookup_read`].
    fn reads_cache(&self) -> bool {
        false
    }

    /// As `lookup_checked`, with the cache entry the caller read already
    /// (`None`: there is none), so the lookup does not read it again; and
    /// it writes nothing: a fresh answer from Salesforce comes back as the
    /// entry to cache ([`Looked::refreshed`]), for the caller to store with
    /// a write of its own (the report's) or to drop (the form's).
    async fn lookup_read(
        &self,
        id: &AssetId,
        cached: Option<CachedAsset>,
        now: Timestamp,
    ) -> Result<Option<Looked>, DirectoryError> {
        let _ = cached;
        Ok(self
            .lookup_checked(id)
            .await?
            .map(|(asset, freshness)| Looked {
                asset,
                freshness,
                confirmed_at: now,
                refreshed: None,
            }))
    }
}

/// What [`AssetDirectory::lookup_read`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Looked {
    pub asset: AssetContext,
    pub freshness: Freshness,
    /// When Salesforce said so: now for its answer, the cache entry's
    /// time for a cached copy.
    pub confirmed_at: Timestamp,
    /// Salesforce's answer as a cache entry, not stored yet; `None` when
    /// the context came from the cache.
    pub refreshed: Option<CachedAsset>,
}

/// Whether asset context is Salesforce's current word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Confirmed,
    /// A cached copy, served because Salesforce could not be reached: the
    /// form opens in the field, and says so.
    Unconfirmed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_message_matches_its_published_schema() {
        let schema: Value = serde_json::from_str(HANDOFF_JSON_SCHEMA).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let msg = HandoffMessage {
            schema: "fieldgate.handoff/v1".into(),
            event: "committed".into(),
            dedupe_key: "01JD0000000000000000000000:committed".into(),
            proposal_id: "01JD0000000000000000000000".parse().unwrap(),
            workflow: "field-service-case".into(),
            object: "Case".into(),
            salesforce_id: "500000000000001AAA".into(),
            salesforce_url: "https://example.my.salesforce.com/500000000000001AAA".into(),
            summary: "Leak".into(),
            priority: None,
            asset: AssetContext {
                id: "02i000000000001AAA".parse().unwrap(),
                name: "Chiller".into(),
                serial_number: None,
                account_id: None,
                account_name: None,
                location: None,
            },
            approved_by: Some("lead@example.com".into()),
            photos: 3,
            committed_at: crate::domain::fixtures::at(0),
        };
        let mut v = serde_json::to_value(&msg).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        // The schema is strict enough to catch drift.
        v["surprise"] = Value::Bool(true);
        assert!(!validator.is_valid(&v));
        v.as_object_mut().unwrap().remove("surprise");
        v["proposal_id"] = Value::String("not-a-ulid".into());
        assert!(!validator.is_valid(&v));
        v["proposal_id"] = Value::String("01JD0000000000000000000000".into());
        v["photos"] = Value::from(-1);
        assert!(!validator.is_valid(&v), "a count is never negative");
        // A v1.0 message (before the count) still validates and reads as 0.
        v.as_object_mut().unwrap().remove("photos");
        assert!(validator.is_valid(&v));
        assert_eq!(
            serde_json::from_value::<HandoffMessage>(v).unwrap().photos,
            0
        );
    }
}
