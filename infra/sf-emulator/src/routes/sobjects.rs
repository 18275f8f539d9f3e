//! sObject rows: create, read (by id or external id), update, upsert, and
//! a ContentVersion's file data.

use serde_json::{Value, json};

use super::request::{ReqBody, RestReq};
use crate::Inner;
use crate::describe::{self, ObjectDef};
use crate::dml::{self, Upserted, WriteCtx};
use crate::errors::{ApiError, Body, Resp};
use crate::render;
use crate::state::Store;

fn now() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000+0000".into())
}

/// An HTTP-date (`Mon, 30 Nov 2020 08:34:54 GMT`) as epoch seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// A Salesforce datetime (`2020-11-30T08:34:54.000+0000`) as whole epoch
/// seconds.
fn parse_sf_datetime(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
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

pub(super) fn create(
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

pub(super) fn update(
    inner: &Inner,
    store: &mut Store,
    o: &'static ObjectDef,
    id: &str,
    req: &RestReq,
) -> Result<Resp, Resp> {
    let body = req.body.object(o.name)?;
    if let Some(raw) = &req.if_unmodified_since {
        // Contract: an invalid value is a 400; a record modified after it
        // answers 412 and is left unchanged. Salesforce keeps whole seconds.
        let since = parse_http_date(raw).ok_or_else(|| {
            ApiError::new(
                400,
                "INVALID_HEADER_TYPE",
                format!("Invalid If-Unmodified-Since header: {raw}"),
            )
        })?;
        let record = store.get(o.name, id).ok_or_else(ApiError::not_found)?;
        let modified = record["LastModifiedDate"]
            .as_str()
            .and_then(parse_sf_datetime)
            .unwrap_or(i64::MAX);
        if modified > since {
            return Err(ApiError::new(
                412,
                "PRECONDITION_FAILED",
                "The requested resource has been modified since the time specified in the If-Unmodified-Since header",
            )
            .into());
        }
    }
    let rules = inner.faults.rules();
    let now = now();
    let ctx = WriteCtx {
        rules: &rules,
        now: &now,
    };
    dml::update(store, o, id, body, &ctx)?;
    Ok(Resp::no_content())
}

pub(super) fn upsert(
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

pub(super) fn read(
    store: &Store,
    o: &'static ObjectDef,
    id: &str,
    req: &RestReq,
) -> Result<Resp, Resp> {
    let fields = selected_fields(o, req)?;
    let r = store
        .get(o.name, id)
        .ok_or_else(|| Resp::from(ApiError::not_found()))?;
    Ok(Resp::json(
        200,
        render_record(o, r, fields.as_deref(), &req.version),
    ))
}

pub(super) fn read_by_external_id(
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

pub(super) fn version_data(store: &Store, id: &str) -> Result<Resp, Resp> {
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
