//! HTTP layer and REST dispatcher. axum only extracts the raw request; the
//! routing under `/services/data/vNN.N/` is done here by hand so that
//! composite subrequests go through exactly the same code as real calls.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use rand::Rng;
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::describe::{self, ObjectDef};
use crate::dml::{self, Upserted, WriteCtx};
use crate::errors::{ApiError, Body, Resp};
use crate::render;
use crate::soql;
use crate::state::Store;
use crate::{Cursor, Emulator, Inner};

/// Largest request body accepted (JSON uploads carry base64 files).
const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_SUBREQUESTS: usize = 25;
const DEFAULT_BATCH: usize = 2_000;
const JSON_CT: &str = "application/json;charset=UTF-8";
const LIMIT_HEADER: &str = "sforce-limit-info";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub(crate) fn router(em: Emulator) -> Router {
    Router::new()
        .route("/services/data", any(versions))
        .route("/services/data/", any(versions))
        .route("/services/oauth2/token", any(token))
        .route("/services/data/{*rest}", any(rest))
        .route("/services/{*rest}", any(unknown))
        .with_state(em)
}

fn now() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000+0000".into())
}

/// Release name of an API version (66.0 is Spring '26; three releases a year).
fn release_label(version: &str) -> String {
    let Some(major) = version
        .strip_suffix(".0")
        .and_then(|m| m.parse::<i64>().ok())
    else {
        return version.to_string();
    };
    let back = 66 - major;
    if back < 0 {
        return format!("Version {version}");
    }
    let (season, year) = match back % 3 {
        0 => ("Spring", 26 - back / 3),
        1 => ("Winter", 26 - back / 3),
        _ => ("Summer", 25 - back / 3),
    };
    format!("{season} '{:02}", year.rem_euclid(100))
}

fn to_response(resp: Resp, used: Option<(u64, u64)>) -> Response {
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = match resp.body {
        Body::Empty => status.into_response(),
        Body::Json(v) => {
            let mut r = (status, v.to_string()).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CT));
            r
        }
        Body::Bytes { content_type, data } => {
            let mut r = (status, data).into_response();
            if let Ok(ct) = HeaderValue::from_str(&content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            r
        }
    };
    if let Some((used, limit)) = used
        && let Ok(v) = HeaderValue::from_str(&format!("api-usage={used}/{limit}"))
    {
        out.headers_mut().insert(LIMIT_HEADER, v);
    }
    out
}

async fn versions(State(em): State<Emulator>, method: Method) -> Response {
    if method != Method::GET {
        return to_response(method_not_allowed(&method, "GET"), None);
    }
    let list: Vec<Value> = em
        .inner()
        .config
        .api_versions
        .iter()
        .map(|v| json!({"label": release_label(v), "url": format!("/services/data/v{v}"), "version": v}))
        .collect();
    to_response(Resp::json(200, Value::Array(list)), None)
}

async fn unknown(State(em): State<Emulator>) -> Response {
    let inner = em.inner();
    let used = inner.count_call();
    pause(inner).await;
    to_response(
        ApiError::not_found().into(),
        Some((used, inner.config.api_budget)),
    )
}

