//! `fieldgate check`: does a workflow fit the org it writes to? Compares
//! the workflow with the object's describe (contract: Describe) before the
//! first real proposal finds out the hard way: fields exist and are
//! writable as the operation needs, picklist values are active, lengths
//! fit, required fields are covered, the external id is external + unique.

use std::collections::BTreeSet;
use std::fmt;

use fieldgate::domain::{AssetBinding, FieldKind, Operation, Workflow};
use fieldgate::salesforce::{SalesforceClient, SfError};
use serde_json::Value;

/// Length of a proposal id (a ULID), the external id's value.
const PROPOSAL_ID_LEN: u64 = 26;

/// One thing that will go wrong in Salesforce, named by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field (or the object) it is about.
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub workflow: String,
    pub object: String,
    pub org: String,
    /// Fields found in order, for the report.
    pub ok: Vec<String>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, subject: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            subject: subject.to_owned(),
            message: message.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "workflow {} → {} on {}",
            self.workflow, self.object, self.org
        )?;
        for ok in &self.ok {
            writeln!(f, "  ok       {ok}")?;
        }
        for p in &self.problems {
            writeln!(f, "  PROBLEM  {}: {}", p.subject, p.message)?;
        }
        if self.passed() {
            write!(f, "passed: the workflow fits the org")
        } else {
            write!(
                f,
                "failed: {} problem(s); fix the workflow or the org before going live",
                self.problems.len()
            )
        }
    }
}

/// Fetches the describes the workflow needs and checks against them.
pub async fn run(wf: &Workflow, sf: &SalesforceClient, org: &str) -> Result<Report, SfError> {
    let object = sf.describe(&wf.object).await;
    let object = match object {
        Err(SfError::Api { status: 404, .. }) => {
            let mut r = Report {
                workflow: wf.id.to_string(),
                object: wf.object.clone(),
                org: org.to_owned(),
                ..Report::default()
            };
            r.problem(
                &wf.object,
                "the org has no such object (or the user cannot see it)",
            );
            return Ok(r);
        }
        other => other?,
    };
    let files = if wf.photo.allowed {
        Some(sf.describe("ContentVersion").await?)
    } else {
        None
    };
    let mut report = check(wf, &object, files.as_ref(), org);
    check_lookup_values(&mut report, wf, sf).await?;
    Ok(report)
}

/// Each lookup value names exactly one record in the org (a work type the
/// org has): the commit writes that record's id.
async fn check_lookup_values(
    r: &mut Report,
    wf: &Workflow,
    sf: &SalesforceClient,
) -> Result<(), SfError> {
    use fieldgate::ports::{RecordWriter, WriteError};
    for (spec, lookup) in wf.lookups() {
        let before = r.problems.len();
        for name in spec.picklist().unwrap_or_default() {
            let found = match sf.find_ids(&lookup.object, &lookup.by, name).await {
                Ok(ids) => ids.len(),
                Err(WriteError::Rejected { .. } | WriteError::Config(_)) => {
                    r.problem(
                        &spec.name,
                        format!(
                            "the org has no {} records to look up (is the object enabled, e.g. Field Service?)",
                            lookup.object
                        ),
                    );
                    break;
                }
                Err(e) => return Err(SfError::Protocol(e.to_string())),
            };
            match found {
                1 => {}
                0 => r.problem(
                    &spec.name,
                    format!(
                        "the org has no {} with {} \"{name}\" (remove the value or add the record)",
                        lookup.object, lookup.by
                    ),
                ),
                _ => r.problem(
                    &spec.name,
                    format!(
                        "the org has several {} with {} \"{name}\": the lookup would be ambiguous",
                        lookup.object, lookup.by
                    ),
                ),
            }
        }
        if r.problems.len() == before {
            r.ok.push(format!(
                "{} values are {} records the org has",
                spec.name, lookup.object
            ));
        }
    }
    Ok(())
}

