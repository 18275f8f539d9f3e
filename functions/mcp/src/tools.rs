//! The tools. Two read (workflows, assets), one proposes, one reads a
//! proposal back. None writes to Salesforce, deletes, or reaches an object
//! or field that no workflow of the caller's token declares.
//!
//! A mistake of the assistant (a field outside the workflow, a value over
//! a limit, a workflow it may not use) is a tool error (`isError`) that
//! says exactly what is allowed, so the model can correct itself; our own
//! failures are protocol errors and are logged with their cause.

use crate::{Caller, MAX_SOURCE_TEXT, McpDeps};
use fieldgate::Chain;
use fieldgate::clock::new_proposal_id;
use fieldgate::domain::workflow::is_blank;
use fieldgate::domain::{
    AssetBinding, AssetContext, AssetId, AssistantProposal, AssistantToken, FieldKind, Intake,
    Operation, Proposal, ProposalId, Status, UpdateTarget, Workflow, WorkflowId,
};
use fieldgate::ports::Created;
use fieldgate::review::status_ref;
use fieldgate::structuring::validate_assistant;
use fieldgate::update;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct Tools {
    deps: Arc<McpDeps>,
}

impl Tools {
    pub fn new(deps: Arc<McpDeps>) -> Self {
        Self { deps }
    }
}

