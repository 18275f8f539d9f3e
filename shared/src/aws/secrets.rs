//! Secrets Manager: the Salesforce client secret (or private key), read once
//! per container at start-up and kept in a type whose Debug is redacted.

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
    let err = |problem: String| SecretError::Unusable {
        id: secret_id.to_owned(),
        problem,
    };
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| SecretError::Read {
            id: secret_id.to_owned(),
            source: e.into(),
        })?;
    let raw = out
        .secret_string
        .ok_or_else(|| err("no string value (set the secret after deploy)".into()))?;
    let value = match (field, serde_json::from_str::<serde_json::Value>(&raw)) {
        (Some(field), Ok(serde_json::Value::Object(map))) => match map.get(field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(err(format!("JSON secret without a string field `{field}`"))),
        },
        _ => raw,
    };
    if value.trim().is_empty() {
        return Err(err("empty value".into()));
    }
    Ok(SecretValue(value))
}
