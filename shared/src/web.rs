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

/// The page for a user's mistake; says what happened, reveals nothing more.
pub fn user_error(e: &UserError) -> Response {
    let (title, text) = match e {
        UserError::NotFound => (
            "Not found",
            "This link or code is not valid. If you scanned a sticker, ask your supervisor for a new one.".to_owned(),
        ),
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
    pub workflow_name: &'a str,
    pub idem: String,
    pub max_notes: usize,
    pub photo_allowed: bool,
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