/// A refusal the model can act on.
fn refuse(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn internal(what: &str, e: &(dyn std::error::Error + 'static)) -> ErrorData {
    tracing::error!(error = %Chain(e), "{what}");
    ErrorData::internal_error(format!("{what}; try again later"), None)
}

fn caller(parts: &http::request::Parts) -> Result<&AssistantToken, ErrorData> {
    parts
        .extensions
        .get::<Caller>()
        .map(|c| &c.0)
        .ok_or_else(|| ErrorData::internal_error("unauthenticated request reached a tool", None))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FindAssetsParams {
    /// The workflow the asset is for (an id from list_workflows).
    pub workflow: String,
    /// Part of the asset's name, its serial number, or its customer's
    /// (account's) name, as the user said it. At least 2 characters.
    pub query: String,
    /// At most this many results (default 10, at most 50).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ProposeParams {
    /// The workflow id from list_workflows.
    pub workflow: String,
    /// Field API name → value, only fields the workflow lists. Picklist
    /// fields take exactly one of their values; text fields at most their
    /// max_length characters. Leave out what the user did not say.
    pub fields: Map<String, Value>,
    /// The user's own words this proposal is based on, verbatim (not your
    /// summary). Reviewers read it next to your values.
    pub source_text: String,
    /// Optional, per field: the exact words of source_text that support the
    /// value. A quote that is not in source_text is dropped and the field
    /// is flagged for the reviewer.
    #[serde(default)]
    pub evidence: BTreeMap<String, String>,
    /// The asset (id from find_assets) the record is about, for workflows
    /// that bind one.
    #[serde(default)]
    pub asset_id: Option<String>,
    /// For a workflow whose operation is "update": the Salesforce id of the
    /// existing record to change (a record of the workflow's object). Give
    /// only the fields to change; the others keep their values.
    #[serde(default)]
    pub record_id: Option<String>,
    /// A key you choose per intended record (e.g. a UUID), 8–128
    /// characters of letters, digits and `-_.:`. Calling again with the same
    /// key returns the same proposal instead of making a second one.
    pub idempotency_key: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GetProposalParams {
    /// The proposal_id that propose_record returned.
    pub proposal_id: String,
}

impl Tools {
    /// The per-minute limit of the caller's token, counted on every call.
    async fn within_rate(&self, who: &AssistantToken) -> Result<Option<CallToolResult>, ErrorData> {
        let now = self.deps.clock.now();
        let n = self
            .deps
            .store
            .count_in_window(&format!("MCP#{}", who.id), 60, now)
            .await
            .map_err(|e| internal("counting tool calls failed", &e))?;
        let limit = fieldgate::domain::SlidingLimit {
            limit: u64::from(who.limits.per_minute),
            window_secs: 60,
        };
        Ok(limit.check(n, now).err().map(|wait| {
            refuse(format!(
                "Rate limit: this assistant may make at most {} tool calls per minute. Try again in {} seconds.",
                who.limits.per_minute, wait.0
            ))
        }))
    }

    /// The workflow, if this token may use it; otherwise a refusal naming
    /// the ones it may use (others are not revealed).
    fn workflow_for(
        &self,
        who: &AssistantToken,
        id: &str,
    ) -> Result<Arc<Workflow>, CallToolResult> {
        let allowed: Vec<&str> = who.workflows.iter().map(WorkflowId::as_str).collect();
        id.parse::<WorkflowId>()
            .ok()
            .filter(|w| who.may_use(w))
            .and_then(|w| self.deps.workflows.get(&w))
            .ok_or_else(|| {
                refuse(format!(
                    "Workflow {id:?} is not one this assistant may use. It may use: {}. Call list_workflows for their fields.",
                    if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
                ))
            })
    }

    /// The record an update proposal changes, read from Salesforce now:
    /// it must exist, be of the workflow's object and be about an asset.
    async fn update_target(
        &self,
        wf: &Workflow,
        record_id: Option<&str>,
    ) -> Result<Result<(AssetContext, UpdateTarget), CallToolResult>, ErrorData> {
        let Some(raw) = record_id.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(Err(refuse(format!(
                "Workflow {} changes an existing {} record: give its Salesforce id as record_id",
                wf.id, wf.object
            ))));
        };
        let not_found = || {
            refuse(format!(
                "No {} record has id {raw:?}: workflow {} changes only existing {} records (ids are 15 or 18 letters and digits)",
                wf.object, wf.id, wf.object
            ))
        };
        if !update::looks_like_record_id(raw) {
            return Ok(Err(not_found()));
        }
        let Some(rec) = self
            .deps
            .search
            .client()
            .await
            .map_err(|e| internal("reaching Salesforce failed", &e))?
            .record(&wf.object, raw, &update::read_fields(wf))
            .await
            .map_err(|e| internal("reading the record failed", &e))?
        else {
            return Ok(Err(not_found()));
        };
        // Salesforce answers with its 18-character id.
        let id = rec
            .get("Id")
            .and_then(|v| v.as_str())
            .unwrap_or(raw)
            .to_owned();
        let Some(target) = update::snapshot(wf, &id, &rec) else {
            return Err(ErrorData::internal_error(
                "the record was read without its LastModifiedDate",
                None,
            ));
        };
        let asset_field = wf
            .update
            .as_ref()
            .map(|u| u.asset_field.as_str())
            .unwrap_or("AssetId");
        let asset_id = rec
            .get(asset_field)
            .and_then(|v| v.as_str())
            .and_then(|a| a.parse::<AssetId>().ok());
        let asset = match asset_id {
            Some(a) => self
                .deps
                .assets
                .lookup(&a)
                .await
                .map_err(|e| internal("asset lookup failed", &e))?,
            None => None,
        };
        match asset {
            Some(a) => Ok(Ok((a, target))),
            None => Ok(Err(refuse(format!(
                "{} {} has no asset ({asset_field} is empty); workflow {} changes only records about an asset",
                wf.object, target.label, wf.id
            )))),
        }
    }

    fn status_url(&self, parts: &http::request::Parts, id: ProposalId) -> String {
        let base = match &self.deps.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            // API Gateway terminates TLS; its host is the API's.
            None => {
                let host = parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                format!("https://{host}")
            }
        };
        format!("{base}/s/{}", status_ref(&self.deps.links, id))
    }
}

/// One field as a model needs to know it.
fn describe_field(spec: &fieldgate::domain::FieldSpec) -> Value {
    let mut f = json!({
        "name": spec.name,
        "label": spec.label,
        "required": spec.required,
    });
    match &spec.kind {
        FieldKind::Text { max_length } => {
            f["type"] = "text".into();
            f["max_length"] = (*max_length).into();
        }
        FieldKind::Textarea { max_length } => {
            f["type"] = "textarea".into();
            f["max_length"] = (*max_length).into();
        }
        FieldKind::Picklist { values, restricted } => {
            f["type"] = "picklist".into();
            f["values"] = json!(values);
            f["restricted"] = (*restricted).into();
        }
    }
    if let Some(h) = &spec.help {
        f["help"] = h.clone().into();
    }
    if let Some(d) = &spec.default {
        f["default"] = d.clone().into();
    }
    f
}

fn binds_asset(wf: &Workflow) -> bool {
    wf.bindings.values().any(|b| *b == AssetBinding::AssetId)
}

fn describe_workflow(wf: &Workflow) -> Value {
    json!({
        "id": wf.id,
        "name": wf.name,
        "description": wf.description,
        "object": wf.object,
        "operation": wf.operation,
        "fields": wf.fields.iter().map(describe_field).collect::<Vec<_>>(),
        // Set by fieldgate, never by the assistant.
        "constants": wf.constants,
        "bindings": wf.bindings,
        "needs_asset": binds_asset(wf),
        "needs_record_id": wf.operation == Operation::Update,
    })
}

/// What the assistant may send for this workflow, for refusals.
fn allowed_fields(wf: &Workflow) -> String {
    wf.fields
        .iter()
        .map(|f| {
            let kind = match &f.kind {
                FieldKind::Text { max_length } | FieldKind::Textarea { max_length } => {
                    format!("text, at most {max_length} characters")
                }
                FieldKind::Picklist { values, .. } => format!("one of {}", values.join(", ")),
            };
            let req = if f.required && f.default.is_none() {
                ", required"
            } else {
                ""
            };
            format!("{} ({kind}{req})", f.name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every problem with the proposed values, as sentences; empty when the
/// proposal may go to review. The same checks as structuring (the
/// workflow's JSON Schema, Salesforce limits, active picklist values).
fn field_problems(
    wf: &Workflow,
    fields: &Map<String, Value>,
    evidence: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let values: BTreeMap<String, Value> =
        fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for issue in wf.check(&values) {
        let name = &issue.field;
        let spec = wf.field(name);
        // A required picklist with a default gets the default.
        if issue.message == "is required" && spec.is_some_and(|s| s.default.is_some()) {
            continue;
        }
        let msg = if wf.constants.contains_key(name) || wf.bindings.contains_key(name) {
            format!("{name} is set by the workflow itself, not by the assistant")
        } else if Some(name.as_str()) == wf.external_id_field.as_deref() {
            format!("{name} is fieldgate's own reference, not a field the assistant sets")
        } else if spec.is_none() {
            format!(
                "{name} is not a field of workflow {} ({} records take only the listed fields)",
                wf.id, wf.object
            )
        } else {
            format!("{name} {}", issue.message)
        };
        problems.push(msg);
    }
    for (name, v) in fields {
        if wf.field(name).is_some() && !v.is_string() && !v.is_null() {
            problems.push(format!("{name} must be given as a string"));
        }
    }
    for name in evidence.keys() {
        if fields.get(name).is_none_or(is_blank) {
            problems.push(format!(
                "evidence for {name}: give evidence only for fields you propose a value for"
            ));
        }
    }
    problems.dedup();
    problems
}

fn valid_idempotency_key(k: &str) -> bool {
    (8..=128).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn decision_kind(p: &Proposal) -> Option<&'static str> {
    p.decision.as_ref().map(|d| match d.kind {
        fieldgate::domain::DecisionKind::Approve => "approved",
        fieldgate::domain::DecisionKind::Reject => "rejected",
    })
}

fn what_next(status: Status) -> &'static str {
    match status {
        Status::Received | Status::PendingReview => {
            "Waiting for a person to review it. Nothing is in Salesforce yet."
        }
        Status::Approved | Status::Committing => "Approved; being written to Salesforce.",
        Status::Committed => "Written to Salesforce.",
        Status::NeedsAttention => {
            "Salesforce refused the approved record, or it was changed in Salesforce since; it is back with the reviewers."
        }
        Status::Rejected => "A reviewer rejected it. Nothing was written to Salesforce.",
        Status::Expired => "Nobody reviewed it in time. Nothing was written to Salesforce.",
    }
}

#[tool_router]
impl Tools {
    #[tool(
        description = "List the workflows this assistant may propose records to. Each workflow names one Salesforce object and operation, and every field you may set: its type, picklist values, max length, whether it is required, and help text. Fields not listed cannot be set. `constants` and `bindings` are filled in by fieldgate (e.g. the Case's AssetId from the asset you choose). Call this first.",
        annotations(
            title = "List workflows",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_workflows(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = caller(&parts)?;
        if let Some(refusal) = self.within_rate(who).await? {
            return Ok(refusal);
        }
        let list: Vec<Value> = self
            .deps
            .workflows
            .iter()
            .filter(|w| who.may_use(&w.id))
            .map(|w| describe_workflow(w))
            .collect();
        Ok(CallToolResult::structured(json!({
            "assistant": who.name,
            "workflows": list,
        })))
    }

    #[tool(
        description = "Find the assets (equipment) a workflow's record can be about, by part of the asset's name, its serial number, or the customer's account name. Returns each asset's id (pass it to propose_record as asset_id), name, serial number, account and location. Ask the user to choose when several match.",
        annotations(title = "Find assets", read_only_hint = true, open_world_hint = false)
    )]
    async fn find_assets(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(p): Parameters<FindAssetsParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = caller(&parts)?;
        if let Some(refusal) = self.within_rate(who).await? {
            return Ok(refusal);
        }
        let wf = match self.workflow_for(who, &p.workflow) {
            Ok(wf) => wf,
            Err(refusal) => return Ok(refusal),
        };
        if !binds_asset(&wf) {
            return Ok(refuse(format!(
                "Workflow {} does not bind an asset; propose_record needs no asset_id for it.",
                wf.id
            )));
        }
        let query = p.query.trim();
        if query.chars().count() < 2 || query.chars().count() > 100 {
            return Ok(refuse(
                "query must be 2 to 100 characters: part of a name, a serial number or an account name",
            ));
        }
        let found = self
            .deps
            .search
            .search(query, p.limit.unwrap_or(10))
            .await
            .map_err(|e| internal("asset search failed", &e))?;
        // Only what the workflow's bindings use, plus what a person needs
        // to tell assets apart.
        let assets: Vec<Value> = found
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "name": a.name,
                    "serial_number": a.serial_number,
                    "account_id": a.account_id,
                    "account_name": a.account_name,
                    "location": a.location,
                })
            })
            .collect();
        Ok(CallToolResult::structured(json!({
            "count": assets.len(),
            "assets": assets,
        })))
    }

    #[tool(
        description = "Propose a Salesforce record for a person to review. It is NOT written to Salesforce now: reviewers get an email, may correct fields, and approve or reject; only an approved record is written. Give only fields the workflow lists (see list_workflows), the user's own words verbatim as source_text, and for each field the exact words of source_text that support it as evidence. Anything outside the workflow is refused with a message saying what is allowed. For a workflow whose operation is \"update\", pass the existing record's id as record_id and only the fields to change; the reviewer sees its current values beside yours. Use the same idempotency_key when retrying. Returns proposal_id, status and a status_url; check progress with get_proposal.",
        annotations(
            title = "Propose a record for review",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn propose_record(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(p): Parameters<ProposeParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = caller(&parts)?;
        if let Some(refusal) = self.within_rate(who).await? {
            return Ok(refusal);
        }
        let wf = match self.workflow_for(who, &p.workflow) {
            Ok(wf) => wf,
            Err(refusal) => return Ok(refusal),
        };
        if !valid_idempotency_key(&p.idempotency_key) {
            return Ok(refuse(
                "idempotency_key must be 8 to 128 characters of letters, digits and - _ . : (e.g. a UUID); reuse it only to retry the same proposal",
            ));
        }
        let source_text = p.source_text.trim();
        if source_text.is_empty() {
            return Ok(refuse(
                "source_text is required: the user's own words, verbatim",
            ));
        }
        if source_text.chars().count() > MAX_SOURCE_TEXT {
            return Ok(refuse(format!(
                "source_text is longer than {MAX_SOURCE_TEXT} characters"
            )));
        }
        let problems = field_problems(&wf, &p.fields, &p.evidence);
        if !problems.is_empty() {
            return Ok(refuse(format!(
                "Nothing was proposed. {}. Workflow {} {} {} records and takes only these fields: {}.",
                problems.join("; "),
                wf.id,
                if wf.operation == Operation::Update {
                    "updates"
                } else {
                    "creates"
                },
                wf.object,
                allowed_fields(&wf)
            )));
        }
        let mut target = None;
        let asset = match (binds_asset(&wf), p.asset_id.as_deref()) {
            _ if wf.operation == Operation::Update => {
                match self.update_target(&wf, p.record_id.as_deref()).await? {
                    Ok((asset, t)) => {
                        target = Some(t);
                        asset
                    }
                    Err(refusal) => return Ok(refusal),
                }
            }
            (true, None) => {
                return Ok(refuse(format!(
                    "Workflow {} needs asset_id: find it with find_assets",
                    wf.id
                )));
            }
            (true, Some(raw)) => {
                let found = match raw.trim().parse::<AssetId>() {
                    Ok(id) => self
                        .deps
                        .assets
                        .lookup(&id)
                        .await
                        .map_err(|e| internal("asset lookup failed", &e))?,
                    Err(_) => None,
                };
                match found {
                    Some(a) => a,
                    None => {
                        return Ok(refuse(format!(
                            "No asset has id {raw:?}: find it with find_assets"
                        )));
                    }
                }
            }
            (false, _) => {
                return Ok(refuse(format!(
                    "Workflow {} binds no asset, which the MCP endpoint does not support yet",
                    wf.id
                )));
            }
        };
        let now = self.deps.clock.now();
        let day = self
            .deps
            .store
            .count_in_window(&format!("MCPDAY#{}", who.id), 86_400, now)
            .await
            .map_err(|e| internal("counting proposals failed", &e))?
            // A calendar day (UTC), as the message says: not sliding.
            .current;
        if day > u64::from(who.limits.per_day) {
            return Ok(refuse(format!(
                "Daily cap: this assistant may make at most {} proposals per day. Nothing was proposed; try again tomorrow.",
                who.limits.per_day
            )));
        }
        let proposal = AssistantProposal {
            token_id: who.id.clone(),
            assistant: who.name.clone(),
            fields: p
                .fields
                .iter()
                .filter(|(_, v)| !is_blank(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            evidence: p.evidence.clone(),
        };
        // What the reviewer will see flagged: the same validation the
        // structure step runs on this proposal.
        let checked = validate_assistant(&wf, &proposal, source_text);
        let id = new_proposal_id(now);
        let t = Proposal::receive(
            id,
            wf.id.clone(),
            asset,
            Intake {
                notes: source_text.to_owned(),
                reporter: None,
                photos: vec![],
                received_at: now,
                assistant: Some(proposal),
            },
            now,
        );
        let mut t = t;
        t.proposal.update = target;
        let key = format!("MCP#{}#{}", who.id, p.idempotency_key);
        let created = self
            .deps
            .store
            .create(&t, Some(&key))
            .await
            .map_err(|e| internal("storing the proposal failed", &e))?;
        let (id, replayed) = match created {
            Created::New => (id, false),
            Created::Existing(existing) => (existing, true),
        };
        let status = match replayed {
            false => Status::Received,
            true => self
                .deps
                .store
                .get(id)
                .await
                .map_err(|e| internal("reading the proposal failed", &e))?
                .map(|p| p.status)
                .unwrap_or(Status::Received),
        };
        tracing::info!(proposal = %id, assistant = %who.id, workflow = %wf.id, replayed, "assistant proposal");
        let flagged: BTreeMap<&String, &String> = checked
            .iter()
            .filter_map(|(k, f)| f.flag.as_ref().map(|flag| (k, flag)))
            .collect();
        Ok(CallToolResult::structured(json!({
            "proposal_id": id,
            "status": status,
            "status_url": self.status_url(&parts, id),
            "replayed": replayed,
            "flagged_for_reviewer": flagged,
            "next": what_next(status),
        })))
    }

    #[tool(
        description = "Where a proposal made by this assistant stands: status, who decided and when, what the reviewer changed field by field, the rejection reason, and once written, the Salesforce record id and URL. Statuses: RECEIVED and PENDING_REVIEW (waiting for a person), APPROVED and COMMITTING (being written), COMMITTED (in Salesforce), NEEDS_ATTENTION (Salesforce refused; back with reviewers), REJECTED, EXPIRED.",
        annotations(
            title = "Get a proposal",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn get_proposal(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(p): Parameters<GetProposalParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = caller(&parts)?;
        if let Some(refusal) = self.within_rate(who).await? {
            return Ok(refusal);
        }
        let not_found = || {
            refuse(format!(
                "No proposal {:?} was made by this assistant",
                p.proposal_id
            ))
        };
        let Ok(id) = p.proposal_id.trim().parse::<ProposalId>() else {
            return Ok(not_found());
        };
        let found = self
            .deps
            .store
            .get(id)
            .await
            .map_err(|e| internal("reading the proposal failed", &e))?;
        // Another token's proposal does not exist for this one.
        let Some(prop) = found.filter(|x| {
            x.intake
                .assistant
                .as_ref()
                .is_some_and(|a| a.token_id == who.id)
        }) else {
            return Ok(not_found());
        };
        Ok(CallToolResult::structured(report(
            &prop,
            self.status_url(&parts, id),
        )))
    }
}

/// A proposal as its assistant may see it.
fn report(p: &Proposal, status_url: String) -> Value {
    let proposed: BTreeMap<String, Value> = match p.revisions.first() {
        Some(r) => r.values(),
        None => p
            .intake
            .assistant
            .as_ref()
            .map(|a| a.fields.clone())
            .unwrap_or_default(),
    };
    let current = p.current().map(|r| r.values()).unwrap_or_default();
    // What reviewers changed: the first revision (the assistant's, as
    // validated) against the newest.
    let changes: Vec<Value> = current
        .iter()
        .filter(|(k, v)| proposed.get(*k).unwrap_or(&Value::Null) != *v)
        .map(|(k, v)| json!({"field": k, "proposed": proposed.get(k), "now": v}))
        .collect();
    let decision = p.decision.as_ref().map(|d| {
        json!({
            "decision": decision_kind(p),
            "by": d.by,
            "at": d.at.format(&time::format_description::well_known::Rfc3339).ok(),
            "reason": d.reason,
        })
    });
    let salesforce =
        p.commit.record_id.as_ref().map(
            |id| json!({"id": id, "url": p.commit.record_url, "number": p.commit.record_number}),
        );
    let problem = (p.status == Status::NeedsAttention)
        .then_some(p.commit.last_error.as_ref())
        .flatten()
        .map(|e| json!({"code": e.code, "message": e.message, "fields": e.fields}));
    json!({
        "proposal_id": p.id,
        "workflow": p.workflow,
        "status": p.status,
        "explanation": what_next(p.status),
        "created_at": p.created_at.format(&time::format_description::well_known::Rfc3339).ok(),
        "asset": {"id": p.asset.id, "name": p.asset.name},
        "record": p.update.as_ref().map(|t| json!({
            "id": t.record_id,
            "label": t.label,
            "in_salesforce": t.current,
            "last_modified": t.last_modified,
            "changed_in_salesforce": t.changed_fields(),
        })),
        "proposed": proposed,
        "current": current,
        "reviewer_changes": changes,
        "decision": decision,
        "salesforce": salesforce,
        "salesforce_problem": problem,
        "status_url": status_url,
    })
}

#[tool_handler]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("fieldgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "fieldgate turns what the user tells you into Salesforce records that a person reviews before anything is written. \
                 Call list_workflows to see what you may propose and which fields exist; find_assets to find the asset the record is about; \
                 propose_record with the user's own words as source_text and quotes as evidence; get_proposal to follow up. \
                 You cannot write, update or delete Salesforce records directly, and only the listed fields exist.",
            )
    }
}
