//! A small model for the picklists most workflows share (priority, kind of
//! fault, reason): a multinomial logistic regression (naive Bayes as an
//! option of `--cv`) over the words of the notes, their first letters
//! (endings and languages), the letter groups inside them (typos) and word
//! pairs (word order), with the words a negation governs marked as negated
//! ("no leak" is not "leak").
//!
//! Trained deterministically from the labelled notes that ship in the repo
//! (`tests/corpus-train`, `tests/corpus-train-2` and `tests/corpus-train-3`,
//! three authors, and the tuning corpus `tests/corpus`): a fixed-order pass
//! over them, no randomness. The result ships as a file of weights
//! ([`SHIPPED`]), checked against a fresh training by a test.
//! The rules structurer combines its scores with the workflow's own
//! vocabulary and the built-in cues ([`super::rules`]) and proposes a value
//! only when the combined score leads the next by a margin chosen by
//! cross-validation (`fieldgate eval --cv`); otherwise the field is left for
//! the reviewer.
//!
//! A concept applies to a field only when the field's picklist values are
//! exactly the concept's labels (aliases allowed, case and accents folded):
//! a workflow with other values (a four-level priority, work types) gets
//! the rules alone.

use super::rules::{
    LEXICON, Token, clause_break, find_phrase, fold, is_negator, negated, tokenize,
};
use std::collections::HashMap;
use std::sync::LazyLock;

/// A picklist the model was trained for.
#[derive(Debug)]
pub struct Concept {
    pub name: &'static str,
    /// The key of its expected value in a corpus case (the shipped
    /// workflow's field name).
    pub corpus_key: &'static str,
    /// Its values, each with the aliases a workflow may use for it (first:
    /// the shipped workflow's spelling). The model adds one class, "no
    /// value", after these.
    pub labels: &'static [&'static [&'static str]],
}

pub const CONCEPTS: &[Concept] = &[
    Concept {
        name: "priority",
        corpus_key: "Priority",
        labels: &[
            &["High", "Urgent"],
            &["Medium", "Normal", "Moderate"],
            &["Low", "Minor"],
        ],
    },
    Concept {
        name: "type",
        corpus_key: "Type",
        labels: &[
            &["Mechanical"],
            &["Electrical"],
            &["Electronic", "Electronics"],
            &["Structural"],
            &["Other"],
        ],
    },
    Concept {
        name: "reason",
        corpus_key: "Reason",
        labels: &[
            &["Installation"],
            &["Equipment Complexity"],
            &["Performance"],
            &["Breakdown"],
            &["Equipment Design"],
            &["Feedback"],
            &["Other"],
        ],
    },
];

impl Concept {
    /// Number of classes: the labels and "no value".
    pub fn classes(&self) -> usize {
        self.labels.len() + 1
    }

    pub fn none_class(&self) -> usize {
        self.labels.len()
    }

    /// The label a picklist value stands for.
    pub fn label_of(&self, value: &str) -> Option<usize> {
        let v = fold(value.trim());
        self.labels
            .iter()
            .position(|aliases| aliases.iter().any(|a| fold(a) == v))
    }

    /// Field value index for each label, when the field's values are
    /// exactly this concept's labels (one value per label).
    pub fn mapping(&self, values: &[String]) -> Option<Vec<usize>> {
        if values.len() != self.labels.len() {
            return None;
        }
        let mut out = vec![usize::MAX; self.labels.len()];
        for (vi, v) in values.iter().enumerate() {
            let l = self.label_of(v)?;
            if out[l] != usize::MAX {
                return None;
            }
            out[l] = vi;
        }
        Some(out)
    }
}

/// The concept whose labels are exactly these picklist values.
pub fn concept_for(values: &[String]) -> Option<(usize, Vec<usize>)> {
    CONCEPTS
        .iter()
        .enumerate()
        .find_map(|(ci, c)| c.mapping(values).map(|m| (ci, m)))
}

// ------------------------------------------------------------ examples

/// A labelled note: per concept, the class (the "no value" class for
/// `""`), or `None` when the case does not say.
#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    pub notes: String,
    pub classes: Vec<Option<usize>>,
}

/// The `[[case]]` entries of a corpus file (tests/corpus/README.md).
pub fn examples_from_toml(text: &str) -> Result<Vec<Example>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let Some(cases) = doc.get("case").and_then(|c| c.as_array()) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for c in cases {
        let s = |k: &str| c.get(k).and_then(|v| v.as_str());
        let Some(notes) = s("notes") else { continue };
        let classes = CONCEPTS
            .iter()
            .map(|k| match s(k.corpus_key) {
                Some("") => Some(k.none_class()),
                Some(v) => k.label_of(v),
                None => None,
            })
            .collect();
        out.push(Example {
            id: s("id").unwrap_or("").to_owned(),
            notes: notes.to_owned(),
            classes,
        });
    }
    Ok(out)
}

