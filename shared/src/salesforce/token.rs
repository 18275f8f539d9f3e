//! The network half of [`Auth`]: the JWT bearer assertion, and the access
//! token, cached per client and renewed on demand.

use super::auth::Auth;
use super::error::SfError;
use serde_json::Value;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::RwLock;

/// How far ahead a JWT assertion's `exp` lies (Salesforce: at most 3 min).
const JWT_LIFETIME_SECONDS: i64 = 150;

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    /// NumericDate in seconds (milliseconds fail as "expired authorization code").
    exp: i64,
}

/// A signed JWT bearer assertion, valid for [`JWT_LIFETIME_SECONDS`] after `now`.
pub fn jwt_assertion(
    client_id: &str,
    username: &str,
    audience: &str,
    private_key_pem: &str,
    now: i64,
) -> Result<String, SfError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
        .map_err(SfError::JwtKey)?;
    let claims = Claims {
        iss: client_id,
        sub: username,
        aud: audience,
        exp: now + JWT_LIFETIME_SECONDS,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(SfError::JwtSign)
}

#[derive(Clone)]
pub(super) struct Token {
    pub access: String,
    pub instance_url: String,
}

/// The one access token of a client, shared by all its tasks.
#[derive(Default)]
pub(super) struct TokenCache {
    slot: RwLock<Option<Token>>,
}

impl TokenCache {
    /// The cached token, or a new one from `fetch` when there is none or
    /// `renew` says the cached one was refused.
    pub async fn get<F, Fut>(&self, renew: bool, fetch: F) -> Result<Token, SfError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, SfError>>,
    {
        if !renew && let Some(t) = self.slot.read().await.clone() {
            return Ok(t);
        }
        let mut slot = self.slot.write().await;
        // Another task may have renewed while we waited for the lock.
        if let Some(t) = slot.clone()
            && !renew
        {
            return Ok(t);
        }
        let t = fetch().await?;
        *slot = Some(t.clone());
        Ok(t)
    }

    /// The instance URL if a token is cached and the cache is not being
    /// renewed right now; never waits.
    #[cfg_attr(not(feature = "salesforce-write"), allow(dead_code))] // used by writes
    pub fn instance_url_now(&self) -> Option<String> {
        self.slot
            .try_read()
            .ok()
            .and_then(|t| t.as_ref().map(|t| t.instance_url.clone()))
    }
}

/// The token endpoint's form for `auth`: a fresh assertion for JWT bearer.
fn token_form(auth: &Auth) -> Result<Vec<(&'static str, String)>, SfError> {
    Ok(match auth {
        Auth::JwtBearer {
            client_id,
            username,
            audience,
            private_key_pem,
        } => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            vec![
                ("grant_type", JWT_BEARER_GRANT.to_owned()),
                (
                    "assertion",
                    jwt_assertion(client_id, username, audience, private_key_pem, now)?,
                ),
            ]
        }
        Auth::ClientCredentials {
            client_id,
            client_secret,
        } => vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.clone()),
        ],
    })
}

/// One token request to `login_url`, counted in `calls` once it is sent
/// (an assertion that cannot be signed costs no API call).
pub(super) async fn request_token(
    http: &reqwest::Client,
    login_url: &str,
    auth: &Auth,
    calls: &AtomicU64,
) -> Result<Token, SfError> {
    let form = token_form(auth)?;
    calls.fetch_add(1, Ordering::Relaxed);
    let resp = http
        .post(format!("{login_url}/services/oauth2/token"))
        .form(&form)
        .send()
        .await
        .map_err(SfError::Network)?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(SfError::TokenAnswer)?;
    if !status.is_success() {
        return Err(SfError::Auth(format!(
            "{}: {}",
            body["error"].as_str().unwrap_or("?"),
            body["error_description"].as_str().unwrap_or("")
        )));
    }
    let (Some(access), Some(instance)) =
        (body["access_token"].as_str(), body["instance_url"].as_str())
    else {
        return Err(SfError::Protocol(
            "token answer lacks access_token/instance_url".into(),
        ));
    };
    Ok(Token {
        access: access.to_owned(),
        instance_url: instance.trim_end_matches('/').to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::default_audience;
    use base64::Engine;
    use serde_json::json;

    #[test]
    fn audience_follows_the_login_url() {
        for (login, aud) in [
            (
                "https://login.salesforce.com",
                "https://login.salesforce.com",
            ),
            (
                "https://test.salesforce.com/",
                "https://test.salesforce.com",
            ),
            (
                "https://acme.my.salesforce.com",
                "https://login.salesforce.com",
            ),
            (
                "https://acme--uat.sandbox.my.salesforce.com",
                "https://test.salesforce.com",
            ),
            ("http://127.0.0.1:8787", "http://127.0.0.1:8787"),
        ] {
            assert_eq!(default_audience(login), aud, "{login}");
        }
    }

    #[test]
    fn the_assertion_carries_the_claims_in_seconds() {
        let jwt = jwt_assertion(
            "key",
            "user@example.com",
            "https://login.salesforce.com",
            include_str!("../../../infra/sf-emulator/fixtures/dev-jwt.key"),
            1_700_000_000,
        )
        .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |p: &str| -> Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(decode(parts[0])["alg"], "RS256");
        assert_eq!(
            decode(parts[1]),
            json!({"iss": "key", "sub": "user@example.com", "aud": "https://login.salesforce.com", "exp": 1_700_000_150})
        );
        let bad = jwt_assertion("k", "u", "a", "not a key", 0).unwrap_err();
        assert!(matches!(bad, SfError::JwtKey(_)), "{bad:?}");
        // The text is what it was when the cause was only a string.
        assert!(
            bad.to_string()
                .starts_with("auth: JWT private key is not an RSA PEM key: "),
            "{bad}"
        );
        assert!(std::error::Error::source(&bad).is_some());
    }

    #[test]
    fn jwt_debug_hides_the_key() {
        let a = Auth::JwtBearer {
            client_id: "id".into(),
            username: "u".into(),
            audience: "a".into(),
            private_key_pem: "-----BEGIN PRIVATE KEY-----secret".into(),
        };
        assert!(!format!("{a:?}").contains("secret"));
    }

    #[test]
    fn auth_debug_hides_the_secret() {
        let a = Auth::ClientCredentials {
            client_id: "id".into(),
            client_secret: "s3cret".into(),
        };
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
