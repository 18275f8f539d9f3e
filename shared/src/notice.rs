//! The reporter's outcome mail: one short message when the report is
//! written to Salesforce or rejected. It names no reviewer and carries no
//! link but the report's status link.

use crate::domain::{Proposal, Status, Workflow};
use crate::ports::ReviewMail;
use crate::web::{ReporterMailHtml, human_time};

/// The mail's dedupe key: the same for every send of one outcome, so a
/// repeat after a crash (sent, not yet recorded) is recognisable.
pub fn dedupe_key(p: &Proposal) -> String {
    format!("{}.{}", p.id, p.status.as_str().to_ascii_lowercase())
}

/// The outcome mail of `p` (COMMITTED or REJECTED) to `to`.
pub fn reporter_mail(wf: &Workflow, p: &Proposal, to: &str, status_url: &str) -> ReviewMail {
    let asset = &p.asset.name;
    let reported = human_time(p.intake.received_at);
    let number = p.commit.record_number.as_deref();
    let (subject, headline) = match p.status {
        Status::Committed => (
            match number {
                Some(n) => format!("Written to Salesforce: {} {n} — {asset}", wf.object),
                None => format!("Written to Salesforce — {asset}"),
            },
            match number {
                Some(n) => format!(
                    "Your report was written to Salesforce as {} {n}.",
                    wf.object
                ),
                None => format!("Your report was written to Salesforce as a {}.", wf.object),
            },
        ),
        _ => (
            format!("Not written to Salesforce — {asset}"),
            "Your report was reviewed and rejected; nothing was written to Salesforce.".to_owned(),
        ),
    };
    let reason = (p.status == Status::Rejected && wf.notify.reject_reason)
        .then(|| p.decision.as_ref().and_then(|d| d.reason.clone()))
        .flatten();
    let mut text = format!("{headline}\n\nAsset: {asset}\nReported: {reported}\n");
    if let Some(r) = &reason {
        text.push_str(&format!("Reason: {r}\n"));
    }
    text.push_str(&format!(
        "\nWhere it stands: {status_url}\n\nYou get this mail once, because you gave this address on the report.\n"
    ));
    let html = ReporterMailHtml {
        headline: &headline,
        asset,
        reported: &reported,
        reason: reason.as_deref(),
        status_url,
    }
    .to_html();
    ReviewMail {
        to: to.to_owned(),
        subject,
        review_url: status_url.to_owned(),
        text,
        html,
        dedupe_key: Some(dedupe_key(p)),
    }
}
