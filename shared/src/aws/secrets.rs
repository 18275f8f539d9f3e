//! Secrets Manager: the deployment's keys and the Salesforce client secret
//! (or private key), each read once per container (the keys at start-up,
//! the Salesforce credential where its first event needs it, see
//! `Components::salesforce`) and kept in a type whose Debug is redacted.

use aws_sdk_secretsmanager::Client;
use std::fmt;

/// A secret value; never printed.
#[derive(Clone)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Deliberately never with the secret's content: the messages name the
/// secret and the problem only.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {id}: GetSecretValue failed")]
    Read {
        id: String,
        #[source]
        source: crate::ports::BoxError,
    },
    #[error("secret {id}: {problem}")]
    Unusable { id: String, problem: String },
}

/// Reads `secret_id`. With `field`, the value is either the bare secret or
/// a JSON object holding it under `field` (the console's key/value form);
/// without, the whole value.
pub async fn read_secret(
    client: &Client,
    secret_id: &str,
    field: Option<&str>,
) -> Result<SecretValue, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| SecretError::Read {
            id: secret_id.to_owned(),
            source: e.into(),
        })?;
    let raw = out.secret_string.ok_or_else(|| SecretError::Unusable {
        id: secret_id.to_owned(),
        problem: "no string value (set the secret after deploy)".into(),
    })?;
    parse_secret(secret_id, raw, field)
}

/// The value of a secret as stored: with `field`, the bare secret or a
/// JSON object holding it under `field`. Errors name the secret and the
/// problem, never the content (serde's messages quote values, so its
/// errors are not kept).
pub fn parse_secret(
    secret_id: &str,
    raw: String,
    field: Option<&str>,
) -> Result<SecretValue, SecretError> {
    let err = |problem: String| SecretError::Unusable {
        id: secret_id.to_owned(),
        problem,
    };
    let value = match (field, serde_json::from_str::<serde_json::Value>(&raw)) {
        (Some(field), Ok(serde_json::Value::Object(map))) => match map.get(field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(err(format!("JSON secret without a string field `{field}`"))),
        },
        (Some(field), Ok(serde_json::Value::String(_))) => {
            return Err(err(format!(
                "a JSON string, not an object with `{field}` (encoded twice?)"
            )));
        }
        (Some(field), Ok(_)) => {
            return Err(err(format!("JSON, but not an object with `{field}`")));
        }
        _ => raw,
    };
    if value.trim().is_empty() {
        return Err(err("empty value".into()));
    }
    Ok(SecretValue(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::SalesforceSettings;

    /// Every message of the error and its causes, and its Debug form.
    fn everything(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = format!("{e} / {e:?}");
        let mut source = e.source();
        while let Some(s) = source {
            out.push_str(&format!(" / {s} / {s:?}"));
            source = s.source();
        }
        out
    }

    #[test]
    fn a_malformed_salesforce_secret_never_quotes_its_content() {
        let settings = SalesforceSettings::from_lookup(&|k| match k {
            "SALESFORCE_LOGIN_URL" => Some("https://acme.my.salesforce.com".into()),
            "SALESFORCE_CLIENT_ID" => Some("3MVG9".into()),
            "SALESFORCE_USERNAME" => Some("integration@acme.example".into()),
            "SALESFORCE_SECRET_ARN" => Some("arn:aws:secretsmanager:eu-west-1:1:secret:sf".into()),
            _ => None,
        })
        .unwrap()
        .unwrap();
        let (id, field) = settings.secret_ref().unwrap();
        let pem_with_marker = "-----BEGIN PRIVATE KEY-----
MARKER-7f3a
-----END PRIVATE KEY-----
";
        for raw in [
            // Encoded twice: a JSON string holding the JSON object.
            r#""{"private_key": "MARKER-7f3a"}""#.to_owned(),
            r#"{"private_key": 42, "note": "MARKER-7f3a"}"#.to_owned(),
            r#"["MARKER-7f3a"]"#.to_owned(),
            // Not JSON at all, and not a key either.
            r#"{"private_key": "MARKER-7f3a"#.to_owned(),
            "MARKER-7f3a".to_owned(),
            pem_with_marker.to_owned(),
            serde_json::json!({ "private_key": pem_with_marker }).to_string(),
        ] {
            // Either the secret is refused, or the key in it is.
            let text = match parse_secret(id, raw.clone(), Some(field)) {
                Err(e) => everything(&e),
                Ok(v) => {
                    let e = settings
                        .clone()
                        .with_secret(v.expose().to_owned())
                        .into_config()
                        .expect_err("a key that is not a key");
                    everything(&e)
                }
            };
            assert!(
                !text.contains("MARKER"),
                "quoted the secret {raw:?}: {text}"
            );
            assert!(
                text.contains("secret") || text.contains("SALESFORCE_"),
                "{text}"
            );
        }
    }
}
