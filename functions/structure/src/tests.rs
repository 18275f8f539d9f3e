use super::*;
use aws_lambda_events::dynamodb::Event;
use fieldgate::clock::{ManualClock, new_proposal_id};
use fieldgate::config::Config;
use fieldgate::domain::{AssetContext, Intake, Proposal};
use fieldgate::embedded::{Outbox, SqliteStore};
use fieldgate::stream::change_record;

struct Fx {
    deps: Structure,
    clock: Arc<ManualClock>,
    store: Arc<SqliteStore>,
    outbox: Arc<Outbox>,
    _dir: tempfile::TempDir,
}

async fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::in_memory());
    let outbox = Arc::new(Outbox::open(None).unwrap());
    let clock = ManualClock::starting_now();
    let parts = Components::new(Config {
        public_url: Some("https://fieldgate.example".into()),
        ..Config::embedded(dir.path())
    })
    .with_clock(clock.clone())
    .with_store(store.clone())
    .with_notifier(outbox.clone());
    let deps = Structure::build(&parts).await.unwrap();
    Fx {
        deps,
        clock,
        store,
        outbox,
        _dir: dir,
    }
}

async fn received(f: &Fx, workflow: &str, notes: &str) -> Proposal {
    let now = f.clock.now();
    let t = Proposal::receive(
        new_proposal_id(now),
        workflow.parse().unwrap(),
        AssetContext {
            id: "02i000000000001AAA".parse().unwrap(),
            name: "Pump 7".into(),
            serial_number: None,
            account_id: None,
            account_name: None,
            location: None,
        },
        Intake {
            notes: notes.into(),
            reporter: None,
            photos: vec![],
            received_at: now,
            assistant: None,
        },
        now,
    );
    f.store.create(&t, None).await.unwrap();
    t.proposal
}

fn event(p: &Proposal, seq: u64) -> Event {
    let mut ev = Event::default();
    ev.records = vec![change_record(None, p, seq)];
    ev
}

#[tokio::test]
async fn received_becomes_pending_review_with_one_link_per_reviewer() {
    let f = fx().await;
    let p = received(
        &f,
        "field-service-case",
        "Pump 7 seal leaking badly, urgent",
    )
    .await;
    let resp = handle_stream(&f.deps, event(&p, 1)).await;
    assert!(resp.batch_item_failures.is_empty());
    let now = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(now.status, Status::PendingReview);
    assert_eq!(now.current().unwrap().fields["Priority"].value, "High");
    assert!(now.review.mailed);
    let mails = f.outbox.mails();
    assert_eq!(mails.len(), 1);
    let token: fieldgate::domain::ReviewToken = mails[0]
        .review_url
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        now.review.grants[0].token_hash,
        token.hash(),
        "only the hash is stored"
    );
    assert!(
        !serde_json::to_string(&now)
            .unwrap()
            .contains(&mails[0].review_url),
        "the link itself is not stored"
    );
    // A redelivery of the same record changes nothing and mails nobody.
    let again = handle_stream(&f.deps, event(&p, 1)).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(f.store.get(p.id).await.unwrap().unwrap(), now);
    assert_eq!(f.outbox.mails().len(), 1);
}

