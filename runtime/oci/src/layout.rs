//! The local store: an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`), the node's data
//! dir. `wasmfn build` writes artifacts here under `org.opencontainers.image.ref.name`, `wasmfn push` copies them to
//! a registry, and the node keeps pulled and uploaded components in the same `blobs/sha256/`.

use crate::artifact::{self, Artifact, Descriptor, Manifest};
use crate::{Error, sha256_digest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Writes through a temp file and a rename, so readers never see half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().expect("layout paths have a parent");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp =
        dir.join(format!(".tmp-{}-{}", std::process::id(), path.file_name().unwrap_or_default().to_string_lossy()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl Layout {
    /// Opens (creating when needed) the layout at `root`.
    pub fn open(root: &Path) -> Result<Layout, Error> {
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(Layout { root: root.to_path_buf() })
    }

    /// Where the blob with `digest` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<String, Error> {
        let digest = sha256_digest(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    /// A blob, checked against its digest.
    pub fn blob(&self, digest: &str) -> Result<Vec<u8>, Error> {
        // Digests come from index.json and manifests: checked before they name a file.
        crate::check_digest(digest, "a blob of the layout")?;
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(Error::DigestMismatch {
                reference: self.root.display().to_string(),
                what: format!("local blob {digest}"),
                expected: digest.into(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn index(&self) -> Result<Index, Error> {
        let path = self.root.join("index.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Invalid(format!("{}: not an OCI index: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index { schema_version: 2, manifests: vec![] }),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Stores an artifact and names it `name` (replacing what the name pointed to).
    pub fn put(&self, artifact: &Artifact, name: &str) -> Result<(), Error> {
        self.put_blob(&artifact.config)?;
        self.put_blob(&artifact.layer)?;
        let digest = self.put_blob(&artifact.manifest)?;
        // One writer at a time: `build`s of several functions may run at once.
        let lock_path = self.root.join(".index.lock");
        let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut index = self.index()?;
        index.schema_version = 2;
        index.manifests.retain(|m| m.annotations.get(REF_NAME).map(String::as_str) != Some(name));
        index.manifests.push(Descriptor {
            media_type: artifact::MANIFEST.into(),
            digest,
            size: artifact.manifest.len() as u64,
            annotations: BTreeMap::from([(REF_NAME.to_string(), name.to_string())]),
        });
        let bytes = serde_json::to_vec_pretty(&index).expect("indexes serialise");
        write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// The artifact named `name`, its blobs checked against their digests.
    pub fn get(&self, name: &str) -> Result<Option<Artifact>, Error> {
        let index = self.index()?;
        let Some(entry) =
            index.manifests.iter().find(|m| m.annotations.get(REF_NAME).map(String::as_str) == Some(name))
        else {
            return Ok(None);
        };
        let manifest = self.blob(&entry.digest)?;
        let (m, layer) = artifact::component_layer(&manifest)?;
        Ok(Some(Artifact {
            config: self.blob(&m.config.digest)?,
            layer: self.blob(&layer.digest)?,
            digest: entry.digest.clone(),
            manifest,
        }))
    }

    /// Every blob the index reaches (manifests, configs, layers): what garbage collection keeps.
    pub fn referenced(&self) -> Result<HashSet<String>, Error> {
        let mut keep = HashSet::new();
        for entry in self.index()?.manifests {
            if crate::check_digest(&entry.digest, "a manifest").is_ok()
                && let Ok(bytes) = std::fs::read(self.blob_path(&entry.digest))
                && let Ok(m) = serde_json::from_slice::<Manifest>(&bytes)
            {
                keep.insert(m.config.digest.clone());
                keep.extend(m.layers.iter().map(|l| l.digest.clone()));
            }
            keep.insert(entry.digest);
        }
        Ok(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{Format, Provenance, build};

    #[test]
    fn artifacts_are_named_replaced_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let wasm = wat::parse_str("(component)").unwrap();
        let a = build(&wasm, Format::Wasm, &Provenance { title: "a.wasm".into(), ..Default::default() }).unwrap();
        layout.put(&a, "hello:latest").unwrap();
        assert!(dir.path().join("oci-layout").exists());
        let back = layout.get("hello:latest").unwrap().unwrap();
        assert_eq!((back.digest, back.layer), (a.digest.clone(), wasm.clone()));
        assert!(layout.get("other:latest").unwrap().is_none());
        let keep = layout.referenced().unwrap();
        assert!(
            keep.contains(&a.digest)
                && keep.contains(&sha256_digest(&wasm))
                && keep.contains(&sha256_digest(&a.config))
        );

        // Re-naming replaces the entry; a tampered blob is refused.
        let b = build(&wasm, Format::Image, &Provenance { title: "a.wasm".into(), ..Default::default() }).unwrap();
        layout.put(&b, "hello:latest").unwrap();
        assert_eq!(layout.get("hello:latest").unwrap().unwrap().digest, b.digest);
        assert!(!layout.referenced().unwrap().contains(&a.digest));
        std::fs::write(layout.blob_path(&b.digest), b"tampered").unwrap();
        assert!(matches!(layout.get("hello:latest"), Err(Error::DigestMismatch { .. })));
    }
}
