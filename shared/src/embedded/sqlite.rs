//! The embedded proposal store on SQLite: the same conditions and atomicity
//! as the DynamoDB adapter, and a transactional outbox (`changes`) that
//! plays the DynamoDB stream.
//!
//! Durability: WAL with `synchronous=FULL`, so a commit is on disk (the WAL
//! fsynced) before its caller hears "ok" — an acknowledged report survives
//! a power cut or a VM reset, not only a `kill -9`. The cost of one fsync
//! per commit is paid once per *batch*: one writer thread owns the only
//! writing connection and commits everything queued meanwhile as one
//! transaction (group commit), each job inside its own savepoint so a
//! failed job rolls back alone. One writer is also what SQLite allows
//! anyway; with a single writing connection there is never `SQLITE_BUSY`
//! between our own writers. Reads run on a small pool of read connections
//! (WAL readers never block the writer nor wait for it), off the async
//! executor via `spawn_blocking`.
//!
//! The outbox: every create and transition inserts a `changes` row in the
//! same transaction. The dispatcher of `fieldgate dev` reads undelivered
//! rows in order and marks each delivered only after its step finished, so
//! a crash re-delivers what was in flight and loses nothing acknowledged.

use crate::domain::{
    AssetId, AuditEvent, Proposal, ProposalId, Status, Timestamp, Transition, WindowCount,
    WorkflowId, window_end,
};
use crate::domain::{Sticker, StickerRef};
use crate::ports::{
    CachedAsset, CodeRevocation, Counted, Counter, Created, IntakeReads, IntakeView, ProposalStore,
    Quota, StoreError,
};
use async_trait::async_trait;
use aws_lambda_events::dynamodb::EventRecord;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::{oneshot, watch};

/// The database file inside a data directory.
pub const DB_FILE: &str = "fieldgate.db";

/// How long a connection waits for a lock held by another process (a
/// second `fieldgate` on the same data) before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Jobs committed together at most: bounds a batch's latency.
const MAX_BATCH: usize = 256;
/// Idle read connections kept open.
const READERS: usize = 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS proposals (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
) WITHOUT ROWID;
-- Newest first per status: ULIDs sort by creation time.
CREATE INDEX IF NOT EXISTS proposals_by_status ON proposals (status, id);
CREATE TABLE IF NOT EXISTS audit_events (
    proposal_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (proposal_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS asset_cache (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
) WITHOUT ROWID;
-- Rate counters: one row per key and fixed window; a window is kept
-- while it is the previous one (the sliding estimate weighs it). The
-- table of the first version (one row per key) is dropped: its counts
-- are minutes old at most.
DROP TABLE IF EXISTS rate_windows;
CREATE TABLE IF NOT EXISTS rate_counts (
    key TEXT NOT NULL,
    -- When the counted window ends (Unix seconds): comparable across
    -- counters of different window sizes.
    ends_at INTEGER NOT NULL,
    -- ends_at + the window's size: when it stops being the previous one.
    expires_at INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (key, ends_at)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_counts_by_expiry ON rate_counts (expires_at);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    proposal_id TEXT NOT NULL
) WITHOUT ROWID;
-- The transactional outbox. AUTOINCREMENT: a sequence number is never
-- reused, even after the newest rows were pruned.
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    proposal_id TEXT NOT NULL,
    status TEXT NOT NULL,
    inserted INTEGER NOT NULL,
    -- NULL until the dispatcher handled it; then 'done' or 'set_aside'.
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS changes_undelivered ON changes (seq) WHERE outcome IS NULL;
-- QR code revocations: codes of asset x workflow below `generation` are
-- withdrawn.
CREATE TABLE IF NOT EXISTS code_revocations (
    asset TEXT NOT NULL,
    workflow TEXT NOT NULL,
    generation INTEGER NOT NULL,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    PRIMARY KEY (asset, workflow)
) WITHOUT ROWID;
-- Printed stickers: the typed reference beside a QR code, and the code.
CREATE TABLE IF NOT EXISTS stickers (
    reference TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// One row of the outbox: a write of a proposal, as the dispatcher reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub proposal: ProposalId,
    pub status: Status,
    /// The proposal's first write (a DynamoDB `INSERT`).
    pub inserted: bool,
}

impl Change {
    /// The DynamoDB-stream-shaped record the stream handlers take.
    pub fn record(&self) -> EventRecord {
        crate::stream::status_record(self.proposal, self.status, self.seq, self.inserted)
    }
}

/// How the dispatcher finished with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed every retry (AWS: the on-failure queue).
    SetAside,
}

type Reply = Box<dyn FnOnce(Result<(), Arc<rusqlite::Error>>) + Send>;

/// What a job left for after the commit: whether to keep its writes, the
/// outbox sequence it wrote (if any) and how to answer its caller.
struct Pending {
    ok: bool,
    change: Option<u64>,
    reply: Reply,
}

/// A job gets the writer's connection inside a savepoint, or the reason
/// there is none (then it only answers its caller).
type Job = Box<dyn FnOnce(Result<&Connection, Arc<rusqlite::Error>>) -> Pending + Send>;

pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    /// None in memory: reads go through the writer's connection.
    path: Option<PathBuf>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// The newest committed outbox sequence.
    committed: watch::Receiver<u64>,
}

