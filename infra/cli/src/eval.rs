//! `fieldgate eval`: field-level accuracy of a structurer over a corpus of
//! notes with expected fields (see tests/corpus/README.md for the format
//! and the scoring rules), plus tokens per intake and the time spent
//! outside the model call.

use anyhow::{Context, bail};
use fieldgate::domain::{AssetContext, FieldKind, Fields, Workflow};
use fieldgate::ports::{Structurer, StructuringInput};
use fieldgate::structuring::{self, RulesStructurer};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One corpus note and what a careful person would have set.
#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub lang: String,
    pub notes: String,
    /// Picklist field → expected value ("" = should stay empty).
    pub picklists: BTreeMap<String, String>,
    /// Key terms the summary field must contain.
    pub subject: Vec<String>,
    /// Codes/readings the textarea fields must keep.
    pub codes: Vec<String>,
}

/// Loads every `*.toml` in `dir` (each a list of `[[case]]`).
pub fn load_corpus(dir: &Path, workflow: &Workflow) -> anyhow::Result<Vec<Case>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let doc: toml::Table = toml::from_str(&text).with_context(|| f.display().to_string())?;
        let Some(cases) = doc.get("case").and_then(|c| c.as_array()) else {
            continue;
        };
        for c in cases {
            let s = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let list = |k: &str| -> Vec<String> {
                c.get(k)
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let id = s("id").with_context(|| format!("{}: a case without id", f.display()))?;
            let mut picklists = BTreeMap::new();
            for spec in &workflow.fields {
                if let FieldKind::Picklist { values, .. } = &spec.kind {
                    let Some(v) = s(&spec.name) else {
                        bail!("{id}: expected {} is missing (\"\" = empty)", spec.name);
                    };
                    if !v.is_empty() && !values.contains(&v) {
                        bail!("{id}: {v:?} is not a {} value", spec.name);
                    }
                    picklists.insert(spec.name.clone(), v);
                }
            }
            out.push(Case {
                notes: s("notes").with_context(|| format!("{id}: no notes"))?,
                lang: s("lang").unwrap_or_else(|| "en".into()),
                subject: list("subject"),
                codes: list("codes"),
                picklists,
                id,
            });
        }
    }
    if out.is_empty() {
        bail!("no [[case]] entries under {}", dir.display());
    }
    Ok(out)
}

/// Is this field right for this case? `None`: the case does not score it.
pub fn score(workflow: &Workflow, case: &Case, name: &str, fields: &Fields) -> Option<bool> {
    let spec = workflow.field(name)?;
    let got = fields.get(name);
    let text = got.and_then(|f| f.text()).unwrap_or("");
    match &spec.kind {
        FieldKind::Picklist { .. } => Some(text == case.picklists.get(name)?.as_str()),
        FieldKind::Text { .. } if name == workflow.handoff.summary_field => {
            let lower = text.to_lowercase();
            Some(
                !text.is_empty()
                    && got.is_some_and(|f| f.evidence.is_some())
                    && case
                        .subject
                        .iter()
                        .all(|t| lower.contains(&t.to_lowercase())),
            )
        }
        FieldKind::Textarea { .. } => {
            Some(!text.is_empty() && case.codes.iter().all(|c| text.contains(c.as_str())))
        }
        FieldKind::Text { .. } => None,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub case: String,
    pub field: String,
    pub got: String,
    pub expected: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub structurer: String,
    pub cases: usize,
    pub languages: BTreeMap<String, usize>,
    /// Field → (right, scored).
    pub per_field: BTreeMap<String, (usize, usize)>,
    pub right: usize,
    pub scored: usize,
    pub fallbacks: usize,
    pub repaired: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Total structuring time and the part spent waiting for the model.
    pub total_ms: f64,
    pub model_ms: f64,
    pub misses: Vec<Miss>,
    /// Picklist field → outcome counts: a wrong value costs a reviewer
    /// more than an empty one, so the two misses are told apart.
    pub picklists: BTreeMap<String, Outcomes>,
    /// The model prompt (system + notes + tool schema) for the note of
    /// median length: characters, and tokens estimated as characters / 4.
    pub prompt_chars: usize,
    pub prompt_tokens_estimate: usize,
}

/// How a picklist field came out over a corpus.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Outcomes {
    pub right: usize,
    /// Left empty where a value was expected.
    pub empty: usize,
    /// A value where another one (or none) was expected.
    pub wrong: usize,
}

