//! `fieldgate dev --host 0.0.0.0` lets a phone reach the form, and nothing
//! else: the outbox (live review links), the index (every sticker's code)
//! and the emulated org answer only this machine unless asked.

use super::crash::{free_port, start_with};

/// This machine's address on its network (the source address of a route
/// outwards; a UDP "connect" sends nothing).
fn lan_ip() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.1:9")
        .expect("this test needs a non-loopback network interface with a default route");
    let ip = s.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

async fn status(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn on_all_interfaces_only_this_machine_reaches_the_dev_pages_and_the_org() {
    let ip = lan_ip();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let dev = start_with(data.path(), port, &["--host", "0.0.0.0"]);
    let http = reqwest::Client::new();
    let here = format!("http://127.0.0.1:{port}");
    let there = format!("http://{ip}:{port}");
    let path = dev.link.split_once("/q/").unwrap().1;
    // The technician's form works from the network.
    assert_eq!(status(&http, &format!("{there}/q/{path}")).await, 200);
    assert_eq!(status(&http, &format!("{there}/static/app.css")).await, 200);
    for p in ["/dev/outbox", "/dev/handoff", "/dev/status", "/"] {
        assert_eq!(status(&http, &format!("{here}{p}")).await, 200, "{p} here");
        assert_eq!(
            status(&http, &format!("{there}{p}")).await,
            404,
            "{p} there"
        );
    }
    // The admin page (its token printed at start): the sign-in form here,
    // nothing from the network.
    for p in ["/admin", "/admin/login", "/admin/export"] {
        let here_status = status(&http, &format!("{here}{p}")).await;
        assert!(matches!(here_status, 200 | 401), "{p} here: {here_status}");
        assert_eq!(
            status(&http, &format!("{there}{p}")).await,
            404,
            "{p} there"
        );
    }
    // The emulated org's token endpoint (its client secret is the demo's).
    let token = |base: String| {
        let http = http.clone();
        async move {
            http.post(format!("{base}/services/oauth2/token"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(token(there.clone()).await, 404);
    assert_ne!(token(here.clone()).await, 404);
    // A forged X-Forwarded-For does not make a request local.
    let forged = http
        .get(format!("{there}/dev/outbox"))
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 404);
    drop(dev);

    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let _dev = start_with(
        data.path(),
        port,
        &["--host", "0.0.0.0", "--expose-dev-pages"],
    );
    assert_eq!(
        status(&http, &format!("http://{ip}:{port}/dev/outbox")).await,
        200,
        "--expose-dev-pages serves them to the network"
    );
}
