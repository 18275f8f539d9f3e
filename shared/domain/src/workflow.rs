//! Workflow definitions: the governance config admins write. Anything not
//! declared here cannot reach Salesforce.

use super::{AssetContext, WorkflowId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// `file:line: problem`, as compilers say it, so an editor jumps there.
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        file: String,
        /// 1-based; `None` when the problem is not on one line (e.g. no fields).
        line: Option<usize>,
        message: String,
    },
}

/// The 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key = ...` is first written (top level or in a table).
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .or_else(|| l.trim_start().strip_prefix(&format!("\"{key}\"")))
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// The line where the string `value` is first written in quotes.
fn value_line(text: &str, value: &str) -> Option<usize> {
    let quoted = format!("\"{value}\"");
    text.lines()
        .position(|l| l.contains(&quoted))
        .map(|i| i + 1)
}

/// Never `delete`: the config format has no way to say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Known only to be refused with the reason when a workflow is loaded:
    /// without an external id a retry cannot find what it created.
    Create,
    Upsert,
    /// Changes an existing record, found by its id, in only the declared
    /// fields (and only those a proposal gives a value).
    Update,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StructurerKind {
    #[default]
    Rules,
    Claude,
    Bedrock,
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetBinding {
    #[serde(rename = "asset.id")]
    AssetId,
    #[serde(rename = "asset.account_id")]
    AccountId,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FieldKind {
    Text {
        max_length: usize,
    },
    Textarea {
        max_length: usize,
    },
    Picklist {
        values: Vec<String>,
        restricted: bool,
    },
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawField")]
pub struct FieldSpec {
    /// The Salesforce field API name.
    pub name: String,
    pub label: String,
    #[serde(flatten)]
    pub kind: FieldKind,
    pub required: bool,
    pub help: Option<String>,
    /// Picklist value used when the notes say nothing about it.
    pub default: Option<String>,
    /// Words (any language) that point at a picklist value, for the rules
    /// structurer: value → words.
    pub vocabulary: BTreeMap<String, Vec<String>>,
    /// A picklist whose values name records of another object: the field
    /// is a lookup (e.g. `WorkTypeId`), written with the id of the record
    /// whose `by` field is the chosen value (found in the org at commit).
    pub lookup: Option<Lookup>,
    /// `review = "confirm"`: the reviewer must tick this field before the
    /// approval counts, however sure structuring was.
    pub confirm: bool,
}

/// Where a lookup field's values are found: `object` records by `by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub object: String,
    #[serde(default = "default_lookup_by")]
    pub by: String,
}

fn default_lookup_by() -> String {
    "Name".into()
}

/// The file form of a field: flat, so unknown keys (typos) are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    label: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    restricted: Option<bool>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    help: Option<String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    vocabulary: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    lookup: Option<Lookup>,
    review: Option<String>,
}

impl TryFrom<RawField> for FieldSpec {
    type Error = String;
    fn try_from(r: RawField) -> Result<Self, String> {
        let n = &r.name;
        let kind = match (r.kind.as_str(), r.max_length, r.values, r.restricted) {
            ("text", Some(max_length), None, None) => FieldKind::Text { max_length },
            ("textarea", Some(max_length), None, None) => FieldKind::Textarea { max_length },
            ("picklist", None, Some(values), restricted) => FieldKind::Picklist {
                values,
                restricted: restricted.unwrap_or(true),
            },
            ("text" | "textarea", None, _, _) => {
                return Err(format!("field {n}: max_length is required"));
            }
            ("picklist", _, None, _) => return Err(format!("field {n}: values are required")),
            ("text" | "textarea" | "picklist", ..) => {
                return Err(format!(
                    "field {n}: max_length is for text, values/restricted for picklists"
                ));
            }
            (other, ..) => {
                return Err(format!(
                    "field {n}: type {other:?} is not one of text, textarea, picklist"
                ));
            }
        };
        if let Some(l) = &r.lookup {
            if !matches!(
                kind,
                FieldKind::Picklist {
                    restricted: true,
                    ..
                }
            ) {
                return Err(format!(
                    "field {n}: a lookup is a restricted picklist of the names it may point at (type = \"picklist\", values = [...])"
                ));
            }
            if !is_api_name(&l.object) || !is_api_name(&l.by) {
                return Err(format!("field {n}: lookup object and by must be API names"));
            }
        }
        let confirm = match r.review.as_deref() {
            None => false,
            Some("confirm") => true,
            Some(other) => {
                return Err(format!(
                    "field {n}: review = {other:?} is not known; the one value is \"confirm\" (the reviewer must tick the field)"
                ));
            }
        };
        Ok(FieldSpec {
            confirm,
            name: r.name,
            label: r.label,
            kind,
            required: r.required,
            help: r.help,
            default: r.default,
            vocabulary: r.vocabulary,
            lookup: r.lookup,
        })
    }
}

impl FieldSpec {
    pub fn max_length(&self) -> Option<usize> {
        match &self.kind {
            FieldKind::Text { max_length } | FieldKind::Textarea { max_length } => {
                Some(*max_length)
            }
            FieldKind::Picklist { .. } => None,
        }
    }

    pub fn picklist(&self) -> Option<&[String]> {
        match &self.kind {
            FieldKind::Picklist { values, .. } => Some(values),
            _ => None,
        }
    }

    pub fn is_textarea(&self) -> bool {
        matches!(self.kind, FieldKind::Textarea { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhotoPolicy {
    #[serde(default = "yes")]
    pub allowed: bool,
    #[serde(default = "default_photo_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_photo_types")]
    pub content_types: Vec<String>,
    /// How many photos one report may carry (each up to `max_bytes`).
    #[serde(default = "default_photo_count")]
    pub max_count: usize,
    /// May the structurer (a model) see the photos?
    #[serde(default)]
    pub send_to_structurer: bool,
}

fn default_photo_bytes() -> u64 {
    4 * 1024 * 1024
}
fn default_photo_count() -> usize {
    5
}
/// The most photos a workflow may allow: each is one upload to Salesforce
/// and one audit event in the commit's last write.
pub const MAX_PHOTO_COUNT: usize = 10;
fn default_photo_types() -> Vec<String> {
    vec!["image/jpeg".into(), "image/png".into(), "image/webp".into()]
}

impl Default for PhotoPolicy {
    fn default() -> Self {
        Self {
            allowed: true,
            max_bytes: default_photo_bytes(),
            content_types: default_photo_types(),
            max_count: default_photo_count(),
            send_to_structurer: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffPolicy {
    pub summary_field: String,
    #[serde(default)]
    pub priority_field: Option<String>,
}

/// What the technician is told (`[notify]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyPolicy {
    /// Mail a reporter who gave an email address once, when the report is
    /// written to Salesforce or rejected.
    #[serde(default = "yes")]
    pub reporter: bool,
    /// Show the reviewer's reason for a rejection on the status page and
    /// in that mail (off: "rejected" only, e.g. when reasons name people).
    #[serde(default = "yes")]
    pub reject_reason: bool,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        Self {
            reporter: true,
            reject_reason: true,
        }
    }
}

/// The field Salesforce numbers a record of `object` by (an auto-number
/// people quote on the phone), for the objects that have one.
pub fn record_number_field(object: &str) -> Option<&'static str> {
    match object {
        "Case" => Some("CaseNumber"),
        "WorkOrder" => Some("WorkOrderNumber"),
        _ => None,
    }
}

/// How an `update` workflow finds and shows the record it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Fields that name the record for people (a Case's number, subject).
    #[serde(default)]
    pub label_fields: Vec<String>,
    /// The record's lookup to the Asset it is about, shown to the reviewer
    /// as the asset of the proposal (a record without one cannot be
    /// proposed to).
    pub asset_field: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowFile {
    id: String,
    name: String,
    #[serde(default)]
    description: String,
    object: String,
    operation: Operation,
    #[serde(default)]
    external_id_field: Option<String>,
    #[serde(default)]
    structurer: StructurerKind,
    reviewers: Vec<String>,
    #[serde(default = "default_review_hours")]
    review_link_hours: u32,
    #[serde(default)]
    review: ReviewFile,
    #[serde(default)]
    duplicates: DuplicatesFile,
    #[serde(default)]
    constants: BTreeMap<String, Value>,
    #[serde(default)]
    bindings: BTreeMap<String, AssetBinding>,
    #[serde(default)]
    photo: PhotoPolicy,
    handoff: HandoffPolicy,
    fields: Vec<FieldSpec>,
    #[serde(default)]
    update: Option<UpdatePolicy>,
    #[serde(default)]
    notify: NotifyPolicy,
}

fn default_review_hours() -> u32 {
    72
}

/// `[review]`: what happens while nobody decides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewFile {
    /// Hours after the links were mailed; 0 turns the reminder off.
    #[serde(default)]
    remind_after_hours: Option<u32>,
    #[serde(default)]
    escalate_after_hours: Option<u32>,
    #[serde(default)]
    escalate_to: Vec<String>,
}

/// `[duplicates]`: look for what may already cover a report.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DuplicatesFile {
    /// Default: on for workflows that make Cases.
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    window_days: Option<u32>,
}

/// How far back the duplicate lookup looks when a workflow does not say.
pub const DEFAULT_DUPLICATE_WINDOW_DAYS: u32 = 30;

/// Before the review mail: open records of the workflow's object for the
/// same asset created within `window_days`, and pending reports of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicatePolicy {
    pub window_days: u32,
}

/// When a workflow says nothing: a reminder a day after the links were
/// mailed (if the links live longer than that), no escalation.
pub const DEFAULT_REMIND_AFTER_HOURS: u32 = 24;

/// What the sweep does for a review round nobody has decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReviewPolicy {
    /// A reminder to the reviewers this long after the round was issued.
    pub remind_after: Option<time::Duration>,
    /// Links for a second list this long after the round was issued.
    pub escalation: Option<Escalation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub after: time::Duration,
    pub to: Vec<String>,
}

/// A loaded, validated workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: WorkflowId,
    pub name: String,
    pub description: String,
    pub object: String,
    pub operation: Operation,
    pub external_id_field: Option<String>,
    pub structurer: StructurerKind,
    pub reviewers: Vec<String>,
    pub review_link_ttl: time::Duration,
    /// Reminder and escalation (`[review]`).
    pub review: ReviewPolicy,
    /// The duplicate lookup (`[duplicates]`); `None`: off.
    pub duplicates: Option<DuplicatePolicy>,
    pub constants: BTreeMap<String, Value>,
    pub bindings: BTreeMap<String, AssetBinding>,
    pub photo: PhotoPolicy,
    pub handoff: HandoffPolicy,
    pub fields: Vec<FieldSpec>,
    /// Set exactly when `operation` is `update`.
    pub update: Option<UpdatePolicy>,
    pub notify: NotifyPolicy,
    schema: Value,
    /// Compiled on the first check, not at parse: a cold start that never
    /// checks a record of this workflow does not pay for it.
    validator: Arc<std::sync::OnceLock<Result<jsonschema::Validator, String>>>,
}

