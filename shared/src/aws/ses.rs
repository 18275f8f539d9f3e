//! Review mail through SES v2: HTML and plain text, from a verified sender.

use crate::ports::{NotifyError, ReviewMail, ReviewNotifier};
use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

pub struct SesNotifier {
    client: super::LazyClient<Client>,
    from: String,
    configuration_set: Option<String>,
}

impl SesNotifier {
    pub fn new(client: Client, from: impl Into<String>, configuration_set: Option<String>) -> Self {
        Self {
            client: super::LazyClient::ready(client),
            from: from.into(),
            configuration_set,
        }
    }

    /// Its client made on the first mail (cold start: see
    /// [`super::LazyClient`]).
    pub fn lazy(
        config: &aws_types::SdkConfig,
        from: impl Into<String>,
        configuration_set: Option<String>,
    ) -> Self {
        let config = config.clone();
        Self {
            client: super::LazyClient::new(move || Client::new(&config)),
            from: from.into(),
            configuration_set,
        }
    }
}

fn content(s: &str) -> Result<Content, NotifyError> {
    Content::builder()
        .data(s)
        .charset("UTF-8")
        .build()
        .map_err(|e| NotifyError::failed("mail content", e))
}

#[async_trait]
impl ReviewNotifier for SesNotifier {
    async fn send(&self, mail: &ReviewMail) -> Result<(), NotifyError> {
        let mut message = Message::builder().subject(content(&mail.subject)?).body(
            Body::builder()
                .text(content(&mail.text)?)
                .html(content(&mail.html)?)
                .build(),
        );
        if let Some(key) = &mail.dedupe_key {
            // SES sets its own Message-ID; the key goes in a header of ours.
            message = message.headers(
                aws_sdk_sesv2::types::MessageHeader::builder()
                    .name("X-Fieldgate-Dedupe")
                    .value(key)
                    .build()
                    .map_err(|e| NotifyError::failed("mail header", e))?,
            );
        }
        let message = message.build();
        self.client
            .get()
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&mail.to).build())
            .content(EmailContent::builder().simple(message).build())
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| NotifyError::failed("SES SendEmail", e))?;
        Ok(())
    }
}
