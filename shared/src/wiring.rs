//! Builds the adapters from the environment, for the Lambda mains.
//!
//! Today every adapter here is an embedded one (files under
//! `FIELDGATE_DATA_DIR`), which is right for `cargo lambda watch` on one
//! machine; the AWS adapters (DynamoDB, SES, SNS, S3) plug in here.

use crate::domain::{CsrfKey, QrKeyring, Workflows};
use crate::embedded::{EmbeddedStore, FileMedia, HandoffLog, Outbox};
use crate::ports::{AssetDirectory, HandoffPublisher, MediaStore, ProposalStore, ReviewNotifier};
use crate::salesforce::{CachedDirectory, SalesforceAssets, SalesforceClient, SalesforceConfig};
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

pub struct Env {
    pub store: Arc<dyn ProposalStore>,
    pub media: Arc<dyn MediaStore>,
    pub notifier: Arc<dyn ReviewNotifier>,
    pub handoff: Arc<dyn HandoffPublisher>,
    pub salesforce: Arc<SalesforceClient>,
    pub assets: Arc<dyn AssetDirectory>,
    pub workflows: Arc<Workflows>,
    pub qr: Arc<QrKeyring>,
    pub links: Arc<CsrfKey>,
    pub public_url: String,
}

fn var(name: &'static str) -> Result<String, WiringError> {
    std::env::var(name).map_err(|_| WiringError::Missing(name))
}

impl Env {
    pub async fn from_env() -> Result<Env, WiringError> {
        let dir = PathBuf::from(
            std::env::var("FIELDGATE_DATA_DIR").unwrap_or_else(|_| "/tmp/fieldgate".into()),
        );
        let io = |e: std::io::Error| WiringError::Invalid(e.to_string());
        let keys = Keys::load_or_create(&dir.join("keys.json"))?;
        let workflows = match std::env::var("FIELDGATE_WORKFLOWS_DIR") {
            Ok(d) => Workflows::load_dir(Path::new(&d))
                .map_err(|e| WiringError::Invalid(e.to_string()))?,
            Err(_) => Workflows::builtin(),
        };
        let mut sf = SalesforceConfig::client_credentials(
            &var("SALESFORCE_LOGIN_URL")?,
            &var("SALESFORCE_CLIENT_ID")?,
            &var("SALESFORCE_CLIENT_SECRET")?,
        );
        if let Ok(v) = std::env::var("SALESFORCE_API_VERSION") {
            sf.api_version = v;
        }
        let salesforce =
            Arc::new(SalesforceClient::new(sf).map_err(|e| WiringError::Invalid(e.to_string()))?);
        let store: Arc<dyn ProposalStore> = Arc::new(EmbeddedStore::open(&dir).map_err(io)?);
        let assets = Arc::new(CachedDirectory {
            inner: SalesforceAssets(salesforce.clone()),
            store: store.clone(),
            ttl: time::Duration::hours(1),
        });
        Ok(Env {
            store,
            media: Arc::new(FileMedia::open(&dir).map_err(io)?),
            notifier: Arc::new(Outbox::open(Some(&dir)).map_err(io)?),
            handoff: Arc::new(HandoffLog::open(Some(&dir)).map_err(io)?),
            salesforce,
            assets,
            workflows: Arc::new(workflows),
            qr: Arc::new(keys.qr),
            links: Arc::new(keys.links),
            public_url: var("FIELDGATE_PUBLIC_URL")?,
        })
    }
}