impl Outcomes {
    fn add(&mut self, o: Outcomes) {
        self.right += o.right;
        self.empty += o.empty;
        self.wrong += o.wrong;
    }
    fn total(&self) -> usize {
        self.right + self.empty + self.wrong
    }
}

impl Report {
    /// All picklist fields together.
    pub fn picklists_combined(&self) -> Outcomes {
        let mut all = Outcomes::default();
        for o in self.picklists.values() {
            all.add(*o);
        }
        all
    }

    pub fn accuracy(&self) -> f64 {
        if self.scored == 0 {
            0.0
        } else {
            self.right as f64 / self.scored as f64
        }
    }

    pub fn field_accuracy(&self, name: &str) -> Option<f64> {
        self.per_field
            .get(name)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| *r as f64 / *n as f64)
    }

    pub fn print(&self, verbose: bool) {
        let langs: Vec<String> = self
            .languages
            .iter()
            .map(|(l, n)| format!("{l} {n}"))
            .collect();
        println!(
            "structurer: {}   cases: {} ({})",
            self.structurer,
            self.cases,
            langs.join(", ")
        );
        println!("{:<14} {:>8} {:>8}", "field", "right", "accuracy");
        for (name, (r, n)) in &self.per_field {
            println!(
                "{name:<14} {:>8} {:>7.1}%",
                format!("{r}/{n}"),
                100.0 * *r as f64 / (*n).max(1) as f64
            );
        }
        println!(
            "{:<14} {:>8} {:>7.1}%",
            "overall",
            format!("{}/{}", self.right, self.scored),
            100.0 * self.accuracy()
        );
        if !self.picklists.is_empty() {
            println!(
                "{:<14} {:>14} {:>14} {:>14}",
                "picklist", "right", "empty", "wrong"
            );
            let pct =
                |k: usize, n: usize| format!("{k} {:.1}%", 100.0 * k as f64 / n.max(1) as f64);
            let all = self.picklists_combined();
            for (name, o) in self
                .picklists
                .iter()
                .chain([(&"combined".to_owned(), &all)])
            {
                let n = o.total();
                println!(
                    "{name:<14} {:>14} {:>14} {:>14}",
                    pct(o.right, n),
                    pct(o.empty, n),
                    pct(o.wrong, n)
                );
            }
        }
        let n = self.cases.max(1) as f64;
        println!(
            "tokens per intake: {:.0} in + {:.0} out",
            self.input_tokens as f64 / n,
            self.output_tokens as f64 / n
        );
        println!(
            "time per intake: {:.3} ms total, {:.3} ms outside the model call",
            self.total_ms / n,
            (self.total_ms - self.model_ms) / n
        );
        println!(
            "model prompt for a median note: {} chars, about {} input tokens (chars/4 estimate)",
            self.prompt_chars, self.prompt_tokens_estimate
        );
        println!(
            "fallbacks to rules: {}   repair rounds: {}",
            self.fallbacks, self.repaired
        );
        if verbose {
            for m in &self.misses {
                println!(
                    "  miss {:<6} {:<12} got {:?}, expected {}",
                    m.case, m.field, m.got, m.expected
                );
            }
        }
    }
}

