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
