//! Cold-start benchmark: each function binary, and a hello-world
//! `lambda_http` / `lambda_runtime` binary built with the same crate
//! versions and profile, started N times under the same Runtime API
//! emulator (`fieldgate_tests::runtime_api`) with its first event already
//! queued; measures exec → first response, the CPU the process used by
//! then (all threads, from /proc/<pid>/task/*/schedstat) and its peak RSS
//! (VmHWM). The functions get the template's environment against the
//! stand-ins: FIELDGATE_TABLE in DynamoDB Local, the secrets in moto's
//! Secrets Manager, the Salesforce emulator. Structure starts twice: on its
//! sweep, and on its real first job, a new report's stream record (the
//! report made before each run by a warm qr-intake, which is not measured).
//!
//! Build every binary with one profile, then run (stand-ins up, e.g. in
//! `infra/scripts/test.sh`'s environment):
//!
//! ```text
//! cargo build --release -p fieldgate-tests --bins
//! target/release/bench-cold-start 20
//! target/release/bench-cold-start --logs   # one run each, debug logs
//! target/release/bench-cold-start --callgrind   # instructions, one run each (valgrind)
//! ```
//!
//! It finds the binaries beside itself, so they come from the same build.

use fieldgate::compose::Keys;
use fieldgate_sf_emulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator, EmulatorConfig};
use fieldgate_tests::events::{HttpApiRequest, HttpApiResponse, multipart, scheduled_event};
use fieldgate_tests::runtime_api::{LambdaProcess, Outcome, RuntimeApi};
use fieldgate_tests::streams::StreamFeed;
use fieldgate_tests::template;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start DynamoDB Local and moto (infra/scripts/setup.d/) first")
    })
}

/// One call of an AWS JSON-protocol API on a stand-in (they read the
/// credential scope, not the signature).
async fn aws_json(endpoint: &str, target: &str, version: &str, body: Value) -> Value {
    let service = if target.starts_with("DynamoDB") {
        "dynamodb"
    } else {
        "secretsmanager"
    };
    let resp = reqwest::Client::new()
        .post(endpoint)
        .header("content-type", format!("application/x-amz-json-{version}"))
        .header("x-amz-target", target)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/{service}/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .body(body.to_string())
        .send()
        .await
        .expect("the stand-in answers");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{target}: {status} {v}");
    v
}

struct Target {
    name: &'static str,
    /// The baseline it is compared with.
    baseline: &'static str,
    exe: PathBuf,
    env: BTreeMap<String, String>,
    event: Event,
    /// What makes its first answer a success.
    check: fn(&Value) -> bool,
}

enum Event {
    /// The same event every run.
    Fixed(Value),
    /// A new report's INSERT record from the table's stream, as the
    /// event-source mapping delivers it ([`Reports`]): each run structures
    /// a report of its own.
    NewReport,
}

/// Makes a report per run through a warm qr-intake (not measured) and
/// reads its record from DynamoDB Local's stream.
struct Reports {
    intake: LambdaProcess,
    feed: StreamFeed,
    filter: Value,
    path: String,
    made: usize,
}

impl Reports {
    async fn next(&mut self) -> Value {
        self.made += 1;
        let idem = format!("bench-report-{}-{}", std::process::id(), self.made);
        // A note the rules decide (the model, the cues and the quote all
        // run), like most reports.
        let notes = "Compressor trips on high pressure twice a day, oil under the unit, \
                     store moving stock to the back freezer";
        let (content_type, body) = multipart(&[
            ("notes", None, notes.as_bytes()),
            ("idem", None, idem.as_bytes()),
        ]);
        let req = HttpApiRequest::post("ANY /q/{code}", &self.path, &content_type, &body);
        let resp = HttpApiResponse::parse(&self.intake.invoke(&req.event()).await.json());
        assert_eq!(
            resp.status,
            201,
            "intake: {}\n{}",
            resp.text(),
            self.intake.logs()
        );
        let records = self
            .feed
            .next_matching(&self.filter, "no stream record for the new report".into())
            .await;
        assert_eq!(records.len(), 1, "one new report, one record: {records:?}");
        json!({ "Records": records })
    }

    async fn event(&mut self, e: &Event) -> Value {
        match e {
            Event::Fixed(v) => v.clone(),
            Event::NewReport => self.next().await,
        }
    }
}

fn http_status(v: &Value, ok: &[u16]) -> bool {
    ok.contains(&HttpApiResponse::parse(v).status)
}

struct Run {
    /// exec -> first `/invocation/next`: the init Lambda reports.
    init: Duration,
    wall: Duration,
    cpu: Duration,
    rss_kib: u64,
}

/// CPU time of every thread of `pid` so far.
fn cpu_of(pid: u32) -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

