//! Review mail over SMTP (`fieldgate serve`): the same subject, plain-text
//! and HTML bodies the SES mailer sends, as one `multipart/alternative`
//! message. TLS is rustls (aws-lc-rs) with the platform's roots.

use crate::config::{SmtpServer, SmtpTls};
use crate::ports::{NotifyError, ReviewMail, ReviewNotifier};
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Why the mailer could not be built (a configuration mistake).
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("FIELDGATE_MAIL_FROM: not a mail address")]
    From(#[source] lettre::address::AddressError),
    #[error("FIELDGATE_SMTP_URL: TLS for this host")]
    Tls(#[source] lettre::transport::smtp::Error),
}

pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpNotifier {
    pub fn new(server: &SmtpServer, from: &str) -> Result<SmtpNotifier, SmtpError> {
        let from: Mailbox = from.parse().map_err(SmtpError::From)?;
        let tls = |host: &str| TlsParameters::new(host.to_owned()).map_err(SmtpError::Tls);
        let tls = match server.tls {
            SmtpTls::StartTls => Tls::Required(tls(&server.host)?),
            SmtpTls::Wrapper => Tls::Wrapper(tls(&server.host)?),
            SmtpTls::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host)
            .port(server.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(30)));
        if let (Some(user), Some(password)) = (&server.username, &server.password) {
            b = b.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(SmtpNotifier {
            transport: b.build(),
            from,
        })
    }
}

/// The message as sent: the same three parts SES gets.
pub fn message(from: &Mailbox, mail: &ReviewMail) -> Result<Message, NotifyError> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| NotifyError::failed("the reviewer's address", e))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&mail.subject)
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|e| NotifyError::failed("building the mail", e))
}

#[async_trait]
impl ReviewNotifier for SmtpNotifier {
    async fn send(&self, mail: &ReviewMail) -> Result<(), NotifyError> {
        let msg = message(&self.from, mail)?;
        // lettre's errors carry the server's reply, never the credentials.
        self.transport
            .send(msg)
            .await
            .map_err(|e| NotifyError::failed("sending review mail over SMTP", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mail_has_the_text_and_html_bodies() {
        let mail = ReviewMail {
            to: "desk@example.com".into(),
            subject: "Review: pump leaking".into(),
            review_url: "https://fg.example.com/r/abc".into(),
            text: "Open https://fg.example.com/r/abc".into(),
            html: "<p><a href=\"https://fg.example.com/r/abc\">Review</a></p>".into(),
        };
        let from: Mailbox = "fieldgate@example.com".parse().unwrap();
        let raw = String::from_utf8(message(&from, &mail).unwrap().formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/plain"), "{raw}");
        assert!(raw.contains("text/html"), "{raw}");
        assert!(raw.contains("Subject: Review: pump leaking"), "{raw}");
        assert!(raw.contains("To: desk@example.com"), "{raw}");
    }
}
