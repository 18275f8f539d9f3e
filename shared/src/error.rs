//! The split every handler makes: the user's mistake (a clear 4xx, nothing
//! stored) or our failure (a 5xx, logged, retried where it can be).

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
    #[error("too many reports from this code; try again in a few minutes")]
    TooManyRequests,
    #[error("method not allowed")]
    MethodNotAllowed,
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
            UserError::TooManyRequests => 429,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("media: {0}")]
    Media(#[from] MediaError),
    #[error("asset directory: {0}")]
    Directory(#[from] DirectoryError),
    #[error("notifier: {0}")]
    Notify(#[from] NotifyError),
    #[error("handoff: {0}")]
    Publish(#[from] PublishError),
    #[error("{0}")]
    Internal(String),
}
