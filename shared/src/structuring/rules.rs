//! The deterministic structurer: offline, explainable, the default in
//! `fieldgate dev` and the fallback for every model.

use super::normalize;
use crate::domain::{FieldKind, FieldSpec, Workflow};
use crate::ports::{Proposed, StructureError, Structurer, StructuringInput};
use async_trait::async_trait;
use serde_json::Value;

#[derive(Debug, Default, Clone)]
pub struct RulesStructurer;

const SUBJECT_WORDS: usize = 12;

#[async_trait]
impl Structurer for RulesStructurer {
    fn name(&self) -> &str {
        "rules"
    }

    async fn structure(
        &self,
        workflow: &Workflow,
        input: &StructuringInput<'_>,
    ) -> Result<Proposed, StructureError> {
        Ok(structure_text(workflow, input.notes))
    }
}

/// Synchronous core, for the CLI and tests.
pub fn structure_text(workflow: &Workflow, notes: &str) -> Proposed {
    let mut out = Proposed::default();
    let text = notes.trim();
    let summary_field = workflow.handoff.summary_field.as_str();
    for spec in &workflow.fields {
        let found = match &spec.kind {
            FieldKind::Picklist { values, .. } => pick(spec, values, text),
            FieldKind::Text { max_length } if spec.name == summary_field => {
                subject(text, *max_length).map(|(v, q)| (Value::String(v), q))
            }
            FieldKind::Textarea { max_length } => {
                let v = clip(text, *max_length);
                (!v.is_empty()).then(|| (Value::String(v.clone()), v))
            }
            FieldKind::Text { .. } => None,
        };
        if let Some((value, quote)) = found {
            out.fields.insert(spec.name.clone(), value);
            out.evidence.insert(spec.name.clone(), Value::String(quote));
        }
    }
    out
}

/// The first sentence, cut to a headline; the quote is what it came from.
fn subject(text: &str, max_len: usize) -> Option<(String, String)> {
    let first = text
        .split(['\n', '.', '!', '?', ';'])
        .map(str::trim)
        .find(|s| s.chars().any(char::is_alphanumeric))?;
    let words: Vec<&str> = first.split_whitespace().collect();
    let quote = words[..words.len().min(SUBJECT_WORDS)].join(" ");
    let quote = quote.trim_end_matches([',', ':', '-']).to_owned();
    let mut subject = clip(&quote, max_len.min(120));
    if let Some(c) = subject.chars().next() {
        subject = c.to_uppercase().chain(subject.chars().skip(1)).collect();
    }
    Some((subject, clip(&quote, max_len.min(120))))
}

/// Picks the picklist value whose words occur most (earlier mentions break
/// ties); the quote is the matched words as written.
fn pick(spec: &FieldSpec, values: &[String], text: &str) -> Option<(Value, String)> {
    let lower = text.to_lowercase();
    let mut best: Option<(usize, usize, &String, String)> = None;
    for value in values {
        let mut words: Vec<String> = spec.vocabulary.get(value).cloned().unwrap_or_default();
        // "priority high", "type: electrical" name the value directly.
        words.push(format!(
            "{} {}",
            spec.label.to_lowercase(),
            value.to_lowercase()
        ));
        words.push(format!(
            "{}: {}",
            spec.label.to_lowercase(),
            value.to_lowercase()
        ));
        let mut hits = 0;
        let mut first: Option<(usize, String)> = None;
        for w in &words {
            let w = normalize(w);
            if w.is_empty() {
                continue;
            }
            for (pos, _) in lower.match_indices(&w) {
                if !on_word_boundary(&lower, pos, w.len()) {
                    continue;
                }
                hits += 1;
                if first.as_ref().is_none_or(|(p, _)| pos < *p) {
                    first = Some((pos, text[pos..pos + w.len()].to_owned()));
                }
            }
        }
        if let Some((pos, quote)) = first {
            let better = match &best {
                None => true,
                Some((h, p, _, _)) => hits > *h || (hits == *h && pos < *p),
            };
            if better {
                best = Some((hits, pos, value, quote));
            }
        }
    }
    best.map(|(_, _, v, q)| (Value::String(v.clone()), q))
}

fn on_word_boundary(s: &str, pos: usize, len: usize) -> bool {
    let before = s[..pos].chars().next_back();
    let after = s[pos + len..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

fn clip(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max_chars).collect();
    if let Some(cut) = out
        .rfind(char::is_whitespace)
        .filter(|&c| c > max_chars / 2)
    {
        out.truncate(cut);
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Workflows;
    use crate::structuring::validate;

    #[test]
    fn structures_a_typical_note_with_evidence() {
        let ws = Workflows::builtin();
        let w = ws.iter().next().unwrap();
        let notes = "Compressor on unit 3 is leaking oil again. Breaker tripped twice this morning, needs someone ASAP.";
        let p = structure_text(w, notes);
        let out = validate(w, &p, notes);
        assert_eq!(
            out["Subject"].text(),
            Some("Compressor on unit 3 is leaking oil again")
        );
        assert_eq!(out["Priority"].text(), Some("High"));
        assert_eq!(out["Description"].text(), Some(notes));
        for (name, f) in &out {
            if let Some(q) = &f.evidence {
                assert!(
                    notes.to_lowercase().contains(&q.to_lowercase()),
                    "{name}: {q}"
                );
            }
        }
    }

    #[test]
    fn quiet_notes_get_defaults_flagged() {
        let ws = Workflows::builtin();
        let w = ws.iter().next().unwrap();
        let notes = "Checked the unit";
        let out = validate(w, &structure_text(w, notes), notes);
        assert_eq!(out["Priority"].text(), Some("Medium"));
        assert!(out["Priority"].flag.is_some());
        assert!(out["Type"].value.is_null());
    }

    #[test]
    fn words_match_whole_words_only() {
        let ws = Workflows::builtin();
        let w = ws.iter().next().unwrap();
        // "download" contains "down" but is not a breakdown.
        let out = structure_text(w, "Firmware download finished, display fine");
        assert_ne!(
            out.fields.get("Reason"),
            Some(&Value::String("Breakdown".into()))
        );
    }
}
