//! A compiler template: the `template.toml` description of one `compiler-templates/<lang>/` folder, and its
//! scaffold.

use crate::BuildError;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One language's template, read from `<dir>/template.toml`.
#[derive(Debug, Clone)]
pub struct Template {
    /// The folder holding `template.toml`.
    pub dir: PathBuf,
    /// The description.
    pub spec: TemplateSpec,
    /// `template.toml` as read: part of every build's cache key.
    pub(crate) raw: String,
    sources: GlobSet,
}

/// The fields of `template.toml`. Unknown keys are rejected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TemplateSpec {
    /// The name used by `--lang` and `spec.build.template`.
    pub name: String,
    /// One line shown by `wasmfn new --help` and in errors.
    pub description: String,
    /// The runtime name handlers see (`context.runtime` in the Kubeless style).
    pub runtime: String,
    /// Which build adapter (code in this crate) drives the toolchain.
    pub adapter: String,
    /// Candidate entry files, relative to the function folder; the first that exists is used.
    #[serde(default)]
    pub entry: Vec<String>,
    /// Where the code of an inline source (a Kubernetes `Function`'s `spec.source.inline.code`) goes, relative to
    /// the function folder; the first `entry` when absent.
    #[serde(default)]
    pub code_file: Option<String>,
    /// The handler convention, for messages.
    pub handler: String,
    /// Dependency files (lock files included).
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Globs (relative to the function folder) of the files a build reads: the cache key hashes them.
    pub sources: Vec<String>,
    /// Folder names skipped when looking for sources (`target`, `.git` and hidden folders always are).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files or folders, relative to the template folder, whose change rebuilds every function of the template.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Tools the template needs, checked before a build.
    #[serde(default)]
    pub toolchain: Vec<Toolchain>,
}

/// A tool a template needs, and how to install it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Toolchain {
    /// What it is, for messages.
    pub name: String,
    /// A command that must run successfully (e.g. `["node", "--version"]`).
    #[serde(default)]
    pub command: Vec<String>,
    /// A file or folder, relative to the template folder, that must exist.
    #[serde(default)]
    pub file: Option<String>,
    /// The command that installs it; `{template_dir}` is replaced by the template's folder.
    pub install: String,
}

