use crate::ports::{Attachment, RecordWriter, Upserted, WriteError};
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::RwLock;

/// How fieldgate proves who it is. Secrets are redacted from Debug output.
#[derive(Clone)]
pub enum Auth {
    /// OAuth 2.0 JWT bearer: the recommended server-to-server grant. No
    /// secret travels; each token is bought with a fresh signed assertion.
    JwtBearer {
        /// The connected app's consumer key (`iss`).
        client_id: String,
        /// The integration user (`sub`).
        username: String,
        /// `aud`: https://login.salesforce.com, https://test.salesforce.com
        /// or a community URL.
        audience: String,
        /// PEM of the key whose certificate is on the app (PKCS#8 or PKCS#1).
        private_key_pem: String,
    },
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::JwtBearer {
                client_id,
                username,
                audience,
                ..
            } => f
                .debug_struct("JwtBearer")
                .field("client_id", client_id)
                .field("username", username)
                .field("audience", audience)
                .field("private_key_pem", &"…")
                .finish(),
            Auth::ClientCredentials { client_id, .. } => f
                .debug_struct("ClientCredentials")
                .field("client_id", client_id)
                .field("client_secret", &"…")
                .finish(),
        }
    }
}

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
        .map_err(|e| SfError::Auth(format!("JWT private key is not an RSA PEM key: {e}")))?;
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
    .map_err(|e| SfError::Auth(format!("signing the JWT assertion: {e}")))
}

/// The `aud` Salesforce expects for a login URL: sandboxes use
/// test.salesforce.com, production and My Domain login.salesforce.com;
/// anything else (a community, the emulator) is its own audience.
pub fn default_audience(login_url: &str) -> String {
    let host = login_url
        .split("://")
        .nth(1)
        .unwrap_or(login_url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host == "test.salesforce.com" || host.ends_with(".sandbox.my.salesforce.com") {
        "https://test.salesforce.com".into()
    } else if host == "login.salesforce.com" || host.ends_with(".my.salesforce.com") {
        "https://login.salesforce.com".into()
    } else {
        login_url.trim_end_matches('/').to_owned()
    }
}

#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    /// Where tokens come from: My Domain URL, login or test.salesforce.com.
    pub login_url: String,
    /// e.g. "66.0"
    pub api_version: String,
    pub auth: Auth,
    pub timeout: Duration,
    /// Retries after the first try on transient failures.
    pub retries: usize,
    pub retry_base: Duration,
    /// Files above this many bytes go up as multipart, not base64 JSON.
    pub multipart_above: usize,
}

impl SalesforceConfig {
    pub fn client_credentials(login_url: &str, client_id: &str, client_secret: &str) -> Self {
        Self::with_auth(
            login_url,
            Auth::ClientCredentials {
                client_id: client_id.into(),
                client_secret: client_secret.into(),
            },
        )
    }

    /// JWT bearer with the audience that fits `login_url` ([`default_audience`]).
    pub fn jwt_bearer(
        login_url: &str,
        client_id: &str,
        username: &str,
        private_key_pem: &str,
    ) -> Self {
        Self::with_auth(
            login_url,
            Auth::JwtBearer {
                client_id: client_id.into(),
                username: username.into(),
                audience: default_audience(login_url),
                private_key_pem: private_key_pem.into(),
            },
        )
    }

