//! The cold-start baseline for the stream functions: the smallest
//! `lambda_runtime` function, built with the same crate versions and
//! profile as they are (bench-cold-start runs it beside them).

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(
        |ev: LambdaEvent<serde_json::Value>| async move { Ok::<_, Error>(ev.payload) },
    ))
    .await
}
