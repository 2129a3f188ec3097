//! Registry options and the component push that `build --push`, `push` and `deploy` share: a module below the
//! commands' own, so that `build` (which pushes) and `oci` (which builds) do not import each other.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;
use wasmfn_oci::{Format, Provenance, Registry, RegistryConfig};

/// Registry options of the commands that push or pull.
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