    /// From the environment: `SALESFORCE_LOGIN_URL`, `SALESFORCE_CLIENT_ID`
    /// and either `SALESFORCE_USERNAME` + `SALESFORCE_PRIVATE_KEY` (PEM) or
    /// `SALESFORCE_PRIVATE_KEY_FILE` (JWT bearer, preferred), or
    /// `SALESFORCE_CLIENT_SECRET` (client credentials). Optional:
    /// `SALESFORCE_JWT_AUDIENCE`, `SALESFORCE_API_VERSION`.
    pub fn from_env() -> Result<Self, SfError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let need = |k: &str| var(k).ok_or_else(|| SfError::Auth(format!("{k} is not set")));
        let login_url = need("SALESFORCE_LOGIN_URL")?;
        let client_id = need("SALESFORCE_CLIENT_ID")?;
        let key = match (
            var("SALESFORCE_PRIVATE_KEY"),
            var("SALESFORCE_PRIVATE_KEY_FILE"),
        ) {
            (Some(pem), _) => Some(pem),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| SfError::Auth(format!("reading {path}: {e}")))?,
            ),
            (None, None) => None,
        };
        let mut config = match key {
            Some(pem) => {
                let mut c = Self::jwt_bearer(
                    &login_url,
                    &client_id,
                    &need("SALESFORCE_USERNAME")?,
                    &pem,
                );
                if let (Some(aud), Auth::JwtBearer { audience, .. }) =
                    (var("SALESFORCE_JWT_AUDIENCE"), &mut c.auth)
                {
                    *audience = aud;
                }
                c
            }
            None => Self::client_credentials(
                &login_url,
                &client_id,
                &need("SALESFORCE_CLIENT_SECRET").map_err(|_| {
                    SfError::Auth(
                        "set SALESFORCE_USERNAME + SALESFORCE_PRIVATE_KEY(_FILE) for JWT bearer, or SALESFORCE_CLIENT_SECRET".into(),
                    )
                })?,
            ),
        };
        if let Some(v) = var("SALESFORCE_API_VERSION") {
            config.api_version = v;
        }
        Ok(config)
    }

    fn with_auth(login_url: &str, auth: Auth) -> Self {
        Self {
            login_url: login_url.trim_end_matches('/').to_owned(),
            api_version: "66.0".into(),
            auth,
            timeout: Duration::from_secs(20),
            retries: 3,
            retry_base: Duration::from_millis(200),
            multipart_above: 5 * 1024 * 1024,
        }
    }
}

#[derive(Clone)]
struct Token {
    access: String,
    instance_url: String,
}

