//! Builds of `spec.source`: the Job (and the ConfigMap of an inline source) that runs `wasmfn build --push` in
//! the builder image, and what the Job reports through its Pod's termination message.

use crate::{Context, Error, MANAGER};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use wasmfn_api::{FunctionResource, INLINE_DIR, Source};

/// Label naming the function a Job or ConfigMap belongs to.
pub const FUNCTION_LABEL: &str = "wasmfn.dev/function";
/// Labels selecting every build Job the operator made.
pub const BUILD_SELECTOR: &str = "app.kubernetes.io/managed-by=wasmfn-operator,app.kubernetes.io/component=build";
/// Longest termination message Kubernetes keeps.
const MESSAGE_MAX: usize = 4096;

/// Where a build stands.
#[derive(Debug, PartialEq)]
pub enum BuildState {
    /// Too many builds run; this one waits.
    Queued {
        /// Builds running now.
        running: usize,
    },
    /// The Job runs; `started` when this reconcile created it.
    Running {
        /// The Job.
        job: String,
        /// Whether this reconcile created the Job.
        started: bool,
    },
    /// The Job pushed the component.
    Succeeded {
        /// The Job.
        job: String,
        /// The pushed image, pinned to its digest.
        image: String,
        /// The component's digest.
        digest: Option<String>,
    },
    /// The Job failed; `message` is the compiler's (or git's, or the registry's) own.
    Failed {
        /// The Job.
        job: String,
        /// Why.
        message: String,
    },
}

/// A hash of everything a build's output depends on: the source, the template, the builder image and where the
/// component goes. An unchanged hash is never rebuilt.
pub fn source_hash(f: &FunctionResource, source: &Source, template: &str, ctx: &Context) -> String {
    // The function's key too: two functions never share a build (or a Job name).
    let input = json!({
        "function": crate::key(f).to_string(),
        "source": source, "template": template,
        "builder": ctx.config.builder_image, "registry": ctx.config.registry,
    });
    hex::encode(Sha256::digest(input.to_string().as_bytes()))
}

/// The build Job's name: `<function>-build-<hash>`, within the 63 characters a label value allows.
pub fn job_name(function: &str, hash: &str) -> String {
    let prefix: String = function.chars().take(63 - "-build-".len() - 10).collect();
    format!("{}-build-{}", prefix.trim_end_matches('-'), &hash[..10])
}

fn labels(function: &str, hash: &str) -> serde_json::Value {
    json!({
        FUNCTION_LABEL: function,
        "wasmfn.dev/source-hash": &hash[..16],
        "app.kubernetes.io/managed-by": "wasmfn-operator",
        "app.kubernetes.io/component": "build",
        "app.kubernetes.io/part-of": "wasmfn",
    })
}

fn owner(f: &FunctionResource) -> serde_json::Value {
    serde_json::to_value(f.controller_owner_ref(&()).expect("a stored Function has a uid")).expect("serialises")
}

/// The image a build pushes: `<registry>/<namespace>/<name>:<hash>`.
pub fn target_image(ctx: &Context, namespace: &str, name: &str, hash: &str) -> String {
    format!("{}/{namespace}/{name}:{}", ctx.config.registry.trim_end_matches('/'), &hash[..16])
}

/// The Job running `wasmfn build --source … --push … --report /dev/termination-log`.
pub fn job(f: &FunctionResource, source: &Source, template: &str, hash: &str, ctx: &Context) -> Job {
    let (name, ns) = (f.name_any(), f.namespace().unwrap_or_default());
    let job = job_name(&name, hash);
    let image = target_image(ctx, &ns, &name, hash);
    let mut args = vec!["build", "--source"].into_iter().map(String::from).collect::<Vec<_>>();
    args.extend([source.to_arg(INLINE_DIR), "--template".into(), template.into(), "--push".into(), image.clone()]);
    args.extend(["--report".into(), "/dev/termination-log".into()]);
    if wasmfn_oci::registry_of(&image).is_ok_and(|r| ctx.config.insecure_registries.contains(&r)) {
        args.push("--insecure".into());
    }
    let mut env = Vec::new();
    if let Some(secret) = source.s3.as_ref().and_then(|s| s.secret_ref.as_ref()) {
        for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            env.push(json!({"name": key, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}}));
        }
    }
    let (mut volumes, mut mounts) =
        (vec![json!({"name": "tmp", "emptyDir": {}})], vec![json!({"name": "tmp", "mountPath": "/tmp"})]);
    if source.inline.is_some() {
        volumes.push(json!({"name": "inline", "configMap": {"name": job}}));
        mounts.push(json!({"name": "inline", "mountPath": INLINE_DIR, "readOnly": true}));
    }
    let value = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job, "namespace": ns, "labels": labels(&name, hash), "ownerReferences": [owner(f)]},
        "spec": {
            // A compile error does not improve on a retry; a flaky fetch gets one more go.
            "backoffLimit": 1,
            "activeDeadlineSeconds": 1800,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels(&name, hash)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "volumes": volumes,
                    "containers": [{
                        "name": "build",
                        "image": ctx.config.builder_image,
                        "command": ["wasmfn"],
                        "args": args,
                        "env": env,
                        "volumeMounts": mounts,
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        },
    });
    serde_json::from_value(value).expect("a valid Job")
}

