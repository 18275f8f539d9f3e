//! `/admin`: a read-only audit view for the deployment's administrator —
//! proposals by status, workflow and date, one proposal's timeline with its
//! chain verified, and the same JSON-lines export as `fieldgate audit
//! export`. Nothing here changes a proposal.
//!
//! The credential is one long random token (`fieldgate admin token`);
//! configuration holds only its SHA-256 (`FIELDGATE_ADMIN_TOKEN_HASH`). A
//! fast hash is enough: 256 random bits cannot be guessed from a
//! dictionary, unlike a password. The token is typed once into a login form
//! that sets a session cookie signed with the links key (HttpOnly,
//! SameSite=Strict, Secure over https, 8 hours), rather than HTTP Basic: the
//! browser then does not resend the token with every request, the session
//! ends on its own, and logging out works. No credential configured: no
//! routes at all (404), never an open page.

use crate::clock::Clock;
use crate::domain::{
    AuditEvent, AuditHead, CsrfKey, Proposal, ProposalId, Status, Timestamp, export_lines,
    stored_revisions, verify_record,
};
use crate::error::{AppError, UserError};
use crate::http::{BodyBytes, ClientIp, Segment, urlencoded};
use crate::ports::{ProposalStore, StoreError};
use crate::web::{self, human_time};
use askama::Template;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// The variable holding the hex SHA-256 of the admin token.
pub const TOKEN_HASH_VAR: &str = "FIELDGATE_ADMIN_TOKEN_HASH";
const COOKIE: &str = "fg_admin";
const SESSION_SECS: i64 = 8 * 3600;
/// Rows on one list page; the export has no cap.
const LIST_LIMIT: usize = 200;

/// The SHA-256 of the admin token. Never printed, not even in debug output.
#[derive(Clone)]
pub struct AdminCredential {
    hash: [u8; 32],
}

impl fmt::Debug for AdminCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminCredential(…)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected the hex SHA-256 of the admin token (64 hex digits; `fieldgate admin token`)")]
pub struct BadCredential;

impl AdminCredential {
    /// From the configured hex SHA-256 (the value is never echoed back).
    pub fn from_hex(s: &str) -> Result<Self, BadCredential> {
        let raw = hex::decode(s.trim()).map_err(|_| BadCredential)?;
        let hash: [u8; 32] = raw.try_into().map_err(|_| BadCredential)?;
        Ok(Self { hash })
    }

    /// A fresh token (256 random bits, base64url) and its credential.
    pub fn generate(rng: &mut dyn rand::RngCore) -> (String, AdminCredential) {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        let token = B64.encode(b);
        let cred = Self {
            hash: Sha256::digest(token.as_bytes()).into(),
        };
        (token, cred)
    }

    /// What goes into `FIELDGATE_ADMIN_TOKEN_HASH`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// Constant time: the comparison says nothing about how close a guess was.
    pub fn matches(&self, token: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        bool::from(given.ct_eq(&self.hash))
    }
}

/// Failed logins remembered in one process: a sliding minute per client
/// and one for everyone (a ceiling when many addresses guess at once).
#[derive(Default)]
struct Failures {
    by_client: BTreeMap<String, VecDeque<Timestamp>>,
    all: VecDeque<Timestamp>,
}

const PER_CLIENT_PER_MIN: usize = 5;
const ALL_PER_MIN: usize = 30;

impl Failures {
    fn prune(q: &mut VecDeque<Timestamp>, now: Timestamp) {
        while q
            .front()
            .is_some_and(|t| now - *t >= time::Duration::MINUTE)
        {
            q.pop_front();
        }
    }

    /// Seconds to wait if `client` (or everyone) failed too often lately.
    fn blocked(&mut self, client: &str, now: Timestamp) -> Option<u64> {
        Self::prune(&mut self.all, now);
        self.by_client.retain(|_, q| {
            Self::prune(q, now);
            !q.is_empty()
        });
        let wait = |q: &VecDeque<Timestamp>, max: usize| {
            (q.len() >= max).then(|| {
                let free_at = q[q.len() - max] + time::Duration::MINUTE;
                ((free_at - now).whole_seconds().max(0) + 1) as u64
            })
        };
        let mine = self
            .by_client
            .get(client)
            .and_then(|q| wait(q, PER_CLIENT_PER_MIN));
        mine.into_iter().chain(wait(&self.all, ALL_PER_MIN)).max()
    }

