//! Intake throughput and latency under load, measured with `wrk` against
//! the dev stack (real HTTP, SQLite store, rules structurer, emulator),
//! with N proposals already stored. Prints wrk's reports and the
//! end-to-end lifecycle rate. Needs `wrk` on PATH (Debian: `apt-get
//! install wrk`). Run (release; see BENCHMARKS.md):
//! `cargo run --release -p fieldgate-tests --bin bench-intake -- --prefill 1000`

use fieldgate::clock::Clock;
use fieldgate::domain::Status;
use fieldgate::ports::ProposalStore;
use fieldgate_tests::{Harness, hidden, jpeg};
use futures_util::StreamExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const BOUNDARY: &str = "XbOuNdArY42";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// A multipart body like the form's; `photo_bytes` > 0 adds a JPEG of
/// about that size.
fn body(photo_bytes: usize) -> Vec<u8> {
    let mut b = Vec::new();
    let mut field = |name: &str, value: &str| {
        b.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    field(
        "notes",
        "Compressor leaking oil at the rear seal, breaker tripped twice, urgent",
    );
    field("reporter", "tech@example.com");
    if photo_bytes > 0 {
        let mut photo = jpeg();
        let end = photo.split_off(photo.len() - 2);
        // A comment segment per 64 KB keeps it a well-formed JPEG.
        while photo.len() < photo_bytes {
            let n = (photo_bytes - photo.len()).min(65_000);
            photo.extend_from_slice(&[0xFF, 0xFE]);
            photo.extend_from_slice(&((n + 2) as u16).to_be_bytes());
            photo.extend(std::iter::repeat_n(b'x', n));
        }
        photo.extend(end);
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes(),
        );
        b.extend_from_slice(&photo);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

fn wrk(title: &str, url: &str, script: Option<&Path>, secs: u64) {
    println!("\n### {title}\n");
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c32", &format!("-d{secs}s"), "--latency"]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .expect("running wrk (Debian: apt-get install -y wrk)");
    assert!(out.status.success(), "wrk failed: {out:?}");
    println!("{}", String::from_utf8_lossy(&out.stdout));
}

fn post_script(dir: &Path, name: &str, body: &[u8]) -> std::path::PathBuf {
    let body_file = dir.join(format!("{name}.bin"));
    std::fs::write(&body_file, body).unwrap();
    let script = dir.join(format!("{name}.lua"));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\n\
             wrk.headers[\"Content-Type\"] = \"multipart/form-data; boundary={BOUNDARY}\"\n\
             local f = io.open(\"{}\", \"rb\")\nwrk.body = f:read(\"*all\")\nf:close()\n\
             -- Anything but 201 is a failure the summary must show.\n\
             response = function(status, headers, body)\n  if status ~= 201 then wrk.thread:stop() end\nend\n",
            body_file.display()
        ),
    )
    .unwrap();
    script
}

#[tokio::main]
async fn main() {
    let prefill = arg("--prefill", 1000);
    let secs = arg("--duration", 10);
    let lifecycle = arg("--lifecycle", 1000) as usize;
    let h = Harness::build().no_intake_limits().start().await;
    let url = h.scan_url();
    println!(
        "fieldgate intake benchmark: {prefill} proposals stored before, wrk -t2 -c32 -d{secs}s"
    );

    // Pre-fill straight through the store, in a final state so the steps
    // have nothing to do with them.
    let t = Instant::now();
    let store = h.stack.store.clone();
    futures_util::stream::iter(0..prefill)
        .for_each_concurrent(256, |_| {
            let store = store.clone();
            async move {
                let mut tr = fieldgate::conformance::received(fieldgate::clock::SystemClock.now());
                tr.proposal.status = Status::Rejected;
                store.create(&tr, None).await.unwrap();
            }
        })
        .await;
    h.stack.settled().await;
    println!(
        "pre-filled {prefill} proposals in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    wrk("GET /q/{code} (form)", &url, None, secs);
    let dir = h.dir.path();
    let plain = post_script(dir, "plain", &body(0));
    wrk("POST /q/{code} without photo", &url, Some(&plain), secs);
    h.stack.settled().await;
    let photo = post_script(dir, "photo", &body(200 * 1024));
    wrk(
        "POST /q/{code} with a 200 KB photo",
        &url,
        Some(&photo),
        secs,
    );
    let t = Instant::now();
    h.stack.settled().await;
    println!(
        "backlog of the load runs (structure + mail) drained {:.1} s after the last run",
        t.elapsed().as_secs_f64()
    );

    // The whole lifecycle: submit, structured + mailed, approved through
    // the mailed link, committed to the emulator, handed off.
    let mails_before = h.stack.outbox.mails().len();
    let handoffs_before = h.stack.handoff.messages().len();
    let started = Instant::now();
    let submit = futures_util::stream::iter(0..lifecycle).for_each_concurrent(32, |_| {
        let (http, url) = (h.http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(body(0))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    });
    let approve = async {
        // Woken by every change the store commits: a review mail is
        // recorded as sent by one.
        let mut changes = h.stack.store.watch_sequence();
        let mut next = mails_before;
        while next < mails_before + lifecycle {
            // Only the new ones: copying the whole outbox per change would
            // make the benchmark, not the server, the bottleneck.
            let new: Vec<String> = h
                .stack
                .outbox
                .since(next)
                .into_iter()
                .map(|m| m.review_url)
                .collect();
            next += new.len();
            futures_util::stream::iter(new)
                .for_each_concurrent(32, |link| {
                    let http = h.http.clone();
                    async move {
                        let page = http.get(&link).send().await.unwrap().text().await.unwrap();
                        let form = [
                            ("decision", "approve".to_owned()),
                            ("csrf", hidden(&page, "csrf")),
                            ("revision", hidden(&page, "revision")),
                        ];
                        let r = http.post(&link).form(&form).send().await.unwrap();
                        assert_eq!(r.status(), 200);
                    }
                })
                .await;
            if next < mails_before + lifecycle {
                changes.changed().await.expect("the store is open");
            }
        }
    };
    tokio::join!(submit, approve);
    // Every change handled: each approved proposal is committed and handed off.
    h.stack.settled().await;
    assert_eq!(
        h.stack.handoff.messages().len(),
        handoffs_before + lifecycle
    );
    let total = started.elapsed();
    println!(
        "\n### Lifecycle\n\n{lifecycle} proposals intake → structured → mailed → approved → committed → handoff in {:.2} s: {:.0} proposals/s end to end",
        total.as_secs_f64(),
        lifecycle as f64 / total.as_secs_f64()
    );
    assert_eq!(
        h.stack
            .store
            .list_by_status(Status::Committed, lifecycle + 1)
            .await
            .unwrap()
            .len(),
        lifecycle
    );
}
