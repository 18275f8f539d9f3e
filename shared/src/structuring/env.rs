//! The model structurers a deployment's configuration names
//! ([`crate::config::StructurerConfig`]). A workflow asking for one that is
//! not configured gets the rules structurer, recorded as a fallback on the
//! proposal. Bedrock needs the AWS SDK configuration, so the composition
//! root adds it.

#[cfg(feature = "models")]
use super::anthropic::AnthropicApi;
#[cfg(feature = "models")]
use super::model::ModelStructurer;
#[cfg(feature = "models")]
use super::openai::OpenAiApi;
use crate::config::StructurerConfig;
use crate::domain::StructurerKind;
use crate::ports::Structurer;
use std::collections::HashMap;
use std::sync::Arc;

pub type Structurers = HashMap<StructurerKind, Arc<dyn Structurer>>;

/// Claude and the OpenAI-compatible server, where configured (and built
/// with the `models` feature: only the structure step calls a model).
#[cfg_attr(not(feature = "models"), allow(unused_variables, unused_mut))]
pub fn model_structurers(cfg: &StructurerConfig) -> Structurers {
    let mut out: Structurers = HashMap::new();
    #[cfg(feature = "models")]
    if let Some(c) = &cfg.claude {
        match AnthropicApi::new(c.clone()) {
            Ok(api) => {
                out.insert(StructurerKind::Claude, Arc::new(ModelStructurer::new(api)));
            }
            Err(e) => tracing::error!(error = %e, "cannot set up the Claude structurer"),
        }
    }
    #[cfg(feature = "models")]
    if let Some(c) = &cfg.openai {
        match OpenAiApi::new(c.clone()) {
            Ok(api) => {
                out.insert(StructurerKind::Openai, Arc::new(ModelStructurer::new(api)));
            }
            Err(e) => tracing::error!(error = %e, "cannot set up the OpenAI-compatible structurer"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn structurers(vars: &[(&str, &str)]) -> Structurers {
        let c = Config::from_lookup(&|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        model_structurers(&c.structurers)
    }

    #[test]
    fn only_configured_structurers_exist() {
        assert!(structurers(&[]).is_empty());
        let both = structurers(&[
            ("ANTHROPIC_API_KEY", "sk-test"),
            ("FIELDGATE_OPENAI_URL", "http://127.0.0.1:1"),
        ]);
        assert_eq!(both[&StructurerKind::Claude].name(), "claude");
        assert_eq!(both[&StructurerKind::Openai].name(), "openai");
        assert!(!both.contains_key(&StructurerKind::Bedrock));
    }
}
