//! Running a node: `wasmfn serve`, and what it shares with `wasmfn up` (the node flags, the announced
//! addresses, the shutdown signal).

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use wasmfn_runtime::{Node, NodeConfig};

/// Flags that override the node config.
#[derive(clap::Args)]
pub(crate) struct NodeArgs {
    /// Data directory: function table, component store and AOT cache.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Ingress address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin API address.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Let functions' outgoing HTTP reach loopback addresses (local services during development).
    #[arg(long)]
    allow_loopback_egress: bool,
    /// A registry (`host[:port]`) to reach over plain HTTP for `spec.image`; repeatable.
    #[arg(long = "insecure-registry", env = "WASMFN_INSECURE_REGISTRIES", value_delimiter = ',')]
    insecure_registries: Vec<String>,
    /// Functions answer on `Host: <name>.<namespace>.<domain>`.
    #[arg(long, env = "WASMFN_DOMAIN")]
    domain: Option<String>,
    /// How often the console's charts get a point (`series-interval` in node.toml; 30s).
    #[arg(long, env = "WASMFN_SERIES_INTERVAL", value_parser = humantime::parse_duration)]
    series_interval: Option<std::time::Duration>,
}

impl NodeArgs {
    pub(crate) fn apply(&self, config: &mut NodeConfig) {
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(l) = self.listen {
            config.listen = l;
        }
        if let Some(a) = self.admin_listen {
            config.admin_listen = a;
        }
        if self.allow_loopback_egress {
            config.allow_loopback_egress = true;
        }
        config.registry.insecure.extend(self.insecure_registries.iter().cloned());
        if let Some(d) = &self.domain {
            config.domain = d.clone();
        }
        if let Some(i) = self.series_interval {
            config.series_interval = i;
        }
    }
}

/// `wasmfn serve`; with `cluster` (this node's name), also in sync with the cluster's Functions.
pub(crate) async fn serve(config: Option<PathBuf>, args: NodeArgs, cluster: Option<String>) -> anyhow::Result<()> {
    let mut config = match &config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    args.apply(&mut config);
    if cluster.is_some() && !config.admin_listen.ip().is_loopback() && config.token().is_none() {
        // On a cluster the admin API listens on the pod IP: without a configured token, a random one, readable
        // only inside the node's pod.
        config.admin_token = Some(random_token(&config.data_dir)?);
    }
    let node = Node::new(config).context("starting the node")?;
    let listeners = node.bind().await.context("binding the listeners")?;
    announce(&listeners);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if let Some(node_name) = cluster {
        // The persisted table serves meanwhile: an unreachable API server delays only changes.
        let client = kube::Client::try_default().await.context("loading the Kubernetes configuration")?;
        let mut stopped = stopped.clone();
        let done = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        tracing::info!(node = %node_name, "cluster mode: watching Functions");
        tokio::spawn(wasmfn_runtime::cluster::run(node.clone(), client, node_name, done));
    }
    node.serve(listeners, shutdown_signal()).await?;
    let _ = stop.send(true);
    Ok(())
}

/// A new random admin token, written to `<data-dir>/admin-token` (mode 0600).
fn random_token(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("admin-token");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
    file.write_all(token.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

/// Prints the bound addresses; tests and scripts wait for these lines.
pub(crate) fn announce(listeners: &wasmfn_runtime::Listeners) {
    println!("wasmfn listening on http://{}", listeners.ingress_addr());
    println!("wasmfn admin listening on http://{}", listeners.admin_addr().expect("bound with an admin listener"));
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("signal received");
}
