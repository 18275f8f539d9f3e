//! `fieldgate serve` as an admin runs it: the real binary against a
//! Salesforce emulator on its own port as the org (`SALESFORCE_*`, JWT
//! bearer, exactly as the Lambdas read them), review mail through a real
//! SMTP server (aiosmtpd, started by `infra/scripts/setup.d/60-smtp.sh`),
//! and a webhook receiver here that checks the signature.

use fieldgate_sf_emulator::{DEV_USERNAME, Emulator, EmulatorConfig};
use hmac::{Hmac, KeyInit, Mac};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "serve-test-webhook-secret-0123456789";
const WORKFLOW: &str = "field-service-case";

/// Kills the child even when an assertion fails.
pub(crate) struct Running(pub(crate) Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The SMTP stand-ins test.sh started (aiosmtpd: one plain, and one that
/// needs STARTTLS or TLS from the first byte, a login and a certificate of
/// its throwaway CA); missing is a failure, never a skip.
pub(crate) struct Smtp {
    pub(crate) plain_port: u16,
    pub(crate) plain_maildir: PathBuf,
    pub(crate) starttls_port: u16,
    pub(crate) smtps_port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) ca_file: PathBuf,
    pub(crate) tls_maildir: PathBuf,
}

pub(crate) fn smtp() -> Smtp {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name}: run through infra/scripts/test.sh (it starts aiosmtpd)")
        })
    };
    Smtp {
        plain_port: var("FG_SMTP_PORT").parse().unwrap(),
        plain_maildir: var("FG_SMTP_MAILDIR").into(),
        starttls_port: var("FG_SMTP_STARTTLS_PORT").parse().unwrap(),
        smtps_port: var("FG_SMTPS_PORT").parse().unwrap(),
        user: var("FG_SMTP_USER"),
        password: var("FG_SMTP_PASSWORD"),
        ca_file: var("FG_SMTP_CA_FILE").into(),
        tls_maildir: var("FG_SMTP_TLS_MAILDIR").into(),
    }
}

pub(crate) fn fieldgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fieldgate"));
    // Only what the test gives: nothing from the developer's shell.
    c.env_clear();
    if let Ok(p) = std::env::var("PATH") {
        c.env("PATH", p);
    }
    c
}

pub(crate) struct Org {
    pub(crate) em: Emulator,
    pub(crate) base: String,
}

async fn org() -> Org {
    let em = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(em.clone().serve(listener));
    Org { em, base }
}

/// The admin's environment for a pilot.
pub(crate) fn env(cmd: &mut Command, org: &Org, reviewer: &str, hook: Option<&str>) {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sf-emulator/fixtures/dev-jwt.key"
    );
    // A pilot's mail server: STARTTLS, a login, the company's CA.
    let mail = smtp();
    cmd.env("SALESFORCE_LOGIN_URL", &org.base)
        .env("SALESFORCE_CLIENT_ID", &org.em.config().client_id)
        .env("SALESFORCE_USERNAME", DEV_USERNAME)
        .env("SALESFORCE_PRIVATE_KEY_FILE", key)
        .env(
            "FIELDGATE_SMTP_URL",
            format!(
                "smtp://{}:{}@127.0.0.1:{}",
                mail.user, mail.password, mail.starttls_port
            ),
        )
        .env("FIELDGATE_SMTP_CA_FILE", &mail.ca_file)
        .env("FIELDGATE_MAIL_FROM", "fieldgate@pilot.example.com")
        .env("FIELDGATE_REVIEWERS", reviewer);
    if let Some(url) = hook {
        cmd.env("FIELDGATE_HANDOFF_WEBHOOK_URL", url)
            .env("FIELDGATE_HANDOFF_WEBHOOK_SECRET", SECRET);
    }
}

