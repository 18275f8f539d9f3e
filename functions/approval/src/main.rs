//! Lambda entry point: wire clients, serve the router.

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let env = fieldgate::wiring::Env::load(fieldgate::wiring::Needs {
        salesforce: false,
        keys: true,
    })
    .await?;
    let deps = std::sync::Arc::new(fieldgate_approval::ApprovalDeps {
        store: env.store.clone(),
        media: env.media.clone(),
        workflows: env.workflows.clone(),
        csrf: env.links()?,
    });
    lambda_http::run(fieldgate_approval::router(deps)).await
}
