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
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::ClientCredentials { client_id, .. } => f
                .debug_struct("ClientCredentials")
                .field("client_id", client_id)
                .field("client_secret", &"…")
                .finish(),
        }
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
        Self {
            login_url: login_url.trim_end_matches('/').to_owned(),
            api_version: "66.0".into(),
            auth: Auth::ClientCredentials {
                client_id: client_id.into(),
                client_secret: client_secret.into(),
            },
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
        })
    }

    /// API calls made so far (token requests included).
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
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
        let Auth::ClientCredentials {
            client_id,
            client_secret,
        } = &self.config.auth;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
        ];
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
        {
            note_limit(info);
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

/// Warns when the org's shared daily budget is more than 80 % spent.
fn note_limit(info: &str) {
    let Some(rest) = info.split("api-usage=").nth(1) else {
        return;
    };
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let (Some(Ok(used)), Some(Ok(limit))) = (
        parts.next().map(str::parse::<u64>),
        parts.next().map(str::parse::<u64>),
    ) else {
        return;
    };
    if limit > 0 && used * 100 > limit * 80 {
        tracing::warn!(
            used,
            limit,
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
    fn auth_debug_hides_the_secret() {
        let a = Auth::ClientCredentials {
            client_id: "id".into(),
            client_secret: "s3cret".into(),
        };
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
