//! The Salesforce client against the emulator over real HTTP: both OAuth
//! grants, token renewal, upsert outcomes, files as JSON and multipart,
//! retries, the limit pause, refusals with field names, the limit warning
//! and the cached asset context.

use fieldgate::domain::AssetId;
use fieldgate::embedded::SqliteStore;
use fieldgate::ports::{
    AssetDirectory, Attachment, Freshness, ProposalStore, RecordWriter, WriteError,
};
use fieldgate::salesforce::{
    CachedDirectory, SalesforceAssets, SalesforceClient, SalesforceConfig,
};
use fieldgate_sf_emulator::{DEV_JWT_PRIVATE_KEY, DEV_USERNAME, Emulator, EmulatorConfig};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn serve(config: EmulatorConfig) -> (Emulator, String) {
    let em = Emulator::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(em.clone().serve(listener));
    (em, base)
}

fn client(em: &Emulator, base: &str) -> SalesforceClient {
    let mut c = SalesforceConfig::client_credentials(
        base,
        &em.config().client_id,
        &em.config().client_secret,
    );
    c.retry_base = Duration::from_millis(5);
    SalesforceClient::new(c).unwrap()
}

fn record(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

const EXT: &str = "Fieldgate_Proposal_Id__c";

#[tokio::test]
async fn jwt_bearer_signs_in_and_the_token_is_cached() {
    let (em, base) = serve(EmulatorConfig::default()).await;
    let cfg = SalesforceConfig::jwt_bearer(
        &base,
        &em.config().client_id,
        DEV_USERNAME,
        DEV_JWT_PRIVATE_KEY,
    );
    let sf = SalesforceClient::new(cfg).unwrap();
    let d = sf.describe("Case").await.unwrap();
    assert_eq!(d["name"], "Case");
    sf.describe("Asset").await.unwrap();
    assert_eq!(sf.api_calls(), 3, "one token, two describes");
    assert_eq!(em.api_calls(), 3);
    // A key the org does not trust: a clear auth error, not a retry loop.
    let other = include_str!("../../infra/sf-emulator/fixtures/other-jwt.key");
    let bad = SalesforceClient::new(SalesforceConfig::jwt_bearer(
        &base,
        &em.config().client_id,
        DEV_USERNAME,
        other,
    ))
    .unwrap();
    let err = bad.describe("Case").await.unwrap_err().to_string();
    assert!(err.contains("invalid_grant: invalid assertion"), "{err}");
    assert_eq!(bad.api_calls(), 1);
}

#[tokio::test]
async fn an_expired_session_is_renewed_once() {
    let (em, base) = serve(EmulatorConfig::default()).await;
    let sf = client(&em, &base);
    sf.describe("Case").await.unwrap();
    assert_eq!(sf.api_calls(), 2);
    em.faults().expire_tokens();
    sf.describe("Case").await.unwrap();
    // 401, new token, the call again.
    assert_eq!(sf.api_calls(), 5);
    assert_eq!(em.api_calls(), 5);
    // A session that stays invalid is not renewed in a loop.
    em.faults().fail_next(2, 401);
    let err = sf.describe("Case").await.unwrap_err();
    assert!(err.to_string().contains("INVALID_SESSION_ID"), "{err}");
    assert_eq!(sf.api_calls(), 8, "401, token, 401: then give up");
}

#[tokio::test]
async fn upsert_creates_then_updates_and_old_versions_answer_204() {
    let (em, base) = serve(EmulatorConfig::default()).await;
    let sf = client(&em, &base);
    let ext = "01JFIELDGATE0000000000000A";
    let first = sf
        .upsert("Case", EXT, ext, &record(json!({"Subject": "Pump leaks"})))
        .await
        .unwrap();
    assert!(first.created);
    assert!(first.id.starts_with("500"));
    let second = sf
        .upsert(
            "Case",
            EXT,
            ext,
            &record(json!({"Subject": "Pump leaks badly"})),
        )
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.id, first.id);
    assert_eq!(em.records("Case").len(), 1);
    let back = sf
        .read("Case", &first.id, &["Subject".into()])
        .await
        .unwrap();
    assert_eq!(back["Subject"], "Pump leaks badly");

    // v45.0 answers an update with 204 and no body: the id is looked up.
    let mut c = SalesforceConfig::client_credentials(
        &base,
        &em.config().client_id,
        &em.config().client_secret,
    );
    c.api_version = "45.0".into();
    let old = SalesforceClient::new(c).unwrap();
    let third = old
        .upsert(
            "Case",
            EXT,
            ext,
            &record(json!({"Subject": "Seal replaced"})),
        )
        .await
        .unwrap();
    assert_eq!(third.id, first.id);
    assert!(!third.created);
    assert_eq!(em.records("Case")[0]["Subject"], "Seal replaced");
}