/// Failures of one call, before they are mapped to what the caller does.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SfError {
    #[error("HTTP {status}: {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        fields: Vec<String>,
    },
    #[error("auth: {0}")]
    Auth(String),
    #[error("network: {0}")]
    Network(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl SfError {
    fn is_transient(&self) -> bool {
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

#[derive(Deserialize)]
struct ApiErrorBody {
    message: String,
    #[serde(rename = "errorCode")]
    error_code: String,
    #[serde(default)]
    fields: Vec<String>,
}

pub struct SalesforceClient {
    http: reqwest::Client,
    config: SalesforceConfig,
    token: RwLock<Option<Token>>,
    calls: AtomicU64,
    /// Last `Sforce-Limit-Info` seen: used << 32 | limit (0 = none yet).
    usage: AtomicU64,
}

impl SalesforceClient {
    pub fn new(config: SalesforceConfig) -> Result<Self, SfError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("fieldgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SfError::Network(e.to_string()))?;
        Ok(Self {
            http,
            config,
            token: RwLock::new(None),
            calls: AtomicU64::new(0),
            usage: AtomicU64::new(0),
        })
    }

    /// API calls made so far (token requests included).
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The org's API usage as last reported: (used, daily limit).
    pub fn api_usage(&self) -> Option<(u64, u64)> {
        let v = self.usage.load(Ordering::Relaxed);
        (v != 0).then_some((v >> 32, v & u64::from(u32::MAX)))
    }

    async fn token(&self, renew: bool) -> Result<Token, SfError> {
        if !renew && let Some(t) = self.token.read().await.clone() {
            return Ok(t);
        }
        let mut slot = self.token.write().await;
        // Another task may have renewed while we waited for the lock.
        if let Some(t) = slot.clone()
            && !renew
        {
            return Ok(t);
        }
        let form: Vec<(&str, String)> = match &self.config.auth {
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
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .post(format!("{}/services/oauth2/token", self.config.login_url))
            .form(&form)
            .send()
            .await
            .map_err(|e| SfError::Network(e.to_string()))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| SfError::Protocol(format!("token answer: {e}")))?;
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
        let t = Token {
            access: access.to_owned(),
            instance_url: instance.trim_end_matches('/').to_owned(),
        };
        *slot = Some(t.clone());
        Ok(t)
    }

    /// One REST call with auth, one renewal on 401, and retries with
    /// backoff and jitter on transient failures.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<(StatusCode, Option<Value>), SfError> {
        let once = || async {
            match self
                .call_once(method.clone(), path, body.clone(), false)
                .await
            {
                Err(SfError::Api { status: 401, .. }) => {
                    self.call_once(method.clone(), path, body.clone(), true)
                        .await
                }
                other => other,
            }
        };
        once.retry(
            ExponentialBuilder::default()
                .with_min_delay(self.config.retry_base)
                .with_max_delay(Duration::from_secs(8))
                .with_max_times(self.config.retries)
                .with_jitter(),
        )
        .when(SfError::is_transient)
        .notify(|e, d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "Salesforce call failed; retrying"))
        .await
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        renew: bool,
    ) -> Result<(StatusCode, Option<Value>), SfError> {
        let token = self.token(renew).await?;
        let url = if path.starts_with("/services/") {
            format!("{}{path}", token.instance_url)
        } else {
            format!(
                "{}/services/data/v{}{path}",
                token.instance_url, self.config.api_version
            )
        };
        let mut req = self.http.request(method, &url).bearer_auth(&token.access);
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Multipart {
                entity,
                data,
                file_name,
                content_type,
            }) => {
                let form = reqwest::multipart::Form::new()
                    .part(
                        "entity_content",
                        reqwest::multipart::Part::text(entity.to_string())
                            .mime_str("application/json")
                            .map_err(|e| SfError::Protocol(e.to_string()))?,
                    )
                    .part(
                        "VersionData",
                        reqwest::multipart::Part::bytes(data)
                            .file_name(file_name)
                            .mime_str(&content_type)
                            .map_err(|e| SfError::Protocol(e.to_string()))?,
                    );
                req.multipart(form)
            }
            None => req,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let resp = req
            .send()
            .await
            .map_err(|e| SfError::Network(e.to_string()))?;
        let status = resp.status();
        if let Some(info) = resp
            .headers()
            .get("Sforce-Limit-Info")
            .and_then(|v| v.to_str().ok())
            && let Some((used, limit)) = parse_limit(info)
        {
            self.usage
                .store((used << 32) | limit.min(u32::MAX.into()), Ordering::Relaxed);
            note_limit(used, limit);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| SfError::Network(e.to_string()))?;
        let json: Option<Value> =
            if bytes.is_empty() {
                None
            } else {
                Some(serde_json::from_slice(&bytes).map_err(|e| {
                    SfError::Protocol(format!("HTTP {status}: body is not JSON: {e}"))
                })?)
            };
        if status.is_success() {
            return Ok((status, json));
        }
        if status == StatusCode::MULTIPLE_CHOICES {
            return Err(SfError::Api {
                status: 300,
                code: "MULTIPLE_CHOICES".into(),
                message: "several records carry this external id".into(),
                fields: vec![],
            });
        }
        let first = json
            .clone()
            .and_then(|v| serde_json::from_value::<Vec<ApiErrorBody>>(v).ok())
            .and_then(|v| v.into_iter().next());
        Err(match first {
            Some(e) => SfError::Api {
                status: status.as_u16(),
                code: e.error_code,
                message: e.message,
                fields: e.fields,
            },
            None => SfError::Api {
                status: status.as_u16(),
                code: format!("HTTP_{}", status.as_u16()),
                message: json.map(|v| v.to_string()).unwrap_or_default(),
                fields: vec![],
            },
        })
    }

    /// GET /query, following `nextRecordsUrl` to the end.
    pub async fn query(&self, soql: &str) -> Result<Vec<Value>, SfError> {
        let encoded: String = url_encode(soql);
        let mut path = format!("/query?q={encoded}");
        let mut out = Vec::new();
        loop {
            let (_, body) = self.call(Method::GET, &path, None).await?;
            let body = body.ok_or_else(|| SfError::Protocol("empty query answer".into()))?;
            if let Some(recs) = body["records"].as_array() {
                out.extend(recs.iter().cloned());
            }
            match body["nextRecordsUrl"].as_str() {
                Some(next) if body["done"] == Value::Bool(false) => path = next.to_owned(),
                _ => return Ok(out),
            }
        }
    }

    pub async fn describe(&self, object: &str) -> Result<Value, SfError> {
        let (_, body) = self
            .call(Method::GET, &format!("/sobjects/{object}/describe"), None)
            .await?;
        body.ok_or_else(|| SfError::Protocol("empty describe".into()))
    }

    async fn instance_url(&self) -> Result<String, SfError> {
        Ok(self.token(false).await?.instance_url)
    }
}

