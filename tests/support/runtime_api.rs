//! A Lambda Runtime API of our own, so the real function binaries run as
//! they do in Lambda: the process starts with `AWS_LAMBDA_RUNTIME_API`
//! pointing here, long-polls `GET /2018-06-01/runtime/invocation/next`,
//! answers on `POST …/invocation/{id}/response` or `…/{id}/error`, and
//! reports a failed start on `POST /2018-06-01/runtime/init/error`.
//!
//! One emulator per function process, as each Lambda sandbox has its own
//! endpoint. The tests and the cold-start benchmark use it alike.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path as FsPath;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// How a function answered one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST …/{id}/response`: the body as sent.
    Response(Bytes),
    /// `POST …/{id}/error`: the error type header and the JSON body.
    Error {
        error_type: Option<String>,
        body: Value,
    },
}

impl Outcome {
    /// The response as JSON; panics (with the error) if it was an error.
    pub fn json(&self) -> Value {
        match self {
            Outcome::Response(b) => serde_json::from_slice(b)
                .unwrap_or_else(|e| panic!("response is not JSON ({e}): {b:?}")),
            Outcome::Error { error_type, body } => {
                panic!("the function answered an error {error_type:?}: {body:#}")
            }
        }
    }
}

/// What `/runtime/init/error` received.
#[derive(Debug, Clone, PartialEq)]
pub struct InitError {
    pub error_type: Option<String>,
    pub body: Value,
}

struct Pending {
    id: String,
    payload: Bytes,
    deadline_ms: u128,
    reply: oneshot::Sender<Outcome>,
}

struct Shared {
    function_arn: String,
    timeout: Duration,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    inflight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: watch::Sender<Option<InitError>>,
    /// Calls the runtime made that Lambda would refuse (unknown request
    /// id, a second answer): a test asserts there are none.
    violations: Mutex<Vec<String>>,
    /// When the runtime first asked for an event: the end of its init
    /// (what Lambda reports as "Init Duration").
    first_next: std::sync::OnceLock<std::time::Instant>,
    /// How many times the runtime asked for an event.
    polls: watch::Sender<u64>,
}

/// The Runtime API endpoint of one function.
pub struct RuntimeApi {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Pending>,
    next_id: AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Serves on a free loopback port. `timeout` is the function's (the
    /// deadline each invocation carries).
    pub async fn start(function_name: &str, timeout: Duration) -> RuntimeApi {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            timeout,
            queue: tokio::sync::Mutex::new(rx),
            inflight: Mutex::new(HashMap::new()),
            init_error: watch::channel(None).0,
            violations: Mutex::new(Vec::new()),
            first_next: std::sync::OnceLock::new(),
            polls: watch::channel(0).0,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("runtime API serves");
        });
        RuntimeApi {
            addr,
            shared,
            queue: tx,
            next_id: AtomicU64::new(1),
            server,
        }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    pub fn function_arn(&self) -> &str {
        &self.shared.function_arn
    }

    /// Queues one invocation; the receiver yields the function's answer.
    pub fn enqueue(&self, payload: &Value) -> oneshot::Receiver<Outcome> {
        let (reply, rx) = oneshot::channel();
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let deadline = SystemTime::now() + self.shared.timeout;
        self.queue
            .send(Pending {
                id: format!("8476a536-e9f4-11e8-9739-{n:012x}"),
                payload: Bytes::from(serde_json::to_vec(payload).unwrap()),
                deadline_ms: deadline.duration_since(UNIX_EPOCH).unwrap().as_millis(),
                reply,
            })
            .expect("the emulator runs");
        rx
    }

    /// Resolves when `/runtime/init/error` has been called.
    pub async fn wait_init_error(&self) -> InitError {
        let mut rx = self.shared.init_error.subscribe();
        let seen = rx
            .wait_for(Option::is_some)
            .await
            .expect("the emulator runs");
        seen.clone().unwrap()
    }

    pub fn init_error(&self) -> Option<InitError> {
        self.shared.init_error.borrow().clone()
    }

    /// When the runtime first called `/invocation/next`, if it has.
    pub fn first_next(&self) -> Option<std::time::Instant> {
        self.shared.first_next.get().copied()
    }

    /// Waits until the runtime has asked for an event `n` times (the
    /// second time: it has finished the first).
    pub async fn wait_polls(&self, n: u64) {
        let mut polls = self.shared.polls.subscribe();
        tokio::time::timeout(self.shared.timeout, polls.wait_for(|p| *p >= n))
            .await
            .expect("the runtime polls again")
            .expect("the emulator is up");
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    let _ = s.first_next.set(std::time::Instant::now());
    s.polls.send_modify(|n| *n += 1);
    // One poller at a time, as Lambda runs one invocation per sandbox.
    let mut queue = s.queue.lock().await;
    let Some(p) = queue.recv().await else {
        return StatusCode::GONE.into_response();
    };
    s.inflight.lock().unwrap().insert(p.id.clone(), p.reply);
    let mut h = HeaderMap::new();
    let v = |s: &str| HeaderValue::from_str(s).unwrap();
    h.insert("content-type", v("application/json"));
    h.insert("lambda-runtime-aws-request-id", v(&p.id));
    h.insert("lambda-runtime-deadline-ms", v(&p.deadline_ms.to_string()));
    h.insert("lambda-runtime-invoked-function-arn", v(&s.function_arn));
    h.insert(
        "lambda-runtime-trace-id",
        v(&format!(
            "Root=1-{:08x}-{};Parent=53995c3f42cd8ad8;Sampled=0",
            (p.deadline_ms / 1000) as u32,
            &p.id.replace('-', "")[..24]
        )),
    );
    (StatusCode::OK, h, p.payload).into_response()
}

