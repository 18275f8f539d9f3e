//! The store contract as executable checks. Every `ProposalStore` adapter
//! runs these same checks (the SQLite store in its unit tests, in memory
//! and on disk, the
//! DynamoDB adapter against DynamoDB Local), so they cannot drift apart.

use crate::clock::{Clock, SystemClock, new_proposal_id};
use crate::domain::{
    Actor, AssetContext, AssetId, Proposal, ProposalId, SlidingLimit, Status, Sticker, StickerRef,
    Timestamp, Transition, WindowCount, WorkflowId, verify_chain, window_end,
};
use crate::ports::{
    CachedAsset, CodeRevocation, Counted, Counter, Created, IntakeReads, IntakeView, ProposalStore,
    Quota, StoreError,
};
use serde_json::json;
use std::sync::Arc;

/// A new proposal in RECEIVED, as intake makes it: the fixture every store
/// and stream test starts from.
pub fn received(now: Timestamp) -> Transition {
    crate::domain::fixtures::received(new_proposal_id(now), now)
}

/// Stores keep real times: the suite runs on the system clock.
fn now() -> Timestamp {
    SystemClock.now()
}

fn step(p: &Proposal, to: Status, action: &str) -> Transition {
    p.transition(to, Actor::system("test"), action, json!({}), now(), |_| {})
        .expect("legal transition")
}

/// Runs every check; panics with the name of the one that failed.
pub async fn run_all(store: Arc<dyn ProposalStore>) {
    create_and_get(store.as_ref()).await;
    idempotent_create(store.as_ref()).await;
    stale_writes_conflict(store.as_ref()).await;
    events_chain(store.as_ref()).await;
    racing_writers_one_wins(store.clone()).await;
    racing_structurers_one_wins(store.clone()).await;
    received_until_structured(store.as_ref()).await;
    listing_newest_first(store.as_ref()).await;
    counters_and_cache(store.as_ref()).await;
    chained_transitions(store.as_ref()).await;
    code_revocations(store.as_ref()).await;
    stickers(store.as_ref()).await;
    pending_of_one_asset(store.as_ref()).await;
    counted_creates(store.as_ref()).await;
    counted_creates_race(store.clone()).await;
    counted_creates_cache(store.as_ref()).await;
    intake_reads_at_once(store.as_ref()).await;
}

fn quota(key: &str, limit: u64, seen: Option<Counter>) -> Quota {
    Quota {
        key: key.to_owned(),
        limit: SlidingLimit {
            limit,
            window_secs: 600,
        },
        seen,
    }
}

/// The counter `key` (600 s windows) as `intake_reads` reads it.
async fn counter_of(s: &dyn ProposalStore, key: &str) -> Option<Counter> {
    s.intake_reads(&IntakeReads {
        counters: vec![(key.to_owned(), 600)],
        ..IntakeReads::default()
    })
    .await
    .unwrap()
    .counters[0]
}

