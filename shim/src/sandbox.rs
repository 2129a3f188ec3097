//! What runs inside each container (youki's init process, after `pivot_root` into the image): read the
//! component, start a wasmfn node that serves it at `/` on `$PORT`, drain on SIGTERM.

use crate::host_dir::{self, StateDir};
use anyhow::{Context as _, bail};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::signal::unix::{Signal, SignalKind, signal};
use wasmfn_api::{EnvVar, Function, FunctionKey};
use wasmfn_runtime::{Digest, Node, NodeConfig, PoolConfig};

/// The container env variable with the port to serve on (Knative's contract); 80 when unset.
pub const PORT_ENV: &str = "PORT";
/// The container env variable with the address to listen on; `0.0.0.0` when unset.
pub const ADDRESS_ENV: &str = "WASMFN_ADDRESS";
/// The container env variable naming a `Function` manifest in the image (limits, scaling, env); by default
/// `function.yaml` next to the component, when present.
pub const MANIFEST_ENV: &str = "WASMFN_FUNCTION";
/// The container env variable with how long SIGTERM waits for in-flight requests (`30s` when unset); keep it
/// below the pod's `terminationGracePeriodSeconds`.
pub const DRAIN_ENV: &str = "WASMFN_DRAIN_TIMEOUT";
/// The container env variable with the log filter of the container's own log (`info` by default).
pub const LOG_ENV: &str = "WASMFN_LOG";

/// The instance pool of one container. Fixed, because containerd's precompiled code must match it.
pub fn pool() -> PoolConfig {
    PoolConfig { instances: 100, ..PoolConfig::default() }
}

/// The sandbox. containerd-shim-wasm calls `can_handle` and then `run_wasi` on the same value, in the same
/// process: the component read and checked by the first is kept for the second.
#[derive(Default)]
pub struct WasmfnSandbox {
    checked: std::sync::Mutex<Option<Code>>,
    signals: std::sync::Mutex<Option<(Signal, Signal)>>,
}

/// SIGTERM and SIGINT listeners. PID 1 of a pid namespace ignores signals it has no handler for, so they are
/// installed as early as possible: at task creation, before the component is read.
fn listen() -> std::io::Result<(Signal, Signal)> {
    Ok((signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?))
}

impl Sandbox for WasmfnSandbox {
    async fn can_handle(&self, ctx: &impl RuntimeContext) -> anyhow::Result<()> {
        *self.signals.lock().unwrap_or_else(|e| e.into_inner()) = Some(listen()?);
        // Fails the task's creation with the reason in the shim's log.
        let code = Code::read(ctx)?;
        *self.checked.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
        Ok(())
    }

    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> anyhow::Result<i32> {
        let signals = self.signals.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (mut term, mut int) = match signals {
            Some(s) => s,
            None => listen()?,
        };
        init_logging(ctx.envs());
        let shutdown = async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "stopping: draining in-flight requests");
            // A second signal does not wait for the drain.
            tokio::spawn(async move {
                let code = tokio::select! {
                    _ = term.recv() => 128 + libc::SIGTERM,
                    _ = int.recv() => 128 + libc::SIGINT,
                };
                tracing::warn!("second signal: exiting without waiting for in-flight requests");
                std::process::exit(code);
            });
        };
        let checked = self.checked.lock().unwrap_or_else(|e| e.into_inner()).take();
        match serve(ctx, checked, shutdown).await {
            Ok(()) => Ok(0),
            Err(e) => {
                // Both logs: the container's (kubectl logs) and the shim's (containerd's log).
                tracing::error!("{e:#}");
                log::error!("wasmfn container failed: {e:#}");
                // `Err` would be reported as 137, as if killed.
                Ok(1)
            }
        }
    }
}

fn init_logging(envs: &[String]) {
    let filter = env(envs, LOG_ENV).unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    // The container's stderr (its log); the `log` crate keeps writing to the shim's log.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr).try_init();
}

fn env<'a>(envs: &'a [String], name: &str) -> Option<&'a str> {
    envs.iter().rev().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The container's component: wasm to compile (or find in the cache), or code containerd precompiled.
enum Code {
    Wasm { bytes: Vec<u8>, path: Option<PathBuf> },
    Compiled { digest: Digest, code: Vec<u8> },
}

