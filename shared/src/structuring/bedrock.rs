//! Claude on Bedrock through the Converse API (`aws-sdk-bedrockruntime`):
//! IAM auth, no API key, the same forced tool as the Anthropic shape.
//! Built only with the `bedrock` feature. The SDK signs and retries
//! (standard mode, configured like the contract: 0.5 s → 8 s, 2 retries).

use super::model::{ModelAnswer, ModelApi, ModelError, ModelRequest, TOOL_DESCRIPTION, TOOL_NAME};
use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput as Output, ImageBlock, ImageFormat, ImageSource,
    InferenceConfiguration, Message, SpecificToolChoice, StopReason, SystemContentBlock, Tool,
    ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock,
    ToolResultStatus, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

pub struct BedrockApi {
    client: Client,
    model: String,
    max_tokens: i32,
}

impl BedrockApi {
    pub fn new(sdk: &aws_types::SdkConfig, model: &str) -> Self {
        let conf = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(500))
                    .with_max_backoff(Duration::from_secs(8)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(conf),
            model: model.to_owned(),
            max_tokens: 2048,
        }
    }
}

/// JSON → the SDK's document type.
pub fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => Document::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// The SDK's document type → JSON.
pub fn to_json(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Document::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

fn build<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, ModelError> {
    r.map_err(|e| ModelError::fatal(format!("building the Converse request: {e}")))
}

/// The Converse messages and tool configuration for a request.
pub fn converse_parts(
    req: &ModelRequest<'_>,
) -> Result<(Vec<Message>, ToolConfiguration), ModelError> {
    let mut content = vec![ContentBlock::Text(req.user_text.clone())];
    if let Some((bytes, media_type)) = req.image {
        let format = match media_type {
            "image/png" => ImageFormat::Png,
            "image/webp" => ImageFormat::Webp,
            "image/gif" => ImageFormat::Gif,
            _ => ImageFormat::Jpeg,
        };
        content.push(ContentBlock::Image(build(
            ImageBlock::builder()
                .format(format)
                .source(ImageSource::Bytes(Blob::new(bytes.to_vec())))
                .build(),
        )?));
    }
    let mut messages = vec![build(
        Message::builder()
            .role(ConversationRole::User)
            .set_content(Some(content))
            .build(),
    )?];
    if let Some(r) = &req.repair {
        let id = r
            .previous
            .call_id
            .clone()
            .unwrap_or_else(|| "tooluse_previous".into());
        messages.push(build(
            Message::builder()
                .role(ConversationRole::Assistant)
                .content(ContentBlock::ToolUse(build(
                    ToolUseBlock::builder()
                        .tool_use_id(&id)
                        .name(TOOL_NAME)
                        .input(to_document(&r.previous.input))
                        .build(),
                )?))
                .build(),
        )?);
        messages.push(build(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::ToolResult(build(
                    ToolResultBlock::builder()
                        .tool_use_id(&id)
                        .status(ToolResultStatus::Error)
                        .content(ToolResultContentBlock::Text(format!(
                            "Invalid, call {TOOL_NAME} again with these fixed:\n{}",
                            r.problems
                        )))
                        .build(),
                )?))
                .build(),
        )?);
    }
    let tools = build(
        ToolConfiguration::builder()
            .tools(Tool::ToolSpec(build(
                ToolSpecification::builder()
                    .name(TOOL_NAME)
                    .description(TOOL_DESCRIPTION)
                    .input_schema(ToolInputSchema::Json(to_document(&req.schema)))
                    .build(),
            )?))
            .tool_choice(ToolChoice::Tool(build(
                SpecificToolChoice::builder().name(TOOL_NAME).build(),
            )?))
            .build(),
    )?;
    Ok((messages, tools))
}

/// Reads a Converse answer: the tool call, or why there is none.
pub fn answer_of(out: &ConverseOutput) -> Result<ModelAnswer, ModelError> {
    match out.stop_reason() {
        StopReason::ToolUse | StopReason::EndTurn | StopReason::StopSequence => {}
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => {
            return Err(ModelError::bad_output(format!(
                "the answer was cut off (stopReason {})",
                out.stop_reason().as_str()
            )));
        }
        other => {
            return Err(ModelError::bad_output(format!(
                "the model did not answer (stopReason {})",
                other.as_str()
            )));
        }
    }
    let Some(Output::Message(msg)) = out.output() else {
        return Err(ModelError::bad_output("no message in the answer"));
    };
    let call = msg
        .content()
        .iter()
        .find_map(|b| match b {
            ContentBlock::ToolUse(t) if t.name() == TOOL_NAME => Some(t),
            _ => None,
        })
        .ok_or_else(|| ModelError::bad_output(format!("no {TOOL_NAME} call in the answer")))?;
    Ok(ModelAnswer {
        input: to_json(call.input()),
        call_id: Some(call.tool_use_id().to_owned()),
        model: None,
        input_tokens: out.usage().map(|u| u.input_tokens().max(0) as u64),
        output_tokens: out.usage().map(|u| u.output_tokens().max(0) as u64),
    })
}

