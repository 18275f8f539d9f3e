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
