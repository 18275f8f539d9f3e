//! The deterministic structurer: offline, explainable, the default in
//! `fieldgate dev` and the fallback for every model.
//!
//! - Picklists: the workflow's `vocabulary` (any language) matched word by
//!   word, accents folded, tolerant of typos (one edit in words of five
//!   letters or more, two from nine) and of endings ("install" finds
//!   "installed"); a longer phrase hides the words inside it, so "not urgent"
//!   is not "urgent". The value with the most matches wins, the earliest on
//!   a tie.
//! - Subject: the first sentence that names a part or a symptom (after "the
//!   issue is …" when the notes say so), cut to a headline.
//! - Description: the notes, with the codes, serial numbers and readings
//!   found by pattern listed after them.

use crate::domain::{FieldKind, FieldSpec, Workflow};
use crate::ports::{Proposed, StructureError, Structurer, StructuringInput};
use async_trait::async_trait;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

#[derive(Debug, Default, Clone)]
pub struct RulesStructurer;

const SUBJECT_WORDS: usize = 12;

#[async_trait]
impl Structurer for RulesStructurer {
    fn name(&self) -> &str {
        "rules"
    }

    async fn structure(
        &self,
        workflow: &Workflow,
        input: &StructuringInput<'_>,
    ) -> Result<Proposed, StructureError> {
        Ok(structure_text(workflow, input.notes))
    }
}

/// Synchronous core, for the CLI and tests.
pub fn structure_text(workflow: &Workflow, notes: &str) -> Proposed {
    let mut out = Proposed::default();
    let text = notes.trim();
    let tokens = tokenize(text);
    let summary_field = workflow.handoff.summary_field.as_str();
    for spec in &workflow.fields {
        let found = match &spec.kind {
            FieldKind::Picklist { values, .. } => pick(spec, values, text, &tokens),
            FieldKind::Text { max_length } if spec.name == summary_field => {
                subject(workflow, text, *max_length).map(|(v, q)| (Value::String(v), q))
            }
            FieldKind::Textarea { max_length } => description(text, *max_length),
            FieldKind::Text { .. } => None,
        };
        if let Some((value, quote)) = found {
            out.fields.insert(spec.name.clone(), value);
            out.evidence.insert(spec.name.clone(), Value::String(quote));
        }
    }
    out
}

// ------------------------------------------------------------ words

/// A word of the notes: folded form and where it is in the original.
#[derive(Debug, Clone)]
struct Token {
    folded: String,
    start: usize,
    end: usize,
}

/// Lowercase without accents, so "électrique" finds "electrique".
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'í' | 'ì' | 'î' | 'ï' => out.push('i'),
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => out.push('o'),
            'ú' | 'ù' | 'û' | 'ü' => out.push('u'),
            'ñ' => out.push('n'),
            'ç' => out.push('c'),
            'ß' => out.push_str("ss"),
            c => out.push(c),
        }
    }
    out
}

fn tokenize(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else if let Some(st) = start.take() {
            out.push(Token {
                folded: fold(&s[st..i]),
                start: st,
                end: i,
            });
        }
    }
    out
}

/// Does a word of the notes stand for a word of the vocabulary?
fn word_matches(vocab: &str, word: &str) -> bool {
    if vocab == word {
        return true;
    }
    let (lv, lw) = (vocab.chars().count(), word.chars().count());
    if vocab.chars().any(|c| c.is_ascii_digit()) || word.chars().any(|c| c.is_ascii_digit()) {
        return false;
    }
    // Endings: "install" → "installed", "crack" → "cracked".
    if lv >= 5 && word.starts_with(vocab) && lw <= lv + 4 {
        return true;
    }
    // Typos: "compresser", "leakin".
    let allowed = match lv.min(lw) {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    };
    allowed > 0 && strsim::osa_distance(vocab, word) <= allowed
}

/// Where `phrase` occurs in `tokens`, as token ranges.
fn find_phrase(phrase: &[String], tokens: &[Token]) -> Vec<(usize, usize)> {
    if phrase.is_empty() || phrase.len() > tokens.len() {
        return vec![];
    }
    (0..=tokens.len() - phrase.len())
        .filter(|&i| {
            phrase
                .iter()
                .zip(&tokens[i..])
                .all(|(p, t)| word_matches(p, &t.folded))
        })
        .map(|i| (i, i + phrase.len()))
        .collect()
}

// ------------------------------------------------------------ picklists