/// The labelled notes the shipped model learns from.
pub const TRAINING: &[(&str, &str)] = &[
    (
        "tests/corpus-train/notes.toml",
        include_str!("../../../tests/corpus-train/notes.toml"),
    ),
    (
        "tests/corpus-train-2/notes.toml",
        include_str!("../../../tests/corpus-train-2/notes.toml"),
    ),
    (
        "tests/corpus-train-3/notes.toml",
        include_str!("../../../tests/corpus-train-3/notes.toml"),
    ),
    (
        "tests/corpus/notes.toml",
        include_str!("../../../tests/corpus/notes.toml"),
    ),
];

pub fn shipped_examples() -> Vec<Example> {
    TRAINING
        .iter()
        .flat_map(|(name, text)| examples_from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

// ------------------------------------------------------------ features

/// Kinds of feature, each its own multinomial with its own weight.
pub const KINDS: usize = 5;
const WORD: u8 = 0;
const PREFIX: u8 = 1;
const GRAM: u8 = 2;
const PAIR: u8 = 3;
/// A built-in cue group ([`super::lexicon::GROUPS`]) matched, or matched
/// negated: what generalises past the words the training notes use.
const GROUP: u8 = 4;

/// One feature of a note: its hash, kind, and the words it came from (for
/// the evidence quote).
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub hash: u64,
    pub kind: u8,
    pub from: usize,
    pub to: usize,
}

/// FNV-1a: stable across builds and platforms, so training is too.
fn hash(kind: u8, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(kind);
    for p in parts {
        for b in p.bytes() {
            eat(b);
        }
        eat(0xff);
    }
    h
}

/// Is token `i` governed by a negation: a negator up to three words before
/// it in the same clause ("no leak found", "has not tripped")?
fn negated_at(text: &str, tokens: &[Token], i: usize) -> bool {
    if is_negator(tokens, i) {
        return false;
    }
    for j in (i.saturating_sub(3)..i).rev() {
        if clause_break(text, tokens, j, j + 1) {
            return false;
        }
        if is_negator(tokens, j) {
            return true;
        }
    }
    false
}

/// The features of a note, each once (presence, not count).
pub fn features(text: &str) -> Vec<Feature> {
    let tokens = tokenize(text);
    let words: Vec<String> = tokens
        .iter()
        .map(|t| {
            t.folded
                .chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .collect()
        })
        .collect();
    let mut out: Vec<Feature> = Vec::with_capacity(tokens.len() * 12);
    let mut seen = std::collections::HashSet::new();
    let mut push = |out: &mut Vec<Feature>, kind: u8, parts: &[&str], from: usize, to: usize| {
        let h = hash(kind, parts);
        if seen.insert(h) {
            out.push(Feature {
                hash: h,
                kind,
                from,
                to,
            });
        }
    };
    for (i, w) in words.iter().enumerate() {
        if w.chars().count() < 2 && !is_negator(&tokens, i) {
            continue;
        }
        let neg = if negated_at(text, &tokens, i) {
            "!"
        } else {
            ""
        };
        push(&mut out, WORD, &[neg, w], i, i + 1);
        let chars: Vec<char> = w.chars().collect();
        if chars.len() >= 6 {
            let p: String = chars[..5].iter().collect();
            push(&mut out, PREFIX, &[neg, &p], i, i + 1);
        }
        if chars.len() >= 4 {
            let padded: Vec<char> = std::iter::once('<')
                .chain(chars.iter().copied())
                .chain(std::iter::once('>'))
                .collect();
            for g in padded.windows(4) {
                let g: String = g.iter().collect();
                push(&mut out, GRAM, &[neg, &g], i, i + 1);
            }
        }
        if i > 0 && !clause_break(text, &tokens, i - 1, i) {
            push(&mut out, PAIR, &[&words[i - 1], w], i - 1, i + 1);
        }
    }
    for (gi, phrases) in LEXICON.iter().enumerate() {
        let g = gi.to_string();
        for phrase in phrases {
            for range in find_phrase(phrase, &tokens) {
                let neg = if negated(text, &tokens, range) {
                    "!"
                } else {
                    ""
                };
                push(&mut out, GROUP, &[neg, &g], range.0, range.1);
            }
        }
    }
    out
}

// ------------------------------------------------------------ model

/// How the model is trained and read; chosen by cross-validation.
#[derive(Debug, Clone)]
pub struct Params {
    /// Additive smoothing.
    pub alpha: f64,
    /// Weight of each kind of feature (word, first letters, letter groups,
    /// word pairs).
    pub kind_weight: [f64; KINDS],
    /// A feature seen in fewer training notes is ignored.
    pub min_df: u32,
    /// Scores are divided by (number of known features)^len_norm, so a long
    /// note is not more certain only for being long.
    pub len_norm: f64,
    /// Logistic regression (true) or naive Bayes.
    pub logistic: bool,
    /// Logistic regression: L2 penalty, passes over the notes, step.
    pub l2: f64,
    pub epochs: usize,
    pub step: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            alpha: 0.5,
            kind_weight: [1.0, 0.5, 0.25, 0.5, 1.0],
            min_df: 2,
            len_norm: 0.5,
            logistic: true,
            l2: 1e-4,
            epochs: 10,
            step: 0.5,
        }
    }
}

