//! The split every handler makes: the user's mistake (a clear 4xx, nothing
//! stored) or our failure (a 5xx, logged, retried where it can be).

use crate::domain::{DomainError, ProposalId, WorkflowId};
use crate::ports::{DirectoryError, MediaError, NotifyError, PublishError, StoreError};

/// Something the person in front of the page can fix or must be told.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UserError {
    #[error("{0}")]
    BadRequest(String),
    /// Unknown, forged or revoked QR code, unknown link: reveals nothing.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Forbidden(String),
    /// A rate limit: who is limited, and when to try again (the page says
    /// it, `Retry-After` carries it).
    #[error("{}", too_many_text(*.scope, *.retry_after_secs))]
    TooManyRequests {
        scope: RateScope,
        retry_after_secs: u64,
    },
    #[error("method not allowed")]
    MethodNotAllowed,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// Reports for one QR code (one asset and workflow).
    Code,
    /// Reports from one client address.
    Client,
    /// Every report this server takes.
    Everyone,
    /// Sticker codes typed at `/k` from one client address.
    Lookups,
}

fn too_many_text(scope: RateScope, secs: u64) -> String {
    let when = if secs < 90 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes", secs.div_ceil(60))
    };
    match scope {
        RateScope::Code => format!(
            "This code has received many reports in the last few minutes. Nothing was saved; try again in {when}."
        ),
        RateScope::Client => format!(
            "Many reports came from your network in the last few minutes. Nothing was saved; try again in {when}."
        ),
        RateScope::Everyone => {
            format!("The service is busy right now. Nothing was saved; try again in {when}.")
        }
        RateScope::Lookups => format!(
            "Many sticker codes were typed from your network in the last few minutes; try again in {when}, or scan the QR code."
        ),
    }
}

impl UserError {
    pub fn status(&self) -> u16 {
        match self {
            UserError::BadRequest(_) => 400,
            UserError::Forbidden(_) => 403,
            UserError::NotFound => 404,
            UserError::MethodNotAllowed => 405,
            UserError::Conflict(_) => 409,
            UserError::Gone(_) => 410,
            UserError::PayloadTooLarge(_) => 413,
            UserError::UnsupportedMedia(_) => 415,
            UserError::Unprocessable(_) => 422,
            UserError::TooManyRequests { .. } => 429,
        }
    }
}

/// Our failure: the user sees a plain 5xx page, the log the whole chain
/// ([`Chain`]). Each variant keeps its cause as `source()`.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error("store")]
    Store(#[from] StoreError),
    #[error("photo storage")]
    Media(#[from] MediaError),
    #[error("asset directory")]
    Directory(#[from] DirectoryError),
    #[error("review mail")]
    Notify(#[from] NotifyError),
    #[error("handoff")]
    Publish(#[from] PublishError),
    /// A transition the state machine refuses: a bug in a step, not input.
    #[error("state machine")]
    Domain(#[from] DomainError),
    /// The proposal names a workflow this deployment does not have.
    #[error("workflow {0} is not configured")]
    UnknownWorkflow(WorkflowId),
    /// The proposal disappeared between two reads.
    #[error("proposal {0} vanished")]
    Vanished(ProposalId),
    #[error("{0}")]
    Internal(&'static str),
}

impl AppError {
    /// A conflict in the store (someone else moved the proposal first).
    pub fn is_conflict(&self) -> bool {
        matches!(self, AppError::Store(StoreError::Conflict))
    }
}

/// Displays an error with every cause after it, `a: b: c`: what a log line
/// for a failure shows. Some errors print their source already (`network:
/// {0}`), so a cause whose text ends the line so far is skipped.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            next = cause.source();
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_shows_every_cause() {
        let io = std::io::Error::other("disk full");
        let e = AppError::from(StoreError::backend("writing store.json", io));
        assert_eq!(
            Chain(&e).to_string(),
            "store: store backend: writing store.json: disk full"
        );
    }

    #[test]
    fn error_chain_skips_causes_already_printed() {
        #[derive(Debug, thiserror::Error)]
        #[error("connection reset")]
        struct Io;
        #[derive(Debug, thiserror::Error)]
        enum Inner {
            #[error("backend: {0}")]
            Backend(#[source] Io),
            #[error("dispatch failure")]
            Dispatch(#[source] Io),
        }
        #[derive(Debug, thiserror::Error)]
        #[error("store: {0}")]
        struct Outer(#[source] Inner);
        let shown = |e: Inner| Chain(&Outer(e)).to_string();
        assert_eq!(
            shown(Inner::Backend(Io)),
            "store: backend: connection reset"
        );
        assert_eq!(
            shown(Inner::Dispatch(Io)),
            "store: dispatch failure: connection reset"
        );
    }
}
