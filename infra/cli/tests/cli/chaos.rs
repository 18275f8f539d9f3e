//! The chaos suite (issue 14): `fieldgate serve` as a child process with
//! a standalone Salesforce emulator as its org and review mail through a
//! real SMTP server, killed with SIGKILL at random moments and restarted on
//! the same data, while the org's faults are switched over HTTP (503s,
//! latency, an exhausted API budget, answers lost after the write, an
//! outage). Technicians (some with photos) resend until acknowledged, as
//! the form's offline queue does; the reviewer approves or rejects every
//! mailed link. At the end: every report is stored once, every approved
//! proposal is one record with exactly its photo and one handoff, nothing
//! exists for a rejected one, nothing is stuck, and every chain verifies.
//!
//! `FG_CHAOS_REPORTS` (default 300) and `FG_CHAOS_SEED` size and replay a
//! run; BENCHMARKS.md has the larger one.

use crate::serve::{Org, Running, env, fieldgate, hidden, part, smtp, start, unique};
use fieldgate::domain::{ProposalId, Status};
use fieldgate::embedded::SqliteStore;
use fieldgate::ports::ProposalStore;
use fieldgate_sf_emulator::{Emulator, EmulatorConfig};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKFLOW: &str = "field-service-case";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
        .unwrap_or(default)
}