impl Template {
    /// Reads `<dir>/template.toml`.
    pub fn load(dir: &Path) -> Result<Template, BuildError> {
        let path = dir.join("template.toml");
        let raw = std::fs::read_to_string(&path).map_err(|e| BuildError::io(&path, e))?;
        let spec: TemplateSpec =
            toml::from_str(&raw).map_err(|e| BuildError::Template { path: path.clone(), message: e.to_string() })?;
        let mut set = GlobSetBuilder::new();
        for pattern in &spec.sources {
            let glob =
                Glob::new(pattern).map_err(|e| BuildError::Template { path: path.clone(), message: e.to_string() })?;
            set.add(glob);
        }
        let sources = set.build().map_err(|e| BuildError::Template { path: path.clone(), message: e.to_string() })?;
        Ok(Template { dir: dir.to_path_buf(), spec, raw, sources })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The entry file of the function in `src`, if the template names any.
    pub fn entry(&self, src: &Path) -> Result<Option<String>, BuildError> {
        self.entry_for(src, None)
    }

    /// The entry file for a handler's file part (`hello` of `hello.foo`): that name with the extension of one
    /// of the template's entry files (`hello.js`, `hello.mjs`…); without one, the first entry file present.
    pub fn entry_for(&self, src: &Path, handler_file: Option<&str>) -> Result<Option<String>, BuildError> {
        if self.spec.entry.is_empty() {
            return Ok(None);
        }
        let candidates: Vec<String> = match handler_file {
            None => self.spec.entry.clone(),
            Some(file) => {
                let mut exts: Vec<&str> =
                    self.spec.entry.iter().filter_map(|e| e.rsplit_once('.')).map(|x| x.1).collect();
                exts.dedup();
                exts.iter().map(|ext| format!("{file}.{ext}")).collect()
            }
        };
        match candidates.iter().find(|e| src.join(e).is_file()) {
            Some(e) => Ok(Some(e.clone())),
            None => Err(BuildError::NoEntry {
                dir: src.to_path_buf(),
                template: self.spec.name.clone(),
                expected: candidates.join(", "),
                handler: self.spec.handler.clone(),
            }),
        }
    }

    /// The source files of the function in `src` (relative paths, sorted): what the cache key hashes and what
    /// `wasmfn up` watches.
    pub fn source_files(&self, src: &Path) -> Result<Vec<PathBuf>, BuildError> {
        let mut files = Vec::new();
        let walker = walkdir::WalkDir::new(src).follow_links(false).sort_by_file_name().into_iter();
        let walker = walker.filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !e.file_type().is_dir()
                || !(name.starts_with('.') || name == "target" || self.spec.exclude.iter().any(|x| *x == name))
        });
        for entry in walker {
            let entry = entry.map_err(|e| BuildError::Io {
                path: e.path().map(Path::to_path_buf).unwrap_or_else(|| src.to_path_buf()),
                source: e.into(),
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
            if self.sources.is_match(rel) {
                files.push(rel.to_path_buf());
            }
        }
        Ok(files)
    }

    /// Checks the declared toolchain; the error names the missing tool and the command that installs it.
    pub fn check_toolchain(&self) -> Result<(), BuildError> {
        for tool in &self.spec.toolchain {
            let problem = if let Some(file) = &tool.file {
                let path = self.dir.join(file);
                (!path.exists()).then(|| format!("{} is missing", path.display()))
            } else if let Some((program, args)) = tool.command.split_first() {
                match std::process::Command::new(program).args(args).output() {
                    Ok(out) if out.status.success() => None,
                    Ok(out) => Some(format!("`{}` failed with {}", tool.command.join(" "), out.status)),
                    Err(e) => Some(format!("cannot run `{program}`: {e}")),
                }
            } else {
                None
            };
            if let Some(detail) = problem {
                return Err(self.missing(&tool.name, &detail, &tool.install));
            }
        }
        Ok(())
    }

    /// A missing-toolchain error for this template.
    pub(crate) fn missing(&self, tool: &str, detail: &str, install: &str) -> BuildError {
        BuildError::MissingToolchain {
            template: self.spec.name.clone(),
            tool: tool.to_string(),
            detail: detail.to_string(),
            install: install.replace("{template_dir}", &self.dir.display().to_string()),
        }
    }

    /// Copies the scaffold into `dest` (which must not exist or be empty), replacing `{{name}}` and the other
    /// placeholders in every file. Returns the files written.
    pub fn scaffold(&self, name: &str, dest: &Path, vars: &[(&str, String)]) -> Result<Vec<PathBuf>, BuildError> {
        let from = self.dir.join("scaffold");
        if dest.exists() && std::fs::read_dir(dest).map_err(|e| BuildError::io(dest, e))?.next().is_some() {
            return Err(BuildError::Scaffold(format!("{} already exists and is not empty", dest.display())));
        }
        let mut written = Vec::new();
        for entry in walkdir::WalkDir::new(&from).sort_by_file_name() {
            let entry = entry.map_err(|e| BuildError::Io { path: from.clone(), source: e.into() })?;
            let rel = entry.path().strip_prefix(&from).unwrap_or(entry.path());
            let target = dest.join(rel);
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&target).map_err(|e| BuildError::io(&target, e))?;
                continue;
            }
            let mut text = std::fs::read_to_string(entry.path()).map_err(|e| BuildError::io(entry.path(), e))?;
            text = text.replace("{{name}}", name);
            for (key, value) in vars {
                text = text.replace(&format!("{{{{{key}}}}}"), value);
            }
            std::fs::write(&target, text).map_err(|e| BuildError::io(&target, e))?;
            written.push(target);
        }
        Ok(written)
    }
}
