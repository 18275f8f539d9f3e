//! The proposal item as DynamoDB holds it, and stream records of its
//! changes: the embedded store emits exactly what a DynamoDB stream with
//! `NEW_AND_OLD_IMAGES` would, so the stream handlers run unchanged.

use crate::domain::{Proposal, ProposalId, Status};
use aws_lambda_events::dynamodb::{EventRecord, StreamRecord, StreamViewType};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_dynamo::{AttributeValue, Item};

pub fn proposal_pk(id: ProposalId) -> String {
    format!("P#{id}")
}

/// The intake's inbox item of a proposal (`R#{id}`): what the public
/// functions write, since their IAM role may not write `P#` at all. The
/// structure step alone turns it into the proposal item (see
/// `aws::dynamodb`).
pub fn inbox_pk(id: ProposalId) -> String {
    format!("R#{id}")
}
pub const META: &str = "META";

/// The proposal item: key attributes, the GSI attributes (`gsi_status`,
/// `created_at` as sortable text) and the proposal document.
pub fn proposal_item(p: &Proposal) -> Item {
    let mut item: Item = serde_dynamo::to_item(p).expect("a proposal is a plain document");
    item.insert("PK".into(), AttributeValue::S(proposal_pk(p.id)));
    item.insert("SK".into(), AttributeValue::S(META.into()));
    item.insert(
        "gsi_status".into(),
        AttributeValue::S(p.status.as_str().into()),
    );
    item.insert(
        "created_at".into(),
        AttributeValue::S(sortable_time(p.created_at)),
    );
    item
}

/// RFC 3339 in UTC with a fixed nine-digit fraction, so that text order is
/// time order (the `by_status` index sorts on it); still parses as RFC 3339.
pub fn sortable_time(t: crate::domain::Timestamp) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

pub fn proposal_from_item(item: Item) -> Result<Proposal, serde_dynamo::Error> {
    serde_dynamo::from_item(item)
}

fn keys(id: ProposalId) -> Item {
    let mut k = Item::from(std::collections::HashMap::<String, AttributeValue>::new());
    k.insert("PK".into(), AttributeValue::S(proposal_pk(id)));
    k.insert("SK".into(), AttributeValue::S(META.into()));
    k
}

/// A stream record for a write of the proposal item.
pub fn change_record(old: Option<&Proposal>, new: &Proposal, sequence: u64) -> EventRecord {
    let mut change = StreamRecord::default();
    change.approximate_creation_date_time = chrono_now();
    change.keys = keys(new.id);
    change.new_image = proposal_item(new);
    if let Some(o) = old {
        change.old_image = proposal_item(o);
    }
    change.sequence_number = Some(format!("{sequence:021}"));
    change.size_bytes = 0;
    change.stream_view_type = Some(StreamViewType::NewAndOldImages);
    let mut rec = EventRecord::default();
    rec.aws_region = "local".into();
    rec.change = change;
    rec.event_id = format!("{sequence}");
    rec.event_name = if old.is_some() { "MODIFY" } else { "INSERT" }.into();
    rec.event_source = Some("aws:dynamodb".into());
    rec.event_version = Some("1.1".into());
    rec
}