#[derive(Clone)]
enum Body {
    Json(Value),
    Multipart {
        entity: Value,
        data: Vec<u8>,
        file_name: String,
        content_type: String,
    },
}

/// Parses `api-usage=<used>/<limit>` from `Sforce-Limit-Info`.
fn parse_limit(info: &str) -> Option<(u64, u64)> {
    // Not the `per-app-api-usage=` that may come with it, before or after.
    let (at, _) = info
        .match_indices("api-usage=")
        .find(|(i, _)| *i == 0 || info.as_bytes()[i - 1] != b'-')?;
    let rest = &info[at + "api-usage=".len()..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let used = parts.next()?.parse().ok()?;
    let limit = parts.next()?.parse().ok()?;
    Some((used, limit))
}

/// Warns when the org's shared daily budget is more than 80 % spent.
fn note_limit(used: u64, limit: u64) {
    if limit > 0 && used * 100 > limit * 80 {
        tracing::warn!(
            used,
            limit,
            percent = used * 100 / limit,
            "Salesforce org API usage above 80% of its daily limit"
        );
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// SOQL string literal escaping.
pub(crate) fn soql_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn api_name(s: &str) -> Result<&str, WriteError> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s)
    } else {
        Err(WriteError::Config(format!("{s:?} is not an API name")))
    }
}

fn path_segment(s: &str) -> String {
    url_encode(s).replace('+', "%20")
}

#[async_trait]
impl RecordWriter for SalesforceClient {
    async fn upsert(
        &self,
        object: &str,
        ext_field: &str,
        ext_value: &str,
        record: &Map<String, Value>,
    ) -> Result<Upserted, WriteError> {
        let path = format!(
            "/sobjects/{}/{}/{}",
            api_name(object)?,
            api_name(ext_field)?,
            path_segment(ext_value)
        );
        let (status, body) = self
            .call(
                Method::PATCH,
                &path,
                Some(Body::Json(Value::Object(record.clone()))),
            )
            .await?;
        match (status.as_u16(), body) {
            (200 | 201, Some(b)) => {
                let id = b["id"]
                    .as_str()
                    .ok_or_else(|| WriteError::Transient("upsert answer lacks id".into()))?;
                Ok(Upserted {
                    id: id.to_owned(),
                    created: b["created"]
                        .as_bool()
                        .unwrap_or(status == StatusCode::CREATED),
                })
            }
            // API ≤ v45.0 answers an update with 204 and no id: look it up.
            (204, _) => {
                let soql = format!(
                    "SELECT Id FROM {object} WHERE {ext_field} = {}",
                    soql_quote(ext_value)
                );
                let recs = self.query(&soql).await?;
                let id = recs.first().and_then(|r| r["Id"].as_str()).ok_or_else(|| {
                    WriteError::Transient("updated record not found by external id".into())
                })?;
                Ok(Upserted {
                    id: id.to_owned(),
                    created: false,
                })
            }
            (s, _) => Err(WriteError::Transient(format!(
                "unexpected upsert status {s}"
            ))),
        }
    }

