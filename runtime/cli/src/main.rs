//! `wasmfn`: serve WebAssembly functions.
//!
//! - `wasmfn up [PATH...]` runs an embedded node for local development: it deploys `Function` manifests or
//!   bare `.wasm` files, prints their URLs and redeploys a function when its files change.
//! - `wasmfn serve --config node.toml` runs the node daemon; functions are deployed through its admin API.
//! - `wasmfn new NAME --lang rust|js|python` scaffolds a function; `wasmfn build [DIR]` builds its component,
//!   `wasmfn build --source git+URL#REF:PATH|s3://BUCKET/KEY|inline:DIR` fetches the folder first, `--push REF`
//!   pushes the result and `--report FILE` writes the outcome for a Kubernetes Job's termination message.
//! - `wasmfn revisions|traffic|rollback NAME` inspect and steer a function's revisions on a running node.
//! - `wasmfn import [FILE...] --out DIR` converts Kubeless and Kyma functions and triggers into function folders.

mod admin;
mod build;
mod client;
mod cluster;
mod cluster_console;
mod console;
mod import;
mod oci;
mod paths;
mod registry;
mod serve;
mod up;
mod workspace;

use clap::{Parser, Subcommand};
use paths::default_data_dir;
use serve::{NodeArgs, serve};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "wasmfn", version, about = "WebAssembly serverless functions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Wasm,
    Image,
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
        #[command(flatten)]
        build: build::BuildArgs,
    },
    /// Create a function folder from a compiler template: function.yaml, source and an example request.
    New {
        /// The function's name (a DNS label).
        name: String,
        /// The template: rust, js or python (any folder of compiler-templates/).
        #[arg(long, short)]
        lang: String,
        /// Where to create it; `./NAME` by default.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        build: build::BuildArgs,
    },
    /// Build a function folder into a component, cached by a hash of its sources.
    ///
    /// The folder is local, or fetched first with --source: `git+URL#REF:PATH` (a branch, tag or commit of a
    /// repository and a folder in it), `s3://BUCKET/KEY?endpoint=URL&region=R#PATH` (a .tar.gz, .tgz, .tar or
    /// .zip; credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or `inline:DIR`
    /// (DIR/code and DIR/dependencies put into the --template's scaffold).
    #[command(verbatim_doc_comment)]
    Build {
        #[command(flatten)]
        cmd: build::BuildCmd,
        #[command(flatten)]
        registry: registry::RegistryArgs,
        #[command(flatten)]
        build: build::BuildArgs,
    },
    /// Push a function folder (built, cached), a component file, or an artifact of the local store to a registry.
    Push {
        /// A function folder, a `.wasm` component, or `NAME[:TAG]` stored by `wasmfn build`.
        source: PathBuf,
        /// Where to: `registry/repository:tag`.
        reference: String,
        /// `wasm`: the CNCF Wasm artifact; `image`: a plain image whose tar layer holds the component, for
        /// containerd older than 1.6.25/1.7.7.
        #[arg(long, value_enum, default_value = "wasm")]
        format: FormatArg,
        /// Data folder whose local store (OCI layout) `NAME[:TAG]` is read from.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        registry: registry::RegistryArgs,
        #[command(flatten)]
        build: build::BuildArgs,
    },
    /// Pull a component from an OCI registry into the local component store (or a file).
    Pull {
        /// `registry/repository:tag` or `…@sha256:…`.
        reference: String,
        /// Write the component here instead of the local component store.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Data folder whose component store receives it.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        registry: registry::RegistryArgs,
    },
    /// List a function's revisions: traffic share, tags, requests, errors, p50/p99 latency, digest.
    Revisions {
        /// The function.
        name: String,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Split a function's traffic: `wasmfn traffic hello hello-2=90 hello-3=10` (`@latest=N` follows the
    /// latest revision); without splits, show the current split.
    Traffic {
        /// The function.
        name: String,
        /// `REVISION=PERCENT`, adding up to 100.
        splits: Vec<String>,
        /// `REVISION=TAG`: the revision also answers on `<tag>-<name>.<namespace>.<domain>`; repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// List the functions of a running `wasmfn up`/`serve`: revision, status, requests, cold starts, URL.
    Ls {
        /// Every namespace, not only `--namespace`.
        #[arg(long, short = 'A')]
        all_namespaces: bool,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Call a function through the node: prints the body (status, revision, latency and request id in the log).
    Call {
        /// The function.
        name: String,
        /// The request body, or the event's data (JSON when it parses).
        #[arg(long, short)]
        data: Option<String>,
        /// Send a CloudEvent of this type (binary mode) instead of a plain request.
        #[arg(long)]
        event_type: Option<String>,
        /// The CloudEvent's source.
        #[arg(long, default_value = "/wasmfn/cli")]
        event_source: String,
        /// The HTTP method (default: POST with data, else GET).
        #[arg(long, short = 'X')]
        method: Option<String>,
        /// The path under the function.
        #[arg(long, default_value = "/")]
        path: String,
        /// `NAME: VALUE`; repeatable.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Print a function's recent output (guest stdout/stderr, build output) from a running `wasmfn up`/`serve`;
    /// `-f` follows it. With `--cluster` (or `--context`): the function's last build log and the nodes' recent
    /// log lines about it on the current kube context.
    Logs {
        /// The function.
        name: String,
        /// Read the cluster's logs (build Job and node pods) instead of a local node's.
        #[arg(long)]
        cluster: bool,
        /// The kube context (implies --cluster); the current one when absent.
        #[arg(long)]
        context: Option<String>,
        /// Lines per pod (--cluster).
        #[arg(long, default_value_t = 100)]
        tail: i64,
        /// Where wasmfn's node runtime runs (--cluster).
        #[arg(long, default_value = "wasmfn-system")]
        system_namespace: String,
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
        /// Only this revision's lines.
        #[arg(long)]
        revision: Option<String>,
        /// Only this request's lines (the `x-request-id` of a response).
        #[arg(long)]
        request: Option<String>,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// The event types a running node's brokers have seen: type, source, count, last seen, fields, a sample.
    Events {
        /// Every namespace, not only `--namespace`.
        #[arg(long, short = 'A')]
        all_namespaces: bool,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Delete a function from a running `wasmfn up`/`serve`.
    Delete {
        /// The function.
        name: String,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Stop a rollout, or send the latest traffic back to the previous revision (or to `--to`).
    Rollback {
        /// The function.
        name: String,
        /// The revision to go to.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Apply a function folder's function.yaml to the current kube context; a function built from the folder
    /// is built and pushed to --registry first.
    Deploy {
        /// The function folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to push a component built here: `registry[:port]/prefix`.
        #[arg(long, env = "WASMFN_REGISTRY")]
        registry: Option<String>,
        /// Wait until the function is Ready (or failed), at most this long, e.g. `5m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
        #[command(flatten)]
        kube: cluster::KubeArgs,
        #[command(flatten)]
        registry_args: registry::RegistryArgs,
        #[command(flatten)]
        build: build::BuildArgs,
    },
    /// The console against the current kube context, on localhost, acting as you (your kubeconfig identity):
    /// functions of every namespace you may list, editing inline sources, traffic, deleting.
    Console {
        /// Where the page listens (loopback only).
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// Where wasmfn's node runtime runs (test invocations go through a node pod).
        #[arg(long, default_value = "wasmfn-system")]
        system_namespace: String,
        #[command(flatten)]
        kube: cluster::KubeArgs,
    },
    /// Show functions on the current kube context: readiness, reason, URL, revision, nodes.
    Get {
        /// One function; all of the namespace when absent.
        name: Option<String>,
        /// `json` or `yaml`: the whole objects.
        #[arg(long, short)]
        output: Option<String>,
        #[command(flatten)]
        kube: cluster::KubeArgs,
    },
    /// Convert Kubeless and Kyma objects (Kubernetes YAML: Functions, triggers, Subscriptions; multi-document or a
    /// `kind: List`) into wasmfn function folders `DIR/NAMESPACE/NAME/` and a report of what was not carried over
    /// (`DIR/report.md`, also printed). Nothing is fetched, and nothing is written unless every object converts.
    Import {
        /// YAML files; stdin when none or `-`.
        files: Vec<PathBuf>,
        /// The output folder; it must not exist or be empty (see --force).
        #[arg(long, default_value = "imported")]
        out: PathBuf,
        /// Replace a non-empty --out.
        #[arg(long)]
        force: bool,
        /// The NATS server given to Kubeless NATSTriggers (Kubeless' controller had its own).
        #[arg(long, default_value = import::DEFAULT_NATS_URL)]
        nats_url: String,
    },
    /// Run the node daemon.
    Serve {
        /// Node config (TOML); defaults apply to absent keys.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
        /// Cluster mode: serve every `Function` of the cluster (in-cluster config, or the current kube
        /// context), and report this node's state into their status.
        #[arg(long)]
        kubernetes: bool,
        /// This node's name in `status.nodes` (the DaemonSet sets NODE_NAME from `spec.nodeName`).
        #[arg(long, env = "NODE_NAME")]
        node_name: Option<String>,
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
    // The first TLS client would otherwise panic: two rustls crypto providers are linked in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMFN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    if let Command::New { name, lang, dir, build } = &cli.command {
        return build::new(name, lang, dir.clone(), build);
    }
    if let Command::Import { files, out, force, nats_url } = &cli.command {
        return import::run(files, out, *force, nats_url);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Up { paths, node, build } => up::run(paths, node, build).await,
            Command::Deploy { dir, registry, wait, kube, registry_args, build } => {
                cluster::deploy(&dir, registry.as_deref(), wait, &kube, &registry_args, &build).await
            }
            Command::Console { listen, system_namespace, kube } => {
                cluster_console::run(&kube, listen, system_namespace).await
            }
            Command::Get { name, output, kube } => cluster::get(name.as_deref(), output.as_deref(), &kube).await,
            Command::Serve { config, node, kubernetes, node_name } => {
                serve(config, node, kubernetes.then(|| node_name.unwrap_or_else(hostname))).await
            }
            Command::Build { cmd, registry, build } => build::build(cmd, &build, &registry).await,
            Command::Push { source, reference, format, data_dir, registry, build } => {
                let data_dir = data_dir.unwrap_or_else(default_data_dir);
                let format = match format {
                    FormatArg::Wasm => wasmfn_oci::Format::Wasm,
                    FormatArg::Image => wasmfn_oci::Format::Image,
                };
                oci::push(&source, &reference, format, &data_dir, &registry, &build).await
            }
            Command::Pull { reference, output, data_dir, registry } => {
                let data_dir = data_dir.unwrap_or_else(default_data_dir);
                oci::pull(&reference, output.as_deref(), &data_dir, &registry).await
            }
            Command::Revisions { name, json, admin } => admin::revisions(&name, &admin, json).await,
            Command::Traffic { name, splits, tags, admin } => admin::traffic(&name, &splits, &tags, &admin).await,
            Command::Rollback { name, to, admin } => admin::rollback(&name, to.as_deref(), &admin).await,
            Command::Ls { all_namespaces, json, admin } => client::ls(&admin, all_namespaces, json).await,
            Command::Call { name, data, event_type, event_source, method, path, headers, admin } => {
                let call = client::CallArgs {
                    data: data.as_deref(),
                    event_type: event_type.as_deref(),
                    event_source: &event_source,
                    method: method.as_deref(),
                    path: &path,
                    headers: &headers,
                };
                client::call(&name, &admin, call).await
            }
            Command::Logs { name, cluster: true, context, tail, system_namespace, admin, .. }
            | Command::Logs { name, context: context @ Some(_), tail, system_namespace, admin, .. } => {
                let kube = cluster::KubeArgs::new(context, Some(admin.namespace.clone()));
                cluster::logs(&name, tail, &system_namespace, &kube).await
            }
            Command::Logs { name, follow, revision, request, admin, .. } => {
                client::logs(&name, &admin, follow, revision.as_deref(), request.as_deref()).await
            }
            Command::Delete { name, admin } => client::delete(&name, &admin).await,
            Command::Events { all_namespaces, json, admin } => client::events(&admin, all_namespaces, json).await,
            Command::New { .. } | Command::Import { .. } => unreachable!("handled above"),
        }
    })
}

/// The machine's host name, for `--node-name`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
