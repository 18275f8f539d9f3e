//! The AWS adapters of the ports, one cargo feature per service (`aws-*`,
//! all of them: `aws`) so each Lambda links only the SDK crates it uses.
//! Endpoints and credentials come from the standard AWS environment, so the
//! same code talks to AWS, DynamoDB Local and moto.

#[cfg(feature = "aws-dynamodb")]
pub mod dynamodb;
#[cfg(feature = "aws-streams")]
pub mod poller;
#[cfg(feature = "aws-s3")]
pub mod s3;
#[cfg(feature = "aws-secrets")]
pub mod secrets;
#[cfg(feature = "aws-ses")]
pub mod ses;
#[cfg(feature = "aws-sns")]
pub mod sns;

/// The shared SDK configuration (region, credentials, endpoints) from the
/// environment, loaded once per container, with one HTTP client for every
/// service client: left to themselves, each client builds its own and reads
/// the system's TLS roots again (about 1 ms each in a cold start), and keeps
/// its own connection pool.
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}
