//! `/composite`: up to 25 subrequests, `@{ref.path}` references to earlier
//! results, and `allOrNone` rollback.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::Method;
use regex::Regex;
use serde_json::{Map, Value, json};

use super::dispatch::dispatch;
use super::request::{ReqBody, RestReq, split_path};
use crate::Inner;
use crate::errors::{ApiError, Resp};
use crate::state::Store;

const MAX_SUBREQUESTS: usize = 25;

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

pub(super) fn composite(inner: &Inner, store: &mut Store, req: &RestReq) -> Result<Resp, Resp> {
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
        if_unmodified_since: None,
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
}
