//! The token endpoint (client credentials and JWT bearer grants) and the
//! bearer check every REST call passes.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use serde_json::json;

use super::{pause, to_response};
use crate::errors::Resp;
use crate::{Emulator, Inner};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn oauth_error(error: &str, description: &str) -> Resp {
    Resp::json(
        400,
        json!({"error": error, "error_description": description}),
    )
}

pub(super) async fn token(State(em): State<Emulator>, req: Request) -> Response {
    let inner = em.inner();
    let used = inner.count_call();
    pause(inner).await;
    let limit = Some((used, inner.config.api_budget));
    if let Some(e) = inner.faults.outage() {
        return to_response(e.into(), limit);
    }
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST {
        return to_response(oauth_error("invalid_request", "must use HTTP POST"), limit);
    }
    let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024).await else {
        return to_response(
            oauth_error("invalid_request", "request body too large"),
            limit,
        );
    };
    let mut form: HashMap<String, String> = HashMap::new();
    let query = parts.uri.query().unwrap_or_default();
    for source in [query.as_bytes(), &bytes[..]] {
        if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(source) {
            form.extend(pairs);
        }
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let instance_url = inner.config.instance_url.clone().unwrap_or_else(|| {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    });
    let grant = field("grant_type").to_owned();
    match grant.as_str() {
        "client_credentials" => {
            // client_secret_basic (RFC 6749 2.3.1) as well as form fields.
            let basic = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| STANDARD.decode(b.trim()).ok())
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((id, secret)) = basic.as_deref().and_then(|b| b.split_once(':')) {
                form.entry("client_id".into())
                    .or_insert_with(|| id.to_owned());
                form.entry("client_secret".into())
                    .or_insert_with(|| secret.to_owned());
            }
            let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
            if field("client_id") != inner.config.client_id {
                return to_response(
                    oauth_error("invalid_client_id", "client identifier invalid"),
                    limit,
                );
            }
            if field("client_secret") != inner.config.client_secret {
                return to_response(
                    oauth_error("invalid_client", "invalid client credentials"),
                    limit,
                );
            }
        }
        JWT_BEARER => {
            let Some(trust) = &inner.config.jwt else {
                return to_response(
                    oauth_error("invalid_grant", "user hasn't approved this consumer"),
                    limit,
                );
            };
            if field("assertion").is_empty() {
                return to_response(oauth_error("invalid_request", "assertion missing"), limit);
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if let Err((error, description)) = crate::jwt::check(
                field("assertion"),
                trust,
                &inner.config.client_id,
                &instance_url,
                now,
            ) {
                return to_response(oauth_error(error, description), limit);
            }
        }
        _ => {
            return to_response(
                oauth_error("unsupported_grant_type", "grant type not supported"),
                limit,
            );
        }
    }
    let mut rng = rand::rng();
    let mut secret = [0u8; 32];
    rng.fill(&mut secret);
    let mut sig = [0u8; 32];
    rng.fill(&mut sig);
    // Real tokens start with the 15-char org id and '!'.
    let access_token = format!("{}!{}", &inner.org_id[..15], URL_SAFE_NO_PAD.encode(secret));
    inner
        .tokens()
        .insert(access_token.clone(), inner.faults.token_epoch());
    let issued_at = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut body = json!({
        "access_token": access_token,
        "signature": STANDARD.encode(sig),
        "instance_url": instance_url,
        "id": format!("{instance_url}/id/{}/{}", inner.org_id, inner.user_id),
        "token_type": "Bearer",
        "issued_at": issued_at.to_string(),
    });
    // The two grants answer slightly different shapes (contract: Auth).
    if grant == JWT_BEARER {
        body["scope"] = json!("api");
    } else {
        body["token_format"] = json!("opaque");
    }
    let mut resp = to_response(Resp::json(200, body), limit);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache,must-revalidate,max-age=0,no-store,private"),
    );
    resp
}

pub(super) fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // Salesforce accepts the legacy "OAuth" scheme too.
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("OAuth "))
        .map(str::trim);
    let Some(token) = token else { return false };
    inner
        .tokens()
        .get(token)
        .is_some_and(|epoch| *epoch == inner.faults.token_epoch())
}