    fn record(&mut self, client: &str, now: Timestamp) {
        self.all.push_back(now);
        self.by_client
            .entry(client.to_owned())
            .or_default()
            .push_back(now);
    }
}

pub struct AdminDeps {
    pub store: Arc<dyn ProposalStore>,
    /// The links key: signs the session cookie.
    pub key: Arc<CsrfKey>,
    pub clock: Arc<dyn Clock>,
    pub credential: AdminCredential,
    /// The site is served over https: the cookie is `Secure`, pages carry HSTS.
    pub https: bool,
    failures: Mutex<Failures>,
}

impl AdminDeps {
    pub fn new(
        store: Arc<dyn ProposalStore>,
        key: Arc<CsrfKey>,
        clock: Arc<dyn Clock>,
        credential: AdminCredential,
        https: bool,
    ) -> Self {
        Self {
            store,
            key,
            clock,
            credential,
            https,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// The cookie's tag covers its expiry and the credential: a new token
    /// ends every session made with the old one.
    fn session_tag(&self, expires: i64) -> Vec<u8> {
        let data = format!("{expires}\n{}", self.credential.to_hex());
        self.key.sign_for("admin-session", data.as_bytes())
    }

    fn session_value(&self, now: Timestamp) -> String {
        let expires = now.unix_timestamp() + SESSION_SECS;
        format!("{expires}.{}", B64.encode(self.session_tag(expires)))
    }

    fn signed_in(&self, headers: &HeaderMap) -> bool {
        let Some(value) = cookie(headers, COOKIE) else {
            return false;
        };
        let Some((exp, tag)) = value.split_once('.') else {
            return false;
        };
        let (Ok(exp), Ok(tag)) = (exp.parse::<i64>(), B64.decode(tag)) else {
            return false;
        };
        exp > self.clock.now().unix_timestamp()
            && self.key.verify_for(
                "admin-session",
                format!("{exp}\n{}", self.credential.to_hex()).as_bytes(),
                &tag,
            )
    }

    fn set_cookie(&self, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.https { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/admin; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        ))
        .expect("a cookie of ASCII parts")
    }
}

/// One cookie's value from the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

type Deps = State<Arc<AdminDeps>>;

/// The admin routes, to merge into a router that has the fallback.
pub fn router(deps: Arc<AdminDeps>) -> Router {
    let headers = web::security_headers_for(deps.https);
    Router::new()
        .route("/admin", get(list))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/p/{id}", get(timeline))
        .route("/admin/export", get(export))
        .layer(headers)
        .with_state(deps)
}

// ------------------------------------------------------------------ login

#[derive(Template)]
#[template(path = "admin_login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
}

fn login_page(status: u16, error: Option<&str>) -> Response {
    web::html(status, render(&LoginPage { error }))
}

/// Not signed in: the login form, with 401 and nothing about the data.
fn unauthorized() -> Response {
    login_page(401, None)
}

async fn login_form() -> Response {
    login_page(200, None)
}

