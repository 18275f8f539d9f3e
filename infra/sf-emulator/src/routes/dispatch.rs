//! The REST entry point (auth, budget and fault checks, then the store
//! lock) and the dispatcher that maps a method and path to its handler.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use super::composite::composite;
use super::oauth::authorized;
use super::query::{next_batch, query};
use super::request::{ReqBody, RestReq, batch_size, read_body, split_path};
use super::sobjects::{create, read, read_by_external_id, update, upsert, version_data};
use super::{pause, to_response};
use crate::describe::{self, ObjectDef};
use crate::dml;
use crate::errors::{ApiError, Resp};
use crate::state::Store;
use crate::{Emulator, Inner};

pub(super) async fn rest(State(em): State<Emulator>, req: Request) -> Response {
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
        if_unmodified_since: super::request::if_unmodified_since(&parts.headers),
    };
    let (resp, change) = {
        let mut store = inner.store();
        let resp = dispatch(inner, &mut store, &req);
        let change = inner.changed(&mut store);
        (resp, change)
    };
    if let Some(epoch) = change {
        inner.saved(epoch).await;
    }
    tracing::debug!(method = %parts.method, path, status = resp.status, "sf-emulator");
    if parts.method != Method::GET && (200..300).contains(&resp.status) && inner.faults.take_drop()
    {
        tracing::debug!(method = %parts.method, path, "sf-emulator: write applied, answer dropped");
        return lost_answer(resp.status);
    }
    to_response(resp, limit)
}

/// The headers go out, then the body breaks off: to the client a network
/// error on a write the org has applied.
fn lost_answer(status: u16) -> Response {
    let broken = futures_util::stream::once(async {
        Err::<bytes::Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "answer dropped by fault",
        ))
    });
    let mut r = Response::new(axum::body::Body::from_stream(broken));
    *r.status_mut() =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
    r
}

pub(super) fn method_not_allowed(method: &Method, allowed: &str) -> Resp {
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
