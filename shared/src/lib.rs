//! fieldgate core: the domain (no I/O), the ports the handlers run over, the
//! embedded adapters used by `fieldgate dev` and the tests, the Salesforce
//! REST client, the structurers and the pages.

#[cfg(any(
    feature = "aws-dynamodb",
    feature = "aws-s3",
    feature = "aws-sns",
    feature = "aws-ses",
    feature = "aws-secrets"
))]
pub mod aws;
pub mod conformance;
pub mod domain;
pub mod embedded;
pub mod error;
pub mod http;
pub mod ports;
pub mod review;
pub mod salesforce;
pub mod stream;
pub mod structuring;
pub mod telemetry;
pub mod web;
pub mod wiring;

pub use domain::*;
pub use error::{AppError, UserError};
