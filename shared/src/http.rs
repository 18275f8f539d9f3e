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

/// The client's address, as the server in front decided it: the socket's
/// peer, API Gateway's `requestContext.http.sourceIp`, or — only behind a
/// proxy the operator trusts — the last `X-Forwarded-For` hop. Set by the
/// entry point (a request extension), read by per-client limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub std::net::IpAddr);

impl ClientIp {
    /// The key a per-client limit counts under. An IPv6 client is counted
    /// by its /64: one subscriber gets a whole /64, so its addresses would
    /// otherwise be endless fresh budgets.
    pub fn limit_key(&self) -> String {
        match self.0 {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = a.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        }
    }

    /// From a socket server: the peer, or with `trust_proxy` the last
    /// `X-Forwarded-For` entry (the one our proxy appended; earlier entries
    /// are whatever the client sent and prove nothing).
    pub fn from_socket(peer: std::net::IpAddr, headers: &HeaderMap, trust_proxy: bool) -> ClientIp {
        if trust_proxy
            && let Some(last) = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .rfind(|v| !v.is_empty())
            && let Ok(ip) = last.parse()
        {
            return ClientIp(ip);
        }
        ClientIp(peer)
    }
}

/// Middleware for a server on a socket (`fieldgate dev`/`serve`, served
/// with `into_make_service_with_connect_info::<SocketAddr>()`): sets
/// [`ClientIp`]. The state says whether a reverse proxy is trusted.
pub async fn client_ip_from_socket(
    axum::extract::State(trust_proxy): axum::extract::State<bool>,
    mut req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(peer) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let ip = ClientIp::from_socket(peer, req.headers(), trust_proxy);
        req.extensions_mut().insert(ip);
    }
    next.run(req).await
}

/// Middleware for routes only this machine may use (`fieldgate dev`'s
/// `/dev/*` pages and its emulated org): a request from elsewhere gets the
/// plain 404 page, as if they did not exist. "This machine" is the socket
/// peer — never a forwarded header — being loopback or the server's own
/// address (the state). A request without a peer address is refused.
pub async fn this_machine_only(
    axum::extract::State(own): axum::extract::State<Option<std::net::IpAddr>>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let local = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .is_some_and(|peer| {
            let peer = match peer {
                std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, std::net::IpAddr::V4),
                v4 => v4,
            };
            peer.is_loopback() || Some(peer) == own
        });
    if local {
        next.run(req).await
    } else {
        crate::web::user_error(&UserError::NotFound)
    }
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

/// One part of a `multipart/form-data` body (the `multipart` feature).
#[cfg(feature = "multipart")]
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// `multipart/form-data` with a cap on the whole body and on each part.
#[cfg(feature = "multipart")]
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

#[cfg(feature = "multipart")]
fn multipart_error(e: multer::Error, max_body: usize) -> UserError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            too_large(max_body)
        }
        _ => UserError::BadRequest("the form data is broken; please send it again".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BOUNDARY: &str = "----fieldgate-prop";

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(ct) {
            h.insert("content-type", v);
        }
        h
    }

    fn valid_body() -> String {
        let b = BOUNDARY;
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\nPump leaking\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"idem\"\r\n\r\nabcdefghijklmnop\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nJPEG-BYTES\r\n\
             --{b}--\r\n"
        )
    }

    fn parse(ct: &str, body: Vec<u8>) -> Result<Vec<Part>, UserError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(multipart(
                &headers(ct),
                Bytes::from(body),
                64 * 1024,
                16 * 1024,
            ))
    }

    /// A refusal the form's page can explain.
    fn refused_well(r: Result<Vec<Part>, UserError>) -> Result<(), TestCaseError> {
        if let Err(e) = r {
            prop_assert!(matches!(e.status(), 400 | 413 | 415), "{:?}", e);
        }
        Ok(())
    }

    #[test]
    fn the_valid_body_parses() {
        let parts = parse(
            &format!("multipart/form-data; boundary={BOUNDARY}"),
            valid_body().into_bytes(),
        )
        .unwrap();
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["notes", "idem", "photo"]);
        assert_eq!(parts[2].file_name.as_deref(), Some("a.jpg"));
    }

    mod properties {
        use super::*;

        proptest! {
            #![proptest_config(crate::proptest_config())]

            #[test]
            fn any_body_is_parts_or_a_typed_refusal(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
                refused_well(parse(&format!("multipart/form-data; boundary={BOUNDARY}"), body))?;
            }

            #[test]
            fn an_edited_body_is_parts_or_a_typed_refusal(
                edits in proptest::collection::vec(crate::proptest_edit(), 1..6),
            ) {
                let body = crate::domain::fixtures::mutate(&valid_body(), &edits);
                refused_well(parse(&format!("multipart/form-data; boundary={BOUNDARY}"), body.into_bytes()))?;
            }

            #[test]
            fn any_content_type_is_read_or_refused(ct in any::<String>()) {
                refused_well(parse(&ct, valid_body().into_bytes()))?;
            }
        }
    }
}
