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
    fx_with(None).await
}

/// The shipped Case workflow with `[review]` set to `review`.
fn case_workflow_with(review: &str) -> fieldgate::domain::Workflows {
    let text = include_str!("../../../infra/workflows/field-service-case.toml");
    let (head, rest) = text.split_once("\n[review]\n").unwrap();
    let tail = &rest[rest.find("\n[constants]").unwrap()..];
    let text = format!("{head}\n[review]\n{review}\n{tail}");
    fieldgate::domain::Workflows::from_workflows(vec![
        fieldgate::domain::Workflow::from_toml("case.toml", &text).unwrap(),
    ])
}

async fn fx_with(workflows: Option<fieldgate::domain::Workflows>) -> Fx {
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
    let parts = match workflows {
        Some(w) => parts.with_workflows(Arc::new(w)),
        None => parts,
    };
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
        add_to: None,
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

fn token_hash_of(url: &str) -> String {
    let token: fieldgate::domain::ReviewToken = url.rsplit('/').next().unwrap().parse().unwrap();
    token.hash()
}

/// Reminder after 24 h, escalation after 48 h, expiry after 72 h: each
/// sent once even by two sweeps at once, each with its audit events; the
/// first links keep working beside the new ones.
#[tokio::test]
async fn an_undecided_review_is_reminded_then_escalated_once_each() {
    let f = fx_with(Some(case_workflow_with(
        "remind_after_hours = 24\nescalate_after_hours = 48\nescalate_to = [\"lead@example.com\", \"night@example.com\"]",
    )))
    .await;
    let p = received(&f, "field-service-case", "Pump 7 seal leaking badly").await;
    let start = f.clock.now();
    assert!(
        handle_stream(&f.deps, event(&p, 1))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(f.outbox.mails().len(), 1);
    let first_link = f.outbox.mails()[0].review_url.clone();

    let at = |h: i64| start + time::Duration::hours(h);
    let s = sweep(&f.deps, at(23)).await.unwrap();
    assert_eq!((s.reminded, s.escalated), (0, 0));
    assert_eq!(f.outbox.mails().len(), 1);

    let (a, b) = tokio::join!(sweep(&f.deps, at(24)), sweep(&f.deps, at(24)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.reminded + b.reminded, 1, "{a:?} {b:?}");
    assert_eq!(a.escalated + b.escalated, 0);
    let mails = f.outbox.mails();
    assert_eq!(mails.len(), 2, "one reminder");
    assert_eq!(mails[1].to, "service-desk@example.com");
    assert!(
        mails[1].subject.starts_with("Reminder"),
        "{}",
        mails[1].subject
    );
    assert!(
        mails[1].text.contains("waited 24 hours"),
        "{}",
        mails[1].text
    );
    assert_ne!(mails[1].review_url, first_link, "a fresh link");
    assert_eq!(sweep(&f.deps, at(30)).await.unwrap().reminded, 0, "once");

    let (a, b) = tokio::join!(sweep(&f.deps, at(48)), sweep(&f.deps, at(48)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.escalated + b.escalated, 1, "{a:?} {b:?}");
    let mails = f.outbox.mails();
    assert_eq!(
        mails.len(),
        4,
        "one escalation mail per escalation reviewer"
    );
    let to: Vec<&str> = mails[2..].iter().map(|m| m.to.as_str()).collect();
    assert_eq!(to, ["lead@example.com", "night@example.com"]);
    assert!(
        mails[2].subject.starts_with("Escalated"),
        "{}",
        mails[2].subject
    );
    assert_ne!(
        mails[2].review_url, mails[3].review_url,
        "links of their own"
    );
    assert_eq!(sweep(&f.deps, at(60)).await.unwrap(), Sweep::default());

    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::PendingReview);
    for m in &mails {
        assert!(
            done.grant_for(&token_hash_of(&m.review_url)).is_some(),
            "{} works",
            m.to
        );
    }
    let actions: Vec<String> = f
        .store
        .events(p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "reminder_links_issued",
        "reminder_sent",
        "escalation_links_issued",
        "escalated",
    ] {
        assert_eq!(
            actions.iter().filter(|x| *x == a).count(),
            1,
            "{a}: {actions:?}"
        );
    }
    fieldgate::domain::verify_chain(&f.store.events(p.id).await.unwrap()).unwrap();

    // Past the links' lifetime: expired, nothing more is sent.
    assert_eq!(
        fieldgate::review::expire_due(f.store.as_ref(), at(73), 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(sweep(&f.deps, at(74)).await.unwrap(), Sweep::default());
    let expired = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(expired.review_milestones().len(), 3);
}

/// A sweep that claimed a reminder and died before mailing it: the claim
/// holds the reminder back from other sweeps until MAIL_STUCK_AFTER, then
/// one sweep takes it over with a new link and the dead one's is retired.
#[tokio::test]
async fn a_reminder_whose_sender_died_is_taken_over_once() {
    let f = fx_with(Some(case_workflow_with("remind_after_hours = 24"))).await;
    let p = received(&f, "field-service-case", "Fan bearing noisy").await;
    let start = f.clock.now();
    handle_stream(&f.deps, event(&p, 1)).await;
    let mailed = f.store.get(p.id).await.unwrap().unwrap();
    assert!(mailed.review.mailed);
    let at24 = start + time::Duration::hours(24);
    let claim = mailed
        .claim_nudge(
            fieldgate::domain::NudgeKind::Reminder,
            vec![fieldgate::domain::ReviewGrant {
                reviewer: "service-desk@example.com".into(),
                token_hash: "dead-sweeps-link".into(),
            }],
            "sweep",
            at24,
        )
        .unwrap();
    f.store.apply(&claim).await.unwrap();
    assert_eq!(
        sweep(&f.deps, at24 + time::Duration::minutes(1))
            .await
            .unwrap()
            .reminded,
        0
    );
    assert_eq!(f.outbox.mails().len(), 1);
    let later = at24 + MAIL_STUCK_AFTER;
    let (a, b) = tokio::join!(sweep(&f.deps, later), sweep(&f.deps, later));
    assert_eq!(a.unwrap().reminded + b.unwrap().reminded, 1);
    assert_eq!(f.outbox.mails().len(), 2);
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert!(done.grant_for("dead-sweeps-link").is_none());
    assert!(done.review.nudges[0].mailed);
    assert!(
        done.grant_for(&token_hash_of(&f.outbox.mails()[1].review_url))
            .is_some()
    );
}

/// A Salesforce that answers every lookup with an outage.
struct Unwell;

#[async_trait::async_trait]
impl RecordFinder for Unwell {
    async fn open_cases(
        &self,
        _: &fieldgate::domain::AssetId,
        _: fieldgate::domain::Timestamp,
        _: usize,
    ) -> Result<Vec<fieldgate::domain::OpenRecord>, fieldgate::ports::WriteError> {
        Err(fieldgate::ports::WriteError::Transient(
            "503 from the org".into(),
        ))
    }
}

/// The duplicate lookup lists the other report of the asset still waiting;
/// a Salesforce that fails the lookup does not hold up the review: the
/// failure is recorded (and audited) and the mail goes out.
#[tokio::test]
async fn a_failed_duplicate_lookup_is_recorded_and_the_review_goes_on() {
    let mut f = fx().await;
    let first = received(&f, "field-service-case", "Pump 7 seal leaking").await;
    handle_stream(&f.deps, event(&first, 1)).await;
    // Without Salesforce configured the lookup says so.
    let p = f.store.get(first.id).await.unwrap().unwrap();
    let d = p.duplicates.unwrap();
    assert_eq!(d.window_days, 30);
    assert!(d.failed[0].contains("not configured"), "{:?}", d.failed);
    assert!(d.pending.is_empty());

    f.deps.finder = Some(Arc::new(Unwell));
    let second = received(&f, "field-service-case", "Pump 7 seal leaking worse now").await;
    handle_stream(&f.deps, event(&second, 2)).await;
    let p = f.store.get(second.id).await.unwrap().unwrap();
    assert_eq!(p.status, Status::PendingReview);
    assert!(p.review.mailed, "the review was not held up");
    assert_eq!(f.outbox.mails().len(), 2);
    let d = p.duplicates.as_ref().unwrap();
    assert!(
        d.failed[0].starts_with("Salesforce: ") && d.failed[0].contains("503"),
        "{:?}",
        d.failed
    );
    assert_eq!(d.pending.len(), 1, "the first report of the asset");
    assert_eq!(d.pending[0].id, first.id);
    assert!(d.pending[0].summary.is_some());
    let events = f.store.events(second.id).await.unwrap();
    let structured = events.iter().find(|e| e.action == "structured").unwrap();
    assert_eq!(
        structured.detail["duplicates"]["pending"][0],
        first.id.to_string()
    );
    assert!(
        structured.detail["duplicates"]["failed"][0]
            .as_str()
            .unwrap()
            .contains("503")
    );
}
