//! Review rounds: issue one link per reviewer, mail it, record that it was
//! mailed. Used by the structure step (first round) and the commit step
//! (when Salesforce refuses and the reviewer must look again).

use crate::domain::{
    Actor, CsrfKey, NudgeKind, Proposal, ProposalId, ReviewGrant, ReviewToken, Timestamp,
    Transition, Workflow, Workflows,
};
use crate::error::AppError;
use crate::ports::{ProposalStore, ReviewMail, ReviewNotifier};
use crate::web::{MailRow, ReviewMailHtml, human_time};
use serde_json::json;

/// `{id}.{tag}` after `/s/`: the tag makes status pages unguessable from
/// the id.
pub fn status_ref(key: &CsrfKey, id: ProposalId) -> String {
    format!("{id}.{}", key.token_for(&format!("status:{id}")))
}

/// Why a status link segment was refused (the page says only "not found").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StatusRefError {
    #[error("not a status link: {{proposal id}}.{{tag}} expected")]
    Malformed,
    #[error("the status link's tag does not match")]
    BadTag,
}

/// The proposal a [`status_ref`] segment names, if its tag is genuine.
pub fn parse_status_ref(key: &CsrfKey, reference: &str) -> Result<ProposalId, StatusRefError> {
    let (id, tag) = reference.split_once('.').ok_or(StatusRefError::Malformed)?;
    let id: ProposalId = id.parse().map_err(|_| StatusRefError::Malformed)?;
    if !key.verify(&format!("status:{id}"), tag) {
        return Err(StatusRefError::BadTag);
    }
    Ok(id)
}

/// Issues fresh links (replacing unmailed ones from a crashed attempt),
/// mails them, and records the round as mailed. Each step is its own
/// conditional write, so a retry resumes: links that were never mailed are
/// simply replaced.
pub async fn send_round(
    store: &dyn ProposalStore,
    notifier: &dyn ReviewNotifier,
    workflow: &Workflow,
    public_url: &str,
    proposal: &Proposal,
    step: &str,
    now: Timestamp,
) -> Result<Proposal, AppError> {
    let round = issue_round(workflow, proposal, step, now)?;
    store.apply(&round.issue).await?;
    mail_round(store, notifier, workflow, public_url, round, step, now).await
}

/// A round's links, made but not stored: the transition that records
/// them (the structure step writes it with its own) and the tokens to
/// mail once it is stored.
pub struct Round {
    pub issue: Transition,
    tokens: Vec<(String, ReviewToken)>,
}

/// Fresh links for each reviewer of `workflow`, as a transition of
/// `proposal` (see [`send_round`]).
pub fn issue_round(
    workflow: &Workflow,
    proposal: &Proposal,
    step: &str,
    now: Timestamp,
) -> Result<Round, AppError> {
    let tokens: Vec<(String, ReviewToken)> = workflow
        .reviewers
        .iter()
        .map(|r| {
            (
                r.clone(),
                ReviewToken::generate(proposal.id, &mut rand::rng()),
            )
        })
        .collect();
    let expires_at = now + workflow.review_link_ttl;
    let issue = proposal.transition(
        proposal.status,
        Actor::system(step),
        "review_links_issued",
        json!({"reviewers": workflow.reviewers, "expires_at": human_time(expires_at)}),
        now,
        |p| {
            p.review.retire_grants();
            p.review.round += 1;
            p.review.mailed = false;
            p.review.expires_at = Some(expires_at);
            // A new round waits afresh: its own reminder and escalation.
            p.review.issued_at = Some(now);
            p.review.nudges.clear();
            p.review.grants = tokens
                .iter()
                .map(|(r, t)| ReviewGrant {
                    reviewer: r.clone(),
                    token_hash: t.hash(),
                })
                .collect();
        },
    )?;
    Ok(Round { issue, tokens })
}

