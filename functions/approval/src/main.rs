//! Lambda entry point (start-up failures are reported to the Runtime
//! API): build the function from the configuration, serve
//! its router.

use fieldgate::compose::Components;
use fieldgate::lambda::init;
use fieldgate_approval::{ApprovalDeps, client_ip_from_api_gateway, router};
use lambda_http::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let deps = init(async { ApprovalDeps::build(&Components::from_env()?).await }).await;
    let app = router(Arc::new(deps)).layer(axum::middleware::from_fn(client_ip_from_api_gateway));
    lambda_http::run(app).await
}
