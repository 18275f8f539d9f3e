//! Switches tests flip to make the emulator misbehave the way a real org
//! does: expired sessions, transient failures, slowness, an exhausted API
//! budget, answers lost after the write was applied and custom validation
//! rules.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::errors::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidationRule {
    pub sobject: String,
    pub field: String,
    pub forbidden: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Faults {
    /// Tokens remember the epoch they were minted in; bumping it expires them all.
    token_epoch: AtomicU64,
    fail_remaining: AtomicU32,
    fail_status: AtomicU16,
    latency: Mutex<Duration>,
    /// Answers held back by `latency`, so tests observe the fault without
    /// timing it.
    delayed: AtomicU64,
    exhausted: AtomicBool,
    drop_remaining: AtomicU32,
    dropped: AtomicU64,
    rules: Mutex<Vec<ValidationRule>>,
    /// Until then every REST and token call answers 503.
    outage_until: Mutex<Option<std::time::Instant>>,
}

impl Faults {
    /// Every token issued so far becomes invalid; new ones work.
    pub fn expire_tokens(&self) {
        self.token_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The next `n` REST calls (token calls excluded) answer `status` with
    /// the error body Salesforce sends for that kind of transient failure.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.fail_status.store(status, Ordering::SeqCst);
        self.fail_remaining.store(n, Ordering::SeqCst);
    }

    /// Delay added before every counted call is answered.
    pub fn set_latency(&self, d: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// The next `n` successful writes (POST/PATCH/DELETE REST calls) are
    /// applied and saved, then their answer is lost: the connection breaks
    /// after the headers, so the client sees a network error for a write
    /// that happened.
    pub fn drop_answers_after_write(&self, n: u32) {
        self.drop_remaining.store(n, Ordering::SeqCst);
    }

    /// How many answers [`Faults::drop_answers_after_write`] has lost so far.
    pub fn dropped_answers(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Consumes one pending dropped answer, if any.
    pub(crate) fn take_drop(&self) -> bool {
        let taken = self
            .drop_remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if taken {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
        taken
    }

    /// For `d` from now, every REST and token call answers 503 (the org
    /// is down); zero ends an outage.
    pub fn outage_for(&self, d: Duration) {
        *self.outage_until.lock().unwrap_or_else(|e| e.into_inner()) =
            (!d.is_zero()).then(|| std::time::Instant::now() + d);
    }

    /// The answer of a call during an outage, if one is on.
    pub(crate) fn outage(&self) -> Option<ApiError> {
        self.in_outage().then(|| transient_error(503))
    }

    fn in_outage(&self) -> bool {
        self.outage_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    /// While set, REST calls answer 403 REQUEST_LIMIT_EXCEEDED.
    pub fn exhaust_budget(&self, yes: bool) {
        self.exhausted.store(yes, Ordering::SeqCst);
    }

    /// Writes whose value of `field` contains `forbidden_substring` fail with
    /// FIELD_CUSTOM_VALIDATION_EXCEPTION and `message`.
    pub fn add_validation_rule(
        &self,
        sobject: &str,
        field: &str,
        forbidden_substring: &str,
        message: &str,
    ) {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ValidationRule {
                sobject: sobject.to_string(),
                field: field.to_string(),
                forbidden: forbidden_substring.to_string(),
                message: message.to_string(),
            });
    }

    pub(crate) fn token_epoch(&self) -> u64 {
        self.token_epoch.load(Ordering::SeqCst)
    }

    /// How many answers [`Faults::set_latency`] has delayed so far.
    pub fn delayed_answers(&self) -> u64 {
        self.delayed.load(Ordering::SeqCst)
    }

    pub(crate) fn latency(&self) -> Duration {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn count_delayed(&self) {
        self.delayed.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn is_exhausted(&self) -> bool {
        self.exhausted.load(Ordering::SeqCst)
    }

    pub(crate) fn rules(&self) -> Vec<ValidationRule> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Consumes one pending failure, if any, and returns its error.
    pub(crate) fn take_failure(&self) -> Option<ApiError> {
        if let Some(e) = self.outage() {
            return Some(e);
        }
        self.fail_remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()?;
        Some(transient_error(self.fail_status.load(Ordering::SeqCst)))
    }
}

/// The body each status carries when Salesforce has a bad moment.
fn transient_error(status: u16) -> ApiError {
    match status {
        400 => ApiError::dml(
            "UNABLE_TO_LOCK_ROW",
            "unable to obtain exclusive access to this record or 1 records",
            vec![],
        ),
        401 => ApiError::invalid_session(),
        403 => ApiError::limit_exceeded(),
        500 => ApiError::new(
            500,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: 1438262954-57313 (-1218763047)",
        ),
        _ => ApiError::new(
            status,
            "SERVER_UNAVAILABLE",
            "Server temporarily unavailable, please retry your request",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_counts_down_to_zero() {
        let f = Faults::default();
        assert!(f.take_failure().is_none());
        f.fail_next(2, 503);
        assert_eq!(f.take_failure().unwrap().status, 503);
        assert_eq!(f.take_failure().unwrap().code, "SERVER_UNAVAILABLE");
        assert!(f.take_failure().is_none());
        f.fail_next(1, 400);
        assert_eq!(f.take_failure().unwrap().code, "UNABLE_TO_LOCK_ROW");
    }

    #[test]
    fn drop_answers_counts_down_and_is_counted() {
        let f = Faults::default();
        assert!(!f.take_drop());
        f.drop_answers_after_write(1);
        assert!(f.take_drop());
        assert!(!f.take_drop());
        assert_eq!(f.dropped_answers(), 1);
    }
}