/// The comparison itself, without I/O.
pub fn check(wf: &Workflow, describe: &Value, files: Option<&Value>, org: &str) -> Report {
    let mut r = Report {
        workflow: wf.id.to_string(),
        object: wf.object.clone(),
        org: org.to_owned(),
        ..Report::default()
    };
    let op = wf.operation;
    let upsert = op == Operation::Upsert;
    let update = op == Operation::Update;
    let obj = wf.object.as_str();
    if !update && describe["createable"] != Value::Bool(true) {
        r.problem(obj, "the integration user cannot create this object");
    }
    if update && describe["updateable"] != Value::Bool(true) {
        r.problem(obj, "the integration user cannot update this object");
    }
    if upsert && describe["updateable"] != Value::Bool(true) {
        r.problem(
            obj,
            "the integration user cannot update this object (an upsert updates on retry)",
        );
    }
    let empty = Vec::new();
    let described = describe["fields"].as_array().unwrap_or(&empty);
    let field = |name: &str| {
        described.iter().find(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    };
    // Every field the record can carry, with how it gets its value.
    let mut covered: BTreeSet<String> = BTreeSet::new();

    for spec in &wf.fields {
        let Some(d) = writable(&mut r, field(&spec.name), &spec.name, op) else {
            continue;
        };
        covered.insert(lower(&spec.name));
        let ty = d["type"].as_str().unwrap_or_default();
        let before = r.problems.len();
        if let Some(l) = &spec.lookup {
            // Names chosen from a picklist, written as the id of the record
            // they name: the field must be a lookup to that object.
            let refs = ty == "reference"
                && d["referenceTo"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == l.object.as_str()));
            if refs {
                r.ok.push(format!("{} → {} by {} (lookup)", spec.name, l.object, l.by));
            } else {
                r.problem(&spec.name, format!("is not a lookup to {}", l.object));
            }
            if !update && is_required(d) && !spec.required {
                r.problem(
                    &spec.name,
                    "Salesforce requires it on create; set required = true so a reviewer never approves it empty",
                );
            }
            continue;
        }
        match &spec.kind {
            FieldKind::Text { max_length } | FieldKind::Textarea { max_length } => {
                if !matches!(ty, "string" | "textarea" | "email" | "phone" | "url") {
                    r.problem(
                        &spec.name,
                        format!("the workflow writes text, Salesforce's type is {ty}"),
                    );
                } else {
                    let sf_len = d["length"].as_u64().unwrap_or(0);
                    if *max_length as u64 > sf_len {
                        r.problem(
                            &spec.name,
                            format!(
                                "too long: the workflow allows {max_length} characters, Salesforce holds at most {sf_len}"
                            ),
                        );
                    }
                }
            }
            FieldKind::Picklist { values, restricted } => {
                if !matches!(ty, "picklist" | "multipicklist") {
                    r.problem(
                        &spec.name,
                        format!("the workflow writes a picklist, Salesforce's type is {ty}"),
                    );
                } else {
                    for v in values {
                        if let Some(m) = picklist_problem(d, v) {
                            r.problem(&spec.name, m);
                        }
                    }
                    if !restricted && d["restrictedPicklist"] == Value::Bool(true) {
                        r.problem(
                            &spec.name,
                            "Salesforce restricts this picklist; set restricted = true so no other value is proposed",
                        );
                    }
                }
            }
        }
        if !update && is_required(d) && !spec.required {
            r.problem(
                &spec.name,
                "Salesforce requires it on create; set required = true so a reviewer never approves it empty",
            );
        }
        if r.problems.len() == before {
            r.ok.push(format!("{} ({ty})", spec.name));
        }
    }

    for (name, value) in &wf.constants {
        let Some(d) = writable(&mut r, field(name), name, op) else {
            continue;
        };
        covered.insert(lower(name));
        let before = r.problems.len();
        let ty = d["type"].as_str().unwrap_or_default();
        if let Some(text) = value.as_str() {
            if matches!(ty, "picklist" | "multipicklist")
                && let Some(m) = picklist_problem(d, text)
            {
                r.problem(name, format!("constant {m}"));
            }
            let sf_len = d["length"].as_u64().unwrap_or(0);
            if sf_len > 0 && text.chars().count() as u64 > sf_len {
                r.problem(
                    name,
                    format!("constant is longer than Salesforce's {sf_len} characters"),
                );
            }
        }
        if r.problems.len() == before {
            r.ok.push(format!("{name} = {value} (constant)"));
        }
    }

    for (name, binding) in &wf.bindings {
        let Some(d) = writable(&mut r, field(name), name, op) else {
            continue;
        };
        covered.insert(lower(name));
        let target = match binding {
            AssetBinding::AssetId => "Asset",
            AssetBinding::AccountId => "Account",
        };
        let refs_target = d["type"] == "reference"
            && d["referenceTo"]
                .as_array()
                .is_some_and(|l| l.iter().any(|t| t == target));
        if refs_target {
            r.ok.push(format!("{name} ← {target} (binding)"));
        } else {
            r.problem(name, format!("is not a lookup to {target}"));
        }
    }

    if let Some(ext) = &wf.external_id_field {
        match field(ext) {
            None => r.problem(ext, "external id field does not exist on the object"),
            Some(d) => {
                covered.insert(lower(ext));
                let before = r.problems.len();
                if d["externalId"] != Value::Bool(true) {
                    r.problem(ext, "is not marked External ID");
                }
                if d["unique"] != Value::Bool(true) {
                    r.problem(
                        ext,
                        "is not Unique: two records could carry one proposal id and an upsert would answer 300",
                    );
                }
                if d["createable"] != Value::Bool(true) {
                    r.problem(ext, "the integration user cannot write it");
                }
                let len = d["length"].as_u64().unwrap_or(0);
                if len < PROPOSAL_ID_LEN {
                    r.problem(
                        ext,
                        format!("holds {len} characters; a proposal id has {PROPOSAL_ID_LEN}"),
                    );
                }
                if r.problems.len() == before {
                    r.ok.push(format!("{ext} (external id, unique)"));
                }
            }
        }
    }

    if let Some(u) = &wf.update {
        // What the endpoint reads of the record must be readable.
        for name in u.label_fields.iter().chain([&u.asset_field]) {
            match field(name) {
                None => r.problem(
                    name,
                    "no such field on the object (it is read to show the record)",
                ),
                Some(d)
                    if name == &u.asset_field
                        && !(d["type"] == "reference"
                            && d["referenceTo"]
                                .as_array()
                                .is_some_and(|l| l.iter().any(|t| t == "Asset"))) =>
                {
                    r.problem(name, "asset_field is not a lookup to Asset")
                }
                Some(_) => r.ok.push(format!("{name} (read to show the record)")),
            }
        }
    }
    for d in described.iter().filter(|d| !update && is_required(d)) {
        let name = d["name"].as_str().unwrap_or_default();
        if !covered.contains(&lower(name)) {
            r.problem(
                name,
                "Salesforce requires it on create and the workflow does not set it (add a field, constant or binding)",
            );
        }
    }

    if let Some(files) = files {
        let parents = files["fields"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"] == "FirstPublishLocationId"))
            .and_then(|f| f["referenceTo"].as_array());
        if files["createable"] != Value::Bool(true) {
            r.problem(
                "ContentVersion",
                "photos are allowed but the integration user cannot create files",
            );
        } else if parents.is_some_and(|p| !p.iter().any(|t| t == obj)) {
            r.problem(
                "ContentVersion",
                format!("photos are allowed but a file cannot be published to a {obj}"),
            );
        } else {
            r.ok.push("ContentVersion (photos)".into());
        }
    }
    r
}

/// The described field, if the operation can write it; a problem if not.
fn writable<'a>(
    r: &mut Report,
    d: Option<&'a Value>,
    name: &str,
    op: Operation,
) -> Option<&'a Value> {
    let upsert = op == Operation::Upsert;
    let Some(d) = d else {
        r.problem(
            name,
            "no such field on the object (or it is hidden from the integration user)",
        );
        return None;
    };
    if op == Operation::Update {
        if d["updateable"] != Value::Bool(true) {
            r.problem(name, "not updateable by the integration user");
            return None;
        }
        return Some(d);
    }
    if d["createable"] != Value::Bool(true) {
        r.problem(name, "not createable by the integration user");
        return None;
    }
    if upsert && d["updateable"] != Value::Bool(true) {
        r.problem(
            name,
            "not updateable by the integration user (an upsert updates on retry)",
        );
        return None;
    }
    Some(d)
}

