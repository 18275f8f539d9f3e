//! The Salesforce client of a step whose first event may not need it (the
//! commit and structure sweeps, mcp): its credential is read, and the client
//! made, on the first call, once per container. A failed attempt is not
//! kept, so the next call tries again (a Secrets Manager outage must not
//! poison a warm container).

use super::client::SalesforceClient;
use crate::domain::{AssetId, OpenRecord, Timestamp};
#[cfg(feature = "salesforce-write")]
use crate::ports::{Attachment, RecordWriter, Updated, Upserted};
use crate::ports::{RecordFinder, WriteError};
use async_trait::async_trait;
use futures_util::future::BoxFuture;
#[cfg(feature = "salesforce-write")]
use serde_json::{Map, Value};
use std::sync::Arc;

type Connect =
    Box<dyn Fn() -> BoxFuture<'static, Result<SalesforceClient, WriteError>> + Send + Sync>;

pub struct DeferredSalesforce {
    cell: tokio::sync::OnceCell<Arc<SalesforceClient>>,
    connect: Option<Connect>,
    /// For record links before the first call (see `record_url`).
    #[cfg_attr(not(feature = "salesforce-write"), allow(dead_code))]
    login_url: String,
}

impl DeferredSalesforce {
    /// A client made already (no credential to read, or handed in).
    pub fn ready(client: Arc<SalesforceClient>, login_url: &str) -> Self {
        Self {
            cell: tokio::sync::OnceCell::new_with(Some(client)),
            connect: None,
            login_url: login_url.to_owned(),
        }
    }

    /// `connect` reads the credential and makes the client.
    pub fn new(
        login_url: &str,
        connect: impl Fn() -> BoxFuture<'static, Result<SalesforceClient, WriteError>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            cell: tokio::sync::OnceCell::new(),
            connect: Some(Box::new(connect)),
            login_url: login_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Whether the client was made (tests: a sweep must not make it).
    pub fn is_connected(&self) -> bool {
        self.cell.initialized()
    }

    pub(crate) async fn client(&self) -> Result<&SalesforceClient, WriteError> {
        let c = self
            .cell
            .get_or_try_init(|| async {
                let connect = self
                    .connect
                    .as_ref()
                    .expect("a ready client is set at construction");
                tracing::debug!("connecting the Salesforce client on its first call");
                connect().await.map(Arc::new)
            })
            .await?;
        Ok(c)
    }
}

#[async_trait]
impl RecordFinder for DeferredSalesforce {
    async fn open_cases(
        &self,
        asset: &AssetId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<OpenRecord>, WriteError> {
        self.client().await?.open_cases(asset, since, limit).await
    }
}

#[cfg(feature = "salesforce-write")]
#[async_trait]
impl RecordWriter for DeferredSalesforce {
    async fn upsert(
        &self,
        object: &str,
        ext_field: &str,
        ext_value: &str,
        record: &Map<String, Value>,
    ) -> Result<Upserted, WriteError> {
        let c = self.client().await?;
        c.upsert(object, ext_field, ext_value, record).await
    }

    async fn create(
        &self,
        object: &str,
        record: &Map<String, Value>,
    ) -> Result<String, WriteError> {
        self.client().await?.create(object, record).await
    }

    async fn update(
        &self,
        object: &str,
        id: &str,
        record: &Map<String, Value>,
        unmodified_since: Option<&str>,
    ) -> Result<Updated, WriteError> {
        let c = self.client().await?;
        c.update(object, id, record, unmodified_since).await
    }

    async fn read(
        &self,
        object: &str,
        id: &str,
        fields: &[String],
    ) -> Result<Map<String, Value>, WriteError> {
        self.client().await?.read(object, id, fields).await
    }

    async fn attach(&self, record_id: &str, file: &Attachment<'_>) -> Result<String, WriteError> {
        self.client().await?.attach(record_id, file).await
    }

    async fn find_attachment(
        &self,
        record_id: &str,
        title: &str,
    ) -> Result<Option<String>, WriteError> {
        self.client().await?.find_attachment(record_id, title).await
    }

    async fn find_ids(
        &self,
        object: &str,
        field: &str,
        value: &str,
    ) -> Result<Vec<String>, WriteError> {
        self.client().await?.find_ids(object, field, value).await
    }

    async fn find_comment(
        &self,
        case_id: &str,
        marker: &str,
    ) -> Result<Option<String>, WriteError> {
        self.client().await?.find_comment(case_id, marker).await
    }

    fn record_url(&self, object: &str, id: &str) -> String {
        match self.cell.get() {
            Some(c) => c.record_url(object, id),
            // Every write connects first, so this is only a fallback.
            None => format!("{}/lightning/r/{object}/{id}/view", self.login_url),
        }
    }
}

#[cfg(all(test, feature = "salesforce-write"))]
mod tests {
    use super::*;
    use crate::salesforce::SalesforceConfig;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn connects_on_the_first_call_once_and_retries_a_failed_connect() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let seen = attempts.clone();
        let d = DeferredSalesforce::new("http://127.0.0.1:9/", move || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    return Err(WriteError::Transient("secret read failed".into()));
                }
                // Nothing listens there: each call fails, without retries.
                let mut c = SalesforceConfig::client_credentials("http://127.0.0.1:9", "id", "s");
                c.retries = 0;
                Ok(SalesforceClient::new(c).unwrap())
            })
        });
        assert_eq!(attempts.load(Ordering::SeqCst), 0, "nothing made up front");
        assert!(!d.is_connected());
        assert_eq!(
            d.record_url("Case", "500x"),
            "http://127.0.0.1:9/lightning/r/Case/500x/view"
        );

        let err = d.read("Case", "500x", &[]).await.unwrap_err();
        assert_eq!(err, WriteError::Transient("secret read failed".into()));
        assert!(!d.is_connected(), "a failed connect is not kept");

        let asset: AssetId = "02i000000000001AAA".parse().unwrap();
        let now = Timestamp::from_unix_timestamp(1_700_000_000).unwrap();
        assert!(d.open_cases(&asset, now, 5).await.is_err());
        assert!(d.read("Case", "500x", &[]).await.is_err());
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            2,
            "connected once after the failure"
        );
        assert!(d.is_connected());
    }
}
