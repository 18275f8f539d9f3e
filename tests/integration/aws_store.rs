//! The DynamoDB store against DynamoDB Local: the same conformance suite as
//! the embedded store, the single-table layout, atomicity of a transition,
//! and the stream poller that feeds the steps like an event-source mapping.

use crate::aws;

use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_dynamodb::types::AttributeValue;
use fieldgate::aws::poller::StreamFilter;
use fieldgate::clock::{Clock, SystemClock};
use fieldgate::domain::{Actor, Proposal, ProposalId, Status, Timestamp, Transition};
use fieldgate::ports::{ProposalStore, StoreError};
use std::collections::HashMap;

/// DynamoDB keeps real times (TTL, windows): the system clock.
fn now() -> Timestamp {
    SystemClock.now()
}

fn received() -> Transition {
    fieldgate::conformance::received(now())
}

fn step(p: &Proposal, to: Status) -> Transition {
    p.transition(
        to,
        Actor::system("test"),
        "step",
        serde_json::json!({}),
        now(),
        |_| {},
    )
    .unwrap()
}

fn key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("PK".to_owned(), AttributeValue::S(pk)),
        ("SK".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_store_passes_the_conformance_suite() {
    let t = aws::fresh_table(&aws::sdk().await).await;
    fieldgate::conformance::run_all(t.store.clone()).await;
}

#[tokio::test]
async fn items_follow_the_single_table_design() {
    let t = aws::fresh_table(&aws::sdk().await).await;
    let r = received();
    let id = r.proposal.id;
    t.store.create(&r, Some("idem-1")).await.unwrap();
    let next = step(&r.proposal, Status::PendingReview);
    t.store.apply(&next).await.unwrap();
    let ddb = t.store.client();
    let get = |pk: String, sk: &'static str| {
        ddb.get_item()
            .table_name(t.store.table())
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
    };
    let item = get(format!("P#{id}"), "META").await.unwrap().item.unwrap();
    assert_eq!(
        item["gsi_status"],
        AttributeValue::S("PENDING_REVIEW".into())
    );
    assert_eq!(item["status"], AttributeValue::S("PENDING_REVIEW".into()));
    assert_eq!(item["version"], AttributeValue::N("2".into()));
    let created = item["created_at"].as_s().unwrap();
    assert_eq!(created.len(), 30, "fixed-width sortable time: {created}");
    let ttl: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert!(
        ttl > now().unix_timestamp() + 300 * 86_400,
        "TTL set: {ttl}"
    );
    // The intake wrote the inbox item and the "received" event (R#); the
    // structure step's move wrote the proposal and the events after it (P#)
    // and marked the inbox item moved: out of the index, no longer RECEIVED.
    for (pk, sk, action) in [("R#", "EV#000001", "received"), ("P#", "EV#000002", "step")] {
        let ev = get(format!("{pk}{id}"), sk).await.unwrap().item.unwrap();
        assert_eq!(ev["action"], AttributeValue::S(action.into()), "{sk}");
        assert!(ev.contains_key("expires_at"), "{sk} has a TTL");
    }
    assert!(
        get(format!("P#{id}"), "EV#000001")
            .await
            .unwrap()
            .item
            .is_none(),
        "the received event is not copied"
    );
    let inbox = get(format!("R#{id}"), "META").await.unwrap().item.unwrap();
    assert_eq!(inbox["status"], AttributeValue::S("MOVED".into()));
    assert!(!inbox.contains_key("gsi_status"), "out of the index");
    assert_eq!(inbox["version"], AttributeValue::N("1".into()));
    let idem = get("I#idem-1".into(), "META").await.unwrap().item.unwrap();
    assert_eq!(idem["proposal"], AttributeValue::S(id.to_string()));
    assert!(idem.contains_key("expires_at"));
    // The GSI answers by status, newest first.
    let q = ddb
        .query()
        .table_name(t.store.table())
        .index_name("by_status")
        .key_condition_expression("gsi_status = :s")
        .expression_attribute_values(":s", AttributeValue::S("PENDING_REVIEW".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(q.items().len(), 1);
    // A rate-limit counter is one item per key and window size: the
    // current window (its end and count) and the previous one's count,
    // with a TTL.
    assert_eq!(
        t.store
            .count_in_window("code-1", 600, now())
            .await
            .unwrap()
            .current,
        1
    );
    let window = fieldgate::domain::window_end(now(), 600);
    let rl = get("RL#code-1#w600".into(), "META")
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(rl["c"], AttributeValue::N("1".into()));
    assert_eq!(rl["w"], AttributeValue::N(window.to_string()));
    assert_eq!(rl["p"], AttributeValue::N("0".into()));
    assert!(rl.contains_key("expires_at"));
    // A container whose clock is a window behind counts in the newer
    // window instead of resetting it.
    let next = now() + time::Duration::seconds(600);
    let counted = |at| t.store.count_in_window("code-1", 600, at);
    assert_eq!(
        counted(next).await.unwrap(),
        fieldgate::domain::WindowCount {
            current: 1,
            previous: 1
        }
    );
    assert_eq!(
        counted(now()).await.unwrap(),
        fieldgate::domain::WindowCount {
            current: 2,
            previous: 1
        }
    );
}

#[tokio::test]
async fn a_transition_is_all_or_nothing() {
    let t = aws::fresh_table(&aws::sdk().await).await;
    let r = received();
    t.store.create(&r, None).await.unwrap();
    let next = step(&r.proposal, Status::PendingReview);
    // Someone already wrote event 2: the proposal must not move either.
    let mut squatter = key(format!("P#{}", r.proposal.id), "EV#000002");
    squatter.insert("action".into(), AttributeValue::S("squatter".into()));
    t.store
        .client()
        .put_item()
        .table_name(t.store.table())
        .set_item(Some(squatter))
        .send()
        .await
        .unwrap();
    assert_eq!(t.store.apply(&next).await, Err(StoreError::Conflict));
    let stored = t.store.get(r.proposal.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Received);
    assert_eq!(stored.version, r.proposal.version);
    // And a proposal that does not exist cannot be transitioned.
    let ghost = received();
    let ghost_next = step(&ghost.proposal, Status::PendingReview);
    assert_eq!(t.store.apply(&ghost_next).await, Err(StoreError::Conflict));
    assert_eq!(t.store.get(ghost.proposal.id).await.unwrap(), None);
}

#[tokio::test]
async fn chained_transitions_are_one_write() {
    let t = aws::fresh_table(&aws::sdk().await).await;
    let r = received();
    t.store.create(&r, None).await.unwrap();
    let a = step(&r.proposal, Status::PendingReview);
    let b = step(&a.proposal, Status::PendingReview);
    let c = step(&b.proposal, Status::PendingReview);
    // Event 3 (the second of the chain) exists already: neither the move
    // nor event 2 may land.
    let mut squatter = key(format!("P#{}", r.proposal.id), "EV#000003");
    squatter.insert("action".into(), AttributeValue::S("squatter".into()));
    t.store
        .client()
        .put_item()
        .table_name(t.store.table())
        .set_item(Some(squatter))
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.store.apply_all(&[a.clone(), b.clone()]).await,
        Err(StoreError::Conflict)
    );
    let stored = t.store.get(r.proposal.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.version), (Status::Received, 1));
    let ev2 = t
        .store
        .client()
        .get_item()
        .table_name(t.store.table())
        .set_key(Some(key(format!("P#{}", r.proposal.id), "EV#000002")))
        .send()
        .await
        .unwrap();
    assert!(ev2.item.is_none(), "event 2 was not written alone");
    // Transitions that do not follow one another are refused unsent.
    let refused = t.store.apply_all(&[a.clone(), c]).await;
    assert!(
        matches!(refused, Err(StoreError::Backend { .. })),
        "{refused:?}"
    );
    assert!(t.store.apply_all(&[]).await.is_err());
}