fn backend(ctx: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::backend(ctx, e)
}

fn json_err(ctx: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::backend(ctx, e)
}

/// Creates `path` with mode 0600 if missing: SQLite gives its `-wal` and
/// `-shm` files the database file's mode, so all three stay private.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map(drop)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl SqliteStore {
    /// In memory only (unit tests): one connection, nothing on disk.
    pub fn in_memory() -> Self {
        let conn = Connection::open_in_memory().expect("an in-memory SQLite database");
        conn.execute_batch(SCHEMA).expect("the schema");
        Self::start(conn, None, 0)
    }

    /// Opens (or creates) the database file `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Self::connect(path)?;
        Self::started(conn, path)
    }

    /// Opens `dir/fieldgate.db`, importing a `store.json` left by the
    /// JSON-file store of earlier versions (once).
    pub fn open_dir(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        let mut conn = Self::connect(&path)?;
        super::import::import_json_store(dir, &mut conn)?;
        Self::started(conn, &path)
    }

    fn connect(path: &Path) -> Result<Connection, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            super::create_private_dir(dir)
                .map_err(|e| StoreError::backend(format!("creating {}", dir.display()), e))?;
        }
        create_private(path)
            .map_err(|e| StoreError::backend(format!("creating {}", path.display()), e))?;
        let conn = Connection::open(path).map_err(backend("opening the database"))?;
        configure(&conn).map_err(backend("configuring the database"))?;
        conn.execute_batch(SCHEMA)
            .map_err(backend("creating the tables"))?;
        Ok(conn)
    }

    fn started(conn: Connection, path: &Path) -> Result<Self, StoreError> {
        let last: u64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                r.get(0)
            })
            .map_err(backend("reading the outbox"))?;
        Ok(Self::start(conn, Some(path.to_owned()), last))
    }

    fn start(conn: Connection, path: Option<PathBuf>, last: u64) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (committed_tx, committed) = watch::channel(last);
        std::thread::Builder::new()
            .name("fieldgate-sqlite-writer".into())
            .spawn(move || writer(conn, rx, committed_tx))
            .expect("spawning the SQLite writer thread");
        Self {
            jobs,
            path,
            readers: Arc::new(Mutex::new(Vec::new())),
            committed,
        }
    }

    /// Runs `f` in the writer's transaction; answers after the commit.
    /// `f` returns its value and the outbox sequence it wrote, if any.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<(T, Option<u64>), StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(StoreError::backend("starting a transaction", e)));
                    return Pending {
                        ok: false,
                        change: None,
                        reply: Box::new(|_| {}),
                    };
                }
            };
            let r = f(conn);
            let ok = r.is_ok();
            let change = r.as_ref().ok().and_then(|(_, c)| *c);
            Pending {
                ok,
                change,
                reply: Box::new(move |commit| {
                    let answer = match (r, commit) {
                        (Ok((v, _)), Ok(())) => Ok(v),
                        (Ok(_), Err(e)) => Err(StoreError::backend("committing", e)),
                        (Err(e), _) => Err(e),
                    };
                    let _ = tx.send(answer);
                }),
            }
        });
        let stopped = || StoreError::backend("the SQLite writer", WriterStopped);
        self.jobs.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Runs `f` on a read connection (a write-free job in memory).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(path) = self.path.clone() else {
            return self.write(move |c| f(c).map(|v| (v, None))).await;
        };
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().expect("reader pool").pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(backend("opening a read connection"))?;
                    c.busy_timeout(BUSY_TIMEOUT)
                        .map_err(backend("configuring a read connection"))?;
                    c
                }
            };
            let r = f(&conn);
            let mut pool = readers.lock().expect("reader pool");
            if pool.len() < READERS {
                pool.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::backend("a read task", e))?
    }

    /// The sequence number of the newest change committed (0: none yet).
    pub fn sequence(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Follows [`sequence`](Self::sequence): changes when a commit wrote
    /// to the outbox.
    pub fn watch_sequence(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Undelivered changes after `after`, oldest first.
    pub async fn undelivered(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT seq, proposal_id, status, inserted FROM changes \
                     WHERE outcome IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(backend("reading the outbox"))?;
            let rows = st
                .query_map(params![after as i64, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                })
                .map_err(backend("reading the outbox"))?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, id, status, inserted) = row.map_err(backend("reading the outbox"))?;
                out.push(Change {
                    seq: seq as u64,
                    proposal: id
                        .parse()
                        .map_err(|e| StoreError::backend("a proposal id in the outbox", e))?,
                    status: status.parse().map_err(|()| {
                        StoreError::backend("reading the outbox", UnknownStatus(status.clone()))
                    })?,
                    inserted,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Records that the dispatcher finished with change `seq`.
    pub async fn mark_delivered(&self, seq: u64, outcome: Outcome) -> Result<(), StoreError> {
        let outcome = match outcome {
            Outcome::Done => "done",
            Outcome::SetAside => "set_aside",
        };
        self.write(move |c| {
            c.prepare_cached("UPDATE changes SET outcome = ?2 WHERE seq = ?1")
                .and_then(|mut s| s.execute(params![seq as i64, outcome]))
                .map_err(backend("marking a change delivered"))?;
            // Keep the outbox small: what was delivered long ago is history
            // the audit events already hold.
            if seq.is_multiple_of(1024) {
                c.prepare_cached("DELETE FROM changes WHERE outcome = 'done' AND seq < ?1 - 10000")
                    .and_then(|mut s| s.execute(params![seq as i64]))
                    .map_err(backend("pruning the outbox"))?;
            }
            Ok(((), None))
        })
        .await
    }

    /// Hands changes that were set aside to the dispatcher again (the
    /// on-failure queue redriven; `fieldgate dev` does it at start).
    pub async fn redrive_set_aside(&self) -> Result<u64, StoreError> {
        self.write(|c| {
            let n = c
                .execute(
                    "UPDATE changes SET outcome = NULL WHERE outcome = 'set_aside'",
                    [],
                )
                .map_err(backend("redriving set-aside changes"))?;
            Ok((n as u64, None))
        })
        .await
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}")]
struct UnknownStatus(String);

#[derive(Debug, thiserror::Error)]
#[error("the SQLite writer thread stopped")]
struct WriterStopped;

/// The writer thread: takes every queued job, runs each in a savepoint of
/// one transaction, commits once, then answers them all.
fn writer(conn: Connection, rx: mpsc::Receiver<Job>, committed: watch::Sender<u64>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut pending = Vec::with_capacity(batch.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE").map_err(Arc::new) {
            // Nothing runs: every job's caller hears why.
            for job in batch {
                job(Err(e.clone()));
            }
            continue;
        }
        for job in batch {
            if let Err(e) = conn.execute_batch("SAVEPOINT job").map_err(Arc::new) {
                job(Err(e));
                continue;
            }
            let p = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(&conn))))
            {
                Ok(p) => p,
                Err(_) => {
                    // The job's caller hears "writer stopped" (its reply
                    // was dropped); the others go on.
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                    continue;
                }
            };
            let end = if p.ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %crate::Chain(&e), "ending a savepoint");
            }
            pending.push(p);
        }
        let commit = conn.execute_batch("COMMIT").map_err(Arc::new);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let newest = pending.iter().filter_map(|p| p.change).max();
        let ok = commit.is_ok();
        for p in pending {
            (p.reply)(commit.clone());
        }
        if ok && let Some(seq) = newest {
            committed.send_if_modified(|c| {
                let newer = seq > *c;
                *c = (*c).max(seq);
                newer
            });
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(json_err("serialising a document"))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(json_err("a stored document"))
}

