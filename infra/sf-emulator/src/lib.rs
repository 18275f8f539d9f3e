//! A Salesforce REST emulator that follows `shared/contracts/salesforce.md`:
//! OAuth JWT bearer and client credentials, sObject describe/create/read/update/upsert,
//! SOQL queries with paging, ContentVersion uploads, composite requests, the
//! `Sforce-Limit-Info` header and switches for the faults a real org shows.
//!
//! It serves only `/services/...` routes so it can be merged into another
//! axum app on the same origin (the dev stack does exactly that).

mod describe;
mod dml;
mod errors;
mod faults;
mod ids;
mod jwt;
mod render;
mod routes;
mod seed;
mod soql;
mod state;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value;

pub use faults::Faults;

use state::Store;

/// How the emulator is set up.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// If set: state is loaded from this JSON file at start (when present)
    /// and saved (temp file + rename) after every mutating request.
    pub persist_path: Option<PathBuf>,
    /// Daily API limit reported in `Sforce-Limit-Info`; once more calls than
    /// this have been made, REST calls answer 403 REQUEST_LIMIT_EXCEEDED.
    pub api_budget: u64,
    pub client_id: String,
    pub client_secret: String,
    /// If `None`, token responses use `http://` + the request's Host header.
    pub instance_url: Option<String>,
    /// Versions listed by `GET /services/data/` and accepted in paths.
    pub api_versions: Vec<String>,
    /// The JWT bearer grant's trust (`None`: the grant is refused).
    pub jwt: Option<JwtTrust>,
}

/// What the connected app trusts for the JWT bearer grant: `iss` must be
/// the client id, `sub` this username, the signature this certificate's.
#[derive(Debug, Clone)]
pub struct JwtTrust {
    /// PEM: a `CERTIFICATE` (as uploaded to the app) or a `PUBLIC KEY`.
    pub certificate_pem: String,
    pub username: String,
    /// Accepted `aud` values besides the URL the request came to.
    pub audiences: Vec<String>,
}

/// The dev org's integration user.
pub const DEV_USERNAME: &str = "integration@fieldgate.dev";
/// The certificate the dev org's app trusts.
pub const DEV_JWT_CERTIFICATE: &str = include_str!("../fixtures/dev-jwt.crt");
/// TEST ONLY: the private key of [`DEV_JWT_CERTIFICATE`], public in this
/// repository; it can only ever sign in to the emulator.
pub const DEV_JWT_PRIVATE_KEY: &str = include_str!("../fixtures/dev-jwt.key");

impl JwtTrust {
    /// The dev org: trusts `fixtures/dev-jwt.crt` for [`DEV_USERNAME`].
    pub fn dev() -> JwtTrust {
        JwtTrust {
            certificate_pem: DEV_JWT_CERTIFICATE.into(),
            username: DEV_USERNAME.into(),
            audiences: vec![
                "https://login.salesforce.com".into(),
                "https://test.salesforce.com".into(),
            ],
        }
    }
}

