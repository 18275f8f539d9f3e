//! The second shipped workflow, end to end on the dev stack: a sticker for
//! the Work Order workflow → a report with photos → review → approve →
//! exactly one WorkOrder in the emulator, with its number, its work type
//! and the photos, and one handoff.

use fieldgate::domain::{ProposalId, Status, Workflow, Workflows};
use fieldgate::ports::ProposalStore;
use fieldgate_tests::*;

const WORKFLOW: &str = "field-service-work-order";

async fn wait_status(h: &Harness, id: &str, want: Status) -> fieldgate::domain::Proposal {
    let id: ProposalId = id.parse().unwrap();
    wait_for(|| async {
        let p = h.stack.store.get(id).await.unwrap()?;
        (p.status == want && (want != Status::Committed || p.commit.handoff_published)).then_some(p)
    })
    .await
}

/// The first demo asset's Work Order scan link, from the dev stack's list
/// of codes (one per workflow per asset).
fn work_order_link(h: &Harness) -> String {
    let (_, name) = h.first_asset();
    let codes: Vec<(String, String)> = h
        .stack
        .links()
        .into_iter()
        .filter(|(n, _, _)| *n == name)
        .map(|(_, wf, url)| (wf.id.to_string(), url))
        .collect();
    let ids: Vec<&str> = codes.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(ids, ["field-service-case", WORKFLOW], "a code per workflow");
    assert_ne!(codes[0].1, codes[1].1);
    codes[1].1.clone()
}