/// `[review]` checked against the link lifetime and the reviewers; an error
/// names the key it is about.
fn review_policy(
    raw: &ReviewFile,
    reviewers: &[String],
    link_hours: u32,
) -> Result<ReviewPolicy, (&'static str, String)> {
    let escalation = match (raw.escalate_after_hours, raw.escalate_to.is_empty()) {
        (None, true) => None,
        (Some(_), true) => {
            return Err((
                "escalate_after_hours",
                "[review] escalate_after_hours needs escalate_to: the reviewers to escalate to"
                    .into(),
            ));
        }
        (None, false) => {
            return Err((
                "escalate_to",
                "[review] escalate_to needs escalate_after_hours: when to escalate".into(),
            ));
        }
        (Some(h), false) => {
            if h == 0 || h >= link_hours {
                return Err((
                    "escalate_after_hours",
                    format!(
                        "[review] escalate_after_hours must be between 1 and {} (less than review_link_hours = {link_hours}: the links would have expired)",
                        link_hours.saturating_sub(1)
                    ),
                ));
            }
            let mut seen = BTreeSet::new();
            for r in &raw.escalate_to {
                if !looks_like_email(r) {
                    return Err((
                        "escalate_to",
                        format!("[review] escalate_to: {r:?} is not an email address"),
                    ));
                }
                if reviewers.iter().any(|x| x.eq_ignore_ascii_case(r)) {
                    return Err((
                        "escalate_to",
                        format!("[review] escalate_to: {r} is already one of the reviewers"),
                    ));
                }
                if !seen.insert(r.to_ascii_lowercase()) {
                    return Err((
                        "escalate_to",
                        format!("[review] escalate_to: {r} is listed twice"),
                    ));
                }
            }
            Some(Escalation {
                after: time::Duration::hours(h.into()),
                to: raw.escalate_to.clone(),
            })
        }
    };
    let remind_after = match raw.remind_after_hours {
        Some(0) => None,
        Some(h) => {
            if h >= link_hours {
                return Err((
                    "remind_after_hours",
                    format!(
                        "[review] remind_after_hours = {h} must be less than review_link_hours = {link_hours}: the links would have expired (0 turns the reminder off)"
                    ),
                ));
            }
            if let Some(e) = &escalation
                && i64::from(h) >= e.after.whole_hours()
            {
                return Err((
                    "remind_after_hours",
                    format!(
                        "[review] remind_after_hours = {h} must come before escalate_after_hours = {}",
                        e.after.whole_hours()
                    ),
                ));
            }
            Some(time::Duration::hours(h.into()))
        }
        // The default only where it fits: before the links expire and
        // before an escalation.
        None => {
            let h = i64::from(DEFAULT_REMIND_AFTER_HOURS);
            (h < i64::from(link_hours)
                && escalation
                    .as_ref()
                    .is_none_or(|e| h < e.after.whole_hours()))
            .then(|| time::Duration::hours(h))
        }
    };
    Ok(ReviewPolicy {
        remind_after,
        escalation,
    })
}