/// A 1 x 1 JPEG whose comment segment makes it this report's own.
fn photo(i: usize) -> Vec<u8> {
    let mut v = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00,
    ];
    let note = format!("report {i}");
    v.extend_from_slice(&[0xFF, 0xFE]);
    v.extend_from_slice(&((note.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(note.as_bytes());
    v.extend_from_slice(&[
        0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xD9,
    ]);
    v
}

/// The org on its own port, fault switches included.
async fn org() -> Org {
    let em = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = em.router().merge(em.fault_switches());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Org { em, base }
}

/// The server, started (again) on the same port and data.
struct Server {
    run: Running,
    log: PathBuf,
}

async fn serve(org: &Org, data: &Path, port: u16, reviewer: &str, n: usize) -> Server {
    let mut cmd = fieldgate();
    cmd.args(["serve", "--port", &port.to_string(), "--data"])
        .arg(data)
        // Technicians come through "a proxy", each with an address, as
        // behind a real one; the per-code limit is lifted for the burst.
        .args(["--trust-proxy", "--reports-per-code", "1000000"])
        // The org's exhausted budget is back within the run: a short pause
        // and frequent sweeps, so the run sees paused commits finish.
        .args(["--limit-pause", "3", "--sweep-every", "2"]);
    env(&mut cmd, org, reviewer, None);
    cmd.env("RUST_LOG", "warn");
    let log = data.parent().unwrap().join(format!("serve-{n}.log"));
    let l = log.clone();
    let (run, lines) = tokio::task::spawn_blocking(move || start(cmd, &l))
        .await
        .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("Press Ctrl-C")),
        "serve started: {lines:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    Server { run, log }
}

#[derive(Default)]
struct Seen {
    /// Report index → the proposal its acknowledgement named.
    acked: BTreeMap<usize, ProposalId>,
    /// Decisions answered 200: true = approved.
    decided: BTreeMap<ProposalId, bool>,
    /// The last refusal a technician got (for a failure's message).
    refused: Option<String>,
}

/// Every review link mailed to `reviewer` so far.
fn review_links(maildir: &Path, reviewer: &str) -> Vec<String> {
    let tag = format!("X-RcptTo: {reviewer}");
    let mut links = BTreeSet::new();
    for e in std::fs::read_dir(maildir.join("new")).unwrap().flatten() {
        let Ok(raw) = std::fs::read_to_string(e.path()) else {
            continue; // being written
        };
        if !raw.contains(&tag) {
            continue;
        }
        let text = part(&raw, "text/plain");
        if let Some(url) = text.split_whitespace().find(|w| w.contains("/r/")) {
            links.insert(url.to_owned());
        }
    }
    links.into_iter().collect()
}

fn proposal_of(url: &str) -> ProposalId {
    url.rsplit('/').next().unwrap()[..26].parse().unwrap()
}

/// Rejects about one in four, by the proposal's id (stable across resends).
fn approves(id: ProposalId) -> bool {
    !id.to_string()
        .ends_with(['0', '1', '2', '3', '4', '5', '6', '7'])
}

/// One pass over the mailed links: decides each one not yet decided.
async fn decide_mailed(http: &reqwest::Client, maildir: &Path, reviewer: &str, seen: &Mutex<Seen>) {
    for url in review_links(maildir, reviewer) {
        let id = proposal_of(&url);
        if seen.lock().unwrap().decided.contains_key(&id) {
            continue;
        }
        let Ok(r) = http.get(&url).send().await else {
            return; // the server is down: next pass
        };
        let Ok(page) = r.text().await else { return };
        if !page.contains("name=\"csrf\"") {
            continue; // decided (an answer lost in a kill) or not open yet
        }
        let approve = approves(id);
        let mut form = vec![
            (
                "decision",
                if approve { "approve" } else { "reject" }.to_owned(),
            ),
            ("csrf", hidden(&page, "csrf")),
            ("revision", hidden(&page, "revision")),
        ];
        if !approve {
            form.push(("reason", "duplicate of an open case".to_owned()));
        }
        if let Ok(r) = http.post(&url).form(&form).send().await
            && r.status() == 200
        {
            seen.lock().unwrap().decided.insert(id, approve);
        }
    }
}

/// Sends report `i` (resent by the caller until acknowledged).
async fn report(http: &reqwest::Client, link: &str, i: usize) -> Result<ProposalId, String> {
    let mut form = reqwest::multipart::Form::new()
        .text(
            "notes",
            format!("Pump {i} leaking at the shaft seal, urgent"),
        )
        .text("idem", format!("chaos-report-{i:06}"));
    if i.is_multiple_of(3) {
        form = form.part(
            "photo",
            reqwest::multipart::Part::bytes(photo(i))
                .file_name(format!("seal-{i}.jpg"))
                .mime_str("image/jpeg")
                .unwrap(),
        );
    }
    let r = http
        .post(link)
        .header(
            "x-forwarded-for",
            format!("10.0.{}.{}", i / 200, i % 200 + 1),
        )
        .multipart(form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let page = r.text().await.map_err(|e| e.to_string())?;
    if !matches!(status.as_u16(), 200 | 201) {
        return Err(format!("{status}: {page}"));
    }
    let at = page.find("class=\"ref\">").ok_or("no reference")? + "class=\"ref\">".len();
    page.get(at..at + 26)
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| format!("no reference in {page}"))
}

async fn faults(http: &reqwest::Client, org: &Org, switches: serde_json::Value) {
    let r = http
        .post(format!("{}/__emulator/faults", org.base))
        .json(&switches)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{switches}");
}

/// What a run of `phase` switches on at the org.
fn fault_phase(phase: usize) -> (&'static str, serde_json::Value) {
    use serde_json::json;
    match phase % 6 {
        0 => ("503s", json!({"fail_next": {"count": 8, "status": 503}})),
        1 => ("latency", json!({"latency_ms": 300})),
        2 => ("lost answers", json!({"drop_answers_after_write": 4})),
        3 => ("budget exhausted", json!({"exhaust_budget": true})),
        4 => ("outage", json!({"outage_ms": 20_000})),
        _ => ("none", json!({})),
    }
}

const CALM: &str = r#"{"fail_next":{"count":0,"status":503},"latency_ms":0,"exhaust_budget":false,"drop_answers_after_write":0,"outage_ms":0}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_kills_and_org_faults_lose_nothing_and_duplicate_nothing() {
    let reports = knob("FG_CHAOS_REPORTS", 300) as usize;
    let seed = knob("FG_CHAOS_SEED", rand::rng().random());
    eprintln!("chaos: {reports} reports, FG_CHAOS_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let maildir = smtp().tls_maildir;
    let org = org().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reviewer = format!("{}@pilot.example.com", unique("chaos"));
    let port = crate::crash::free_port();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let mut server = serve(&org, &data, port, &reviewer, 0).await;
    let base = format!("http://127.0.0.1:{port}");
    let out = fieldgate()
        .args(["qr", &org.em.demo_assets()[0].id, "--workflow", WORKFLOW])
        .args(["--base", &base, "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    // Technicians and the reviewer work on through every kill.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let done = Arc::new(AtomicBool::new(false));
    let next = Arc::new(Mutex::new((0..reports).collect::<Vec<usize>>()));
    let mut technicians = Vec::new();
    for _ in 0..8 {
        let (http, link, seen, next) = (http.clone(), link.clone(), seen.clone(), next.clone());
        technicians.push(tokio::spawn(async move {
            loop {
                let Some(i) = next.lock().unwrap().pop() else {
                    return;
                };
                // Paced like a crew, so reports span every kill and fault.
                tokio::time::sleep(Duration::from_millis(400)).await;
                // Offline queue: the same report, same key, until answered.
                loop {
                    match report(&http, &link, i).await {
                        Ok(id) => {
                            seen.lock().unwrap().acked.insert(i, id);
                            break;
                        }
                        Err(e) => seen.lock().unwrap().refused = Some(e),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    let reviewer_task = {
        let (http, maildir, reviewer, seen, done) = (
            http.clone(),
            maildir.clone(),
            reviewer.clone(),
            seen.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                decide_mailed(&http, &maildir, &reviewer, &seen).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Kills at random moments, each run with another fault at the org.
    let started = Instant::now();
    let mut kills = 0;
    let mut phases = Vec::new();
    while seen.lock().unwrap().acked.len() < reports || kills < 6 {
        let (name, switches) = fault_phase(kills);
        faults(&http, &org, switches).await;
        phases.push(name);
        let run_for = Duration::from_millis(rng.random_range(1_500..4_000));
        tokio::time::sleep(run_for).await;
        faults(&http, &org, serde_json::from_str(CALM).unwrap()).await;
        // std's kill() is SIGKILL: no shutdown code runs.
        server.run.0.kill().unwrap();
        server.run.0.wait().unwrap();
        kills += 1;
        server = serve(&org, &data, port, &reviewer, kills).await;
        let (acked, refused) = {
            let s = seen.lock().unwrap();
            (s.acked.len(), s.refused.clone())
        };
        assert!(
            started.elapsed() < Duration::from_secs(600) && (acked > 0 || kills < 3),
            "the run did not finish: {acked} of {reports} acknowledged; last refusal: {refused:?}"
        );
    }
    for t in technicians {
        t.await.unwrap();
    }

    // Calm from here: every mailed link gets decided and the server, with
    // its sweeps, finishes every proposal.
    // The server's database, read beside it (WAL: readers never block it).
    let s = SqliteStore::open(&data.join(fieldgate::embedded::DB_FILE)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let (statuses, stuck) = loop {
        let mut statuses: BTreeMap<ProposalId, Status> = BTreeMap::new();
        for st in Status::ALL {
            for p in s.list_by_status(st, 1_000_000).await.unwrap() {
                statuses.insert(p.id, p.status);
            }
        }
        let stuck: Vec<(ProposalId, Status)> = statuses
            .iter()
            .filter(|(_, s)| !matches!(s, Status::Committed | Status::Rejected))
            .map(|(id, s)| (*id, *s))
            .collect();
        if stuck.is_empty() || Instant::now() > deadline {
            break (statuses, stuck);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    done.store(true, Ordering::SeqCst);
    reviewer_task.await.unwrap();
    if !stuck.is_empty() {
        let links = review_links(&maildir, &reviewer);
        let mut why = Vec::new();
        for (id, st) in stuck.iter().take(5) {
            let p = s.get(*id).await.unwrap().unwrap();
            let mine: Vec<&String> = links
                .iter()
                .filter(|l| l.contains(&id.to_string()))
                .collect();
            let mut pages = Vec::new();
            for l in &mine {
                let r = http.get(*l).send().await.unwrap();
                let st = r.status();
                let t = r.text().await.unwrap();
                let h1 = t
                    .split("<h1>")
                    .nth(1)
                    .and_then(|x| x.split("</h1>").next())
                    .unwrap_or("")
                    .to_owned();
                pages.push(format!("{st} {h1}"));
            }
            why.push(format!(
                "{id} {st:?} mailed={} round={:?} commit={:?} links={mine:?} pages={pages:?}",
                p.review.mailed, p.review, p.commit
            ));
        }
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        panic!(
            "{} of {} not finished after the sweeps:\n{}\nlast server log:\n{log}",
            stuck.len(),
            statuses.len(),
            why.join("\n")
        );
    }
    drop(server);
    drop(s);

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // Every acknowledged report is stored once: one proposal per report.
    assert_eq!(seen.acked.len(), reports);
    let distinct: BTreeSet<ProposalId> = seen.acked.values().copied().collect();
    assert_eq!(distinct.len(), reports, "two reports named one proposal");
    assert_eq!(
        statuses.len(),
        reports,
        "{} proposals stored for {reports} reports",
        statuses.len()
    );
    for id in &distinct {
        assert!(statuses.contains_key(id), "{id} acknowledged, not stored");
    }
    // The reviewer's answered decisions are what happened.
    for (id, approved) in &seen.decided {
        let want = if *approved {
            Status::Committed
        } else {
            Status::Rejected
        };
        assert_eq!(statuses[id], want, "{id}");
    }

    // One Case per approved proposal, none for a rejected one; each with
    // exactly its own photo.
    let by_report: BTreeMap<ProposalId, usize> =
        seen.acked.iter().map(|(i, id)| (*id, *i)).collect();
    let cases = org.em.records("Case");
    let mut per_proposal: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &cases {
        per_proposal
            .entry(c["Fieldgate_Proposal_Id__c"].as_str().unwrap().to_owned())
            .or_default()
            .push(c["Id"].as_str().unwrap().to_owned());
    }
    let files = org.em.records("ContentVersion");
    let committed: Vec<ProposalId> = statuses
        .iter()
        .filter(|(_, s)| **s == Status::Committed)
        .map(|(id, _)| *id)
        .collect();
    for id in &committed {
        let ids = per_proposal.remove(&id.to_string()).unwrap_or_default();
        assert_eq!(ids.len(), 1, "{id}: one Case, got {ids:?}");
        let on_case = files
            .iter()
            .filter(|f| f["FirstPublishLocationId"].as_str() == Some(ids[0].as_str()))
            .count();
        let with_photo = by_report[id].is_multiple_of(3);
        assert_eq!(on_case, usize::from(with_photo), "{id}: its photos");
    }
    assert!(
        per_proposal.is_empty(),
        "records for proposals not approved: {per_proposal:?}"
    );

    // One handoff per committed proposal, from the log the relay follows.
    let handoffs = std::fs::read_to_string(data.join("handoff.jsonl")).unwrap_or_default();
    let mut handed: BTreeMap<String, usize> = BTreeMap::new();
    for line in handoffs.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *handed
            .entry(v["proposal_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for id in &committed {
        assert_eq!(handed.remove(&id.to_string()), Some(1), "{id}: one handoff");
    }
    assert!(handed.is_empty(), "handoffs of uncommitted: {handed:?}");

    // Every audit chain verifies.
    let out = fieldgate()
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let counters: serde_json::Value = http
        .get(format!("{}/__emulator/faults", org.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!(
        "chaos: {reports} reports ({} with a photo), {kills} kills, faults {phases:?}; \
         {} committed, {} rejected, {} files; org: {counters}; {:.0} s",
        reports.div_ceil(3),
        committed.len(),
        statuses.len() - committed.len(),
        files.len(),
        started.elapsed().as_secs_f64()
    );
}