async fn cold_start(t: &Target, reports: &mut Reports) -> Run {
    let event = reports.event(&t.event).await;
    let api = RuntimeApi::start(t.name, Duration::from_secs(30)).await;
    // Queued before exec, as Lambda holds the event while the sandbox
    // starts: the time measured is start-up plus the first event.
    let answer = api.enqueue(&event);
    let f = LambdaProcess::start_on(t.name, &t.exe, &t.env, api);
    let out = f.wait(answer).await;
    let wall = f.started.elapsed();
    let init = f
        .api
        .first_next()
        .expect("a runtime that answered asked for its event")
        .duration_since(f.started);
    let cpu = cpu_of(f.pid());
    let rss_kib = f.peak_rss_kib().unwrap_or(0);
    expect_success(t, &f, &out);
    Run {
        init,
        wall,
        cpu,
        rss_kib,
    }
}

/// Fails the run unless the function's first answer is what `t` expects.
fn expect_success(t: &Target, f: &LambdaProcess, out: &Outcome) {
    match out {
        Outcome::Response(_) if (t.check)(&out.json()) => {}
        other => panic!(
            "{}: unexpected first answer {other:?}\n{}",
            t.name,
            f.logs()
        ),
    }
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(15);
    // `--logs`: one run each at debug level, printing the function's log
    // lines (with their timestamps: where start-up goes).
    let logs = args.iter().any(|a| a == "--logs");
    // `--callgrind`: one run each under valgrind's callgrind, counting the
    // instructions from exec until the runtime asks for its second event:
    // the same count on a busy machine as on a quiet one.
    let callgrind = args.iter().any(|a| a == "--callgrind");
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let profile = dir.file_name().unwrap().to_string_lossy().into_owned();
    let exe = |name: &str| {
        let p = dir.join(name);
        assert!(
            p.exists(),
            "{} is missing: build every binary with one profile first \
             (cargo build --release -p fieldgate-tests --bins)",
            p.display()
        );
        p
    };

    // The deployment's resources, on the stand-ins.
    let ddb = need("AWS_ENDPOINT_URL_DYNAMODB");
    let moto = need("AWS_ENDPOINT_URL");
    let tag = std::process::id();
    let table = format!("fieldgate-bench-{tag}");
    let key = |n: &str| json!({"AttributeName": n, "AttributeType": "S"});
    let created = aws_json(
        &ddb,
        "DynamoDB_20120810.CreateTable",
        "1.0",
        json!({
            "TableName": table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [key("PK"), key("SK"), key("gsi_status"), key("created_at")],
            "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            "GlobalSecondaryIndexes": [{
                "IndexName": "by_status",
                "KeySchema": [{"AttributeName": "gsi_status", "KeyType": "HASH"}, {"AttributeName": "created_at", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"}
            }],
            "StreamSpecification": {"StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        }),
    )
    .await;
    let keys = Keys::generate();
    let secret = |name: String, value: String| {
        let moto = moto.clone();
        async move {
            aws_json(
                &moto,
                "secretsmanager.CreateSecret",
                "1.1",
                json!({"Name": name, "SecretString": value}),
            )
            .await["ARN"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let keys_arn = secret(
        format!("fg-bench-keys-{tag}"),
        serde_json::to_string(&keys).unwrap(),
    )
    .await;
    let sf_arn = secret(
        format!("fg-bench-sf-{tag}"),
        json!({"client_secret": DEFAULT_CLIENT_SECRET}).to_string(),
    )
    .await;
    let bucket = format!("fg-bench-{tag}");
    let put = reqwest::Client::new()
        .put(format!("{moto}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "create bucket: {}", put.status());
    let emulator = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sf_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(emulator.clone().serve(listener));

    let refs: HashMap<&str, String> = [
        ("Table", table.clone()),
        ("PhotoBucket", bucket),
        (
            "HandoffTopic",
            "arn:aws:sns:us-east-1:123456789012:fg-bench".into(),
        ),
        ("SalesforceSecret", sf_arn.clone()),
        ("SalesforceReadSecret", sf_arn),
        ("SalesforceReadClientId", String::new()),
        ("SalesforceReadUsername", String::new()),
        ("KeysSecret", keys_arn),
        ("SalesforceLoginUrl", sf_url),
        ("SalesforceApiVersion", "66.0".into()),
        ("SalesforceClientId", DEFAULT_CLIENT_ID.into()),
        ("SalesforceUsername", String::new()),
        ("MailFrom", "fieldgate@example.com".into()),
        ("ReviewerEmails", String::new()),
        ("SesConfigurationSet", String::new()),
        ("PublicUrl", "https://fg.example".into()),
        ("LogLevel", "info".into()),
        ("AdminTokenHash", String::new()),
    ]
    .into_iter()
    .collect();
    let conditions: HashMap<&str, bool> = [
        ("HasPublicUrl", true),
        ("HasConfigurationSet", false),
        ("HasReadClientId", false),
        // The parameter's default: no admin page (as the Lambda tests).
        ("AdminEnabled", false),
    ]
    .into_iter()
    .collect();
    let aws_env: BTreeMap<String, String> = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
    ]
    .into_iter()
    .map(|v| (v.to_owned(), need(v)))
    .chain([("FIELDGATE_S3_PATH_STYLE".to_owned(), "1".to_owned())])
    .collect();
    let env = |resource: &str| {
        let mut e = template::environment(resource, &refs, &conditions);
        e.extend(aws_env.clone());
        if logs {
            e.insert("RUST_LOG".into(), "debug".into());
            // Empty: the level comes from RUST_LOG, SDK crates included.
            e.insert("AWS_LAMBDA_LOG_LEVEL".into(), String::new());
        }
        e
    };

    let asset = emulator.demo_assets()[0].clone();
    let code = keys.qr.sign(
        &asset.id.parse().unwrap(),
        &"field-service-case".parse().unwrap(),
    );
    let form_path = format!("/q/{code}");
    let mcp_body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    // The review mail's sender, as a deployment verifies it in SES.
    let ses = reqwest::Client::new()
        .post(format!("{moto}/v2/email/identities"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/ses/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .json(&json!({"EmailIdentity": "fieldgate@example.com"}))
        .send()
        .await
        .expect("moto answers");
    assert!(ses.status().is_success(), "SES identity: {}", ses.status());
    let stream_arn = created["TableDescription"]["LatestStreamArn"]
        .as_str()
        .expect("the table has a stream")
        .to_owned();
    let mut reports = Reports {
        intake: LambdaProcess::start(
            "qr-intake (makes reports)",
            &exe("lambda-qr-intake"),
            &env("QrIntakeFunction"),
            Duration::from_secs(30),
        )
        .await,
        feed: StreamFeed::new(&ddb, &stream_arn),
        filter: template::stream_filter("StructureFunction"),
        path: form_path.clone(),
        made: 0,
    };
    let targets = vec![
        Target {
            name: "hello-http",
            baseline: "hello-http",
            exe: exe("bench-hello-http"),
            env: aws_env.clone(),
            event: Event::Fixed(HttpApiRequest::get("GET /", "/").event()),
            check: |v| http_status(v, &[200]),
        },
        Target {
            name: "hello-runtime",
            baseline: "hello-runtime",
            exe: exe("bench-hello-runtime"),
            env: aws_env.clone(),
            event: Event::Fixed(json!({"hello": "world"})),
            check: |v| v["hello"] == "world",
        },
        Target {
            name: "qr-intake (form GET)",
            baseline: "hello-http",
            exe: exe("lambda-qr-intake"),
            env: env("QrIntakeFunction"),
            event: Event::Fixed(HttpApiRequest::get("ANY /q/{code}", &form_path).event()),
            check: |v| http_status(v, &[200]),
        },
        Target {
            name: "approval (page GET)",
            baseline: "hello-http",
            exe: exe("lambda-approval"),
            env: env("ApprovalFunction"),
            event: Event::Fixed(HttpApiRequest::get("ANY /r/{token}", "/r/not-a-token").event()),
            check: |v| http_status(v, &[400, 403, 404, 410]),
        },
        Target {
            name: "mcp (tools/list, no token)",
            baseline: "hello-http",
            exe: exe("lambda-mcp"),
            env: env("McpFunction"),
            event: Event::Fixed(
                HttpApiRequest::post("ANY /mcp", "/mcp", "application/json", mcp_body.as_bytes())
                    .header("accept", "application/json, text/event-stream")
                    .event(),
            ),
            check: |v| http_status(v, &[401]),
        },
        Target {
            name: "structure (sweep)",
            baseline: "hello-runtime",
            exe: exe("lambda-structure"),
            env: env("StructureFunction"),
            event: Event::Fixed(scheduled_event("bench")),
            check: |v| v.get("redriven").is_some(),
        },
        Target {
            // Its real first job: a new report's record, structured by the
            // rules (the shipped model loaded), a duplicate lookup in
            // Salesforce, the review mail.
            name: "structure (new report)",
            baseline: "hello-runtime",
            exe: exe("lambda-structure"),
            env: env("StructureFunction"),
            event: Event::NewReport,
            check: |v| v["batchItemFailures"] == json!([]),
        },
        Target {
            name: "commit (sweep)",
            baseline: "hello-runtime",
            exe: exe("lambda-commit"),
            env: env("CommitFunction"),
            event: Event::Fixed(scheduled_event("bench")),
            check: |v| v.get("commit").is_some(),
        },
    ];

    if logs {
        for t in &targets {
            let event = reports.event(&t.event).await;
            let api = RuntimeApi::start(t.name, Duration::from_secs(30)).await;
            let answer = api.enqueue(&event);
            let f = LambdaProcess::start_on(t.name, &t.exe, &t.env, api);
            f.wait(answer).await;
            println!(
                "== {} ({:.1} ms)\n{}",
                t.name,
                ms(f.started.elapsed()),
                f.logs()
            );
        }
        return;
    }
    if callgrind {
        count_instructions(&targets, &mut reports).await;
        return;
    }
    // Round-robin, so load from elsewhere on the machine spreads evenly.
    let mut runs: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
    let started = Instant::now();
    for _ in 0..n {
        for (t, r) in targets.iter().zip(runs.iter_mut()) {
            r.push(cold_start(t, &mut reports).await);
        }
    }
    let medians: Vec<(Duration, Duration, Duration, u64)> = runs
        .iter()
        .map(|r| {
            (
                median(r.iter().map(|x| x.init).collect()),
                median(r.iter().map(|x| x.wall).collect()),
                median(r.iter().map(|x| x.cpu).collect()),
                median(r.iter().map(|x| x.rss_kib).collect()),
            )
        })
        .collect();
    let base = |name: &str| {
        let i = targets.iter().position(|t| t.name == name).unwrap();
        medians[i]
    };
    println!(
        "cold start, {profile} build, {n} runs each (median), {:.0} s; init = exec -> first \
         /invocation/next, wall = exec -> first response, cpu = by the first response",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<28} {:>8} {:>7} {:>9} {:>7} {:>9} {:>7} {:>9}",
        "binary", "init ms", "x base", "wall ms", "x base", "cpu ms", "x base", "peak MB"
    );
    for (t, (init, wall, cpu, rss)) in targets.iter().zip(&medians) {
        let (bi, bw, bc, _) = base(t.baseline);
        println!(
            "{:<28} {:>8.1} {:>7.2} {:>9.1} {:>7.2} {:>9.1} {:>7.2} {:>9.1}",
            t.name,
            ms(*init),
            ms(*init) / ms(bi),
            ms(*wall),
            ms(*wall) / ms(bw),
            ms(*cpu),
            ms(*cpu) / ms(bc).max(0.001),
            *rss as f64 / 1024.0
        );
    }
}

/// A program on `PATH`.
fn on_path(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{program} is not on PATH (Debian: apt-get install valgrind)"))
}

/// Instructions each binary runs from exec until it asks for its second
/// event (the first answered), counted by callgrind and dumped with
/// `callgrind_control` while the process waits on the Runtime API.
async fn count_instructions(targets: &[Target], reports: &mut Reports) {
    let valgrind = on_path("valgrind");
    let control = on_path("callgrind_control");
    let dir = std::env::temp_dir().join(format!("fg-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut counts: Vec<u64> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let out = dir.join(format!("{i}.out"));
        let wrapper: Vec<std::ffi::OsString> = vec![
            valgrind.clone().into(),
            "--tool=callgrind".into(),
            "--quiet".into(),
            format!("--callgrind-out-file={}", out.display()).into(),
        ];
        let event = reports.event(&t.event).await;
        // Valgrind runs the start-up some 50 times slower.
        let api = RuntimeApi::start(t.name, Duration::from_secs(120)).await;
        let answer = api.enqueue(&event);
        let f = LambdaProcess::start_under(t.name, &wrapper, &t.exe, &t.env, api);
        let first = f.wait(answer).await;
        expect_success(t, &f, &first);
        f.api.wait_polls(2).await;
        let dumped = std::process::Command::new(&control)
            .arg("--dump")
            .arg(f.pid().to_string())
            .output()
            .expect("callgrind_control runs");
        assert!(
            dumped.status.success(),
            "callgrind_control: {}",
            String::from_utf8_lossy(&dumped.stderr)
        );
        // The first dump on request is written as `<file>.1`.
        let dump = std::fs::read_to_string(dir.join(format!("{i}.out.1")))
            .unwrap_or_else(|e| panic!("{}: no callgrind dump: {e}", t.name));
        let ir = dump
            .lines()
            .find_map(|l| l.strip_prefix("summary:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{}: no summary line in the dump", t.name));
        counts.push(ir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "instructions from exec until the runtime asks for its second event (callgrind, one run each)"
    );
    println!("{:<28} {:>14} {:>7}", "binary", "instructions", "x base");
    for (t, ir) in targets.iter().zip(&counts) {
        let base = targets.iter().position(|b| b.name == t.baseline).unwrap();
        println!(
            "{:<28} {:>14} {:>7.2}",
            t.name,
            ir,
            *ir as f64 / counts[base] as f64
        );
    }
}
