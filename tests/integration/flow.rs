//! The foundation's end-to-end scenarios, through real HTTP against the
//! dev stack started in-process on a free port.

use fieldgate::domain::{Actor, ProposalId, Status, verify_chain};
use fieldgate::ports::ProposalStore;
use fieldgate_tests::faults::{CrashAfterApply, CrashAfterCall};
use fieldgate_tests::*;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

async fn proposal(h: &Harness, id: &str) -> fieldgate::domain::Proposal {
    h.stack
        .store
        .get(id.parse::<ProposalId>().unwrap())
        .await
        .unwrap()
        .expect("stored")
}

async fn open_review(h: &Harness, url: &str) -> String {
    let r = h.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.text().await.unwrap()
}

async fn post_decision(h: &Harness, url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = h.http.post(url).form(form).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn approve(h: &Harness, url: &str, page: &str, edits: &[(&str, &str)]) -> (u16, String) {
    let csrf = hidden(page, "csrf");
    let rev = hidden(page, "revision");
    let mut form = vec![
        ("decision", "approve"),
        ("csrf", csrf.as_str()),
        ("revision", rev.as_str()),
    ];
    form.extend_from_slice(edits);
    // Ticks, and a choice for a required picklist left open unless edited.
    let ticked = ticks(page);
    form.extend(
        ticked
            .iter()
            .filter(|(k, _)| !edits.iter().any(|(e, _)| e == k))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    post_decision(h, url, &form).await
}

async fn wait_status(h: &Harness, id: &str, want: Status) -> fieldgate::domain::Proposal {
    wait_for(|| async {
        let p = proposal(h, id).await;
        (p.status == want && (want != Status::Committed || p.commit.handoff_published)).then_some(p)
    })
    .await
}

#[tokio::test]
async fn scan_structure_review_approve_commit_handoff() {
    let h = Harness::start().await;
    let (asset, name) = h.first_asset();

    // Scan: the form shows the asset.
    let form = h.http.get(h.scan_url()).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains(&name));

    // Submit with a photo.
    let notes =
        "Compressor is leaking oil at the rear seal. Breaker tripped twice, needs a tech ASAP.";
    let (status, page) = h.submit(notes, Some(("seal.jpg", jpeg()))).await;
    assert_eq!(status, 201, "{page}");
    let id = reference(&page);

    // Structured and mailed.
    let url = h.review_url(1).await;
    assert!(url.starts_with(&h.stack.public_url) && url.contains(&id));
    let mail = &h.json("/dev/outbox").await[0];
    assert_eq!(mail["to"], "service-desk@example.com");
    let p = wait_status(&h, &id, Status::PendingReview).await;
    let rev = p.current().unwrap();
    assert_eq!(rev.fields["Priority"].value, "High");
    assert!(notes.contains(rev.fields["Subject"].evidence.as_deref().unwrap()));

    // Opening the link (and HEAD, as mail scanners do) changes nothing.
    let before = proposal(&h, &id).await;
    let page = open_review(&h, &url).await;
    for _ in 0..3 {
        assert_eq!(h.http.head(&url).send().await.unwrap().status(), 200);
        open_review(&h, &url).await;
    }
    assert_eq!(proposal(&h, &id).await, before, "GET/HEAD changed state");
    assert!(page.contains(notes.split('.').next().unwrap()));
    let photo = h.http.get(format!("{url}/photo")).send().await.unwrap();
    assert_eq!(photo.status(), 200);
    assert_eq!(photo.bytes().await.unwrap().to_vec(), jpeg());

    // Approve.
    let (s, body) = approve(&h, &url, &page, &[]).await;
    assert_eq!(s, 200, "{body}");
    let p = wait_status(&h, &id, Status::Committed).await;

    // Exactly one Case with the approved values and the external id.
    let cases = h.cases();
    assert_eq!(cases.len(), 1);
    let case = &cases[0];
    let approved = p.current().unwrap().values();
    for (k, v) in &approved {
        if !v.is_null() {
            assert_eq!(&case[k], v, "field {k}");
        }
    }
    assert_eq!(case["Fieldgate_Proposal_Id__c"], id.as_str());
    assert_eq!(case["Origin"], "Field QR");
    assert_eq!(case["AssetId"], asset.as_str());
    assert!(case["AccountId"].as_str().unwrap().starts_with("001"));
    let case_id = case["Id"].as_str().unwrap();
    assert_eq!(p.commit.record_id.as_deref(), Some(case_id));
    assert!(p.commit.readback_mismatches.is_empty());

    // The photo is linked to it.
    let files = h.stack.emulator.content_versions_linked_to(case_id);
    assert_eq!(files.len(), 1);
    assert_eq!(
        h.stack
            .emulator
            .content_version_data(files[0]["Id"].as_str().unwrap())
            .unwrap(),
        jpeg()
    );

    // One handoff.
    let handoffs = h.handoffs().await;
    assert_eq!(handoffs.len(), 1);
    let m = &handoffs[0];
    assert_eq!(m["proposal_id"], id.as_str());
    assert_eq!(m["salesforce_id"], case_id);
    assert_eq!(m["workflow"], "field-service-case");
    assert_eq!(m["priority"], "High");
    assert_eq!(m["schema"], "fieldgate.handoff/v1");
    assert!(m["salesforce_url"].as_str().unwrap().contains(case_id));

    // The technician gave an address: told once, with the Case number.
    h.stack.settled().await;
    let told = h.reporter_mails("tech@example.com").await;
    assert_eq!(told.len(), 1, "{told:?}");
    let number = h.cases()[0]["CaseNumber"].as_str().unwrap().to_owned();
    assert!(
        told[0]["subject"].as_str().unwrap().contains(&number),
        "{told:?}"
    );

    // The audit trail is one unbroken chain naming the reviewer.
    let events = h.stack.store.events(p.id).await.unwrap();
    verify_chain(&events).unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "received",
            "structured",
            "review_links_issued",
            "review_mail_sent",
            "approved",
            "commit_started",
            "record_written",
            "photo_attached",
            "committed",
            "handoff_published",
            "reporter_mail_sent"
        ]
    );
    assert_eq!(
        events[4].actor,
        Actor::Reviewer {
            email: "service-desk@example.com".into()
        }
    );
}