/// A stream record that carries only what the steps read: the proposal's
/// key and its new status (the embedded outbox keeps no images).
pub fn status_record(id: ProposalId, status: Status, sequence: u64, inserted: bool) -> EventRecord {
    let mut change = StreamRecord::default();
    change.approximate_creation_date_time = chrono_now();
    change.keys = keys(id);
    let mut image = keys(id);
    image.insert("status".into(), AttributeValue::S(status.as_str().into()));
    change.new_image = image;
    change.sequence_number = Some(format!("{sequence:021}"));
    change.stream_view_type = Some(StreamViewType::NewAndOldImages);
    let mut rec = EventRecord::default();
    rec.aws_region = "local".into();
    rec.change = change;
    rec.event_id = format!("{sequence}");
    rec.event_name = if inserted { "INSERT" } else { "MODIFY" }.into();
    rec.event_source = Some("aws:dynamodb".into());
    rec.event_version = Some("1.1".into());
    rec
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The proposal id and new status a record is about, if it is a proposal
/// item at all (audit events and caches share the table and are ignored).
/// An inbox item (`R#`) counts only as RECEIVED: it is written by the
/// public functions, so whatever else it claims is not a proposal's state
/// (a forged "APPROVED" inbox item never reaches the commit step).
pub fn subject_of(rec: &EventRecord) -> Option<(ProposalId, Option<Status>)> {
    let pk = match rec.change.keys.get("PK") {
        Some(AttributeValue::S(s)) => s,
        _ => return None,
    };
    match rec.change.keys.get("SK") {
        Some(AttributeValue::S(s)) if s == META => {}
        _ => return None,
    }
    let (id, inbox) = match (pk.strip_prefix("P#"), pk.strip_prefix("R#")) {
        (Some(id), _) => (id, false),
        (_, Some(id)) => (id, true),
        _ => return None,
    };
    let id = id.parse().ok()?;
    let status = match rec.change.new_image.get("status") {
        Some(AttributeValue::S(s)) => s.parse().ok(),
        _ => None,
    };
    if inbox && status != Some(Status::Received) {
        return None;
    }
    Some((id, status))
}

/// The proposal a record's new image holds, if it is a whole proposal item
/// (`P#`, written only by the privileged steps) about `id` in `status`.
/// `None` for inbox items (untrusted), for the embedded outbox's records
/// (key and status only) and for anything that does not parse: the step
/// then reads the store. The image is the item as of that write, possibly
/// older than the stored one; every write made from it is conditional on
/// its version, so a stale image costs a lost race, never a wrong write.
pub fn proposal_image(rec: &EventRecord, id: ProposalId, status: Status) -> Option<Proposal> {
    match rec.change.keys.get("PK") {
        Some(AttributeValue::S(pk)) if pk.starts_with("P#") => {}
        _ => return None,
    }
    if !rec.change.new_image.contains_key("version") {
        return None;
    }
    let p = proposal_from_item(rec.change.new_image.clone()).ok()?;
    (p.id == id && p.status == status).then_some(p)
}

/// The new report a record's new image shows: an inbox item (`R#`), or a
/// `P#` item in RECEIVED (stored before inbox items), about `id`. It is
/// what the intake wrote, so as untrusted as reading that item: the
/// structure step admits it (`Proposal::admitted`) as it admits what it
/// reads. `None` for the embedded outbox's records (key and status only)
/// and for anything that does not parse: the step then reads the store.
pub fn received_image(rec: &EventRecord, id: ProposalId) -> Option<Proposal> {
    match rec.change.keys.get("PK") {
        Some(AttributeValue::S(pk)) if pk.starts_with("R#") || pk.starts_with("P#") => {}
        _ => return None,
    }
    if !rec.change.new_image.contains_key("version") {
        return None;
    }
    let p = proposal_from_item(rec.change.new_image.clone()).ok()?;
    (p.id == id && p.status == Status::Received).then_some(p)
}

/// Runs `step` for each record about a proposal whose new status is one of
/// `statuses`, in order; stops at the first failure and reports it, so that
/// record and the ones after it are delivered again.
pub async fn drive<F, Fut, E>(
    event: &aws_lambda_events::dynamodb::Event,
    statuses: &[Status],
    step_name: &str,
    mut step: F,
) -> DynamoDbEventResponse
where
    F: FnMut(ProposalId) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    drive_images(event, statuses, step_name, |id, _| step(id)).await
}

/// [`drive`], handing the step the record's [`proposal_image`] too, so a
/// step that can act on it needs no read first.
pub async fn drive_images<F, Fut, E>(
    event: &aws_lambda_events::dynamodb::Event,
    statuses: &[Status],
    step_name: &str,
    step: F,
) -> DynamoDbEventResponse
where
    F: FnMut(ProposalId, Option<Proposal>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    drive_with(event, statuses, step_name, proposal_image, step).await
}

/// [`drive_images`] with the image taken by `image` (the structure step
/// takes [`received_image`]).
pub async fn drive_with<I, F, Fut, E>(
    event: &aws_lambda_events::dynamodb::Event,
    statuses: &[Status],
    step_name: &str,
    image: I,
    mut step: F,
) -> DynamoDbEventResponse
where
    I: Fn(&EventRecord, ProposalId, Status) -> Option<Proposal>,
    F: FnMut(ProposalId, Option<Proposal>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    for rec in &event.records {
        let Some((id, Some(status))) = subject_of(rec) else {
            continue;
        };
        if !statuses.contains(&status) {
            continue;
        }
        if let Err(e) = step(id, image(rec, id, status)).await {
            tracing::error!(proposal = %id, step = step_name, error = %crate::Chain(&e), "step failed; will be retried");
            return batch_response(Some(rec));
        }
    }
    batch_response(None)
}