fn a_jpeg(shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([shade, x as u8, y as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

async fn submit_with_photos(
    h: &Harness,
    url: &str,
    notes: &str,
    photos: &[Vec<u8>],
) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new()
        .text("notes", notes.to_owned())
        .text("reporter", "tech@example.com");
    for (i, p) in photos.iter().enumerate() {
        form = form.part(
            "photo",
            reqwest::multipart::Part::bytes(p.clone())
                .file_name(format!("fan-{}.jpg", i + 1))
                .mime_str("image/jpeg")
                .unwrap(),
        );
    }
    let r = h.http.post(url).multipart(form).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn approve(h: &Harness, url: &str, edits: &[(&str, &str)]) -> (u16, String) {
    let page = h.http.get(url).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    let rev = hidden(&page, "revision");
    // Every "needs your eyes" field ticked, as a reviewer who checked them.
    let ticks = ticks(&page);
    let mut form = vec![
        ("decision", "approve"),
        ("csrf", csrf.as_str()),
        ("revision", rev.as_str()),
    ];
    form.extend(ticks.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    form.extend_from_slice(edits);
    let r = h.http.post(url).form(&form).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn work_type_id(h: &Harness, name: &str) -> String {
    h.stack
        .emulator
        .records("WorkType")
        .into_iter()
        .find(|w| w["Name"] == name)
        .and_then(|w| w["Id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("the demo org has a work type {name:?}"))
}

#[tokio::test]
async fn a_work_order_report_with_photos_is_written_once_with_number_work_type_and_photos() {
    let h = Harness::start().await;
    let (asset, _) = h.first_asset();
    let scan = work_order_link(&h);
    // The dev home page shows that code next to the Case one.
    let home = h
        .http
        .get(format!("{}/", h.stack.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for wf in ["field-service-case", WORKFLOW] {
        assert!(home.contains(&format!("/dev/qr/{asset}.{wf}.svg")), "{wf}");
    }
    let form = h
        .http
        .get(&scan)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("Field service work order") && form.contains("up to 5"),
        "{form}"
    );

    let notes = "Condenser fan bearing is worn and noisy, needs repair before it seizes. Replace the bearing.";
    let photos = [a_jpeg(10), a_jpeg(200)];
    let (status, page) = submit_with_photos(&h, &scan, notes, &photos).await;
    assert_eq!(status, 201, "{page}");
    let id = reference(&page);

    // Mailed to the Work Order workflow's reviewers; both photos shown.
    let url = h.review_url(1).await;
    assert_eq!(h.json("/dev/outbox").await[0]["to"], "dispatch@example.com");
    let p = wait_status(&h, &id, Status::PendingReview).await;
    assert_eq!(p.workflow.as_str(), WORKFLOW);
    assert_eq!(p.current().unwrap().fields["WorkTypeId"].value, "Repair");
    let review = h.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(review.contains("2 photos"), "{review}");
    for (n, want) in photos.iter().enumerate() {
        let r = h
            .http
            .get(format!("{url}/photo/{}", n + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().await.unwrap().to_vec(), want, "photo {}", n + 1);
    }
    for bad in ["3", "0", "01", "x"] {
        let r = h
            .http
            .get(format!("{url}/photo/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "photo/{bad}");
    }

    let (s, body) = approve(&h, &url, &[]).await;
    assert_eq!(s, 200, "{body}");
    let p = wait_status(&h, &id, Status::Committed).await;

    // Exactly one WorkOrder, numbered by the org, pointing at the work
    // type by id, with the asset, its account and the photos.
    let orders = h.stack.emulator.records("WorkOrder");
    assert_eq!(orders.len(), 1, "{orders:?}");
    let wo = &orders[0];
    assert!(h.cases().is_empty(), "no Case for a Work Order report");
    assert_eq!(wo["WorkOrderNumber"], "00000001");
    assert_eq!(wo["Fieldgate_Proposal_Id__c"], id.as_str());
    assert_eq!(wo["WorkTypeId"], work_type_id(&h, "Repair").as_str());
    assert_eq!(wo["AssetId"], asset.as_str());
    assert!(wo["AccountId"].as_str().unwrap().starts_with("001"));
    assert_eq!(wo["Status"], "New");
    let approved = p.current().unwrap().values();
    assert_eq!(wo["Subject"], approved["Subject"]);
    assert_eq!(wo["Priority"], approved["Priority"]);
    assert!(
        p.commit.readback_mismatches.is_empty(),
        "{:?}",
        p.commit.readback_mismatches
    );
    let wo_id = wo["Id"].as_str().unwrap();
    assert!(wo_id.starts_with("0WO"));
    let files = h.stack.emulator.content_versions_linked_to(wo_id);
    assert_eq!(files.len(), 2);
    let mut stored: Vec<Vec<u8>> = files
        .iter()
        .map(|f| {
            h.stack
                .emulator
                .content_version_data(f["Id"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    stored.sort();
    let mut sent = photos.to_vec();
    sent.sort();
    assert_eq!(stored, sent);

    // One handoff, counting the photos.
    let handoffs = h.handoffs().await;
    assert_eq!(handoffs.len(), 1);
    let m = &handoffs[0];
    assert_eq!(m["workflow"], WORKFLOW);
    assert_eq!(m["object"], "WorkOrder");
    assert_eq!(m["salesforce_id"], wo_id);
    assert_eq!(m["photos"], 2);

    // A second commit drive (a redelivery) writes nothing more.
    h.stack.settled().await;
    assert_eq!(h.stack.emulator.records("WorkOrder").len(), 1);
    assert_eq!(h.stack.emulator.content_versions_linked_to(wo_id).len(), 2);
}

#[tokio::test]
async fn a_work_type_the_org_lacks_goes_back_to_the_reviewer() {
    // The shipped workflow with one more work type, which the org has not.
    let text = fieldgate::workflows::FIELD_SERVICE_WORK_ORDER.replace(
        "\"Installation\"]",
        "\"Installation\", \"Decommissioning\"]",
    );
    let wf = Workflow::from_toml("wo.toml", &text).unwrap();
    let h = Harness::build()
        .workflows(Workflows::from_workflows(vec![wf]))
        .start()
        .await;
    let scan = h.stack.qr_url(&h.first_asset().0);
    let (status, page) =
        submit_with_photos(&h, &scan, "Old chiller to be taken out of service.", &[]).await;
    assert_eq!(status, 201, "{page}");
    let id = reference(&page);
    let url = h.review_url(1).await;
    let (s, body) = approve(&h, &url, &[("WorkTypeId", "Decommissioning")]).await;
    assert_eq!(s, 200, "{body}");
    let p = wait_status(&h, &id, Status::NeedsAttention).await;
    let problem = p.commit.last_error.clone().unwrap();
    assert_eq!(problem.code, "LOOKUP_NOT_FOUND");
    assert!(
        problem
            .message
            .contains("no WorkType with Name \"Decommissioning\""),
        "{}",
        problem.message
    );
    assert_eq!(problem.fields, ["WorkTypeId"]);
    assert!(
        h.stack.emulator.records("WorkOrder").is_empty(),
        "nothing written"
    );
    // The reviewer's new link shows why; picking a work type the org has
    // writes it.
    let second = h.review_url(2).await;
    let page = h
        .http
        .get(&second)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Decommissioning"), "{page}");
    let (s, body) = approve(&h, &second, &[("WorkTypeId", "Inspection")]).await;
    assert_eq!(s, 200, "{body}");
    wait_status(&h, &id, Status::Committed).await;
    let orders = h.stack.emulator.records("WorkOrder");
    assert_eq!(orders.len(), 1);
    assert_eq!(
        orders[0]["WorkTypeId"],
        work_type_id(&h, "Inspection").as_str()
    );
}
