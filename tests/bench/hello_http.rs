//! The cold-start baseline for the HTTP functions: the smallest
//! `lambda_http` function, built with the same crate versions and profile
//! as they are (bench-cold-start runs it beside them).

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
