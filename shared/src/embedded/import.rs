//! The one-time import of `store.json`, the JSON-file store of versions
//! before the SQLite engine, into `fieldgate.db`.
//!
//! It runs at start when `store.json` is present: everything is copied in
//! one transaction, proposals still in flight get an outbox row (the old
//! version re-drove them at every start), and the file is renamed
//! `store.json.imported` (kept as a backup). A crash between the commit and
//! the rename is safe: the database records the import, and the next start
//! only renames.

use super::sqlite::{
    insert_change, insert_event, insert_idempotency, insert_proposal, upsert_asset,
};
use crate::domain::{AssetId, AuditEvent, Proposal, ProposalId, Status};
use crate::ports::{CachedAsset, StoreError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The file the JSON-file store wrote in the data directory.
pub const OLD_STORE_FILE: &str = "store.json";

/// The JSON-file store's document, as it wrote it (field for field).
#[derive(Deserialize)]
struct OldState {
    proposals: BTreeMap<ProposalId, Proposal>,
    events: BTreeMap<ProposalId, Vec<AuditEvent>>,
    assets: BTreeMap<AssetId, CachedAsset>,
    // Rate windows are short-lived and the old sequence numbers meant
    // nothing outside that process: neither is carried over.
    #[allow(dead_code)]
    counters: HashMap<String, (i64, u64)>,
    idempotency: HashMap<String, ProposalId>,
    #[allow(dead_code)]
    sequence: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "{file} is not a store of an earlier fieldgate version (line {line}, column {column}); \
         move it out of the data directory to start without it"
    )]
    Unreadable {
        file: String,
        line: usize,
        column: usize,
    },
    #[error(
        "{file} holds proposals, and so does {db}, which did not come from importing it; \
         move {file} out of the data directory (it is not imported), or delete {db} to import it"
    )]
    BothPresent { file: String, db: String },
}

