//! `wasmfn`: serve WebAssembly functions.
//!
//! - `wasmfn up [PATH...]` runs an embedded node for local development: it deploys `Function` manifests or
//!   bare `.wasm` files, prints their URLs and redeploys a function when its files change.
//! - `wasmfn serve --config node.toml` runs the node daemon; functions are deployed through its admin API.

mod up;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use wasmfn_runtime::{Node, NodeConfig};

#[derive(Parser)]
#[command(name = "wasmfn", version, about = "WebAssembly serverless functions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct NodeArgs {
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
}

impl NodeArgs {
    fn apply(&self, config: &mut NodeConfig) {
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
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve functions from manifests, folders or .wasm files on 127.0.0.1:8080, redeploying on change.
    Up {
        /// `Function` manifests (YAML), folders holding `function.yaml` files, or component files.
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Run the node daemon.
    Serve {
        /// Node config (TOML); defaults apply to absent keys.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // With RUST_BACKTRACE=1 in the environment, every error value (wasmtime and WASI create some on
        // ordinary request paths) would capture a backtrace: tens of microseconds each. Panics still print
        // theirs; set RUST_LIB_BACKTRACE=1 to get error backtraces too.
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMFN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Up { paths, node } => up::run(paths, node).await,
            Command::Serve { config, node } => serve(config, node).await,
        }
    })
}

async fn serve(config: Option<PathBuf>, args: NodeArgs) -> anyhow::Result<()> {
    let mut config = match &config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    args.apply(&mut config);
    let node = Node::new(config).context("starting the node")?;
    let listeners = node.bind().await.context("binding the listeners")?;
    announce(&listeners);
    node.serve(listeners, shutdown_signal()).await?;
    Ok(())
}

/// Prints the bound addresses; tests and scripts wait for these lines.
fn announce(listeners: &wasmfn_runtime::Listeners) {
    println!("wasmfn listening on http://{}", listeners.ingress_addr());
    println!("wasmfn admin listening on http://{}", listeners.admin_addr());
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
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
