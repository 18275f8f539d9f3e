//! The deployment's configuration, parsed once from a variable lookup into
//! typed parts, one per concern. Nothing else in the code base reads the
//! process environment: the Lambda mains and the CLI pass
//! [`Config::from_env`], tests pass a map.
//!
//! A variable that is set but cannot be used (not a number, not a URL, a
//! feature this binary was not built with) is an error naming the
//! variable, never silently ignored. Error texts never quote a value: some
//! of these variables hold secrets.
//!
//! | variable | part | meaning |
//! |---|---|---|
//! | `FIELDGATE_DATA_DIR` | embedded | where embedded adapters keep state (default `/tmp/fieldgate`) |
//! | `FIELDGATE_TABLE` | store | DynamoDB table; set = running in AWS, nothing falls back to files |
//! | `FIELDGATE_PHOTO_BUCKET`, `FIELDGATE_S3_PATH_STYLE` | media | S3 bucket for photos (path style for moto) |
//! | `FIELDGATE_MAIL_FROM`, `FIELDGATE_SES_CONFIGURATION_SET` | mail | SES v2 sender of review mail |
//! | `FIELDGATE_SMTP_URL` | mail | review mail over SMTP (`fieldgate serve`): `smtp://` STARTTLS, `smtps://` TLS, `?tls=none` plain (local test servers); `user:password@` to sign in; with `FIELDGATE_MAIL_FROM` as the sender; `FIELDGATE_SMTP_CA_FILE`: PEM certificates to trust beside the platform's roots |
//! | `FIELDGATE_HANDOFF_TOPIC` | handoff | SNS topic ARN |
//! | `FIELDGATE_HANDOFF_WEBHOOK_URL`, `FIELDGATE_HANDOFF_WEBHOOK_SECRET` | webhook | every handoff also POSTed there, signed with HMAC-SHA256 of the secret (`fieldgate serve`) |
//! | `SALESFORCE_*` | salesforce | see [`SalesforceSource`] |
//! | `FIELDGATE_KEYS_SECRET_ARN` | keys | QR and link keys from Secrets Manager (else `keys.json` in the data dir) |
//! | `FIELDGATE_WORKFLOWS_DIR` | workflows | every `*.toml` in it (else the built-in workflow) |
//! | `FIELDGATE_REVIEWERS` | workflows | comma-separated addresses replacing every workflow's reviewers |
//! | `FIELDGATE_PUBLIC_URL` | public URL | base of links in mail (steps that mail links need it); `https://` turns HSTS on |
//! | `FIELDGATE_HSTS` | web | HSTS on every response even without an https public URL (behind API Gateway, always https) |
//! | `ANTHROPIC_API_KEY`, `FIELDGATE_ANTHROPIC_URL`, `FIELDGATE_ANTHROPIC_MODEL` | structurers | Claude |
//! | `FIELDGATE_OPENAI_URL`, `FIELDGATE_OPENAI_MODEL`, `FIELDGATE_OPENAI_API_KEY` | structurers | an OpenAI-compatible server |
//! | `FIELDGATE_BEDROCK_MODEL` | structurers | Claude on Bedrock (feature `bedrock`) |
//! | `FIELDGATE_LLM_TIMEOUT_SECS`, `FIELDGATE_LLM_MAX_TOKENS` | structurers | per call |
//! | `FIELDGATE_STRUCTURER` | structurers | the model that replaces `rules` as a workflow's choice |

use crate::domain::StructurerKind;
use crate::salesforce::{SalesforceSettings, SfConfigError};
use crate::structuring::anthropic::{self, AnthropicConfig};
use crate::structuring::openai::OpenAiConfig;
use std::path::PathBuf;
use std::time::Duration;

/// A variable lookup: `std::env::var` in a process, a map in a test.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `SALESFORCE_*` (parsed by [`SalesforceSettings::from_lookup`]).
    #[error(transparent)]
    Salesforce(#[from] SfConfigError),
    #[error("{var} is required {why}")]
    Missing {
        var: &'static str,
        why: &'static str,
    },
    /// The value is never part of the message.
    #[error("{var}: {problem}")]
    Invalid { var: &'static str, problem: String },
    #[error("{var} is set but this binary was built without the `{feature}` feature")]
    NotBuiltWith {
        var: &'static str,
        feature: &'static str,
    },
}

fn invalid(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        problem: problem.into(),
    }
}

