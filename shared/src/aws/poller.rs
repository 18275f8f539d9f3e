//! A small DynamoDB Streams poller that does locally what a Lambda
//! event-source mapping does in AWS: reads every shard from the trim
//! horizon (`DescribeStream`, `GetShardIterator`, `GetRecords`), drops the
//! records the template's `FilterCriteria` would drop, hands batches to a
//! stream handler as `aws_lambda_events` DynamoDB events, and honours
//! `ReportBatchItemFailures`: the failed record and everything after it are
//! delivered again, up to `max_retries`, then set aside (the on-failure
//! destination).

use crate::domain::Status;
use crate::stream::META;
use aws_lambda_events::dynamodb::{Event, EventRecord, StreamRecord, StreamViewType};
use aws_lambda_events::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_dynamo::AttributeValue;
use std::collections::VecDeque;
use std::future::Future;

/// The filter of one event-source mapping in `template.yaml`:
/// `{"dynamodb":{"Keys":{"SK":{"S":["META"]}},"NewImage":{"status":{"S":[...]}}}}`,
/// with `"PK":{"S":[{"prefix":"P#"}]}` in `Keys` when only proposal items
/// (not the intake's inbox items) may reach the step.
#[derive(Debug, Clone)]
pub struct StreamFilter {
    pub statuses: Vec<Status>,
    pub pk_prefix: Option<&'static str>,
}

impl StreamFilter {
    /// The structure function's filter: new inbox items (and any proposal
    /// item in RECEIVED).
    pub fn structure() -> Self {
        Self {
            statuses: vec![Status::Received],
            pk_prefix: None,
        }
    }

    /// The commit function's filter: proposal items only, so that an inbox
    /// item claiming APPROVED (the public functions write those) is never
    /// delivered to it.
    pub fn commit() -> Self {
        Self {
            statuses: vec![
                Status::Approved,
                Status::Committing,
                Status::Committed,
                Status::NeedsAttention,
                // The reporter's outcome mail.
                Status::Rejected,
            ],
            pk_prefix: Some("P#"),
        }
    }

    /// The filter pattern as the template writes it.
    pub fn pattern(&self) -> String {
        let statuses: Vec<&str> = self.statuses.iter().map(|s| s.as_str()).collect();
        let mut keys = serde_json::json!({ "SK": { "S": [META] } });
        if let Some(prefix) = self.pk_prefix {
            keys["PK"] = serde_json::json!({ "S": [{ "prefix": prefix }] });
        }
        serde_json::json!({
            "dynamodb": {
                "Keys": keys,
                "NewImage": { "status": { "S": statuses } }
            }
        })
        .to_string()
    }

    pub fn matches(&self, rec: &EventRecord) -> bool {
        let sk_ok = matches!(rec.change.keys.get("SK"), Some(AttributeValue::S(s)) if s == META);
        let pk_ok = self.pk_prefix.is_none_or(|prefix| {
            matches!(rec.change.keys.get("PK"), Some(AttributeValue::S(s)) if s.starts_with(prefix))
        });
        let status_ok = match rec.change.new_image.get("status") {
            Some(AttributeValue::S(s)) => self.statuses.iter().any(|st| st.as_str() == s),
            _ => false,
        };
        sk_ok && pk_ok && status_ok
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stream poller: {0}")]
pub struct PollError(pub String);

fn sdk<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_dynamodbstreams::error::SdkError<E, R>,
) -> PollError {
    PollError(DisplayErrorContext(e).to_string())
}

struct Shard {
    id: String,
    parent: Option<String>,
    iterator: Option<String>,
    /// Read and filtered, not yet acknowledged by the handler.
    pending: VecDeque<EventRecord>,
    attempts: u32,
    closed: bool,
}

pub struct StreamPoller {
    client: Client,
    stream_arn: String,
    filter: StreamFilter,
    pub batch_size: usize,
    pub max_retries: u32,
    shards: Vec<Shard>,
    /// Records given up on after `max_retries` (the on-failure destination).
    pub failed: Vec<EventRecord>,
}

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    /// Records handed to the handler (redeliveries count again).
    pub delivered: usize,
    /// Records the handler reported as failed.
    pub failures: usize,
}

impl StreamPoller {
    pub fn new(client: Client, stream_arn: impl Into<String>, filter: StreamFilter) -> Self {
        Self {
            client,
            stream_arn: stream_arn.into(),
            filter,
            batch_size: 10,
            max_retries: 5,
            shards: Vec::new(),
            failed: Vec::new(),
        }
    }

    pub fn filter(&self) -> &StreamFilter {
        &self.filter
    }

