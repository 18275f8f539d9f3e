use super::*;
use fieldgate::clock::{ManualClock, new_proposal_id};
use fieldgate::config::Config;
use fieldgate::domain::{AssetContext, Intake, Proposal};
use fieldgate::embedded::{HandoffLog, Outbox, SqliteStore};
use fieldgate::salesforce::{SalesforceClient, SalesforceConfig};
use fieldgate::stream::change_record;
use fieldgate_sf_emulator::{Emulator, EmulatorConfig};

struct Fx {
    deps: Commit,
    /// The steps' shared parts: the structure step is built from them too.
    parts: Components,
    clock: Arc<ManualClock>,
    store: Arc<SqliteStore>,
    handoff: Arc<HandoffLog>,
    outbox: Arc<Outbox>,
    emulator: Emulator,
    retries: u32,
    _dir: tempfile::TempDir,
}

async fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(emulator.clone().serve(listener));
    let cfg = EmulatorConfig::default();
    let mut sf = SalesforceConfig::client_credentials(&base, &cfg.client_id, &cfg.client_secret);
    sf.retry_base = std::time::Duration::from_millis(5);
    let retries = sf.retries as u32;
    let sf = Arc::new(SalesforceClient::new(sf).unwrap());
    let store = Arc::new(SqliteStore::in_memory());
    let handoff = Arc::new(HandoffLog::open(None).unwrap());
    let outbox = Arc::new(Outbox::open(None).unwrap());
    let clock = ManualClock::starting_now();
    let parts = Components::new(Config {
        public_url: Some("https://fg.example".into()),
        ..Config::embedded(dir.path())
    })
    .with_clock(clock.clone())
    .with_store(store.clone())
    .with_salesforce(sf)
    .with_handoff(handoff.clone())
    .with_notifier(outbox.clone());
    let deps = Commit::build(&parts).await.unwrap();
    Fx {
        deps,
        parts,
        clock,
        store,
        handoff,
        outbox,
        emulator,
        retries,
        _dir: dir,
    }
}

/// A proposal approved by a reviewer, as the approval step leaves it.
async fn approved(f: &Fx, notes: &str) -> Proposal {
    approved_with(f, notes, vec![]).await
}

/// The same, with a photo in the media store.
async fn approved_with_photo(f: &Fx, notes: &str, data: &[u8]) -> Proposal {
    approved_with_photos(f, notes, &[data]).await
}

/// The same, with several photos in the media store.
async fn approved_with_photos(f: &Fx, notes: &str, data: &[&[u8]]) -> Proposal {
    let mut photos = Vec::new();
    for (i, data) in data.iter().enumerate() {
        let key = format!("photos/{}-{i}.jpg", new_proposal_id(f.clock.now()));
        f.deps.media.put(&key, data, "image/jpeg").await.unwrap();
        photos.push(fieldgate::domain::PhotoRef {
            key,
            content_type: "image/jpeg".into(),
            bytes: data.len() as u64,
            sha256: String::new(),
            file_name: format!("pump-{}.jpg", i + 1),
        });
    }
    approved_with(f, notes, photos).await
}

async fn approved_with(f: &Fx, notes: &str, photos: Vec<fieldgate::domain::PhotoRef>) -> Proposal {
    let p = reviewable(f, notes, photos, None).await;
    let a = p
        .transition(
            Status::Approved,
            Actor::Reviewer {
                email: "r@example.com".into(),
            },
            "approved",
            json!({}),
            f.clock.now(),
            |n| n.review.grants.clear(),
        )
        .unwrap();
    f.store.apply(&a).await.unwrap();
    a.proposal
}

/// A structured proposal waiting for review, reported by `reporter`.
async fn reviewable(
    f: &Fx,
    notes: &str,
    photos: Vec<fieldgate::domain::PhotoRef>,
    reporter: Option<&str>,
) -> Proposal {
    let asset = &f.emulator.demo_assets()[0];
    // Each report a second after the last: the sweep takes the oldest first.
    f.clock.advance(time::Duration::seconds(1));
    let now = f.clock.now();
    let t = Proposal::receive(
        new_proposal_id(f.clock.now()),
        "field-service-case".parse().unwrap(),
        AssetContext {
            id: asset.id.parse().unwrap(),
            name: asset.name.clone(),
            serial_number: None,
            account_id: None,
            account_name: None,
            location: None,
        },
        Intake {
            notes: notes.into(),
            reporter: reporter.map(str::to_owned),
            photos,
            received_at: now,
            assistant: None,
        },
        now,
    );
    f.store.create(&t, None).await.unwrap();
    let s = fieldgate_structure::Structure::build(&f.parts)
        .await
        .unwrap();
    fieldgate_structure::process(&s, t.proposal.id)
        .await
        .unwrap();
    f.store.get(t.proposal.id).await.unwrap().unwrap()
}

