//! Pages and HTTP responses. Templates are askama (auto-escaped); every
//! response gets the security headers from one layer, and no page uses
//! inline script.

use crate::domain::AssetContext;
use crate::error::{AppError, Chain, UserError};
use askama::Template;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use tower::util::MapResponseLayer;

pub mod review;
pub mod sticker;

/// `worker-src`/`manifest-src`: the form's service worker and the
/// home-screen manifest, both served from `/static/`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers every response carries; each function's router applies
/// it. `if not present`, so a response may set its own (static assets
/// are cacheable).
pub fn security_headers() -> MapResponseLayer<fn(Response) -> Response> {
    MapResponseLayer::new(add_security_headers as fn(Response) -> Response)
}

/// HSTS: a browser that once reached the site over https never tries
/// plain http again (no downgrade on a hostile network).
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// [`security_headers`], plus HSTS when the site is served over https
/// ([`crate::compose::Components::hsts`]).
pub fn security_headers_for(hsts: bool) -> MapResponseLayer<fn(Response) -> Response> {
    if hsts {
        MapResponseLayer::new(add_security_headers_hsts as fn(Response) -> Response)
    } else {
        security_headers()
    }
}

fn add_security_headers_hsts(resp: Response) -> Response {
    let mut resp = add_security_headers(resp);
    resp.headers_mut()
        .entry(header::STRICT_TRANSPORT_SECURITY)
        .or_insert(HeaderValue::from_static(HSTS));
    resp
}

fn add_security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Pages carry one-time tokens and personal notes: never cache.
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    resp
}

fn respond(status: u16, content_type: &str, body: Body) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .expect("static headers are valid")
}

pub fn html(status: u16, body: String) -> Response {
    respond(status, "text/html; charset=utf-8", Body::from(body))
}

pub fn bytes(status: u16, content_type: &str, data: Vec<u8>) -> Response {
    respond(status, content_type, Body::from(data))
}

pub fn redirect(location: &str) -> Response {
    let mut r = respond(303, "text/plain; charset=utf-8", Body::empty());
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(location).expect("a valid location"),
    );
    r
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    title: &'a str,
    text: &'a str,
    tone: &'a str,
}

pub fn message(status: u16, title: &str, text: &str) -> Response {
    let tone = match status {
        200..=299 => "ok",
        400..=499 => "warn",
        _ => "bad",
    };
    html(status, render(&Message { title, text, tone }))
}

/// A reviewer's decision, as its link shows it: taken just now (200), or
/// spent (409, to the link that decided). A rejection is neutral: no green
/// tick for "nothing was written".
#[derive(Template)]
#[template(path = "decided.html")]
pub struct DecidedPage<'a> {
    pub status: u16,
    pub title: &'a str,
    pub neutral: bool,
    pub text: String,
    /// ("Case 00001001", its Salesforce URL), once written.
    pub record: Option<(String, String)>,
    /// Where to look again while the report is on its way.
    pub follow_url: Option<String>,
}

impl DecidedPage<'_> {
    pub fn page(&self) -> Response {
        html(self.status, render(self))
    }
}

/// The page for a user's mistake; says what happened, reveals nothing more.
pub fn user_error(e: &UserError) -> Response {
    let (title, text) = match e {
        UserError::NotFound => (
            "Not found",
            "This link or code is not valid. If you scanned a sticker, ask your supervisor for a new one.".to_owned(),
        ),
        UserError::TooManyRequests {
            scope: crate::error::RateScope::Lookups,
            ..
        } => ("Too many tries", e.to_string()),
        UserError::TooManyRequests { .. } => ("Too many reports", e.to_string()),
        UserError::MethodNotAllowed => ("Not allowed", "This address does not accept that request.".into()),
        UserError::PayloadTooLarge(m) => ("Too large", m.clone()),
        UserError::UnsupportedMedia(m) => ("Not accepted", m.clone()),
        UserError::BadRequest(m) | UserError::Unprocessable(m) => ("Please check your input", m.clone()),
        UserError::Conflict(m) => ("Already decided", m.clone()),
        UserError::Gone(m) => ("Link no longer valid", m.clone()),
        UserError::Forbidden(m) => ("Not allowed", m.clone()),
    };
    let mut resp = message(e.status(), title, &text);
    if let UserError::TooManyRequests {
        retry_after_secs, ..
    } = e
    {
        resp.headers_mut()
            .insert("retry-after", http::HeaderValue::from(*retry_after_secs));
    }
    if matches!(e, UserError::MethodNotAllowed) {
        resp.headers_mut()
            .insert("allow", http::HeaderValue::from_static("GET, HEAD, POST"));
    }
    resp
}

/// Our failure: a plain 500 page; details go to the log, not the page.
pub fn internal_error() -> Response {
    message(
        500,
        "Something went wrong",
        "Nothing was lost on your side, but we could not finish. Please try again in a minute.",
    )
}

