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
}

impl IntakeDone<'_> {
    pub fn page(&self) -> Response<Body> {
        html(201, render(self))
    }
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage<'a> {
    pub reference: &'a str,
    pub label: &'a str,
    pub asset: &'a str,
}

impl StatusPage<'_> {
    pub fn page(&self) -> Response<Body> {
        html(200, render(self))
    }
}

// ------------------------------------------------------------- review page

pub struct FieldView {
    pub name: String,
    pub label: String,
    pub value: String,
    pub required: bool,
    pub is_picklist: bool,
    pub is_textarea: bool,
    pub options: Vec<(String, bool)>,
    pub max_length: usize,
    pub evidence: Option<String>,
    pub flag: Option<String>,
    pub refused: bool,
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
    pub notes: &'a str,
    pub photo_url: Option<String>,
    pub fields: Vec<FieldView>,
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
    let refused: Vec<&str> = p
        .commit
        .last_error
        .iter()
        .flat_map(|e| e.fields.iter().map(String::as_str))
        .collect();
    wf.fields
        .iter()
        .map(|spec| {
            let fv = current.and_then(|r| r.fields.get(&spec.name));
            let value = overrides
                .and_then(|o| o.get(&spec.name).cloned())
                .or_else(|| fv.and_then(|f| f.value.as_str().map(str::to_owned)))
                .unwrap_or_default();
            let (is_picklist, options) = match &spec.kind {
                FieldKind::Picklist { values, .. } => (
                    true,
                    values.iter().map(|v| (v.clone(), *v == value)).collect(),
                ),
                _ => (false, vec![]),
            };
            FieldView {
                name: spec.name.clone(),
                label: spec.label.clone(),
                required: spec.required,
                is_picklist,
                is_textarea: spec.is_textarea(),
                options,
                max_length: spec.max_length().unwrap_or(255),
                evidence: fv.and_then(|f| f.evidence.clone()),
                flag: if refused.contains(&spec.name.as_str()) {
                    Some("Salesforce refused this field".into())
                } else {
                    fv.and_then(|f| f.flag.clone())
                },
                refused: refused.contains(&spec.name.as_str()),
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