async fn pause(inner: &Inner) {
    let d = inner.faults.latency();
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

fn oauth_error(error: &str, description: &str) -> Resp {
    Resp::json(
        400,
        json!({"error": error, "error_description": description}),
    )
}

async fn token(State(em): State<Emulator>, req: Request) -> Response {
    let inner = em.inner();
    let used = inner.count_call();
    pause(inner).await;
    let limit = Some((used, inner.config.api_budget));
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST {
        return to_response(oauth_error("invalid_request", "must use HTTP POST"), limit);
    }
    let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024).await else {
        return to_response(
            oauth_error("invalid_request", "request body too large"),
            limit,
        );
    };
    let mut form: HashMap<String, String> = HashMap::new();
    let query = parts.uri.query().unwrap_or_default();
    for source in [query.as_bytes(), &bytes[..]] {
        if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(source) {
            form.extend(pairs);
        }
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let instance_url = inner.config.instance_url.clone().unwrap_or_else(|| {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    });
    let grant = field("grant_type").to_owned();
    match grant.as_str() {
        "client_credentials" => {
            // client_secret_basic (RFC 6749 2.3.1) as well as form fields.
            let basic = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| STANDARD.decode(b.trim()).ok())
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((id, secret)) = basic.as_deref().and_then(|b| b.split_once(':')) {
                form.entry("client_id".into())
                    .or_insert_with(|| id.to_owned());
                form.entry("client_secret".into())
                    .or_insert_with(|| secret.to_owned());
            }
            let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
            if field("client_id") != inner.config.client_id {
                return to_response(
                    oauth_error("invalid_client_id", "client identifier invalid"),
                    limit,
                );
            }
            if field("client_secret") != inner.config.client_secret {
                return to_response(
                    oauth_error("invalid_client", "invalid client credentials"),
                    limit,
                );
            }
        }
        JWT_BEARER => {
            let Some(trust) = &inner.config.jwt else {
                return to_response(
                    oauth_error("invalid_grant", "user hasn't approved this consumer"),
                    limit,
                );
            };
            if field("assertion").is_empty() {
                return to_response(oauth_error("invalid_request", "assertion missing"), limit);
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if let Err((error, description)) = crate::jwt::check(
                field("assertion"),
                trust,
                &inner.config.client_id,
                &instance_url,
                now,
            ) {
                return to_response(oauth_error(error, description), limit);
            }
        }
        _ => {
            return to_response(
                oauth_error("unsupported_grant_type", "grant type not supported"),
                limit,
            );
        }
    }
    let mut rng = rand::rng();
    let mut secret = [0u8; 32];
    rng.fill(&mut secret);
    let mut sig = [0u8; 32];
    rng.fill(&mut sig);
    // Real tokens start with the 15-char org id and '!'.
    let access_token = format!("{}!{}", &inner.org_id[..15], URL_SAFE_NO_PAD.encode(secret));
    inner
        .tokens()
        .insert(access_token.clone(), inner.faults.token_epoch());
    let issued_at = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut body = json!({
        "access_token": access_token,
        "signature": STANDARD.encode(sig),
        "instance_url": instance_url,
        "id": format!("{instance_url}/id/{}/{}", inner.org_id, inner.user_id),
        "token_type": "Bearer",
        "issued_at": issued_at.to_string(),
    });
    // The two grants answer slightly different shapes (contract: Auth).
    if grant == JWT_BEARER {
        body["scope"] = json!("api");
    } else {
        body["token_format"] = json!("opaque");
    }
    let mut resp = to_response(Resp::json(200, body), limit);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache,must-revalidate,max-age=0,no-store,private"),
    );
    resp
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // Salesforce accepts the legacy "OAuth" scheme too.
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("OAuth "))
        .map(str::trim);
    let Some(token) = token else { return false };
    inner
        .tokens()
        .get(token)
        .is_some_and(|epoch| *epoch == inner.faults.token_epoch())
}

/// A request body as the dispatcher sees it.
pub(crate) enum ReqBody {
    None,
    /// Raw JSON text from the wire, parsed only by handlers that need it.
    Raw(Bytes),
    /// Already-parsed JSON (composite subrequests).
    Json(Value),
    Multipart {
        entity: Option<Value>,
        data: Option<Vec<u8>>,
    },
    Invalid(ApiError),
}

impl ReqBody {
    fn json(&self) -> Result<Value, ApiError> {
        match self {
            ReqBody::None => Err(ApiError::json_parser(
                "No content to map due to end-of-input",
            )),
            ReqBody::Raw(b) if b.iter().all(u8::is_ascii_whitespace) => Err(ApiError::json_parser(
                "No content to map due to end-of-input",
            )),
            ReqBody::Raw(b) => {
                serde_json::from_slice(b).map_err(|e| ApiError::json_parser(e.to_string()))
            }
            ReqBody::Json(v) => Ok(v.clone()),
            ReqBody::Multipart { entity, .. } => entity.clone().ok_or_else(|| {
                ApiError::json_parser("Multipart message must include a non-binary part")
            }),
            ReqBody::Invalid(e) => Err(e.clone()),
        }
    }

    fn object(&self, sobject: &str) -> Result<Map<String, Value>, ApiError> {
        match self.json()? {
            Value::Object(m) => Ok(m),
            other => Err(ApiError::json_parser(format!(
                "Cannot deserialize instance of {sobject} from {} value",
                match other {
                    Value::Array(_) => "START_ARRAY",
                    _ => "VALUE",
                }
            ))),
        }
    }
}

