//! The deterministic structurer: offline, explainable, the default in
//! `fieldgate dev` and the fallback for every model.
//!
//! - Picklists: the workflow's `vocabulary` plus the built-in cues of
//!   [`super::lexicon`] (English, Spanish, German, French) matched word by
//!   word, accents folded, tolerant of typos (one edit from six letters, two
//!   from nine, the first letter kept) and of endings both ways ("tripping"
//!   is "tripped"); a longer phrase hides the words inside it, so "not
//!   urgent" is not "urgent", and a cue negated in its clause ("no leak
//!   found", "has not tripped", "urgent? no") does not count (a negated
//!   urgency counts as a low priority). Each value scores the weights of its
//!   cues; the best is proposed only when it leads the next by [`MARGIN`],
//!   else the field stays empty: a wrong value costs the reviewer more.
//! - Subject: the first sentence that names a part or a symptom (after "the
//!   issue is …" when the notes say so), cut to a headline.
//! - Description: the notes, with the codes, serial numbers and readings
//!   found by pattern listed after them.

use super::classifier::{self, Classifier};
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
        // The first call of a process loads the shipped model: a copy of
        // its file, not a training (that took seconds and stalled the
        // runtime's workers), so it runs here.
        Ok(structure_text(workflow, input.notes))
    }
}

/// Synchronous core, for the CLI and tests: the shipped model
/// ([`classifier::SHIPPED`]) with the shipped decisions ([`DECISIONS`]).
pub fn structure_text(workflow: &Workflow, notes: &str) -> Proposed {
    structure_with(workflow, notes, Some(&classifier::SHIPPED), &DECISIONS)
}

