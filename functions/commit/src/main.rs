//! Lambda entry point: wire clients, run the stream handler (or the
//! scheduled sweep that re-drives paused commits).

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let env = fieldgate::wiring::Env::load(fieldgate::wiring::Needs {
        salesforce: true,
        keys: false,
    })
    .await?;
    let deps = std::sync::Arc::new(fieldgate_commit::Commit {
        store: env.store.clone(),
        writer: env.salesforce()?,
        media: env.media.clone(),
        handoff: env.handoff.clone(),
        notifier: env.notifier.clone(),
        workflows: env.workflows.clone(),
        public_url: env.public_url.clone(),
    });
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| {
        let deps = deps.clone();
        async move {
            fieldgate_commit::handle_event(&deps, ev.payload)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
