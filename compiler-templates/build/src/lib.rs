//! The build engine of wasmfn's compiler templates: function source in, a validated `wasi:http` component out.
//!
//! Each folder of `compiler-templates/` with a `template.toml` is a [`Template`]; the file names the build
//! adapter (Rust code in this crate) that drives the language's toolchain. A build:
//! 1. checks the template's toolchain (a missing tool is reported with the command that installs it);
//! 2. lets the adapter prepare the folder (resolve a `Cargo.lock`, `npm install`);
//! 3. hashes the template, the tools' versions and the function's sources into a cache key, and returns the
//!    cached component when there is one;
//! 4. otherwise runs the adapter, checks that the component exports `wasi:http/incoming-handler@0.2.x` and
//!    imports only what the runtime provides, and caches it.
//!
//! [`Source`] fetches a function folder from git, an S3 bucket or inline code first (`wasmfn build --source`).
//!
//! Used by `wasmfn new`, `wasmfn build` and `wasmfn up`.

mod adapters;
mod cache;
mod progress;
pub mod source;
pub mod template;
mod tool;

pub use progress::{Progress, Sink, Step};
pub use source::{FetchOptions, Source, SourceError};
pub use template::Template;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No template by that name.
    #[error("unknown template `{name}`: choose one of {known}")]
    UnknownTemplate {
        /// What was asked for.
        name: String,
        /// The templates there are.
        known: String,
    },
    /// A tool the template needs is not installed.
    #[error(
        "the {template} template needs {tool}, which is not available ({detail})\n  install it with: {install}\n  (the README's set-up command, scripts/setup.sh, installs every template's toolchain)"
    )]
    MissingToolchain {
        /// The template.
        template: String,
        /// The tool.
        tool: String,
        /// What was found missing.
        detail: String,
        /// The command that installs it.
        install: String,
    },
    /// A step failed; `output` is the tool's own message (compiler errors with file and line).
    #[error("{step} failed:\n{output}")]
    Failed {
        /// The step.
        step: String,
        /// What the tool printed.
        output: String,
    },
    /// The function folder has none of the template's entry files.
    #[error("{dir}: no {template} entry file: expected one of {expected}, defining {handler}", dir = .dir.display())]
    NoEntry {
        /// The function folder.
        dir: PathBuf,
        /// The template.
        template: String,
        /// The candidate file names.
        expected: String,
        /// The handler convention.
        handler: String,
    },
    /// The toolchain produced something the runtime would not serve.
    #[error("the built component cannot be served: {0}")]
    Invalid(String),
    /// A `template.toml` is wrong.
    #[error("{path}: {message}", path = .path.display())]
    Template {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `wasmfn new` would overwrite something, or was given a bad name.
    #[error("{0}")]
    Scaffold(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl BuildError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> BuildError {
        BuildError::Io { path: path.to_path_buf(), source }
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BuildError::UnknownTemplate { .. } => "unknown_template",
            BuildError::MissingToolchain { .. } => "missing_toolchain",
            BuildError::Failed { .. } => "failed",
            BuildError::NoEntry { .. } => "no_entry",
            BuildError::Invalid(_) => "invalid_component",
            BuildError::Template { .. } => "template",
            BuildError::Scaffold(_) => "scaffold",
            BuildError::Io { .. } => "io",
        }
    }
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The template used.
    pub template: String,
    /// The component, in the build cache (copy it elsewhere; the cache may be cleared).
    pub path: PathBuf,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it came from the cache.
    pub cached: bool,
    /// Time taken.
    pub elapsed: Duration,
}

/// The folder `compiler-templates/` of this source tree, or `WASMFN_TEMPLATES` when set (an installed copy).
pub fn default_templates_dir() -> PathBuf {
    match std::env::var_os("WASMFN_TEMPLATES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("compiler-templates/build has a parent").into(),
    }
}

/// Builds functions with a set of templates and a cache folder.
#[derive(Debug)]
pub struct Builder {
    templates: Vec<Template>,
    cache_dir: PathBuf,
}