/// Inserts an outbox row; returns its sequence.
pub(crate) fn insert_change(
    c: &Connection,
    p: &Proposal,
    inserted: bool,
) -> Result<u64, StoreError> {
    c.prepare_cached("INSERT INTO changes (proposal_id, status, inserted) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![p.id.to_string(), p.status.as_str(), inserted]))
        .map_err(backend("writing the outbox"))?;
    Ok(c.last_insert_rowid() as u64)
}

pub(crate) fn insert_proposal(c: &Connection, p: &Proposal) -> Result<(), StoreError> {
    let doc = to_json(p)?;
    c.prepare_cached("INSERT INTO proposals (id, status, version, doc) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| {
            s.execute(params![
                p.id.to_string(),
                p.status.as_str(),
                p.version as i64,
                doc
            ])
        })
        .map_err(backend("writing a proposal"))?;
    Ok(())
}

pub(crate) fn insert_event(c: &Connection, e: &AuditEvent) -> Result<(), StoreError> {
    let doc = to_json(e)?;
    c.prepare_cached("INSERT INTO audit_events (proposal_id, seq, doc) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![e.proposal.to_string(), e.seq, doc]))
        .map_err(backend("writing an audit event"))?;
    Ok(())
}

/// The proposal an idempotency key names, if any.
/// A new proposal with its first event and idempotency key; a proposal
/// with this id already stored is a conflict.
fn insert_new(c: &Connection, t: &Transition, key: Option<&str>) -> Result<(), StoreError> {
    let exists: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM proposals WHERE id = ?1)")
        .and_then(|mut s| s.query_row(params![t.proposal.id.to_string()], |r| r.get(0)))
        .map_err(backend("reading a proposal"))?;
    if exists {
        return Err(StoreError::Conflict);
    }
    insert_proposal(c, &t.proposal)?;
    insert_event(c, &t.event)?;
    if let Some(k) = key {
        insert_idempotency(c, k, t.proposal.id)?;
    }
    Ok(())
}