/// A reviewer's decision on `p`, as the approval step records it.
async fn decide(
    f: &Fx,
    p: &Proposal,
    kind: fieldgate::domain::DecisionKind,
    reason: Option<&str>,
) -> Proposal {
    let to = match kind {
        fieldgate::domain::DecisionKind::Approve => Status::Approved,
        fieldgate::domain::DecisionKind::Reject => Status::Rejected,
    };
    let now = f.clock.now();
    let token_hash = p.review.grants[0].token_hash.clone();
    let t = p
        .transition(
            to,
            Actor::Reviewer {
                email: "desk@example.com".into(),
            },
            "decided",
            json!({}),
            now,
            |n| {
                n.decision = Some(fieldgate::domain::Decision {
                    kind,
                    by: "desk@example.com".into(),
                    at: now,
                    revision_hash: n.current_hash().unwrap().to_owned(),
                    reason: reason.map(str::to_owned),
                    token_hash,
                    add_to: None,
                });
                n.review.retire_grants();
            },
        )
        .unwrap();
    f.store.apply(&t).await.unwrap();
    t.proposal
}

fn mails_to(f: &Fx, to: &str) -> Vec<fieldgate::ports::ReviewMail> {
    f.outbox
        .mails()
        .into_iter()
        .filter(|m| m.to == to)
        .collect()
}

#[tokio::test]
async fn the_record_number_rides_on_the_read_back_and_the_reporter_is_mailed_once() {
    let f = fx().await;
    let tech = "tech@example.com";
    let p = reviewable(&f, "Generator fails to start, urgent", vec![], Some(tech)).await;
    let p = decide(&f, &p, fieldgate::domain::DecisionKind::Approve, None).await;
    let before = f.emulator.api_calls();
    for _ in 0..2 {
        // The second delivery is a redelivery: nothing more is sent.
        assert!(
            handle_stream(&f.deps, event(&p))
                .await
                .batch_item_failures
                .is_empty()
        );
    }
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Committed);
    let case = &f.emulator.records("Case")[0];
    assert_eq!(
        done.commit.record_number.as_deref(),
        case["CaseNumber"].as_str(),
        "the number Salesforce gave"
    );
    assert!(done.commit.record_number.is_some());
    // The token came with the structure step's duplicate lookup (the same
    // client here): upsert + read-back, no extra call for the number.
    assert_eq!(
        f.emulator.api_calls() - before,
        2,
        "upsert + read-back: no extra call for the number"
    );
    assert!(done.commit.committed_at.is_some() && done.commit.handed_off_at.is_some());
    assert!(done.reporter_mailed_at.is_some());
    let mails = mails_to(&f, tech);
    assert_eq!(mails.len(), 1, "one outcome mail");
    let m = &mails[0];
    let number = done.commit.record_number.clone().unwrap();
    assert!(m.subject.contains(&number), "{}", m.subject);
    assert!(
        m.text.contains(&number) && m.text.contains("/s/"),
        "{}",
        m.text
    );
    assert!(
        !m.text.contains("/r/") && !m.html.contains("/r/"),
        "no review link"
    );
    assert!(
        !m.text.contains("desk@example.com") && !m.html.contains("desk@example.com"),
        "no reviewer"
    );
    assert_eq!(
        m.dedupe_key.as_deref(),
        Some(format!("{}.committed", p.id).as_str())
    );
    // The sweep finds nothing left to do.
    let sweep = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!(sweep, Sweep::default());
    assert_eq!(mails_to(&f, tech).len(), 1);
}