impl Builder {
    /// Loads every `*/template.toml` below `templates_dir`; builds are cached in `cache_dir`.
    pub fn new(templates_dir: &Path, cache_dir: &Path) -> Result<Builder, BuildError> {
        let mut templates = Vec::new();
        let entries = std::fs::read_dir(templates_dir).map_err(|e| BuildError::io(templates_dir, e))?;
        for entry in entries {
            let dir = entry.map_err(|e| BuildError::io(templates_dir, e))?.path();
            if dir.join("template.toml").is_file() {
                let t = Template::load(&dir)?;
                if adapters::find(&t.spec.adapter).is_none() {
                    return Err(BuildError::Template {
                        path: dir.join("template.toml"),
                        message: format!("unknown adapter `{}` (known: {})", t.spec.adapter, adapters::names()),
                    });
                }
                templates.push(t);
            }
        }
        templates.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        if templates.is_empty() {
            return Err(BuildError::Template {
                path: templates_dir.to_path_buf(),
                message: "no compiler templates here (set WASMFN_TEMPLATES to the compiler-templates folder)".into(),
            });
        }
        Ok(Builder { templates, cache_dir: cache_dir.to_path_buf() })
    }

    /// The templates, by name.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The template called `name`.
    pub fn template(&self, name: &str) -> Result<&Template, BuildError> {
        self.templates.iter().find(|t| t.spec.name == name).ok_or_else(|| BuildError::UnknownTemplate {
            name: name.to_string(),
            known: self.templates.iter().map(|t| t.spec.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The source files of a function (relative to `src`), for watching.
    pub fn source_files(&self, src: &Path, template: &str) -> Result<Vec<PathBuf>, BuildError> {
        self.template(template)?.source_files(src)
    }

    /// Builds the function in `src` with `template`, from the cache unless `use_cache` is false.
    pub fn build(&self, src: &Path, template: &str, use_cache: bool, progress: &Progress) -> Result<Built, BuildError> {
        self.build_handler(src, template, None, use_cache, progress)
    }

    /// [`Builder::build`] with a Kubeless-style `file.function` handler (validated by the manifest).
    pub fn build_handler(
        &self,
        src: &Path,
        template: &str,
        handler: Option<&str>,
        use_cache: bool,
        progress: &Progress,
    ) -> Result<Built, BuildError> {
        let started = Instant::now();
        let template = self.template(template)?;
        let adapter = adapters::find(&template.spec.adapter).expect("checked when loaded");
        let src = std::path::absolute(src).map_err(|e| BuildError::io(src, e))?;
        template.check_toolchain()?;
        let (file, function) = match handler.and_then(|h| h.rsplit_once('.')) {
            Some((file, function)) => (Some(file), Some(function)),
            None => (None, None),
        };
        let entry = template.entry_for(&src, file)?;
        let ctx = adapters::Ctx { template, src: &src, entry: entry.as_deref(), function, cache_dir: &self.cache_dir };
        adapter.prepare(&ctx, progress)?;
        let mut tools = adapter.fingerprint(&ctx)?;
        if let Some(h) = handler {
            tools.push_str(&format!("\nhandler={h}"));
        }
        let key = cache::key(template, &tools, &src)?;
        if use_cache && let Some(hit) = cache::lookup(&self.cache_dir, &key) {
            return Ok(Built {
                template: template.spec.name.clone(),
                path: hit.path,
                digest: hit.digest,
                size: hit.size,
                cached: true,
                elapsed: started.elapsed(),
            });
        }

        let work = self.cache_dir.join("work").join(format!("{}-{}", &key[..16], std::process::id()));
        std::fs::create_dir_all(&work).map_err(|e| BuildError::io(&work, e))?;
        let result = (|| {
            let out = work.join("component.wasm");
            adapter.build(&ctx, &work, &out, progress)?;
            let step = progress.step("validate the component");
            let bytes = std::fs::read(&out).map_err(|e| BuildError::io(&out, e))?;
            wasmfn_runtime::check_component(&bytes).map_err(|e| BuildError::Invalid(e.to_string()))?;
            step.finish();
            cache::store(&self.cache_dir, &key, &out)
        })();
        let _ = std::fs::remove_dir_all(&work);
        let stored = result?;
        Ok(Built {
            template: template.spec.name.clone(),
            path: stored.path,
            digest: stored.digest,
            size: stored.size,
            cached: false,
            elapsed: started.elapsed(),
        })
    }

    /// Writes a new function called `name` into `dest` from `template`'s scaffold.
    pub fn scaffold(&self, template: &str, name: &str, dest: &Path) -> Result<Vec<PathBuf>, BuildError> {
        let template = self.template(template)?;
        let root = template.dir.parent().unwrap_or(&template.dir);
        // The Rust scaffold depends on the SDK by path until it is published.
        let sdk = std::path::absolute(root.join("../sdk")).unwrap_or_else(|_| root.join("../sdk"));
        let sdk = normalize(&sdk);
        template.scaffold(
            name,
            dest,
            &[("sdk_path", sdk.display().to_string()), ("crate_name", name.replace('-', "_"))],
        )
    }
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
