//! `fieldgate check` as a user runs it: the real binary, against the
//! built-in emulator or an org named by the environment (here: an emulator
//! signed in to with the JWT bearer grant).

use fieldgate::domain::Workflow;
use fieldgate_cli::check;
use fieldgate_sf_emulator::{DEV_USERNAME, Emulator, EmulatorConfig};
use std::process::{Command, Output};

const BROKEN: &str = r#"
id = "broken-case"
name = "Broken case"
object = "Case"
operation = "upsert"
external_id_field = "Fieldgate_Proposal_Id__c"
reviewers = ["desk@example.com"]

[constants]
Origin = "Fax"

[handoff]
summary_field = "Description"

[[fields]]
name = "Colour__c"
label = "Colour"
type = "text"
max_length = 20

[[fields]]
name = "Description"
label = "Description"
type = "textarea"
max_length = 40000

[[fields]]
name = "Type"
label = "Type"
type = "picklist"
values = ["Mechanical", "Hydraulic"]

[[fields]]
name = "Priority"
label = "Priority"
type = "picklist"
values = ["High", "Low"]
restricted = false
"#;

fn fieldgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fieldgate"));
    for k in [
        "SALESFORCE_LOGIN_URL",
        "SALESFORCE_CLIENT_ID",
        "SALESFORCE_CLIENT_SECRET",
        "SALESFORCE_USERNAME",
        "SALESFORCE_PRIVATE_KEY",
        "SALESFORCE_PRIVATE_KEY_FILE",
    ] {
        c.env_remove(k);
    }
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_built_in_workflow_fits_the_dev_org() {
    let out = fieldgate().arg("check").output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("passed: the workflow fits the org"), "{t}");
    assert!(t.contains("built-in emulator"), "{t}");
    for f in [
        "Subject",
        "Priority",
        "Origin",
        "AssetId",
        "Fieldgate_Proposal_Id__c",
    ] {
        assert!(
            t.contains(&format!("ok       {f}")),
            "{f} not reported: {t}"
        );
    }
}

#[test]
fn the_shipped_update_workflow_fits_the_dev_org() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workflows/case-priority-status.toml");
    let out = fieldgate()
        .args(["check", "--workflow"])
        .arg(&path)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("passed: the workflow fits the org"), "{t}");
    for f in ["Priority", "Status", "CaseNumber", "AssetId"] {
        assert!(
            t.contains(&format!("ok       {f}")),
            "{f} not reported: {t}"
        );
    }
    // Subject is required on create, not on an update.
    assert!(!t.contains("PROBLEM"), "{t}");
    // A field Salesforce does not let anyone update is named.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text_of = std::fs::read_to_string(&path).unwrap()
        + "\n[[fields]]\nname = \"CaseNumber\"\nlabel = \"Number\"\ntype = \"text\"\nmax_length = 30\n";
    std::fs::write(&bad, text_of).unwrap();
    let out = fieldgate()
        .args(["check", "--workflow"])
        .arg(&bad)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("PROBLEM  CaseNumber: not updateable by the integration user"),
        "{t}"
    );
}

#[test]
fn the_shipped_work_order_workflow_fits_the_dev_org() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workflows/field-service-work-order.toml");
    let check_file = |given: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let file = match given {
            Some(t) => {
                let f = dir.path().join("wo.toml");
                std::fs::write(&f, t).unwrap();
                f
            }
            None => path.clone(),
        };
        let out = fieldgate()
            .args(["check", "--workflow"])
            .arg(&file)
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    };
    let (code, t) = check_file(None);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("workflow field-service-work-order → WorkOrder"),
        "{t}"
    );
    for f in [
        "ok       Subject",
        "ok       Priority",
        "ok       WorkTypeId → WorkType by Name (lookup)",
        "ok       WorkTypeId values are WorkType records the org has",
        "ok       Status = \"New\" (constant)",
        "ok       AssetId ← Asset (binding)",
        "ok       AccountId ← Account (binding)",
        "ok       Fieldgate_Proposal_Id__c (external id, unique)",
        "ok       ContentVersion (photos)",
    ] {
        assert!(t.contains(f), "{f:?} not reported: {t}");
    }
    assert!(!t.contains("PROBLEM"), "{t}");

    // A work type the org does not have is named; so is a priority the
    // org's restricted picklist lacks.
    let shipped = std::fs::read_to_string(&path).unwrap();
    let bad = shipped
        .replace(
            "\"Installation\"]",
            "\"Installation\", \"Decommissioning\"]",
        )
        .replace(
            "[\"Critical\", \"High\"",
            "[\"Critical\", \"Urgent\", \"High\"",
        );
    let (code, t) = check_file(Some(&bad));
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("PROBLEM  WorkTypeId: the org has no WorkType with Name \"Decommissioning\""),
        "{t}"
    );
    assert!(t.contains("PROBLEM  Priority: \"Urgent\""), "{t}");

    // operation = "create" is refused when the workflow is loaded, with
    // the reason, before anything is asked of the org.
    let create = shipped.replacen("operation = \"upsert\"", "operation = \"create\"", 1);
    let (code, t) = check_file(Some(&create));
    assert_ne!(code, Some(0), "{t}");
    assert!(t.contains("operation = \"create\" is not supported"), "{t}");
    assert!(t.contains("upsert"), "{t}");
}