pub(crate) struct RestReq {
    pub method: Method,
    pub version: String,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub batch_size: usize,
    pub body: ReqBody,
    /// Composite may not nest.
    pub in_composite: bool,
}

impl RestReq {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `vNN.N/seg/...` into the version and decoded segments.
fn split_path(rest: &str) -> Option<(String, Vec<String>)> {
    let mut parts = rest.split('/');
    let version = parts.next()?.strip_prefix('v')?.to_string();
    let segments: Vec<String> = parts
        .filter(|p| !p.is_empty())
        .map(percent_decode)
        .collect();
    Some((version, segments))
}

fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        })
        .map_or(DEFAULT_BATCH, |n| n.clamp(1, DEFAULT_BATCH))
}

async fn read_body(headers: &HeaderMap, body: AxumBody) -> ReqBody {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ReqBody::Invalid(ApiError::new(
            413,
            "REQUEST_ENTITY_TOO_LARGE",
            format!("Request body exceeds {MAX_BODY} bytes"),
        ));
    };
    if bytes.is_empty() {
        return ReqBody::None;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return ReqBody::Raw(bytes);
    }
    match parse_multipart(content_type, bytes).await {
        Ok(b) => b,
        Err(e) => ReqBody::Invalid(e),
    }
}

async fn parse_multipart(content_type: &str, bytes: Bytes) -> Result<ReqBody, ApiError> {
    let bad = |m: String| ApiError::new(400, "INVALID_MULTIPART_REQUEST", m);
    let boundary = multer::parse_boundary(content_type).map_err(|e| bad(e.to_string()))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut entity = None;
    let mut data = None;
    while let Some(field) = mp.next_field().await.map_err(|e| bad(e.to_string()))? {
        let name = field.name().unwrap_or_default().to_string();
        let content = field.bytes().await.map_err(|e| bad(e.to_string()))?;
        if name.starts_with("entity_") {
            entity = Some(
                serde_json::from_slice(&content)
                    .map_err(|e| ApiError::json_parser(e.to_string()))?,
            );
        } else if name == "VersionData" {
            data = Some(content.to_vec());
        }
    }
    Ok(ReqBody::Multipart { entity, data })
}

async fn rest(State(em): State<Emulator>, req: Request) -> Response {
    let inner = em.inner();
    let used = inner.count_call();
    let budget = inner.config.api_budget;
    let limit = Some((used, budget));
    pause(inner).await;
    let (parts, body) = req.into_parts();
    if !authorized(inner, &parts.headers) {
        return to_response(ApiError::invalid_session().into(), limit);
    }
    if inner.faults.is_exhausted() || used > budget {
        return to_response(ApiError::limit_exceeded().into(), limit);
    }
    if let Some(e) = inner.faults.take_failure() {
        return to_response(e.into(), limit);
    }
    let path = parts.uri.path();
    let Some((version, segments)) = path.strip_prefix("/services/data/").and_then(split_path)
    else {
        return to_response(ApiError::not_found().into(), limit);
    };
    let query =
        serde_urlencoded::from_str::<Vec<(String, String)>>(parts.uri.query().unwrap_or_default())
            .unwrap_or_default();
    let body = read_body(&parts.headers, body).await;
    let req = RestReq {
        method: parts.method.clone(),
        version,
        segments,
        query,
        batch_size: batch_size(&parts.headers),
        body,
        in_composite: false,
    };
    let resp = {
        let mut store = inner.store();
        let resp = dispatch(inner, &mut store, &req);
        inner.persist(&mut store);
        resp
    };
    tracing::debug!(method = %parts.method, path, status = resp.status, "sf-emulator");
    to_response(resp, limit)
}

fn method_not_allowed(method: &Method, allowed: &str) -> Resp {
    ApiError::new(
        405,
        "METHOD_NOT_ALLOWED",
        format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    )
    .into()
}

fn object_or_404(name: &str) -> Result<&'static ObjectDef, Resp> {
    describe::object(name).ok_or_else(|| ApiError::not_found().into())
}