fn idempotency_target(c: &Connection, key: &str) -> Result<Option<ProposalId>, StoreError> {
    let id: Option<String> = c
        .prepare_cached("SELECT proposal_id FROM idempotency_keys WHERE key = ?1")
        .and_then(|mut s| s.query_row(params![key], |r| r.get(0)).optional())
        .map_err(backend("reading an idempotency key"))?;
    id.map(|id| {
        id.parse()
            .map_err(|e| StoreError::backend("a stored proposal id", e))
    })
    .transpose()
}

pub(crate) fn insert_idempotency(
    c: &Connection,
    key: &str,
    id: ProposalId,
) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO idempotency_keys (key, proposal_id) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![key, id.to_string()]))
        .map_err(backend("writing an idempotency key"))?;
    Ok(())
}

pub(crate) fn upsert_asset(c: &Connection, asset: &CachedAsset) -> Result<(), StoreError> {
    let doc = to_json(asset)?;
    c.prepare_cached(
        "INSERT INTO asset_cache (id, doc) VALUES (?1, ?2) \
         ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
    )
    .and_then(|mut s| s.execute(params![asset.asset.id.to_string(), doc]))
    .map_err(backend("caching an asset"))?;
    Ok(())
}

fn read_cached_asset(c: &Connection, id: &str) -> Result<Option<CachedAsset>, StoreError> {
    let doc: Option<String> = c
        .prepare_cached("SELECT doc FROM asset_cache WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
        .map_err(backend("reading the asset cache"))?;
    doc.as_deref().map(from_json).transpose()
}

/// The count of `key` in the window ending at `ends_at` (0 if none).
fn rate_count(c: &Connection, key: &str, ends_at: i64) -> Result<u64, StoreError> {
    let n: Option<i64> = c
        .prepare_cached("SELECT count FROM rate_counts WHERE key = ?1 AND ends_at = ?2")
        .and_then(|mut s| s.query_row(params![key, ends_at], |r| r.get(0)).optional())
        .map_err(backend("reading a rate window"))?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

/// The newest window `key` counted in (of windows of `window_secs`), with
/// the count of the one before it.
fn read_counter(
    c: &Connection,
    key: &str,
    window_secs: i64,
) -> Result<Option<Counter>, StoreError> {
    let newest: Option<(i64, i64)> = c
        .prepare_cached(
            "SELECT ends_at, count FROM rate_counts WHERE key = ?1 ORDER BY ends_at DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(backend("reading a rate window"))?;
    let Some((ends_at, count)) = newest else {
        return Ok(None);
    };
    Ok(Some(Counter {
        ends_at,
        count: count.max(0) as u64,
        previous: rate_count(c, key, ends_at - window_secs.max(1))?,
    }))
}

/// Adds one to `key` in the window `now` falls in: the new count and the
/// previous window's.
fn count_one(
    c: &Connection,
    key: &str,
    window_secs: i64,
    now: Timestamp,
) -> Result<WindowCount, StoreError> {
    let size = window_secs.max(1);
    let ends_at = window_end(now, size);
    let current: i64 = c
        .prepare_cached(
            "INSERT INTO rate_counts (key, ends_at, expires_at, count) \
             VALUES (?1, ?2, ?3, 1) \
             ON CONFLICT (key, ends_at) DO UPDATE SET count = count + 1 \
             RETURNING count",
        )
        .and_then(|mut s| s.query_row(params![key, ends_at, ends_at + size], |r| r.get(0)))
        .map_err(backend("counting in a rate window"))?;
    let previous = rate_count(c, key, ends_at - size)?;
    // Old windows are dropped as we go (DynamoDB uses TTL); the index
    // makes this a range delete.
    c.prepare_cached("DELETE FROM rate_counts WHERE expires_at <= ?1")
        .and_then(|mut s| s.execute(params![now.unix_timestamp()]))
        .map_err(backend("dropping old rate windows"))?;
    Ok(WindowCount {
        current: current as u64,
        previous,
    })
}

fn read_proposal(c: &Connection, id: ProposalId) -> Result<Option<Proposal>, StoreError> {
    let doc: Option<String> = c
        .prepare_cached("SELECT doc FROM proposals WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row(params![id.to_string()], |r| r.get(0))
                .optional()
        })
        .map_err(backend("reading a proposal"))?;
    doc.as_deref().map(from_json).transpose()
}

#[async_trait]
impl ProposalStore for SqliteStore {
    async fn create(
        &self,
        t: &Transition,
        idempotency_key: Option<&str>,
    ) -> Result<Created, StoreError> {
        if t.expected_version != 0 {
            return Err(StoreError::Conflict);
        }
        let t = t.clone();
        let key = idempotency_key.map(str::to_owned);
        self.write(move |c| {
            if let Some(k) = &key
                && let Some(id) = idempotency_target(c, k)?
            {
                return Ok((Created::Existing(id), None));
            }
            insert_new(c, &t, key.as_deref())?;
            let seq = insert_change(c, &t.proposal, true)?;
            Ok((Created::New, Some(seq)))
        })
        .await
    }

    /// One write transaction: the counts are read and checked in it, so
    /// of two reports racing for a quota's last place one gets it; the
    /// asset cache entry is written in it too.
    async fn create_counted(
        &self,
        t: &Transition,
        idempotency_key: Option<&str>,
        quotas: &[Quota],
        cache: Option<&CachedAsset>,
        now: Timestamp,
    ) -> Result<Counted, StoreError> {
        if t.expected_version != 0 {
            return Err(StoreError::Conflict);
        }
        let t = t.clone();
        let key = idempotency_key.map(str::to_owned);
        let quotas = quotas.to_vec();
        let cache = cache.cloned();
        self.write(move |c| {
            if let Some(k) = &key
                && let Some(id) = idempotency_target(c, k)?
            {
                return Ok((Counted::Stored(Created::Existing(id)), None));
            }
            for (i, q) in quotas.iter().enumerate() {
                let size = q.limit.window_secs.max(1);
                let end = window_end(now, size);
                let counts = WindowCount {
                    current: rate_count(c, &q.key, end)?,
                    previous: rate_count(c, &q.key, end - size)?,
                };
                let with_this = WindowCount {
                    current: counts.current + 1,
                    ..counts
                };
                if q.limit.check(with_this, now).is_err() {
                    return Ok((Counted::Limited { quota: i, counts }, None));
                }
            }
            insert_new(c, &t, key.as_deref())?;
            for q in &quotas {
                count_one(c, &q.key, q.limit.window_secs, now)?;
            }
            if let Some(entry) = &cache {
                upsert_asset(c, entry)?;
            }
            let seq = insert_change(c, &t.proposal, true)?;
            Ok((Counted::Stored(Created::New), Some(seq)))
        })
        .await
    }

    /// One read transaction.
    async fn intake_reads(&self, reads: &IntakeReads) -> Result<IntakeView, StoreError> {
        let reads = reads.clone();
        self.read(move |c| {
            let revocation = match &reads.code {
                Some((asset, workflow)) => {
                    read_revocation(c, &asset.to_string(), &workflow.to_string())?
                }
                None => None,
            };
            let asset = match &reads.asset {
                Some(id) => read_cached_asset(c, &id.to_string())?,
                None => None,
            };
            let existing = match &reads.idempotency_key {
                Some(k) => idempotency_target(c, k)?,
                None => None,
            };
            let counters = reads
                .counters
                .iter()
                .map(|(k, size)| read_counter(c, k, *size))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(IntakeView {
                revocation,
                asset,
                existing,
                counters,
            })
        })
        .await
    }

    async fn apply(&self, t: &Transition) -> Result<(), StoreError> {
        let t = t.clone();
        self.write(move |c| {
            let Some(expected_status) = t.expected_status else {
                return Err(StoreError::Conflict);
            };
            let doc = to_json(&t.proposal)?;
            // The same condition as DynamoDB's: version and status.
            let n = c
                .prepare_cached(
                    "UPDATE proposals SET status = ?2, version = ?3, doc = ?4 \
                     WHERE id = ?1 AND version = ?5 AND status = ?6",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        t.proposal.id.to_string(),
                        t.proposal.status.as_str(),
                        t.proposal.version as i64,
                        doc,
                        t.expected_version as i64,
                        expected_status.as_str()
                    ])
                })
                .map_err(backend("writing a proposal"))?;
            if n != 1 {
                return Err(StoreError::Conflict);
            }
            let last: u32 = c
                .prepare_cached(
                    "SELECT COALESCE(MAX(seq), 0) FROM audit_events WHERE proposal_id = ?1",
                )
                .and_then(|mut s| s.query_row(params![t.proposal.id.to_string()], |r| r.get(0)))
                .map_err(backend("reading the audit events"))?;
            if last + 1 != t.event.seq {
                return Err(StoreError::Conflict);
            }
            insert_event(c, &t.event)?;
            let seq = insert_change(c, &t.proposal, false)?;
            Ok(((), Some(seq)))
        })
        .await
    }

    async fn get(&self, id: ProposalId) -> Result<Option<Proposal>, StoreError> {
        self.read(move |c| read_proposal(c, id)).await
    }

    async fn events(&self, id: ProposalId) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached("SELECT doc FROM audit_events WHERE proposal_id = ?1 ORDER BY seq")
                .map_err(backend("reading the audit events"))?;
            let docs = st
                .query_map(params![id.to_string()], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(backend("reading the audit events"))?;
            docs.iter().map(|d| from_json(d)).collect()
        })
        .await
    }

    async fn list_by_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Proposal>, StoreError> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT doc FROM proposals WHERE status = ?1 ORDER BY id DESC LIMIT ?2",
                )
                .map_err(backend("listing proposals"))?;
            let docs = st
                .query_map(params![status.as_str(), limit as i64], |r| {
                    r.get::<_, String>(0)
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(backend("listing proposals"))?;
            docs.iter().map(|d| from_json(d)).collect()
        })
        .await
    }

    async fn pending_for_asset(
        &self,
        workflow: &WorkflowId,
        asset: &AssetId,
        limit: usize,
    ) -> Result<Vec<Proposal>, StoreError> {
        let (workflow, asset) = (workflow.to_string(), asset.to_string());
        self.read(move |c| {
            // The review backlog is small: a scan of one status's rows.
            let mut st = c
                .prepare_cached(
                    "SELECT doc FROM proposals WHERE status = ?1 AND json_extract(doc, '$.workflow') = ?2 AND json_extract(doc, '$.asset.id') = ?3 ORDER BY id DESC LIMIT ?4",
                )
                .map_err(backend("listing pending proposals of an asset"))?;
            let docs = st
                .query_map(
                    params![Status::PendingReview.as_str(), workflow, asset, limit as i64],
                    |r| r.get::<_, String>(0),
                )
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(backend("listing pending proposals of an asset"))?;
            docs.iter().map(|d| from_json(d)).collect()
        })
        .await
    }

    async fn cached_asset(&self, id: &AssetId) -> Result<Option<CachedAsset>, StoreError> {
        let id = id.to_string();
        self.read(move |c| read_cached_asset(c, &id)).await
    }

    async fn cache_asset(&self, asset: &CachedAsset) -> Result<(), StoreError> {
        let asset = asset.clone();
        self.write(move |c| upsert_asset(c, &asset).map(|()| ((), None)))
            .await
    }

    async fn count_in_window(
        &self,
        key: &str,
        window_secs: i64,
        now: Timestamp,
    ) -> Result<WindowCount, StoreError> {
        let key = key.to_owned();
        self.write(move |c| count_one(c, &key, window_secs, now).map(|n| (n, None)))
            .await
    }

    async fn idempotent(&self, key: &str) -> Result<Option<ProposalId>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| idempotency_target(c, &key)).await
    }

    async fn revoke_code(
        &self,
        asset: &AssetId,
        workflow: &WorkflowId,
        by: &str,
        at: Timestamp,
    ) -> Result<CodeRevocation, StoreError> {
        let (asset, workflow, by) = (asset.to_string(), workflow.to_string(), by.to_owned());
        let when = at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| StoreError::backend("formatting a time", e))?;
        self.write(move |c| {
            let generation: u32 = c
                .prepare_cached(
                    "INSERT INTO code_revocations (asset, workflow, generation, revoked_at, revoked_by) \
                     VALUES (?1, ?2, 1, ?3, ?4) \
                     ON CONFLICT (asset, workflow) DO UPDATE SET generation = generation + 1, \
                     revoked_at = excluded.revoked_at, revoked_by = excluded.revoked_by \
                     RETURNING generation",
                )
                .and_then(|mut s| s.query_row(params![asset, workflow, when, by], |r| r.get(0)))
                .map_err(backend("revoking a code"))?;
            Ok((
                CodeRevocation {
                    generation,
                    revoked_at: at,
                    revoked_by: by,
                },
                None,
            ))
        })
        .await
    }

    async fn put_sticker(&self, sticker: &Sticker) -> Result<(), StoreError> {
        let body = serde_json::to_string(sticker)
            .map_err(|e| StoreError::backend("encoding a sticker", e))?;
        let (reference, code) = (sticker.reference.as_str().to_owned(), sticker.code.clone());
        self.write(move |c| {
            let stored: String = c
                .prepare_cached(
                    "INSERT INTO stickers (reference, code, body) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (reference) DO UPDATE SET reference = reference \
                     RETURNING code",
                )
                .and_then(|mut s| s.query_row(params![reference, code, body], |r| r.get(0)))
                .map_err(backend("registering a sticker"))?;
            if stored == code {
                Ok(((), None))
            } else {
                Err(StoreError::Conflict)
            }
        })
        .await
    }

    async fn sticker(&self, reference: &StickerRef) -> Result<Option<Sticker>, StoreError> {
        let reference = reference.as_str().to_owned();
        self.read(move |c| {
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM stickers WHERE reference = ?1")
                .and_then(|mut s| s.query_row(params![reference], |r| r.get(0)).optional())
                .map_err(backend("reading a sticker"))?;
            body.map(|b| {
                serde_json::from_str(&b).map_err(|e| StoreError::backend("a stored sticker", e))
            })
            .transpose()
        })
        .await
    }

    async fn code_revocation(
        &self,
        asset: &AssetId,
        workflow: &WorkflowId,
    ) -> Result<Option<CodeRevocation>, StoreError> {
        let (asset, workflow) = (asset.to_string(), workflow.to_string());
        self.read(move |c| read_revocation(c, &asset, &workflow))
            .await
    }
}

