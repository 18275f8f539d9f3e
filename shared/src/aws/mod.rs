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
/// (TLS context and connection pool).
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(ConnectOnFirstRequest(http))
        .load()
        .await
}

/// The SDK's HTTP client, minus its eager start: smithy's client builds a
/// throw-away connector (a rustls config, the system's TLS roots parsed
/// again) each time a service client is made, "so that native certs load at
/// client initialization time" (`validate_base_client_config`). Here that
/// check is skipped, so the roots are parsed once, when the first request
/// needs a connector (which the inner client then caches and shares). The
/// rustls config cannot be shared with reqwest: smithy takes only a trust
/// store (PEM or native roots), never a prebuilt `rustls::ClientConfig`.
#[derive(Debug)]
struct ConnectOnFirstRequest(aws_smithy_runtime_api::client::http::SharedHttpClient);

impl aws_smithy_runtime_api::client::http::HttpClient for ConnectOnFirstRequest {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// An SDK client made on its first request, so a cold start pays only for
/// the clients its first event uses (building one resolves its endpoint
/// rules and runtime plugins): a sweep that finds nothing never makes its
/// S3, SES or SNS client.
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
