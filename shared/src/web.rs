//! Pages and HTTP responses. Templates are askama (auto-escaped); every
//! response carries the security headers, and no page uses inline script.

use crate::domain::{AssetContext, FieldKind, Proposal, Workflow};
use crate::error::UserError;
use askama::Template;
use lambda_http::{Body, Response};

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn base(status: u16, content_type: &str) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-security-policy", CSP)
        .header("referrer-policy", "no-referrer")
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        // Pages carry one-time tokens and personal notes: never cache.
        .header("cache-control", "no-store")
}

pub fn html(status: u16, body: String) -> Response<Body> {
    base(status, "text/html; charset=utf-8")
        .body(Body::Text(body))
        .expect("static headers are valid")
}

pub fn bytes(status: u16, content_type: &str, data: Vec<u8>) -> Response<Body> {
    base(status, content_type)
        .body(Body::Binary(data))
        .expect("static headers are valid")
}

pub fn redirect(location: &str) -> Response<Body> {
    base(303, "text/plain; charset=utf-8")
        .header("location", location)
        .body(Body::Empty)
        .expect("static headers are valid")
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    title: &'a str,
    text: &'a str,
    tone: &'a str,
}

pub fn message(status: u16, title: &str, text: &str) -> Response<Body> {
    let tone = match status {
        200..=299 => "ok",
        400..=499 => "warn",
        _ => "bad",
    };
    html(status, render(&Message { title, text, tone }))
}

/// The page for a user's mistake; says what happened, reveals nothing more.
pub fn user_error(e: &UserError) -> Response<Body> {
    let (title, text) = match e {
        UserError::NotFound => (
            "Not found",
            "This link or code is not valid. If you scanned a sticker, ask your supervisor for a new one.".to_owned(),
        ),
        UserError::TooManyRequests => ("Too many reports", e.to_string()),
        UserError::MethodNotAllowed => ("Not allowed", "This address does not accept that request.".into()),
        UserError::PayloadTooLarge(m) => ("Too large", m.clone()),
        UserError::UnsupportedMedia(m) => ("Not accepted", m.clone()),
        UserError::BadRequest(m) | UserError::Unprocessable(m) => ("Please check your input", m.clone()),
        UserError::Conflict(m) => ("Already decided", m.clone()),
        UserError::Gone(m) => ("Link no longer valid", m.clone()),
        UserError::Forbidden(m) => ("Not allowed", m.clone()),
    };
    let mut resp = message(e.status(), title, &text);
    if matches!(e, UserError::MethodNotAllowed) {
        resp.headers_mut()
            .insert("allow", http::HeaderValue::from_static("GET, HEAD, POST"));
    }
    resp
}

/// Our failure: a plain 500 page; details go to the log, not the page.
pub fn internal_error() -> Response<Body> {
    message(
        500,
        "Something went wrong",
        "Nothing was lost on your side, but we could not finish. Please try again in a minute.",
    )
}

fn render<T: Template>(t: &T) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "template failed to render");
        "<!doctype html><title>error</title><p>Page could not be shown.".into()
    })
}

/// `/static/{name}`: the stylesheet and the script, built in.
pub fn static_asset(name: &str) -> Option<Response<Body>> {
    let (ct, body) = match name {
        "app.css" => ("text/css; charset=utf-8", include_str!("../static/app.css")),
        "app.js" => (
            "text/javascript; charset=utf-8",
            include_str!("../static/app.js"),
        ),
        _ => return None,
    };
    let mut r = base(200, ct)
        .body(Body::Text(body.to_owned()))
        .expect("valid");
    r.headers_mut().insert(
        "cache-control",
        http::HeaderValue::from_static("public, max-age=300"),
    );
    Some(r)
}

// ------------------------------------------------------------- intake pages

#[derive(Template)]
#[template(path = "intake_form.html")]
pub struct IntakeForm<'a> {
    pub asset: &'a AssetContext,
    pub workflow_name: &'a str,
    pub idem: String,
    pub max_notes: usize,
    pub photo_allowed: bool,
    pub accept: String,
    pub notes: &'a str,
    pub reporter: &'a str,
    pub error: Option<String>,
}

impl IntakeForm<'_> {
    pub fn page(&self, status: u16) -> Response<Body> {
        html(status, render(self))
    }
}

#[derive(Template)]
#[template(path = "intake_done.html")]
pub struct IntakeDone<'a> {
    pub reference: &'a str,
    pub status_url: &'a str,
    /// The form again, for the next problem on the same asset.
    pub again_url: &'a str,
}

