//! The wasmfn operator: reconciles `Function` resources (`wasmfn.dev/v1alpha1`).
//!
//! For each Function it:
//! - builds `spec.source` (inline, Git or S3) in a Job running `wasmfn build --push` in the builder image, at
//!   most `max_builds` at once, never twice for the same source hash, and records the pushed digest;
//! - or resolves `spec.image` to a digest;
//! - writes `status.image` (what nodes run), the conditions `BuildSucceeded` and `Ready` (aggregated from the
//!   nodes' own `status.nodes` entries), and a Kubernetes Event for each step;
//! - removes its Jobs and ConfigMaps through a finalizer when the Function is deleted.
//!
//! Errors requeue the object with a per-object exponential backoff.

pub mod build;
pub mod compat;
mod invalid;
mod metrics;
pub mod status;

pub use metrics::Metrics;

use build::BuildState;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmfn_api::{Function, FunctionKey, FunctionResource};

/// The field manager of everything the operator applies.
pub const MANAGER: &str = "wasmfn-operator";
/// The operator's finalizer on Functions.
pub const FINALIZER: &str = "wasmfn.dev/cleanup";

/// How the operator builds and where it pushes.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where builds push components: `registry[:port]/prefix`.
    pub registry: String,
    /// Registries reached over plain HTTP (`host[:port]`).
    pub insecure_registries: Vec<String>,
    /// The image build Jobs run (`compiler-templates/Dockerfile`).
    pub builder_image: String,
    /// Builds running at once over the cluster; more wait.
    pub max_builds: usize,
    /// Functions answer on `<name>.<namespace>.<domain>`.
    pub domain: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            registry: "registry.wasmfn-system.svc.cluster.local:5000/functions".into(),
            insecure_registries: Vec::new(),
            builder_image: "ghcr.io/wasmfn/builder:dev".into(),
            max_builds: 2,
            domain: "wasmfn.local".into(),
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer failed, or the step inside it did.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A legacy object could not be read for compatibility mode.
    #[error("compatibility mode: {0}")]
    Compat(String),
    /// `spec.image` could not be resolved (the registry is down, the tag does not exist).
    #[error("resolving `{image}`: {message}")]
    Resolve {
        /// The image.
        image: String,
        /// The registry client's message.
        message: String,
    },
}

impl Error {
    /// A bounded label for the `wasmfn_operator_reconcile_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(e) if is_conflict(e) => "conflict",
            Error::Kube(_) => "kube",
            Error::Finalizer(e) => match &**e {
                F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::Resolve { .. } => "resolve",
            Error::Compat(_) => "compat",
        }
    }

    /// Whether someone else changed the object first: retried at once, without backoff.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Kube(e) => is_conflict(e),
            Error::Finalizer(e) => match &**e {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.is_conflict(),
                kube::runtime::finalizer::Error::AddFinalizer(e)
                | kube::runtime::finalizer::Error::RemoveFinalizer(e) => is_conflict(e),
                _ => false,
            },
            Error::Resolve { .. } | Error::Compat(_) => false,
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// What reconciles share.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Settings.
    pub config: Config,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Resolves `spec.image` tags.
    pub registry: wasmfn_oci::Registry,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Consecutive failures per object, for the backoff.
    failures: Mutex<HashMap<FunctionKey, u32>>,
    /// Held while a build slot is counted and taken.
    build_slots: tokio::sync::Mutex<()>,
    /// The cluster's Nodes, when watched: entries of `status.nodes` from nodes that left do not count.
    pub nodes: Option<kube::runtime::reflector::Store<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Node>>>,
}

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, config: Config) -> Result<Context, wasmfn_oci::Error> {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok()),
        };
        let registry = wasmfn_oci::Registry::new(&wasmfn_oci::RegistryConfig {
            insecure: config.insecure_registries.clone(),
            ..Default::default()
        })?;
        Ok(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            registry,
            metrics: Metrics::default(),
            failures: Mutex::default(),
            build_slots: tokio::sync::Mutex::default(),
            nodes: None,
        })
    }

    async fn event(&self, f: &FunctionResource, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        // An Event is a courtesy: failing to publish one must not fail the reconcile.
        if let Err(e) = self.recorder.publish(&event, &build::reference(f)).await {
            tracing::warn!(function = %key(f), error = %e, "publishing an event failed");
        }
    }
}

/// The Function's key, `namespace/name`, as nodes, logs and build hashes name it.
pub(crate) fn key(f: &FunctionResource) -> FunctionKey {
    FunctionKey::new(f.namespace().unwrap_or_default(), f.name_any())
}

