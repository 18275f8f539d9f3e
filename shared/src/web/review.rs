//! The reviewer's page: the proposed record beside the original notes,
//! with each field's evidence marked where it is quoted.

use super::{html, render};
use crate::domain::{AssetContext, FieldKind, Proposal, Workflow};
use askama::Template;
use axum::response::Response;

pub struct FieldView {
    /// 1-based; ties the field to its highlight in the notes.
    pub num: usize,
    pub name: String,
    pub label: String,
    pub value: String,
    pub required: bool,
    pub is_picklist: bool,
    pub is_textarea: bool,
    pub options: Vec<(String, bool)>,
    pub max_length: usize,
    pub evidence: Option<String>,
    /// The highlight in the notes that holds the evidence, if found.
    pub evidence_at: Option<usize>,
    pub flag: Option<String>,
    pub refused: bool,
    /// The value the structurer proposed (before the reviewer's edits).
    pub proposed: String,
    /// The shown value differs from the proposal (a re-shown edit).
    pub changed: bool,
    /// For an update: what the record holds in Salesforce now (as last
    /// read), shown beside the proposed value.
    pub in_salesforce: Option<String>,
    /// For an update: Salesforce's value changed since the proposal; the
    /// value before.
    pub changed_in_salesforce: Option<String>,
    /// Why the field is under "needs your eyes" (then it has a tick box);
    /// `None`: under "looks right".
    pub attention: Option<&'static str>,
    /// The tick box is ticked (a re-shown form keeps the reviewer's ticks).
    pub confirmed: bool,
}

/// A run of the original notes: inside `level` highlights (0 = plain),
/// with the numbers of the highlights that start here.
pub struct NoteSpan {
    pub text: String,
    /// How many quotes cover this run, capped at 3 (a CSS class).
    pub level: usize,
    /// (field number, field label) of each quote starting at this run.
    pub starts: Vec<(usize, String)>,
}

/// Splits the notes into runs, highlighting each field's evidence where it
/// is found (exactly, else ignoring ASCII case). Quotes may nest or overlap
/// (a description often quotes everything); each keeps its own numbered
/// start. The page escapes every run, so notes never become markup.
pub fn highlight(notes: &str, fields: &mut [FieldView]) -> Vec<NoteSpan> {
    let mut ranges: Vec<(usize, usize, usize, String)> = Vec::new();
    for f in fields.iter_mut() {
        let Some(ev) = f
            .evidence
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        else {
            continue;
        };
        // The same matching decides "quote not found" for the approval.
        let at = crate::domain::quote_at(notes, ev);
        if let Some(start) = at {
            f.evidence_at = Some(f.num);
            ranges.push((start, start + ev.len(), f.num, f.label.clone()));
        }
    }
    let mut cuts: Vec<usize> = vec![0, notes.len()];
    cuts.extend(ranges.iter().flat_map(|r| [r.0, r.1]));
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            NoteSpan {
                text: notes[a..b].to_owned(),
                level: ranges
                    .iter()
                    .filter(|r| r.0 <= a && r.1 >= b)
                    .count()
                    .min(3),
                starts: ranges
                    .iter()
                    .filter(|r| r.0 == a)
                    .map(|r| (r.2, r.3.clone()))
                    .collect(),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "review.html")]
pub struct ReviewPage<'a> {
    pub workflow_name: &'a str,
    pub object: &'a str,
    pub reviewer: &'a str,
    pub asset: &'a AssetContext,
    pub reporter: Option<&'a str>,
    /// The assistant that proposed it over MCP (instead of a technician).
    pub assistant: Option<&'a str>,
    pub received_at: String,
    pub notes: Vec<NoteSpan>,
    /// One per photo, in the technician's order.
    pub photo_urls: Vec<String>,
    /// The fields to check and tick ([`crate::domain::needs_eyes`]).
    pub eyes: Vec<FieldView>,
    /// The rest, collapsed under "looks right".
    pub fine: Vec<FieldView>,
    /// The "looks right" values in one line, for its collapsed summary.
    pub fine_preview: String,
    /// How many fields need a second look (`eyes.len()`).
    pub flagged: usize,
    pub fixed: Vec<(String, String)>,
    pub csrf: String,
    pub revision: &'a str,
    pub expires_at: String,
    pub problem: Option<&'a crate::domain::SalesforceProblem>,
    /// For an update workflow: the record it changes.
    pub record: Option<&'a crate::domain::UpdateTarget>,
    /// What the duplicate lookup found (open records to add to instead,
    /// other pending reports, lookups that failed).
    pub duplicates: Option<&'a crate::domain::DuplicateCheck>,
    pub errors: Vec<String>,
}

/// Splits the fields into "needs your eyes" and "looks right", with the
/// latter's one-line preview.
pub fn group(fields: Vec<FieldView>) -> (Vec<FieldView>, Vec<FieldView>, String) {
    let (eyes, fine): (Vec<_>, Vec<_>) = fields.into_iter().partition(|f| f.attention.is_some());
    let preview = fine
        .iter()
        .filter(|f| !f.value.trim().is_empty())
        .map(|f| {
            let v = f.value.trim().replace('\n', " ");
            if v.chars().count() > 40 {
                format!("{}…", v.chars().take(40).collect::<String>())
            } else {
                v
            }
        })
        .collect::<Vec<_>>()
        .join(" · ");
    (eyes, fine, preview)
}

