//! Parse-don't-validate identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("not a proposal reference")]
    Proposal,
    #[error("not a workflow id (lowercase letters, digits and '-', at most 64)")]
    Workflow,
    #[error("not a Salesforce record id")]
    Asset,
}

/// A proposal id: a ULID, so ids sort by creation time and are unguessable
/// enough to show to the technician as a reference (not a credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProposalId(ulid::Ulid);

impl ProposalId {
    /// A new id at `now`: ULIDs sort by their time part.
    pub fn generate(now: crate::Timestamp, rng: &mut dyn rand_core::RngCore) -> Self {
        let ms = (now.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
        let mut random = [0u8; 16];
        rng.fill_bytes(&mut random);
        Self(ulid::Ulid::from_parts(ms, u128::from_be_bytes(random)))
    }
}

impl FromStr for ProposalId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        // Ulid parsing is case-insensitive; we always print upper case.
        if s.len() != 26 {
            return Err(IdError::Proposal);
        }
        let id = ulid::Ulid::from_string(s).map_err(|_| IdError::Proposal)?;
        // One spelling per id (letter case aside): the ulid crate also
        // takes a first character past 7, whose high bits it drops, so
        // `G…` and `0…` would name the same proposal (found by the review
        // token's property test).
        if !id.to_string().eq_ignore_ascii_case(s) {
            return Err(IdError::Proposal);
        }
        Ok(Self(id))
    }
}
impl TryFrom<String> for ProposalId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}
impl From<ProposalId> for String {
    fn from(id: ProposalId) -> String {
        id.to_string()
    }
}
impl fmt::Display for ProposalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A workflow id as admins name them in `infra/workflows/*.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkflowId(String);

impl WorkflowId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for WorkflowId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Workflow)
        }
    }
}
impl TryFrom<String> for WorkflowId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}
impl From<WorkflowId> for String {
    fn from(id: WorkflowId) -> String {
        id.0
    }
}
impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Salesforce record id of an Asset (15 or 18 alphanumerics, prefix 02i).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetId(String);

impl AssetId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for AssetId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let ok = (s.len() == 15 || s.len() == 18)
            && s.bytes().all(|b| b.is_ascii_alphanumeric())
            && s.starts_with("02i");
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Asset)
        }
    }
}
impl TryFrom<String> for AssetId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}
impl From<AssetId> for String {
    fn from(id: AssetId) -> String {
        id.0
    }
}
impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_id_round_trips_and_rejects_junk() {
        let id = ProposalId::generate(crate::fixtures::at(0), &mut crate::fixtures::SeededRng(1));
        let back: ProposalId = id.to_string().parse().unwrap();
        assert_eq!(id, back);
        assert_eq!("not-a-ulid".parse::<ProposalId>(), Err(IdError::Proposal));
        assert!("01ARZ3NDEKTSV4RRFFQ69G5FAVX".parse::<ProposalId>().is_err());
        // One spelling per id: lower case is the same id, a first character
        // past 7 (whose high bits the ulid crate drops) is refused.
        let s = id.to_string();
        assert_eq!(s.to_lowercase().parse::<ProposalId>(), Ok(id));
        let overflow = format!("G{}", &s[1..]);
        assert!(s.starts_with('0'), "{s}");
        assert_eq!(overflow.parse::<ProposalId>(), Err(IdError::Proposal));
    }

    #[test]
    fn workflow_and_asset_ids_are_checked() {
        assert!("field-service-case".parse::<WorkflowId>().is_ok());
        assert!("Field Service".parse::<WorkflowId>().is_err());
        assert!("../etc".parse::<WorkflowId>().is_err());
        assert!("02i000000000001AAA".parse::<AssetId>().is_ok());
        assert!("001000000000001AAA".parse::<AssetId>().is_err());
        assert!("02i<script>".parse::<AssetId>().is_err());
    }
}
