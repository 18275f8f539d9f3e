//! Salesforce REST client (contract: shared/contracts/salesforce.md).
//! One client per container: the token is cached across invocations and
//! renewed once on `INVALID_SESSION_ID`.

mod assets;
mod auth;
mod client;
mod config;
mod duplicates;
mod error;
mod transport;
mod writer;

pub use assets::{CachedDirectory, SalesforceAssets};
pub use auth::{Auth, default_audience, jwt_assertion};
pub use client::SalesforceClient;
pub use config::{Credential, SalesforceConfig, SalesforceSettings, SfConfigError};
pub use error::SfError;
