//! Lambda entry point: wire clients, run the stream handler.

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let env = fieldgate::wiring::Env::load(fieldgate::wiring::Needs {
        salesforce: false,
        keys: false,
    })
    .await?;
    let deps = std::sync::Arc::new(fieldgate_structure::Structure {
        store: env.store.clone(),
        media: env.media.clone(),
        notifier: env.notifier.clone(),
        workflows: env.workflows.clone(),
        structurers: fieldgate::structuring::structurers_from_env().await,
        rules: Default::default(),
        public_url: env.public_url.clone(),
    });
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Event>| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(fieldgate_structure::handle_stream(&deps, ev.payload).await) }
    }))
    .await
}
