use super::*;
use axum::body::Body;
use fieldgate::config::Config;
use fieldgate::domain::{AssetContext, Intake, ProposalId};
use fieldgate::embedded::{Outbox, SqliteStore};
use tower::ServiceExt;

struct Fx {
    app: Router,
    store: Arc<SqliteStore>,
    url_path: String,
    others: Vec<String>,
    id: ProposalId,
    _dir: tempfile::TempDir,
}

async fn fx() -> Fx {
    fx_with(fieldgate::workflows::builtin()).await
}

fn two_reviewers() -> Workflows {
    let toml = fieldgate::workflows::FIELD_SERVICE_CASE.replace(
        "reviewers = [\"service-desk@example.com\"]",
        "reviewers = [\"ana@example.com\", \"ben@example.com\"]",
    );
    Workflows::from_workflows(vec![
        fieldgate::domain::Workflow::from_toml("two.toml", &toml).unwrap(),
    ])
}

async fn fx_with(workflows: Workflows) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::in_memory());
    let outbox = Arc::new(Outbox::open(None).unwrap());
    let parts = Components::new(Config {
        public_url: Some("https://fg.example".into()),
        ..Config::embedded(dir.path())
    })
    .with_store(store.clone())
    .with_notifier(outbox.clone())
    .with_workflows(Arc::new(workflows));
    let structure = fieldgate_structure::Structure::build(&parts).await.unwrap();
    let now = parts.clock().now();
    let t = Proposal::receive(
        fieldgate::clock::new_proposal_id(now),
        "field-service-case".parse().unwrap(),
        AssetContext {
            id: "02i000000000001AAA".parse().unwrap(),
            name: "Boiler".into(),
            serial_number: None,
            account_id: None,
            account_name: None,
            location: None,
        },
        Intake {
            notes: "Boiler <script>alert(1)</script> pressure low".into(),
            reporter: None,
            photos: vec![],
            received_at: now,
            assistant: None,
        },
        now,
    );
    store.create(&t, None).await.unwrap();
    fieldgate_structure::process(&structure, t.proposal.id)
        .await
        .unwrap();
    let urls: Vec<String> = outbox
        .mails()
        .iter()
        .map(|m| {
            m.review_url
                .trim_start_matches("https://fg.example")
                .to_owned()
        })
        .collect();
    let url = outbox.mails()[0].review_url.clone();
    Fx {
        others: urls[1..].to_vec(),
        app: router(Arc::new(ApprovalDeps::build(&parts).await.unwrap())),
        store,
        url_path: url.trim_start_matches("https://fg.example").to_owned(),
        id: t.proposal.id,
        _dir: dir,
    }
}

type Request = http::Request<Body>;

/// What a test looks at: status, headers and the body as text.
struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

