//! OAuth 2.0 client credentials (RFC 6749 §4.4) for assistants that cannot
//! send a static bearer token — Salesforce Agentforce connects to external
//! MCP servers only without authentication or with client credentials.
//!
//! `fieldgate mcp token create --client-credentials` mints a client id (the
//! assistant's id) and a secret (only its SHA-256 is stored). `POST
//! /mcp/oauth/token` exchanges them for an access token that `/mcp`
//! accepts for [`ACCESS_TOKEN_TTL`]: a JWT signed (HS256) with the
//! deployment's link key under its own purpose, so any Lambda container
//! can check it without shared memory; every request still reads the
//! assistant's record, so revoking it ends its access tokens at once.
//! The discovery documents (RFC 8414, RFC 9728) say where all this is.

use crate::McpDeps;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fieldgate::Chain;
use fieldgate::domain::{AssistantToken, CredentialKind, CsrfKey, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// How long an access token is accepted.
pub const ACCESS_TOKEN_TTL: time::Duration = time::Duration::minutes(15);
/// The one scope there is: the assistant's tools.
pub const SCOPE: &str = "mcp";
pub const TOKEN_PATH: &str = "/mcp/oauth/token";
/// Named in the metadata because clients require the field (RFC 8414
/// makes it optional only without code or implicit grants); it refuses.
pub const AUTHORIZE_PATH: &str = "/mcp/oauth/authorize";
const PURPOSE: &str = "mcp-access-token";
const AUDIENCE: &str = "fieldgate-mcp";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The client id (the assistant's id).
    pub sub: String,
    /// The SHA-256 of the client secret: the assistant's record, read on
    /// every request (so a revocation ends the token).
    pub cth: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
}

/// Why an access token is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessTokenError {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token's signature is not valid")]
    BadSignature,
    #[error("the access token has expired; request a new one at the token endpoint")]
    Expired,
}

/// The HS256 secret of access tokens: derived from the link key under
/// its own purpose, so no other signature of this deployment is one.
fn signing_secret(key: &CsrfKey) -> Vec<u8> {
    key.sign_for(PURPOSE, b"access-token signing key")
}

/// A signed access token (a JWT, RFC 9068 `at+jwt`) for this assistant,
/// valid from `now`.
pub fn mint(key: &CsrfKey, who: &AssistantToken, issuer: &str, now: Timestamp) -> String {
    let claims = Claims {
        iss: issuer.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: who.id.clone(),
        cth: who.token_hash.clone(),
        scope: SCOPE.to_owned(),
        iat: now.unix_timestamp(),
        exp: (now + ACCESS_TOKEN_TTL).unix_timestamp(),
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&signing_secret(key)),
    )
    .expect("HS256 over plain claims cannot fail")
}

/// Whether a bearer token has the shape of an access token (a JWT) rather
/// than an assistant's static token.
pub fn looks_like_access_token(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

/// The claims of a token this deployment signed and that has not expired
/// (checked against `now`, not the system clock: no leeway).
pub fn verify(key: &CsrfKey, token: &str, now: Timestamp) -> Result<Claims, AccessTokenError> {
    use jsonwebtoken::errors::ErrorKind;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "aud", "sub"]);
    // Expiry is checked below against the caller's clock (tests move it).
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(&signing_secret(key)),
        &v,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => AccessTokenError::BadSignature,
        _ => AccessTokenError::Malformed,
    })?;
    if data.header.typ.as_deref() != Some("at+jwt") {
        return Err(AccessTokenError::Malformed);
    }
    if now.unix_timestamp() >= data.claims.exp {
        return Err(AccessTokenError::Expired);
    }
    Ok(data.claims)
}

/// The base URL clients reach this deployment at (the issuer).
pub fn base_url(deps: &McpDeps, headers: &HeaderMap) -> String {
    match &deps.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("https://{host}")
        }
    }
}

/// RFC 6749 §5.2: an error answer, never cached; `invalid_client` is a 401
/// with a challenge for the authentication scheme the client may use.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut resp = (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"fieldgate\""),
        );
    }
    resp
}

fn bad_request(code: &str, description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, code, description)
}

fn invalid_client(description: &str) -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

/// `client_id:client_secret` from `Authorization: Basic`, each part
/// form-urlencoded (RFC 6749 §2.3.1). `Err` when the header is there but
/// is not Basic credentials.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ()> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?.trim();
    let (scheme, rest) = v.split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    let raw = STANDARD.decode(rest.trim()).map_err(|_| ())?;
    let text = String::from_utf8(raw).map_err(|_| ())?;
    let (id, secret) = text.split_once(':').ok_or(())?;
    let decode = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|v| v.into_iter().next().map(|(_, v)| v))
    };
    Ok(Some((decode(id).ok_or(())?, decode(secret).ok_or(())?)))
}

