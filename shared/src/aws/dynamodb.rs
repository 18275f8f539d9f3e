//! The DynamoDB store: one table (see DESIGN.md), every transition one
//! `TransactWriteItems` that writes the proposal on the condition of its
//! version and status and appends the audit event that cannot exist yet.
//!
//! A new proposal is written to its *inbox* item (`R#{id}`), not to `P#`:
//! the public functions (qr-intake, mcp) create proposals, and their IAM
//! role may write `R#` but never `P#` (`dynamodb:LeadingKeys`), so a
//! compromised one cannot write a proposal past RECEIVED. The structure
//! step's transition out of RECEIVED moves it: one transaction puts `P#{id}`
//! (which must not exist), its event, and marks the inbox item moved (on
//! the condition that it is still the RECEIVED one that was read). Reads
//! look at `P#` first, so an inbox item never shadows a proposal, and an
//! inbox item is only ever read as RECEIVED.
//!
//! | item | PK | SK |
//! |---|---|---|
//! | inbox item (the intake's write) | `R#{id}` | `META` |
//! | its "received" event | `R#{id}` | `EV#000001` |
//! | proposal (from structuring on) | `P#{id}` | `META` |
//! | audit event (from the second on) | `P#{id}` | `EV#{seq:06}` |
//! | asset cache | `A#{asset}` | `META` |
//! | rate-limit counter (current and previous window) | `RL#{key}#w{window size}` | `META` |
//! | idempotency key | `I#{key}` | `META` |
//! | assistant token | `T#{sha256 of the token}` | `META` |
//! | QR code revocation | `QR#{asset}#{workflow}` | `META` |
//!
//! GSI `by_status` (`gsi_status`, `created_at`); TTL attribute `expires_at`.

use crate::domain::{
    AssetId, AssistantToken, AuditEvent, Proposal, ProposalId, Status, Sticker, StickerRef,
    Timestamp, Transition, WindowCount, WorkflowId, window_end,
};
use crate::ports::{
    AssistantTokens, CachedAsset, CodeRevocation, Counted, Counter, Created, IntakeReads,
    IntakeView, ProposalStore, Quota, StoreError,
};
use crate::stream::{META, inbox_pk, proposal_from_item, proposal_item, proposal_pk};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification, TransactWriteItem, Update,
};
use std::collections::HashMap;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

