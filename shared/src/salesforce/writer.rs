//! The commit step's port on Salesforce: upsert by external id, create,
//! read, files as ContentVersion, and links to records.

use super::client::{SalesforceClient, api_name, soql_quote, url_encode};
use super::error::SfError;
use super::transport::Body;
use crate::ports::{Attachment, RecordWriter, Updated, Upserted, WriteError};
use async_trait::async_trait;
use backon::Retryable;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU32, Ordering};

/// A Salesforce datetime (`2020-11-30T08:34:54.000+0000`) as the
/// HTTP-date of a conditional request (`Mon, 30 Nov 2020 08:34:54 GMT`).
/// Salesforce keeps whole seconds, so nothing is lost.
pub(crate) fn http_date(sf: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(
        sf,
        time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]][offset_hour sign:mandatory][offset_minute]"
        ),
    )
    .or_else(|_| time::OffsetDateTime::parse(sf, &time::format_description::well_known::Rfc3339))
    .ok()?
    .to_offset(time::UtcOffset::UTC);
    t.format(time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .ok()
}

fn path_segment(s: &str) -> String {
    url_encode(s).replace('+', "%20")
}

impl SalesforceClient {
    /// The ContentVersion titled `title` first published on `record_id`
    /// (which the caller checked is an API name).
    async fn lookup_attachment(
        &self,
        record_id: &str,
        title: &str,
    ) -> Result<Option<String>, SfError> {
        let soql = format!(
            "SELECT Id FROM ContentVersion WHERE FirstPublishLocationId = {} AND Title = {}",
            soql_quote(record_id),
            soql_quote(title)
        );
        let recs = self.query(&soql).await?;
        Ok(recs
            .first()
            .and_then(|r| r["Id"].as_str())
            .map(str::to_owned))
    }
}

#[async_trait]
impl RecordWriter for SalesforceClient {
    async fn upsert(
        &self,
        object: &str,
        ext_field: &str,
        ext_value: &str,
        record: &Map<String, Value>,
    ) -> Result<Upserted, WriteError> {
        let path = format!(
            "/sobjects/{}/{}/{}",
            api_name(object)?,
            api_name(ext_field)?,
            path_segment(ext_value)
        );
        let (status, body) = self
            .transport
            .call(
                Method::PATCH,
                &path,
                Some(Body::Json(Value::Object(record.clone()))),
            )
            .await?;
        match (status.as_u16(), body) {
            (200 | 201, Some(b)) => {
                let id = b["id"]
                    .as_str()
                    .ok_or_else(|| WriteError::Transient("upsert answer lacks id".into()))?;
                Ok(Upserted {
                    id: id.to_owned(),
                    created: b["created"]
                        .as_bool()
                        .unwrap_or(status == StatusCode::CREATED),
                })
            }
            // API ≤ v45.0 answers an update with 204 and no id: look it up.
            (204, _) => {
                let soql = format!(
                    "SELECT Id FROM {object} WHERE {ext_field} = {}",
                    soql_quote(ext_value)
                );
                let recs = self.query(&soql).await?;
                let id = recs.first().and_then(|r| r["Id"].as_str()).ok_or_else(|| {
                    WriteError::Transient("updated record not found by external id".into())
                })?;
                Ok(Upserted {
                    id: id.to_owned(),
                    created: false,
                })
            }
            (s, _) => Err(WriteError::Transient(format!(
                "unexpected upsert status {s}"
            ))),
        }
    }