/// Imports `dir/store.json` into the database `conn` if it is there
/// (before the store starts: nothing else writes meanwhile).
pub(crate) fn import_json_store(dir: &Path, conn: &mut Connection) -> Result<(), StoreError> {
    let file = dir.join(OLD_STORE_FILE);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::backend(
                format!("reading {}", file.display()),
                e,
            ));
        }
    };
    // Not serde's message: it can quote the content.
    let old: OldState = serde_json::from_slice(&bytes).map_err(|e| {
        StoreError::backend(
            "importing the earlier store",
            ImportError::Unreadable {
                file: file.display().to_string(),
                line: e.line(),
                column: e.column(),
            },
        )
    })?;
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let c = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| StoreError::backend("starting the import", e))?;
    let imported = {
        let c = &*c;
        let done: Option<String> = c
            .query_row(
                "SELECT value FROM meta WHERE key = 'imported_store_json'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| StoreError::backend("reading the import record", e))?;
        if done.as_deref() == Some(digest.as_str()) {
            0 // imported before a crash; only the rename is left
        } else {
            let has_data: bool = c
                .query_row("SELECT EXISTS (SELECT 1 FROM proposals)", [], |r| r.get(0))
                .map_err(|e| StoreError::backend("reading the proposals", e))?;
            if has_data && !old.proposals.is_empty() {
                return Err(StoreError::backend(
                    "importing the earlier store",
                    ImportError::BothPresent {
                        file: file.display().to_string(),
                        db: dir.join(super::DB_FILE).display().to_string(),
                    },
                ));
            }
            for p in old.proposals.values() {
                insert_proposal(c, p)?;
                // What the old version handed to its steps again at start.
                let unfinished = !p.status.is_final()
                    || (p.status == Status::Committed && !p.commit.handoff_published);
                if unfinished {
                    insert_change(c, p, p.version <= 1)?;
                }
            }
            for e in old.events.values().flatten() {
                insert_event(c, e)?;
            }
            for a in old.assets.values() {
                upsert_asset(c, a)?;
            }
            for (k, id) in &old.idempotency {
                insert_idempotency(c, k, *id)?;
            }
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('imported_store_json', ?1)",
                params![digest],
            )
            .map_err(|e| StoreError::backend("recording the import", e))?;
            old.proposals.len()
        }
    };
    c.commit()
        .map_err(|e| StoreError::backend("committing the import", e))?;
    let to = dir.join(format!("{OLD_STORE_FILE}.imported"));
    std::fs::rename(&file, &to)
        .map_err(|e| StoreError::backend(format!("renaming {}", file.display()), e))?;
    tracing::info!(
        proposals = imported,
        from = %file.display(),
        kept_as = %to.display(),
        "imported the store of the earlier version"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{DB_FILE, SqliteStore};
    use crate::ports::ProposalStore;

    /// Written by the JSON-file store itself (its `make_fixture` test, on
    /// the commit before it was removed): a RECEIVED proposal with an
    /// idempotency key, one PENDING_REVIEW, one REJECTED, an asset card.
    const FIXTURE: &str = include_str!("testdata/store.json");

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_old_store_is_imported_once_and_kept_as_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OLD_STORE_FILE), FIXTURE).unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        assert!(!dir.path().join(OLD_STORE_FILE).exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("store.json.imported")).unwrap(),
            FIXTURE
        );
        let a: ProposalId = "01JD0000000000000000000001".parse().unwrap();
        let b: ProposalId = "01JD0000000000000000000002".parse().unwrap();
        let c: ProposalId = "01JD0000000000000000000003".parse().unwrap();
        assert_eq!(s.get(a).await.unwrap().unwrap().status, Status::Received);
        assert_eq!(
            s.get(b).await.unwrap().unwrap().status,
            Status::PendingReview
        );
        assert_eq!(s.get(c).await.unwrap().unwrap().status, Status::Rejected);
        let events = s.events(c).await.unwrap();
        assert_eq!(events.len(), 3);
        crate::domain::verify_chain(&events).unwrap();
        // The idempotency key still deduplicates a resubmission.
        let again = crate::conformance::received(crate::domain::fixtures::at(9));
        assert_eq!(
            s.create(&again, Some("02i000000000001AAA#idem-a"))
                .await
                .unwrap(),
            crate::ports::Created::Existing(a)
        );
        let asset: AssetId = "02i000000000001AAA".parse().unwrap();
        assert!(s.cached_asset(&asset).await.unwrap().is_some());
        // The two unfinished proposals are handed to the steps again.
        let pending: Vec<_> = s
            .undelivered(0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|ch| (ch.proposal, ch.status))
            .collect();
        assert_eq!(pending, [(a, Status::Received), (b, Status::PendingReview)]);
        drop(s);
        // A second start imports nothing again.
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        assert_eq!(s.undelivered(0, 10).await.unwrap().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_before_the_rename_does_not_import_twice() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OLD_STORE_FILE), FIXTURE).unwrap();
        drop(SqliteStore::open_dir(dir.path()).unwrap());
        // As if the rename had not happened.
        std::fs::rename(
            dir.path().join("store.json.imported"),
            dir.path().join(OLD_STORE_FILE),
        )
        .unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        assert!(!dir.path().join(OLD_STORE_FILE).exists());
        assert_eq!(s.undelivered(0, 10).await.unwrap().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_next_to_other_data_or_unreadable_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join(DB_FILE)).unwrap();
        s.create(
            &crate::conformance::received(crate::domain::fixtures::at(0)),
            None,
        )
        .await
        .unwrap();
        drop(s);
        std::fs::write(dir.path().join(OLD_STORE_FILE), FIXTURE).unwrap();
        let Err(e) = SqliteStore::open_dir(dir.path()) else {
            panic!("opened")
        };
        let msg = crate::Chain(&e).to_string();
        assert!(msg.contains("move") && msg.contains("store.json"), "{msg}");
        assert!(dir.path().join(OLD_STORE_FILE).exists(), "left as it was");

        std::fs::write(dir.path().join(OLD_STORE_FILE), "{\"secret\": 1").unwrap();
        let Err(e) = SqliteStore::open_dir(dir.path()) else {
            panic!("opened")
        };
        let msg = crate::Chain(&e).to_string();
        assert!(msg.contains("line 1") && !msg.contains("secret"), "{msg}");
    }
}
