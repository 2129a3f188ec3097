//! `wasmfn new` and `wasmfn build`: scaffold a function from a compiler template, and build it into a component
//! (from a local folder, or one fetched from git, S3 or inline code first), optionally pushing it.

use crate::registry::{RegistryArgs, push_file};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use wasmfn_api::Function;
use wasmfn_build::{Builder, Built, FetchOptions, Progress, Source};

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
    let declared = manifest(dir)?.and_then(|f| f.spec.build);
    let handler = declared.as_ref().and_then(|b| b.handler.clone());
    let template = match template {
        Some(t) => t.to_string(),
        None => match declared {
            Some(b) => b.template,
            None => bail!(
                "{}: no template: give --template (one of {}) or set spec.build.template in function.yaml",
                dir.display(),
                builder.templates().iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    let built = builder.build_handler(dir, &template, handler.as_deref(), use_cache, &Progress::stderr())?;
    Ok(built)
}

/// What `wasmfn build` was asked to do.
#[derive(clap::Args)]
pub(crate) struct BuildCmd {
    /// The function folder.
    #[arg(default_value = ".", conflicts_with = "source")]
    pub dir: PathBuf,
    /// Fetch the function folder from git+URL#REF:PATH, s3://BUCKET/KEY?endpoint=URL&region=R#PATH or
    /// inline:DIR instead.
    #[arg(long, value_name = "SRC")]
    pub source: Option<Source>,
    /// Write the component here instead of the local component store.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The template, when function.yaml does not name one (required with inline: sources).
    #[arg(long, short)]
    pub template: Option<String>,
    /// Rebuild even when the cache has this build.
    #[arg(long)]
    pub no_cache: bool,
    /// Data folder whose component store receives the build.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Then push the component to this `registry/repository:tag` (the CNCF Wasm artifact) and print the
    /// reference pinned to its digest.
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
    /// Write the outcome to FILE: one line of JSON `{"digest": …, "image": …}`, or the error (its last
    /// 3,900 bytes: a Kubernetes terminationMessagePath holds 4096).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The largest archive an s3:// source may download.
    #[arg(long, value_name = "BYTES", default_value_t = wasmfn_build::source::DEFAULT_MAX_ARCHIVE_BYTES)]
    pub source_max_bytes: u64,
}

/// The digest of a successful build, and the pinned image when it was pushed.
struct Outcome {
    digest: String,
    image: Option<String>,
}

/// A Kubernetes termination message is cut at 4096 bytes: keep the end of the error, where compilers put
/// their verdict, and room for the prefix.
const REPORT_TAIL: usize = 3900;

/// The `--report` text of a failure: `build failed: ` and the last [`REPORT_TAIL`] bytes of the message.
fn failure_report(e: &anyhow::Error) -> String {
    let message = format!("{e:#}");
    let mut start = message.len().saturating_sub(REPORT_TAIL);
    while !message.is_char_boundary(start) {
        start += 1;
    }
    format!("build failed: {}{}", if start > 0 { "…" } else { "" }, &message[start..])
}

/// `wasmfn build [DIR | --source SRC] [--push REF] [--report FILE]`.
pub(crate) async fn build(cmd: BuildCmd, args: &BuildArgs, registry: &RegistryArgs) -> anyhow::Result<()> {
    let result = run(&cmd, args, registry).await;
    if let Some(path) = &cmd.report {
        let text = match &result {
            Ok(o) => {
                let mut json = serde_json::json!({ "digest": o.digest });
                if let Some(image) = &o.image {
                    json["image"] = image.as_str().into();
                }
                format!("{json}\n")
            }
            Err(e) => failure_report(e),
        };
        let written = std::fs::write(path, text).with_context(|| format!("writing the report {}", path.display()));
        match (&result, written) {
            (Ok(_), Err(e)) => return Err(e),
            // The build's own error matters more than the report's.
            (Err(_), Err(e)) => tracing::warn!(error = %format!("{e:#}"), "no report written"),
            (_, Ok(())) => {}
        }
    }
    result.map(|_| ())
}

async fn run(cmd: &BuildCmd, args: &BuildArgs, registry: &RegistryArgs) -> anyhow::Result<Outcome> {
    let builder = args.builder()?;
    let data_dir = cmd.data_dir.clone().unwrap_or_else(crate::paths::default_data_dir);
    // The fetched folder lives until the push has read its provenance.
    let mut fetched = None;
    let dir = match &cmd.source {
        None => cmd.dir.clone(),
        Some(source) => {
            if matches!(source, Source::Inline { .. }) && cmd.template.is_none() {
                bail!(
                    "an inline: source needs --template (one of {}): its code goes into that template's scaffold",
                    builder.templates().iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
                );
            }
            let tmp = tempfile::Builder::new().prefix("wasmfn-source-").tempdir().context("creating a temp dir")?;
            let options = FetchOptions {
                inline: cmd.template.as_deref().map(|t| (&builder, t)),
                max_archive_bytes: cmd.source_max_bytes,
                ..Default::default()
            };
            let folder = source.fetch_with(tmp.path(), &options).await.with_context(|| format!("fetching {source}"))?;
            tracing::info!(%source, folder = %folder.display(), "fetched the function source");
            fetched = Some(tmp);
            folder
        }
    };
    let folder = std::path::absolute(&dir)?.file_name().map(|n| n.to_string_lossy().to_lowercase());
    let hint = cmd.source.as_ref().and_then(Source::name_hint);
    let name = manifest(&dir)?.map(|f| f.metadata.name).or(hint).or(folder).unwrap_or_else(|| "function".into());
    let (src, template, use_cache) = (dir.clone(), cmd.template.clone(), !cmd.no_cache);
    let built =
        tokio::task::spawn_blocking(move || build_dir(&builder, &src, template.as_deref(), use_cache)).await??;
    let dest = match &cmd.output {
        Some(out) => {
            std::fs::copy(&built.path, out).with_context(|| format!("writing {}", out.display()))?;
            out.to_path_buf()
        }
        None => {
            // The local store is an OCI image layout: the artifact `wasmfn push` would send, named `<name>:latest`.
            let bytes = std::fs::read(&built.path).with_context(|| format!("reading {}", built.path.display()))?;
            let provenance = wasmfn_oci::Provenance { title: format!("{name}.wasm"), ..Default::default() };
            let artifact = wasmfn_oci::artifact::build(&bytes, wasmfn_oci::Format::Wasm, &provenance)?;
            let layout = wasmfn_oci::Layout::open(&data_dir)?;
            layout.put(&artifact, &format!("{name}:latest")).context("storing the component")?;
            layout.blob_path(&built.digest)
        }
    };
    let how = if built.cached { "cached".to_string() } else { format!("built in {:.1}s", built.elapsed.as_secs_f64()) };
    println!("{name} ({}): {} {} ({} bytes), {how}", built.template, built.digest, human(built.size), built.size);
    println!("  → {}", dest.display());
    if cmd.output.is_none() {
        println!("  stored as {name}:latest in the OCI layout {}", data_dir.display());
        if cmd.push.is_none() {
            println!("  deploy it with `component: {}`, or `wasmfn push {name} REGISTRY/REPO:TAG`", built.digest);
        }
    }
    let image = match &cmd.push {
        Some(reference) => {
            let title = format!("{name}.wasm");
            let pushed = push_file(&built.path, title, &dir, reference, wasmfn_oci::Format::Wasm, registry).await?;
            println!("pushed {reference}: {} ({} bytes component)", pushed.digest, pushed.size);
            println!("  → {}", pushed.pinned);
            Some(pushed.pinned)
        }
        None => None,
    };
    drop(fetched);
    Ok(Outcome { digest: built.digest, image })
}