/// Throttling and unavailability were already retried by the SDK.
fn error_of(e: SdkError<ConverseError>) -> ModelError {
    let code = e.code().unwrap_or("unknown").to_owned();
    let msg = e.message().unwrap_or("").to_owned();
    ModelError::fatal(format!("Bedrock {code}: {msg}"))
}

#[async_trait]
impl ModelApi for BedrockApi {
    fn kind(&self) -> &'static str {
        "bedrock"
    }
    fn model(&self) -> &str {
        &self.model
    }
    async fn call(&self, req: &ModelRequest<'_>) -> Result<ModelAnswer, ModelError> {
        let (messages, tools) = converse_parts(req)?;
        let out = self
            .client
            .converse()
            .model_id(&self.model)
            .system(SystemContentBlock::Text(req.system.clone()))
            .set_messages(Some(messages))
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(self.max_tokens)
                    .temperature(0.0)
                    .build(),
            )
            .tool_config(tools)
            .send()
            .await
            .map_err(error_of)?;
        answer_of(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structuring::model::Repair;
    use aws_sdk_bedrockruntime::types::{ConverseMetrics, TokenUsage};
    use serde_json::json;

    fn req(repair: Option<Repair>) -> ModelRequest<'static> {
        ModelRequest {
            system: "sys".into(),
            user_text: "<notes>\nfan noisy\n</notes>".into(),
            image: Some((b"png-bytes", "image/png")),
            schema: json!({"type": "object", "properties": {"fields": {"type": "object"}}, "required": ["fields"]}),
            repair,
        }
    }

    #[test]
    fn documents_round_trip() {
        let v = json!({"a": [1, -2, 1.5, "x", null, true], "b": {"c": "d"}});
        assert_eq!(to_json(&to_document(&v)), v);
    }

    #[test]
    fn the_request_forces_the_tool_with_the_schema_and_sends_the_photo() {
        let (messages, tools) = converse_parts(&req(None)).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].role(), &ConversationRole::User);
        assert!(
            matches!(&messages[0].content()[0], ContentBlock::Text(t) if t.contains("fan noisy"))
        );
        let ContentBlock::Image(img) = &messages[0].content()[1] else {
            panic!("no image block")
        };
        assert_eq!(img.format(), &ImageFormat::Png);
        let Tool::ToolSpec(spec) = &tools.tools()[0] else {
            panic!("no tool spec")
        };
        assert_eq!(spec.name(), TOOL_NAME);
        let Some(ToolInputSchema::Json(schema)) = spec.input_schema() else {
            panic!("no schema")
        };
        assert_eq!(to_json(schema)["required"], json!(["fields"]));
        assert!(matches!(tools.tool_choice(), Some(ToolChoice::Tool(t)) if t.name() == TOOL_NAME));
    }

    #[test]
    fn the_repair_round_answers_the_tool_call_with_the_errors() {
        let previous = ModelAnswer {
            input: json!({"fields": {"Priority": "Critical"}}),
            call_id: Some("tooluse_1".into()),
            ..ModelAnswer::default()
        };
        let (messages, _) = converse_parts(&req(Some(Repair {
            previous,
            problems: "fields.Priority must be one of: High, Medium, Low".into(),
        })))
        .unwrap();
        assert_eq!(messages.len(), 3);
        let ContentBlock::ToolUse(u) = &messages[1].content()[0] else {
            panic!("no tool use")
        };
        assert_eq!(u.tool_use_id(), "tooluse_1");
        let ContentBlock::ToolResult(r) = &messages[2].content()[0] else {
            panic!("no tool result")
        };
        assert_eq!(r.status(), Some(&ToolResultStatus::Error));
        assert!(
            matches!(&r.content()[0], ToolResultContentBlock::Text(t) if t.contains("Priority"))
        );
    }

    fn output(stop: StopReason, input: Value) -> ConverseOutput {
        let msg = Message::builder()
            .role(ConversationRole::Assistant)
            .content(ContentBlock::ToolUse(
                ToolUseBlock::builder()
                    .tool_use_id("tooluse_9")
                    .name(TOOL_NAME)
                    .input(to_document(&input))
                    .build()
                    .unwrap(),
            ))
            .build()
            .unwrap();
        ConverseOutput::builder()
            .output(Output::Message(msg))
            .stop_reason(stop)
            .usage(
                TokenUsage::builder()
                    .input_tokens(412)
                    .output_tokens(58)
                    .total_tokens(470)
                    .build()
                    .unwrap(),
            )
            .metrics(ConverseMetrics::builder().latency_ms(900).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn the_answer_maps_to_the_tool_input_and_usage() {
        let a = answer_of(&output(
            StopReason::ToolUse,
            json!({"fields": {"Subject": "x"}}),
        ))
        .unwrap();
        assert_eq!(a.input["fields"]["Subject"], "x");
        assert_eq!(a.call_id.as_deref(), Some("tooluse_9"));
        assert_eq!((a.input_tokens, a.output_tokens), (Some(412), Some(58)));
        let cut = answer_of(&output(StopReason::MaxTokens, json!({}))).unwrap_err();
        assert!(cut.bad_output && cut.message.contains("cut off"));
        let filtered = answer_of(&output(StopReason::ContentFiltered, json!({}))).unwrap_err();
        assert!(filtered.bad_output);
    }
}