pub const STATUS_INDEX: &str = "by_status";
/// The `status` of an inbox item once the structure step has moved it to
/// `P#`: no status the steps' stream filters or the index know.
pub const MOVED: &str = "MOVED";
/// How long an idempotency key is remembered (a retried form submission
/// arrives within minutes; a day is generous).
const IDEMPOTENCY_TTL_SECS: i64 = 86_400;
/// Asset cache items go away on their own after this; freshness is the
/// caller's (`CachedDirectory`) decision.
const ASSET_TTL_SECS: i64 = 7 * 86_400;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the table as `template.yaml` declares it (for tests and local
    /// runs against DynamoDB Local; in AWS the template owns the table).
    /// Returns the stream ARN.
    pub async fn create_table(client: &Client, table: &str) -> Result<String, StoreError> {
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(backend)
        };
        let key = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .map_err(backend)
        };
        let out = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("PK")?)
            .attribute_definitions(attr("SK")?)
            .attribute_definitions(attr("gsi_status")?)
            .attribute_definitions(attr("created_at")?)
            .key_schema(key("PK", KeyType::Hash)?)
            .key_schema(key("SK", KeyType::Range)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(STATUS_INDEX)
                    .key_schema(key("gsi_status", KeyType::Hash)?)
                    .key_schema(key("created_at", KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(backend)?,
            )
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(backend)?,
            )
            .send()
            .await
            .map_err(sdk)?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .map_err(backend)?,
            )
            .send()
            .await
            .map_err(sdk)?;
        out.table_description
            .and_then(|d| d.latest_stream_arn)
            .ok_or_else(|| StoreError::backend("DescribeTable", "the table has no stream"))
    }

    fn key(pk: String) -> Item {
        HashMap::from([
            ("PK".to_owned(), AttributeValue::S(pk)),
            ("SK".to_owned(), AttributeValue::S(META.to_owned())),
        ])
    }

    fn event_item(t: &Transition, pk: String) -> Result<Item, StoreError> {
        let mut item: Item = serde_dynamo::to_item(&t.event).map_err(backend)?;
        item.insert("PK".into(), AttributeValue::S(pk));
        item.insert("SK".into(), AttributeValue::S(event_sk(t.event.seq)));
        // The audit trail lives as long as the proposal it explains.
        item.insert(
            "expires_at".into(),
            AttributeValue::N(t.proposal.expires_at.to_string()),
        );
        Ok(item)
    }

    fn put(&self, item: Item, condition: &str) -> Result<TransactWriteItem, StoreError> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(condition)
                    .build()
                    .map_err(backend)?,
            )
            .build())
    }

    /// Runs one transaction. A failed condition is a lost race
    /// (`Conflict`); a clash with another transaction in flight is retried,
    /// because that other one may still fail and then ours must go through.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TxFailure> {
        self.transact_returning(items).await.map_err(|f| match f {
            TxFailed::Condition(failed) => {
                TxFailure::Condition(failed.into_iter().map(|(i, _)| i).collect())
            }
            TxFailed::Other(e) => TxFailure::Other(e),
        })
    }

    /// [`Self::transact`], with each failed condition's item as the
    /// service returned it (`ReturnValuesOnConditionCheckFailure`), when
    /// it did.
    async fn transact_returning(&self, items: Vec<TransactWriteItem>) -> Result<(), TxFailed> {
        let mut delay = Duration::from_millis(10);
        for attempt in 0.. {
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match res {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if let SdkError::ServiceError(se) = &err
                && let TransactWriteItemsError::TransactionCanceledException(tc) = se.err()
            {
                let codes: Vec<Option<&str>> =
                    tc.cancellation_reasons().iter().map(|r| r.code()).collect();
                let failed: Vec<(usize, Option<Item>)> = tc
                    .cancellation_reasons()
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                    .map(|(i, r)| (i, r.item().filter(|it| !it.is_empty()).cloned()))
                    .collect();
                if !failed.is_empty() {
                    return Err(TxFailed::Condition(failed));
                }
                if codes.contains(&Some("TransactionConflict")) && attempt < 12 {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(400));
                    continue;
                }
            }
            return Err(TxFailed::Other(sdk(err)));
        }
        unreachable!("the loop returns")
    }

    /// The transitions out of RECEIVED of a proposal still in its inbox
    /// item (`ts`, a chain: see `apply_all`): puts `P#{id}` (new) at the
    /// last one's state and their events, and marks the inbox item moved --
    /// on the condition that it is still the RECEIVED one at the version
    /// and chain head the first was made from -- in one transaction.
    /// Condition failures by position: 0 the proposal item exists, 1..=n an
    /// event exists, n + 1 the inbox item is not that one.
    async fn move_from_inbox(&self, ts: &[Transition]) -> Result<(), TxFailure> {
        let (t, last) = chain_ends(ts).map_err(TxFailure::Other)?;
        let id = t.proposal.id;
        let proposal: Item = proposal_item(&last.proposal).into();
        let mark_moved = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(inbox_pk(id))))
            // Out of the status index and of the structure stream's filter.
            .update_expression("SET #s = :moved, moved_at = :at REMOVE gsi_status")
            .condition_expression("#v = :v AND #s = :received AND last_event_hash = :h")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":moved", AttributeValue::S(MOVED.into()))
            .expression_attribute_values(
                ":at",
                AttributeValue::S(crate::stream::sortable_time(t.event.at)),
            )
            .expression_attribute_values(":v", AttributeValue::N(t.expected_version.to_string()))
            .expression_attribute_values(
                ":received",
                AttributeValue::S(Status::Received.as_str().into()),
            )
            .expression_attribute_values(":h", AttributeValue::S(t.event.prev.clone()))
            .build()
            .map_err(|e| TxFailure::Other(backend(e)))?;
        let mut items = vec![
            self.put(proposal, "attribute_not_exists(PK)")
                .map_err(TxFailure::Other)?,
        ];
        for t in ts {
            let event = Self::event_item(t, proposal_pk(id)).map_err(TxFailure::Other)?;
            items.push(
                self.put(event, "attribute_not_exists(PK)")
                    .map_err(TxFailure::Other)?,
            );
        }
        items.push(TransactWriteItem::builder().update(mark_moved).build());
        self.transact(items).await
    }

    /// Pages a `by_status` query (newest first) until `limit` proposals
    /// pass `keep` (given the proposal and whether its item is an inbox
    /// `R#` item) or the index ends. `cap_pages`: ask each page for no
    /// more than still wanted (only without a filter, which applies after
    /// the page's limit).
    async fn status_query(
        &self,
        q: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: usize,
        cap_pages: bool,
        keep: impl Fn(&Proposal, bool) -> bool,
    ) -> Result<Vec<Proposal>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        while out.len() < limit {
            let mut page = q.clone().set_exclusive_start_key(start.take());
            if cap_pages {
                page = page.limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX));
            }
            let page = page.send().await.map_err(sdk)?;
            for item in page.items.unwrap_or_default() {
                let inbox =
                    matches!(item.get("PK"), Some(AttributeValue::S(pk)) if pk.starts_with("R#"));
                let p = proposal_from_item(item.into()).map_err(backend)?;
                if keep(&p, inbox) {
                    out.push(p);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// A new proposal's transaction items (inbox item, its event, the
    /// idempotency key) and the idempotency key's position.
    fn create_items(
        &self,
        t: &Transition,
        idempotency_key: Option<&str>,
    ) -> Result<(Vec<TransactWriteItem>, Option<usize>), StoreError> {
        // The inbox item, in the partition the public functions may write.
        let mut inbox: Item = proposal_item(&t.proposal).into();
        let pk = inbox_pk(t.proposal.id);
        inbox.insert("PK".into(), AttributeValue::S(pk.clone()));
        let mut items = vec![
            self.put(inbox, "attribute_not_exists(PK)")?,
            self.put(Self::event_item(t, pk)?, "attribute_not_exists(PK)")?,
        ];
        let mut idem_at = None;
        if let Some(k) = idempotency_key {
            let mut idem = Self::key(format!("I#{k}"));
            idem.insert(
                "proposal".into(),
                AttributeValue::S(t.proposal.id.to_string()),
            );
            idem.insert(
                "expires_at".into(),
                AttributeValue::N(
                    (t.proposal.created_at.unix_timestamp() + IDEMPOTENCY_TTL_SECS).to_string(),
                ),
            );
            idem_at = Some(items.len());
            items.push(self.put(idem, "attribute_not_exists(PK)")?);
        }
        Ok((items, idem_at))
    }

    /// The answer to a create whose idempotency key was taken: the
    /// proposal that key made.
    async fn replayed(&self, idempotency_key: Option<&str>) -> Result<Created, StoreError> {
        let k = idempotency_key.ok_or_else(|| backend("no idempotency key was written"))?;
        self.idempotent(k)
            .await?
            .map(Created::Existing)
            .ok_or_else(|| backend("idempotency item vanished"))
    }

    /// A quota's counter update in a create's transaction, made from the
    /// counter as `seen`: one more in the window it holds, on the condition
    /// that it is still that window and its count below what the limit lets
    /// through; or, for a window it does not hold yet, the new window
    /// (count 1, the previous one's count carried), on the condition that
    /// it is still the window seen.
    fn quota_update(
        &self,
        q: &Quota,
        seen: Option<&Counter>,
        counts: WindowCount,
        now: Timestamp,
    ) -> Result<TransactWriteItem, StoreError> {
        let size = q.limit.window_secs.max(1);
        let end = window_end(now, size);
        let u = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(counter_pk(&q.key, size))))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let u = match seen {
            Some(c) if c.ends_at >= end => u
                .update_expression("ADD c :one SET expires_at = :exp")
                .condition_expression("w = :w AND (attribute_not_exists(c) OR c < :most)")
                .expression_attribute_values(":w", AttributeValue::N(c.ends_at.to_string()))
                .expression_attribute_values(
                    ":most",
                    AttributeValue::N(q.limit.most_current(c.previous, now).to_string()),
                )
                .expression_attribute_values(
                    ":exp",
                    AttributeValue::N((c.ends_at + size).to_string()),
                ),
            other => {
                let u = u
                    .update_expression("SET w = :w, c = :one, p = :p, expires_at = :exp")
                    .expression_attribute_values(":w", AttributeValue::N(end.to_string()))
                    .expression_attribute_values(
                        ":p",
                        AttributeValue::N(counts.previous.to_string()),
                    )
                    .expression_attribute_values(
                        ":exp",
                        AttributeValue::N((end + size).to_string()),
                    );
                match other {
                    Some(c) => u
                        .condition_expression("w = :old")
                        .expression_attribute_values(
                            ":old",
                            AttributeValue::N(c.ends_at.to_string()),
                        ),
                    None => u.condition_expression("attribute_not_exists(w)"),
                }
            }
        };
        Ok(TransactWriteItem::builder()
            .update(u.build().map_err(backend)?)
            .build())
    }

    /// Consistent reads of the items with these partition keys (and `SK`
    /// META), in one `BatchGetItem`; what the service leaves unprocessed
    /// is asked for again. By partition key; absent items are missing.
    async fn batch_get(&self, mut pks: Vec<String>) -> Result<HashMap<String, Item>, StoreError> {
        pks.sort();
        pks.dedup();
        let mut out = HashMap::new();
        if pks.is_empty() {
            return Ok(out);
        }
        let mut keys: Vec<Item> = pks.into_iter().map(Self::key).collect();
        let mut delay = Duration::from_millis(10);
        for _ in 0..8 {
            let ask = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(backend)?;
            let res = self
                .client
                .batch_get_item()
                .request_items(&self.table, ask)
                .send()
                .await
                .map_err(sdk)?;
            for item in res
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                if let Some(AttributeValue::S(pk)) = item.get("PK") {
                    out.insert(pk.clone(), item);
                }
            }
            match res.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(left) if !left.keys().is_empty() => {
                    keys = left.keys;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(400));
                }
                _ => return Ok(out),
            }
        }
        Err(backend("BatchGetItem left keys unprocessed"))
    }

    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map(|o| o.item)
            .map_err(sdk)
    }
}