/// The router fallback for unknown paths.
pub async fn not_found() -> Response {
    user_error(&UserError::NotFound)
}

/// The fallback for a known path asked with a method it does not take.
pub async fn method_not_allowed() -> Response {
    user_error(&UserError::MethodNotAllowed)
}

/// A handler's error: the user's mistake is its page and status; ours is
/// the 500 page, with the whole cause chain in the log.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::User(e) => user_error(&e),
            e => {
                tracing::error!(error = %Chain(&e), "request failed");
                internal_error()
            }
        }
    }
}

fn render<T: Template>(t: &T) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "template failed to render");
        "<!doctype html><title>error</title><p>Page could not be shown.".into()
    })
}

const APP_CSS: &str = include_str!("../static/app.css");
const APP_JS: &str = include_str!("../static/app.js");
const SW_JS: &str = include_str!("../static/sw.js");
const MANIFEST: &str = include_str!("../static/manifest.webmanifest");
const ICON: &str = include_str!("../static/icon.svg");

/// The content hash of the static files (and of the start page's
/// template): the service worker's cache name, so a deploy that changes
/// any of them replaces the cache on the phones.
pub fn static_version() -> &'static str {
    static V: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            APP_CSS,
            APP_JS,
            SW_JS,
            MANIFEST,
            ICON,
            include_str!("../templates/intake_home.html"),
            include_str!("../templates/base.html"),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(&h.finalize()[..8])
    });
    &V
}

/// The worker script with its version filled in.
fn service_worker() -> &'static str {
    static S: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        SW_JS.replace("__FIELDGATE_STATIC_VERSION__", static_version())
    });
    &S
}

/// `/static/{name}`: the stylesheet, the script, the form's service worker,
/// the home-screen manifest and its icon, built in.
pub fn static_asset(name: &str) -> Option<Response> {
    let (ct, body, cache) = match name {
        "app.css" => ("text/css; charset=utf-8", APP_CSS, "public, max-age=300"),
        "app.js" => (
            "text/javascript; charset=utf-8",
            APP_JS,
            "public, max-age=300",
        ),
        // Checked on every visit, so a deploy reaches the phones at once.
        "sw.js" => (
            "text/javascript; charset=utf-8",
            service_worker(),
            "no-cache",
        ),
        "manifest.webmanifest" => ("application/manifest+json", MANIFEST, "public, max-age=300"),
        "icon.svg" => ("image/svg+xml", ICON, "public, max-age=86400"),
        _ => return None,
    };
    let mut r = respond(200, ct, Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if name == "sw.js" {
        // The script lives under /static/ but controls the form pages.
        h.insert("service-worker-allowed", HeaderValue::from_static(SW_SCOPE));
    }
    Some(r)
}

/// The service worker's scope: the form pages and the start page, nothing
/// else (review links, status pages and admin stay out of it).
pub const SW_SCOPE: &str = "/q/";

/// `/q/home`: the home-screen app's start page. Static (no asset, no
/// token), so the worker keeps it and it opens with no signal; the script
/// lists the equipment opened before and the reports waiting to be sent.
#[derive(Template)]
#[template(path = "intake_home.html")]
pub struct IntakeHome;

impl IntakeHome {
    pub fn page() -> Response {
        html(200, render(&IntakeHome))
    }
}

// ------------------------------------------------------------- intake pages

#[derive(Template)]
#[template(path = "intake_form.html")]
pub struct IntakeForm<'a> {
    pub asset: &'a AssetContext,
    /// `asset` signed for the report to post back (empty: none), so the
    /// report needs no second lookup.
    pub context: &'a str,
    pub workflow_name: &'a str,
    pub idem: String,
    pub max_notes: usize,
    pub photo_allowed: bool,
    /// How many photos one report may carry.
    pub max_photos: usize,
    pub accept: String,
    pub notes: &'a str,
    pub reporter: &'a str,
    pub error: Option<String>,
    /// Salesforce could not be reached: the card is a cached copy.
    pub unconfirmed: bool,
}