/// Structures every case with `structurer` (rules as fallback, as in
/// production) and scores the validated fields.
pub async fn run(
    workflow: &Workflow,
    cases: &[Case],
    structurer: &dyn Structurer,
) -> anyhow::Result<Report> {
    let rules = RulesStructurer;
    let asset = AssetContext {
        id: "02i000000000001AAA".parse().context("asset id")?,
        name: "Corpus asset".into(),
        serial_number: None,
        account_id: None,
        account_name: None,
        location: None,
    };
    let mut r = Report {
        structurer: structurer.name().to_owned(),
        cases: cases.len(),
        languages: BTreeMap::new(),
        per_field: BTreeMap::new(),
        right: 0,
        scored: 0,
        fallbacks: 0,
        repaired: 0,
        input_tokens: 0,
        output_tokens: 0,
        total_ms: 0.0,
        model_ms: 0.0,
        misses: vec![],
        picklists: BTreeMap::new(),
        prompt_chars: 0,
        prompt_tokens_estimate: 0,
    };
    let mut by_len: Vec<&Case> = cases.iter().collect();
    by_len.sort_by_key(|c| c.notes.len());
    if let Some(median) = by_len.get(by_len.len() / 2) {
        r.prompt_chars = prompt_chars(workflow, &median.notes, &asset);
        r.prompt_tokens_estimate = structuring::model::estimate_tokens(r.prompt_chars);
    }
    for case in cases {
        *r.languages.entry(case.lang.clone()).or_default() += 1;
        let input = StructuringInput {
            notes: &case.notes,
            asset: &asset,
            photo: None,
        };
        let started = std::time::Instant::now();
        let s = structuring::structure_detailed(structurer, &rules, workflow, &input).await;
        r.total_ms += started.elapsed().as_secs_f64() * 1000.0;
        r.model_ms += s.model_micros as f64 / 1000.0;
        r.fallbacks += usize::from(s.info.fallback_reason.is_some());
        r.repaired += usize::from(s.repaired);
        r.input_tokens += s.info.input_tokens.unwrap_or(0);
        r.output_tokens += s.info.output_tokens.unwrap_or(0);
        for spec in &workflow.fields {
            let Some(ok) = score(workflow, case, &spec.name, &s.fields) else {
                continue;
            };
            if let FieldKind::Picklist { .. } = &spec.kind {
                let got = s
                    .fields
                    .get(&spec.name)
                    .and_then(|f| f.text())
                    .unwrap_or("");
                let o = r.picklists.entry(spec.name.clone()).or_default();
                if ok {
                    o.right += 1;
                } else if got.is_empty() {
                    o.empty += 1;
                } else {
                    o.wrong += 1;
                }
            }
            let e = r.per_field.entry(spec.name.clone()).or_default();
            e.1 += 1;
            r.scored += 1;
            if ok {
                e.0 += 1;
                r.right += 1;
            } else {
                let expected = match &spec.kind {
                    FieldKind::Picklist { .. } => {
                        format!(
                            "{:?}",
                            case.picklists.get(&spec.name).cloned().unwrap_or_default()
                        )
                    }
                    FieldKind::Textarea { .. } => format!("containing {:?}", case.codes),
                    FieldKind::Text { .. } => format!("with {:?}", case.subject),
                };
                r.misses.push(Miss {
                    case: case.id.clone(),
                    field: spec.name.clone(),
                    got: s
                        .fields
                        .get(&spec.name)
                        .and_then(|f| f.text())
                        .unwrap_or("")
                        .chars()
                        .take(80)
                        .collect(),
                    expected,
                });
            }
        }
    }
    Ok(r)
}

/// The workflow (a file, or the built-in one) and its structurer: the
/// `--structurer` override or the workflow's choice, configured from the
/// environment. A model that is not configured is an error here: an
/// operator asked for it.
pub async fn setup(
    workflow: Option<&Path>,
    structurer: Option<&str>,
) -> anyhow::Result<(Workflow, std::sync::Arc<dyn Structurer>)> {
    let wf = fieldgate::workflows::file_or_builtin(workflow)?;
    let kind: fieldgate::domain::StructurerKind = match structurer {
        Some(s) => serde_json::from_value(serde_json::Value::String(s.to_lowercase()))
            .map_err(|_| anyhow::anyhow!("{s:?} is not one of rules, claude, bedrock, openai"))?,
        None => wf.structurer,
    };
    if kind == fieldgate::domain::StructurerKind::Rules {
        return Ok((wf, std::sync::Arc::new(RulesStructurer)));
    }
    let mut all = fieldgate::compose::Components::from_env()?
        .structurers()
        .await?;
    let s = all.remove(&kind).with_context(|| {
        format!(
            "the {kind:?} structurer is not configured (see the README, Structuring: ANTHROPIC_API_KEY, FIELDGATE_OPENAI_URL, FIELDGATE_BEDROCK_MODEL)"
        )
    })?;
    Ok((wf, s))
}

/// What `fieldgate structure` prints.
#[derive(Debug, Serialize)]
pub struct StructureOutput {
    pub fields: Fields,
    pub structuring: fieldgate::domain::StructuringInfo,
}