/// The model of one concept: per known feature its kind and one weight per
/// class (logistic regression: the weights; naive Bayes: log P(feature |
/// class)), and a bias (log prior) per class. Features sorted by hash, rows
/// in one flat array: what the shipped model's file holds, so loading it
/// is a copy, not a parse into maps.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    classes: usize,
    log_prior: Vec<f64>,
    keys: Vec<u64>,
    kinds: Vec<u8>,
    /// `classes` weights per key, in key order.
    weights: Vec<f32>,
}

impl Model {
    /// A model from its rows (any order).
    fn from_rows(classes: usize, log_prior: Vec<f64>, mut rows: Vec<(u64, u8, Vec<f32>)>) -> Model {
        rows.sort_unstable_by_key(|r| r.0);
        let mut m = Model {
            classes,
            log_prior,
            keys: Vec::with_capacity(rows.len()),
            kinds: Vec::with_capacity(rows.len()),
            weights: Vec::with_capacity(rows.len() * classes),
        };
        for (h, kind, row) in rows {
            debug_assert_eq!(row.len(), classes);
            m.keys.push(h);
            m.kinds.push(kind);
            m.weights.extend(row);
        }
        m
    }

    /// A known feature's kind and weights.
    fn row(&self, hash: u64) -> Option<(u8, &[f32])> {
        let i = self.keys.binary_search(&hash).ok()?;
        Some((
            self.kinds[i],
            &self.weights[i * self.classes..(i + 1) * self.classes],
        ))
    }

