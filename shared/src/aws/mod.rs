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
/// service client: left to themselves, each client builds its own connector
/// (TLS context and connection pool). Each client still parses the TLS
/// roots when it is made (see [`LazyClient`]).
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

/// An SDK client made on its first request. Making one parses the system's
/// TLS roots again (the SDK does it per client, even with one shared HTTP
/// client), so a cold start pays only for the clients its first event uses:
/// a sweep that finds nothing never makes its S3, SES or SNS client.
pub struct LazyClient<C> {
    cell: std::sync::OnceLock<C>,
    make: Option<Box<dyn Fn() -> C + Send + Sync>>,
}

impl<C> LazyClient<C> {
    /// A client made already (tests hand in their own).
    pub fn ready(client: C) -> Self {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(client);
        Self { cell, make: None }
    }

    pub fn new(make: impl Fn() -> C + Send + Sync + 'static) -> Self {
        Self {
            cell: std::sync::OnceLock::new(),
            make: Some(Box::new(make)),
        }
    }

    pub fn get(&self) -> &C {
        self.cell.get_or_init(|| match &self.make {
            Some(make) => make(),
            None => unreachable!("a ready client is set at construction"),
        })
    }
}
