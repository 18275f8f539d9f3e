//! Lambda entry point: build the function from the configuration, serve
//! its router.

use fieldgate::compose::Components;
use fieldgate_mcp::{McpDeps, router};
use lambda_http::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let deps = McpDeps::build(&Components::from_env()?).await?;
    lambda_http::run(router(Arc::new(deps))).await
}