async fn send(app: &Router, req: Request) -> Reply {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn request(method: &str, uri: &str) -> Request {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap()
}

fn post_form(uri: &str, form: String) -> Request {
    http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap()
}

/// The names of the page's "needs your eyes" tick boxes.
fn tick_names(page: &str) -> Vec<String> {
    page.match_indices("name=\"confirm:")
        .map(|(i, _)| page[i + 6..].split('"').next().unwrap().to_owned())
        .collect()
}

/// What a reviewer picks for each required picklist left open (the
/// structurer could not settle it): Medium where offered, else the first.
fn choices(page: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, _) in page.match_indices("<select id=\"f-") {
        let tag = &page[i..i + page[i..].find('>').unwrap()];
        if !tag.contains(" required") {
            continue;
        }
        let name = tag
            .split("name=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let body = &page[i..i + page[i..].find("</select>").unwrap()];
        if !body.contains("<option value=\"\">(none)</option>") {
            continue;
        }
        let values: Vec<&str> = body
            .split("<option value=\"")
            .skip(1)
            .filter_map(|o| o.split('"').next())
            .filter(|v| !v.is_empty())
            .collect();
        if let Some(v) = values.iter().find(|v| **v == "Medium").or(values.first()) {
            out.push((name.to_owned(), (*v).to_owned()));
        }
    }
    out
}

fn hidden(page: &str, name: &str) -> String {
    let start = page.find(&format!("name=\"{name}\" value=\"")).unwrap() + name.len() + 15;
    page[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn get_shows_escaped_notes_and_changes_nothing() {
    let f = fx().await;
    let before = f.store.get(f.id).await.unwrap();
    for method in ["GET", "HEAD", "GET"] {
        let r = send(&f.app, request(method, &f.url_path)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["cache-control"], "no-store");
        if method == "GET" {
            assert!(!r.body.contains("<script>alert"), "notes are escaped");
        }
    }
    assert_eq!(f.store.get(f.id).await.unwrap(), before);
}

#[tokio::test]
async fn approve_binds_to_the_revision_and_spends_the_link() {
    let f = fx().await;
    let page = send(&f.app, request("GET", &f.url_path)).await.body;
    let (csrf, revision) = (hidden(&page, "csrf"), hidden(&page, "revision"));
    let mut fields = vec![
        ("decision".to_owned(), "approve".to_owned()),
        ("csrf".to_owned(), csrf),
        ("revision".to_owned(), revision),
        ("Subject".to_owned(), "Boiler pressure low".to_owned()),
    ];
    fields.extend(tick_names(&page).into_iter().map(|n| (n, "yes".to_owned())));
    // The notes say nothing of urgency either way: the structurer leaves
    // Priority for the reviewer to choose (required).
    fields.extend(choices(&page));
    let form = serde_urlencoded::to_string(&fields).unwrap();
    let post = || post_form(&f.url_path, form.clone());
    let r = send(&f.app, post()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p = f.store.get(f.id).await.unwrap().unwrap();
    assert_eq!(p.status, Status::Approved);
    assert_eq!(
        p.current().unwrap().fields["Subject"].value,
        "Boiler pressure low"
    );
    let d = p.decision.unwrap();
    assert_eq!(d.by, "service-desk@example.com");
    assert_eq!(d.revision_hash, p.revisions.last().unwrap().hash);
    assert_eq!(send(&f.app, post()).await.status, 409, "the link is spent");
}

#[tokio::test]
async fn an_approval_without_every_tick_is_refused_with_the_edits_kept() {
    let f = fx().await;
    let page = send(&f.app, request("GET", &f.url_path)).await.body;
    let ticks = tick_names(&page);
    assert!(
        !ticks.is_empty(),
        "the rules structurer leaves something to check: {page}"
    );
    assert!(page.contains("Needs your eyes"), "{page}");
    let before = f.store.get(f.id).await.unwrap();
    let base = [
        ("decision".to_owned(), "approve".to_owned()),
        ("csrf".to_owned(), hidden(&page, "csrf")),
        ("revision".to_owned(), hidden(&page, "revision")),
        ("Description".to_owned(), "Edited <b>by hand</b>".to_owned()),
    ];
    // All but one tick: refused, the page again with the edit and the
    // ticks given, nothing stored.
    let mut partial = base.to_vec();
    partial.extend(
        ticks
            .iter()
            .filter(|t| *t != "confirm:Description")
            .skip(1)
            .map(|t| (t.clone(), "yes".to_owned())),
    );
    let r = send(
        &f.app,
        post_form(&f.url_path, serde_urlencoded::to_string(&partial).unwrap()),
    )
    .await;
    if ticks.iter().filter(|t| *t != "confirm:Description").count() > 0 {
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.body.contains("Tick each field"), "{}", r.body);
        assert!(
            r.body.contains("Edited &#60;b&#62;by hand")
                || r.body.contains("Edited &lt;b&gt;by hand"),
            "the edit is kept"
        );
        assert_eq!(f.store.get(f.id).await.unwrap(), before, "nothing stored");
    }
    // A tick for something that is not a field: a clear 400.
    let mut bogus = base.to_vec();
    bogus.push(("confirm:OwnerId".to_owned(), "yes".to_owned()));
    let r = send(
        &f.app,
        post_form(&f.url_path, serde_urlencoded::to_string(&bogus).unwrap()),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Every tick (the edited field counts as checked): approved.
    let mut all = base.to_vec();
    all.extend(
        ticks
            .iter()
            .filter(|t| *t != "confirm:Description")
            .map(|t| (t.clone(), "yes".to_owned())),
    );
    all.extend(choices(&page));
    let r = send(
        &f.app,
        post_form(&f.url_path, serde_urlencoded::to_string(&all).unwrap()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        f.store.get(f.id).await.unwrap().unwrap().status,
        Status::Approved
    );
    // The deciding link keeps its window on the outcome; a rejection
    // elsewhere would say "already decided".
    let r = send(&f.app, request("GET", &f.url_path)).await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("See when it is written"), "{}", r.body);
}

#[tokio::test]
async fn each_reviewer_has_a_link_and_the_first_decision_wins() {
    let f = fx_with(two_reviewers()).await;
    assert_eq!(f.others.len(), 1, "one link per reviewer");
    let ben = &f.others[0];
    let page = send(&f.app, request("GET", ben)).await.body;
    assert!(page.contains("ben@example.com"));
    // Ana rejects first.
    let ana_page = send(&f.app, request("GET", &f.url_path)).await.body;
    let reject = serde_urlencoded::to_string([
        ("decision", "reject"),
        ("csrf", hidden(&ana_page, "csrf").as_str()),
        ("revision", hidden(&ana_page, "revision").as_str()),
    ])
    .unwrap();
    let rejected = send(&f.app, post_form(&f.url_path, reject)).await;
    assert_eq!(rejected.status, 200);
    assert!(
        rejected.body.contains("Rejected") && !rejected.body.contains('✓'),
        "a rejection is not shown with a green tick: {}",
        rejected.body
    );
    // Ben's link now says who decided, and his approval changes nothing.
    let r = send(&f.app, request("GET", ben)).await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("rejected by ana@example.com"), "{}", r.body);
    let approve = serde_urlencoded::to_string([
        ("decision", "approve"),
        ("csrf", hidden(&page, "csrf").as_str()),
        ("revision", hidden(&page, "revision").as_str()),
    ])
    .unwrap();
    assert_eq!(send(&f.app, post_form(ben, approve)).await.status, 409);
    let p = f.store.get(f.id).await.unwrap().unwrap();
    assert_eq!(p.status, Status::Rejected);
    assert_eq!(p.decision.unwrap().by, "ana@example.com");
}

#[tokio::test]
async fn routing_gives_the_same_pages_and_headers_as_before() {
    let f = fx().await;
    let photo = format!("{}/photo", f.url_path);
    // Unknown paths (and /static, which is qr-intake's): the 404 page.
    for path in ["/", "/r/", "/r/nonsense", "/static/app.css", "/q/x"] {
        let r = send(&f.app, request("GET", path)).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.body.contains("This link or code is not valid"), "{path}");
        assert_eq!(r.headers["cache-control"], "no-store", "{path}");
    }
    // No photo on this report: 404, not the page.
    assert_eq!(send(&f.app, request("GET", &photo)).await.status, 404);
    for (method, path) in [("PUT", &f.url_path), ("POST", &photo)] {
        let r = send(&f.app, request(method, path)).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert!(r.body.contains("does not accept that request"));
        assert_eq!(r.headers["allow"], "GET, HEAD, POST");
        assert_eq!(r.headers["referrer-policy"], "no-referrer");
    }
    // A form that is not urlencoded is refused before anything else.
    let r = send(
        &f.app,
        http::Request::builder()
            .method("POST")
            .uri(&f.url_path)
            .header("content-type", "text/plain")
            .body(Body::from("decision=approve"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 415);
}

/// The approval function as AWS builds it, from variables: without
/// `FIELDGATE_ADMIN_TOKEN_HASH` (the template's `AdminTokenHash` left
/// empty) there is no `/admin` at all; with it, the login form, and a
/// session cookie that is `Secure` under the template's `FIELDGATE_HSTS`.
#[tokio::test]
async fn admin_routes_exist_only_with_a_configured_credential() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let app = async |vars: Vec<(&'static str, String)>| {
        let lookup = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| (k == "FIELDGATE_DATA_DIR").then(|| data.clone()))
        };
        let parts = Components::new(Config::from_lookup(&lookup).unwrap())
            .with_store(Arc::new(SqliteStore::in_memory()));
        router(Arc::new(ApprovalDeps::build(&parts).await.unwrap()))
    };

    let off = app(vec![("FIELDGATE_HSTS", "1".into())]).await;
    for (method, path) in [
        ("GET", "/admin"),
        ("GET", "/admin/login"),
        ("GET", "/admin/export"),
        ("POST", "/admin/login"),
    ] {
        let r = send(&off, request(method, path)).await;
        assert_eq!(r.status, 404, "{method} {path}");
    }

    let (token, cred) = fieldgate::admin::AdminCredential::generate(&mut rand::rng());
    let on = app(vec![
        ("FIELDGATE_HSTS", "1".into()),
        (fieldgate::admin::TOKEN_HASH_VAR, cred.to_hex()),
    ])
    .await;
    let r = send(&on, request("GET", "/admin")).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("name=\"token\""));
    assert!(r.headers.contains_key("strict-transport-security"));
    let wrong = send(&on, post_form("/admin/login", "token=nope".into())).await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.headers.contains_key("set-cookie"));
    let form = serde_urlencoded::to_string([("token", &token)]).unwrap();
    let r = send(&on, post_form("/admin/login", form)).await;
    assert_eq!(r.status, 303);
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap();
    let mut req = request("GET", "/admin");
    req.headers_mut().insert("cookie", session.parse().unwrap());
    let r = send(&on, req).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("0 proposals"), "{}", r.body);
    // The review pages are unchanged beside it.
    assert_eq!(send(&on, request("GET", "/r/junk")).await.status, 404);
}

