//! Builds the adapters from the environment, for the Lambda mains.
//!
//! Each adapter is chosen by its own variable; unset means the embedded one
//! (files under `FIELDGATE_DATA_DIR`), which is right for `cargo lambda
//! watch` on one machine. In AWS (`FIELDGATE_TABLE` set) nothing falls back
//! to local files: an adapter a function is not configured for fails loudly
//! when used, and the keys come from Secrets Manager.
//!
//! | variable | adapter | cargo feature |
//! |---|---|---|
//! | `FIELDGATE_TABLE` | DynamoDB store | `aws-dynamodb` |
//! | `FIELDGATE_PHOTO_BUCKET` (+ `FIELDGATE_S3_PATH_STYLE=1` for moto) | S3 photos | `aws-s3` |
//! | `FIELDGATE_MAIL_FROM` (+ `FIELDGATE_SES_CONFIGURATION_SET`) | SES v2 review mail | `aws-ses` |
//! | `FIELDGATE_HANDOFF_TOPIC` | SNS handoff | `aws-sns` |
//! | `SALESFORCE_SECRET_ARN` (instead of `SALESFORCE_CLIENT_SECRET`) | Salesforce client secret | `aws-secrets` |
//! | `FIELDGATE_KEYS_SECRET_ARN` (instead of `FIELDGATE_DATA_DIR/keys.json`) | QR and link keys | `aws-secrets` |

use crate::domain::{CsrfKey, QrKeyring, Workflows};
use crate::embedded::{EmbeddedStore, FileMedia, HandoffLog, Outbox};
use crate::ports::{
    AssetDirectory, HandoffMessage, HandoffPublisher, MediaStore, NotifyError, ProposalStore,
    PublishError, ReviewMail, ReviewNotifier,
};
use crate::salesforce::{CachedDirectory, SalesforceAssets, SalesforceClient, SalesforceConfig};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(String),
}

/// The deployment's secrets: QR signing keys and the key for form and
/// status-link tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Keys {
    pub qr: QrKeyring,
    pub links: CsrfKey,
}

impl Keys {
    /// Loads `path`, or creates it with fresh random keys (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<Keys, WiringError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| WiringError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Keys {
                    qr: QrKeyring::generate("k1"),
                    links: CsrfKey::generate(),
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| WiringError::Invalid(e.to_string()))?;
                }
                let bytes = serde_json::to_vec_pretty(&keys).expect("keys serialize");
                crate::embedded::write_atomic(path, &bytes)
                    .map_err(|e| WiringError::Invalid(e.to_string()))?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
                }
                Ok(keys)
            }
            Err(e) => Err(WiringError::Invalid(format!("{}: {e}", path.display()))),
        }
    }
}

/// What a function needs beyond the store, media, mail and handoff: the
/// Salesforce client and the QR/link keys are read from secrets, so only
/// the functions that use them ask for them (and have the IAM permission).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub salesforce: bool,
    pub keys: bool,
}

impl Needs {
    pub const ALL: Needs = Needs {
        salesforce: true,
        keys: true,
    };
}

pub struct Env {
    pub store: Arc<dyn ProposalStore>,
    pub media: Arc<dyn MediaStore>,
    pub notifier: Arc<dyn ReviewNotifier>,
    pub handoff: Arc<dyn HandoffPublisher>,
    pub workflows: Arc<Workflows>,
    pub public_url: String,
    salesforce: Option<Arc<SalesforceClient>>,
    assets: Option<Arc<dyn AssetDirectory>>,
    keys: Option<Keys>,
}

fn var(name: &'static str) -> Result<String, WiringError> {
    std::env::var(name).map_err(|_| WiringError::Missing(name))
}