impl Code {
    /// Reads and checks the component, with errors that say what is wrong with the image.
    fn read(ctx: &impl RuntimeContext) -> anyhow::Result<Code> {
        let entrypoint = ctx.entrypoint();
        match entrypoint.source {
            Source::File(path) => {
                if path.as_os_str().is_empty() {
                    bail!(
                        "the container has no command: set the image's entrypoint (or args) to the component's path, e.g. /app.wasm"
                    );
                }
                let shown = path.display().to_string();
                let bytes = Source::File(path.clone())
                    .as_bytes()
                    .map_err(|e| anyhow::anyhow!("the image has no component at {shown}: {e}"))?
                    .into_owned();
                // Display only: containerd-shim-wasm logs this error without its causes.
                wasmfn_runtime::check_component(&bytes)
                    .map_err(|e| anyhow::anyhow!("{shown} cannot be served: {e}"))?;
                Ok(Code::Wasm { bytes, path: Some(path) })
            }
            Source::Oci(layers) => {
                let found: Vec<_> = layers.iter().filter(|l| !l.layer.is_empty()).collect();
                let [layer] = found[..] else {
                    bail!("expected exactly one wasm layer in the image, found {}", found.len());
                };
                if layer.precompiled {
                    let digest = Digest::parse(layer.config.digest().as_ref())
                        .with_context(|| format!("layer digest {} is not sha256", layer.config.digest()))?;
                    return Ok(Code::Compiled { digest, code: layer.layer.clone() });
                }
                wasmfn_runtime::check_component(&layer.layer)
                    .map_err(|e| anyhow::anyhow!("layer {} cannot be served: {e}", layer.config.digest()))?;
                Ok(Code::Wasm { bytes: layer.layer.clone(), path: None })
            }
        }
    }
}

async fn serve(
    ctx: &impl RuntimeContext,
    checked: Option<Code>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let code = match checked {
        Some(code) => code,
        None => Code::read(ctx)?,
    };
    let envs = ctx.envs();
    let port = match env(envs, PORT_ENV) {
        Some(p) => p.parse::<u16>().map_err(|_| anyhow::anyhow!("{PORT_ENV}={p} is not a port number"))?,
        None => 80,
    };
    let drain = match env(envs, DRAIN_ENV) {
        Some(d) => humantime::parse_duration(d).map_err(|e| anyhow::anyhow!("{DRAIN_ENV}={d}: {e}"))?,
        None => NodeConfig::default().shutdown_timeout,
    };
    let address: std::net::IpAddr = match env(envs, ADDRESS_ENV) {
        Some(a) => a.parse().map_err(|_| anyhow::anyhow!("{ADDRESS_ENV}={a} is not an IP address"))?,
        None => [0, 0, 0, 0].into(),
    };
    let manifest_dir = match &code {
        Code::Wasm { path: Some(p), .. } => p.parent().unwrap_or(Path::new("/")).to_owned(),
        _ => PathBuf::from("/"),
    };
    let mut function = function(envs, &manifest_dir)?;
    let root = host_dir::root().map_err(anyhow::Error::msg)?;
    let state = StateDir::create(&root).context("cannot create the container's state directory")?;
    let key = shared_aot(&root);
    let config = NodeConfig {
        listen: SocketAddr::new(address, port),
        data_dir: state.path().to_owned(),
        // Without the shared cache: `<state>/aot`, removed with the container.
        aot_dir: key.is_some().then(|| root.join("aot")),
        // Cranelift's function cache sits beside the AOT cache: only worth keeping when shared.
        compile_cache: key.is_some(),
        aot_key_file: key,
        default_function: Some(function.key().to_string()),
        // One function per container: it may use the whole of the container's slots and memory budget (the
        // budget itself comes from the container's cgroup limit).
        fair_share: 100,
        pool: pool(),
        // A pod's loopback is its own (sidecars); there is no admin API on it.
        allow_loopback_egress: true,
        shutdown_timeout: drain,
        ..NodeConfig::default()
    };
    let node = Node::new(config)?;
    let digest = match code {
        Code::Wasm { bytes, .. } => node.upload(bytes).await?,
        Code::Compiled { digest, code } => {
            // SAFETY: containerd read this layer from its content store (root only), where our `Compiler` put
            // it for the layer of this digest.
            unsafe { node.import_compiled(digest, code) }.await?;
            digest
        }
    };
    function.spec.component = Some(digest.to_string());
    let deployed = node.deploy(function, None).await?;
    let listeners = node.bind_ingress().await.with_context(|| format!("cannot listen on port {port}"))?;
    let f = &deployed.function;
    tracing::info!(function = %FunctionKey::new(&f.namespace, &f.name), revision = %f.revision, %digest, "wasmfn listening on http://{}", listeners.ingress_addr());
    node.serve(listeners, shutdown).await?;
    drop(state);
    Ok(())
}

