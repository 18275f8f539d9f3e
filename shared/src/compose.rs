//! The composition root: turns a [`Config`] into the adapters every step
//! runs over. The Lambda mains, `fieldgate dev` and the tests all build
//! their steps from [`Components`] (each step crate has a `build`), so there
//! is one place where a dependency is chosen.
//!
//! Each part is built on first use and once only: a function builds only
//! what its own step asks for (cold start), and one AWS SDK configuration
//! is shared by every client. A test or `fieldgate dev` can hand in a part
//! it made itself (`with_*`), e.g. the embedded store whose change feed it
//! drives.

use crate::clock::{self, Clock};
use crate::config::{
    Config, ConfigError, HandoffConfig, KeysConfig, MailConfig, MediaConfig, StoreConfig,
    WorkflowsConfig,
};
use crate::domain::{CsrfKey, QrKeyring, StructurerKind, Workflows};
#[cfg(feature = "sqlite")]
use crate::embedded::SqliteStore;
use crate::embedded::{AssistantFile, FileMedia, HandoffLog, Outbox};
use crate::ports::{
    AssetDirectory, AssistantTokens, HandoffMessage, HandoffPublisher, MediaStore, NotifyError,
    ProposalStore, PublishError, RecordWriter, ReviewMail, ReviewNotifier,
};
#[cfg(feature = "salesforce")]
use crate::salesforce::{
    CachedDirectory, DeferredSalesforce, SalesforceAssets, SalesforceClient, SfError,
};
use crate::structuring::Structurers;
use crate::workflows::LoadError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Why a part could not be built. Each variant keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("workflows")]
    Workflows(#[from] LoadError),
    #[error("opening the store in {dir}")]
    Store {
        dir: String,
        #[source]
        source: crate::ports::StoreError,
    },
    #[error("the keys document {source_name} is not valid")]
    Keys {
        source_name: String,
        #[source]
        source: KeysError,
    },
    #[cfg(feature = "aws-secrets")]
    #[error("reading the secret named by {var}")]
    Secret {
        var: &'static str,
        #[source]
        source: crate::aws::secrets::SecretError,
    },
    #[cfg(feature = "salesforce")]
    #[error("the Salesforce client")]
    Salesforce(#[source] SfError),
    /// A Lambda build (no `sqlite` feature) started without a table.
    #[error("this build has no embedded store: set FIELDGATE_TABLE")]
    NoEmbeddedStore,
    #[cfg(feature = "smtp")]
    #[error("the SMTP mailer")]
    Smtp(#[source] crate::embedded::smtp::SmtpError),
}

/// A keys document that does not parse. Deliberately without serde's
/// message, which can quote the content (a secret).
#[derive(Debug, thiserror::Error)]
#[error("not a JSON object with `qr` and `links` (line {line}, column {column})")]
pub struct KeysError {
    pub line: usize,
    pub column: usize,
}

/// The deployment's secrets: QR signing keys and the key for form and
/// status-link tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Keys {
    pub qr: QrKeyring,
    pub links: CsrfKey,
}

impl Keys {
    /// Fresh random keys.
    pub fn generate() -> Keys {
        let mut rng = rand::rng();
        Keys {
            qr: QrKeyring::generate("k1", &mut rng),
            links: CsrfKey::generate(&mut rng),
        }
    }

    /// Parses a keys document; `source_name` says where it came from.
    pub fn parse(json: &str, source_name: &str) -> Result<Keys, BuildError> {
        serde_json::from_str(json).map_err(|e| BuildError::Keys {
            source_name: source_name.to_owned(),
            source: KeysError {
                line: e.line(),
                column: e.column(),
            },
        })
    }

    /// Loads `path`; `Ok(None)` when there is no such file (nothing is
    /// created: keys made here would sign links no server accepts).
    pub fn load(path: &Path) -> Result<Option<Keys>, BuildError> {
        match std::fs::read_to_string(path) {
            Ok(json) => Keys::parse(&json, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BuildError::Io {
                what: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Writes the document to `path` atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), BuildError> {
        let io = |what: String| move |source| BuildError::Io { what, source };
        let bytes = serde_json::to_vec_pretty(self).expect("keys serialize");
        crate::embedded::write_atomic(path, &bytes)
            .map_err(io(format!("writing {}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(format!("restricting {}", path.display())))?;
        }
        Ok(())
    }

    /// Loads `path`, or creates it with fresh random keys (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<Keys, BuildError> {
        let io = |what: String| move |source| BuildError::Io { what, source };
        match std::fs::read_to_string(path) {
            Ok(json) => Keys::parse(&json, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Keys::generate();
                if let Some(dir) = path.parent() {
                    crate::embedded::create_private_dir(dir)
                        .map_err(io(format!("creating {}", dir.display())))?;
                }
                keys.save(path)?;
                Ok(keys)
            }
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }
}

/// How often a Lambda container re-reads the keys secret: a rotation
/// (a new key, an old key's retirement) reaches every container within it.
#[cfg(feature = "aws-secrets")]
const SECRET_KEYS_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

/// The QR keyring a running server verifies with. Re-read when its source
/// changes, so `fieldgate keys rotate` counts without a restart: the file
/// when its modification time or size changes (one `stat` per scan), the
/// secret every few minutes, and at once when a code names a key id this
/// copy does not know. A document that no longer parses keeps the last
/// good keyring (and says so in the log, without its content).
pub struct QrKeys {
    ring: std::sync::RwLock<Arc<QrKeyring>>,
    source: QrKeysSource,
}

enum QrKeysSource {
    Fixed,
    File {
        path: std::path::PathBuf,
        seen: std::sync::Mutex<Option<(std::time::SystemTime, u64)>>,
    },
    #[cfg(feature = "aws-secrets")]
    Secret {
        client: aws_sdk_secretsmanager::Client,
        id: String,
        checked: std::sync::Mutex<std::time::Instant>,
    },
}

impl QrKeys {
    /// A keyring that never changes (tests, a preset `with_keys`).
    pub fn fixed(ring: QrKeyring) -> Self {
        Self {
            ring: std::sync::RwLock::new(Arc::new(ring)),
            source: QrKeysSource::Fixed,
        }
    }

    fn file(path: &Path, ring: QrKeyring) -> Self {
        let seen = file_stamp(path);
        Self {
            ring: std::sync::RwLock::new(Arc::new(ring)),
            source: QrKeysSource::File {
                path: path.to_owned(),
                seen: std::sync::Mutex::new(seen),
            },
        }
    }

    fn current(&self) -> Arc<QrKeyring> {
        self.ring.read().expect("keyring lock").clone()
    }

    fn replace(&self, ring: QrKeyring) {
        *self.ring.write().expect("keyring lock") = Arc::new(ring);
    }

    /// The keyring to check `code` with (its key id decides whether an
    /// unknown key is worth a re-read).
    #[cfg_attr(not(feature = "aws-secrets"), allow(unused_variables))]
    pub async fn for_code(&self, code: &str) -> Arc<QrKeyring> {
        match &self.source {
            QrKeysSource::Fixed => {}
            QrKeysSource::File { path, seen } => {
                let now = file_stamp(path);
                let changed = {
                    let mut seen = seen.lock().expect("keys stamp lock");
                    let changed = now.is_some() && *seen != now;
                    *seen = now;
                    changed
                };
                if changed {
                    match Keys::load(path) {
                        Ok(Some(keys)) => self.replace(keys.qr),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %crate::Chain(&e), "the keys file changed but does not load; still using the keys read before")
                        }
                    }
                }
            }
            #[cfg(feature = "aws-secrets")]
            QrKeysSource::Secret {
                client,
                id,
                checked,
            } => {
                let kid = code.split('.').nth(2).unwrap_or_default();
                let unknown = !self.current().keys.contains_key(kid);
                let due = {
                    let mut checked = checked.lock().expect("keys check lock");
                    // An unknown key id re-reads at most every few seconds:
                    // forged codes must not turn into a flood of reads.
                    let min = if unknown {
                        std::time::Duration::from_secs(10)
                    } else {
                        SECRET_KEYS_REFRESH
                    };
                    let due = checked.elapsed() >= min;
                    if due {
                        *checked = std::time::Instant::now();
                    }
                    due
                };
                if due {
                    let read = crate::aws::secrets::read_secret(client, id, None)
                        .await
                        .map_err(|source| BuildError::Secret {
                            var: "FIELDGATE_KEYS_SECRET_ARN",
                            source,
                        })
                        .and_then(|v| Keys::parse(v.expose(), "in FIELDGATE_KEYS_SECRET_ARN"));
                    match read {
                        Ok(keys) => self.replace(keys.qr),
                        Err(e) => {
                            tracing::warn!(error = %crate::Chain(&e), "re-reading the keys secret failed; still using the keys read before")
                        }
                    }
                }
            }
        }
        self.current()
    }
}

fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Stands in for an adapter this deployment was not configured with (in
/// AWS, where a silent fallback to local files would lose data).
struct Unconfigured(&'static str);

#[async_trait]
impl ReviewNotifier for Unconfigured {
    async fn send(&self, _: &ReviewMail) -> Result<(), NotifyError> {
        Err(NotifyError::Unconfigured(self.0))
    }
}

#[async_trait]
impl HandoffPublisher for Unconfigured {
    async fn publish(&self, _: &HandoffMessage) -> Result<(), PublishError> {
        Err(PublishError::Unconfigured(self.0))
    }
}

/// Reads the Salesforce credential named by `SALESFORCE_SECRET_ARN` and
/// makes the client ([`DeferredSalesforce`]'s first call).
#[cfg(all(feature = "salesforce", feature = "aws-secrets"))]
async fn connect_with_secret(
    client: aws_sdk_secretsmanager::Client,
    settings: crate::salesforce::SalesforceSettings,
    id: String,
    field: &'static str,
) -> Result<SalesforceClient, crate::ports::WriteError> {
    use crate::aws::secrets::{SecretError, read_secret};
    use crate::ports::WriteError;
    let value = read_secret(&client, &id, Some(field)).await.map_err(|e| {
        let message = format!("SALESFORCE_SECRET_ARN: {}", crate::Chain(&e));
        match e {
            // Worth another try: the read itself failed.
            SecretError::Read { .. } => WriteError::Transient(message),
            SecretError::Unusable { .. } => WriteError::Config(message),
        }
    })?;
    let config = settings
        .with_secret(value.expose().to_owned())
        .into_config()
        .map_err(|e| WriteError::Config(format!("SALESFORCE_*: {}", crate::Chain(&e))))?;
    SalesforceClient::new(config).map_err(WriteError::from)
}

/// Every adapter of a deployment, built on demand from its configuration.
pub struct Components {
    config: Config,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "aws-core")]
    sdk: OnceCell<aws_types::SdkConfig>,
    /// One Secrets Manager client for every secret read (the keys, their
    /// refresh, the Salesforce credential).
    #[cfg(feature = "aws-secrets")]
    secrets: OnceCell<aws_sdk_secretsmanager::Client>,
    store: OnceCell<Arc<dyn ProposalStore>>,
    assistants: OnceCell<Arc<dyn AssistantTokens>>,
    media: OnceCell<Arc<dyn MediaStore>>,
    notifier: OnceCell<Arc<dyn ReviewNotifier>>,
    handoff: OnceCell<Arc<dyn HandoffPublisher>>,
    #[cfg(feature = "salesforce")]
    salesforce: OnceCell<Arc<SalesforceClient>>,
    #[cfg(feature = "salesforce")]
    deferred: OnceCell<Arc<DeferredSalesforce>>,
    writer: OnceCell<Arc<dyn RecordWriter>>,
    assets: OnceCell<Arc<dyn AssetDirectory>>,
    keys: OnceCell<Keys>,
    qr_keys: OnceCell<Arc<QrKeys>>,
    /// The keys were handed in (`with_keys`): nothing to follow.
    keys_preset: bool,
    workflows: OnceCell<Arc<Workflows>>,
    structurers: OnceCell<Structurers>,
    asset_ttl: time::Duration,
}

/// Sets a part that was handed in; a second `with_` of the same part is a
/// bug in the caller.
fn preset<T>(cell: &OnceCell<T>, value: T) {
    if cell.set(value).is_err() {
        panic!("a part of Components was set twice");
    }
}

impl Components {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            clock: clock::system(),
            #[cfg(feature = "aws-core")]
            sdk: OnceCell::new(),
            #[cfg(feature = "aws-secrets")]
            secrets: OnceCell::new(),
            store: OnceCell::new(),
            assistants: OnceCell::new(),
            media: OnceCell::new(),
            notifier: OnceCell::new(),
            handoff: OnceCell::new(),
            #[cfg(feature = "salesforce")]
            salesforce: OnceCell::new(),
            #[cfg(feature = "salesforce")]
            deferred: OnceCell::new(),
            writer: OnceCell::new(),
            assets: OnceCell::new(),
            keys: OnceCell::new(),
            qr_keys: OnceCell::new(),
            keys_preset: false,
            workflows: OnceCell::new(),
            structurers: OnceCell::new(),
            // A deleted or out-of-service asset's sticker stops within a
            // minute; a scan costs at most one query per asset per minute.
            asset_ttl: time::Duration::minutes(1),
        }
    }

    /// From the process environment (the Lambda mains).
    pub fn from_env() -> Result<Self, BuildError> {
        Ok(Self::new(Config::from_env()?))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    pub fn with_store(self, store: Arc<dyn ProposalStore>) -> Self {
        preset(&self.store, store);
        self
    }
    pub fn with_media(self, media: Arc<dyn MediaStore>) -> Self {
        preset(&self.media, media);
        self
    }
    pub fn with_notifier(self, notifier: Arc<dyn ReviewNotifier>) -> Self {
        preset(&self.notifier, notifier);
        self
    }
    pub fn with_handoff(self, handoff: Arc<dyn HandoffPublisher>) -> Self {
        preset(&self.handoff, handoff);
        self
    }
    /// The Salesforce client: record writer and asset directory both use it.
    #[cfg(feature = "salesforce")]
    pub fn with_salesforce(self, client: Arc<SalesforceClient>) -> Self {
        preset(&self.salesforce, client);
        self
    }
    /// A record writer other than the Salesforce client (fault tests).
    pub fn with_writer(self, writer: Arc<dyn RecordWriter>) -> Self {
        preset(&self.writer, writer);
        self
    }
    pub fn with_assets(self, assets: Arc<dyn AssetDirectory>) -> Self {
        preset(&self.assets, assets);
        self
    }
    pub fn with_keys(mut self, keys: Keys) -> Self {
        preset(&self.keys, keys);
        self.keys_preset = true;
        self
    }
    pub fn with_workflows(self, workflows: Arc<Workflows>) -> Self {
        preset(&self.workflows, workflows);
        self
    }
    pub fn with_structurers(self, structurers: Structurers) -> Self {
        preset(&self.structurers, structurers);
        self
    }
    /// How long a cached asset card is served without asking Salesforce.
    pub fn with_asset_ttl(mut self, ttl: time::Duration) -> Self {
        self.asset_ttl = ttl;
        self
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Base of links in mail; required only by the steps that mail links.
    /// Whether pages carry HSTS: the public URL is https, or
    /// `FIELDGATE_HSTS` says so.
    pub fn hsts(&self) -> bool {
        self.config.hsts
            || self
                .config
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
    }

    pub fn public_url(&self) -> Result<String, BuildError> {
        self.config.public_url.clone().ok_or(
            ConfigError::Missing {
                var: "FIELDGATE_PUBLIC_URL",
                why: "for the links in review mail",
            }
            .into(),
        )
    }

    #[cfg(feature = "aws-core")]
    async fn sdk(&self) -> &aws_types::SdkConfig {
        self.sdk.get_or_init(crate::aws::sdk_config).await
    }

    #[cfg(feature = "aws-secrets")]
    async fn secrets_client(&self) -> &aws_sdk_secretsmanager::Client {
        self.secrets
            .get_or_init(|| async { aws_sdk_secretsmanager::Client::new(self.sdk().await) })
            .await
    }

    fn io(&self, what: &str) -> impl FnOnce(std::io::Error) -> BuildError {
        let what = format!("{what} in {}", self.config.data_dir.display());
        move |source| BuildError::Io { what, source }
    }

    pub async fn store(&self) -> Result<Arc<dyn ProposalStore>, BuildError> {
        self.store
            .get_or_try_init(|| async {
                Ok(match &self.config.store {
                    #[cfg(feature = "sqlite")]
                    StoreConfig::Embedded => {
                        Arc::new(SqliteStore::open_dir(&self.config.data_dir).map_err(
                            |source| BuildError::Store {
                                dir: self.config.data_dir.display().to_string(),
                                source,
                            },
                        )?) as Arc<dyn ProposalStore>
                    }
                    #[cfg(not(feature = "sqlite"))]
                    StoreConfig::Embedded => return Err(BuildError::NoEmbeddedStore),
                    #[cfg(feature = "aws-dynamodb")]
                    StoreConfig::Dynamo { table } => {
                        let client = aws_sdk_dynamodb::Client::new(self.sdk().await);
                        Arc::new(crate::aws::dynamodb::DynamoStore::new(client, table))
                            as Arc<dyn ProposalStore>
                    }
                    #[cfg(not(feature = "aws-dynamodb"))]
                    StoreConfig::Dynamo { .. } => unreachable!("refused by Config"),
                })
            })
            .await
            .cloned()
    }

    /// The assistants' tokens: beside the proposals (a file in the data
    /// directory, or `T#` items of the same table).
    pub async fn assistants(&self) -> Result<Arc<dyn AssistantTokens>, BuildError> {
        self.assistants
            .get_or_try_init(|| async {
                Ok(match &self.config.store {
                    StoreConfig::Embedded => Arc::new(
                        AssistantFile::open(&self.config.data_dir)
                            .map_err(self.io("opening the assistant tokens"))?,
                    ) as Arc<dyn AssistantTokens>,
                    #[cfg(feature = "aws-dynamodb")]
                    StoreConfig::Dynamo { table } => {
                        let client = aws_sdk_dynamodb::Client::new(self.sdk().await);
                        Arc::new(crate::aws::dynamodb::DynamoStore::new(client, table))
                    }
                    #[cfg(not(feature = "aws-dynamodb"))]
                    StoreConfig::Dynamo { .. } => unreachable!("refused by Config"),
                })
            })
            .await
            .cloned()
    }

    pub async fn media(&self) -> Result<Arc<dyn MediaStore>, BuildError> {
        self.media
            .get_or_try_init(|| async {
                Ok(match &self.config.media {
                    MediaConfig::Files => Arc::new(
                        FileMedia::open(&self.config.data_dir)
                            .map_err(self.io("opening the photo folder"))?,
                    ) as Arc<dyn MediaStore>,
                    #[cfg(feature = "aws-s3")]
                    MediaConfig::S3 { bucket, path_style } => Arc::new(
                        crate::aws::s3::S3Media::lazy(self.sdk().await, *path_style, bucket, ""),
                    ),
                    #[cfg(not(feature = "aws-s3"))]
                    MediaConfig::S3 { .. } => unreachable!("refused by Config"),
                })
            })
            .await
            .cloned()
    }

    pub async fn notifier(&self) -> Result<Arc<dyn ReviewNotifier>, BuildError> {
        self.notifier
            .get_or_try_init(|| async {
                Ok(match &self.config.mail {
                    MailConfig::Outbox => Arc::new(
                        Outbox::open(Some(&self.config.data_dir))
                            .map_err(self.io("opening the outbox"))?,
                    ) as Arc<dyn ReviewNotifier>,
                    MailConfig::Unconfigured => Arc::new(Unconfigured("FIELDGATE_MAIL_FROM")),
                    #[cfg(feature = "smtp")]
                    MailConfig::Smtp { server, from } => Arc::new(
                        crate::embedded::smtp::SmtpNotifier::new(server, from)
                            .map_err(BuildError::Smtp)?,
                    ),
                    #[cfg(not(feature = "smtp"))]
                    MailConfig::Smtp { .. } => unreachable!("refused by Config"),
                    #[cfg(feature = "aws-ses")]
                    MailConfig::Ses {
                        from,
                        configuration_set,
                    } => Arc::new(crate::aws::ses::SesNotifier::lazy(
                        self.sdk().await,
                        from,
                        configuration_set.clone(),
                    )),
                    #[cfg(not(feature = "aws-ses"))]
                    MailConfig::Ses { .. } => unreachable!("refused by Config"),
                })
            })
            .await
            .cloned()
    }

    pub async fn handoff(&self) -> Result<Arc<dyn HandoffPublisher>, BuildError> {
        self.handoff
            .get_or_try_init(|| async {
                Ok(match &self.config.handoff {
                    HandoffConfig::Log => Arc::new(
                        HandoffLog::open(Some(&self.config.data_dir))
                            .map_err(self.io("opening the handoff log"))?,
                    ) as Arc<dyn HandoffPublisher>,
                    HandoffConfig::Unconfigured => {
                        Arc::new(Unconfigured("FIELDGATE_HANDOFF_TOPIC"))
                    }
                    #[cfg(feature = "aws-sns")]
                    HandoffConfig::Sns { topic } => {
                        Arc::new(crate::aws::sns::SnsHandoff::lazy(self.sdk().await, topic))
                    }
                    #[cfg(not(feature = "aws-sns"))]
                    HandoffConfig::Sns { .. } => unreachable!("refused by Config"),
                })
            })
            .await
            .cloned()
    }

    /// Reads a secret (the whole value, or `field` of a JSON value).
    #[cfg(feature = "aws-secrets")]
    async fn secret(
        &self,
        var: &'static str,
        id: &str,
        field: Option<&str>,
    ) -> Result<crate::aws::secrets::SecretValue, BuildError> {
        crate::aws::secrets::read_secret(self.secrets_client().await, id, field)
            .await
            .map_err(|source| BuildError::Secret { var, source })
    }

    #[cfg(feature = "salesforce")]
    pub async fn salesforce(&self) -> Result<Arc<SalesforceClient>, BuildError> {
        self.salesforce
            .get_or_try_init(|| async {
                let Some(settings) = self.config.salesforce.clone() else {
                    return Err(ConfigError::Missing {
                        var: "SALESFORCE_LOGIN_URL",
                        why: "(and SALESFORCE_CLIENT_ID with a credential) to reach Salesforce",
                    }
                    .into());
                };
                // The secret half in Secrets Manager: read once per container.
                #[cfg(feature = "aws-secrets")]
                let settings = match settings.secret_ref() {
                    Some((id, field)) => {
                        let value = self
                            .secret("SALESFORCE_SECRET_ARN", id, Some(field))
                            .await?;
                        settings.clone().with_secret(value.expose().to_owned())
                    }
                    None => settings,
                };
                let config = settings.into_config().map_err(ConfigError::from)?;
                Ok(Arc::new(
                    SalesforceClient::new(config).map_err(BuildError::Salesforce)?,
                ))
            })
            .await
            .cloned()
    }

    /// The duplicate lookup's Salesforce reader: the Salesforce client when
    /// one is configured (or given); `None` otherwise (then the lookup
    /// says Salesforce was not asked).
    #[cfg(feature = "salesforce")]
    pub async fn finder(&self) -> Result<Option<Arc<dyn crate::ports::RecordFinder>>, BuildError> {
        if self.salesforce.get().is_none() && self.config.salesforce.is_none() {
            return Ok(None);
        }
        Ok(Some(
            self.deferred_salesforce().await? as Arc<dyn crate::ports::RecordFinder>,
        ))
    }

    /// The Salesforce client for the steps whose first event seldom needs
    /// it (the commit and structure sweeps, mcp): its credential is read from
    /// Secrets Manager, and the client made, on its first call rather than
    /// at start-up (a round trip and a TLS setup off the cold start). An
    /// unreadable secret then fails that call (retried), an unusable one
    /// names `SALESFORCE_SECRET_ARN` in the proposal's error.
    #[cfg(feature = "salesforce")]
    pub async fn deferred_salesforce(&self) -> Result<Arc<DeferredSalesforce>, BuildError> {
        self.deferred
            .get_or_try_init(|| async {
                #[cfg(feature = "aws-secrets")]
                if self.salesforce.get().is_none()
                    && let Some(settings) = self.config.salesforce.clone()
                    && let Some((id, field)) = settings.secret_ref()
                {
                    let id = id.to_owned();
                    // The Secrets Manager client too is made on that first
                    // call (its endpoint rules are parsed when it is made),
                    // unless start-up made one for the keys already.
                    let sdk = self.sdk().await.clone();
                    let secrets = Arc::new(std::sync::OnceLock::new());
                    if let Some(made) = self.secrets.get() {
                        let _ = secrets.set(made.clone());
                    }
                    let login_url = settings.login_url.clone();
                    return Ok(Arc::new(DeferredSalesforce::new(&login_url, move || {
                        let client = secrets
                            .get_or_init(|| aws_sdk_secretsmanager::Client::new(&sdk))
                            .clone();
                        let (settings, id) = (settings.clone(), id.clone());
                        Box::pin(connect_with_secret(client, settings, id, field))
                    })));
                }
                Ok(Arc::new(DeferredSalesforce::ready(
                    self.salesforce().await?,
                    "",
                )))
            })
            .await
            .cloned()
    }

    #[cfg(feature = "salesforce-write")]
    pub async fn writer(&self) -> Result<Arc<dyn RecordWriter>, BuildError> {
        if let Some(w) = self.writer.get() {
            return Ok(w.clone());
        }
        let client: Arc<dyn RecordWriter> = self.deferred_salesforce().await?;
        Ok(self.writer.get_or_init(|| async { client }).await.clone())
    }

    /// Asset context from Salesforce, cached in the store; the Salesforce
    /// credential is read now (the intake's first scan needs it, and a
    /// bad one is then a start-up failure).
    #[cfg(feature = "salesforce")]
    pub async fn assets(&self) -> Result<Arc<dyn AssetDirectory>, BuildError> {
        self.assets
            .get_or_try_init(|| async {
                let client = SalesforceAssets::new(self.salesforce().await?);
                self.cached_assets(client).await
            })
            .await
            .cloned()
    }

    /// The same, with the credential read and the client made on the
    /// first lookup (mcp: most of its requests never reach Salesforce).
    #[cfg(feature = "salesforce")]
    pub async fn assets_on_first_call(&self) -> Result<Arc<dyn AssetDirectory>, BuildError> {
        self.assets
            .get_or_try_init(|| async {
                let client = SalesforceAssets(self.deferred_salesforce().await?);
                self.cached_assets(client).await
            })
            .await
            .cloned()
    }

    #[cfg(feature = "salesforce")]
    async fn cached_assets(
        &self,
        inner: SalesforceAssets,
    ) -> Result<Arc<dyn AssetDirectory>, BuildError> {
        Ok(Arc::new(CachedDirectory {
            inner,
            store: self.store().await?,
            ttl: self.asset_ttl,
            clock: self.clock(),
        }))
    }

    pub async fn keys(&self) -> Result<Keys, BuildError> {
        self.keys
            .get_or_try_init(|| async {
                match &self.config.keys {
                    KeysConfig::File(path) => Keys::load_or_create(path),
                    KeysConfig::Unconfigured => Err(ConfigError::Missing {
                        var: "FIELDGATE_KEYS_SECRET_ARN",
                        why: "when FIELDGATE_TABLE is set (QR codes and links need the deployment's keys)",
                    }
                    .into()),
                    #[cfg(feature = "aws-secrets")]
                    KeysConfig::SecretsManager { secret_id } => {
                        let json = self
                            .secret("FIELDGATE_KEYS_SECRET_ARN", secret_id, None)
                            .await?;
                        Keys::parse(json.expose(), "in FIELDGATE_KEYS_SECRET_ARN")
                    }
                    #[cfg(not(feature = "aws-secrets"))]
                    KeysConfig::SecretsManager { .. } => unreachable!("refused by Config"),
                }
            })
            .await
            .cloned()
    }

    pub async fn qr(&self) -> Result<Arc<QrKeyring>, BuildError> {
        Ok(Arc::new(self.keys().await?.qr))
    }

    /// The QR keyring as a long-running server needs it: it follows a
    /// rotation of its source (see [`QrKeys`]).
    pub async fn qr_keys(&self) -> Result<Arc<QrKeys>, BuildError> {
        self.qr_keys
            .get_or_try_init(|| async {
                let preset = self.keys_preset;
                let ring = self.keys().await?.qr;
                Ok(Arc::new(match &self.config.keys {
                    _ if preset => QrKeys::fixed(ring),
                    KeysConfig::File(path) => QrKeys::file(path, ring),
                    #[cfg(feature = "aws-secrets")]
                    KeysConfig::SecretsManager { secret_id } => QrKeys {
                        ring: std::sync::RwLock::new(Arc::new(ring)),
                        source: QrKeysSource::Secret {
                            client: self.secrets_client().await.clone(),
                            id: secret_id.clone(),
                            checked: std::sync::Mutex::new(std::time::Instant::now()),
                        },
                    },
                    _ => QrKeys::fixed(ring),
                }))
            })
            .await
            .cloned()
    }

    pub async fn links(&self) -> Result<Arc<CsrfKey>, BuildError> {
        Ok(Arc::new(self.keys().await?.links))
    }

    pub async fn workflows(&self) -> Result<Arc<Workflows>, BuildError> {
        self.workflows
            .get_or_try_init(|| async {
                let workflows = match &self.config.workflows {
                    WorkflowsConfig::Builtin => crate::workflows::builtin(),
                    WorkflowsConfig::Dir(dir) => crate::workflows::load_dir(dir)?,
                };
                Ok(Arc::new(match &self.config.reviewers {
                    Some(list) => crate::workflows::with_reviewers(&workflows, list),
                    None => workflows,
                }))
            })
            .await
            .cloned()
    }

    /// The model structurers the configuration names.
    pub async fn structurers(&self) -> Result<Structurers, BuildError> {
        self.structurers
            .get_or_try_init(|| async {
                let cfg = &self.config.structurers;
                #[allow(unused_mut)]
                let mut out = crate::structuring::model_structurers(cfg);
                #[cfg(feature = "bedrock")]
                if let Some(model) = &cfg.bedrock_model {
                    let api = crate::structuring::bedrock::BedrockApi::new(self.sdk().await, model);
                    out.insert(
                        StructurerKind::Bedrock,
                        Arc::new(crate::structuring::ModelStructurer::new(api)),
                    );
                }
                if let Some(kind) = cfg.replace_rules
                    && let Some(s) = out.get(&kind).cloned()
                {
                    tracing::info!(
                        structurer = s.name(),
                        "workflows set to rules use this model (FIELDGATE_STRUCTURER)"
                    );
                    out.insert(StructurerKind::Rules, s);
                }
                Ok(out)
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_are_built_once_and_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let c = Components::new(Config::embedded(dir.path()));
        assert!(!dir.path().join("keys.json").exists(), "nothing built yet");
        let a = c.keys().await.unwrap();
        let b = c.keys().await.unwrap();
        assert_eq!(a.links.token_for("x"), b.links.token_for("x"));
        assert!(dir.path().join("keys.json").exists());
        let s1 = c.store().await.unwrap();
        let s2 = c.store().await.unwrap();
        assert!(Arc::ptr_eq(&s1, &s2));
        // No Salesforce configured: a clear error, naming what to set.
        let err = c
            .salesforce()
            .await
            .err()
            .expect("no Salesforce")
            .to_string();
        assert!(err.starts_with("SALESFORCE_LOGIN_URL"), "{err}");
        let err = c.public_url().unwrap_err().to_string();
        assert!(err.starts_with("FIELDGATE_PUBLIC_URL"), "{err}");
    }

    #[test]
    fn a_malformed_keys_document_never_quotes_its_content() {
        for doc in [
            r#""{\"qr\": \"MARKER-1234\"}""#,
            r#"{"qr": "MARKER-1234", "links": 5}"#,
            "MARKER-1234",
        ] {
            let err = Keys::parse(doc, "in FIELDGATE_KEYS_SECRET_ARN").unwrap_err();
            let mut chain = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            assert!(chain.contains("FIELDGATE_KEYS_SECRET_ARN"), "{chain}");
            assert!(!chain.contains("MARKER"), "quoted the secret: {chain}");
        }
    }
}
