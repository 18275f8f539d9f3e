//! A REST request as the dispatcher sees it: version, path segments, query
//! parameters, batch size and body (JSON, multipart or already parsed).

use axum::body::Body as AxumBody;
use axum::http::{HeaderMap, Method, header};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::errors::ApiError;

/// Largest request body accepted (JSON uploads carry base64 files).
const MAX_BODY: usize = 64 * 1024 * 1024;
const DEFAULT_BATCH: usize = 2_000;

/// A request body as the dispatcher sees it.
pub(crate) enum ReqBody {
    None,
    /// Raw JSON text from the wire, parsed only by handlers that need it.
    Raw(Bytes),
    /// Already-parsed JSON (composite subrequests).
    Json(Value),
    Multipart {
        entity: Option<Value>,
        data: Option<Vec<u8>>,
    },
    Invalid(ApiError),
}

impl ReqBody {
    pub(super) fn json(&self) -> Result<Value, ApiError> {
        match self {
            ReqBody::None => Err(ApiError::json_parser(
                "No content to map due to end-of-input",
            )),
            ReqBody::Raw(b) if b.iter().all(u8::is_ascii_whitespace) => Err(ApiError::json_parser(
                "No content to map due to end-of-input",
            )),
            ReqBody::Raw(b) => {
                serde_json::from_slice(b).map_err(|e| ApiError::json_parser(e.to_string()))
            }
            ReqBody::Json(v) => Ok(v.clone()),
            ReqBody::Multipart { entity, .. } => entity.clone().ok_or_else(|| {
                ApiError::json_parser("Multipart message must include a non-binary part")
            }),
            ReqBody::Invalid(e) => Err(e.clone()),
        }
    }

    pub(super) fn object(&self, sobject: &str) -> Result<Map<String, Value>, ApiError> {
        match self.json()? {
            Value::Object(m) => Ok(m),
            other => Err(ApiError::json_parser(format!(
                "Cannot deserialize instance of {sobject} from {} value",
                match other {
                    Value::Array(_) => "START_ARRAY",
                    _ => "VALUE",
                }
            ))),
        }
    }
}

pub(crate) struct RestReq {
    pub method: Method,
    pub version: String,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub batch_size: usize,
    pub body: ReqBody,
    /// Composite may not nest.
    pub in_composite: bool,
    /// `If-Unmodified-Since` as sent (contract: conditional update).
    pub if_unmodified_since: Option<String>,
}

impl RestReq {
    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `vNN.N/seg/...` into the version and decoded segments.
pub(super) fn split_path(rest: &str) -> Option<(String, Vec<String>)> {
    let mut parts = rest.split('/');
    let version = parts.next()?.strip_prefix('v')?.to_string();
    let segments: Vec<String> = parts
        .filter(|p| !p.is_empty())
        .map(percent_decode)
        .collect();
    Some((version, segments))
}

pub(super) fn if_unmodified_since(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_UNMODIFIED_SINCE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

pub(super) fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        })
        .map_or(DEFAULT_BATCH, |n| n.clamp(1, DEFAULT_BATCH))
}

pub(super) async fn read_body(headers: &HeaderMap, body: AxumBody) -> ReqBody {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ReqBody::Invalid(ApiError::new(
            413,
            "REQUEST_ENTITY_TOO_LARGE",
            format!("Request body exceeds {MAX_BODY} bytes"),
        ));
    };
    if bytes.is_empty() {
        return ReqBody::None;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return ReqBody::Raw(bytes);
    }
    match parse_multipart(content_type, bytes).await {
        Ok(b) => b,
        Err(e) => ReqBody::Invalid(e),
    }
}

async fn parse_multipart(content_type: &str, bytes: Bytes) -> Result<ReqBody, ApiError> {
    let bad = |m: String| ApiError::new(400, "INVALID_MULTIPART_REQUEST", m);
    let boundary = multer::parse_boundary(content_type).map_err(|e| bad(e.to_string()))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut entity = None;
    let mut data = None;
    while let Some(field) = mp.next_field().await.map_err(|e| bad(e.to_string()))? {
        let name = field.name().unwrap_or_default().to_string();
        let content = field.bytes().await.map_err(|e| bad(e.to_string()))?;
        if name.starts_with("entity_") {
            entity = Some(
                serde_json::from_slice(&content)
                    .map_err(|e| ApiError::json_parser(e.to_string()))?,
            );
        } else if name == "VersionData" {
            data = Some(content.to_vec());
        }
    }
    Ok(ReqBody::Multipart { entity, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_segments() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        let (v, s) = split_path("v66.0/sobjects/Case/").unwrap();
        assert_eq!(v, "66.0");
        assert_eq!(s, vec!["sobjects", "Case"]);
    }
}