#[tokio::test]
async fn records_that_are_not_ours_are_ignored_and_failures_are_reported() {
    let f = fx().await;
    let p = received(&f, "field-service-case", "noise").await;
    let mut not_received = p.clone();
    not_received.status = Status::Approved;
    let resp = handle_stream(&f.deps, event(&not_received, 5)).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(
        f.store.get(p.id).await.unwrap().unwrap().status,
        Status::Received
    );
    // A workflow that is not configured: the record fails, and is named.
    let orphan = received(&f, "retired-workflow", "noise").await;
    let mut ev = event(&orphan, 9);
    ev.records.push(change_record(None, &p, 10));
    let resp = handle_stream(&f.deps, ev).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert_eq!(
        resp.batch_item_failures[0].item_identifier.as_deref(),
        Some("000000000000000000009")
    );
    // Records after the failure are left for the retry, not half-done.
    assert_eq!(
        f.store.get(p.id).await.unwrap().unwrap().status,
        Status::Received
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_issued_but_never_mailed_is_mailed_once_by_the_sweep_even_twice_at_once() {
    let f = fx().await;
    let p = received(&f, "field-service-case", "Pump 7 seal leaking").await;
    process(&f.deps, p.id).await.unwrap();
    let reviewers = f.deps.workflows.get(&p.workflow).unwrap().reviewers.len();
    assert_eq!(f.outbox.mails().len(), reviewers);
    // A crash between "links issued" and "mail sent": the links of a new
    // round are stored, the mail never went.
    let mailed = f.store.get(p.id).await.unwrap().unwrap();
    let crashed = mailed
        .transition(
            Status::PendingReview,
            Actor::system("structure"),
            "review_links_issued",
            json!({}),
            f.clock.now(),
            |n| {
                n.review.retire_grants();
                n.review.round += 1;
                n.review.mailed = false;
            },
        )
        .unwrap();
    f.store.apply(&crashed).await.unwrap();
    // Too fresh: the driver may still be sending.
    let s = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!((s.redriven, s.waiting), (0, 1));
    assert_eq!(f.outbox.mails().len(), reviewers);
    // Later, two sweeps at once (two schedules overlapping).
    f.clock.advance(MAIL_STUCK_AFTER);
    let now = f.clock.now();
    let (a, b) = tokio::join!(sweep(&f.deps, now), sweep(&f.deps, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.failed + b.failed, 0, "{a:?} {b:?}");
    assert_eq!(
        f.outbox.mails().len(),
        2 * reviewers,
        "one new mail per reviewer, sent once"
    );
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert!(done.review.mailed);
    assert_eq!(done.review.grants.len(), reviewers);
    // Nothing left for a later sweep.
    let s = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!(s, Sweep::default());
}

#[tokio::test]
async fn a_received_proposal_nobody_structured_is_structured_and_mailed_by_the_sweep() {
    let f = fx().await;
    // Its stream record was lost: no delivery ever comes.
    let p = received(&f, "field-service-case", "Fan bearing noisy").await;
    let s = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!((s.redriven, s.waiting), (0, 1), "too fresh");
    f.clock.advance(STRUCTURE_STUCK_AFTER);
    let s = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!(s.redriven, 1);
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::PendingReview);
    assert!(done.review.mailed);
    assert!(!f.outbox.mails().is_empty());
    // The scheduled event reaches the same sweep.
    let out = handle_event(&f.deps, json!({"source": "aws.events"}))
        .await
        .unwrap();
    assert_eq!(out["redriven"], 0, "{out}");
}

/// The intake's record is untrusted: state only later steps set (a
/// revision, a review link, a decision) is dropped before structuring, and
/// a record no intake writes is not structured at all.
#[tokio::test]
async fn an_intake_record_carrying_later_state_is_structured_from_its_notes_only() {
    use fieldgate::domain::{Decision, DecisionKind, FieldValue, Fields, ReviewGrant, ReviewToken};
    let f = fx().await;
    let now = f.clock.now();
    let id = new_proposal_id(now);
    let mut t = Proposal::receive(
        id,
        "field-service-case".parse().unwrap(),
        AssetContext {
            id: "02i000000000001AAA".parse().unwrap(),
            name: "Pump 7".into(),
            serial_number: None,
            account_id: None,
            account_name: None,
            location: None,
        },
        Intake {
            notes: "Pump 7 seal leaking badly, urgent".into(),
            reporter: None,
            photos: vec![],
            received_at: now,
            assistant: None,
        },
        now,
    );
    let token = ReviewToken::generate(id, &mut fieldgate::domain::fixtures::SeededRng(7));
    let mut fields = Fields::new();
    fields.insert(
        "Subject".into(),
        FieldValue {
            value: "Forged".into(),
            ..Default::default()
        },
    );
    let hash = t
        .proposal
        .push_revision(fields, Actor::system("structure"), now);
    t.proposal.review.grants = vec![ReviewGrant {
        reviewer: "service-desk@example.com".into(),
        token_hash: token.hash(),
    }];
    t.proposal.review.mailed = true;
    t.proposal.decision = Some(Decision {
        kind: DecisionKind::Approve,
        by: "service-desk@example.com".into(),
        at: now,
        revision_hash: hash,
        reason: None,
        token_hash: token.hash(),
    });
    f.store.create(&t, None).await.unwrap();
    process(&f.deps, id).await.unwrap();
    let p = f.store.get(id).await.unwrap().unwrap();
    assert_eq!(p.status, Status::PendingReview);
    assert_eq!(p.revisions.len(), 1, "only the structurer's revision");
    assert_ne!(
        p.current().unwrap().fields["Subject"].text(),
        Some("Forged")
    );
    assert!(p.decision.is_none());
    assert!(p.grant_for(&token.hash()).is_none());
    assert!(!p.review.replaced.contains(&token.hash()));
    assert!(p.review.mailed, "the real links were mailed");

    // Not as an intake stores it: left alone.
    let mut late = Proposal::receive(
        new_proposal_id(now),
        "field-service-case".parse().unwrap(),
        p.asset.clone(),
        p.intake.clone(),
        now,
    );
    late.proposal.version = 3;
    f.store.create(&late, None).await.unwrap();
    process(&f.deps, late.proposal.id).await.unwrap();
    let still = f.store.get(late.proposal.id).await.unwrap().unwrap();
    assert_eq!((still.status, still.version), (Status::Received, 3));
}