fn answer(s: &Shared, id: &str, outcome: Outcome) -> Response {
    let Some(reply) = s.inflight.lock().unwrap().remove(id) else {
        s.violations
            .lock()
            .unwrap()
            .push(format!("an answer for unknown or finished request {id}"));
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}),
            ),
        )
            .into_response();
    };
    // The test may have stopped waiting; the answer is still accepted.
    let _ = reply.send(outcome);
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

async fn response(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    answer(&s, &id, Outcome::Response(body))
}

fn error_type(h: &HeaderMap) -> Option<String> {
    h.get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn json_body(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn error(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = Outcome::Error {
        error_type: error_type(&h),
        body: json_body(&body),
    };
    answer(&s, &id, outcome)
}

async fn init_error(State(s): State<Arc<Shared>>, h: HeaderMap, body: Bytes) -> Response {
    let seen = InitError {
        error_type: error_type(&h),
        body: json_body(&body),
    };
    s.init_error.send_replace(Some(seen));
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

/// The variables Lambda itself sets in every sandbox (beside the
/// function's own from the template).
pub fn lambda_environment(
    name: &str,
    api: &RuntimeApi,
    memory_mb: u32,
) -> BTreeMap<String, String> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.endpoint()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/12/01/[$LATEST]0123456789abcdef".into(),
        ),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("_HANDLER", "bootstrap".into()),
        ("LAMBDA_TASK_ROOT", "/var/task".into()),
        ("TZ", ":UTC".into()),
        ("LANG", "en_US.UTF-8".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A function binary running under its own [`RuntimeApi`].
pub struct LambdaProcess {
    pub name: String,
    pub api: RuntimeApi,
    child: Arc<Mutex<Child>>,
    logs: Arc<Mutex<Vec<String>>>,
    exited: watch::Receiver<Option<ExitStatus>>,
    pub started: std::time::Instant,
}

impl LambdaProcess {
    /// Starts `exe` with exactly `env` (nothing of the test's own
    /// environment leaks in, as in a sandbox) plus Lambda's variables.
    pub async fn start(
        name: &str,
        exe: &FsPath,
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> LambdaProcess {
        let api = RuntimeApi::start(name, timeout).await;
        Self::start_on(name, exe, env, api)
    }

    /// As [`start`](Self::start), on an emulator that may already hold
    /// queued invocations (the benchmark queues the first one before exec).
    pub fn start_on(
        name: &str,
        exe: &FsPath,
        env: &BTreeMap<String, String>,
        api: RuntimeApi,
    ) -> LambdaProcess {
        Self::start_under(name, &[], exe, env, api)
    }

    /// As [`start_on`](Self::start_on), run by `wrapper` (a program and
    /// its arguments, e.g. valgrind) with `exe` as its last argument.
    pub fn start_under(
        name: &str,
        wrapper: &[std::ffi::OsString],
        exe: &FsPath,
        env: &BTreeMap<String, String>,
        api: RuntimeApi,
    ) -> LambdaProcess {
        let mut all = lambda_environment(name, &api, 128);
        all.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let started = std::time::Instant::now();
        let mut child = command
            .env_clear()
            .envs(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (exit_tx, exited) = watch::channel(None);
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let child = Arc::new(Mutex::new(child));
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        {
            // stderr closes when the process ends: then reap it, so an exit
            // is an event the test can wait on (no polling).
            let logs = logs.clone();
            let child = child.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
                let status = child.lock().unwrap().wait().ok();
                exit_tx.send_replace(status);
            });
        }
        LambdaProcess {
            name: name.to_owned(),
            api,
            child,
            logs,
            exited,
            started,
        }
    }

    /// Everything the function wrote (its log lines).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Invokes the function once and waits for its answer; fails the test
    /// if the process ends first or the deadline passes.
    pub async fn invoke(&self, payload: &Value) -> Outcome {
        let rx = self.api.enqueue(payload);
        self.wait(rx).await
    }

    /// Waits for the answer to an invocation queued with `api.enqueue`.
    pub async fn wait(&self, rx: oneshot::Receiver<Outcome>) -> Outcome {
        let mut exited = self.exited.clone();
        // The function's own timeout is the deadline, as Lambda's is.
        let answer = async {
            tokio::select! {
                r = rx => r.expect("the emulator keeps the request"),
                s = exited.wait_for(Option::is_some) => {
                    let status = *s.unwrap();
                    panic!("{} exited ({status:?}) before answering; its log:\n{}", self.name, self.logs())
                }
            }
        };
        tokio::time::timeout(self.api.shared.timeout, answer)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} did not answer within its timeout; its log:\n{}",
                    self.name,
                    self.logs()
                )
            })
    }

    /// Waits for the process to end (after an init error it must).
    pub async fn exit_status(&self) -> ExitStatus {
        let mut exited = self.exited.clone();
        tokio::time::timeout(Duration::from_secs(30), exited.wait_for(Option::is_some))
            .await
            .unwrap_or_else(|_| panic!("{} did not exit; its log:\n{}", self.name, self.logs()))
            .map(|s| s.unwrap())
            .expect("the reaper reports")
    }

    /// Peak resident memory of the live process (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
    }
}