#[tokio::test]
async fn files_go_as_json_below_the_threshold_and_multipart_above() {
    let (em, base) = serve(EmulatorConfig::default()).await;
    let mut c = SalesforceConfig::client_credentials(
        &base,
        &em.config().client_id,
        &em.config().client_secret,
    );
    c.multipart_above = 1024;
    let sf = SalesforceClient::new(c).unwrap();
    let case = sf
        .upsert(
            "Case",
            EXT,
            "01JFIELDGATE0000000000000B",
            &record(json!({"Subject": "Photos"})),
        )
        .await
        .unwrap();
    let small: Vec<u8> = (0..=255u8).collect();
    let big: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    let v1 = sf
        .attach(
            &case.id,
            &Attachment {
                title: "small",
                file_name: "small.png",
                content_type: "image/png",
                data: &small,
            },
        )
        .await
        .unwrap();
    assert_eq!(em.multipart_uploads(), 0, "small file went as base64 JSON");
    let v2 = sf
        .attach(
            &case.id,
            &Attachment {
                title: "big",
                file_name: "big.jpg",
                content_type: "image/jpeg",
                data: &big,
            },
        )
        .await
        .unwrap();
    assert_eq!(em.multipart_uploads(), 1, "big file went as multipart");
    assert!(v1.starts_with("068") && v2.starts_with("068"));
    assert_eq!(em.content_version_data(&v1).unwrap(), small);
    assert_eq!(em.content_version_data(&v2).unwrap(), big);
    let linked = em.content_versions_linked_to(&case.id);
    assert_eq!(linked.len(), 2);
    assert!(linked.iter().all(|v| {
        v["ContentDocumentId"]
            .as_str()
            .is_some_and(|d| d.starts_with("069"))
    }));
    // The recovery lookup finds an upload by title.
    assert_eq!(
        sf.find_attachment(&case.id, "big").await.unwrap(),
        Some(v2.clone())
    );
    assert_eq!(sf.find_attachment(&case.id, "none").await.unwrap(), None);
}

#[tokio::test]
async fn transient_failures_are_retried_and_limits_are_not() {
    let (em, base) = serve(EmulatorConfig::default()).await;
    let sf = client(&em, &base);
    let rec = record(json!({"Subject": "Retry me"}));
    em.faults().fail_next(2, 503);
    sf.upsert("Case", EXT, "01JFIELDGATE0000000000000C", &rec)
        .await
        .unwrap();
    em.faults().fail_next(1, 400); // UNABLE_TO_LOCK_ROW
    sf.upsert("Case", EXT, "01JFIELDGATE0000000000000C", &rec)
        .await
        .unwrap();
    em.faults().fail_next(1, 500);
    sf.upsert("Case", EXT, "01JFIELDGATE0000000000000C", &rec)
        .await
        .unwrap();
    // Always failing: gives up after the configured retries.
    em.faults().fail_next(100, 503);
    let before = em.api_calls();
    let err = sf
        .upsert("Case", EXT, "01JFIELDGATE0000000000000C", &rec)
        .await
        .unwrap_err();
    assert!(matches!(err, WriteError::Transient(_)), "{err:?}");
    assert_eq!(em.api_calls() - before, 4, "first try + 3 retries");
    em.faults().fail_next(0, 503);
    // The budget: one call, no retries, a distinct error.
    em.faults().exhaust_budget(true);
    let before = em.api_calls();
    let err = sf
        .upsert("Case", EXT, "01JFIELDGATE0000000000000C", &rec)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WriteError::LimitExceeded(ref m) if m == "TotalRequests Limit exceeded."),
        "{err:?}"
    );
    assert_eq!(em.api_calls() - before, 1);
}

