//! The Lambda path of the MCP endpoint: its router (what `lambda_http`
//! hands each API Gateway request to) backed by the DynamoDB store and the
//! DynamoDB token adapter on DynamoDB Local, with a freshly built router
//! for every request (any request may reach a fresh container: the table
//! is the only state), and the Salesforce emulator for reads.

use crate::aws;

use axum::body::Body;
use fieldgate::clock::{Clock, SystemClock};
use fieldgate::domain::{
    Actor, AssistantLimits, AssistantToken, CsrfKey, ProposalId, Status, Workflow, Workflows,
};
use fieldgate::ports::{AssistantTokens, ProposalStore, RecordWriter, StoreError};
use fieldgate::salesforce::{SalesforceAssets, SalesforceClient, SalesforceConfig};
use fieldgate_mcp::McpDeps;
use fieldgate_sf_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

struct Lambda {
    table: aws::Table,
    /// What the function's own store sends (the test's reads go around it).
    recorder: aws::Recorder,
    store: Arc<fieldgate::aws::dynamodb::DynamoStore>,
    sf: Arc<SalesforceClient>,
    emulator: Emulator,
    workflows: Arc<Workflows>,
    links: Arc<CsrfKey>,
}

impl Lambda {
    async fn start() -> Lambda {
        let config = aws::sdk().await;
        let table = aws::fresh_table(&config).await;
        let recorder = aws::Recorder::default();
        let store = recorder.store(&config, table.store.table());
        let emulator = Emulator::new(EmulatorConfig::default()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(emulator.clone().serve(listener));
        let cfg = emulator.config();
        let sf = SalesforceConfig::client_credentials(&base, &cfg.client_id, &cfg.client_secret);
        let update = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../infra/workflows/case-priority-status.toml"),
        )
        .unwrap();
        let workflows = Workflows::from_workflows(vec![
            Workflow::from_toml("a.toml", fieldgate::workflows::FIELD_SERVICE_CASE).unwrap(),
            Workflow::from_toml("b.toml", &update).unwrap(),
        ]);
        Lambda {
            table,
            recorder,
            store,
            sf: Arc::new(SalesforceClient::new(sf).unwrap()),
            emulator,
            workflows: Arc::new(workflows),
            links: Arc::new(CsrfKey::generate(&mut rand::rng())),
        }
    }

    /// What a cold container builds: new deps on the same table and keys.
    fn router(&self) -> axum::Router {
        let store = self.store.clone();
        fieldgate_mcp::router(Arc::new(McpDeps {
            store: store.clone(),
            assistants: store,
            assets: Arc::new(SalesforceAssets::new(self.sf.clone())),
            search: Arc::new(SalesforceAssets::new(self.sf.clone())),
            workflows: self.workflows.clone(),
            links: self.links.clone(),
            public_url: None,
            clock: Arc::new(SystemClock),
        }))
    }

    async fn send(&self, req: http::Request<Body>) -> (u16, http::HeaderMap, Value) {
        let resp = self.router().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn rpc(&self, token: &str, body: Value) -> (u16, Value) {
        let req = http::Request::post("/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("host", "abc123.execute-api.eu-west-1.amazonaws.com")
            .header("mcp-protocol-version", "2025-06-18")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let (s, _, v) = self.send(req).await;
        (s, v)
    }

    async fn call(&self, token: &str, tool: &str, args: Value) -> Value {
        let (s, v) = self
            .rpc(
                token,
                json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": tool, "arguments": args}}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert!(v["error"].is_null(), "{v}");
        v["result"].clone()
    }
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "lambda-path", "version": "0"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_function_runs_on_dynamodb_local_with_its_token_adapter() {
    let l = Lambda::start().await;
    let tokens: &dyn AssistantTokens = l.table.store.as_ref();
    let now = SystemClock.now();

    // The DynamoDB token adapter: put, a second put of the same hash
    // refused, lookup by hash, list.
    let (secret, rec) = AssistantToken::mint(
        "Service desk Claude",
        vec![
            "field-service-case".parse().unwrap(),
            "case-priority-status".parse().unwrap(),
        ],
        AssistantLimits::default(),
        now,
        &mut rand::rng(),
    );
    tokens.put(&rec).await.unwrap();
    assert_eq!(tokens.put(&rec).await, Err(StoreError::Conflict));
    let found = tokens
        .by_hash(&AssistantToken::hash(&secret))
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&rec));
    assert_eq!(tokens.by_hash("not-hex").await.unwrap(), None);
    let (client_secret, client) = AssistantToken::mint_client(
        "Agentforce agent",
        vec!["field-service-case".parse().unwrap()],
        AssistantLimits::default(),
        now,
        &mut rand::rng(),
    );
    tokens.put(&client).await.unwrap();
    let listed: Vec<String> = tokens
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&rec.id) && listed.contains(&client.id));

