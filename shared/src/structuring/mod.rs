//! Structuring: a structurer proposes, this module disposes. Whatever a
//! structurer returns, only the workflow's fields with allowed values and
//! quotes that really occur in the notes come out.

pub mod anthropic;
#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod classifier;
pub mod env;
pub mod guard;
pub mod lexicon;
pub mod model;
pub mod openai;
pub mod rules;

pub use env::{Structurers, model_structurers};
pub use model::ModelStructurer;
pub use rules::RulesStructurer;

use crate::domain::workflow::is_blank;
use crate::domain::{AssistantProposal, FieldValue, Fields, StructuringInfo, Workflow};
use crate::ports::{Proposed, Structurer, StructuringInput};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

/// Runs `primary`; if it fails, the rules structurer, so no proposal is
/// ever stuck in RECEIVED. Then validates.
pub async fn structure(
    primary: &dyn Structurer,
    fallback: &RulesStructurer,
    workflow: &Workflow,
    input: &StructuringInput<'_>,
) -> (Fields, StructuringInfo) {
    let s = structure_detailed(primary, fallback, workflow, input).await;
    (s.fields, s.info)
}

/// A structuring result with what the eval and benchmarks want to know.
#[derive(Debug, Clone)]
pub struct Structured {
    pub fields: Fields,
    pub info: StructuringInfo,
    /// Microseconds spent waiting for the model; the rest of
    /// `info.latency_ms` is ours.
    pub model_micros: u64,
    pub repaired: bool,
}

pub async fn structure_detailed(
    primary: &dyn Structurer,
    fallback: &RulesStructurer,
    workflow: &Workflow,
    input: &StructuringInput<'_>,
) -> Structured {
    let started = Instant::now();
    let (proposed, used, fallback_reason) = match primary.structure(workflow, input).await {
        Ok(p) => (p, primary.name().to_owned(), None),
        Err(e) => {
            tracing::warn!(structurer = primary.name(), error = %e, "structurer failed; using rules");
            let p = fallback
                .structure(workflow, input)
                .await
                .unwrap_or_default();
            (p, fallback.name().to_owned(), Some(e.to_string()))
        }
    };
    let mut fields = validate_with(workflow, &proposed, input.notes, input.photo.is_some());
    if used != fallback.name() {
        flag_if_steered(&mut fields, input.notes, "the structurer");
    }
    let info = StructuringInfo {
        structurer: used,
        model: proposed.model.clone(),
        fallback_reason,
        input_tokens: proposed.input_tokens,
        output_tokens: proposed.output_tokens,
        latency_ms: started.elapsed().as_millis() as u64,
    };
    Structured {
        fields,
        info,
        model_micros: proposed.model_micros.unwrap_or(0),
        repaired: proposed.repaired,
    }
}

/// A model may have been steered even within the schema: when the notes
/// hold words aimed at a model, the reviewer is asked to look at every
/// value `who` proposed, and a value whose only evidence lies inside the
/// steering passage (the instruction itself, not an observation) says so
/// first.
pub fn flag_if_steered(fields: &mut Fields, notes: &str, who: &str) {
    let Some(steering) = guard::steering(notes) else {
        return;
    };
    let words = &steering.words;
    for f in fields.values_mut().filter(|f| !f.value.is_null()) {
        let mut note =
            format!("the notes contain words aimed at {who} ({words:?}); check this value");
        if let Some(q) = &f.evidence
            && steering.only_inside(q)
        {
            note = format!(
                "its only evidence ({q:?}) is inside words aimed at {who} ({words:?}): an instruction, not an observation; check this value"
            );
        }
        f.flag = Some(match f.flag.take() {
            Some(old) => format!("{old}; {note}"),
            None => note,
        });
    }
}

/// The fields an assistant proposed over MCP, validated exactly as a
/// structurer's are (the endpoint already refused what breaks the schema;
/// this is the same gate on the pipeline's side): a quote that is not in
/// the source text is dropped and the field flagged.
pub fn validate_assistant(
    workflow: &Workflow,
    proposal: &AssistantProposal,
    notes: &str,
) -> Fields {
    let proposed = Proposed {
        fields: proposal
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        evidence: proposal
            .evidence
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
        ..Proposed::default()
    };
    let mut fields = validate(workflow, &proposed, notes);
    let who = format!("the assistant {}", proposal.assistant);
    for f in fields.values_mut() {
        if let Some(flag) = &mut f.flag {
            *flag = flag.replace("the structurer", &who);
        }
    }
    flag_if_steered(&mut fields, notes, "an assistant");
    fields
}

/// Is `quote` really in the input? A quote of the notes (spacing and case
/// aside), or, when the model saw the photo, a reading marked `photo:`.
pub fn evidence_in_input(quote: &str, notes: &str, photo_sent: bool) -> bool {
    let q = quote.trim();
    if photo_sent && let Some(rest) = q.strip_prefix("photo:") {
        return !rest.trim().is_empty();
    }
    !q.is_empty() && normalize(notes).contains(&normalize(q))
}

/// Keeps only declared fields; a value that breaks the schema or the
/// Salesforce limits is left empty and flagged; a quote that is not in the
/// notes is dropped and flagged.
pub fn validate(workflow: &Workflow, proposed: &Proposed, notes: &str) -> Fields {
    validate_with(workflow, proposed, notes, false)
}