/// Contract: required on create = createable && !nillable && !defaultedOnCreate.
fn is_required(d: &Value) -> bool {
    d["createable"] == Value::Bool(true)
        && d["nillable"] == Value::Bool(false)
        && d["defaultedOnCreate"] == Value::Bool(false)
}

/// Why `v` cannot be written to the picklist `d`, if it cannot.
fn picklist_problem(d: &Value, v: &str) -> Option<String> {
    let active = active_values(d);
    if active.contains(v) {
        return None;
    }
    let listed = d["picklistValues"]
        .as_array()
        .is_some_and(|l| l.iter().any(|p| p["value"] == v));
    let what = if listed {
        "is an inactive picklist value"
    } else {
        "is not an active picklist value"
    };
    Some(format!(
        "{v:?} {what} (active: {})",
        active.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

fn active_values(d: &Value) -> BTreeSet<&str> {
    d["picklistValues"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|v| v["active"] == Value::Bool(true))
                .filter_map(|v| v["value"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// The org the configuration names (`SALESFORCE_*`) or, without one, an
/// in-process emulator seeded as the dev org (the same demo assets, the
/// same ids).
pub struct Org {
    pub client: std::sync::Arc<SalesforceClient>,
    /// Which org, for people.
    pub about: String,
    _emulator: Option<AbortOnDrop<std::io::Result<()>>>,
}

pub async fn org(parts: &fieldgate::compose::Components) -> anyhow::Result<Org> {
    use fieldgate::salesforce::SalesforceConfig;
    if let Some(settings) = &parts.config().salesforce {
        return Ok(Org {
            about: settings.login_url.clone(),
            client: parts.salesforce().await?,
            _emulator: None,
        });
    }
    let em = fieldgate_sf_emulator::Emulator::new(Default::default())
        .map_err(|e| anyhow::anyhow!("Salesforce emulator: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(em.clone().serve(listener));
    let c = SalesforceConfig::client_credentials(
        &base,
        &em.config().client_id,
        &em.config().client_secret,
    );
    Ok(Org {
        client: std::sync::Arc::new(SalesforceClient::new(c)?),
        about: "the built-in emulator (set SALESFORCE_LOGIN_URL and credentials for a real org)"
            .to_owned(),
        _emulator: Some(AbortOnDrop(server)),
    })
}

/// `fieldgate check`: loads the workflow (default: the built-in one),
/// connects to the org ([`org`]), prints the report and says whether it
/// passed.
pub async fn command(workflow: Option<&std::path::Path>) -> anyhow::Result<bool> {
    use anyhow::Context;
    let wf = fieldgate::workflows::file_or_builtin(workflow)?;
    let parts = fieldgate::compose::Components::from_env()?;
    let org = org(&parts).await?;
    let report = run(&wf, &org.client, &org.about)
        .await
        .context("reading the org's describe")?;
    println!("{report}");
    Ok(report.passed())
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