/// Starts the command and reads its stdout up to "Press Ctrl-C" (or its
/// end, when it refused). stderr goes to `log`.
pub(crate) fn start(mut cmd: Command, log: &Path) -> (Running, Vec<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("fieldgate starts");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        let done = line.contains("Press Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    (Running(child), lines)
}

pub(crate) fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

async fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The message aiosmtpd stored for `rcpt` (its Mailbox handler adds
/// `X-RcptTo`).
fn mail_for(maildir: &Path, rcpt: &str) -> Option<String> {
    let tag = format!("X-RcptTo: {rcpt}");
    std::fs::read_dir(maildir.join("new"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .find(|m| m.contains(&tag))
}

/// The decoded body of the MIME part of type `ty` (7bit, quoted-printable
/// or base64, whichever the mailer chose).
pub(crate) fn part(raw: &str, ty: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let at = raw
        .find(&format!("Content-Type: {ty}"))
        .unwrap_or_else(|| panic!("no {ty} part in:\n{raw}"));
    let rest = &raw[at..];
    let (head, body) = rest.split_once("\n\n").unwrap();
    // Up to the next boundary: the multipart's own, since a line of the
    // body may start with "--" too (a link's token cut by a soft break).
    let boundary = raw
        .split_once("boundary=")
        .map(|(_, b)| {
            b.trim_start_matches('"')
                .split(['"', '\n', ';'])
                .next()
                .unwrap()
        })
        .unwrap_or_else(|| panic!("a multipart boundary in:\n{raw}"));
    let body = body.split(&format!("\n--{boundary}")).next().unwrap();
    let cte = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Transfer-Encoding: "))
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    match cte.as_str() {
        "base64" => {
            use base64::Engine;
            let b: String = body.split_whitespace().collect();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
        }
        "quoted-printable" => {
            let joined = body.replace("=\n", "");
            let b = joined.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (b[i], hex) {
                    (b'=', Some(v)) => {
                        out.push(v);
                        i += 3;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(out).unwrap()
        }
        _ => body.to_owned(),
    }
}

pub(crate) fn hidden(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = page.find(&key).unwrap_or_else(|| panic!("no {name}")) + key.len();
    page[at..].split('"').next().unwrap().to_owned()
}

fn reference(page: &str) -> String {
    let at = page.find("class=\"ref\">").expect("a reference") + "class=\"ref\">".len();
    page[at..at + 26].to_owned()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every POST the receiver got: (signature header, dedupe header, body).
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A webhook receiver whose first answer is a 503 (the relay must retry).
async fn receiver() -> (String, Received) {
    use axum::http::{HeaderMap, StatusCode};
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let mut list = g.lock().unwrap();
                list.push((
                    h("x-fieldgate-signature"),
                    h("x-fieldgate-dedupe-key"),
                    body.to_vec(),
                ));
                if list.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_pilot_against_an_org_with_smtp_mail_and_a_signed_webhook() {
    let maildir = smtp().tls_maildir;
    let org = org().await;
    let (hook, received) = receiver().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let wfdir = tmp.path().join("workflows");
    std::fs::create_dir(&wfdir).unwrap();
    std::fs::write(
        wfdir.join("case.toml"),
        fieldgate::workflows::FIELD_SERVICE_CASE,
    )
    .unwrap();
    let reviewer = format!("{}@pilot.example.com", unique("desk"));

    let mut cmd = fieldgate();
    cmd.args(["serve", "--port", "0", "--data"])
        .arg(&data)
        .arg("--workflows")
        .arg(&wfdir);
    env(&mut cmd, &org, &reviewer, Some(&hook));
    let log = tmp.path().join("serve.log");
    let l = log.clone();
    // Blocking reads off the runtime: the org and the receiver run on it.
    let (_run, lines) = tokio::task::spawn_blocking(move || start(cmd, &l))
        .await
        .unwrap();
    let said = || {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            lines.join("\n"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let first = lines
        .iter()
        .find(|l| l.starts_with("fieldgate serve is running at"))
        .unwrap_or_else(|| panic!("serve did not start: {}", said()));
    let base = first.rsplit(' ').next().unwrap().to_owned();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("passed: the workflow fits the org")),
        "the start-up check ran: {}",
        said()
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // No demo parts: no /dev pages, no emulator on the server.
    for path in ["/dev/outbox", "/dev/status", "/services/data/"] {
        let s = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 404, "{path}");
    }
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The sticker's link, signed with the server's keys.
    let asset = org.em.demo_assets()[0].id.clone();
    let out = fieldgate()
        .args([
            "qr",
            &asset,
            "--workflow",
            WORKFLOW,
            "--base",
            &base,
            "--data",
        ])
        .arg(&data)
        .arg("--workflows")
        .arg(&wfdir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        link.starts_with(&format!("{base}/q/{asset}.{WORKFLOW}.")),
        "{link}"
    );

    // A technician reports.
    let form = reqwest::multipart::Form::new()
        .text(
            "notes",
            "Pump 3 leaking at the shaft seal, urgent. Pressure 2.1 bar.",
        )
        .text("idem", unique("serve-idem"));
    let r = http.post(&link).multipart(form).send().await.unwrap();
    assert!(matches!(r.status().as_u16(), 200 | 201), "{}", r.status());
    let id = reference(&r.text().await.unwrap());

    // The review mail arrives at the SMTP server, with both bodies.
    let raw = poll("the review mail", || mail_for(&maildir, &reviewer)).await;
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(
        raw.contains("X-MailFrom: fieldgate@pilot.example.com"),
        "{raw}"
    );
    let text = part(&raw, "text/plain");
    let html = part(&raw, "text/html");
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{base}/r/{id}")))
        .unwrap_or_else(|| panic!("a review link for {id} in:\n{text}"))
        .to_owned();
    assert!(html.contains(&url), "the HTML body links the same review");

    // The link in the mail approves the proposal.
    let page = http.get(&url).send().await.unwrap().text().await.unwrap();
    let form = [
        ("decision", "approve".to_owned()),
        ("csrf", hidden(&page, "csrf")),
        ("revision", hidden(&page, "revision")),
    ];
    let r = http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The webhook gets the handoff, signed, after one refused attempt.
    let posts = poll("the webhook's second POST", || {
        let g = received.lock().unwrap();
        (g.len() >= 2).then(|| g.clone())
    })
    .await;
    for (sig, dedupe, body) in &posts {
        assert_eq!(sig, &expected_signature(body), "signature over the body");
        let msg: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(msg["proposal_id"], id.as_str());
        assert_eq!(
            msg["dedupe_key"],
            dedupe.as_str(),
            "the same key on every copy"
        );
        assert_eq!(msg["event"], "committed");
    }
    // A wrong secret would not verify.
    assert_ne!(posts[1].0, {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"another-secret").unwrap();
        mac.update(&posts[1].2);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    });

    // One Case in the org, carrying the proposal id.
    let cases: Vec<_> = org
        .em
        .records("Case")
        .into_iter()
        .filter(|c| c["Fieldgate_Proposal_Id__c"] == id.as_str())
        .collect();
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["AssetId"], asset.as_str());

    // The local copy of the handoff, and private files.
    let log_lines: Vec<serde_json::Value> = std::fs::read_to_string(data.join("handoff.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log_lines.len(), 1);
    assert_eq!(log_lines[0]["dedupe_key"], posts[1].1.as_str());
    #[cfg(unix)]
    {
        assert_eq!(mode(&data), 0o700);
        for f in ["fieldgate.db", "handoff.jsonl", "keys.json"] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
    }
    // Exactly two POSTs: the relay does not send again once it was heard.
    assert_eq!(received.lock().unwrap().len(), 2);
}

#[test]
fn serve_refuses_a_bad_workflow_file_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let wfdir = tmp.path().join("workflows");
    std::fs::create_dir(&wfdir).unwrap();
    std::fs::write(
        wfdir.join("a-good.toml"),
        fieldgate::workflows::FIELD_SERVICE_CASE,
    )
    .unwrap();
    // Line 4 has a key workflows do not have.
    let bad = fieldgate::workflows::FIELD_SERVICE_CASE.replacen(
        "\nobject = ",
        "\ncolour = \"red\"\nobject = ",
        1,
    );
    let line = bad.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    std::fs::write(wfdir.join("b-bad.toml"), &bad).unwrap();
    let out = fieldgate()
        .args(["serve", "--port", "0", "--data"])
        .arg(tmp.path().join("data"))
        .arg("--workflows")
        .arg(&wfdir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let at = format!("b-bad.toml:{line}: ");
    assert!(err.contains(&at), "expected {at:?} in:\n{err}");
    assert!(err.contains("unknown field `colour`"), "{err}");
    assert!(!tmp.path().join("data").exists(), "nothing was started");

    // A problem after parsing points at its line too.
    let bad = fieldgate::workflows::FIELD_SERVICE_CASE.replacen(
        "reviewers = [",
        "reviewers = [\"not-an-address\", ",
        1,
    );
    let line = bad
        .lines()
        .position(|l| l.contains("not-an-address"))
        .unwrap()
        + 1;
    std::fs::write(wfdir.join("b-bad.toml"), &bad).unwrap();
    let out = fieldgate()
        .args(["dev", "--port", "0", "--data"])
        .arg(tmp.path().join("data"))
        .arg("--workflows")
        .arg(&wfdir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let at = format!("b-bad.toml:{line}: reviewer \"not-an-address\"");
    assert!(
        err.contains(&at),
        "dev refuses too; expected {at:?} in:\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_workflow_that_does_not_fit_the_org_unless_told_to_skip() {
    let org = org().await;
    let tmp = tempfile::tempdir().unwrap();
    let wfdir = tmp.path().join("workflows");
    std::fs::create_dir(&wfdir).unwrap();
    // A field the org does not have.
    let misfit = fieldgate::workflows::FIELD_SERVICE_CASE.replacen(
        "[[fields]]",
        "[[fields]]\nname = \"Colour__c\"\nlabel = \"Colour\"\ntype = \"text\"\nmax_length = 20\n\n[[fields]]",
        1,
    );
    std::fs::write(wfdir.join("case.toml"), misfit).unwrap();
    let reviewer = format!("{}@pilot.example.com", unique("misfit"));
    let run = |skip: bool| {
        let mut cmd = fieldgate();
        cmd.args(["serve", "--port", "0", "--data"])
            .arg(tmp.path().join("data"))
            .arg("--workflows")
            .arg(&wfdir);
        if skip {
            cmd.arg("--skip-check");
        }
        env(&mut cmd, &org, &reviewer, None);
        cmd
    };
    let cmd = run(false);
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        cmd.output()
    })
    .await
    .unwrap()
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("PROBLEM  Colour__c: no such field"),
        "{stdout}"
    );
    assert!(stderr.contains("--skip-check"), "{stderr}");

    let log = tmp.path().join("skip.log");
    let cmd = run(true);
    let (_run, lines) = tokio::task::spawn_blocking(move || start(cmd, &log))
        .await
        .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("fieldgate serve is running")),
        "{lines:?}"
    );
    let err = std::fs::read_to_string(tmp.path().join("skip.log")).unwrap();
    assert!(err.contains("WARNING: --skip-check"), "{err}");
}

#[test]
fn qr_without_keys_says_so_and_makes_none() {
    let tmp = tempfile::tempdir().unwrap();
    let out = fieldgate()
        .args(["qr", "02i000000000003AAA", "--data"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no keys in"), "{err}");
    assert!(out.stdout.is_empty(), "no link printed");
    assert!(!tmp.path().join("keys.json").exists(), "no keys created");

    // An unknown workflow is named, with the known ones.
    fieldgate::compose::Keys::load_or_create(&tmp.path().join("keys.json")).unwrap();
    let out = fieldgate()
        .args(["qr", "02i000000000003AAA", "--workflow", "nope", "--data"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no workflow \"nope\" (known: field-service-case, field-service-work-order)"),
        "{err}"
    );
}

#[test]
fn every_interface_without_a_public_url_warns_that_links_point_at_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("dev.log");
    let mut cmd = fieldgate();
    cmd.args(["dev", "--host", "0.0.0.0", "--port", "0", "--data"])
        .arg(tmp.path().join("data"));
    let (_run, lines) = start(cmd, &log);
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(
        err.contains(
            "WARNING: listening on 0.0.0.0 but the printed links point at http://127.0.0.1:"
        ),
        "{err}"
    );
    assert!(err.contains("--public-url"), "{err}");
    // Every demo asset × workflow has its link in the start-up output.
    let links = lines
        .iter()
        .filter(|l| l.contains("/q/") && l.contains(WORKFLOW))
        .count();
    assert!(links >= 4, "{lines:?}");
}

/// Review mail over each kind of connection an admin configures, against
/// aiosmtpd: STARTTLS with a login, TLS from the first byte with a login,
/// and plain to a local server. A wrong password, a certificate nobody
/// trusts and a plain connection to a server that demands TLS are refused,
/// and no refusal quotes the password.
#[tokio::test]
async fn smtp_mail_goes_over_starttls_or_tls_with_a_login_and_refusals_are_clear() {
    use fieldgate::config::SmtpServer;
    use fieldgate::embedded::smtp::SmtpNotifier;
    use fieldgate::ports::{ReviewMail, ReviewNotifier};

    let s = smtp();
    let mail = |to: &str| ReviewMail {
        to: to.to_owned(),
        subject: "Review: pump leaking".into(),
        review_url: "https://fg.example.com/r/x".into(),
        text: "Open https://fg.example.com/r/x".into(),
        html: "<p><a href=\"https://fg.example.com/r/x\">Review</a></p>".into(),
        dedupe_key: None,
    };
    let server = |url: &str, ca: bool| SmtpServer {
        ca_file: ca.then(|| s.ca_file.clone()),
        ..SmtpServer::parse(url).unwrap()
    };
    let send = async |server: SmtpServer, to: &str| {
        SmtpNotifier::new(&server, "fieldgate@pilot.example.com")
            .unwrap()
            .send(&mail(to))
            .await
    };
    let login = format!("{}:{}", s.user, s.password);

    let to = format!("{}@pilot.example.com", unique("starttls"));
    let url = format!("smtp://{login}@127.0.0.1:{}", s.starttls_port);
    send(server(&url, true), &to).await.unwrap();
    assert!(
        mail_for(&s.tls_maildir, &to).is_some(),
        "STARTTLS mail stored"
    );

    let to = format!("{}@pilot.example.com", unique("smtps"));
    let url = format!("smtps://{login}@127.0.0.1:{}", s.smtps_port);
    send(server(&url, true), &to).await.unwrap();
    assert!(mail_for(&s.tls_maildir, &to).is_some(), "smtps mail stored");

    let to = format!("{}@pilot.example.com", unique("plain"));
    let url = format!("smtp://127.0.0.1:{}?tls=none", s.plain_port);
    send(server(&url, false), &to).await.unwrap();
    assert!(
        mail_for(&s.plain_maildir, &to).is_some(),
        "plain mail stored"
    );

    // Refusals: nothing stored, and the password in no message.
    let wrong = "WRONG-PASSWORD-MARKER";
    let cases = [
        (
            format!("smtp://{}:{wrong}@127.0.0.1:{}", s.user, s.starttls_port),
            true,
            "535",
        ),
        (
            format!("smtps://{login}@127.0.0.1:{}", s.smtps_port),
            false,
            "invalid peer certificate",
        ),
        (
            format!("smtp://{login}@127.0.0.1:{}", s.starttls_port),
            false,
            "invalid peer certificate",
        ),
        // The server offers no login before STARTTLS: nothing is sent.
        (
            format!("smtp://{login}@127.0.0.1:{}?tls=none", s.starttls_port),
            false,
            "No compatible authentication mechanism",
        ),
    ];
    for (url, ca, why) in cases {
        let to = format!("{}@pilot.example.com", unique("refused"));
        let err = send(server(&url, ca), &to).await.expect_err("refused");
        let text = format!("{}", fieldgate::Chain(&err));
        assert!(
            !text.contains(wrong) && !text.contains(&s.password),
            "{text}"
        );
        assert!(text.contains("sending review mail over SMTP"), "{text}");
        assert!(text.contains(why), "{url}: {text}");
        assert!(mail_for(&s.tls_maildir, &to).is_none(), "{url}: stored");
    }
}
