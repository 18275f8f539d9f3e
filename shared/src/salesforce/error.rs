//! What can go wrong in one Salesforce call, and what the commit step
//! makes of it.

use super::config::SfConfigError;
use crate::ports::WriteError;
use reqwest::StatusCode;

/// Failures of one call, before they are mapped to what the caller does.
///
/// Variants with a cause keep it as `source()` and also print it: the
/// commit step stores errors as text ([`WriteError`] holds a string), so
/// the cause must survive `to_string()`.
#[derive(Debug, thiserror::Error)]
pub enum SfError {
    #[error("HTTP {status}: {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        fields: Vec<String>,
    },
    /// The token endpoint refused the grant (its `error: description`).
    #[error("auth: {0}")]
    Auth(String),
    #[error("auth: {0}")]
    Config(#[from] SfConfigError),
    #[error("auth: JWT private key is not an RSA PEM key: {0}")]
    JwtKey(#[source] jsonwebtoken::errors::Error),
    #[error("auth: signing the JWT assertion: {0}")]
    JwtSign(#[source] jsonwebtoken::errors::Error),
    #[error("network: {0}")]
    Network(#[source] reqwest::Error),
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("unexpected answer: token answer: {0}")]
    TokenAnswer(#[source] reqwest::Error),
    #[error("unexpected answer: HTTP {status}: body is not JSON: {source}")]
    NotJson {
        status: StatusCode,
        #[source]
        source: serde_json::Error,
    },
    /// A file's content type that is not a MIME type.
    #[cfg(feature = "salesforce-write")]
    #[error("unexpected answer: {0}")]
    Multipart(#[source] reqwest::Error),
}

impl SfError {
    pub(super) fn is_transient(&self) -> bool {
        match self {
            SfError::Network(_) => true,
            SfError::Api { status, code, .. } => *status >= 500 || code == "UNABLE_TO_LOCK_ROW",
            _ => false,
        }
    }
}

impl From<SfError> for WriteError {
    fn from(e: SfError) -> Self {
        match e {
            SfError::Api { code, message, .. } if code == "REQUEST_LIMIT_EXCEEDED" => {
                WriteError::LimitExceeded(message)
            }
            ref t if t.is_transient() => WriteError::Transient(t.to_string()),
            SfError::Api {
                status: 400 | 300,
                code,
                message,
                fields,
            } => WriteError::Rejected {
                code,
                message,
                fields,
            },
            other => WriteError::Config(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_what_the_commit_does() {
        let api = |status, code: &str| SfError::Api {
            status,
            code: code.into(),
            message: "m".into(),
            fields: vec!["Subject".into()],
        };
        assert!(matches!(
            WriteError::from(api(403, "REQUEST_LIMIT_EXCEEDED")),
            WriteError::LimitExceeded(_)
        ));
        assert!(matches!(
            WriteError::from(api(503, "SERVER_UNAVAILABLE")),
            WriteError::Transient(_)
        ));
        assert!(matches!(
            WriteError::from(api(400, "UNABLE_TO_LOCK_ROW")),
            WriteError::Transient(_)
        ));
        assert!(matches!(
            WriteError::from(api(400, "REQUIRED_FIELD_MISSING")),
            WriteError::Rejected { .. }
        ));
        assert!(matches!(
            WriteError::from(api(404, "NOT_FOUND")),
            WriteError::Config(_)
        ));
        assert!(matches!(
            WriteError::from(SfError::Auth("x".into())),
            WriteError::Config(_)
        ));
    }

    #[test]
    fn a_body_that_is_not_json_keeps_the_parser_error() {
        let source = serde_json::from_slice::<serde_json::Value>(b"<html>").unwrap_err();
        let e = SfError::NotJson {
            status: StatusCode::BAD_GATEWAY,
            source,
        };
        assert!(
            e.to_string()
                .starts_with("unexpected answer: HTTP 502 Bad Gateway: body is not JSON: "),
            "{e}"
        );
        let cause = std::error::Error::source(&e).expect("a source");
        assert!(cause.is::<serde_json::Error>());
        assert!(matches!(WriteError::from(e), WriteError::Config(_)));
    }
}
