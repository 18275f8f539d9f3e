//! The handoff to an HTTP webhook on one machine (a pilot has no SNS).
//!
//! The handoff log (`handoff.jsonl`, appended and fsynced by the commit
//! step before it records "handoff published") is the queue: this relay
//! follows it in order and POSTs each message, then records how far it
//! got in `handoff.webhook.json`. A crash re-sends at most the message in
//! flight; a receiver that is down holds the relay (with backoff), never
//! the commit step, and loses nothing. A message the log holds twice (the
//! commit step crashed between the append and its record) is sent once.
//!
//! Every POST carries the same `dedupe_key` in the body and in
//! `X-Fieldgate-Dedupe-Key`, and `X-Fieldgate-Signature: sha256=HEX`, the
//! HMAC-SHA256 of the body under the configured secret.

use super::{HandoffLog, write_atomic};
use crate::config::WebhookConfig;
use crate::ports::HandoffMessage;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "x-fieldgate-signature";
pub const DEDUPE_HEADER: &str = "x-fieldgate-dedupe-key";
/// The cursor file in the data directory.
pub const CURSOR_FILE: &str = "handoff.webhook.json";

/// `sha256=HEX` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("reading {path}")]
    Cursor {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook client")]
    Client(#[source] reqwest::Error),
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Cursor {
    /// Messages of the log handled (sent, or skipped as a repeat).
    delivered: usize,
}

/// Retry pacing of a failed POST.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(300),
        }
    }
}

pub struct WebhookRelay {
    log: Arc<HandoffLog>,
    hook: WebhookConfig,
    http: reqwest::Client,
    cursor_path: PathBuf,
    backoff: Backoff,
}

impl WebhookRelay {
    pub fn new(
        log: Arc<HandoffLog>,
        hook: WebhookConfig,
        data_dir: &Path,
        backoff: Backoff,
    ) -> Result<WebhookRelay, WebhookError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fieldgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhookError::Client)?;
        Ok(WebhookRelay {
            log,
            hook,
            http,
            cursor_path: data_dir.join(CURSOR_FILE),
            backoff,
        })
    }

    fn load_cursor(&self) -> Result<usize, WebhookError> {
        let err = |source| WebhookError::Cursor {
            path: self.cursor_path.display().to_string(),
            source,
        };
        match std::fs::read(&self.cursor_path) {
            Ok(b) => serde_json::from_slice::<Cursor>(&b)
                .map(|c| c.delivered)
                .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(err(e)),
        }
    }

    fn save_cursor(&self, delivered: usize) {
        let bytes = serde_json::to_vec(&Cursor { delivered }).expect("cursor serializes");
        // A cursor that could not be saved only means a repeat after a
        // crash (same dedupe key): logged, not fatal.
        if let Err(e) = write_atomic(&self.cursor_path, &bytes) {
            tracing::warn!(error = %e, path = %self.cursor_path.display(), "saving the webhook cursor failed");
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self) -> Result<(), WebhookError> {
        let mut done = self.load_cursor()?;
        let mut sent: HashSet<String> = self
            .log
            .messages()
            .into_iter()
            .take(done)
            .map(|m| m.dedupe_key)
            .collect();
        let mut len = self.log.watch_len();
        loop {
            let pending = self.log.since(done);
            if pending.is_empty() {
                if len.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            }
            for msg in pending {
                if sent.insert(msg.dedupe_key.clone()) {
                    self.deliver(&msg).await;
                } else {
                    tracing::info!(dedupe_key = %msg.dedupe_key, "handoff logged twice; sent once");
                }
                done += 1;
                self.save_cursor(done);
            }
        }
    }

    /// POSTs until the receiver says 2xx.
    async fn deliver(&self, msg: &HandoffMessage) {
        let body = serde_json::to_vec(msg).expect("a handoff serializes");
        let sig = signature(&self.hook.secret, &body);
        let mut delay = self.backoff.first;
        let mut attempt = 1u32;
        loop {
            let r = self
                .http
                .post(&self.hook.url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, &sig)
                .header(DEDUPE_HEADER, &msg.dedupe_key)
                .header("x-fieldgate-event", &msg.event)
                .body(body.clone())
                .send()
                .await;
            let problem = match r {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(dedupe_key = %msg.dedupe_key, attempt, "handoff delivered to the webhook");
                    return;
                }
                Ok(resp) => format!("the webhook answered {}", resp.status()),
                // Without the URL: it can carry a token in its query.
                Err(e) => format!("{}", crate::Chain(&e.without_url())),
            };
            tracing::warn!(
                dedupe_key = %msg.dedupe_key,
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                problem,
                "handoff not delivered to the webhook; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.backoff.max);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
