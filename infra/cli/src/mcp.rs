//! `fieldgate mcp token create|list|revoke`: the assistants' bearer tokens.
//! The token is printed once; only its SHA-256 is stored, where the running
//! MCP endpoint reads it on every request (so this works while it runs).

use anyhow::Context;
use fieldgate::clock::Clock;
use fieldgate::domain::{AssistantLimits, AssistantToken, CredentialKind, WorkflowId, Workflows};
use fieldgate::ports::AssistantTokens;
use time::format_description::well_known::Rfc3339;

/// Mints and stores a token for an assistant; returns the token (to show
/// once) and its record. Every workflow named must exist.
pub async fn create_token(
    tokens: &dyn AssistantTokens,
    workflows: &Workflows,
    name: &str,
    workflow_ids: &[String],
    limits: AssistantLimits,
    clock: &dyn Clock,
) -> anyhow::Result<(String, AssistantToken)> {
    create_credential(
        tokens,
        workflows,
        name,
        workflow_ids,
        limits,
        clock,
        CredentialKind::Bearer,
    )
    .await
}

/// [`create_token`] for either kind of credential: a bearer token, or an
/// OAuth client (its id is the record's `id`; the secret is returned).
pub async fn create_credential(
    tokens: &dyn AssistantTokens,
    workflows: &Workflows,
    name: &str,
    workflow_ids: &[String],
    limits: AssistantLimits,
    clock: &dyn Clock,
    kind: CredentialKind,
) -> anyhow::Result<(String, AssistantToken)> {
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.chars().count() <= 100 && !name.contains(['\n', '\r']),
        "--name must be 1 to 100 characters on one line"
    );
    anyhow::ensure!(!workflow_ids.is_empty(), "give at least one --workflows id");
    let known: Vec<&str> = workflows.iter().map(|w| w.id.as_str()).collect();
    let mut ids: Vec<WorkflowId> = Vec::new();
    for raw in workflow_ids {
        let id = raw
            .trim()
            .parse::<WorkflowId>()
            .ok()
            .filter(|id| workflows.get(id).is_some())
            .with_context(|| format!("no workflow {raw:?} (known: {})", known.join(", ")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    anyhow::ensure!(
        limits.per_minute > 0 && limits.per_day > 0,
        "limits must be at least 1"
    );
    let (secret, record) = match kind {
        CredentialKind::Bearer => {
            AssistantToken::mint(name, ids, limits, clock.now(), &mut rand::rng())
        }
        CredentialKind::ClientCredentials => {
            AssistantToken::mint_client(name, ids, limits, clock.now(), &mut rand::rng())
        }
    };
    tokens
        .put(&record)
        .await
        .context("storing the assistant token")?;
    Ok((secret, record))
}

pub fn describe(t: &AssistantToken) -> String {
    let when = |at: time::OffsetDateTime| at.format(&Rfc3339).unwrap_or_default();
    let state = match t.revoked_at {
        Some(at) => format!("revoked {}", when(at)),
        None => "active".to_owned(),
    };
    let wfs: Vec<&str> = t.workflows.iter().map(WorkflowId::as_str).collect();
    let kind = match t.kind {
        CredentialKind::Bearer => "token",
        CredentialKind::ClientCredentials => "client",
    };
    format!(
        "{}  {:<28} {:<6} {:<8} workflows: {}  limits: {}/min {}/day  created {}",
        t.id,
        t.name,
        kind,
        state,
        wfs.join(","),
        t.limits.per_minute,
        t.limits.per_day,
        when(t.created_at)
    )
}
