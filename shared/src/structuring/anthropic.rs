//! Claude through the Anthropic Messages API: one forced, strict tool whose
//! input schema is the workflow's fields plus their evidence.

// Without `models` only the request and response mapping is compiled.
#![cfg_attr(not(feature = "models"), allow(unused_imports))]

use super::model::{
    ModelAnswer, ModelApi, ModelError, ModelRequest, RetryPolicy, TOOL_DESCRIPTION, TOOL_NAME,
};
use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

pub const ANTHROPIC_VERSION: &str = "2023-06-01";
pub const DEFAULT_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_MODEL: &str = "claude-haiku-4-5";

#[derive(Clone)]
pub struct AnthropicConfig {
    /// Base URL without `/v1/messages`.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub max_tokens: u32,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl fmt::Debug for AnthropicConfig {
    // The key never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AnthropicConfig {
    pub fn new(base_url: &str, api_key: &str, model: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            model: model.to_owned(),
            max_tokens: 2048,
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

// The HTTP client half: only with the `models` feature.
#[cfg(feature = "models")]
pub struct AnthropicApi {
    http: reqwest::Client,
    config: AnthropicConfig,
}

#[cfg(feature = "models")]
impl AnthropicApi {
    pub fn new(config: AnthropicConfig) -> Result<Self, ModelError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("fieldgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ModelError::fatal(e.to_string()))?;
        Ok(Self { http, config })
    }

    /// The request body, exactly as the contract shows it.
    pub fn body(&self, req: &ModelRequest<'_>) -> Value {
        let mut content = vec![json!({"type": "text", "text": req.user_text})];
        if let Some((bytes, media_type)) = req.image {
            content.push(json!({"type": "image", "source": {
                "type": "base64",
                "media_type": media_type,
                "data": base64::engine::general_purpose::STANDARD.encode(bytes),
            }}));
        }
        let mut messages = vec![json!({"role": "user", "content": content})];
        if let Some(r) = &req.repair {
            let id = r
                .previous
                .call_id
                .clone()
                .unwrap_or_else(|| "toolu_previous".into());
            messages.push(json!({"role": "assistant", "content": [
                {"type": "tool_use", "id": id, "name": TOOL_NAME, "input": r.previous.input}
            ]}));
            messages.push(json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": id, "is_error": true,
                 "content": format!("Invalid, call {TOOL_NAME} again with these fixed:\n{}", r.problems)}
            ]}));
        }
        json!({
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "system": req.system,
            "temperature": 0,
            "messages": messages,
            "tools": [{
                "name": TOOL_NAME,
                "description": TOOL_DESCRIPTION,
                "input_schema": req.schema,
                "strict": true,
            }],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
        })
    }

    async fn once(&self, body: &Value) -> Result<ModelAnswer, ModelError> {
        let resp = self
            .http
            .post(format!("{}/v1/messages", self.config.base_url))
            .header("x-api-key", &self.config.api_key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header("content-type", "application/json")
            .json(body)
            .send()
            .await
            .map_err(ModelError::from_reqwest)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(ModelError::from_reqwest)?;
        if !(200..300).contains(&status) {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let msg = match (v["error"]["type"].as_str(), v["error"]["message"].as_str()) {
                (Some(t), Some(m)) => format!("{t}: {m}"),
                _ => text.chars().take(200).collect(),
            };
            return Err(ModelError::from_http(status, &headers, msg));
        }
        parse_response(&text)
    }
}

/// Reads a Messages API answer: the `record_fields` tool call, or why
/// there is none.
pub fn parse_response(text: &str) -> Result<ModelAnswer, ModelError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ModelError::bad_output(format!("answer is not JSON: {e}")))?;
    let stop = v["stop_reason"].as_str().unwrap_or("");
    match stop {
        "tool_use" | "end_turn" | "stop_sequence" => {}
        "max_tokens" | "model_context_window_exceeded" => {
            return Err(ModelError::bad_output(format!(
                "the answer was cut off (stop_reason {stop})"
            )));
        }
        "refusal" => return Err(ModelError::bad_output("the model refused")),
        other => {
            return Err(ModelError::bad_output(format!(
                "unexpected stop_reason {other:?}"
            )));
        }
    }
    let call = v["content"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["type"] == "tool_use" && b["name"] == TOOL_NAME)
        .ok_or_else(|| ModelError::bad_output(format!("no {TOOL_NAME} call in the answer")))?;
    Ok(ModelAnswer {
        input: call["input"].clone(),
        call_id: call["id"].as_str().map(str::to_owned),
        model: v["model"].as_str().map(str::to_owned),
        input_tokens: v["usage"]["input_tokens"].as_u64(),
        output_tokens: v["usage"]["output_tokens"].as_u64(),
    })
}

#[cfg(feature = "models")]
#[async_trait]
impl ModelApi for AnthropicApi {
    fn kind(&self) -> &'static str {
        "claude"
    }
    fn model(&self) -> &str {
        &self.config.model
    }
    async fn call(&self, req: &ModelRequest<'_>) -> Result<ModelAnswer, ModelError> {
        let body = self.body(req);
        self.config
            .retry
            .run("anthropic", || self.once(&body))
            .await
    }
}
