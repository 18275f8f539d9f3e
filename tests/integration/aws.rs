//! Shared by the AWS tests: clients for DynamoDB Local and moto, fresh
//! tables, and a check that the stand-ins are there (a missing one fails
//! the test with a clear message; it never skips).

#![allow(dead_code)]

use fieldgate::aws::dynamodb::DynamoStore;
use fieldgate::aws::poller::{StreamFilter, StreamPoller};
use fieldgate::domain::Clock;
use std::sync::Arc;

pub fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the tests through infra/scripts/test.sh, which starts \
             DynamoDB Local and moto (infra/scripts/setup.d/) and exports it"
        )
    })
}

pub async fn sdk() -> aws_config::SdkConfig {
    need("AWS_ENDPOINT_URL_DYNAMODB");
    need("AWS_ENDPOINT_URL");
    fieldgate::aws::sdk_config().await
}

pub struct Table {
    pub store: Arc<DynamoStore>,
    pub stream_arn: String,
    pub streams: aws_sdk_dynamodbstreams::Client,
}

impl Table {
    pub fn poller(&self, filter: StreamFilter) -> StreamPoller {
        StreamPoller::new(self.streams.clone(), &self.stream_arn, filter)
    }
}

/// A fresh table, declared as template.yaml declares it, per test.
pub async fn fresh_table(config: &aws_config::SdkConfig) -> Table {
    let client = aws_sdk_dynamodb::Client::new(config);
    let name = format!(
        "fieldgate-test-{}",
        fieldgate::clock::new_proposal_id(fieldgate::clock::SystemClock.now())
    );
    let stream_arn = DynamoStore::create_table(&client, &name)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot create a table in DynamoDB Local (is it running?): {e}")
        });
    // DynamoDB Local serves the Streams API on the same port.
    Table {
        store: Arc::new(DynamoStore::new(client, name)),
        stream_arn,
        streams: fieldgate::aws::poller::local_client(config, &need("AWS_ENDPOINT_URL_DYNAMODB")),
    }
}

/// moto's whole state (`GET /moto-api/data.json`).
pub async fn moto_state() -> serde_json::Value {
    reqwest::get(format!("{}/moto-api/data.json", need("AWS_ENDPOINT_URL")))
        .await
        .expect("moto answers")
        .json()
        .await
        .expect("moto state is JSON")
}

/// Every DynamoDB request a client sends (after signing, per attempt), as
/// the service receives it: the operation and the JSON body. Installed as
/// an SDK interceptor on the client a function's store is built with, so a
/// test sees exactly what that function asks of the table.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<std::sync::Mutex<Vec<Sent>>>);

#[derive(Debug, Clone)]
pub struct Sent {
    /// `GetItem`, `TransactWriteItems`, ...
    pub op: String,
    pub body: serde_json::Value,
}

impl aws_sdk_dynamodb::config::Intercept for Recorder {
    fn name(&self) -> &'static str {
        "fieldgate-test-recorder"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let req = context.request();
        let op = req
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default()
            .to_owned();
        let body = req
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        self.0.lock().unwrap().push(Sent { op, body });
        Ok(())
    }
}

impl Recorder {
    /// A store on `table` whose every request this records.
    pub fn store(&self, config: &aws_config::SdkConfig, table: &str) -> Arc<DynamoStore> {
        let conf = aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(self.clone())
            .build();
        Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(conf),
            table,
        ))
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.0.lock().unwrap().clone()
    }
}

/// What one request does to the table, as IAM authorizes it: the action
/// per item (a transaction is authorized item by item, as its PutItem,
/// UpdateItem, ... ) with the item's partition key; a query of the status
/// index has no leading key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub action: &'static str,
    pub index: bool,
    pub pk: Option<String>,
}

pub fn accesses(sent: &Sent) -> Vec<Access> {
    use serde_json::Value;
    let pk = |v: &Value| v["PK"]["S"].as_str().map(str::to_owned);
    let item = |action, pk| Access {
        action,
        index: false,
        pk,
    };
    let b = &sent.body;
    match sent.op.as_str() {
        "GetItem" => vec![item("dynamodb:GetItem", pk(&b["Key"]))],
        // Authorized per key read, each key against the leading keys.
        "BatchGetItem" => b["RequestItems"]
            .as_object()
            .expect("RequestItems")
            .values()
            .flat_map(|t| t["Keys"].as_array().expect("Keys").iter())
            .map(|k| item("dynamodb:BatchGetItem", pk(k)))
            .collect(),
        "PutItem" => vec![item("dynamodb:PutItem", pk(&b["Item"]))],
        "UpdateItem" => vec![item("dynamodb:UpdateItem", pk(&b["Key"]))],
        "DeleteItem" => vec![item("dynamodb:DeleteItem", pk(&b["Key"]))],
        "TransactWriteItems" => b["TransactItems"]
            .as_array()
            .expect("TransactItems")
            .iter()
            .map(|t| match t.as_object().and_then(|o| o.iter().next()) {
                Some((k, v)) if k == "Put" => item("dynamodb:PutItem", pk(&v["Item"])),
                Some((k, v)) if k == "Update" => item("dynamodb:UpdateItem", pk(&v["Key"])),
                Some((k, v)) if k == "Delete" => item("dynamodb:DeleteItem", pk(&v["Key"])),
                Some((k, v)) if k == "ConditionCheck" => {
                    item("dynamodb:ConditionCheckItem", pk(&v["Key"]))
                }
                other => panic!("unknown transaction item {other:?}"),
            })
            .collect(),
        "Query" if b.get("IndexName").is_some() => vec![Access {
            action: "dynamodb:Query",
            index: true,
            pk: None,
        }],
        // The store's key conditions name the partition `:pk`.
        "Query" => vec![item(
            "dynamodb:Query",
            b["ExpressionAttributeValues"][":pk"]["S"]
                .as_str()
                .map(str::to_owned),
        )],
        other => panic!("a request the test does not know how to authorize: {other}"),
    }
}

/// The accesses in `sent` that the template's policies for `function` do
/// not allow (the test expects none).
pub fn denied(function: &str, sent: &[Sent]) -> Vec<String> {
    use fieldgate_tests::template::{STATUS_INDEX_ARN, TABLE_ARN, grants};
    let grants = grants(function);
    sent.iter()
        .flat_map(|s| accesses(s).into_iter().map(move |a| (s.op.clone(), a)))
        .filter(|(_, a)| {
            let resource = if a.index { STATUS_INDEX_ARN } else { TABLE_ARN };
            !grants
                .iter()
                .any(|g| g.allows(a.action, resource, a.pk.as_deref()))
        })
        .map(|(op, a)| format!("{op}: {} on {:?}", a.action, a.pk))
        .collect()
}

/// The table writes among `sent`: (action, partition key).
pub fn writes(sent: &[Sent]) -> Vec<(&'static str, String)> {
    sent.iter()
        .flat_map(accesses)
        .filter(|a| {
            !matches!(
                a.action,
                "dynamodb:GetItem" | "dynamodb:BatchGetItem" | "dynamodb:Query"
            )
        })
        .map(|a| (a.action, a.pk.expect("a write names its key")))
        .collect()
}