#[tokio::test]
async fn refusals_carry_salesforces_code_message_and_fields() {
    let (em, base) = serve(EmulatorConfig::default()).await;
    let sf = client(&em, &base);
    let err = sf
        .upsert(
            "Case",
            EXT,
            "01JFIELDGATE0000000000000D",
            &record(json!({"Description": "no subject"})),
        )
        .await
        .unwrap_err();
    let WriteError::Rejected {
        code,
        message,
        fields,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(code, "REQUIRED_FIELD_MISSING");
    assert_eq!(message, "Required fields are missing: [Subject]");
    assert_eq!(fields, ["Subject"]);
    let err = sf
        .upsert(
            "Case",
            EXT,
            "01JFIELDGATE0000000000000D",
            &record(json!({"Subject": "x", "Priority": "Carrier Pigeon"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WriteError::Rejected { code, fields, .. }
            if code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" && fields == &["Priority"]),
        "{err:?}"
    );
    // An external id field the org does not have: a configuration error.
    let err = sf
        .upsert(
            "Case",
            "NoSuchField__c",
            "x",
            &record(json!({"Subject": "x"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, WriteError::Config(ref m) if m.contains("NOT_FOUND")),
        "{err:?}"
    );
}

/// Collects what `tracing` writes, to assert on the limit warning.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn usage_above_80_percent_of_the_budget_is_a_warning_with_numbers() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (em, base) = serve(EmulatorConfig {
        api_budget: 10,
        ..EmulatorConfig::default()
    })
    .await;
    let sf = client(&em, &base);
    // Token (1) + 7 describes = 8 of 10: at 80 %, not above.
    for _ in 0..7 {
        sf.describe("Case").await.unwrap();
    }
    assert_eq!(sf.api_usage(), Some((8, 10)));
    assert!(!logs.text().contains("above 80%"), "{}", logs.text());
    sf.describe("Case").await.unwrap();
    assert_eq!(sf.api_usage(), Some((9, 10)));
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("above 80%"))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "WARN");
    assert_eq!(v["fields"]["used"], 9);
    assert_eq!(v["fields"]["limit"], 10);
    assert_eq!(v["fields"]["percent"], 90);
}

#[tokio::test]
async fn asset_context_is_one_query_then_served_from_the_store() {
    let (em, base) = serve(EmulatorConfig::default()).await;
    let sf = Arc::new(client(&em, &base));
    let store: Arc<dyn ProposalStore> = Arc::new(SqliteStore::in_memory());
    let dir = CachedDirectory {
        inner: SalesforceAssets::new(sf.clone()),
        store: store.clone(),
        ttl: time::Duration::minutes(10),
        clock: fieldgate::clock::system(),
    };
    let demo = &em.demo_assets()[0];
    let id: AssetId = demo.id.parse().unwrap();
    let a = dir.lookup(&id).await.unwrap().unwrap();
    assert_eq!(a.name, demo.name);
    assert_eq!(
        a.serial_number.as_deref(),
        Some(demo.serial_number.as_str())
    );
    assert_eq!(a.account_name.as_deref(), Some(demo.account_name.as_str()));
    assert_eq!(a.location.as_deref(), Some(demo.location.as_str()));
    assert!(
        a.account_id
            .as_deref()
            .is_some_and(|i| i.starts_with("001"))
    );
    assert_eq!(sf.api_calls(), 2, "token + one SOQL query");
    // Fresh in the store: no call at all.
    let again = dir.lookup(&id).await.unwrap().unwrap();
    assert_eq!(again, a);
    assert_eq!(sf.api_calls(), 2);
    // Expired TTL: asked again; Salesforce down: the stale copy serves.
    let stale = CachedDirectory {
        inner: SalesforceAssets::new(sf.clone()),
        store: store.clone(),
        ttl: time::Duration::ZERO,
        clock: fieldgate::clock::system(),
    };
    stale.lookup(&id).await.unwrap().unwrap();
    assert_eq!(sf.api_calls(), 3);
    em.faults().fail_next(100, 503);
    assert_eq!(stale.lookup(&id).await.unwrap().unwrap(), a);
    // ...and says it is a copy, so the form can say so.
    assert_eq!(
        stale.lookup_checked(&id).await.unwrap().unwrap().1,
        Freshness::Unconfirmed
    );
    em.faults().fail_next(0, 503);
    assert_eq!(
        stale.lookup_checked(&id).await.unwrap().unwrap().1,
        Freshness::Confirmed
    );
    // An unknown asset is None, not an error.
    let unknown: AssetId = "02i000000000000AAA".parse().unwrap();
    assert!(dir.lookup(&unknown).await.unwrap().is_none());

    // Taken out of service in Salesforce: the sticker stops once the cached
    // copy is older than the freshness (a minute in every deployment), and
    // the stale copy does not keep it alive.
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{base}/services/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", em.config().client_id.as_str()),
            ("client_secret", em.config().client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let r = http
        .patch(format!("{base}/services/data/v66.0/sobjects/Asset/{id}"))
        .header("authorization", &bearer)
        .json(&json!({"Status": "Obsolete"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    assert!(
        dir.lookup(&id).await.unwrap().is_some(),
        "fresh copy: still on"
    );
    assert!(stale.lookup(&id).await.unwrap().is_none(), "out of service");
    assert!(
        SalesforceAssets::new(sf.clone())
            .search("", 50)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != id),
        "and not offered to assistants"
    );
    // Deleted: the same.
    let other: AssetId = em.demo_assets()[1].id.parse().unwrap();
    assert!(stale.lookup(&other).await.unwrap().is_some());
    let r = http
        .delete(format!("{base}/services/data/v66.0/sobjects/Asset/{other}"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    assert!(stale.lookup(&other).await.unwrap().is_none(), "deleted");
}

/// The whole dev stack: with the org's budget spent, an approval waits in
/// APPROVED without spending calls; once the budget is back, the commit
/// sweep (the scheduled path) writes the Case, the photo and the handoff.
#[tokio::test]
async fn in_the_dev_stack_a_spent_budget_pauses_and_the_sweep_commits() {
    use fieldgate::domain::{ProposalId, Status};
    use fieldgate_tests::{Harness, hidden, jpeg, reference, wait_for};
    let h = Harness::start().await;
    let (status, page) = h
        .submit(
            "Chiller not cooling, compressor tripped, urgent",
            Some(("chiller.jpg", jpeg())),
        )
        .await;
    assert_eq!(status, 201, "{page}");
    let id: ProposalId = reference(&page).parse().unwrap();
    let url = h.review_url(1).await;
    let review = h.http.get(&url).send().await.unwrap().text().await.unwrap();
    h.stack.emulator.faults().exhaust_budget(true);
    let r = h
        .http
        .post(&url)
        .form(&[
            ("decision", "approve"),
            ("csrf", hidden(&review, "csrf").as_str()),
            ("revision", hidden(&review, "revision").as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let paused = wait_for(|| async {
        let p = h.stack.store.get(id).await.unwrap().unwrap();
        (p.status == Status::Approved && p.commit.paused_until.is_some()).then_some(p)
    })
    .await;
    assert_eq!(paused.commit.attempts, 1);
    // Once the dispatcher has handled every change, nothing is left that
    // could spend a call.
    h.stack.settled().await;
    let calls = h.stack.emulator.api_calls();
    h.stack.settled().await;
    assert_eq!(
        h.stack.emulator.api_calls(),
        calls,
        "paused: no calls spent"
    );
    assert!(h.cases().is_empty());

    h.stack.emulator.faults().exhaust_budget(false);
    let after_pause =
        h.stack.clock.now() + fieldgate_commit::LIMIT_PAUSE + time::Duration::seconds(1);
    let s = fieldgate_commit::sweep(&h.stack.commit, after_pause)
        .await
        .unwrap();
    assert_eq!(s.redriven, 1);
    let done = h.stack.store.get(id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Committed);
    assert!(done.commit.handoff_published);
    let cases = h.cases();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["Fieldgate_Proposal_Id__c"], id.to_string());
    assert_eq!(
        h.stack
            .emulator
            .content_versions_linked_to(cases[0]["Id"].as_str().unwrap())
            .len(),
        1
    );
    assert_eq!(h.handoffs().await.len(), 1);
}

#[tokio::test]
async fn a_timeout_is_transient_and_retried() {
    let (em, base) = serve(EmulatorConfig::default()).await;
    let mut c = SalesforceConfig::client_credentials(
        &base,
        &em.config().client_id,
        &em.config().client_secret,
    );
    c.timeout = Duration::from_millis(150);
    c.retries = 2;
    c.retry_base = Duration::from_millis(5);
    let sf = SalesforceClient::new(c).unwrap();
    sf.describe("Case").await.unwrap();
    em.faults().set_latency(Duration::from_millis(400));
    let before = em.api_calls();
    let err = sf
        .upsert(
            "Case",
            EXT,
            "01JFIELDGATE0000000000000E",
            &record(json!({"Subject": "slow org"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, WriteError::Transient(ref m) if m.contains("network")),
        "{err:?}"
    );
    assert_eq!(em.api_calls() - before, 3, "first try + 2 retries");
    em.faults().set_latency(Duration::ZERO);
    sf.upsert(
        "Case",
        EXT,
        "01JFIELDGATE0000000000000E",
        &record(json!({"Subject": "slow org"})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_upload_whose_answer_is_lost_is_looked_up_not_sent_again() {
    let (em, base) = serve(EmulatorConfig::default()).await;
    let mut c = SalesforceConfig::client_credentials(
        &base,
        &em.config().client_id,
        &em.config().client_secret,
    );
    c.retry_base = Duration::from_millis(5);
    c.multipart_above = 1024;
    let sf = SalesforceClient::new(c).unwrap();
    let case = sf
        .upsert(
            "Case",
            EXT,
            "01JFIELDGATE0000000000000F",
            &record(json!({"Subject": "Lost answers"})),
        )
        .await
        .unwrap();
    let small: Vec<u8> = (0..=255u8).collect();
    let big: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    // Both encodings: base64 JSON and multipart.
    for (title, data) in [("fieldgate-small", &small), ("fieldgate-big", &big)] {
        em.faults().drop_answers_after_write(1);
        let dropped = em.faults().dropped_answers();
        let id = sf
            .attach(
                &case.id,
                &Attachment {
                    title,
                    file_name: "photo.jpg",
                    content_type: "image/jpeg",
                    data,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            em.faults().dropped_answers(),
            dropped + 1,
            "the fault fired"
        );
        let same_title: Vec<_> = em
            .content_versions_linked_to(&case.id)
            .into_iter()
            .filter(|v| v["Title"] == title)
            .collect();
        assert_eq!(same_title.len(), 1, "exactly one file titled {title}");
        assert_eq!(same_title[0]["Id"], id.as_str());
        assert_eq!(&em.content_version_data(&id).unwrap(), data);
    }
    // A retry whose lookup finds nothing uploads again (the write was not
    // applied): a plain 503 still ends with one file.
    em.faults().fail_next(1, 503);
    sf.attach(
        &case.id,
        &Attachment {
            title: "fieldgate-third",
            file_name: "photo.jpg",
            content_type: "image/jpeg",
            data: &small,
        },
    )
    .await
    .unwrap();
    assert_eq!(em.content_versions_linked_to(&case.id).len(), 3);
}
