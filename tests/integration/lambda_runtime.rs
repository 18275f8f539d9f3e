//! The five real function binaries, each a child process under its own
//! Lambda Runtime API (`fieldgate_tests::runtime_api`), with the
//! environment template.yaml gives it (read from the template, resolved
//! against the stand-ins), against DynamoDB Local and moto. They get the
//! events the services send: API Gateway HTTP API 2.0 payloads, DynamoDB
//! stream batches read from DynamoDB Local's own stream in Lambda's record
//! shape and filtered by the template's `FilterCriteria`, and EventBridge's
//! scheduled event.
//!
//! How the binaries are found: `tests/Cargo.toml` declares each function's
//! `main.rs` a binary of this package too (`lambda-<function>`). Cargo
//! builds a package's binaries before its integration tests and tells them
//! where they are (`CARGO_BIN_EXE_*`), so `cargo test --workspace` (or
//! `-p fieldgate-tests`) always runs freshly built ones. A binary of
//! another package is neither built by `cargo test` nor locatable without
//! guessing, and a stale one would pass for the current code.

use crate::aws;
use crate::aws_pipeline::{Moto, PUBLIC, SENDER, moto, receive_all};
use fieldgate::clock::{SystemClock, new_proposal_id};
use fieldgate::compose::Keys;
use fieldgate::domain::{
    AssetContext, AssistantLimits, AssistantToken, Clock, Intake, Proposal, ProposalId, Status,
};
use fieldgate::ports::{AssistantTokens, ProposalStore};
use fieldgate_sf_emulator::{DEFAULT_CLIENT_ID, Emulator, EmulatorConfig};
use fieldgate_tests::events::{HttpApiRequest, HttpApiResponse, multipart, scheduled_event};
use fieldgate_tests::runtime_api::LambdaProcess;
use fieldgate_tests::streams::{StreamFeed, matches};
use fieldgate_tests::template;
use fieldgate_tests::{approve_form, jpeg};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

/// (template resource, binary) of each function.
const FUNCTIONS: [(&str, &str); 5] = [
    ("QrIntakeFunction", env!("CARGO_BIN_EXE_lambda-qr-intake")),
    ("StructureFunction", env!("CARGO_BIN_EXE_lambda-structure")),
    ("ApprovalFunction", env!("CARGO_BIN_EXE_lambda-approval")),
    ("CommitFunction", env!("CARGO_BIN_EXE_lambda-commit")),
    ("McpFunction", env!("CARGO_BIN_EXE_lambda-mcp")),
];

/// The values the template's `!Ref`s and conditions take here.
struct Wiring {
    refs: HashMap<&'static str, String>,
    conditions: HashMap<&'static str, bool>,
}

impl Wiring {
    fn new(table: &str, m: &Moto, sf_url: &str) -> Wiring {
        let refs = [
            ("Table", table.to_owned()),
            ("PhotoBucket", m.bucket.clone()),
            ("HandoffTopic", m.topic_arn.clone()),
            ("SalesforceSecret", m.sf_secret_arn.clone()),
            ("SalesforceReadSecret", m.sf_read_secret_arn.clone()),
            ("SalesforceReadClientId", String::new()),
            ("SalesforceReadUsername", String::new()),
            ("KeysSecret", m.keys_secret_arn.clone()),
            ("SalesforceLoginUrl", sf_url.to_owned()),
            ("SalesforceApiVersion", "66.0".to_owned()),
            ("SalesforceClientId", DEFAULT_CLIENT_ID.to_owned()),
            ("SalesforceUsername", String::new()),
            ("MailFrom", SENDER.to_owned()),
            ("ReviewerEmails", String::new()),
            ("SesConfigurationSet", String::new()),
            ("PublicUrl", PUBLIC.to_owned()),
            ("LogLevel", "info".to_owned()),
            ("AdminTokenHash", String::new()),
        ]
        .into_iter()
        .collect();
        let conditions = [
            ("HasPublicUrl", true),
            ("HasConfigurationSet", false),
            ("HasReadClientId", false),
            // The parameter's default: no admin page.
            ("AdminEnabled", false),
        ]
        .into_iter()
        .collect();
        Wiring { refs, conditions }
    }

    /// The template's variables for `resource`, plus what a sandbox gets
    /// from its role and region (here: the stand-ins' endpoints and fake
    /// credentials) and moto's path-style S3.
    fn env(&self, resource: &str) -> BTreeMap<String, String> {
        let mut env = template::environment(resource, &self.refs, &self.conditions);
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_DYNAMODB",
        ] {
            env.insert(var.into(), aws::need(var));
        }
        env.insert("AWS_DEFAULT_REGION".into(), aws::need("AWS_REGION"));
        env.insert("AWS_SESSION_TOKEN".into(), "test-session".into());
        env.insert("FIELDGATE_S3_PATH_STYLE".into(), "1".into());
        env
    }
}