/// The AOT key file, when this container may use the host's shared AOT cache: its user can read the key, which
/// only root can (`host_dir::KEY_FILE`). Others cannot check the tags of the shared code, so they must not load it:
/// they compile into their own state directory.
fn shared_aot(root: &Path) -> Option<PathBuf> {
    let key = root.join(host_dir::KEY_FILE);
    match std::fs::File::open(&key) {
        Ok(_) => Some(key),
        Err(e) => {
            tracing::info!(error = %e, "the AOT key is not readable by this container's user: compiled code is not shared with other containers");
            None
        }
    }
}

/// The function: the image's manifest if it has one, its env overridden by the container's.
fn function(envs: &[String], dir: &Path) -> anyhow::Result<Function> {
    let named = env(envs, MANIFEST_ENV).map(PathBuf::from);
    let path = named.clone().unwrap_or_else(|| dir.join("function.yaml"));
    let mut function = match std::fs::read_to_string(&path) {
        Ok(text) => Function::from_yaml(&text).with_context(|| format!("invalid manifest {}", path.display()))?,
        Err(e) if named.is_some() || e.kind() != std::io::ErrorKind::NotFound => {
            bail!("cannot read the manifest {} ({MANIFEST_ENV}): {e}", path.display())
        }
        Err(_) => Function::new("pod", &hostname(), "component.wasm"),
    };
    // The component is the image's; nothing is pulled or built.
    function.spec.image = None;
    function.spec.source = None;
    function.spec.build = None;
    for kv in envs {
        let Some((name, value)) = kv.split_once('=') else { continue };
        function.spec.env.retain(|e| e.name != name);
        function.spec.env.push(EnvVar { name: name.into(), value: value.into() });
    }
    Ok(function)
}

/// The container's host name as a function name (a DNS label), or `function`.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let label: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() { "function".into() } else { label.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_env_overrides_the_manifest_and_reaches_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("function.yaml"),
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata: {name: hello, namespace: shop}\n\
             spec:\n  component: hello.wasm\n  env: [{name: GREETING, value: hi}, {name: KEEP, value: k}]\n  \
             scaling: {maxConcurrency: 3}\n",
        )
        .unwrap();
        let envs = vec!["PATH=/bin".to_string(), "GREETING=hello".into(), "BROKEN".into()];
        let f = function(&envs, dir.path()).unwrap();
        assert_eq!(f.key(), FunctionKey::new("shop", "hello"));
        assert_eq!(f.spec.scaling.max_concurrency, 3);
        let env: Vec<_> = f.spec.env.iter().map(|e| format!("{}={}", e.name, e.value)).collect();
        assert_eq!(env, ["KEEP=k", "PATH=/bin", "GREETING=hello"]);
    }

    #[test]
    fn manifests_named_or_broken_are_errors_and_none_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let f = function(&[], dir.path()).unwrap();
        assert_eq!(f.metadata.namespace, "pod");
        let missing = function(&[format!("{MANIFEST_ENV}=/nope.yaml")], dir.path()).unwrap_err();
        assert!(format!("{missing:#}").contains("/nope.yaml"), "{missing:#}");
        std::fs::write(dir.path().join("function.yaml"), "kind: Function\nspec: {bogus: 1}\n").unwrap();
        let bad = function(&[], dir.path()).unwrap_err();
        assert!(format!("{bad:#}").contains("invalid manifest"), "{bad:#}");
    }

    #[test]
    fn env_lookup_takes_the_last_value() {
        let envs = vec!["PORT=1".to_string(), "PORTX=2".into(), "PORT=3".into()];
        assert_eq!(env(&envs, "PORT"), Some("3"));
        assert_eq!(env(&envs, "POR"), None);
    }
}