#[tracing::instrument(name = "admin_login", skip_all)]
async fn login(
    State(deps): Deps,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Result<Response, AppError> {
    let client = client.map_or_else(|| "unknown".to_owned(), |c| c.0.limit_key());
    let now = deps.clock.now();
    if let Some(secs) = deps
        .failures
        .lock()
        .expect("not poisoned")
        .blocked(&client, now)
    {
        tracing::warn!("admin login refused: too many failed attempts");
        let mut r = login_page(
            429,
            Some("Too many wrong tokens lately. Wait a minute and try again."),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(r);
    }
    let token = urlencoded(&headers, &body)?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
        .unwrap_or_default();
    if !deps.credential.matches(&token) {
        deps.failures
            .lock()
            .expect("not poisoned")
            .record(&client, now);
        tracing::warn!("admin login failed");
        return Ok(login_page(401, Some("That token is not right.")));
    }
    tracing::info!("admin signed in");
    let mut r = web::redirect("/admin");
    r.headers_mut().insert(
        header::SET_COOKIE,
        deps.set_cookie(&deps.session_value(now), SESSION_SECS),
    );
    Ok(r)
}

async fn logout(State(deps): Deps) -> Response {
    let mut r = web::redirect("/admin/login");
    r.headers_mut()
        .insert(header::SET_COOKIE, deps.set_cookie("", 0));
    r
}

// ------------------------------------------------------------------ filters

/// What the list and the export show: every field optional.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filter {
    pub status: Option<Status>,
    pub workflow: Option<String>,
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
    /// Just this one (the timeline's download).
    pub proposal: Option<ProposalId>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    status: Option<String>,
    workflow: Option<String>,
    from: Option<String>,
    to: Option<String>,
    proposal: Option<String>,
}

/// `YYYY-MM-DD` (a date input: `to` then includes that whole day) or RFC 3339.
fn parse_time(s: &str, end_of_day: bool) -> Result<Timestamp, UserError> {
    let bad = || UserError::BadRequest("Dates are YYYY-MM-DD (or RFC 3339 times).".into());
    if let Ok(t) = Timestamp::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| bad())?;
    let d = if end_of_day {
        d.next_day().ok_or_else(bad)?
    } else {
        d
    };
    Ok(d.midnight().assume_utc())
}

impl Filter {
    fn parse(query: Option<&str>) -> Result<(Filter, RawFilterEcho), UserError> {
        let raw: RawFilter = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|_| UserError::BadRequest("The filter could not be read.".into()))?;
        let some = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let status = match some(&raw.status) {
            None => None,
            Some(s) => Some(
                Status::ALL
                    .into_iter()
                    .find(|st| st.as_str() == s)
                    .ok_or_else(|| UserError::BadRequest("No such status.".into()))?,
            ),
        };
        let echo = RawFilterEcho {
            status: some(&raw.status).unwrap_or_default(),
            workflow: some(&raw.workflow).unwrap_or_default(),
            from: some(&raw.from).unwrap_or_default(),
            to: some(&raw.to).unwrap_or_default(),
        };
        Ok((
            Filter {
                status,
                workflow: some(&raw.workflow),
                from: some(&raw.from).map(|s| parse_time(&s, false)).transpose()?,
                until: some(&raw.to).map(|s| parse_time(&s, true)).transpose()?,
                proposal: some(&raw.proposal)
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|_| UserError::BadRequest("No such proposal id.".into()))?,
            },
            echo,
        ))
    }

    fn keeps(&self, p: &Proposal) -> bool {
        self.workflow
            .as_deref()
            .is_none_or(|w| p.workflow.as_str() == w)
            && self.from.is_none_or(|t| p.created_at >= t)
            && self.until.is_none_or(|t| p.created_at < t)
    }
}

/// The filter as typed, to show it again in the form.
#[derive(Default)]
struct RawFilterEcho {
    status: String,
    workflow: String,
    from: String,
    to: String,
}

impl RawFilterEcho {
    fn query(&self) -> String {
        serde_urlencoded::to_string([
            ("status", &self.status),
            ("workflow", &self.workflow),
            ("from", &self.from),
            ("to", &self.to),
        ])
        .unwrap_or_default()
    }
}

/// Every proposal the filter keeps, newest first. Status by status, as
/// `fieldgate audit` reads: one moving meanwhile is kept once.
pub async fn select(store: &dyn ProposalStore, f: &Filter) -> Result<Vec<Proposal>, StoreError> {
    if let Some(id) = f.proposal {
        let one = store.get(id).await?;
        return Ok(one
            .filter(|p| f.keeps(p) && f.status.is_none_or(|s| p.status == s))
            .into_iter()
            .collect());
    }
    let statuses: Vec<Status> = match f.status {
        Some(s) => vec![s],
        None => Status::ALL.to_vec(),
    };
    let mut all: BTreeMap<ProposalId, Proposal> = BTreeMap::new();
    for s in statuses {
        for p in store.list_by_status(s, usize::MAX).await? {
            if f.keeps(&p) {
                all.insert(p.id, p);
            }
        }
    }
    let mut out: Vec<Proposal> = all.into_values().collect();
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(out)
}

