//! Lambda entry point: wire clients, run the handler.

use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let env = fieldgate::wiring::Env::load(fieldgate::wiring::Needs {
        salesforce: false,
        keys: true,
    })
    .await?;
    let deps = std::sync::Arc::new(fieldgate_approval::Approval {
        store: env.store.clone(),
        media: env.media.clone(),
        workflows: env.workflows.clone(),
        csrf: env.links()?,
    });
    lambda_http::run(service_fn(move |req: Request| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(fieldgate_approval::handle(&deps, req).await) }
    }))
    .await
}