/// Mails a round whose links are stored (`round.issue` applied) and
/// records it as mailed.
pub async fn mail_round(
    store: &dyn ProposalStore,
    notifier: &dyn ReviewNotifier,
    workflow: &Workflow,
    public_url: &str,
    round: Round,
    step: &str,
    now: Timestamp,
) -> Result<Proposal, AppError> {
    let Round { issue, tokens } = round;
    let issued = issue.proposal;
    for (reviewer, token) in &tokens {
        let mail = compose(
            &issued,
            workflow,
            public_url,
            reviewer,
            token,
            Purpose::Review,
            now,
        );
        notifier.send(&mail).await?;
    }
    let mark = issued.transition(
        issued.status,
        Actor::system(step),
        "review_mail_sent",
        json!({"round": issued.review.round, "count": tokens.len()}),
        now,
        |p| {
            p.review.mailed = true;
            p.review.mailed_at = Some(now);
            p.review.first_mailed_at.get_or_insert(now);
        },
    )?;
    store.apply(&mark).await?;
    Ok(mark.proposal)
}

/// Why a review mail is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A round's links (the first, or after Salesforce refused).
    Review,
    Nudge(NudgeKind),
}

/// One reviewer's mail with their link.
fn compose(
    p: &Proposal,
    workflow: &Workflow,
    public_url: &str,
    reviewer: &str,
    token: &ReviewToken,
    purpose: Purpose,
    now: Timestamp,
) -> ReviewMail {
    let expires_at = p.review.expires_at.unwrap_or(now);
    let summary = p
        .current()
        .and_then(|r| r.fields.get(&workflow.handoff.summary_field))
        .and_then(|f| f.text())
        .unwrap_or("(no summary)");
    let url = format!("{}/r/{token}", public_url.trim_end_matches('/'));
    let expires = human_time(expires_at);
    let waited = p
        .review
        .issued(workflow.review_link_ttl)
        .map_or(0, |t| (now - t).whole_hours().max(0));
    let lead = match purpose {
        Purpose::Review => {
            "A field report needs your review before it is written to Salesforce.".to_owned()
        }
        Purpose::Nudge(NudgeKind::Reminder) => format!(
            "Reminder: this field report has waited {waited} hours for a review. Nothing is written to Salesforce until someone decides."
        ),
        Purpose::Nudge(NudgeKind::Escalation) => format!(
            "This field report has waited {waited} hours without a decision, so it is passed to you as well. The first decision counts."
        ),
    };
    // The compact table: every proposed field with a value, so a reviewer
    // can triage from the inbox; the ones the page will ask to tick marked.
    let eyes = crate::domain::needs_eyes(workflow, p);
    let rows: Vec<MailRow> = workflow
        .fields
        .iter()
        .filter_map(|f| {
            let v = p.current()?.fields.get(&f.name)?.text()?;
            Some(MailRow {
                label: f.label.clone(),
                value: clip(v, 140),
                check: eyes.contains_key(&f.name),
            })
        })
        .collect();
    let priority = workflow
        .handoff
        .priority_field
        .as_deref()
        .and_then(|f| p.current()?.fields.get(f)?.text().map(str::to_owned));
    let to_check = eyes.len();
    let a = &p.asset;
    let html = ReviewMailHtml {
        lead: &lead,
        asset: &a.name,
        serial: a.serial_number.as_deref(),
        account: a.account_name.as_deref(),
        priority: priority.as_deref(),
        summary,
        rows: &rows,
        to_check,
        url: &url,
        expires_at: &expires,
    }
    .to_html();
    let mut table = String::new();
    if let Some(pr) = &priority {
        table.push_str(&format!("Priority: {pr}\n"));
    }
    for r in &rows {
        let mark = if r.check { " [check]" } else { "" };
        table.push_str(&format!(
            "{}: {}{mark}\n",
            r.label,
            r.value.replace('\n', " ")
        ));
    }
    let check_line = match to_check {
        0 => String::new(),
        1 => "1 field needs your eyes.\n\n".to_owned(),
        n => format!("{n} fields need your eyes.\n\n"),
    };
    let text = format!(
        "{lead}\n\n{}{}\n\n{table}\n{check_line}Review it: {url}\n\nThis link is yours alone and works until {expires}. Opening it changes nothing.\n",
        a.name,
        a.serial_number
            .as_deref()
            .map(|s| format!(" · {s}"))
            .unwrap_or_default(),
    );
    let tag = priority
        .as_deref()
        .map(|p| format!("[{p}] "))
        .unwrap_or_default();
    let plain = format!("{} — {}", a.name, clip(summary, 60));
    let what = format!("{tag}{plain}");
    let subject = match purpose {
        Purpose::Nudge(NudgeKind::Reminder) => format!("Reminder, review waiting: {what}"),
        Purpose::Nudge(NudgeKind::Escalation) => {
            format!("Escalated, no decision for {waited} h: {what}")
        }
        Purpose::Review if p.commit.last_error.is_some() => format!("Salesforce refused: {plain}"),
        Purpose::Review => format!("Review: {what}"),
    };
    ReviewMail {
        to: reviewer.to_owned(),
        subject,
        review_url: url,
        text,
        html,
        dedupe_key: None,
    }
}