    async fn refresh_shards(&mut self) -> Result<(), PollError> {
        let mut start: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(sdk)?;
            let desc = out
                .stream_description
                .ok_or_else(|| PollError("no stream description".into()))?;
            for s in desc.shards.unwrap_or_default() {
                let Some(id) = s.shard_id else { continue };
                if self.shards.iter().any(|k| k.id == id) {
                    continue;
                }
                self.shards.push(Shard {
                    id,
                    parent: s.parent_shard_id,
                    iterator: None,
                    pending: VecDeque::new(),
                    attempts: 0,
                    closed: false,
                });
            }
            match desc.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => return Ok(()),
            }
        }
    }

    /// Reads what is new on every shard and delivers it; returns when each
    /// shard has no more to read right now or its batch failed.
    pub async fn poll<F, Fut>(&mut self, mut handler: F) -> Result<Polled, PollError>
    where
        F: FnMut(Event) -> Fut,
        Fut: Future<Output = DynamoDbEventResponse>,
    {
        self.refresh_shards().await?;
        let mut polled = Polled::default();
        for i in 0..self.shards.len() {
            // A child shard waits until its parent is read to the end, so a
            // proposal's records stay in order.
            if let Some(parent) = &self.shards[i].parent
                && self.shards.iter().any(|s| &s.id == parent && !s.closed)
            {
                continue;
            }
            loop {
                if self.shards[i].pending.is_empty() && !self.read(i).await? {
                    break;
                }
                if self.shards[i].pending.is_empty() {
                    continue;
                }
                let n = self.batch_size.min(self.shards[i].pending.len());
                let batch: Vec<EventRecord> =
                    self.shards[i].pending.iter().take(n).cloned().collect();
                polled.delivered += batch.len();
                let mut event = Event::default();
                event.records = batch.clone();
                let resp = handler(event).await;
                let failed_at = resp.batch_item_failures.first().map(|f| {
                    // An identifier not in the batch fails the whole batch,
                    // as Lambda does.
                    batch
                        .iter()
                        .position(|r| r.change.sequence_number == f.item_identifier)
                        .unwrap_or(0)
                });
                let shard = &mut self.shards[i];
                match failed_at {
                    None => {
                        shard.pending.drain(..n);
                        shard.attempts = 0;
                    }
                    Some(at) => {
                        polled.failures += n - at;
                        shard.pending.drain(..at);
                        shard.attempts += 1;
                        if shard.attempts > self.max_retries {
                            self.failed.extend(shard.pending.drain(..n - at));
                            shard.attempts = 0;
                        }
                        // Retried on the next poll, as after a backoff.
                        break;
                    }
                }
            }
        }
        Ok(polled)
    }

    /// One `GetRecords` on shard `i`; false when there is nothing to read.
    async fn read(&mut self, i: usize) -> Result<bool, PollError> {
        if self.shards[i].closed {
            return Ok(false);
        }
        let iterator = match self.shards[i].iterator.clone() {
            Some(it) => it,
            None => self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(&self.shards[i].id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(sdk)?
                .shard_iterator
                .ok_or_else(|| PollError("no shard iterator".into()))?,
        };
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(100)
            .send()
            .await
            .map_err(sdk)?;
        let records = out.records.unwrap_or_default();
        let shard = &mut self.shards[i];
        match out.next_shard_iterator {
            Some(next) => shard.iterator = Some(next),
            None => {
                shard.iterator = None;
                shard.closed = true;
            }
        }
        let got = !records.is_empty();
        for r in records {
            let rec = to_event_record(r, &self.stream_arn);
            if self.filter.matches(&rec) {
                shard.pending.push_back(rec);
            }
        }
        Ok(got)
    }
}

/// A Streams API record as Lambda would deliver it.
pub fn to_event_record(r: Record, stream_arn: &str) -> EventRecord {
    let mut change = StreamRecord::default();
    if let Some(d) = r.dynamodb {
        if let Some(t) = d.approximate_creation_date_time
            && let Some(at) = chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
        {
            change.approximate_creation_date_time = at;
        }
        change.keys = d.keys.unwrap_or_default().into();
        change.new_image = d.new_image.unwrap_or_default().into();
        change.old_image = d.old_image.unwrap_or_default().into();
        change.sequence_number = d.sequence_number;
        change.size_bytes = d.size_bytes.unwrap_or(0);
        change.stream_view_type = d.stream_view_type.map(|v| match v.as_str() {
            "KEYS_ONLY" => StreamViewType::KeysOnly,
            "NEW_IMAGE" => StreamViewType::NewImage,
            "OLD_IMAGE" => StreamViewType::OldImage,
            _ => StreamViewType::NewAndOldImages,
        });
    }
    let mut rec = EventRecord::default();
    rec.aws_region = r.aws_region.unwrap_or_default();
    rec.change = change;
    rec.event_id = r.event_id.unwrap_or_default();
    rec.event_name = r
        .event_name
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    rec.event_source = r.event_source;
    rec.event_version = r.event_version;
    rec.event_source_arn = Some(stream_arn.to_owned());
    rec
}

