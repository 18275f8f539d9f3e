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
    fixture_limited(wrap, Limits::default(), fieldgate::clock::system()).await
}

async fn fixture_limited(
    wrap: impl FnOnce(Arc<dyn ProposalStore>) -> Arc<dyn ProposalStore>,
    limits: Limits,
    clock: Arc<dyn Clock>,
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
        .with_keys(keys)
        .with_clock(clock);
    let deps = IntakeDeps::build(&parts, limits).await.unwrap();
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
    assert_eq!(p.intake.photos[0].content_type, "image/png");
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
        // An address that cannot get the outcome mail (a name is fine).
        (
            400,
            post_multipart(
                &path,
                &[("notes", None, b"x"), ("reporter", None, b"ana@example")],
            ),
        ),
        (
            400,
            post_multipart(
                &path,
                &[
                    ("notes", None, b"x"),
                    ("reporter", None, b"ana@@example.com"),
                ],
            ),
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
    let key = p[0].intake.photos[0].key.replace('/', "__");
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
    async fn create_counted(
        &self,
        _: &fieldgate::domain::Transition,
        _: Option<&str>,
        _: &[fieldgate::ports::Quota],
        _: Option<&fieldgate::ports::CachedAsset>,
        _: Timestamp,
    ) -> Result<fieldgate::ports::Counted, fieldgate::ports::StoreError> {
        Err(fieldgate::ports::StoreError::backend(
            "writing",
            std::io::Error::other("disk full"),
        ))
    }
    async fn intake_reads(
        &self,
        r: &fieldgate::ports::IntakeReads,
    ) -> Result<fieldgate::ports::IntakeView, fieldgate::ports::StoreError> {
        self.0.intake_reads(r).await
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
    async fn pending_for_asset(
        &self,
        workflow: &fieldgate::domain::WorkflowId,
        asset: &AssetId,
        limit: usize,
    ) -> Result<Vec<fieldgate::domain::Proposal>, fieldgate::ports::StoreError> {
        self.0.pending_for_asset(workflow, asset, limit).await
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
    ) -> Result<fieldgate::domain::WindowCount, fieldgate::ports::StoreError> {
        self.0.count_in_window(key, window_secs, now).await
    }
    async fn idempotent(
        &self,
        key: &str,
    ) -> Result<Option<fieldgate::domain::ProposalId>, fieldgate::ports::StoreError> {
        self.0.idempotent(key).await
    }
    async fn revoke_code(
        &self,
        asset: &fieldgate::domain::AssetId,
        workflow: &fieldgate::domain::WorkflowId,
        by: &str,
        at: fieldgate::domain::Timestamp,
    ) -> Result<fieldgate::ports::CodeRevocation, fieldgate::ports::StoreError> {
        self.0.revoke_code(asset, workflow, by, at).await
    }
    async fn code_revocation(
        &self,
        asset: &fieldgate::domain::AssetId,
        workflow: &fieldgate::domain::WorkflowId,
    ) -> Result<Option<fieldgate::ports::CodeRevocation>, fieldgate::ports::StoreError> {
        self.0.code_revocation(asset, workflow).await
    }
    async fn put_sticker(
        &self,
        s: &fieldgate::domain::Sticker,
    ) -> Result<(), fieldgate::ports::StoreError> {
        self.0.put_sticker(s).await
    }
    async fn sticker(
        &self,
        r: &fieldgate::domain::StickerRef,
    ) -> Result<Option<fieldgate::domain::Sticker>, fieldgate::ports::StoreError> {
        self.0.sticker(r).await
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
    // Nor of several: every photo written before the failed create goes.
    let three = post_multipart(
        &path,
        &[
            ("notes", None, b"Leak at pump seal"),
            ("photo", Some("a.png"), PNG),
            ("photo", Some("b.png"), PNG),
            ("photo", Some("c.png"), PNG),
        ],
    );
    assert_eq!(send(&f.app, three).await.status, 500);
    assert!(photos(&f).is_empty(), "{:?}", photos(&f));
}

#[tokio::test]
async fn several_photos_are_stored_in_order_and_each_is_checked() {
    let f = fixture().await;
    let path = format!("/q/{}", f.code);
    let with = |photos: &[(&'static str, &'static [u8])]| {
        let mut parts: Vec<(&str, Option<&str>, &[u8])> =
            vec![("notes", None, b"Leak at pump seal")];
        parts.extend(photos.iter().map(|(n, d)| ("photo", Some(*n), *d)));
        post_multipart(&path, &parts)
    };
    // Over the limit (5), a bad one among good ones: a clear 4xx that
    // names it, and nothing stored, not even the good ones' files.
    let six = [("p.png", PNG); 6];
    let r = send(&f.app, with(&six)).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("at most 5 photos"), "{}", r.body);
    let r = send(
        &f.app,
        with(&[
            ("a.png", PNG),
            ("b.png", PNG),
            ("x.png", b"MZ not an image"),
        ]),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(r.body.contains("Photo 3 must be an image"), "{}", r.body);
    assert!(
        f.store
            .list_by_status(Status::Received, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(photos(&f).is_empty(), "{:?}", photos(&f));

    // Three, as the form sends them: three `photo` parts, kept in order.
    let r = send(
        &f.app,
        with(&[("first.png", PNG), ("second.png", PNG), ("third.png", PNG)]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let p = &f.store.list_by_status(Status::Received, 10).await.unwrap()[0];
    let names: Vec<&str> = p
        .intake
        .photos()
        .map(|(_, ph)| ph.file_name.as_str())
        .collect();
    assert_eq!(names, ["first.png", "second.png", "third.png"]);
    let keys: Vec<String> = p.intake.photos.iter().map(|ph| ph.key.clone()).collect();
    assert_eq!(
        keys,
        [
            format!("photos/{}.png", p.id),
            format!("photos/{}-2.png", p.id),
            format!("photos/{}-3.png", p.id)
        ]
    );
    let mut files: Vec<String> = keys.iter().map(|k| k.replace('/', "__")).collect();
    files.sort();
    assert_eq!(photos(&f), files);
}

// ------------------------------------------------------------ rate limits

fn limits(per_code: u64, per_client: u64) -> Limits {
    Limits {
        per_code: SlidingLimit {
            limit: per_code,
            window_secs: 600,
        },
        per_client: SlidingLimit {
            limit: per_client,
            window_secs: 600,
        },
        ..Limits::default()
    }
}

/// A well-formed report from `ip`, with its own or the given form key.
fn report(code: &str, ip: [u8; 4], idem: Option<&str>) -> Request {
    let fresh = new_proposal_id(fieldgate::clock::system().now()).to_string();
    let idem = idem.unwrap_or(&fresh).to_owned();
    let mut req = post_multipart(
        &format!("/q/{code}"),
        &[
            ("notes", None, b"Pump seal leaking"),
            ("idem", None, idem.as_bytes()),
        ],
    );
    req.extensions_mut()
        .insert(ClientIp(std::net::IpAddr::from(ip)));
    req
}

async fn stored(f: &Fixture) -> usize {
    f.store
        .list_by_status(Status::Received, 1000)
        .await
        .unwrap()
        .len()
}

fn retry_after(r: &Reply) -> u64 {
    r.headers["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn junk_posts_do_not_use_up_a_stickers_budget() {
    let f = fixture_limited(|s| s, limits(2, 1000), fieldgate::clock::system()).await;
    let path = format!("/q/{}", f.code);
    for _ in 0..30 {
        let mut junk = post_multipart(&path, &[("notes", None, b"  ")]);
        junk.extensions_mut()
            .insert(ClientIp([203, 0, 113, 9].into()));
        assert_eq!(send(&f.app, junk).await.status, 422);
        let not_multipart = request("POST", &path);
        assert_eq!(send(&f.app, not_multipart).await.status, 415);
    }
    assert_eq!(
        send(&f.app, report(&f.code, [10, 0, 0, 1], None))
            .await
            .status,
        201
    );
    assert_eq!(
        send(&f.app, report(&f.code, [10, 0, 0, 1], None))
            .await
            .status,
        201
    );
    let r = send(&f.app, report(&f.code, [10, 0, 0, 2], None)).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.body.contains("This code has received many reports"),
        "{}",
        r.body
    );
    assert!(retry_after(&r) >= 1, "{:?}", r.headers);
    assert_eq!(stored(&f).await, 2, "the refused report is not stored");
}

#[tokio::test]
async fn a_resend_is_answered_without_counting() {
    let f = fixture_limited(|s| s, limits(1, 1000), fieldgate::clock::system()).await;
    let first = send(
        &f.app,
        report(&f.code, [10, 0, 0, 1], Some("01JABCDEFGHJKMNPQRSTVWXYZ0")),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    // The offline queue sends it again, twice: same answer, nothing counted.
    for _ in 0..2 {
        let again = send(
            &f.app,
            report(&f.code, [10, 0, 0, 1], Some("01JABCDEFGHJKMNPQRSTVWXYZ0")),
        )
        .await;
        assert_eq!(again.status, 200, "{}", again.body);
    }
    assert_eq!(stored(&f).await, 1);
    // A new report is over the limit of 1: the resends did not count, or
    // the limit would have been hit by the first resend.
    assert_eq!(
        send(&f.app, report(&f.code, [10, 0, 0, 1], None))
            .await
            .status,
        429
    );
}

#[tokio::test]
async fn one_client_cannot_lock_the_others_out_of_a_code() {
    let f = fixture_limited(|s| s, limits(3, 2), fieldgate::clock::system()).await;
    let stranger = [198, 51, 100, 7];
    for _ in 0..2 {
        assert_eq!(
            send(&f.app, report(&f.code, stranger, None)).await.status,
            201
        );
    }
    for _ in 0..10 {
        let r = send(&f.app, report(&f.code, stranger, None)).await;
        assert_eq!(r.status, 429);
        assert!(r.body.contains("from your network"), "{}", r.body);
    }
    // The stranger's refused reports did not count against the code.
    let r = send(&f.app, report(&f.code, [10, 0, 0, 1], None)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(stored(&f).await, 3);
}

#[tokio::test]
async fn ipv6_clients_are_counted_by_their_64() {
    let a = ClientIp("2001:db8:1:2::1".parse().unwrap());
    let b = ClientIp("2001:db8:1:2:ffff::9".parse().unwrap());
    let c = ClientIp("2001:db8:1:3::1".parse().unwrap());
    assert_eq!(a.limit_key(), b.limit_key());
    assert_ne!(a.limit_key(), c.limit_key());
    let mapped = ClientIp("::ffff:192.0.2.1".parse().unwrap());
    assert_eq!(mapped.limit_key(), "192.0.2.1");
}

#[tokio::test]
async fn a_sliding_window_allows_no_double_burst_at_a_boundary() {
    // Just before a window ends: two reports (the limit).
    // 1_800_000_000 is a multiple of 600.
    let end = 1_800_000_000 + 600;
    let clock = fieldgate::clock::ManualClock::new(fieldgate::domain::fixtures::at(end - 2));
    let f = fixture_limited(|s| s, limits(2, 1000), clock.clone()).await;
    for _ in 0..2 {
        assert_eq!(
            send(&f.app, report(&f.code, [10, 0, 0, 1], None))
                .await
                .status,
            201
        );
    }
    // Just after the boundary a fixed window would take two more.
    clock.advance(time::Duration::seconds(4));
    let r = send(&f.app, report(&f.code, [10, 0, 0, 1], None)).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let wait = retry_after(&r);
    assert!((60..=600).contains(&wait), "Retry-After {wait}");
    // When Retry-After says, one more fits.
    clock.advance(time::Duration::seconds(wait as i64));
    assert_eq!(
        send(&f.app, report(&f.code, [10, 0, 0, 1], None))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn the_ceiling_refuses_everyone_and_says_when_to_retry() {
    let clock = fieldgate::clock::ManualClock::starting_now();
    let f = fixture_limited(
        |s| s,
        Limits {
            ceiling_burst: 2,
            ceiling_per_sec: 1,
            ..limits(1000, 1000)
        },
        clock.clone(),
    )
    .await;
    for ip in [[10, 0, 0, 1], [10, 0, 0, 2]] {
        assert_eq!(send(&f.app, report(&f.code, ip, None)).await.status, 201);
    }
    let r = send(&f.app, report(&f.code, [10, 0, 0, 3], None)).await;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("busy"), "{}", r.body);
    assert_eq!(retry_after(&r), 1);
    clock.advance(time::Duration::seconds(1));
    assert_eq!(
        send(&f.app, report(&f.code, [10, 0, 0, 3], None))
            .await
            .status,
        201
    );
}

/// A report as the Lambda sees it: API Gateway's request context attached
/// (deserialized from the event's `requestContext`, as lambda_http does).
fn report_via_api_gateway(code: &str, source_ip: &str, forwarded_for: &str) -> Request {
    let ctx: aws_lambda_events::apigw::ApiGatewayV2httpRequestContext =
        serde_json::from_value(serde_json::json!({
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "x.execute-api.us-east-1.amazonaws.com",
            "requestId": "r",
            "routeKey": "POST /q/{code}",
            "stage": "$default",
            "time": "01/Dec/2026:13:00:00 +0000",
            "timeEpoch": 1_796_130_000_000_i64,
            "http": {
                "method": "POST",
                "path": format!("/q/{code}"),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "test"
            }
        }))
        .unwrap();
    let mut req = report(code, [0, 0, 0, 0], None);
    req.extensions_mut().remove::<ClientIp>();
    req.headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    req.extensions_mut()
        .insert(lambda_http::request::RequestContext::ApiGatewayV2(ctx));
    req
}

#[tokio::test]
async fn on_lambda_the_client_is_api_gateways_source_ip_not_a_header() {
    let f = fixture_limited(|s| s, limits(1000, 1), fieldgate::clock::system()).await;
    let app = f
        .app
        .clone()
        .layer(axum::middleware::from_fn(client_ip_from_api_gateway));
    let r = send(
        &app,
        report_via_api_gateway(&f.code, "198.51.100.7", "10.0.0.1"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Same source, a different forged header: still the same client.
    let r = send(
        &app,
        report_via_api_gateway(&f.code, "198.51.100.7", "10.9.9.9"),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("from your network"));
    let r = send(
        &app,
        report_via_api_gateway(&f.code, "203.0.113.5", "10.0.0.1"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A directory that only has a cached copy (Salesforce unreachable).
struct CachedCopyOnly(AssetContext);

#[async_trait]
impl AssetDirectory for CachedCopyOnly {
    async fn lookup(&self, id: &AssetId) -> Result<Option<AssetContext>, DirectoryError> {
        Ok((id == &self.0.id).then(|| self.0.clone()))
    }
    async fn lookup_checked(
        &self,
        id: &AssetId,
    ) -> Result<Option<(AssetContext, Freshness)>, DirectoryError> {
        Ok(self.lookup(id).await?.map(|a| (a, Freshness::Unconfirmed)))
    }
}

#[tokio::test]
async fn the_form_says_when_its_card_is_a_cached_copy() {
    let dir = tempfile::tempdir().unwrap();
    let asset = AssetContext {
        id: "02i000000000001AAA".parse().unwrap(),
        name: "Chiller".into(),
        serial_number: None,
        account_id: None,
        account_name: None,
        location: None,
    };
    let keys = Keys::generate();
    let code = keys
        .qr
        .sign(&asset.id, &"field-service-case".parse().unwrap());
    let parts = Components::new(Config::embedded(dir.path()))
        .with_store(Arc::new(SqliteStore::in_memory()))
        .with_assets(Arc::new(CachedCopyOnly(asset.clone())))
        .with_keys(keys.clone());
    let app = router(Arc::new(
        IntakeDeps::build(&parts, Limits::default()).await.unwrap(),
    ));
    let r = send(&app, get(&format!("/q/{code}"))).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("Salesforce could not be reached"),
        "{}",
        r.body
    );
    // A cached copy is not signed into the form: its report asks again.
    assert_eq!(signed_context(&r.body), None);
    // Confirmed context: no such note, and the form carries it signed.
    let f = fixture().await;
    let r = send(&f.app, get(&format!("/q/{}", f.code))).await;
    assert!(!r.body.contains("could not be reached"));
    assert!(signed_context(&r.body).is_some(), "{}", r.body);
}

/// The signed asset context a form carries for its report, if any.
fn signed_context(form: &str) -> Option<String> {
    let (_, rest) = form.split_once(r#"name="context" value=""#)?;
    Some(rest.split('"').next()?.to_owned())
}

/// Salesforce as the cache sees it: assets that can change, and how often
/// it was asked.
#[derive(Clone, Default)]
struct CountingOrg {
    assets: Arc<std::sync::Mutex<Vec<AssetContext>>>,
    asked: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingOrg {
    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn rename(&self, id: &AssetId, name: &str) {
        let mut all = self.assets.lock().unwrap();
        let a = all.iter_mut().find(|a| &a.id == id).unwrap();
        a.name = name.into();
    }
}

#[async_trait]
impl AssetDirectory for CountingOrg {
    async fn lookup(&self, id: &AssetId) -> Result<Option<AssetContext>, DirectoryError> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self
            .assets
            .lock()
            .unwrap()
            .iter()
            .find(|a| &a.id == id)
            .cloned())
    }
}

/// The intake with the store's asset cache (as deployed) in front of an
/// org of two assets, on a clock the test moves; a code for each asset.
struct CachedFixture {
    app: Router,
    store: Arc<SqliteStore>,
    org: CountingOrg,
    clock: Arc<fieldgate::clock::ManualClock>,
    codes: [String; 2],
    ids: [AssetId; 2],
    _dir: tempfile::TempDir,
}

async fn cached_fixture() -> CachedFixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::in_memory());
    let clock = fieldgate::clock::ManualClock::starting_now();
    let ids: [AssetId; 2] = [
        "02i000000000001AAA".parse().unwrap(),
        "02i000000000002AAA".parse().unwrap(),
    ];
    let org = CountingOrg::default();
    for (id, name) in ids.iter().zip(["Chiller 1", "Boiler 2"]) {
        org.assets.lock().unwrap().push(AssetContext {
            id: id.clone(),
            name: name.into(),
            serial_number: None,
            account_id: Some("001000000000001AAA".into()),
            account_name: Some("Acme".into()),
            location: None,
        });
    }
    let keys = Keys::generate();
    let wf: fieldgate::domain::WorkflowId = "field-service-case".parse().unwrap();
    let codes = [keys.qr.sign(&ids[0], &wf), keys.qr.sign(&ids[1], &wf)];
    let directory = fieldgate::salesforce::CachedDirectory {
        inner: org.clone(),
        store: store.clone(),
        ttl: time::Duration::minutes(1),
        clock: clock.clone(),
    };
    let parts = Components::new(Config::embedded(dir.path()))
        .with_store(store.clone())
        .with_assets(Arc::new(directory))
        .with_keys(keys)
        .with_clock(clock.clone());
    let deps = IntakeDeps::build(&parts, Limits::unlimited())
        .await
        .unwrap();
    CachedFixture {
        app: router(Arc::new(deps)),
        store,
        org,
        clock,
        codes,
        ids,
        _dir: dir,
    }
}

impl CachedFixture {
    /// The form of sticker `n` and the context it was signed with.
    async fn scan(&self, n: usize) -> String {
        let r = send(&self.app, get(&format!("/q/{}", self.codes[n]))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        signed_context(&r.body).expect("a signed context")
    }

    /// A report to sticker `n` with `context`; the asset it was stored with.
    async fn report(&self, n: usize, context: &str) -> AssetContext {
        let idem = new_proposal_id(self.clock.now()).to_string();
        let r = send(
            &self.app,
            post_multipart(
                &format!("/q/{}", self.codes[n]),
                &[
                    ("notes", None, b"Pump seal leaking"),
                    ("idem", None, idem.as_bytes()),
                    ("context", None, context.as_bytes()),
                ],
            ),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let all = self
            .store
            .list_by_status(Status::Received, 100)
            .await
            .unwrap();
        all.into_iter()
            .find(|p| r.body.contains(&p.id.to_string()))
            .expect("the report stored")
            .asset
    }
}

#[tokio::test]
async fn the_form_writes_nothing_and_its_report_caches_what_it_showed() {
    let f = cached_fixture().await;
    let scanned_at = f.clock.now();
    let context = f.scan(0).await;
    assert_eq!(f.org.asked(), 1, "the scan asked Salesforce");
    assert_eq!(
        f.store.cached_asset(&f.ids[0]).await.unwrap(),
        None,
        "the scan wrote nothing"
    );
    // Minutes later, past the cache's freshness: the form's context stands
    // in for Salesforce, and the report's write caches it.
    f.clock.advance(time::Duration::minutes(20));
    let asset = f.report(0, &context).await;
    assert_eq!(asset.name, "Chiller 1");
    assert_eq!(f.org.asked(), 1, "no second Salesforce query");
    let cached = f.store.cached_asset(&f.ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (cached.asset, cached.fetched_at),
        (asset, scanned_at),
        "cached as of Salesforce's answer to the scan, not the report"
    );
    // The next scan within the cache's freshness of that answer reads it.
    f.clock.set(scanned_at + time::Duration::seconds(30));
    f.scan(0).await;
    assert_eq!(f.org.asked(), 1, "served from the cache");
}

#[tokio::test]
async fn a_tampered_expired_or_other_stickers_context_is_not_trusted() {
    use fieldgate::domain::form_context::LIFETIME;
    let f = cached_fixture().await;
    let context = f.scan(0).await;
    // Salesforce changes the asset after the form was shown: a report that
    // does not trust its context carries Salesforce's word.
    f.org.rename(&f.ids[0], "Chiller 1 (moved)");
    let step = || f.clock.advance(time::Duration::minutes(2));
    step();

    // Forged: well-formed, naming another account, signed with a key
    // that is not the deployment's.
    let mut fake = f.org.assets.lock().unwrap()[0].clone();
    fake.name = "Forged".into();
    fake.account_id = Some("001000000000666AAA".into());
    let forged = form_context::sign(
        &CsrfKey::generate(&mut rand_core_rng()),
        &f.codes[0],
        &fake,
        f.clock.now(),
    );
    let asked = f.org.asked();
    let asset = f.report(0, &forged).await;
    assert_eq!(
        asset.name, "Chiller 1 (moved)",
        "Salesforce's, not the forgery"
    );
    assert_eq!(asset.account_id.as_deref(), Some("001000000000001AAA"));
    assert_eq!(f.org.asked(), asked + 1, "looked up");

    // Edited: one character of the genuine one changed.
    step();
    let mut edited = context.clone().into_bytes();
    edited[3] = if edited[3] == b'A' { b'B' } else { b'A' };
    let asked = f.org.asked();
    let asset = f.report(0, &String::from_utf8(edited).unwrap()).await;
    assert_eq!(asset.name, "Chiller 1 (moved)");
    assert_eq!(f.org.asked(), asked + 1, "looked up");

    // Another sticker's context, posted with this one's code.
    step();
    let other = f.scan(1).await;
    let asked = f.org.asked();
    let asset = f.report(0, &other).await;
    assert_eq!(asset.id, f.ids[0], "the code's asset, not the context's");
    assert_eq!(f.org.asked(), asked + 1, "looked up");

    // Junk (a broken client): the report is still taken.
    step();
    let asked = f.org.asked();
    assert_eq!(f.report(0, "not a context").await.name, "Chiller 1 (moved)");
    assert_eq!(f.org.asked(), asked + 1, "looked up");

    // Genuine, but older than its lifetime (a report kept offline).
    f.clock.advance(LIFETIME);
    let asked = f.org.asked();
    assert_eq!(f.report(0, &context).await.name, "Chiller 1 (moved)");
    assert_eq!(f.org.asked(), asked + 1, "looked up");

    // Genuine and within its lifetime: trusted as the form showed it.
    let fresh = f.scan(0).await;
    f.org
        .rename(&f.ids[0], "Chiller 1 (renamed since the scan)");
    step();
    let asked = f.org.asked();
    assert_eq!(f.report(0, &fresh).await.name, "Chiller 1 (moved)");
    assert_eq!(f.org.asked(), asked, "not looked up");
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

    fn workflow() -> Arc<Workflow> {
        // Loaded once: the parser under test is the form's, not the TOML's.
        static WF: std::sync::LazyLock<Arc<Workflow>> = std::sync::LazyLock::new(|| {
            fieldgate::workflows::builtin()
                .iter()
                .next()
                .unwrap()
                .clone()
        });
        WF.clone()
    }

    fn part_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(vec!["notes", "reporter", "idem", "photo", "context"]).prop_map(str::to_owned),
            1 => any::<String>(),
        ]
    }

    /// Bytes a photo part might hold: random, or a real image's header
    /// with random bytes after it.
    fn data() -> impl Strategy<Value = Vec<u8>> {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        let jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec();
        prop_oneof![
            2 => proptest::collection::vec(any::<u8>(), 0..256),
            2 => any::<String>().prop_map(String::into_bytes),
            1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(move |t| [png.clone(), t].concat()),
            1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(move |t| [jpeg.clone(), t].concat()),
        ]
    }

    /// (name, file name, bytes) of each part (`Part` has no `Debug`: a
    /// photo's bytes do not belong in a failure message).
    fn parts() -> impl Strategy<Value = Vec<(String, Option<String>, Vec<u8>)>> {
        proptest::collection::vec(
            (part_name(), proptest::option::of(any::<String>()), data()),
            0..6,
        )
    }

    fn as_parts(v: Vec<(String, Option<String>, Vec<u8>)>) -> Vec<fieldgate::http::Part> {
        v.into_iter()
            .map(|(name, file_name, data)| fieldgate::http::Part {
                name,
                file_name,
                content_type: None,
                data: bytes::Bytes::from(data),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(config())]

        /// Whatever parts a form sends: a report, or a refusal the page
        /// explains (400, 413, 415, 422), never a panic.
        #[test]
        fn any_form_parts_are_a_report_or_a_typed_refusal(parts in parts()) {
            match parse_submission(&workflow(), &Limits::default(), as_parts(parts)) {
                Ok(s) => {
                    prop_assert!(!s.notes.is_empty() && s.notes.trim() == s.notes);
                    prop_assert!(s.photos.len() <= workflow().photo.max_count);
                    for (_, _, name) in &s.photos {
                        prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{}", name);
                    }
                }
                Err(e) => prop_assert!(matches!(e.status(), 400 | 413 | 415 | 422), "{:?}", e),
            }
        }

        #[test]
        fn any_text_field_is_a_report_or_a_typed_refusal(
            notes in any::<String>(),
            idem in proptest::option::of(any::<String>()),
            edits in proptest::collection::vec(edit(), 0..3),
        ) {
            let mut parts = vec![fieldgate::http::Part {
                name: "notes".into(),
                file_name: None,
                content_type: None,
                data: bytes::Bytes::from(fieldgate::domain::fixtures::mutate(&notes, &edits).into_bytes()),
            }];
            if let Some(k) = idem {
                parts.push(fieldgate::http::Part {
                    name: "idem".into(),
                    file_name: None,
                    content_type: None,
                    data: bytes::Bytes::from(k.into_bytes()),
                });
            }
            if let Err(e) = parse_submission(&workflow(), &Limits::default(), parts) {
                prop_assert!(matches!(e.status(), 400 | 413 | 415 | 422), "{:?}", e);
            }
        }
    }
}

/// A typed sticker code, as the `/k` form posts it, from `ip`.
fn typed(code: &str, ip: [u8; 4]) -> Request {
    let mut req = http::Request::builder()
        .method("POST")
        .uri("/k")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("ref={}", code.replace(' ', "+"))))
        .unwrap();
    req.extensions_mut()
        .insert(ClientIp(std::net::IpAddr::from(ip)));
    req
}

/// Registers the fixture's code as a printed sticker; returns its code.
async fn printed(f: &Fixture, keys: &fieldgate::domain::QrKeyring) -> String {
    let reference = keys.sticker_ref(&f.code);
    f.store
        .put_sticker(&fieldgate::domain::Sticker {
            reference: reference.clone(),
            code: f.code.clone(),
            asset: "02i000000000001AAA".parse().unwrap(),
            workflow: "field-service-case".parse().unwrap(),
            printed_at: fieldgate::clock::system().now(),
        })
        .await
        .unwrap();
    reference.to_string()
}

#[tokio::test]
async fn a_typed_sticker_code_opens_its_form() {
    let f = fixture().await;
    let page = send(&f.app, get("/k")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("name=\"ref\"") && page.body.contains("method=\"post\""),
        "{}",
        page.body
    );
    assert!(page.headers.contains_key("content-security-policy"));
    let keys = fieldgate::domain::QrKeyring::generate("other", &mut rand_core_rng());
    let reference = printed(&f, &keys).await;

    // However it is typed: lower case, a space for the dash, O for 0.
    let sloppy = reference.to_lowercase().replace('-', " ").replace('0', "o");
    let r = send(&f.app, typed(&sloppy, [10, 0, 0, 1])).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.headers["location"], format!("q/{}", f.code));
    // The place it sends to is the scanned code's form.
    let form = send(&f.app, get(&format!("/q/{}", f.code))).await;
    assert_eq!(form.status, 200);

    let r = send(&f.app, typed("0000-0000", [10, 0, 0, 1])).await;
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("No sticker has the code 0000-0000")
            && r.body.contains("value=\"0000-0000\""),
        "{}",
        r.body
    );
    let r = send(&f.app, typed("<b>hello</b>", [10, 0, 0, 1])).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("8 letters and digits"), "{}", r.body);
    assert!(!r.body.contains("<b>hello"), "what was typed is escaped");
    // Not a form post.
    let r = send(&f.app, request("POST", "/k")).await;
    assert_eq!(r.status, 415, "{}", r.body);
}

#[tokio::test]
async fn guessing_sticker_codes_is_rate_limited_per_client() {
    let f = fixture().await;
    let keys = fieldgate::domain::QrKeyring::generate("other", &mut rand_core_rng());
    let reference = printed(&f, &keys).await;
    // Malformed input does not count (as junk reports do not).
    for _ in 0..40 {
        assert_eq!(
            send(&f.app, typed("nope", [203, 0, 113, 9])).await.status,
            400
        );
    }
    let limit = Limits::default().lookups_per_client.limit;
    for i in 0..limit {
        let guess = format!("{:08}", i);
        let r = send(&f.app, typed(&guess, [203, 0, 113, 9])).await;
        assert_eq!(r.status, 404, "guess {i}: {}", r.body);
    }
    let r = send(&f.app, typed(&reference, [203, 0, 113, 9])).await;
    assert_eq!(
        r.status, 429,
        "even the right code, once the budget is spent"
    );
    assert!(r.body.contains("sticker codes were typed"), "{}", r.body);
    assert!(retry_after(&r) >= 1);
    // Another client is not affected.
    assert_eq!(
        send(&f.app, typed(&reference, [10, 0, 0, 7])).await.status,
        303
    );
}

/// A seeded rng for keys the test makes.
fn rand_core_rng() -> impl fieldgate::domain::RngCore {
    struct Counter(u8);
    impl fieldgate::domain::RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_add(1);
            u32::from(self.0)
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, d: &mut [u8]) {
            for b in d {
                *b = self.next_u32() as u8;
            }
        }
    }
    Counter(3)
}

#[tokio::test]
async fn the_service_worker_manifest_and_start_page_are_served_for_the_form_scope() {
    let f = fixture().await;
    let r = send(&f.app, get("/static/sw.js")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // Lives under /static/ but controls the forms, and only them.
    assert_eq!(r.headers["service-worker-allowed"], "/q/");
    // Revalidated on every visit, so a deploy reaches the phones.
    assert_eq!(r.headers["cache-control"], "no-cache");
    let version = fieldgate::web::static_version();
    assert_eq!(version.len(), 16);
    assert!(
        r.body.contains(&format!("var VERSION = \"{version}\"")),
        "version filled in"
    );
    assert!(!r.body.contains("__FIELDGATE_STATIC_VERSION__"));
    // The worker never keeps reviewer pages nor answers to posts.
    assert!(r.body.contains(r"/^\/(r|s|admin|dev|mcp)(\/|$)/"));
    assert!(r.body.contains(r#"if (req.method !== "GET") return;"#));

    let m = send(&f.app, get("/static/manifest.webmanifest")).await;
    assert_eq!(m.status, 200);
    assert_eq!(m.headers["content-type"], "application/manifest+json");
    let manifest: serde_json::Value = serde_json::from_str(&m.body).unwrap();
    assert_eq!(manifest["start_url"], "/q/home");
    assert_eq!(manifest["scope"], "/q/");
    let icon = send(&f.app, get("/static/icon.svg")).await;
    assert_eq!(
        (icon.status, icon.headers["content-type"].to_str().unwrap()),
        (200, "image/svg+xml")
    );

    // The start page: static, no token, the security headers, the manifest.
    let home = send(&f.app, get("/q/home")).await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Scan the QR code"));
    assert!(
        home.body
            .contains(r#"<link rel="manifest" href="/static/manifest.webmanifest">"#)
    );
    assert_eq!(home.headers["cache-control"], "no-store");
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("worker-src 'self'") && csp.contains("manifest-src 'self'"),
        "{csp}"
    );
    // GET only, like the form.
    assert_eq!(send(&f.app, request("POST", "/q/home")).await.status, 405);
    // The form links the manifest too.
    let form = send(&f.app, get(&format!("/q/{}", f.code))).await;
    assert!(form.body.contains(r#"rel="manifest""#));
}