// ------------------------------------------------------------------ pages

struct Row {
    id: String,
    created: String,
    workflow: String,
    status: &'static str,
    asset: String,
    reporter: String,
    notes: String,
}

#[derive(Template)]
#[template(path = "admin_list.html")]
struct ListPage {
    rows: Vec<Row>,
    total: usize,
    statuses: Vec<&'static str>,
    filter: RawFilterEcho,
    export_query: String,
}

fn excerpt(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

async fn list(
    State(deps): Deps,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, AppError> {
    if !deps.signed_in(&headers) {
        return Ok(unauthorized());
    }
    let (filter, echo) = Filter::parse(q.as_deref())?;
    let found = select(deps.store.as_ref(), &filter).await?;
    let rows = found
        .iter()
        .take(LIST_LIMIT)
        .map(|p| Row {
            id: p.id.to_string(),
            created: human_time(p.created_at),
            workflow: p.workflow.to_string(),
            status: p.status.as_str(),
            asset: p.asset.name.clone(),
            reporter: p.intake.reporter.clone().unwrap_or_default(),
            notes: excerpt(&p.intake.notes, 80),
        })
        .collect();
    Ok(web::html(
        200,
        render(&ListPage {
            rows,
            total: found.len(),
            statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
            export_query: echo.query(),
            filter: echo,
        }),
    ))
}

struct EventRow {
    seq: u32,
    at: String,
    at_exact: String,
    who: String,
    what: String,
    change: String,
    revision: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin_timeline.html")]
struct TimelinePage {
    id: String,
    workflow: String,
    status: &'static str,
    asset: String,
    reporter: String,
    notes: String,
    created: String,
    events: Vec<EventRow>,
    /// `None`: the chain verifies.
    broken: Option<String>,
}

fn event_row(e: &AuditEvent, numbers: &BTreeMap<String, u32>) -> EventRow {
    let rev = |h: &Option<String>| {
        h.as_ref().map(|h| match numbers.get(h) {
            Some(n) => format!("revision {n} ({})", &h[..h.len().min(12)]),
            None => format!("unknown revision ({})", &h[..h.len().min(12)]),
        })
    };
    let revision = match (rev(&e.before), rev(&e.after)) {
        (Some(b), Some(a)) if e.before != e.after => format!("{b} → {a}"),
        (_, Some(a)) => a,
        (Some(b), None) => b,
        (None, None) => "—".into(),
    };
    EventRow {
        seq: e.seq,
        at: human_time(e.at),
        at_exact: e
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        who: e.actor.describe(),
        what: e.action.clone(),
        change: match e.from {
            Some(f) if f != e.to => format!("{} → {}", f.as_str(), e.to.as_str()),
            _ => e.to.as_str().to_owned(),
        },
        revision,
        detail: if e.detail.is_null() {
            String::new()
        } else {
            e.detail.to_string()
        },
    }
}

async fn timeline(
    State(deps): Deps,
    headers: HeaderMap,
    Segment(raw): Segment,
) -> Result<Response, AppError> {
    if !deps.signed_in(&headers) {
        return Ok(unauthorized());
    }
    let id: ProposalId = raw.parse().map_err(|_| UserError::NotFound)?;
    let p = deps.store.get(id).await?.ok_or(UserError::NotFound)?;
    let events = deps.store.events(id).await?;
    let broken = verify_record(&AuditHead::of(&p), &events, &stored_revisions(&p))
        .err()
        .map(|b| format!("The record breaks at event {}: {b}", b.seq()));
    let numbers: BTreeMap<String, u32> = p
        .revisions
        .iter()
        .map(|r| (r.hash.clone(), r.number))
        .collect();
    Ok(web::html(
        200,
        render(&TimelinePage {
            id: p.id.to_string(),
            workflow: p.workflow.to_string(),
            status: p.status.as_str(),
            asset: p.asset.name.clone(),
            reporter: p.intake.reporter.clone().unwrap_or_default(),
            notes: p.intake.notes.clone(),
            created: human_time(p.created_at),
            events: events.iter().map(|e| event_row(e, &numbers)).collect(),
            broken,
        }),
    ))
}

/// The export of every proposal the filter keeps (oldest first), as
/// `fieldgate audit export` writes it; `fieldgate audit verify --file`
/// checks the download offline.
async fn export(
    State(deps): Deps,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, AppError> {
    if !deps.signed_in(&headers) {
        return Ok(unauthorized());
    }
    let (filter, _) = Filter::parse(q.as_deref())?;
    let mut found = select(deps.store.as_ref(), &filter).await?;
    found.reverse();
    let mut out = Vec::new();
    for p in &found {
        let events = deps.store.events(p.id).await?;
        for line in export_lines(p, &events) {
            serde_json::to_writer(&mut out, &line)
                .map_err(|_| AppError::Internal("export line to JSON"))?;
            out.push(b'\n');
        }
    }
    tracing::info!(proposals = found.len(), "admin export");
    let name = format!(
        "fieldgate-audit-{}.jsonl",
        deps.clock.now().unix_timestamp()
    );
    let mut r = web::bytes(200, "application/x-ndjson", out);
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .expect("an ASCII file name"),
    );
    Ok(r)
}

fn render<T: Template>(t: &T) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "template failed to render");
        "<!doctype html><title>error</title><p>Page could not be shown.".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::at;

    #[test]
    fn the_credential_matches_its_token_only_and_hides_in_debug() {
        let (token, cred) = AdminCredential::generate(&mut rand::rng());
        assert!(cred.matches(&token));
        assert!(!cred.matches(&format!("{token}x")));
        assert!(!cred.matches(""));
        let back = AdminCredential::from_hex(&cred.to_hex()).unwrap();
        assert!(back.matches(&token));
        assert!(!format!("{cred:?}").contains(&cred.to_hex()));
        assert_eq!(AdminCredential::from_hex("abc").unwrap_err(), BadCredential);
        assert!(AdminCredential::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn failed_logins_slide_per_client_and_overall() {
        let mut f = Failures::default();
        let t0 = at(1_800_000_000);
        for i in 0..PER_CLIENT_PER_MIN as i64 {
            assert_eq!(f.blocked("a", t0 + time::Duration::seconds(i)), None);
            f.record("a", t0 + time::Duration::seconds(i));
        }
        let wait = f.blocked("a", t0 + time::Duration::seconds(10)).unwrap();
        assert!((1..=51).contains(&wait), "{wait}");
        assert_eq!(f.blocked("b", t0 + time::Duration::seconds(10)), None);
        // A minute after the first failure one more try is allowed.
        assert_eq!(f.blocked("a", t0 + time::Duration::seconds(60)), None);
        for i in 0..ALL_PER_MIN {
            f.record(&format!("c{i}"), t0 + time::Duration::seconds(61));
        }
        assert!(
            f.blocked("fresh", t0 + time::Duration::seconds(62))
                .is_some()
        );
    }

    #[test]
    fn filters_parse_dates_and_refuse_unknown_statuses() {
        let (f, _) = Filter::parse(Some(
            "status=COMMITTED&workflow=w&from=2026-01-02&to=2026-01-02",
        ))
        .unwrap();
        assert_eq!(f.status, Some(Status::Committed));
        assert_eq!(f.until.unwrap() - f.from.unwrap(), time::Duration::DAY);
        let (empty, _) = Filter::parse(Some("status=&workflow=&from=&to=")).unwrap();
        assert_eq!(empty, Filter::default());
        assert!(Filter::parse(Some("status=NOPE")).is_err());
        assert!(Filter::parse(Some("from=yesterday")).is_err());
        assert!(Filter::parse(Some("extra=1")).is_err());
    }
}
