//! "Nothing filed twice", read-only: the open Cases of an asset.

use super::client::{SalesforceClient, soql_quote};
use crate::domain::{AssetId, OpenRecord, Timestamp};
use crate::ports::{RecordFinder, WriteError};
use async_trait::async_trait;

/// A SOQL datetime literal (unquoted, UTC, whole seconds).
fn soql_datetime(t: Timestamp) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The query [`RecordFinder::open_cases`] sends.
pub(crate) fn open_cases_soql(asset: &AssetId, since: Timestamp, limit: usize) -> String {
    format!(
        "SELECT Id, CaseNumber, Subject, Status, CreatedDate FROM Case WHERE AssetId = {} AND IsClosed = false AND CreatedDate >= {} ORDER BY CreatedDate DESC LIMIT {}",
        soql_quote(asset.as_str()),
        soql_datetime(since),
        limit.clamp(1, 50)
    )
}

#[async_trait]
impl RecordFinder for SalesforceClient {
    async fn open_cases(
        &self,
        asset: &AssetId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<OpenRecord>, WriteError> {
        let recs = self.query(&open_cases_soql(asset, since, limit)).await?;
        let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        Ok(recs
            .iter()
            .filter_map(|r| {
                Some(OpenRecord {
                    id: s(&r["Id"])?,
                    number: s(&r["CaseNumber"]),
                    subject: s(&r["Subject"]),
                    status: s(&r["Status"]),
                    created: s(&r["CreatedDate"]),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_quotes_the_asset_and_bounds_the_window() {
        let asset: AssetId = "02i000000000001AAA".parse().unwrap();
        let since = time::macros::datetime!(2026-11-01 08:30:15.250 +01:00);
        assert_eq!(
            open_cases_soql(&asset, since, 500),
            "SELECT Id, CaseNumber, Subject, Status, CreatedDate FROM Case WHERE AssetId = '02i000000000001AAA' AND IsClosed = false AND CreatedDate >= 2026-11-01T07:30:15Z ORDER BY CreatedDate DESC LIMIT 50"
        );
    }
}
