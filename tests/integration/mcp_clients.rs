//! The MCP endpoint checked by clients nobody here wrote: the official
//! Python SDK (`mcp`, PyPI, in `$FG_ROOT/.venv`) and the official
//! TypeScript SDK (`@modelcontextprotocol/sdk`, npm, under `.stack/`), both
//! installed by `infra/scripts/setup.d/50-mcp-clients.sh`, connect over
//! Streamable HTTP with a bearer token to a `fieldgate dev` started here.
//! The scripts are `tests/thirdparty/mcp_*_client.*`. A missing client is
//! a loud failure, never a skip.
//!
//! Each client lists the tools, reads the workflows, finds an asset and
//! proposes a Case; the review link from the outbox is approved with an
//! edit; `get_proposal` then reports the decision, the edit and the
//! Salesforce id, and the emulator holds exactly that one new Case. The
//! refusals go through the same clients.

use fieldgate::domain::{AssistantLimits, ProposalId, Status, Workflow, Workflows};
use fieldgate::ports::ProposalStore;
use fieldgate_tests::*;
use serde_json::Value;
use std::path::PathBuf;

fn repo() -> PathBuf {
    std::env::var_os("FG_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .to_path_buf()
        })
}

#[derive(Clone, Copy, Debug)]
enum Sdk {
    Python,
    TypeScript,
}

/// Runs the client script; its last stdout line is one JSON value.
async fn run(sdk: Sdk, args: &[&str]) -> Value {
    let root = repo();
    let mut cmd = match sdk {
        Sdk::Python => {
            let python = root.join(".venv/bin/python");
            assert!(
                python.exists(),
                "{} is missing: run infra/scripts/test.sh (setup.d/50-mcp-clients.sh installs the MCP SDKs)",
                python.display()
            );
            let mut c = std::process::Command::new(python);
            c.arg(root.join("tests/thirdparty/mcp_python_client.py"));
            c
        }
        Sdk::TypeScript => {
            let modules = std::env::var_os("FG_MCP_NODE_MODULES")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".stack/mcp-node/node_modules"));
            assert!(
                modules
                    .join("@modelcontextprotocol/sdk/package.json")
                    .exists(),
                "the TypeScript MCP SDK is missing under {}: run infra/scripts/test.sh (setup.d/50-mcp-clients.sh)",
                modules.display()
            );
            let mut c = std::process::Command::new("node");
            c.arg(root.join("tests/thirdparty/mcp_ts_client.mjs"))
                .env("FG_MCP_NODE_MODULES", modules);
            c
        }
    };
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{sdk:?} client does not run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{sdk:?} client failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{sdk:?} client printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// The built-in workflow, and a second one the test token may not use.
fn workflows() -> Workflows {
    let base = fieldgate::workflows::FIELD_SERVICE_CASE;
    let other = base
        .replace(
            "id = \"field-service-case\"",
            "id = \"priority-escalation\"",
        )
        .replace("name = \"Field service case\"", "name = \"Escalation\"");
    Workflows::from_workflows(vec![
        Workflow::from_toml("field-service-case.toml", base).unwrap(),
        Workflow::from_toml("priority-escalation.toml", &other).unwrap(),
    ])
}

/// A token minted through the code the CLI uses.
async fn token(h: &Harness, name: &str, limits: AssistantLimits) -> (String, String) {
    let (secret, record) = fieldgate_cli::mcp::create_token(
        h.stack.assistants.as_ref(),
        &h.stack.workflows,
        name,
        &["field-service-case".to_owned()],
        limits,
        h.stack.clock.as_ref(),
    )
    .await
    .unwrap();
    (secret, record.id)
}

fn text(v: &Value) -> &str {
    v["text"].as_str().unwrap_or_default()
}

fn refused(v: &Value, says: &[&str]) {
    assert_eq!(v["is_error"], true, "not refused: {v}");
    for s in says {
        assert!(
            text(v).contains(s),
            "refusal does not say {s:?}: {}",
            text(v)
        );
    }
}

