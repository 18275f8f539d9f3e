//! `fieldgate stickers`: a print-ready sheet of QR stickers for the org's
//! assets, on common label layouts. Each sticker carries the code, the
//! asset's name and serial number, and the short reference a technician
//! types at `/k` when the camera fails (registered in the store as the
//! sheet is made, so it works the moment the sheet is printed).
//!
//! Output: one HTML page with print CSS (every sheet a page, exact sizes
//! in millimetres), or SVG, one file per sheet.

use askama::Template;
use fieldgate::compose::Keys;
use fieldgate::domain::{AssetId, Sticker, Timestamp, Workflow};
use fieldgate::ports::{ProposalStore, StoreError};
use fieldgate::salesforce::{SalesforceClient, SfError};
use qrcode::{Color, QrCode};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One label sheet: the page and where its labels sit, in millimetres, as
/// the label maker prints them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub name: &'static str,
    pub about: &'static str,
    /// CSS `@page` size.
    pub paper: &'static str,
    pub page_w: f64,
    pub page_h: f64,
    pub cols: u32,
    pub rows: u32,
    pub label_w: f64,
    pub label_h: f64,
    /// Top-left corner of the first label.
    pub left: f64,
    pub top: f64,
    /// Distance from one label's left (top) edge to the next one's.
    pub pitch_x: f64,
    pub pitch_y: f64,
}

const INCH: f64 = 25.4;

pub const LAYOUTS: &[Layout] = &[
    Layout {
        name: "a4-3x7",
        about: "A4, 21 labels of 63.5 × 38.1 mm (Avery L7160 and compatibles)",
        paper: "A4",
        page_w: 210.0,
        page_h: 297.0,
        cols: 3,
        rows: 7,
        label_w: 63.5,
        label_h: 38.1,
        left: 7.25,
        top: 15.15,
        pitch_x: 66.0,
        pitch_y: 38.1,
    },
    Layout {
        name: "a4-2x7",
        about: "A4, 14 labels of 99.1 × 38.1 mm (Avery L7163 and compatibles)",
        paper: "A4",
        page_w: 210.0,
        page_h: 297.0,
        cols: 2,
        rows: 7,
        label_w: 99.1,
        label_h: 38.1,
        left: 4.65,
        top: 15.15,
        pitch_x: 101.6,
        pitch_y: 38.1,
    },
    Layout {
        name: "letter-3x10",
        about: "US Letter, 30 labels of 2⅝ × 1 in (Avery 5160 and compatibles)",
        paper: "letter",
        page_w: 8.5 * INCH,
        page_h: 11.0 * INCH,
        cols: 3,
        rows: 10,
        label_w: 2.625 * INCH,
        label_h: 1.0 * INCH,
        left: 0.1875 * INCH,
        top: 0.5 * INCH,
        pitch_x: 2.75 * INCH,
        pitch_y: 1.0 * INCH,
    },
    Layout {
        name: "letter-2x5",
        about: "US Letter, 10 labels of 4 × 2 in (Avery 5163 and compatibles)",
        paper: "letter",
        page_w: 8.5 * INCH,
        page_h: 11.0 * INCH,
        cols: 2,
        rows: 5,
        label_w: 4.0 * INCH,
        label_h: 2.0 * INCH,
        left: 0.15625 * INCH,
        top: 0.5 * INCH,
        pitch_x: 4.1875 * INCH,
        pitch_y: 2.0 * INCH,
    },
];

impl Layout {
    pub fn named(name: &str) -> Option<&'static Layout> {
        LAYOUTS.iter().find(|l| l.name == name)
    }

    pub fn per_page(&self) -> usize {
        (self.cols * self.rows) as usize
    }

    /// Top-left corner of the `i`-th label of a page, row by row.
    pub fn origin(&self, i: usize) -> (f64, f64) {
        let (col, row) = (i as u32 % self.cols, i as u32 / self.cols);
        (
            self.left + f64::from(col) * self.pitch_x,
            self.top + f64::from(row) * self.pitch_y,
        )
    }
}

