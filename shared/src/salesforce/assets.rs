use super::client::{SalesforceClient, soql_quote};
use super::deferred::DeferredSalesforce;
use crate::domain::{AssetContext, AssetId, Clock, Timestamp};
use crate::ports::{AssetDirectory, CachedAsset, DirectoryError, Freshness, Looked, ProposalStore};
use async_trait::async_trait;
use std::sync::Arc;

/// Asset context from one SOQL query: the asset, its account, its location.
pub struct SalesforceAssets(pub Arc<DeferredSalesforce>);

impl SalesforceAssets {
    /// Over a client made already.
    pub fn new(client: Arc<SalesforceClient>) -> Self {
        Self(Arc::new(DeferredSalesforce::ready(client, "")))
    }

    /// The client, made on this first call if it was deferred.
    pub async fn client(&self) -> Result<&SalesforceClient, DirectoryError> {
        self.0
            .client()
            .await
            .map_err(|e| DirectoryError::new("connecting to Salesforce", e))
    }

    async fn query(
        &self,
        what: &'static str,
        soql: &str,
    ) -> Result<Vec<serde_json::Value>, DirectoryError> {
        self.client()
            .await?
            .query(soql)
            .await
            .map_err(|e| DirectoryError::new(what, e))
    }
}

const ASSET_FIELDS: &str = "Id, Name, SerialNumber, Status, AccountId, Account.Name, Location.Name";

/// The standard Asset status of equipment taken out of service: its
/// stickers stop working (within the cache's freshness, a minute).
const OUT_OF_SERVICE: &str = "Obsolete";

fn in_service(r: &serde_json::Value) -> bool {
    r["Status"].as_str() != Some(OUT_OF_SERVICE)
}

fn asset_from(id: AssetId, r: &serde_json::Value) -> AssetContext {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    AssetContext {
        name: s(&r["Name"]).unwrap_or_else(|| id.to_string()),
        id,
        serial_number: s(&r["SerialNumber"]),
        account_id: s(&r["AccountId"]),
        account_name: s(&r["Account"]["Name"]),
        location: s(&r["Location"]["Name"]),
    }
}

/// `text` as a LIKE pattern that matches it anywhere, its own `%` and `_`
/// taken literally.
fn like_anywhere(text: &str) -> String {
    let quoted = soql_quote(text);
    let inner = &quoted[1..quoted.len() - 1];
    format!("'%{}%'", inner.replace('%', "\\%").replace('_', "\\_"))
}

impl SalesforceAssets {
    /// Assets whose name, serial number or account name contains `text`
    /// (case-insensitive, as SOQL LIKE is), at most `limit`.
    pub async fn search(
        &self,
        text: &str,
        limit: usize,
    ) -> Result<Vec<AssetContext>, DirectoryError> {
        let pat = like_anywhere(text.trim());
        let soql = format!(
            "SELECT {ASSET_FIELDS} FROM Asset WHERE Name LIKE {pat} OR SerialNumber LIKE {pat} OR Account.Name LIKE {pat} ORDER BY Name LIMIT {}",
            limit.clamp(1, 50)
        );
        let recs = self.query("asset search", &soql).await?;
        Ok(recs
            .iter()
            .filter(|r| in_service(r))
            .filter_map(|r| {
                let id: AssetId = r["Id"].as_str()?.parse().ok()?;
                Some(asset_from(id, r))
            })
            .collect())
    }
}

#[async_trait]
impl AssetDirectory for SalesforceAssets {
    async fn lookup(&self, id: &AssetId) -> Result<Option<AssetContext>, DirectoryError> {
        let soql = format!(
            "SELECT {ASSET_FIELDS} FROM Asset WHERE Id = {}",
            soql_quote(id.as_str())
        );
        let recs = self.query("asset query", &soql).await?;
        let Some(r) = recs.first().filter(|r| in_service(r)) else {
            return Ok(None);
        };
        Ok(Some(asset_from(id.clone(), r)))
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
        Ok(self.lookup_checked(id).await?.map(|(a, _)| a))
    }

    /// Reads the cache itself and stores Salesforce's fresh answer in it
    /// (the callers without a write of their own: MCP, the CLI).
    async fn lookup_checked(
        &self,
        id: &AssetId,
    ) -> Result<Option<(AssetContext, Freshness)>, DirectoryError> {
        let cached = self
            .store
            .cached_asset(id)
            .await
            .map_err(|e| DirectoryError::new("reading the asset cache", e))?;
        let Some(found) = self.lookup_read(id, cached, self.clock.now()).await? else {
            return Ok(None);
        };
        if let Some(entry) = &found.refreshed
            && let Err(e) = self.store.cache_asset(entry).await
        {
            tracing::warn!(error = %crate::Chain(&e), "could not cache asset context");
        }
        Ok(Some((found.asset, found.freshness)))
    }

    fn reads_cache(&self) -> bool {
        true
    }

    async fn lookup_read(
        &self,
        id: &AssetId,
        cached: Option<CachedAsset>,
        now: Timestamp,
    ) -> Result<Option<Looked>, DirectoryError> {
        if let Some(c) = &cached
            && now - c.fetched_at < self.ttl
        {
            return Ok(Some(Looked {
                asset: c.asset.clone(),
                freshness: Freshness::Confirmed,
                confirmed_at: c.fetched_at,
                refreshed: None,
            }));
        }
        match self.inner.lookup(id).await {
            Ok(Some(asset)) => Ok(Some(Looked {
                asset: asset.clone(),
                freshness: Freshness::Confirmed,
                confirmed_at: now,
                refreshed: Some(CachedAsset {
                    asset,
                    fetched_at: now,
                }),
            })),
            // Deleted or out of service: the stale copy must not keep the
            // sticker alive.
            Ok(None) => Ok(None),
            Err(e) => match cached {
                Some(c) => {
                    tracing::warn!(error = %crate::Chain(&e), asset = %id, "Salesforce unreachable; using cached asset context");
                    Ok(Some(Looked {
                        asset: c.asset,
                        freshness: Freshness::Unconfirmed,
                        confirmed_at: c.fetched_at,
                        refreshed: None,
                    }))
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::like_anywhere;

    #[test]
    fn search_text_is_quoted_and_its_wildcards_are_literal() {
        assert_eq!(like_anywhere("chiller"), "'%chiller%'");
        assert_eq!(like_anywhere("50%_off"), r"'%50\%\_off%'");
        assert_eq!(like_anywhere("x' OR Name != '"), r"'%x\' OR Name != \'%'");
        assert_eq!(like_anywhere(r"a\b"), r"'%a\\b%'");
    }
}