async fn governed_flow(sdk: Sdk) {
    let h = Harness::build().workflows(workflows()).start().await;
    let accounts_before = h.stack.emulator.records("Account").len();
    let cases_before = h.cases().len();
    let (secret, _) = token(&h, "Service desk Claude", AssistantLimits::default()).await;
    let url = format!("{}/mcp", h.stack.base_url);
    let key = format!("key-{sdk:?}-0001");

    let out = run(sdk, &["flow", &url, &secret, "chiller", &key]).await;

    // The handshake and the tools, with their annotations.
    assert_eq!(out["server"], "fieldgate", "{out}");
    if matches!(sdk, Sdk::Python) {
        assert_eq!(out["protocol_version"], "2025-11-25");
    }
    let tools = out["tools"].as_object().unwrap();
    let mut names: Vec<&str> = tools.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "find_assets",
            "get_proposal",
            "list_workflows",
            "propose_record"
        ]
    );
    for read in ["list_workflows", "find_assets", "get_proposal"] {
        assert_eq!(tools[read]["read_only"], true, "{read}");
    }
    assert_eq!(tools["propose_record"]["read_only"], false);
    assert_eq!(tools["propose_record"]["destructive"], false);
    assert_eq!(tools["propose_record"]["idempotent"], true);
    assert!(tools.values().all(|t| t["described"] == true));
    let required = &tools["propose_record"]["input_schema"]["required"];
    for f in ["workflow", "fields", "source_text", "idempotency_key"] {
        assert!(
            required.as_array().unwrap().iter().any(|r| r == f),
            "{f} not required: {required}"
        );
    }

    // Only the workflow this token may use, with its fields.
    let wfs = out["workflows"]["data"]["workflows"].as_array().unwrap();
    assert_eq!(wfs.len(), 1, "{wfs:?}");
    assert_eq!(wfs[0]["id"], "field-service-case");
    assert_eq!(wfs[0]["object"], "Case");
    let priority = wfs[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Priority")
        .unwrap();
    assert_eq!(
        priority["values"],
        serde_json::json!(["High", "Medium", "Low"])
    );
    let subject = wfs[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Subject")
        .unwrap();
    assert_eq!(subject["max_length"], 255);
    assert_eq!(subject["required"], true);

    // find_assets went to Salesforce (the emulator) and found the chiller.
    let assets = out["find_assets"]["data"]["assets"].as_array().unwrap();
    assert!(
        assets
            .iter()
            .any(|a| a["name"] == "Water-Cooled Chiller CH-1"),
        "{assets:?}"
    );

    // The proposal, and the same one again for the same key.
    let propose = &out["propose"];
    assert_eq!(propose["is_error"], false, "{propose}");
    let id = propose["data"]["proposal_id"].as_str().unwrap().to_owned();
    assert_eq!(propose["data"]["status"], "RECEIVED");
    assert!(
        propose["data"]["status_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/s/{id}.", h.stack.public_url))
    );
    // The invented quote for Priority is dropped and flagged.
    assert!(
        propose["data"]["flagged_for_reviewer"]["Priority"]
            .as_str()
            .unwrap()
            .contains("not in the notes"),
        "{propose}"
    );
    assert_eq!(out["replay"]["data"]["proposal_id"], id.as_str());
    assert_eq!(out["replay"]["data"]["replayed"], true);

    // Refusals say what is allowed.
    let r = &out["refusals"];
    refused(
        &r["field_outside_schema"],
        &[
            "OwnerId",
            "not a field",
            "Subject (text, at most 255 characters, required)",
        ],
    );
    refused(
        &r["another_object"],
        &["\"account\"", "may use: field-service-case"],
    );
    refused(
        &r["forbidden_workflow"],
        &["\"priority-escalation\"", "may use: field-service-case"],
    );
    refused(&r["over_limit"], &["Subject is longer than 255 characters"]);
    refused(
        &r["bad_picklist"],
        &["Priority must be one of: High, Medium, Low"],
    );
    refused(
        &r["injection_with_fields"],
        &["OwnerId", "AccountId is set by the workflow itself"],
    );
    refused(&out["foreign_proposal"], &["No proposal"]);
    // Instructions inside the user's words change nothing outside the
    // schema: a proposal within it, flagged for the reviewer.
    let inj = &out["injection_in_schema"];
    assert_eq!(inj["is_error"], false, "{inj}");
    assert!(
        inj["data"]["flagged_for_reviewer"]["Subject"]
            .as_str()
            .unwrap()
            .contains("aimed at an assistant"),
        "{inj}"
    );
    let injected_id = inj["data"]["proposal_id"].as_str().unwrap().to_owned();

    // Both went to review like any report: one mail each, no more (the
    // refusals and the replay made nothing).
    h.stack.settled().await;
    let mails = h.json("/dev/outbox").await;
    let mails = mails.as_array().unwrap();
    assert_eq!(mails.len(), 2, "{mails:?}");
    let p = h
        .stack
        .store
        .get(id.parse::<ProposalId>().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.status, Status::PendingReview);
    let events = h.stack.store.events(p.id).await.unwrap();
    assert_eq!(events[0].actor.describe(), "assistant Service desk Claude");
    assert_eq!(
        p.revisions[0].author.describe(),
        "assistant Service desk Claude"
    );

    // The review page says who proposed it and shows the user's words.
    let mut review = None;
    // By the proposal's id: another report of the asset lists this one's
    // summary under "Already reported?".
    for m in mails {
        let url = m["review_url"].as_str().unwrap().to_owned();
        if !url.contains(&format!("/r/{}", p.id)) {
            continue;
        }
        let page = h.http.get(&url).send().await.unwrap().text().await.unwrap();
        if page.contains("Compressor leaking oil at the seal") {
            review = Some((url, page));
        }
    }
    let (url, page) = review.expect("the review mail of the proposal");
    assert!(
        page.contains("proposed by assistant Service desk Claude"),
        "{page}"
    );
    assert!(page.contains("<mark"), "evidence is marked");
    assert!(page.contains("leaking oil at the seal"));

    // The reviewer edits the subject and approves.
    let form = [
        ("decision", "approve"),
        ("csrf", hidden(&page, "csrf").as_str()),
        ("revision", hidden(&page, "revision").as_str()),
        ("Subject", "Compressor leaking oil at the shaft seal"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into_iter()
    .chain(ticks(&page))
    .collect::<Vec<_>>();
    let r = h.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.stack.settled().await;
    wait_for(|| async {
        let p = h.stack.store.get(p.id).await.unwrap().unwrap();
        (p.status == Status::Committed).then_some(())
    })
    .await;

    // get_proposal through the client: decision, edit, Salesforce id.
    let status = run(sdk, &["status", &url_of(&h), &secret, &id]).await;
    assert_eq!(status["is_error"], false, "{status}");
    let d = &status["data"];
    assert_eq!(d["status"], "COMMITTED", "{d}");
    assert_eq!(d["decision"]["decision"], "approved");
    assert_eq!(d["decision"]["by"], "service-desk@example.com");
    let changes = d["reviewer_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["field"], "Subject");
    assert_eq!(changes[0]["proposed"], "Compressor leaking oil at the seal");
    assert_eq!(
        changes[0]["now"],
        "Compressor leaking oil at the shaft seal"
    );
    let sf_id = d["salesforce"]["id"].as_str().unwrap().to_owned();
    assert!(
        d["salesforce"]["url"].as_str().unwrap().contains(&sf_id),
        "{d}"
    );

    // Exactly one new Case, with the approved values; nothing else.
    let cases = h.cases();
    assert_eq!(cases.len(), cases_before + 1);
    let case = cases.iter().find(|c| c["Id"] == sf_id.as_str()).unwrap();
    assert_eq!(case["Subject"], "Compressor leaking oil at the shaft seal");
    assert_eq!(case["Priority"], "High");
    assert_eq!(case["Fieldgate_Proposal_Id__c"], id.as_str());
    assert_eq!(case["Origin"], "Field QR");
    assert_ne!(case["OwnerId"], "005000000000001AAA");
    assert_eq!(h.stack.emulator.records("Account").len(), accounts_before);
    // The injected proposal waits for a person; nothing of it was written.
    let injected = h
        .stack
        .store
        .get(injected_id.parse::<ProposalId>().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(injected.status, Status::PendingReview);
}

fn url_of(h: &Harness) -> String {
    format!("{}/mcp", h.stack.base_url)
}

/// The client failed on our 401: its status (Python) or its body (the
/// TypeScript SDK quotes the body).
fn said_401(out: &Value) -> bool {
    let e = out["error"].as_str().unwrap_or_default();
    e.contains("401") || e.contains("invalid_token") || e.contains("\"error\":\"unauthorized\"")
}

async fn refused_callers(sdk: Sdk) {
    let h = Harness::build().workflows(workflows()).start().await;
    let url = url_of(&h);
    let (secret, id) = token(&h, "Soon revoked", AssistantLimits::default()).await;
    // Sanity: the token works before it is revoked.
    assert_eq!(
        run(sdk, &["denied", &url, &secret]).await["connected"],
        true
    );
    for bad in ["", "fgmcp_not-a-real-token"] {
        let out = run(sdk, &["denied", &url, bad]).await;
        assert_eq!(out["connected"], false, "{bad:?}: {out}");
        assert!(said_401(&out), "{out}");
    }
    h.stack
        .assistants
        .revoke(&id, h.stack.clock.now())
        .await
        .unwrap()
        .unwrap();
    let out = run(sdk, &["denied", &url, &secret]).await;
    assert_eq!(out["connected"], false, "revoked: {out}");
    assert!(said_401(&out), "{out}");
    // Nothing was proposed by anyone.
    assert!(
        h.stack
            .store
            .list_by_status(Status::Received, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        h.stack
            .store
            .list_by_status(Status::PendingReview, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_proposes_and_a_person_decides() {
    governed_flow(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_proposes_and_a_person_decides() {
    governed_flow(Sdk::TypeScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_without_a_valid_token_gets_401() {
    refused_callers(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_without_a_valid_token_gets_401() {
    refused_callers(Sdk::TypeScript).await;
}

/// The built-in create workflow and the shipped update workflow.
fn update_workflows() -> Workflows {
    let path = repo().join("infra/workflows/case-priority-status.toml");
    let update = std::fs::read_to_string(&path).unwrap();
    Workflows::from_workflows(vec![
        Workflow::from_toml(
            "field-service-case.toml",
            fieldgate::workflows::FIELD_SERVICE_CASE,
        )
        .unwrap(),
        Workflow::from_toml("case-priority-status.toml", &update).unwrap(),
    ])
}

async fn call(sdk: Sdk, h: &Harness, secret: &str, tool: &str, args: Value) -> Value {
    run(sdk, &["call", &url_of(h), secret, tool, &args.to_string()]).await
}

/// Approves the newest review mail's link as it is; returns its page.
async fn approve_newest(h: &Harness, mails_before: usize) -> String {
    let url = h.review_url(mails_before + 1).await;
    let page = h.http.get(&url).send().await.unwrap().text().await.unwrap();
    let form = [
        ("decision", "approve"),
        ("csrf", hidden(&page, "csrf").as_str()),
        ("revision", hidden(&page, "revision").as_str()),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into_iter()
    .chain(ticks(&page))
    .collect::<Vec<_>>();
    let r = h.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    page
}

async fn wait_status(h: &Harness, id: &str, want: Status) -> fieldgate::domain::Proposal {
    let id: ProposalId = id.parse().unwrap();
    h.stack.settled().await;
    wait_for(|| async {
        let p = h.stack.store.get(id).await.unwrap().unwrap();
        (p.status == want).then_some(p)
    })
    .await
}

fn mail_count(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

/// An assistant proposes a change to an existing Case; the reviewer sees
/// Salesforce's values beside the proposed ones and approves; only the
/// approved fields are written. A second proposal meets a Case changed in
/// Salesforce after it was made: nothing is written, it goes back to the
/// reviewer with the new values, and a new approval writes over them.
async fn governed_update(sdk: Sdk) {
    use fieldgate::ports::RecordWriter;
    let h = Harness::build().workflows(update_workflows()).start().await;
    let (secret, _) = fieldgate_cli::mcp::create_token(
        h.stack.assistants.as_ref(),
        &h.stack.workflows,
        "Service desk Claude",
        &["case-priority-status".to_owned()],
        AssistantLimits::default(),
        h.stack.clock.as_ref(),
    )
    .await
    .unwrap();
    let (asset, _) = h.first_asset();
    let mut case = serde_json::Map::new();
    case.insert("Subject".into(), "Chiller CH-1 short cycling".into());
    case.insert("Priority".into(), "Medium".into());
    case.insert("Status".into(), "New".into());
    case.insert("AssetId".into(), asset.to_string().into());
    let case_id = h.stack.salesforce.create("Case", &case).await.unwrap();
    let sf_case = || h.stack.emulator.record("Case", &case_id).unwrap();
    let subject_before = sf_case()["Subject"].clone();
    let cases_before = h.cases().len();

    // The workflow says it updates and needs a record id.
    let wfs = call(sdk, &h, &secret, "list_workflows", serde_json::json!({})).await;
    let wf = &wfs["data"]["workflows"][0];
    assert_eq!(wf["operation"], "update", "{wfs}");
    assert_eq!(wf["needs_record_id"], true);

    let source =
        "Customer called again about the chiller case: it is urgent now, please escalate it.";
    let propose = |fields: Value, key: &str, record: Option<&str>| {
        let mut args = serde_json::json!({
            "workflow": "case-priority-status",
            "fields": fields,
            "source_text": source,
            "evidence": {},
            "idempotency_key": format!("upd-{sdk:?}-{key}"),
        });
        if let Some(r) = record {
            args["record_id"] = r.into();
        }
        args
    };
    // Refusals: no record id, a record of another object, a field the
    // workflow does not change.
    let r = call(
        sdk,
        &h,
        &secret,
        "propose_record",
        propose(serde_json::json!({"Priority": "High"}), "r1", None),
    )
    .await;
    refused(&r, &["give its Salesforce id as record_id"]);
    let r = call(
        sdk,
        &h,
        &secret,
        "propose_record",
        propose(
            serde_json::json!({"Priority": "High"}),
            "r2",
            Some(asset.as_str()),
        ),
    )
    .await;
    refused(&r, &["No Case record has id"]);
    let r = call(
        sdk,
        &h,
        &secret,
        "propose_record",
        propose(
            serde_json::json!({"Subject": "Renamed"}),
            "r3",
            Some(&case_id),
        ),
    )
    .await;
    refused(&r, &["Subject is not a field", "updates Case records"]);

    let mut good = propose(
        serde_json::json!({"Priority": "High", "Status": "Escalated"}),
        "0001",
        Some(&case_id),
    );
    good["evidence"] =
        serde_json::json!({"Priority": "it is urgent now", "Status": "please escalate it"});
    let out = call(sdk, &h, &secret, "propose_record", good).await;
    assert_eq!(out["is_error"], false, "{out}");
    let id = out["data"]["proposal_id"].as_str().unwrap().to_owned();
    let p = wait_status(&h, &id, Status::PendingReview).await;
    let target = p.update.as_ref().expect("the record snapshot");
    assert_eq!(target.record_id, case_id);
    assert_eq!(target.current["Priority"], "Medium");
    assert_eq!(
        target.last_modified,
        sf_case()["LastModifiedDate"].as_str().unwrap()
    );

    // The reviewer sees the Case and its values in Salesforce beside the
    // proposed ones, and approves.
    let page = approve_newest(&h, 0).await;
    assert!(page.contains("Changes an existing Case"), "{page}");
    assert!(
        page.contains("In Salesforce now: <strong class=\"sf-value\">Medium</strong>"),
        "{page}"
    );
    assert!(
        page.contains("In Salesforce now: <strong class=\"sf-value\">New</strong>"),
        "{page}"
    );
    assert!(page.contains("proposed by assistant Service desk Claude"));
    wait_status(&h, &id, Status::Committed).await;
    let now = sf_case();
    assert_eq!(now["Priority"], "High");
    assert_eq!(now["Status"], "Escalated");
    assert_eq!(
        now["Subject"], subject_before,
        "only the approved fields are written"
    );
    let st = run(sdk, &["status", &url_of(&h), &secret, &id]).await;
    assert_eq!(st["data"]["status"], "COMMITTED", "{st}");
    assert_eq!(st["data"]["salesforce"]["id"], case_id.as_str());

    // A second proposal; then someone changes the Case in Salesforce.
    let out = call(
        sdk,
        &h,
        &secret,
        "propose_record",
        propose(
            serde_json::json!({"Priority": "Low"}),
            "0002",
            Some(&case_id),
        ),
    )
    .await;
    assert_eq!(out["is_error"], false, "{out}");
    let id2 = out["data"]["proposal_id"].as_str().unwrap().to_owned();
    wait_status(&h, &id2, Status::PendingReview).await;
    let mut change = serde_json::Map::new();
    change.insert("Status".into(), "Working".into());
    h.stack
        .salesforce
        .update("Case", &case_id, &change, None)
        .await
        .unwrap();
    let changed = sf_case();
    approve_newest(&h, 1).await;
    let p = wait_status(&h, &id2, Status::NeedsAttention).await;
    // 0 writes: the Case is as the other change left it.
    assert_eq!(sf_case(), changed, "nothing was written over the change");
    assert_eq!(sf_case()["Priority"], "High");
    let problem = p.commit.last_error.as_ref().unwrap();
    assert_eq!(problem.code, "RECORD_CHANGED");
    assert_eq!(problem.fields, ["Status"]);
    let st = run(sdk, &["status", &url_of(&h), &secret, &id2]).await;
    let d = &st["data"];
    assert_eq!(d["status"], "NEEDS_ATTENTION", "{st}");
    assert_eq!(d["salesforce_problem"]["code"], "RECORD_CHANGED");
    assert_eq!(d["record"]["in_salesforce"]["Status"], "Working");
    assert_eq!(
        d["record"]["changed_in_salesforce"],
        serde_json::json!(["Status"])
    );

    // The reviewer gets it back with the new values and approves again:
    // it is written over what they saw.
    let page = approve_newest(&h, 2).await;
    assert!(
        page.contains("The record was changed in Salesforce after this proposal"),
        "{page}"
    );
    assert!(page.contains("In Salesforce now: <strong class=\"sf-value\">Working</strong> <strong class=\"chip warn\">changed in Salesforce since the proposal</strong> (was Escalated)"), "{page}");
    wait_status(&h, &id2, Status::Committed).await;
    let now = sf_case();
    assert_eq!(now["Priority"], "Low");
    assert_eq!(now["Status"], "Working");
    assert_eq!(
        h.cases().len(),
        cases_before,
        "no Case was created by the updates"
    );
    assert_eq!(mail_count(&h.json("/dev/outbox").await), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_updates_a_case_and_a_changed_case_goes_back_to_review() {
    governed_update(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_updates_a_case_and_a_changed_case_goes_back_to_review() {
    governed_update(Sdk::TypeScript).await;
}

/// OAuth 2.0 client credentials, as Agentforce uses them, done by each
/// SDK's own client-credentials provider: discovery from the 401, the
/// token request, the tools with the access token; a wrong secret and a
/// revoked client get no access.
async fn client_credentials(sdk: Sdk) {
    let h = Harness::build().workflows(workflows()).start().await;
    let (secret, client) = fieldgate_cli::mcp::create_credential(
        h.stack.assistants.as_ref(),
        &h.stack.workflows,
        "Agentforce service agent",
        &["field-service-case".to_owned()],
        AssistantLimits::default(),
        h.stack.clock.as_ref(),
        fieldgate::domain::CredentialKind::ClientCredentials,
    )
    .await
    .unwrap();
    assert!(secret.starts_with("fgcs_"));
    let issuer = h.stack.public_url.clone();
    let out = run(sdk, &["oauth", &url_of(&h), &client.id, &secret, &issuer]).await;
    assert_eq!(out["connected"], true, "{out}");
    assert_eq!(
        out["workflows"]["data"]["assistant"], "Agentforce service agent",
        "{out}"
    );
    assert!(
        out["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        "{out}"
    );

    // A wrong secret: the token endpoint says invalid_client with a 401.
    let r = h
        .http
        .post(format!("{}/mcp/oauth/token", h.stack.base_url))
        .basic_auth(&client.id, Some("fgcs_wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"fieldgate\"");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let out = run(
        sdk,
        &["oauth", &url_of(&h), &client.id, "fgcs_wrong", &issuer],
    )
    .await;
    assert_eq!(out["connected"], false, "{out}");

    // An access token from the endpoint works as a bearer in the SDK, until
    // the client is revoked.
    let r: Value = h
        .http
        .post(format!("{}/mcp/oauth/token", h.stack.base_url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = r["access_token"].as_str().unwrap().to_owned();
    let ok = call(sdk, &h, &access, "list_workflows", serde_json::json!({})).await;
    assert_eq!(ok["is_error"], false, "{ok}");
    h.stack
        .assistants
        .revoke(&client.id, h.stack.clock.now())
        .await
        .unwrap()
        .unwrap();
    let out = run(sdk, &["denied", &url_of(&h), &access]).await;
    assert_eq!(out["connected"], false, "revoked: {out}");
    assert!(said_401(&out), "{out}");
    let out = run(sdk, &["oauth", &url_of(&h), &client.id, &secret, &issuer]).await;
    assert_eq!(
        out["connected"], false,
        "revoked client gets no token: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_connects_with_client_credentials() {
    client_credentials(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_connects_with_client_credentials() {
    client_credentials(Sdk::TypeScript).await;
}
