//! The domain: pure types and rules, no I/O.

pub mod audit;
pub mod ids;
pub mod proposal;
pub mod revision;
pub mod status;
pub mod tokens;
pub mod workflow;

pub use audit::{Actor, AuditEvent, ChainError, verify_chain};
pub use ids::{AssetId, IdError, ProposalId, WorkflowId};
pub use proposal::{
    AssetContext, CommitProgress, Decision, DecisionKind, DomainError, Intake, PhotoRef, Proposal,
    ReviewGrant, ReviewRound, SalesforceProblem, StructuringInfo, Transition,
};
pub use revision::{FieldValue, Fields, Revision};
pub use status::Status;
pub use tokens::{CsrfKey, QrKeyring, ReviewToken, TokenError};
pub use workflow::{
    AssetBinding, FieldKind, FieldSpec, Operation, PhotoPolicy, StructurerKind, Workflow,
    WorkflowError, Workflows,
};

/// Seconds since the Unix epoch; the one clock type the domain uses.
pub type Timestamp = time::OffsetDateTime;

/// Current time, truncated to milliseconds so that values survive a round
/// trip through JSON/DynamoDB unchanged (hashes are computed over them).
pub fn now() -> Timestamp {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond((t.nanosecond() / 1_000_000) * 1_000_000)
        .unwrap_or(t)
}