/// Picks the picklist value with the most vocabulary matches (earlier
/// first mention breaks ties); the quote is the first match as written.
fn pick(
    spec: &FieldSpec,
    values: &[String],
    text: &str,
    tokens: &[Token],
) -> Option<(Value, String)> {
    // Every match of every value's words: (value index, token range).
    let mut matches: Vec<(usize, (usize, usize))> = Vec::new();
    for (vi, value) in values.iter().enumerate() {
        let mut words: Vec<String> = spec.vocabulary.get(value).cloned().unwrap_or_default();
        // "priority high", "type: electrical" name the value directly.
        words.push(format!("{} {}", spec.label, value));
        for w in &words {
            let phrase: Vec<String> = tokenize(w).into_iter().map(|t| t.folded).collect();
            for range in find_phrase(&phrase, tokens) {
                matches.push((vi, range));
            }
        }
    }
    // Longer phrases first: "not urgent" hides the "urgent" inside it.
    matches.sort_by_key(|(vi, (s, e))| (std::cmp::Reverse(e - s), *s, *vi));
    let mut taken = vec![false; tokens.len()];
    // Per value: matches counted, and the first one (token range).
    let mut tally: Vec<(usize, Option<(usize, usize)>)> = vec![(0, None); values.len()];
    for (vi, (s, e)) in matches {
        if taken[s..e].iter().any(|t| *t) {
            continue;
        }
        taken[s..e].iter_mut().for_each(|t| *t = true);
        let entry = &mut tally[vi];
        entry.0 += 1;
        if entry.1.is_none_or(|(first, _)| s < first) {
            entry.1 = Some((s, e));
        }
    }
    let (vi, (s, e)) = tally
        .iter()
        .enumerate()
        .filter_map(|(vi, (hits, first))| first.map(|f| (vi, *hits, f)))
        .max_by_key(|(_, hits, (first, _))| (*hits, std::cmp::Reverse(*first)))
        .map(|(vi, _, range)| (vi, range))?;
    let quote = text[tokens[s].start..tokens[e - 1].end].to_owned();
    Some((Value::String(values[vi].clone()), quote))
}

// ------------------------------------------------------------ subject

/// Sentence boundaries; a dot inside a number ("11.2") is not one.
fn sentences(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        let end = match c {
            '\n' | '!' | '?' | ';' => true,
            '.' => bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()),
            _ => false,
        };
        if end {
            out.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .collect()
}

/// Words that introduce the actual problem in a rambling note.
const PROBLEM_MARKERS: [&str; 8] = [
    "the issue is",
    "issue is",
    "the problem is",
    "problem is",
    "el problema es",
    "das problem ist",
    "le problème est",
    "le probleme est",
];

/// The first sentence that names a part or symptom (any picklist word),
/// else the first sentence; cut to a headline. The quote is its source.
fn subject(workflow: &Workflow, text: &str, max_len: usize) -> Option<(String, String)> {
    let all = sentences(text);
    let first = *all.first()?;
    let vocab: Vec<Vec<String>> = workflow
        .fields
        .iter()
        .flat_map(|f| f.vocabulary.values().flatten())
        .map(|w| tokenize(w).into_iter().map(|t| t.folded).collect())
        .collect();
    let names_something = |s: &str| {
        let toks = tokenize(s);
        vocab.iter().any(|p| !find_phrase(p, &toks).is_empty())
    };
    let mut chosen = all
        .iter()
        .copied()
        .find(|s| names_something(s))
        .unwrap_or(first);
    for s in &all {
        let f = s.to_lowercase();
        if let Some(m) = PROBLEM_MARKERS
            .iter()
            .find_map(|m| f.find(m).map(|i| i + m.len()))
        {
            // Byte offsets of the lowercase form match for ASCII markers.
            if s.is_char_boundary(m) {
                chosen = s[m..].trim_start_matches([' ', ':', ',']);
            }
            break;
        }
    }
    let words: Vec<&str> = chosen.split_whitespace().collect();
    let quote = words[..words.len().min(SUBJECT_WORDS)].join(" ");
    let quote = quote.trim_end_matches([',', ':', '-']).to_owned();
    let quote = clip(&quote, max_len.min(120));
    let mut subject = quote.clone();
    if let Some(c) = subject.chars().next() {
        subject = c.to_uppercase().chain(subject.chars().skip(1)).collect();
    }
    Some((subject, quote))
}

// ------------------------------------------------------------ description

static CODES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        // Readings: 11.2 mm/s, 180 bar, 10.8V, -2C, 70 dB, 20%.
        r"(?i)(?:^|[\s(])(-?\d+(?:[.,]\d+)?\s?(?:mm/s|bar|psi|kpa|v|a|hz|kw|w|°c|°f|c|f|db|kg|l|%|cm|mm|rpm|grad)\b)",
        // Versions: v3.4.0.
        r"|\b(v\d+(?:\.\d+)+)\b",
        // Codes and serials: E42, TH-88213, 7730-AX-19, err 07, S/N 123.
        r"|\b((?:err|error|code|fault|fehler|défaut)\s?[A-Z]?\d{1,5})\b",
        r"|\b([A-Z]{1,4}-?\d{1,6}(?:-[A-Z0-9]+)*)\b",
        r"|\b(\d{3,}-[A-Z0-9]+(?:-[A-Z0-9]+)*)\b",
    ))
    .expect("valid regex")
});