/// The first and last of a chain of transitions, each made from the one
/// before's proposal; an empty or broken chain is a caller's bug.
fn chain_ends(ts: &[Transition]) -> Result<(&Transition, &Transition), StoreError> {
    let (Some(first), Some(last)) = (ts.first(), ts.last()) else {
        return Err(backend("no transitions to apply"));
    };
    for w in ts.windows(2) {
        let chained = w[1].expected_version == w[0].proposal.version
            && w[1].expected_status == Some(w[0].proposal.status)
            && w[1].proposal.id == w[0].proposal.id
            && w[1].event.prev == w[0].event.hash;
        if !chained {
            return Err(backend("transitions that do not follow one another"));
        }
    }
    Ok((first, last))
}

enum TxFailure {
    /// The conditions of these items (by position) failed.
    Condition(Vec<usize>),
    Other(StoreError),
}

enum TxFailed {
    /// The conditions of these items (by position) failed, with the item
    /// each failed on when the service returned it.
    Condition(Vec<(usize, Option<Item>)>),
    Other(StoreError),
}

fn event_sk(seq: u32) -> String {
    format!("EV#{seq:06}")
}

fn backend(e: impl Into<crate::ports::BoxError>) -> StoreError {
    StoreError::backend("DynamoDB", e)
}

