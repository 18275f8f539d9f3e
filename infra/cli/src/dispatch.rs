//! Plays Lambda's event-source mappings over the SQLite outbox.
//!
//! Undelivered changes are read in order and each goes to the step whose
//! filter matches its new status. Changes of one proposal run one after
//! another, in order; different proposals run side by side, and each step
//! has its own slots (Lambda: one mapping and one concurrency per
//! function), so commits waiting on a slow org never hold up structuring
//! and review mail. There is no batch barrier: a change is started as soon
//! as it is read and its proposal is free.
//!
//! A change is marked delivered only after its step finished, so a crash
//! re-delivers what was in flight (the steps resume from the proposal's
//! state, so a repeat is harmless). A failed change is retried with backoff,
//! then set aside (AWS: the on-failure queue).

use aws_lambda_events::dynamodb::{Event, EventRecord};
use fieldgate::Chain;
use fieldgate::domain::{ProposalId, Status};
use fieldgate::embedded::{Change, Outcome, SqliteStore};
use fieldgate::stream::subject_of;
use fieldgate_commit::Commit;
use fieldgate_structure::Structure;
use futures_util::FutureExt;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Changes each step handles at once. Structuring competes with intake
/// for the store's one writer and the CPU: 8 keeps intake above 2,000
/// reports/s during a burst (the structure backlog drains seconds after),
/// where 32 halved it; commits mostly wait on the org, so they get more.
/// BENCHMARKS.md has the runs.
const STRUCTURE_SLOTS: usize = 8;
const COMMIT_SLOTS: usize = 32;
/// Outbox rows read at a time.
const BATCH: usize = 1024;
/// Changes read but not yet finished, at most: a backlog stays in the
/// table, not in memory.
const READ_AHEAD: usize = 4096;

/// The steps the dispatcher drives.
pub struct Steps {
    pub structure: Arc<Structure>,
    /// `None`: the commit step is paused; its changes stay undelivered for
    /// a later start (with the step running) to pick up.
    pub commit: Option<Arc<Commit>>,
    /// Retries of a failed change before it is set aside.
    pub retries: u32,
}

/// Which step's slots a change takes.
#[derive(Clone, Copy)]
enum Lane {
    Structure,
    Commit,
    /// No step wants it (or the commit step is paused): finished at once.
    Free,
}

fn lane(status: Status) -> Lane {
    if fieldgate_structure::STATUSES.contains(&status) {
        Lane::Structure
    } else if fieldgate_commit::STATUSES.contains(&status) {
        Lane::Commit
    } else {
        Lane::Free
    }
}

