//! `wasmfn push` and `wasmfn pull`: components to and from OCI registries.

use crate::build::{BuildArgs, build_dir};
use crate::registry::{RegistryArgs, push_file};
use anyhow::Context;
use std::path::Path;
use wasmfn_oci::Format;

/// `wasmfn push DIR|FILE REF`: builds a function folder (cached) or takes a component file, and pushes it.
pub(crate) async fn push(
    source: &Path,
    reference: &str,
    format: Format,
    data_dir: &Path,
    registry: &RegistryArgs,
    build: &BuildArgs,
) -> anyhow::Result<()> {
    if !source.exists() {
        return push_local(&source.to_string_lossy(), reference, data_dir, registry).await;
    }
    let (file, title) = if source.is_dir() {
        let builder = build.builder()?;
        let dir = source.to_path_buf();
        let built = tokio::task::spawn_blocking(move || build_dir(&builder, &dir, None, true)).await??;
        let name = std::path::absolute(source)?.file_name().map(|n| n.to_string_lossy().into_owned());
        (built.path, format!("{}.wasm", name.unwrap_or_else(|| "component".into())))
    } else {
        let title = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (source.to_path_buf(), title)
    };
    let dir = if source.is_dir() { source } else { source.parent().unwrap_or(Path::new(".")) };
    let pushed = push_file(&file, title, dir, reference, format, registry).await?;
    println!("pushed {reference}: {} ({} bytes component)", pushed.digest, pushed.size);
    println!("  → {}", pushed.pinned);
    Ok(())
}

/// Pushes an artifact from the local OCI layout as it is (`wasmfn build` stored it as `NAME:latest`).
async fn push_local(name: &str, reference: &str, data_dir: &Path, registry: &RegistryArgs) -> anyhow::Result<()> {
    let layout = wasmfn_oci::Layout::open(data_dir)?;
    let tagged = if name.contains(':') { name.to_string() } else { format!("{name}:latest") };
    let Some(artifact) = layout.get(&tagged)? else {
        anyhow::bail!("{name} is neither a file, a folder, nor an artifact in the local store {}", data_dir.display());
    };
    let pinned = registry.registry(reference)?.push(reference, &artifact).await?;
    println!("pushed {reference}: {} (from the local store, {tagged})", artifact.digest);
    println!("  → {pinned}");
    Ok(())
}

/// `wasmfn pull REF`: into the local component store, or `-o FILE`.
pub(crate) async fn pull(
    reference: &str,
    output: Option<&Path>,
    data_dir: &Path,
    registry: &RegistryArgs,
) -> anyhow::Result<()> {
    let pulled = registry.registry(reference)?.pull(reference).await?;
    wasmfn_runtime::check_component(&pulled.component).with_context(|| format!("{reference} cannot be served"))?;
    let digest = wasmfn_oci::sha256_digest(&pulled.component);
    let dest = match output {
        Some(out) => {
            std::fs::write(out, &pulled.component).with_context(|| format!("writing {}", out.display()))?;
            out.to_path_buf()
        }
        None => {
            let store = wasmfn_runtime::Blobs::new(data_dir);
            let d = store.put(&pulled.component).context("storing the component")?;
            store.path(&d)
        }
    };
    println!("pulled {reference}: component {digest} ({} bytes)", pulled.component.len());
    println!("  manifest {} → {}", pulled.pinned, dest.display());
    Ok(())
}
