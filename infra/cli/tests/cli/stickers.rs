//! `fieldgate stickers` as an admin runs it against a running server: the
//! sheet is rendered as a printer would (resvg, 300 dpi), every QR code on
//! it is decoded (rqrr) back to a working form link, and every code
//! printed under them, typed at `/k`, opens the same form.

use super::crash::{free_port, start_with};
use fieldgate::ports::RecordWriter;
use fieldgate::salesforce::{SalesforceClient, SalesforceConfig};
use fieldgate_cli::dev::{DEV_CLIENT_ID, DEV_CLIENT_SECRET};
use fieldgate_cli::stickers::{self, LAYOUTS, Label, Layout};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

/// `fieldgate stickers …` against the dev server's own org (its emulator,
/// reached as a real org is: OAuth client credentials).
fn stickers_cmd(data: &Path, base: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .arg("stickers")
        .args(args)
        .args(["--data"])
        .arg(data)
        .args(["--base", base])
        .env("SALESFORCE_LOGIN_URL", base)
        .env("SALESFORCE_CLIENT_ID", DEV_CLIENT_ID)
        .env("SALESFORCE_CLIENT_SECRET", DEV_CLIENT_SECRET)
        .output()
        .expect("fieldgate runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every QR code on a sheet, read from its pixels at 300 dpi one label at
/// a time, as a phone's camera sees one sticker (a decoder given the whole
/// sheet pairs finder patterns of neighbouring codes). Empty label slots
/// are skipped; a slot with a code that does not read fails.
fn decode_sheet(svg: &str, layout: &Layout) -> Vec<String> {
    use resvg::{tiny_skia, usvg};
    let tree = usvg::Tree::from_str(svg, &usvg::Options::default())
        .unwrap_or_else(|e| panic!("the sheet is not valid SVG: {e}"));
    let dpmm = 300.0 / INCH;
    // The SVG's user unit is the millimetre; usvg's size is in CSS px.
    let scale = 300.0 / 96.0;
    let (w, h) = (
        (tree.size().width() * scale).ceil() as u32,
        (tree.size().height() * scale).ceil() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w, h).expect("a page-sized pixmap");
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    let px = pixmap.data();
    let grey = |x: usize, y: usize| {
        let i = (y * w as usize + x) * 4;
        // Unpainted is white paper.
        if px[i + 3] == 0 {
            255
        } else {
            ((u16::from(px[i]) + u16::from(px[i + 1]) + u16::from(px[i + 2])) / 3) as u8
        }
    };
    let mut out = Vec::new();
    for slot in 0..layout.per_page() {
        let (x0, y0) = layout.origin(slot);
        let (x0, y0) = ((x0 * dpmm) as usize, (y0 * dpmm) as usize);
        let (cw, ch) = (
            ((layout.label_w * dpmm) as usize).min(w as usize - x0),
            ((layout.label_h * dpmm) as usize).min(h as usize - y0),
        );
        let dark = (0..ch).any(|y| (0..cw).any(|x| grey(x0 + x, y0 + y) < 128));
        if !dark {
            continue;
        }
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(cw, ch, |x, y| grey(x0 + x, y0 + y));
        let grids = img.detect_grids();
        assert_eq!(
            grids.len(),
            1,
            "label {slot} of {}: one QR code",
            layout.name
        );
        out.push(
            grids[0]
                .decode()
                .unwrap_or_else(|e| panic!("label {slot} of {}: {e:?}", layout.name))
                .1,
        );
    }
    out
}

const INCH: f64 = 25.4;

/// The codes printed under the QR codes, in sheet order.
fn printed_refs(sheet: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"class="ref">([0-9A-Z]{4}-[0-9A-Z]{4})</text>"#).unwrap();
    re.captures_iter(sheet).map(|c| c[1].to_owned()).collect()
}

async fn typed(http: &reqwest::Client, base: &str, code: &str) -> (u16, Option<String>, String) {
    let r = http
        .post(format!("{base}/k"))
        .form(&[("ref", code)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location, r.text().await.unwrap())
}

#[tokio::test]
async fn a_printed_sheet_decodes_back_to_working_forms_and_typed_codes() {
    let data = tempfile::tempdir().unwrap();
    let dev = start_with(data.path(), free_port(), &[]);
    let base = dev.base.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // More assets than one sheet holds, one named to break markup, added
    // through the org's API as an admin would.
    let org = SalesforceClient::new(SalesforceConfig::client_credentials(
        &base,
        DEV_CLIENT_ID,
        DEV_CLIENT_SECRET,
    ))
    .unwrap();
    let tricky = r#"Pump <A&B> "north" & 'south'"#;
    for i in 0..21 {
        let name = if i == 0 {
            tricky.to_owned()
        } else {
            format!("Test Pump {i:02}")
        };
        let mut rec = serde_json::Map::new();
        rec.insert("Name".into(), name.into());
        rec.insert("SerialNumber".into(), format!("TP-{i:04}").into());
        org.create("Asset", &rec)
            .await
            .expect("an Asset is created");
    }
    let names: BTreeSet<String> = org
        .query("SELECT Name FROM Asset")
        .await
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 26, "5 demo assets and 21 new ones");

    // The sheet, as SVG: 26 stickers on two A4 sheets of 21.
    let out = data.path().join("sheet.svg");
    let o = stickers_cmd(
        data.path(),
        &base,
        &[
            "--workflow",
            "field-service-case",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("26 stickers for field-service-case") && text(&o).contains("2 sheet(s)"),
        "{}",
        text(&o)
    );
    let files: Vec<String> = ["sheet-1.svg", "sheet-2.svg"]
        .iter()
        .map(|f| std::fs::read_to_string(data.path().join(f)).expect("a sheet file per page"))
        .collect();
    assert!(!data.path().join("sheet.svg").exists());

    let mut links = Vec::new();
    let mut refs = Vec::new();
    for sheet in &files {
        assert!(!sheet.contains(tricky), "names are escaped");
        links.extend(decode_sheet(sheet, Layout::named("a4-3x7").unwrap()));
        refs.extend(printed_refs(sheet));
    }
    assert_eq!(links.len(), 26, "every sticker's QR code reads back");
    assert_eq!(refs.len(), 26, "every sticker carries a typed code");
    let unique: BTreeSet<&String> = links.iter().collect();
    assert_eq!(unique.len(), 26, "one code per asset");

    // Each decoded link is a working form for one of the org's assets.
    let mut seen = BTreeSet::new();
    for link in &links {
        assert!(link.starts_with(&format!("{base}/q/")), "{link}");
        let r = http.get(link).send().await.unwrap();
        assert_eq!(r.status(), 200, "{link}");
        let page = r.text().await.unwrap();
        let name = names
            .iter()
            .find(|n| page.contains(&askama_escape(n)))
            .unwrap_or_else(|| panic!("the form of {link} names an asset"));
        seen.insert(name.clone());
    }
    assert_eq!(seen, names, "every asset got its sticker");

    // Each typed code opens the same form as its QR code, however typed.
    let mut opened = BTreeMap::new();
    for (i, r) in refs.iter().enumerate() {
        let sloppy = if i % 2 == 0 {
            r.to_lowercase()
        } else {
            r.replace('-', " ")
        };
        let (status, location, page) = typed(&http, &base, &sloppy).await;
        assert_eq!(status, 303, "{r}: {page}");
        let location = location.expect("a redirect");
        let code = location.strip_prefix("q/").expect("to a form, beside /k");
        opened.insert(format!("{base}/q/{code}"), r.clone());
    }
    assert_eq!(
        opened.keys().cloned().collect::<BTreeSet<_>>(),
        links.iter().cloned().collect::<BTreeSet<_>>(),
        "the typed codes open exactly the printed QR codes' forms"
    );

    // A reprint is the same sheet; a narrower one, as HTML on US Letter
    // labels, carries the same codes for the same assets.
    let o = stickers_cmd(
        data.path(),
        &base,
        &[
            "--workflow",
            "field-service-case",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(data.path().join("sheet-1.svg")).unwrap(),
        files[0]
    );
    let html = data.path().join("pumps.html");
    let o = stickers_cmd(
        data.path(),
        &base,
        &[
            "--workflow",
            "field-service-case",
            "--where",
            "Name LIKE 'Test Pump%'",
            "--layout",
            "letter-2x5",
            "--out",
            html.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("class=\"label\"").count(), 20);
    assert_eq!(page.matches("<div class=\"page\">").count(), 2);
    assert!(page.contains("size: letter"), "print CSS for the paper");
    let pump_refs: BTreeSet<String> = printed_refs(&page).into_iter().collect();
    assert!(pump_refs.is_subset(&refs.iter().cloned().collect()));

    // A revoked sticker's typed code leads to the same 410 as its QR code.
    let victim = &links[0];
    let asset = victim
        .split("/q/")
        .nth(1)
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    // With the org the sheet was printed from: the sticker was scanned,
    // never reported on, so the server's cache does not know the asset
    // and Salesforce is asked.
    let o = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args([
            "qr",
            "revoke",
            asset,
            "--workflow",
            "field-service-case",
            "--data",
        ])
        .arg(data.path())
        .env("SALESFORCE_LOGIN_URL", &base)
        .env("SALESFORCE_CLIENT_ID", DEV_CLIENT_ID)
        .env("SALESFORCE_CLIENT_SECRET", DEV_CLIENT_SECRET)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let victim_ref = &opened[victim];
    let (_, location, _) = typed(&http, &base, victim_ref).await;
    let r = http
        .get(format!("{base}/{}", location.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);

    // Mistakes say what is wrong and write nothing.
    let wf = ["--workflow", "field-service-case"];
    for (args, says) in [
        (
            [&wf[..], &["--where", "Name = 'no such asset'"]].concat(),
            "no Asset matches --where \"Name = 'no such asset'\"",
        ),
        (
            [&wf[..], &["--where", "Nmae = 'x'"]].concat(),
            "INVALID_FIELD",
        ),
        (
            [&wf[..], &["--layout", "a5-1x1"]].concat(),
            "no layout \"a5-1x1\" (known: a4-3x7",
        ),
        (vec!["--workflow", "nope"], "no workflow \"nope\""),
    ] {
        let bad = data.path().join("bad.svg");
        let mut all = args.clone();
        all.extend(["--out", bad.to_str().unwrap()]);
        let o = stickers_cmd(data.path(), &base, &all);
        assert!(!o.status.success(), "{all:?}");
        assert!(text(&o).contains(says), "{all:?}: {}", text(&o));
        assert!(!text(&o).contains(DEV_CLIENT_SECRET), "{}", text(&o));
        assert!(!bad.exists(), "{all:?} wrote a sheet");
    }
    let pdf = data.path().join("sheet.pdf");
    let o = stickers_cmd(
        data.path(),
        &base,
        &[
            "--workflow",
            "field-service-case",
            "--out",
            pdf.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--out must end in .html"), "{}", text(&o));
}

/// How askama writes text into a page.
fn askama_escape(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

fn label(i: usize, name: &str) -> Label {
    Label {
        asset: format!("02i0000000000{i:02}AAA").parse().unwrap(),
        name: name.into(),
        serial: Some(format!("SN-{i}")),
        url: format!(
            "https://fieldgate.example.com/q/02i0000000000{i:02}AAA.field-service-case.k1.AAAAAAAAAAAAAAAAAAAAAA"
        ),
        reference: "7K3M-9QXD".into(),
    }
}

#[test]
fn every_layout_keeps_its_labels_on_the_page_and_apart() {
    for l in LAYOUTS {
        let last = l.origin(l.per_page() - 1);
        assert!(
            last.0 + l.label_w <= l.page_w + 0.01,
            "{}: too wide",
            l.name
        );
        assert!(
            last.1 + l.label_h <= l.page_h + 0.01,
            "{}: too tall",
            l.name
        );
        assert!(
            l.pitch_x >= l.label_w && l.pitch_y >= l.label_h,
            "{}",
            l.name
        );
        // The sheets are symmetric: the right margin is the left one.
        let right = l.page_w - (last.0 + l.label_w);
        assert!(
            (right - l.left).abs() < 0.5,
            "{}: {right} vs {}",
            l.name,
            l.left
        );
    }
}

#[test]
fn every_layout_prints_codes_a_phone_reads() {
    // The smallest label (1 in tall) with a long link, read back.
    for l in LAYOUTS {
        let labels: Vec<Label> = (0..l.per_page()).map(|i| label(i, "Chiller")).collect();
        let pages = stickers::pages(&labels, l, "https://fieldgate.example.com", true).unwrap();
        assert_eq!(pages.len(), 1);
        let read = decode_sheet(&pages[0], l);
        assert_eq!(read.len(), l.per_page(), "{}", l.name);
        let want: BTreeMap<&str, ()> = labels.iter().map(|x| (x.url.as_str(), ())).collect();
        assert!(
            read.iter().all(|u| want.contains_key(u.as_str())),
            "{}",
            l.name
        );
    }
}

#[test]
fn long_names_are_cut_to_the_label() {
    let l = Layout::named("letter-3x10").unwrap();
    let long = "Rooftop air handling unit ".repeat(6);
    let pages = stickers::pages(&[label(1, &long)], l, "x", false).unwrap();
    let shown: Vec<String> = regex::Regex::new(r#"class="name">([^<]*)</text>"#)
        .unwrap()
        .captures_iter(&pages[0])
        .map(|c| c[1].to_owned())
        .collect();
    assert_eq!(shown.len(), 2, "two lines at most: {shown:?}");
    assert!(shown[0].starts_with("Rooftop air"), "{shown:?}");
    assert!(
        shown[1].ends_with('…') && shown.iter().all(|l| l.chars().count() <= 30),
        "{shown:?}"
    );
    // The address to type and the code are whole.
    assert!(pages[0].contains(">x/k</text>") && pages[0].contains(">7K3M-9QXD</text>"));
}

#[test]
fn the_query_keeps_the_condition_to_itself() {
    assert_eq!(
        stickers::soql(Some("Account.Name = 'A' OR Status = 'Installed'")),
        "SELECT Id, Name, SerialNumber FROM Asset WHERE (Account.Name = 'A' OR Status = 'Installed') ORDER BY Name, Id"
    );
    assert_eq!(stickers::soql(Some("  ")), stickers::soql(None));
}
