//! A real `kill -9` of `fieldgate dev` during a burst of reports and
//! approvals; after a restart on the same data, every acknowledged report
//! is there exactly once and every acknowledged approval is committed to
//! the (emulated) org exactly once.

use fieldgate::domain::{ProposalId, Status};
use fieldgate::embedded::SqliteStore;
use fieldgate::ports::{Created, ProposalStore};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The reporters go on until the kill; this only bounds a runaway.
const REPORTS: usize = 5000;
/// The kill comes once this many reports and approvals were acknowledged.
const KILL_AFTER: usize = 300;
const KILL_AFTER_APPROVALS: usize = 20;
/// Reports beyond this wait for the approvals: intake outruns structuring
/// and review (which start by training the classifier), and without the
/// gate the whole burst was acknowledged before the kill.
const GATE_AT: usize = 150;

/// Kills the child even when an assertion fails.
pub(crate) struct Dev {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) link: String,
    /// Every scan link it printed (demo asset × workflow).
    pub(crate) links: Vec<String>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(data: &std::path::Path, port: u16) -> Dev {
    start_with(data, port, &[])
}

/// `fieldgate dev` on `port` with more arguments.
pub(crate) fn start_with(data: &std::path::Path, port: u16, extra: &[&str]) -> Dev {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args([
            "dev",
            "--port",
            &port.to_string(),
            "--no-intake-limits",
            "--data",
        ])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("fieldgate dev starts");
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
    let base = lines[0].rsplit(' ').next().unwrap().to_owned();
    let links: Vec<String> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().find(|w| w.contains("/q/")))
        .map(str::to_owned)
        .collect();
    let link = links
        .first()
        .unwrap_or_else(|| panic!("a scan link: {lines:?}"))
        .clone();
    Dev {
        child,
        base,
        link,
        links,
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn idem(i: usize) -> String {
    format!("crash-test-{i:06}")
}

fn reference(page: &str) -> ProposalId {
    let at = page.find("class=\"ref\">").expect("a reference") + "class=\"ref\">".len();
    page[at..at + 26].parse().unwrap()
}

fn hidden(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = page.find(&key).unwrap_or_else(|| panic!("no {name}")) + key.len();
    page[at..].split('"').next().unwrap().to_owned()
}

#[derive(Default)]
pub(crate) struct Acked {
    /// idem → proposal, for every 201/200 answer.
    pub(crate) reports: BTreeMap<String, ProposalId>,
    /// Proposals whose approval was answered 200.
    pub(crate) approved: BTreeSet<ProposalId>,
}

/// Submits report `i`; `Some(id)` only for an acknowledged one.
pub(crate) async fn submit(http: &reqwest::Client, link: &str, i: usize) -> Option<ProposalId> {
    let form = reqwest::multipart::Form::new()
        .text("notes", format!("Pump {i} leaking at the seal, urgent"))
        .text("idem", idem(i));
    let r = http.post(link).multipart(form).send().await.ok()?;
    if !matches!(r.status().as_u16(), 200 | 201) {
        return None;
    }
    Some(reference(&r.text().await.ok()?))
}

/// Approves every mailed review not yet decided, until `stop`.
pub(crate) async fn approve_all(http: &reqwest::Client, base: &str, acked: &Mutex<Acked>) {
    let Ok(r) = http.get(format!("{base}/dev/outbox")).send().await else {
        return;
    };
    let Ok(mails) = r.json::<serde_json::Value>().await else {
        return;
    };
    for m in mails.as_array().into_iter().flatten() {
        let url = m["review_url"].as_str().unwrap().to_owned();
        let id: ProposalId = url.rsplit('/').next().unwrap()[..26].parse().unwrap();
        if acked.lock().unwrap().approved.contains(&id) {
            continue;
        }
        let Ok(page) = http.get(&url).send().await else {
            return;
        };
        let Ok(page) = page.text().await else { return };
        if !page.contains("name=\"csrf\"") {
            continue; // decided already
        }
        let form = [
            ("decision", "approve".to_owned()),
            ("csrf", hidden(&page, "csrf")),
            ("revision", hidden(&page, "revision")),
        ];
        if let Ok(r) = http.post(&url).form(&form).send().await
            && r.status() == 200
        {
            acked.lock().unwrap().approved.insert(id);
        }
    }
}

pub(crate) async fn wait_settled(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s: serde_json::Value = http
            .get(format!("{base}/dev/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["settled"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "not settled: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_mid_burst_loses_no_acknowledged_report_and_commits_each_approval_once() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dev = start(data.path(), port);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // The burst: 32 reporters and an approver, until the kill.
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (http, link, acked, next) =
            (http.clone(), dev.link.clone(), acked.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                if next.load(std::sync::atomic::Ordering::SeqCst) >= GATE_AT
                    && acked.lock().unwrap().approved.len() < KILL_AFTER_APPROVALS
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= REPORTS {
                    return;
                }
                match submit(&http, &link, i).await {
                    Some(id) => {
                        acked.lock().unwrap().reports.insert(idem(i), id);
                    }
                    None => return, // the server is gone
                }
            }
        }));
    }
    let approver = {
        let (http, base, acked) = (http.clone(), dev.base.clone(), acked.clone());
        tokio::spawn(async move {
            loop {
                approve_all(&http, &base, &acked).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (reports, approved) = {
            let a = acked.lock().unwrap();
            (a.reports.len(), a.approved.len())
        };
        if reports >= KILL_AFTER && approved >= KILL_AFTER_APPROVALS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "burst too slow: {reports} {approved}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // std's kill() is SIGKILL: no shutdown code runs.
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    approver.abort();
    let _ = approver.await;
    let (reports, approved) = {
        let a = acked.lock().unwrap();
        (a.reports.clone(), a.approved.clone())
    };
    assert!(reports.len() < REPORTS, "the kill came mid-burst");

    // Restart on the same data and port (the mailed links name it).
    let dev = start(data.path(), port);
    wait_settled(&http, &dev.base).await;

    // Every approval acknowledged before the kill is one Case.
    let token: serde_json::Value = http
        .post(format!("{}/services/oauth2/token", dev.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", fieldgate_cli::dev::DEV_CLIENT_ID),
            ("client_secret", fieldgate_cli::dev::DEV_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cases: serde_json::Value = http
        .get(format!(
            "{}/services/data/v66.0/query?q=SELECT+Id,Fieldgate_Proposal_Id__c+FROM+Case",
            dev.base
        ))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut per_proposal: BTreeMap<String, usize> = BTreeMap::new();
    for c in cases["records"].as_array().unwrap() {
        *per_proposal
            .entry(c["Fieldgate_Proposal_Id__c"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for id in &approved {
        assert_eq!(
            per_proposal.get(&id.to_string()),
            Some(&1),
            "approved {id}: one Case"
        );
    }
    assert!(
        per_proposal.values().all(|&n| n == 1),
        "no proposal committed twice: {per_proposal:?}"
    );
    drop(dev);

    // The store, read after the process is gone.
    let store = SqliteStore::open(&data.path().join(fieldgate::embedded::DB_FILE)).unwrap();
    let asset = dev_asset(&reports, &store).await;
    for (key, id) in &reports {
        let p = store
            .get(*id)
            .await
            .unwrap()
            .expect("an acknowledged report is stored");
        assert_ne!(
            p.status,
            Status::Received,
            "{id} was handed to the structure step again"
        );
        // The key names that proposal, and no other was made for it.
        let again = fieldgate::conformance::received(fieldgate::domain::fixtures::at(0));
        assert_eq!(
            store
                .create(&again, Some(&format!("{asset}#{key}")))
                .await
                .unwrap(),
            Created::Existing(*id),
            "{key}"
        );
    }
    for id in &approved {
        let p = store.get(*id).await.unwrap().unwrap();
        assert_eq!(p.status, Status::Committed, "{id}");
        assert!(p.commit.handoff_published, "{id}");
    }
    let mut stored = 0;
    for s in Status::ALL {
        stored += store.list_by_status(s, 100_000).await.unwrap().len();
    }
    // Each stored proposal came from one submission: no duplicates.
    assert!(
        stored <= REPORTS,
        "{stored} proposals for {REPORTS} submissions"
    );
    assert!(stored >= reports.len());
    eprintln!(
        "crash test: {} reports and {} approvals acknowledged before the kill; {stored} stored",
        reports.len(),
        approved.len()
    );
}

/// The asset the reports were for (the idempotency keys are per asset).
async fn dev_asset(reports: &BTreeMap<String, ProposalId>, store: &SqliteStore) -> String {
    let id = reports
        .values()
        .next()
        .expect("some reports were acknowledged");
    store.get(*id).await.unwrap().unwrap().asset.id.to_string()
}
