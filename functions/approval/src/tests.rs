use super::*;
use fieldgate::domain::{AssetContext, Intake, ProposalId};
use fieldgate::embedded::{EmbeddedStore, FileMedia, Outbox};

struct Fx {
    deps: Approval,
    store: Arc<EmbeddedStore>,
    url_path: String,
    others: Vec<String>,
    id: ProposalId,
    _dir: tempfile::TempDir,
}

async fn fx() -> Fx {
    fx_with(Workflows::builtin()).await
}

fn two_reviewers() -> Workflows {
    let toml = fieldgate::domain::workflow::FIELD_SERVICE_CASE.replace(
        "reviewers = [\"service-desk@example.com\"]",
        "reviewers = [\"ana@example.com\", \"ben@example.com\"]",
    );
    Workflows::from_workflows(vec![
        fieldgate::domain::Workflow::from_toml("two.toml", &toml).unwrap(),
    ])
}

async fn fx_with(workflows: Workflows) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::in_memory());
    let outbox = Arc::new(Outbox::open(None).unwrap());
    let media = Arc::new(FileMedia::open(dir.path()).unwrap());
    let workflows = Arc::new(workflows);
    let structure = fieldgate_structure::Structure {
        store: store.clone(),
        media: media.clone(),
        notifier: outbox.clone(),
        workflows: workflows.clone(),
        structurers: Default::default(),
        rules: Default::default(),
        public_url: "https://fg.example".into(),
    };
    let now = fieldgate::domain::now();
    let t = Proposal::receive(
        ProposalId::generate(),
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
            photo: None,
            received_at: now,
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
        deps: Approval {
            store: store.clone(),
            media,
            workflows,
            csrf: Arc::new(CsrfKey::generate()),
        },
        store,
        url_path: url.trim_start_matches("https://fg.example").to_owned(),
        id: t.proposal.id,
        _dir: dir,
    }
}

fn body(r: &Response<Body>) -> String {
    match r.body() {
        Body::Text(t) => t.clone(),
        _ => String::new(),
    }
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
        let r = handle(
            &f.deps,
            http::Request::builder()
                .method(method)
                .uri(&f.url_path)
                .body(Body::Empty)
                .unwrap(),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        if method == "GET" {
            assert!(!body(&r).contains("<script>alert"), "notes are escaped");
        }
    }
    assert_eq!(f.store.get(f.id).await.unwrap(), before);
}

#[tokio::test]
async fn approve_binds_to_the_revision_and_spends_the_link() {
    let f = fx().await;
    let page = body(
        &handle(
            &f.deps,
            http::Request::builder()
                .uri(&f.url_path)
                .body(Body::Empty)
                .unwrap(),
        )
        .await,
    );
    let form = serde_urlencoded::to_string([
        ("decision", "approve"),
        ("csrf", hidden(&page, "csrf").as_str()),
        ("revision", hidden(&page, "revision").as_str()),
        ("Subject", "Boiler pressure low"),
    ])
    .unwrap();
    let post = || {
        http::Request::builder()
            .method("POST")
            .uri(&f.url_path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::Text(form.clone()))
            .unwrap()
    };
    let r = handle(&f.deps, post()).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let p = f.store.get(f.id).await.unwrap().unwrap();
    assert_eq!(p.status, Status::Approved);
    assert_eq!(
        p.current().unwrap().fields["Subject"].value,
        "Boiler pressure low"
    );
    let d = p.decision.unwrap();
    assert_eq!(d.by, "service-desk@example.com");
    assert_eq!(d.revision_hash, p.revisions.last().unwrap().hash);
    assert_eq!(
        handle(&f.deps, post()).await.status(),
        409,
        "the link is spent"
    );
}

#[tokio::test]
async fn each_reviewer_has_a_link_and_the_first_decision_wins() {
    let f = fx_with(two_reviewers()).await;
    assert_eq!(f.others.len(), 1, "one link per reviewer");
    let ben = &f.others[0];
    let page = body(
        &handle(
            &f.deps,
            http::Request::builder().uri(ben).body(Body::Empty).unwrap(),
        )
        .await,
    );
    assert!(page.contains("ben@example.com"));
    // Ana rejects first.
    let ana_page = body(
        &handle(
            &f.deps,
            http::Request::builder()
                .uri(&f.url_path)
                .body(Body::Empty)
                .unwrap(),
        )
        .await,
    );
    let reject = serde_urlencoded::to_string([
        ("decision", "reject"),
        ("csrf", hidden(&ana_page, "csrf").as_str()),
        ("revision", hidden(&ana_page, "revision").as_str()),
    ])
    .unwrap();
    let post = |uri: &str, form: String| {
        http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::Text(form))
            .unwrap()
    };
    assert_eq!(
        handle(&f.deps, post(&f.url_path, reject)).await.status(),
        200
    );
    // Ben's link now says who decided, and his approval changes nothing.
    let r = handle(
        &f.deps,
        http::Request::builder().uri(ben).body(Body::Empty).unwrap(),
    )
    .await;
    assert_eq!(r.status(), 409);
    assert!(
        body(&r).contains("rejected by ana@example.com"),
        "{}",
        body(&r)
    );
    let approve = serde_urlencoded::to_string([
        ("decision", "approve"),
        ("csrf", hidden(&page, "csrf").as_str()),
        ("revision", hidden(&page, "revision").as_str()),
    ])
    .unwrap();
    assert_eq!(handle(&f.deps, post(ben, approve)).await.status(), 409);
    let p = f.store.get(f.id).await.unwrap().unwrap();
    assert_eq!(p.status, Status::Rejected);
    assert_eq!(p.decision.unwrap().by, "ana@example.com");
}