#[test]
fn a_broken_workflow_fails_with_each_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let out = fieldgate()
        .args(["check", "--workflow"])
        .arg(&path)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for expected in [
        "PROBLEM  Colour__c: no such field",
        "PROBLEM  Description: too long: the workflow allows 40000 characters, Salesforce holds at most 32000",
        "PROBLEM  Type: \"Hydraulic\" is not an active picklist value",
        "PROBLEM  Origin: constant \"Fax\" is an inactive picklist value",
        "PROBLEM  Priority: Salesforce restricts this picklist",
        "PROBLEM  Subject: Salesforce requires it on create and the workflow does not set it",
        "failed: 6 problem(s)",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in:\n{t}");
    }
    // What is fine is not reported as a problem.
    assert!(!t.contains("PROBLEM  Fieldgate_Proposal_Id__c"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_org_is_checked_over_jwt_bearer() {
    let em = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(em.clone().serve(listener));
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sf-emulator/fixtures/dev-jwt.key"
    );
    let mut cmd = fieldgate();
    cmd.arg("check")
        .env("SALESFORCE_LOGIN_URL", &base)
        .env("SALESFORCE_CLIENT_ID", &em.config().client_id)
        .env("SALESFORCE_USERNAME", DEV_USERNAME)
        .env("SALESFORCE_PRIVATE_KEY_FILE", key);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("on {base}")), "{t}");
    // token + describe Case + describe ContentVersion (photos allowed).
    assert_eq!(em.api_calls(), 3);

    // A wrong username: the command fails with Salesforce's reason.
    let mut cmd = fieldgate();
    cmd.arg("check")
        .env("SALESFORCE_LOGIN_URL", &base)
        .env("SALESFORCE_CLIENT_ID", &em.config().client_id)
        .env("SALESFORCE_USERNAME", "someone@else.example")
        .env("SALESFORCE_PRIVATE_KEY_FILE", key);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("user hasn't approved this consumer"), "{t}");
}

#[tokio::test]
async fn the_external_id_must_be_unique_and_writable_fields_updateable() {
    let em = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(em.clone().serve(listener));
    let sf = fieldgate::salesforce::SalesforceClient::new(
        fieldgate::salesforce::SalesforceConfig::client_credentials(
            &base,
            &em.config().client_id,
            &em.config().client_secret,
        ),
    )
    .unwrap();
    let wf: Workflow = fieldgate::workflows::builtin()
        .iter()
        .next()
        .unwrap()
        .as_ref()
        .clone();
    let mut describe = sf.describe("Case").await.unwrap();
    let files = sf.describe("ContentVersion").await.unwrap();
    assert!(check::check(&wf, &describe, Some(&files), "t").passed());
    for f in describe["fields"].as_array_mut().unwrap() {
        match f["name"].as_str().unwrap() {
            "Fieldgate_Proposal_Id__c" => f["unique"] = false.into(),
            "Description" => f["updateable"] = false.into(),
            "AssetId" => f["referenceTo"] = serde_json::json!(["Contact"]),
            _ => {}
        }
    }
    let r = check::check(&wf, &describe, Some(&files), "t");
    let named: Vec<(&str, &str)> = r
        .problems
        .iter()
        .map(|p| (p.subject.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(r.problems.len(), 3, "{named:?}");
    assert!(
        named
            .iter()
            .any(|(s, m)| *s == "Fieldgate_Proposal_Id__c" && m.contains("not Unique"))
    );
    assert!(
        named
            .iter()
            .any(|(s, m)| *s == "Description" && m.contains("not updateable"))
    );
    assert!(
        named
            .iter()
            .any(|(s, m)| *s == "AssetId" && m.contains("not a lookup to Asset"))
    );
}