    /// Number of known features.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn train(examples: &[(&[Feature], usize)], classes: usize, p: &Params) -> Model {
        if p.logistic {
            Model::train_logistic(examples, classes, p)
        } else {
            Model::train_bayes(examples, classes, p)
        }
    }

    /// Multinomial logistic regression: AdaGrad over the notes in a fixed
    /// order (a seeded shuffle), L2 penalty on the rows each note touches.
    /// The input of a note is the same as [`Model::scores`] reads: each
    /// known feature weighted by its kind, the sum divided by
    /// (count)^len_norm.
    fn train_logistic(examples: &[(&[Feature], usize)], classes: usize, p: &Params) -> Model {
        let mut df: HashMap<u64, (u8, u32)> = HashMap::new();
        for (feats, _) in examples {
            for f in *feats {
                df.entry(f.hash).or_insert((f.kind, 0)).1 += 1;
            }
        }
        df.retain(|_, (_, n)| *n >= p.min_df);
        // Rows in a fixed order (by hash), so training is deterministic.
        let mut keys: Vec<u64> = df.keys().copied().collect();
        keys.sort_unstable();
        let index: HashMap<u64, usize> = keys.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let docs: Vec<(Vec<(usize, f64)>, usize)> = examples
            .iter()
            .map(|(feats, class)| {
                let known: Vec<(usize, u8)> = feats
                    .iter()
                    .filter_map(|f| index.get(&f.hash).map(|i| (*i, f.kind)))
                    .collect();
                let norm = (known.len().max(1) as f64).powf(p.len_norm);
                let x = known
                    .into_iter()
                    .map(|(i, k)| (i, p.kind_weight[k as usize] / norm))
                    .collect();
                (x, *class)
            })
            .collect();
        let mut w = vec![0f64; keys.len() * classes];
        let mut g2 = vec![1e-8f64; keys.len() * classes];
        let mut b = vec![0f64; classes];
        let mut bg2 = vec![1e-8f64; classes];
        let mut order: Vec<usize> = (0..docs.len()).collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut z = vec![0f64; classes];
        for _ in 0..p.epochs {
            // Fisher–Yates with a fixed linear congruential generator.
            for i in (1..order.len()).rev() {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                order.swap(i, (seed >> 33) as usize % (i + 1));
            }
            for &d in &order {
                let (x, y) = &docs[d];
                z.copy_from_slice(&b);
                for (i, v) in x {
                    let row = &w[i * classes..(i + 1) * classes];
                    for (zc, wc) in z.iter_mut().zip(row) {
                        *zc += v * wc;
                    }
                }
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for zc in z.iter_mut() {
                    *zc = (*zc - max).exp();
                    sum += *zc;
                }
                for (c, zc) in z.iter_mut().enumerate() {
                    *zc = *zc / sum - if c == *y { 1.0 } else { 0.0 };
                }
                for (i, v) in x {
                    let rows = i * classes..(i + 1) * classes;
                    for ((wk, gk), zc) in w[rows.clone()].iter_mut().zip(&mut g2[rows]).zip(&z) {
                        let g = zc * v + p.l2 * *wk;
                        *gk += g * g;
                        *wk -= p.step * g / gk.sqrt();
                    }
                }
                for c in 0..classes {
                    let g = z[c];
                    bg2[c] += g * g;
                    b[c] -= p.step * g / bg2[c].sqrt();
                }
            }
        }
        let rows = keys
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let row = w[i * classes..(i + 1) * classes]
                    .iter()
                    .map(|x| *x as f32)
                    .collect();
                (*h, df[h].0, row)
            })
            .collect();
        Model::from_rows(classes, b, rows).rounded()
    }

    fn train_bayes(examples: &[(&[Feature], usize)], classes: usize, p: &Params) -> Model {
        let mut docs = vec![0u32; classes];
        let mut df: HashMap<u64, (u8, Vec<u32>)> = HashMap::new();
        for (feats, class) in examples {
            docs[*class] += 1;
            for f in *feats {
                let e = df
                    .entry(f.hash)
                    .or_insert_with(|| (f.kind, vec![0; classes]));
                e.1[*class] += 1;
            }
        }
        df.retain(|_, (_, n)| n.iter().sum::<u32>() >= p.min_df);
        let mut totals = [[0f64; 16]; KINDS];
        let mut vocab = [0f64; KINDS];
        for (kind, n) in df.values() {
            vocab[*kind as usize] += 1.0;
            for (c, k) in n.iter().enumerate() {
                totals[*kind as usize][c] += f64::from(*k);
            }
        }
        let n_docs: f64 = docs.iter().map(|d| f64::from(*d)).sum();
        // A class with no note still gets a tiny prior, so it never wins.
        let log_prior = docs
            .iter()
            .map(|d| ((f64::from(*d) + 0.1) / (n_docs + 0.1 * classes as f64)).ln())
            .collect();
        let rows = df
            .into_iter()
            .map(|(h, (kind, n))| {
                let k = kind as usize;
                let l = n
                    .iter()
                    .enumerate()
                    .map(|(c, x)| {
                        ((f64::from(*x) + p.alpha) / (totals[k][c] + p.alpha * vocab[k])).ln()
                            as f32
                    })
                    .collect();
                (h, kind, l)
            })
            .collect();
        Model::from_rows(classes, log_prior, rows)
    }

    /// Log scores per class (up to a constant): prior plus the weighted,
    /// length-normalised evidence of the known features.
    pub fn scores(&self, feats: &[Feature], p: &Params) -> Vec<f64> {
        let mut ev = vec![0f64; self.classes];
        let mut known = 0usize;
        for f in feats {
            if let Some((kind, l)) = self.row(f.hash) {
                known += 1;
                let w = p.kind_weight[kind as usize];
                for (e, x) in ev.iter_mut().zip(l) {
                    *e += w * f64::from(*x);
                }
            }
        }
        let norm = (known.max(1) as f64).powf(p.len_norm);
        self.log_prior
            .iter()
            .zip(ev)
            .map(|(pr, e)| pr + e / norm)
            .collect()
    }

    /// Did the training notes have this word (folded, not negated)?
    pub fn knows_word(&self, folded: &str) -> bool {
        let w: String = folded
            .chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect();
        self.row(hash(WORD, &["", &w])).is_some()
    }

    /// The words that most support class `a` over class `b`: token range
    /// and how much (weighted log ratio), best first.
    pub fn support(
        &self,
        feats: &[Feature],
        p: &Params,
        a: usize,
        b: usize,
    ) -> Vec<((usize, usize), f64)> {
        let mut by_word: HashMap<(usize, usize), f64> = HashMap::new();
        for f in feats {
            if let Some((kind, l)) = self.row(f.hash) {
                let w = p.kind_weight[kind as usize];
                let d = w * f64::from(l[a] - l[b]);
                // A word pair counts for the pair; the rest for the word.
                *by_word.entry((f.from, f.to)).or_default() += d;
            }
        }
        let mut out: Vec<_> = by_word.into_iter().collect();
        out.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        out
    }
}

/// One model per concept.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub params: Params,
    pub models: Vec<Model>,
}

impl Classifier {
    pub fn train(examples: &[Example], params: Params) -> Classifier {
        let feats: Vec<Vec<Feature>> = examples.iter().map(|e| features(e.notes.trim())).collect();
        let models = CONCEPTS
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let labelled: Vec<(&[Feature], usize)> = examples
                    .iter()
                    .zip(&feats)
                    .filter_map(|(e, f)| e.classes[ci].map(|k| (f.as_slice(), k)))
                    .collect();
                Model::train(&labelled, c.classes(), &params)
            })
            .collect();
        Classifier { params, models }
    }
}

