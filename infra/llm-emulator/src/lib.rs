//! An LLM emulator for tests and offline demos. It speaks the Anthropic
//! `/v1/messages` and the OpenAI-compatible `/v1/chat/completions` shapes of
//! `shared/contracts/llm.md`, answers deterministically from the request
//! (a naive keyword extraction over the schema it is given), and can be
//! scripted: each queued [`Fault`] is used by the next request.
//!
//! Like a gullible model, its extraction obeys notes that say "ignore
//! previous instructions": it then returns fields outside the schema,
//! another object, and invented evidence. That is what fieldgate must
//! withstand.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";
pub const DEFAULT_API_KEY: &str = "sk-ant-emulator";

/// What the next request gets instead of a normal answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// 429 rate_limit_error with `retry-after: secs`.
    RateLimited { retry_after_secs: u64 },
    /// 429 with `retry-after-ms`.
    RateLimitedMs { retry_after_ms: u64 },
    /// 529 overloaded_error (503 on the OpenAI shape).
    Overloaded,
    /// 500 api_error.
    ServerError,
    /// 500 with `x-should-retry: false`: the client must not retry.
    ServerErrorNoRetry,
    /// A 400 invalid_request_error.
    BadRequest,
    /// The answer is cut: `stop_reason: max_tokens` / `finish_reason: length`.
    MaxTokens,
    /// `stop_reason: refusal` / `message.refusal`.
    Refusal,
    /// Answer with exactly this tool input / JSON document (schema
    /// violations, extra fields, invented evidence: whatever a test needs).
    Output { input: Value },
}

/// One request as received, for tests to check what the client sent.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The key `x-api-key` must carry (Anthropic shape).
    pub api_key: String,
    /// When set, the OpenAI shape wants `Authorization: Bearer` with it.
    pub openai_key: Option<String>,
    pub model: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            api_key: DEFAULT_API_KEY.into(),
            openai_key: None,
            model: "claude-emulator-1".into(),
        }
    }
}

#[derive(Default)]
struct Inner {
    faults: VecDeque<Fault>,
    requests: Vec<Recorded>,
    counter: u64,
}

#[derive(Clone)]
pub struct LlmEmulator {
    config: Arc<EmulatorConfig>,
    inner: Arc<Mutex<Inner>>,
}

impl LlmEmulator {
    pub fn new(config: EmulatorConfig) -> Self {
        Self {
            config: Arc::new(config),
            inner: Arc::default(),
        }
    }

    /// Queues faults; each is used by one request, in order.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn clear(&self) {
        let mut g = self.lock();
        g.faults.clear();
        g.requests.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/chat/completions", post(chat))
            .route("/_emulator/faults", post(push_faults))
            .route("/_emulator/requests", get(list_requests))
            .with_state(self.clone())
    }

    /// Serves on 127.0.0.1:`port` (0 = a free port); returns the base URL.
    pub async fn start(&self, port: u16) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        let h = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "llm emulator stopped");
            }
        });
        Ok((format!("http://{addr}"), h))
    }

    /// Records the request, and takes the next fault and a sequence number.
    fn begin(&self, path: &str, headers: &HeaderMap, body: &Value) -> (Option<Fault>, u64) {
        let mut g = self.lock();
        g.counter += 1;
        g.requests.push(Recorded {
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: body.clone(),
        });
        (g.faults.pop_front(), g.counter)
    }
}

