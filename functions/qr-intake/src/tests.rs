use super::*;
use async_trait::async_trait;
use axum::body::Body;
use fieldgate::compose::Keys;
use fieldgate::config::Config;
use fieldgate::domain::{AssetContext, AssetId, Status};
use fieldgate::embedded::SqliteStore;
use fieldgate::ports::DirectoryError;
use tower::ServiceExt;

/// A fixed directory: the port's contract is small enough to state inline.
struct OneAsset(AssetContext);

#[async_trait]
impl AssetDirectory for OneAsset {
    async fn lookup(&self, id: &AssetId) -> Result<Option<AssetContext>, DirectoryError> {
        Ok((id == &self.0.id).then(|| self.0.clone()))
    }
}

struct Fixture {
    app: Router,
    store: Arc<SqliteStore>,
    code: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_with(|s| s).await
}

/// `wrap` may put a fault in front of the store.
async fn fixture_with(
    wrap: impl FnOnce(Arc<dyn ProposalStore>) -> Arc<dyn ProposalStore>,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::in_memory());
    let asset = AssetContext {
        id: "02i000000000001AAA".parse().unwrap(),
        name: "Chiller <b>2</b>".into(),
        serial_number: Some("CH-2".into()),
        account_id: None,
        account_name: Some("Acme".into()),
        location: Some("Basement".into()),
    };
    let keys = Keys::generate();
    let code = keys
        .qr
        .sign(&asset.id, &"field-service-case".parse().unwrap());
    let parts = Components::new(Config::embedded(dir.path()))
        .with_store(wrap(store.clone()))
        .with_assets(Arc::new(OneAsset(asset)))
        .with_keys(keys);
    let deps = IntakeDeps::build(&parts, Limits::default()).await.unwrap();
    Fixture {
        app: router(Arc::new(deps)),
        store,
        code,
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

fn request(method: &str, path: &str) -> Request {
    http::Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap()
}

fn get(path: &str) -> Request {
    request("GET", path)
}

fn post_multipart(path: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Request {
    let b = "XbOuNdArY42";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{b}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(Body::from(body))
        .unwrap()
}

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 2, 0, 0, 0,
];

/// A PNG header declaring `w` x `h` pixels.
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut v = PNG[..16].to_vec();
    v.extend(w.to_be_bytes());
    v.extend(h.to_be_bytes());
    v.extend([8, 2, 0, 0, 0]);
    v
}

#[tokio::test]
async fn form_shows_the_asset_escaped_with_security_headers() {
    let f = fixture().await;
    let r = send(&f.app, get(&format!("/q/{}", f.code))).await;
    assert_eq!(r.status, 200);
    let body = &r.body;
    assert!(
        body.contains("Chiller &#60;b&#62;2&#60;/b&#62;")
            || body.contains("Chiller &lt;b&gt;2&lt;/b&gt;"),
        "{body}"
    );
    assert!(!body.contains("<b>2</b>"));
    assert!(body.contains("CH-2") && body.contains("Basement"));
    assert!(
        body.contains("Field service case"),
        "the workflow's own name"
    );
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    assert_eq!(r.headers["referrer-policy"], "no-referrer");
    // Served over plain http (no https public URL): no HSTS.
    assert!(!r.headers.contains_key("strict-transport-security"));
}