    // The protocol through a fresh router per request.
    let (s, v) = l.rpc(&secret, initialize()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["serverInfo"]["name"], "fieldgate");
    let wfs = l.call(&secret, "list_workflows", json!({})).await;
    assert_eq!(
        wfs["structuredContent"]["workflows"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let assets = l
        .call(
            &secret,
            "find_assets",
            json!({"workflow": "field-service-case", "query": "chiller"}),
        )
        .await;
    let asset = assets["structuredContent"]["assets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A proposal lands in the table, once per idempotency key (the key
    // item is DynamoDB's conditional write).
    let args = json!({
        "workflow": "field-service-case",
        "fields": {"Subject": "Chiller compressor leaking oil", "Priority": "High"},
        "source_text": "The chiller compressor is leaking oil, urgent.",
        "evidence": {"Subject": "compressor is leaking oil", "Priority": "urgent"},
        "asset_id": asset,
        "idempotency_key": "lambda-0001",
    });
    let first = l.call(&secret, "propose_record", args.clone()).await;
    assert_eq!(first["isError"], false, "{first}");
    let id = first["structuredContent"]["proposal_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status_url = first["structuredContent"]["status_url"].as_str().unwrap();
    assert!(
        status_url.starts_with("https://abc123.execute-api.eu-west-1.amazonaws.com/s/"),
        "the API's own host: {status_url}"
    );
    let again = l.call(&secret, "propose_record", args).await;
    assert_eq!(again["structuredContent"]["proposal_id"], id.as_str());
    assert_eq!(again["structuredContent"]["replayed"], true);
    let pid: ProposalId = id.parse().unwrap();
    let stored = l.table.store.get(pid).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Received);
    let events = l.table.store.events(pid).await.unwrap();
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0].actor, Actor::Assistant { token, .. } if *token == rec.id));
    let got = l
        .call(&secret, "get_proposal", json!({"proposal_id": id}))
        .await;
    assert_eq!(got["structuredContent"]["status"], "RECEIVED", "{got}");

    // An update proposal keeps its record's snapshot through the table.
    let mut case = serde_json::Map::new();
    case.insert("Subject".into(), "Chiller alarm".into());
    case.insert("Priority".into(), "Low".into());
    case.insert("AssetId".into(), asset.clone().into());
    let case_id = l.sf.create("Case", &case).await.unwrap();
    let upd = l
        .call(
            &secret,
            "propose_record",
            json!({
                "workflow": "case-priority-status",
                "record_id": case_id,
                "fields": {"Priority": "High"},
                "source_text": "The chiller alarm case is urgent now.",
                "idempotency_key": "lambda-0002",
            }),
        )
        .await;
    assert_eq!(upd["isError"], false, "{upd}");
    let uid: ProposalId = upd["structuredContent"]["proposal_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stored = l.table.store.get(uid).await.unwrap().unwrap();
    let target = stored
        .update
        .expect("the snapshot round-trips through DynamoDB");
    assert_eq!(target.record_id, case_id);
    assert_eq!(target.current["Priority"], "Low");
    assert_eq!(target.current["Status"], "New");
    assert_eq!(
        target.last_modified,
        l.emulator.record("Case", &case_id).unwrap()["LastModifiedDate"]
            .as_str()
            .unwrap()
    );

    // Client credentials: the token endpoint reads the client from the
    // table; its access token works on another fresh container.
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={client_secret}",
        client.id
    );
    let (s, _, body) = l
        .send(
            http::Request::post("/mcp/oauth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("host", "abc123.execute-api.eu-west-1.amazonaws.com")
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let (s, _) = l.rpc(&access, initialize()).await;
    assert_eq!(s, 200);

    // Revocation through the DynamoDB adapter: effective on the next request.
    let revoked = tokens
        .revoke(&rec.id, SystemClock.now())
        .await
        .unwrap()
        .unwrap();
    assert!(!revoked.is_active());
    assert!(
        !tokens
            .by_hash(&rec.token_hash)
            .await
            .unwrap()
            .unwrap()
            .is_active()
    );
    assert_eq!(
        tokens.revoke("as_nobody", SystemClock.now()).await.unwrap(),
        None
    );
    let (s, _) = l.rpc(&secret, initialize()).await;
    assert_eq!(s, 401);
    tokens
        .revoke(&client.id, SystemClock.now())
        .await
        .unwrap()
        .unwrap();
    let (s, _) = l.rpc(&access, initialize()).await;
    assert_eq!(s, 401, "a revoked client's access token stops at once");

    // Every request the function sent is one its policy in template.yaml
    // allows: proposals written as inbox items (R#), never P#.
    let sent = l.recorder.sent();
    let denied = aws::denied("McpFunction", &sent);
    assert!(
        denied.is_empty(),
        "McpFunction's policy would deny: {denied:#?}"
    );
    let writes = aws::writes(&sent);
    for p in [pid, uid] {
        assert!(
            writes.contains(&("dynamodb:PutItem", format!("R#{p}"))),
            "{writes:?}"
        );
    }
    assert!(
        writes.iter().all(|(_, pk)| !pk.starts_with("P#")),
        "the mcp function wrote a proposal item: {writes:?}"
    );
}
