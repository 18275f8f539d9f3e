//! The whole pipeline on the AWS adapters: DynamoDB Local (store and
//! stream), moto (S3, SES, SNS → SQS, Secrets Manager) and the Salesforce
//! emulator. The adapters come from the composition root and the variables
//! the template gives a Lambda (as a lookup, not the process environment);
//! each step runs its own handler, the stream steps fed by the poller with
//! the template's filters.

use crate::aws;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use axum::Router;
use axum::body::Body;
use fieldgate::aws::poller::{StreamFilter, StreamPoller};
use fieldgate::aws::s3::S3Media;
use fieldgate::clock::{SystemClock, new_proposal_id};
use fieldgate::compose::{Components, Keys};
use fieldgate::config::Config;
use fieldgate::domain::{
    Actor, AssetContext, AuditEvent, Clock, Decision, DecisionKind, FieldValue, Fields, Intake,
    Proposal, ProposalId, ReviewGrant, ReviewToken, Status,
};
use fieldgate::ports::ProposalStore;
use fieldgate_sf_emulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator, EmulatorConfig};
use fieldgate_tests::events::Part;
use fieldgate_tests::template;
use fieldgate_tests::{approve_form, jpeg};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub(crate) const PUBLIC: &str = "https://fg.example";
pub(crate) const SENDER: &str = "fieldgate@example.com";

type Request = http::Request<Body>;

/// Sends one request through a function's router, as Lambda would: the
/// status and the body as text.
async fn send(app: &Router, req: Request) -> (u16, String) {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status().as_u16();
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str) -> Request {
    http::Request::builder()
        .uri(path)
        .body(Body::empty())
        .unwrap()
}