/// Routes one REST call (top-level or composite subrequest).
pub(crate) fn dispatch(inner: &Inner, store: &mut Store, req: &RestReq) -> Resp {
    if !inner.config.api_versions.contains(&req.version) {
        return ApiError::not_found().into();
    }
    if let ReqBody::Invalid(e) = &req.body {
        return e.clone().into();
    }
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = &req.method;
    let result = match segs.as_slice() {
        [] => match *m {
            Method::GET => Ok(resources(&req.version)),
            _ => Err(method_not_allowed(m, "GET")),
        },
        ["sobjects"] => match *m {
            Method::GET => Ok(global(&req.version)),
            _ => Err(method_not_allowed(m, "GET")),
        },
        ["sobjects", obj] => object_or_404(obj).and_then(|o| match *m {
            Method::GET => Ok(Resp::json(
                200,
                json!({"objectDescribe": o.summary_json(&req.version), "recentItems": []}),
            )),
            Method::POST => create(inner, store, o, req),
            _ => Err(method_not_allowed(m, "GET,POST")),
        }),
        ["sobjects", obj, "describe"] => object_or_404(obj).and_then(|o| match *m {
            Method::GET => Ok(Resp::json(200, o.describe_json(&req.version))),
            _ => Err(method_not_allowed(m, "GET")),
        }),
        ["sobjects", obj, id] => object_or_404(obj).and_then(|o| match *m {
            Method::GET => read(store, o, id, req),
            Method::PATCH => update(inner, store, o, id, req),
            Method::DELETE => dml::delete(store, o, id)
                .map(|()| Resp::no_content())
                .map_err(Resp::from),
            _ => Err(method_not_allowed(m, "GET,PATCH,DELETE")),
        }),
        ["sobjects", obj, a, b] => object_or_404(obj).and_then(|o| match *m {
            Method::GET if o.name == "ContentVersion" && *b == "VersionData" => {
                version_data(store, a)
            }
            Method::GET => read_by_external_id(store, o, a, b, req),
            Method::PATCH => upsert(inner, store, o, a, b, req),
            _ => Err(method_not_allowed(m, "GET,PATCH")),
        }),
        ["query" | "queryAll"] => match *m {
            Method::GET => query(inner, store, req),
            _ => Err(method_not_allowed(m, "GET")),
        },
        ["query" | "queryAll", locator] => match *m {
            Method::GET => next_batch(inner, locator, &req.version),
            _ => Err(method_not_allowed(m, "GET")),
        },
        ["composite"] if !req.in_composite => match *m {
            Method::POST => composite(inner, store, req),
            _ => Err(method_not_allowed(m, "POST")),
        },
        ["limits"] => match *m {
            Method::GET => {
                let used = inner.api_calls.load(std::sync::atomic::Ordering::SeqCst);
                let max = inner.config.api_budget;
                Ok(Resp::json(
                    200,
                    json!({"DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)}}),
                ))
            }
            _ => Err(method_not_allowed(m, "GET")),
        },
        _ => Err(ApiError::not_found().into()),
    };
    result.unwrap_or_else(|e| e)
}

fn resources(version: &str) -> Resp {
    let base = format!("/services/data/v{version}");
    Resp::json(
        200,
        json!({
            "sobjects": format!("{base}/sobjects"),
            "query": format!("{base}/query"),
            "queryAll": format!("{base}/queryAll"),
            "composite": format!("{base}/composite"),
            "limits": format!("{base}/limits"),
        }),
    )
}

fn global(version: &str) -> Resp {
    let sobjects: Vec<Value> = describe::objects()
        .iter()
        .map(|o| o.summary_json(version))
        .collect();
    Resp::json(
        200,
        json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects}),
    )
}

fn created(id: String, with_flag: Option<bool>, obj: &ObjectDef, version: &str) -> Resp {
    let mut body = json!({"id": id, "success": true, "errors": []});
    if let Some(flag) = with_flag {
        body["created"] = json!(flag);
    }
    let status = if with_flag == Some(false) { 200 } else { 201 };
    Resp {
        status,
        location: (status == 201).then(|| render::record_url(obj.name, &id, version)),
        body: Body::Json(body),
    }
}

