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

/// The shared SDK configuration (region, credentials, endpoints), loaded
/// once per container, with one HTTP client for every service client: left
/// to themselves, each client builds its own connector (TLS context and
/// connection pool).
///
/// In a Lambda (`AWS_LAMBDA_RUNTIME_API` set) it is read from the
/// environment only: Lambda hands the role's credentials and the region in
/// it, so the default chain (profile files, SSO, IMDS, STS web identity)
/// would only cost start-up time and, linked in, artifact size. Elsewhere,
/// with the `aws-profiles` feature (the `fieldgate` command), it is the
/// SDK's default chain, so a profile or SSO login works too.
pub async fn sdk_config() -> aws_types::SdkConfig {
    #[cfg(feature = "aws-profiles")]
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https_client(TrustStore::default()))
            .load()
            .await;
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let endpoints = EnvEndpoints::read(&var);
    let http = https_client(lambda_trust_store(endpoints.any_https()));
    env_config(http, var, endpoints)
}

use aws_smithy_http_client::tls::TrustStore;

fn https_client(roots: TrustStore) -> ConnectOnFirstRequest {
    use aws_smithy_http_client::tls::{Provider, TlsContext, rustls_provider::CryptoMode};
    let tls = TlsContext::builder()
        .with_trust_store(roots)
        .build()
        .expect("a TLS context with a trust store builds");
    ConnectOnFirstRequest(
        aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls)
            .build_https(),
    )
}

/// The roots every AWS service endpoint's certificate chains to (Amazon
/// Trust Services: Amazon Root CA 1-4 and the Starfield Services G2 root
/// that cross-signs them), copied from the Mozilla CA bundle.
const AMAZON_ROOTS: &str = include_str!("amazon-roots.pem");

/// In a Lambda the SDK talks to AWS endpoints only, so it trusts Amazon's
/// five roots instead of parsing the system's (about 145: 4.8 ms of the
/// cold start in a release build, measured). An `https` endpoint set in the
/// environment (`AWS_ENDPOINT_URL…`: a stand-in with a certificate of its
/// own) brings the system's roots back.
fn lambda_trust_store(custom_https_endpoint: bool) -> TrustStore {
    TrustStore::empty()
        .with_native_roots(custom_https_endpoint)
        .with_pem_certificate(AMAZON_ROOTS.as_bytes())
}