pub async fn structure_one(
    workflow: &Workflow,
    structurer: &dyn Structurer,
    notes: &str,
) -> anyhow::Result<StructureOutput> {
    let asset = AssetContext {
        id: "02i000000000001AAA".parse().context("asset id")?,
        name: "Command line".into(),
        serial_number: None,
        account_id: None,
        account_name: None,
        location: None,
    };
    let input = StructuringInput {
        notes,
        asset: &asset,
        photo: None,
    };
    let s = structuring::structure_detailed(structurer, &RulesStructurer, workflow, &input).await;
    Ok(StructureOutput {
        fields: s.fields,
        structuring: s.info,
    })
}

/// Characters a model structurer sends for these notes (without photo):
/// system prompt, the delimited notes and the tool definition.
pub fn prompt_chars(workflow: &Workflow, notes: &str, asset: &AssetContext) -> usize {
    use structuring::model::{TOOL_DESCRIPTION, TOOL_NAME, system_prompt, tool_schema, user_text};
    let input = StructuringInput {
        notes,
        asset,
        photo: None,
    };
    system_prompt(workflow, false).len()
        + user_text(&input).len()
        + TOOL_NAME.len()
        + TOOL_DESCRIPTION.len()
        + tool_schema(workflow).to_string().len()
}

// ------------------------------------------------------------ cross-validation

/// One outcome of a picklist, as the eval scores it.
fn outcome(pred: Option<usize>, gold: usize, none: usize) -> Outcomes {
    let mut o = Outcomes::default();
    match pred {
        // Undecided: the field stays empty, which is right when nothing was expected.
        None if gold == none => o.right += 1,
        None => o.empty += 1,
        Some(p) if p == gold => o.right += 1,
        Some(p) if p == none => o.empty += 1,
        Some(_) => o.wrong += 1,
    }
    o
}

/// A held-out note's picklist, with what the decision needs.
struct Held {
    case: usize,
    concept: usize,
    gold: usize,
    model: Vec<f64>,
    cues: Vec<f32>,
    /// Cue scores from words the fold's model never saw.
    unseen: Vec<f32>,
    explicit: bool,
    map: Vec<usize>,
}

impl Held {
    /// The class proposed (None: undecided), as `rules::pick` decides.
    fn decide(&self, d: &structuring::rules::Decision) -> Option<usize> {
        use structuring::rules::{combined, leader};
        if self.explicit {
            // The cues alone: the best value with a lead of one plain cue.
            let mut best: Vec<(usize, f32)> = self
                .map
                .iter()
                .enumerate()
                .map(|(c, &vi)| (c, self.cues[vi]))
                .filter(|(_, s)| *s > 0.0)
                .collect();
            best.sort_by(|a, b| b.1.total_cmp(&a.1));
            let lead = best.first()?.1 - best.get(1).map_or(0.0, |b| b.1);
            return (lead >= 1.0).then_some(best[0].0);
        }
        let s = combined(&self.model, &self.cues, &self.map, d.cue_weight);
        let (top, second, lead) = leader(&s);
        if lead >= d.margin {
            return Some(top);
        }
        structuring::rules::tie_break(&self.unseen, &self.map, top, second)
    }
}

/// Cue weight, margin, and the outcomes with them.
pub type GridRow = (f64, f64, Outcomes);

/// A picklist the model knows: field, values, concept, class → value.
type ModelField<'a> = (
    &'a fieldgate::domain::FieldSpec,
    &'a Vec<String>,
    usize,
    Vec<usize>,
);

/// What `fieldgate eval --cv` reports.
pub struct CvReport {
    pub k: usize,
    pub notes: usize,
    /// Concept → outcomes at the shipped decisions.
    pub at_shipped: Vec<(String, Outcomes)>,
    /// Concept → (cue weight, margin, outcomes) over the grid.
    pub grid: Vec<(String, Vec<GridRow>)>,
}

/// The workflow's picklists the model knows: field, values, concept, and
/// the concept's class → value mapping.
fn model_fields(workflow: &Workflow) -> Vec<ModelField<'_>> {
    workflow
        .fields
        .iter()
        .filter_map(|f| match &f.kind {
            FieldKind::Picklist { values, .. } => {
                structuring::classifier::concept_for(values).map(|(ci, map)| (f, values, ci, map))
            }
            _ => None,
        })
        .collect()
}