impl IntakeForm<'_> {
    pub fn page(&self, status: u16) -> Response {
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
    pub fn page(&self) -> Response {
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
    /// Once written: "Case 00001001" (the number people quote), or the
    /// object alone when it has no number.
    pub record: Option<String>,
    /// A rejection's reason, unless the workflow hides it.
    pub reason: Option<String>,
    /// (what happened, when), oldest first.
    pub timeline: Vec<(&'static str, String)>,
    /// Nothing more will happen: no "reload to see changes".
    pub settled: bool,
}

impl<'a> StatusPage<'a> {
    /// The technician sees where the report stands, when each step
    /// happened, the record's number once written and a rejection's reason
    /// (unless `[notify] reject_reason = false`); never who reviewed it, a
    /// Salesforce refusal, or a record id: whoever holds the link sees it.
    pub fn new(
        reference: &'a str,
        p: &'a crate::domain::Proposal,
        workflow: Option<&crate::domain::Workflow>,
    ) -> Self {
        use crate::domain::Status as S;
        let status = p.status;
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
        let object = workflow.map_or("record", |w| w.object.as_str());
        let record = (status == S::Committed).then(|| match &p.commit.record_number {
            Some(n) => format!("{object} {n}"),
            None => object.to_owned(),
        });
        let reason = (status == S::Rejected && workflow.is_some_and(|w| w.notify.reject_reason))
            .then(|| p.decision.as_ref().and_then(|d| d.reason.clone()))
            .flatten();
        let timeline = crate::domain::timeline(p)
            .into_iter()
            .map(|e| (e.label, human_time(e.at)))
            .collect();
        StatusPage {
            reference,
            label,
            asset: &p.asset.name,
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
            record,
            reason,
            timeline,
            settled: status.is_final(),
        }
    }

    pub fn page(&self) -> Response {
        html(200, render(self))
    }
}

pub fn human_time(t: crate::domain::Timestamp) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.format(&f).unwrap_or_default()
}

// ------------------------------------------------------------- review mail

#[derive(Template)]
#[template(path = "review_mail.html")]
pub struct ReviewMailHtml<'a> {
    /// The first line: why this mail (a review, a reminder, an escalation).
    pub lead: &'a str,
    pub asset: &'a str,
    pub serial: Option<&'a str>,
    pub account: Option<&'a str>,
    pub priority: Option<&'a str>,
    pub summary: &'a str,
    /// The proposed fields with a value.
    pub rows: &'a [MailRow],
    /// How many fields the page asks the reviewer to tick.
    pub to_check: usize,
    pub url: &'a str,
    pub expires_at: &'a str,
}

/// One proposed field in the review mail's table.
pub struct MailRow {
    pub label: String,
    pub value: String,
    /// The review page lists it under "needs your eyes".
    pub check: bool,
}

impl ReviewMailHtml<'_> {
    pub fn to_html(&self) -> String {
        render(self)
    }
}

#[derive(Template)]
#[template(path = "reporter_mail.html")]
pub struct ReporterMailHtml<'a> {
    pub headline: &'a str,
    pub asset: &'a str,
    pub reported: &'a str,
    pub reason: Option<&'a str>,
    pub status_url: &'a str,
}

impl ReporterMailHtml<'_> {
    pub fn to_html(&self) -> String {
        render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(status: crate::domain::Status) -> crate::domain::Proposal {
        use crate::domain::fixtures::{SeededRng, at};
        let mut p = crate::domain::fixtures::received(
            crate::domain::ProposalId::generate(at(0), &mut SeededRng(5)),
            at(0),
        )
        .proposal;
        p.asset.name = "Pump <7>".into();
        p.status = status;
        p
    }

    #[test]
    fn status_page_tells_the_stage_the_number_and_the_reason() {
        use crate::domain::{Decision, DecisionKind, Status, fixtures::at};
        let all = crate::workflows::builtin();
        let wf = all.iter().next().unwrap();
        let mut c = proposal(Status::Committed);
        c.commit.record_number = Some("00001001".into());
        c.commit.committed_at = Some(at(30));
        let p = StatusPage::new("01ABC", &c, Some(wf));
        let html = render(&p);
        assert!(html.contains("Written to Salesforce"));
        assert!(html.contains("Pump &#60;7&#62;") || html.contains("Pump &lt;7&gt;"));
        assert_eq!(p.steps.iter().filter(|s| s.state == "done").count(), 3);
        assert_eq!(p.record.as_deref(), Some("Case 00001001"));
        assert!(html.contains("00001001"), "{html}");
        assert!(!html.contains("Reload this page"), "settled: {html}");

        let mut r = proposal(Status::Rejected);
        r.decision = Some(Decision {
            kind: DecisionKind::Reject,
            by: "desk@example.com".into(),
            at: at(40),
            revision_hash: String::new(),
            reason: Some("Duplicate of <b>1000</b>".into()),
            token_hash: String::new(),
            add_to: None,
        });
        let page = StatusPage::new("01ABC", &r, Some(wf));
        assert_eq!(page.label, "Rejected");
        assert_eq!(page.steps[1].state, "bad");
        let html = render(&page);
        assert!(
            html.contains("Duplicate of &#60;b&#62;1000")
                || html.contains("Duplicate of &lt;b&gt;1000"),
            "{html}"
        );
        assert!(!html.contains("desk@example.com"), "no reviewer: {html}");
        let mut hidden = (**wf).clone();
        hidden.notify.reject_reason = false;
        assert_eq!(StatusPage::new("01ABC", &r, Some(&hidden)).reason, None);

        let waiting = proposal(Status::NeedsAttention);
        let w = StatusPage::new("01ABC", &waiting, Some(wf));
        assert_eq!(
            w.label, "Approved",
            "Salesforce trouble is not the technician's business"
        );
        assert!(render(&w).contains("Reload this page"));
    }
}
