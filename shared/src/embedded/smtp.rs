//! Review mail over SMTP (`fieldgate serve`): the same subject, plain-text
//! and HTML bodies the SES mailer sends, as one `multipart/alternative`
//! message. TLS is rustls (aws-lc-rs) with the platform's roots, plus the
//! certificates of `FIELDGATE_SMTP_CA_FILE` when set.

use crate::config::{SmtpServer, SmtpTls};
use crate::ports::{NotifyError, ReviewMail, ReviewNotifier};
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Why the mailer could not be built (a configuration mistake).
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("FIELDGATE_MAIL_FROM: not a mail address")]
    From(#[source] lettre::address::AddressError),
    #[error("FIELDGATE_SMTP_URL: TLS for this host")]
    Tls(#[source] lettre::transport::smtp::Error),
    #[error("FIELDGATE_SMTP_CA_FILE: reading {path}")]
    CaRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("FIELDGATE_SMTP_CA_FILE: {path} holds no PEM certificate")]
    CaPem {
        path: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

/// The longest one mail may take, dialogue included.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpNotifier {
    pub fn new(server: &SmtpServer, from: &str) -> Result<SmtpNotifier, SmtpError> {
        let from: Mailbox = from.parse().map_err(SmtpError::From)?;
        let tls = || -> Result<TlsParameters, SmtpError> {
            let mut b = TlsParameters::builder(server.host.clone());
            if let Some(path) = &server.ca_file {
                let path_name = path.display().to_string();
                let pem = std::fs::read(path).map_err(|source| SmtpError::CaRead {
                    path: path_name.clone(),
                    source,
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|source| SmtpError::CaPem {
                    path: path_name,
                    source,
                })?;
                b = b.add_root_certificate(cert);
            }
            b.build().map_err(SmtpError::Tls)
        };
        let tls = match server.tls {
            SmtpTls::StartTls => Tls::Required(tls()?),
            SmtpTls::Wrapper => Tls::Wrapper(tls()?),
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
    let mut b = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&mail.subject);
    if let Some(key) = &mail.dedupe_key {
        // Same key, same Message-ID: a client shows a repeat as one mail.
        b = b
            .message_id(Some(format!("<{key}@{}>", from.email.domain())))
            .header(DedupeHeader(key.clone()));
    }
    b.multipart(MultiPart::alternative_plain_html(
        mail.text.clone(),
        mail.html.clone(),
    ))
    .map_err(|e| NotifyError::failed("building the mail", e))
}

/// `X-Fieldgate-Dedupe`: see [`ReviewMail::dedupe_key`].
#[derive(Clone)]
struct DedupeHeader(String);

impl lettre::message::header::Header for DedupeHeader {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("X-Fieldgate-Dedupe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[async_trait]
impl ReviewNotifier for SmtpNotifier {
    async fn send(&self, mail: &ReviewMail) -> Result<(), NotifyError> {
        let msg = message(&self.from, mail)?;
        // lettre's timeout covers connecting, not a server that stops
        // answering mid-dialogue: bound the whole exchange, so a stuck
        // server fails the step (retried) instead of holding it forever.
        let sent = tokio::time::timeout(SEND_TIMEOUT, self.transport.send(msg))
            .await
            .map_err(|_| {
                NotifyError::failed(
                    "sending review mail over SMTP",
                    format!("no answer within {} s", SEND_TIMEOUT.as_secs()),
                )
            })?;
        // lettre's errors carry the server's reply, never the credentials.
        sent.map_err(|e| NotifyError::failed("sending review mail over SMTP", e))?;
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
            dedupe_key: None,
        };
        let from: Mailbox = "fieldgate@example.com".parse().unwrap();
        let raw = String::from_utf8(message(&from, &mail).unwrap().formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/plain"), "{raw}");
        assert!(raw.contains("text/html"), "{raw}");
        assert!(raw.contains("Subject: Review: pump leaking"), "{raw}");
        assert!(raw.contains("To: desk@example.com"), "{raw}");
        assert!(!raw.contains("X-Fieldgate-Dedupe"), "{raw}");
        let keyed = ReviewMail {
            dedupe_key: Some("01ABC.committed".into()),
            ..mail
        };
        let raw = String::from_utf8(message(&from, &keyed).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("Message-ID: <01ABC.committed@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("X-Fieldgate-Dedupe: 01ABC.committed"), "{raw}");
    }
}