/// `create_counted`: a report is stored and counted in one write, or
/// refused with nothing stored or counted; a resend is answered by the
/// report it repeats whatever the quota; windows roll over; a stale or
/// missing `seen` is only a hint.
async fn counted_creates(s: &dyn ProposalStore) {
    let at = now();
    let end = window_end(at, 600);
    let tag = new_proposal_id(at);
    let full = format!("RL#full-{tag}");
    for n in 1..=2 {
        let t = received(now());
        assert_eq!(
            s.create_counted(&t, None, &[quota(&full, 2, None)], None, at)
                .await,
            Ok(Counted::Stored(Created::New)),
            "counted_creates: report {n} of 2"
        );
    }
    let refused = received(now());
    assert_eq!(
        s.create_counted(&refused, None, &[quota(&full, 2, None)], None, at)
            .await,
        Ok(Counted::Limited {
            quota: 0,
            counts: WindowCount {
                current: 2,
                previous: 0
            }
        }),
        "counted_creates: the third is refused"
    );
    assert_eq!(
        s.get(refused.proposal.id).await.unwrap(),
        None,
        "counted_creates: a refused report is not stored"
    );
    let two = Some(Counter {
        ends_at: end,
        count: 2,
        previous: 0,
    });
    assert_eq!(
        counter_of(s, &full).await,
        two,
        "counted_creates: nor counted"
    );
    // Several quotas: the second full, the first untouched.
    let other = format!("RL#other-{tag}");
    assert_eq!(
        s.create_counted(
            &received(now()),
            None,
            &[quota(&other, 10, None), quota(&full, 2, two)],
            None,
            at
        )
        .await,
        Ok(Counted::Limited {
            quota: 1,
            counts: WindowCount {
                current: 2,
                previous: 0
            }
        }),
        "counted_creates: the quota that is full refuses"
    );
    assert_eq!(
        counter_of(s, &other).await,
        None,
        "counted_creates: the other quota counted nothing"
    );
    // A resend is answered, not refused, and counts nowhere.
    let key = format!("k-{tag}");
    let one = format!("RL#one-{tag}");
    let first = received(now());
    assert_eq!(
        s.create_counted(&first, Some(&key), &[quota(&one, 1, None)], None, at)
            .await,
        Ok(Counted::Stored(Created::New)),
        "counted_creates: keyed"
    );
    let again = received(now());
    assert_eq!(
        s.create_counted(&again, Some(&key), &[quota(&one, 1, None)], None, at)
            .await,
        Ok(Counted::Stored(Created::Existing(first.proposal.id))),
        "counted_creates: a resend with its quota full"
    );
    assert_eq!(s.get(again.proposal.id).await.unwrap(), None);
    // Windows: two in one, the next sees them as its previous; `seen`
    // stale, missing or of the older window changes nothing but the
    // store's work.
    let rolling = format!("RL#rolling-{tag}");
    for _ in 0..2 {
        let r = s
            .create_counted(
                &received(now()),
                None,
                &[quota(&rolling, 10, None)],
                None,
                at,
            )
            .await;
        assert_eq!(r, Ok(Counted::Stored(Created::New)));
    }
    let next = at + time::Duration::seconds(600);
    let stale_seen = [
        None,
        Some(Counter {
            ends_at: end + 600,
            count: 0,
            previous: 2,
        }),
        Some(Counter {
            ends_at: end,
            count: 2,
            previous: 0,
        }),
        None,
    ];
    for (n, seen) in stale_seen.into_iter().enumerate() {
        let r = s
            .create_counted(
                &received(now()),
                None,
                &[quota(&rolling, 10, seen)],
                None,
                next,
            )
            .await;
        assert_eq!(r, Ok(Counted::Stored(Created::New)), "counted_creates: {n}");
        assert_eq!(
            counter_of(s, &rolling).await,
            Some(Counter {
                ends_at: end + 600,
                count: n as u64 + 1,
                previous: 2,
            }),
            "counted_creates: next window, report {n}"
        );
    }
}