fn opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Stands in for an adapter this function was not configured with (in AWS,
/// where a silent fallback to local files would lose data).
struct Unconfigured(&'static str);

#[async_trait]
impl ReviewNotifier for Unconfigured {
    async fn send(&self, _: &ReviewMail) -> Result<(), NotifyError> {
        Err(NotifyError(format!("no mail configured: set {}", self.0)))
    }
}

#[async_trait]
impl HandoffPublisher for Unconfigured {
    async fn publish(&self, _: &HandoffMessage) -> Result<(), PublishError> {
        Err(PublishError(format!(
            "no handoff configured: set {}",
            self.0
        )))
    }
}

#[cfg(any(
    feature = "aws-dynamodb",
    feature = "aws-s3",
    feature = "aws-sns",
    feature = "aws-ses",
    feature = "aws-secrets"
))]
type Sdk = Option<aws_config::SdkConfig>;
#[cfg(not(any(
    feature = "aws-dynamodb",
    feature = "aws-s3",
    feature = "aws-sns",
    feature = "aws-ses",
    feature = "aws-secrets"
)))]
type Sdk = ();

/// The SDK configuration, loaded on first use and once only.
#[cfg(any(
    feature = "aws-dynamodb",
    feature = "aws-s3",
    feature = "aws-sns",
    feature = "aws-ses",
    feature = "aws-secrets"
))]
async fn sdk(cell: &mut Sdk) -> &aws_config::SdkConfig {
    if cell.is_none() {
        *cell = Some(crate::aws::sdk_config().await);
    }
    cell.as_ref().expect("just set")
}

#[allow(dead_code)] // unused when every feature is on
fn without(feature: &str, var: &str) -> WiringError {
    WiringError::Invalid(format!(
        "{var} is set but this binary was built without the `{feature}` feature"
    ))
}

#[allow(unused_variables)]
async fn dynamodb_store(
    table: &str,
    cell: &mut Sdk,
) -> Result<Arc<dyn ProposalStore>, WiringError> {
    #[cfg(feature = "aws-dynamodb")]
    {
        let client = aws_sdk_dynamodb::Client::new(sdk(cell).await);
        Ok(Arc::new(crate::aws::dynamodb::DynamoStore::new(
            client, table,
        )))
    }
    #[cfg(not(feature = "aws-dynamodb"))]
    Err(without("aws-dynamodb", "FIELDGATE_TABLE"))
}

#[allow(unused_variables)]
async fn s3_media(bucket: &str, cell: &mut Sdk) -> Result<Arc<dyn MediaStore>, WiringError> {
    #[cfg(feature = "aws-s3")]
    {
        let path_style = matches!(
            opt("FIELDGATE_S3_PATH_STYLE").as_deref(),
            Some("1" | "true")
        );
        let client = crate::aws::s3::S3Media::client(sdk(cell).await, path_style);
        Ok(Arc::new(crate::aws::s3::S3Media::new(client, bucket, "")))
    }
    #[cfg(not(feature = "aws-s3"))]
    Err(without("aws-s3", "FIELDGATE_PHOTO_BUCKET"))
}

#[allow(unused_variables)]
async fn ses_notifier(from: &str, cell: &mut Sdk) -> Result<Arc<dyn ReviewNotifier>, WiringError> {
    #[cfg(feature = "aws-ses")]
    {
        let client = aws_sdk_sesv2::Client::new(sdk(cell).await);
        Ok(Arc::new(crate::aws::ses::SesNotifier::new(
            client,
            from,
            opt("FIELDGATE_SES_CONFIGURATION_SET"),
        )))
    }
    #[cfg(not(feature = "aws-ses"))]
    Err(without("aws-ses", "FIELDGATE_MAIL_FROM"))
}

#[allow(unused_variables)]
async fn sns_handoff(
    topic: &str,
    cell: &mut Sdk,
) -> Result<Arc<dyn HandoffPublisher>, WiringError> {
    #[cfg(feature = "aws-sns")]
    {
        let client = aws_sdk_sns::Client::new(sdk(cell).await);
        Ok(Arc::new(crate::aws::sns::SnsHandoff::new(client, topic)))
    }
    #[cfg(not(feature = "aws-sns"))]
    Err(without("aws-sns", "FIELDGATE_HANDOFF_TOPIC"))
}