/// [`structure_text`] with a given model (or none: cues alone) and
/// decisions, for cross-validation.
pub fn structure_with(
    workflow: &Workflow,
    notes: &str,
    model: Option<&Classifier>,
    decisions: &[Decision],
) -> Proposed {
    let mut out = Proposed::default();
    let text = notes.trim();
    let tokens = tokenize(text);
    let summary_field = workflow.handoff.summary_field.as_str();
    // The model's features, computed once for all the fields that use it.
    let feats = std::cell::OnceCell::new();
    for spec in &workflow.fields {
        let found = match &spec.kind {
            FieldKind::Picklist { values, .. } => {
                let model = model.map(|m| {
                    (
                        m,
                        feats.get_or_init(|| classifier::features(text)).as_slice(),
                    )
                });
                match pick(spec, values, text, &tokens, model, decisions) {
                    Pick::Value {
                        value,
                        quote,
                        remark,
                    } => {
                        if let Some(q) = quote {
                            out.evidence.insert(spec.name.clone(), Value::String(q));
                        }
                        if let Some(r) = remark {
                            out.remarks.insert(spec.name.clone(), r);
                        }
                        out.fields.insert(spec.name.clone(), Value::String(value));
                        None
                    }
                    Pick::Nothing => None,
                    Pick::Undecided(why) => {
                        out.undecided.insert(spec.name.clone(), why);
                        None
                    }
                }
            }
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
pub(super) struct Token {
    pub(super) folded: String,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Lowercase without accents, so "électrique" finds "electrique".
pub(super) fn fold(s: &str) -> String {
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

pub(super) fn tokenize(s: &str) -> Vec<Token> {
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
    // Every way below keeps the first letter: a cheap way out first.
    if vocab.as_bytes().first() != word.as_bytes().first() {
        return false;
    }
    let (lv, lw) = (vocab.chars().count(), word.chars().count());
    if vocab.chars().any(|c| c.is_ascii_digit()) || word.chars().any(|c| c.is_ascii_digit()) {
        return false;
    }
    // Endings: "install" → "installed", "crack" → "cracked".
    if lv >= 5 && word.starts_with(vocab) && lw <= lv + 4 {
        return true;
    }
    // Inflections both ways: "tripping" is "tripped", "leaks" is "leak".
    let (sv, sw) = (stems(vocab), stems(word));
    if sv.iter().any(|a| a.chars().count() >= 3 && sw.contains(a)) {
        return true;
    }
    // Typos: "compresser", "leakin". The first letter must agree and the
    // word be long enough that one edit does not make another word
    // ("power" is not "tower").
    let allowed = match lv.min(lw) {
        0..=5 => 0,
        6..=8 => 1,
        _ => 2,
    };
    allowed > 0
        && vocab.chars().next() == word.chars().next()
        && lv.abs_diff(lw) <= allowed
        && strsim::osa_distance(vocab, word) <= allowed
}

/// A word and the stems its common English endings leave (-s, -es, -ed,
/// -ing, with a doubled consonant or a dropped "e" put back).
fn stems(w: &str) -> Vec<String> {
    let mut out = vec![w.to_owned()];
    for suffix in ["s", "es", "ed", "ing"] {
        let Some(stem) = w.strip_suffix(suffix) else {
            continue;
        };
        if stem.chars().count() < 3 {
            continue;
        }
        out.push(stem.to_owned());
        if suffix.len() >= 2 {
            let b = stem.as_bytes();
            // "tripped" → "trip", "closing" → "close".
            if b.len() >= 2
                && b[b.len() - 1] == b[b.len() - 2]
                && b"bdgmnprt".contains(&b[b.len() - 1])
            {
                out.push(stem[..stem.len() - 1].to_owned());
            }
            out.push(format!("{stem}e"));
        }
    }
    out
}

/// Where `phrase` occurs in `tokens`, as token ranges.
pub(super) fn find_phrase(phrase: &[String], tokens: &[Token]) -> Vec<(usize, usize)> {
    if phrase.is_empty() || phrase.len() > tokens.len() {
        return vec![];
    }
    // Every match keeps the first letter ([`word_matches`]): a cheap test first.
    let first = phrase[0].as_bytes().first();
    let mut out = Vec::new();
    for i in 0..=tokens.len() - phrase.len() {
        if tokens[i].folded.as_bytes().first() == first
            && phrase
                .iter()
                .zip(&tokens[i..])
                .all(|(p, t)| word_matches(p, &t.folded))
        {
            out.push((i, i + phrase.len()));
        }
    }
    out
}

// ------------------------------------------------------------ negation

/// Words that negate what follows them in the same clause.
const NEGATORS: &[&str] = &[
    "no",
    "not",
    "never",
    "without",
    "nothing",
    "none",
    "nor",
    "cannot",
    "cant",
    "wont",
    "dont",
    "doesnt",
    "didnt",
    "isnt",
    "wasnt",
    "hasnt",
    "havent",
    "sin",
    "nunca",
    "ningun",
    "ninguna",
    "ni",
    "kein",
    "keine",
    "keinen",
    "keiner",
    "keinerlei",
    "nicht",
    "ohne",
    "nie",
    "pas",
    "sans",
    "aucun",
    "aucune",
    "jamais",
    "non",
];
/// "isn't" is tokenized "isn" "t": the "t" negates after one of these.
const CONTRACTED: &[&str] = &[
    "isn", "wasn", "aren", "weren", "doesn", "didn", "don", "won", "can", "couldn", "hasn",
    "haven", "hadn", "shouldn", "wouldn",
];
/// Words that turn a clause around: "urgent, but it is not".
const CONTRAST: &[&str] = &["but", "however", "pero", "aber", "mais", "sino"];

pub(super) fn is_negator(tokens: &[Token], i: usize) -> bool {
    let w = tokens[i].folded.as_str();
    NEGATORS.contains(&w)
        || (w == "t" && i > 0 && CONTRACTED.contains(&tokens[i - 1].folded.as_str()))
}

/// Does punctuation end the clause between two tokens?
pub(super) fn clause_break(text: &str, tokens: &[Token], a: usize, b: usize) -> bool {
    text[tokens[a].end..tokens[b].start]
        .chars()
        .any(|c| matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | '\n' | '(' | ')'))
}

/// Is the match at tokens `s..e` said not to hold? A negator up to three
/// words before it in the same clause ("no leak found", "has not
/// tripped"), a contrast that takes it back ("urgent but it's not"), or a
/// question answered no ("urgent? no"). A phrase that is itself negative
/// ("not urgent", "no power") is what the notes say, not negated.
pub(super) fn negated(text: &str, tokens: &[Token], (s, e): (usize, usize)) -> bool {
    if is_negator(tokens, s) || (s + 1 < e && is_negator(tokens, s + 1)) {
        return false;
    }
    for j in (s.saturating_sub(3)..s).rev() {
        if clause_break(text, tokens, j, j + 1) {
            break;
        }
        if is_negator(tokens, j) {
            return true;
        }
    }
    if e < tokens.len() {
        let next = tokens[e].folded.as_str();
        let gap = &text[tokens[e - 1].end..tokens[e].start];
        if gap.contains('?') && matches!(next, "no" | "not" | "nein" | "non") {
            return true;
        }
        if CONTRAST.contains(&next) {
            let end = (e + 5).min(tokens.len());
            if (e + 1..end).any(|j| is_negator(tokens, j)) {
                return true;
            }
        }
    }
    false
}

// ------------------------------------------------------------ picklists

/// The built-in phrases, tokenized once.
pub(super) static LEXICON: LazyLock<Vec<Vec<Vec<String>>>> = LazyLock::new(|| {
    super::lexicon::GROUPS
        .iter()
        .map(|g| {
            g.phrases
                .iter()
                .map(|p| tokenize(p).into_iter().map(|t| t.folded).collect())
                .collect()
        })
        .collect()
});

/// A phrase pointing at a picklist value, and how much it counts.
struct Cue {
    value: usize,
    words: Vec<String>,
    weight: f32,
    /// The field named with the value ("priority high").
    explicit: bool,
    /// From the workflow's own vocabulary (not the built-in cues).
    own: bool,
}

/// The workflow's vocabulary (weight 1), the field named with its value
/// ("priority high", weight 4) and the built-in cues for fields whose
/// values they name ([`super::lexicon`]). A phrase the workflow gives
/// one value is never also counted for another by the built-in cues.
fn cues(spec: &FieldSpec, values: &[String]) -> Vec<Cue> {
    let folded = |w: &str| -> Vec<String> { tokenize(w).into_iter().map(|t| t.folded).collect() };
    let mut out: Vec<Cue> = Vec::new();
    for (vi, value) in values.iter().enumerate() {
        for w in spec.vocabulary.get(value).into_iter().flatten() {
            out.push(Cue {
                value: vi,
                words: folded(w),
                weight: 1.0,
                explicit: false,
                own: true,
            });
        }
        for w in [
            format!("{} {}", spec.label, value),
            format!("{} {}", value, spec.label),
        ] {
            out.push(Cue {
                value: vi,
                words: folded(&w),
                weight: 4.0,
                explicit: true,
                own: false,
            });
        }
    }
    let lower: Vec<String> = values.iter().map(|v| fold(v)).collect();
    let mut seen: std::collections::HashSet<Vec<String>> =
        out.iter().map(|c| c.words.clone()).collect();
    for (g, phrases) in super::lexicon::GROUPS.iter().zip(LEXICON.iter()) {
        let Some(vi) = g
            .values
            .iter()
            .find_map(|a| lower.iter().position(|v| v == a))
        else {
            continue;
        };
        for words in phrases {
            if words.is_empty() || !seen.insert(words.clone()) {
                continue;
            }
            out.push(Cue {
                value: vi,
                words: words.clone(),
                weight: g.weight,
                explicit: false,
                own: false,
            });
        }
    }
    out
}

/// Value → the value its negated cues point at (from the built-in groups
/// that say so: a negated "urgent" is a low priority).
fn flips(values: &[String]) -> std::collections::HashMap<usize, usize> {
    let lower: Vec<String> = values.iter().map(|v| fold(v)).collect();
    let find = |aliases: &[&str]| {
        aliases
            .iter()
            .find_map(|a| lower.iter().position(|v| v == a))
    };
    super::lexicon::GROUPS
        .iter()
        .filter_map(|g| Some((find(g.values)?, find(g.negated?)?)))
        .collect()
}

/// How far the best value must lead the next to be proposed when the
/// cues decide alone: one plain cue. Measured on the tuning corpus and the
/// first held-out set, 1.5 left a third of the fields empty; less than 1
/// lets ties through.
const MARGIN: f32 = 1.0;

/// How the model's scores and the cues are combined for one concept
/// ([`classifier::CONCEPTS`], same order), and how far the best class must
/// lead the next for a value (or "no value") to be proposed; below that the
/// field is left undecided for the reviewer. Chosen by k-fold
/// cross-validation on the shipped corpora (`fieldgate eval --cv`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// What one point of cue score (a workflow word counts 1) adds to the
    /// model's log score.
    pub cue_weight: f64,
    /// The lead (log score) the best class needs.
    pub margin: f64,
}

pub const DECISIONS: [Decision; 3] = [
    // priority: 34.4 % right, 4.8 % wrong in 10-fold cross-validation
    Decision {
        cue_weight: 0.5,
        margin: 2.25,
    },
    // type: 53.3 % right, 4.7 % wrong
    Decision {
        cue_weight: 1.0,
        margin: 2.5,
    },
    // reason: 66.8 % right, 5.0 % wrong
    Decision {
        cue_weight: 2.0,
        margin: 2.25,
    },
];

/// A word the model quotes as evidence must favour the value at least this
/// much (log ratio against the runner-up).
const MIN_SUPPORT: f64 = 0.7;

/// What a picklist gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    /// A value, with the words of the notes that support it (none: the
    /// model chose it from the note as a whole; the reviewer is asked).
    Value {
        value: String,
        quote: Option<String>,
        /// Why the reviewer should look at it anyway.
        remark: Option<String>,
    },
    /// Nothing to propose: no cue, or the model is sure no value applies.
    Nothing,
    /// Signals that do not settle it: left empty for the reviewer, why.
    Undecided(String),
}

/// Per value: the score of its cues found in the notes (longer phrases
/// first, each word counted once, negated cues not at all or for the other
/// end of the scale) and its first match; and whether the notes named the
/// field with a value ("Priority high").
fn tally(spec: &FieldSpec, values: &[String], text: &str, tokens: &[Token]) -> Tally {
    // Every match of every cue: (cue, token range).
    let all = cues(spec, values);
    let flips = flips(values);
    let mut matches: Vec<(usize, (usize, usize))> = Vec::new();
    for (ci, cue) in all.iter().enumerate() {
        for range in find_phrase(&cue.words, tokens) {
            matches.push((ci, range));
        }
    }
    // Longer phrases first: "not urgent" hides the "urgent" inside it.
    matches.sort_by(|(ca, (sa, ea)), (cb, (sb, eb))| {
        (eb - sb)
            .cmp(&(ea - sa))
            .then(all[*cb].weight.total_cmp(&all[*ca].weight))
            .then(sa.cmp(sb))
            .then(all[*ca].value.cmp(&all[*cb].value))
    });
    let mut taken = vec![false; tokens.len()];
    let mut explicit = false;
    let mut tally: Vec<(f32, Option<(usize, usize)>)> = vec![(0.0, None); values.len()];
    let mut counted = Vec::new();
    for (ci, (s, e)) in matches {
        if taken[s..e].iter().any(|t| *t) {
            continue;
        }
        taken[s..e].iter_mut().for_each(|t| *t = true);
        let mut value = all[ci].value;
        let mut weight = all[ci].weight;
        if negated(text, tokens, (s, e)) {
            // "kein Notfall", "not a safety issue": the other end of the scale.
            match flips.get(&value) {
                Some(&to) => {
                    value = to;
                    weight = 1.0;
                }
                _ => continue,
            }
        } else if all[ci].explicit {
            explicit = true;
        }
        let entry = &mut tally[value];
        entry.0 += weight;
        if entry.1.is_none_or(|(first, _)| s < first) {
            entry.1 = Some((s, e));
        }
        if all[ci].own {
            counted.push((value, weight, all[ci].words.clone()));
        }
    }
    (tally, explicit, counted)
}

/// Per value its cue score and first match; whether the field was named
/// with a value; the counted matches of the workflow's own vocabulary
/// (value, weight, the vocabulary phrase's words).
type Tally = (
    Vec<(f32, Option<(usize, usize)>)>,
    bool,
    Vec<(usize, f32, Vec<String>)>,
);

/// Cue scores per value from the workflow's own vocabulary phrases none of
/// whose words the model knows: words an admin added that the training
/// notes never used, so the model could not weigh them.
fn unseen_scores(
    own: &[(usize, f32, Vec<String>)],
    values: usize,
    model: &classifier::Model,
) -> Vec<f32> {
    let mut out = vec![0.0; values];
    for (v, w, words) in own {
        if words.iter().all(|x| !model.knows_word(x)) {
            out[*v] += w;
        }
    }
    out
}

/// The cue score of each of a picklist's values in these notes, and
/// whether the notes named the field with a value ("Priority high").
pub fn cue_scores(spec: &FieldSpec, values: &[String], text: &str) -> CueScores {
    let text = text.trim();
    let tokens = tokenize(text);
    let (t, explicit, own) = tally(spec, values, text, &tokens);
    CueScores {
        scores: t.into_iter().map(|(s, _)| s).collect(),
        explicit,
        own,
    }
}

/// What the cues say about a picklist in some notes ([`cue_scores`]).
#[derive(Debug, Clone)]
pub struct CueScores {
    /// Per value.
    pub scores: Vec<f32>,
    /// The notes named the field with a value ("Priority high").
    pub explicit: bool,
    /// The counted matches of the workflow's own vocabulary: value,
    /// weight, the phrase's words.
    pub own: Vec<(usize, f32, Vec<String>)>,
}

impl CueScores {
    /// [`unseen_scores`], for cross-validation.
    pub fn unseen(&self, model: &classifier::Model) -> Vec<f32> {
        unseen_scores(&self.own, self.scores.len(), model)
    }
}

/// The model's log score per class plus `cue_weight` times the cue score
/// of the value each class stands for (`map`: class → value; the classes
/// after it, "no value", get no cues).
pub fn combined(model: &[f64], cues: &[f32], map: &[usize], cue_weight: f64) -> Vec<f64> {
    model
        .iter()
        .enumerate()
        .map(|(c, m)| {
            m + map
                .get(c)
                .map_or(0.0, |&vi| cue_weight * f64::from(cues[vi]))
        })
        .collect()
}

/// When the model hesitates between `top` and `second`: the class these
/// cue scores choose (a lead of [`MARGIN`]), if it is one of the two.
pub fn tie_break(cues: &[f32], map: &[usize], top: usize, second: usize) -> Option<usize> {
    let mut ranked: Vec<(usize, f32)> = cues.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let (vi, best) = *ranked.first()?;
    let runner_up = ranked.get(1).map_or(0.0, |r| r.1);
    if best < MARGIN || best - runner_up < MARGIN {
        return None;
    }
    let class = map.iter().position(|&v| v == vi)?;
    (class == top || class == second).then_some(class)
}

/// The best class, the runner-up and the best one's lead (ties: the first).
pub fn leader(s: &[f64]) -> (usize, usize, f64) {
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|a, b| s[*b].total_cmp(&s[*a]).then(a.cmp(b)));
    (order[0], order[1], s[order[0]] - s[order[1]])
}

/// The value for a picklist. Where the model knows the field's values
/// ([`classifier::concept_for`]) and the notes do not name the value
/// outright, the model's log score per class plus the cues' score
/// (weighted) decides, and only with a lead of the concept's margin;
/// otherwise the cues alone, with [`MARGIN`]. Two classes about equally
/// supported leave the field undecided: a wrong value costs the reviewer
/// more than an empty one. The quote is the value's first cue, else the
/// word the model found most telling for it.
fn pick(
    spec: &FieldSpec,
    values: &[String],
    text: &str,
    tokens: &[Token],
    model: Option<(&Classifier, &[classifier::Feature])>,
    decisions: &[Decision],
) -> Pick {
    let (tally, explicit, counted) = tally(spec, values, text, tokens);
    let quote_of = |(s, e): (usize, usize)| text[tokens[s].start..tokens[e - 1].end].to_owned();
    let concept = classifier::concept_for(values);
    if let (Some((clf, feats)), Some((ci, map)), false) = (model, concept, explicit)
        && let Some(d) = decisions.get(ci)
    {
        let m = &clf.models[ci];
        let cue: Vec<f32> = tally.iter().map(|t| t.0).collect();
        let s = combined(&m.scores(feats, &clf.params), &cue, &map, d.cue_weight);
        let (top, second, lead) = leader(&s);
        let name = |c: usize| {
            map.get(c)
                .map_or_else(|| "none".to_owned(), |&vi| values[vi].clone())
        };
        let mut top = top;
        if lead < d.margin {
            // The model is not sure; cue words it never saw (ones the
            // workflow's admins added) may settle it.
            let unseen = unseen_scores(&counted, values.len(), m);
            match tie_break(&unseen, &map, top, second) {
                Some(c) => top = c,
                None => {
                    return Pick::Undecided(format!(
                        "the notes do not settle it ({} or {}?)",
                        name(top),
                        name(second)
                    ));
                }
            }
        }
        let Some(&vi) = map.get(top) else {
            return Pick::Nothing;
        };
        if let Some(cue) = tally[vi].1 {
            return Pick::Value {
                value: values[vi].clone(),
                quote: Some(quote_of(cue)),
                remark: None,
            };
        }
        // No cue word says it: the word that weighed most for it, and the
        // reviewer is told the value comes from similar reports.
        let quote = m
            .support(feats, &clf.params, top, second)
            .first()
            .filter(|(_, w)| *w >= MIN_SUPPORT)
            .map(|(r, _)| quote_of(*r));
        let remark = quote.as_ref().map(|q| {
            format!(
                "proposed from similar reports, no cue word says it ({q:?} weighed most); check it"
            )
        });
        return Pick::Value {
            value: values[vi].clone(),
            quote,
            remark,
        };
    }
    let mut ranked: Vec<(usize, f32, (usize, usize))> = tally
        .iter()
        .enumerate()
        .filter_map(|(vi, (score, first))| first.map(|f| (vi, *score, f)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.0.cmp(&b.2.0)));
    let Some(&(vi, best, (s, e))) = ranked.first() else {
        return Pick::Nothing;
    };
    if let Some(&(other, runner_up, _)) = ranked.get(1)
        && best - runner_up < MARGIN
    {
        return Pick::Undecided(format!(
            "the notes point at {} and at {} about equally",
            values[vi], values[other]
        ));
    }
    if best < MARGIN {
        return Pick::Nothing;
    }
    Pick::Value {
        value: values[vi].clone(),
        quote: Some(quote_of((s, e))),
        remark: None,
    }
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
        // The cues alone find nothing: the default, flagged.
        let out = validate(&w, &structure_with(&w, notes, None, &DECISIONS), notes);
        assert_eq!(out["Priority"].text(), Some("Medium"));
        assert!(out["Priority"].flag.is_some());
        assert!(out["Type"].value.is_null());
        // The model hesitates (a routine check is Low, a vague one Medium):
        // not the default, the reviewer chooses.
        let out = validate(&w, &structure_text(&w, notes), notes);
        assert!(out["Priority"].value.is_null(), "{:?}", out["Priority"]);
        assert!(
            out["Priority"]
                .flag
                .as_deref()
                .is_some_and(|f| f.contains("please choose")),
            "{:?}",
            out["Priority"]
        );
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
    fn a_negated_cue_does_not_count() {
        let w = wf();
        // "no leak", "has not tripped": nothing says the value.
        let out = structure_text(
            &w,
            "Checked the valve, no leak found. Breaker has not tripped.",
        );
        assert_ne!(
            out.fields.get("Reason"),
            Some(&Value::String("Breakdown".into()))
        );
        // A negated urgency is a low priority for the cues, in any of the
        // languages; with the model, never a high one.
        for notes in [
            "Tür schließt nicht, kein Notfall.",
            "urgent? no, can be done any time",
        ] {
            let out = structure_with(&w, notes, None, &DECISIONS);
            assert_eq!(
                out.fields.get("Priority"),
                Some(&Value::String("Low".into())),
                "{notes}"
            );
            let out = structure_text(&w, notes);
            assert_ne!(
                out.fields.get("Priority"),
                Some(&Value::String("High".into())),
                "{notes}"
            );
        }
        let out = structure_text(&w, "They said it was urgent but it is not");
        assert_ne!(
            out.fields.get("Priority"),
            Some(&Value::String("High".into()))
        );
    }

    #[test]
    fn two_values_about_equally_supported_leave_the_field_empty() {
        let w = wf();
        // One electrical cue, one mechanical: no guess.
        let out = structure_text(&w, "Fuse and pump checked");
        assert!(
            out.fields.get("Type").is_none(),
            "{:?}",
            out.fields.get("Type")
        );
        // One more for a side, and it is proposed.
        let out = structure_text(&w, "Fuse blown, breaker tripped, pump checked");
        assert_eq!(out.fields["Type"], "Electrical");
    }

    #[test]
    fn a_workflow_without_vocabulary_still_gets_the_built_in_cues() {
        // Another workflow's priorities, with no word list of its own.
        let mut w = (*wf()).clone();
        let p = w.fields.iter_mut().find(|f| f.name == "Priority").unwrap();
        p.vocabulary.clear();
        if let FieldKind::Picklist { values, .. } = &mut p.kind {
            *values = ["Low", "Medium", "High", "Critical"]
                .map(String::from)
                .to_vec();
        }
        let out = structure_text(&w, "Gas leak in the plant room, area evacuated");
        assert_eq!(out.fields["Priority"], "Critical");
        let out = structure_text(&w, "Conveyor stopped, need someone asap");
        assert_eq!(out.fields["Priority"], "High");
        let out = structure_text(&w, "Squeaky hinge, no rush");
        assert_eq!(out.fields["Priority"], "Low");
    }

    #[test]
    fn endings_match_both_ways() {
        assert!(word_matches("tripped", "tripping"));
        assert!(word_matches("leak", "leaks"));
        assert!(word_matches("close", "closing"));
        // One edit does not turn one common word into another.
        assert!(!word_matches("power", "tower"));
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