/// What one pass of [`send_due_nudges`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Nudged {
    pub reminded: usize,
    pub escalated: usize,
    /// Claimed by another sweep first (it sends them).
    pub lost: usize,
    /// Failed (the claim stays; a sweep after `stuck_after` takes it over).
    pub failed: usize,
}

/// Sends the reminders and escalations due among `candidates` (undecided
/// proposals, as listed by the caller). Each is claimed with a conditional
/// write that also stores the recipients' fresh links, then mailed, then
/// recorded as mailed -- the order the review round itself uses. Of two
/// sweeps at once one claim wins; the other's write conflicts and it sends
/// nothing. A claim whose sender died before recording the mail is taken
/// over once `stuck_after` has passed, with new links.
#[allow(clippy::too_many_arguments)]
pub async fn send_due_nudges(
    store: &dyn ProposalStore,
    notifier: &dyn ReviewNotifier,
    workflows: &Workflows,
    public_url: &str,
    candidates: Vec<Proposal>,
    step: &str,
    now: Timestamp,
    stuck_after: time::Duration,
) -> Nudged {
    let mut out = Nudged::default();
    for mut p in candidates {
        let Some(wf) = workflows.get(&p.workflow) else {
            continue;
        };
        // A late sweep may owe both: the reminder, then the escalation.
        while let Some(kind) =
            p.nudge_due(|k| wf.nudge_after(k), wf.review_link_ttl, now, stuck_after)
        {
            match send_nudge(store, notifier, &wf, public_url, &p, kind, step, now).await {
                Ok(next) => {
                    match kind {
                        NudgeKind::Reminder => out.reminded += 1,
                        NudgeKind::Escalation => out.escalated += 1,
                    }
                    p = next;
                }
                Err(e) if e.is_conflict() => {
                    out.lost += 1;
                    break;
                }
                Err(e) => {
                    tracing::warn!(proposal = %p.id, kind = kind.as_str(), error = %crate::Chain(&e), "sending a review {} failed; a later sweep retries", kind.as_str());
                    out.failed += 1;
                    break;
                }
            }
        }
    }
    out
}