#[tokio::test]
async fn the_poller_filters_like_the_template_and_redelivers_from_the_failure() {
    let t = aws::fresh_table(&aws::sdk().await).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = received();
        t.store.create(&r, None).await.unwrap();
        ids.push(r.proposal.id);
    }
    // A move out of RECEIVED is not the structure step's business.
    let p0 = t.store.get(ids[0]).await.unwrap().unwrap();
    t.store
        .apply(&step(&p0, Status::PendingReview))
        .await
        .unwrap();
    t.store
        .cache_asset(&fieldgate::ports::CachedAsset {
            asset: p0.asset.clone(),
            fetched_at: now(),
        })
        .await
        .unwrap();

    let mut poller = t.poller(StreamFilter::structure());
    poller.max_retries = 1;
    let mut seen: Vec<Vec<ProposalId>> = Vec::new();
    // First delivery: fail the second record.
    let polled = poller
        .poll(|ev| {
            let batch: Vec<ProposalId> = ev
                .records
                .iter()
                .map(|r| fieldgate::stream::subject_of(r).unwrap().0)
                .collect();
            seen.push(batch);
            let mut resp = DynamoDbEventResponse::default();
            let mut f = DynamoDbBatchItemFailure::default();
            f.item_identifier = ev.records[1].change.sequence_number.clone();
            resp.batch_item_failures.push(f);
            async move { resp }
        })
        .await
        .unwrap();
    assert_eq!(seen, vec![ids.clone()], "only the three RECEIVED inserts");
    assert_eq!(polled.delivered, 3);
    assert_eq!(polled.failures, 2);
    // Redelivery starts at the failed record; this time all succeed.
    seen.clear();
    let polled = poller
        .poll(|ev| {
            seen.push(
                ev.records
                    .iter()
                    .map(|r| fieldgate::stream::subject_of(r).unwrap().0)
                    .collect(),
            );
            async { DynamoDbEventResponse::default() }
        })
        .await
        .unwrap();
    assert_eq!(seen, vec![ids[1..].to_vec()]);
    assert_eq!(polled.failures, 0);
    // Nothing is delivered twice once acknowledged.
    let polled = poller
        .poll(|_| async { panic!("nothing left to deliver") })
        .await
        .unwrap();
    assert_eq!(polled.delivered, 0);

    // A record that keeps failing goes to the failure list after the retries.
    let r = received();
    t.store.create(&r, None).await.unwrap();
    let fail_all = |ev: aws_lambda_events::dynamodb::Event| {
        let mut resp = DynamoDbEventResponse::default();
        let mut f = DynamoDbBatchItemFailure::default();
        f.item_identifier = ev.records[0].change.sequence_number.clone();
        resp.batch_item_failures.push(f);
        async move { resp }
    };
    poller.poll(fail_all).await.unwrap();
    assert!(poller.failed.is_empty(), "one retry left");
    poller.poll(fail_all).await.unwrap();
    assert_eq!(poller.failed.len(), 1);
    assert_eq!(
        fieldgate::stream::subject_of(&poller.failed[0]).unwrap().0,
        r.proposal.id
    );
}

