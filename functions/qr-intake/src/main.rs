//! Lambda entry point: wire clients, serve the router.

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let env = fieldgate::wiring::Env::load(fieldgate::wiring::Needs {
        salesforce: true,
        keys: true,
    })
    .await?;
    let deps = std::sync::Arc::new(fieldgate_qr_intake::IntakeDeps {
        store: env.store.clone(),
        media: env.media.clone(),
        assets: env.assets()?,
        workflows: env.workflows.clone(),
        qr: env.qr()?,
        links: env.links()?,
        limits: Default::default(),
    });
    lambda_http::run(fieldgate_qr_intake::router(deps)).await
}
