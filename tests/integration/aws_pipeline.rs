//! The whole pipeline on the AWS adapters: DynamoDB Local (store and
//! stream), moto (S3, SES, SNS → SQS, Secrets Manager) and the Salesforce
//! emulator. The adapters come from the composition root and the variables
//! the template gives a Lambda (as a lookup, not the process environment);
//! each step runs its own handler, the stream steps fed by the poller with
//! the template's filters.

use crate::aws;

use aws_sdk_sqs::types::QueueAttributeName;
use axum::Router;
use axum::body::Body;
use fieldgate::aws::poller::{StreamFilter, StreamPoller};
use fieldgate::aws::s3::S3Media;
use fieldgate::clock::{SystemClock, new_proposal_id};
use fieldgate::compose::{Components, Keys};
use fieldgate::config::Config;
use fieldgate::domain::{Clock, ProposalId, Status};
use fieldgate::ports::ProposalStore;
use fieldgate_sf_emulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator, EmulatorConfig};
use fieldgate_tests::{hidden, jpeg};
use serde_json::{Value, json};
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

/// A form part: name, optional (file name, content type), bytes.
type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

fn multipart(path: &str, parts: &[Part<'_>]) -> Request {
    let b = "fgBoundary7";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{b}\r\n").as_bytes());
        match file {
            Some((f, ct)) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: {ct}\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", format!("multipart/form-data; boundary={b}"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scan_to_handoff_on_dynamodb_local_moto_and_the_emulator() {
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
    let config = Config::from_lookup(&|k| vars.get(k).cloned()).expect("configuration");
    let parts = Components::new(config);

    let intake = fieldgate_qr_intake::router(Arc::new(
        fieldgate_qr_intake::IntakeDeps::build(&parts, Default::default())
            .await
            .unwrap(),
    ));
    let structure = fieldgate_structure::Structure::build(&parts).await.unwrap();
    let approval = fieldgate_approval::router(Arc::new(
        fieldgate_approval::ApprovalDeps::build(&parts)
            .await
            .unwrap(),
    ));
    let commit = fieldgate_commit::Commit::build(&parts).await.unwrap();
    let store = parts.store().await.unwrap();

    // 1. Scan and submit, with a photo.
    let asset = emulator.demo_assets()[0].clone();
    let code = keys.qr.sign(
        &asset.id.parse().unwrap(),
        &"field-service-case".parse().unwrap(),
    );
    let path = format!("/q/{code}");
    let (status, form) = send(&intake, get(&path)).await;
    assert_eq!(status, 200, "{form}");
    assert!(form.contains(&asset.name), "asset looked up in Salesforce");
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
                ("reporter", None, b"tech@example.com"),
                ("idem", None, idem.as_bytes()),
            ],
        ),
    )
    .await;
    assert_eq!(status, 201, "{done}");
    let received = store.list_by_status(Status::Received, 10).await.unwrap();
    assert_eq!(received.len(), 1);
    let id = received[0].id;
    let photo_ref = received[0].intake.photo.clone().expect("photo kept");

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
    let form = serde_urlencoded::to_string([
        ("decision", "approve"),
        ("csrf", hidden(&page, "csrf").as_str()),
        ("revision", hidden(&page, "revision").as_str()),
        ("Subject", "Compressor trips on high pressure"),
    ])
    .unwrap();
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
        1,
        "the photo went from S3 to Salesforce"
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