async fn push_faults(State(emu): State<LlmEmulator>, body: Bytes) -> Response {
    match serde_json::from_slice::<Vec<Fault>>(&body) {
        Ok(f) => {
            emu.push(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn list_requests(State(emu): State<LlmEmulator>) -> Response {
    axum::Json(emu.requests()).into_response()
}

// ------------------------------------------------------------ Anthropic

fn anthropic_error(status: u16, kind: &str, message: &str, seq: u64) -> Response {
    let body = json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": format!("req_emu{seq:06}"),
    });
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    r.headers_mut().insert(
        "request-id",
        HeaderValue::from_str(&format!("req_emu{seq:06}")).expect("ascii"),
    );
    r
}

async fn messages(State(emu): State<LlmEmulator>, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let (fault, seq) = emu.begin("/v1/messages", &headers, &body);
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if h("x-api-key") != Some(emu.config.api_key.as_str()) {
        return anthropic_error(401, "authentication_error", "invalid x-api-key", seq);
    }
    match h("anthropic-version") {
        None => {
            return anthropic_error(
                400,
                "invalid_request_error",
                "anthropic-version: header is required",
                seq,
            );
        }
        Some(v) if v != ANTHROPIC_VERSION => {
            return anthropic_error(
                400,
                "invalid_request_error",
                &format!("anthropic-version: unknown version {v}"),
                seq,
            );
        }
        Some(_) => {}
    }
    if body.is_null() {
        return anthropic_error(400, "invalid_request_error", "body is not valid JSON", seq);
    }
    for k in ["model", "max_tokens", "messages"] {
        if body.get(k).is_none() {
            return anthropic_error(
                400,
                "invalid_request_error",
                &format!("{k}: Field required"),
                seq,
            );
        }
    }
    let tool = body["tools"][0].clone();
    let forced = body["tool_choice"]["name"].as_str();
    if forced.is_some() && forced != tool["name"].as_str() {
        return anthropic_error(
            400,
            "invalid_request_error",
            "tool_choice: tool not found in tools",
            seq,
        );
    }
    let schema = tool["input_schema"].clone();
    let user_text = last_user_text(&body["messages"]);
    let input_tokens = (raw.len() as u64).div_ceil(4);
    let answer = |content: Value, stop: &str| -> Response {
        let out_tokens = (content.to_string().len() as u64).div_ceil(4);
        let mut r = axum::Json(json!({
            "id": format!("msg_emu{seq:06}"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": out_tokens},
        }))
        .into_response();
        r.headers_mut().insert(
            "request-id",
            HeaderValue::from_str(&format!("req_emu{seq:06}")).expect("ascii"),
        );
        r
    };
    let tool_use = |input: Value| {
        json!([{"type": "tool_use", "id": format!("toolu_emu{seq:06}"),
                "name": tool["name"], "input": input}])
    };
    match fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut r = anthropic_error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                seq,
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            r
        }
        Some(Fault::RateLimitedMs { retry_after_ms }) => {
            let mut r = anthropic_error(429, "rate_limit_error", "Rate limited", seq);
            r.headers_mut()
                .insert("retry-after-ms", HeaderValue::from(retry_after_ms));
            r
        }
        Some(Fault::Overloaded) => anthropic_error(529, "overloaded_error", "Overloaded", seq),
        Some(Fault::ServerError) => anthropic_error(500, "api_error", "Internal server error", seq),
        Some(Fault::ServerErrorNoRetry) => {
            let mut r = anthropic_error(500, "api_error", "Internal server error", seq);
            r.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
            r
        }
        Some(Fault::BadRequest) => anthropic_error(
            400,
            "invalid_request_error",
            "messages: at least one message is required",
            seq,
        ),
        Some(Fault::MaxTokens) => {
            // The tool input as far as it got: a fragment.
            let mut partial = Map::new();
            if let Some(first) = extract(&schema, notes_of(&user_text).unwrap_or(""))["fields"]
                .as_object()
                .and_then(|f| f.iter().next())
            {
                partial.insert(first.0.clone(), first.1.clone());
            }
            answer(tool_use(json!({"fields": partial})), "max_tokens")
        }
        Some(Fault::Refusal) => answer(
            json!([{"type": "text", "text": "I can't help with that."}]),
            "refusal",
        ),
        Some(Fault::Output { input }) => answer(tool_use(input), "tool_use"),
        None => {
            let notes = notes_of(&user_text).unwrap_or("");
            // A steered model stays steered, repair round or not.
            let input = if gullible(notes) {
                steered(&schema, notes)
            } else {
                extract(&schema, notes)
            };
            answer(tool_use(input), "tool_use")
        }
    }
}

// ------------------------------------------------------------ OpenAI-compatible

fn openai_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
        ),
    )
        .into_response()
}

async fn chat(State(emu): State<LlmEmulator>, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let (fault, seq) = emu.begin("/v1/chat/completions", &headers, &body);
    if let Some(key) = &emu.config.openai_key {
        let got = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if got != Some(key.as_str()) {
            return openai_error(
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
                "Incorrect API key provided",
            );
        }
    }
    if body.get("messages").and_then(Value::as_array).is_none() {
        return openai_error(
            400,
            "invalid_request_error",
            None,
            "'messages' is a required property",
        );
    }
    let schema = body["response_format"]["json_schema"]["schema"].clone();
    let user_text = last_user_text(&body["messages"]);
    let prompt_tokens = (raw.len() as u64).div_ceil(4);
    let answer = |content: Value, refusal: Value, finish: &str| -> Response {
        let completion = (content.to_string().len() as u64).div_ceil(4);
        axum::Json(json!({
            "id": format!("chatcmpl-emu{seq:06}"),
            "object": "chat.completion",
            "created": 1_700_000_000 + seq,
            "model": body["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish,
            }],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion},
        }))
        .into_response()
    };
    match fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut r = openai_error(
                429,
                "requests",
                Some("rate_limit_exceeded"),
                "Rate limit reached for requests",
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            r
        }
        Some(Fault::RateLimitedMs { retry_after_ms }) => {
            let mut r = openai_error(
                429,
                "requests",
                Some("rate_limit_exceeded"),
                "Rate limit reached",
            );
            r.headers_mut()
                .insert("retry-after-ms", HeaderValue::from(retry_after_ms));
            r
        }
        Some(Fault::Overloaded) => {
            openai_error(503, "server_error", None, "The server is overloaded")
        }
        Some(Fault::ServerError) => openai_error(500, "server_error", None, "Internal error"),
        Some(Fault::ServerErrorNoRetry) => {
            let mut r = openai_error(500, "server_error", None, "Internal error");
            r.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
            r
        }
        Some(Fault::BadRequest) => {
            openai_error(400, "invalid_request_error", None, "Invalid request")
        }
        Some(Fault::MaxTokens) => {
            let full = extract(&schema, notes_of(&user_text).unwrap_or("")).to_string();
            let cut: String = full.chars().take(full.len() / 2).collect();
            answer(json!(cut), Value::Null, "length")
        }
        Some(Fault::Refusal) => answer(Value::Null, json!("I can't help with that."), "stop"),
        Some(Fault::Output { input }) => answer(json!(input.to_string()), Value::Null, "stop"),
        None => {
            let notes = notes_of(&user_text).unwrap_or("");
            let input = if gullible(notes) {
                steered(&schema, notes)
            } else {
                extract(&schema, notes)
            };
            answer(json!(input.to_string()), Value::Null, "stop")
        }
    }
}

