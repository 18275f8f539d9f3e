//! Where the client connects and how it signs in: [`SalesforceConfig`], and
//! the `SALESFORCE_*` variables it is parsed from ([`SalesforceSettings`]).
//!
//! Parsing takes a lookup function, not the process environment, so it is
//! tested with a map and the Lambda wiring can resolve a Secrets Manager
//! credential in between.

use super::auth::{Auth, default_audience};
#[cfg(feature = "salesforce")]
use super::error::SfError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

    /// From `SALESFORCE_*` variables as `get` answers them
    /// ([`SalesforceSettings::from_lookup`]); `None` when none is set. A
    /// credential in Secrets Manager is an error here: only the Lambda
    /// wiring reads secrets ([`SalesforceSettings::with_secret`]).
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SalesforceConfig>, SfConfigError> {
        SalesforceSettings::from_lookup(get)?
            .map(SalesforceSettings::into_config)
            .transpose()
    }

    /// From the environment: `SALESFORCE_LOGIN_URL`, `SALESFORCE_CLIENT_ID`
    /// and either `SALESFORCE_USERNAME` + `SALESFORCE_PRIVATE_KEY` (PEM) or
    /// `SALESFORCE_PRIVATE_KEY_FILE` (JWT bearer, preferred), or
    /// `SALESFORCE_CLIENT_SECRET` (client credentials). Optional:
    /// `SALESFORCE_JWT_AUDIENCE`, `SALESFORCE_API_VERSION`.
    #[cfg(feature = "salesforce")]
    pub fn from_env() -> Result<Self, SfError> {
        Self::from_lookup(&|k| std::env::var(k).ok())?
            .ok_or(SfError::Config(SfConfigError::Missing(LOGIN_URL)))
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

const LOGIN_URL: &str = "SALESFORCE_LOGIN_URL";
const CLIENT_ID: &str = "SALESFORCE_CLIENT_ID";
const USERNAME: &str = "SALESFORCE_USERNAME";
const CLIENT_SECRET: &str = "SALESFORCE_CLIENT_SECRET";
const PRIVATE_KEY: &str = "SALESFORCE_PRIVATE_KEY";
const PRIVATE_KEY_FILE: &str = "SALESFORCE_PRIVATE_KEY_FILE";
const SECRET_ARN: &str = "SALESFORCE_SECRET_ARN";
const JWT_AUDIENCE: &str = "SALESFORCE_JWT_AUDIENCE";
const API_VERSION: &str = "SALESFORCE_API_VERSION";

/// The variables that say "connect to an org"; the optional tuning ones
/// (audience, API version) alone do not.
const CONNECTION: [&str; 7] = [
    LOGIN_URL,
    CLIENT_ID,
    USERNAME,
    CLIENT_SECRET,
    PRIVATE_KEY,
    PRIVATE_KEY_FILE,
    SECRET_ARN,
];

/// A `SALESFORCE_*` variable that is missing or wrong. Messages name the
/// variable and never carry its value: several of them are secrets.
#[derive(Debug, thiserror::Error)]
pub enum SfConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error(
        "set SALESFORCE_USERNAME + SALESFORCE_PRIVATE_KEY(_FILE) for JWT bearer, or SALESFORCE_CLIENT_SECRET"
    )]
    NoCredential,
    #[error("{var}: {reason}")]
    Invalid {
        var: &'static str,
        reason: &'static str,
    },
    #[error("SALESFORCE_PRIVATE_KEY_FILE: reading {}: {source}", path.display())]
    ReadKeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The credential is in Secrets Manager and nobody read it.
    #[error(
        "SALESFORCE_SECRET_ARN: the credential is in Secrets Manager, which only the Lambda wiring reads; set SALESFORCE_PRIVATE_KEY(_FILE) or SALESFORCE_CLIENT_SECRET"
    )]
    Unresolved,
}

