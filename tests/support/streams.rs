//! DynamoDB streams as Lambda's event-source mapping delivers them, read
//! from DynamoDB Local: for the Lambda-runtime test and the cold-start
//! benchmark.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What the event-source mapping does: reads DynamoDB Local's stream
/// through the Streams API (plain JSON, as Lambda's poller gets it), keeps
/// the records the function's `FilterCriteria` matches, and hands them over
/// in Lambda's record shape.
pub struct StreamFeed {
    http: reqwest::Client,
    endpoint: String,
    arn: String,
    iterators: BTreeMap<String, Option<String>>,
}

impl StreamFeed {
    /// A reader of the stream `arn` of the DynamoDB Local at `endpoint`.
    pub fn new(endpoint: &str, arn: &str) -> StreamFeed {
        StreamFeed {
            http: reqwest::Client::new(),
            endpoint: endpoint.to_owned(),
            arn: arn.to_owned(),
            iterators: BTreeMap::new(),
        }
    }

    async fn call(&self, op: &str, body: Value) -> Value {
        // DynamoDB Local (-sharedDb) reads the credential scope, not the
        // signature.
        let resp = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDBStreams_20120810.{op}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("DynamoDB Local answers");
        let status = resp.status();
        let v: Value = resp.json().await.expect("JSON");
        assert!(status.is_success(), "{op}: {status} {v}");
        v
    }

    /// The records `filter` keeps among the next ones written, waiting
    /// (polling, as the mapping does) until there is one; fails with
    /// `explain` when none comes.
    pub async fn next_matching(&mut self, filter: &Value, explain: String) -> Vec<Value> {
        crate::wait_for_or(
            async || {
                let r: Vec<Value> = self
                    .read()
                    .await
                    .into_iter()
                    .filter(|r| matches(filter, r))
                    .collect();
                (!r.is_empty()).then_some(r)
            },
            async || explain,
        )
        .await
    }

    /// Every record written since the last read, oldest first.
    pub async fn read(&mut self) -> Vec<Value> {
        let desc = self
            .call("DescribeStream", json!({"StreamArn": self.arn}))
            .await;
        let mut out = Vec::new();
        for shard in desc["StreamDescription"]["Shards"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let id = shard["ShardId"].as_str().unwrap().to_owned();
            let it = match self.iterators.get(&id) {
                Some(Some(it)) => it.clone(),
                Some(None) => continue,
                None => self
                    .call(
                        "GetShardIterator",
                        json!({"StreamArn": self.arn, "ShardId": id, "ShardIteratorType": "TRIM_HORIZON"}),
                    )
                    .await["ShardIterator"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            };
            let mut it = Some(it);
            while let Some(current) = it.take() {
                let page = self
                    .call("GetRecords", json!({"ShardIterator": current}))
                    .await;
                let records = page["Records"].as_array().cloned().unwrap_or_default();
                let next = page["NextShardIterator"].as_str().map(str::to_owned);
                let more = !records.is_empty();
                for mut r in records {
                    repair_empty_maps(&mut r);
                    r["eventSourceARN"] = self.arn.clone().into();
                    out.push(r);
                }
                self.iterators.insert(id.clone(), next.clone());
                if more {
                    it = next;
                }
            }
        }
        out
    }
}

/// DynamoDB Local writes an empty map attribute as `{}` in stream records;
/// DynamoDB (and so Lambda) writes `{"M":{}}`.
fn repair_empty_maps(record: &mut Value) {
    fn fix(av: &mut Value) {
        let Value::Object(map) = av else { return };
        if map.is_empty() {
            map.insert("M".into(), json!({}));
        }
        if let Some(Value::Object(m)) = map.get_mut("M") {
            m.values_mut().for_each(fix);
        }
        if let Some(Value::Array(l)) = map.get_mut("L") {
            l.iter_mut().for_each(fix);
        }
    }
    for part in ["Keys", "NewImage", "OldImage"] {
        if let Some(Value::Object(item)) = record.pointer_mut(&format!("/dynamodb/{part}")) {
            item.values_mut().for_each(fix);
        }
    }
}

/// Lambda's event filtering for the patterns the template uses: every key
/// of the pattern present, a list = one of these values.
pub fn matches(pattern: &Value, v: &Value) -> bool {
    match pattern {
        Value::Object(p) => p
            .iter()
            .all(|(k, sub)| v.get(k).is_some_and(|x| matches(sub, x))),
        // Lambda's filter rules: a value is one of the options, each an
        // exact value or `{"prefix": ...}` (begins with).
        Value::Array(options) => options.iter().any(|o| match o {
            Value::Object(rule) if rule.contains_key("prefix") => {
                matches!((&rule["prefix"], v), (Value::String(p), Value::String(s)) if s.starts_with(p.as_str()))
            }
            exact => exact == v,
        }),
        other => other == v,
    }
}
