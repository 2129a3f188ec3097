//! `wasmfn push` and `wasmfn pull`: components to and from OCI registries.

use crate::build::{BuildArgs, build_dir};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;
use wasmfn_oci::{Format, Provenance, Registry, RegistryConfig};

/// Registry options shared by `push` and `pull`.
#[derive(clap::Args, Clone)]
pub(crate) struct RegistryArgs {
    /// Reach this reference's registry over plain HTTP (never done otherwise).
    #[arg(long)]
    insecure: bool,
    /// A PEM file of extra CA certificates to trust.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

impl RegistryArgs {
    pub(crate) fn registry(&self, reference: &str) -> anyhow::Result<Registry> {
        let mut config = RegistryConfig { ca_file: self.ca_file.clone(), ..Default::default() };
        if self.insecure {
            config.insecure.push(wasmfn_oci::registry_of(reference)?);
        }
        Ok(Registry::new(&config)?)
    }
}

/// `git -C dir ARGS`, trimmed, when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

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

/// What [`push_file`] pushed.
pub(crate) struct Pushed {
    /// The artifact's manifest digest.
    pub digest: String,
    /// `registry/repository@sha256:…`.
    pub pinned: String,
    /// The component's size in bytes.
    pub size: usize,
}

/// Pushes the component `file` to `reference` as `format`, its provenance (repository, commit) taken from the
/// git checkout around `dir`.
pub(crate) async fn push_file(
    file: &Path,
    title: String,
    dir: &Path,
    reference: &str,
    format: Format,
    registry: &RegistryArgs,
) -> anyhow::Result<Pushed> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    wasmfn_runtime::check_component(&bytes).with_context(|| format!("{} cannot be served", file.display()))?;
    let provenance = Provenance {
        title,
        source: git(dir, &["remote", "get-url", "origin"]),
        revision: git(dir, &["rev-parse", "HEAD"]),
    };
    let artifact = wasmfn_oci::artifact::build(&bytes, format, &provenance)?;
    let pinned = registry.registry(reference)?.push(reference, &artifact).await?;
    Ok(Pushed { digest: artifact.digest, pinned, size: bytes.len() })
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
