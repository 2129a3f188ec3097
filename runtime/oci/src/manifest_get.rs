//! Manifests fetched with a size cap. oci-client reads a manifest's whole body before returning it, so an
//! endless body from a hostile registry would take all memory; this GET stops reading at `Limits::manifest`.
//! It shares oci-client's credentials: a bearer token from `Client::auth` (the token dance), else basic auth.

use crate::{Error, Limits};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use std::time::Duration;

/// An HTTP client for manifest GETs, configured like the registry client (plain HTTP only for the insecure
/// registries, the extra CA).
pub(crate) struct ManifestClient {
    http: reqwest::Client,
    insecure: Vec<String>,
    limit: u64,
}

impl ManifestClient {
    pub(crate) fn new(insecure: &[String], ca_pem: Option<&[u8]>, limits: &Limits) -> Result<ManifestClient, Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Invalid(format!("the registry CA file is not PEM: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| Error::Invalid(format!("cannot build the registry client: {e}")))?;
        Ok(ManifestClient { http, insecure: insecure.to_vec(), limit: limits.manifest })
    }

    /// `GET /v2/<repo>/manifests/<tag or digest>`: the body (at most the limit) and the digest header.
    pub(crate) async fn get(
        &self,
        client: &Client,
        r: &Reference,
        auth: &RegistryAuth,
        accepted: &[&str],
    ) -> Result<(Vec<u8>, Option<String>), Error> {
        let registry = r.resolve_registry();
        let scheme = if self.insecure.iter().any(|i| i == registry) { "http" } else { "https" };
        let reference = r.digest().or(r.tag()).unwrap_or("latest");
        let url = format!("{scheme}://{registry}/v2/{}/manifests/{reference}", r.repository());
        let unreachable =
            |message: String| Error::Unreachable { registry: registry.to_string(), reference: r.whole(), message };
        let mut token = None;
        let mut response = loop {
            let mut request = self.http.get(&url).header("accept", accepted.join(", "));
            request = match (&token, auth) {
                (Some(t), _) => request.bearer_auth(t),
                (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
                _ => request,
            };
            let response = request.send().await.map_err(|e| unreachable(crate::source_chain(&e)))?;
            // A registry that wants a token says so with a Bearer challenge; oci-client does the token dance.
            if response.status() == 401 && token.is_none() {
                let challenged = response.headers().get("www-authenticate").and_then(|v| v.to_str().ok());
                if challenged.is_some_and(|c| c.to_ascii_lowercase().starts_with("bearer")) {
                    let got = client.auth(r, auth, RegistryOperation::Pull).await.map_err(|e| crate::classify(e, r))?;
                    if let Some(t) = got {
                        token = Some(t);
                        continue;
                    }
                }
            }
            break response;
        };
        let status = response.status();
        if !status.is_success() {
            let (registry, reference) = (registry.to_string(), r.whole());
            return Err(match status.as_u16() {
                404 => Error::NotFound { registry, reference },
                401 | 403 => Error::Unauthorized { registry, reference, message: format!("{status}") },
                s if s >= 500 || s == 429 => unreachable(format!("{status} from {url}")),
                _ => Error::Registry { registry, reference, message: format!("{status} from {url}") },
            });
        }
        let too_large = || Error::TooLarge { what: format!("the manifest of {}", r.whole()), limit: self.limit };
        if response.content_length().is_some_and(|n| n > self.limit) {
            return Err(too_large());
        }
        let digest = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(crate::source_chain(&e)))? {
            if body.len() as u64 + chunk.len() as u64 > self.limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, digest))
    }
}