/// The file kinds `--out` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Svg,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format, StickerError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("html" | "htm") => Ok(Format::Html),
            Some("svg") => Ok(Format::Svg),
            _ => Err(StickerError::OutKind(path.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StickerError {
    #[error(
        "{0}: --out must end in .html (one page per sheet, for a browser's print) or .svg (one file per sheet)"
    )]
    OutKind(PathBuf),
    #[error("no Asset matches{}", .0.as_deref().map(|c| format!(" --where {c:?}")).unwrap_or_default())]
    NoAssets(Option<String>),
    #[error("asking Salesforce for the assets")]
    Salesforce(#[source] SfError),
    #[error("Salesforce answered an Asset without {0}")]
    Malformed(&'static str),
    #[error(
        "the sticker code {reference} of {asset} is already printed for another code; print this asset on its own again after `fieldgate keys rotate`"
    )]
    Collision { reference: String, asset: AssetId },
    #[error(transparent)]
    Store(StoreError),
    #[error("QR encoding the link of {0}")]
    Encode(AssetId, #[source] qrcode::types::QrError),
    #[error("writing {0}")]
    Write(PathBuf, #[source] std::io::Error),
}

/// One sticker, ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub asset: AssetId,
    pub name: String,
    pub serial: Option<String>,
    pub url: String,
    /// As printed (`7K3M-9QXD`).
    pub reference: String,
}

/// The SOQL of the sheet: the admin's condition kept in parentheses so an
/// `OR` in it cannot escape; sorted so a reprint is the same sheet.
pub fn soql(condition: Option<&str>) -> String {
    match condition.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => {
            format!("SELECT Id, Name, SerialNumber FROM Asset WHERE ({c}) ORDER BY Name, Id")
        }
        None => "SELECT Id, Name, SerialNumber FROM Asset ORDER BY Name, Id".into(),
    }
}

/// Asks the org for the assets, signs each one's code (the generation the
/// store says, so a revoked sticker's reprint works) and registers its
/// typed reference.
pub async fn labels(
    sf: &SalesforceClient,
    store: &dyn ProposalStore,
    keys: &Keys,
    workflow: &Workflow,
    condition: Option<&str>,
    base: &str,
    now: Timestamp,
) -> Result<Vec<Label>, StickerError> {
    let rows = sf
        .query(&soql(condition))
        .await
        .map_err(StickerError::Salesforce)?;
    if rows.is_empty() {
        return Err(StickerError::NoAssets(condition.map(str::to_owned)));
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let asset: AssetId = row["Id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or(StickerError::Malformed("an Id"))?;
        let name = text(&row["Name"]).ok_or(StickerError::Malformed("a Name"))?;
        let generation = crate::codes::generation(store, &asset, workflow)
            .await
            .map_err(|e| match e {
                crate::codes::CodeError::Store(s) => StickerError::Store(s),
                other => StickerError::Store(StoreError::backend("reading a revocation", other)),
            })?;
        let code = keys.qr.sign_generation(&asset, &workflow.id, generation);
        let reference = keys.qr.sticker_ref(&code);
        let sticker = Sticker {
            reference: reference.clone(),
            code: code.clone(),
            asset: asset.clone(),
            workflow: workflow.id.clone(),
            printed_at: now,
        };
        match store.put_sticker(&sticker).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(StickerError::Collision {
                    reference: reference.to_string(),
                    asset,
                });
            }
            Err(e) => return Err(StickerError::Store(e)),
        }
        out.push(Label {
            url: format!("{}/q/{code}", base.trim_end_matches('/')),
            asset,
            name,
            serial: text(&row["SerialNumber"]),
            reference: reference.to_string(),
        });
    }
    Ok(out)
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// What the sticker tells a technician to open: the site without its
/// scheme, `fieldgate.example.com/k`.
fn typing_address(base: &str) -> String {
    let b = base.trim_end_matches('/');
    let b = b
        .strip_prefix("https://")
        .or_else(|| b.strip_prefix("http://"))
        .unwrap_or(b);
    format!("{b}/k")
}

/// Cuts a line to what fits, with an ellipsis.
fn fit(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(chars.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// One QR code as a single path of unit squares, in module units with a
/// 4-module quiet zone: (side in modules, path data).
fn qr_path(url: &str) -> Result<(usize, String), qrcode::types::QrError> {
    let code = QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M)?;
    let n = code.width();
    let colors = code.to_colors();
    let mut d = String::new();
    for (i, c) in colors.iter().enumerate() {
        if *c == Color::Dark {
            let _ = write!(d, "M{} {}h1v1h-1z", i % n + 4, i / n + 4);
        }
    }
    Ok((n + 8, d))
}

/// A label as drawn: positions in millimetres on the page.
struct Drawn {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    qr_x: f64,
    qr_y: f64,
    qr_size: f64,
    qr_modules: usize,
    qr_path: String,
    text_x: f64,
    lines: Vec<Line>,
    name: String,
}

struct Line {
    y: f64,
    size: f64,
    class: &'static str,
    text: String,
}

#[derive(Template)]
#[template(
    escape = "html",
    ext = "html",
    source = r##"<svg xmlns="http://www.w3.org/2000/svg" width="{{ w }}mm" height="{{ h }}mm" viewBox="0 0 {{ w }} {{ h }}" font-family="Helvetica, Arial, sans-serif">
<title>{{ title }}</title>
<style>.name{font-weight:bold}.ref{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-weight:bold;letter-spacing:.3px}.hint{fill:#333}</style>
<rect width="{{ w }}" height="{{ h }}" fill="#fff"/>
{% for l in labels %}<g class="label">
<title>{{ l.name }}</title>
<svg x="{{ l.qr_x }}" y="{{ l.qr_y }}" width="{{ l.qr_size }}" height="{{ l.qr_size }}" viewBox="0 0 {{ l.qr_modules }} {{ l.qr_modules }}" shape-rendering="crispEdges"><rect width="{{ l.qr_modules }}" height="{{ l.qr_modules }}" fill="#fff"/><path d="{{ l.qr_path }}" fill="#000"/></svg>
{% for t in l.lines %}<text x="{{ l.text_x }}" y="{{ t.y }}" font-size="{{ t.size }}" class="{{ t.class }}">{{ t.text }}</text>
{% endfor %}{% if outline %}<rect x="{{ l.x }}" y="{{ l.y }}" width="{{ l.w }}" height="{{ l.h }}" rx="2" fill="none" stroke="#ccc" stroke-width="0.2"/>
{% endif %}</g>
{% endfor %}</svg>
"##
)]
struct PageSvg<'a> {
    w: String,
    h: String,
    title: &'a str,
    labels: Vec<DrawnOut>,
    outline: bool,
}

