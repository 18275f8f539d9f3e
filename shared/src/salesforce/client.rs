//! The Salesforce client: SOQL queries, describes, one record by id and
//! the instance URL.
//! Writes are in `writer.rs`, the HTTP mechanics in `transport.rs`.

use super::config::SalesforceConfig;
use super::error::SfError;
use super::transport::Transport;
use crate::ports::WriteError;
use reqwest::Method;
use serde_json::{Map, Value};

pub struct SalesforceClient {
    pub(super) transport: Transport,
}

impl SalesforceClient {
    pub fn new(config: SalesforceConfig) -> Result<Self, SfError> {
        Ok(Self {
            transport: Transport::new(config)?,
        })
    }

    /// API calls made so far (token requests included).
    pub fn api_calls(&self) -> u64 {
        self.transport.api_calls()
    }

    /// The org's API usage as last reported: (used, daily limit).
    pub fn api_usage(&self) -> Option<(u64, u64)> {
        self.transport.api_usage()
    }

    /// GET /query, following `nextRecordsUrl` to the end.
    pub async fn query(&self, soql: &str) -> Result<Vec<Value>, SfError> {
        let encoded: String = url_encode(soql);
        let mut path = format!("/query?q={encoded}");
        let mut out = Vec::new();
        loop {
            let (_, body) = self.transport.call(Method::GET, &path, None).await?;
            let body = body.ok_or_else(|| SfError::Protocol("empty query answer".into()))?;
            if let Some(recs) = body["records"].as_array() {
                out.extend(recs.iter().cloned());
            }
            match body["nextRecordsUrl"].as_str() {
                Some(next) if body["done"] == Value::Bool(false) => path = next.to_owned(),
                _ => return Ok(out),
            }
        }
    }

    pub async fn describe(&self, object: &str) -> Result<Value, SfError> {
        let (_, body) = self
            .transport
            .call(Method::GET, &format!("/sobjects/{object}/describe"), None)
            .await?;
        body.ok_or_else(|| SfError::Protocol("empty describe".into()))
    }

    /// One record's fields by id; `None` when the object has no record
    /// with this id (or the integration user cannot see it).
    pub async fn record(
        &self,
        object: &str,
        id: &str,
        fields: &[String],
    ) -> Result<Option<Map<String, Value>>, WriteError> {
        for f in fields {
            api_name(f)?;
        }
        let path = format!(
            "/sobjects/{}/{}?fields={}",
            api_name(object)?,
            api_name(id)?,
            fields.join(",")
        );
        match self.transport.call(Method::GET, &path, None).await {
            Ok((_, Some(Value::Object(m)))) => Ok(Some(m)),
            Ok(_) => Err(WriteError::Transient("read answer is not a record".into())),
            Err(SfError::Api { status: 404, .. }) => Ok(None),
            Err(SfError::Api { code, .. }) if code == "MALFORMED_ID" => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The instance URL, fetching a token if needed.
    pub async fn instance(&self) -> Result<String, SfError> {
        Ok(self.transport.token(false).await?.instance_url)
    }
}

/// Form encoding for a query string (`+` for space).
/// Object and field names go into URLs and SOQL unquoted, so only API
/// names pass.
pub(super) fn api_name(s: &str) -> Result<&str, WriteError> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s)
    } else {
        Err(WriteError::Config(format!("{s:?} is not an API name")))
    }
}

pub(super) fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// SOQL string literal escaping.
pub(crate) fn soql_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_encoding() {
        assert_eq!(soql_quote("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(
            url_encode("SELECT Id FROM X WHERE A = 'b'"),
            "SELECT+Id+FROM+X+WHERE+A+%3D+%27b%27"
        );
    }
}
