//! `wasmfn deploy`, `wasmfn get` and `wasmfn logs`: functions on the current kube context.

use crate::build::{BuildArgs, build_dir, manifest};
use crate::registry::{RegistryArgs, push_file};
use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use std::path::Path;
use std::time::{Duration, Instant};
use wasmfn_api::{FunctionKey, FunctionResource, condition};

/// Which cluster and namespace.
#[derive(clap::Args, Clone)]
pub(crate) struct KubeArgs {
    /// The kube context; the current one when absent.
    #[arg(long)]
    context: Option<String>,
    /// The namespace; the manifest's, else the context's.
    #[arg(long, short)]
    namespace: Option<String>,
}

impl KubeArgs {
    /// The context and namespace given on another command's flags.
    pub(crate) fn new(context: Option<String>, namespace: Option<String>) -> KubeArgs {
        KubeArgs { context, namespace }
    }

    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let options = KubeConfigOptions { context: self.context.clone(), ..Default::default() };
        let config = match Kubeconfig::read() {
            Ok(kubeconfig) => kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?,
            // No kubeconfig: inside a pod, the in-cluster configuration.
            Err(_) if self.context.is_none() => kube::Config::infer().await?,
            Err(e) => return Err(e).context("reading the kube config (KUBECONFIG or ~/.kube/config)"),
        };
        Ok(Client::try_from(config)?)
    }

    fn namespace<'a>(&'a self, client: &'a Client) -> &'a str {
        self.namespace.as_deref().unwrap_or(client.default_namespace())
    }
}

/// `wasmfn deploy [DIR]`: builds and pushes the folder's component when it is built here, then applies its
/// `function.yaml` (server-side apply), optionally waiting for `Ready`.
pub(crate) async fn deploy(
    dir: &Path,
    registry: Option<&str>,
    wait: Option<Duration>,
    kube: &KubeArgs,
    registry_args: &RegistryArgs,
    build: &BuildArgs,
) -> anyhow::Result<()> {
    let Some(mut f) = manifest(dir)? else {
        bail!("{}: no function.yaml (create one with `wasmfn new`)", dir.display());
    };
    let client = kube.client().await?;
    // The namespace: -n, else the manifest's own, else the context's (like kubectl apply).
    let text = ["function.yaml", "function.yml"].iter().find_map(|n| std::fs::read_to_string(dir.join(n)).ok());
    let text = text.unwrap_or_default();
    let raw: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap_or_default();
    if let Some(ns) = &kube.namespace {
        f.metadata.namespace = ns.clone();
    } else if raw["metadata"]["namespace"].is_null() {
        f.metadata.namespace = client.default_namespace().to_string();
    }
    let (ns, name) = (f.metadata.namespace.clone(), f.metadata.name.clone());
    if f.spec.source.is_none() && f.spec.image.is_none() {
        // Built here: the cluster gets the pushed, digest-pinned image.
        let Some(registry) = registry else {
            bail!(
                "{name} is built from this folder, so it is pushed first: give --registry REGISTRY/PREFIX (or \
                 WASMFN_REGISTRY), or set spec.image or spec.source in function.yaml"
            );
        };
        let file = match f.spec.component.as_deref().filter(|c| !c.starts_with("sha256:")) {
            Some(c) => dir.join(c),
            None => {
                let builder = build.builder()?;
                let folder = dir.to_path_buf();
                tokio::task::spawn_blocking(move || build_dir(&builder, &folder, None, true)).await??.path
            }
        };
        // Tagged by the component's digest: the same build is the same tag.
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let digest = wasmfn_oci::sha256_digest(&bytes);
        let reference = format!("{}/{ns}/{name}:{}", registry.trim_end_matches('/'), &digest[7..23]);
        let title = format!("{name}.wasm");
        let pushed = push_file(&file, title, dir, &reference, wasmfn_oci::Format::Wasm, registry_args).await?;
        let pinned = pushed.pinned;
        println!("pushed {pinned}");
        f.spec.image = Some(pinned);
        f.spec.component = None;
        f.spec.build = None;
    }
    f.validate()?;
    let mut resource = FunctionResource::from(&f);
    resource.status = None;
    let api: Api<FunctionResource> = Api::namespaced(client, &ns);
    let params = PatchParams::apply("wasmfn-cli").force();
    let applied =
        api.patch(&name, &params, &Patch::Apply(&resource)).await.with_context(|| format!("applying {ns}/{name}"))?;
    println!("function {ns}/{name} applied (generation {})", applied.metadata.generation.unwrap_or_default());
    let Some(timeout) = wait else { return Ok(()) };
    let deadline = Instant::now() + timeout;
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        every.tick().await;
        let f = api.get(&name).await?;
        let current = f.status.as_ref().and_then(|s| s.observed_generation) >= f.metadata.generation;
        match f.condition(condition::READY) {
            Some(c) if current && c.status == "True" => {
                println!("ready: {}", f.status.as_ref().and_then(|s| s.url.clone()).unwrap_or_default());
                return Ok(());
            }
            Some(c) if current && c.status == "False" => bail!("{ns}/{name} is not ready: {}: {}", c.reason, c.message),
            _ if Instant::now() > deadline => bail!("{ns}/{name} was not ready within {}", humantime(timeout)),
            _ => {}
        }
    }
}