fn sdk<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::backend("DynamoDB request", e)
}

/// The item of a rate-limit counter (`count_in_window`'s and the quotas').
fn counter_pk(key: &str, window_secs: i64) -> String {
    format!("RL#{key}#w{}", window_secs.max(1))
}

/// A counter item's state (`w`, `c`, `p`); `None` for an item without a
/// window (none was ever counted).
fn counter_of(item: &Item) -> Option<Counter> {
    Some(Counter {
        ends_at: num(item, "w").and_then(|w| i64::try_from(w).ok())?,
        count: num(item, "c").unwrap_or(0),
        previous: num(item, "p").unwrap_or(0),
    })
}

/// The counts an update of a rate-limit item returned.
fn window_count(item: Option<&Item>) -> Result<WindowCount, StoreError> {
    let item = item.ok_or_else(|| backend("counter update returned nothing"))?;
    Ok(WindowCount {
        current: num(item, "c").ok_or_else(|| backend("counter update returned no count"))?,
        previous: num(item, "p").unwrap_or(0),
    })
}

/// An asset cache item (`A#{asset}`), gone on its own after a while.
fn asset_item(asset: &CachedAsset) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(asset).map_err(backend)?;
    item.extend(DynamoStore::key(format!("A#{}", asset.asset.id.as_str())));
    item.insert(
        "expires_at".into(),
        AttributeValue::N((asset.fetched_at.unix_timestamp() + ASSET_TTL_SECS).to_string()),
    );
    Ok(item)
}

/// The proposal an idempotency item names.
fn idempotency_target(item: &Item) -> Result<ProposalId, StoreError> {
    match item.get("proposal") {
        Some(AttributeValue::S(id)) => id
            .parse()
            .map_err(|e| StoreError::backend("a stored proposal id", e)),
        _ => Err(backend("idempotency item without proposal")),
    }
}