#[tokio::test]
async fn a_rejection_mails_the_reporter_the_reason_once_unless_the_workflow_says_not_to() {
    let f = fx().await;
    let tech = "tech@example.com";
    let p = reviewable(&f, "Door squeaks", vec![], Some(tech)).await;
    let p = decide(
        &f,
        &p,
        fieldgate::domain::DecisionKind::Reject,
        Some("Duplicate of 00001000"),
    )
    .await;
    for _ in 0..2 {
        assert!(
            handle_stream(&f.deps, event(&p))
                .await
                .batch_item_failures
                .is_empty()
        );
    }
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Rejected);
    assert!(done.reporter_mailed_at.is_some());
    assert!(done.commit.lease_owner.is_none(), "no lease left behind");
    let mails = mails_to(&f, tech);
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].text.contains("Duplicate of 00001000"),
        "{}",
        mails[0].text
    );
    assert!(f.emulator.records("Case").is_empty(), "nothing written");

    // A name is not an address: no mail, and nothing left to do.
    let named = reviewable(&f, "Door squeaks again", vec![], Some("Sam")).await;
    let named = decide(&f, &named, fieldgate::domain::DecisionKind::Reject, None).await;
    handle_stream(&f.deps, event(&named)).await;
    assert!(
        f.store
            .get(named.id)
            .await
            .unwrap()
            .unwrap()
            .reporter_mailed_at
            .is_none()
    );

    // `[notify] reporter = false`: no mail; `reject_reason = false`: no reason.
    let mut wf = (*f.deps.workflows.get(&p.workflow).unwrap()).clone();
    wf.notify.reporter = false;
    let quiet = Commit {
        workflows: Arc::new(Workflows::from_workflows(vec![wf.clone()])),
        ..Commit::build(&f.parts).await.unwrap()
    };
    let other = "other@example.com";
    let q = reviewable(&f, "Door squeaks once more", vec![], Some(other)).await;
    let q = decide(&f, &q, fieldgate::domain::DecisionKind::Reject, Some("No")).await;
    handle_stream(&quiet, event(&q)).await;
    assert!(mails_to(&f, other).is_empty());
    wf.notify.reporter = true;
    wf.notify.reject_reason = false;
    let hidden = fieldgate::notice::reporter_mail(&wf, &done, tech, "https://fg.example/s/x");
    assert!(!hidden.text.contains("Duplicate"), "{}", hidden.text);
}

fn event(p: &Proposal) -> Event {
    let mut ev = Event::default();
    ev.records = vec![change_record(None, p, 1)];
    ev
}

#[tokio::test]
async fn approved_is_committed_once_and_handed_off() {
    let f = fx().await;
    let p = approved(&f, "Generator fails to start, no power, urgent").await;
    assert!(
        handle_stream(&f.deps, event(&p))
            .await
            .batch_item_failures
            .is_empty()
    );
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Committed);
    assert!(done.commit.handoff_published);
    let cases = f.emulator.records("Case");
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["Fieldgate_Proposal_Id__c"], p.id.to_string());
    assert_eq!(f.handoff.messages().len(), 1);
    assert_eq!(
        done.commit.record_number.as_deref(),
        cases[0]["CaseNumber"].as_str()
    );
    // Redelivery of the same record: nothing more happens.
    assert!(
        handle_stream(&f.deps, event(&p))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(f.emulator.records("Case").len(), 1);
    assert_eq!(f.handoff.messages().len(), 1);
}

