//! `s3://BUCKET/KEY?endpoint=URL&region=R#PATH`: an archive of the function folder in an S3-compatible bucket,
//! read with `object_store` (path-style requests, so MinIO, Ceph and test servers work as AWS does).

use super::{FetchOptions, Source, SourceError, archive, subfolder};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, ObjectStoreExt, RetryConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The endpoint named in errors: the source's, the environment's, or AWS's.
fn endpoint_of(endpoint: Option<&str>, region: Option<&str>) -> String {
    let env = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    endpoint.map(str::to_string).or_else(|| env("AWS_ENDPOINT_URL")).or_else(|| env("AWS_ENDPOINT")).unwrap_or_else(
        || {
            let region = region.map(str::to_string).or_else(|| env("AWS_REGION")).or_else(|| env("AWS_DEFAULT_REGION"));
            format!("https://s3.{}.amazonaws.com", region.as_deref().unwrap_or("us-east-1"))
        },
    )
}

/// Whether the error chain holds a failure to connect (nothing listening, DNS, TLS handshake, timeout).
fn is_connect_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(http) = err.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind::{Connect, Timeout};
            return matches!(http.kind(), Connect | Timeout);
        }
        next = err.source();
    }
    false
}

/// The error that names the problem: a missing bucket or key, refused credentials, an endpoint that is down.
fn classify(e: object_store::Error, bucket: &str, key: &str, endpoint: &str) -> SourceError {
    let text = e.to_string();
    tracing::debug!(error = %text, "S3 request failed");
    let (bucket, key, endpoint) = (bucket.to_string(), key.to_string(), endpoint.to_string());
    match e {
        object_store::Error::NotFound { .. } if text.contains("NoSuchBucket") => {
            SourceError::BucketNotFound { bucket, endpoint }
        }
        object_store::Error::NotFound { .. } => SourceError::KeyNotFound { bucket, key, endpoint },
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            SourceError::AccessDenied { bucket, key, endpoint, detail: text }
        }
        ref other if is_connect_error(other) => SourceError::Unreachable { endpoint, detail: text },
        _ => SourceError::S3 { bucket, key, endpoint, detail: text },
    }
}

/// Downloads and unpacks the archive of `source` (an [`Source::S3`]) below `dest`; returns the folder.
pub(super) async fn fetch(source: &Source, dest: &Path, options: &FetchOptions<'_>) -> Result<PathBuf, SourceError> {
    let Source::S3 { bucket, key, endpoint, region, path } = source else { unreachable!("an S3 source") };
    let shown = endpoint_of(endpoint.as_deref(), region.as_deref());
    let s3_error =
        |detail: String| SourceError::S3 { bucket: bucket.clone(), key: key.clone(), endpoint: shown.clone(), detail };
    // Credentials, session token and default endpoint come from the AWS_* environment.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(
            ClientOptions::new().with_connect_timeout(Duration::from_secs(10)).with_timeout(options.timeout),
        )
        // A few quick retries: a down endpoint should fail the build in seconds, not minutes.
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(30),
        })
        .with_virtual_hosted_style_request(false)
        .with_allow_http(true);
    if let Some(e) = endpoint {
        builder = builder.with_endpoint(e);
    }
    if let Some(r) = region {
        builder = builder.with_region(r);
    }
    let store = builder.build().map_err(|e| s3_error(e.to_string()))?;
    let object = object_store::path::Path::from(key.as_str());
    let map = |e| classify(e, bucket, key, &shown);
    let what = format!("s3://{bucket}/{key}");
    let limit = options.max_archive_bytes;
    let too_large = || SourceError::TooLarge { what: what.clone(), limit };
    let download = async {
        let got = store.get(&object).await.map_err(map)?;
        if got.meta.size > limit {
            return Err(too_large());
        }
        let file = dest.join("archive");
        let io = |e| SourceError::io(&file, e);
        let mut out = tokio::fs::File::create(&file).await.map_err(io)?;
        let mut stream = got.into_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(map)?;
            size += chunk.len() as u64;
            // The stream is checked too: the announced length is only a header.
            if size > limit {
                return Err(too_large());
            }
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        tracing::info!(%what, bytes = size, "downloaded the source archive");
        Ok(file)
    };
    let file = tokio::time::timeout(options.timeout, download)
        .await
        .map_err(|_| SourceError::Timeout { what: format!("downloading {what}"), after: options.timeout })??;
    let unpacked = dest.join("unpacked");
    let (to, named) = (unpacked.clone(), what.clone());
    // Unpacked content may be larger than the archive, but not without bound (a zip bomb).
    let max_unpacked = limit.saturating_mul(4);
    tokio::task::spawn_blocking(move || archive::unpack(&file, &to, &named, max_unpacked))
        .await
        .map_err(|e| SourceError::io(&unpacked, std::io::Error::other(e)))??;
    let root = archive::root(&unpacked)?;
    subfolder(&root, path.as_deref(), || format!("the archive {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_name_the_problem() {
        let not_found = |body: &str| object_store::Error::NotFound { path: "k".into(), source: body.into() };
        let e = classify(not_found("<Code>NoSuchBucket</Code>"), "b", "k", "http://s3");
        assert_eq!(e.to_string(), "S3 bucket `b` not found at http://s3");
        let e = classify(not_found("<Code>NoSuchKey</Code>"), "b", "k", "http://s3");
        assert_eq!(e.to_string(), "S3 object `k` not found in bucket `b` at http://s3");
        let denied = object_store::Error::PermissionDenied { path: "k".into(), source: "SignatureDoesNotMatch".into() };
        let e = classify(denied, "b", "k", "http://s3").to_string();
        assert!(e.starts_with("access denied reading s3://b/k at http://s3") && e.contains("SignatureDoesNotMatch"));
        let other = object_store::Error::Generic { store: "S3", source: "boom".into() };
        assert!(matches!(classify(other, "b", "k", "e"), SourceError::S3 { .. }));
    }

    #[test]
    fn the_endpoint_shown_is_the_sources_then_awss() {
        assert_eq!(endpoint_of(Some("http://127.0.0.1:9000"), Some("eu-west-1")), "http://127.0.0.1:9000");
        if std::env::var_os("AWS_ENDPOINT_URL").is_none() && std::env::var_os("AWS_ENDPOINT").is_none() {
            assert_eq!(endpoint_of(None, Some("eu-west-1")), "https://s3.eu-west-1.amazonaws.com");
        }
    }
}
