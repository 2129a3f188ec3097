//! `wasmfn up`: an embedded node serving local manifests and components, redeployed when they change.

use crate::build::BuildArgs;
use crate::paths::default_data_dir;
use crate::serve::{NodeArgs, announce, shutdown_signal};
use crate::workspace::{Phase, Source, Workspace, collect};
use anyhow::Context;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmfn_api::{Function, FunctionKey};
use wasmfn_build::{Builder, Progress};
use wasmfn_runtime::logs::{LogHub, Source as LogSource};
use wasmfn_runtime::{Node, NodeConfig};

/// The source of a build output line in the log hub.
fn build_line(key: &FunctionKey) -> LogSource<'_> {
    LogSource { namespace: &key.namespace, function: &key.name, revision: "", request_id: "", stream: "build" }
}

/// Builds a function that has a `build` and no `component`, and points `component` at the result.
async fn build_function(
    builder: &Arc<Builder>,
    hub: &Arc<LogHub>,
    f: &mut Function,
    base: &Path,
) -> anyhow::Result<()> {
    let (Some(build), None) = (&f.spec.build, &f.spec.component) else { return Ok(()) };
    let (builder, base2, template) = (builder.clone(), base.to_path_buf(), build.template.clone());
    let handler = build.handler.clone();
    tracing::info!(function = %f.key(), %template, "building");
    let key = f.key();
    let sink: wasmfn_build::Sink = {
        let (hub, key) = (hub.clone(), key.clone());
        Arc::new(move |line: &str| hub.push(build_line(&key), line))
    };
    let progress = Progress::stderr().with_sink(sink);
    let built = tokio::task::spawn_blocking(move || {
        builder.build_handler(&base2, &template, handler.as_deref(), true, &progress)
    })
    .await?;
    let built = built.with_context(|| format!("building {key} from {}", base.display()))?;
    let cached = if built.cached { " (cached)" } else { "" };
    hub.push(build_line(&key), &format!("built {}{cached}, {} bytes", built.digest, built.size));
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
    workspace: &Workspace,
    source: &Source,
) -> anyhow::Result<(Vec<FunctionKey>, usize)> {
    let (functions, base) = source.load()?;
    let (mut keys, mut failed) = (Vec::new(), 0);
    let hub = node.log_hub();
    for mut f in functions {
        let key = f.key();
        keys.push(key.clone());
        workspace.set(&key, Phase::Building);
        let deployed = async {
            build_function(builder, &hub, &mut f, &base).await?;
            node.deploy(f, Some(&base)).await.with_context(|| format!("deploying {key} from {}", source.path.display()))
        };
        match deployed.await {
            Ok(d) => {
                workspace.set(&key, Phase::Ready);
                hub.push(build_line(&key), &format!("deployed {}", d.function.revision));
                if d.changed {
                    tracing::info!(function = %key, revision = %d.function.revision, "deployed");
                }
                if let Some(note) = &d.note {
                    tracing::warn!(function = %key, "{note}");
                }
            }
            Err(e) => {
                failed += 1;
                let message = format!("{e:#}");
                for line in message.lines() {
                    hub.push(build_line(&key), line);
                }
                hub.push(build_line(&key), "build failed: the previous revision keeps serving (if any)");
                workspace.set(&key, Phase::Failed(message.clone()));
                // Requests held for a function never deployed get the error rather than wait.
                node.announce_failed(&key, message);
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
    let root = paths.iter().find(|p| p.is_dir()).cloned();
    let node = Node::new(config).context("starting the embedded node")?;
    let listeners = node.bind().await.context("binding the listeners")?;
    let admin = listeners.admin_addr().expect("bound with an admin listener");
    println!("wasmfn console: http://{admin}/");

    // Serving starts at once: every declared function is announced, so a request for one still building
    // waits for it (at most its queueTimeout) rather than failing.
    let workspace = Arc::new(Workspace::new(sources.clone(), root));
    let mut wanted = BTreeSet::new();
    for source in &sources {
        match source.load() {
            Ok((functions, _)) => {
                for f in functions {
                    node.announce(f.key(), f.spec.scaling.queue_timeout);
                    workspace.set(&f.key(), Phase::Building);
                    wanted.insert(f.key());
                }
            }
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
    // `wasmfn revisions|traffic|rollback|ls|call|logs|delete` find this node through it.
    let admin_file = node.config().data_dir.join(crate::admin::ADMIN_FILE);
    if let Err(e) = std::fs::write(&admin_file, format!("http://{admin}\n")) {
        tracing::warn!(path = %admin_file.display(), error = %e, "cannot record the admin API address");
    }
    for key in &wanted {
        let urls = node.urls(&key.namespace, &key.name);
        println!("  {key}: {}  {}", urls[0], urls[1]);
    }

    let deployer = {
        let (node, workspace, builder) = (node.clone(), workspace.clone(), builder.clone());
        tokio::spawn(async move {
            let (mut ready, mut failed) = (0, 0);
            for source in &sources {
                match deploy_source(&node, &builder, &workspace, source).await {
                    Ok((keys, n)) => (ready, failed) = (ready + keys.len() - n, failed + n),
                    Err(e) => {
                        failed += 1;
                        tracing::error!(source = %source.path.display(), "not served (fix it and it is retried): {e:#}")
                    }
                }
            }
            println!("wasmfn: functions deployed: {ready} ready, {failed} failed");
            watch(node, builder, workspace).await
        })
    };
    let console = crate::console::router(node.clone(), builder, workspace);
    node.serve_with(listeners, console, shutdown_signal()).await?;
    deployer.abort();
    let _ = std::fs::remove_file(admin_file);
    Ok(())
}

/// Polls the sources' files (the console's new functions too) and redeploys what changed; a failed redeploy
/// keeps the old revision serving.
async fn watch(node: Node, builder: Arc<Builder>, workspace: Arc<Workspace>) {
    let mut stamps: Vec<_> = workspace.snapshot().iter().map(|s| s.stamp(&builder)).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let sources = workspace.snapshot();
        // A source the console added has no stamp yet: it counts as changed.
        stamps.resize(sources.len(), Vec::new());
        for (source, stamp) in sources.iter().zip(stamps.iter_mut()) {
            let now = source.stamp(&builder);
            if now == *stamp {
                continue;
            }
            *stamp = now;
            match deploy_source(&node, &builder, &workspace, source).await {
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