/// `create_counted` with a cache entry: written by the write that stores
/// the report (replacing what was cached), by no refused report or resend.
async fn counted_creates_cache(s: &dyn ProposalStore) {
    let at = now();
    let tag = new_proposal_id(at).to_string();
    let asset: AssetId = format!("02i{}", &tag[tag.len() - 15..]).parse().unwrap();
    let entry = |name: &str, fetched_at| CachedAsset {
        asset: AssetContext {
            id: asset.clone(),
            name: name.into(),
            serial_number: None,
            account_id: Some("001000000000001AAA".into()),
            account_name: Some("Acme".into()),
            location: None,
        },
        fetched_at,
    };
    let one = format!("RL#cache-{tag}");
    let key = format!("k-cache-{tag}");
    let first = received(now());
    let shown = entry("Pump", at - time::Duration::seconds(30));
    assert_eq!(
        s.create_counted(
            &first,
            Some(&key),
            &[quota(&one, 1, None)],
            Some(&shown),
            at
        )
        .await,
        Ok(Counted::Stored(Created::New)),
        "counted_creates_cache: stored"
    );
    assert_eq!(
        s.cached_asset(&asset).await.unwrap(),
        Some(shown.clone()),
        "counted_creates_cache: the report's write cached the asset"
    );
    let renamed = entry("Pump (renamed)", at);
    assert_eq!(
        s.create_counted(&received(now()), Some(&key), &[], Some(&renamed), at)
            .await,
        Ok(Counted::Stored(Created::Existing(first.proposal.id))),
        "counted_creates_cache: a resend"
    );
    assert_eq!(
        s.create_counted(
            &received(now()),
            None,
            &[quota(&one, 1, None)],
            Some(&renamed),
            at
        )
        .await,
        Ok(Counted::Limited {
            quota: 0,
            counts: WindowCount {
                current: 1,
                previous: 0
            }
        }),
        "counted_creates_cache: refused"
    );
    assert_eq!(
        s.cached_asset(&asset).await.unwrap(),
        Some(shown),
        "counted_creates_cache: neither a resend nor a refused report wrote it"
    );
    assert_eq!(
        s.create_counted(&received(now()), None, &[], Some(&renamed), at)
            .await,
        Ok(Counted::Stored(Created::New))
    );
    assert_eq!(
        s.cached_asset(&asset).await.unwrap(),
        Some(renamed),
        "counted_creates_cache: a later report replaces the entry"
    );
}

/// Reports racing for a quota's last places: exactly the limit is stored.
async fn counted_creates_race(s: Arc<dyn ProposalStore>) {
    let at = now();
    let key = format!("RL#race-{}", new_proposal_id(at));
    let racers: Vec<_> = (0..5)
        .map(|_| {
            let s = s.clone();
            let key = key.clone();
            tokio::spawn(async move {
                s.create_counted(&received(now()), None, &[quota(&key, 3, None)], None, at)
                    .await
            })
        })
        .collect();
    let mut stored = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(Counted::Stored(Created::New)) => stored += 1,
            Ok(Counted::Limited { .. }) => {}
            other => panic!("counted_creates_race: {other:?}"),
        }
    }
    assert_eq!(stored, 3, "counted_creates_race: the limit, no more");
    assert_eq!(counter_of(s.as_ref(), &key).await.map(|c| c.count), Some(3));
}

/// `intake_reads` answers as the single reads do.
async fn intake_reads_at_once(s: &dyn ProposalStore) {
    let n = new_proposal_id(now()).to_string();
    let asset: AssetId = format!("02i{}", &n[n.len() - 15..]).parse().unwrap();
    let wf: WorkflowId = "field-service-case".parse().unwrap();
    let reads = |key: &str| IntakeReads {
        code: Some((asset.clone(), wf.clone())),
        asset: Some(asset.clone()),
        idempotency_key: Some(key.to_owned()),
        counters: vec![(format!("RL#reads-{n}"), 600)],
    };
    assert_eq!(
        s.intake_reads(&reads(&format!("k-{n}"))).await.unwrap(),
        IntakeView {
            counters: vec![None],
            ..IntakeView::default()
        },
        "intake_reads: nothing there"
    );
    assert_eq!(
        s.intake_reads(&IntakeReads::default()).await.unwrap(),
        IntakeView::default(),
        "intake_reads: nothing asked"
    );
    let revocation = s.revoke_code(&asset, &wf, "admin", now()).await.unwrap();
    let cached = CachedAsset {
        asset: AssetContext {
            id: asset.clone(),
            name: "Pump".into(),
            serial_number: None,
            account_id: None,
            account_name: None,
            location: None,
        },
        fetched_at: now(),
    };
    s.cache_asset(&cached).await.unwrap();
    let t = received(now());
    let key = format!("k-{n}");
    s.create(&t, Some(&key)).await.unwrap();
    let at = now();
    s.count_in_window(&format!("RL#reads-{n}"), 600, at)
        .await
        .unwrap();
    let view = s.intake_reads(&reads(&key)).await.unwrap();
    assert_eq!(
        view,
        IntakeView {
            revocation: Some(revocation),
            asset: Some(cached),
            existing: Some(t.proposal.id),
            counters: vec![Some(Counter {
                ends_at: window_end(at, 600),
                count: 1,
                previous: 0,
            })],
        },
        "intake_reads: each as its own read gives it"
    );
}