/// What proves the client's identity, as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `SALESFORCE_CLIENT_SECRET`: the client credentials grant.
    ClientSecret(String),
    /// `SALESFORCE_PRIVATE_KEY`: the JWT bearer grant's key, inline.
    PrivateKeyPem(String),
    /// `SALESFORCE_PRIVATE_KEY_FILE`: the same, read at [`SalesforceSettings::into_config`].
    PrivateKeyFile(PathBuf),
    /// `SALESFORCE_SECRET_ARN`: a Secrets Manager secret holding
    /// `private_key` (with a username) or `client_secret`.
    SecretArn(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::ClientSecret(_) => f.write_str("ClientSecret(…)"),
            Credential::PrivateKeyPem(_) => f.write_str("PrivateKeyPem(…)"),
            Credential::PrivateKeyFile(p) => f.debug_tuple("PrivateKeyFile").field(p).finish(),
            Credential::SecretArn(a) => f.debug_tuple("SecretArn").field(a).finish(),
        }
    }
}

/// Every `SALESFORCE_*` variable, parsed and checked, before any file or
/// secret is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceSettings {
    /// `SALESFORCE_LOGIN_URL`: an http(s) URL.
    pub login_url: String,
    /// `SALESFORCE_CLIENT_ID`: the connected app's consumer key.
    pub client_id: String,
    /// `SALESFORCE_USERNAME`: the integration user (JWT bearer).
    pub username: Option<String>,
    /// `SALESFORCE_JWT_AUDIENCE`: replaces [`default_audience`].
    pub audience: Option<String>,
    /// `SALESFORCE_API_VERSION`, e.g. "66.0".
    pub api_version: Option<String>,
    pub credential: Credential,
}

impl SalesforceSettings {
    /// Parses the `SALESFORCE_*` variables `get` answers (blank counts as
    /// unset). `None` when no connection variable is set at all.
    ///
    /// The credential is the first set of `SALESFORCE_PRIVATE_KEY`,
    /// `SALESFORCE_PRIVATE_KEY_FILE` (both need `SALESFORCE_USERNAME`),
    /// `SALESFORCE_CLIENT_SECRET` and `SALESFORCE_SECRET_ARN`: keys in the
    /// environment (dev) win over a secret (AWS).
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SalesforceSettings>, SfConfigError> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if CONNECTION.iter().all(|k| var(k).is_none()) {
            return Ok(None);
        }
        let need = |k: &'static str| var(k).ok_or(SfConfigError::Missing(k));
        let login_url = need(LOGIN_URL)?;
        check_url(LOGIN_URL, &login_url)?;
        let client_id = need(CLIENT_ID)?;
        let username = var(USERNAME);
        let audience = var(JWT_AUDIENCE);
        if let Some(a) = &audience {
            check_url(JWT_AUDIENCE, a)?;
        }
        let api_version = var(API_VERSION);
        if let Some(v) = &api_version {
            check_api_version(v)?;
        }
        let credential = if let Some(pem) = var(PRIVATE_KEY) {
            check_pem(PRIVATE_KEY, &pem)?;
            Credential::PrivateKeyPem(pem)
        } else if let Some(path) = var(PRIVATE_KEY_FILE) {
            Credential::PrivateKeyFile(path.into())
        } else if let Some(secret) = var(CLIENT_SECRET) {
            Credential::ClientSecret(secret)
        } else if let Some(arn) = var(SECRET_ARN) {
            Credential::SecretArn(arn)
        } else {
            return Err(SfConfigError::NoCredential);
        };
        if matches!(
            credential,
            Credential::PrivateKeyPem(_) | Credential::PrivateKeyFile(_)
        ) && username.is_none()
        {
            return Err(SfConfigError::Missing(USERNAME));
        }
        Ok(Some(SalesforceSettings {
            login_url,
            client_id,
            username,
            audience,
            api_version,
            credential,
        }))
    }

    /// The secret to read, when the credential is in Secrets Manager: its
    /// id and the JSON field that holds the credential (`private_key` for
    /// JWT bearer, chosen by a username being set, else `client_secret`).
    pub fn secret_ref(&self) -> Option<(&str, &'static str)> {
        match &self.credential {
            Credential::SecretArn(arn) => Some((
                arn,
                if self.username.is_some() {
                    "private_key"
                } else {
                    "client_secret"
                },
            )),
            _ => None,
        }
    }

    /// Replaces a Secrets Manager credential by the value read from the
    /// field [`Self::secret_ref`] named; any other credential stays.
    pub fn with_secret(mut self, value: String) -> SalesforceSettings {
        if let Credential::SecretArn(_) = self.credential {
            self.credential = if self.username.is_some() {
                Credential::PrivateKeyPem(value)
            } else {
                Credential::ClientSecret(value)
            };
        }
        self
    }

    /// The client configuration; reads `SALESFORCE_PRIVATE_KEY_FILE`.
    pub fn into_config(self) -> Result<SalesforceConfig, SfConfigError> {
        let pem = match self.credential {
            Credential::ClientSecret(secret) => {
                let mut c =
                    SalesforceConfig::client_credentials(&self.login_url, &self.client_id, &secret);
                if let Some(v) = self.api_version {
                    c.api_version = v;
                }
                return Ok(c);
            }
            Credential::SecretArn(_) => return Err(SfConfigError::Unresolved),
            // Checked here too: a key read from Secrets Manager arrives after
            // `from_lookup`, and must fail at start-up, not at the first call.
            Credential::PrivateKeyPem(pem) => {
                check_pem(PRIVATE_KEY, &pem)?;
                pem
            }
            Credential::PrivateKeyFile(path) => {
                let pem = std::fs::read_to_string(&path)
                    .map_err(|source| SfConfigError::ReadKeyFile { path, source })?;
                check_pem(PRIVATE_KEY_FILE, &pem)?;
                pem
            }
        };
        let username = self.username.ok_or(SfConfigError::Missing(USERNAME))?;
        let mut c = SalesforceConfig::jwt_bearer(&self.login_url, &self.client_id, &username, &pem);
        if let (Some(aud), Auth::JwtBearer { audience, .. }) = (self.audience, &mut c.auth) {
            *audience = aud;
        }
        if let Some(v) = self.api_version {
            c.api_version = v;
        }
        Ok(c)
    }
}

