//! The commands as a user runs them: the real binary, real processes.

use crate::serve::start;
use std::process::Command;

fn fieldgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fieldgate"))
}

#[test]
fn dev_prints_working_scan_links_and_keeps_them_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("dev.log");
    let start = || {
        let mut cmd = fieldgate();
        cmd.args(["dev", "--port", "0", "--data"]).arg(data.path());
        start(cmd, &log)
    };
    let (run, lines) = start();
    let base = lines[0].rsplit(' ').next().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{lines:?}");
    let links: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().find(|w| w.contains("/q/")))
        .collect();
    assert!(links.len() >= 4, "a link per demo asset: {lines:?}");
    assert!(lines.iter().any(|l| l.contains('█')), "a QR code is drawn");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let get = |url: String| rt.block_on(async move { reqwest_status(&url).await });
    assert_eq!(get(links[0].to_owned()), 200);
    assert_eq!(get(format!("{base}/dev/outbox")), 200);
    let first_link = links[0].split("/q/").nth(1).unwrap().to_owned();
    drop(run);

    // Same data directory: the same QR codes still verify.
    let (_run, lines) = start();
    let base = lines[0].rsplit(' ').next().unwrap().to_owned();
    assert_eq!(get(format!("{base}/q/{first_link}")), 200);
}

async fn reqwest_status(url: &str) -> u16 {
    // A plain HTTP/1.1 GET over a socket keeps this test free of extra deps.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn qr_prints_a_link_the_dev_stack_accepts_and_writes_a_png() {
    let data = tempfile::tempdir().unwrap();
    // The keys a server made on its first start.
    let keys = fieldgate::compose::Keys::load_or_create(&data.path().join("keys.json")).unwrap();
    let png = data.path().join("code.png");
    let out = fieldgate()
        .args([
            "qr",
            "02i000000000003AAA",
            "--base",
            "https://fg.example.com",
            "--png",
        ])
        .arg(&png)
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        url.starts_with("https://fg.example.com/q/02i000000000003AAA.field-service-case."),
        "{url}"
    );
    let code = url.split("/q/").nth(1).unwrap();
    assert!(
        keys.qr
            .verify(code, time::OffsetDateTime::now_utc())
            .is_ok(),
        "signed with the data directory's key"
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    let bad = fieldgate()
        .args(["qr", "not-an-asset"])
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an Asset id"));
}

#[test]
fn structure_prints_fields_with_evidence() {
    let out = fieldgate()
        .args([
            "structure",
            "--text",
            "Chiller tripped on high pressure alarm, urgent. Code E42.",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fields"]["Priority"]["value"], "High");
    let evidence = v["fields"]["Subject"]["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("Chiller tripped"), "{evidence}");
    assert_eq!(v["structuring"]["structurer"], "rules");
}
