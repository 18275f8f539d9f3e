//! Lambda entry point: wire clients, run the handler.

use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let env = fieldgate::wiring::Env::load(fieldgate::wiring::Needs {
        salesforce: true,
        keys: true,
    })
    .await?;
    let deps = std::sync::Arc::new(fieldgate_qr_intake::Intake {
        store: env.store.clone(),
        media: env.media.clone(),
        assets: env.assets()?,
        workflows: env.workflows.clone(),
        qr: env.qr()?,
        links: env.links()?,
        limits: Default::default(),
    });
    lambda_http::run(service_fn(move |req: Request| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(fieldgate_qr_intake::handle(&deps, req).await) }
    }))
    .await
}
