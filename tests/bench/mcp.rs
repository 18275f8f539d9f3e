//! MCP benchmark: `propose_record` and `get_proposal` on `fieldgate dev`
//! (real HTTP to /mcp, bearer token checked per request, embedded store,
//! Salesforce emulator for the asset lookup), printing p50/p99 per tool,
//! one client at a time and then CONCURRENCY clients at once.
//! Run: `cargo run --release -p fieldgate-tests --bin bench-mcp -- 300 8`.

use fieldgate::domain::AssistantLimits;
use fieldgate_tests::Harness;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    /// One tools/call as a stateless Streamable HTTP client sends it.
    async fn call(&self, tool: &str, args: Value) -> Value {
        let r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": tool, "arguments": args}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["result"]["isError"], false, "{v}");
        v["result"]["structuredContent"].clone()
    }

    async fn propose(&self, asset: &str, key: &str) -> String {
        let out = self
            .call(
                "propose_record",
                json!({
                    "workflow": "field-service-case",
                    "fields": {"Subject": "Compressor leaking oil at the seal", "Priority": "High"},
                    "source_text": "The compressor on the chiller is leaking oil at the seal, urgent please.",
                    "evidence": {"Subject": "leaking oil at the seal", "Priority": "urgent"},
                    "asset_id": asset,
                    "idempotency_key": key,
                }),
            )
            .await;
        out["proposal_id"].as_str().unwrap().to_owned()
    }
}

fn report(name: &str, v: &mut [Duration]) {
    println!(
        "{name:<28} n={:<5} p50 {:>7.2} ms   p99 {:>7.2} ms",
        v.len(),
        pct(v, 0.50),
        pct(v, 0.99)
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    // Proposals are structured and mailed to review; nobody decides.
    let h = Harness::build().start().await;
    let (token, _) = fieldgate_cli::mcp::create_token(
        h.stack.assistants.as_ref(),
        &h.stack.workflows,
        "Bench assistant",
        &["field-service-case".to_owned()],
        AssistantLimits {
            per_minute: u32::MAX,
            per_day: u32::MAX,
        },
        h.stack.clock.as_ref(),
    )
    .await
    .unwrap();
    let (asset, _) = h.first_asset();
    let asset = asset.to_string();
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        url: format!("{}/mcp", h.stack.base_url),
        token,
    });
    // Warm-up: token file, asset cache, connections.
    let first = client.propose(&asset, "warm-up-0001").await;
    client
        .call("get_proposal", json!({"proposal_id": first}))
        .await;

    let (mut propose, mut get, mut ids) = (vec![], vec![], vec![]);
    for i in 0..n {
        let t = Instant::now();
        ids.push(client.propose(&asset, &format!("seq-{i:06}")).await);
        propose.push(t.elapsed());
    }
    for id in &ids {
        let t = Instant::now();
        client
            .call("get_proposal", json!({"proposal_id": id}))
            .await;
        get.push(t.elapsed());
    }
    println!("fieldgate dev, /mcp over HTTP, {n} calls per tool");
    report("propose_record (1 client)", &mut propose);
    report("get_proposal (1 client)", &mut get);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let client = client.clone();
        let asset = asset.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let (mut p, mut g) = (vec![], vec![]);
            for i in (c..n).step_by(concurrency) {
                let t = Instant::now();
                client.propose(&asset, &format!("par-{i:06}")).await;
                p.push(t.elapsed());
                let t = Instant::now();
                client
                    .call("get_proposal", json!({"proposal_id": ids[i]}))
                    .await;
                g.push(t.elapsed());
            }
            (p, g)
        }));
    }
    let (mut propose, mut get) = (vec![], vec![]);
    for t in tasks {
        let (p, g) = t.await.unwrap();
        propose.extend(p);
        get.extend(g);
    }
    let secs = started.elapsed().as_secs_f64();
    report(
        &format!("propose_record ({concurrency} clients)"),
        &mut propose,
    );
    report(&format!("get_proposal ({concurrency} clients)"), &mut get);
    println!(
        "{concurrency} clients: {:.0} tool calls/s",
        (propose.len() + get.len()) as f64 / secs
    );
    h.stack.stop().await;
}
