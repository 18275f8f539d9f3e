//! The endpoint through its router, as API Gateway hands requests to the
//! Lambda: raw JSON-RPC over HTTP, each request on a freshly built router
//! (a fresh container), against the Salesforce emulator on a free port.

use super::*;
use axum::body::Body;
use fieldgate::config::Config;
use fieldgate::domain::{AssistantLimits, ProposalId};
use fieldgate::salesforce::{SalesforceClient, SalesforceConfig};
use fieldgate_sf_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Fx {
    parts: Components,
    emulator: Emulator,
    clock: Arc<fieldgate::clock::ShiftedClock>,
    _dir: tempfile::TempDir,
}

async fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(emulator.clone().serve(listener));
    let cfg = emulator.config();
    let sf = SalesforceConfig::client_credentials(&base, &cfg.client_id, &cfg.client_secret);
    let clock = fieldgate::clock::ShiftedClock::new();
    let parts = Components::new(Config {
        public_url: Some("https://fg.example".into()),
        ..Config::embedded(dir.path())
    })
    .with_clock(clock.clone())
    .with_salesforce(Arc::new(SalesforceClient::new(sf).unwrap()));
    Fx {
        parts,
        emulator,
        clock,
        _dir: dir,
    }
}

impl Fx {
    async fn token(&self, limits: AssistantLimits) -> (String, AssistantToken) {
        let (secret, rec) = AssistantToken::mint(
            "Desk bot",
            vec!["field-service-case".parse().unwrap()],
            limits,
            self.parts.clock().now(),
            &mut rand::rng(),
        );
        self.parts
            .assistants()
            .await
            .unwrap()
            .put(&rec)
            .await
            .unwrap();
        (secret, rec)
    }

    async fn client(&self) -> (String, AssistantToken) {
        let (secret, rec) = AssistantToken::mint_client(
            "Agentforce service agent",
            vec!["field-service-case".parse().unwrap()],
            AssistantLimits::default(),
            self.parts.clock().now(),
            &mut rand::rng(),
        );
        self.parts
            .assistants()
            .await
            .unwrap()
            .put(&rec)
            .await
            .unwrap();
        (secret, rec)
    }

    /// One HTTP request on a router built for it alone (a fresh container).
    async fn send(&self, req: http::Request<Body>) -> (u16, http::HeaderMap, Value) {
        let app = router(Arc::new(McpDeps::build(&self.parts).await.unwrap()));
        let resp = app.oneshot(req).await.unwrap();
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

    /// `POST /mcp/oauth/token` with this form body and Authorization.
    async fn token_request(
        &self,
        form: &str,
        auth: Option<String>,
    ) -> (u16, http::HeaderMap, Value) {
        let mut req = http::Request::post("/mcp/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "fg.example");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        self.send(req.body(Body::from(form.to_owned())).unwrap())
            .await
    }

    /// One JSON-RPC request on a router built for it alone.
    async fn rpc(
        &self,
        token: Option<&str>,
        version: &str,
        body: Value,
    ) -> (u16, http::HeaderMap, Value) {
        let app = router(Arc::new(McpDeps::build(&self.parts).await.unwrap()));
        let mut req = http::Request::post("/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("host", "fg.example")
            .header("mcp-protocol-version", version);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, v)
    }

    async fn call(&self, token: &str, tool: &str, args: Value) -> Value {
        let (status, _, v) = self
            .rpc(
                Some(token),
                "2025-06-18",
                json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                       "params": {"name": tool, "arguments": args}}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["result"].clone()
    }
}

fn initialize(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}
    }})
}