/// A table written before inbox items holds RECEIVED proposals in `P#`:
/// the structure step's transition still moves them, in place.
#[tokio::test]
async fn a_received_proposal_stored_before_inbox_items_still_moves() {
    let t = aws::fresh_table(&aws::sdk().await).await;
    let r = received();
    let id = r.proposal.id;
    let client = t.store.client();
    let mut event: HashMap<String, AttributeValue> = serde_dynamo::to_item(&r.event).unwrap();
    event.insert("PK".into(), AttributeValue::S(format!("P#{id}")));
    event.insert("SK".into(), AttributeValue::S("EV#000001".into()));
    for item in [fieldgate::stream::proposal_item(&r.proposal).into(), event] {
        client
            .put_item()
            .table_name(t.store.table())
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(t.store.get_new(id).await.unwrap(), Some(r.proposal.clone()));
    let next = step(&r.proposal, Status::PendingReview);
    t.store.apply(&next).await.unwrap();
    assert_eq!(t.store.apply(&next).await, Err(StoreError::Conflict));
    assert_eq!(t.store.get(id).await.unwrap(), Some(next.proposal));
    let events = t.store.events(id).await.unwrap();
    assert_eq!(events.len(), 2);
    fieldgate::domain::verify_chain(&events).unwrap();
}