/// [`Drawn`] with its numbers formatted (SVG wants plain decimals).
struct DrawnOut {
    x: String,
    y: String,
    w: String,
    h: String,
    qr_x: String,
    qr_y: String,
    qr_size: String,
    qr_modules: usize,
    qr_path: String,
    text_x: String,
    lines: Vec<LineOut>,
    name: String,
}

struct LineOut {
    y: String,
    size: String,
    class: &'static str,
    text: String,
}

fn mm(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Greedy word wrap to `max` lines of `chars`; what does not fit ends in
/// an ellipsis, a word longer than a line is cut.
fn wrap(s: &str, chars: usize, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in s.split_whitespace() {
        let fits = cur.is_empty() || cur.chars().count() + 1 + word.chars().count() <= chars;
        if !fits {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    let cut = lines.len() > max;
    lines.truncate(max);
    let n = lines.len();
    for (i, l) in lines.iter_mut().enumerate() {
        let last_cut = cut && i + 1 == n;
        if last_cut || l.chars().count() > chars {
            let mut t: String = l.chars().take(chars.saturating_sub(1)).collect();
            t.push('…');
            *l = t;
        }
    }
    lines
}

fn draw(layout: &Layout, i: usize, label: &Label, typing: &str) -> Result<Drawn, StickerError> {
    let (x, y) = layout.origin(i);
    let (w, h) = (layout.label_w, layout.label_h);
    let pad = (h * 0.06).clamp(1.5, 3.0);
    // The code as large as the label allows, leaving the text at least
    // half the width.
    let qr_size = (h - 2.0 * pad).min(w * 0.46);
    let (qr_modules, path) =
        qr_path(&label.url).map_err(|e| StickerError::Encode(label.asset.clone(), e))?;
    let text_x = x + pad + qr_size + pad * 0.7;
    let text_w = (x + w - pad) - text_x;
    // Sizes in millimetres, from the label's height; characters per line
    // from a sans-serif's average advance (about 0.55 em, 0.6 bold).
    let per_line = |s: f64, advance: f64| ((text_w / (s * advance)).floor() as usize).max(4);
    let size = (h * 0.085).clamp(2.2, 3.6);
    let mut lines = Vec::new();
    let mut at = y + pad + size * 0.9;
    for t in wrap(&label.name, per_line(size, 0.6), 2) {
        lines.push(Line {
            y: at,
            size,
            class: "name",
            text: t,
        });
        at += size * 1.15;
    }
    if let Some(serial) = &label.serial {
        let s = size * 0.85;
        lines.push(Line {
            y: at + s * 0.1,
            size: s,
            class: "serial",
            text: fit(&format!("S/N {serial}"), per_line(s, 0.56)),
        });
    }
    // At the bottom: where to type, then the code, largest, in monospace
    // (0.6 em per symbol; 9 with the dash).
    let ref_size = (size * 1.4).min(text_w / (9.0 * 0.62));
    const HINT: &str = "No camera? Open";
    let widest = typing.chars().count().max(HINT.len());
    let hint_size = (size * 0.75).min(text_w / (widest as f64 * 0.56));
    let ref_y = y + h - pad;
    let addr_y = ref_y - ref_size * 1.15;
    lines.push(Line {
        y: addr_y - hint_size * 1.15,
        size: hint_size,
        class: "hint",
        text: HINT.into(),
    });
    lines.push(Line {
        y: addr_y,
        size: hint_size,
        class: "hint",
        text: typing.to_owned(),
    });
    lines.push(Line {
        y: ref_y,
        size: ref_size,
        class: "ref",
        text: label.reference.clone(),
    });
    Ok(Drawn {
        x,
        y,
        w,
        h,
        qr_x: x + pad,
        qr_y: y + (h - qr_size) / 2.0,
        qr_size,
        qr_modules,
        qr_path: path,
        text_x,
        lines,
        name: label.name.clone(),
    })
}

/// One SVG document per sheet. `outline` draws each label's edge (for a
/// plain-paper proof; off on label stock).
pub fn pages(
    labels: &[Label],
    layout: &Layout,
    base: &str,
    outline: bool,
) -> Result<Vec<String>, StickerError> {
    let typing = typing_address(base);
    let total = labels.len().div_ceil(layout.per_page());
    labels
        .chunks(layout.per_page())
        .enumerate()
        .map(|(p, chunk)| {
            let drawn = chunk
                .iter()
                .enumerate()
                .map(|(i, l)| draw(layout, i, l, &typing).map(formatted))
                .collect::<Result<Vec<_>, _>>()?;
            let title = format!("fieldgate stickers, sheet {} of {total}", p + 1);
            Ok(PageSvg {
                w: mm(layout.page_w),
                h: mm(layout.page_h),
                title: &title,
                labels: drawn,
                outline,
            }
            .render()
            .expect("the sheet template renders"))
        })
        .collect()
}

fn formatted(d: Drawn) -> DrawnOut {
    DrawnOut {
        x: mm(d.x),
        y: mm(d.y),
        w: mm(d.w),
        h: mm(d.h),
        qr_x: mm(d.qr_x),
        qr_y: mm(d.qr_y),
        qr_size: mm(d.qr_size),
        qr_modules: d.qr_modules,
        qr_path: d.qr_path,
        text_x: mm(d.text_x),
        lines: d
            .lines
            .into_iter()
            .map(|l| LineOut {
                y: mm(l.y),
                size: mm(l.size),
                class: l.class,
                text: l.text,
            })
            .collect(),
        name: d.name,
    }
}

#[derive(Template)]
#[template(
    escape = "html",
    ext = "html",
    source = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>QR stickers: {{ workflow }}</title>
<style>
@page { size: {{ paper }}; margin: 0 }
html, body { margin: 0; padding: 0; background: #eee }
.page { width: {{ w }}mm; height: {{ h }}mm; margin: 10mm auto; background: #fff; box-shadow: 0 1px 6px #0003; break-after: page; overflow: hidden }
.page:last-of-type { break-after: auto }
.page > svg { display: block; width: {{ w }}mm; height: {{ h }}mm }
.howto { max-width: 180mm; margin: 10mm auto 0; font: 14px/1.4 Helvetica, Arial, sans-serif }
@media print { html, body { background: none } .page { margin: 0; box-shadow: none } .howto { display: none } }
</style></head><body>
<p class="howto">{{ count }} stickers for {{ workflow }} on {{ sheets }} sheet(s) of {{ about }}. Print at 100 % (“actual size”, no scaling, no margins) on the label sheet; print one on plain paper first and hold it against a label sheet to check.</p>
{% for p in pages %}<div class="page">{{ p|safe }}</div>
{% endfor %}</body></html>
"##
)]
struct SheetHtml<'a> {
    workflow: &'a str,
    paper: &'a str,
    w: String,
    h: String,
    about: &'a str,
    count: usize,
    sheets: usize,
    pages: &'a [String],
}

/// Writes the sheet; returns the files written.
pub fn write(
    out: &Path,
    format: Format,
    pages: &[String],
    layout: &Layout,
    workflow: &Workflow,
    count: usize,
) -> Result<Vec<PathBuf>, StickerError> {
    let put = |path: &Path, body: &str| {
        std::fs::write(path, body).map_err(|e| StickerError::Write(path.to_owned(), e))
    };
    match format {
        Format::Html => {
            let body = SheetHtml {
                workflow: &workflow.name,
                paper: layout.paper,
                w: mm(layout.page_w),
                h: mm(layout.page_h),
                about: layout.about,
                count,
                sheets: pages.len(),
                pages,
            }
            .render()
            .expect("the sheet page renders");
            put(out, &body)?;
            Ok(vec![out.to_owned()])
        }
        Format::Svg if pages.len() == 1 => {
            put(out, &pages[0])?;
            Ok(vec![out.to_owned()])
        }
        Format::Svg => {
            let stem = out
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("stickers");
            let dir = out.parent().unwrap_or(Path::new(""));
            pages
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let path = dir.join(format!("{stem}-{}.svg", i + 1));
                    put(&path, p).map(|()| path)
                })
                .collect()
        }
    }
}