fn num(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

#[async_trait]
impl ProposalStore for DynamoStore {
    async fn create(
        &self,
        t: &Transition,
        idempotency_key: Option<&str>,
    ) -> Result<Created, StoreError> {
        if t.expected_version != 0 {
            return Err(StoreError::Conflict);
        }
        let (items, idem_at) = self.create_items(t, idempotency_key)?;
        match self.transact(items).await {
            Ok(()) => Ok(Created::New),
            // The key names an earlier submission: that one wins, even when
            // this is a replay of the very same proposal.
            Err(TxFailure::Condition(failed)) if idem_at.is_some_and(|i| failed.contains(&i)) => {
                self.replayed(idempotency_key).await
            }
            Err(TxFailure::Condition(_)) => Err(StoreError::Conflict),
            Err(TxFailure::Other(e)) => Err(e),
        }
    }

    /// One transaction: the inbox item, its event, the idempotency key,
    /// the asset cache entry (unconditional: a cache) and one conditional
    /// update per quota's counter. A counter's condition is the count it
    /// was seen at being within the limit (or the window it was seen in,
    /// when this report starts a new one); one that fails returns the item
    /// as it is, and the transaction is made again from that.
    async fn create_counted(
        &self,
        t: &Transition,
        idempotency_key: Option<&str>,
        quotas: &[Quota],
        cache: Option<&CachedAsset>,
        now: Timestamp,
    ) -> Result<Counted, StoreError> {
        if t.expected_version != 0 {
            return Err(StoreError::Conflict);
        }
        let mut seen: Vec<Option<Counter>> = quotas.iter().map(|q| q.seen).collect();
        for _ in 0..6 {
            let mut updates = Vec::new();
            for (i, q) in quotas.iter().enumerate() {
                let counts = Counter::at(seen[i].as_ref(), q.limit.window_secs, now);
                let with_this = WindowCount {
                    current: counts.current + 1,
                    previous: counts.previous,
                };
                if q.limit.check(with_this, now).is_err() {
                    // A resend is answered by the report it repeats, never
                    // refused (as in the embedded store, which looks first).
                    if let Some(k) = idempotency_key
                        && let Some(id) = self.idempotent(k).await?
                    {
                        return Ok(Counted::Stored(Created::Existing(id)));
                    }
                    return Ok(Counted::Limited { quota: i, counts });
                }
                updates.push(self.quota_update(q, seen[i].as_ref(), counts, now)?);
            }
            let (mut items, idem_at) = self.create_items(t, idempotency_key)?;
            if let Some(entry) = cache {
                items.push(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.table)
                                .set_item(Some(asset_item(entry)?))
                                .build()
                                .map_err(backend)?,
                        )
                        .build(),
                );
            }
            let first_quota = items.len();
            items.extend(updates);
            let failed = match self.transact_returning(items).await {
                Ok(()) => return Ok(Counted::Stored(Created::New)),
                Err(TxFailed::Condition(failed)) => failed,
                Err(TxFailed::Other(e)) => return Err(e),
            };
            if idem_at.is_some_and(|at| failed.iter().any(|(i, _)| *i == at)) {
                return self.replayed(idempotency_key).await.map(Counted::Stored);
            }
            if failed.iter().any(|(i, _)| *i < first_quota) {
                return Err(StoreError::Conflict);
            }
            // Counters that moved since they were read: as they are now.
            for (i, item) in failed {
                let q = &quotas[i - first_quota];
                let item = match item {
                    Some(item) => Some(item),
                    None => {
                        self.get_item(Self::key(counter_pk(&q.key, q.limit.window_secs)))
                            .await?
                    }
                };
                seen[i - first_quota] = item.as_ref().and_then(counter_of);
            }
        }
        Err(backend(
            "the rate-limit counters kept moving under the report",
        ))
    }

    /// One `BatchGetItem` (consistent reads) of every item asked for.
    async fn intake_reads(&self, reads: &IntakeReads) -> Result<IntakeView, StoreError> {
        let code = reads
            .code
            .as_ref()
            .map(|(asset, workflow)| format!("QR#{asset}#{workflow}"));
        let asset = reads.asset.as_ref().map(|id| format!("A#{}", id.as_str()));
        let idem = reads.idempotency_key.as_ref().map(|k| format!("I#{k}"));
        let counters: Vec<String> = reads
            .counters
            .iter()
            .map(|(k, size)| counter_pk(k, *size))
            .collect();
        let mut pks: Vec<String> = code.iter().chain(&asset).chain(&idem).cloned().collect();
        pks.extend(counters.iter().cloned());
        let mut items = self.batch_get(pks).await?;
        let mut view = IntakeView::default();
        if let Some(item) = code.and_then(|pk| items.remove(&pk)) {
            view.revocation = Some(serde_dynamo::from_item(item).map_err(backend)?);
        }
        if let Some(item) = asset.and_then(|pk| items.remove(&pk)) {
            view.asset = Some(serde_dynamo::from_item(item).map_err(backend)?);
        }
        if let Some(item) = idem.and_then(|pk| items.get(&pk)) {
            view.existing = Some(idempotency_target(item)?);
        }
        view.counters = counters
            .iter()
            .map(|pk| items.get(pk).and_then(counter_of))
            .collect();
        Ok(view)
    }

    async fn apply(&self, t: &Transition) -> Result<(), StoreError> {
        self.apply_all(std::slice::from_ref(t)).await
    }

    async fn apply_all(&self, ts: &[Transition]) -> Result<(), StoreError> {
        let (t, last) = chain_ends(ts)?;
        let Some(expected_status) = t.expected_status else {
            return Err(StoreError::Conflict);
        };
        if expected_status == Status::Received {
            match self.move_from_inbox(ts).await {
                // No inbox item at that version: a proposal stored in `P#`
                // already in RECEIVED (before inbox items) moves in place.
                Err(TxFailure::Condition(failed)) if failed.contains(&(ts.len() + 1)) => {}
                Ok(()) => return Ok(()),
                Err(TxFailure::Condition(_)) => return Err(StoreError::Conflict),
                Err(TxFailure::Other(e)) => return Err(e),
            }
        }
        let proposal: Item = proposal_item(&last.proposal).into();
        let put_proposal = TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(proposal))
                    .condition_expression("#v = :v AND #s = :s")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_values(
                        ":v",
                        AttributeValue::N(t.expected_version.to_string()),
                    )
                    .expression_attribute_values(
                        ":s",
                        AttributeValue::S(expected_status.as_str().into()),
                    )
                    .build()
                    .map_err(backend)?,
            )
            .build();
        let mut items = vec![put_proposal];
        for t in ts {
            items.push(self.put(
                Self::event_item(t, proposal_pk(t.proposal.id))?,
                "attribute_not_exists(PK)",
            )?);
        }
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(TxFailure::Condition(_)) => Err(StoreError::Conflict),
            Err(TxFailure::Other(e)) => Err(e),
        }
    }

    async fn get(&self, id: ProposalId) -> Result<Option<Proposal>, StoreError> {
        // `P#` first: once a proposal exists, no inbox item can stand in
        // for it, whatever the public functions write there.
        if let Some(item) = self.get_item(Self::key(proposal_pk(id))).await? {
            return proposal_from_item(item.into()).map(Some).map_err(backend);
        }
        let Some(item) = self.get_item(Self::key(inbox_pk(id))).await? else {
            return Ok(None);
        };
        if !matches!(item.get("status"), Some(AttributeValue::S(s)) if s == Status::Received.as_str())
        {
            // Moved (its proposal has expired since) or not an intake's.
            return Ok(None);
        }
        let p = proposal_from_item(item.into()).map_err(backend)?;
        Ok((p.id == id && p.status == Status::Received).then_some(p))
    }

    async fn get_new(&self, id: ProposalId) -> Result<Option<Proposal>, StoreError> {
        // The inbox item first. It may be stale or forged (a moved one
        // rewritten to RECEIVED): the move is conditional on `P#` not
        // existing, so acting on it ends in a conflict and a `get`.
        if let Some(item) = self.get_item(Self::key(inbox_pk(id))).await?
            && matches!(item.get("status"), Some(AttributeValue::S(s)) if s == Status::Received.as_str())
            && let Ok(p) = proposal_from_item(item.into())
            && p.id == id
            && p.status == Status::Received
        {
            return Ok(Some(p));
        }
        self.get(id).await
    }

    async fn events(&self, id: ProposalId) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events: Vec<AuditEvent> = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :ev)")
            .expression_attribute_values(":pk", AttributeValue::S(proposal_pk(id)))
            .expression_attribute_values(":ev", AttributeValue::S("EV#".into()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(sdk)?;
            events.push(serde_dynamo::from_item(item).map_err(backend)?);
        }
        if events.first().is_none_or(|e| e.seq != 1) {
            // The "received" event stays in the inbox partition; anything
            // else there is not the proposal's (the chain check of the
            // events after it says whether it is the one they follow).
            let mut first = Self::key(inbox_pk(id));
            first.insert("SK".into(), AttributeValue::S(event_sk(1)));
            if let Some(item) = self.get_item(first).await? {
                events.insert(0, serde_dynamo::from_item(item).map_err(backend)?);
            }
        }
        Ok(events)
    }

    async fn list_by_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Proposal>, StoreError> {
        let q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(STATUS_INDEX)
            .key_condition_expression("gsi_status = :s")
            .expression_attribute_values(":s", AttributeValue::S(status.as_str().into()))
            .scan_index_forward(false);
        self.status_query(q, limit, true, |p, inbox| {
            // The index holds what its items say: an inbox item counts
            // only as RECEIVED, and an item only as the status it has.
            let ok = p.status == status && (!inbox || status == Status::Received);
            if !ok {
                tracing::warn!(proposal = %p.id, listed = %status, "skipping an index entry that is not a proposal in this status");
            }
            ok
        })
        .await
    }

    /// One `Query` of the `by_status` index for PENDING_REVIEW, filtered
    /// to the asset and workflow: no index of its own, because an index by
    /// asset would copy every proposal write (about ten per lifecycle) to
    /// serve one read per report, while the review backlog a filter reads
    /// through is small. Pages until `limit` matches or the end.
    async fn pending_for_asset(
        &self,
        workflow: &WorkflowId,
        asset: &AssetId,
        limit: usize,
    ) -> Result<Vec<Proposal>, StoreError> {
        let q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(STATUS_INDEX)
            .key_condition_expression("gsi_status = :s")
            .filter_expression("#wf = :w AND #asset.#id = :a")
            .expression_attribute_names("#wf", "workflow")
            .expression_attribute_names("#asset", "asset")
            .expression_attribute_names("#id", "id")
            .expression_attribute_values(
                ":s",
                AttributeValue::S(Status::PendingReview.as_str().into()),
            )
            .expression_attribute_values(":w", AttributeValue::S(workflow.to_string()))
            .expression_attribute_values(":a", AttributeValue::S(asset.to_string()))
            .scan_index_forward(false);
        // A filter applies after `Limit`: pages are not capped.
        self.status_query(q, limit, false, |p, inbox| {
            !inbox && p.status == Status::PendingReview && p.asset.id == *asset
        })
        .await
    }

    async fn cached_asset(&self, id: &AssetId) -> Result<Option<CachedAsset>, StoreError> {
        match self
            .get_item(Self::key(format!("A#{}", id.as_str())))
            .await?
        {
            Some(item) => serde_dynamo::from_item(item).map(Some).map_err(backend),
            None => Ok(None),
        }
    }

    async fn cache_asset(&self, asset: &CachedAsset) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(asset_item(asset)?))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn count_in_window(
        &self,
        key: &str,
        window_secs: i64,
        now: Timestamp,
    ) -> Result<WindowCount, StoreError> {
        let size = window_secs.max(1);
        let ends_at = window_end(now, size);
        // One item per counter and window size, holding the current window
        // (`w`, its end; `c`, its count) and the previous one's count (`p`):
        // one UpdateItem adds and returns both. Only when the window has
        // moved on does the add fail its condition; the item it failed on
        // (returned with the failure) says what the previous count is, and
        // a second update, conditional on that window, starts the new one.
        let pk = counter_pk(key, size);
        let mut ends_at = ends_at;
        for _ in 0..4 {
            let exp = AttributeValue::N((ends_at + size).to_string());
            let w = AttributeValue::N(ends_at.to_string());
            let added = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(pk.clone())))
                .update_expression(
                    "ADD c :one SET w = :w, p = if_not_exists(p, :zero), expires_at = :exp",
                )
                .condition_expression("attribute_not_exists(w) OR w = :w")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
                .expression_attribute_values(":w", w.clone())
                .expression_attribute_values(":exp", exp.clone())
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let old = match added {
                Ok(out) => return window_count(out.attributes.as_ref()),
                Err(e) => match e.into_service_error() {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                    other => return Err(backend(other)),
                },
            };
            // The window moved on. Without the item in the failure (an
            // engine that does not return it), read it.
            let old = match old {
                Some(item) => item,
                None => match self.get_item(Self::key(pk.clone())).await? {
                    Some(item) => item,
                    None => continue,
                },
            };
            let Some(old_w) = old.get("w").cloned() else {
                continue;
            };
            let previous = match num(&old, "w").and_then(|e| i64::try_from(e).ok()) {
                // A container whose clock is behind: count in the newer
                // window instead of resetting it.
                Some(e) if e > ends_at => {
                    ends_at = e;
                    continue;
                }
                Some(e) if e == ends_at - size => num(&old, "c").unwrap_or(0),
                _ => 0,
            };
            let rolled = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(pk.clone())))
                .update_expression("SET w = :w, c = :one, p = :p, expires_at = :exp")
                .condition_expression("w = :old")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":p", AttributeValue::N(previous.to_string()))
                .expression_attribute_values(":w", w.clone())
                .expression_attribute_values(":old", old_w)
                .expression_attribute_values(":exp", exp.clone())
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                .send()
                .await;
            match rolled {
                Ok(out) => return window_count(out.attributes.as_ref()),
                // Another request started the window first: add to it.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(sdk(e)),
            }
        }
        Err(backend(
            "the rate-limit window kept moving under the counter",
        ))
    }

    async fn idempotent(&self, key: &str) -> Result<Option<ProposalId>, StoreError> {
        let Some(item) = self.get_item(Self::key(format!("I#{key}"))).await? else {
            return Ok(None);
        };
        idempotency_target(&item).map(Some)
    }

    async fn revoke_code(
        &self,
        asset: &AssetId,
        workflow: &WorkflowId,
        by: &str,
        at: Timestamp,
    ) -> Result<CodeRevocation, StoreError> {
        let when = at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(backend)?;
        // An atomic ADD: two admins revoking at once step up twice, never
        // lose a step.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(format!("QR#{asset}#{workflow}"))))
            .update_expression("ADD #g :one SET revoked_at = :at, revoked_by = :by")
            .expression_attribute_names("#g", "generation")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":at", AttributeValue::S(when))
            .expression_attribute_values(":by", AttributeValue::S(by.to_owned()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(sdk)?;
        out.attributes
            .map(serde_dynamo::from_item)
            .transpose()
            .map_err(backend)?
            .ok_or_else(|| backend("revocation update returned nothing"))
    }

    async fn code_revocation(
        &self,
        asset: &AssetId,
        workflow: &WorkflowId,
    ) -> Result<Option<CodeRevocation>, StoreError> {
        self.get_item(Self::key(format!("QR#{asset}#{workflow}")))
            .await?
            .map(serde_dynamo::from_item)
            .transpose()
            .map_err(backend)
    }

    async fn put_sticker(&self, sticker: &Sticker) -> Result<(), StoreError> {
        let mut item: Item = serde_dynamo::to_item(sticker).map_err(backend)?;
        item.extend(Self::key(format!("K#{}", sticker.reference.as_str())));
        // Written by `fieldgate stickers` with admin credentials; the intake
        // only reads `K#` items.
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR code = :code")
            .expression_attribute_values(":code", AttributeValue::S(sticker.code.clone()))
            .send()
            .await;
        put_if(r)
    }

    async fn sticker(&self, reference: &StickerRef) -> Result<Option<Sticker>, StoreError> {
        self.get_item(Self::key(format!("K#{}", reference.as_str())))
            .await?
            .map(serde_dynamo::from_item)
            .transpose()
            .map_err(backend)
    }
}