    async fn create(
        &self,
        object: &str,
        record: &Map<String, Value>,
    ) -> Result<String, WriteError> {
        let (_, body) = self
            .transport
            .call(
                Method::POST,
                &format!("/sobjects/{}/", api_name(object)?),
                Some(Body::Json(Value::Object(record.clone()))),
            )
            .await?;
        body.as_ref()
            .and_then(|b| b["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| WriteError::Transient("create answer lacks id".into()))
    }

    async fn update(
        &self,
        object: &str,
        id: &str,
        record: &Map<String, Value>,
        unmodified_since: Option<&str>,
    ) -> Result<Updated, WriteError> {
        let path = format!("/sobjects/{}/{}", api_name(object)?, api_name(id)?);
        let mut headers = Vec::new();
        if let Some(since) = unmodified_since {
            let date = http_date(since).ok_or_else(|| {
                WriteError::Config(format!("{since:?} is not a Salesforce datetime"))
            })?;
            headers.push((reqwest::header::IF_UNMODIFIED_SINCE, date));
        }
        match self
            .transport
            .call_with(
                Method::PATCH,
                &path,
                Some(Body::Json(Value::Object(record.clone()))),
                &headers,
            )
            .await
        {
            Ok(_) => Ok(Updated::Written),
            // Contract: the record changed after the date; nothing written.
            Err(SfError::Api { status: 412, .. }) => Ok(Updated::ChangedSince),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(
        &self,
        object: &str,
        id: &str,
        fields: &[String],
    ) -> Result<Map<String, Value>, WriteError> {
        for f in fields {
            api_name(f)?;
        }
        let path = format!(
            "/sobjects/{}/{}?fields={}",
            api_name(object)?,
            api_name(id)?,
            fields.join(",")
        );
        let (_, body) = self.transport.call(Method::GET, &path, None).await?;
        match body {
            Some(Value::Object(m)) => Ok(m),
            _ => Err(WriteError::Transient("read answer is not a record".into())),
        }
    }

    async fn attach(&self, record_id: &str, file: &Attachment<'_>) -> Result<String, WriteError> {
        api_name(record_id)?;
        let entity = json!({
            "Title": file.title,
            "PathOnClient": file.file_name,
            "FirstPublishLocationId": record_id,
        });
        let body = if file.data.len() > self.transport.config.multipart_above {
            Body::Multipart {
                entity,
                data: file.data.to_vec(),
                file_name: file.file_name.to_owned(),
                content_type: file.content_type.to_owned(),
            }
        } else {
            let mut e = entity;
            e["VersionData"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(file.data));
            Body::Json(e)
        };
        // A POST is not idempotent: an upload whose answer was lost (reset,
        // timeout, a 5xx from a proxy after the org applied it) may exist.
        // Every retry first looks for the file by its title on the record.
        let tries = AtomicU32::new(0);
        let once = || async {
            if tries.fetch_add(1, Ordering::Relaxed) > 0
                && let Some(id) = self.lookup_attachment(record_id, file.title).await?
            {
                tracing::info!(content_version = %id, "upload found after a lost answer; not sent again");
                return Ok(Some(json!({ "id": id })));
            }
            self.transport
                .call_renewing(
                    Method::POST,
                    "/sobjects/ContentVersion/",
                    Some(body.clone()),
                )
                .await
                .map(|(_, resp)| resp)
        };
        let resp = once
            .retry(self.transport.backoff())
            .when(SfError::is_transient)
            .notify(|e, d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "file upload failed; looking it up before retrying"))
            .await?;
        resp.as_ref()
            .and_then(|b| b["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| WriteError::Transient("ContentVersion answer lacks id".into()))
    }

    async fn find_attachment(
        &self,
        record_id: &str,
        title: &str,
    ) -> Result<Option<String>, WriteError> {
        api_name(record_id)?;
        Ok(self.lookup_attachment(record_id, title).await?)
    }

    async fn find_ids(
        &self,
        object: &str,
        field: &str,
        value: &str,
    ) -> Result<Vec<String>, WriteError> {
        let soql = format!(
            "SELECT Id FROM {} WHERE {} = {} LIMIT 2",
            api_name(object)?,
            api_name(field)?,
            soql_quote(value)
        );
        Ok(self
            .query(&soql)
            .await?
            .iter()
            .filter_map(|r| r["Id"].as_str().map(str::to_owned))
            .collect())
    }

    async fn find_comment(
        &self,
        case_id: &str,
        marker: &str,
    ) -> Result<Option<String>, WriteError> {
        // CommentBody is a long text field, which SOQL cannot filter on:
        // the Case's comments are read and the marker looked for here.
        let soql = format!(
            "SELECT Id, CommentBody FROM CaseComment WHERE ParentId = {}",
            soql_quote(api_name(case_id)?)
        );
        let recs = self.query(&soql).await?;
        Ok(recs
            .iter()
            .find(|r| {
                r["CommentBody"]
                    .as_str()
                    .is_some_and(|b| b.contains(marker))
            })
            .and_then(|r| r["Id"].as_str())
            .map(str::to_owned))
    }

    fn record_url(&self, object: &str, id: &str) -> String {
        // The instance URL is known once a token was fetched, which every
        // write does first; fall back to the login URL otherwise.
        let base = self
            .transport
            .instance_url_now()
            .unwrap_or_else(|| self.transport.config.login_url.clone());
        format!("{base}/lightning/r/{object}/{id}/view")
    }
}