/// Corpus cases as the model's training examples.
pub fn examples(workflow: &Workflow, cases: &[Case]) -> Vec<structuring::classifier::Example> {
    use structuring::classifier::{CONCEPTS, Example};
    let fields = model_fields(workflow);
    cases
        .iter()
        .map(|c| {
            let mut classes = vec![None; CONCEPTS.len()];
            for (f, _, ci, _) in &fields {
                if let Some(v) = c.picklists.get(&f.name) {
                    classes[*ci] = if v.is_empty() {
                        Some(CONCEPTS[*ci].none_class())
                    } else {
                        CONCEPTS[*ci].label_of(v)
                    };
                }
            }
            Example {
                id: c.id.clone(),
                notes: c.notes.clone(),
                classes,
            }
        })
        .collect()
}

/// The rules structurer with a model trained on other notes than the
/// shipped ones (`fieldgate eval --train-on`): how it does on notes of
/// another author.
pub struct TrainedRules(
    pub structuring::classifier::Classifier,
    pub Vec<structuring::rules::Decision>,
);

#[async_trait::async_trait]
impl Structurer for TrainedRules {
    fn name(&self) -> &str {
        "rules"
    }

    async fn structure(
        &self,
        workflow: &Workflow,
        input: &StructuringInput<'_>,
    ) -> Result<fieldgate::ports::Proposed, fieldgate::ports::StructureError> {
        Ok(structuring::rules::structure_with(
            workflow,
            input.notes,
            Some(&self.0),
            &self.1,
        ))
    }
}

/// k-fold cross-validation of the rules structurer's model on labelled
/// cases: fold i holds out every k-th case (from the i-th), a model is
/// trained on the rest with `params`, and each held-out picklist is decided
/// with the shipped decisions and with every (cue weight, margin) of the
/// grid. Deterministic.
pub fn cross_validate(
    workflow: &Workflow,
    cases: &[Case],
    k: usize,
    params: &structuring::classifier::Params,
    cue_grid: &[f64],
    margin_grid: &[f64],
) -> CvReport {
    use structuring::classifier::{self, CONCEPTS, Classifier, Example};
    let fields = model_fields(workflow);
    let examples = examples(workflow, cases);
    // The cues do not depend on the model: once per note.
    let cues: Vec<Vec<structuring::rules::CueScores>> = cases
        .iter()
        .map(|c| {
            fields
                .iter()
                .map(|(f, values, _, _)| structuring::rules::cue_scores(f, values, &c.notes))
                .collect()
        })
        .collect();
    let mut held: Vec<Held> = Vec::new();
    for fold in 0..k {
        let train: Vec<Example> = examples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % k != fold)
            .map(|(_, e)| e.clone())
            .collect();
        let clf = Classifier::train(&train, params.clone());
        for (i, e) in examples.iter().enumerate().filter(|(i, _)| i % k == fold) {
            let feats = classifier::features(e.notes.trim());
            for (fi, (_, _, ci, map)) in fields.iter().enumerate() {
                let Some(gold) = e.classes[*ci] else { continue };
                let c = &cues[i][fi];
                held.push(Held {
                    case: i,
                    concept: *ci,
                    gold,
                    model: clf.models[*ci].scores(&feats, &clf.params),
                    cues: c.scores.clone(),
                    unseen: c.unseen(&clf.models[*ci]),
                    explicit: c.explicit,
                    map: map.clone(),
                });
            }
        }
    }
    let name = |ci: usize| CONCEPTS[ci].name.to_owned();
    let concepts: Vec<usize> = {
        let mut v: Vec<usize> = fields.iter().map(|f| f.2).collect();
        v.dedup();
        v
    };
    let sum = |ci: usize, d: &structuring::rules::Decision| {
        let mut o = Outcomes::default();
        for h in held.iter().filter(|h| h.concept == ci) {
            o.add(outcome(h.decide(d), h.gold, h.map.len()));
        }
        o
    };
    let at_shipped = concepts
        .iter()
        .map(|&ci| (name(ci), sum(ci, &structuring::rules::DECISIONS[ci])))
        .collect();
    let grid = concepts
        .iter()
        .map(|&ci| {
            let mut rows = Vec::new();
            for &cue_weight in cue_grid {
                for &margin in margin_grid {
                    let d = structuring::rules::Decision { cue_weight, margin };
                    rows.push((cue_weight, margin, sum(ci, &d)));
                }
            }
            (name(ci), rows)
        })
        .collect();
    if let Ok(path) = std::env::var("FIELDGATE_CV_DUMP") {
        // Error analysis on the training folds: one line per held-out picklist.
        let mut out = String::new();
        for h in &held {
            let d = &structuring::rules::DECISIONS[h.concept];
            let s = structuring::rules::combined(&h.model, &h.cues, &h.map, d.cue_weight);
            let (top, second, lead) = structuring::rules::leader(&s);
            let label = |c: usize| {
                CONCEPTS[h.concept]
                    .labels
                    .get(c)
                    .map_or("-", |l| l[0])
                    .to_owned()
            };
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{:.2}\t{}\n",
                cases[h.case].id,
                name(h.concept),
                label(h.gold),
                label(top),
                label(second),
                lead,
                cases[h.case].notes.replace(['\n', '\t'], " ")
            ));
        }
        let _ = std::fs::write(path, out);
    }
    CvReport {
        k,
        notes: cases.len(),
        at_shipped,
        grid,
    }
}