/// The configuration from environment variables only, as `aws-config`
/// reads them: `AWS_REGION` (else `AWS_DEFAULT_REGION`),
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`,
/// `AWS_ENDPOINT_URL` and its per-service form (`AWS_ENDPOINT_URL_DYNAMODB`,
/// `…_SECRETS_MANAGER`), the SDK's default retries and connect timeout.
/// `var` gives a variable's value, `None` when unset or empty.
fn env_config(
    http: impl aws_smithy_runtime_api::client::http::HttpClient + 'static,
    var: impl Fn(&str) -> Option<String>,
    endpoints: EnvEndpoints,
) -> aws_types::SdkConfig {
    use aws_credential_types::{Credentials, provider::SharedCredentialsProvider};
    let mut builder = aws_types::SdkConfig::builder()
        .behavior_version(
            aws_smithy_runtime_api::client::behavior_version::BehaviorVersion::latest(),
        )
        .http_client(http)
        .retry_config(aws_smithy_types::retry::RetryConfig::standard())
        .timeout_config(
            aws_smithy_types::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_millis(3100))
                .build(),
        )
        .region(
            var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .map(aws_types::region::Region::new),
        );
    // Without keys no provider is set, and the first request fails with
    // the SDK's "no credentials" error rather than signing with blanks.
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        let credentials =
            Credentials::new(id, secret, var("AWS_SESSION_TOKEN"), None, "environment");
        builder = builder.credentials_provider(SharedCredentialsProvider::new(credentials));
    }
    if let Some(url) = endpoints.get("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(url.to_owned());
    }
    builder.service_config(endpoints).build()
}

/// The endpoint variables of the services fieldgate calls, read once.
const ENDPOINT_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SESV2",
    "AWS_ENDPOINT_URL_SNS",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
];

/// Per-service settings as the service clients ask for them: `AWS_X_Y`
/// for service id "Y Z" looks up `AWS_X_Y_Z` first, then `AWS_X`
/// (`aws-config`'s rule: the id upper-cased, spaces as underscores).
#[derive(Debug)]
struct EnvEndpoints(Vec<(&'static str, String)>);

impl EnvEndpoints {
    fn read(var: &impl Fn(&str) -> Option<String>) -> Self {
        Self(
            ENDPOINT_VARS
                .iter()
                .filter_map(|name| var(name).map(|v| (*name, v)))
                .collect(),
        )
    }

    fn any_https(&self) -> bool {
        self.0
            .iter()
            .any(|(_, url)| url.trim().to_ascii_lowercase().starts_with("https://"))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl aws_types::service_config::LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_uppercase().replace(' ', "_");
        self.get(&format!("{}_{service}", key.env()))
            .or_else(|| self.get(key.env()))
            .map(str::to_owned)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::ProvideCredentials;

    fn config(vars: &[(&str, &str)]) -> aws_types::SdkConfig {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let http = aws_smithy_http_client::Builder::new().build_http();
        let var = move |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let endpoints = EnvEndpoints::read(&var);
        env_config(http, var, endpoints)
    }

    fn endpoint(config: &aws_types::SdkConfig, service: &str) -> Option<String> {
        let key = aws_types::service_config::ServiceConfigKey::builder()
            .service_id(service)
            .profile("default")
            .env("AWS_ENDPOINT_URL")
            .build()
            .unwrap();
        config.service_config().unwrap().load_config(key)
    }

    #[tokio::test]
    async fn reads_region_credentials_and_endpoints_from_the_environment() {
        let c = config(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_ENDPOINT_URL", "http://moto:5000"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://ddb:8000"),
        ]);
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-1"));
        let creds = c
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(creds.session_token(), Some("token"));
        assert_eq!(c.endpoint_url(), Some("http://moto:5000"));
        assert_eq!(endpoint(&c, "DynamoDB").as_deref(), Some("http://ddb:8000"));
        assert_eq!(
            endpoint(&c, "Secrets Manager").as_deref(),
            Some("http://moto:5000")
        );
    }

    #[test]
    fn aws_region_wins_and_missing_keys_set_no_provider() {
        let c = config(&[
            ("AWS_REGION", "us-east-2"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "x"),
        ]);
        assert_eq!(c.region().map(|r| r.as_ref()), Some("us-east-2"));
        assert!(c.credentials_provider().is_none());
        assert!(c.endpoint_url().is_none());
        assert_eq!(endpoint(&c, "Secrets Manager"), None);
    }

    #[test]
    fn the_amazon_roots_are_five_trust_anchors() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(AMAZON_ROOTS.as_bytes())
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        let mut roots = rustls::RootCertStore::empty();
        assert_eq!(roots.add_parsable_certificates(certs), (5, 0));
    }

    #[test]
    fn system_roots_only_with_an_https_endpoint_in_the_environment() {
        let custom = |vars: &'static [(&'static str, &'static str)]| {
            EnvEndpoints::read(&|name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
            .any_https()
        };
        assert!(!custom(&[]));
        assert!(!custom(&[(
            "AWS_ENDPOINT_URL_DYNAMODB",
            "http://127.0.0.1:8000"
        )]));
        assert!(custom(&[("AWS_ENDPOINT_URL_S3", "HTTPS://minio.local")]));
        assert!(!custom(&[("SOME_OTHER_URL", "https://x")]));
    }

    #[test]
    fn a_per_service_endpoint_uses_the_service_id_with_underscores() {
        let c = config(&[("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://sm")]);
        assert_eq!(
            endpoint(&c, "Secrets Manager").as_deref(),
            Some("http://sm")
        );
        assert_eq!(endpoint(&c, "DynamoDB"), None);
    }
}