/// Runs until the store is closed. `delivered` follows the outbox sequence
/// up to which every change was handled (what `Pipeline::settled` waits on).
pub async fn dispatch(store: Arc<SqliteStore>, delivered: watch::Sender<u64>, steps: Steps) {
    let steps = Arc::new(steps);
    let structure_slots = Arc::new(Semaphore::new(STRUCTURE_SLOTS));
    let commit_slots = Arc::new(Semaphore::new(COMMIT_SLOTS));
    let mut committed = store.watch_sequence();
    let mut store_open = true;
    // Every change up to `after` was read.
    let mut after = 0;
    // Every change up to it was read, and none after it had been
    // committed when that read began.
    let mut caught_up = 0;
    // Read and not finished.
    let mut open: BTreeSet<u64> = BTreeSet::new();
    // Proposals with a change running; their later changes wait here.
    let mut busy: HashMap<ProposalId, VecDeque<Change>> = HashMap::new();
    let mut running: JoinSet<(ProposalId, u64)> = JoinSet::new();

    let start = |running: &mut JoinSet<(ProposalId, u64)>, ch: Change| {
        let (store, steps) = (store.clone(), steps.clone());
        let slots = match lane(ch.status) {
            Lane::Structure => Some(structure_slots.clone()),
            Lane::Commit => Some(commit_slots.clone()),
            Lane::Free => None,
        };
        running.spawn(async move {
            let (proposal, seq) = (ch.proposal, ch.seq);
            let _slot = match &slots {
                Some(s) => Some(s.acquire().await.expect("the semaphore is never closed")),
                None => None,
            };
            let record = ch.record();
            let work = AssertUnwindSafe(deliver(&record, &steps)).catch_unwind();
            match work.await {
                Ok(Some(outcome)) => mark(&store, seq, outcome).await,
                Ok(None) => {}
                // Left undelivered: the next start hands it over again.
                Err(_) => tracing::error!(proposal = %proposal, seq, "a step panicked"),
            }
            (proposal, seq)
        });
    };

    loop {
        let mut drained = true;
        if store_open && open.len() < READ_AHEAD {
            // The sequence before the rows: every change up to it is
            // committed, so it is in what the query returns.
            let target = *committed.borrow_and_update();
            match store.undelivered(after, BATCH).await {
                Ok(batch) => {
                    drained = batch.len() < BATCH;
                    for ch in batch {
                        after = ch.seq;
                        open.insert(ch.seq);
                        match busy.get_mut(&ch.proposal) {
                            Some(queue) => queue.push_back(ch),
                            None => {
                                busy.insert(ch.proposal, VecDeque::new());
                                start(&mut running, ch);
                            }
                        }
                    }
                    if drained {
                        caught_up = caught_up.max(target).max(after);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %Chain(&e), "reading the outbox failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let handled = open.first().map_or(caught_up, |first| first - 1);
        delivered.send_if_modified(|d| {
            let newer = handled > *d;
            *d = (*d).max(handled);
            newer
        });
        if !drained && open.len() < READ_AHEAD {
            continue; // more rows are waiting
        }
        if !store_open && running.is_empty() {
            return;
        }
        tokio::select! {
            Some(done) = running.join_next() => {
                let (proposal, seq) = match done {
                    Ok(d) => d,
                    Err(e) => {
                        // Only on abort (the pipeline is stopping).
                        tracing::warn!(error = %e, "a dispatch task ended");
                        continue;
                    }
                };
                open.remove(&seq);
                match busy.get_mut(&proposal).and_then(VecDeque::pop_front) {
                    Some(next) => start(&mut running, next),
                    None => {
                        busy.remove(&proposal);
                    }
                }
            }
            changed = committed.changed(), if store_open && open.len() < READ_AHEAD => {
                if changed.is_err() {
                    store_open = false; // the store is gone
                }
            }
            else => return,
        }
    }
}

/// Records a delivery; retried, since a change left unmarked would be
/// delivered again after a restart (harmless, but noisy).
async fn mark(store: &SqliteStore, seq: u64, outcome: Outcome) {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.mark_delivered(seq, outcome).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(seq, error = %Chain(&e), "marking a change delivered failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// `None`: the change is for the commit step and it is paused.
async fn deliver(rec: &EventRecord, steps: &Steps) -> Option<Outcome> {
    let Some((id, Some(status))) = subject_of(rec) else {
        return Some(Outcome::Done);
    };
    let lane = lane(status);
    if matches!(lane, Lane::Commit) && steps.commit.is_none() {
        return None;
    }
    let retries = steps.retries;
    let mut delay = Duration::from_millis(100);
    for attempt in 0..=retries {
        let mut ev = Event::default();
        ev.records = vec![rec.clone()];
        let resp = match (lane, &steps.commit) {
            (Lane::Structure, _) => fieldgate_structure::handle_stream(&steps.structure, ev).await,
            (Lane::Commit, Some(commit)) => fieldgate_commit::handle_stream(commit, ev).await,
            _ => return Some(Outcome::Done),
        };
        if resp.batch_item_failures.is_empty() {
            return Some(Outcome::Done);
        }
        if attempt < retries {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
    tracing::error!(proposal = %id, %status, "record set aside after {retries} retries (AWS: on-failure queue)");
    Some(Outcome::SetAside)
}
