//! Flow benchmark: N reports through the dev stack (real HTTP, embedded
//! store, rules structurer, Salesforce emulator), printing latency
//! percentiles per phase. Run: `cargo run --release -p fieldgate-tests --bin bench-flow -- 200`.

use fieldgate::domain::{ProposalId, Status};
use fieldgate::ports::ProposalStore;
use fieldgate_tests::{Harness, hidden, jpeg, reference};
use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

/// The flow settles after each step (the dispatcher has handled every
/// change), so the proposal must then be where the step leaves it.
async fn wait(h: &Harness, id: ProposalId, want: Status) {
    h.stack.settled().await;
    let p = h.stack.store.get(id).await.unwrap().unwrap();
    assert_eq!(p.status, want);
    assert!(want != Status::Committed || p.commit.handoff_published);
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let h = Harness::build().no_intake_limits().start().await;
    let (mut submit, mut to_mail, mut decide, mut to_commit) = (vec![], vec![], vec![], vec![]);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let photo = (i % 2 == 0).then(|| ("p.jpg", jpeg()));
        let (status, page) = h
            .submit(
                "Compressor leaking oil at the rear seal, breaker tripped twice, urgent",
                photo,
            )
            .await;
        assert_eq!(status, 201);
        submit.push(t.elapsed());
        let id: ProposalId = reference(&page).parse().unwrap();
        let t = Instant::now();
        wait(&h, id, Status::PendingReview).await;
        let url = h.review_url(i + 1).await;
        to_mail.push(t.elapsed());
        let t = Instant::now();
        let page = h.http.get(&url).send().await.unwrap().text().await.unwrap();
        let form = [
            ("decision", "approve".to_owned()),
            ("csrf", hidden(&page, "csrf")),
            ("revision", hidden(&page, "revision")),
        ];
        let r = h.http.post(&url).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 200);
        decide.push(t.elapsed());
        let t = Instant::now();
        wait(&h, id, Status::Committed).await;
        to_commit.push(t.elapsed());
    }
    let total = started.elapsed();
    println!("fieldgate flow benchmark: {n} reports (half with a photo), one at a time");
    println!(
        "{:<34} {:>8} {:>8} {:>8}",
        "phase", "p50 ms", "p95 ms", "max ms"
    );
    for (name, v) in [
        ("POST /q (intake, stored)", &mut submit),
        ("stream → structured + mailed", &mut to_mail),
        ("GET /r + POST /r (decide)", &mut decide),
        ("stream → committed + handoff", &mut to_commit),
    ] {
        println!(
            "{name:<34} {:>8.2} {:>8.2} {:>8.2}",
            pct(v, 0.5),
            pct(v, 0.95),
            pct(v, 1.0)
        );
    }
    println!(
        "total {:.2} s, {:.1} reports/s end to end",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    println!(
        "Salesforce API calls: {} for {n} commits ({:.2} per commit, token cached)",
        h.stack.emulator.api_calls(),
        h.stack.emulator.api_calls() as f64 / n as f64
    );
}