/// CaseComment.CommentBody's length (the contract: 4,000).
pub const COMMENT_MAX_CHARS: usize = 4000;

impl Workflow {
    /// The comment an "add to this open Case" writes: the approved values
    /// (labelled, the summary first), who reported and who approved, and
    /// the proposal's marker last -- kept even when the text is cut to
    /// [`COMMENT_MAX_CHARS`], since a retry finds the comment by it.
    pub fn comment_body(&self, p: &crate::Proposal) -> String {
        let values = p.current().map(|r| r.values()).unwrap_or_default();
        let text = |v: &Value| match v {
            Value::String(s) => s.trim().to_owned(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let mut out = String::new();
        if let Some(s) = values.get(&self.handoff.summary_field).map(text) {
            out.push_str(&s);
            out.push_str("\n\n");
        }
        for f in &self.fields {
            if f.name == self.handoff.summary_field {
                continue;
            }
            let v = values.get(&f.name).map(text).unwrap_or_default();
            if !v.is_empty() {
                out.push_str(&format!("{}: {v}\n", f.label));
            }
        }
        let by = p.decision.as_ref().map_or("a reviewer", |d| d.by.as_str());
        let reporter = p.intake.reporter.as_deref().unwrap_or("a technician");
        let footer = format!(
            "\nField report on {} by {reporter}, added to this Case by {by} (fieldgate). {}",
            p.asset.name,
            p.comment_marker()
        );
        let room = COMMENT_MAX_CHARS.saturating_sub(footer.chars().count() + 1);
        if out.chars().count() > room {
            out = out.chars().take(room).collect::<String>() + "…";
        }
        out + &footer
    }

    /// Who a reminder or an escalation is mailed to.
    pub fn nudge_recipients(&self, kind: crate::NudgeKind) -> &[String] {
        match kind {
            crate::NudgeKind::Reminder => &self.reviewers,
            crate::NudgeKind::Escalation => self
                .review
                .escalation
                .as_ref()
                .map_or(&[][..], |e| e.to.as_slice()),
        }
    }

    /// How long after a round's links were issued the nudge is due.
    pub fn nudge_after(&self, kind: crate::NudgeKind) -> Option<time::Duration> {
        match kind {
            crate::NudgeKind::Reminder => self.review.remind_after,
            crate::NudgeKind::Escalation => self.review.escalation.as_ref().map(|e| e.after),
        }
    }
}

/// A problem with one field's value, for the structurer's repair round and
/// for the reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldIssue {
    pub field: String,
    pub message: String,
}

fn is_api_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 80
}