#[tokio::test]
async fn several_photos_are_attached_once_and_a_retry_resumes_after_the_last_uploaded() {
    let f = fx().await;
    let data: [&[u8]; 4] = [&[1u8; 600], &[2u8; 700], &[3u8; 800], &[4u8; 900]];
    let p = approved_with_photos(&f, "Pump seal leaking, urgent", &data).await;
    // Photo 3 is missing from the media store: the drive stops after
    // uploading 1 and 2, and records what it did before it fails (the
    // record, photos 1 and 2), so no retry writes them again.
    let third = p.intake.photo(3).unwrap().key.clone();
    f.deps.media.delete(&third).await.unwrap();
    let err = process(&f.deps, p.id).await.unwrap_err();
    assert!(
        matches!(err, CommitError::PhotoMissing(ref k) if *k == third),
        "{err}"
    );
    let left = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(left.status, Status::Committing);
    assert_eq!(
        left.commit.photo_version_ids.len(),
        2,
        "the uploads before the failure are recorded"
    );
    let record = left.commit.record_id.clone().unwrap();
    assert_eq!(f.emulator.content_versions_linked_to(&record).len(), 2);
    assert_eq!(f.emulator.records("ContentVersion").len(), 2);

    // The photo is back; the retry (after the back-off) looks 3 up by its
    // title (an upload the failed drive could have made unrecorded) and
    // uploads only 3 and 4.
    f.deps
        .media
        .put(&third, data[2], "image/jpeg")
        .await
        .unwrap();
    f.clock.advance(backoff(1) + COMMIT_LEASE);
    process(&f.deps, p.id).await.unwrap();
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Committed);
    assert_eq!(
        f.emulator.records("ContentVersion").len(),
        4,
        "no photo uploaded twice"
    );
    let linked = f.emulator.content_versions_linked_to(&record);
    assert_eq!(linked.len(), 4);
    let mut titles: Vec<String> = linked
        .iter()
        .map(|v| v["Title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    let mut want: Vec<String> = (1..=4)
        .map(|n| fieldgate::domain::photo_title(p.id, n))
        .collect();
    want.sort();
    assert_eq!(titles, want);
    assert_eq!(done.commit.photo_version_ids.len(), 4);
    for (n, id) in done.commit.photo_version_ids.iter().enumerate() {
        assert_eq!(
            f.emulator.content_version_data(id).unwrap(),
            data[n],
            "photo {} is the intake's photo {}",
            n + 1,
            n + 1
        );
    }
    // One audit event per photo, then "committed"; the handoff counts them.
    let actions: Vec<String> = f
        .store
        .events(p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "photo_attached").count(), 4);
    let handoffs = f.handoff.messages();
    assert_eq!(handoffs.len(), 1);
    assert_eq!(handoffs[0].photos, 4);
}

