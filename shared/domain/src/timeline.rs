//! What the technician sees happen to their report, step by step, with
//! when: derived from what the proposal records, never from who did it.

use super::proposal::{DecisionKind, Proposal, ReviewMilestone};
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
    for m in p.review_milestones() {
        match m {
            ReviewMilestone::Reminded(t) => push("Reminder sent to the reviewers", Some(t)),
            ReviewMilestone::Escalated(t) => push("Passed to a second reviewer", Some(t)),
            ReviewMilestone::Expired(t) => push("Not decided before the review expired", Some(t)),
        }
    }
    // An expired round whose expiry time was not kept still says so.
    if p.status == Status::Expired && p.review.expires_at.is_none() {
        push("Not decided before the review expired", Some(p.updated_at));
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
            add_to: None,
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

    #[test]
    fn reminders_escalation_and_expiry_are_on_the_timeline_without_names() {
        let t = crate::fixtures::received(ProposalId::generate(at(0), &mut SeededRng(5)), at(0));
        let mut p = t.proposal;
        p.status = Status::Expired;
        p.review.expires_at = Some(at(3600));
        for (kind, when) in [
            (crate::NudgeKind::Reminder, 60),
            (crate::NudgeKind::Escalation, 120),
        ] {
            p.review.nudges.push(crate::Nudge {
                kind,
                to: vec!["desk@example.com".into()],
                claimed_at: at(when),
                grant_hashes: vec![],
                mailed: true,
                mailed_at: Some(at(when)),
            });
        }
        // A claimed nudge never mailed did not happen, for the technician.
        p.review.nudges.push(crate::Nudge {
            kind: crate::NudgeKind::Reminder,
            to: vec![],
            claimed_at: at(200),
            grant_hashes: vec![],
            mailed: false,
            mailed_at: None,
        });
        let got: Vec<_> = timeline(&p).iter().map(|e| (e.label, e.at)).collect();
        assert_eq!(
            got,
            [
                ("Received", at(0)),
                ("Reminder sent to the reviewers", at(60)),
                ("Passed to a second reviewer", at(120)),
                ("Not decided before the review expired", at(3600)),
            ]
        );
    }
}