/// Claims, mails and records one reminder or escalation of `p`.
#[allow(clippy::too_many_arguments)]
async fn send_nudge(
    store: &dyn ProposalStore,
    notifier: &dyn ReviewNotifier,
    workflow: &Workflow,
    public_url: &str,
    p: &Proposal,
    kind: NudgeKind,
    step: &str,
    now: Timestamp,
) -> Result<Proposal, AppError> {
    let tokens: Vec<(String, ReviewToken)> = workflow
        .nudge_recipients(kind)
        .iter()
        .map(|r| (r.clone(), ReviewToken::generate(p.id, &mut rand::rng())))
        .collect();
    let grants = tokens
        .iter()
        .map(|(r, t)| ReviewGrant {
            reviewer: r.clone(),
            token_hash: t.hash(),
        })
        .collect();
    let claim = p.claim_nudge(kind, grants, step, now)?;
    // The claim: conditional on the version read, so one sweep sends.
    store.apply(&claim).await?;
    let claimed = claim.proposal;
    tracing::info!(proposal = %p.id, kind = kind.as_str(), recipients = tokens.len(), "review {} claimed; mailing", kind.as_str());
    for (reviewer, token) in &tokens {
        let mail = compose(
            &claimed,
            workflow,
            public_url,
            reviewer,
            token,
            Purpose::Nudge(kind),
            now,
        );
        notifier.send(&mail).await?;
    }
    let hashes = claimed.review.nudge(kind).map(|n| n.grant_hashes.clone());
    let mut current = claimed;
    // Recording the mail may race a decision (or the reviewer opening a
    // new round): record it on the newest state if the claim is still
    // there; once the proposal has moved on there is nothing to record.
    for _ in 0..3 {
        let mark = current.nudge_mailed(kind, step, now)?;
        match store.apply(&mark).await {
            Ok(()) => return Ok(mark.proposal),
            Err(crate::ports::StoreError::Conflict) => {
                let Some(fresh) = store.get(p.id).await? else {
                    return Err(AppError::Vanished(p.id));
                };
                let same = fresh.status.awaits_reviewer()
                    && fresh
                        .review
                        .nudge(kind)
                        .is_some_and(|n| !n.mailed && Some(&n.grant_hashes) == hashes.as_ref());
                if !same {
                    return Ok(fresh);
                }
                current = fresh;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(crate::ports::StoreError::Conflict.into())
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// Moves proposals whose review links have all expired to EXPIRED. Run on a
/// schedule (the dev stack: every 30 s); each move is a conditional write,
/// so a decision racing the sweep wins or loses cleanly.
pub async fn expire_due(
    store: &dyn ProposalStore,
    now: crate::domain::Timestamp,
    limit: usize,
) -> Result<usize, AppError> {
    let mut expired = 0;
    for status in [
        crate::domain::Status::PendingReview,
        crate::domain::Status::NeedsAttention,
    ] {
        for p in store.list_by_status(status, limit).await? {
            if p.review.expires_at.is_none_or(|t| t >= now) {
                continue;
            }
            let t = p.transition(
                crate::domain::Status::Expired,
                Actor::system("sweep"),
                "expired",
                json!({"expired_at": human_time(p.review.expires_at.unwrap_or(now))}),
                now,
                |n| n.review.retire_grants(),
            )?;
            match store.apply(&t).await {
                Ok(()) => expired += 1,
                Err(crate::ports::StoreError::Conflict) => {} // decided meanwhile
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{SeededRng, at};
    use proptest::prelude::*;

    fn key() -> CsrfKey {
        CsrfKey::generate(&mut SeededRng(21))
    }

    #[test]
    fn a_status_link_round_trips_and_its_tag_is_bound_to_the_id() {
        let id = ProposalId::generate(at(0), &mut SeededRng(1));
        let other = ProposalId::generate(at(0), &mut SeededRng(2));
        let r = status_ref(&key(), id);
        assert_eq!(parse_status_ref(&key(), &r), Ok(id));
        let tag = r.split_once('.').unwrap().1;
        assert_eq!(
            parse_status_ref(&key(), &format!("{other}.{tag}")),
            Err(StatusRefError::BadTag)
        );
        assert_eq!(
            parse_status_ref(&key(), "nothing"),
            Err(StatusRefError::Malformed)
        );
        let foreign = CsrfKey::generate(&mut SeededRng(3));
        assert_eq!(parse_status_ref(&foreign, &r), Err(StatusRefError::BadTag));
    }

    mod properties {
        use super::*;

        proptest! {
            #![proptest_config(crate::proptest_config())]

            #[test]
            fn any_status_segment_is_refused_with_a_typed_error(s in any::<String>()) {
                prop_assert!(parse_status_ref(&key(), &s).is_err());
            }

            #[test]
            fn an_edited_status_link_never_names_its_proposal(
                seed in any::<u64>(),
                edits in proptest::collection::vec(crate::proptest_edit(), 1..4),
            ) {
                let id = ProposalId::generate(at(0), &mut SeededRng(seed));
                let link = status_ref(&key(), id);
                let edited = crate::domain::fixtures::mutate(&link, &edits);
                match parse_status_ref(&key(), &edited) {
                    // Only a change of letter case in the id is the same link.
                    Ok(got) => prop_assert!(got == id && edited.split_once('.').map(|(_, t)| t) == link.split_once('.').map(|(_, t)| t), "{}", edited),
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }
        }
    }
}