    async fn create(
        &self,
        object: &str,
        record: &Map<String, Value>,
    ) -> Result<String, WriteError> {
        let (_, body) = self
            .call(
                Method::POST,
                &format!("/sobjects/{}/", api_name(object)?),
                Some(Body::Json(Value::Object(record.clone()))),
            )
            .await?;
        body.as_ref()
            .and_then(|b| b["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| WriteError::Transient("create answer lacks id".into()))
    }

    async fn read(
        &self,
        object: &str,
        id: &str,
        fields: &[String],
    ) -> Result<Map<String, Value>, WriteError> {
        for f in fields {
            api_name(f)?;
        }
        let path = format!(
            "/sobjects/{}/{}?fields={}",
            api_name(object)?,
            api_name(id)?,
            fields.join(",")
        );
        let (_, body) = self.call(Method::GET, &path, None).await?;
        match body {
            Some(Value::Object(m)) => Ok(m),
            _ => Err(WriteError::Transient("read answer is not a record".into())),
        }
    }

    async fn attach(&self, record_id: &str, file: &Attachment<'_>) -> Result<String, WriteError> {
        let entity = json!({
            "Title": file.title,
            "PathOnClient": file.file_name,
            "FirstPublishLocationId": record_id,
        });
        let body = if file.data.len() > self.config.multipart_above {
            Body::Multipart {
                entity,
                data: file.data.to_vec(),
                file_name: file.file_name.to_owned(),
                content_type: file.content_type.to_owned(),
            }
        } else {
            let mut e = entity;
            e["VersionData"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(file.data));
            Body::Json(e)
        };
        let (_, resp) = self
            .call(Method::POST, "/sobjects/ContentVersion/", Some(body))
            .await?;
        resp.as_ref()
            .and_then(|b| b["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| WriteError::Transient("ContentVersion answer lacks id".into()))
    }

    async fn find_attachment(
        &self,
        record_id: &str,
        title: &str,
    ) -> Result<Option<String>, WriteError> {
        let soql = format!(
            "SELECT Id FROM ContentVersion WHERE FirstPublishLocationId = {} AND Title = {}",
            soql_quote(api_name(record_id)?),
            soql_quote(title)
        );
        let recs = self.query(&soql).await?;
        Ok(recs
            .first()
            .and_then(|r| r["Id"].as_str())
            .map(str::to_owned))
    }

    fn record_url(&self, object: &str, id: &str) -> String {
        // The instance URL is known once a token was fetched, which every
        // write does first; fall back to the login URL otherwise.
        let base = self
            .token
            .try_read()
            .ok()
            .and_then(|t| t.as_ref().map(|t| t.instance_url.clone()))
            .unwrap_or_else(|| self.config.login_url.clone());
        format!("{base}/lightning/r/{object}/{id}/view")
    }
}

impl SalesforceClient {
    /// The instance URL, fetching a token if needed.
    pub async fn instance(&self) -> Result<String, SfError> {
        self.instance_url().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_encoding() {
        assert_eq!(soql_quote("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(
            url_encode("SELECT Id FROM X WHERE A = 'b'"),
            "SELECT+Id+FROM+X+WHERE+A+%3D+%27b%27"
        );
    }

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
    fn limit_header_parsing() {
        assert_eq!(parse_limit("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(
            parse_limit("api-usage=81/100; per-app-api-usage=3/50(appName=x)"),
            Some((81, 100))
        );
        assert_eq!(
            parse_limit("per-app-api-usage=3/50(appName=x), api-usage=81/100"),
            Some((81, 100))
        );
        assert_eq!(parse_limit("per-app-api-usage=3/50"), None);
        assert_eq!(parse_limit("api-usage=x/100"), None);
    }

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
        assert!(matches!(
            jwt_assertion("k", "u", "a", "not a key", 0),
            Err(SfError::Auth(_))
        ));
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