fn humantime(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// `wasmfn get [NAME]`: the functions' readiness, URL and revision; one function in full with `-o yaml|json`.
pub(crate) async fn get(name: Option<&str>, output: Option<&str>, kube: &KubeArgs) -> anyhow::Result<()> {
    let client = kube.client().await?;
    let ns = kube.namespace(&client).to_string();
    let api: Api<FunctionResource> = Api::namespaced(client, &ns);
    let items = match name {
        Some(n) => vec![api.get(n).await.with_context(|| format!("getting {ns}/{n}"))?],
        None => api.list(&ListParams::default()).await?.items,
    };
    match output {
        Some("json") => println!("{}", serde_json::to_string_pretty(&items)?),
        Some("yaml") => print!("{}", serde_yaml_ng::to_string(&items)?),
        Some(other) => bail!("unknown output `{other}`: use json or yaml"),
        None => print!("{}", table(&items)),
    }
    Ok(())
}

/// The `wasmfn get` table.
pub(crate) fn table(items: &[FunctionResource]) -> String {
    let mut rows = vec![["NAME", "READY", "REASON", "URL", "REVISION", "NODES"].map(String::from).to_vec()];
    for f in items {
        let ready = f.condition(condition::READY);
        let status = f.status.clone().unwrap_or_default();
        rows.push(vec![
            f.name_any(),
            ready.map(|c| c.status.clone()).unwrap_or_else(|| "Unknown".into()),
            ready.map(|c| c.reason.clone()).unwrap_or_default(),
            status.url.unwrap_or_default(),
            status.latest_revision.unwrap_or_default(),
            status.ready_nodes.unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `wasmfn logs NAME`: the last build's log, then the nodes' recent lines about the function (guest output
/// included).
pub(crate) async fn logs(name: &str, tail: i64, system_namespace: &str, kube: &KubeArgs) -> anyhow::Result<()> {
    let client = kube.client().await?;
    let ns = kube.namespace(&client).to_string();
    let functions: Api<FunctionResource> = Api::namespaced(client.clone(), &ns);
    let key = FunctionKey::new(&ns, name).to_string();
    let f = functions.get(name).await.with_context(|| format!("getting {key}"))?;
    let params = LogParams { tail_lines: Some(tail), timestamps: false, ..Default::default() };
    if let Some(job) = f.status.as_ref().and_then(|s| s.build.as_ref()).and_then(|b| b.job.clone()) {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for pod in pods.list(&ListParams::default().labels(&format!("job-name={job}"))).await?.items {
            let text = pods.logs(&pod.name_any(), &params).await.unwrap_or_else(|e| format!("(no log: {e})\n"));
            for line in text.lines() {
                println!("[build {job}] {line}");
            }
        }
    }
    let nodes: Api<Pod> = Api::namespaced(client, system_namespace);
    let selector = "app.kubernetes.io/name=wasmfn-node";
    // Node logs mix every function: read more than `tail` and keep this function's lines.
    let wide = LogParams { tail_lines: Some(tail.saturating_mul(20)), ..Default::default() };
    for pod in nodes.list(&ListParams::default().labels(selector)).await?.items {
        let text = nodes.logs(&pod.name_any(), &wide).await.unwrap_or_else(|e| format!("(no log: {e})\n"));
        let mine: Vec<&str> = text.lines().filter(|l| l.contains(&key)).collect();
        for line in &mine[mine.len().saturating_sub(tail as usize)..] {
            println!("[{}] {line}", pod.name_any());
        }
    }
    Ok(())
}
