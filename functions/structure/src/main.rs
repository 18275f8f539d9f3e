//! Lambda entry point (start-up failures are reported to the Runtime
//! API): build the step from the configuration, run the
//! stream handler.

use aws_lambda_events::dynamodb::Event;
use fieldgate::compose::Components;
use fieldgate::lambda::init;
use fieldgate_structure::Structure;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let deps = Arc::new(init(async { Structure::build(&Components::from_env()?).await }).await);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Event>| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(fieldgate_structure::handle_stream(&deps, ev.payload).await) }
    }))
    .await
}