/// Lambda's partial-batch answer: the first failed record and everything
/// after it are retried, so report only the first failure.
pub fn batch_response(first_failure: Option<&EventRecord>) -> DynamoDbEventResponse {
    let mut resp = DynamoDbEventResponse::default();
    if let Some(rec) = first_failure {
        let mut f = DynamoDbBatchItemFailure::default();
        f.item_identifier = rec.change.sequence_number.clone();
        resp.batch_item_failures.push(f);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_stored_with_one_photo_read_as_a_list_of_photos() {
        let now = crate::domain::fixtures::at(0);
        let mut p = crate::conformance::received(now).proposal;
        let photo = crate::domain::PhotoRef {
            key: format!("photos/{}.jpg", p.id),
            content_type: "image/jpeg".into(),
            bytes: 1234,
            sha256: "ab".into(),
            file_name: "unit.jpg".into(),
        };
        // An item written before there could be several photos: `photo`
        // (a map, or NULL) and `photo_version_id` (a string, or NULL).
        let mut old: serde_json::Value = serde_json::to_value(&p).unwrap();
        old["intake"].as_object_mut().unwrap().remove("photos");
        old["intake"]["photo"] = serde_json::to_value(&photo).unwrap();
        old["commit"]
            .as_object_mut()
            .unwrap()
            .remove("photo_version_ids");
        old["commit"]["photo_version_id"] = "068000000000001AAA".into();
        let item: Item = serde_dynamo::to_item(&old).unwrap();
        let back = proposal_from_item(item).unwrap();
        assert_eq!(back.intake.photos, vec![photo.clone()]);
        assert_eq!(back.commit.photo_version_ids, vec!["068000000000001AAA"]);
        old["intake"]["photo"] = serde_json::Value::Null;
        old["commit"]["photo_version_id"] = serde_json::Value::Null;
        let back = proposal_from_item(serde_dynamo::to_item(&old).unwrap()).unwrap();
        assert!(back.intake.photos.is_empty() && back.commit.photo_version_ids.is_empty());
        // Several photos round-trip as a list.
        p.intake.photos = vec![photo.clone(), photo];
        assert_eq!(proposal_from_item(proposal_item(&p)).unwrap(), p);
    }

    #[test]
    fn items_round_trip_and_records_name_their_subject() {
        let now = crate::domain::fixtures::at(0);
        let t = crate::conformance::received(now);
        let p = t.proposal;
        let back = proposal_from_item(proposal_item(&p)).unwrap();
        assert_eq!(back, p);
        let early = sortable_time(p.created_at);
        let later = sortable_time(p.created_at + time::Duration::milliseconds(1));
        let much_later = sortable_time(p.created_at + time::Duration::seconds(1));
        assert!(
            early < later && later < much_later,
            "{early} {later} {much_later}"
        );
        assert_eq!(early.len(), "2026-01-01T00:00:00.000000000Z".len());
        let rec = change_record(None, &p, 7);
        assert_eq!(rec.event_name, "INSERT");
        assert_eq!(subject_of(&rec), Some((p.id, Some(Status::Received))));
        // What Lambda would deliver survives JSON.
        let json = serde_json::to_string(&rec).unwrap();
        let again: EventRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(subject_of(&again), Some((p.id, Some(Status::Received))));
        assert_eq!(
            proposal_image(&again, p.id, Status::Received),
            Some(p.clone())
        );
        assert_eq!(proposal_image(&again, p.id, Status::Approved), None);
        assert_eq!(proposal_from_item(again.change.new_image).unwrap(), p);
        // The embedded outbox's records carry no image: the step reads.
        let bare = status_record(p.id, Status::Received, 8, true);
        assert_eq!(proposal_image(&bare, p.id, Status::Received), None);
        // An inbox item is a subject as RECEIVED only.
        let mut inbox = rec.clone();
        let r = AttributeValue::S(format!("R#{}", p.id));
        inbox.change.keys.insert("PK".into(), r);
        assert_eq!(subject_of(&inbox), Some((p.id, Some(Status::Received))));
        assert_eq!(
            proposal_image(&inbox, p.id, Status::Received),
            None,
            "an inbox item's image is never taken for the proposal"
        );
        inbox
            .change
            .new_image
            .insert("status".into(), AttributeValue::S("APPROVED".into()));
        assert_eq!(subject_of(&inbox), None, "an inbox item is never APPROVED");
        let resp = batch_response(Some(&rec));
        assert_eq!(
            resp.batch_item_failures[0].item_identifier.as_deref(),
            Some("000000000000000000007")
        );
    }
}