// ------------------------------------------------------------ the "model"

/// The text of the first user message (string or text blocks).
fn last_user_text(messages: &Value) -> String {
    let Some(first) = messages
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &first["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The notes between `<notes>` and `</notes>`.
pub fn notes_of(text: &str) -> Option<&str> {
    let start = text.find("<notes>\n")? + "<notes>\n".len();
    let end = text.rfind("\n</notes>")?;
    (end >= start).then(|| &text[start..end])
}

fn gullible(notes: &str) -> bool {
    notes
        .to_lowercase()
        .contains("ignore previous instructions")
}

/// A naive, deterministic extraction over the schema it was given:
/// picklists by the value's own word in the notes, the first non-nullable
/// text from the first sentence, other text from the whole notes.
pub fn extract(schema: &Value, notes: &str) -> Value {
    let props = schema["properties"]["fields"]["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let nullable = |p: &Value| {
        p["type"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("null")))
    };
    let lower = notes.to_lowercase();
    // The first sentence; a dot inside a number ("11.2") does not end it.
    let mut first_sentence = notes.trim();
    for (i, c) in first_sentence.char_indices() {
        let next = first_sentence[i + c.len_utf8()..].chars().next();
        if matches!(c, '\n' | '!' | '?') || (c == '.' && next.is_none_or(char::is_whitespace)) {
            first_sentence = first_sentence[..i].trim();
            break;
        }
    }
    let first_sentence = first_sentence.to_owned();
    let mut fields = Map::new();
    let mut evidence = Map::new();
    let mut seen_text = false;
    for (name, p) in &props {
        let (v, q) = if let Some(values) = p["enum"].as_array() {
            let hit = values.iter().filter_map(Value::as_str).find_map(|v| {
                lower
                    .find(&v.to_lowercase())
                    .map(|i| (v.to_owned(), notes[i..i + v.len()].to_owned()))
            });
            match hit {
                Some((v, q)) => (json!(v), json!(q)),
                None if !nullable(p) => {
                    let first = values
                        .iter()
                        .find(|v| v.is_string())
                        .cloned()
                        .unwrap_or(Value::Null);
                    (first, Value::Null)
                }
                None => (Value::Null, Value::Null),
            }
        } else if !seen_text && !nullable(p) && !first_sentence.is_empty() {
            seen_text = true;
            (json!(first_sentence), json!(first_sentence))
        } else if !notes.trim().is_empty() {
            (json!(notes.trim()), json!(first_sentence))
        } else {
            (Value::Null, Value::Null)
        };
        fields.insert(name.clone(), v);
        evidence.insert(name.clone(), q);
    }
    json!({"fields": fields, "evidence": evidence})
}

/// What a model that obeys the notes returns: priority raised on invented
/// evidence, fields the workflow does not have, another object.
pub fn steered(schema: &Value, notes: &str) -> Value {
    let mut v = extract(schema, notes);
    if let Some(f) = v["fields"].as_object_mut() {
        if f.contains_key("Priority") {
            f.insert("Priority".into(), json!("High"));
        }
        f.insert("OwnerId".into(), json!("005000000000666AAA"));
        f.insert("AccountId".into(), json!("001000000000666AAA"));
    }
    if let Some(e) = v["evidence"].as_object_mut() {
        e.insert("Priority".into(), json!("management marked this critical"));
    }
    v["create"] = json!({"object": "Account", "fields": {"Name": "Injected Ltd"}});
    v
}
