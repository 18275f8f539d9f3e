//! Fault switches, API-call accounting, persistence and the demo org.

use crate::common;
use std::time::Duration;

use crate::common::{only_error, start, start_with};
use fieldgate_sf_emulator::{Emulator, EmulatorConfig};
use serde_json::json;

#[tokio::test]
async fn expire_tokens_makes_old_tokens_401() {
    let mut org = start().await;
    assert_eq!(org.get("/sobjects/Case/describe").await.status, 200);
    org.em.faults().expire_tokens();
    let r = org.get("/sobjects/Case/describe").await;
    assert_eq!(r.status, 401);
    assert_eq!(only_error(&r.body)["errorCode"], "INVALID_SESSION_ID");
    org.token = org.new_token().await;
    assert_eq!(org.get("/sobjects/Case/describe").await.status, 200);
}

#[tokio::test]
async fn fail_next_answers_transient_errors_then_recovers() {
    let mut org = start().await;
    org.em.faults().fail_next(2, 503);
    // Token calls are not affected by fail_next.
    org.token = org.new_token().await;
    for _ in 0..2 {
        let r = org.get("/sobjects/Case/describe").await;
        assert_eq!(r.status, 503);
        assert_eq!(only_error(&r.body)["errorCode"], "SERVER_UNAVAILABLE");
    }
    assert_eq!(org.get("/sobjects/Case/describe").await.status, 200);

    org.em.faults().fail_next(1, 400);
    let r = org
        .post("/sobjects/Case/", json!({"Subject": "locked"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(only_error(&r.body)["errorCode"], "UNABLE_TO_LOCK_ROW");
    assert!(
        org.em.records("Case").is_empty(),
        "failed call had no effect"
    );

    org.em.faults().fail_next(1, 500);
    let r = org.get("/limits").await;
    assert_eq!(
        (r.status, only_error(&r.body)["errorCode"].as_str().unwrap()),
        (500, "UNKNOWN_EXCEPTION")
    );
}

#[tokio::test]
async fn latency_delays_answers() {
    // Observed through the emulator's count of delayed answers, not a
    // clock: elapsed-time bounds fail on a loaded machine.
    let org = start().await;
    assert_eq!(org.em.faults().delayed_answers(), 0);
    org.em.faults().set_latency(Duration::from_millis(20));
    assert_eq!(org.get("/limits").await.status, 200);
    assert_eq!(org.em.faults().delayed_answers(), 1);
    org.em.faults().set_latency(Duration::ZERO);
    assert_eq!(org.get("/limits").await.status, 200);
    assert_eq!(org.em.faults().delayed_answers(), 1, "no delay once reset");
}

#[tokio::test]
async fn exhausted_budget_answers_403() {
    let org = start().await;
    org.em.faults().exhaust_budget(true);
    let r = org.post("/sobjects/Case/", json!({"Subject": "x"})).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert!(org.em.records("Case").is_empty());
    org.em.faults().exhaust_budget(false);
    assert_eq!(
        org.post("/sobjects/Case/", json!({"Subject": "x"}))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn going_over_the_configured_budget_answers_403() {
    let org = start_with(EmulatorConfig {
        api_budget: 3,
        ..Default::default()
    })
    .await; // call 1: token
    assert_eq!(org.get("/limits").await.status, 200); // 2
    let third = org.get("/limits").await;
    assert_eq!(third.status, 200);
    assert_eq!(third.limit().unwrap(), "api-usage=3/3");
    let fourth = org.get("/limits").await;
    assert_eq!(fourth.status, 403);
    assert_eq!(fourth.limit().unwrap(), "api-usage=4/3");
}

#[tokio::test]
async fn validation_rules_reject_matching_writes() {
    let org = start().await;
    org.em
        .faults()
        .add_validation_rule("Case", "Subject", "TEST", "Subjects may not contain TEST");
    let expected = json!([{
        "message": "Subjects may not contain TEST",
        "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "fields": ["Subject"],
    }]);
    let create = org
        .post("/sobjects/Case/", json!({"Subject": "a TEST case"}))
        .await;
    assert_eq!((create.status, &create.body), (400, &expected));
    let upsert = org
        .patch(
            "/sobjects/Case/Fieldgate_Proposal_Id__c/01JCX3QZ5N8V2W4Y6A7B9C0D1E",
            json!({"Subject": "TEST"}),
        )
        .await;
    assert_eq!((upsert.status, &upsert.body), (400, &expected));
    let id = org.create_case("a real case").await;
    let update = org
        .patch(
            &format!("/sobjects/Case/{id}"),
            json!({"Subject": "now TEST"}),
        )
        .await;
    assert_eq!((update.status, &update.body), (400, &expected));
    assert_eq!(
        org.em.record("Case", &id).unwrap()["Subject"],
        "a real case"
    );
    // Other objects and other values are unaffected.
    assert_eq!(
        org.post("/sobjects/Account/", json!({"Name": "TEST Corp"}))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn limit_header_counts_every_call() {
    let org = start_with(EmulatorConfig {
        api_budget: 15_000,
        ..Default::default()
    })
    .await;
    assert_eq!(org.em.api_calls(), 1, "the token call counted");
    let a = org.get("/sobjects/Case/describe").await;
    assert_eq!(a.limit().unwrap(), "api-usage=2/15000");
    let b = org.query("SELECT Id FROM Asset").await;
    assert_eq!(b.limit().unwrap(), "api-usage=3/15000");
    let err = org.get("/sobjects/Nope/describe").await;
    assert_eq!(err.limit().unwrap(), "api-usage=4/15000");
    let created = org.post("/sobjects/Case/", json!({"Subject": "x"})).await;
    assert_eq!(created.limit().unwrap(), "api-usage=5/15000");
    assert_eq!(org.em.api_calls(), 5);
    // Inspection does not count.
    org.em.records("Case");
    org.em.demo_assets();
    assert_eq!(org.em.api_calls(), 5);
    let limits = org.get("/limits").await;
    assert_eq!(limits.body["DailyApiRequests"]["Max"], 15_000);
}

#[tokio::test]
async fn state_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.json");
    let config = || EmulatorConfig {
        persist_path: Some(path.clone()),
        ..Default::default()
    };
    let (case_id, assets) = {
        let org = start_with(config()).await;
        assert!(path.exists(), "the seeded org is saved at start");
        let id = org.create_case("Survives a restart").await;
        let upd = org
            .patch(
                &format!("/sobjects/Case/{id}"),
                json!({"Status": "Escalated"}),
            )
            .await;
        assert_eq!(upd.status, 204);
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode(b"hello file");
        let cv = org
            .post(
                "/sobjects/ContentVersion/",
                json!({"PathOnClient": "note.txt", "VersionData": data, "FirstPublishLocationId": id}),
            )
            .await;
        assert_eq!(cv.status, 201);
        (id, org.em.demo_assets())
    };
    let again = Emulator::new(config()).unwrap();
    let case = again.record("Case", &case_id).expect("case persisted");
    assert_eq!(case["Subject"], "Survives a restart");
    assert_eq!(case["Status"], "Escalated");
    assert_eq!(again.demo_assets(), assets);
    let files = again.content_versions_linked_to(&case_id);
    assert_eq!(files.len(), 1);
    assert_eq!(
        again
            .content_version_data(files[0]["Id"].as_str().unwrap())
            .unwrap(),
        b"hello file"
    );

    // Counters continue: the next case gets a new id and number.
    let org = common::Org {
        base: common::serve(&again).await,
        em: again,
        http: reqwest::Client::new(),
        token: String::new(),
    };
    let org = common::Org {
        token: org.new_token().await,
        ..org
    };
    let second = org.create_case("After restart").await;
    assert_ne!(second, case_id);
    assert_eq!(
        org.em.record("Case", &second).unwrap()["CaseNumber"],
        "00001002"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "no temp files left behind"
    );
}

#[tokio::test]
async fn corrupt_state_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.json");
    std::fs::write(&path, "{not json").unwrap();
    let err = Emulator::new(EmulatorConfig {
        persist_path: Some(path),
        ..Default::default()
    })
    .err()
    .expect("corrupt file must not be silently replaced");
    assert!(err.to_string().contains("org.json"), "{err}");
}

#[test]
fn demo_assets_are_seeded_with_stable_ids() {
    let a = Emulator::new(EmulatorConfig::default())
        .unwrap()
        .demo_assets();
    let b = Emulator::new(EmulatorConfig::default())
        .unwrap()
        .demo_assets();
    assert_eq!(a, b);
    assert!(a.len() >= 4);
    let hvac = &a[0];
    assert_eq!(hvac.id, "02i000000000001AAA");
    assert_eq!(hvac.name, "Rooftop HVAC Unit 3");
    assert_eq!(hvac.serial_number, "HVC-3-2291-A");
    assert_eq!(hvac.account_name, "Northwind Logistics");
    assert_eq!(hvac.location, "Building B roof");
    for asset in &a {
        assert!(
            asset.id.starts_with("02i") && asset.id.len() == 18,
            "{asset:?}"
        );
        assert!(
            !asset.location.is_empty() && !asset.account_name.is_empty(),
            "{asset:?}"
        );
    }
    let em = Emulator::new(EmulatorConfig::default()).unwrap();
    assert_eq!(em.records("Account").len(), 3);
    assert_eq!(em.records("Location").len(), a.len());
    assert_eq!(em.api_calls(), 0);
}