#[tokio::test]
async fn no_unknown_or_revoked_token_gets_401_with_a_bearer_challenge() {
    let fx = fx().await;
    let (secret, rec) = fx.token(AssistantLimits::default()).await;
    let (s, h, _) = fx.rpc(None, "2025-06-18", initialize("2025-06-18")).await;
    assert_eq!(s, 401);
    assert_eq!(
        h["www-authenticate"],
        "Bearer realm=\"fieldgate\", resource_metadata=\"https://fg.example/.well-known/oauth-protected-resource/mcp\""
    );
    let (s, h, body) = fx
        .rpc(Some("fgmcp_guess"), "2025-06-18", initialize("2025-06-18"))
        .await;
    assert_eq!(s, 401);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"fieldgate\", error=\"invalid_token\"")
    );
    assert_eq!(body["error"], "invalid_token");
    let (s, _, _) = fx
        .rpc(Some(&secret), "2025-06-18", initialize("2025-06-18"))
        .await;
    assert_eq!(s, 200);
    let now = fx.parts.clock().now();
    let assistants = fx.parts.assistants().await.unwrap();
    assistants.revoke(&rec.id, now).await.unwrap().unwrap();
    let (s, _, _) = fx
        .rpc(Some(&secret), "2025-06-18", initialize("2025-06-18"))
        .await;
    assert_eq!(s, 401, "revoked at once, on the next request");
}

#[tokio::test]
async fn negotiates_current_protocol_versions_with_plain_json_and_no_session() {
    let fx = fx().await;
    let (secret, _) = fx.token(AssistantLimits::default()).await;
    for version in ["2025-06-18", "2025-11-25"] {
        let (s, h, v) = fx.rpc(Some(&secret), version, initialize(version)).await;
        assert_eq!(s, 200, "{v}");
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{h:?}"
        );
        assert!(h.get("mcp-session-id").is_none(), "stateless: no session");
        assert_eq!(v["result"]["protocolVersion"], version);
        assert_eq!(v["result"]["serverInfo"]["name"], "fieldgate");
    }
    // A tool call on a router that never saw the handshake (a fresh
    // container) is served: no state is kept between requests.
    let r = fx.call(&secret, "list_workflows", json!({})).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(
        r["structuredContent"]["workflows"][0]["id"],
        "field-service-case"
    );
}

fn proposal_args(fx: &Fx, key: &str) -> Value {
    json!({
        "workflow": "field-service-case",
        "fields": {"Subject": "Boiler pressure low", "Priority": "Low"},
        "source_text": "boiler pressure low, no rush",
        "evidence": {"Subject": "boiler pressure low", "Priority": "no rush"},
        "asset_id": fx.emulator.demo_assets()[0].id,
        "idempotency_key": key,
    })
}

#[tokio::test]
async fn proposals_are_created_received_once_per_key_and_only_their_token_reads_them() {
    let fx = fx().await;
    let (secret, rec) = fx.token(AssistantLimits::default()).await;
    let (other, _) = fx.token(AssistantLimits::default()).await;
    let cases_before = fx.emulator.records("Case").len();
    let r = fx
        .call(&secret, "propose_record", proposal_args(&fx, "k-000000001"))
        .await;
    assert_eq!(r["isError"], false, "{r}");
    let id: ProposalId = r["structuredContent"]["proposal_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        r["structuredContent"]["status_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("https://fg.example/s/{id}."))
    );
    let again = fx
        .call(&secret, "propose_record", proposal_args(&fx, "k-000000001"))
        .await;
    assert_eq!(again["structuredContent"]["proposal_id"], id.to_string());
    // The same key from another assistant is its own proposal.
    let theirs = fx
        .call(&other, "propose_record", proposal_args(&fx, "k-000000001"))
        .await;
    assert_ne!(theirs["structuredContent"]["proposal_id"], id.to_string());

    let store = fx.parts.store().await.unwrap();
    let p = store.get(id).await.unwrap().unwrap();
    assert_eq!(p.status, fieldgate::domain::Status::Received);
    let a = p.intake.assistant.as_ref().unwrap();
    assert_eq!(a.token_id, rec.id);
    assert_eq!(p.intake.notes, "boiler pressure low, no rush");
    assert_eq!(p.asset.name, "Rooftop HVAC Unit 3");
    assert_eq!(
        store.events(id).await.unwrap()[0].actor.describe(),
        "assistant Desk bot"
    );
    // Nothing reached Salesforce: the proposal waits for its review.
    assert_eq!(fx.emulator.records("Case").len(), cases_before);

    let mine = fx
        .call(
            &secret,
            "get_proposal",
            json!({"proposal_id": id.to_string()}),
        )
        .await;
    assert_eq!(mine["structuredContent"]["status"], "RECEIVED", "{mine}");
    let not_theirs = fx
        .call(
            &other,
            "get_proposal",
            json!({"proposal_id": id.to_string()}),
        )
        .await;
    assert_eq!(not_theirs["isError"], true);
}