/// The codes, serial numbers and readings in the notes, in order.
pub fn codes(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in CODES.captures_iter(text) {
        if let Some(m) = c.iter().skip(1).flatten().next() {
            let s = m.as_str().trim().to_owned();
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

fn description(text: &str, max_len: usize) -> Option<(Value, String)> {
    if text.is_empty() {
        return None;
    }
    let found = codes(text);
    let mut v = text.to_owned();
    if !found.is_empty() {
        v.push_str(&format!("\n\nCodes and readings: {}", found.join(", ")));
    }
    let v = if v.chars().count() <= max_len {
        v
    } else {
        clip(text, max_len)
    };
    Some((Value::String(v), clip(text, max_len)))
}

fn clip(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max_chars).collect();
    if let Some(cut) = out
        .rfind(char::is_whitespace)
        .filter(|&c| c > max_chars / 2)
    {
        out.truncate(cut);
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structuring::validate;

    fn wf() -> std::sync::Arc<Workflow> {
        crate::workflows::builtin().iter().next().unwrap().clone()
    }

    #[test]
    fn structures_a_typical_note_with_evidence() {
        let w = wf();
        let notes = "Compressor on unit 3 is leaking oil again. Breaker tripped twice this morning, needs someone ASAP.";
        let p = structure_text(&w, notes);
        let out = validate(&w, &p, notes);
        assert_eq!(
            out["Subject"].text(),
            Some("Compressor on unit 3 is leaking oil again")
        );
        assert_eq!(out["Priority"].text(), Some("High"));
        assert!(out["Description"].text().unwrap().starts_with(notes));
        for (name, f) in &out {
            if let Some(q) = &f.evidence {
                assert!(
                    notes.to_lowercase().contains(&q.to_lowercase()),
                    "{name}: {q}"
                );
            }
        }
    }

    #[test]
    fn quiet_notes_get_defaults_flagged() {
        let w = wf();
        let notes = "Checked the unit";
        let out = validate(&w, &structure_text(&w, notes), notes);
        assert_eq!(out["Priority"].text(), Some("Medium"));
        assert!(out["Priority"].flag.is_some());
        assert!(out["Type"].value.is_null());
    }

    #[test]
    fn words_match_whole_words_only() {
        let w = wf();
        // "download" contains "down" but is not a breakdown.
        let out = structure_text(&w, "Firmware download finished, display fine");
        assert_ne!(
            out.fields.get("Reason"),
            Some(&Value::String("Breakdown".into()))
        );
    }

    #[test]
    fn a_negated_phrase_hides_its_words() {
        let w = wf();
        let out = structure_text(&w, "Door hinge squeaks, not urgent");
        assert_eq!(out.fields["Priority"], "Low");
        assert_eq!(out.evidence["Priority"], "not urgent");
    }

    #[test]
    fn typos_accents_and_endings_are_tolerated() {
        assert!(word_matches("compressor", "compresser"));
        assert!(word_matches("leaking", "leakin"));
        assert!(word_matches("install", "installed"));
        assert!(!word_matches("down", "download"));
        assert!(!word_matches("fan", "fun"));
        assert_eq!(fold("Électrique Größe"), "electrique grosse");
        let w = wf();
        let out = structure_text(&w, "Le disjoncteur saute, câblage électrique à vérifier");
        assert_eq!(out.fields["Type"], "Electrical");
    }

    #[test]
    fn codes_and_readings_by_pattern() {
        let found =
            codes("Fault code E42, S/N TH-88213, vibration 11.2 mm/s, part 7730-AX-19, v3.4.0");
        for want in ["E42", "TH-88213", "11.2 mm/s", "7730-AX-19", "v3.4.0"] {
            assert!(
                found.iter().any(|c| c.contains(want)),
                "{want} in {found:?}"
            );
        }
    }

    #[test]
    fn rambling_notes_get_the_problem_as_subject() {
        let w = wf();
        let notes = "Got here at 9 and had a coffee with the manager. Anyway the issue is the boiler keeps locking out with code F28.";
        let out = structure_text(&w, notes);
        let s = out.fields["Subject"].as_str().unwrap();
        assert!(s.to_lowercase().contains("boiler"), "{s}");
    }
}
