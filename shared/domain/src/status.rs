//! The proposal state machine.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Received,
    PendingReview,
    Approved,
    Committing,
    Committed,
    NeedsAttention,
    Rejected,
    Expired,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Received,
        Status::PendingReview,
        Status::Approved,
        Status::Committing,
        Status::Committed,
        Status::NeedsAttention,
        Status::Rejected,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "RECEIVED",
            Status::PendingReview => "PENDING_REVIEW",
            Status::Approved => "APPROVED",
            Status::Committing => "COMMITTING",
            Status::Committed => "COMMITTED",
            Status::NeedsAttention => "NEEDS_ATTENTION",
            Status::Rejected => "REJECTED",
            Status::Expired => "EXPIRED",
        }
    }

    /// Whether `self -> to` is an edge of the state machine. A move to the
    /// same status is allowed: it records progress (a mail sent, a record id
    /// learned) without changing the state.
    pub fn can_move_to(self, to: Status) -> bool {
        use Status::*;
        self == to && !self.is_final()
            || matches!(
                (self, to),
                (Received, PendingReview)
                    | (PendingReview, Approved)
                    | (PendingReview, Rejected)
                    | (PendingReview, Expired)
                    | (Approved, Committing)
                    | (Committing, Committed)
                    | (Committing, NeedsAttention)
                    // A paused commit (org API budget spent) goes back to wait.
                    | (Committing, Approved)
                    | (NeedsAttention, Approved)
                    | (NeedsAttention, Rejected)
                    | (NeedsAttention, Expired)
            )
            // The handoff and the reporter's mail are recorded on a
            // committed proposal; the reporter's mail on a rejected one.
            || (self == Committed && to == Committed)
            || (self == Rejected && to == Rejected)
    }

    /// No further decision can be taken.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Committed | Status::Rejected | Status::Expired)
    }

    /// A reviewer may decide in this state.
    pub fn awaits_reviewer(self) -> bool {
        matches!(self, Status::PendingReview | Status::NeedsAttention)
    }

    /// Words for people (pages, mails).
    pub fn label(self) -> &'static str {
        match self {
            Status::Received => "Received, being prepared for review",
            Status::PendingReview => "Waiting for review",
            Status::Approved => "Approved, being written to Salesforce",
            Status::Committing => "Being written to Salesforce",
            Status::Committed => "Written to Salesforce",
            Status::NeedsAttention => "Salesforce refused it; waiting for the reviewer",
            Status::Rejected => "Rejected by the reviewer",
            Status::Expired => "Expired without a decision",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;

    #[test]
    fn edges() {
        assert!(Received.can_move_to(PendingReview));
        assert!(PendingReview.can_move_to(Approved));
        assert!(
            !Received.can_move_to(Approved),
            "no approval without review"
        );
        assert!(!Rejected.can_move_to(Approved));
        assert!(!Committed.can_move_to(Approved));
        assert!(
            Rejected.can_move_to(Rejected),
            "the reporter's mail is recorded"
        );
        assert!(!Rejected.can_move_to(PendingReview));
        assert!(!Expired.can_move_to(Expired));
        assert!(Committed.can_move_to(Committed));
        assert!(NeedsAttention.can_move_to(Approved));
        assert!(
            !Approved.can_move_to(Committed),
            "commit goes through COMMITTING"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in super::Status::ALL {
            assert_eq!(s.as_str().parse::<super::Status>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }
}
