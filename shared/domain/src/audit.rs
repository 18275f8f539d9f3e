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

// ------------------------------------------------------------- verification

/// Where a proposal's audit record breaks, naming the event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditBreak {
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Events were removed from the end (or added): the proposal's own
    /// count and head hash, written with every transition, disagree.
    #[error("the proposal records {recorded} events ending in {head}, the log has {found}")]
    Head {
        recorded: u32,
        found: u32,
        head: String,
    },
    /// An event binds a revision whose stored values hash to something else:
    /// the approved record was edited after the fact.
    #[error("event {seq} binds revision {revision}, whose values were altered")]
    Revision { seq: u32, revision: String },
    /// An event binds a revision that is not stored at all.
    #[error("event {seq} binds revision {revision}, which is missing")]
    MissingRevision { seq: u32, revision: String },
    /// An export holds events of a proposal but not its head line.
    #[error("the export has no head line for this proposal")]
    NoHead,
}

impl AuditBreak {
    /// The event where the record breaks (the last one for a head break).
    pub fn seq(&self) -> u32 {
        match self {
            AuditBreak::Chain(
                ChainError::Sequence(s) | ChainError::Link(s) | ChainError::Altered(s),
            ) => *s,
            AuditBreak::Head { recorded, .. } => *recorded,
            AuditBreak::Revision { seq, .. } | AuditBreak::MissingRevision { seq, .. } => *seq,
            AuditBreak::NoHead => 0,
        }
    }
}

/// The revision values an event binds, as exported: enough to recompute
/// the revision hash offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundRevision {
    pub number: u32,
    pub values: std::collections::BTreeMap<String, serde_json::Value>,
}

impl BoundRevision {
    pub fn hash(&self) -> String {
        // Same canonical form as `Revision::hash_of`: the number and the
        // values only.
        let canonical =
            serde_json::to_vec(&(self.number, &self.values)).expect("json of plain values");
        hex::encode(Sha256::digest(&canonical))
    }
}

/// The head of one proposal's record, as the proposal stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub proposal: ProposalId,
    pub workflow: String,
    pub status: Status,
    pub event_count: u32,
    pub last_event_hash: String,
}

/// One line of `fieldgate audit export`: a proposal's head, or one event
/// with the revisions it binds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Head(AuditHead),
    Event {
        event: AuditEvent,
        /// By revision hash: the revisions `before` and `after` name.
        #[serde(default)]
        revisions: std::collections::BTreeMap<String, BoundRevision>,
    },
}

/// Checks one proposal's whole record: the chain from genesis, the head
/// the proposal stores, and every revision an event binds (`revisions`:
/// the stored revisions by the hash they claim).
pub fn verify_record(
    head: &AuditHead,
    events: &[AuditEvent],
    revisions: &std::collections::BTreeMap<String, BoundRevision>,
) -> Result<(), AuditBreak> {
    verify_chain(events)?;
    let found = events.len() as u32;
    let last = events.last().map_or(GENESIS, |e| e.hash.as_str());
    if found != head.event_count || last != head.last_event_hash {
        return Err(AuditBreak::Head {
            recorded: head.event_count,
            found,
            head: head.last_event_hash.clone(),
        });
    }
    for e in events {
        for h in [&e.before, &e.after].into_iter().flatten() {
            match revisions.get(h) {
                None => {
                    return Err(AuditBreak::MissingRevision {
                        seq: e.seq,
                        revision: h.clone(),
                    });
                }
                Some(r) if &r.hash() != h => {
                    return Err(AuditBreak::Revision {
                        seq: e.seq,
                        revision: h.clone(),
                    });
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

impl AuditHead {
    pub fn of(p: &crate::Proposal) -> Self {
        AuditHead {
            proposal: p.id,
            workflow: p.workflow.to_string(),
            status: p.status,
            event_count: p.event_count,
            last_event_hash: p.last_event_hash.clone(),
        }
    }
}

/// The proposal's stored revisions, by the hash each claims.
pub fn stored_revisions(p: &crate::Proposal) -> std::collections::BTreeMap<String, BoundRevision> {
    p.revisions
        .iter()
        .map(|r| {
            (
                r.hash.clone(),
                BoundRevision {
                    number: r.number,
                    values: r.values(),
                },
            )
        })
        .collect()
}

/// One proposal's export: its head, then each event with the revisions
/// it binds.
pub fn export_lines(p: &crate::Proposal, events: &[AuditEvent]) -> Vec<ExportLine> {
    let stored = stored_revisions(p);
    let mut out = vec![ExportLine::Head(AuditHead::of(p))];
    for e in events {
        let revisions = [&e.before, &e.after]
            .into_iter()
            .flatten()
            .filter_map(|h| stored.get(h).map(|r| (h.clone(), r.clone())))
            .collect();
        out.push(ExportLine::Event {
            event: e.clone(),
            revisions,
        });
    }
    out
}

/// Verifies an export offline: every proposal in it, in id order.
pub fn verify_export(lines: &[ExportLine]) -> Vec<(ProposalId, Result<(), AuditBreak>)> {
    use std::collections::BTreeMap;
    let mut heads: BTreeMap<ProposalId, &AuditHead> = BTreeMap::new();
    let mut events: BTreeMap<ProposalId, Vec<&AuditEvent>> = BTreeMap::new();
    let mut revisions: BTreeMap<ProposalId, BTreeMap<String, BoundRevision>> = BTreeMap::new();
    for l in lines {
        match l {
            ExportLine::Head(h) => {
                heads.insert(h.proposal, h);
                events.entry(h.proposal).or_default();
            }
            ExportLine::Event {
                event,
                revisions: r,
            } => {
                events.entry(event.proposal).or_default().push(event);
                revisions
                    .entry(event.proposal)
                    .or_default()
                    .extend(r.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    events
        .into_iter()
        .map(|(id, mut evs)| {
            evs.sort_by_key(|e| e.seq);
            let evs: Vec<AuditEvent> = evs.into_iter().cloned().collect();
            let result = match heads.get(&id) {
                None => Err(AuditBreak::NoHead),
                Some(h) => verify_record(h, &evs, &revisions.remove(&id).unwrap_or_default()),
            };
            (id, result)
        })
        .collect()
}
