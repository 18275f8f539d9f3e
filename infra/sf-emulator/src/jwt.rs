//! The OAuth 2.0 JWT bearer grant as Salesforce checks it: an RS256
//! assertion signed with the key whose certificate is on the connected app,
//! `iss` = consumer key, `sub` = the pre-authorised username, `aud` = the
//! login host, `exp` = seconds since the epoch, a few minutes ahead.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::JwtTrust;

/// How far ahead `exp` may lie. Salesforce documents three minutes; real
/// clients add some slack, so the emulator accepts up to five.
pub const MAX_LEAD_SECONDS: i64 = 300;

/// An OAuth error: (`error`, `error_description`).
pub type OAuthError = (&'static str, &'static str);

/// Checks an assertion; `Ok(username)` when it grants a token.
/// `client_id` is the connected app's consumer key, `own_origin` the URL the
/// request came to (accepted as `aud`, like a My Domain or community URL).
pub fn check(
    assertion: &str,
    trust: &JwtTrust,
    client_id: &str,
    own_origin: &str,
    now: i64,
) -> Result<String, OAuthError> {
    const INVALID_ASSERTION: OAuthError = ("invalid_grant", "invalid assertion");
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| INVALID_ASSERTION)?;
    if header.alg != Algorithm::RS256 {
        return Err((
            "invalid_grant",
            "invalid assertion: algorithm must be RS256",
        ));
    }
    let key = DecodingKey::from_rsa_pem(trust.certificate_pem.as_bytes()).map_err(|_| {
        (
            "invalid_client",
            "the connected app has no usable certificate",
        )
    })?;
    // Claims are checked below, one by one, to answer Salesforce's own
    // descriptions; the library only verifies the signature here.
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &v)
        .map_err(|_| INVALID_ASSERTION)?
        .claims;
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
    if text("iss") != client_id {
        return Err(("invalid_client_id", "client identifier invalid"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audience_ok(a, trust, own_origin),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audience_ok(a, trust, own_origin)),
        _ => false,
    };
    if !aud_ok {
        return Err(("invalid_grant", "audience is invalid"));
    }
    // `exp` in milliseconds lands far in the future and is refused like a
    // past one: Salesforce answers "expired authorization code" for both.
    // A numeric string passes too: real orgs accept it and simple-salesforce
    // sends one.
    let exp = match claims.get("exp") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        _ => None,
    };
    match exp {
        Some(e) if e > now && e <= now + MAX_LEAD_SECONDS => {}
        _ => return Err(("invalid_grant", "expired authorization code")),
    }
    if text("sub") != trust.username {
        return Err(("invalid_grant", "user hasn't approved this consumer"));
    }
    Ok(trust.username.clone())
}

fn audience_ok(aud: &str, trust: &JwtTrust, own_origin: &str) -> bool {
    let aud = aud.trim_end_matches('/');
    aud == own_origin.trim_end_matches('/')
        || trust
            .audiences
            .iter()
            .any(|a| a.trim_end_matches('/') == aud)
}
