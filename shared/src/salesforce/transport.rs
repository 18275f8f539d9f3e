//! One REST call, done right: the token, one renewal on 401, retries with
//! backoff on transient failures, Salesforce's error bodies, the API calls
//! counted and the org's usage read from `Sforce-Limit-Info`.

use super::config::SalesforceConfig;
use super::error::SfError;
use super::token::{Token, TokenCache, request_token};
use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A request body.
#[derive(Clone)]
#[cfg_attr(not(feature = "salesforce-write"), allow(dead_code))] // used by writes
pub(super) enum Body {
    Json(Value),
    /// A ContentVersion with its file as a binary part (only writes upload).
    #[cfg(feature = "salesforce-write")]
    Multipart {
        entity: Value,
        data: Vec<u8>,
        file_name: String,
        content_type: String,
    },
}

#[derive(Deserialize)]
struct ApiErrorBody {
    message: String,
    #[serde(rename = "errorCode")]
    error_code: String,
    #[serde(default)]
    fields: Vec<String>,
}

/// TLS for Salesforce in a Lambda: Mozilla's roots, compiled in. reqwest's
/// default reads and parses the system's certificate file when the client
/// is built, 19 M instructions (about 70 % of qr-intake's whole cold start,
/// measured with callgrind). The Lambda image's bundle is Mozilla's list
/// too, so the same orgs verify. Elsewhere (`fieldgate serve`, the CLI) the
/// system's store stays, so a company's own root still counts.
fn lambda_tls() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // reqwest leaves ALPN to a preconfigured client: HTTP/1.1, which
    // every Salesforce endpoint speaks.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    tls
}

pub(super) struct Transport {
    /// Made on the first call: building a reqwest client sets up its TLS
    /// (the system's roots), which a cold start that never calls
    /// Salesforce (most commit sweeps) should not pay for.
    http: std::sync::OnceLock<reqwest::Client>,
    pub config: SalesforceConfig,
    tokens: TokenCache,
    calls: AtomicU64,
    /// Last `Sforce-Limit-Info` seen: used << 32 | limit (0 = none yet).
    usage: AtomicU64,
}

impl Transport {
    pub fn new(config: SalesforceConfig) -> Result<Self, SfError> {
        Ok(Self {
            http: std::sync::OnceLock::new(),
            config,
            tokens: TokenCache::default(),
            calls: AtomicU64::new(0),
            usage: AtomicU64::new(0),
        })
    }

    fn http(&self) -> Result<&reqwest::Client, SfError> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(self.config.timeout)
            .user_agent(concat!("fieldgate/", env!("CARGO_PKG_VERSION")));
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
            builder = builder.tls_backend_preconfigured(lambda_tls());
        }
        let http = builder.build().map_err(SfError::Network)?;
        Ok(self.http.get_or_init(|| http))
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

    pub async fn token(&self, renew: bool) -> Result<Token, SfError> {
        let http = self.http()?;
        self.tokens
            .get(renew, || {
                request_token(http, &self.config.login_url, &self.config.auth, &self.calls)
            })
            .await
    }

    /// The instance URL if a token was fetched already; never waits.
    #[cfg_attr(not(feature = "salesforce-write"), allow(dead_code))] // used by writes
    pub fn instance_url_now(&self) -> Option<String> {
        self.tokens.instance_url_now()
    }

    /// One REST call with auth, one renewal on 401, and retries with
    /// backoff and jitter on transient failures.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<(StatusCode, Option<Value>), SfError> {
        self.call_with(method, path, body, &[]).await
    }

    /// [`Transport::call`] with extra request headers (conditional requests).
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        headers: &[(reqwest::header::HeaderName, String)],
    ) -> Result<(StatusCode, Option<Value>), SfError> {
        let once = || self.call_renewing_with(method.clone(), path, body.clone(), headers);
        once.retry(self.backoff())
            .when(SfError::is_transient)
            .notify(|e, d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "Salesforce call failed; retrying"))
            .await
    }

    /// The retry schedule for transient failures.
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.config.retry_base)
            .with_max_delay(Duration::from_secs(8))
            .with_max_times(self.config.retries)
            .with_jitter()
    }

    /// One try with one renewal on 401 and no retry: for calls that are
    /// not idempotent, whose caller must check what happened before trying
    /// again.
    #[cfg_attr(not(feature = "salesforce-write"), allow(dead_code))] // used by writes
    pub async fn call_renewing(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<(StatusCode, Option<Value>), SfError> {
        self.call_renewing_with(method, path, body, &[]).await
    }

    #[cfg_attr(not(feature = "salesforce-write"), allow(dead_code))] // used by writes
    async fn call_renewing_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        headers: &[(reqwest::header::HeaderName, String)],
    ) -> Result<(StatusCode, Option<Value>), SfError> {
        match self
            .call_once(method.clone(), path, body.clone(), headers, false)
            .await
        {
            Err(SfError::Api { status: 401, .. }) => {
                self.call_once(method, path, body, headers, true).await
            }
            other => other,
        }
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        headers: &[(reqwest::header::HeaderName, String)],
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
        let mut req = self
            .http()?
            .request(method, &url)
            .bearer_auth(&token.access);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            #[cfg(feature = "salesforce-write")]
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
                            .map_err(SfError::Multipart)?,
                    )
                    .part(
                        "VersionData",
                        reqwest::multipart::Part::bytes(data)
                            .file_name(file_name)
                            .mime_str(&content_type)
                            .map_err(SfError::Multipart)?,
                    );
                req.multipart(form)
            }
            None => req,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let resp = req.send().await.map_err(SfError::Network)?;
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
        let bytes = resp.bytes().await.map_err(SfError::Network)?;
        let json: Option<Value> = if bytes.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|source| SfError::NotJson { status, source })?,
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lambda_trusts_the_roots_salesforce_chains_to() {
        let tls = lambda_tls();
        assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
        // My Domain endpoints chain to DigiCert Global Root G2 (Mozilla no
        // longer lists the older Global Root CA for TLS).
        let root = "DigiCert Global Root G2";
        assert!(
            webpki_roots::TLS_SERVER_ROOTS.iter().any(|a| a
                .subject
                .as_ref()
                .windows(root.len())
                .any(|w| w == root.as_bytes())),
            "{root} is trusted"
        );
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .expect("reqwest takes the configuration");
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
}