/// Reads a secret (the whole value, or `field` of a JSON value). The value
/// is only ever handed on, never logged.
#[allow(unused_variables)]
async fn secret(
    var: &'static str,
    id: &str,
    field: Option<&str>,
    cell: &mut Sdk,
) -> Result<String, WiringError> {
    #[cfg(feature = "aws-secrets")]
    {
        let client = aws_sdk_secretsmanager::Client::new(sdk(cell).await);
        crate::aws::secrets::read_secret(&client, id, field)
            .await
            .map(|v| v.expose().to_owned())
            .map_err(|e| WiringError::Invalid(e.to_string()))
    }
    #[cfg(not(feature = "aws-secrets"))]
    Err(without("aws-secrets", var))
}

/// The deployment's reviewers (`FIELDGATE_REVIEWERS`, comma-separated)
/// replace those of every workflow: the template sets them as a parameter.
fn with_reviewers(workflows: &Workflows, list: &str) -> Result<Workflows, WiringError> {
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
        return Err(WiringError::Invalid(
            "FIELDGATE_REVIEWERS: a comma-separated list of mail addresses".into(),
        ));
    }
    Ok(Workflows::from_workflows(
        workflows
            .iter()
            .map(|w| {
                let mut w = (**w).clone();
                w.reviewers = reviewers.clone();
                w
            })
            .collect(),
    ))
}

impl Env {
    /// Everything, for one process running all steps.
    pub async fn from_env() -> Result<Env, WiringError> {
        Self::load(Needs::ALL).await
    }