impl ReviewPage<'_> {
    pub fn page(&self, status: u16) -> Response {
        html(status, render(self))
    }
}

/// The review form's fields: current revision values, or the reviewer's
/// rejected input when re-showing the form with errors.
pub fn field_views(
    wf: &Workflow,
    p: &Proposal,
    overrides: Option<&std::collections::BTreeMap<String, String>>,
    confirmed: &std::collections::BTreeSet<String>,
) -> Vec<FieldView> {
    let current = p.current();
    let eyes = crate::domain::needs_eyes(wf, p);
    let problem = p.commit.last_error.as_ref();
    let refused: Vec<&str> = problem
        .iter()
        .flat_map(|e| e.fields.iter().map(String::as_str))
        .collect();
    wf.fields
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let fv = current.and_then(|r| r.fields.get(&spec.name));
            let proposed = fv
                .and_then(|f| f.value.as_str().map(str::to_owned))
                .unwrap_or_default();
            let value = overrides
                .and_then(|o| o.get(&spec.name).cloned())
                .unwrap_or_else(|| proposed.clone());
            let (is_picklist, options) = match &spec.kind {
                FieldKind::Picklist { values, .. } => (
                    true,
                    values.iter().map(|v| (v.clone(), *v == value)).collect(),
                ),
                _ => (false, vec![]),
            };
            let text = |v: Option<&serde_json::Value>| match v {
                None | Some(serde_json::Value::Null) => "(empty)".to_owned(),
                Some(serde_json::Value::String(s)) if s.is_empty() => "(empty)".to_owned(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            let in_salesforce = p
                .update
                .as_ref()
                .map(|t| text(t.current.get(&spec.name)));
            let changed_in_salesforce = p.update.as_ref().and_then(|t| {
                let c = t.changed.as_ref()?;
                let before = c.previous.get(&spec.name);
                (before != t.current.get(&spec.name)).then(|| text(before))
            });
            FieldView {
                in_salesforce,
                changed_in_salesforce,
                attention: eyes.get(&spec.name).map(|a| a.reason()),
                confirmed: confirmed.contains(&spec.name),
                num: i + 1,
                name: spec.name.clone(),
                label: spec.label.clone(),
                required: spec.required,
                is_picklist,
                is_textarea: spec.is_textarea(),
                options,
                max_length: spec.max_length().unwrap_or(255),
                evidence: fv.and_then(|f| f.evidence.clone()),
                evidence_at: None,
                flag: if refused.contains(&spec.name.as_str())
                    && problem.is_some_and(|e| e.code == "RECORD_CHANGED")
                {
                    Some("Changed in Salesforce after the proposal: compare with the value there now".into())
                } else if refused.contains(&spec.name.as_str()) {
                    Some(format!(
                        "Salesforce refused this field: {}",
                        problem
                            .map(|e| e.message.as_str())
                            .unwrap_or("no reason given")
                    ))
                } else {
                    fv.and_then(|f| f.flag.clone())
                },
                refused: refused.contains(&spec.name.as_str()),
                changed: value.replace("\r\n", "\n").trim() != proposed.trim(),
                proposed,
                value,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: usize, evidence: Option<&str>) -> FieldView {
        FieldView {
            num,
            name: format!("F{num}"),
            label: format!("Field {num}"),
            value: "v".into(),
            required: false,
            is_picklist: false,
            is_textarea: false,
            options: vec![],
            max_length: 255,
            evidence: evidence.map(str::to_owned),
            evidence_at: None,
            flag: None,
            refused: false,
            proposed: "v".into(),
            changed: false,
            in_salesforce: None,
            changed_in_salesforce: None,
            attention: None,
            confirmed: false,
        }
    }

    /// (text, level, numbers starting here) of each highlighted run.
    fn marked(spans: &[NoteSpan]) -> Vec<(&str, usize, Vec<usize>)> {
        spans
            .iter()
            .filter(|s| s.level > 0)
            .map(|s| {
                (
                    s.text.as_str(),
                    s.level,
                    s.starts.iter().map(|x| x.0).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn evidence_is_marked_where_it_is_quoted() {
        let notes = "Pump leaking oil. Breaker TRIPPED twice. Needs seal kit.";
        let mut f = vec![
            field(1, Some("leaking oil")),
            field(2, Some("breaker tripped twice")),
            field(3, Some("not in the notes")),
            field(4, Some("oil")), // nested in field 1's quote
            field(5, None),
        ];
        let spans = highlight(notes, &mut f);
        assert_eq!(
            marked(&spans),
            vec![
                ("leaking ", 1, vec![1]),
                ("oil", 2, vec![4]),
                ("Breaker TRIPPED twice", 1, vec![2]),
            ]
        );
        let joined: String = spans.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, notes, "the notes are shown whole, in order");
        let at: Vec<Option<usize>> = f.iter().map(|f| f.evidence_at).collect();
        assert_eq!(at, vec![Some(1), Some(2), None, Some(4), None]);
    }

    #[test]
    fn non_ascii_notes_split_on_char_boundaries() {
        let notes = "Kühlung defekt — Lüfter blockiert";
        let mut f = vec![field(1, Some("Lüfter blockiert"))];
        let spans = highlight(notes, &mut f);
        assert_eq!(marked(&spans), vec![("Lüfter blockiert", 1, vec![1])]);
    }
}
