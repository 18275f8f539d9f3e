//! Which proposed fields need the reviewer's eyes before an approval
//! counts. The review page groups by it and the approval refuses a
//! decision that did not tick each of them: the same function decides both.

use super::audit::Actor;
use super::proposal::Proposal;
use super::workflow::{Workflow, is_blank};
use std::collections::BTreeMap;

/// Why a field needs a look, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attention {
    /// Salesforce refused it (or it changed there since the proposal).
    Refused,
    /// Its value breaks the workflow's rules (required, picklist, length).
    Invalid,
    /// Structuring flagged it (unsure, repaired, guessed).
    Flagged,
    /// Quoted, but the quote is not in the notes.
    QuoteNotFound,
    /// A value with no quote from the notes to back it.
    Unquoted,
    /// The workflow asks for a tick on it every time (`review = "confirm"`).
    Confirm,
}

impl Attention {
    /// Words for the reviewer.
    pub fn reason(self) -> &'static str {
        match self {
            Attention::Refused => "Salesforce refused it",
            Attention::Invalid => "does not fit the field's rules",
            Attention::Flagged => "structuring was unsure",
            Attention::QuoteNotFound => "its quote is not in the notes",
            Attention::Unquoted => "nothing in the notes backs it",
            Attention::Confirm => "always checked by a person",
        }
    }
}

/// Where `quote` is in `notes`: exactly, else ignoring ASCII case (whose
/// lowercasing keeps byte offsets, so the offset indexes `notes`).
pub fn quote_at(notes: &str, quote: &str) -> Option<usize> {
    let q = quote.trim();
    if q.is_empty() {
        return None;
    }
    notes
        .find(q)
        .or_else(|| notes.to_ascii_lowercase().find(&q.to_ascii_lowercase()))
}

/// The fields of `p`'s current revision that need a look, by name.
pub fn needs_eyes(wf: &Workflow, p: &Proposal) -> BTreeMap<String, Attention> {
    let mut out = BTreeMap::new();
    let Some(current) = p.current() else {
        return out;
    };
    let refused: Vec<&str> = p
        .commit
        .last_error
        .iter()
        .flat_map(|e| e.fields.iter().map(String::as_str))
        .collect();
    let invalid: Vec<String> = wf
        .check(&current.values())
        .into_iter()
        .map(|i| i.field)
        .collect();
    let first = p.revisions.first();
    let by_reviewer = matches!(current.author, Actor::Reviewer { .. });
    for spec in &wf.fields {
        let fv = current.fields.get(&spec.name);
        let given = fv.is_some_and(|f| !is_blank(&f.value));
        // A value a reviewer typed in an earlier round has no quote by
        // design: it is theirs, not structuring's guess.
        let typed_by_reviewer = by_reviewer
            && first
                .and_then(|r| r.fields.get(&spec.name))
                .map(|f| &f.value)
                != fv.map(|f| &f.value);
        let why = if refused.contains(&spec.name.as_str()) {
            Some(Attention::Refused)
        } else if invalid.contains(&spec.name) {
            Some(Attention::Invalid)
        } else if fv.is_some_and(|f| f.flag.is_some()) {
            Some(Attention::Flagged)
        } else if given && !typed_by_reviewer {
            match fv.and_then(|f| f.evidence.as_deref()) {
                Some(q) if quote_at(&p.intake.notes, q).is_none() => Some(Attention::QuoteNotFound),
                Some(_) => None,
                None => Some(Attention::Unquoted),
            }
        } else {
            None
        };
        if let Some(why) = why.or(spec.confirm.then_some(Attention::Confirm)) {
            out.insert(spec.name.clone(), why);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{SeededRng, at};
    use crate::{FieldValue, Fields, ProposalId, SalesforceProblem};

    const WF: &str = include_str!("../../../infra/workflows/field-service-case.toml");

    fn fv(v: &str, ev: Option<&str>, flag: Option<&str>) -> FieldValue {
        FieldValue {
            value: v.into(),
            evidence: ev.map(str::to_owned),
            flag: flag.map(str::to_owned),
        }
    }

    #[test]
    fn each_reason_puts_a_field_under_needs_your_eyes() {
        let wf = Workflow::from_toml("x", WF).unwrap();
        let mut p =
            crate::fixtures::received(ProposalId::generate(at(0), &mut SeededRng(4)), at(0))
                .proposal;
        p.intake.notes = "Chiller leaking water under unit, urgent".into();
        let mut f = Fields::new();
        f.insert(
            "Subject".into(),
            fv("Chiller leaking", Some("chiller LEAKING"), None),
        );
        f.insert(
            "Priority".into(),
            fv("High", Some("urgent"), Some("guessed")),
        );
        f.insert("Description".into(), fv("Leak", Some("not said"), None));
        f.insert("Type".into(), fv("Mechanical", None, None));
        p.push_revision(f, Actor::system("structure"), at(1));
        let got = needs_eyes(&wf, &p);
        assert_eq!(got.get("Subject"), None, "{got:?}");
        assert_eq!(got.get("Priority"), Some(&Attention::Flagged));
        assert_eq!(got.get("Description"), Some(&Attention::QuoteNotFound));
        assert_eq!(got.get("Type"), Some(&Attention::Unquoted));

        p.commit.last_error = Some(SalesforceProblem {
            code: "X".into(),
            message: "no".into(),
            fields: vec!["Subject".into()],
        });
        assert_eq!(
            needs_eyes(&wf, &p).get("Subject"),
            Some(&Attention::Refused)
        );

        let confirm = WF.replacen(
            "name = \"Subject\"",
            "name = \"Subject\"\nreview = \"confirm\"",
            1,
        );
        assert_ne!(confirm, WF);
        let wf = Workflow::from_toml("x", &confirm).unwrap();
        p.commit.last_error = None;
        assert_eq!(
            needs_eyes(&wf, &p).get("Subject"),
            Some(&Attention::Confirm)
        );
    }
}