#[tokio::test]
async fn the_rate_limit_and_the_daily_cap_refuse_with_a_tool_error() {
    let fx = fx().await;
    let (secret, _) = fx
        .token(AssistantLimits {
            per_minute: 3,
            per_day: 1,
        })
        .await;
    let first = fx
        .call(&secret, "propose_record", proposal_args(&fx, "k-000000001"))
        .await;
    assert_eq!(first["isError"], false, "{first}");
    let capped = fx
        .call(&secret, "propose_record", proposal_args(&fx, "k-000000002"))
        .await;
    assert_eq!(capped["isError"], true);
    assert!(
        capped["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("at most 1 proposals per day")
    );
    let _ = fx.call(&secret, "list_workflows", json!({})).await;
    let limited = fx.call(&secret, "list_workflows", json!({})).await;
    assert_eq!(limited["isError"], true);
    assert!(
        limited["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("at most 3 tool calls per minute")
    );
}

#[tokio::test]
async fn unknown_assets_and_bad_keys_are_refused_before_anything_is_stored() {
    let fx = fx().await;
    let (secret, _) = fx.token(AssistantLimits::default()).await;
    let mut args = proposal_args(&fx, "k-000000001");
    args["asset_id"] = json!("02i00000000ZZZZAAA");
    let r = fx.call(&secret, "propose_record", args).await;
    assert_eq!(r["isError"], true);
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("find_assets")
    );
    let r = fx
        .call(&secret, "propose_record", proposal_args(&fx, "short"))
        .await;
    assert_eq!(r["isError"], true);
    let mut args = proposal_args(&fx, "k-000000001");
    args["fields"] = json!({"Description": "only a description"});
    let r = fx.call(&secret, "propose_record", args).await;
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Subject is required"),
        "{r}"
    );
    let store = fx.parts.store().await.unwrap();
    for s in fieldgate::domain::Status::ALL {
        assert!(store.list_by_status(s, 5).await.unwrap().is_empty());
    }
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[tokio::test]
async fn client_credentials_give_short_lived_access_tokens_that_mcp_accepts() {
    let fx = fx().await;
    let (secret, client) = fx.client().await;
    // HTTP Basic (RFC 6749 §2.3.1) and the form body both work.
    let (s, h, body) = fx
        .token_request(
            "grant_type=client_credentials",
            Some(basic(&client.id, &secret)),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["pragma"], "no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "mcp");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert!(!access.contains(&secret), "the secret is not in the token");
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        client.id, secret
    );
    let (s, _, body) = fx.token_request(&form, None).await;
    assert_eq!(s, 200, "{body}");

    // The access token works at /mcp, on any container (a fresh router).
    let (s, _, v) = fx
        .rpc(Some(&access), "2025-06-18", initialize("2025-06-18"))
        .await;
    assert_eq!(s, 200, "{v}");
    let r = fx.call(&access, "list_workflows", json!({})).await;
    assert_eq!(
        r["structuredContent"]["assistant"],
        "Agentforce service agent"
    );

    // The client secret itself is no bearer token.
    let (s, _, _) = fx
        .rpc(Some(&secret), "2025-06-18", initialize("2025-06-18"))
        .await;
    assert_eq!(s, 401);
    // A tampered token is refused.
    let mut forged = access.clone();
    forged.pop();
    forged.push(if access.ends_with('A') { 'B' } else { 'A' });
    let (s, h, _) = fx
        .rpc(Some(&forged), "2025-06-18", initialize("2025-06-18"))
        .await;
    assert_eq!(s, 401);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Expired after 15 minutes.
    fx.clock.advance(time::Duration::minutes(15));
    let (s, h, body) = fx
        .rpc(Some(&access), "2025-06-18", initialize("2025-06-18"))
        .await;
    assert_eq!(s, 401);
    assert!(
        h["www-authenticate"].to_str().unwrap().contains("expired"),
        "{h:?}"
    );
    assert_eq!(body["error"], "invalid_token");

    // A fresh token works until the client is revoked; then it stops at
    // once, and no new one is issued.
    let (_, _, body) = fx
        .token_request(
            "grant_type=client_credentials",
            Some(basic(&client.id, &secret)),
        )
        .await;
    let fresh = body["access_token"].as_str().unwrap().to_owned();
    let (s, _, _) = fx
        .rpc(Some(&fresh), "2025-06-18", initialize("2025-06-18"))
        .await;
    assert_eq!(s, 200);
    let now = fx.parts.clock().now();
    fx.parts
        .assistants()
        .await
        .unwrap()
        .revoke(&client.id, now)
        .await
        .unwrap()
        .unwrap();
    let (s, _, _) = fx
        .rpc(Some(&fresh), "2025-06-18", initialize("2025-06-18"))
        .await;
    assert_eq!(s, 401, "revoked client: its access tokens stop");
    let (s, _, body) = fx
        .token_request(
            "grant_type=client_credentials",
            Some(basic(&client.id, &secret)),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn the_token_endpoint_answers_rfc_6749_errors() {
    let fx = fx().await;
    let (secret, client) = fx.client().await;
    let (bearer, _) = fx.token(AssistantLimits::default()).await;
    let ok = Some(basic(&client.id, &secret));
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        // A wrong secret, another client's id, a bearer token as secret.
        (
            "grant_type=client_credentials",
            Some(basic(&client.id, "fgcs_wrong")),
            401,
            "invalid_client",
        ),
        (
            "grant_type=client_credentials",
            Some(basic("as_000000000000", &secret)),
            401,
            "invalid_client",
        ),
        (
            "grant_type=client_credentials",
            Some(basic(&client.id, &bearer)),
            401,
            "invalid_client",
        ),
        ("grant_type=client_credentials", None, 401, "invalid_client"),
        (
            "grant_type=client_credentials",
            Some("Bearer x".into()),
            401,
            "invalid_client",
        ),
        ("", ok.clone(), 400, "invalid_request"),
        (
            "grant_type=password&username=a&password=b",
            ok.clone(),
            400,
            "unsupported_grant_type",
        ),
        (
            "grant_type=client_credentials&grant_type=client_credentials",
            ok.clone(),
            400,
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&scope=admin",
            ok.clone(),
            400,
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&client_id=x&client_secret=y",
            ok.clone(),
            400,
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&client_id=x",
            None,
            400,
            "invalid_request",
        ),
    ];
    for (form, auth, status, error) in cases {
        let (s, h, body) = fx.token_request(form, auth.clone()).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (status, Some(error)),
            "{form} {auth:?}: {body}"
        );
        assert_eq!(h["cache-control"], "no-store");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.len() > 10)
        );
        if status == 401 {
            assert_eq!(h["www-authenticate"], "Basic realm=\"fieldgate\"");
        }
        assert!(!body.to_string().contains(&secret), "no secret in errors");
    }
    // The discovery documents name the token endpoint.
    let get = |path: &str| {
        http::Request::get(path)
            .header("host", "fg.example")
            .body(Body::empty())
            .unwrap()
    };
    let (s, _, meta) = fx
        .send(get("/.well-known/oauth-authorization-server"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(meta["issuer"], "https://fg.example");
    assert_eq!(meta["token_endpoint"], "https://fg.example/mcp/oauth/token");
    assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
    let (s, _, prm) = fx
        .send(get("/.well-known/oauth-protected-resource/mcp"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(prm["resource"], "https://fg.example/mcp");
    assert_eq!(prm["authorization_servers"], json!(["https://fg.example"]));
}