impl CvReport {
    pub fn print(&self, grid: bool) {
        let pct = |k: usize, n: usize| 100.0 * k as f64 / n.max(1) as f64;
        println!("{}-fold cross-validation over {} notes", self.k, self.notes);
        println!(
            "{:<10} {:>8} {:>8} {:>8}   (at the shipped decisions)",
            "picklist", "right", "empty", "wrong"
        );
        let mut all = Outcomes::default();
        for (name, o) in &self.at_shipped {
            all.add(*o);
            let n = o.total();
            println!(
                "{name:<10} {:>7.1}% {:>7.1}% {:>7.1}%",
                pct(o.right, n),
                pct(o.empty, n),
                pct(o.wrong, n)
            );
        }
        let n = all.total();
        println!(
            "{:<10} {:>7.1}% {:>7.1}% {:>7.1}%",
            "combined",
            pct(all.right, n),
            pct(all.empty, n),
            pct(all.wrong, n)
        );
        if grid {
            for (name, rows) in &self.grid {
                println!("{name}: cue weight, margin → right / empty / wrong %");
                for (cw, m, o) in rows {
                    let n = o.total();
                    println!(
                        "  {cw:>5.2} {m:>5.2}   {:>5.1} {:>5.1} {:>5.1}",
                        pct(o.right, n),
                        pct(o.empty, n),
                        pct(o.wrong, n)
                    );
                }
            }
        }
    }
}

/// `--params`: the shipped model parameters with some replaced.
pub fn parse_params(s: Option<&str>) -> anyhow::Result<structuring::classifier::Params> {
    let mut p = structuring::classifier::Params::default();
    for part in s.unwrap_or("").split(',').filter(|x| !x.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("{part:?}: want name=value"))?;
        match k.trim() {
            "alpha" => p.alpha = v.parse()?,
            "min_df" => p.min_df = v.parse()?,
            "len_norm" => p.len_norm = v.parse()?,
            "logistic" => p.logistic = v.parse()?,
            "l2" => p.l2 = v.parse()?,
            "epochs" => p.epochs = v.parse()?,
            "step" => p.step = v.parse()?,
            "kinds" => {
                let w: Vec<f64> = v.split(':').map(str::parse).collect::<Result<_, _>>()?;
                anyhow::ensure!(
                    w.len() == p.kind_weight.len(),
                    "kinds: {} weights",
                    p.kind_weight.len()
                );
                p.kind_weight.copy_from_slice(&w);
            }
            other => bail!("{other:?}: not a model parameter (alpha, min_df, len_norm, kinds)"),
        }
    }
    Ok(p)
}

/// `--decisions`: per concept "cue_weight:margin", comma-separated.
pub fn parse_decisions(s: Option<&str>) -> anyhow::Result<Vec<structuring::rules::Decision>> {
    let Some(s) = s else {
        return Ok(structuring::rules::DECISIONS.to_vec());
    };
    s.split(',')
        .map(|d| {
            let (c, m) = d.split_once(':').context("want cue_weight:margin")?;
            Ok(structuring::rules::Decision {
                cue_weight: c.trim().parse()?,
                margin: m.trim().parse()?,
            })
        })
        .collect()
}