fn create(
    inner: &Inner,
    store: &mut Store,
    o: &'static ObjectDef,
    req: &RestReq,
) -> Result<Resp, Resp> {
    let blob = match &req.body {
        ReqBody::Multipart { data, .. } => data.clone(),
        _ => None,
    };
    let body = req.body.object(o.name)?;
    let rules = inner.faults.rules();
    let now = now();
    let ctx = WriteCtx {
        rules: &rules,
        now: &now,
    };
    let multipart = blob.is_some();
    let id = dml::create(store, o, body, blob, &ctx)?;
    if multipart {
        inner
            .multipart_uploads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    Ok(created(id, None, o, &req.version))
}

fn update(
    inner: &Inner,
    store: &mut Store,
    o: &'static ObjectDef,
    id: &str,
    req: &RestReq,
) -> Result<Resp, Resp> {
    let body = req.body.object(o.name)?;
    let rules = inner.faults.rules();
    let now = now();
    let ctx = WriteCtx {
        rules: &rules,
        now: &now,
    };
    dml::update(store, o, id, body, &ctx)?;
    Ok(Resp::no_content())
}

fn upsert(
    inner: &Inner,
    store: &mut Store,
    o: &'static ObjectDef,
    field: &str,
    value: &str,
    req: &RestReq,
) -> Result<Resp, Resp> {
    let body = req.body.object(o.name)?;
    let rules = inner.faults.rules();
    let now = now();
    let ctx = WriteCtx {
        rules: &rules,
        now: &now,
    };
    // `created` appears in upsert responses from v46.0; before that an
    // update answers 204 with no body.
    let flagged = req.major() >= 46;
    match dml::upsert(store, o, field, value, body, &ctx)? {
        Upserted::Created(id) => Ok(created(id, flagged.then_some(true), o, &req.version)),
        Upserted::Updated(id) if flagged => Ok(created(id, Some(false), o, &req.version)),
        Upserted::Updated(_) => Ok(Resp::no_content()),
        Upserted::Ambiguous(ids) => Ok(Resp::json(
            300,
            Value::Array(
                ids.iter()
                    .map(|id| json!(render::record_url(o.name, id, &req.version)))
                    .collect(),
            ),
        )),
    }
}

fn selected_fields(
    o: &'static ObjectDef,
    req: &RestReq,
) -> Result<Option<Vec<&'static describe::FieldDef>>, Resp> {
    let Some(list) = req.param("fields") else {
        return Ok(None);
    };
    list.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| {
            o.field(f).ok_or_else(|| {
                Resp::from(ApiError::new(
                    400,
                    "INVALID_FIELD",
                    format!(
                        "No such column '{f}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                        o.name
                    ),
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn render_record(
    o: &ObjectDef,
    r: &crate::state::Record,
    fields: Option<&[&describe::FieldDef]>,
    version: &str,
) -> Value {
    match fields {
        Some(f) => render::selected(o, r, f, version),
        None => render::full(o, r, version),
    }
}

fn read(store: &Store, o: &'static ObjectDef, id: &str, req: &RestReq) -> Result<Resp, Resp> {
    let fields = selected_fields(o, req)?;
    let r = store
        .get(o.name, id)
        .ok_or_else(|| Resp::from(ApiError::not_found()))?;
    Ok(Resp::json(
        200,
        render_record(o, r, fields.as_deref(), &req.version),
    ))
}

fn read_by_external_id(
    store: &Store,
    o: &'static ObjectDef,
    field: &str,
    value: &str,
    req: &RestReq,
) -> Result<Resp, Resp> {
    let f = o.field(field).filter(|f| f.external_id).ok_or_else(|| {
        Resp::from(ApiError::new(
            404,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {field}"),
        ))
    })?;
    let fields = selected_fields(o, req)?;
    let matches: Vec<_> = store
        .table(o.name)
        .filter(|r| {
            r.get(f.name)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(value))
        })
        .collect();
    match matches.as_slice() {
        [] => Err(ApiError::not_found().into()),
        [r] => Ok(Resp::json(
            200,
            render_record(o, r, fields.as_deref(), &req.version),
        )),
        many => Ok(Resp::json(
            300,
            Value::Array(
                many.iter()
                    .map(|r| json!(render::record_url(o.name, render::id_of(r), &req.version)))
                    .collect(),
            ),
        )),
    }
}

fn version_data(store: &Store, id: &str) -> Result<Resp, Resp> {
    let data = store
        .blob(id)
        .ok_or_else(|| Resp::from(ApiError::not_found()))?;
    Ok(Resp {
        status: 200,
        body: Body::Bytes {
            content_type: "application/octetstream".into(),
            data: data.clone(),
        },
        location: None,
    })
}

fn page(
    inner: &Inner,
    records: Vec<Value>,
    total: usize,
    offset: usize,
    batch: usize,
    locator: Option<String>,
    version: &str,
) -> Resp {
    let end = (offset + batch).min(records.len());
    let chunk: Vec<Value> = records[offset.min(end)..end].to_vec();
    let done = end >= records.len();
    let mut body = json!({"totalSize": total, "done": done, "records": chunk});
    if !done {
        let locator = locator.unwrap_or_else(|| inner.cursors().open(Cursor { records, batch }));
        body["nextRecordsUrl"] = json!(format!("/services/data/v{version}/query/{locator}-{end}"));
    }
    Resp::json(200, body)
}

fn query(inner: &Inner, store: &Store, req: &RestReq) -> Result<Resp, Resp> {
    let q = req
        .param("q")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| {
            Resp::from(ApiError::new(
                400,
                "MALFORMED_QUERY",
                "A query string has to be specified",
            ))
        })?;
    let result = soql::run(store, q, &req.version)?;
    if result.count_only {
        return Ok(Resp::json(
            200,
            json!({"totalSize": result.records.len(), "done": true, "records": []}),
        ));
    }
    let total = result.records.len();
    Ok(page(
        inner,
        result.records,
        total,
        0,
        req.batch_size,
        None,
        &req.version,
    ))
}

fn next_batch(inner: &Inner, locator: &str, version: &str) -> Result<Resp, Resp> {
    let invalid = || {
        Resp::from(ApiError::new(
            400,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ))
    };
    let (id, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let (records, batch) = {
        let cursors = inner.cursors();
        let c = cursors.get(id).ok_or_else(invalid)?;
        if offset > c.records.len() {
            return Err(invalid());
        }
        (c.records.clone(), c.batch)
    };
    let total = records.len();
    Ok(page(
        inner,
        records,
        total,
        offset,
        batch,
        Some(id.to_string()),
        version,
    ))
}

static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"@\{([^}]+)\}").expect("valid regex"));

/// Looks up `ref.path[0].field` in earlier composite results.
fn resolve_reference(expr: &str, results: &HashMap<String, Value>) -> Option<String> {
    let (head, rest) = match expr.find(['.', '[']) {
        Some(i) => (&expr[..i], &expr[i..]),
        None => (expr, ""),
    };
    let mut v = results.get(head)?;
    let mut rest = rest;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            v = v.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            v = v.get(r[..close].parse::<usize>().ok()?)?;
            rest = &r[close + 1..];
        } else {
            return None;
        }
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn substitute(text: &str, results: &HashMap<String, Value>) -> Result<String, String> {
    let mut missing = None;
    let out = REFERENCE.replace_all(text, |c: &regex::Captures| {
        resolve_reference(&c[1], results).unwrap_or_else(|| {
            missing.get_or_insert_with(|| c[1].to_string());
            String::new()
        })
    });
    match missing {
        Some(m) => Err(m),
        None => Ok(out.into_owned()),
    }
}

fn substitute_json(v: &Value, results: &HashMap<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(substitute(s, results)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute_json(x, results))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| substitute_json(x, results).map(|x| (k.clone(), x)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

fn halted(message: &str) -> Resp {
    Resp::json(
        400,
        json!([{"errorCode": "PROCESSING_HALTED", "message": message}]),
    )
}

const ROLLED_BACK: &str =
    "The transaction was rolled back since another operation in the same transaction failed.";

fn composite(inner: &Inner, store: &mut Store, req: &RestReq) -> Result<Resp, Resp> {
    let body = req.body.json()?;
    let all_or_none = body
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let subs = body
        .get("compositeRequest")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Resp::from(ApiError::json_parser(
                "compositeRequest must be an array of subrequests",
            ))
        })?;
    if subs.len() > MAX_SUBREQUESTS {
        return Err(ApiError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Composite request exceeded the limit of {MAX_SUBREQUESTS} subrequests"),
        )
        .into());
    }
    let mut seen = std::collections::HashSet::new();
    for s in subs {
        let r = s
            .get("referenceId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if r.is_empty()
            || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || !seen.insert(r)
        {
            return Err(ApiError::new(
                400,
                "INVALID_API_INPUT",
                format!("Invalid or duplicate referenceId: '{r}'"),
            )
            .into());
        }
    }

    let snapshot = all_or_none.then(|| store.clone());
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut out: Vec<(String, Resp)> = Vec::with_capacity(subs.len());
    let mut failed = false;
    for s in subs {
        let reference_id = s["referenceId"].as_str().unwrap_or_default().to_string();
        if failed && all_or_none {
            out.push((reference_id, halted(ROLLED_BACK)));
            continue;
        }
        let resp = run_subrequest(inner, store, req, s, &results);
        if resp.is_success() {
            results.insert(reference_id.clone(), resp.json_body());
        } else if all_or_none {
            failed = true;
            if let Some(snap) = &snapshot {
                *store = snap.clone();
                // Whatever had been persisted before is still the truth.
                store.dirty = false;
            }
            for (_, earlier) in out.iter_mut() {
                *earlier = halted(ROLLED_BACK);
            }
        }
        out.push((reference_id, resp));
    }
    let entries: Vec<Value> = out
        .into_iter()
        .map(|(reference_id, r)| {
            let mut headers = Map::new();
            if let Some(loc) = &r.location {
                headers.insert("Location".into(), json!(loc));
            }
            json!({
                "body": r.json_body(),
                "httpHeaders": headers,
                "httpStatusCode": r.status,
                "referenceId": reference_id,
            })
        })
        .collect();
    Ok(Resp::json(200, json!({"compositeResponse": entries})))
}

fn run_subrequest(
    inner: &Inner,
    store: &mut Store,
    parent: &RestReq,
    s: &Value,
    results: &HashMap<String, Value>,
) -> Resp {
    let method = s
        .get("method")
        .and_then(Value::as_str)
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok());
    let Some(method) = method else {
        return ApiError::new(
            400,
            "INVALID_API_INPUT",
            "Subrequest method is missing or invalid",
        )
        .into();
    };
    let url = s.get("url").and_then(Value::as_str).unwrap_or_default();
    let url = match substitute(url, results) {
        Ok(u) => u,
        Err(m) => return unresolved(&m),
    };
    let body = match s.get("body") {
        None | Some(Value::Null) => ReqBody::None,
        Some(b) => match substitute_json(b, results) {
            Ok(v) => ReqBody::Json(v),
            Err(m) => return unresolved(&m),
        },
    };
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let Some((version, segments)) = path.strip_prefix("/services/data/").and_then(split_path)
    else {
        return ApiError::not_found().into();
    };
    let sub = RestReq {
        method,
        version,
        segments,
        query: serde_urlencoded::from_str(query).unwrap_or_default(),
        batch_size: parent.batch_size,
        body,
        in_composite: true,
    };
    dispatch(inner, store, &sub)
}

fn unresolved(expr: &str) -> Resp {
    let head = expr.split(['.', '[']).next().unwrap_or(expr);
    halted(&format!(
        "Invalid reference specified. No value for {expr} found in {head}. Provided referenceId ('{head}') must start with a letter or a number, and it can contain only letters, numbers and underscores ('_')."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_labels() {
        assert_eq!(release_label("66.0"), "Spring '26");
        assert_eq!(release_label("65.0"), "Winter '26");
        assert_eq!(release_label("64.0"), "Summer '25");
        assert_eq!(release_label("45.0"), "Spring '19");
        assert_eq!(release_label("31.0"), "Summer '14");
    }

    #[test]
    fn references_resolve_nested_paths() {
        let mut r = HashMap::new();
        r.insert(
            "acct".to_string(),
            json!({"id": "001x", "records": [{"Id": "a"}]}),
        );
        assert_eq!(substitute("/x/@{acct.id}", &r).unwrap(), "/x/001x");
        assert_eq!(substitute("@{acct.records[0].Id}", &r).unwrap(), "a");
        assert_eq!(substitute("@{nope.id}", &r).unwrap_err(), "nope.id");
    }

    #[test]
    fn percent_decoding_of_segments() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        let (v, s) = split_path("v66.0/sobjects/Case/").unwrap();
        assert_eq!(v, "66.0");
        assert_eq!(s, vec!["sobjects", "Case"]);
    }
}
