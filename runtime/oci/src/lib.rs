//! Wasm components as OCI artifacts.
//!
//! - [`artifact`]: the CNCF Wasm layout (`application/vnd.wasm.config.v0+json` config, one `application/wasm`
//!   layer) or a plain image, and finding the component in CNCF, Spin or plain-image manifests;
//! - [`Registry`]: push and pull over the OCI distribution API (`oci-client`), with credentials from the
//!   environment or `~/.docker/config.json`, plain HTTP only for registries marked insecure, every blob and
//!   manifest checked against its sha256, and transient failures retried with backoff.

pub mod artifact;
mod auth;
mod error;
mod layout;
mod limits;
mod manifest_get;

pub use artifact::{Artifact, Format, Provenance};
pub use auth::credentials;
pub use error::Error;
pub use layout::Layout;
pub use limits::{Limits, check_digest};

use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

/// The registry (`host[:port]`) a reference points at.
pub fn registry_of(reference: &str) -> Result<String, Error> {
    Ok(parse(reference)?.resolve_registry().to_string())
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Registry settings.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain HTTP. Nothing else ever is.
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) to trust besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Caps on what a registry may send.
    pub limits: Limits,
}

/// A pulled component.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The reference pinned to the manifest digest: `registry/repo@sha256:…`.
    pub pinned: String,
    /// `sha256:` of the manifest.
    pub manifest_digest: String,
    /// The component.
    pub component: Vec<u8>,
}

/// A resolved reference and its component layer.
#[derive(Clone, Debug)]
pub struct Located {
    /// The reference as given.
    pub reference: String,
    /// The reference pinned to the manifest digest: `registry/repo@sha256:…`.
    pub pinned: String,
    /// `sha256:` of the manifest.
    pub manifest_digest: String,
    /// The layer holding the component.
    pub layer: artifact::Descriptor,
}

impl Located {
    /// Whether the layer is the component itself (so its digest is the component's).
    pub fn layer_is_component(&self) -> bool {
        self.layer.media_type == artifact::WASM_LAYER || self.layer.media_type == artifact::SPIN_LAYER
    }
}

/// An OCI distribution client.
pub struct Registry {
    client: Client,
    manifests: manifest_get::ManifestClient,
    limits: Limits,
}

const RETRIES: u32 = 3;

fn parse(reference: &str) -> Result<Reference, Error> {
    reference.parse::<Reference>().map_err(|e| Error::Reference { reference: reference.into(), message: e.to_string() })
}

pub(crate) fn classify(e: OciDistributionError, r: &Reference) -> Error {
    let (registry, reference) = (r.registry().to_string(), r.whole());
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => Error::NotFound { registry, reference },
        OciDistributionError::AuthenticationFailure(m) | OciDistributionError::UnauthorizedError { url: m } => {
            Error::Unauthorized { registry, reference, message: m }
        }
        OciDistributionError::ServerError { code: 404, .. } => Error::NotFound { registry, reference },
        OciDistributionError::ServerError { code: 401 | 403, message, .. } => {
            Error::Unauthorized { registry, reference, message }
        }
        OciDistributionError::ServerError { code, url, message } if code >= 500 || code == 429 => {
            Error::Unreachable { registry, reference, message: format!("{code} from {url}: {message}") }
        }
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| format!("{:?}", e.code).contains("Unknown")) =>
        {
            Error::NotFound { registry, reference }
        }
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| format!("{:?}", e.code).contains("Unauthorized")) =>
        {
            Error::Unauthorized { registry, reference, message: format!("{envelope:?}") }
        }
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            let message = source_chain(&e);
            if message.contains("certificate") {
                Error::Tls { registry, reference, message }
            } else {
                Error::Unreachable { registry, reference, message }
            }
        }
        OciDistributionError::DigestError(d) => {
            Error::DigestMismatch { reference, what: "a blob".into(), expected: String::new(), actual: d.to_string() }
        }
        other => Error::Registry { registry, reference, message: source_chain(&other) },
    }
}

pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Runs `op` up to [`RETRIES`] times while it fails transiently, backing off 200 ms, 400 ms, 800 ms.
async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.transient() && attempt < RETRIES => {
                tracing::warn!(attempt, error = %e, "{what} failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

impl Registry {
    /// A client with `config`'s insecure registries and CA file.
    pub fn new(config: &RegistryConfig) -> Result<Registry, Error> {
        let mut extra = Vec::new();
        if let Some(path) = &config.ca_file {
            let data = std::fs::read(path).map_err(|source| Error::Io { path: path.clone(), source })?;
            extra
                .push(oci_client::client::Certificate { encoding: oci_client::client::CertificateEncoding::Pem, data });
        }
        let ca = extra.first().map(|c| c.data.as_slice());
        let manifests = manifest_get::ManifestClient::new(&config.insecure, ca, &config.limits)?;
        let client = Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::HttpsExcept(config.insecure.clone()),
            extra_root_certificates: extra,
            platform_resolver: None,
            // Per read and per connect; `Limits::pull_timeout` bounds a whole pull.
            read_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        });
        Ok(Registry { client, manifests, limits: config.limits })
    }

    async fn authenticate(&self, r: &Reference, op: RegistryOperation) -> Result<RegistryAuth, Error> {
        let auth = credentials(r.resolve_registry());
        if !matches!(auth, RegistryAuth::Anonymous) || op == RegistryOperation::Push {
            retry("registry auth", || async {
                self.client.auth(r, &auth, op).await.map(|_| ()).map_err(|e| classify(e, r))
            })
            .await?;
        }
        Ok(auth)
    }

    /// Resolves a tag to its manifest and returns (manifest bytes, manifest digest), checking the digest.
    async fn manifest(&self, r: &Reference, auth: &RegistryAuth) -> Result<(Vec<u8>, String), Error> {
        let accepted = [artifact::MANIFEST, artifact::DOCKER_MANIFEST];
        let (bytes, header) =
            retry("manifest pull", || async { self.manifests.get(&self.client, r, auth, &accepted).await }).await?;
        let header = header.unwrap_or_default();
        let actual = sha256_digest(&bytes);
        let expected = r.digest().map(str::to_string).unwrap_or(header);
        if !expected.is_empty() && expected != actual {
            return Err(Error::DigestMismatch { reference: r.whole(), what: "the manifest".into(), expected, actual });
        }
        Ok((bytes.to_vec(), actual))
    }

    /// Resolves `reference` (a tag or digest) to its manifest digest.
    pub async fn resolve(&self, reference: &str) -> Result<String, Error> {
        let r = parse(reference)?;
        let auth = self.authenticate(&r, RegistryOperation::Pull).await?;
        Ok(self.manifest(&r, &auth).await?.1)
    }

    /// Resolves `reference` and finds its component layer: (the reference pinned to the manifest digest, the
    /// layer). Nothing large is downloaded.
    pub async fn locate(&self, reference: &str) -> Result<Located, Error> {
        self.bounded(reference, self.locate_unbounded(reference)).await
    }

    /// `op`, failing as unreachable once it has taken `Limits::pull_timeout`.
    async fn bounded<T>(&self, reference: &str, op: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let limit = self.limits.pull_timeout;
        tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
            Err(Error::Unreachable {
                registry: registry_of(reference).unwrap_or_default(),
                reference: reference.to_string(),
                message: format!("the pull took longer than {limit:?}"),
            })
        })
    }

    async fn locate_unbounded(&self, reference: &str) -> Result<Located, Error> {
        let r = parse(reference)?;
        let auth = self.authenticate(&r, RegistryOperation::Pull).await?;
        let (manifest, manifest_digest) = self.manifest(&r, &auth).await?;
        let (_, layer) = artifact::component_layer(&manifest)?;
        check_digest(&layer.digest, "the component layer")?;
        if layer.size > self.limits.layer {
            return Err(Error::TooLarge {
                what: format!("the layer {} ({} bytes)", layer.digest, layer.size),
                limit: self.limits.layer,
            });
        }
        let pinned = format!("{}/{}@{}", r.registry(), r.repository(), manifest_digest);
        Ok(Located { reference: reference.to_string(), pinned, manifest_digest, layer })
    }

    /// Downloads a located layer, checks its digest and returns the component in it.
    pub async fn fetch(&self, located: &Located) -> Result<Vec<u8>, Error> {
        self.bounded(&located.reference, self.fetch_unbounded(located)).await
    }

    async fn fetch_unbounded(&self, located: &Located) -> Result<Vec<u8>, Error> {
        check_digest(&located.layer.digest, "the component layer")?;
        let r = parse(&located.pinned)?;
        let layer = &located.layer;
        let desc = oci_client::manifest::OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size as i64,
            ..Default::default()
        };
        let mismatch = |actual: String| Error::DigestMismatch {
            reference: located.reference.clone(),
            what: format!("layer {}", layer.digest),
            expected: layer.digest.clone(),
            actual,
        };
        let too_long = || {
            Error::Invalid(format!("the layer {} is longer than its descriptor's {} bytes", layer.digest, layer.size))
        };
        let bytes = retry("layer pull", || async {
            // At most the descriptor's size (itself under `Limits::layer`): a longer blob stops mid-stream.
            let mut out = limits::CappedVec::new(layer.size.min(self.limits.layer));
            let overflowed = out.overflowed.clone();
            match self.client.pull_blob(&r, &desc, &mut out).await {
                Ok(()) => Ok(out.buf),
                Err(_) if overflowed.load(std::sync::atomic::Ordering::Relaxed) => Err(too_long()),
                Err(e) => Err(classify(e, &r)),
            }
        })
        .await
        .map_err(|e| match e {
            Error::DigestMismatch { actual, .. } => mismatch(actual),
            e => e,
        })?;
        // oci-client checks as it streams; checking again costs little and does not depend on it.
        let actual = sha256_digest(&bytes);
        if actual != layer.digest {
            return Err(mismatch(actual));
        }
        artifact::component_from_layer(layer, bytes, self.limits.component)
    }

    /// Pulls the component `reference` names.
    pub async fn pull(&self, reference: &str) -> Result<Pulled, Error> {
        let located = self.locate(reference).await?;
        let component = self.fetch(&located).await?;
        Ok(Pulled { pinned: located.pinned, manifest_digest: located.manifest_digest, component })
    }

    /// Pushes an artifact to `reference` and returns the reference pinned to the manifest digest.
    pub async fn push(&self, reference: &str, artifact: &Artifact) -> Result<String, Error> {
        let r = parse(reference)?;
        self.authenticate(&r, RegistryOperation::Push).await?;
        for blob in [&artifact.config, &artifact.layer] {
            let digest = sha256_digest(blob);
            retry("blob push", || async {
                self.client.push_blob(&r, blob.clone(), &digest).await.map(|_| ()).map_err(|e| classify(e, &r))
            })
            .await?;
        }
        let content_type = http::HeaderValue::from_static(artifact::MANIFEST);
        retry("manifest push", || async {
            self.client
                .push_manifest_raw(&r, artifact.manifest.clone(), content_type.clone())
                .await
                .map(|_| ())
                .map_err(|e| classify(e, &r))
        })
        .await?;
        Ok(format!("{}/{}@{}", r.registry(), r.repository(), artifact.digest))
    }
}

#[cfg(test)]
mod tests;