impl Workflow {
    pub fn from_toml(file: &str, text: &str) -> Result<Workflow, WorkflowError> {
        // Semantic problems point at the line that says the offending
        // thing; parse problems at the span toml reports.
        let at = |line: Option<usize>, message: String| WorkflowError::Invalid {
            file: file.to_owned(),
            line,
            message,
        };
        let key = |k: &str, message: String| at(key_line(text, k), message);
        let value = |v: &str, message: String| at(value_line(text, v), message);
        let invalid = |message: String| at(None, message);
        let raw: WorkflowFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_at(text, s.start));
            at(line, e.message().trim().to_owned())
        })?;
        let id: WorkflowId = raw
            .id
            .parse()
            .map_err(|e| key("id", format!("id {:?}: {e}", raw.id)))?;
        if !is_api_name(&raw.object) {
            return Err(key(
                "object",
                format!("object {:?} is not an API name", raw.object),
            ));
        }
        let ext = match (raw.operation, raw.external_id_field) {
            (Operation::Create, _) => {
                return Err(key(
                    "operation",
                    "operation = \"create\" is not supported: a retry after a crash could not tell whether the record was already created, so it could be written twice. Use operation = \"upsert\" with external_id_field: it creates the record the first time and finds it on every retry".into(),
                ));
            }
            (Operation::Upsert, None) => {
                return Err(key(
                    "operation",
                    "operation = \"upsert\" needs external_id_field (it makes retries safe)".into(),
                ));
            }
            (_, Some(f)) if !is_api_name(&f) => {
                return Err(key(
                    "external_id_field",
                    format!("external_id_field {f:?} is not an API name"),
                ));
            }
            (Operation::Update, Some(_)) => {
                return Err(invalid(
                    "operation = \"update\" changes a record by its id: it takes no external_id_field".into(),
                ));
            }
            (_, f) => f,
        };
        match (&raw.operation, &raw.update) {
            (Operation::Update, None) => {
                return Err(invalid(
                    "operation = \"update\" needs an [update] table with asset_field (and label_fields)".into(),
                ));
            }
            (Operation::Create | Operation::Upsert, Some(_)) => {
                return Err(invalid(
                    "[update] is for operation = \"update\" only".into(),
                ));
            }
            (_, Some(u)) => {
                for f in u.label_fields.iter().chain([&u.asset_field]) {
                    if !is_api_name(f) {
                        return Err(invalid(format!("[update] {f:?} is not an API name")));
                    }
                }
            }
            _ => {}
        }
        if raw.operation == Operation::Update {
            if !raw.bindings.is_empty() {
                return Err(invalid(
                    "operation = \"update\" takes no [bindings]: the record exists, and its lookups are not changed by a proposal".into(),
                ));
            }
            if let Some(f) = raw
                .fields
                .iter()
                .find(|f| f.default.is_some() || f.required)
            {
                return Err(invalid(format!(
                    "field {}: an update changes only the fields a proposal gives, so no field is required or has a default",
                    f.name
                )));
            }
            if raw.photo.allowed {
                return Err(invalid(
                    "operation = \"update\": set [photo] allowed = false (updates carry no photo)"
                        .into(),
                ));
            }
        }
        if raw.photo.allowed && !(1..=MAX_PHOTO_COUNT).contains(&raw.photo.max_count) {
            return Err(key(
                "max_count",
                format!(
                    "[photo] max_count must be between 1 and {MAX_PHOTO_COUNT} (set allowed = false for no photos)"
                ),
            ));
        }
        if raw.reviewers.is_empty() {
            return Err(key(
                "reviewers",
                "reviewers: at least one reviewer is needed".into(),
            ));
        }
        for r in &raw.reviewers {
            if !looks_like_email(r) {
                return Err(value(r, format!("reviewer {r:?} is not an email address")));
            }
        }
        if !(1..=24 * 30).contains(&raw.review_link_hours) {
            return Err(key(
                "review_link_hours",
                "review_link_hours must be between 1 and 720".into(),
            ));
        }
        let review = review_policy(&raw.review, &raw.reviewers, raw.review_link_hours)
            .map_err(|(k, m)| key(k, m))?;
        // Open-record lookup knows a Case's `IsClosed`; an update proposal
        // names its record already.
        let makes_cases = raw.object == "Case" && raw.operation != Operation::Update;
        let duplicates = match raw.duplicates.enabled.unwrap_or(makes_cases) {
            false => None,
            true if !makes_cases => {
                return Err(key(
                    "enabled",
                    "[duplicates] looks up open Cases (IsClosed = false): only for workflows that create Cases (object = \"Case\", operation create or upsert)".into(),
                ));
            }
            true => {
                let days = raw
                    .duplicates
                    .window_days
                    .unwrap_or(DEFAULT_DUPLICATE_WINDOW_DAYS);
                if !(1..=365).contains(&days) {
                    return Err(key(
                        "window_days",
                        "[duplicates] window_days must be between 1 and 365".into(),
                    ));
                }
                Some(DuplicatePolicy { window_days: days })
            }
        };
        if raw.fields.is_empty() {
            return Err(invalid("fields: declare at least one field".into()));
        }
        let mut seen = BTreeSet::new();
        for f in &raw.fields {
            if !is_api_name(&f.name) {
                return Err(value(
                    &f.name,
                    format!("field {:?} is not an API name", f.name),
                ));
            }
            if !seen.insert(f.name.as_str()) {
                let second = text
                    .match_indices(&format!("\"{}\"", f.name))
                    .nth(1)
                    .map(|(i, _)| line_at(text, i));
                return Err(at(second, format!("field {} is declared twice", f.name)));
            }
            if let Some(n) = f.max_length()
                && !(1..=131_072).contains(&n)
            {
                return Err(value(
                    &f.name,
                    format!("field {}: max_length out of range", f.name),
                ));
            }
            match &f.kind {
                FieldKind::Picklist { values, .. } => {
                    if values.is_empty() {
                        return Err(value(
                            &f.name,
                            format!("field {}: no picklist values", f.name),
                        ));
                    }
                    for v in f.default.iter().chain(f.vocabulary.keys()) {
                        if !values.contains(v) {
                            return Err(value(
                                &f.name,
                                format!("field {}: {v:?} is not one of its values", f.name),
                            ));
                        }
                    }
                }
                _ => {
                    if !f.vocabulary.is_empty() {
                        return Err(value(
                            &f.name,
                            format!("field {}: vocabulary is for picklists only", f.name),
                        ));
                    }
                }
            }
        }
        for name in raw.constants.keys().chain(raw.bindings.keys()) {
            if !is_api_name(name) {
                return Err(key(name, format!("{name:?} is not an API name")));
            }
            if seen.contains(name.as_str()) {
                return Err(key(
                    name,
                    format!("{name} is both a model field and a constant/binding"),
                ));
            }
        }
        if let Some(ext) = &ext
            && (seen.contains(ext.as_str())
                || raw.constants.contains_key(ext)
                || raw.bindings.contains_key(ext))
        {
            return Err(key(
                "external_id_field",
                format!("{ext} is the external id: fieldgate sets it, nothing else may"),
            ));
        }
        if !seen.contains(raw.handoff.summary_field.as_str()) {
            return Err(key(
                "summary_field",
                "handoff.summary_field must be a declared field".into(),
            ));
        }
        if let Some(p) = &raw.handoff.priority_field
            && !seen.contains(p.as_str())
        {
            return Err(key(
                "priority_field",
                "handoff.priority_field must be a declared field".into(),
            ));
        }
        let schema = json_schema(&raw.fields);
        Ok(Workflow {
            id,
            name: raw.name,
            description: raw.description,
            object: raw.object,
            operation: raw.operation,
            external_id_field: ext,
            structurer: raw.structurer,
            reviewers: raw.reviewers,
            review_link_ttl: time::Duration::hours(raw.review_link_hours.into()),
            review,
            duplicates,
            constants: raw.constants,
            bindings: raw.bindings,
            photo: raw.photo,
            handoff: raw.handoff,
            fields: raw.fields,
            update: raw.update,
            notify: raw.notify,
            schema,
            validator: Arc::default(),
        })
    }

    /// The JSON Schema of the fields a structurer may fill.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Checks values against the schema (types, picklists, lengths) and the
    /// required marks. Empty strings and nulls count as "not given".
    pub fn check(&self, values: &BTreeMap<String, Value>) -> Vec<FieldIssue> {
        let mut issues = Vec::new();
        let mut given = Map::new();
        for (k, v) in values {
            if self.field(k).is_none() {
                issues.push(FieldIssue {
                    field: k.clone(),
                    message: "is not a field of this workflow".into(),
                });
                continue;
            }
            if !is_blank(v) {
                given.insert(k.clone(), v.clone());
            }
        }
        for f in &self.fields {
            if f.required && !given.contains_key(&f.name) {
                issues.push(FieldIssue {
                    field: f.name.clone(),
                    message: "is required".into(),
                });
            }
        }
        // `required` is checked above; the schema checks the given values.
        let validator = match self
            .validator
            .get_or_init(|| jsonschema::validator_for(&self.schema).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            // The schema is derived by `json_schema`, so this is our bug, not
            // the reviewer's: nothing passes unchecked.
            Err(e) => {
                for f in &self.fields {
                    issues.push(FieldIssue {
                        field: f.name.clone(),
                        message: format!(
                            "cannot be checked (derived schema does not compile: {e})"
                        ),
                    });
                }
                return issues;
            }
        };
        for err in validator.iter_errors(&Value::Object(given)) {
            let path = err.instance_path().to_string();
            let field = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("")
                .to_owned();
            if field.is_empty() {
                continue;
            }
            let message = match self.field(&field) {
                Some(spec) => describe_violation(spec, &err.to_string()),
                None => err.to_string(),
            };
            if !issues.iter().any(|i| i.field == field) {
                issues.push(FieldIssue { field, message });
            }
        }
        issues
    }

    /// The Salesforce record: approved values, constants, asset bindings.
    /// The external id goes in the URL of an upsert, not the body.
    /// The lookup fields: (field, lookup), for the commit to resolve.
    pub fn lookups(&self) -> impl Iterator<Item = (&FieldSpec, &Lookup)> {
        self.fields
            .iter()
            .filter_map(|f| f.lookup.as_ref().map(|l| (f, l)))
    }

    /// The record as approved. A lookup field holds the name chosen; the
    /// commit puts the id it names in its place.
    pub fn record(
        &self,
        values: &BTreeMap<String, Value>,
        asset: &AssetContext,
    ) -> Map<String, Value> {
        let mut rec = Map::new();
        for f in &self.fields {
            if let Some(v) = values.get(&f.name).filter(|v| !is_blank(v)) {
                rec.insert(f.name.clone(), v.clone());
            }
        }
        for (k, v) in &self.constants {
            rec.insert(k.clone(), v.clone());
        }
        for (k, b) in &self.bindings {
            let v = match b {
                AssetBinding::AssetId => Some(asset.id.to_string()),
                AssetBinding::AccountId => asset.account_id.clone(),
            };
            if let Some(v) = v {
                rec.insert(k.clone(), Value::String(v));
            }
        }
        rec
    }
}