/// A Streams client for DynamoDB Local, whose `GetRecords` renders an empty
/// map attribute as `{}` instead of `{"M":{}}` (real DynamoDB Streams does
/// not): the SDK would refuse the whole page. This client repairs exactly
/// that in the response before the SDK parses it; everything else passes
/// through unchanged.
pub fn local_client(config: &aws_types::SdkConfig, endpoint: &str) -> Client {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let inner = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    let conf = aws_sdk_dynamodbstreams::config::Builder::from(config)
        .endpoint_url(endpoint)
        .http_client(repair::RepairEmptyMaps(inner))
        .build();
    Client::from_conf(conf)
}

mod repair {
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
        SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::byte_stream::ByteStream;
    use serde_json::Value;

    #[derive(Debug, Clone)]
    pub struct RepairEmptyMaps(pub SharedHttpClient);

    impl HttpClient for RepairEmptyMaps {
        fn http_connector(
            &self,
            settings: &HttpConnectorSettings,
            components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(Repair(self.0.http_connector(settings, components)))
        }
    }

    #[derive(Debug)]
    struct Repair(SharedHttpConnector);

    impl HttpConnector for Repair {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let inner = self.0.clone();
            HttpConnectorFuture::new(async move {
                let mut resp = inner.call(request).await?;
                let body = std::mem::replace(resp.body_mut(), SdkBody::empty());
                let bytes = ByteStream::new(body)
                    .collect()
                    .await
                    .map_err(|e| ConnectorError::io(e.into()))?
                    .into_bytes();
                *resp.body_mut() = SdkBody::from(repaired(&bytes));
                Ok(resp)
            })
        }
    }

    /// The body with every `{}` attribute value of the records' images and
    /// keys written as `{"M":{}}`.
    pub fn repaired(bytes: &[u8]) -> Vec<u8> {
        let Ok(mut doc) = serde_json::from_slice::<Value>(bytes) else {
            return bytes.to_vec();
        };
        let Some(records) = doc.get_mut("Records").and_then(Value::as_array_mut) else {
            return bytes.to_vec();
        };
        for r in records {
            for part in ["Keys", "NewImage", "OldImage"] {
                if let Some(Value::Object(item)) = r.pointer_mut(&format!("/dynamodb/{part}")) {
                    item.values_mut().for_each(fix);
                }
            }
        }
        serde_json::to_vec(&doc).unwrap_or_else(|_| bytes.to_vec())
    }

    fn fix(av: &mut Value) {
        let Value::Object(map) = av else { return };
        if map.is_empty() {
            map.insert("M".into(), Value::Object(Default::default()));
            return;
        }
        if let Some(Value::Object(m)) = map.get_mut("M") {
            m.values_mut().for_each(fix);
        }
        if let Some(Value::Array(l)) = map.get_mut("L") {
            l.iter_mut().for_each(fix);
        }
    }

    #[test]
    fn empty_maps_become_typed_and_nothing_else_changes() {
        let body = br#"{"Records":[{"dynamodb":{"NewImage":{"a":{},"b":{"M":{"c":{},"d":{"S":"x"}}},"e":{"L":[{}]}}}}]}"#;
        let fixed: Value = serde_json::from_slice(&repaired(body)).unwrap();
        assert_eq!(
            fixed,
            serde_json::json!({"Records":[{"dynamodb":{"NewImage":{
                "a":{"M":{}},"b":{"M":{"c":{"M":{}},"d":{"S":"x"}}},"e":{"L":[{"M":{}}]}}}}]})
        );
        assert_eq!(repaired(b"not json"), b"not json");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matches_what_the_template_pattern_says() {
        let now = crate::domain::fixtures::at(0);
        let p = crate::conformance::received(now).proposal;
        let rec = crate::stream::change_record(None, &p, 1);
        assert!(StreamFilter::structure().matches(&rec));
        assert!(!StreamFilter::commit().matches(&rec));
        let mut event = rec.clone();
        event
            .change
            .keys
            .insert("SK".into(), AttributeValue::S("EV#000001".into()));
        assert!(!StreamFilter::structure().matches(&event));
        // An inbox item claiming APPROVED never reaches the commit step; a
        // proposal item in APPROVED does.
        let mut approved = p.clone();
        approved.status = Status::Approved;
        let mut rec = crate::stream::change_record(None, &approved, 2);
        assert!(StreamFilter::commit().matches(&rec));
        rec.change
            .keys
            .insert("PK".into(), AttributeValue::S(format!("R#{}", p.id)));
        rec.change
            .new_image
            .insert("PK".into(), AttributeValue::S(format!("R#{}", p.id)));
        assert!(!StreamFilter::commit().matches(&rec));
        assert_eq!(crate::stream::subject_of(&rec), None, "nor any step");
        // The template carries exactly these patterns.
        let template = include_str!("../../../template.yaml");
        for f in [StreamFilter::structure(), StreamFilter::commit()] {
            assert!(
                template.contains(&format!("Pattern: '{}'", f.pattern())),
                "template.yaml lacks the filter {}",
                f.pattern()
            );
        }
    }
}