// ------------------------------------------------------------ the shipped model

/// The model trained on the shipped corpora ([`TRAINING`], with
/// [`Params::default`]), as a file: trained when the corpora change
/// (`the_shipped_model_is_what_the_corpora_train` says how), not in every
/// process. Training took seconds of CPU at the first structuring of every
/// process (about 3.5 s in a debug build; a cold structure Lambda at
/// 128 MB has a fourteenth of a core), loading the file takes a copy.
const SHIPPED_FILE: &[u8] = include_bytes!("shipped-model.bin");

/// The shipped model, loaded once per process on first use.
pub static SHIPPED: LazyLock<Classifier> = LazyLock::new(|| {
    let started = std::time::Instant::now();
    // The file is checked by a test against a fresh training; a broken one
    // is a build that must not ship.
    let c = Classifier::from_bytes(SHIPPED_FILE, Params::default())
        .unwrap_or_else(|e| panic!("shipped-model.bin: {e}"));
    tracing::debug!(
        features = c.models.first().map_or(0, Model::len),
        micros = started.elapsed().as_micros() as u64,
        "shipped structuring model loaded"
    );
    c
});

/// A model file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("not a fieldgate model file (bad magic)")]
    Magic,
    #[error("the file ends early")]
    Truncated,
    #[error("{0} models where the concepts are {1}")]
    Concepts(usize, usize),
    #[error("model {0} has {1} classes, its concept {2}")]
    Classes(usize, usize, usize),
    #[error("features not sorted")]
    Unsorted,
    #[error("{0} bytes after the last model")]
    Trailing(usize),
}

const MAGIC: &[u8; 8] = b"FGCLF\x002\n";

/// Weights are `i8` steps of a power of two per feature: a quarter of the
/// bytes of `f32` (the structure Lambda must stay under 6 MB zipped), each
/// feature's largest weight kept to within 0.8 %. Rounding the exact
/// weights moved a value on 8 of the 2,741 notes in the repo (all at the
/// margin: decided or left to the reviewer); the rounding is part of
/// training, so what is measured is what ships.
const LEVELS: f32 = 127.0;

/// The step of a feature's weights: `2^e`.
fn step(e: i8) -> f32 {
    2f32.powi(i32::from(e))
}

/// A weight in steps of `step`, to the nearest that fits in ±[`LEVELS`].
fn steps(w: f32, step: f32) -> i8 {
    (w / step).round().clamp(-LEVELS, LEVELS) as i8
}

impl Model {
    /// The weights rounded as the file stores them ([`LEVELS`]). Training
    /// ends with it, so the model a process trains (cross-validation,
    /// `--train-on`) is the model the file ships, and the file is lossless.
    fn rounded(mut self) -> Model {
        let exps = self.exponents();
        for (row, e) in self.weights.chunks_exact_mut(self.classes).zip(exps) {
            let step = step(e);
            for w in row {
                *w = f32::from(steps(*w, step)) * step;
            }
        }
        self
    }

    /// Per feature, the power of two its weights are stored in steps of:
    /// the smallest that fits the row's largest weight in ±127.
    fn exponents(&self) -> Vec<i8> {
        self.weights
            .chunks_exact(self.classes)
            .map(|row| {
                let max = row.iter().fold(0f32, |m, w| m.max(w.abs()));
                if max == 0.0 {
                    return 0;
                }
                (max / LEVELS).log2().ceil().clamp(-100.0, 100.0) as i8
            })
            .collect()
    }
}

