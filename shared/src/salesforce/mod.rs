//! Salesforce REST client (contract: shared/contracts/salesforce.md).
//! One client per container: the token is cached across invocations and
//! renewed once on `INVALID_SESSION_ID`.
//!
//! The settings (`SALESFORCE_*`) are always parsed; the client itself is
//! the `salesforce` feature (reqwest, jsonwebtoken) and its writes
//! `salesforce-write`, so a function that never calls Salesforce (approval)
//! or only reads it links no more than it uses.

#[cfg(feature = "salesforce")]
mod assets;
mod auth;
#[cfg(feature = "salesforce")]
mod client;
mod config;
#[cfg(feature = "salesforce")]
mod deferred;
#[cfg(feature = "salesforce")]
mod duplicates;
#[cfg(feature = "salesforce")]
mod error;
#[cfg(feature = "salesforce")]
mod token;
#[cfg(feature = "salesforce")]
mod transport;
#[cfg(feature = "salesforce-write")]
mod writer;

#[cfg(feature = "salesforce")]
pub use assets::{CachedDirectory, SalesforceAssets};
pub use auth::{Auth, default_audience};
#[cfg(feature = "salesforce")]
pub use client::SalesforceClient;
pub use config::{Credential, SalesforceConfig, SalesforceSettings, SfConfigError};
#[cfg(feature = "salesforce")]
pub use deferred::DeferredSalesforce;
#[cfg(feature = "salesforce")]
pub use error::SfError;
#[cfg(feature = "salesforce")]
pub use token::jwt_assertion;
