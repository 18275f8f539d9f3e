//! Revisions of the structured record: what the reviewer sees and approves.

use super::Timestamp;
use super::audit::Actor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One proposed field: its value, the words of the input that justify it,
/// and why a reviewer should look at it (if structuring was unsure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FieldValue {
    /// `null` when structuring left the field empty.
    pub value: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

impl FieldValue {
    pub fn text(&self) -> Option<&str> {
        self.value.as_str().filter(|s| !s.is_empty())
    }
}

/// Field name → value, ordered so the hash is stable.
pub type Fields = BTreeMap<String, FieldValue>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub number: u32,
    pub fields: Fields,
    /// SHA-256 over the number and the values; approval is bound to it.
    pub hash: String,
    pub author: Actor,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
}

impl Revision {
    pub fn new(number: u32, fields: Fields, author: Actor, at: Timestamp) -> Self {
        let hash = Self::hash_of(number, &fields);
        Self {
            number,
            fields,
            hash,
            author,
            at,
        }
    }

    /// Only values count: evidence and flags explain, they are not approved.
    pub fn hash_of(number: u32, fields: &Fields) -> String {
        let values: BTreeMap<&str, &serde_json::Value> =
            fields.iter().map(|(k, v)| (k.as_str(), &v.value)).collect();
        let canonical = serde_json::to_vec(&(number, values)).expect("json of plain values");
        hex::encode(Sha256::digest(&canonical))
    }

    pub fn values(&self) -> BTreeMap<String, serde_json::Value> {
        self.fields
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(subject: &str) -> Fields {
        let mut f = Fields::new();
        f.insert(
            "Subject".into(),
            FieldValue {
                value: subject.into(),
                evidence: Some("x".into()),
                flag: None,
            },
        );
        f
    }

    #[test]
    fn hash_depends_on_values_and_number_not_evidence() {
        let a = Revision::hash_of(1, &fields("Leak"));
        let mut other = fields("Leak");
        other.get_mut("Subject").unwrap().evidence = Some("different".into());
        assert_eq!(a, Revision::hash_of(1, &other));
        assert_ne!(a, Revision::hash_of(1, &fields("Leak!")));
        assert_ne!(a, Revision::hash_of(2, &fields("Leak")));
        assert_eq!(a.len(), 64);
    }
}
