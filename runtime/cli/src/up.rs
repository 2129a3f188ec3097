//! `wasmfn up`: an embedded node serving local manifests and components, redeployed when they change.

use crate::build::BuildArgs;
use crate::paths::default_data_dir;
use crate::serve::{NodeArgs, announce, shutdown_signal};
use anyhow::{Context, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wasmfn_api::{Function, FunctionKey};
use wasmfn_build::{Builder, Progress};
use wasmfn_runtime::{Node, NodeConfig};

/// One thing to deploy and the files whose change redeploys it.
struct Source {
    /// The manifest, or the component for a bare `.wasm`.
    path: PathBuf,
    manifest: bool,
}

impl Source {
    /// The functions this source declares, with the folder relative paths resolve against.
    fn load(&self) -> anyhow::Result<(Vec<Function>, PathBuf)> {
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
    fn stamp(&self, builder: &Builder) -> Vec<(PathBuf, Option<SystemTime>)> {
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
fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
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
            bail!("{}: no function.yaml or .wasm file found", path.display());
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

/// Builds a function that has a `build` and no `component`, and points `component` at the result.
async fn build_function(builder: &Arc<Builder>, f: &mut Function, base: &Path) -> anyhow::Result<()> {
    let (Some(build), None) = (&f.spec.build, &f.spec.component) else { return Ok(()) };
    let (builder, base2, template) = (builder.clone(), base.to_path_buf(), build.template.clone());
    let handler = build.handler.clone();
    tracing::info!(function = %f.key(), %template, "building");
    let built = tokio::task::spawn_blocking(move || {
        builder.build_handler(&base2, &template, handler.as_deref(), true, &Progress::stderr())
    })
    .await?
    .with_context(|| format!("building {} from {}", f.key(), base.display()))?;
    tracing::info!(function = %f.key(), digest = %built.digest, size = built.size, cached = built.cached, "built");
    f.spec.component = Some(built.path.display().to_string());
    Ok(())
}

/// Builds and deploys the functions of `source`. One that fails is logged under its name and skipped (what it
/// served before keeps serving); the others go on. Returns every function the source declares, and how many
/// failed; an error only when the source itself cannot be read.
async fn deploy_source(
    node: &Node,
    builder: &Arc<Builder>,
    source: &Source,
) -> anyhow::Result<(Vec<FunctionKey>, usize)> {
    let (functions, base) = source.load()?;
    let (mut keys, mut failed) = (Vec::new(), 0);
    for mut f in functions {
        let key = f.key();
        keys.push(key.clone());
        let deployed = async {
            build_function(builder, &mut f, &base).await?;
            node.deploy(f, Some(&base)).await.with_context(|| format!("deploying {key} from {}", source.path.display()))
        };
        match deployed.await {
            Ok(d) => {
                if d.changed {
                    tracing::info!(function = %key, revision = %d.function.revision, "deployed");
                }
                if let Some(note) = &d.note {
                    tracing::warn!(function = %key, "{note}");
                }
            }
            Err(e) => {
                failed += 1;
                tracing::error!(function = %key, "failed; the previous revision keeps serving (if any), retried when its files change: {e:#}");
            }
        }
    }
    Ok((keys, failed))
}

pub(crate) async fn run(paths: Vec<PathBuf>, args: NodeArgs, build: BuildArgs) -> anyhow::Result<()> {
    let builder = Arc::new(build.builder()?);
    let mut config =
        NodeConfig { data_dir: default_data_dir(), admin_listen: ([127, 0, 0, 1], 0).into(), ..NodeConfig::default() };
    args.apply(&mut config);
    // The admin API of `up` may deploy files from the folders `up` serves (its own use), nothing else.
    config.component_dirs = paths
        .iter()
        .map(|p| if p.is_dir() { p.clone() } else { p.parent().map(Path::to_path_buf).unwrap_or_default() })
        .collect();
    let sources = collect(&paths)?;
    let node = Node::new(config).context("starting the embedded node")?;
    let listeners = node.bind().await.context("binding the listeners")?;

    // A function that fails to build or deploy does not stop the others: it is logged and retried on change.
    let mut wanted = BTreeSet::new();
    for source in &sources {
        match deploy_source(&node, &builder, source).await {
            Ok((keys, _)) => wanted.extend(keys),
            Err(e) => tracing::error!(source = %source.path.display(), "not served (fix it and it is retried): {e:#}"),
        }
    }
    // `up` is declarative: functions left in the data dir by another `up` are not served.
    for f in node.list() {
        if !wanted.contains(&FunctionKey::new(&f.namespace, &f.name)) {
            node.remove(&f.namespace, &f.name).await?;
        }
    }
    announce(&listeners);
    // `wasmfn revisions|traffic|rollback` find this node through it.
    let admin_file = node.config().data_dir.join(crate::admin::ADMIN_FILE);
    if let Err(e) = std::fs::write(
        &admin_file,
        format!("http://{}\n", listeners.admin_addr().expect("bound with an admin listener")),
    ) {
        tracing::warn!(path = %admin_file.display(), error = %e, "cannot record the admin API address");
    }
    for f in node.list() {
        let urls = node.urls(&f.namespace, &f.name);
        println!("  {}: {}  {}", FunctionKey::new(&f.namespace, &f.name), urls[0], urls[1]);
    }

    let watcher = tokio::spawn(watch(node.clone(), builder, sources));
    node.serve(listeners, shutdown_signal()).await?;
    watcher.abort();
    let _ = std::fs::remove_file(admin_file);
    Ok(())
}

/// Polls the sources' files and redeploys what changed; a failed redeploy keeps the old revision serving.
async fn watch(node: Node, builder: Arc<Builder>, sources: Vec<Source>) {
    let mut stamps: Vec<_> = sources.iter().map(|s| s.stamp(&builder)).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        for (source, stamp) in sources.iter().zip(stamps.iter_mut()) {
            let now = source.stamp(&builder);
            if now == *stamp {
                continue;
            }
            *stamp = now;
            match deploy_source(&node, &builder, source).await {
                Ok((keys, failed)) => {
                    let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
                    tracing::info!(source = %source.path.display(), functions = ?keys, failed, "redeployed after a change")
                }
                Err(e) => {
                    tracing::error!(source = %source.path.display(), "redeploy failed; the previous revision keeps serving: {e:#}")
                }
            }
        }
    }
}