/// `pending_for_asset`: only PENDING_REVIEW proposals of that workflow and
/// asset, newest first, at most `limit`.
async fn pending_of_one_asset(s: &dyn ProposalStore) {
    let asset: AssetId = format!("02i{}AAA", &new_proposal_id(now()).to_string()[14..26])
        .parse()
        .unwrap();
    let other: AssetId = "02i000000000002AAA".parse().unwrap();
    let mut pending = Vec::new();
    for (on, to) in [
        (&asset, Status::PendingReview),
        (&asset, Status::PendingReview),
        (&asset, Status::Rejected),
        (&other, Status::PendingReview),
        (&asset, Status::Received),
    ] {
        let mut t = received(now());
        t.proposal.asset.id = on.clone();
        s.create(&t, None).await.unwrap();
        if to != Status::Received {
            let e = step(&t.proposal, Status::PendingReview, "structured");
            s.apply(&e).await.unwrap();
            if to == Status::Rejected {
                s.apply(&step(&e.proposal, Status::Rejected, "rejected"))
                    .await
                    .unwrap();
            }
        }
        if on == &asset && to == Status::PendingReview {
            pending.push(t.proposal.id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    pending.reverse();
    let wf: WorkflowId = "field-service-case".parse().unwrap();
    let listed: Vec<ProposalId> = s
        .pending_for_asset(&wf, &asset, 10)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        listed, pending,
        "pending_of_one_asset: those two, newest first"
    );
    let one = s.pending_for_asset(&wf, &asset, 1).await.unwrap();
    assert_eq!(one.len(), 1, "pending_of_one_asset: the limit");
    let none = s
        .pending_for_asset(&"other-workflow".parse().unwrap(), &asset, 10)
        .await
        .unwrap();
    assert!(none.is_empty(), "pending_of_one_asset: another workflow's");
}

/// `apply_all`: transitions made one from the other land as the last one's
/// proposal with every event (out of RECEIVED too), and a chain made from
/// a stale version changes nothing.
async fn chained_transitions(s: &dyn ProposalStore) {
    let t = received(now());
    s.create(&t, None).await.unwrap();
    let a = step(&t.proposal, Status::PendingReview, "structured");
    let b = step(&a.proposal, Status::PendingReview, "review_links_issued");
    s.apply_all(&[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(
        s.get(t.proposal.id).await.unwrap(),
        Some(b.proposal.clone()),
        "chained_transitions: the last one's state"
    );
    let events = s.events(t.proposal.id).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["received", "structured", "review_links_issued"],
        "chained_transitions: every event"
    );
    verify_chain(&events).expect("chained_transitions: the chain holds");
    // The same chain again is stale: a conflict, and nothing changed.
    assert_eq!(
        s.apply_all(&[a, b.clone()]).await,
        Err(StoreError::Conflict),
        "chained_transitions: stale"
    );
    assert_eq!(
        s.get(t.proposal.id).await.unwrap(),
        Some(b.proposal),
        "chained_transitions: unchanged"
    );
    assert_eq!(s.events(t.proposal.id).await.unwrap().len(), 3);
}

async fn create_and_get(s: &dyn ProposalStore) {
    let t = received(now());
    assert_eq!(
        s.create(&t, None).await,
        Ok(Created::New),
        "create_and_get: create"
    );
    assert_eq!(
        s.get(t.proposal.id).await.unwrap(),
        Some(t.proposal.clone()),
        "create_and_get: round trip"
    );
    assert_eq!(
        s.create(&t, None).await,
        Err(StoreError::Conflict),
        "create_and_get: second create of the same id"
    );
    assert_eq!(
        s.get(new_proposal_id(now())).await.unwrap(),
        None,
        "create_and_get: unknown id"
    );
}

async fn idempotent_create(s: &dyn ProposalStore) {
    let key = format!("k-{}", new_proposal_id(now()));
    let a = received(now());
    let b = received(now());
    assert_eq!(
        s.idempotent(&key).await.unwrap(),
        None,
        "idempotent_create: unknown key"
    );
    assert_eq!(
        s.create(&a, Some(&key)).await,
        Ok(Created::New),
        "idempotent_create: first"
    );
    assert_eq!(
        s.idempotent(&key).await.unwrap(),
        Some(a.proposal.id),
        "idempotent_create: the key names the proposal"
    );
    assert_eq!(
        s.create(&b, Some(&key)).await,
        Ok(Created::Existing(a.proposal.id)),
        "idempotent_create: repeat"
    );
    assert_eq!(
        s.get(b.proposal.id).await.unwrap(),
        None,
        "idempotent_create: the repeat stored nothing"
    );
    // A retry of the very same write (the first answer was lost).
    assert_eq!(
        s.create(&a, Some(&key)).await,
        Ok(Created::Existing(a.proposal.id)),
        "idempotent_create: replay"
    );
}

async fn stale_writes_conflict(s: &dyn ProposalStore) {
    let t = received(now());
    s.create(&t, None).await.unwrap();
    let next = step(&t.proposal, Status::PendingReview, "structured");
    s.apply(&next)
        .await
        .expect("stale_writes_conflict: first apply");
    // Same base again: stale version.
    assert_eq!(
        s.apply(&next).await,
        Err(StoreError::Conflict),
        "stale_writes_conflict: replay"
    );
    // Right version, wrong expected status.
    let mut wrong = step(&next.proposal, Status::Approved, "approved");
    wrong.expected_status = Some(Status::Received);
    assert_eq!(
        s.apply(&wrong).await,
        Err(StoreError::Conflict),
        "stale_writes_conflict: status"
    );
    assert_eq!(
        s.get(t.proposal.id).await.unwrap(),
        Some(next.proposal),
        "stale_writes_conflict: unchanged"
    );
}

async fn events_chain(s: &dyn ProposalStore) {
    let t = received(now());
    s.create(&t, None).await.unwrap();
    let a = step(&t.proposal, Status::PendingReview, "structured");
    s.apply(&a).await.unwrap();
    let b = step(&a.proposal, Status::Rejected, "rejected");
    s.apply(&b).await.unwrap();
    let events = s.events(t.proposal.id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["received", "structured", "rejected"],
        "events_chain: order"
    );
    verify_chain(&events).expect("events_chain: chain verifies");
}

async fn racing_writers_one_wins(s: Arc<dyn ProposalStore>) {
    let t = received(now());
    s.create(&t, None).await.unwrap();
    let base = step(&t.proposal, Status::PendingReview, "structured");
    s.apply(&base).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        let p = base.proposal.clone();
        tasks.push(tokio::spawn(async move {
            let to = if i % 2 == 0 {
                Status::Approved
            } else {
                Status::Rejected
            };
            s.apply(&step(&p, to, "decided")).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => wins += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("racing_writers_one_wins: unexpected {e}"),
        }
    }
    assert_eq!(wins, 1, "racing_writers_one_wins: exactly one decision");
    assert_eq!(
        s.events(t.proposal.id).await.unwrap().len(),
        3,
        "racing_writers_one_wins: one event per win"
    );
}

/// The move out of RECEIVED (in DynamoDB: from the intake's inbox item to
/// the proposal item) happens once, however many drivers race for it.
async fn racing_structurers_one_wins(s: Arc<dyn ProposalStore>) {
    let t = received(now());
    s.create(&t, None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let p = t.proposal.clone();
        tasks.push(tokio::spawn(async move {
            let next = step(&p, Status::PendingReview, &format!("structured by {i}"));
            s.apply(&next).await.map(|()| next.proposal)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(p) => winners.push(p),
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("racing_structurers_one_wins: unexpected {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "racing_structurers_one_wins: one move");
    assert_eq!(
        s.get(t.proposal.id).await.unwrap().as_ref(),
        Some(&winners[0]),
        "racing_structurers_one_wins: the winner's proposal is stored"
    );
    let events = s.events(t.proposal.id).await.unwrap();
    assert_eq!(
        events.len(),
        2,
        "racing_structurers_one_wins: one event per win"
    );
    verify_chain(&events).expect("racing_structurers_one_wins: chain verifies");
}

/// A new proposal is listed as RECEIVED (the structure sweep finds it)
/// until it is structured, then only under its new status; its id stays
/// taken, and its chain runs from the "received" event on.
async fn received_until_structured(s: &dyn ProposalStore) {
    let key = format!("k-{}", new_proposal_id(now()));
    let t = received(now());
    let id = t.proposal.id;
    s.create(&t, Some(&key)).await.unwrap();
    let listed = async |status| {
        s.list_by_status(status, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.id == id)
            .collect::<Vec<Proposal>>()
    };
    assert_eq!(
        listed(Status::Received).await,
        std::slice::from_ref(&t.proposal),
        "received_until_structured: listed as received"
    );
    assert_eq!(
        s.get_new(id).await.unwrap(),
        Some(t.proposal.clone()),
        "received_until_structured: get_new of a new one"
    );
    let next = step(&t.proposal, Status::PendingReview, "structured");
    s.apply(&next).await.unwrap();
    assert_eq!(
        listed(Status::Received).await,
        [],
        "received_until_structured: no longer received"
    );
    assert_eq!(
        listed(Status::PendingReview).await,
        std::slice::from_ref(&next.proposal),
        "received_until_structured: listed under its new status"
    );
    assert_eq!(
        s.get(id).await.unwrap(),
        Some(next.proposal.clone()),
        "received_until_structured: get"
    );
    assert_eq!(
        s.get_new(id).await.unwrap(),
        Some(next.proposal.clone()),
        "received_until_structured: get_new once structured"
    );
    assert_eq!(
        s.create(&t, None).await,
        Err(StoreError::Conflict),
        "received_until_structured: the id stays taken"
    );
    assert_eq!(
        s.create(&received(now()), Some(&key)).await,
        Ok(Created::Existing(id)),
        "received_until_structured: the key still names it"
    );
    let after = step(&next.proposal, Status::Approved, "approved");
    s.apply(&after).await.unwrap();
    let events = s.events(id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3],
        "received_until_structured: the whole chain"
    );
    assert_eq!(events[0], t.event, "received_until_structured: as received");
    verify_chain(&events).expect("received_until_structured: chain verifies");
}

async fn listing_newest_first(s: &dyn ProposalStore) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let t = received(now());
        s.create(&t, None).await.unwrap();
        let e = step(&t.proposal, Status::PendingReview, "structured");
        s.apply(&e).await.unwrap();
        let x = step(&e.proposal, Status::Expired, "expired");
        s.apply(&x).await.unwrap();
        ids.push(t.proposal.id);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let listed: Vec<ProposalId> = s
        .list_by_status(Status::Expired, 3)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    ids.reverse();
    assert_eq!(listed, ids, "listing_newest_first");
}

async fn counters_and_cache(s: &dyn ProposalStore) {
    let now = now();
    let key = format!("RL#{}", new_proposal_id(now));
    let count = |current, previous| WindowCount { current, previous };
    assert_eq!(
        s.count_in_window(&key, 600, now).await.unwrap(),
        count(1, 0),
        "counters: first"
    );
    assert_eq!(
        s.count_in_window(&key, 600, now).await.unwrap(),
        count(2, 0),
        "counters: second"
    );
    // The next window sees this one as its previous (the sliding estimate).
    let next = now + time::Duration::seconds(600);
    assert_eq!(
        s.count_in_window(&key, 600, next).await.unwrap(),
        count(1, 2),
        "counters: next window"
    );
    let later = now + time::Duration::seconds(1800);
    assert_eq!(
        s.count_in_window(&key, 600, later).await.unwrap(),
        count(1, 0),
        "counters: two windows on"
    );
    // Counters of different window sizes do not disturb each other (the
    // MCP endpoint counts per minute and per day for one token).
    let day = format!("DAY#{key}");
    assert_eq!(
        s.count_in_window(&day, 86_400, later)
            .await
            .unwrap()
            .current,
        1
    );
    let minute = format!("MIN#{key}");
    assert_eq!(
        s.count_in_window(&minute, 60, later).await.unwrap().current,
        1
    );
    assert_eq!(
        s.count_in_window(&day, 86_400, later)
            .await
            .unwrap()
            .current,
        2,
        "counters: windows of different sizes"
    );
    let asset = CachedAsset {
        asset: AssetContext {
            id: "02i000000000077AAA".parse().unwrap(),
            name: "Pump".into(),
            serial_number: None,
            account_id: Some("001000000000001AAA".into()),
            account_name: Some("Acme".into()),
            location: None,
        },
        fetched_at: now,
    };
    s.cache_asset(&asset).await.unwrap();
    assert_eq!(
        s.cached_asset(&asset.asset.id).await.unwrap(),
        Some(asset),
        "cache round trip"
    );
}

async fn code_revocations(s: &dyn ProposalStore) {
    // A fresh asset id per run: DynamoDB Local keeps its items across runs.
    let n = new_proposal_id(now()).to_string();
    let asset: AssetId = format!("02i{}", &n[n.len() - 15..])
        .parse()
        .expect("an asset id");
    let wf: WorkflowId = "field-service-case".parse().unwrap();
    let other: WorkflowId = "another-workflow".parse().unwrap();
    assert_eq!(
        s.code_revocation(&asset, &wf).await.unwrap(),
        None,
        "revocations: never revoked"
    );
    let t = now();
    let first = s.revoke_code(&asset, &wf, "admin", t).await.unwrap();
    assert_eq!(
        first,
        CodeRevocation {
            generation: 1,
            revoked_at: t,
            revoked_by: "admin".into(),
        },
        "revocations: first"
    );
    assert!(first.withdraws(0) && !first.withdraws(1));
    assert_eq!(
        s.code_revocation(&asset, &wf).await.unwrap(),
        Some(first),
        "revocations: read back"
    );
    let later = t + time::Duration::minutes(5);
    let second = s.revoke_code(&asset, &wf, "ops", later).await.unwrap();
    assert_eq!(
        (
            second.generation,
            second.revoked_at,
            second.revoked_by.as_str()
        ),
        (2, later, "ops"),
        "revocations: second steps up"
    );
    assert_eq!(
        s.code_revocation(&asset, &other).await.unwrap(),
        None,
        "revocations: per workflow"
    );
}

/// A sticker's reference: stored once, printing it again is a no-op, and
/// another code under the same reference is refused.
async fn stickers(s: &dyn ProposalStore) {
    // ULIDs are Crockford base32: their random tail is a fresh reference
    // per run (DynamoDB Local keeps its items across runs).
    let n = new_proposal_id(now()).to_string();
    let reference: StickerRef = n[n.len() - 8..].parse().expect("a reference");
    let sticker = Sticker {
        reference: reference.clone(),
        code: format!("02i{}.field-service-case.k1.tag", &n[n.len() - 15..]),
        asset: format!("02i{}", &n[n.len() - 15..]).parse().unwrap(),
        workflow: "field-service-case".parse().unwrap(),
        printed_at: crate::domain::to_millis(now()),
    };
    assert_eq!(
        s.sticker(&reference).await.unwrap(),
        None,
        "stickers: none yet"
    );
    s.put_sticker(&sticker).await.unwrap();
    s.put_sticker(&sticker)
        .await
        .expect("stickers: printing again");
    assert_eq!(
        s.sticker(&reference).await.unwrap(),
        Some(sticker.clone()),
        "stickers: read back"
    );
    let other = Sticker {
        code: "02i000000000009AAA.field-service-case.k1.other".into(),
        ..sticker.clone()
    };
    assert!(
        matches!(s.put_sticker(&other).await, Err(StoreError::Conflict)),
        "stickers: a taken reference is refused"
    );
    assert_eq!(
        s.sticker(&reference).await.unwrap(),
        Some(sticker),
        "stickers: the first one stays"
    );
}
