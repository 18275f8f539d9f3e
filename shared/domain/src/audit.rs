//! Append-only, hash-chained audit events.

use super::{ProposalId, Status, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who did it. Reviewers are named by the address their link was sent to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    Technician {
        reporter: Option<String>,
    },
    Reviewer {
        email: String,
    },
    System {
        step: String,
    },
    /// An AI assistant over MCP, named by its token.
    Assistant {
        token: String,
        name: String,
    },
}

impl Actor {
    pub fn system(step: &str) -> Self {
        Actor::System {
            step: step.to_owned(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Actor::Technician { reporter: Some(r) } => format!("technician {r}"),
            Actor::Technician { reporter: None } => "technician".into(),
            Actor::Reviewer { email } => email.clone(),
            Actor::System { step } => format!("fieldgate {step}"),
            Actor::Assistant { name, .. } => format!("assistant {name}"),
        }
    }
}

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub proposal: ProposalId,
    /// 1-based, dense: the store refuses a second event with the same seq.
    pub seq: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    pub actor: Actor,
    pub action: String,
    pub from: Option<Status>,
    pub to: Status,
    /// Revision hash before and after (they differ when fields changed).
    pub before: Option<String>,
    pub after: Option<String>,
    #[serde(default)]
    pub detail: serde_json::Value,
    /// Hash of the previous event (GENESIS for the first).
    pub prev: String,
    pub hash: String,
}

impl AuditEvent {
    /// The hash covers every field but itself.
    pub fn compute_hash(&self) -> String {
        let body = serde_json::json!({
            "proposal": self.proposal,
            "seq": self.seq,
            "at": self.at.unix_timestamp_nanos().to_string(),
            "actor": self.actor,
            "action": self.action,
            "from": self.from,
            "to": self.to,
            "before": self.before,
            "after": self.after,
            "detail": self.detail,
            "prev": self.prev,
        });
        hex::encode(Sha256::digest(body.to_string().as_bytes()))
    }

    pub fn sealed(mut self) -> Self {
        self.hash = self.compute_hash();
        self
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("event {0} is out of sequence")]
    Sequence(u32),
    #[error("event {0} does not link to the one before")]
    Link(u32),
    #[error("event {0} was altered")]
    Altered(u32),
}

/// Checks that events form one unbroken, unaltered chain from genesis.
pub fn verify_chain(events: &[AuditEvent]) -> Result<(), ChainError> {
    let mut prev = GENESIS.to_owned();
    for (i, e) in events.iter().enumerate() {
        if e.seq as usize != i + 1 {
            return Err(ChainError::Sequence(e.seq));
        }
        if e.prev != prev {
            return Err(ChainError::Link(e.seq));
        }
        if e.compute_hash() != e.hash {
            return Err(ChainError::Altered(e.seq));
        }
        prev = e.hash.clone();
    }
    Ok(())
}
