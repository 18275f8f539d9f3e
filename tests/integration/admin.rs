//! The read-only `/admin` page of `fieldgate dev`, over real HTTP: off
//! without a credential, closed to a wrong one or a forged cookie, and with
//! the right token a list, a timeline and an export of proposals made
//! through the real flow (scan, structure, review, commit).

use fieldgate::domain::{ExportLine, ProposalId, Status, verify_export};
use fieldgate::ports::ProposalStore;
use fieldgate_tests::*;
use regex::Regex;

fn url(h: &Harness, path: &str) -> String {
    format!("{}{path}", h.stack.base_url)
}

async fn get(h: &Harness, path: &str, cookie: Option<&str>) -> (u16, http::HeaderMap, String) {
    let mut r = h.http.get(url(h, path));
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    let r = r.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

async fn login(h: &Harness, token: &str) -> reqwest::Response {
    h.http
        .post(url(h, "/admin/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

async fn wait_status(h: &Harness, id: ProposalId, want: Status) {
    wait_for(|| async {
        let p = h.stack.store.get(id).await.unwrap()?;
        (p.status == want && (want != Status::Committed || p.commit.handoff_published))
            .then_some(())
    })
    .await
}

/// Submits a report and waits for its review mail; returns its id and link.
async fn reported(h: &Harness, notes: &str, n: usize) -> (ProposalId, String) {
    let (status, page) = h.submit(notes, None).await;
    assert_eq!(status, 201, "{page}");
    let id: ProposalId = reference(&page).parse().unwrap();
    let link = h.review_url(n).await;
    assert!(link.contains(&id.to_string()), "mail {n} is for {id}");
    (id, link)
}

async fn approve(h: &Harness, link: &str) {
    let page = h.http.get(link).send().await.unwrap().text().await.unwrap();
    let r = h
        .http
        .post(link)
        .form(
            &[
                ("decision".to_owned(), "approve".to_owned()),
                ("csrf".to_owned(), hidden(&page, "csrf")),
                ("revision".to_owned(), hidden(&page, "revision")),
            ]
            .into_iter()
            .chain(ticks(&page))
            .collect::<Vec<_>>(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn admin_pages_do_not_exist_without_a_credential() {
    let h = Harness::build().no_admin().start().await;
    assert!(h.stack.admin_token.is_none());
    for path in ["/admin", "/admin/login", "/admin/export", "/admin/p/x"] {
        let (status, _, _) = get(&h, path, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let r = login(&h, "anything").await;
    assert_eq!(r.status(), 404);
    h.stack.stop().await;
}

#[tokio::test]
async fn admin_lists_filters_shows_the_timeline_and_exports_what_verifies() {
    let h = Harness::start().await;
    let token = h
        .stack
        .admin_token
        .clone()
        .expect("dev makes an admin token");
    let hostile = "Pump leaking <script>alert('admin')</script> \"quoted\" & more";
    let (committed, link) = reported(&h, hostile, 1).await;
    approve(&h, &link).await;
    wait_status(&h, committed, Status::Committed).await;
    let (pending, _) = reported(&h, "Second report, still waiting for review", 2).await;
    wait_status(&h, pending, Status::PendingReview).await;

    // Not signed in: the login form with 401, nothing about the data.
    for path in [
        "/admin".to_owned(),
        format!("/admin/p/{committed}"),
        "/admin/export".to_owned(),
    ] {
        let (status, headers, body) = get(&h, &path, None).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(body.contains("name=\"token\""), "{path}: the login form");
        assert!(!body.contains(&committed.to_string()) && !body.contains("Pump"));
    }
    // A wrong token: refused, no cookie.
    let r = login(&h, "not-the-token").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    // A forged or stale cookie: refused.
    let (status, _, _) = get(&h, "/admin", Some("fg_admin=99999999999.AAAA")).await;
    assert_eq!(status, 401);

    // The right token: a session cookie, HttpOnly and SameSite=Strict.
    let r = login(&h, &token).await;
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(set.contains("Path=/admin"), "{set}");
    assert!(!set.contains(&token), "the token is not the cookie");
    let cookie = set.split(';').next().unwrap().to_owned();
    // The cookie with one character of its tag changed is forged.
    let mut forged = cookie.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(get(&h, "/admin", Some(&forged)).await.0, 401);

    // The list: both proposals, hostile notes inert.
    let (status, headers, list) = get(&h, "/admin", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(list.contains(&committed.to_string()) && list.contains(&pending.to_string()));
    assert!(!list.contains("<script>alert"), "notes are escaped");
    assert!(list.contains("&lt;script&gt;") || list.contains("&#60;script&#62;"));

    // Filters: status, workflow, dates.
    let today = time::OffsetDateTime::now_utc().date();
    let day = |d: time::Date| d.to_string();
    let cases = [
        ("status=COMMITTED".to_owned(), true, false),
        ("status=PENDING_REVIEW".to_owned(), false, true),
        ("status=REJECTED".to_owned(), false, false),
        ("workflow=field-service-case".to_owned(), true, true),
        ("workflow=no-such-workflow".to_owned(), false, false),
        (format!("from={}&to={}", day(today), day(today)), true, true),
        (
            format!("from={}", day(today.next_day().unwrap())),
            false,
            false,
        ),
        (
            format!("to={}", day(today.previous_day().unwrap())),
            false,
            false,
        ),
    ];
    for (q, has_committed, has_pending) in &cases {
        let (status, _, page) = get(&h, &format!("/admin?{q}"), Some(&cookie)).await;
        assert_eq!(status, 200, "{q}");
        assert_eq!(page.contains(&committed.to_string()), *has_committed, "{q}");
        assert_eq!(page.contains(&pending.to_string()), *has_pending, "{q}");
    }
    assert_eq!(get(&h, "/admin?status=BOGUS", Some(&cookie)).await.0, 400);
    // A hostile filter is shown back inert.
    let (status, _, page) = get(
        &h,
        "/admin?workflow=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!page.contains("\"><script>"), "{page}");

    // The timeline: every stored event, in order, with who and what.
    let (status, _, page) = get(&h, &format!("/admin/p/{committed}"), Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("Audit chain verified"), "{page}");
    let events = h.stack.store.events(committed).await.unwrap();
    assert!(
        events.len() >= 4,
        "received, structured, approved, committed"
    );
    let row = Regex::new(
        r#"<tr class="event"><td>(\d+)</td><td><time[^>]*>[^<]*</time></td><td>([^<]*)</td><td>([^<]*)</td>"#,
    )
    .unwrap();
    let shown: Vec<(u32, String, String)> = row
        .captures_iter(&page)
        .map(|c| (c[1].parse().unwrap(), c[2].to_owned(), c[3].to_owned()))
        .collect();
    let stored: Vec<(u32, String, String)> = events
        .iter()
        .map(|e| (e.seq, e.actor.describe(), e.action.clone()))
        .collect();
    assert_eq!(shown, stored);
    assert!(
        shown
            .iter()
            .any(|(_, who, _)| who == "service-desk@example.com")
    );
    assert!(page.contains("revision 1"), "the revision an event binds");
    assert_eq!(
        get(&h, "/admin/p/01JD0000000000000000000000", Some(&cookie))
            .await
            .0,
        404
    );

    // The export: an attachment of JSON lines that verify offline.
    let (status, headers, body) = get(&h, "/admin/export", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(headers["cache-control"], "no-store");
    let lines: Vec<ExportLine> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let results = verify_export(&lines);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let report = fieldgate_cli::audit::verify_file(body.as_bytes()).unwrap();
    assert_eq!((report.proposals, report.breaks.len()), (2, 0));
    assert_eq!(
        report.events,
        events.len() + h.stack.store.events(pending).await.unwrap().len()
    );
    // Filtered the same way as the list.
    let (_, _, only) = get(&h, "/admin/export?status=COMMITTED", Some(&cookie)).await;
    let heads: Vec<ProposalId> = only
        .lines()
        .filter_map(|l| match serde_json::from_str(l).unwrap() {
            ExportLine::Head(h) => Some(h.proposal),
            _ => None,
        })
        .collect();
    assert_eq!(heads, vec![committed]);

    // GET changed nothing.
    let p = h.stack.store.get(pending).await.unwrap().unwrap();
    assert_eq!(p.status, Status::PendingReview);

    // An event edited behind the store's back: the timeline says where.
    let db = rusqlite::Connection::open(h.dir.path().join("fieldgate.db")).unwrap();
    let doc: String = db
        .query_row(
            "SELECT doc FROM audit_events WHERE proposal_id = ?1 AND seq = 2",
            [committed.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    let mut ev: serde_json::Value = serde_json::from_str(&doc).unwrap();
    ev["action"] = "nothing to see here".into();
    db.execute(
        "UPDATE audit_events SET doc = ?1 WHERE proposal_id = ?2 AND seq = 2",
        rusqlite::params![ev.to_string(), committed.to_string()],
    )
    .unwrap();
    drop(db);
    let (_, _, page) = get(&h, &format!("/admin/p/{committed}"), Some(&cookie)).await;
    assert!(page.contains("BROKEN"), "{page}");
    assert!(page.contains("event 2"), "{page}");

    // Sign out: the cookie is cleared.
    let r = h
        .http
        .post(url(&h, "/admin/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );

    // Guessing is slowed: after a few wrong tokens even the right one
    // waits, with a Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let r = login(&h, "wrong").await;
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 401);
    }
    let r = limited.expect("wrong tokens are rate limited");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(login(&h, &token).await.status(), 429);
    h.stack.stop().await;
}
