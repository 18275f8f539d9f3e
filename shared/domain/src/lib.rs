//! The domain of fieldgate: pure types and rules. It does no I/O and
//! cannot: its `Cargo.toml` has no async runtime, HTTP or AWS crate, and the
//! clock and randomness come in as arguments.

pub mod assistant;
pub mod attention;
pub mod audit;
pub mod form_context;
pub mod ids;
pub mod proposal;
pub mod rate;
pub mod revision;
pub mod status;
pub mod sticker;
pub mod timeline;
pub mod tokens;
pub mod workflow;

pub use assistant::{AssistantLimits, AssistantProposal, AssistantToken, CredentialKind};
pub use attention::{Attention, needs_eyes, quote_at};
pub use audit::{
    Actor, AuditBreak, AuditEvent, AuditHead, BoundRevision, ChainError, ExportLine, export_lines,
    stored_revisions, verify_chain, verify_export, verify_record,
};
pub use ids::{AssetId, IdError, ProposalId, WorkflowId};
pub use proposal::{
    AssetContext, CommitProgress, Decision, DecisionKind, DomainError, DuplicateCheck, Intake,
    Nudge, NudgeKind, OpenRecord, PendingReport, PhotoRef, Proposal, RecordChange, ReviewGrant,
    ReviewMilestone, ReviewRound, SalesforceProblem, StructuringInfo, Transition, UpdateTarget,
    photo_title,
};
pub use rate::{RetryAfter, SlidingLimit, TokenBucket, WindowCount, window_end};
pub use revision::{FieldValue, Fields, Revision};
pub use status::Status;
pub use sticker::{Sticker, StickerRef, StickerRefError};
pub use timeline::{TimelineEntry, timeline};
pub use tokens::{CsrfKey, QrClaims, QrKeyring, ReviewToken, TokenError};
pub use workflow::{
    AssetBinding, DEFAULT_REMIND_AFTER_HOURS, DuplicatePolicy, Escalation, FieldKind, FieldSpec,
    Lookup, NotifyPolicy, Operation, PhotoPolicy, ReviewPolicy, StructurerKind, UpdatePolicy,
    Workflow, WorkflowError, Workflows, looks_like_email, record_number_field,
};

pub mod fixtures;

/// A point in time, in UTC with millisecond precision: the one time type the
/// domain uses. Values come from a [`Clock`], never from the system.
pub type Timestamp = time::OffsetDateTime;

/// Where "now" comes from. The domain never reads the system clock: the
/// adapters pass a real clock, tests pass the time they want.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// Truncates to milliseconds so that values survive a round trip through
/// JSON/DynamoDB unchanged (hashes are computed over them).
pub fn to_millis(t: Timestamp) -> Timestamp {
    t.replace_nanosecond((t.nanosecond() / 1_000_000) * 1_000_000)
        .unwrap_or(t)
}

/// The randomness the domain needs (ids, nonces, keys), passed in.
pub use rand_core::RngCore;