pub fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn describe_violation(spec: &FieldSpec, raw: &str) -> String {
    match &spec.kind {
        FieldKind::Picklist { values, .. } => format!("must be one of: {}", values.join(", ")),
        FieldKind::Text { max_length } | FieldKind::Textarea { max_length } => {
            if raw.contains("longer") {
                format!("is longer than {max_length} characters")
            } else {
                "must be text".into()
            }
        }
    }
}

/// A plausible mail address (one `@`, a dotted domain, no spaces or
/// angle brackets): what intake accepts as the reporter's address.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
}

fn json_schema(fields: &[FieldSpec]) -> Value {
    let mut props = Map::new();
    for f in fields {
        let mut p = match &f.kind {
            FieldKind::Text { max_length } | FieldKind::Textarea { max_length } => {
                json!({"type": "string", "maxLength": max_length})
            }
            FieldKind::Picklist { values, .. } => json!({"type": "string", "enum": values}),
        };
        let mut desc = f.label.clone();
        if let Some(h) = &f.help {
            desc = format!("{desc}. {h}");
        }
        p["description"] = Value::String(desc);
        props.insert(f.name.clone(), p);
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name.as_str())
        .collect();
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

type ById = BTreeMap<WorkflowId, Arc<Workflow>>;
type Parse = Box<dyn FnOnce() -> ById + Send>;

/// The workflows this deployment knows. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Workflows {
    by_id: Arc<std::sync::LazyLock<ById, Parse>>,
}

