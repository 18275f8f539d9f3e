//! SOQL queries and their paging through `nextRecordsUrl` cursors.

use serde_json::{Value, json};

use super::request::RestReq;
use crate::errors::{ApiError, Resp};
use crate::soql;
use crate::state::Store;
use crate::{Cursor, Inner};

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

pub(super) fn query(inner: &Inner, store: &Store, req: &RestReq) -> Result<Resp, Resp> {
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

pub(super) fn next_batch(inner: &Inner, locator: &str, version: &str) -> Result<Resp, Resp> {
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