fn multipart(path: &str, parts: &[Part<'_>]) -> Request {
    let (content_type, body) = fieldgate_tests::events::multipart(parts);
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

/// Polls the stream (as the event-source mapping would) until `done`.
async fn drive<F, Fut>(
    poller: &mut StreamPoller,
    mut handler: F,
    store: &dyn ProposalStore,
    id: ProposalId,
    done: impl Fn(&fieldgate::domain::Proposal) -> bool,
) -> fieldgate::domain::Proposal
where
    F: FnMut(aws_lambda_events::dynamodb::Event) -> Fut,
    Fut: std::future::Future<Output = aws_lambda_events::streams::DynamoDbEventResponse>,
{
    fieldgate_tests::wait_for_or(
        async || {
            poller.poll(&mut handler).await.expect("stream readable");
            let p = store.get(id).await.unwrap().expect("proposal exists");
            done(&p).then_some(p)
        },
        async || {
            let p = store.get(id).await.unwrap();
            format!("step did not finish; proposal: {p:#?}")
        },
    )
    .await
}

/// What the stand-ins hold for one test: a bucket, the SES sender, the
/// topic with a filtered and an unfiltered-away queue, the two secrets.
pub(crate) struct Moto {
    pub bucket: String,
    pub topic_arn: String,
    pub queue_url: String,
    pub other_queue_url: String,
    pub sf_secret_arn: String,
    /// The read-only integration user's (template: SalesforceReadSecret).
    pub sf_read_secret_arn: String,
    pub keys_secret_arn: String,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
}

pub(crate) async fn moto(config: &aws_config::SdkConfig, keys: &Keys) -> Moto {
    let tag = new_proposal_id(SystemClock.now())
        .to_string()
        .to_lowercase();
    let s3 = S3Media::client(config, true);
    let bucket = format!("fg-photos-{tag}");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto S3 (is moto running?): {e:?}"));
    aws_sdk_sesv2::Client::new(config)
        .create_email_identity()
        .email_identity(SENDER)
        .send()
        .await
        .unwrap();
    let sns = aws_sdk_sns::Client::new(config);
    let topic_arn = sns
        .create_topic()
        .name(format!("fg-handoff-{tag}"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut urls = Vec::new();
    for (name, policy) in [
        (
            "wanted",
            json!({"workflow": ["field-service-case"], "event": ["committed"]}),
        ),
        ("unwanted", json!({"workflow": ["some-other-workflow"]})),
    ] {
        let url = sqs
            .create_queue()
            .queue_name(format!("fg-{name}-{tag}"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("FilterPolicy", policy.to_string())
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .unwrap();
        urls.push(url);
    }
    let secrets = aws_sdk_secretsmanager::Client::new(config);
    let sf_secret_arn = secrets
        .create_secret()
        .name(format!("fg-salesforce-{tag}"))
        .secret_string(json!({ "client_secret": DEFAULT_CLIENT_SECRET }).to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let sf_read_secret_arn = secrets
        .create_secret()
        .name(format!("fg-salesforce-read-{tag}"))
        .secret_string(json!({ "client_secret": DEFAULT_CLIENT_SECRET }).to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let keys_secret_arn = secrets
        .create_secret()
        .name(format!("fg-keys-{tag}"))
        .secret_string(serde_json::to_string(keys).unwrap())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    Moto {
        bucket,
        topic_arn,
        other_queue_url: urls.pop().unwrap(),
        queue_url: urls.pop().unwrap(),
        sf_secret_arn,
        sf_read_secret_arn,
        keys_secret_arn,
        sqs,
        s3,
    }
}

/// The recorders of the four functions of the QR flow.
#[derive(Default)]
pub(crate) struct Recorded {
    pub intake: aws::Recorder,
    pub structure: aws::Recorder,
    pub approval: aws::Recorder,
    pub commit: aws::Recorder,
}

impl Recorded {
    fn each(&self) -> [(&'static str, &aws::Recorder); 4] {
        [
            ("QrIntakeFunction", &self.intake),
            ("StructureFunction", &self.structure),
            ("ApprovalFunction", &self.approval),
            ("CommitFunction", &self.commit),
        ]
    }

    /// Fails on any request a function's policy in template.yaml denies.
    pub fn assert_within_the_template(&self) {
        for (function, rec) in self.each() {
            let sent = rec.sent();
            assert!(!sent.is_empty(), "{function} sent nothing: not recorded?");
            let denied = aws::denied(function, &sent);
            assert!(
                denied.is_empty(),
                "{function}'s policy in template.yaml would deny: {denied:#?}"
            );
        }
    }

    /// Requests per function and operation.
    pub fn counts(&self) -> Vec<(&'static str, std::collections::BTreeMap<String, usize>)> {
        self.each()
            .into_iter()
            .map(|(function, rec)| {
                let mut ops = std::collections::BTreeMap::<String, usize>::new();
                for s in rec.sent() {
                    *ops.entry(s.op).or_default() += 1;
                }
                (function, ops)
            })
            .collect()
    }

    /// Requests per function and operation (for the report and BENCHMARKS).
    pub fn report(&self, what: &str) -> String {
        let mut total = 0;
        let mut lines = Vec::new();
        for (function, rec) in self.each() {
            let mut ops = std::collections::BTreeMap::<String, usize>::new();
            for s in rec.sent() {
                *ops.entry(s.op).or_default() += 1;
            }
            let n: usize = ops.values().sum();
            total += n;
            lines.push(format!("  {function}: {n} {ops:?}"));
        }
        format!("DynamoDB requests, {what}: {total}\n{}", lines.join("\n"))
    }
}

pub(crate) async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return all;
        }
        all.extend(msgs);
    }
}

/// The four functions of the QR flow on the AWS adapters, each built from
/// the composition root with what template.yaml gives it, its store
/// recording what it sends; the test's own store beside them.
pub(crate) struct Stack {
    pub table: aws::Table,
    pub keys: Keys,
    pub m: Moto,
    pub emulator: Emulator,
    pub data_dir: tempfile::TempDir,
    pub recorded: Recorded,
    pub intake: Router,
    pub structure: fieldgate_structure::Structure,
    pub approval: Router,
    pub commit: fieldgate_commit::Commit,
    pub store: Arc<dyn ProposalStore>,
}

pub(crate) async fn stack() -> Stack {
    let config = aws::sdk().await;
    let table = aws::fresh_table(&config).await;
    let keys = Keys::generate();
    let m = moto(&config, &keys).await;

    let emulator = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sf_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(emulator.clone().serve(listener));

    // What template.yaml gives the functions, pointed at the stand-ins.
    let data_dir = tempfile::tempdir().unwrap();
    let vars: std::collections::HashMap<&str, String> = [
        ("FIELDGATE_TABLE", table.store.table()),
        ("FIELDGATE_PHOTO_BUCKET", &m.bucket),
        ("FIELDGATE_S3_PATH_STYLE", "1"),
        ("FIELDGATE_MAIL_FROM", SENDER),
        ("FIELDGATE_HANDOFF_TOPIC", &m.topic_arn),
        ("FIELDGATE_KEYS_SECRET_ARN", &m.keys_secret_arn),
        ("FIELDGATE_PUBLIC_URL", PUBLIC),
        ("FIELDGATE_DATA_DIR", data_dir.path().to_str().unwrap()),
        ("SALESFORCE_LOGIN_URL", &sf_url),
        ("SALESFORCE_CLIENT_ID", DEFAULT_CLIENT_ID),
        ("SALESFORCE_SECRET_ARN", &m.sf_secret_arn),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    // Each function's store records the requests it sends (its own client,
    // as each Lambda has), to hold them against the function's policies.
    let recorded = Recorded::default();
    let parts = |rec: &aws::Recorder| {
        let lookup = Config::from_lookup(&|k| vars.get(k).cloned()).expect("configuration");
        Components::new(lookup).with_store(rec.store(&config, table.store.table()))
    };

    let intake = fieldgate_qr_intake::router(Arc::new(
        fieldgate_qr_intake::IntakeDeps::build(&parts(&recorded.intake), Default::default())
            .await
            .unwrap(),
    ));
    let structure = fieldgate_structure::Structure::build(&parts(&recorded.structure))
        .await
        .unwrap();
    let approval = fieldgate_approval::router(Arc::new(
        fieldgate_approval::ApprovalDeps::build(&parts(&recorded.approval))
            .await
            .unwrap(),
    ));
    let commit = fieldgate_commit::Commit::build(&parts(&recorded.commit))
        .await
        .unwrap();
    // The test's own reads are not any function's.
    let store: Arc<dyn ProposalStore> = table.store.clone();
    Stack {
        table,
        keys,
        m,
        emulator,
        data_dir,
        recorded,
        intake,
        structure,
        approval,
        commit,
        store,
    }
}

/// The review link mailed for the report whose notes contain `marker`.
async fn review_link(marker: &str) -> String {
    let state = aws::moto_state().await;
    let mails: Vec<&Value> = state["ses"]["Message"]
        .as_array()
        .expect("moto keeps sent mail")
        .iter()
        .filter(|m| m["body"].as_str().is_some_and(|b| b.contains(marker)))
        .filter(|m| m["destinations"]["ToAddresses"][0] == "service-desk@example.com")
        .collect();
    assert_eq!(mails.len(), 1, "one review mail: {mails:#?}");
    regex::Regex::new(r#"https://fg\.example(/r/[A-Za-z0-9._~-]+)"#)
        .unwrap()
        .captures(mails[0]["body"].as_str().unwrap())
        .expect("review link in the mail")[1]
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scan_to_handoff_on_dynamodb_local_moto_and_the_emulator() {
    let Stack {
        table,
        keys,
        m,
        emulator,
        data_dir,
        recorded,
        intake,
        structure,
        approval,
        commit,
        store,
    } = stack().await;

    // 1. Scan and submit, with three photos.
    let asset = emulator.demo_assets()[0].clone();
    let code = keys.qr.sign(
        &asset.id.parse().unwrap(),
        &"field-service-case".parse().unwrap(),
    );
    let path = format!("/q/{code}");
    let (status, form) = send(&intake, get(&path)).await;
    assert_eq!(status, 200, "{form}");
    assert!(form.contains(&asset.name), "asset looked up in Salesforce");
    let calls_after_the_form = emulator.api_calls();
    // What the form posts back: the asset context it showed, signed.
    let context = regex::Regex::new(r#"name="context" value="([A-Za-z0-9_.-]+)""#)
        .unwrap()
        .captures(&form)
        .expect("the form carries its signed asset context")[1]
        .to_owned();
    let photo = jpeg();
    // The key in the notes tells this test's review mail from the other
    // tests' in the same moto (the mail carries no proposal id).
    let idem = new_proposal_id(SystemClock.now()).to_string();
    let notes = format!("Compressor trips on high pressure, urgent, oil under the unit ({idem})");
    let (status, done) = send(
        &intake,
        multipart(
            &path,
            &[
                ("notes", None, notes.as_bytes()),
                ("photo", Some(("unit.jpg", "image/jpeg")), &photo),
                ("photo", Some(("plate.jpg", "image/jpeg")), &photo),
                ("photo", Some(("oil.jpg", "image/jpeg")), &photo),
                ("reporter", None, b"tech@example.com"),
                ("idem", None, idem.as_bytes()),
                ("context", None, context.as_bytes()),
            ],
        ),
    )
    .await;
    assert_eq!(status, 201, "{done}");
    let calls_after_the_report = emulator.api_calls();
    let received = store.list_by_status(Status::Received, 10).await.unwrap();
    assert_eq!(received.len(), 1);
    let id = received[0].id;
    let photo_ref = received[0]
        .intake
        .photos
        .first()
        .cloned()
        .expect("photo kept");
    // Each photo is its own S3 object.
    assert_eq!(received[0].intake.photos.len(), 3);
    for ph in &received[0].intake.photos[1..] {
        m.s3.head_object()
            .bucket(&m.bucket)
            .key(&ph.key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("photo {} in S3: {e}", ph.key));
    }

    // The photo is in S3, encrypted, with its content type.
    let head =
        m.s3.head_object()
            .bucket(&m.bucket)
            .key(&photo_ref.key)
            .send()
            .await
            .expect("photo object exists");
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert_eq!(head.content_length(), Some(photo.len() as i64));
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );

    // 2. The structure step, fed by the stream with its filter.
    let mut structure_stream = table.poller(StreamFilter::structure());
    let p = drive(
        &mut structure_stream,
        |ev| fieldgate_structure::handle_stream(&structure, ev),
        store.as_ref(),
        id,
        |p| p.status == Status::PendingReview && p.review.mailed,
    )
    .await;
    assert!(p.current().is_some(), "structured fields");

    // 3. The review mail, as SES (moto) received it.
    let state = aws::moto_state().await;
    let mails: Vec<&Value> = state["ses"]["Message"]
        .as_array()
        .expect("moto keeps sent mail")
        .iter()
        .filter(|m| m["body"].as_str().is_some_and(|b| b.contains(&idem)))
        .filter(|m| m["destinations"]["ToAddresses"][0] == "service-desk@example.com")
        .collect();
    assert_eq!(mails.len(), 1, "one review mail: {mails:#?}");
    assert_eq!(mails[0]["source"], SENDER);
    let html = mails[0]["body"].as_str().unwrap();
    assert!(html.contains(&asset.name), "the mail names the asset");
    assert!(!html.contains(&photo_ref.key), "no storage keys in mail");
    let link = regex::Regex::new(r#"https://fg\.example(/r/[A-Za-z0-9._~-]+)"#)
        .unwrap()
        .captures(html)
        .expect("review link in the mail")[1]
        .to_owned();

    // 4. The reviewer opens the link (no change) and approves.
    let (status, page) = send(&approval, get(&link)).await;
    assert_eq!(status, 200);
    assert_eq!(
        store.get(id).await.unwrap().unwrap().status,
        Status::PendingReview,
        "GET changes nothing"
    );
    let form = approve_form(&page, "Compressor trips on high pressure");
    let (status, decided) = send(
        &approval,
        http::Request::builder()
            .method("POST")
            .uri(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{decided}");

    // 5. The commit step: Case in Salesforce, then the handoff.
    let mut commit_stream = table.poller(StreamFilter::commit());
    let p = drive(
        &mut commit_stream,
        |ev| fieldgate_commit::handle_stream(&commit, ev),
        store.as_ref(),
        id,
        |p| p.status == Status::Committed && p.commit.handoff_published,
    )
    .await;
    let case_id = p.commit.record_id.clone().unwrap();
    let cases = emulator.records("Case");
    assert_eq!(cases.len(), 1, "exactly one Case");
    assert_eq!(cases[0]["Id"], case_id.as_str());
    assert_eq!(cases[0]["Fieldgate_Proposal_Id__c"], id.to_string());
    assert_eq!(cases[0]["Subject"], "Compressor trips on high pressure");
    assert_eq!(
        emulator.content_versions_linked_to(&case_id).len(),
        3,
        "the photos went from S3 to Salesforce"
    );

    // 6. The handoff: exactly one message on the subscribed queue, valid
    // against the published schema, with the filter attributes.
    let msgs = receive_all(&m.sqs, &m.queue_url).await;
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    let body: Value = serde_json::from_str(msgs[0].body().unwrap()).unwrap();
    let schema: Value = serde_json::from_str(fieldgate::ports::HANDOFF_JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?} in {body:#}");
    assert_eq!(body["proposal_id"], id.to_string());
    assert_eq!(body["salesforce_id"], case_id.as_str());
    assert_eq!(body["dedupe_key"], format!("{id}:committed"));
    assert_eq!(body["photos"], 3);
    let attrs = msgs[0].message_attributes().expect("attributes delivered");
    let attr = |k: &str| attrs[k].string_value().unwrap().to_owned();
    assert_eq!(attr("workflow"), "field-service-case");
    assert_eq!(attr("event"), "committed");
    assert_eq!(
        attr("priority"),
        body["priority"].as_str().unwrap_or("none")
    );
    assert!(
        receive_all(&m.sqs, &m.other_queue_url).await.is_empty(),
        "the filter policy kept it from the other subscriber"
    );

    // Nothing went astray: no failed stream records, no local files.
    assert!(structure_stream.failed.is_empty() && commit_stream.failed.is_empty());
    assert_eq!(
        std::fs::read_dir(data_dir.path()).unwrap().count(),
        0,
        "in AWS mode nothing is written to local files"
    );
    let events = store.events(id).await.unwrap();
    fieldgate::domain::verify_chain(&events).unwrap();
    assert_eq!(events.last().unwrap().to, Status::Committed);
    // What `fieldgate audit verify` checks, across the inbox and P# items.
    let audit = fieldgate_cli::audit::verify_store(store.as_ref(), None)
        .await
        .unwrap();
    assert_eq!((audit.proposals, audit.breaks.len()), (1, 0), "{audit:?}");

    // The request budget of one lifecycle with photos (BENCHMARKS.md; the
    // same with one photo or three: the photos are recorded in the writes
    // the lifecycle makes anyway): a regression fails here.
    eprintln!("{}", recorded.report("lifecycle with three photos"));
    let budget = [
        // The form: one BatchGetItem (the code's revocation, the asset
        // cache), no write; the report: one BatchGetItem (the same, the
        // idempotency key, the rate-limit window) and one
        // TransactWriteItems (the inbox item, its event, the key, the
        // asset cache entry the form's signed context carried, the window
        // counted on the condition of the limit).
        ("QrIntakeFunction", 3),
        // The duplicate lookup's Query (which also tells a stale record),
        // then structured + links in one transaction, then the mail's
        // record: no read, the stream record's image is the start.
        ("StructureFunction", 3),
        // The page's read; the decision's read and its transaction.
        ("ApprovalFunction", 3),
        // The claim; the record, the photos and COMMITTED; the handoff and
        // the reporter's outcome mail (the form gave an address).
        ("CommitFunction", 3),
    ];
    let counts = recorded.counts();
    for ((function, ops), (f, most)) in counts.iter().zip(budget) {
        assert_eq!(*function, f);
        let n: usize = ops.values().sum();
        assert!(
            n <= most,
            "{function}: {n} requests, budget {most}: {ops:?}"
        );
    }
    let total: usize = counts.iter().flat_map(|(_, ops)| ops.values()).sum();
    assert!(total <= 12, "{total} requests per lifecycle, budget 12");
    for (i, what) in [(1, "structure step"), (3, "commit step")] {
        assert_eq!(
            counts[i].1.get("GetItem"),
            None,
            "the {what} read the proposal: {:?}",
            counts[i].1
        );
    }
    assert_eq!(
        counts[0].1.get("GetItem"),
        None,
        "the intake read an item alone: {:?}",
        counts[0].1
    );
    assert_eq!(
        counts[0].1.get("PutItem"),
        None,
        "the intake wrote an item alone (the asset cache?): {:?}",
        counts[0].1
    );
    // The asset cache entry went in the report's transaction, as the form
    // showed it, without a second Salesforce query.
    let cache_pk = format!("A#{}", asset.id);
    let puts_of_the_report: Vec<Value> = recorded
        .intake
        .sent()
        .iter()
        .filter(|s| s.op == "TransactWriteItems")
        .flat_map(|s| {
            s.body["TransactItems"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|i| i.get("Put").cloned())
        .collect();
    assert!(
        puts_of_the_report
            .iter()
            .any(|p| p["Item"]["PK"]["S"] == cache_pk.as_str()),
        "{cache_pk} in the report's transaction: {puts_of_the_report:#?}"
    );
    let cached = store
        .cached_asset(&asset.id.parse().unwrap())
        .await
        .unwrap()
        .expect("cached by the report");
    assert_eq!(cached.asset, received[0].asset);
    assert_eq!(
        calls_after_the_form, calls_after_the_report,
        "the report asked Salesforce nothing: the form's context stood in"
    );

    // A stale record redelivered (the APPROVED one, after the commit is
    // done): its image loses the conditional claim, the step reads what
    // is stored and finds nothing to do. Still one Case, one message.
    let mut approved = p.clone();
    let events = store.events(id).await.unwrap();
    let approved_at = events
        .iter()
        .find(|e| e.to == Status::Approved)
        .expect("an approval event");
    approved.status = Status::Approved;
    approved.version = u64::from(approved_at.seq);
    approved.commit = Default::default();
    let mut event = aws_lambda_events::dynamodb::Event::default();
    event.records = vec![fieldgate::stream::change_record(None, &approved, 99)];
    let before = recorded.commit.sent().len();
    let answer = fieldgate_commit::handle_stream(&commit, event).await;
    assert!(answer.batch_item_failures.is_empty());
    let redelivery: Vec<String> = recorded.commit.sent()[before..]
        .iter()
        .map(|s| s.op.clone())
        .collect();
    assert_eq!(
        redelivery,
        ["TransactWriteItems", "GetItem"],
        "a lost claim, then one read"
    );
    assert_eq!(emulator.records("Case").len(), 1);
    assert!(receive_all(&m.sqs, &m.queue_url).await.is_empty());

    // Every request each function sent is one its IAM policy in
    // template.yaml allows; the intake wrote the inbox item, never P#.
    recorded.assert_within_the_template();
    let intake_writes = aws::writes(&recorded.intake.sent());
    assert!(
        intake_writes.contains(&("dynamodb:PutItem", format!("R#{id}"))),
        "{intake_writes:?}"
    );
    assert!(
        intake_writes.iter().all(|(_, pk)| !pk.starts_with("P#")),
        "the intake wrote a proposal item: {intake_writes:?}"
    );

    // 7. A presigned PUT from "the browser", then checked before use.
    let media = S3Media::new(m.s3.clone(), &m.bucket, "");
    let png = b"\x89PNG\r\n\x1a\n0000IHDR-small-image";
    let put = media
        .presign_put(
            "photos/direct.png",
            "image/png",
            png.len() as u64,
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    let mut req = reqwest::Client::new().put(&put.url).body(png.to_vec());
    for (k, v) in &put.headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let up = media
        .check_upload("photos/direct.png", 1024, &["image/png", "image/jpeg"])
        .await
        .unwrap()
        .expect("uploaded");
    assert_eq!(
        (up.bytes, up.content_type.as_str()),
        (png.len() as u64, "image/png")
    );
    assert!(
        media
            .check_upload("photos/direct.png", 8, &["image/png"])
            .await
            .is_err(),
        "too large is refused"
    );
    assert_eq!(
        media
            .check_upload("photos/direct.png", 1024, &["image/png"])
            .await
            .unwrap(),
        None,
        "and the refused object is gone"
    );
}

/// What a compromised public function could write with its role, checked
/// against template.yaml before it is written: the forgery stays within
/// the role's `dynamodb:LeadingKeys`.
async fn forge(table: &aws::Table, role: &str, item: HashMap<String, AttributeValue>) {
    let pk = item["PK"].as_s().unwrap().clone();
    let grants = template::grants(role);
    assert!(
        grants
            .iter()
            .any(|g| g.allows("dynamodb:PutItem", template::TABLE_ARN, Some(&pk))),
        "{role} may not write {pk}: the attack must use only what the role allows"
    );
    table
        .store
        .client()
        .put_item()
        .table_name(table.store.table())
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

/// A proposal's items as the intake would write them, but with whatever
/// the attacker wants in them: `R#{id}` and its first event.
async fn forge_inbox(table: &aws::Table, role: &str, p: &Proposal, first: &AuditEvent) {
    let mut item: HashMap<String, AttributeValue> = fieldgate::stream::proposal_item(p).into();
    item.insert("PK".into(), AttributeValue::S(format!("R#{}", p.id)));
    forge(table, role, item).await;
    let mut ev: HashMap<String, AttributeValue> = serde_dynamo::to_item(first).unwrap();
    ev.insert("PK".into(), AttributeValue::S(format!("R#{}", p.id)));
    ev.insert("SK".into(), AttributeValue::S("EV#000001".into()));
    forge(table, role, ev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compromised_public_function_cannot_get_a_record_written() {
    let Stack {
        table,
        keys,
        emulator,
        structure,
        approval,
        commit,
        store,
        ..
    } = stack().await;
    let now = SystemClock.now();
    let demo = emulator.demo_assets()[0].clone();
    let asset = AssetContext {
        id: demo.id.parse().unwrap(),
        name: demo.name.clone(),
        serial_number: None,
        account_id: None,
        account_name: None,
        location: None,
    };
    let report = |notes: &str| {
        Proposal::receive(
            new_proposal_id(SystemClock.now()),
            "field-service-case".parse().unwrap(),
            asset.clone(),
            Intake {
                notes: notes.to_owned(),
                reporter: Some("attacker@example.com".into()),
                photos: vec![],
                received_at: now,
                assistant: None,
            },
            now,
        )
    };
    // The state a later step would set, written by the attacker: fields,
    // a review link whose token it holds, a reviewer's approval of them.
    let forged_state = |p: &mut Proposal, token: &ReviewToken| {
        let mut fields = Fields::new();
        fields.insert(
            "Subject".into(),
            FieldValue {
                value: "Forged: transfer the asset to account X".into(),
                ..Default::default()
            },
        );
        let hash = p.push_revision(fields, Actor::system("structure"), now);
        p.review.round = 1;
        p.review.mailed = true;
        p.review.expires_at = Some(now + time::Duration::days(7));
        p.review.grants = vec![ReviewGrant {
            reviewer: "service-desk@example.com".into(),
            token_hash: token.hash(),
        }];
        p.decision = Some(Decision {
            kind: DecisionKind::Approve,
            by: "service-desk@example.com".into(),
            at: now,
            revision_hash: hash,
            reason: None,
            token_hash: token.hash(),
            add_to: None,
        });
    };

    // A P#-shaped forgery cannot even be sent: neither public role may
    // write, update or delete any P# key.
    let probe = format!("P#{}", new_proposal_id(now));
    for role in ["QrIntakeFunction", "McpFunction"] {
        for action in [
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        ] {
            assert!(
                !template::grants(role).iter().any(|g| g.allows(
                    action,
                    template::TABLE_ARN,
                    Some(&probe)
                )),
                "{role} may {action} {probe}"
            );
        }
    }

    // A: an inbox item claiming APPROVED (decision, revision, grant), as
    // the mcp role could write it.
    let a = report("forged approved report");
    let token_a = ReviewToken::generate(a.proposal.id, &mut rand::rng());
    let mut forged_a = a.proposal.clone();
    forged_state(&mut forged_a, &token_a);
    forged_a.status = Status::Approved;
    forge_inbox(&table, "McpFunction", &forged_a, &a.event).await;
    // B: a RECEIVED inbox item, as the intake stores one, carrying a live
    // review link of the attacker's and an approval.
    let marker = new_proposal_id(now).to_string();
    let b = report(&format!(
        "Compressor trips on high pressure, urgent ({marker})"
    ));
    let token_b = ReviewToken::generate(b.proposal.id, &mut rand::rng());
    let mut forged_b = b.proposal.clone();
    forged_state(&mut forged_b, &token_b);
    forge_inbox(&table, "QrIntakeFunction", &forged_b, &b.event).await;
    // C: a RECEIVED inbox item that no intake writes (a later version).
    let c = report("forged later version");
    let mut forged_c = c.proposal.clone();
    forged_c.version = 5;
    forged_c.event_count = 4;
    forge_inbox(&table, "QrIntakeFunction", &forged_c, &c.event).await;

    // The store never reads A as a proposal, nor lists it as APPROVED.
    assert_eq!(store.get(a.proposal.id).await.unwrap(), None);
    assert!(
        store
            .list_by_status(Status::Approved, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // The structure step on its stream: B is structured as any report
    // (fresh revision and links, mailed); A is not RECEIVED, C is refused.
    let mut structure_stream = table.poller(StreamFilter::structure());
    let p = drive(
        &mut structure_stream,
        |ev| fieldgate_structure::handle_stream(&structure, ev),
        store.as_ref(),
        b.proposal.id,
        |p| p.status == Status::PendingReview && p.review.mailed,
    )
    .await;
    assert!(structure_stream.failed.is_empty());
    assert_eq!(p.revisions.len(), 1, "the forged revision is gone");
    assert!(
        !p.current().unwrap().fields["Subject"]
            .text()
            .unwrap()
            .contains("Forged"),
        "{:?}",
        p.current()
    );
    assert!(p.decision.is_none(), "the forged decision is gone");
    assert!(p.grant_for(&token_b.hash()).is_none());
    assert!(!p.review.replaced.contains(&token_b.hash()));
    let swept = fieldgate_structure::sweep(&structure, now + time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(swept.failed, 0, "{swept:?}");
    assert_eq!(store.get(a.proposal.id).await.unwrap(), None);
    let c_now = store.get(c.proposal.id).await.unwrap().unwrap();
    assert_eq!(
        (c_now.status, c_now.version),
        (Status::Received, 5),
        "C was not structured"
    );

    // The attacker's review links open nothing and approve nothing, even
    // with a form token made from the link key (the function can read it).
    for (token, id) in [(&token_a, a.proposal.id), (&token_b, b.proposal.id)] {
        let link = format!("/r/{token}");
        let (status, _) = send(&approval, get(&link)).await;
        assert_eq!(status, 404, "{link}");
        let form = serde_urlencoded::to_string([
            ("decision", "approve"),
            ("csrf", keys.links.token_for(&token.hash()).as_str()),
            ("revision", p.current_hash().unwrap()),
        ])
        .unwrap();
        let (status, _) = send(
            &approval,
            http::Request::builder()
                .method("POST")
                .uri(&link)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
        assert_eq!(status, 404, "POST {link}");
        let now_p = store.get(id).await.unwrap();
        assert!(now_p.is_none_or(|p| p.status == Status::PendingReview));
    }

    // The commit step: its stream filter drops A's record; handed A's
    // record anyway, it finds no approved proposal; its sweep finds none.
    let mut rec = fieldgate::stream::change_record(None, &forged_a, 1);
    let inbox_key = serde_dynamo::AttributeValue::S(format!("R#{}", a.proposal.id));
    rec.change.keys.insert("PK".into(), inbox_key.clone());
    rec.change.new_image.insert("PK".into(), inbox_key);
    assert!(!StreamFilter::commit().matches(&rec));
    let mut event = aws_lambda_events::dynamodb::Event::default();
    event.records = vec![rec];
    let answer = fieldgate_commit::handle_stream(&commit, event).await;
    assert!(answer.batch_item_failures.is_empty());
    fieldgate_commit::sweep(&commit, SystemClock.now())
        .await
        .unwrap();
    let mut commit_stream = table.poller(StreamFilter::commit());
    commit_stream
        .poll(|ev| fieldgate_commit::handle_stream(&commit, ev))
        .await
        .unwrap();
    assert!(
        emulator.records("Case").is_empty(),
        "a record was written without a reviewer: {:#?}",
        emulator.records("Case")
    );

    // Only the reviewer's own link, from the mail, approves B; then one
    // Case, with the reviewer's values.
    let link = review_link(&marker).await;
    let (status, page) = send(&approval, get(&link)).await;
    assert_eq!(status, 200, "{page}");
    let form = approve_form(&page, "Compressor trips on high pressure");
    let (status, decided) = send(
        &approval,
        http::Request::builder()
            .method("POST")
            .uri(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    drive(
        &mut commit_stream,
        |ev| fieldgate_commit::handle_stream(&commit, ev),
        store.as_ref(),
        b.proposal.id,
        |p| p.status == Status::Committed && p.commit.handoff_published,
    )
    .await;
    let cases = emulator.records("Case");
    assert_eq!(cases.len(), 1, "{cases:#?}");
    assert_eq!(cases[0]["Subject"], "Compressor trips on high pressure");
    assert_eq!(
        cases[0]["Fieldgate_Proposal_Id__c"],
        b.proposal.id.to_string()
    );

    // The chain verifies; an overwrite of the received event (the role
    // may write R#) shows as a break, it cannot pass for the original.
    let audit = fieldgate_cli::audit::verify_store(store.as_ref(), Some(b.proposal.id))
        .await
        .unwrap();
    assert!(audit.breaks.is_empty(), "{:?}", audit.breaks);
    let mut rewritten = b.event.clone();
    rewritten.detail = json!({"note": "rewritten"});
    forge_inbox(&table, "QrIntakeFunction", &forged_b, &rewritten.sealed()).await;
    let audit = fieldgate_cli::audit::verify_store(store.as_ref(), Some(b.proposal.id))
        .await
        .unwrap();
    assert_eq!(audit.breaks.len(), 1, "{:?}", audit.breaks);
    // That rewrite made the inbox item a RECEIVED one again: the structure
    // step, re-driven on it, cannot touch the proposal it became.
    fieldgate_structure::process(&structure, b.proposal.id)
        .await
        .unwrap();
    let p = store.get(b.proposal.id).await.unwrap().unwrap();
    assert_eq!(p.status, Status::Committed);
    assert_eq!(emulator.records("Case").len(), 1);
}
