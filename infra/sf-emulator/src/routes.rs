//! HTTP layer. axum only extracts the raw request; the routing under
//! `/services/data/vNN.N/` is done by hand (`dispatch`) so that composite
//! subrequests go through exactly the same code as real calls.

mod composite;
mod dispatch;
mod oauth;
mod query;
mod request;
mod sobjects;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::errors::{ApiError, Body, Resp};
use crate::{Emulator, Inner};
use dispatch::method_not_allowed;

const JSON_CT: &str = "application/json;charset=UTF-8";
const LIMIT_HEADER: &str = "sforce-limit-info";

pub(crate) fn router(em: Emulator) -> Router {
    Router::new()
        .route("/services/data", any(versions))
        .route("/services/data/", any(versions))
        .route("/services/oauth2/token", any(oauth::token))
        .route("/services/data/{*rest}", any(dispatch::rest))
        .route("/services/{*rest}", any(unknown))
        .with_state(em)
}

/// The fault switches over HTTP, for tests that drive the emulator from
/// another process (the chaos suite). Never part of [`router`]: only the
/// standalone binary with `--fault-switches` and tests mount them.
pub(crate) fn fault_router(em: Emulator) -> Router {
    Router::new()
        .route(
            "/__emulator/faults",
            axum::routing::get(fault_counters).post(set_faults),
        )
        .with_state(em)
}

/// What a POST to `/__emulator/faults` may switch; absent fields stay.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Switches {
    /// The next `count` REST calls answer `status`.
    fail_next: Option<FailNext>,
    /// Added before every answer; 0 ends it.
    latency_ms: Option<u64>,
    exhaust_budget: Option<bool>,
    /// The next `n` writes are applied and their answers lost.
    drop_answers_after_write: Option<u32>,
    /// Every call answers 503 for this long; 0 ends an outage.
    outage_ms: Option<u64>,
    expire_tokens: Option<bool>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FailNext {
    count: u32,
    status: u16,
}

fn counters(em: &Emulator) -> Value {
    let f = em.faults();
    json!({
        "api_calls": em.api_calls(),
        "dropped_answers": f.dropped_answers(),
        "delayed_answers": f.delayed_answers(),
    })
}

async fn fault_counters(State(em): State<Emulator>) -> Response {
    axum::Json(counters(&em)).into_response()
}

async fn set_faults(State(em): State<Emulator>, axum::Json(s): axum::Json<Switches>) -> Response {
    let f = em.faults();
    if let Some(n) = s.fail_next {
        f.fail_next(n.count, n.status);
    }
    if let Some(ms) = s.latency_ms {
        f.set_latency(std::time::Duration::from_millis(ms));
    }
    if let Some(yes) = s.exhaust_budget {
        f.exhaust_budget(yes);
    }
    if let Some(n) = s.drop_answers_after_write {
        f.drop_answers_after_write(n);
    }
    if let Some(ms) = s.outage_ms {
        f.outage_for(std::time::Duration::from_millis(ms));
    }
    if s.expire_tokens == Some(true) {
        f.expire_tokens();
    }
    axum::Json(counters(&em)).into_response()
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
        inner.faults.count_delayed();
        tokio::time::sleep(d).await;
    }
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
}