/// Property tests of the form parser: `PROPTEST_CASES` cases (default
/// 4,096; BENCHMARKS.md has the 1,000,000-case command).
mod properties {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn config() -> ProptestConfig {
        let mut c = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            c.cases = 4096;
        }
        c.failure_persistence = None;
        c
    }

    fn edit() -> impl Strategy<Value = (usize, u8, char)> {
        let ch = prop_oneof![
            8 => proptest::char::ranges(vec!['0'..='9', 'A'..='Z', 'a'..='z'].into()),
            3 => proptest::sample::select(vec!['=', '&', '%', '+', ';', '"', '\r', '\n', ' ']),
            1 => any::<char>(),
        ];
        (any::<usize>(), any::<u8>(), ch)
    }

    fn workflow() -> Arc<fieldgate::domain::Workflow> {
        // Loaded once: the parser under test is the form's, not the TOML's.
        static WF: std::sync::LazyLock<Arc<fieldgate::domain::Workflow>> =
            std::sync::LazyLock::new(|| {
                fieldgate::workflows::builtin()
                    .iter()
                    .next()
                    .unwrap()
                    .clone()
            });
        WF.clone()
    }

    fn form_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        h
    }

    const VALID: &str =
        "decision=approve&csrf=abc&revision=0123&reason=ok&Subject=Pump+leaking&Priority=High";

    /// A refusal is a typed 400/415; a form that parses names only this
    /// form's fields, and its decision and reason are read or refused.
    fn checked(body: &[u8]) -> Result<(), TestCaseError> {
        match DecisionForm::parse(&workflow(), &form_headers(), body) {
            Err(e) => prop_assert!(matches!(e.status(), 400 | 415), "{:?}", e),
            Ok(f) => {
                for k in f.edits.keys() {
                    prop_assert!(workflow().field(k).is_some(), "{}", k);
                }
                if let Err(e) = f.kind() {
                    prop_assert_eq!(e.status(), 400);
                }
                match f.reason() {
                    Ok(Some(r)) => prop_assert!(r.chars().count() <= 1000 && r.trim() == r),
                    Ok(None) => {}
                    Err(e) => prop_assert_eq!(e.status(), 400),
                }
            }
        }
        Ok(())
    }

    #[test]
    fn the_valid_form_parses() {
        let f = DecisionForm::parse(&workflow(), &form_headers(), VALID.as_bytes()).unwrap();
        assert_eq!(f.kind().unwrap(), fieldgate::domain::DecisionKind::Approve);
        assert_eq!(f.reason().unwrap().as_deref(), Some("ok"));
        assert_eq!(f.edits["Subject"], "Pump leaking");
        assert_eq!(f.csrf, "abc");
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_body_is_a_form_or_a_typed_refusal(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            checked(&body)?;
        }

        #[test]
        fn an_edited_form_is_a_form_or_a_typed_refusal(edits in proptest::collection::vec(edit(), 1..6)) {
            checked(fieldgate::domain::fixtures::mutate(VALID, &edits).as_bytes())?;
        }

        #[test]
        fn any_text_form_is_a_form_or_a_typed_refusal(body in any::<String>()) {
            checked(body.as_bytes())?;
        }
    }
}
