//! `wasmfn-operator`: reconciles `Function` resources on the cluster it runs in (or the current kube context).

use anyhow::Context as _;
use clap::Parser;
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::api::DynamicObject;
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};
use std::net::SocketAddr;
use std::sync::Arc;
use wasmfn_api::FunctionResource;
use wasmfn_operator::compat::{self, Legacy};
use wasmfn_operator::{Config, Context, error_policy_guarded, reconcile_guarded};

#[derive(Parser)]
#[command(name = "wasmfn-operator", version, about = "Reconciles wasmfn Functions: builds, images, conditions")]
struct Args {
    /// Where builds push components: `registry[:port]/prefix`.
    #[arg(long, env = "WASMFN_REGISTRY", default_value_t = Config::default().registry)]
    registry: String,
    /// A registry (`host[:port]`) reached over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", env = "WASMFN_INSECURE_REGISTRIES", value_delimiter = ',')]
    insecure_registries: Vec<String>,
    /// The image build Jobs run.
    #[arg(long, env = "WASMFN_BUILDER_IMAGE", default_value_t = Config::default().builder_image)]
    builder_image: String,
    /// Builds running at once over the cluster.
    #[arg(long, env = "WASMFN_MAX_BUILDS", default_value_t = 2)]
    max_builds: usize,
    /// Functions answer on `<name>.<namespace>.<domain>`.
    #[arg(long, env = "WASMFN_DOMAIN", default_value_t = Config::default().domain)]
    domain: String,
    /// Compatibility mode: serve Kubeless `Function`s (kubeless.io/v1beta1) as generated wasmfn Functions.
    #[arg(long, env = "WASMFN_COMPAT_KUBELESS")]
    compat_kubeless: bool,
    /// Compatibility mode: serve Kyma `Function`s (serverless.kyma-project.io/v1alpha2) as generated wasmfn
    /// Functions.
    #[arg(long, env = "WASMFN_COMPAT_KYMA")]
    compat_kyma: bool,
    /// `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The first TLS client would otherwise panic: two rustls crypto providers are linked in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let args = Args::parse();
    let config = Config {
        registry: args.registry,
        insecure_registries: args.insecure_registries,
        builder_image: args.builder_image,
        max_builds: args.max_builds.max(1),
        domain: args.domain,
    };
    let client = Client::try_default().await.context("connecting to the Kubernetes API")?;
    let mut ctx = Context::new(client.clone(), config)?;
    // The cluster's Nodes (their metadata only), so that status entries of nodes that left do not count.
    let (nodes, writer) = reflector::store();
    let node_api: Api<PartialObjectMeta<Node>> = Api::all(client.clone());
    let node_watch = reflector(writer, watcher::watcher(node_api, watcher::Config::default()));
    tokio::spawn(node_watch.default_backoff().touched_objects().for_each(|_| async {}));
    ctx.nodes = Some(nodes);
    let ctx = Arc::new(ctx);

    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    let metrics_ctx = ctx.clone();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ok" }))
        .route("/metrics", axum::routing::get(move || async move { metrics_ctx.metrics.encode() }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut legacy = Vec::new();
    for (on, kind) in [(args.compat_kubeless, Legacy::Kubeless), (args.compat_kyma, Legacy::Kyma)] {
        if on {
            legacy.push(compat_controller(client.clone(), ctx.clone(), kind));
        }
    }
    let compat = futures_util::future::join_all(legacy);

    // Each object parses on its own: one the types reject is reported, and does not stop the watch.
    let functions: Api<DeserializeGuard<FunctionResource>> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client);
    let main = Controller::new(functions, watcher::Config::default().any_semantic())
        .owns(jobs, watcher::Config::default().labels(wasmfn_operator::build::BUILD_SELECTOR))
        .shutdown_on_signal()
        .run(reconcile_guarded, error_policy_guarded, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(function = %object, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        });
    tokio::join!(main, compat);
    tracing::info!("stopped");
    Ok(())
}

/// The compatibility controller of one legacy kind: its Functions, and the wasmfn Functions generated from them.
async fn compat_controller(client: Client, ctx: Arc<wasmfn_operator::Context>, legacy: Legacy) {
    let ar = legacy.api_resource();
    tracing::info!(kind = %ar.api_version, "compatibility mode: serving legacy Functions");
    let sources: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let generated: Api<FunctionResource> = Api::all(client);
    let selector = format!("{}={}", compat::CONVERTED_FROM, legacy.label());
    Controller::new_with(sources, watcher::Config::default().any_semantic(), ar)
        .owns(generated, watcher::Config::default().labels(&selector))
        .shutdown_on_signal()
        .run(compat::reconcile, compat::error_policy, Arc::new(compat::Compat { ctx, legacy }))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "compat reconcile error");
            }
        })
        .await;
}