async fn start(resource: &str, exe: &str, env: &BTreeMap<String, String>) -> LambdaProcess {
    let timeout = Duration::from_secs(template::timeout_seconds(resource));
    LambdaProcess::start(resource, Path::new(exe), env, timeout).await
}

async fn http(f: &LambdaProcess, req: HttpApiRequest<'_>) -> HttpApiResponse {
    HttpApiResponse::parse(&f.invoke(&req.event()).await.json())
}

fn sequence(r: &Value) -> String {
    r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned()
}

fn pk(r: &Value) -> String {
    r["dynamodb"]["Keys"]["PK"]["S"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Hands the matching records of the stream to a stream function in
/// batches of at most `BatchSize` until `done`, each batch answered without
/// failures; returns the batches' answers.
async fn drive(
    feed: &mut StreamFeed,
    f: &LambdaProcess,
    filter: &Value,
    done: impl AsyncFn() -> bool,
) {
    for _ in 0..50 {
        if done().await {
            return;
        }
        // Poll the stream as the mapping does, until there is a record.
        let records = feed
            .next_matching(
                filter,
                format!(
                    "no stream record for {} while its work is unfinished",
                    f.name
                ),
            )
            .await;
        for batch in records.chunks(5) {
            let resp = f.invoke(&json!({ "Records": batch })).await.json();
            assert_eq!(
                resp["batchItemFailures"],
                json!([]),
                "{} failed a record; its log:\n{}",
                f.name,
                f.logs()
            );
        }
    }
    panic!("{} did not finish the proposal", f.name);
}

async fn proposal(store: &dyn ProposalStore, id: ProposalId) -> Proposal {
    store.get(id).await.unwrap().expect("the proposal exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_five_binaries_run_the_whole_flow_as_lambdas() {
    let sdk = aws::sdk().await;
    let table = aws::fresh_table(&sdk).await;
    let keys = Keys::generate();
    let m = moto(&sdk, &keys).await;
    let emulator = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sf_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(emulator.clone().serve(listener));
    let mut wiring = Wiring::new(table.store.table(), &m, &sf_url);

    // Every function starts with its template environment; nothing but
    // the stand-ins' endpoints is added.
    let mut fns = HashMap::new();
    for (resource, exe) in FUNCTIONS {
        let env = wiring.env(resource);
        assert_eq!(env["FIELDGATE_TABLE"], table.store.table());
        fns.insert(resource, start(resource, exe, &env).await);
    }
    // The public functions look assets up as the read-only integration
    // user; only commit holds the credential that writes.
    for public in ["QrIntakeFunction", "McpFunction"] {
        assert_eq!(
            wiring.env(public)["SALESFORCE_SECRET_ARN"],
            m.sf_read_secret_arn,
            "{public}"
        );
    }
    assert_eq!(
        wiring.env("CommitFunction")["SALESFORCE_SECRET_ARN"],
        m.sf_secret_arn
    );
    let intake = &fns["QrIntakeFunction"];
    let structure = &fns["StructureFunction"];
    let approval = &fns["ApprovalFunction"];
    let commit = &fns["CommitFunction"];
    let mcp = &fns["McpFunction"];
    let store = table.store.clone();

    // 1. The technician scans: the form, with the asset from Salesforce.
    let asset = emulator.demo_assets()[0].clone();
    let code = keys.qr.sign(
        &asset.id.parse().unwrap(),
        &"field-service-case".parse().unwrap(),
    );
    let path = format!("/q/{code}");
    let form = http(intake, HttpApiRequest::get("ANY /q/{code}", &path)).await;
    assert_eq!(form.status, 200, "{}", form.text());
    assert!(
        form.text().contains(&asset.name),
        "asset read from Salesforce"
    );
    assert!(
        form.header("strict-transport-security").is_some(),
        "HSTS, as the template sets it: {:?}",
        form.headers
    );

    // 2. Submits notes and a photo (multipart, base64 as API Gateway sends
    // binary bodies).
    let photo = jpeg();
    let idem = new_proposal_id(SystemClock.now()).to_string();
    // The idempotency key in the notes tells this run's mail from others
    // in a moto that served earlier runs.
    let notes = format!("Compressor trips on high pressure, urgent, oil under the unit ({idem})");
    let (content_type, body) = multipart(&[
        ("notes", None, notes.as_bytes()),
        ("photo", Some(("unit.jpg", "image/jpeg")), &photo),
        ("reporter", None, b"tech@example.com"),
        ("idem", None, idem.as_bytes()),
    ]);
    let done = http(
        intake,
        HttpApiRequest::post("ANY /q/{code}", &path, &content_type, &body),
    )
    .await;
    assert_eq!(done.status, 201, "{}", done.text());
    let received = store.list_by_status(Status::Received, 10).await.unwrap();
    assert_eq!(received.len(), 1);
    let id = received[0].id;
    let photo_key = received[0]
        .intake
        .photos
        .first()
        .cloned()
        .expect("photo kept")
        .key;
    let head =
        m.s3.head_object()
            .bucket(&m.bucket)
            .key(&photo_key)
            .send()
            .await
            .expect("the photo is in S3");
    assert_eq!(head.content_length(), Some(photo.len() as i64));

    // A proposal of a workflow this deployment no longer has, written
    // after it: the structure step cannot do it, so its record fails.
    let now = SystemClock.now();
    let stray = Proposal::receive(
        new_proposal_id(now),
        "retired-workflow".parse().unwrap(),
        AssetContext {
            id: asset.id.parse().unwrap(),
            name: asset.name.clone(),
            serial_number: None,
            account_id: None,
            account_name: None,
            location: None,
        },
        Intake {
            notes: "left over".into(),
            reporter: None,
            photos: vec![],
            received_at: now,
            assistant: None,
        },
        now,
    );
    store.create(&stray, None).await.unwrap();

    // 3. The stream batch as the event-source mapping delivers it: both
    // RECEIVED records, and only the failing one reported back.
    let mut feed = StreamFeed::new(&aws::need("AWS_ENDPOINT_URL_DYNAMODB"), &table.stream_arn);
    let filter = template::stream_filter("StructureFunction");
    let batch: Vec<Value> = feed
        .read()
        .await
        .into_iter()
        .filter(|r| matches(&filter, r))
        .collect();
    assert_eq!(
        batch.iter().map(pk).collect::<Vec<_>>(),
        [format!("R#{id}"), format!("R#{}", stray.proposal.id)],
        "the filter keeps the two new inbox items, nothing else"
    );
    assert_eq!(batch[0]["eventSource"], "aws:dynamodb");
    assert_eq!(batch[0]["eventName"], "INSERT");
    let answer = structure.invoke(&json!({ "Records": batch })).await.json();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": sequence(&batch[1])}]}),
        "only the stray record failed; log:\n{}",
        structure.logs()
    );
    let p = proposal(store.as_ref(), id).await;
    assert_eq!(p.status, Status::PendingReview);
    assert!(p.review.mailed, "the review mail went out");
    assert_eq!(
        proposal(store.as_ref(), stray.proposal.id).await.status,
        Status::Received
    );

    // 4. One review mail in SES (moto), with the link.
    let state = aws::moto_state().await;
    let mails: Vec<&Value> = state["ses"]["Message"]
        .as_array()
        .expect("moto keeps sent mail")
        .iter()
        .filter(|mail| mail["source"] == SENDER)
        .filter(|mail| mail["body"].as_str().is_some_and(|b| b.contains(&idem)))
        .filter(|mail| mail["destinations"]["ToAddresses"][0] == "service-desk@example.com")
        .collect();
    assert_eq!(mails.len(), 1, "one review mail: {mails:#?}");
    let link = regex::Regex::new(r#"https://fg\.example(/r/[A-Za-z0-9._~-]+)"#)
        .unwrap()
        .captures(mails[0]["body"].as_str().unwrap())
        .expect("a review link in the mail")[1]
        .to_owned();

    // 5. The reviewer opens the page (and its photo, from S3), approves.
    let page = http(approval, HttpApiRequest::get("ANY /r/{token}", &link)).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.text();
    // AdminTokenHash left at its default: the function has no /admin.
    for (route, path) in [
        ("ANY /admin", "/admin"),
        ("ANY /admin/{proxy+}", "/admin/login"),
    ] {
        let admin = http(approval, HttpApiRequest::get(route, path)).await;
        assert_eq!(admin.status, 404, "{path}: {}", admin.text());
    }
    let photo_path = format!("{link}/photo");
    let shown = http(
        approval,
        HttpApiRequest::get("GET /r/{token}/photo", &photo_path),
    )
    .await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body, photo, "the photo, byte for byte");
    let decision = approve_form(&page, "Compressor trips on high pressure");
    let decided = http(
        approval,
        HttpApiRequest::post(
            "ANY /r/{token}",
            &link,
            "application/x-www-form-urlencoded",
            decision.as_bytes(),
        ),
    )
    .await;
    assert_eq!(decided.status, 200, "{}", decided.text());
    assert_eq!(proposal(store.as_ref(), id).await.status, Status::Approved);

    // 6. The commit function on its stream (its own writes come back to
    // it, as in AWS) until the Case and the handoff are done.
    let filter = template::stream_filter("CommitFunction");
    drive(&mut feed, commit, &filter, async || {
        let p = proposal(store.as_ref(), id).await;
        p.status == Status::Committed && p.commit.handoff_published
    })
    .await;
    let case_id = proposal(store.as_ref(), id).await.commit.record_id.unwrap();
    let cases = emulator.records("Case");
    assert_eq!(cases.len(), 1, "exactly one Case");
    assert_eq!(cases[0]["Id"], case_id.as_str());
    assert_eq!(cases[0]["Fieldgate_Proposal_Id__c"], id.to_string());
    assert_eq!(
        emulator.content_versions_linked_to(&case_id).len(),
        1,
        "the photo went from S3 to the Case"
    );

    // 7. One SNS message, to the subscriber whose filter wants it.
    let msgs = receive_all(&m.sqs, &m.queue_url).await;
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    let handoff: Value = serde_json::from_str(msgs[0].body().unwrap()).unwrap();
    assert_eq!(handoff["proposal_id"], id.to_string());
    assert_eq!(handoff["salesforce_id"], case_id.as_str());
    assert!(receive_all(&m.sqs, &m.other_queue_url).await.is_empty());

    // 8. The schedules: both sweeps run on EventBridge's event. The stray
    // proposal is too young to be re-driven (waiting); nothing is left to
    // commit.
    let swept = structure
        .invoke(&scheduled_event("fieldgate-StructureSweep"))
        .await
        .json();
    assert_eq!(
        swept,
        json!({"redriven": 0, "waiting": 1, "failed": 0, "reminded": 0, "escalated": 0, "nudges_failed": 0})
    );
    let swept = commit
        .invoke(&scheduled_event("fieldgate-CommitSweep"))
        .await
        .json();
    assert_eq!(swept["expired"], 0, "{swept}");
    assert_eq!(swept["commit"]["redriven"], 0, "{swept}");

    // 9. MCP: an assistant's bearer token (a T# item of the table) lists
    // the tools; without one, 401.
    let (secret, token) = AssistantToken::mint(
        "Desk bot",
        vec!["field-service-case".parse().unwrap()],
        AssistantLimits::default(),
        SystemClock.now(),
        &mut rand::rng(),
    );
    AssistantTokens::put(store.as_ref(), &token).await.unwrap();
    let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).to_string();
    let call = |bearer: Option<String>| {
        let mut r = HttpApiRequest::post("ANY /mcp", "/mcp", "application/json", rpc.as_bytes())
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(b) = bearer {
            r = r.header("authorization", format!("Bearer {b}"));
        }
        r.event()
    };
    let refused = HttpApiResponse::parse(&mcp.invoke(&call(None)).await.json());
    assert_eq!(refused.status, 401);
    let listed = HttpApiResponse::parse(&mcp.invoke(&call(Some(secret.clone()))).await.json());
    assert_eq!(listed.status, 200, "{}", listed.text());
    let tools: Value = serde_json::from_slice(&listed.body).unwrap();
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"propose_record"), "{names:?}");
    // The first tool that reaches Salesforce reads its credential from
    // Secrets Manager then (not at start) and finds the asset.
    let find = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "find_assets",
        "arguments": {"workflow": "field-service-case", "query": asset.name.clone()},
    }})
    .to_string();
    let found = HttpApiResponse::parse(
        &mcp.invoke(
            &HttpApiRequest::post("ANY /mcp", "/mcp", "application/json", find.as_bytes())
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-06-18")
                .header("authorization", format!("Bearer {secret}"))
                .event(),
        )
        .await
        .json(),
    );
    assert_eq!(found.status, 200, "{}", found.text());
    let found: Value = serde_json::from_slice(&found.body).unwrap();
    assert_eq!(
        found["result"]["structuredContent"]["assets"][0]["id"], asset.id,
        "{found}"
    );

    // 10. With AdminTokenHash set, the approval function serves /admin
    // over the table (events by P# key, the list by the status index).
    // API Gateway carries cookies in `cookies`, not in the headers.
    let (admin_token, cred) = fieldgate::admin::AdminCredential::generate(&mut rand::rng());
    wiring.refs.insert("AdminTokenHash", cred.to_hex());
    wiring.conditions.insert("AdminEnabled", true);
    let admin_env = wiring.env("ApprovalFunction");
    assert_eq!(admin_env["FIELDGATE_ADMIN_TOKEN_HASH"], cred.to_hex());
    let admin = start(
        "ApprovalFunction",
        env!("CARGO_BIN_EXE_lambda-approval"),
        &admin_env,
    )
    .await;
    let form = serde_urlencoded::to_string([("token", admin_token.as_str())]).unwrap();
    let signed = admin
        .invoke(
            &HttpApiRequest::post(
                "ANY /admin/{proxy+}",
                "/admin/login",
                "application/x-www-form-urlencoded",
                form.as_bytes(),
            )
            .event(),
        )
        .await
        .json();
    assert_eq!(signed["statusCode"], 303, "{signed:#}");
    let cookie = signed["cookies"][0].as_str().expect("a session cookie");
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let signed_in = async |route: &str, path: &str| {
        let mut ev = HttpApiRequest::get(route, path).event();
        ev["cookies"] = json!([session]);
        HttpApiResponse::parse(&admin.invoke(&ev).await.json())
    };
    let listed = signed_in("ANY /admin", "/admin?status=COMMITTED").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(listed.text().contains(&id.to_string()), "{}", listed.text());
    let timeline = signed_in("ANY /admin/{proxy+}", &format!("/admin/p/{id}")).await;
    assert_eq!(timeline.status, 200, "{}", timeline.text());
    assert!(
        timeline.text().contains("Audit chain verified"),
        "{}",
        timeline.text()
    );
    let export = signed_in(
        "ANY /admin/{proxy+}",
        &format!("/admin/export?proposal={id}"),
    )
    .await;
    assert_eq!(export.status, 200);
    let report = fieldgate_cli::audit::verify_file(export.body.as_slice()).unwrap();
    assert_eq!((report.proposals, report.breaks.len()), (1, 0));
    let none = HttpApiResponse::parse(
        &admin
            .invoke(&HttpApiRequest::get("ANY /admin", "/admin").event())
            .await
            .json(),
    );
    assert_eq!(none.status, 401, "no cookie, no list");
    assert!(!none.text().contains(&id.to_string()));
    assert_eq!(admin.api.violations(), Vec::<String>::new());

    // Every function kept to the Runtime API's protocol and none failed
    // to start.
    for f in fns.values() {
        assert_eq!(f.api.violations(), Vec::<String>::new(), "{}", f.name);
        assert_eq!(f.api.init_error(), None, "{}", f.name);
    }
}

