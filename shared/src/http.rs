//! Request parsing shared by the HTTP handlers. Every failure here is the
//! caller's mistake and maps to a clear 4xx.

use crate::error::{AppError, UserError};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;

/// Largest request body a function reads: API Gateway's payload cap.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// One path parameter. A segment that is not UTF-8 once percent-decoded
/// is an unknown link (404 page), not axum's plain-text 400.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(s)| Segment(s))
            .map_err(|_| UserError::NotFound.into())
    }
}

/// The whole body, up to the router's `DefaultBodyLimit`. A body that
/// cannot be read (in practice: too large) is the 413 page, not axum's
/// plain-text rejection.
pub struct BodyBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BodyBytes {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        Bytes::from_request(req, state)
            .await
            .map(BodyBytes)
            .map_err(|_| too_large(MAX_BODY).into())
    }
}

/// `application/x-www-form-urlencoded`, strictly UTF-8.
pub fn urlencoded(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, UserError> {
    let ct = header(headers, "content-type").unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(UserError::UnsupportedMedia(
            "send the form as application/x-www-form-urlencoded".into(),
        ));
    }
    std::str::from_utf8(body)
        .map_err(|_| UserError::BadRequest("the form is not valid UTF-8".into()))?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| UserError::BadRequest("the form could not be read".into()))?;
    // Percent-decoding can produce invalid UTF-8; serde_urlencoded replaces
    // it, which we refuse rather than store mangled text.
    if pairs
        .iter()
        .any(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
    {
        return Err(UserError::BadRequest("the form is not valid UTF-8".into()));
    }
    Ok(pairs)
}

pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// `multipart/form-data` with a cap on the whole body and on each part.
pub async fn multipart(
    headers: &HeaderMap,
    body: Bytes,
    max_body: usize,
    max_part: usize,
) -> Result<Vec<Part>, UserError> {
    let ct = header(headers, "content-type").unwrap_or("");
    let boundary = multer::parse_boundary(ct).map_err(|_| {
        UserError::UnsupportedMedia("send the report as multipart/form-data".into())
    })?;
    if body.len() > max_body {
        return Err(too_large(max_body));
    }
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max_body as u64)
            .per_field(max_part as u64),
    );
    let mut mp = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut parts = Vec::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, max_body)),
        };
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(|m| m.essence_str().to_owned());
        let data = field
            .bytes()
            .await
            .map_err(|e| multipart_error(e, max_body))?;
        parts.push(Part {
            name,
            file_name,
            content_type,
            data,
        });
        if parts.len() > 20 {
            return Err(UserError::BadRequest("too many form parts".into()));
        }
    }
    Ok(parts)
}

fn too_large(max: usize) -> UserError {
    UserError::PayloadTooLarge(format!(
        "The report is larger than {} MB. Send a smaller photo.",
        max / (1024 * 1024)
    ))
}

fn multipart_error(e: multer::Error, max_body: usize) -> UserError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            too_large(max_body)
        }
        _ => UserError::BadRequest("the form data is broken; please send it again".into()),
    }
}
