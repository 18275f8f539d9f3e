//! OpenAI-compatible chat completions (llama.cpp server, Ollama, vLLM) with
//! `response_format: json_schema`: the answer is a JSON document as a string.

// Without `models` only the request and response mapping is compiled.
#![cfg_attr(not(feature = "models"), allow(unused_imports))]

use super::model::{ModelAnswer, ModelApi, ModelError, ModelRequest, RetryPolicy, TOOL_NAME};
use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

#[derive(Clone)]
pub struct OpenAiConfig {
    /// Base URL without `/v1/chat/completions`, e.g. http://127.0.0.1:8080.
    pub base_url: String,
    /// Local servers often need none.
    pub api_key: Option<String>,
    pub model: String,
    pub max_tokens: u32,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OpenAiConfig {
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: None,
            model: model.to_owned(),
            max_tokens: 2048,
            // Local models on CPUs are slow.
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
        }
    }
}

// The HTTP client half: only with the `models` feature.
#[cfg(feature = "models")]
pub struct OpenAiApi {
    http: reqwest::Client,
    config: OpenAiConfig,
}

#[cfg(feature = "models")]
impl OpenAiApi {
    pub fn new(config: OpenAiConfig) -> Result<Self, ModelError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("fieldgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ModelError::fatal(e.to_string()))?;
        Ok(Self { http, config })
    }

    pub fn body(&self, req: &ModelRequest<'_>) -> Value {
        let user = match req.image {
            None => json!(req.user_text),
            Some((bytes, media_type)) => json!([
                {"type": "text", "text": req.user_text},
                {"type": "image_url", "image_url": {"url": format!(
                    "data:{media_type};base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                )}}
            ]),
        };
        let mut messages = vec![
            json!({"role": "system", "content": req.system}),
            json!({"role": "user", "content": user}),
        ];
        if let Some(r) = &req.repair {
            messages.push(json!({"role": "assistant", "content": r.previous.input.to_string()}));
            messages.push(json!({"role": "user", "content": format!(
                "That answer is invalid. Answer again with these fixed:\n{}", r.problems
            )}));
        }
        json!({
            "model": self.config.model,
            // Ollama defaults to 1.0 unless told.
            "temperature": 0,
            "max_tokens": self.config.max_tokens,
            "messages": messages,
            "response_format": {"type": "json_schema", "json_schema": {
                "name": TOOL_NAME, "strict": true, "schema": req.schema
            }},
        })
    }

    async fn once(&self, body: &Value) -> Result<ModelAnswer, ModelError> {
        let mut rb = self
            .http
            .post(format!("{}/v1/chat/completions", self.config.base_url))
            .json(body);
        if let Some(k) = &self.config.api_key {
            rb = rb.bearer_auth(k);
        }
        let resp = rb.send().await.map_err(ModelError::from_reqwest)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(ModelError::from_reqwest)?;
        if !(200..300).contains(&status) {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let msg = match v["error"]["message"].as_str() {
                Some(m) => format!("{}: {m}", v["error"]["type"].as_str().unwrap_or("error")),
                None => text.chars().take(200).collect(),
            };
            return Err(ModelError::from_http(status, &headers, msg));
        }
        parse_response(&text)
    }
}

/// Reads `choices[0].message.content` (a JSON string).
pub fn parse_response(text: &str) -> Result<ModelAnswer, ModelError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ModelError::bad_output(format!("answer is not JSON: {e}")))?;
    let choice = &v["choices"][0];
    match choice["finish_reason"].as_str() {
        Some("length") => {
            return Err(ModelError::bad_output(
                "the answer was cut off (finish_reason length)",
            ));
        }
        Some("content_filter") => {
            return Err(ModelError::bad_output("the answer was filtered"));
        }
        _ => {}
    }
    if let Some(r) = choice["message"]["refusal"].as_str() {
        return Err(ModelError::bad_output(format!("the model refused: {r}")));
    }
    let content = choice["message"]["content"]
        .as_str()
        .ok_or_else(|| ModelError::bad_output("no message content in the answer"))?;
    // Some local servers wrap JSON in a code fence despite the schema.
    let trimmed = content
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let input: Value = serde_json::from_str(trimmed)
        .map_err(|e| ModelError::bad_output(format!("content is not JSON: {e}")))?;
    Ok(ModelAnswer {
        input,
        call_id: None,
        model: v["model"].as_str().map(str::to_owned),
        input_tokens: v["usage"]["prompt_tokens"].as_u64(),
        output_tokens: v["usage"]["completion_tokens"].as_u64(),
    })
}

#[cfg(feature = "models")]
#[async_trait]
impl ModelApi for OpenAiApi {
    fn kind(&self) -> &'static str {
        "openai"
    }
    fn model(&self) -> &str {
        &self.config.model
    }
    async fn call(&self, req: &ModelRequest<'_>) -> Result<ModelAnswer, ModelError> {
        let body = self.body(req);
        self.config.retry.run("openai", || self.once(&body)).await
    }
}
