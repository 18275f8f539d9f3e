//! What the technician sees happen to their report, step by step, with
//! when: derived from what the proposal records, never from who did it.

use super::proposal::{DecisionKind, Proposal};
use super::{Status, Timestamp};

/// One thing that happened, for the technician's status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Words for the technician; names no person.
    pub label: &'static str,
    pub at: Timestamp,
}

/// The steps `p` went through, in order of time. To add one (a reminder,
/// an escalation), push it here: the page shows whatever this returns.
/// Reviewers' identities, Salesforce refusals and retries are left out:
/// the status page is open to whoever holds its link.
pub fn timeline(p: &Proposal) -> Vec<TimelineEntry> {
    let mut out = vec![TimelineEntry {
        label: "Received",
        at: p.intake.received_at,
    }];
    let mut push = |label, at: Option<Timestamp>| {
        if let Some(at) = at {
            out.push(TimelineEntry { label, at });
        }
    };
    // The first revision is the structurer's (or the assistant's) proposal.
    push("Prepared for review", p.revisions.first().map(|r| r.at));
    push(
        "Sent to the reviewers",
        p.review.first_mailed_at.or(p.review.mailed_at),
    );
    if let Some(d) = &p.decision {
        let label = match d.kind {
            DecisionKind::Approve => "Approved",
            DecisionKind::Reject => "Rejected",
        };
        push(label, Some(d.at));
    }
    if p.status == Status::Expired {
        push("Not reviewed in time", Some(p.updated_at));
    }
    push("Written to Salesforce", p.commit.committed_at);
    push("Passed on to the team", p.commit.handed_off_at);
    push("You were mailed the outcome", p.reporter_mailed_at);
    // Stable: entries recorded in the same millisecond keep their order.
    out.sort_by_key(|e| e.at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{SeededRng, at};
    use crate::{Actor, Decision, Fields, ProposalId};

    #[test]
    fn the_timeline_follows_what_was_recorded() {
        let t = crate::fixtures::received(ProposalId::generate(at(0), &mut SeededRng(3)), at(0));
        let mut p = t.proposal;
        assert_eq!(timeline(&p).len(), 1);
        p.push_revision(Fields::new(), Actor::system("structure"), at(5));
        p.review.mailed_at = Some(at(6));
        p.review.first_mailed_at = Some(at(6));
        p.decision = Some(Decision {
            kind: DecisionKind::Reject,
            by: "desk@example.com".into(),
            at: at(60),
            revision_hash: String::new(),
            reason: None,
            token_hash: String::new(),
        });
        p.reporter_mailed_at = Some(at(61));
        let labels: Vec<_> = timeline(&p).iter().map(|e| e.label).collect();
        assert_eq!(
            labels,
            [
                "Received",
                "Prepared for review",
                "Sent to the reviewers",
                "Rejected",
                "You were mailed the outcome"
            ]
        );
        // A later round's mail does not move "sent to the reviewers".
        p.review.mailed_at = Some(at(90));
        assert_eq!(timeline(&p)[2].at, at(6));
    }
}
