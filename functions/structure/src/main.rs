//! Lambda entry point (start-up failures are reported to the Runtime
//! API): build the step from the configuration, run the stream handler
//! (or the scheduled sweep).

use fieldgate::compose::Components;
use fieldgate::lambda::init;
use fieldgate_structure::Structure;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldgate::telemetry::init_json();
    let deps = Arc::new(init(async { Structure::build(&Components::from_env()?).await }).await);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| {
        let deps = deps.clone();
        async move {
            fieldgate_structure::handle_event(&deps, ev.payload)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