impl IntakeDone<'_> {
    pub fn page(&self) -> Response<Body> {
        html(201, render(self))
    }
}

/// One step of the technician's status tracker.
pub struct Step {
    pub label: &'static str,
    /// `done`, `now`, `todo` or `bad`: a CSS class, never user text.
    pub state: &'static str,
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage<'a> {
    pub reference: &'a str,
    pub label: &'a str,
    pub asset: &'a str,
    pub tone: &'static str,
    pub steps: Vec<Step>,
}

impl<'a> StatusPage<'a> {
    /// The technician sees where the report stands and nothing more: no
    /// reviewer, no reason, no record id.
    pub fn new(reference: &'a str, status: crate::domain::Status, asset: &'a str) -> Self {
        use crate::domain::Status as S;
        let (label, tone, reviewed, written) = match status {
            S::Received | S::PendingReview => ("Waiting for review", "info", "now", "todo"),
            S::Approved | S::Committing | S::NeedsAttention => ("Approved", "ok", "done", "now"),
            S::Committed => ("Written to Salesforce", "ok", "done", "done"),
            S::Rejected => ("Rejected", "bad", "bad", "todo"),
            S::Expired => ("Not reviewed in time", "warn", "bad", "todo"),
        };
        let reviewed_label = match status {
            S::Rejected => "Rejected",
            S::Expired => "Not reviewed",
            S::Received | S::PendingReview => "Review",
            _ => "Approved",
        };
        StatusPage {
            reference,
            label,
            asset,
            tone,
            steps: vec![
                Step {
                    label: "Received",
                    state: "done",
                },
                Step {
                    label: reviewed_label,
                    state: reviewed,
                },
                Step {
                    label: "Written to Salesforce",
                    state: written,
                },
            ],
        }
    }

    pub fn page(&self) -> Response<Body> {
        html(200, render(self))
    }
}

// ------------------------------------------------------------- review page

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
    let lower = notes.to_ascii_lowercase();
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
        // ASCII lowercasing keeps byte offsets, so `at` indexes `notes` too.
        let at = notes
            .find(ev)
            .or_else(|| lower.find(&ev.to_ascii_lowercase()));
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
    pub received_at: String,
    pub notes: Vec<NoteSpan>,
    pub photo_url: Option<String>,
    pub fields: Vec<FieldView>,
    /// How many fields need a second look (flagged or refused).
    pub flagged: usize,
    pub fixed: Vec<(String, String)>,
    pub csrf: String,
    pub revision: &'a str,
    pub expires_at: String,
    pub problem: Option<&'a crate::domain::SalesforceProblem>,
    pub errors: Vec<String>,
}

impl ReviewPage<'_> {
    pub fn page(&self, status: u16) -> Response<Body> {
        html(status, render(self))
    }
}

pub fn human_time(t: crate::domain::Timestamp) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.format(&f).unwrap_or_default()
}

/// The review form's fields: current revision values, or the reviewer's
/// rejected input when re-showing the form with errors.
pub fn field_views(
    wf: &Workflow,
    p: &Proposal,
    overrides: Option<&std::collections::BTreeMap<String, String>>,
) -> Vec<FieldView> {
    let current = p.current();
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
            FieldView {
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
                flag: if refused.contains(&spec.name.as_str()) {
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

// ------------------------------------------------------------- review mail

#[derive(Template)]
#[template(path = "review_mail.html")]
pub struct ReviewMailHtml<'a> {
    pub asset: &'a str,
    pub serial: Option<&'a str>,
    pub account: Option<&'a str>,
    pub summary: &'a str,
    pub url: &'a str,
    pub expires_at: &'a str,
}

impl ReviewMailHtml<'_> {
    pub fn to_html(&self) -> String {
        render(self)
    }
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

    #[test]
    fn status_page_tells_only_the_stage() {
        use crate::domain::Status;
        let p = StatusPage::new("01ABC", Status::Committed, "Pump <7>");
        let html = render(&p);
        assert!(html.contains("Written to Salesforce"));
        assert!(html.contains("Pump &#60;7&#62;") || html.contains("Pump &lt;7&gt;"));
        assert_eq!(p.steps.iter().filter(|s| s.state == "done").count(), 3);
        let r = StatusPage::new("01ABC", Status::Rejected, "Pump");
        assert_eq!(r.label, "Rejected");
        assert_eq!(r.steps[1].state, "bad");
        let w = StatusPage::new("01ABC", Status::NeedsAttention, "Pump");
        assert_eq!(
            w.label, "Approved",
            "Salesforce trouble is not the technician's business"
        );
    }
}