fn check_url(var: &'static str, value: &str) -> Result<(), SfConfigError> {
    let ok = url::Url::parse(value)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(SfConfigError::Invalid {
            var,
            reason: "not an http(s) URL",
        })
    }
}

fn check_api_version(value: &str) -> Result<(), SfConfigError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match value.split_once('.') {
        Some((major, minor)) if digits(major) && digits(minor) => Ok(()),
        _ => Err(SfConfigError::Invalid {
            var: API_VERSION,
            reason: "not a version like 66.0",
        }),
    }
}

/// The parser's own error is left out: it can quote bytes of the key.
#[cfg(feature = "salesforce")]
fn check_pem(var: &'static str, pem: &str) -> Result<(), SfConfigError> {
    jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map(drop)
        .map_err(|_| SfConfigError::Invalid {
            var,
            reason: "not an RSA private key in PEM form (PKCS#8 or PKCS#1)",
        })
}

/// Without the client there is nothing to sign with, so nothing to check:
/// such a build never turns the settings into a connection.
#[cfg(not(feature = "salesforce"))]
fn check_pem(_var: &'static str, _pem: &str) -> Result<(), SfConfigError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = include_str!("../../../infra/sf-emulator/fixtures/dev-jwt.key");

    fn settings(vars: &[(&str, &str)]) -> Result<Option<SalesforceSettings>, SfConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SalesforceSettings::from_lookup(&|k| map.get(k).cloned())
    }

    fn config(vars: &[(&str, &str)]) -> Result<Option<SalesforceConfig>, SfConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SalesforceConfig::from_lookup(&|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        (LOGIN_URL, "https://acme.my.salesforce.com/"),
        (CLIENT_ID, "3MVG9"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        BASE.iter().chain(extra).copied().collect()
    }

    #[test]
    fn nothing_set_is_no_salesforce() {
        assert_eq!(settings(&[]).unwrap(), None);
        // Blank is unset, and tuning variables alone connect nowhere.
        assert_eq!(
            settings(&[(LOGIN_URL, "  "), (API_VERSION, "61.0")]).unwrap(),
            None
        );
        assert!(config(&[]).unwrap().is_none());
    }

    #[test]
    fn client_credentials() {
        let c = config(&with(&[(CLIENT_SECRET, "s3cret")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.login_url, "https://acme.my.salesforce.com");
        assert_eq!(c.api_version, "66.0");
        let Auth::ClientCredentials {
            client_id,
            client_secret,
        } = &c.auth
        else {
            panic!("{:?}", c.auth)
        };
        assert_eq!(
            (client_id.as_str(), client_secret.as_str()),
            ("3MVG9", "s3cret")
        );
    }

    #[test]
    fn jwt_bearer_with_audience_and_version() {
        let c = config(&with(&[
            (USERNAME, "integration@acme.example"),
            (PRIVATE_KEY, KEY),
            (JWT_AUDIENCE, "https://test.salesforce.com"),
            (API_VERSION, "61.0"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.api_version, "61.0");
        let Auth::JwtBearer {
            client_id,
            username,
            audience,
            private_key_pem,
        } = &c.auth
        else {
            panic!("{:?}", c.auth)
        };
        assert_eq!(client_id, "3MVG9");
        assert_eq!(username, "integration@acme.example");
        assert_eq!(audience, "https://test.salesforce.com");
        assert_eq!(private_key_pem, KEY);

        // Without an audience: the one the login URL implies.
        let c = config(&with(&[(USERNAME, "u"), (PRIVATE_KEY, KEY)]))
            .unwrap()
            .unwrap();
        assert!(
            matches!(&c.auth, Auth::JwtBearer { audience, .. } if audience == "https://login.salesforce.com")
        );
    }

    #[test]
    fn the_key_file_is_read_when_the_config_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sf.key");
        std::fs::write(&path, KEY).unwrap();
        let path_str = path.to_str().unwrap().to_owned();
        let map: HashMap<&str, String> = [
            (LOGIN_URL, "http://127.0.0.1:8787".to_owned()),
            (CLIENT_ID, "id".to_owned()),
            (USERNAME, "u".to_owned()),
            (PRIVATE_KEY_FILE, path_str),
        ]
        .into_iter()
        .collect();
        let get = |k: &str| map.get(k).cloned();
        let s = SalesforceSettings::from_lookup(&get).unwrap().unwrap();
        assert_eq!(s.credential, Credential::PrivateKeyFile(path.clone()));
        let c = s.clone().into_config().unwrap();
        assert!(
            matches!(&c.auth, Auth::JwtBearer { private_key_pem, .. } if private_key_pem == KEY)
        );

        std::fs::remove_file(&path).unwrap();
        let err = s.into_config().unwrap_err();
        assert!(matches!(err, SfConfigError::ReadKeyFile { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("SALESFORCE_PRIVATE_KEY_FILE: reading "),
            "{text}"
        );
        assert!(text.contains("sf.key"), "{text}");
        assert!(std::error::Error::source(&err).is_some());

        std::fs::write(&path, "not a key").unwrap();
        let s = SalesforceSettings::from_lookup(&get).unwrap().unwrap();
        let err = s.into_config().unwrap_err();
        assert!(
            err.to_string().starts_with("SALESFORCE_PRIVATE_KEY_FILE: "),
            "{err}"
        );
    }

    #[test]
    fn a_key_in_the_environment_wins() {
        let s = settings(&with(&[
            (USERNAME, "u"),
            (PRIVATE_KEY, KEY),
            (PRIVATE_KEY_FILE, "/nope"),
            (CLIENT_SECRET, "s"),
            (SECRET_ARN, "arn:aws:secretsmanager:eu-west-1:1:secret:sf"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.credential, Credential::PrivateKeyPem(KEY.into()));
        let s = settings(&with(&[
            (USERNAME, "u"),
            (PRIVATE_KEY_FILE, "/k.pem"),
            (CLIENT_SECRET, "s"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.credential, Credential::PrivateKeyFile("/k.pem".into()));
        let s = settings(&with(&[(CLIENT_SECRET, "s"), (SECRET_ARN, "arn")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.credential, Credential::ClientSecret("s".into()));
        assert_eq!(s.secret_ref(), None);
    }

    #[test]
    fn a_secret_arn_names_the_field_to_read() {
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:sf";
        let s = settings(&with(&[(SECRET_ARN, arn), (USERNAME, "u")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.secret_ref(), Some((arn, "private_key")));
        assert!(matches!(
            s.clone().into_config(),
            Err(SfConfigError::Unresolved)
        ));
        let c = s.with_secret(KEY.into()).into_config().unwrap();
        assert!(matches!(c.auth, Auth::JwtBearer { .. }));

        let s = settings(&with(&[(SECRET_ARN, arn)])).unwrap().unwrap();
        assert_eq!(s.secret_ref(), Some((arn, "client_secret")));
        let c = s.with_secret("cs".into()).into_config().unwrap();
        assert!(
            matches!(&c.auth, Auth::ClientCredentials { client_secret, .. } if client_secret == "cs")
        );
        assert!(matches!(
            config(&with(&[(SECRET_ARN, arn)])),
            Err(SfConfigError::Unresolved)
        ));
    }

    #[test]
    fn what_is_missing_is_named() {
        let missing = |vars: &[(&str, &str)]| match settings(vars) {
            Err(SfConfigError::Missing(v)) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(missing(&[(CLIENT_SECRET, "s")]), LOGIN_URL);
        assert_eq!(
            missing(&[(LOGIN_URL, "https://login.salesforce.com")]),
            CLIENT_ID
        );
        assert_eq!(missing(&with(&[(PRIVATE_KEY, KEY)])), USERNAME);
        assert_eq!(missing(&with(&[(PRIVATE_KEY_FILE, "/k")])), USERNAME);
        assert!(matches!(
            settings(&with(&[(USERNAME, "u")])),
            Err(SfConfigError::NoCredential)
        ));
        // What `from_env` has always said when nothing is set.
        assert_eq!(
            SfError::from(SfConfigError::Missing(LOGIN_URL)).to_string(),
            "auth: SALESFORCE_LOGIN_URL is not set"
        );
    }

    #[test]
    fn unparseable_values_name_the_variable_not_the_value() {
        let invalid = |vars: &[(&str, &str)]| match settings(vars) {
            Err(e @ SfConfigError::Invalid { .. }) => {
                let SfConfigError::Invalid { var, .. } = &e else {
                    unreachable!()
                };
                (*var, e.to_string())
            }
            other => panic!("{other:?}"),
        };
        for bad in ["s3cret-not-a-url", "ftp://s3cret.example", "https://"] {
            let (var, text) = invalid(&[(LOGIN_URL, bad), (CLIENT_ID, "id"), (CLIENT_SECRET, "x")]);
            assert_eq!(var, LOGIN_URL);
            assert!(!text.contains("s3cret"), "{text}");
        }
        let (var, _) = invalid(&with(&[(CLIENT_SECRET, "x"), (API_VERSION, "v66")]));
        assert_eq!(var, API_VERSION);
        let (var, _) = invalid(&with(&[(CLIENT_SECRET, "x"), (JWT_AUDIENCE, "login")]));
        assert_eq!(var, JWT_AUDIENCE);
        let (var, text) = invalid(&with(&[
            (USERNAME, "u"),
            (
                PRIVATE_KEY,
                "-----BEGIN PRIVATE KEY-----\ns3cret\n-----END PRIVATE KEY-----",
            ),
        ]));
        assert_eq!(var, PRIVATE_KEY);
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn debug_hides_the_credential() {
        let s = settings(&with(&[(CLIENT_SECRET, "s3cret")]))
            .unwrap()
            .unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
        let s = settings(&with(&[(USERNAME, "u"), (PRIVATE_KEY, KEY)]))
            .unwrap()
            .unwrap();
        assert!(!format!("{s:?}").contains("PRIVATE KEY"));
    }
}
