//! Lambda entry point (start-up failures are reported to the Runtime
//! API): build the function from the configuration, serve its router.

use fieldgate::compose::Components;
use fieldgate::lambda::init;
use fieldgate_mcp::{McpDeps, router};
use lambda_http::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let deps = init(async { McpDeps::build(&Components::from_env()?).await }).await;
    lambda_http::run(router(Arc::new(deps))).await
}
