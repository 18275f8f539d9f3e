//! The embedded proposal store: the same conditions and atomicity as the
//! DynamoDB adapter (one lock = one transaction), persisted as one JSON
//! file, with a change feed of DynamoDB-stream-shaped records.

use super::write_atomic;
use crate::domain::{AssetId, AuditEvent, Proposal, ProposalId, Status, Timestamp, Transition};
use crate::ports::{CachedAsset, Created, ProposalStore, StoreError};
use crate::stream::change_record;
use async_trait::async_trait;
use aws_lambda_events::dynamodb::EventRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::mpsc;

#[derive(Default, Clone, Serialize, Deserialize)]
struct State {
    proposals: BTreeMap<ProposalId, Proposal>,
    events: BTreeMap<ProposalId, Vec<AuditEvent>>,
    assets: BTreeMap<AssetId, CachedAsset>,
    /// key → (end of its window, epoch seconds; count)
    counters: HashMap<String, (i64, u64)>,
    /// idempotency key → proposal
    idempotency: HashMap<String, ProposalId>,
    sequence: u64,
}

pub struct EmbeddedStore {
    state: Mutex<State>,
    file: Option<PathBuf>,
    feed: Mutex<Vec<mpsc::UnboundedSender<EventRecord>>>,
}

impl EmbeddedStore {
    /// In memory only (unit tests).
    pub fn in_memory() -> Self {
        Self {
            state: Mutex::new(State::default()),
            file: None,
            feed: Mutex::new(Vec::new()),
        }
    }

    /// Persisted in `dir/store.json`, loaded if present.
    pub fn open(dir: &std::path::Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join("store.json");
        let state = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", file.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            state: Mutex::new(state),
            file: Some(file),
            feed: Mutex::new(Vec::new()),
        })
    }

    /// The sequence number of the last change written (0: none yet).
    pub fn sequence(&self) -> u64 {
        self.state.lock().expect("store lock").sequence
    }

    /// A new change feed: every proposal write from now on, in order.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<EventRecord> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.feed.lock().expect("feed lock").push(tx);
        rx
    }

    /// Every proposal not in a final state: what a restarted dev stack
    /// hands to its steps again, like a stream that was not checkpointed.
    pub fn unfinished(&self) -> Vec<Proposal> {
        let st = self.state.lock().expect("store lock");
        st.proposals
            .values()
            .filter(|p| {
                !p.status.is_final()
                    || (p.status == Status::Committed && !p.commit.handoff_published)
            })
            .cloned()
            .collect()
    }

    fn persist(&self, st: &State) -> Result<(), StoreError> {
        if let Some(file) = &self.file {
            let bytes = serde_json::to_vec(st)
                .map_err(|e| StoreError::backend("serialising the store", e))?;
            write_atomic(file, &bytes)
                .map_err(|e| StoreError::backend(format!("writing {}", file.display()), e))?;
        }
        Ok(())
    }

    fn emit(&self, rec: EventRecord) {
        self.feed
            .lock()
            .expect("feed lock")
            .retain(|tx| tx.send(rec.clone()).is_ok());
    }

    /// Runs `f` on the state as one transaction: the change is kept only if
    /// `f` succeeds and the state is saved.
    fn transact<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut st = self.state.lock().expect("store lock");
        // Work on a copy and swap it in only when saved: memory never
        // differs from what is on disk, and a failed `f` leaves no trace.
        let mut next = st.clone();
        let v = f(&mut next)?;
        self.persist(&next)?;
        *st = next;
        Ok(v)
    }
}

#[async_trait]
impl ProposalStore for EmbeddedStore {
    async fn create(
        &self,
        t: &Transition,
        idempotency_key: Option<&str>,
    ) -> Result<Created, StoreError> {
        let rec = self.transact(|st| {
            if let Some(k) = idempotency_key
                && let Some(existing) = st.idempotency.get(k)
            {
                return Ok(Err(*existing));
            }
            if t.expected_version != 0 || st.proposals.contains_key(&t.proposal.id) {
                return Err(StoreError::Conflict);
            }
            st.sequence += 1;
            st.proposals.insert(t.proposal.id, t.proposal.clone());
            st.events.insert(t.proposal.id, vec![t.event.clone()]);
            if let Some(k) = idempotency_key {
                st.idempotency.insert(k.to_owned(), t.proposal.id);
            }
            Ok(Ok(change_record(None, &t.proposal, st.sequence)))
        })?;
        match rec {
            Ok(rec) => {
                self.emit(rec);
                Ok(Created::New)
            }
            Err(existing) => Ok(Created::Existing(existing)),
        }
    }

    async fn apply(&self, t: &Transition) -> Result<(), StoreError> {
        let rec = self.transact(|st| {
            let current = st
                .proposals
                .get(&t.proposal.id)
                .ok_or(StoreError::Conflict)?;
            if current.version != t.expected_version || Some(current.status) != t.expected_status {
                return Err(StoreError::Conflict);
            }
            let events = st.events.entry(t.proposal.id).or_default();
            if events.len() as u32 + 1 != t.event.seq {
                return Err(StoreError::Conflict);
            }
            events.push(t.event.clone());
            let old = st.proposals.insert(t.proposal.id, t.proposal.clone());
            st.sequence += 1;
            Ok(change_record(old.as_ref(), &t.proposal, st.sequence))
        })?;
        self.emit(rec);
        Ok(())
    }

    async fn get(&self, id: ProposalId) -> Result<Option<Proposal>, StoreError> {
        Ok(self
            .state
            .lock()
            .expect("store lock")
            .proposals
            .get(&id)
            .cloned())
    }

    async fn events(&self, id: ProposalId) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .state
            .lock()
            .expect("store lock")
            .events
            .get(&id)
            .cloned()
            .unwrap_or_default())
    }

    async fn list_by_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Proposal>, StoreError> {
        let st = self.state.lock().expect("store lock");
        // ULIDs sort by creation time, so reverse key order is newest first.
        Ok(st
            .proposals
            .values()
            .rev()
            .filter(|p| p.status == status)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn cached_asset(&self, id: &AssetId) -> Result<Option<CachedAsset>, StoreError> {
        Ok(self
            .state
            .lock()
            .expect("store lock")
            .assets
            .get(id)
            .cloned())
    }

    async fn cache_asset(&self, asset: &CachedAsset) -> Result<(), StoreError> {
        self.transact(|st| {
            st.assets.insert(asset.asset.id.clone(), asset.clone());
            Ok(())
        })
    }

    async fn count_in_window(
        &self,
        key: &str,
        window_secs: i64,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let secs = window_secs.max(1);
        let t = now.unix_timestamp();
        // Each counter keeps the end of its window: counters of different
        // window sizes share the map, so a window index would not compare.
        let end = (t / secs + 1) * secs;
        self.transact(|st| {
            // Ended windows are dropped as we go (DynamoDB uses TTL for this).
            st.counters.retain(|_, (e, _)| *e > t);
            let entry = st.counters.entry(key.to_owned()).or_insert((end, 0));
            entry.1 += 1;
            Ok(entry.1)
        })
    }
}
