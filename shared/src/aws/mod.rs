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
/// environment, loaded once per container.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}
