//! A sticker's code after it is printed: revoked with `fieldgate qr
//! revoke` while the server runs, reissued with `fieldgate qr`, and its key
//! rotated with `fieldgate keys rotate` (the old key's codes work for the
//! grace period, then answer 410).

use super::crash::{free_port, start_with};
use fieldgate::clock::ManualClock;
use fieldgate_cli::dev::{DevOptions, DevStack};
use std::process::{Command, Output};

fn fieldgate(args: &[&str], data: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("fieldgate runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `fieldgate qr` prints one link.
fn issue(data: &std::path::Path, asset: &str, workflow: &str, base: &str) -> String {
    let out = fieldgate(&["qr", asset, "--workflow", workflow, "--base", base], data);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(http: &reqwest::Client, url: &str, idem: &str) -> (u16, String) {
    let form = reqwest::multipart::Form::new()
        .text("notes", "Pump leaking at the seal")
        .text("idem", idem.to_owned());
    let r = http.post(url).multipart(form).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `{asset}.{workflow}.…` of a scan link.
fn asset_and_workflow(link: &str) -> (String, String) {
    let code = link.split("/q/").nth(1).unwrap();
    let mut parts = code.split('.');
    (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_revoked_code_answers_410_at_once_and_its_reissue_works() {
    let data = tempfile::tempdir().unwrap();
    let dev = start_with(data.path(), free_port(), &[]);
    let http = reqwest::Client::new();
    let (asset, workflow) = asset_and_workflow(&dev.link);
    assert_eq!(get(&http, &dev.link).await.0, 200);
    // A sticker in use: with no org configured, `qr revoke` knows an asset
    // by the reports stored for it (the asset cache; a scan writes none).
    assert_eq!(post(&http, &dev.link, "revoked-code-000000").await.0, 201);
    let other = dev
        .links
        .iter()
        .find(|l| asset_and_workflow(l).0 != asset)
        .expect("a second demo asset")
        .clone();

    let out = fieldgate(
        &["qr", "revoke", &asset, "--workflow", &workflow],
        data.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("revoked the code of {asset} for {workflow}")),
        "{}",
        text(&out)
    );

    // The running server sees it on the next scan: form and report.
    let (status, page) = get(&http, &dev.link).await;
    assert_eq!(status, 410, "{page}");
    assert!(
        page.contains("withdrawn") && page.contains("new sticker"),
        "{page}"
    );
    let (status, page) = post(&http, &dev.link, "revoked-code-000001").await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("Nothing was saved"), "{page}");
    // Another sticker is untouched.
    assert_eq!(get(&http, &other).await.0, 200);
    assert_eq!(post(&http, &other, "revoked-code-000002").await.0, 201);

    // The reprint: a new code for the same asset and workflow that works.
    let fresh = issue(data.path(), &asset, &workflow, &dev.base);
    assert_ne!(fresh, dev.link);
    assert_eq!(get(&http, &fresh).await.0, 200);
    assert_eq!(post(&http, &fresh, "revoked-code-000003").await.0, 201);
    // The dev index shows the successor too.
    let (_, index) = get(&http, &format!("{}/", dev.base)).await;
    assert!(
        index.contains(&fresh) && !index.contains(&dev.link),
        "{index}"
    );
    // It is the one `qr` keeps printing, until the next revocation.
    assert_eq!(issue(data.path(), &asset, &workflow, &dev.base), fresh);
    let out = fieldgate(
        &["qr", "revoke", &asset, "--workflow", &workflow],
        data.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(get(&http, &fresh).await.0, 410);
    assert_eq!(
        get(&http, &dev.link).await.0,
        410,
        "an older code stays withdrawn"
    );

    // Unknown asset or workflow: said, nothing recorded.
    let out = fieldgate(&["qr", "revoke", "02i0000000000ZZAAA"], data.path());
    assert!(!out.status.success());
    assert!(
        text(&out).contains("asset 02i0000000000ZZAAA is unknown"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--force"), "{}", text(&out));
    let out = fieldgate(
        &["qr", "revoke", &asset, "--workflow", "no-such-flow"],
        data.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no workflow \"no-such-flow\""),
        "{}",
        text(&out)
    );
    let out = fieldgate(&["qr", "revoke", "not-an-asset"], data.path());
    assert!(text(&out).contains("not an Asset id"), "{}", text(&out));
    assert_eq!(get(&http, &other).await.0, 200);
}

#[tokio::test]
async fn after_a_rotation_old_and_new_codes_work_until_the_grace_ends() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let mut opts = DevOptions::new("127.0.0.1:0".parse().unwrap(), data.path().to_path_buf());
    opts.clock = clock.clone();
    let stack = DevStack::start(opts).await.unwrap();
    let http = reqwest::Client::new();
    let (_, _, old) = stack.links().into_iter().next().unwrap();
    assert!(old.contains(".k1."), "{old}");
    assert_eq!(get(&http, &old).await.0, 200);

    let out = fieldgate(&["keys", "rotate", "--grace", "30d"], data.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("key k2 signs new codes"),
        "{}",
        text(&out)
    );
    let (asset, workflow) = asset_and_workflow(&old);
    let new = issue(data.path(), &asset, &workflow, &stack.public_url);
    assert!(new.contains(".k2."), "{new}");

    // The running server follows the file: both work within the grace.
    clock.advance(time::Duration::days(29));
    assert_eq!(get(&http, &new).await.0, 200);
    assert_eq!(get(&http, &old).await.0, 200);
    assert_eq!(post(&http, &old, "rotated-key-000001").await.0, 201);

    // After it, the old sticker says it expired; the new one works.
    clock.advance(time::Duration::days(2));
    let (status, page) = get(&http, &old).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("This sticker has expired"), "{page}");
    assert_eq!(post(&http, &old, "rotated-key-000002").await.0, 410);
    assert_eq!(get(&http, &new).await.0, 200);
    assert_eq!(post(&http, &new, "rotated-key-000003").await.0, 201);
    // A forged code under the retired key is still just unknown.
    let forged = old.replace(&asset, "02i000000000099AAA");
    assert_eq!(get(&http, &forged).await.0, 404);
    stack.stop().await;
}