impl Classifier {
    /// The models as a file (little-endian): the magic; every model's
    /// features once (their count, the hashes as u64 sorted, the kinds as
    /// u8); the number of models; then per model its classes, the biases
    /// (f64), a bitmap of which features it knows, per known feature the
    /// exponent of its step (i8, [`step`]) and its `classes` weights in
    /// steps (i8). The parameters
    /// are not in it: the shipped model is read with [`Params::default`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut union: Vec<(u64, u8)> = self
            .models
            .iter()
            .flat_map(|m| m.keys.iter().copied().zip(m.kinds.iter().copied()))
            .collect();
        union.sort_unstable();
        union.dedup_by_key(|k| k.0);
        let mut out = MAGIC.to_vec();
        out.extend((union.len() as u32).to_le_bytes());
        union.iter().for_each(|(h, _)| out.extend(h.to_le_bytes()));
        union.iter().for_each(|(_, k)| out.push(*k));
        out.extend((self.models.len() as u32).to_le_bytes());
        for m in &self.models {
            out.extend((m.classes as u32).to_le_bytes());
            m.log_prior.iter().for_each(|x| out.extend(x.to_le_bytes()));
            let mut bits = vec![0u8; union.len().div_ceil(8)];
            let mut mine = m.keys.iter().peekable();
            for (i, (h, _)) in union.iter().enumerate() {
                if mine.next_if_eq(&h).is_some() {
                    bits[i / 8] |= 1 << (i % 8);
                }
            }
            out.extend(bits);
            let exps = m.exponents();
            out.extend(exps.iter().map(|e| *e as u8));
            for (row, e) in m.weights.chunks_exact(m.classes).zip(&exps) {
                let step = step(*e);
                out.extend(row.iter().map(|w| steps(*w, step) as u8));
            }
        }
        out
    }

    /// Reads [`Classifier::to_bytes`], checking it against [`CONCEPTS`].
    pub fn from_bytes(bytes: &[u8], params: Params) -> Result<Classifier, ModelFileError> {
        struct Reader<'a>(&'a [u8]);
        impl<'a> Reader<'a> {
            fn take(&mut self, n: usize) -> Result<&'a [u8], ModelFileError> {
                if self.0.len() < n {
                    return Err(ModelFileError::Truncated);
                }
                let (head, rest) = self.0.split_at(n);
                self.0 = rest;
                Ok(head)
            }
            fn array<const N: usize>(&mut self) -> Result<[u8; N], ModelFileError> {
                Ok(self.take(N)?.try_into().expect("N bytes"))
            }
            fn u32(&mut self) -> Result<usize, ModelFileError> {
                Ok(u32::from_le_bytes(self.array()?) as usize)
            }
            fn many<const N: usize, T>(
                &mut self,
                n: usize,
                f: fn([u8; N]) -> T,
            ) -> Result<Vec<T>, ModelFileError> {
                let len = n.checked_mul(N).ok_or(ModelFileError::Truncated)?;
                Ok(self
                    .take(len)?
                    .chunks_exact(N)
                    .map(|c| f(c.try_into().expect("N bytes")))
                    .collect())
            }
        }
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(ModelFileError::Magic);
        }
        let n = r.u32()?;
        let keys = r.many(n, u64::from_le_bytes)?;
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ModelFileError::Unsorted);
        }
        let kinds = r.take(n)?;
        let count = r.u32()?;
        if count != CONCEPTS.len() {
            return Err(ModelFileError::Concepts(count, CONCEPTS.len()));
        }
        let mut models = Vec::with_capacity(count);
        for (i, concept) in CONCEPTS.iter().enumerate() {
            let classes = r.u32()?;
            if classes != concept.classes() {
                return Err(ModelFileError::Classes(i, classes, concept.classes()));
            }
            let log_prior = r.many(classes, f64::from_le_bytes)?;
            let bits = r.take(n.div_ceil(8))?;
            let known = |j: usize| bits[j / 8] & (1 << (j % 8)) != 0;
            // The shipped models all know every feature: then the shared
            // lists are copied whole, not picked one by one.
            let (mine_keys, mine_kinds) = if (0..n).all(known) {
                (keys.clone(), kinds.to_vec())
            } else {
                let mine: Vec<usize> = (0..n).filter(|&j| known(j)).collect();
                (
                    mine.iter().map(|&j| keys[j]).collect(),
                    mine.iter().map(|&j| kinds[j]).collect(),
                )
            };
            let m = mine_keys.len();
            let exps = r.take(m)?;
            let rows = r.take(m.checked_mul(classes).ok_or(ModelFileError::Truncated)?)?;
            let mut weights = Vec::with_capacity(rows.len());
            for (row, e) in rows.chunks_exact(classes).zip(exps) {
                let step = step(*e as i8);
                weights.extend(row.iter().map(|q| f32::from(*q as i8) * step));
            }
            models.push(Model {
                classes,
                log_prior,
                keys: mine_keys,
                kinds: mine_kinds,
                weights,
            });
        }
        if !r.0.is_empty() {
            return Err(ModelFileError::Trailing(r.0.len()));
        }
        Ok(Classifier { params, models })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Workflow;
    use crate::structuring::rules::{DECISIONS, structure_text, structure_with};
    use crate::structuring::validate;
    use serde_json::Value;

    fn wf() -> std::sync::Arc<Workflow> {
        crate::workflows::builtin().iter().next().unwrap().clone()
    }

    fn field(w: &Workflow, notes: &str, name: &str) -> Option<String> {
        structure_text(w, notes)
            .fields
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The shipped file is what the shipped corpora train today. After a
    /// change to the corpora, the features or [`Params::default`], write it
    /// anew:
    /// `FIELDGATE_WRITE_MODEL=1 cargo test --workspace --lib
    /// the_shipped_model` (and say so in the commit).
    #[test]
    fn the_shipped_model_is_what_the_corpora_train() {
        let trained = Classifier::train(&shipped_examples(), Params::default());
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/structuring/shipped-model.bin"
        );
        if std::env::var_os("FIELDGATE_WRITE_MODEL").is_some() {
            std::fs::write(path, trained.to_bytes()).unwrap();
        }
        let file = std::fs::read(path).unwrap();
        let shipped = Classifier::from_bytes(&file, Params::default()).unwrap();
        assert_eq!(shipped.models.len(), trained.models.len());
        let stale = "write the model anew (see above)";
        for (ci, (s, t)) in shipped.models.iter().zip(&trained.models).enumerate() {
            let name = CONCEPTS[ci].name;
            // The same features: they are counted, not computed.
            assert_eq!(
                (s.classes, &s.keys, &s.kinds),
                (t.classes, &t.keys, &t.kinds),
                "{name}: the features differ; {stale}"
            );
            // The weights come from floating point (exp): another CPU or
            // libm may round a last bit differently and so, rarely, land
            // one step away; a changed corpus moves far more of them.
            let off = s
                .weights
                .chunks_exact(s.classes)
                .zip(t.weights.chunks_exact(t.classes))
                .zip(t.exponents())
                .filter(|((a, b), e)| {
                    a.iter()
                        .zip(*b)
                        .any(|(a, b)| (a - b).abs() > step(*e) * 1.01)
                })
                .count();
            let moved = s
                .weights
                .iter()
                .zip(&t.weights)
                .filter(|(a, b)| a != b)
                .count();
            assert!(
                off == 0 && moved * 1000 <= s.weights.len(),
                "{name}: {off} features off by more than a step, {moved} weights moved; {stale}"
            );
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(1.0);
            assert!(
                s.log_prior
                    .iter()
                    .zip(&t.log_prior)
                    .all(|(a, b)| close(*a, *b)),
                "{name}: biases differ; {stale}"
            );
        }
        // The file is what the process loads.
        assert!(
            file == SHIPPED_FILE,
            "rebuild: the binary has an older file"
        );
        assert_eq!(*SHIPPED.models, *shipped.models);
    }

    #[test]
    fn models_that_know_different_features_round_trip() {
        let row = |c: usize, x: f32| (0..c).map(|i| x * (i as f32 - 1.5)).collect::<Vec<f32>>();
        let models: Vec<Model> = CONCEPTS
            .iter()
            .enumerate()
            .map(|(ci, k)| {
                let c = k.classes();
                // Model 0 knows three features, model 1 one of them and a
                // fourth, model 2 none.
                let rows = [
                    (30u64, 0u8, 0.7f32),
                    (10, 1, -2.5),
                    (20, 4, 6.0),
                    (40, 2, 0.01),
                ]
                .into_iter()
                .filter(|(h, _, _)| match ci {
                    0 => *h != 40,
                    1 => *h == 20 || *h == 40,
                    _ => false,
                })
                .map(|(h, kind, x)| (h, kind, row(c, x)))
                .collect();
                Model::from_rows(c, (0..c).map(|i| i as f64 * 0.25).collect(), rows).rounded()
            })
            .collect();
        let clf = Classifier {
            params: Params::default(),
            models,
        };
        let back = Classifier::from_bytes(&clf.to_bytes(), Params::default()).unwrap();
        assert_eq!(back.models, clf.models);
        assert_eq!(back.models[1].keys, [20, 40]);
        assert_eq!(back.models[1].kinds, [4, 2]);
        assert!(back.models[2].is_empty());
    }

    #[test]
    fn a_damaged_model_file_is_refused() {
        let good = SHIPPED.to_bytes();
        assert_eq!(good, SHIPPED_FILE);
        let p = Params::default;
        assert!(matches!(
            Classifier::from_bytes(&good[..good.len() - 1], p()),
            Err(ModelFileError::Truncated)
        ));
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(
            Classifier::from_bytes(&longer, p()),
            Err(ModelFileError::Trailing(1))
        ));
        assert!(matches!(
            Classifier::from_bytes(b"not a model", p()),
            Err(ModelFileError::Magic)
        ));
        let mut swapped = good.clone();
        // The first two feature hashes, swapped.
        let (a, b) = (MAGIC.len() + 4, MAGIC.len() + 12);
        let first: [u8; 8] = swapped[a..b].try_into().unwrap();
        swapped.copy_within(b..b + 8, a);
        swapped[b..b + 8].copy_from_slice(&first);
        assert!(matches!(
            Classifier::from_bytes(&swapped, p()),
            Err(ModelFileError::Unsorted)
        ));
    }

    #[test]
    fn training_and_answers_are_deterministic() {
        let examples = shipped_examples();
        assert!(examples.len() >= 600, "{} notes", examples.len());
        let a = Classifier::train(&examples, Params::default());
        let b = Classifier::train(&examples, Params::default());
        let feats = features("Compressor tripped twice, store losing stock, need someone today");
        for (ma, mb) in a.models.iter().zip(&b.models) {
            let (sa, sb) = (ma.scores(&feats, &a.params), mb.scores(&feats, &b.params));
            assert_eq!(sa, sb, "bit for bit");
        }
        let w = wf();
        let notes = "Breaker keeps tripping on the chiller, unit down";
        assert_eq!(structure_text(&w, notes), structure_text(&w, notes));
    }

    #[test]
    fn a_note_that_points_two_ways_is_left_to_the_reviewer() {
        let w = wf();
        let notes = "Checked the valve, no leak found. Breaker has not tripped.";
        let p = structure_text(&w, notes);
        assert!(p.undecided.contains_key("Priority"), "{p:?}");
        let out = validate(&w, &p, notes);
        // Required with a default, but not silently Medium: empty, flagged.
        assert!(out["Priority"].value.is_null());
        let flag = out["Priority"].flag.as_deref().unwrap();
        assert!(
            flag.contains("do not settle") && flag.contains("please choose"),
            "{flag}"
        );
    }

    #[test]
    fn a_negated_word_is_another_feature_and_no_breakdown() {
        let neg = features("no leak found");
        let plain = features("leak found");
        let word = |neg: &str| hash(WORD, &[neg, "leak"]);
        assert!(neg.iter().any(|f| f.hash == word("!")));
        assert!(!neg.iter().any(|f| f.hash == word("")));
        assert!(plain.iter().any(|f| f.hash == word("")));
        let w = wf();
        for notes in [
            "Checked the valve, no leak found, pump running normally.",
            "Kein Leck gefunden, Pumpe läuft normal.",
        ] {
            assert_ne!(
                field(&w, notes, "Reason").as_deref(),
                Some("Breakdown"),
                "{notes}"
            );
        }
    }

    #[test]
    fn typos_still_find_the_value_with_a_quote() {
        let w = wf();
        let notes = "Compresser leakin oil all over the plant room floor, unit stopped";
        let out = validate(&w, &structure_text(&w, notes), notes);
        assert_eq!(out["Type"].text(), Some("Mechanical"));
        assert_eq!(out["Type"].evidence.as_deref(), Some("Compresser"));
        assert_eq!(out["Priority"].text(), Some("High"));
    }

    #[test]
    fn every_value_has_a_quote_of_the_notes_or_a_flag() {
        let w = wf();
        for e in
            examples_from_toml(include_str!("../../../tests/corpus-holdout/notes.toml")).unwrap()
        {
            let out = validate(&w, &structure_text(&w, &e.notes), &e.notes);
            for name in ["Priority", "Type", "Reason"] {
                let f = &out[name];
                if f.value.is_null() {
                    continue;
                }
                let quoted = f
                    .evidence
                    .as_deref()
                    .is_some_and(|q| e.notes.to_lowercase().contains(&q.to_lowercase()));
                assert!(quoted || f.flag.is_some(), "{}: {name} {f:?}", e.id);
            }
        }
    }

    #[test]
    fn the_model_applies_only_to_fields_with_its_values() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            concept_for(&v(&["High", "Medium", "Low"])).map(|c| c.0),
            Some(0)
        );
        assert_eq!(
            concept_for(&v(&["low", "normal", "URGENT"])).map(|c| c.1),
            Some(vec![2, 1, 0])
        );
        // A four-level priority, work types: the cues alone, as before.
        assert!(concept_for(&v(&["Critical", "High", "Medium", "Low"])).is_none());
        assert!(
            concept_for(&v(&[
                "Repair",
                "Inspection",
                "Preventive Maintenance",
                "Installation"
            ]))
            .is_none()
        );
        let wo = crate::workflows::builtin()
            .iter()
            .find(|w| w.id.as_str() == "field-service-work-order")
            .unwrap()
            .clone();
        let notes = "Gas leak in the plant room, area evacuated";
        assert_eq!(
            structure_text(&wo, notes),
            structure_with(&wo, notes, None, &DECISIONS)
        );
    }

    #[test]
    fn a_word_an_admin_added_counts_where_the_model_hesitates() {
        let w = wf();
        let notes = "The frobnicator is acting up again";
        assert_eq!(field(&w, notes, "Type"), None);
        let mut own = (*w).clone();
        let t = own.fields.iter_mut().find(|f| f.name == "Type").unwrap();
        t.vocabulary
            .entry("Electronic".into())
            .or_default()
            .push("frobnicator".into());
        let out = validate(&own, &structure_text(&own, notes), notes);
        assert_eq!(out["Type"].text(), Some("Electronic"));
        assert_eq!(out["Type"].evidence.as_deref(), Some("frobnicator"));
    }
}
