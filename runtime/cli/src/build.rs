//! `wasmfn new` and `wasmfn build`: scaffold a function from a compiler template, and build it into a component.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use wasmfn_api::Function;
use wasmfn_build::{Builder, Built, Progress};

/// Where templates and the build cache are.
#[derive(clap::Args, Clone)]
pub(crate) struct BuildArgs {
    /// The compiler templates folder.
    #[arg(long, env = "WASMFN_TEMPLATES")]
    templates: Option<PathBuf>,
    /// The build cache (components by source hash, Rust's shared target folder, vendored Python packages).
    #[arg(long, env = "WASMFN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

impl BuildArgs {
    pub(crate) fn builder(&self) -> anyhow::Result<Builder> {
        let templates = self.templates.clone().unwrap_or_else(wasmfn_build::default_templates_dir);
        let cache = self
            .cache_dir
            .clone()
            .unwrap_or_else(|| dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("wasmfn"));
        Ok(Builder::new(&templates, &cache)?)
    }
}

/// The manifest of a function folder, if it has one.
pub(crate) fn manifest(dir: &Path) -> anyhow::Result<Option<Function>> {
    for name in ["function.yaml", "function.yml"] {
        let path = dir.join(name);
        if path.is_file() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            return Ok(Some(Function::from_yaml(&text).with_context(|| path.display().to_string())?));
        }
    }
    Ok(None)
}

/// `wasmfn new NAME --lang LANG`.
pub(crate) fn new(name: &str, lang: &str, dir: Option<PathBuf>, args: &BuildArgs) -> anyhow::Result<()> {
    Function::new("default", name, "x.wasm").validate().context("invalid function name")?;
    let builder = args.builder()?;
    let dest = dir.unwrap_or_else(|| PathBuf::from(name));
    let files = builder.scaffold(lang, name, &dest)?;
    let listed: Vec<String> = files.iter().map(|f| f.strip_prefix(&dest).unwrap_or(f).display().to_string()).collect();
    println!("created {name} ({lang}) in {}: {}", dest.display(), listed.join(", "));
    println!("next: wasmfn up {}   # builds it and serves http://127.0.0.1:8080/default/{name}/", dest.display());
    println!("      wasmfn build {}   # builds the component only", dest.display());
    Ok(())
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Builds the function in `dir` (template from `--template` or its `function.yaml`).
pub(crate) fn build_dir(
    builder: &Builder,
    dir: &Path,
    template: Option<&str>,
    use_cache: bool,
) -> anyhow::Result<Built> {
    let template = match template {
        Some(t) => t.to_string(),
        None => match manifest(dir)?.and_then(|f| f.spec.build) {
            Some(b) => b.template,
            None => bail!(
                "{}: no template: give --template (one of {}) or set spec.build.template in function.yaml",
                dir.display(),
                builder.templates().iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    let built = builder.build(dir, &template, use_cache, &Progress::stderr())?;
    Ok(built)
}

/// `wasmfn build [DIR]`.
pub(crate) fn build(
    dir: &Path,
    template: Option<&str>,
    output: Option<&Path>,
    no_cache: bool,
    data_dir: &Path,
    args: &BuildArgs,
) -> anyhow::Result<()> {
    let builder = args.builder()?;
    let folder = std::path::absolute(dir)?.file_name().map(|n| n.to_string_lossy().to_lowercase());
    let name = manifest(dir)?.map(|f| f.metadata.name).or(folder).unwrap_or_else(|| "function".into());
    let built = build_dir(&builder, dir, template, !no_cache)?;
    let dest = match output {
        Some(out) => {
            std::fs::copy(&built.path, out).with_context(|| format!("writing {}", out.display()))?;
            out.to_path_buf()
        }
        None => {
            // The local store is an OCI image layout: the artifact `wasmfn push` would send, named `<name>:latest`.
            let bytes = std::fs::read(&built.path).with_context(|| format!("reading {}", built.path.display()))?;
            let provenance = wasmfn_oci::Provenance { title: format!("{name}.wasm"), ..Default::default() };
            let artifact = wasmfn_oci::artifact::build(&bytes, wasmfn_oci::Format::Wasm, &provenance)?;
            let layout = wasmfn_oci::Layout::open(data_dir)?;
            layout.put(&artifact, &format!("{name}:latest")).context("storing the component")?;
            layout.blob_path(&built.digest)
        }
    };
    let how = if built.cached { "cached".to_string() } else { format!("built in {:.1}s", built.elapsed.as_secs_f64()) };
    println!("{name} ({}): {} {} ({} bytes), {how}", built.template, built.digest, human(built.size), built.size);
    println!("  → {}", dest.display());
    if output.is_none() {
        println!("  stored as {name}:latest in the OCI layout {}", data_dir.display());
        println!("  deploy it with `component: {}`, or `wasmfn push {name} REGISTRY/REPO:TAG`", built.digest);
    }
    Ok(())
}
