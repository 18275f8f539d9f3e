//! `fieldgate audit verify|export`: an admin re-computes every proposal's
//! hash chain from the store (embedded or DynamoDB), or exports it as JSON
//! lines that `verify --file` checks offline, without the store.

use anyhow::Context;
use fieldgate::domain::{
    AuditBreak, AuditHead, ExportLine, Proposal, ProposalId, Status, Timestamp, export_lines,
    stored_revisions, verify_export, verify_record,
};
use fieldgate::ports::ProposalStore;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

/// What a verification found.
#[derive(Debug, Default)]
pub struct Report {
    pub proposals: usize,
    pub events: usize,
    pub breaks: Vec<(ProposalId, AuditBreak)>,
}

impl Report {
    /// One line per break (naming the proposal and the event), then the
    /// totals.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        for (id, b) in &self.breaks {
            writeln!(out, "BROKEN proposal {id} at event {}: {b}", b.seq())?;
        }
        writeln!(
            out,
            "{} proposals, {} events verified: {}",
            self.proposals,
            self.events,
            match self.breaks.len() {
                0 => "every chain is intact".to_owned(),
                n => format!("{n} broken"),
            }
        )
    }
}

/// Every proposal in the store (or just `only`), in id order. Read status
/// by status: a proposal that moves while this runs may be read twice;
/// the map keeps one copy.
async fn proposals(
    store: &dyn ProposalStore,
    only: Option<ProposalId>,
) -> anyhow::Result<Vec<Proposal>> {
    if let Some(id) = only {
        let p = store
            .get(id)
            .await
            .context("reading the proposal")?
            .with_context(|| format!("no proposal {id} in this store"))?;
        return Ok(vec![p]);
    }
    let mut all = BTreeMap::new();
    for s in Status::ALL {
        for p in store
            .list_by_status(s, usize::MAX)
            .await
            .with_context(|| format!("listing {s} proposals"))?
        {
            all.insert(p.id, p);
        }
    }
    Ok(all.into_values().collect())
}

/// Re-computes every chain from the store.
pub async fn verify_store(
    store: &dyn ProposalStore,
    only: Option<ProposalId>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for p in proposals(store, only).await? {
        let events = store
            .events(p.id)
            .await
            .with_context(|| format!("reading the events of {}", p.id))?;
        report.proposals += 1;
        report.events += events.len();
        if let Err(b) = verify_record(&AuditHead::of(&p), &events, &stored_revisions(&p)) {
            report.breaks.push((p.id, b));
        }
    }
    Ok(report)
}

/// Writes the export of every proposal created at or after `since` (and of
/// `workflow`, if given); returns how many proposals it wrote.
pub async fn export(
    store: &dyn ProposalStore,
    since: Option<Timestamp>,
    workflow: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for p in proposals(store, None).await? {
        if since.is_some_and(|t| p.created_at < t)
            || workflow.is_some_and(|w| p.workflow.as_str() != w)
        {
            continue;
        }
        let events = store
            .events(p.id)
            .await
            .with_context(|| format!("reading the events of {}", p.id))?;
        for line in export_lines(&p, &events) {
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Verifies an export offline. A line that is not an export line is an
/// error naming its number.
pub fn verify_file(input: impl BufRead) -> anyhow::Result<Report> {
    let mut lines = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading the export")?;
        if line.trim().is_empty() {
            continue;
        }
        // serde's message can quote the input; name the line only.
        let parsed: ExportLine = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!(
                "line {} is not an audit export line ({:?} at column {})",
                i + 1,
                e.classify(),
                e.column()
            )
        })?;
        lines.push(parsed);
    }
    let events = lines
        .iter()
        .filter(|l| matches!(l, ExportLine::Event { .. }))
        .count();
    let results = verify_export(&lines);
    Ok(Report {
        proposals: results.len(),
        events,
        breaks: results
            .into_iter()
            .filter_map(|(id, r)| r.err().map(|b| (id, b)))
            .collect(),
    })
}