#[tokio::test]
async fn edits_are_what_gets_written() {
    let h = Harness::start().await;
    let (_, page) = h.submit("fan making a grinding noise", None).await;
    let id = reference(&page);
    let url = h.review_url(1).await;
    let page = open_review(&h, &url).await;
    let (s, body) = approve(
        &h,
        &url,
        &page,
        &[
            ("Subject", "Condenser fan bearing worn"),
            ("Priority", "Low"),
            ("Type", "Mechanical"),
            ("Reason", "Performance"),
            ("Description", "Bearing noise, replace at next visit"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let p = wait_status(&h, &id, Status::Committed).await;
    assert_eq!(p.revisions.len(), 2, "the edit is a new revision");
    assert_eq!(
        p.decision.as_ref().unwrap().revision_hash,
        p.revisions[1].hash
    );
    let case = &h.cases()[0];
    assert_eq!(case["Subject"], "Condenser fan bearing worn");
    assert_eq!(case["Priority"], "Low");
    assert_eq!(case["Reason"], "Performance");
}

#[tokio::test]
async fn rejection_writes_nothing() {
    let h = Harness::start().await;
    let (_, page) = h.submit("duplicate of yesterday's report", None).await;
    let id = reference(&page);
    let url = h.review_url(1).await;
    let page = open_review(&h, &url).await;
    let (s, _) = post_decision(
        &h,
        &url,
        &[
            ("decision", "reject"),
            ("reason", "duplicate"),
            ("csrf", &hidden(&page, "csrf")),
            ("revision", &hidden(&page, "revision")),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let p = wait_status(&h, &id, Status::Rejected).await;
    assert_eq!(p.decision.unwrap().reason.as_deref(), Some("duplicate"));
    h.stack.settled().await;
    assert!(h.cases().is_empty());
    assert!(h.handoffs().await.is_empty());
    assert_eq!(h.stack.emulator.records("ContentVersion").len(), 0);
}

#[tokio::test]
async fn bad_links_are_refused_and_change_nothing() {
    let h = Harness::start().await;
    let (_, page) = h.submit("pump vibrating", None).await;
    let id = reference(&page);
    let url = h.review_url(1).await;
    let page = open_review(&h, &url).await;
    let csrf = hidden(&page, "csrf");
    let rev = hidden(&page, "revision");
    let before = proposal(&h, &id).await;

    // Forged: right proposal, random nonce.
    let forged = format!("{}/r/{id}.{}", h.stack.public_url, "A".repeat(43));
    assert_eq!(h.http.get(&forged).send().await.unwrap().status(), 404);
    assert_eq!(
        post_decision(
            &h,
            &forged,
            &[("decision", "approve"), ("csrf", &csrf), ("revision", &rev)]
        )
        .await
        .0,
        404
    );
    // Malformed.
    assert_eq!(
        h.http
            .get(format!("{}/r/garbage", h.stack.public_url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Tampered CSRF and revision.
    assert_eq!(
        post_decision(
            &h,
            &url,
            &[("decision", "approve"), ("csrf", "x"), ("revision", &rev)]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post_decision(
            &h,
            &url,
            &[
                ("decision", "approve"),
                ("csrf", &csrf),
                ("revision", &"0".repeat(64))
            ]
        )
        .await
        .0,
        409
    );
    // Not a field of the workflow.
    assert_eq!(
        post_decision(
            &h,
            &url,
            &[
                ("decision", "approve"),
                ("csrf", &csrf),
                ("revision", &rev),
                ("OwnerId", "005x")
            ]
        )
        .await
        .0,
        400
    );
    // A value the workflow does not allow: the page again, 422, nothing stored.
    let (s, body) = post_decision(
        &h,
        &url,
        &[
            ("decision", "approve"),
            ("csrf", &csrf),
            ("revision", &rev),
            ("Priority", "Whenever"),
        ],
    )
    .await;
    assert_eq!(s, 422);
    assert!(body.contains("must be one of"));
    // A GET by the method that changes state is refused.
    assert_eq!(h.http.put(&url).send().await.unwrap().status(), 405);
    assert_eq!(
        proposal(&h, &id).await,
        before,
        "refused requests changed state"
    );

    // Used: approve once, replay → 409 naming who decided.
    assert_eq!(approve(&h, &url, &page, &[]).await.0, 200);
    let (s, body) = approve(&h, &url, &page, &[]).await;
    assert_eq!(s, 409);
    assert!(body.contains("service-desk@example.com"), "{body}");
    assert_eq!(h.http.get(&url).send().await.unwrap().status(), 409);

    // Expired: a second proposal whose link's time has passed.
    let (_, page2) = h.submit("display flickering", None).await;
    let id2 = reference(&page2);
    let url2 = h.review_url(2).await;
    let review2 = open_review(&h, &url2).await;
    let p2 = wait_status(&h, &id2, Status::PendingReview).await;
    h.stack.settled().await;
    // Time passes beyond the link's lifetime.
    let expires = p2.review.expires_at.unwrap();
    h.clock
        .advance(expires - h.stack.clock.now() + time::Duration::minutes(1));
    let before2 = proposal(&h, &id2).await;
    assert_eq!(h.http.get(&url2).send().await.unwrap().status(), 410);
    assert_eq!(approve(&h, &url2, &review2, &[]).await.0, 410);
    assert_eq!(proposal(&h, &id2).await, before2);

    // The sweep moves it to EXPIRED (and leaves the decided one alone).
    let n = fieldgate::review::expire_due(h.stack.store.as_ref(), h.stack.clock.now(), 100)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(proposal(&h, &id2).await.status, Status::Expired);
    assert_ne!(proposal(&h, &id).await.status, Status::Expired);
    let r = h.http.get(&url2).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("expired"));
    assert!(h.cases().len() <= 1, "the expired one wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_approvals_make_one_case() {
    let h = Arc::new(Harness::start().await);
    let (_, page) = h
        .submit("generator will not start, battery dead", None)
        .await;
    let id = reference(&page);
    let url = h.review_url(1).await;
    let page = open_review(&h, &url).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (h, url, page) = (h.clone(), url.clone(), page.clone());
        tasks.push(tokio::spawn(async move {
            approve(&h, &url, &page, &[]).await.0
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|&c| c == 200 || c == 409), "{codes:?}");
    wait_status(&h, &id, Status::Committed).await;
    h.stack.settled().await;
    assert_eq!(h.cases().len(), 1);
    assert_eq!(h.handoffs().await.len(), 1);
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let h = Harness::start().await;
    let url = h.scan_url();
    let big = vec![0xFFu8; 11 * 1024 * 1024];
    let cases: Vec<(u16, reqwest::RequestBuilder)> = vec![
        (
            413,
            h.http
                .post(&url)
                .multipart(reqwest::multipart::Form::new().text("notes", "x").part(
                    "photo",
                    reqwest::multipart::Part::bytes(big).file_name("big.jpg"),
                )),
        ),
        (
            415,
            h.http.post(&url).multipart(
                reqwest::multipart::Form::new().text("notes", "x").part(
                    "photo",
                    reqwest::multipart::Part::bytes(b"#!/bin/sh\nrm -rf /".to_vec())
                        .file_name("x.jpg")
                        .mime_str("image/jpeg")
                        .unwrap(),
                ),
            ),
        ),
        (
            422,
            h.http
                .post(&url)
                .multipart(reqwest::multipart::Form::new().text("notes", "  ")),
        ),
        (
            400,
            h.http
                .post(&url)
                .header("content-type", "multipart/form-data; boundary=abc")
                .body(
                    "--abc\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\nunterminated",
                ),
        ),
        (
            400,
            h.http
                .post(&url)
                .multipart(reqwest::multipart::Form::new().part(
                    "notes",
                    reqwest::multipart::Part::bytes(vec![0xC3, 0x28, 0xA0, 0xA1]),
                )),
        ),
        (415, h.http.post(&url).form(&[("notes", "x")])),
    ];
    for (want, req) in cases {
        let r = req.send().await.unwrap();
        let got = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(got, want, "{body}");
        assert!(body.contains("<h1>"), "a page that says what happened");
    }
    // A forged code is a plain 404.
    let forged = url.replace(&h.first_asset().0.to_string(), "02i000000000009AAA");
    assert_eq!(h.http.get(&forged).send().await.unwrap().status(), 404);
    for s in Status::ALL {
        assert!(
            h.stack
                .store
                .list_by_status(s, 10)
                .await
                .unwrap()
                .is_empty(),
            "{s} stored"
        );
    }
    assert_eq!(
        std::fs::read_dir(h.dir.path().join("media"))
            .unwrap()
            .count(),
        0,
        "no orphan photo"
    );
}

/// Runs the commit step with a crash injected at `crash`, then again
/// without: whatever the point, one Case, one file, one handoff.
async fn crash_and_resume(crash: &str, at: usize) {
    let h = Harness::build().pause_commit().start().await;
    let (_, page) = h
        .submit(
            "chiller tripped on high pressure",
            Some(("gauge.jpg", jpeg())),
        )
        .await;
    let id = reference(&page);
    let url = h.review_url(1).await;
    let page = open_review(&h, &url).await;
    assert_eq!(approve(&h, &url, &page, &[]).await.0, 200);
    wait_status(&h, &id, Status::Approved).await;

    let c = &h.stack.commit;
    // The same step, built from the stack's parts with one of them wrapped.
    let parts = h
        .parts()
        .with_store(match crash {
            "store" => Arc::new(CrashAfterApply {
                inner: c.store.clone(),
                at,
                seen: AtomicUsize::new(0),
            }),
            _ => c.store.clone(),
        })
        .with_writer(match crash {
            "salesforce" => Arc::new(CrashAfterCall {
                inner: c.writer.clone(),
                at,
                seen: AtomicUsize::new(0),
            }),
            _ => c.writer.clone(),
        });
    let faulty = fieldgate_commit::Commit::build(&parts).await.unwrap();
    let pid: ProposalId = id.parse().unwrap();
    let first = fieldgate_commit::process(&faulty, pid).await;
    assert!(first.is_err(), "{crash} #{at}: the injected crash happened");
    fieldgate_commit::process(c, pid)
        .await
        .expect("the retry completes");
    let p = proposal(&h, &id).await;
    assert_eq!(p.status, Status::Committed, "{crash} #{at}");
    assert!(p.commit.handoff_published);
    let cases = h.cases();
    assert_eq!(cases.len(), 1, "{crash} #{at}: one Case");
    let files = h
        .stack
        .emulator
        .content_versions_linked_to(cases[0]["Id"].as_str().unwrap());
    assert_eq!(files.len(), 1, "{crash} #{at}: one photo");
    let handoffs = h.handoffs().await;
    assert!(!handoffs.is_empty(), "{crash} #{at}: handoff published");
    // At-least-once handoff: a repeat carries the same dedupe key.
    assert!(
        handoffs
            .iter()
            .all(|m| m["dedupe_key"] == handoffs[0]["dedupe_key"])
    );
    verify_chain(&h.stack.store.events(pid).await.unwrap()).unwrap();
}

#[tokio::test]
async fn commit_crash_after_any_store_write_still_makes_one_case() {
    // commit_started, record_written, photo_attached, committed, handoff_published
    for at in 0..5 {
        crash_and_resume("store", at).await;
    }
}

#[tokio::test]
async fn commit_crash_after_any_salesforce_call_still_makes_one_case() {
    // upsert, attach, read-back
    for at in 0..3 {
        crash_and_resume("salesforce", at).await;
    }
}

#[tokio::test]
async fn data_survives_a_restart_and_unfinished_work_resumes() {
    let h = Harness::build().pause_commit().start().await;
    let scan = h.scan_url();
    let (_, page) = h.submit("belt slipping on conveyor 4", None).await;
    let id = reference(&page);
    let url = h.review_url(1).await;
    let page = open_review(&h, &url).await;
    assert_eq!(approve(&h, &url, &page, &[]).await.0, 200);
    wait_status(&h, &id, Status::Approved).await;

    // Same data directory, commit running: the approved proposal commits.
    let h2 = h.restart().await;
    wait_status(&h2, &id, Status::Committed).await;
    assert_eq!(h2.cases().len(), 1);
    // The QR link signed before the restart still works (keys persisted).
    let path_q = scan.split("/q/").nth(1).unwrap();
    let r = h2
        .http
        .get(format!("{}/q/{path_q}", h2.stack.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_salesforce_refusal_is_shown_to_the_reviewer_who_fixes_and_approves() {
    let h = Harness::start().await;
    h.stack.emulator.faults().add_validation_rule(
        "Case",
        "Subject",
        "TBD",
        "Subject must say what failed, not TBD.",
    );
    let (_, page) = h.submit("TBD - unit making noise", None).await;
    let id = reference(&page);
    let url = h.review_url(1).await;
    let page = open_review(&h, &url).await;
    assert_eq!(approve(&h, &url, &page, &[]).await.0, 200);
    wait_for(|| async { (proposal(&h, &id).await.status == Status::NeedsAttention).then_some(()) })
        .await;
    assert!(h.cases().is_empty());

    // A new link goes out; the old one is spent and says so.
    let url2 = h.review_url(2).await;
    assert_ne!(url, url2);
    assert_eq!(h.http.get(&url).send().await.unwrap().status(), 410);
    let page2 = open_review(&h, &url2).await;
    assert!(page2.contains("Salesforce refused this record"));
    assert!(page2.contains("Subject must say what failed, not TBD."));
    assert!(page2.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"));

    let (s, body) = approve(
        &h,
        &url2,
        &page2,
        &[("Subject", "Fan bearing noise on unit")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let p = wait_status(&h, &id, Status::Committed).await;
    assert_eq!(h.cases().len(), 1);
    assert_eq!(h.cases()[0]["Subject"], "Fan bearing noise on unit");
    assert!(p.commit.last_error.is_none());
    assert_eq!(h.handoffs().await.len(), 1);
}

#[tokio::test]
async fn too_many_reports_from_one_code_are_refused() {
    let h = Harness::build().reports_per_code(2).start().await;
    assert_eq!(h.submit("first", None).await.0, 201);
    assert_eq!(h.submit("second", None).await.0, 201);
    let (s, body) = h.submit("third", None).await;
    assert_eq!(s, 429);
    assert!(body.contains("Too many reports"));
    // Both accepted reports reach review; only then is the count stable (a
    // report moving between two listings would be counted twice).
    h.review_url(2).await;
    let mut stored = 0;
    for status in Status::ALL {
        stored += h
            .stack
            .store
            .list_by_status(status, 10)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(stored, 2, "the refused report left nothing behind");
}

/// Mail scanners fetch every link in a mail, often more than once, with GET
/// and HEAD: none of that may change the proposal.
#[tokio::test]
async fn every_link_in_the_review_mail_can_be_prefetched_safely() {
    let h = Harness::start().await;
    let (status, page) = h
        .submit(
            "Door gasket torn, cold air escaping.",
            Some(("g.jpg", jpeg())),
        )
        .await;
    assert_eq!(status, 201, "{page}");
    let id = reference(&page);
    let url = h.review_url(1).await;
    let before = wait_status(&h, &id, Status::PendingReview).await;
    let mail = &h.json("/dev/outbox").await[0];
    let mut links: Vec<String> = regex::Regex::new(r#"(?:href|src)="([^"]+)""#)
        .unwrap()
        .captures_iter(mail["html"].as_str().unwrap())
        .map(|c| c[1].replace("&amp;", "&"))
        .chain(
            regex::Regex::new(r"https?://\S+")
                .unwrap()
                .find_iter(mail["text"].as_str().unwrap())
                .map(|m| m.as_str().to_owned()),
        )
        .collect();
    assert!(
        links.contains(&url),
        "the review link is in the mail: {links:?}"
    );
    // What the opened page links to (the photo) is fetched too.
    links.push(format!("{url}/photo"));
    for _ in 0..3 {
        for l in &links {
            assert!(
                h.http.get(l).send().await.unwrap().status().is_success(),
                "{l}"
            );
            assert!(
                h.http.head(l).send().await.unwrap().status().is_success(),
                "{l}"
            );
        }
    }
    assert_eq!(proposal(&h, &id).await, before, "prefetching changed state");
    // And the link still works for the reviewer.
    let page = open_review(&h, &url).await;
    assert_eq!(approve(&h, &url, &page, &[]).await.0, 200);
}

/// Steps do not block each other: a commit waiting on a slow org does not
/// hold up the next report's structuring and review mail (issue 14: in a
/// long run, mails went out minutes late, queued behind commits).
#[tokio::test]
async fn a_slow_commit_does_not_hold_up_the_next_review_mail() {
    let h = Harness::start().await;
    let (status, page) = h.submit("Oil leak at the rear seal, urgent", None).await;
    assert_eq!(status, 201, "{page}");
    let first = reference(&page);
    let url = h.review_url(1).await;
    let review = open_review(&h, &url).await;

    // The org answers every call 10 s late from now on.
    let faults = h.stack.emulator.faults();
    faults.set_latency(std::time::Duration::from_secs(10));
    let delayed = faults.delayed_answers();
    assert_eq!(approve(&h, &url, &review, &[]).await.0, 200);
    // The commit is waiting on the org.
    wait_for(|| async { (faults.delayed_answers() > delayed).then_some(()) }).await;

    let (status, page) = h.submit("Breaker tripped twice on the pump", None).await;
    assert_eq!(status, 201, "{page}");
    let second = reference(&page);
    let url2 = h.review_url(2).await;
    assert!(url2.contains(&second));
    let p = proposal(&h, &first).await;
    assert!(
        matches!(p.status, Status::Approved | Status::Committing),
        "the second mail went out only after the first commit: {:?}",
        p.status
    );

    faults.set_latency(std::time::Duration::ZERO);
    wait_status(&h, &first, Status::Committed).await;
    assert_eq!(h.cases().len(), 1);
}

/// The shipped Case workflow with `[review]` set to `review`.
fn case_with_review(review: &str) -> fieldgate::domain::Workflows {
    let text = include_str!("../../infra/workflows/field-service-case.toml");
    let (head, rest) = text.split_once("\n[review]\n").expect("a [review] table");
    let tail = &rest[rest.find("\n[constants]").expect("a [constants] table")..];
    let text = format!("{head}\n[review]\n{review}\n{tail}");
    fieldgate::domain::Workflows::from_workflows(vec![
        fieldgate::domain::Workflow::from_toml("case.toml", &text).unwrap(),
    ])
}

fn status_path(done_page: &str) -> String {
    regex::Regex::new(r#"href="(/s/[^"]+)""#)
        .unwrap()
        .captures(done_page)
        .expect("a status link on the page")[1]
        .to_owned()
}

async fn status_page(h: &Harness, path: &str) -> String {
    let r = h
        .http
        .get(format!("{}{path}", h.stack.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The review mails of one proposal, in the order sent.
async fn mails_of(h: &Harness, id: &str) -> Vec<serde_json::Value> {
    let all = h.json("/dev/outbox").await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["review_url"]
                .as_str()
                .unwrap()
                .contains(&format!("/r/{id}"))
        })
        .cloned()
        .collect()
}

/// Two sweeps at once at the stack's (moved) time; waits until `id` has
/// `n` mails and its nudges are recorded as mailed (the stack's own
/// sweeper may be the one that sends them: the claim decides, not us).
async fn sweep_twice(h: &Harness) -> (usize, usize) {
    let now = h.stack.clock.now();
    let s = &h.stack.structure;
    let (a, b) = tokio::join!(
        fieldgate_structure::sweep(s, now),
        fieldgate_structure::sweep(s, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.nudges_failed + b.nudges_failed, 0, "{a:?} {b:?}");
    (a.reminded + b.reminded, a.escalated + b.escalated)
}

async fn wait_nudged(h: &Harness, id: &str, kind: fieldgate::domain::NudgeKind) {
    wait_for(|| async {
        let p = proposal(h, id).await;
        p.review.nudge(kind).is_some_and(|n| n.mailed).then_some(())
    })
    .await;
}

/// Issue 13: a report nobody decides gets a reminder to the reviewers
/// after 24 h and goes to a second list, with links of its own, after
/// 48 h; after the links' 72 h it expires. The sweep is given the later
/// time; two sweeps at once send each mail once. The technician's status
/// page says what happened; the second list's link decides.
#[tokio::test]
async fn an_undecided_report_is_reminded_then_escalated_then_expires() {
    use fieldgate::domain::NudgeKind;
    let h = Harness::build()
        .workflows(case_with_review(
            "remind_after_hours = 24\nescalate_after_hours = 48\nescalate_to = [\"duty-manager@example.com\"]",
        ))
        .start()
        .await;
    let (_, done_a) = h
        .submit("Chiller compressor short cycling, breaker tripped", None)
        .await;
    let (_, done_b) = h.submit("Door seal on cold room torn", None).await;
    let (a, b) = (reference(&done_a), reference(&done_b));
    let (status_a, status_b) = (status_path(&done_a), status_path(&done_b));
    let first_a = h.review_url(1).await;
    h.review_url(2).await;
    h.stack.settled().await;
    let page = status_page(&h, &status_b).await;
    assert!(!page.contains("Reminder sent"), "{page}");

    h.clock.advance(time::Duration::hours(24));
    let (reminded, escalated) = sweep_twice(&h).await;
    assert!(reminded <= 2 && escalated == 0, "{reminded} {escalated}");
    for id in [&a, &b] {
        wait_nudged(&h, id, NudgeKind::Reminder).await;
        let mails = mails_of(&h, id).await;
        assert_eq!(
            mails.len(),
            2,
            "the review mail and one reminder: {mails:?}"
        );
        assert_eq!(mails[1]["to"], "service-desk@example.com");
        assert!(
            mails[1]["subject"]
                .as_str()
                .unwrap()
                .starts_with("Reminder")
        );
    }
    let page = status_page(&h, &status_b).await;
    assert!(page.contains("Reminder sent to the reviewers"), "{page}");
    assert!(!page.contains("second reviewer"));

    h.clock.advance(time::Duration::hours(24));
    let (reminded, escalated) = sweep_twice(&h).await;
    assert!(reminded == 0 && escalated <= 2, "{reminded} {escalated}");
    for id in [&a, &b] {
        wait_nudged(&h, id, NudgeKind::Escalation).await;
        let mails = mails_of(&h, id).await;
        assert_eq!(mails.len(), 3, "plus one escalation: {mails:?}");
        assert_eq!(mails[2]["to"], "duty-manager@example.com");
        assert!(
            mails[2]["subject"]
                .as_str()
                .unwrap()
                .starts_with("Escalated")
        );
    }
    let page = status_page(&h, &status_b).await;
    assert!(page.contains("Passed to a second reviewer"), "{page}");
    assert!(
        !page.contains("duty-manager"),
        "no reviewer named to the technician"
    );
    // Nothing more to send however often the sweep runs.
    assert_eq!(sweep_twice(&h).await, (0, 0));

    // The first list's link still works; the second list's decides.
    open_review(&h, &first_a).await;
    let escalation_a = mails_of(&h, &a).await[2]["review_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = open_review(&h, &escalation_a).await;
    let (s, body) = approve(&h, &escalation_a, &page, &[]).await;
    assert_eq!(s, 200, "{body}");
    let p = wait_status(&h, &a, Status::Committed).await;
    assert_eq!(p.decision.unwrap().by, "duty-manager@example.com");
    assert_eq!(h.cases().len(), 1);
    let page = status_page(&h, &status_a).await;
    assert!(
        page.contains("Written to Salesforce") && page.contains("Passed to a second reviewer"),
        "{page}"
    );

    // B is still undecided when its links run out.
    h.clock
        .advance(time::Duration::hours(24) + time::Duration::minutes(1));
    let n = fieldgate::review::expire_due(h.stack.store.as_ref(), h.stack.clock.now(), 100)
        .await
        .unwrap();
    assert!(n <= 1, "only B (the stack's sweeper may have been first)");
    wait_status(&h, &b, Status::Expired).await;
    let page = status_page(&h, &status_b).await;
    for line in [
        "Reminder sent to the reviewers",
        "Passed to a second reviewer",
        "Not decided before the review expired",
    ] {
        assert!(page.contains(line), "{line}: {page}");
    }
    assert_eq!(
        sweep_twice(&h).await,
        (0, 0),
        "nothing for an expired report"
    );
    assert_eq!(mails_of(&h, &b).await.len(), 3);

    // The audit trail says each step once, in an intact chain.
    let events = h.stack.store.events(b.parse().unwrap()).await.unwrap();
    verify_chain(&events).unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for act in [
        "reminder_links_issued",
        "reminder_sent",
        "escalation_links_issued",
        "escalated",
        "expired",
    ] {
        assert_eq!(
            actions.iter().filter(|x| **x == act).count(),
            1,
            "{act}: {actions:?}"
        );
    }
}

/// An open and a closed Case on the first demo asset, made in Salesforce
/// (the emulator) before the report: (open id, closed id).
async fn open_and_closed_case(h: &Harness) -> (String, String) {
    use fieldgate::ports::RecordWriter;
    let (asset, _) = h.first_asset();
    let mut ids = Vec::new();
    for (subject, status) in [("Compressor rattling", "Working"), ("Old leak", "Closed")] {
        let rec =
            serde_json::json!({"Subject": subject, "Status": status, "AssetId": asset.as_str()});
        ids.push(
            h.stack
                .salesforce
                .create("Case", rec.as_object().unwrap())
                .await
                .unwrap(),
        );
    }
    (ids.remove(0), ids.remove(0))
}

fn comments_on(h: &Harness, case_id: &str) -> Vec<serde_json::Value> {
    h.stack
        .emulator
        .records("CaseComment")
        .into_iter()
        .filter(|c| c["ParentId"] == case_id)
        .collect()
}

/// Issue 13, "nothing filed twice": the review page lists the asset's open
/// Case (not the closed one) and the reviewer adds the report to it; the
/// commit, crashed after each Salesforce call and after each store write
/// in turn, still makes exactly one CaseComment and one attached photo on
/// that Case, no new Case, and says which record it updated and why.
async fn add_to_open_case_with_a_crash(crash: &str, at: usize) {
    let h = Harness::build().pause_commit().start().await;
    let (open_id, closed_id) = open_and_closed_case(&h).await;
    let (_, done) = h
        .submit(
            "Compressor still rattling at start-up, louder than last week",
            Some(("rattle.jpg", jpeg())),
        )
        .await;
    let id = reference(&done);
    let url = h.review_url(1).await;
    let page = open_review(&h, &url).await;
    assert!(page.contains("Already reported?"), "{crash} #{at}");
    assert!(page.contains(&format!("value=\"add_to:{open_id}\"")));
    assert!(page.contains("Compressor rattling"));
    assert!(!page.contains(&closed_id), "a closed Case is not offered");
    let p = proposal(&h, &id).await;
    let dup = p.duplicates.as_ref().unwrap();
    assert_eq!(
        (dup.open_records.len(), dup.failed.len()),
        (1, 0),
        "{dup:?}"
    );

    // Only a listed record: another id is refused and nothing is stored.
    let before = proposal(&h, &id).await;
    let (csrf, rev) = (hidden(&page, "csrf"), hidden(&page, "revision"));
    let decide = |d: String| {
        vec![
            ("decision", d),
            ("csrf", csrf.clone()),
            ("revision", rev.clone()),
        ]
    };
    let r = h
        .http
        .post(&url)
        .form(&decide(format!("add_to:{closed_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("not one of the open records")
    );
    assert_eq!(
        proposal(&h, &id).await,
        before,
        "a refused decision changed state"
    );
    let r = h
        .http
        .post(&url)
        .form(&decide(format!("add_to:{open_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("added to the open Case"));
    let p = wait_status(&h, &id, Status::Approved).await;
    assert_eq!(p.decision.unwrap().add_to.unwrap().id, open_id);

    let c = &h.stack.commit;
    let parts = h
        .parts()
        .with_store(match crash {
            "store" => Arc::new(CrashAfterApply {
                inner: c.store.clone(),
                at,
                seen: AtomicUsize::new(0),
            }),
            _ => c.store.clone(),
        })
        .with_writer(match crash {
            "salesforce" => Arc::new(CrashAfterCall {
                inner: c.writer.clone(),
                at,
                seen: AtomicUsize::new(0),
            }),
            _ => c.writer.clone(),
        });
    let faulty = fieldgate_commit::Commit::build(&parts).await.unwrap();
    let pid: ProposalId = id.parse().unwrap();
    let first = fieldgate_commit::process(&faulty, pid).await;
    assert!(first.is_err(), "{crash} #{at}: the injected crash happened");
    fieldgate_commit::process(c, pid)
        .await
        .expect("the retry completes");
    let p = proposal(&h, &id).await;
    assert_eq!(p.status, Status::Committed, "{crash} #{at}");
    assert!(p.commit.handoff_published);
    assert_eq!(p.commit.record_id.as_deref(), Some(open_id.as_str()));

    assert_eq!(h.cases().len(), 2, "{crash} #{at}: no new Case");
    let comments = comments_on(&h, &open_id);
    assert_eq!(
        comments.len(),
        1,
        "{crash} #{at}: one comment: {comments:?}"
    );
    let body = comments[0]["CommentBody"].as_str().unwrap();
    assert!(
        body.contains(&p.comment_marker()) && body.contains("rattling"),
        "{body}"
    );
    assert_eq!(comments[0]["IsPublished"], false);
    assert_eq!(p.commit.comment_id.as_deref(), comments[0]["Id"].as_str());
    let files = h.stack.emulator.content_versions_linked_to(&open_id);
    assert_eq!(files.len(), 1, "{crash} #{at}: one photo on the open Case");

    let handoffs = h.handoffs().await;
    assert!(!handoffs.is_empty());
    for m in &handoffs {
        assert_eq!(m["event"], "added_to_existing");
        assert_eq!(m["salesforce_id"], open_id.as_str());
        assert_eq!(m["dedupe_key"], format!("{id}:added_to_existing"));
    }
    let events = h.stack.store.events(pid).await.unwrap();
    verify_chain(&events).unwrap();
    let commented: Vec<_> = events
        .iter()
        .filter(|e| e.action == "case_commented")
        .collect();
    assert_eq!(commented.len(), 1, "{crash} #{at}");
    assert_eq!(commented[0].detail["salesforce_id"], open_id.as_str());
    assert!(
        commented[0].detail["why"]
            .as_str()
            .unwrap()
            .contains("open Case")
    );
}

#[tokio::test]
async fn a_report_added_to_an_open_case_survives_a_crash_after_any_salesforce_call() {
    // the Case's IsClosed read, the comment, the photo
    for at in 0..3 {
        add_to_open_case_with_a_crash("salesforce", at).await;
    }
}

#[tokio::test]
async fn a_report_added_to_an_open_case_survives_a_crash_after_any_store_write() {
    // commit_started, comment_started, case_commented, photo_attached,
    // committed, handoff_published
    for at in 0..6 {
        add_to_open_case_with_a_crash("store", at).await;
    }
}

/// The chosen Case closes between the review and the commit: nothing is
/// written, the report goes back to the reviewer with the reason and the
/// Case no longer offered; approving it as a new Case then works.
#[tokio::test]
async fn a_case_closed_before_the_commit_sends_the_report_back() {
    use fieldgate::ports::RecordWriter;
    let h = Harness::start().await;
    let (open_id, _) = open_and_closed_case(&h).await;
    let (_, done) = h.submit("Compressor rattling again", None).await;
    let id = reference(&done);
    let url = h.review_url(1).await;
    let page = open_review(&h, &url).await;
    assert!(page.contains(&format!("add_to:{open_id}")));
    // Someone closes it in Salesforce first.
    let close = serde_json::json!({"Status": "Closed"});
    h.stack
        .salesforce
        .update("Case", &open_id, close.as_object().unwrap(), None)
        .await
        .unwrap();
    let form = [
        ("decision", format!("add_to:{open_id}")),
        ("csrf", hidden(&page, "csrf")),
        ("revision", hidden(&page, "revision")),
    ];
    assert_eq!(
        h.http.post(&url).form(&form).send().await.unwrap().status(),
        200
    );
    let p = wait_status(&h, &id, Status::NeedsAttention).await;
    assert_eq!(p.commit.last_error.as_ref().unwrap().code, "CASE_CLOSED");
    assert!(comments_on(&h, &open_id).is_empty(), "nothing written");
    let url2 = h.review_url(2).await;
    let page2 = open_review(&h, &url2).await;
    assert!(page2.contains("no longer open"), "{page2}");
    assert!(
        !page2.contains(&format!("add_to:{open_id}")),
        "not offered again"
    );
    let (s, body) = approve(&h, &url2, &page2, &[]).await;
    assert_eq!(s, 200, "{body}");
    wait_status(&h, &id, Status::Committed).await;
    assert_eq!(h.cases().len(), 3, "a new Case beside the two");
}
