//! `operation = "update"` workflows: what is read of the record a proposal
//! changes, and the snapshot kept of it (by the MCP endpoint when the
//! proposal is made, by the commit step when it finds the record changed).

use crate::domain::{UpdateTarget, Workflow};
use serde_json::{Map, Value};

/// Salesforce's field that every write bumps.
pub const LAST_MODIFIED: &str = "LastModifiedDate";

/// The fields read of the record: the workflow's own, the ones that name
/// it, its asset lookup and `LastModifiedDate`.
pub fn read_fields(wf: &Workflow) -> Vec<String> {
    let mut out: Vec<String> = wf.fields.iter().map(|f| f.name.clone()).collect();
    if let Some(u) = &wf.update {
        out.extend(u.label_fields.iter().cloned());
        out.push(u.asset_field.clone());
    }
    out.push(LAST_MODIFIED.to_owned());
    // The number people quote (the status page shows it once written).
    out.extend(crate::domain::record_number_field(&wf.object).map(str::to_owned));
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|f| seen.insert(f.to_ascii_lowercase()));
    out
}

/// The snapshot of a record as read with [`read_fields`]; `None` when the
/// answer lacks its id or `LastModifiedDate`.
pub fn snapshot(wf: &Workflow, record_id: &str, rec: &Map<String, Value>) -> Option<UpdateTarget> {
    let last_modified = rec.get(LAST_MODIFIED)?.as_str()?.to_owned();
    let label_parts: Vec<String> = wf
        .update
        .iter()
        .flat_map(|u| u.label_fields.iter())
        .filter_map(|f| match rec.get(f) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        })
        .collect();
    let label = if label_parts.is_empty() {
        record_id.to_owned()
    } else {
        label_parts.join(" · ")
    };
    let current = wf
        .fields
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                rec.get(&f.name).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    Some(UpdateTarget {
        record_id: record_id.to_owned(),
        label,
        last_modified,
        current,
        changed: None,
    })
}

/// Whether `s` has the shape of a Salesforce record id (15 or 18
/// alphanumerics); whose record it is, only Salesforce knows.
pub fn looks_like_record_id(s: &str) -> bool {
    (s.len() == 15 || s.len() == 18) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}
