//! Salesforce REST client (contract: shared/contracts/salesforce.md).
//! One client per container: the token is cached across invocations and
//! renewed once on `INVALID_SESSION_ID`.

mod assets;
mod client;

pub use assets::{CachedDirectory, SalesforceAssets};
pub use client::{
    Auth, SalesforceClient, SalesforceConfig, SfError, default_audience, jwt_assertion,
};
