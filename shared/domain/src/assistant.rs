//! Assistants: AI clients that reach fieldgate over MCP, each with a bearer
//! token of its own. Only the SHA-256 of a token is ever stored; what an
//! assistant proposes is reviewed like a technician's report.

use super::{Timestamp, WorkflowId};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Printed once at creation; recognisable in a leaked-secret scan.
pub const TOKEN_PREFIX: &str = "fgmcp_";
/// A client secret (OAuth 2.0 client credentials), likewise.
pub const CLIENT_SECRET_PREFIX: &str = "fgcs_";

/// How an assistant proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A bearer token sent with every MCP request.
    #[default]
    Bearer,
    /// A client id (the token's id) and secret, exchanged at the token
    /// endpoint for short-lived access tokens (Salesforce Agentforce).
    ClientCredentials,
}

/// How much one assistant may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantLimits {
    /// Tool calls per minute.
    pub per_minute: u32,
    /// Proposals per day (UTC).
    pub per_day: u32,
}

impl Default for AssistantLimits {
    fn default() -> Self {
        Self {
            per_minute: 60,
            per_day: 200,
        }
    }
}

/// One assistant's token, as stored: a hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantToken {
    /// Short public handle (`fieldgate mcp token revoke <id>`).
    pub id: String,
    /// Who this is, as reviewers and the audit trail see it.
    pub name: String,
    /// The workflows it may read and propose to; nothing else exists for it.
    pub workflows: Vec<WorkflowId>,
    /// Hex SHA-256 of the bearer token.
    pub token_hash: String,
    pub limits: AssistantLimits,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    /// What `token_hash` is the hash of.
    #[serde(default)]
    pub kind: CredentialKind,
}

impl AssistantToken {
    /// A fresh token: the secret to print once, and the record to store.
    pub fn mint(
        name: &str,
        workflows: Vec<WorkflowId>,
        limits: AssistantLimits,
        now: Timestamp,
        rng: &mut dyn RngCore,
    ) -> (String, AssistantToken) {
        Self::mint_kind(name, workflows, limits, now, rng, CredentialKind::Bearer)
    }

    /// A fresh assistant with client credentials: the secret to print once
    /// (the client id is the record's `id`), and the record to store.
    pub fn mint_client(
        name: &str,
        workflows: Vec<WorkflowId>,
        limits: AssistantLimits,
        now: Timestamp,
        rng: &mut dyn RngCore,
    ) -> (String, AssistantToken) {
        Self::mint_kind(
            name,
            workflows,
            limits,
            now,
            rng,
            CredentialKind::ClientCredentials,
        )
    }

    fn mint_kind(
        name: &str,
        workflows: Vec<WorkflowId>,
        limits: AssistantLimits,
        now: Timestamp,
        rng: &mut dyn RngCore,
        kind: CredentialKind,
    ) -> (String, AssistantToken) {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let prefix = match kind {
            CredentialKind::Bearer => TOKEN_PREFIX,
            CredentialKind::ClientCredentials => CLIENT_SECRET_PREFIX,
        };
        let token = format!("{prefix}{}", B64.encode(secret));
        let mut id = [0u8; 6];
        rng.fill_bytes(&mut id);
        let record = AssistantToken {
            id: format!("as_{}", hex::encode(id)),
            name: name.trim().to_owned(),
            workflows,
            token_hash: Self::hash(&token),
            limits,
            created_at: now,
            revoked_at: None,
            kind,
        };
        (token, record)
    }

    /// What is stored and looked up: a fast hash is enough, the token has
    /// 256 random bits.
    pub fn hash(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    pub fn may_use(&self, workflow: &WorkflowId) -> bool {
        self.workflows.contains(workflow)
    }
}

/// What an assistant proposed, carried by the proposal's intake so the
/// structure step validates it (instead of structuring) and mails the
/// reviewers as for any report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantProposal {
    /// The token that made it: only that token may read it back.
    pub token_id: String,
    pub assistant: String,
    /// Field → value, as the assistant gave them.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Field → a quote of the source text.
    #[serde(default)]
    pub evidence: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{SeededRng, at};

    #[test]
    fn only_the_hash_is_kept_and_tokens_differ() {
        let wf: WorkflowId = "field-service-case".parse().unwrap();
        let (a, ra) = AssistantToken::mint(
            " Desk ",
            vec![wf.clone()],
            AssistantLimits::default(),
            at(0),
            &mut SeededRng(1),
        );
        let (b, rb) = AssistantToken::mint(
            "Desk",
            vec![],
            AssistantLimits::default(),
            at(0),
            &mut SeededRng(2),
        );
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40);
        assert_ne!(a, b);
        assert_ne!(ra.id, rb.id);
        assert_eq!(ra.name, "Desk");
        assert_eq!(ra.token_hash, AssistantToken::hash(&a));
        let stored = serde_json::to_string(&ra).unwrap();
        assert!(!stored.contains(&a[TOKEN_PREFIX.len()..]));
        assert!(ra.may_use(&wf) && !rb.may_use(&wf));
    }
}
