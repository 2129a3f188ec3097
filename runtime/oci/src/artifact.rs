//! The artifact formats: writing the CNCF Wasm layout (or a plain image for old containerd), and finding the
//! component in what a registry returns (CNCF, Spin, or a plain image with one `.wasm` in a tar layer).

use crate::{Error, sha256_digest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;

/// The manifest media type written.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's manifest type, accepted on pull.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The CNCF Wasm config.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The CNCF Wasm layer.
pub const WASM_LAYER: &str = "application/wasm";
/// Spin's component layer, accepted on pull.
pub const SPIN_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// A plain OCI image config.
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed OCI tar layer.
pub const TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_LAYERS: &[&str] = &[
    TAR_LAYER,
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

/// How `push` lays the component out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// The CNCF Wasm artifact: Wasm config, one `application/wasm` layer.
    #[default]
    Wasm,
    /// A plain OCI image whose single tar layer holds the component, for containerd older than 1.6.25/1.7.7.
    Image,
}

/// A content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

/// An image manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's media type.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The artifact type (OCI 1.1); absent in what we write, since the config says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// `org.opencontainers.image.*` annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The blobs and manifest of one artifact, ready to push or store.
pub struct Artifact {
    /// The config blob.
    pub config: Vec<u8>,
    /// The layer blob.
    pub layer: Vec<u8>,
    /// The manifest, serialised once: its digest is over exactly these bytes.
    pub manifest: Vec<u8>,
    /// `sha256:` of `manifest`.
    pub digest: String,
}

/// Provenance recorded in the manifest's annotations.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// `org.opencontainers.image.title`: the component's file name.
    pub title: String,
    /// `org.opencontainers.image.source`.
    pub source: Option<String>,
    /// `org.opencontainers.image.revision`.
    pub revision: Option<String>,
}