/// A conditional `PutItem`'s outcome: its condition failing is a
/// [`StoreError::Conflict`] (the key is taken by something else).
fn put_if(
    r: Result<
        aws_sdk_dynamodb::operation::put_item::PutItemOutput,
        aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError>,
    >,
) -> Result<(), StoreError> {
    match r {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Err(StoreError::Conflict)
        }
        Err(e) => Err(sdk(e)),
    }
}

/// Assistant tokens share the table: a lookup by hash is one `GetItem` per
/// MCP request; listing and revoking (the CLI, rarely) scan the `T#` items.
#[async_trait]
impl AssistantTokens for DynamoStore {
    async fn put(&self, token: &AssistantToken) -> Result<(), StoreError> {
        let mut item: Item = serde_dynamo::to_item(token).map_err(backend)?;
        item.extend(Self::key(format!("T#{}", token.token_hash)));
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        put_if(r)
    }

    async fn by_hash(&self, token_hash: &str) -> Result<Option<AssistantToken>, StoreError> {
        // A hash that is not hex cannot be a key we wrote.
        if !token_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match self.get_item(Self::key(format!("T#{token_hash}"))).await? {
            Some(item) => serde_dynamo::from_item(item).map(Some).map_err(backend),
            None => Ok(None),
        }
    }

    async fn list(&self) -> Result<Vec<AssistantToken>, StoreError> {
        let mut out: Vec<AssistantToken> = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(PK, :t)")
                .expression_attribute_values(":t", AttributeValue::S("T#".into()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk)?;
            for item in page.items.unwrap_or_default() {
                out.push(serde_dynamo::from_item(item).map_err(backend)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by_key(|t| t.created_at);
        Ok(out)
    }

    async fn revoke(&self, id: &str, at: Timestamp) -> Result<Option<AssistantToken>, StoreError> {
        let Some(mut token) = self.list().await?.into_iter().find(|t| t.id == id) else {
            return Ok(None);
        };
        if token.revoked_at.is_none() {
            token.revoked_at = Some(at);
            let mut item: Item = serde_dynamo::to_item(&token).map_err(backend)?;
            item.extend(Self::key(format!("T#{}", token.token_hash)));
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(sdk)?;
        }
        Ok(Some(token))
    }
}
