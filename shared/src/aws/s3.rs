//! Photos in S3: server-side encrypted objects with their content type, and
//! presigned PUTs for uploads straight from the browser (checked with
//! [`S3Media::check_upload`] before a proposal refers to them).

use crate::ports::{MediaError, MediaStore};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::ServerSideEncryption;
use std::time::Duration;

pub struct S3Media {
    client: super::LazyClient<Client>,
    bucket: String,
    /// Keys live under this prefix (the IAM policies name it).
    prefix: String,
}

/// A presigned upload: the browser PUTs the bytes to `url` with exactly
/// these headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// What an uploaded object turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub bytes: u64,
    pub content_type: String,
}

fn err<E, R>(e: SdkError<E, R>) -> MediaError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    MediaError::failed("S3 request", e)
}

impl S3Media {
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            client: super::LazyClient::ready(client),
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// Its client made on the first request (cold start: see
    /// [`super::LazyClient`]).
    pub fn lazy(
        config: &aws_types::SdkConfig,
        force_path_style: bool,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        let config = config.clone();
        Self {
            client: super::LazyClient::new(move || Self::client(&config, force_path_style)),
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// A client from the shared config; `force_path_style` for moto and
    /// other S3-compatible stand-ins (`FIELDGATE_S3_PATH_STYLE=1`).
    pub fn client(config: &aws_types::SdkConfig, force_path_style: bool) -> Client {
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(force_path_style)
            .build();
        Client::from_conf(conf)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A PUT URL valid for `expires`, bound to the content type and length,
    /// so the browser cannot store something else under the key.
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        bytes: u64,
        expires: Duration,
    ) -> Result<PresignedPut, MediaError> {
        let cfg = PresigningConfig::expires_in(expires)
            .map_err(|e| MediaError::failed("presigning", e))?;
        let req = self
            .client
            .get()
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_type(content_type)
            .content_length(
                i64::try_from(bytes).map_err(|e| MediaError::failed("content length", e))?,
            )
            .server_side_encryption(ServerSideEncryption::Aes256)
            .presigned(cfg)
            .await
            .map_err(err)?;
        Ok(PresignedPut {
            url: req.uri().to_owned(),
            headers: req
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }

    /// Checks an uploaded object: present, at most `max_bytes`, and of one
    /// of the `allowed` content types. Anything else is deleted.
    pub async fn check_upload(
        &self,
        key: &str,
        max_bytes: u64,
        allowed: &[&str],
    ) -> Result<Option<Uploaded>, MediaError> {
        let head = match self
            .client
            .get()
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(h) => h,
            Err(SdkError::ServiceError(se)) if matches!(se.err(), HeadObjectError::NotFound(_)) => {
                return Ok(None);
            }
            Err(e) => return Err(err(e)),
        };
        let up = Uploaded {
            bytes: head.content_length.unwrap_or(0).max(0) as u64,
            content_type: head.content_type.unwrap_or_default(),
        };
        if up.bytes == 0 || up.bytes > max_bytes || !allowed.contains(&up.content_type.as_str()) {
            self.client
                .get()
                .delete_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .send()
                .await
                .map_err(err)?;
            return Err(MediaError::Refused(format!(
                "{} bytes of {}",
                up.bytes, up.content_type
            )));
        }
        Ok(Some(up))
    }
}

#[async_trait]
impl MediaStore for S3Media {
    async fn put(&self, key: &str, data: &[u8], content_type: &str) -> Result<(), MediaError> {
        self.client
            .get()
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_type(content_type)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(data.to_vec().into())
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), MediaError> {
        // S3 answers 204 for a key that is not there: nothing to special-case.
        self.client
            .get()
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MediaError> {
        let out = match self
            .client
            .get()
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(o) => o,
            Err(SdkError::ServiceError(se)) if matches!(se.err(), GetObjectError::NoSuchKey(_)) => {
                return Ok(None);
            }
            Err(e) => return Err(err(e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| MediaError::failed("reading the object body", e))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }
}