/// The ConfigMap holding an inline source's `code` and `dependencies`, mounted into the Job.
pub fn inline_config_map(f: &FunctionResource, source: &Source, hash: &str) -> Option<ConfigMap> {
    let inline = source.inline.as_ref()?;
    let name = f.name_any();
    let mut data = json!({"code": inline.code});
    if let Some(deps) = &inline.dependencies {
        data["dependencies"] = json!(deps);
    }
    let value = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": job_name(&name, hash), "namespace": f.namespace(), "labels": labels(&name, hash),
                     "ownerReferences": [owner(f)]},
        "data": data,
    });
    Some(serde_json::from_value(value).expect("a valid ConfigMap"))
}

/// Advances the build of `source` one step: starts the Job, or reads how it ended.
pub async fn step(f: &FunctionResource, source: &Source, template: &str, ctx: &Context) -> Result<BuildState, Error> {
    let ns = f.namespace().unwrap_or_default();
    let hash = source_hash(f, source, template, ctx);
    let name = job_name(&f.name_any(), &hash);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(existing) = jobs.get_opt(&name).await? else {
        // Counting and creating under one lock: concurrent reconciles cannot both take the last slot.
        let _slot = ctx.build_slots.lock().await;
        let running = active_builds(ctx).await?;
        if running >= ctx.config.max_builds {
            return Ok(BuildState::Queued { running });
        }
        let params = PatchParams::apply(MANAGER).force();
        if let Some(cm) = inline_config_map(f, source, &hash) {
            let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
            maps.patch(&name, &params, &Patch::Apply(&cm)).await?;
        }
        jobs.patch(&name, &params, &Patch::Apply(&job(f, source, template, &hash, ctx))).await?;
        return Ok(BuildState::Running { job: name, started: true });
    };
    let finished = |t: &str| {
        let conditions = existing.status.as_ref().and_then(|s| s.conditions.as_ref());
        conditions.into_iter().flatten().find(|c| c.type_ == t && c.status == "True").cloned()
    };
    if finished("Complete").is_some() {
        let report = termination_message(ctx, &ns, &name).await?.unwrap_or_default();
        return Ok(match serde_json::from_str::<Report>(&report) {
            Ok(Report { image: Some(image), digest }) => BuildState::Succeeded { job: name, image, digest },
            _ => BuildState::Failed { job: name, message: format!("the build reported no image: {report}") },
        });
    }
    if let Some(failed) = finished("Failed") {
        let message = match termination_message(ctx, &ns, &name).await? {
            Some(m) if !m.trim().is_empty() => m,
            _ => format!("{}: {}", failed.reason.unwrap_or_default(), failed.message.unwrap_or_default()),
        };
        return Ok(BuildState::Failed { job: name, message });
    }
    Ok(BuildState::Running { job: name, started: false })
}

/// What `wasmfn build --report` writes on success.
#[derive(serde::Deserialize)]
struct Report {
    image: Option<String>,
    digest: Option<String>,
}

/// Build Jobs of any namespace that have not finished.
async fn active_builds(ctx: &Context) -> Result<usize, Error> {
    let jobs: Api<Job> = Api::all(ctx.client.clone());
    let list = jobs.list(&ListParams::default().labels(BUILD_SELECTOR)).await?;
    let done = |j: &Job| {
        let conditions = j.status.as_ref().and_then(|s| s.conditions.as_ref());
        conditions.into_iter().flatten().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
    };
    Ok(list.items.iter().filter(|j| !done(j)).count())
}

/// The newest terminated build container's message: the report, or (on failure) the error or the log's tail.
async fn termination_message(ctx: &Context, ns: &str, job: &str) -> Result<Option<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let mut list = pods.list(&ListParams::default().labels(&format!("job-name={job}"))).await?.items;
    list.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    let message = list.iter().rev().find_map(|p| {
        let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
        statuses.iter().find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
    });
    Ok(message.map(|m| {
        let start = m.len().saturating_sub(MESSAGE_MAX);
        m[m.ceil_char_boundary(start)..].trim().to_string()
    }))
}

/// Removes a function's build Jobs (with their Pods) and ConfigMaps.
pub async fn cleanup(ctx: &Context, ns: &str, function: &str) -> Result<(), Error> {
    let selector = format!("{FUNCTION_LABEL}={function},app.kubernetes.io/managed-by=wasmfn-operator");
    let params = ListParams::default().labels(&selector);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    jobs.delete_collection(&kube::api::DeleteParams::background(), &params).await?;
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    maps.delete_collection(&kube::api::DeleteParams::background(), &params).await?;
    Ok(())
}

/// The object reference events are attached to.
pub fn reference(f: &FunctionResource) -> k8s_openapi::api::core::v1::ObjectReference {
    f.object_ref(&())
}
