use super::*;
use async_trait::async_trait;
use fieldgate::domain::{AssetContext, AssetId, Status};
use fieldgate::embedded::{EmbeddedStore, FileMedia};
use fieldgate::ports::DirectoryError;

/// A fixed directory: the port's contract is small enough to state inline.
struct OneAsset(AssetContext);

#[async_trait]
impl AssetDirectory for OneAsset {
    async fn lookup(&self, id: &AssetId) -> Result<Option<AssetContext>, DirectoryError> {
        Ok((id == &self.0.id).then(|| self.0.clone()))
    }
}

struct Fixture {
    deps: Intake,
    store: Arc<EmbeddedStore>,
    code: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::in_memory());
    let asset = AssetContext {
        id: "02i000000000001AAA".parse().unwrap(),
        name: "Chiller <b>2</b>".into(),
        serial_number: Some("CH-2".into()),
        account_id: None,
        account_name: Some("Acme".into()),
        location: Some("Basement".into()),
    };
    let qr = QrKeyring::generate("k1");
    let code = qr.sign(&asset.id, &"field-service-case".parse().unwrap());
    let deps = Intake {
        store: store.clone(),
        media: Arc::new(FileMedia::open(dir.path()).unwrap()),
        assets: Arc::new(OneAsset(asset)),
        workflows: Arc::new(Workflows::builtin()),
        qr: Arc::new(qr),
        links: Arc::new(CsrfKey::generate()),
        limits: Limits::default(),
    };
    Fixture {
        deps,
        store,
        code,
        _dir: dir,
    }
}

fn get(path: &str) -> Request {
    http::Request::builder()
        .method("GET")
        .uri(path)
        .body(Body::Empty)
        .unwrap()
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
        .body(Body::Binary(body))
        .unwrap()
}

fn text(r: &Response<Body>) -> String {
    match r.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 2, 0, 0, 0,
];

#[tokio::test]
async fn form_shows_the_asset_escaped_with_security_headers() {
    let f = fixture();
    let r = handle(&f.deps, get(&format!("/q/{}", f.code))).await;
    assert_eq!(r.status(), 200);
    let body = text(&r);
    assert!(
        body.contains("Chiller &#60;b&#62;2&#60;/b&#62;")
            || body.contains("Chiller &lt;b&gt;2&lt;/b&gt;"),
        "{body}"
    );
    assert!(!body.contains("<b>2</b>"));
    assert!(body.contains("CH-2") && body.contains("Basement"));
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
}

#[tokio::test]
async fn forged_codes_are_a_plain_404() {
    let f = fixture();
    let forged = f.code.replace("02i000000000001AAA", "02i000000000002AAA");
    for path in [format!("/q/{forged}"), "/q/nonsense".into(), "/q/".into()] {
        let r = handle(&f.deps, get(&path)).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(!text(&r).contains("02i"), "reveals nothing");
    }
}

#[tokio::test]
async fn a_report_becomes_one_received_proposal() {
    let f = fixture();
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
    let r = handle(&f.deps, req()).await;
    assert_eq!(r.status(), 201, "{}", text(&r));
    let listed = f.store.list_by_status(Status::Received, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let p = &listed[0];
    assert!(text(&r).contains(&p.id.to_string()));
    assert_eq!(p.intake.notes, "Leak at pump seal");
    assert_eq!(p.intake.photo.as_ref().unwrap().content_type, "image/png");
    assert_eq!(f.store.events(p.id).await.unwrap().len(), 1);
    // The same form sent again (double tap, offline resend): same proposal.
    let again = handle(&f.deps, req()).await;
    assert_eq!(again.status(), 200);
    assert!(text(&again).contains(&p.id.to_string()));
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
    let f = fixture();
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
                .body(Body::Text("notes=x".into()))
                .unwrap(),
        ),
        (
            400,
            http::Request::builder()
                .method("POST")
                .uri(&path)
                .header("content-type", "multipart/form-data; boundary=zz")
                .body(Body::Binary(b"--zz\r\nbroken".to_vec()))
                .unwrap(),
        ),
    ];
    for (want, req) in cases {
        let r = handle(&f.deps, req).await;
        assert_eq!(r.status(), want, "{}", text(&r));
    }
    assert!(
        f.store
            .list_by_status(Status::Received, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
