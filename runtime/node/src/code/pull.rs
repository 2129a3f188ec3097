//! Components from OCI registries (`spec.image`): resolve the reference, download the layer once per digest
//! however many deploys ask at once, check it, and keep it in the blob store.

use crate::blobs::{Blobs, Digest, write_atomic};
use crate::config::NodeConfig;
use crate::error::Error;
use crate::validate;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The registry client (built on first use) and the per-layer download gates.
pub(super) struct Puller {
    config: wasmfn_oci::RegistryConfig,
    registry: OnceLock<wasmfn_oci::Registry>,
    /// One download at a time per layer digest; concurrent deploys of one image then find it in the store.
    pulling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// `<data-dir>/oci-layers`: for each tar layer fetched, the digest of the component it held.
    layers: PathBuf,
}

impl Puller {
    pub(super) fn new(config: &NodeConfig) -> Result<Puller, Error> {
        // The client is built on first pull: it loads the system's CA certificates, which a node embedded in a
        // container (the shim) may not have and never needs. A CA file that cannot be read fails here.
        if let Some(path) = &config.registry.ca_file {
            std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        }
        Ok(Puller {
            config: wasmfn_oci::RegistryConfig {
                insecure: config.registry.insecure.clone(),
                ca_file: config.registry.ca_file.clone(),
                limits: config.registry.limits(),
            },
            registry: OnceLock::new(),
            pulling: Mutex::default(),
            layers: config.data_dir.join("oci-layers"),
        })
    }

    fn registry(&self) -> Result<&wasmfn_oci::Registry, Error> {
        if let Some(r) = self.registry.get() {
            return Ok(r);
        }
        let r = wasmfn_oci::Registry::new(&self.config)?;
        Ok(self.registry.get_or_init(|| r))
    }

    /// Forgets the download gate of a deleted component.
    pub(super) fn forget(&self, digest: &Digest) {
        self.pulling.lock().unwrap_or_else(|e| e.into_inner()).remove(&digest.to_string());
    }
}

/// A component pulled for a deploy.
pub(crate) struct Pulled {
    /// Its digest; the blob is in the store.
    pub(crate) digest: Digest,
    /// Its bytes, when they were just downloaded and checked.
    pub(crate) bytes: Option<Vec<u8>>,
    /// The reference pinned to the manifest's digest (`registry/repo@sha256:…`).
    pub(crate) pinned: String,
}

impl Puller {
    /// Resolves an image reference and makes sure its component is in `blobs`. One download per layer
    /// digest, even under concurrent deploys; `fetches` counts the downloads.
    pub(super) async fn pull(&self, image: &str, blobs: &Blobs, fetches: &Counter) -> Result<Pulled, Error> {
        let registry = self.registry()?;
        let located = registry.locate(image).await?;
        let gate = {
            let mut pulling = self.pulling.lock().unwrap_or_else(|e| e.into_inner());
            pulling.entry(located.layer.digest.clone()).or_default().clone()
        };
        let _turn = gate.lock().await;
        // A wasm layer is the component; a tar layer's component digest was recorded when it was first fetched.
        // The layer digest names the record only once parsed (wasmfn-oci checked it too): never a path.
        let layer = Digest::parse(&located.layer.digest).ok_or_else(|| {
            wasmfn_oci::Error::Invalid(format!("the layer digest {:?} is not sha256:<64 hex>", located.layer.digest))
        })?;
        let record = self.layers.join(layer.hex());
        let known = if located.layer_is_component() {
            Some(located.layer.digest.clone())
        } else {
            std::fs::read_to_string(&record).ok()
        };
        if let Some(digest) = known.as_deref().and_then(Digest::parse)
            && blobs.path(&digest).exists()
        {
            return Ok(Pulled { digest, bytes: None, pinned: located.pinned });
        }
        let component = registry.fetch(&located).await?;
        fetches.inc();
        tracing::info!(%image, pinned = %located.pinned, bytes = component.len(), "pulled component");
        // Stored before the gate opens, so the next deploy of this digest finds it.
        let blobs = blobs.clone();
        let (bytes, digest) = tokio::task::spawn_blocking(move || {
            validate::check_component(&component)?;
            let digest = blobs.put(&component)?;
            Ok::<_, Error>((component, digest))
        })
        .await
        .map_err(Error::task("validation"))??;
        if !located.layer_is_component() {
            let _ = std::fs::create_dir_all(&self.layers);
            if let Err(e) = write_atomic(&record, digest.to_string().as_bytes()) {
                tracing::warn!(error = %e, "cannot record the layer's component digest; the next deploy fetches it again");
            }
        }
        Ok(Pulled { digest, bytes: Some(bytes), pinned: located.pinned })
    }
}
