//! `fieldgate audit verify|export` on the data of a real `fieldgate dev`:
//! intact chains verify, and one edited event — in the store or in an
//! export — is named.

use super::crash::{Acked, approve_all, free_port, start, submit, wait_settled};
use std::process::{Command, Output};
use std::sync::Mutex;

fn fieldgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(args)
        .env_remove("FIELDGATE_TABLE")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_edited_event_in_the_store_and_in_an_export() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let dev = start(data.path(), free_port());
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(submit(&http, &dev.link, i).await.expect("acknowledged"));
    }
    wait_settled(&http, &dev.base).await;
    let acked = Mutex::new(Acked::default());
    approve_all(&http, &dev.base, &acked).await;
    assert_eq!(acked.lock().unwrap().approved.len(), 3);
    wait_settled(&http, &dev.base).await;

    // Intact, while the server runs.
    let ok = fieldgate(&["audit", "verify", "--data", dir]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("3 proposals") && text(&ok).contains("every chain is intact"),
        "{}",
        text(&ok)
    );
    let export = fieldgate(&["audit", "export", "--data", dir]);
    assert!(export.status.success(), "{}", text(&export));
    let file = data.path().join("audit.jsonl");
    std::fs::write(&file, &export.stdout).unwrap();
    let offline = fieldgate(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert!(offline.status.success(), "{}", text(&offline));
    assert!(text(&offline).contains("3 proposals"), "{}", text(&offline));
    drop(dev);

    // One event edited in the export: the approver's address.
    let edited = String::from_utf8(export.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| {
            if l.contains("\"type\":\"event\"") && l.contains("\"kind\":\"reviewer\"") {
                l.replacen("\"email\":\"", "\"email\":\"x", 1)
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&file, edited).unwrap();
    let bad = fieldgate(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert_eq!(
        text(&bad).matches("BROKEN proposal").count(),
        3,
        "{}",
        text(&bad)
    );
    assert!(text(&bad).contains("was altered"), "{}", text(&bad));

    // One event edited in the store: the second event of the first proposal.
    let db = rusqlite::Connection::open(data.path().join("fieldgate.db")).unwrap();
    let victim = ids[0].to_string();
    let doc: String = db
        .query_row(
            "SELECT doc FROM audit_events WHERE proposal_id = ?1 AND seq = 2",
            [&victim],
            |r| r.get(0),
        )
        .unwrap();
    let mut ev: serde_json::Value = serde_json::from_str(&doc).unwrap();
    ev["action"] = "nothing to see here".into();
    db.execute(
        "UPDATE audit_events SET doc = ?1 WHERE proposal_id = ?2 AND seq = 2",
        rusqlite::params![ev.to_string(), victim],
    )
    .unwrap();
    drop(db);
    let bad = fieldgate(&["audit", "verify", "--data", dir]);
    assert!(!bad.status.success());
    let out = text(&bad);
    assert!(
        out.contains(&format!("BROKEN proposal {victim} at event 2")),
        "{out}"
    );
    assert_eq!(out.matches("BROKEN").count(), 1, "{out}");
    assert!(out.contains("1 broken"), "{out}");
    // --proposal checks one: another one is intact.
    let other = fieldgate(&[
        "audit",
        "verify",
        "--data",
        dir,
        "--proposal",
        &ids[1].to_string(),
    ]);
    assert!(other.status.success(), "{}", text(&other));

    // Deleting the last event is a break too (the proposal's head says so).
    let db = rusqlite::Connection::open(data.path().join("fieldgate.db")).unwrap();
    let last = ids[2].to_string();
    db.execute(
        "DELETE FROM audit_events WHERE proposal_id = ?1 AND seq = (SELECT MAX(seq) FROM audit_events WHERE proposal_id = ?1)",
        [&last],
    )
    .unwrap();
    drop(db);
    let cut = fieldgate(&["audit", "verify", "--data", dir, "--proposal", &last]);
    assert!(!cut.status.success());
    assert!(text(&cut).contains("the log has"), "{}", text(&cut));
}

#[test]
fn an_admin_command_refuses_a_directory_without_data() {
    let empty = tempfile::tempdir().unwrap();
    let o = fieldgate(&["audit", "verify", "--data", empty.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no fieldgate data"), "{}", text(&o));
    assert!(
        !empty.path().join("fieldgate.db").exists(),
        "nothing created"
    );
}

/// `fieldgate audit admin-token`: a fresh token on each run, and the hash
/// that `FIELDGATE_ADMIN_TOKEN_HASH` takes is the token's.
#[test]
fn admin_token_prints_a_fresh_token_and_its_hash() {
    let run = || {
        let o = fieldgate(&["audit", "admin-token"]);
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        let lines: Vec<String> = out.lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 2, "token, then hash: {out}");
        (lines[0].clone(), lines[1].clone())
    };
    let (token, hash) = run();
    assert!(token.len() >= 43, "256 bits: {token}");
    let cred = fieldgate::admin::AdminCredential::from_hex(&hash).unwrap();
    assert!(cred.matches(&token));
    let (other, other_hash) = run();
    assert_ne!(
        (other.as_str(), other_hash.as_str()),
        (token.as_str(), hash.as_str())
    );
    assert!(!cred.matches(&other));
}