#[tokio::test]
async fn every_response_carries_hsts_when_the_public_url_is_https() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    for config in [
        Config {
            public_url: Some("https://fieldgate.example".into()),
            ..Config::embedded(dir.path())
        },
        Config {
            hsts: true,
            ..Config::embedded(dir.path())
        },
    ] {
        let parts = Components::new(config)
            .with_store(f.store.clone())
            .with_assets(Arc::new(OneAsset(AssetContext {
                id: "02i000000000001AAA".parse().unwrap(),
                name: "Chiller".into(),
                serial_number: None,
                account_id: None,
                account_name: None,
                location: None,
            })))
            .with_keys(Keys::generate());
        let app = router(Arc::new(
            IntakeDeps::build(&parts, Limits::default()).await.unwrap(),
        ));
        // A page, an error page and a static file alike.
        for path in ["/q/not-a-code", "/nowhere", "/static/app.css"] {
            let r = send(&app, get(path)).await;
            assert_eq!(
                r.headers["strict-transport-security"], "max-age=31536000; includeSubDomains",
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn forged_codes_are_a_plain_404() {
    let f = fixture().await;
    let forged = f.code.replace("02i000000000001AAA", "02i000000000002AAA");
    for path in [format!("/q/{forged}"), "/q/nonsense".into(), "/q/".into()] {
        let r = send(&f.app, get(&path)).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.body.contains("This link or code is not valid"), "{path}");
        assert!(!r.body.contains("02i"), "reveals nothing");
    }
}

#[tokio::test]
async fn a_report_becomes_one_received_proposal() {
    let f = fixture().await;
    let path = format!("/q/{}", f.code);
    let req = || {
        post_multipart(
            &path,
            &[
                ("notes", None, b"Leak at pump seal"),
                ("photo", Some("p.png"), PNG),
                ("reporter", None, b"ana@example.com"),
                ("idem", None, b"01JABCDEFGHJKMNPQRSTVWXYZ0"),
            ],
        )
    };
    let r = send(&f.app, req()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let listed = f.store.list_by_status(Status::Received, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let p = &listed[0];
    assert!(r.body.contains(&p.id.to_string()));
    assert_eq!(p.intake.notes, "Leak at pump seal");
    assert_eq!(p.intake.photo.as_ref().unwrap().content_type, "image/png");
    assert_eq!(f.store.events(p.id).await.unwrap().len(), 1);
    // The same form sent again (double tap, offline resend): same proposal.
    let again = send(&f.app, req()).await;
    assert_eq!(again.status, 200);
    assert!(again.body.contains(&p.id.to_string()));
    assert_eq!(
        f.store
            .list_by_status(Status::Received, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_stores_nothing() {
    let f = fixture().await;
    let path = format!("/q/{}", f.code);
    let cases: Vec<(u16, Request)> = vec![
        (422, post_multipart(&path, &[("notes", None, b"   ")])),
        (
            415,
            post_multipart(
                &path,
                &[
                    ("notes", None, b"x"),
                    ("photo", Some("x.png"), b"MZ\x90\x00 not an image"),
                ],
            ),
        ),
        (
            400,
            post_multipart(&path, &[("notes", None, b"\xff\xfe bad utf8")]),
        ),
        // A 45-byte PNG declaring 20,000 x 20,000 px, and one declaring
        // 7,000 x 7,000 (49 megapixels): refused from the header alone.
        (
            422,
            post_multipart(
                &path,
                &[
                    ("notes", None, b"x"),
                    ("photo", Some("big.png"), &png(20_000, 20_000)),
                ],
            ),
        ),
        (
            422,
            post_multipart(
                &path,
                &[
                    ("notes", None, b"x"),
                    ("photo", Some("big.png"), &png(7_000, 7_000)),
                ],
            ),
        ),
        (
            400,
            post_multipart(&path, &[("notes", None, b"x"), ("Priority", None, b"High")]),
        ),
        (
            400,
            post_multipart(&path, &[("notes", None, b"x"), ("notes", None, b"y")]),
        ),
        (
            415,
            http::Request::builder()
                .method("POST")
                .uri(&path)
                .header("content-type", "text/plain")
                .body(Body::from("notes=x"))
                .unwrap(),
        ),
        (
            400,
            http::Request::builder()
                .method("POST")
                .uri(&path)
                .header("content-type", "multipart/form-data; boundary=zz")
                .body(Body::from(&b"--zz\r\nbroken"[..]))
                .unwrap(),
        ),
    ];
    for (want, req) in cases {
        let r = send(&f.app, req).await;
        assert_eq!(r.status, want, "{}", r.body);
    }
    assert!(
        f.store
            .list_by_status(Status::Received, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn routing_gives_the_same_pages_and_headers_as_before() {
    let f = fixture().await;
    // Unknown paths: the 404 page, with the security headers.
    for path in ["/", "/nope", "/q", "/s/", "/r/x"] {
        let r = send(&f.app, get(path)).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.body.contains("This link or code is not valid"), "{path}");
        assert_eq!(r.headers["cache-control"], "no-store", "{path}");
        assert_eq!(r.headers["x-frame-options"], "DENY", "{path}");
    }
    // A known path with the wrong method: the 405 page.
    for (method, path) in [
        ("PUT", format!("/q/{}", f.code)),
        ("DELETE", "/s/x.y".into()),
    ] {
        let r = send(&f.app, request(method, &path)).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert!(r.body.contains("does not accept that request"));
        assert_eq!(r.headers["allow"], "GET, HEAD, POST");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
    // A forged status link is a 404, like an unknown one.
    assert_eq!(
        send(&f.app, get("/s/01JABCDEFGHJKMNPQRSTVWXYZ0.x"))
            .await
            .status,
        404
    );
    // Static assets are cacheable but carry the other headers.
    let css = send(&f.app, get("/static/app.css")).await;
    assert_eq!(css.status, 200);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(css.headers["cache-control"], "public, max-age=300");
    assert!(css.headers.contains_key("content-security-policy"));
    assert_eq!(send(&f.app, get("/static/nope.css")).await.status, 404);
}

#[tokio::test]
async fn a_body_over_the_limit_is_the_413_page() {
    let f = fixture().await;
    let big = vec![b'x'; MAX_BODY + 1];
    let r = send(
        &f.app,
        post_multipart(&format!("/q/{}", f.code), &[("notes", None, &big)]),
    )
    .await;
    assert_eq!(r.status, 413);
    assert!(r.body.contains("larger than 10 MB"), "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
}

/// The photo files in the fixture's data directory.
fn photos(f: &Fixture) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(f._dir.path().join("media"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn report_with_photo(path: &str) -> Request {
    post_multipart(
        path,
        &[
            ("notes", None, b"Leak at pump seal"),
            ("photo", Some("p.png"), PNG),
            ("idem", None, b"01JABCDEFGHJKMNPQRSTVWXYZ0"),
        ],
    )
}

#[tokio::test]
async fn a_deduplicated_submission_leaves_no_photo_behind() {
    let f = fixture().await;
    let path = format!("/q/{}", f.code);
    assert_eq!(send(&f.app, report_with_photo(&path)).await.status, 201);
    let p = f.store.list_by_status(Status::Received, 10).await.unwrap();
    let key = p[0].intake.photo.as_ref().unwrap().key.replace('/', "__");
    assert_eq!(photos(&f), std::slice::from_ref(&key));
    for _ in 0..3 {
        assert_eq!(send(&f.app, report_with_photo(&path)).await.status, 200);
    }
    assert_eq!(photos(&f), [key], "only the stored proposal's photo");
}

/// A store whose creates fail (a full disk, say); the rest works.
struct CreateFails(Arc<dyn ProposalStore>);

#[async_trait]
impl ProposalStore for CreateFails {
    async fn create(
        &self,
        _: &fieldgate::domain::Transition,
        _: Option<&str>,
    ) -> Result<Created, fieldgate::ports::StoreError> {
        Err(fieldgate::ports::StoreError::backend(
            "writing",
            std::io::Error::other("disk full"),
        ))
    }
    async fn apply(
        &self,
        t: &fieldgate::domain::Transition,
    ) -> Result<(), fieldgate::ports::StoreError> {
        self.0.apply(t).await
    }
    async fn get(
        &self,
        id: fieldgate::domain::ProposalId,
    ) -> Result<Option<fieldgate::domain::Proposal>, fieldgate::ports::StoreError> {
        self.0.get(id).await
    }
    async fn events(
        &self,
        id: fieldgate::domain::ProposalId,
    ) -> Result<Vec<fieldgate::domain::AuditEvent>, fieldgate::ports::StoreError> {
        self.0.events(id).await
    }
    async fn list_by_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<fieldgate::domain::Proposal>, fieldgate::ports::StoreError> {
        self.0.list_by_status(status, limit).await
    }
    async fn cached_asset(
        &self,
        id: &AssetId,
    ) -> Result<Option<fieldgate::ports::CachedAsset>, fieldgate::ports::StoreError> {
        self.0.cached_asset(id).await
    }
    async fn cache_asset(
        &self,
        a: &fieldgate::ports::CachedAsset,
    ) -> Result<(), fieldgate::ports::StoreError> {
        self.0.cache_asset(a).await
    }
    async fn count_in_window(
        &self,
        key: &str,
        window_secs: i64,
        now: Timestamp,
    ) -> Result<u64, fieldgate::ports::StoreError> {
        self.0.count_in_window(key, window_secs, now).await
    }
}

#[tokio::test]
async fn a_failed_submission_leaves_no_photo_behind() {
    let f = fixture_with(|s| Arc::new(CreateFails(s))).await;
    let path = format!("/q/{}", f.code);
    let r = send(&f.app, report_with_photo(&path)).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(!r.body.contains("disk full"), "the cause stays in the log");
    assert!(photos(&f).is_empty(), "{:?}", photos(&f));
}