fn by_id(list: Vec<Workflow>) -> ById {
    list.into_iter()
        .map(|w| (w.id.clone(), Arc::new(w)))
        .collect()
}

impl Workflows {
    pub fn from_workflows(list: Vec<Workflow>) -> Self {
        let map = by_id(list);
        Self::lazy_map(move || map)
    }

    /// Parsed on first use, not when built: the built-in workflows are text
    /// compiled into the binary, and a Lambda whose first event never looks
    /// one up (an unknown link, a sweep) should not parse them at start
    /// (issue 10). Only for lists that cannot fail to parse (tested
    /// text); files an admin wrote are loaded up front, so their errors
    /// stop the start.
    pub fn lazy(parse: impl FnOnce() -> Vec<Workflow> + Send + 'static) -> Self {
        Self::lazy_map(move || by_id(parse()))
    }

    fn lazy_map(f: impl FnOnce() -> ById + Send + 'static) -> Self {
        Self {
            by_id: Arc::new(std::sync::LazyLock::new(Box::new(f))),
        }
    }

    pub fn get(&self, id: &WorkflowId) -> Option<Arc<Workflow>> {
        self.by_id.get(id).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.by_id.values()
    }
}

impl Default for Workflows {
    fn default() -> Self {
        Self::from_workflows(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shipped workflow, read at compile time: the domain does no I/O.
    const FIELD_SERVICE_CASE: &str =
        include_str!("../../../infra/workflows/field-service-case.toml");

    const CASE_PRIORITY_STATUS: &str =
        include_str!("../../../infra/workflows/case-priority-status.toml");

    const FIELD_SERVICE_WORK_ORDER: &str =
        include_str!("../../../infra/workflows/field-service-work-order.toml");

    #[test]
    fn a_lazy_list_is_parsed_once_on_first_use_and_shared_by_clones() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static PARSES: AtomicUsize = AtomicUsize::new(0);
        let list = Workflows::lazy(|| {
            PARSES.fetch_add(1, Ordering::SeqCst);
            vec![Workflow::from_toml("x", FIELD_SERVICE_CASE).unwrap()]
        });
        let copy = list.clone();
        assert_eq!(PARSES.load(Ordering::SeqCst), 0, "not parsed when built");
        let id: WorkflowId = "field-service-case".parse().unwrap();
        assert!(copy.get(&id).is_some());
        assert_eq!(list.iter().count(), 1);
        assert!(list.get(&"other".parse().unwrap()).is_none());
        assert_eq!(PARSES.load(Ordering::SeqCst), 1, "parsed once for both");
    }

    #[test]
    fn update_workflow_loads_and_its_mistakes_are_refused() {
        let w = Workflow::from_toml("x", CASE_PRIORITY_STATUS).unwrap();
        assert_eq!(w.operation, Operation::Update);
        assert_eq!(w.update.as_ref().unwrap().asset_field, "AssetId");
        assert!(w.check(&BTreeMap::new()).is_empty(), "nothing is required");
        let rec = w.record(
            &[
                ("Priority".to_string(), json!("High")),
                ("Status".to_string(), Value::Null),
            ]
            .into(),
            &AssetContext {
                id: "02i000000000001AAA".parse().unwrap(),
                name: "x".into(),
                serial_number: None,
                account_id: None,
                account_name: None,
                location: None,
            },
        );
        assert_eq!(
            Value::Object(rec),
            json!({"Priority": "High"}),
            "only given fields"
        );
        for (from, to) in [
            (
                "[update]\n",
                "external_id_field = \"Fieldgate_Proposal_Id__c\"\n[update]\n",
            ),
            (
                "restricted = true\n",
                "restricted = true\ndefault = \"Medium\"\n",
            ),
            (
                "restricted = true\n",
                "restricted = true\nrequired = true\n",
            ),
            ("allowed = false", "allowed = true"),
            (
                "[update]\n",
                "[bindings]\nAssetId = \"asset.id\"\n[update]\n",
            ),
            ("operation = \"update\"", "operation = \"create\""),
        ] {
            let bad = CASE_PRIORITY_STATUS.replacen(from, to, 1);
            assert_ne!(bad, CASE_PRIORITY_STATUS, "{from}");
            assert!(Workflow::from_toml("x", &bad).is_err(), "accepted: {to}");
        }
        let no_update = CASE_PRIORITY_STATUS.replace("[update]", "[ignored]");
        assert!(Workflow::from_toml("x", &no_update).is_err());
    }

    fn wf() -> Workflow {
        Workflow::from_toml("x", FIELD_SERVICE_CASE).unwrap()
    }

    #[test]
    fn review_reminders_and_escalation_load_with_clear_errors() {
        let w = wf();
        assert_eq!(w.review.remind_after, Some(time::Duration::hours(24)));
        assert_eq!(w.review.escalation, None);
        let with = |review: &str| {
            let (head, rest) = FIELD_SERVICE_CASE.split_once("\n[review]\n").unwrap();
            let tail = &rest[rest.find("\n[constants]").unwrap()..];
            let text = format!("{head}\n[review]\n{review}\n{tail}");
            Workflow::from_toml("x", &text).map_err(|e| e.to_string())
        };
        let ok = with(
            "remind_after_hours = 8\nescalate_after_hours = 30\nescalate_to = [\"lead@example.com\"]",
        )
        .unwrap();
        assert_eq!(ok.review.remind_after, Some(time::Duration::hours(8)));
        let e = ok.review.escalation.as_ref().unwrap();
        assert_eq!(
            (e.after, e.to.as_slice()),
            (
                time::Duration::hours(30),
                &["lead@example.com".to_string()][..]
            )
        );
        assert_eq!(
            ok.nudge_recipients(crate::NudgeKind::Escalation),
            e.to.as_slice()
        );
        assert_eq!(
            with("remind_after_hours = 0").unwrap().review.remind_after,
            None
        );
        // The default reminder gives way to an earlier escalation.
        let early = with("escalate_after_hours = 4\nescalate_to = [\"lead@example.com\"]").unwrap();
        assert_eq!(early.review.remind_after, None);
        for (review, says) in [
            ("escalate_after_hours = 30", "needs escalate_to"),
            (
                "escalate_to = [\"lead@example.com\"]",
                "needs escalate_after_hours",
            ),
            ("remind_after_hours = 72", "less than review_link_hours"),
            (
                "escalate_after_hours = 80\nescalate_to = [\"lead@example.com\"]",
                "less than review_link_hours",
            ),
            (
                "escalate_after_hours = 0\nescalate_to = [\"lead@example.com\"]",
                "between 1 and 71",
            ),
            (
                "remind_after_hours = 30\nescalate_after_hours = 30\nescalate_to = [\"lead@example.com\"]",
                "must come before",
            ),
            (
                "escalate_after_hours = 30\nescalate_to = [\"lead\"]",
                "not an email",
            ),
            (
                "escalate_after_hours = 30\nescalate_to = [\"Service-Desk@example.com\"]",
                "already one of the reviewers",
            ),
            (
                "escalate_after_hours = 30\nescalate_to = [\"a@example.com\", \"A@example.com\"]",
                "listed twice",
            ),
            ("remind_after = 3", "unknown field"),
        ] {
            let err = with(review).unwrap_err();
            assert!(err.contains(says), "{review}: {err}");
            assert!(err.starts_with("x:"), "{err}");
        }
    }

    #[test]
    fn duplicate_lookup_is_on_for_case_workflows_and_checked() {
        assert_eq!(wf().duplicates, Some(DuplicatePolicy { window_days: 30 }));
        let update = Workflow::from_toml("x", CASE_PRIORITY_STATUS).unwrap();
        assert_eq!(update.duplicates, None, "an update names its record");
        let with = |t: &str| {
            let text = FIELD_SERVICE_CASE.replacen(
                "\n[constants]",
                &format!("\n[duplicates]\n{t}\n\n[constants]"),
                1,
            );
            Workflow::from_toml("x", &text).map_err(|e| e.to_string())
        };
        assert_eq!(
            with("window_days = 7").unwrap().duplicates,
            Some(DuplicatePolicy { window_days: 7 })
        );
        assert_eq!(with("enabled = false").unwrap().duplicates, None);
        for (t, says) in [
            ("window_days = 0", "between 1 and 365"),
            ("window_days = 400", "between 1 and 365"),
            ("days = 3", "unknown field"),
        ] {
            let err = with(t).unwrap_err();
            assert!(err.contains(says), "{t}: {err}");
        }
        let wo = CASE_PRIORITY_STATUS.replacen(
            "\n[update]",
            "\n[duplicates]\nenabled = true\n\n[update]",
            1,
        );
        let err = Workflow::from_toml("x", &wo).unwrap_err().to_string();
        assert!(
            err.contains("only for workflows that create Cases"),
            "{err}"
        );
    }

    #[test]
    fn the_comment_carries_the_approved_values_and_keeps_its_marker() {
        let w = wf();
        let mut p = crate::fixtures::received(
            crate::ProposalId::generate(crate::fixtures::at(0), &mut crate::fixtures::SeededRng(3)),
            crate::fixtures::at(0),
        )
        .proposal;
        let mut f = crate::Fields::new();
        for (k, v) in [
            ("Subject", "Seal leaking again"),
            ("Priority", "High"),
            ("Description", "Oil under the pump."),
        ] {
            f.insert(
                k.into(),
                crate::FieldValue {
                    value: json!(v),
                    ..Default::default()
                },
            );
        }
        p.push_revision(f.clone(), crate::Actor::system("t"), crate::fixtures::at(0));
        let body = w.comment_body(&p);
        assert!(body.starts_with("Seal leaking again\n\n"), "{body}");
        assert!(
            body.contains("Priority: High") && body.contains("Description: Oil under the pump.")
        );
        assert!(body.ends_with(&p.comment_marker()), "{body}");
        f.insert(
            "Description".into(),
            crate::FieldValue {
                value: json!("x".repeat(9000)),
                ..Default::default()
            },
        );
        p.push_revision(f, crate::Actor::system("t"), crate::fixtures::at(0));
        let long = w.comment_body(&p);
        assert!(
            long.chars().count() <= COMMENT_MAX_CHARS,
            "{}",
            long.chars().count()
        );
        assert!(long.ends_with(&p.comment_marker()));
    }

    #[test]
    fn builtin_workflow_loads_with_its_schema() {
        let w = wf();
        assert_eq!(w.object, "Case");
        assert_eq!(w.operation, Operation::Upsert);
        assert_eq!(w.schema()["additionalProperties"], false);
        assert_eq!(
            w.schema()["properties"]["Priority"]["enum"],
            json!(["High", "Medium", "Low"])
        );
        // Compiled lazily by `check`: every shipped workflow's schema compiles.
        for src in [
            FIELD_SERVICE_CASE,
            CASE_PRIORITY_STATUS,
            FIELD_SERVICE_WORK_ORDER,
        ] {
            let w = Workflow::from_toml("x", src).unwrap();
            assert!(jsonschema::validator_for(w.schema()).is_ok());
        }
    }

    #[test]
    fn check_reports_each_problem_by_field() {
        let w = wf();
        let mut v = BTreeMap::new();
        v.insert("Subject".to_string(), json!("x".repeat(300)));
        v.insert("Priority".to_string(), json!("Whenever"));
        v.insert("OwnerId".to_string(), json!("005..."));
        let issues = w.check(&v);
        let fields: BTreeSet<_> = issues.iter().map(|i| i.field.as_str()).collect();
        assert!(fields.contains("Subject"), "{issues:?}");
        assert!(fields.contains("Priority"));
        assert!(fields.contains("OwnerId"));
        v.insert("Subject".into(), json!("Leak"));
        v.insert("Priority".into(), json!("High"));
        v.remove("OwnerId");
        assert!(w.check(&v).is_empty(), "{:?}", w.check(&v));
        v.insert("Subject".into(), json!("  "));
        assert_eq!(w.check(&v)[0].message, "is required");
    }

    #[test]
    fn review_confirm_and_notify_are_read_and_their_mistakes_named() {
        let w = wf();
        assert_eq!(w.notify, NotifyPolicy::default());
        assert!(w.notify.reporter && w.notify.reject_reason, "on by default");
        assert!(w.fields.iter().all(|f| !f.confirm));
        let confirm = FIELD_SERVICE_CASE.replacen(
            "name = \"Priority\"",
            "name = \"Priority\"\nreview = \"confirm\"",
            1,
        );
        let w = Workflow::from_toml("x", &confirm).unwrap();
        assert!(w.field("Priority").unwrap().confirm);
        let bad = confirm.replace("review = \"confirm\"", "review = \"always\"");
        let e = Workflow::from_toml("x.toml", &bad).unwrap_err().to_string();
        assert!(
            e.contains("review = \"always\"") && e.contains("\"confirm\""),
            "{e}"
        );
        let quiet = FIELD_SERVICE_CASE.replacen("reporter = true", "reporter = false", 1);
        let w = Workflow::from_toml("x", &quiet).unwrap();
        assert!(!w.notify.reporter && w.notify.reject_reason);
        let typo = FIELD_SERVICE_CASE.replacen("reporter = true", "reporters = false", 1);
        let e = Workflow::from_toml("x.toml", &typo)
            .unwrap_err()
            .to_string();
        assert!(e.contains("reporters") && e.starts_with("x.toml:"), "{e}");
        assert_eq!(record_number_field("Case"), Some("CaseNumber"));
        assert_eq!(record_number_field("WorkOrder"), Some("WorkOrderNumber"));
        assert_eq!(record_number_field("Asset"), None);
        assert!(looks_like_email("tech@example.com"));
        for bad in [
            "tech@",
            "tech@example",
            "a@b@c.com",
            "tech @example.com",
            "x@.com",
        ] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }

    #[test]
    fn governance_mistakes_are_refused() {
        let bad = FIELD_SERVICE_CASE.replace("operation = \"upsert\"", "operation = \"delete\"");
        assert!(Workflow::from_toml("x", &bad).is_err());
        let bad = FIELD_SERVICE_CASE.replace(
            "[constants]",
            "[constants]\nFieldgate_Proposal_Id__c = \"x\"",
        );
        assert!(Workflow::from_toml("x", &bad).is_err());
        let bad = FIELD_SERVICE_CASE.replace("[constants]", "[constants]\nSubject = \"x\"");
        assert!(Workflow::from_toml("x", &bad).is_err());
    }

    #[test]
    fn create_is_refused_with_the_reason_and_photo_counts_are_checked() {
        let create = FIELD_SERVICE_CASE.replace("operation = \"upsert\"", "operation = \"create\"");
        let e = Workflow::from_toml("x.toml", &create)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not supported") && e.contains("upsert"), "{e}");
        assert!(e.starts_with("x.toml:"), "points at the line: {e}");
        assert_eq!(wf().photo.max_count, 5, "the default");
        for (n, ok) in [("0", false), ("1", true), ("10", true), ("11", false)] {
            let t = FIELD_SERVICE_CASE.replace("max_count = 5 ", &format!("max_count = {n} "));
            assert_ne!(t, FIELD_SERVICE_CASE);
            let r = Workflow::from_toml("x", &t);
            assert_eq!(r.is_ok(), ok, "max_count = {n}: {:?}", r.err());
            if let Err(e) = r {
                assert!(e.to_string().contains("max_count must be between 1 and 10"));
            }
        }
    }

    #[test]
    fn record_adds_constants_and_bindings() {
        let w = wf();
        let asset = AssetContext {
            id: "02i000000000001AAA".parse().unwrap(),
            name: "x".into(),
            serial_number: None,
            account_id: Some("001000000000001AAA".into()),
            account_name: None,
            location: None,
        };
        let mut v = BTreeMap::new();
        v.insert("Subject".to_string(), json!("Leak"));
        v.insert("Type".to_string(), Value::Null);
        let rec = w.record(&v, &asset);
        assert_eq!(rec["Origin"], "Field QR");
        assert_eq!(rec["AssetId"], "02i000000000001AAA");
        assert_eq!(rec["AccountId"], "001000000000001AAA");
        assert!(!rec.contains_key("Type"));
    }
}
