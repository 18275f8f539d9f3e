use super::client::{SalesforceClient, soql_quote};
use crate::domain::{AssetContext, AssetId, Clock};
use crate::ports::{AssetDirectory, CachedAsset, DirectoryError, ProposalStore};
use async_trait::async_trait;
use std::sync::Arc;

/// Asset context from one SOQL query: the asset, its account, its location.
pub struct SalesforceAssets(pub Arc<SalesforceClient>);

#[async_trait]
impl AssetDirectory for SalesforceAssets {
    async fn lookup(&self, id: &AssetId) -> Result<Option<AssetContext>, DirectoryError> {
        let soql = format!(
            "SELECT Id, Name, SerialNumber, AccountId, Account.Name, Location.Name FROM Asset WHERE Id = {}",
            soql_quote(id.as_str())
        );
        let recs = self
            .0
            .query(&soql)
            .await
            .map_err(|e| DirectoryError::new("asset query", e))?;
        let Some(r) = recs.first() else {
            return Ok(None);
        };
        let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        Ok(Some(AssetContext {
            id: id.clone(),
            name: s(&r["Name"]).unwrap_or_else(|| id.to_string()),
            serial_number: s(&r["SerialNumber"]),
            account_id: s(&r["AccountId"]),
            account_name: s(&r["Account"]["Name"]),
            location: s(&r["Location"]["Name"]),
        }))
    }
}

/// Serves asset context from the store while it is fresh, so a scan does
/// not spend an API call each time; falls back to a stale copy when
/// Salesforce cannot be reached (the form must still open in the field).
pub struct CachedDirectory<D> {
    pub inner: D,
    pub store: Arc<dyn ProposalStore>,
    pub ttl: time::Duration,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl<D: AssetDirectory> AssetDirectory for CachedDirectory<D> {
    async fn lookup(&self, id: &AssetId) -> Result<Option<AssetContext>, DirectoryError> {
        let now = self.clock.now();
        let cached = self
            .store
            .cached_asset(id)
            .await
            .map_err(|e| DirectoryError::new("reading the asset cache", e))?;
        if let Some(c) = &cached
            && now - c.fetched_at < self.ttl
        {
            return Ok(Some(c.asset.clone()));
        }
        match self.inner.lookup(id).await {
            Ok(Some(asset)) => {
                let entry = CachedAsset {
                    asset: asset.clone(),
                    fetched_at: now,
                };
                if let Err(e) = self.store.cache_asset(&entry).await {
                    tracing::warn!(error = %crate::Chain(&e), "could not cache asset context");
                }
                Ok(Some(asset))
            }
            Ok(None) => Ok(None),
            Err(e) => match cached {
                Some(c) => {
                    tracing::warn!(error = %crate::Chain(&e), asset = %id, "Salesforce unreachable; using cached asset context");
                    Ok(Some(c.asset))
                }
                None => Err(e),
            },
        }
    }
}
