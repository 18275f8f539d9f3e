//! fieldgate core: the ports the steps run over, their adapters (embedded
//! and AWS), the configuration and the composition root that builds them,
//! the Salesforce REST client, the structurers and the pages. The domain
//! (no I/O) is its own crate, re-exported as [`domain`].

pub mod admin;
#[cfg(feature = "aws-core")]
pub mod aws;
pub mod clock;
pub mod compose;
pub mod config;
pub mod conformance;
pub use fieldgate_domain as domain;
pub mod embedded;
pub mod error;
pub mod http;
pub mod lambda;
pub mod notice;
pub mod ports;
pub mod review;
pub mod salesforce;
pub mod stream;
pub mod structuring;
pub mod telemetry;
pub mod update;
pub mod web;
pub mod workflows;

pub use domain::*;
pub use error::{AppError, Chain, RateScope, UserError};

/// Property tests' settings: `PROPTEST_CASES` cases (default 4,096, so the
/// test command stays fast; BENCHMARKS.md has the 1,000,000-case command).
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::prelude::ProptestConfig {
    let mut c = proptest::prelude::ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 4096;
    }
    c.failure_persistence = None;
    c
}

/// One edit of a valid input: (position, operation, character).
#[cfg(test)]
pub(crate) fn proptest_edit() -> impl proptest::strategy::Strategy<Value = (usize, u8, char)> {
    use proptest::prelude::*;
    let ch = prop_oneof![
        8 => proptest::char::ranges(vec!['0'..='9', 'A'..='Z', 'a'..='z'].into()),
        3 => proptest::sample::select(vec!['.', '-', '_', '=', '&', '%', '"', ';', '\r', '\n', ' ']),
        1 => any::<char>(),
    ];
    (any::<usize>(), any::<u8>(), ch)
}