/// Reads variables: unset and blank are the same thing.
struct Vars<'a>(Lookup<'a>);

impl Vars<'_> {
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self
            .get(var)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("0" | "false" | "no") => Ok(false),
            Some("1" | "true" | "yes") => Ok(true),
            Some(_) => Err(invalid(var, "expected 1/true/yes or 0/false/no")),
        }
    }

    fn number<T: std::str::FromStr>(&self, var: &'static str) -> Result<Option<T>, ConfigError> {
        self.get(var)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| invalid(var, "expected a whole number"))
            })
            .transpose()
    }

    fn url(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        self.get(var)
            .map(|v| {
                let v = v.trim().trim_end_matches('/').to_owned();
                match url::Url::parse(&v) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(v),
                    _ => Err(invalid(var, "expected an http(s) URL")),
                }
            })
            .transpose()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Files under the data directory (`fieldgate dev`, `cargo lambda watch`).
    Embedded,
    Dynamo {
        table: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaConfig {
    Files,
    S3 { bucket: String, path_style: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailConfig {
    /// JSON lines in the data directory (`/dev/outbox`).
    Outbox,
    /// An SMTP server (`fieldgate serve`).
    Smtp { server: SmtpServer, from: String },
    Ses {
        from: String,
        configuration_set: Option<String>,
    },
    /// In AWS without a sender: sending fails loudly, naming the variable.
    Unconfigured,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtp://`: plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Wrapper,
    /// `smtp://…?tls=none`: no TLS at all, only when asked for (a local
    /// test server); never with a password to another machine.
    None,
}

/// `FIELDGATE_SMTP_URL`, parsed. The password never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `FIELDGATE_SMTP_CA_FILE`: PEM certificates trusted beside the
    /// platform's roots (a company CA, a test server's).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl SmtpServer {
    /// Parses an SMTP URL; problems never quote it (it can hold a password).
    pub fn parse(value: &str) -> Result<SmtpServer, ConfigError> {
        const VAR: &str = "FIELDGATE_SMTP_URL";
        let u = url::Url::parse(value.trim())
            .map_err(|_| invalid(VAR, "expected smtp://, smtps:// or smtp://…?tls=none"))?;
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid(VAR, "has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let asked = u
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let tls = match (u.scheme(), asked.as_deref()) {
            ("smtp", None | Some("starttls" | "required")) => SmtpTls::StartTls,
            ("smtp", Some("none")) => SmtpTls::None,
            ("smtps", None) => SmtpTls::Wrapper,
            ("smtp" | "smtps", Some(_)) => {
                return Err(invalid(VAR, "tls= must be starttls or none"));
            }
            _ => return Err(invalid(VAR, "expected smtp:// or smtps://")),
        };
        // Percent-decoding only (`+` stays `+`, unlike form decoding).
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let username = Some(decode(u.username())).filter(|s| !s.is_empty());
        let password = u.password().map(decode);
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if tls == SmtpTls::None && password.is_some() && !loopback {
            return Err(invalid(
                VAR,
                "a password over a connection without TLS to another machine; use smtp:// (STARTTLS) or smtps://",
            ));
        }
        if username.is_some() != password.is_some() {
            return Err(invalid(VAR, "give both user and password, or neither"));
        }
        let port = u.port().unwrap_or(match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Wrapper => 465,
            SmtpTls::None => 25,
        });
        Ok(SmtpServer {
            host,
            port,
            tls,
            username,
            password,
            ca_file: None,
        })
    }
}

/// Where handoffs are also POSTed (a pilot has no SNS). The secret never
/// shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"…")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffConfig {
    Log,
    Sns { topic: String },
    Unconfigured,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysConfig {
    /// `keys.json` in the data directory, created on first use.
    File(PathBuf),
    SecretsManager {
        secret_id: String,
    },
    /// In AWS without `FIELDGATE_KEYS_SECRET_ARN`: steps that sign or check
    /// links cannot be built (random keys per container would break every
    /// QR code and form).
    Unconfigured,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowsConfig {
    Builtin,
    Dir(PathBuf),
}

/// The model structurers the deployment has. A workflow that asks for one
/// that is not here gets the rules structurer, recorded as a fallback.
#[derive(Debug, Clone, Default)]
pub struct StructurerConfig {
    pub claude: Option<AnthropicConfig>,
    pub openai: Option<OpenAiConfig>,
    /// Bedrock model id (feature `bedrock`).
    pub bedrock_model: Option<String>,
    /// Replaces `rules` as a workflow's choice: an explicit deployment
    /// decision, since notes then leave the account.
    pub replace_rules: Option<StructurerKind>,
}

impl StructurerConfig {
    /// Only the structurer variables (`fieldgate dev` takes nothing else
    /// from the environment).
    pub fn from_lookup(get: Lookup) -> Result<Self, ConfigError> {
        Self::parse(&Vars(get))
    }

    fn parse(v: &Vars) -> Result<Self, ConfigError> {
        let timeout = v
            .number::<u64>("FIELDGATE_LLM_TIMEOUT_SECS")?
            .map(Duration::from_secs);
        let max_tokens = v.number::<u32>("FIELDGATE_LLM_MAX_TOKENS")?;
        let claude = match v.get("ANTHROPIC_API_KEY") {
            Some(key) => {
                let url = v
                    .url("FIELDGATE_ANTHROPIC_URL")?
                    .unwrap_or_else(|| anthropic::DEFAULT_URL.into());
                let model = v
                    .get("FIELDGATE_ANTHROPIC_MODEL")
                    .unwrap_or_else(|| anthropic::DEFAULT_MODEL.into());
                let mut c = AnthropicConfig::new(&url, &key, &model);
                c.timeout = timeout.unwrap_or(c.timeout);
                c.max_tokens = max_tokens.unwrap_or(c.max_tokens);
                Some(c)
            }
            None => None,
        };
        let openai = match v.url("FIELDGATE_OPENAI_URL")? {
            Some(url) => {
                let model = v
                    .get("FIELDGATE_OPENAI_MODEL")
                    .unwrap_or_else(|| "local".into());
                let mut c = OpenAiConfig::new(&url, &model);
                c.api_key = v.get("FIELDGATE_OPENAI_API_KEY");
                c.timeout = timeout.unwrap_or(c.timeout);
                c.max_tokens = max_tokens.unwrap_or(c.max_tokens);
                Some(c)
            }
            None => None,
        };
        let bedrock_model = v.get("FIELDGATE_BEDROCK_MODEL");
        if bedrock_model.is_some() && !cfg!(feature = "bedrock") {
            return Err(ConfigError::NotBuiltWith {
                var: "FIELDGATE_BEDROCK_MODEL",
                feature: "bedrock",
            });
        }
        const VAR: &str = "FIELDGATE_STRUCTURER";
        let replace_rules = match v.get(VAR).map(|s| s.trim().to_lowercase()).as_deref() {
            None | Some("rules") => None,
            Some("claude") if claude.is_some() => Some(StructurerKind::Claude),
            Some("openai") if openai.is_some() => Some(StructurerKind::Openai),
            Some("bedrock") if bedrock_model.is_some() => Some(StructurerKind::Bedrock),
            Some("claude" | "openai" | "bedrock") => {
                return Err(invalid(
                    VAR,
                    "names a structurer that is not configured (set its key, URL or model too)",
                ));
            }
            Some(_) => return Err(invalid(VAR, "expected rules, claude, openai or bedrock")),
        };
        Ok(Self {
            claude,
            openai,
            bedrock_model,
            replace_rules,
        })
    }
}

/// Everything a deployment configures.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub media: MediaConfig,
    pub mail: MailConfig,
    pub handoff: HandoffConfig,
    /// `None`: no `SALESFORCE_*` at all; steps that need Salesforce cannot
    /// be built. See [`SalesforceSettings`] for the variables.
    pub salesforce: Option<SalesforceSettings>,
    pub keys: KeysConfig,
    pub workflows: WorkflowsConfig,
    pub reviewers: Option<Vec<String>>,
    pub structurers: StructurerConfig,
    /// Base of the links in mail; only the steps that mail links need it.
    pub public_url: Option<String>,
    /// `FIELDGATE_HSTS`: send HSTS whatever the public URL says.
    pub hsts: bool,
    /// `FIELDGATE_HANDOFF_WEBHOOK_*`: one machine's handoff, relayed from
    /// the handoff log.
    pub webhook: Option<WebhookConfig>,
    /// `FIELDGATE_ADMIN_TOKEN_HASH`: the `/admin` page's credential; `None`:
    /// no admin page at all.
    pub admin: Option<crate::admin::AdminCredential>,
}

impl Config {
    /// From the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: Lookup) -> Result<Config, ConfigError> {
        let v = Vars(get);
        let data_dir = PathBuf::from(
            v.get("FIELDGATE_DATA_DIR")
                .unwrap_or_else(|| "/tmp/fieldgate".into()),
        );
        let table = v.get("FIELDGATE_TABLE");
        let in_aws = table.is_some();
        let store = match table {
            Some(table) => {
                if !cfg!(feature = "aws-dynamodb") {
                    return Err(ConfigError::NotBuiltWith {
                        var: "FIELDGATE_TABLE",
                        feature: "aws-dynamodb",
                    });
                }
                StoreConfig::Dynamo { table }
            }
            None => StoreConfig::Embedded,
        };
        let path_style = v.flag("FIELDGATE_S3_PATH_STYLE")?;
        let media = match v.get("FIELDGATE_PHOTO_BUCKET") {
            Some(bucket) => MediaConfig::S3 { bucket, path_style },
            None if in_aws => {
                return Err(ConfigError::Missing {
                    var: "FIELDGATE_PHOTO_BUCKET",
                    why: "when FIELDGATE_TABLE is set (photos never fall back to local files in AWS)",
                });
            }
            None => MediaConfig::Files,
        };
        let from = v.get("FIELDGATE_MAIL_FROM");
        if let Some(from) = &from
            && (!from.contains('@') || from.chars().any(char::is_whitespace))
        {
            return Err(invalid("FIELDGATE_MAIL_FROM", "expected a mail address"));
        }
        let mail = match (v.get("FIELDGATE_SMTP_URL"), from) {
            (Some(url), from) => MailConfig::Smtp {
                // The URL's own problems first: they are the likelier typo.
                server: SmtpServer {
                    ca_file: v.get("FIELDGATE_SMTP_CA_FILE").map(Into::into),
                    ..SmtpServer::parse(&url)?
                },
                from: from.ok_or(ConfigError::Missing {
                    var: "FIELDGATE_MAIL_FROM",
                    why: "with FIELDGATE_SMTP_URL (the sender of review mail)",
                })?,
            },
            (None, Some(from)) => MailConfig::Ses {
                from,
                configuration_set: v.get("FIELDGATE_SES_CONFIGURATION_SET"),
            },
            (None, None) if in_aws => MailConfig::Unconfigured,
            (None, None) => MailConfig::Outbox,
        };
        let webhook = match (
            v.url("FIELDGATE_HANDOFF_WEBHOOK_URL")?,
            v.get("FIELDGATE_HANDOFF_WEBHOOK_SECRET"),
        ) {
            (Some(url), Some(secret)) => {
                if secret.len() < 16 {
                    return Err(invalid(
                        "FIELDGATE_HANDOFF_WEBHOOK_SECRET",
                        "too short: use at least 16 characters (e.g. `openssl rand -hex 32`)",
                    ));
                }
                Some(WebhookConfig { url, secret })
            }
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: "FIELDGATE_HANDOFF_WEBHOOK_SECRET",
                    why: "with FIELDGATE_HANDOFF_WEBHOOK_URL (the receiver checks the signature)",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: "FIELDGATE_HANDOFF_WEBHOOK_URL",
                    why: "when FIELDGATE_HANDOFF_WEBHOOK_SECRET is set",
                });
            }
            (None, None) => None,
        };
        let handoff = match v.get("FIELDGATE_HANDOFF_TOPIC") {
            Some(topic) => HandoffConfig::Sns { topic },
            None if in_aws => HandoffConfig::Unconfigured,
            None => HandoffConfig::Log,
        };
        let keys = match v.get("FIELDGATE_KEYS_SECRET_ARN") {
            Some(secret_id) => KeysConfig::SecretsManager { secret_id },
            None if in_aws => KeysConfig::Unconfigured,
            None => KeysConfig::File(data_dir.join("keys.json")),
        };
        let workflows = match v.get("FIELDGATE_WORKFLOWS_DIR") {
            Some(d) => WorkflowsConfig::Dir(PathBuf::from(d)),
            None => WorkflowsConfig::Builtin,
        };
        let reviewers = v
            .get("FIELDGATE_REVIEWERS")
            .map(|list| parse_reviewers(&list))
            .transpose()?;
        let config = Config {
            data_dir,
            store,
            media,
            mail,
            handoff,
            salesforce: SalesforceSettings::from_lookup(get)?,
            keys,
            workflows,
            reviewers,
            structurers: StructurerConfig::parse(&v)?,
            public_url: v.url("FIELDGATE_PUBLIC_URL")?,
            hsts: v.flag("FIELDGATE_HSTS")?,
            webhook,
            admin: v
                .get(crate::admin::TOKEN_HASH_VAR)
                .map(|h| {
                    crate::admin::AdminCredential::from_hex(&h)
                        .map_err(|e| invalid(crate::admin::TOKEN_HASH_VAR, e.to_string()))
                })
                .transpose()?,
        };
        config.check_features()?;
        Ok(config)
    }

    /// A part this binary cannot build is an error at start, not at the
    /// first event.
    fn check_features(&self) -> Result<(), ConfigError> {
        let need = |on: bool, var, feature| {
            if on {
                Err(ConfigError::NotBuiltWith { var, feature })
            } else {
                Ok(())
            }
        };
        need(
            matches!(self.media, MediaConfig::S3 { .. }) && !cfg!(feature = "aws-s3"),
            "FIELDGATE_PHOTO_BUCKET",
            "aws-s3",
        )?;
        need(
            matches!(self.mail, MailConfig::Ses { .. }) && !cfg!(feature = "aws-ses"),
            "FIELDGATE_MAIL_FROM",
            "aws-ses",
        )?;
        need(
            matches!(self.mail, MailConfig::Smtp { .. }) && !cfg!(feature = "smtp"),
            "FIELDGATE_SMTP_URL",
            "smtp",
        )?;
        need(
            matches!(self.handoff, HandoffConfig::Sns { .. }) && !cfg!(feature = "aws-sns"),
            "FIELDGATE_HANDOFF_TOPIC",
            "aws-sns",
        )?;
        need(
            matches!(self.keys, KeysConfig::SecretsManager { .. })
                && !cfg!(feature = "aws-secrets"),
            "FIELDGATE_KEYS_SECRET_ARN",
            "aws-secrets",
        )?;
        need(
            self.salesforce
                .as_ref()
                .is_some_and(|s| s.secret_ref().is_some())
                && !cfg!(feature = "aws-secrets"),
            "SALESFORCE_SECRET_ARN",
            "aws-secrets",
        )
    }

    /// The configuration of one machine with embedded adapters in `dir`.
    pub fn embedded(dir: impl Into<PathBuf>) -> Config {
        let data_dir = dir.into();
        Config {
            keys: KeysConfig::File(data_dir.join("keys.json")),
            data_dir,
            store: StoreConfig::Embedded,
            media: MediaConfig::Files,
            mail: MailConfig::Outbox,
            handoff: HandoffConfig::Log,
            salesforce: None,
            workflows: WorkflowsConfig::Builtin,
            reviewers: None,
            structurers: StructurerConfig::default(),
            public_url: None,
            hsts: false,
            webhook: None,
            admin: None,
        }
    }

    pub fn in_aws(&self) -> bool {
        matches!(self.store, StoreConfig::Dynamo { .. })
    }
}