pub const DEFAULT_CLIENT_ID: &str = "fieldgate-dev-client";
pub const DEFAULT_CLIENT_SECRET: &str = "fieldgate-dev-secret";

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            persist_path: None,
            api_budget: 100_000,
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            instance_url: None,
            // 31.0 is the oldest version Salesforce still serves; 66.0 is Spring '26.
            api_versions: (31..=66).map(|v| format!("{v}.0")).collect(),
            jwt: Some(JwtTrust::dev()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot load emulator state from {path}: {source}")]
    Load {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot save emulator state to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A seeded demo asset, as the dev stack prints QR links for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemoAsset {
    pub id: String,
    pub name: String,
    pub serial_number: String,
    pub account_name: String,
    pub location: String,
}

/// Query results not yet handed out, addressed by `nextRecordsUrl`.
#[derive(Default)]
pub(crate) struct Cursors {
    next: u64,
    map: HashMap<String, Cursor>,
    order: VecDeque<String>,
}

pub(crate) struct Cursor {
    pub records: Vec<Value>,
    pub batch: usize,
}

/// Oldest cursors are dropped past this many, bounding memory.
const MAX_CURSORS: usize = 256;

impl Cursors {
    pub(crate) fn open(&mut self, cursor: Cursor) -> String {
        self.next += 1;
        let locator = ids::mint(ids::QUERY_LOCATOR, self.next);
        self.map.insert(locator.clone(), cursor);
        self.order.push_back(locator.clone());
        while self.order.len() > MAX_CURSORS {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        locator
    }

    pub(crate) fn get(&self, locator: &str) -> Option<&Cursor> {
        self.map.get(locator)
    }
}

pub(crate) struct Inner {
    pub config: EmulatorConfig,
    pub store: Mutex<Store>,
    /// Live tokens and the fault epoch they were minted in.
    pub tokens: Mutex<HashMap<String, u64>>,
    pub cursors: Mutex<Cursors>,
    pub api_calls: AtomicU64,
    /// Records created from a multipart body (files sent as binary parts).
    pub multipart_uploads: AtomicU64,
    pub faults: Faults,
    pub org_id: String,
    pub user_id: String,
    /// Set when the org is persisted to a file.
    pub saver: Option<Saver>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in one handler must not wedge every later request.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        lock(&self.tokens)
    }

    pub(crate) fn cursors(&self) -> MutexGuard<'_, Cursors> {
        lock(&self.cursors)
    }

    /// Counts one API call and returns the usage including it.
    pub(crate) fn count_call(&self) -> u64 {
        self.api_calls.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// After a request changed the store (under its lock): the save that
    /// will hold the change, to wait for before answering. `None` when
    /// nothing changed or nothing is persisted.
    pub(crate) fn changed(&self, store: &mut Store) -> Option<u64> {
        if !store.dirty {
            return None;
        }
        store.dirty = false;
        let saver = self.saver.as_ref()?;
        let mut wanted = lock(&saver.wanted);
        *wanted += 1;
        saver.wake.notify_one();
        Some(*wanted)
    }

    /// Waits until the save numbered `epoch` (or a later one) is on disk:
    /// a write is answered only once it would survive a kill, as a real
    /// org's would. One save serves every request that changed the store
    /// before it began (group commit): the file is rewritten per batch,
    /// not per write.
    pub(crate) async fn saved(&self, epoch: u64) {
        if let Some(saver) = &self.saver {
            let mut saved = saver.saved.subscribe();
            // The saver only stops with the emulator: an error here means
            // nothing will be saved any more, and the answer goes out.
            let _ = saved.wait_for(|s| *s >= epoch).await;
        }
    }
}

/// The saving thread's side of the group commit.
pub(crate) struct Saver {
    /// Highest change number handed out (under the store's lock).
    wanted: Mutex<u64>,
    wake: std::sync::Condvar,
    saved: tokio::sync::watch::Sender<u64>,
}

/// Rewrites the org file whenever changes are waiting, until the emulator
/// is dropped. A failed save is logged and retried with the next change;
/// the in-memory org stays authoritative for this process.
fn run_saver(inner: std::sync::Weak<Inner>, path: PathBuf) {
    let mut done = 0;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let saver = strong.saver.as_ref().expect("a saver thread has a saver");
        {
            let wanted = lock(&saver.wanted);
            if *wanted <= done {
                // Wakes now and then to notice the emulator was dropped.
                let _ = saver
                    .wake
                    .wait_timeout(wanted, std::time::Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
        }
        // Under the store's lock, so every change numbered up to `epoch`
        // is in the bytes.
        let (bytes, epoch) = {
            let store = strong.store();
            (store.to_bytes(), *lock(&saver.wanted))
        };
        match bytes.and_then(|b| state::Store::write_bytes(&path, &b)) {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "saving emulator state failed")
            }
        }
        done = epoch;
        saver.saved.send_replace(epoch);
    }
}

/// The emulator: cheap to clone, all clones share one org.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl Emulator {
    /// Loads the persisted org if there is one, otherwise seeds the demo org
    /// (and saves it right away when a persist path is configured).
    pub fn new(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let loaded = match &config.persist_path {
            Some(path) => Store::load(path).map_err(|source| EmulatorError::Load {
                path: path.clone(),
                source,
            })?,
            None => None,
        };
        let store = match loaded {
            Some(mut s) => {
                // An org saved before the emulator knew Field Service gains
                // the demo work types (saved with the next persist).
                seed::add_work_types(&mut s);
                s
            }
            None => {
                let mut s = Store::new();
                seed::seed(&mut s);
                if let Some(path) = &config.persist_path {
                    s.save(path).map_err(|source| EmulatorError::Save {
                        path: path.clone(),
                        source,
                    })?;
                }
                s.dirty = false;
                s
            }
        };
        let path = config.persist_path.clone();
        let saver = path.as_ref().map(|_| Saver {
            wanted: Mutex::new(0),
            wake: std::sync::Condvar::new(),
            saved: tokio::sync::watch::channel(0).0,
        });
        let em = Emulator {
            inner: Arc::new(Inner {
                config,
                store: Mutex::new(store),
                tokens: Mutex::new(HashMap::new()),
                cursors: Mutex::new(Cursors::default()),
                api_calls: AtomicU64::new(0),
                multipart_uploads: AtomicU64::new(0),
                faults: Faults::default(),
                org_id: ids::mint(ids::ORG, 1),
                user_id: ids::mint(ids::USER, 1),
                saver,
            }),
        };
        if let Some(path) = path {
            let weak = Arc::downgrade(&em.inner);
            std::thread::Builder::new()
                .name("sf-emulator-save".into())
                .spawn(move || run_saver(weak, path))
                .map_err(|source| EmulatorError::Save {
                    path: em.inner.config.persist_path.clone().unwrap_or_default(),
                    source,
                })?;
        }
        Ok(em)
    }

    /// Routes under `/services/...` only, with no global fallback, so the
    /// router can be merged into another app.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// `GET`/`POST /__emulator/faults`: the [`Faults`] switches over HTTP
    /// (JSON: `fail_next {count, status}`, `latency_ms`, `exhaust_budget`,
    /// `drop_answers_after_write`, `outage_ms`, `expire_tokens`), for a
    /// test in another process. Mount it only where a test wants it.
    pub fn fault_switches(&self) -> axum::Router {
        routes::fault_router(self.clone())
    }

    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.inner.config
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// All records of `sobject` (every described field, Id included; file
    /// bodies excluded). Unknown types give an empty list.
    pub fn records(&self, sobject: &str) -> Vec<Value> {
        let Some(obj) = describe::object(sobject) else {
            return Vec::new();
        };
        let store = self.inner.store();
        store
            .table(obj.name)
            .map(|r| render::plain(obj, r))
            .collect()
    }

    /// One record by 15- or 18-character id.
    pub fn record(&self, sobject: &str, id: &str) -> Option<Value> {
        let obj = describe::object(sobject)?;
        let store = self.inner.store();
        store.get(obj.name, id).map(|r| render::plain(obj, r))
    }

    /// ContentVersions first published to `record_id`, each with
    /// `VersionDataLength` (the byte length of the file).
    pub fn content_versions_linked_to(&self, record_id: &str) -> Vec<Value> {
        let Some(key) = ids::key(record_id) else {
            return Vec::new();
        };
        let obj = describe::object("ContentVersion").expect("described");
        let store = self.inner.store();
        store
            .table(obj.name)
            .filter(|r| {
                r.get("FirstPublishLocationId")
                    .and_then(Value::as_str)
                    .and_then(ids::key)
                    == Some(key)
            })
            .map(|r| {
                let mut v = render::plain(obj, r);
                let len = store.blob(render::id_of(r)).map_or(0, Vec::len);
                v["VersionDataLength"] = Value::from(len);
                v
            })
            .collect()
    }

    pub fn content_version_data(&self, id: &str) -> Option<Vec<u8>> {
        self.inner.store().blob(id).cloned()
    }

    /// REST and token calls counted so far by this instance.
    pub fn api_calls(&self) -> u64 {
        self.inner.api_calls.load(Ordering::SeqCst)
    }

    /// Records created from multipart bodies so far (the rest came as JSON).
    pub fn multipart_uploads(&self) -> u64 {
        self.inner.multipart_uploads.load(Ordering::SeqCst)
    }

    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The seeded assets in seed order, as they currently are in the org.
    pub fn demo_assets(&self) -> Vec<DemoAsset> {
        let store = self.inner.store();
        let name_of = |sobject: &str, id: Option<&Value>| {
            id.and_then(Value::as_str)
                .and_then(|id| store.get(sobject, id))
                .and_then(|r| r.get("Name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let text = |r: &state::Record, f: &str| {
            r.get(f)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        seed::asset_ids()
            .into_iter()
            .filter_map(|id| {
                let r = store.get("Asset", &id)?;
                Some(DemoAsset {
                    id: render::id_of(r).to_string(),
                    name: text(r, "Name"),
                    serial_number: text(r, "SerialNumber"),
                    account_name: name_of("Account", r.get("AccountId")),
                    location: name_of("Location", r.get("LocationId")),
                })
            })
            .collect()
    }
}