fn read_revocation(
    c: &Connection,
    asset: &str,
    workflow: &str,
) -> Result<Option<CodeRevocation>, StoreError> {
    let row: Option<(u32, String, String)> = c
        .prepare_cached(
            "SELECT generation, revoked_at, revoked_by FROM code_revocations \
             WHERE asset = ?1 AND workflow = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![asset, workflow], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(backend("reading a code revocation"))?;
    row.map(|(generation, at, revoked_by)| {
        let revoked_at = Timestamp::parse(&at, &time::format_description::well_known::Rfc3339)
            .map_err(|e| StoreError::backend("a stored revocation time", e))?;
        Ok(CodeRevocation {
            generation,
            revoked_at,
            revoked_by,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::received;
    use crate::domain::fixtures::at;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conforms_in_memory() {
        crate::conformance::run_all(Arc::new(SqliteStore::in_memory())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conforms_on_disk_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(DB_FILE);
        let s = Arc::new(SqliteStore::open(&path).unwrap());
        crate::conformance::run_all(s.clone()).await;
        let expired = s.list_by_status(Status::Expired, 10).await.unwrap();
        assert_eq!(expired.len(), 3);
        let seq = s.sequence();
        drop(s);
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(
            again.list_by_status(Status::Expired, 10).await.unwrap(),
            expired
        );
        assert_eq!(again.sequence(), seq, "the outbox sequence survives");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&path.with_extension("db-wal")), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
    }

    #[tokio::test]
    async fn the_outbox_is_written_with_each_change_and_read_in_order() {
        let s = SqliteStore::in_memory();
        let t = received(at(0));
        s.create(&t, Some("k")).await.unwrap();
        // A deduplicated create writes no change.
        let dup = received(at(1));
        assert_eq!(
            s.create(&dup, Some("k")).await.unwrap(),
            Created::Existing(t.proposal.id)
        );
        let next = t
            .proposal
            .transition(
                Status::PendingReview,
                crate::domain::Actor::system("test"),
                "structured",
                serde_json::json!({}),
                at(2),
                |_| {},
            )
            .unwrap();
        s.apply(&next).await.unwrap();
        // A refused transition writes no change either.
        assert_eq!(s.apply(&next).await, Err(StoreError::Conflict));
        let changes = s.undelivered(0, 10).await.unwrap();
        assert_eq!(
            changes
                .iter()
                .map(|c| (c.seq, c.status, c.inserted))
                .collect::<Vec<_>>(),
            [
                (1, Status::Received, true),
                (2, Status::PendingReview, false)
            ]
        );
        assert_eq!(s.sequence(), 2);
        let rec = changes[0].record();
        assert_eq!(
            crate::stream::subject_of(&rec),
            Some((t.proposal.id, Some(Status::Received)))
        );
        s.mark_delivered(1, Outcome::Done).await.unwrap();
        s.mark_delivered(2, Outcome::SetAside).await.unwrap();
        assert!(s.undelivered(0, 10).await.unwrap().is_empty());
        assert_eq!(s.redrive_set_aside().await.unwrap(), 1);
        assert_eq!(s.undelivered(0, 10).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_job_rolls_back_alone_inside_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(SqliteStore::open(&dir.path().join(DB_FILE)).unwrap());
        // Many concurrent creates, some of them repeats of one id: they are
        // batched together, and only the repeats fail.
        let t = received(at(0));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let s = s.clone();
            let t = if i % 8 == 0 {
                t.clone()
            } else {
                received(at(i))
            };
            tasks.push(tokio::spawn(async move { s.create(&t, None).await }));
        }
        let mut ok = 0;
        let mut conflicts = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(Created::New) => ok += 1,
                Err(StoreError::Conflict) => conflicts += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((ok, conflicts), (57, 7));
        assert_eq!(s.undelivered(0, 1000).await.unwrap().len(), 57);
        let events = s.events(t.proposal.id).await.unwrap();
        assert_eq!(events.len(), 1, "the repeats left no event");
    }
}
