//! Which model structurers this deployment has, from the environment. A
//! workflow asking for one that is not configured gets the rules
//! structurer, recorded as a fallback on the proposal.
//!
//! | variable | meaning |
//! |---|---|
//! | `ANTHROPIC_API_KEY` | enables `claude` |
//! | `FIELDGATE_ANTHROPIC_URL` | base URL (default https://api.anthropic.com) |
//! | `FIELDGATE_ANTHROPIC_MODEL` | default `claude-haiku-4-5` |
//! | `FIELDGATE_OPENAI_URL` | enables `openai` (e.g. http://127.0.0.1:8080 for llama.cpp) |
//! | `FIELDGATE_OPENAI_MODEL` | model name the server expects (default `local`) |
//! | `FIELDGATE_OPENAI_API_KEY` | bearer token, if the server wants one |
//! | `FIELDGATE_BEDROCK_MODEL` | enables `bedrock` (build with `--features bedrock`) |
//! | `FIELDGATE_LLM_TIMEOUT_SECS` | per-call timeout |
//! | `FIELDGATE_LLM_MAX_TOKENS` | answer budget |
//! | `FIELDGATE_STRUCTURER` | `claude`, `openai` or `bedrock`: workflows that leave structuring to `rules` use this model instead. An explicit deployment choice, since the notes then leave the account; unset, only workflows that name a model send notes to one. |

use super::anthropic::{AnthropicApi, AnthropicConfig};
use super::model::ModelStructurer;
use super::openai::{OpenAiApi, OpenAiConfig};
use crate::domain::StructurerKind;
use crate::ports::Structurer;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub type Structurers = HashMap<StructurerKind, Arc<dyn Structurer>>;

/// Reads the process environment.
pub async fn structurers_from_env() -> Structurers {
    let vars: HashMap<String, String> = std::env::vars().collect();
    let mut out = structurers_from(&|k| vars.get(k).cloned().filter(|v| !v.trim().is_empty()));
    #[cfg(feature = "bedrock")]
    if let Some(model) = vars
        .get("FIELDGATE_BEDROCK_MODEL")
        .filter(|v| !v.is_empty())
    {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let api = super::bedrock::BedrockApi::new(&sdk, model);
        out.insert(
            StructurerKind::Bedrock,
            Arc::new(ModelStructurer::new(api)) as Arc<dyn Structurer>,
        );
    }
    apply_override(
        &mut out,
        vars.get("FIELDGATE_STRUCTURER").map(String::as_str),
    );
    out
}

/// `FIELDGATE_STRUCTURER`: the model that replaces `rules` as a workflow's
/// choice. A name that is not configured is logged and ignored.
fn apply_override(out: &mut Structurers, choice: Option<&str>) {
    let Some(choice) = choice.map(str::trim).filter(|c| !c.is_empty()) else {
        return;
    };
    let kind = match choice.to_lowercase().as_str() {
        "claude" => StructurerKind::Claude,
        "openai" => StructurerKind::Openai,
        "bedrock" => StructurerKind::Bedrock,
        "rules" => return,
        other => {
            tracing::error!(
                value = other,
                "FIELDGATE_STRUCTURER is not one of rules, claude, openai, bedrock; ignored"
            );
            return;
        }
    };
    match out.get(&kind).cloned() {
        Some(s) => {
            tracing::info!(
                structurer = s.name(),
                "workflows set to rules use this model (FIELDGATE_STRUCTURER)"
            );
            out.insert(StructurerKind::Rules, s);
        }
        None => tracing::error!(
            value = choice,
            "FIELDGATE_STRUCTURER names a structurer that is not configured; rules stay"
        ),
    }
}

/// The model structurers a set of variables configures (testable without
/// touching the process environment). Bedrock needs the AWS SDK's loader,
/// so only `structurers_from_env` adds it.
pub fn structurers_from(var: &dyn Fn(&str) -> Option<String>) -> Structurers {
    let mut out: Structurers = HashMap::new();
    let timeout = var("FIELDGATE_LLM_TIMEOUT_SECS")
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    let max_tokens = var("FIELDGATE_LLM_MAX_TOKENS").and_then(|v| v.parse().ok());
    if let Some(key) = var("ANTHROPIC_API_KEY") {
        let mut c = AnthropicConfig::new(
            &var("FIELDGATE_ANTHROPIC_URL").unwrap_or_else(|| super::anthropic::DEFAULT_URL.into()),
            &key,
            &var("FIELDGATE_ANTHROPIC_MODEL")
                .unwrap_or_else(|| super::anthropic::DEFAULT_MODEL.into()),
        );
        c.timeout = timeout.unwrap_or(c.timeout);
        c.max_tokens = max_tokens.unwrap_or(c.max_tokens);
        match AnthropicApi::new(c) {
            Ok(api) => {
                out.insert(
                    StructurerKind::Claude,
                    Arc::new(ModelStructurer::new(api)) as Arc<dyn Structurer>,
                );
            }
            Err(e) => tracing::error!(error = %e, "cannot set up the Claude structurer"),
        }
    }
    if let Some(url) = var("FIELDGATE_OPENAI_URL") {
        let mut c = OpenAiConfig::new(
            &url,
            &var("FIELDGATE_OPENAI_MODEL").unwrap_or_else(|| "local".into()),
        );
        c.api_key = var("FIELDGATE_OPENAI_API_KEY");
        c.timeout = timeout.unwrap_or(c.timeout);
        c.max_tokens = max_tokens.unwrap_or(c.max_tokens);
        match OpenAiApi::new(c) {
            Ok(api) => {
                out.insert(
                    StructurerKind::Openai,
                    Arc::new(ModelStructurer::new(api)) as Arc<dyn Structurer>,
                );
            }
            Err(e) => tracing::error!(error = %e, "cannot set up the OpenAI-compatible structurer"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_structurers_exist() {
        let none = structurers_from(&|_| None);
        assert!(none.is_empty());
        let both = structurers_from(&|k| match k {
            "ANTHROPIC_API_KEY" => Some("sk-test".into()),
            "FIELDGATE_OPENAI_URL" => Some("http://127.0.0.1:1".into()),
            _ => None,
        });
        assert_eq!(both[&StructurerKind::Claude].name(), "claude");
        assert_eq!(both[&StructurerKind::Openai].name(), "openai");
        assert!(!both.contains_key(&StructurerKind::Bedrock));
    }

    #[test]
    fn override_replaces_rules_only_with_a_configured_model() {
        let mut s = structurers_from(&|k| (k == "ANTHROPIC_API_KEY").then(|| "k".to_owned()));
        apply_override(&mut s, Some("openai"));
        assert!(!s.contains_key(&StructurerKind::Rules));
        apply_override(&mut s, Some("nonsense"));
        assert!(!s.contains_key(&StructurerKind::Rules));
        apply_override(&mut s, Some("claude"));
        assert_eq!(s[&StructurerKind::Rules].name(), "claude");
    }
}