/// Reconciles one Function (the controller's reconcile function).
pub async fn reconcile(f: Arc<FunctionResource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = f.namespace().unwrap_or_else(|| "default".into());
    let api: Api<FunctionResource> = Api::namespaced(ctx.client.clone(), &ns);
    let name = key(&f);
    let _timer = ctx.metrics.reconcile_timer();
    let result = finalizer(&api, FINALIZER, f, |event| async {
        match event {
            Finalizer::Apply(f) => apply(&f, &ctx).await,
            Finalizer::Cleanup(f) => cleanup(&f, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.failures.lock().expect("not poisoned").remove(&name);
    }
    result
}

/// The controller's reconcile function: [`reconcile`] for the Functions that parse. One that does not (written
/// for a newer CRD, or with a value the schema lets through) gets a Warning event and `Ready=False,
/// InvalidSpec`, and blocks nothing else: the watch reads every object on its own.
pub async fn reconcile_guarded(
    object: Arc<DeserializeGuard<FunctionResource>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match &object.0 {
        Ok(f) => reconcile(Arc::new(f.clone()), ctx).await,
        Err(invalid) => invalid::report(invalid, &ctx).await,
    }
}

/// The controller's error policy for [`reconcile_guarded`].
pub fn error_policy_guarded(
    object: Arc<DeserializeGuard<FunctionResource>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    match &object.0 {
        Ok(f) => error_policy(Arc::new(f.clone()), error, ctx),
        Err(_) => Action::requeue(backoff(3)),
    }
}

/// The controller's error policy: retry conflicts at once, everything else with a per-object backoff from 5 s
/// doubling to 5 min.
pub fn error_policy(f: Arc<FunctionResource>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.metric_label());
    tracing::warn!(function = %key(&f), error = %error, "reconcile failed");
    if error.is_conflict() {
        return Action::requeue(Duration::from_millis(500));
    }
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let n = failures.entry(key(&f)).or_insert(0);
    let delay = backoff(*n);
    *n += 1;
    Action::requeue(delay)
}

/// The wait after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5).saturating_mul(1 << failures.min(6)).min(Duration::from_secs(300))
}

async fn apply(f: &FunctionResource, ctx: &Context) -> Result<Action, Error> {
    let mut plan = status::Plan::new(f, &ctx.config);
    let mut requeue = None;
    let mut failure = None;
    match Function::try_from(f) {
        Err(e) => plan.invalid(e.to_string()),
        Ok(_) if f.spec.source.is_some() => {
            let (source, template) =
                (f.spec.source.as_ref().expect("checked"), &f.spec.build.as_ref().expect("validated").template);
            let hash = build::source_hash(f, source, template, ctx);
            match plan.built(&hash) {
                Some(Ok(image)) => plan.serving(image),
                // A failed source is not built again until it changes; the condition stays as it was.
                Some(Err(_)) => {}
                None => match build::step(f, source, template, ctx).await? {
                    BuildState::Queued { running } => {
                        plan.queued(&hash, running, ctx.config.max_builds);
                        requeue = Some(Duration::from_secs(10));
                    }
                    BuildState::Running { job, started } => {
                        plan.building(&hash, &job, started);
                        if started {
                            ctx.metrics.build_started();
                        }
                    }
                    BuildState::Succeeded { job, image, digest } => {
                        ctx.metrics.build_finished("succeeded");
                        plan.build_succeeded(&hash, &job, &image, digest);
                    }
                    BuildState::Failed { job, message } => {
                        ctx.metrics.build_finished("failed");
                        plan.build_failed(&hash, &job, &message);
                    }
                },
            }
        }
        Ok(_) => match f.spec.image.as_deref() {
            // Resolved once per generation (like a Knative revision): node reports cause no registry traffic,
            // and a registry outage does not touch a serving function.
            Some(_) if plan.resolved_current() => {}
            Some(image) => match ctx.registry.locate(image).await {
                Ok(located) => {
                    let digest = located.layer_is_component().then(|| located.layer.digest.clone());
                    plan.resolved(&located.pinned, digest);
                }
                Err(e) => {
                    plan.unresolved(image, &e.to_string());
                    failure = Some(Error::Resolve { image: image.into(), message: e.to_string() });
                }
            },
            None => plan.invalid(
                "a function on a cluster needs `spec.source` (built by the operator) or `spec.image`; \
                 `spec.component` names a file on your machine"
                    .into(),
            ),
        },
    }
    // Only once the Node list is known (a store still loading is empty): until then every entry counts.
    let live = ctx.nodes.as_ref().map(|s| s.state()).filter(|n| !n.is_empty());
    plan.readiness(live.map(|nodes| nodes.iter().map(|n| n.name_any()).collect()).as_ref());
    let events = plan.commit(ctx).await?;
    for (warning, reason, note) in events {
        ctx.event(f, warning, &reason, note).await;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(requeue.map(Action::requeue).unwrap_or_else(|| Action::requeue(Duration::from_secs(300))))
}

async fn cleanup(f: &FunctionResource, ctx: &Context) -> Result<Action, Error> {
    build::cleanup(ctx, &f.namespace().unwrap_or_default(), &f.name_any()).await?;
    ctx.event(f, false, "CleanedUp", "deleted the function's build Jobs and ConfigMaps".into()).await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