fn parse_reviewers(list: &str) -> Result<Vec<String>, ConfigError> {
    let reviewers: Vec<String> = list
        .split(',')
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    if reviewers.is_empty()
        || reviewers
            .iter()
            .any(|r| !r.contains('@') || r.chars().any(char::is_whitespace))
    {
        return Err(invalid(
            "FIELDGATE_REVIEWERS",
            "expected a comma-separated list of mail addresses",
        ));
    }
    Ok(reviewers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn nothing_set_is_one_machine_with_embedded_parts() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.store, StoreConfig::Embedded);
        assert_eq!(c.media, MediaConfig::Files);
        assert_eq!(c.mail, MailConfig::Outbox);
        assert_eq!(c.handoff, HandoffConfig::Log);
        assert!(c.salesforce.is_none());
        assert_eq!(c.keys, KeysConfig::File("/tmp/fieldgate/keys.json".into()));
        assert_eq!(c.public_url, None);
        // Blank is unset.
        let c = parse(&[("FIELDGATE_TABLE", " "), ("FIELDGATE_PUBLIC_URL", "")]).unwrap();
        assert_eq!(c.store, StoreConfig::Embedded);
    }

    #[test]
    fn unusable_values_name_their_variable_and_never_quote_it() {
        for (var, value) in [
            ("FIELDGATE_PUBLIC_URL", "not a url SECRET-MARKER"),
            ("FIELDGATE_LLM_TIMEOUT_SECS", "ten SECRET-MARKER"),
            ("FIELDGATE_LLM_MAX_TOKENS", "-1 SECRET-MARKER"),
            ("FIELDGATE_S3_PATH_STYLE", "maybe SECRET-MARKER"),
            ("FIELDGATE_REVIEWERS", "nobody SECRET-MARKER"),
            ("FIELDGATE_STRUCTURER", "gpt SECRET-MARKER"),
            ("FIELDGATE_MAIL_FROM", "SECRET-MARKER"),
            ("SALESFORCE_LOGIN_URL", "SECRET-MARKER"),
            ("FIELDGATE_SMTP_URL", "ftp://u:SECRET-MARKER@h"),
            ("FIELDGATE_HANDOFF_WEBHOOK_URL", "SECRET-MARKER"),
        ] {
            let err = parse(&[(var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}: {err}");
            assert!(
                !err.contains("SECRET-MARKER"),
                "{var} quoted its value: {err}"
            );
        }
    }

    #[test]
    fn smtp_urls_say_how_the_connection_is_protected() {
        let p = |u| SmtpServer::parse(u);
        let s = p("smtp://fg%40example.com:p%3Ass@mail.example.com").unwrap();
        assert_eq!((s.tls, s.port), (SmtpTls::StartTls, 587));
        assert_eq!(s.username.as_deref(), Some("fg@example.com"));
        assert_eq!(s.password.as_deref(), Some("p:ss"));
        assert!(
            !format!("{s:?}").contains("p:ss"),
            "Debug shows the password"
        );
        assert_eq!(p("smtps://mail.example.com").unwrap().tls, SmtpTls::Wrapper);
        let s = p("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!((s.tls, s.port), (SmtpTls::None, 2525));
        // A password in the clear to another machine is refused, not sent.
        let err = p("smtp://u:SECRET-MARKER@mail.example.com?tls=none").unwrap_err();
        assert!(err.to_string().contains("without TLS"), "{err}");
        assert!(!err.to_string().contains("SECRET-MARKER"), "{err}");
        assert!(p("smtp://mail.example.com?tls=maybe").is_err());
        // The sender is required with SMTP.
        let err = parse(&[("FIELDGATE_SMTP_URL", "smtp://mail.example.com")]).unwrap_err();
        assert!(err.to_string().starts_with("FIELDGATE_MAIL_FROM"), "{err}");
    }

    #[test]
    fn the_admin_credential_is_a_hash_and_a_bad_one_is_not_echoed() {
        assert!(parse(&[]).unwrap().admin.is_none());
        let hash = "ab".repeat(32);
        let c = parse(&[("FIELDGATE_ADMIN_TOKEN_HASH", hash.as_str())]).unwrap();
        assert_eq!(c.admin.unwrap().to_hex(), hash);
        // A token pasted where its hash belongs.
        let err = parse(&[("FIELDGATE_ADMIN_TOKEN_HASH", "MARKER-the-token-itself")]).unwrap_err();
        assert!(
            err.to_string().starts_with("FIELDGATE_ADMIN_TOKEN_HASH"),
            "{err}"
        );
        assert!(!err.to_string().contains("MARKER"), "{err}");
    }

    #[test]
    fn a_webhook_needs_its_secret() {
        let err = parse(&[(
            "FIELDGATE_HANDOFF_WEBHOOK_URL",
            "https://hooks.example.com/x",
        )])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("FIELDGATE_HANDOFF_WEBHOOK_SECRET"),
            "{err}"
        );
        let c = parse(&[
            (
                "FIELDGATE_HANDOFF_WEBHOOK_URL",
                "https://hooks.example.com/x",
            ),
            (
                "FIELDGATE_HANDOFF_WEBHOOK_SECRET",
                "0123456789abcdef-MARKER",
            ),
        ])
        .unwrap();
        let hook = c.webhook.unwrap();
        assert_eq!(hook.url, "https://hooks.example.com/x");
        assert!(!format!("{hook:?}").contains("MARKER"));
    }

    #[test]
    fn a_structurer_choice_must_be_configured() {
        let err = parse(&[("FIELDGATE_STRUCTURER", "claude")]).unwrap_err();
        assert!(err.to_string().contains("not configured"), "{err}");
        let c = parse(&[
            ("FIELDGATE_STRUCTURER", "Claude"),
            ("ANTHROPIC_API_KEY", "sk-test"),
            ("FIELDGATE_LLM_TIMEOUT_SECS", "7"),
        ])
        .unwrap();
        assert_eq!(c.structurers.replace_rules, Some(StructurerKind::Claude));
        assert_eq!(
            c.structurers.claude.unwrap().timeout,
            Duration::from_secs(7)
        );
        assert!(c.structurers.openai.is_none());
    }

    #[test]
    fn aws_mode_never_falls_back_to_local_files() {
        let err = parse(&[("FIELDGATE_TABLE", "t")]);
        if cfg!(feature = "aws-dynamodb") {
            assert!(matches!(
                err.unwrap_err(),
                ConfigError::Missing {
                    var: "FIELDGATE_PHOTO_BUCKET",
                    ..
                }
            ));
        } else {
            assert!(matches!(
                err.unwrap_err(),
                ConfigError::NotBuiltWith {
                    var: "FIELDGATE_TABLE",
                    ..
                }
            ));
        }
    }

    #[test]
    fn salesforce_secrets_need_the_secrets_feature() {
        let c = parse(&[
            ("SALESFORCE_LOGIN_URL", "https://login.salesforce.com"),
            ("SALESFORCE_CLIENT_ID", "id"),
            ("SALESFORCE_USERNAME", "int@example.com"),
            ("SALESFORCE_SECRET_ARN", "arn:aws:secretsmanager:x"),
        ]);
        if cfg!(feature = "aws-secrets") {
            let sf = c.unwrap().salesforce.unwrap();
            assert_eq!(sf.secret_ref().map(|(_, f)| f), Some("private_key"));
        } else {
            assert!(matches!(
                c,
                Err(ConfigError::NotBuiltWith {
                    var: "SALESFORCE_SECRET_ARN",
                    ..
                })
            ));
        }
        let err = parse(&[("SALESFORCE_LOGIN_URL", "SECRET-MARKER")]).unwrap_err();
        assert!(err.to_string().contains("SALESFORCE_LOGIN_URL"), "{err}");
    }
}