/// `validate`, where evidence may also be a reading from a photo the model
/// was shown (marked `photo:`; flagged so the reviewer compares).
pub fn validate_with(
    workflow: &Workflow,
    proposed: &Proposed,
    notes: &str,
    photo_sent: bool,
) -> Fields {
    let mut out = Fields::new();
    for spec in &workflow.fields {
        let mut fv = FieldValue {
            value: Value::Null,
            evidence: None,
            flag: None,
        };
        if let Some(v) = proposed.fields.get(&spec.name).filter(|v| !is_blank(v)) {
            let one: BTreeMap<String, Value> = [(spec.name.clone(), v.clone())].into();
            let issues: Vec<_> = workflow
                .check(&one)
                .into_iter()
                .filter(|i| i.field == spec.name && i.message != "is required")
                .collect();
            match issues.first() {
                None => fv.value = v.clone(),
                Some(issue) => {
                    fv.flag = Some(format!(
                        "the structurer proposed {}, which {}",
                        short(v),
                        issue.message
                    ));
                }
            }
        }
        if !fv.value.is_null() {
            match proposed.evidence.get(&spec.name).and_then(Value::as_str) {
                Some(q)
                    if photo_sent
                        && q.trim().starts_with("photo:")
                        && evidence_in_input(q, notes, true) =>
                {
                    fv.evidence = Some(q.trim().to_owned());
                    fv.flag = Some("read from the photo; compare with it".into());
                }
                Some(q) if evidence_in_input(q, notes, false) => {
                    fv.evidence = Some(q.trim().to_owned());
                    fv.flag = proposed.remarks.get(&spec.name).cloned();
                }
                Some(q) if !q.trim().is_empty() => {
                    fv.flag =
                        Some("the quoted evidence is not in the notes; check this value".into());
                }
                _ => {
                    if let Some(d) = &spec.default
                        && fv.value.as_str() == Some(d.as_str())
                    {
                        fv.flag = Some(format!("not stated in the notes; default {d} used"));
                    } else {
                        fv.flag = Some("no words in the notes support this value".into());
                    }
                }
            }
        } else if let Some(why) = proposed.undecided.get(&spec.name)
            && spec.required
            && fv.flag.is_none()
        {
            // Not the default: the notes point two ways, the reviewer
            // chooses. (An optional field the structurer hesitated on is
            // just left empty, as before: not one more tick.)
            fv.flag = Some(format!("{why}: please choose"));
        } else if let Some(d) = &spec.default {
            fv.value = Value::String(d.clone());
            if fv.flag.is_none() {
                fv.flag = Some(format!("not stated in the notes; default {d} used"));
            }
        } else if spec.required && fv.flag.is_none() {
            fv.flag = Some("required, and the notes did not give it: please fill in".into());
        }
        out.insert(spec.name.clone(), fv);
    }
    out
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    format!("{t:?}")
}

/// Lowercase, whitespace folded: quotes match however the model spaced them.
pub(crate) fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wf() -> std::sync::Arc<Workflow> {
        crate::workflows::builtin().iter().next().unwrap().clone()
    }

    #[test]
    fn nothing_outside_the_schema_survives() {
        let w = wf();
        let notes = "Compressor is leaking oil, urgent";
        let mut p = Proposed::default();
        p.fields
            .insert("Subject".into(), json!("Compressor leaking oil"));
        p.evidence
            .insert("Subject".into(), json!("Compressor is leaking oil"));
        p.fields.insert("Priority".into(), json!("Critical"));
        p.fields.insert("OwnerId".into(), json!("005000000000001"));
        p.fields.insert("Type".into(), json!("Mechanical"));
        p.evidence.insert("Type".into(), json!("an invented quote"));
        let out = validate(&w, &p, notes);
        assert!(!out.contains_key("OwnerId"));
        assert_eq!(out["Subject"].value, json!("Compressor leaking oil"));
        assert_eq!(
            out["Subject"].evidence.as_deref(),
            Some("Compressor is leaking oil")
        );
        assert!(out["Subject"].flag.is_none());
        // Not a picklist value → default with a flag, never "Critical".
        assert_eq!(out["Priority"].value, json!("Medium"));
        assert!(
            out["Priority"]
                .flag
                .as_deref()
                .unwrap()
                .contains("Critical")
        );
        // Invented evidence → flagged.
        assert!(out["Type"].evidence.is_none());
        assert!(out["Type"].flag.is_some());
    }

    #[test]
    fn a_photo_reading_counts_only_when_the_model_saw_the_photo() {
        let w = wf();
        let notes = "Nameplate attached, unit not cooling";
        let mut p = Proposed::default();
        p.fields.insert("Subject".into(), json!("Unit not cooling"));
        p.evidence
            .insert("Subject".into(), json!("photo: nameplate model RTU-40"));
        let with = validate_with(&w, &p, notes, true);
        assert_eq!(
            with["Subject"].evidence.as_deref(),
            Some("photo: nameplate model RTU-40")
        );
        assert!(with["Subject"].flag.as_deref().unwrap().contains("photo"));
        let without = validate_with(&w, &p, notes, false);
        assert_eq!(without["Subject"].evidence, None);
        assert!(
            without["Subject"]
                .flag
                .as_deref()
                .unwrap()
                .contains("not in the notes")
        );
    }
}