#[tokio::test]
async fn a_salesforce_refusal_goes_back_to_the_reviewer() {
    let f = fx().await;
    f.emulator.faults().add_validation_rule(
        "Case",
        "Description",
        "asbestos",
        "Hazardous material reports must go through EHS.",
    );
    let p = approved(&f, "Found asbestos lagging on the boiler pipe").await;
    let mails_before = f.outbox.mails().len();
    assert!(
        handle_stream(&f.deps, event(&p))
            .await
            .batch_item_failures
            .is_empty()
    );
    let now = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(now.status, Status::NeedsAttention);
    let problem = now.commit.last_error.clone().unwrap();
    assert_eq!(problem.code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
    assert_eq!(
        problem.message,
        "Hazardous material reports must go through EHS."
    );
    assert_eq!(problem.fields, ["Description"]);
    assert!(f.emulator.records("Case").is_empty());
    assert!(f.handoff.messages().is_empty());
    let mails = f.outbox.mails();
    assert_eq!(mails.len(), mails_before + 1, "the reviewer is asked again");
    assert!(
        mails
            .last()
            .unwrap()
            .subject
            .starts_with("Salesforce refused")
    );
}

#[tokio::test]
async fn transient_failures_are_retried_and_leave_a_resumable_state() {
    let f = fx().await;
    let p = approved(&f, "Belt squealing").await;
    // 503s for the first try and every retry: the delivery fails.
    f.emulator.faults().fail_next(1 + f.retries, 503);
    let resp = handle_stream(&f.deps, event(&p)).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert_eq!(
        f.store.get(p.id).await.unwrap().unwrap().status,
        Status::Committing
    );
    // The redelivery completes.
    assert!(
        handle_stream(&f.deps, event(&p))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(
        f.store.get(p.id).await.unwrap().unwrap().status,
        Status::Committed
    );
    assert_eq!(f.emulator.records("Case").len(), 1);
}

#[tokio::test]
async fn api_calls_per_committed_proposal_are_token_upsert_file_readback() {
    let f = fx().await;
    let photo = vec![0xFFu8; 2048];
    let first = approved_with_photo(&f, "Pump seal leaking, urgent", &photo).await;
    let before = f.emulator.api_calls();
    assert!(
        handle_stream(&f.deps, event(&first))
            .await
            .batch_item_failures
            .is_empty()
    );
    let first_calls = f.emulator.api_calls() - before;
    let second = approved_with_photo(&f, "Fan bearing noisy", &photo).await;
    let before = f.emulator.api_calls();
    handle_stream(&f.deps, event(&second)).await;
    let second_calls = f.emulator.api_calls() - before;
    let third = approved(&f, "Label faded, no rush").await;
    let before = f.emulator.api_calls();
    handle_stream(&f.deps, event(&third)).await;
    let no_photo_calls = f.emulator.api_calls() - before;
    println!(
        "API calls per committed proposal: first {first_calls} (upsert + file + read-back; token fetched by the duplicate lookup), \
         later {second_calls} (token cached), without photo {no_photo_calls}"
    );
    for p in [&first, &second, &third] {
        assert_eq!(
            f.store.get(p.id).await.unwrap().unwrap().status,
            Status::Committed
        );
    }
    // The token is already cached: the structure step's duplicate lookup
    // (one SOQL query before the review mail) fetched it.
    assert_eq!(first_calls, 3, "upsert + file + read-back (token cached)");
    assert_eq!(second_calls, 3, "upsert + file + read-back");
    assert_eq!(no_photo_calls, 2, "upsert + read-back");
    let case = &f.emulator.records("Case")[0];
    let files = f
        .emulator
        .content_versions_linked_to(case["Id"].as_str().unwrap());
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["VersionDataLength"], 2048);
}

#[tokio::test]
async fn an_exhausted_budget_pauses_the_commit_until_the_sweep() {
    let f = fx().await;
    let a = approved(&f, "Compressor tripped, no power").await;
    let b = approved(&f, "Door hinge squeaks").await;
    f.emulator.faults().exhaust_budget(true);
    let calls = f.emulator.api_calls();
    for p in [&a, &b] {
        // Not a failure of the record: nothing to retry, no retries burned.
        assert!(
            handle_stream(&f.deps, event(p))
                .await
                .batch_item_failures
                .is_empty()
        );
        let now = f.store.get(p.id).await.unwrap().unwrap();
        assert_eq!(now.status, Status::Approved);
        assert!(now.commit.paused_until.is_some());
    }
    // One refused upsert each, no retries (the token was fetched by the
    // structure step's duplicate lookup).
    assert_eq!(f.emulator.api_calls() - calls, 2);
    let events = f.store.events(a.id).await.unwrap();
    assert!(events.iter().any(|e| e.action == "commit_paused"));

    // The APPROVED write's own stream record does not restart it.
    let paused = f.store.get(a.id).await.unwrap().unwrap();
    let calls = f.emulator.api_calls();
    assert!(
        handle_stream(&f.deps, event(&paused))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(
        f.emulator.api_calls(),
        calls,
        "a paused commit spends nothing"
    );
    // A sweep before the pause is over leaves both waiting, for free.
    let s = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!(
        s,
        Sweep {
            redriven: 0,
            waiting: 2
        }
    );
    assert_eq!(f.emulator.api_calls(), calls);

    // After the pause, still exhausted: one probe, the other keeps waiting.
    let later = f.clock.now() + LIMIT_PAUSE + time::Duration::seconds(1);
    let s = sweep(&f.deps, later).await.unwrap();
    assert_eq!(
        s,
        Sweep {
            redriven: 0,
            waiting: 2
        }
    );
    assert_eq!(f.emulator.api_calls() - calls, 1, "one probe call");
    assert!(f.emulator.records("Case").is_empty());

    // Budget back: the next sweep commits both.
    f.emulator.faults().exhaust_budget(false);
    let much_later = later + LIMIT_PAUSE + time::Duration::seconds(1);
    let s = sweep(&f.deps, much_later).await.unwrap();
    assert_eq!(
        s,
        Sweep {
            redriven: 2,
            waiting: 0
        }
    );
    for p in [&a, &b] {
        let done = f.store.get(p.id).await.unwrap().unwrap();
        assert_eq!(done.status, Status::Committed);
        assert!(done.commit.paused_until.is_none());
        assert!(done.commit.handoff_published);
    }
    assert_eq!(f.emulator.records("Case").len(), 2);
}

#[tokio::test]
async fn the_scheduled_event_runs_the_sweep_and_stream_events_still_work() {
    let f = fx().await;
    let p = approved(&f, "Display shows E42").await;
    // A stream record as Lambda delivers it, through the generic entry.
    let payload = serde_json::to_value(event(&p)).unwrap();
    let out = handle_event(&f.deps, payload).await.unwrap();
    assert_eq!(out["batchItemFailures"], json!([]));
    assert_eq!(
        f.store.get(p.id).await.unwrap().unwrap().status,
        Status::Committed
    );
    // The EventBridge scheduled event runs the sweeps: commits to re-drive
    // and reviews to expire.
    let pending = {
        let s = fieldgate_structure::Structure::build(&f.parts)
            .await
            .unwrap();
        let now = f.clock.now();
        let t = Proposal::receive(
            new_proposal_id(f.clock.now()),
            "field-service-case".parse().unwrap(),
            p.asset.clone(),
            fieldgate::domain::Intake {
                notes: "old report".into(),
                reporter: None,
                photos: vec![],
                received_at: now,
                assistant: None,
            },
            now,
        );
        f.store.create(&t, None).await.unwrap();
        fieldgate_structure::process(&s, t.proposal.id)
            .await
            .unwrap();
        t.proposal.id
    };
    // Time passes beyond the review links' lifetime.
    let ttl = f.deps.workflows.iter().next().unwrap().review_link_ttl;
    f.clock.advance(ttl + time::Duration::hours(1));
    let scheduled = json!({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let out = handle_event(&f.deps, scheduled).await.unwrap();
    assert_eq!(out["expired"], 1);
    assert_eq!(
        f.store.get(pending).await.unwrap().unwrap().status,
        Status::Expired
    );
    assert!(out["commit"]["redriven"].is_u64(), "{out}");
}

#[tokio::test]
async fn an_approval_whose_stream_record_was_lost_is_picked_up_by_the_sweep() {
    let f = fx().await;
    // Approved, but its stream record never reached this step (AWS: it
    // went to the on-failure queue).
    let p = approved(&f, "Conveyor belt torn").await;
    let s = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!(
        s,
        Sweep {
            redriven: 0,
            waiting: 1
        },
        "too fresh to be stuck"
    );
    assert!(f.emulator.records("Case").is_empty());
    let later = f.clock.now() + STUCK_AFTER + time::Duration::seconds(1);
    let s = sweep(&f.deps, later).await.unwrap();
    assert_eq!(
        s,
        Sweep {
            redriven: 1,
            waiting: 0
        }
    );
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Committed);
    assert_eq!(f.emulator.records("Case").len(), 1);
    // Nothing left: a later sweep finds no work.
    let s = sweep(&f.deps, later).await.unwrap();
    assert_eq!(s, Sweep::default());
}

#[tokio::test]
async fn a_sweep_stops_probing_when_salesforce_fails_and_the_next_one_finishes() {
    let f = fx().await;
    let a = approved(&f, "Valve stuck open").await;
    // b approved later: the sweep goes oldest first.
    f.clock.advance(time::Duration::seconds(1));
    let b = approved(&f, "Gauge cracked").await;
    // Salesforce down for the first proposal's try and every retry.
    f.emulator.faults().fail_next(1 + f.retries, 503);
    let later = f.clock.now() + STUCK_AFTER + time::Duration::seconds(1);
    let s = sweep(&f.deps, later).await.unwrap();
    assert_eq!(
        s,
        Sweep {
            redriven: 0,
            waiting: 2
        }
    );
    let b_now = f.store.get(b.id).await.unwrap().unwrap();
    assert_eq!(b_now.status, Status::Approved, "b was not probed");
    assert_eq!(b_now.commit.attempts, 0);
    // a is mid-commit (COMMITTING), its lease given up after the failure.
    let a_now = f.store.get(a.id).await.unwrap().unwrap();
    assert_eq!(a_now.status, Status::Committing);
    assert_eq!(a_now.commit.failures, 1);
    assert_eq!(a_now.commit.lease_owner, None);
    f.emulator.faults().fail_next(0, 503);
    // The next sweep finishes both: b from APPROVED, a from COMMITTING.
    let s = sweep(&f.deps, later).await.unwrap();
    assert_eq!(
        s,
        Sweep {
            redriven: 2,
            waiting: 0
        }
    );
    for p in [&a, &b] {
        assert_eq!(
            f.store.get(p.id).await.unwrap().unwrap().status,
            Status::Committed
        );
    }
    assert_eq!(f.emulator.records("Case").len(), 2);
    assert_eq!(f.handoff.messages().len(), 2);
}

/// Cases, files and handoffs made for `p`.
fn made_for(f: &Fx, p: &Proposal) -> (usize, usize, usize) {
    let cases: Vec<_> = f
        .emulator
        .records("Case")
        .into_iter()
        .filter(|c| c["Fieldgate_Proposal_Id__c"] == p.id.to_string())
        .collect();
    let files = cases
        .iter()
        .map(|c| {
            f.emulator
                .content_versions_linked_to(c["Id"].as_str().unwrap())
                .len()
        })
        .sum();
    let handoffs = f
        .handoff
        .messages()
        .iter()
        .filter(|m| m.proposal_id == p.id)
        .count();
    (cases.len(), files, handoffs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_and_a_stream_delivery_never_drive_one_proposal_together() {
    let f = fx().await;
    let photo = vec![0xABu8; 4096];
    for round in 0..25 {
        let p = approved_with_photo(&f, "Compressor trips on start", &photo).await;
        // Old enough for the sweep to take it as stuck, while its stream
        // record is delivered at the same moment.
        f.clock.advance(STUCK_AFTER + time::Duration::seconds(1));
        let now = f.clock.now();
        let (swept, delivered) =
            tokio::join!(sweep(&f.deps, now), handle_stream(&f.deps, event(&p)));
        swept.unwrap();
        assert!(delivered.batch_item_failures.is_empty(), "round {round}");
        let done = f.store.get(p.id).await.unwrap().unwrap();
        assert_eq!(done.status, Status::Committed, "round {round}");
        assert!(done.commit.handoff_published, "round {round}");
        assert_eq!(
            made_for(&f, &p),
            (1, 1, 1),
            "round {round}: cases, files, handoffs"
        );
    }
}

#[tokio::test]
async fn a_commit_left_mid_way_is_claimed_by_the_sweep_only_after_its_lease() {
    let f = fx().await;
    let p = approved_with_photo(&f, "Door seal torn", &[7u8; 512]).await;
    // A driver claimed it and died (a crash after "commit_started").
    let claimed = p
        .transition(
            Status::Committing,
            Actor::system("commit"),
            "commit_started",
            json!({"attempt": 1}),
            f.clock.now(),
            |n| {
                n.commit.attempts = 1;
                n.commit.lease_owner = Some("dead-driver".into());
                n.commit.lease_until = Some(f.clock.now() + COMMIT_LEASE);
            },
        )
        .unwrap();
    f.store.apply(&claimed).await.unwrap();
    // Its stream record comes back while the lease is live: left alone.
    assert!(
        handle_stream(&f.deps, event(&claimed.proposal))
            .await
            .batch_item_failures
            .is_empty()
    );
    let s = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!(s.redriven, 0);
    assert!(f.emulator.records("Case").is_empty());
    // Lease over: the sweep claims it and finishes.
    f.clock.advance(COMMIT_LEASE);
    let s = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!(
        s,
        Sweep {
            redriven: 1,
            waiting: 0
        }
    );
    assert_eq!(made_for(&f, &p), (1, 1, 1));
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(done.commit.lease_owner, None);
    let actions: Vec<_> = f
        .store
        .events(p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"commit_resumed".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn after_a_short_outage_the_sweep_finishes_what_was_left_in_committing() {
    let f = fx().await;
    let p = approved_with_photo(&f, "Chiller alarm", &[9u8; 700]).await;
    // Salesforce fails every call for a while: the delivery and every
    // redelivery fail; each failure backs off further.
    f.emulator.faults().fail_next(u32::MAX / 2, 503);
    assert_eq!(
        handle_stream(&f.deps, event(&p))
            .await
            .batch_item_failures
            .len(),
        1
    );
    assert_eq!(
        handle_stream(&f.deps, event(&p))
            .await
            .batch_item_failures
            .len(),
        1
    );
    let left = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(left.status, Status::Committing);
    assert_eq!(left.commit.failures, 2);
    // Backing off: a redelivery or sweep inside the back-off does nothing
    // (no Salesforce call).
    let calls = f.emulator.api_calls();
    assert!(
        handle_stream(&f.deps, event(&p))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(sweep(&f.deps, f.clock.now()).await.unwrap().redriven, 0);
    assert_eq!(f.emulator.api_calls(), calls);
    // Salesforce is back; no stream record will come again. The sweep
    // after the back-off commits it.
    f.emulator.faults().fail_next(0, 503);
    f.clock.advance(backoff(2));
    let s = sweep(&f.deps, f.clock.now()).await.unwrap();
    assert_eq!(
        s,
        Sweep {
            redriven: 1,
            waiting: 0
        }
    );
    assert_eq!(made_for(&f, &p), (1, 1, 1));
    let done = f.store.get(p.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Committed);
    assert_eq!(done.commit.failures, 0);
}