/// A secret that cannot be read at start: the function reports it on
/// `/runtime/init/error`, naming the variable and never the secret's
/// content, and exits (Lambda then shows the reason, not a crash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_unreadable_at_start_is_reported_as_an_init_error() {
    let sdk = aws::sdk().await;
    let table = aws::fresh_table(&sdk).await;
    let keys = Keys::generate();
    let m = moto(&sdk, &keys).await;
    let mut wiring = Wiring::new(table.store.table(), &m, "http://127.0.0.1:9");

    // A secret that does not exist.
    wiring.refs.insert(
        "KeysSecret",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:fg-missing-AbCdEf".into(),
    );
    let f = start(
        "ApprovalFunction",
        FUNCTIONS[2].1,
        &wiring.env("ApprovalFunction"),
    )
    .await;
    let seen = f.api.wait_init_error().await;
    assert!(!f.exit_status().await.success());
    assert_eq!(seen.error_type.as_deref(), Some("Fieldgate.InitError"));
    let msg = seen.body["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("FIELDGATE_KEYS_SECRET_ARN") && msg.contains("GetSecretValue"),
        "{msg}"
    );
    assert_eq!(seen.body["errorType"], "Fieldgate.InitError");

    // A secret that exists but is not a keys document: the message names
    // it and quotes nothing of it.
    let marker = "MARKER-5e1c";
    let bad = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(format!("fg-bad-keys-{}", table.store.table()))
        .secret_string(format!("{{\"qr\": \"{marker}\""))
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    wiring.refs.insert("KeysSecret", bad);
    let f = start(
        "QrIntakeFunction",
        FUNCTIONS[0].1,
        &wiring.env("QrIntakeFunction"),
    )
    .await;
    let seen = f.api.wait_init_error().await;
    assert!(!f.exit_status().await.success());
    let msg = seen.body.to_string();
    assert!(msg.contains("FIELDGATE_KEYS_SECRET_ARN"), "{msg}");
    assert!(!msg.contains(marker), "quoted the secret: {msg}");
    assert!(
        !f.logs().contains(marker),
        "logged the secret: {}",
        f.logs()
    );
}
