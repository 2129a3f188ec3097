//! What `wasmfn up` serves: the sources given on its command line (manifests, folders, components) and those
//! the console creates, and each function's build state. `up.rs` builds and watches them; `console.rs` reads
//! and writes them for the browser.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;
use wasmfn_api::{Function, FunctionKey};
use wasmfn_build::Builder;

/// A function's build state, as the console shows it.
#[derive(Clone, Debug)]
pub(crate) enum Phase {
    /// Being built (or waiting to be).
    Building,
    /// Its latest build is deployed.
    Ready,
    /// Its latest build or deploy failed (the previous revision, if any, keeps serving).
    Failed(String),
}

/// The sources and the functions' build states.
pub(crate) struct Workspace {
    /// Everything `up` deploys and watches; the console appends the functions it creates.
    pub(crate) sources: Mutex<Vec<Source>>,
    /// Each declared function's build state.
    pub(crate) phases: Mutex<BTreeMap<FunctionKey, Phase>>,
    /// Where the console creates functions: the first folder on the command line.
    pub(crate) root: Option<PathBuf>,
}

impl Workspace {
    pub(crate) fn new(sources: Vec<Source>, root: Option<PathBuf>) -> Workspace {
        Workspace { sources: Mutex::new(sources), phases: Mutex::default(), root }
    }

    /// Records a function's build state.
    pub(crate) fn set(&self, key: &FunctionKey, phase: Phase) {
        self.phases.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), phase);
    }

    /// The function's folder and manifest, when a source declares it.
    pub(crate) fn find(&self, key: &FunctionKey) -> Option<(PathBuf, Function)> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.iter().filter(|s| s.manifest).find_map(|s| {
            let (functions, base) = s.load().ok()?;
            functions.into_iter().find(|f| f.key() == *key).map(|f| (base, f))
        })
    }

    /// A snapshot of the sources, to deploy or stamp without holding the lock across builds.
    pub(crate) fn snapshot(&self) -> Vec<Source> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One thing to deploy and the files whose change redeploys it.
#[derive(Clone)]
pub(crate) struct Source {
    /// The manifest, or the component for a bare `.wasm`.
    pub(crate) path: PathBuf,
    pub(crate) manifest: bool,
}

impl Source {
    /// The functions this source declares, with the folder relative paths resolve against.
    pub(crate) fn load(&self) -> anyhow::Result<(Vec<Function>, PathBuf)> {
        let base = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        if !self.manifest {
            let stem = self.path.file_stem().and_then(|s| s.to_str()).unwrap_or("function");
            let name: String = stem
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
                .trim_matches('-')
                .to_string();
            let file = self.path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            return Ok((vec![Function::new("default", &name, file)], base));
        }
        let text = std::fs::read_to_string(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        let functions = Function::all_from_yaml(&text).with_context(|| format!("{}", self.path.display()))?;
        Ok((functions, base))
    }

    /// Modification times of the source, every component it names and the sources of what it builds.
    pub(crate) fn stamp(&self, builder: &Builder) -> Vec<(PathBuf, Option<SystemTime>)> {
        let mut files = vec![self.path.clone()];
        if let Ok((functions, base)) = self.load() {
            for f in &functions {
                match (&f.spec.component, &f.spec.build) {
                    (Some(c), _) => files.push(base.join(c)),
                    (None, Some(b)) => {
                        let sources = builder.source_files(&base, &b.template).unwrap_or_default();
                        files.extend(sources.iter().map(|s| base.join(s)));
                    }
                    (None, None) => {}
                }
            }
        }
        files.into_iter().map(|f| (f.clone(), std::fs::metadata(&f).and_then(|m| m.modified()).ok())).collect()
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Expands the command line: files as given; in folders, every `function.yaml`/`function.yml` below them
/// (skipping `target`, `node_modules` and hidden folders), or the folder's `.wasm` files when there is none.
pub(crate) fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_file() {
            out.push(Source { path: path.clone(), manifest: is_manifest(path) });
            continue;
        }
        if !path.is_dir() {
            bail!("{}: no such file or folder", path.display());
        }
        let mut found = Vec::new();
        walk(path, 0, &mut found)?;
        if found.is_empty() {
            for entry in std::fs::read_dir(path)? {
                let p = entry?.path();
                if p.extension().is_some_and(|e| e == "wasm") {
                    found.push(Source { path: p, manifest: false });
                }
            }
        }
        if found.is_empty() {
            // A folder to start in: the console creates functions there.
            tracing::info!(folder = %path.display(), "no function.yaml or .wasm file yet: create functions from the console");
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        out.extend(found);
    }
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<Source>) -> anyhow::Result<()> {
    if depth > 4 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                walk(&p, depth + 1, out)?;
            }
        } else if name == "function.yaml" || name == "function.yml" {
            out.push(Source { path: p, manifest: true });
        }
    }
    Ok(())
}
