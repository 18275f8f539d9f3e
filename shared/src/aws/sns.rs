//! The handoff through SNS: the v1 JSON message (schema in
//! `docs/handoff.schema.json`), message attributes for subscription filter
//! policies, and the dedupe key (also as the FIFO deduplication id when the
//! topic is a FIFO topic).

use crate::ports::{HandoffMessage, HandoffPublisher, PublishError};
use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

pub struct SnsHandoff {
    client: super::LazyClient<Client>,
    topic_arn: String,
}

impl SnsHandoff {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client: super::LazyClient::ready(client),
            topic_arn: topic_arn.into(),
        }
    }

    /// Its client made on the first publish (cold start: see
    /// [`super::LazyClient`]).
    pub fn lazy(config: &aws_types::SdkConfig, topic_arn: impl Into<String>) -> Self {
        let config = config.clone();
        Self {
            client: super::LazyClient::new(move || Client::new(&config)),
            topic_arn: topic_arn.into(),
        }
    }
}

#[async_trait]
impl HandoffPublisher for SnsHandoff {
    async fn publish(&self, msg: &HandoffMessage) -> Result<(), PublishError> {
        let body = serde_json::to_string(msg)
            .map_err(|e| PublishError::failed("encoding the handoff", e))?;
        let mut req = self
            .client
            .get()
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(format!("fieldgate {}: {}", msg.event, msg.workflow))
            .message(body);
        for (name, value) in msg.attributes() {
            req = req.message_attributes(
                name,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .map_err(|e| PublishError::failed("a message attribute", e))?,
            );
        }
        if self.topic_arn.ends_with(".fifo") {
            // One group per proposal keeps its messages in order; SNS drops
            // a repeat with the same id within five minutes.
            req = req
                .message_group_id(msg.proposal_id.to_string())
                .message_deduplication_id(&msg.dedupe_key);
        }
        req.send()
            .await
            .map_err(|e| PublishError::failed("SNS Publish", e))?;
        Ok(())
    }
}