    pub async fn load(needs: Needs) -> Result<Env, WiringError> {
        let dir = PathBuf::from(
            std::env::var("FIELDGATE_DATA_DIR").unwrap_or_else(|_| "/tmp/fieldgate".into()),
        );
        let io = |e: std::io::Error| WiringError::Invalid(e.to_string());
        #[allow(clippy::let_unit_value, unused_mut)]
        let mut cell: Sdk = Default::default();
        let table = opt("FIELDGATE_TABLE");
        let in_aws = table.is_some();
        let workflows = match std::env::var("FIELDGATE_WORKFLOWS_DIR") {
            Ok(d) => Workflows::load_dir(Path::new(&d))
                .map_err(|e| WiringError::Invalid(e.to_string()))?,
            Err(_) => Workflows::builtin(),
        };
        let workflows = match opt("FIELDGATE_REVIEWERS") {
            Some(list) => with_reviewers(&workflows, &list)?,
            None => workflows,
        };
        let keys = if !needs.keys {
            None
        } else if let Some(id) = opt("FIELDGATE_KEYS_SECRET_ARN") {
            let json = secret("FIELDGATE_KEYS_SECRET_ARN", &id, None, &mut cell).await?;
            Some(serde_json::from_str(&json).map_err(|e| {
                // Not the value: serde's message names only a position.
                WiringError::Invalid(format!(
                    "FIELDGATE_KEYS_SECRET_ARN: not a keys document: {e}"
                ))
            })?)
        } else if in_aws {
            // Random keys per container would break every QR code and form.
            return Err(WiringError::Missing("FIELDGATE_KEYS_SECRET_ARN"));
        } else {
            Some(Keys::load_or_create(&dir.join("keys.json"))?)
        };
        let store: Arc<dyn ProposalStore> = match &table {
            Some(t) => dynamodb_store(t, &mut cell).await?,
            None => Arc::new(EmbeddedStore::open(&dir).map_err(io)?),
        };
        let media: Arc<dyn MediaStore> = match opt("FIELDGATE_PHOTO_BUCKET") {
            Some(b) => s3_media(&b, &mut cell).await?,
            None if in_aws => return Err(WiringError::Missing("FIELDGATE_PHOTO_BUCKET")),
            None => Arc::new(FileMedia::open(&dir).map_err(io)?),
        };
        let notifier: Arc<dyn ReviewNotifier> = match opt("FIELDGATE_MAIL_FROM") {
            Some(from) => ses_notifier(&from, &mut cell).await?,
            None if in_aws => Arc::new(Unconfigured("FIELDGATE_MAIL_FROM")),
            None => Arc::new(Outbox::open(Some(&dir)).map_err(io)?),
        };
        let handoff: Arc<dyn HandoffPublisher> = match opt("FIELDGATE_HANDOFF_TOPIC") {
            Some(topic) => sns_handoff(&topic, &mut cell).await?,
            None if in_aws => Arc::new(Unconfigured("FIELDGATE_HANDOFF_TOPIC")),
            None => Arc::new(HandoffLog::open(Some(&dir)).map_err(io)?),
        };
        let (salesforce, assets) = if needs.salesforce {
            // Keys in the environment (dev, `cargo lambda watch`) win; in AWS
            // the secret holds `private_key` (JWT bearer, when a username is
            // configured) or `client_secret` (client credentials).
            let local = [
                "SALESFORCE_PRIVATE_KEY",
                "SALESFORCE_PRIVATE_KEY_FILE",
                "SALESFORCE_CLIENT_SECRET",
            ]
            .iter()
            .any(|k| opt(k).is_some());
            let mut sf = match (local, opt("SALESFORCE_SECRET_ARN")) {
                (false, Some(id)) => {
                    let login = var("SALESFORCE_LOGIN_URL")?;
                    let client_id = var("SALESFORCE_CLIENT_ID")?;
                    match opt("SALESFORCE_USERNAME") {
                        Some(user) => {
                            let pem = secret(
                                "SALESFORCE_SECRET_ARN",
                                &id,
                                Some("private_key"),
                                &mut cell,
                            )
                            .await?;
                            SalesforceConfig::jwt_bearer(&login, &client_id, &user, &pem)
                        }
                        None => {
                            let cs = secret(
                                "SALESFORCE_SECRET_ARN",
                                &id,
                                Some("client_secret"),
                                &mut cell,
                            )
                            .await?;
                            SalesforceConfig::client_credentials(&login, &client_id, &cs)
                        }
                    }
                }
                _ => {
                    SalesforceConfig::from_env().map_err(|e| WiringError::Invalid(e.to_string()))?
                }
            };
            if let Some(v) = opt("SALESFORCE_API_VERSION") {
                sf.api_version = v;
            }
            let salesforce = Arc::new(
                SalesforceClient::new(sf).map_err(|e| WiringError::Invalid(e.to_string()))?,
            );
            let assets: Arc<dyn AssetDirectory> = Arc::new(CachedDirectory {
                inner: SalesforceAssets(salesforce.clone()),
                store: store.clone(),
                ttl: time::Duration::hours(1),
            });
            (Some(salesforce), Some(assets))
        } else {
            (None, None)
        };
        Ok(Env {
            store,
            media,
            notifier,
            handoff,
            workflows: Arc::new(workflows),
            public_url: var("FIELDGATE_PUBLIC_URL")?,
            salesforce,
            assets,
            keys,
        })
    }

    fn not_loaded(what: &str) -> WiringError {
        WiringError::Invalid(format!("{what} was not asked for in Needs"))
    }

    pub fn salesforce(&self) -> Result<Arc<SalesforceClient>, WiringError> {
        self.salesforce
            .clone()
            .ok_or_else(|| Self::not_loaded("salesforce"))
    }

    pub fn assets(&self) -> Result<Arc<dyn AssetDirectory>, WiringError> {
        self.assets
            .clone()
            .ok_or_else(|| Self::not_loaded("assets"))
    }

    pub fn qr(&self) -> Result<Arc<QrKeyring>, WiringError> {
        self.keys
            .as_ref()
            .map(|k| Arc::new(k.qr.clone()))
            .ok_or_else(|| Self::not_loaded("keys"))
    }

    pub fn links(&self) -> Result<Arc<CsrfKey>, WiringError> {
        self.keys
            .as_ref()
            .map(|k| Arc::new(k.links.clone()))
            .ok_or_else(|| Self::not_loaded("keys"))
    }
}