/// `POST /mcp/oauth/token`: `grant_type=client_credentials`, the client
/// authenticated by HTTP Basic or by `client_id` and `client_secret` in
/// the form body (not both).
pub async fn token(State(deps): State<Arc<McpDeps>>, headers: HeaderMap, body: Bytes) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return bad_request(
            "invalid_request",
            "send the request as application/x-www-form-urlencoded",
        );
    }
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return bad_request("invalid_request", "the form body does not parse");
    };
    let mut seen = std::collections::BTreeSet::new();
    if let Some((k, _)) = params.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return bad_request(
            "invalid_request",
            &format!("parameter {k} is given more than once"),
        );
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match param("grant_type") {
        None => return bad_request("invalid_request", "grant_type is required"),
        Some("client_credentials") => {}
        Some(_) => {
            return bad_request(
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            );
        }
    }
    if let Some(scope) = param("scope")
        && scope.split(' ').any(|s| !s.is_empty() && s != SCOPE)
    {
        return bad_request("invalid_scope", &format!("the only scope is {SCOPE:?}"));
    }
    let form = match (param("client_id"), param("client_secret")) {
        (Some(id), Some(secret)) => Some((id.to_owned(), secret.to_owned())),
        (None, None) => None,
        _ => {
            return bad_request(
                "invalid_request",
                "send both client_id and client_secret, or use HTTP Basic",
            );
        }
    };
    let (client_id, secret) = match (basic_credentials(&headers), form) {
        (Ok(Some(_)), Some(_)) => {
            return bad_request(
                "invalid_request",
                "authenticate the client one way: HTTP Basic or the form body, not both",
            );
        }
        (Ok(Some(c)), None) | (Ok(None), Some(c)) => c,
        (Ok(None), None) => {
            return invalid_client(
                "client authentication is required (HTTP Basic, or client_id and client_secret)",
            );
        }
        (Err(()), _) => {
            return invalid_client("the Authorization header is not HTTP Basic credentials");
        }
    };
    let found = match deps
        .assistants
        .by_hash(&AssistantToken::hash(&secret))
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "reading assistant tokens failed");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again in a few seconds",
            );
        }
    };
    use subtle::ConstantTimeEq;
    let who = found.filter(|t| {
        t.is_active()
            && t.kind == CredentialKind::ClientCredentials
            && bool::from(t.id.as_bytes().ct_eq(client_id.as_bytes()))
    });
    // Unknown client, wrong secret and revoked client look the same.
    let Some(who) = who else {
        tracing::info!("client credentials refused");
        return invalid_client("the client id and secret do not match an active client");
    };
    let now = deps.clock.now();
    let access = mint(&deps.links, &who, &base_url(&deps, &headers), now);
    tracing::info!(assistant = %who.id, "access token issued");
    (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL.whole_seconds(),
            "scope": SCOPE,
        })),
    )
        .into_response()
}

/// The authorization endpoint: there are no interactive grants.
pub async fn authorize() -> Response {
    bad_request(
        "unsupported_response_type",
        "fieldgate issues access tokens only for grant_type=client_credentials at /mcp/oauth/token",
    )
}

/// RFC 8414 authorization server metadata.
pub async fn authorization_server(
    State(deps): State<Arc<McpDeps>>,
    headers: HeaderMap,
) -> Response {
    let base = base_url(&deps, &headers);
    Json(json!({
        "issuer": base,
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "authorization_endpoint": format!("{base}{AUTHORIZE_PATH}"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "scopes_supported": [SCOPE],
    }))
    .into_response()
}

/// RFC 9728 protected resource metadata of `/mcp`.
pub async fn protected_resource(State(deps): State<Arc<McpDeps>>, headers: HeaderMap) -> Response {
    let base = base_url(&deps, &headers);
    Json(json!({
        "resource": format!("{base}/mcp"),
        "authorization_servers": [base],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [SCOPE],
        "resource_name": "fieldgate MCP endpoint",
    }))
    .into_response()
}

/// Where a client finds the protected resource metadata (for the 401
/// challenge, MCP authorization spec).
pub fn resource_metadata_url(base: &str) -> String {
    format!("{base}/.well-known/oauth-protected-resource/mcp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldgate::domain::fixtures::{SeededRng, at};
    use fieldgate::domain::{AssistantLimits, AssistantToken};

    fn token(key: &CsrfKey, now: Timestamp) -> String {
        let (_, who) = AssistantToken::mint_client(
            "Agentforce",
            vec!["field-service-case".parse().unwrap()],
            AssistantLimits::default(),
            now,
            &mut SeededRng(7),
        );
        mint(key, &who, "https://fg.example", now)
    }

    #[test]
    fn only_our_unexpired_hs256_tokens_verify() {
        let now = at(1_800_000_000);
        let key = CsrfKey::generate(&mut SeededRng(1));
        let t = token(&key, now);
        let claims = verify(&key, &t, now).unwrap();
        assert_eq!(claims.aud, AUDIENCE);
        assert_eq!(
            verify(&key, &t, now + ACCESS_TOKEN_TTL),
            Err(AccessTokenError::Expired)
        );
        // Another deployment's key.
        let other = CsrfKey::generate(&mut SeededRng(2));
        assert_eq!(verify(&other, &t, now), Err(AccessTokenError::BadSignature));
        // `alg: none` with our claims: refused before anything is read.
        let (_, claims_part, _) = {
            let mut p = t.split('.');
            (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
        };
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.{claims_part}.");
        assert_eq!(verify(&key, &none, now), Err(AccessTokenError::Malformed));
        assert_eq!(verify(&key, "x.y.z", now), Err(AccessTokenError::Malformed));
    }
}