/// The component's top-level import and export names, as the CNCF config lists them.
pub fn interfaces(component: &[u8]) -> Result<(Vec<String>, Vec<String>), Error> {
    use wasmparser::{Parser, Payload};
    if !Parser::is_component(component) {
        return Err(Error::NotAComponent);
    }
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload.map_err(|e| Error::Invalid(format!("cannot parse the component: {e}")))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth > 0 => depth -= 1,
            Payload::ComponentImportSection(s) if depth == 0 => {
                for i in s {
                    imports.push(i.map_err(|e| Error::Invalid(e.to_string()))?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(s) if depth == 0 => {
                for e in s {
                    exports.push(e.map_err(|e| Error::Invalid(e.to_string()))?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

fn annotations(p: &Provenance, created: &str) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("org.opencontainers.image.created".into(), created.into());
    a.insert("org.opencontainers.image.title".into(), p.title.clone());
    if let Some(s) = &p.source {
        a.insert("org.opencontainers.image.source".into(), s.clone());
    }
    if let Some(r) = &p.revision {
        a.insert("org.opencontainers.image.revision".into(), r.clone());
    }
    a
}

/// Lays a component out as an artifact in `format`.
pub fn build(component: &[u8], format: Format, provenance: &Provenance) -> Result<Artifact, Error> {
    let (imports, exports) = interfaces(component)?;
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (config, layer, config_type, layer_type) = match format {
        Format::Wasm => {
            let layer = component.to_vec();
            // The world the component targets, from the version of its handler export.
            let target = exports
                .iter()
                .find_map(|e| e.strip_prefix("wasi:http/incoming-handler@"))
                .map(|v| format!("wasi:http/proxy@{v}"));
            let config = serde_json::json!({
                "created": created,
                "author": "wasmfn",
                "architecture": "wasm",
                "os": "wasip2",
                "layerDigests": [sha256_digest(&layer)],
                "component": { "exports": exports, "imports": imports, "target": target },
            });
            (config, layer, WASM_CONFIG, WASM_LAYER)
        }
        Format::Image => {
            let name = format!("{}.wasm", p_stem(&provenance.title));
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(component.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, &name, component).map_err(|e| Error::Invalid(e.to_string()))?;
            let layer = tar.into_inner().map_err(|e| Error::Invalid(e.to_string()))?;
            let config = serde_json::json!({
                "created": created,
                "architecture": "wasm",
                "os": "wasip2",
                "config": { "Entrypoint": [format!("/{name}")] },
                "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&layer)] },
            });
            (config, layer, IMAGE_CONFIG, TAR_LAYER)
        }
    };
    let config = serde_json::to_vec(&config).expect("JSON values serialise");
    let mut layer_desc = Descriptor::of(layer_type, &layer);
    layer_desc.annotations.insert("org.opencontainers.image.title".into(), provenance.title.clone());
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::of(config_type, &config),
        layers: vec![layer_desc],
        annotations: annotations(provenance, &created),
    };
    let manifest = serde_json::to_vec(&manifest).expect("manifests serialise");
    let digest = sha256_digest(&manifest);
    Ok(Artifact { config, layer, manifest, digest })
}

fn p_stem(title: &str) -> String {
    let stem = title.strip_suffix(".wasm").unwrap_or(title);
    if stem.is_empty() { "component".into() } else { stem.replace('/', "_") }
}

/// Parses a manifest and picks the layer that holds the component.
pub fn component_layer(manifest: &[u8]) -> Result<(Manifest, Descriptor), Error> {
    let m: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| Error::Invalid(format!("the manifest is not an OCI image manifest: {e}")))?;
    if let Some(l) = m.layers.iter().find(|l| l.media_type == WASM_LAYER || l.media_type == SPIN_LAYER) {
        let l = l.clone();
        return Ok((m, l));
    }
    match m.layers.as_slice() {
        [l] if TAR_LAYERS.contains(&l.media_type.as_str()) => {
            let l = l.clone();
            Ok((m, l))
        }
        layers => Err(Error::MediaType(format!(
            "no component layer: expected one `{WASM_LAYER}` or `{SPIN_LAYER}` layer, or a single tar layer holding a .wasm file; found [{}]",
            layers.iter().map(|l| l.media_type.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The component bytes from a layer's bytes (already digest-checked), at most `max` bytes of it.
pub fn component_from_layer(layer: &Descriptor, bytes: Vec<u8>, max: u64) -> Result<Vec<u8>, Error> {
    let too_large = || Error::TooLarge { what: format!("the component in layer {}", layer.digest), limit: max };
    if layer.media_type == WASM_LAYER || layer.media_type == SPIN_LAYER {
        return if bytes.len() as u64 > max { Err(too_large()) } else { Ok(bytes) };
    }
    let reader: Box<dyn Read> = if layer.media_type.ends_with("gzip") {
        Box::new(flate2::read::GzDecoder::new(std::io::Cursor::new(bytes)))
    } else {
        Box::new(std::io::Cursor::new(bytes))
    };
    // Everything inflated counts (other entries too, and tar's own headers): a gzip bomb stops at the cap.
    let mut capped = crate::limits::CappedReader::new(reader, max.saturating_add(1 << 20));
    let found = read_wasm_entry(&mut capped, max);
    if capped.overflowed {
        return Err(too_large());
    }
    found?.ok_or_else(|| Error::MediaType("the tar layer holds no .wasm file".into()))
}

fn read_wasm_entry(reader: &mut dyn Read, max: u64) -> Result<Option<Vec<u8>>, Error> {
    let unreadable = |e: std::io::Error| Error::Invalid(format!("the tar layer is unreadable: {e}"));
    let mut archive = tar::Archive::new(reader);
    let mut found: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let is_wasm = entry.path().ok().is_some_and(|p| p.extension().is_some_and(|e| e == "wasm"));
        if !is_wasm || !entry.header().entry_type().is_file() {
            continue;
        }
        if found.is_some() {
            return Err(Error::MediaType("the tar layer holds more than one .wasm file".into()));
        }
        let mut data = Vec::new();
        (&mut entry).take(max.saturating_add(1)).read_to_end(&mut data).map_err(unreadable)?;
        if data.len() as u64 > max {
            return Err(Error::TooLarge { what: "the component in the tar layer".into(), limit: max });
        }
        found = Some(data);
    }
    Ok(found)
}
