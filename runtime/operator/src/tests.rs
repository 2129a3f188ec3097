//! Reconciler scenarios against the scripted API server: each states every request the reconciler makes.

use crate::fixtures::{ApiServer, context, status_failure};
use crate::{Context, FINALIZER, build, error_policy, reconcile};
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wasmfn_api::{FunctionResource, FunctionStatus, NodeStatus};

const FUNCTIONS: &str = "/apis/wasmfn.dev/v1alpha1/namespaces/default/functions";
const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";
const IMAGE: &str =
    "registry.test/functions/default/hello@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// A stored Function with an inline Python source and the operator's finalizer.
fn function(status: Option<Value>) -> FunctionResource {
    serde_json::from_value(json!({
        "apiVersion": "wasmfn.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "default", "uid": "6b1f0c6e-0000-4000-8000-000000000001",
                     "generation": 1, "resourceVersion": "100", "finalizers": [FINALIZER]},
        "spec": {"build": {"template": "python"},
                 "source": {"inline": {"code": "def handler(event, context):\n    return 'hi'\n"}}},
        "status": status,
    }))
    .unwrap()
}

fn job_name(ctx: &Context, f: &FunctionResource) -> (String, String) {
    let hash = build::source_hash(f, f.spec.source.as_ref().unwrap(), "python", ctx);
    (build::job_name("hello", &hash), hash)
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    let conditions = status["conditions"].as_array().expect("conditions");
    conditions.iter().find(|c| c["type"] == type_).unwrap_or_else(|| panic!("no {type_} in {status}"))
}

fn job_with(condition: &str, reason: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x", "namespace": "default"},
           "status": {"conditions": [{"type": condition, "status": "True", "reason": reason}]}})
}

fn pods_with_message(message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": "2026-11-22T10:00:00Z"},
        "status": {"containerStatuses": [{"name": "build", "image": "b", "imageID": "", "ready": false,
                   "restartCount": 0, "state": {"terminated": {"exitCode": 0, "message": message}}}]}}]})
}

fn empty_list(kind: &str) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": []})
}

/// Runs one reconcile in the background.
fn start(f: FunctionResource, ctx: Arc<Context>) -> tokio::task::JoinHandle<Result<Action, crate::Error>> {
    tokio::spawn(reconcile(Arc::new(f), ctx))
}

/// Waits for the reconcile, then checks it made no further request.
async fn finish(
    task: tokio::task::JoinHandle<Result<Action, crate::Error>>,
    ctx: Arc<Context>,
    api: ApiServer,
) -> Action {
    let action =
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("the reconcile ends").unwrap().unwrap();
    drop(ctx);
    api.done().await;
    action
}

/// What the reconciler patched into `status`, answered as the API server would.
async fn status_patch(api: &mut ApiServer, f: &FunctionResource) -> Value {
    let f = f.clone();
    let served = api
        .handle("PATCH", &format!("{FUNCTIONS}/hello/status"), move |s| {
            let mut object = serde_json::to_value(&f).unwrap();
            object["status"] = s.body["status"].clone();
            (200, object)
        })
        .await;
    assert!(served.query.contains("fieldManager=wasmfn-operator"), "server-side apply: {}", served.query);
    served.body["status"].clone()
}

#[tokio::test]
async fn a_new_source_creates_its_build_job() {
    let (ctx, mut api) = context();
    let ctx = Arc::new(ctx);
    let f = function(None);
    let (job, _) = job_name(&ctx, &f);
    let task = start(f.clone(), ctx.clone());
    api.handle("GET", &format!("{JOBS}/{job}"), |_| (404, status_failure(404, "NotFound"))).await;
    let list = api.handle("GET", "/apis/batch/v1/jobs", |_| (200, empty_list("JobList"))).await;
    assert!(list.query.contains("managed-by%3Dwasmfn-operator"), "{}", list.query);
    let cm = api.echo("PATCH", &format!("/api/v1/namespaces/default/configmaps/{job}")).await;
    assert!(cm.body["data"]["code"].as_str().unwrap().contains("def handler"));
    let created = api.echo("PATCH", &format!("{JOBS}/{job}")).await;
    let container = &created.body["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[..5], ["build", "--source", "inline:/workspace/inline", "--template", "python"]);
    let push = args[args.iter().position(|a| *a == "--push").unwrap() + 1];
    assert!(push.starts_with("registry.test/functions/default/hello:"), "{push}");
    assert!(args.contains(&"--insecure") && args.contains(&"/dev/termination-log"), "{args:?}");
    assert_eq!(container["image"], "builder.test/wasmfn-builder:1");
    assert_eq!(created.body["metadata"]["ownerReferences"][0]["uid"], f.metadata.uid.clone().unwrap());
    assert_eq!(created.body["metadata"]["labels"]["wasmfn.dev/function"], "hello");
    let status = status_patch(&mut api, &f).await;
    let built = condition(&status, "BuildSucceeded");
    assert_eq!((built["status"].as_str(), built["reason"].as_str()), (Some("Unknown"), Some("Building")));
    assert_eq!(status["build"]["job"], job.as_str());
    assert_eq!(status["url"], "http://hello.default.fn.test/");
    let event = api.event().await;
    assert_eq!(event.body["reason"], "Building");
    finish(task, ctx, api).await;
}

/// Scripts a reconcile of `f` whose build Job succeeded, and returns the patched status.
async fn succeeded_job(api: &mut ApiServer, f: &FunctionResource, job: &str) -> Value {
    api.handle("GET", &format!("{JOBS}/{job}"), |_| (200, job_with("Complete", "Completed"))).await;
    let report = json!({"digest": DIGEST, "image": IMAGE}).to_string();
    let pods = api.handle("GET", "/api/v1/namespaces/default/pods", |_| (200, pods_with_message(&report))).await;
    assert!(pods.query.contains(&format!("job-name%3D{job}")), "{}", pods.query);
    status_patch(api, f).await
}

fn building_status(job: &str, hash: &str) -> Value {
    json!({"build": {"sourceHash": hash, "job": job},
           "conditions": [{"type": "BuildSucceeded", "status": "Unknown", "reason": "Building", "message": ""}]})
}

#[tokio::test]
async fn a_succeeded_job_records_the_digest_and_is_not_rebuilt() {
    let (ctx, mut api) = context();
    let ctx = Arc::new(ctx);
    let (job, hash) = job_name(&ctx, &function(None));
    let f = function(Some(building_status(&job, &hash)));
    let task = start(f.clone(), ctx.clone());
    let status = succeeded_job(&mut api, &f, &job).await;
    assert_eq!((status["image"].as_str(), status["digest"].as_str()), (Some(IMAGE), Some(DIGEST)));
    assert_eq!(status["build"]["image"], IMAGE);
    assert_eq!(condition(&status, "BuildSucceeded")["status"], "True");
    assert_eq!(condition(&status, "Ready")["reason"], "WaitingForNodes");
    assert_eq!(api.event().await.body["reason"], "Succeeded");
    finish(task, ctx, api).await;

    // Reconciling the result again (a restart, a resync) reads nothing, builds nothing and writes nothing.
    let (ctx, api) = context();
    let mut again = f.clone();
    again.status = Some(serde_json::from_value(status).unwrap());
    let action = finish(start(again, Arc::new(ctx)), Arc::new(context().0), api).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn a_failed_job_puts_the_compiler_message_in_a_condition() {
    let (ctx, mut api) = context();
    let ctx = Arc::new(ctx);
    let (job, hash) = job_name(&ctx, &function(None));
    let f = function(Some(building_status(&job, &hash)));
    let task = start(f.clone(), ctx.clone());
    api.handle("GET", &format!("{JOBS}/{job}"), |_| (200, job_with("Failed", "BackoffLimitExceeded"))).await;
    let compiler = "build failed: componentize-py failed:\n  File \"handler.py\", line 2\nSyntaxError: invalid syntax";
    api.handle("GET", "/api/v1/namespaces/default/pods", |_| (200, pods_with_message(compiler))).await;
    let status = status_patch(&mut api, &f).await;
    let built = condition(&status, "BuildSucceeded");
    assert_eq!((built["status"].as_str(), built["reason"].as_str()), (Some("False"), Some("BuildFailed")));
    assert!(built["message"].as_str().unwrap().contains("SyntaxError: invalid syntax"), "{built}");
    let ready = condition(&status, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("BuildFailed")));
    let event = api.event().await;
    assert_eq!((event.body["type"].as_str(), event.body["reason"].as_str()), (Some("Warning"), Some("BuildFailed")));
    finish(task, ctx, api).await;

    // The failed source is not built again (no Job, no read, no write) until it changes.
    assert!(status["build"]["failure"].as_str().unwrap().contains("SyntaxError"), "{status}");
    let (ctx, api) = context();
    let mut again = f.clone();
    again.status = Some(serde_json::from_value(status).unwrap());
    finish(start(again, Arc::new(ctx)), Arc::new(context().0), api).await;
}

#[tokio::test]
async fn deleting_a_function_removes_its_jobs_and_then_the_finalizer() {
    let (ctx, mut api) = context();
    let mut f = function(None);
    f.metadata.deletion_timestamp = Some(serde_json::from_value(json!("2026-11-22T10:00:00Z")).unwrap());
    let task = start(f.clone(), Arc::new(ctx));
    let jobs = api.handle("DELETE", JOBS, |_| (200, empty_list("JobList"))).await;
    assert!(jobs.query.contains("wasmfn.dev%2Ffunction%3Dhello"), "{}", jobs.query);
    assert_eq!(jobs.body["propagationPolicy"], "Background");
    api.handle("DELETE", "/api/v1/namespaces/default/configmaps", |_| (200, empty_list("ConfigMapList"))).await;
    assert_eq!(api.event().await.body["reason"], "CleanedUp");
    let patch = api
        .handle("PATCH", &format!("{FUNCTIONS}/hello"), |_| {
            let mut done = serde_json::to_value(function(None)).unwrap();
            done["metadata"]["finalizers"] = json!([]);
            (200, done)
        })
        .await;
    assert!(patch.body.to_string().contains("remove"), "a JSON patch removing the finalizer: {}", patch.body);
    api.done().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_conflict_is_retried_at_once_and_then_succeeds() {
    let (ctx, mut api) = context();
    let ctx = Arc::new(ctx);
    let (job, hash) = job_name(&ctx, &function(None));
    let f = Arc::new(function(Some(building_status(&job, &hash))));
    let task = tokio::spawn(reconcile(f.clone(), ctx.clone()));
    api.handle("GET", &format!("{JOBS}/{job}"), |_| (200, job_with("Complete", "Completed"))).await;
    let report = json!({"digest": DIGEST, "image": IMAGE}).to_string();
    api.handle("GET", "/api/v1/namespaces/default/pods", |_| (200, pods_with_message(&report))).await;
    api.handle("PATCH", &format!("{FUNCTIONS}/hello/status"), |_| (409, status_failure(409, "Conflict"))).await;
    let error = task.await.unwrap().unwrap_err();
    assert!(error.is_conflict(), "{error}");
    assert_eq!(error.metric_label(), "conflict");
    assert_eq!(error_policy(f.clone(), &error, ctx.clone()), Action::requeue(Duration::from_millis(500)));
    assert!(ctx.metrics.encode().contains("wasmfn_operator_reconcile_errors_total{error=\"conflict\"} 1"));

    let task = tokio::spawn(reconcile(f.clone(), ctx.clone()));
    let status = succeeded_job(&mut api, &f, &job).await;
    assert_eq!(status["image"], IMAGE);
    api.event().await;
    finish(task, ctx, api).await;
}

#[tokio::test]
async fn builds_wait_for_a_slot() {
    let (ctx, mut api) = context();
    let ctx = Arc::new(ctx);
    let f = function(None);
    let (job, _) = job_name(&ctx, &f);
    let task = start(f.clone(), ctx.clone());
    api.handle("GET", &format!("{JOBS}/{job}"), |_| (404, status_failure(404, "NotFound"))).await;
    api.handle("GET", "/apis/batch/v1/jobs", |_| {
        let running = json!({"metadata": {"name": "a"}, "status": {"active": 1}});
        let done = job_with("Complete", "Completed");
        (200, json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": [running, running, done]}))
    })
    .await;
    let status = status_patch(&mut api, &f).await;
    let built = condition(&status, "BuildSucceeded");
    assert_eq!(built["reason"], "BuildQueued");
    assert!(built["message"].as_str().unwrap().contains("2 builds run, at most 2"), "{built}");
    api.event().await;
    assert_eq!(finish(task, ctx, api).await, Action::requeue(Duration::from_secs(10)));
}

#[tokio::test]
async fn an_invalid_spec_is_reported_without_touching_jobs() {
    let (ctx, mut api) = context();
    let mut f = function(None);
    f.spec.source = None;
    f.spec.build = None;
    f.spec.component = Some("./hello.wasm".into());
    let task = start(f.clone(), Arc::new(ctx));
    let status = status_patch(&mut api, &f).await;
    let ready = condition(&status, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidSpec")));
    assert!(ready["message"].as_str().unwrap().contains("spec.source"), "{ready}");
    api.event().await;
    api.done().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn ready_aggregates_the_nodes_reports() {
    let (ctx, _api) = context();
    let node = |name: &str, ready: bool, image: &str| NodeStatus {
        node: name.into(),
        ready,
        image: Some(image.into()),
        revision: Some("hello-3".into()),
        message: (!ready).then(|| "pulling".into()),
        observed_generation: Some(1),
    };
    let mut f = function(None);
    f.spec.source = None;
    f.spec.build = None;
    let live = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<std::collections::HashSet<_>>();
    let ready_among = |nodes: Vec<NodeStatus>, among: Option<&std::collections::HashSet<String>>| {
        let mut f = f.clone();
        f.status = Some(FunctionStatus { nodes, ..Default::default() });
        let mut plan = crate::status::Plan::new(&f, &ctx.config);
        plan.resolved(IMAGE, None);
        plan.readiness(among);
        let c = plan.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap().clone();
        (c.status, c.reason, c.message, plan.status.ready_nodes, plan.status.latest_revision)
    };
    let ready = |nodes: Vec<NodeStatus>| ready_among(nodes, None);
    // A node that left the cluster (its entry stays) does not hold Ready back.
    let (status, _, _, nodes, _) = ready_among(
        vec![node("a", true, IMAGE), node("gone", true, "registry.test/old@sha256:00")],
        Some(&live(&["a", "b"])),
    );
    assert_eq!((status.as_str(), nodes.as_deref()), ("True", Some("1/1")));
    let (status, reason, ..) = ready(vec![]);
    assert_eq!((status.as_str(), reason.as_str()), ("Unknown", "WaitingForNodes"));
    let (status, _, _, nodes, revision) = ready(vec![node("a", true, IMAGE), node("b", true, IMAGE)]);
    assert_eq!((status.as_str(), nodes.as_deref(), revision.as_deref()), ("True", Some("2/2"), Some("hello-3")));
    let (status, reason, message, nodes, _) = ready(vec![node("a", true, IMAGE), node("b", false, IMAGE)]);
    assert_eq!((status.as_str(), reason.as_str(), nodes.as_deref()), ("False", "NodesNotReady", Some("1/2")));
    assert_eq!(message, "node b: pulling");
    // Catching up is not a failure: Unknown until the nodes serve the new image at this generation.
    let (status, reason, message, nodes, _) = ready(vec![node("a", true, "registry.test/old@sha256:00")]);
    assert_eq!((status.as_str(), reason.as_str(), nodes.as_deref()), ("Unknown", "RollingOut", Some("0/1")));
    assert!(message.contains("0/1 nodes serve"), "{message}");
    let mut behind = node("a", true, IMAGE);
    behind.observed_generation = Some(0);
    let (status, reason, ..) = ready(vec![behind]);
    assert_eq!((status.as_str(), reason.as_str()), ("Unknown", "RollingOut"));
}

#[test]
fn backoff_doubles_to_five_minutes() {
    let waits: Vec<u64> = (0..8).map(|n| crate::backoff(n).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
}

#[test]
fn job_names_fit_a_label() {
    let long = "f".repeat(63);
    let name = build::job_name(&long, &"a".repeat(64));
    assert!(name.len() <= 63 && name.ends_with("-build-aaaaaaaaaa"), "{name}");
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

#[test]
fn the_checked_in_crd_is_current() {
    let generated = serde_yaml_ng::to_string(&wasmfn_api::crd()).unwrap();
    let checked_in = std::fs::read_to_string(repo("deploy/crd.yaml")).unwrap();
    let body = checked_in.split_once('\n').map(|(_, rest)| rest).unwrap_or_default();
    assert!(
        body == generated,
        "deploy/crd.yaml is stale: run `cargo run -p wasmfn-operator --bin crdgen > deploy/crd.yaml`"
    );
}

#[test]
fn the_example_functions_are_valid() {
    let mut checked = 0;
    for dir in ["deploy/examples", "deploy/e2e"] {
        for entry in std::fs::read_dir(repo(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let value = <Value as serde::Deserialize>::deserialize(doc).unwrap();
                if value["kind"] != "Function" {
                    continue;
                }
                let f: FunctionResource =
                    serde_json::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                wasmfn_api::Function::try_from(&f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(f.spec.source.is_some() || f.spec.image.is_some(), "{}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "found {checked} example Functions");
}

#[tokio::test]
async fn an_unreachable_registry_keeps_the_served_image_and_backs_off() {
    let (ctx, mut api) = context();
    let ctx = Arc::new(ctx);
    // A loopback port nothing listens on: the registry is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut f = function(Some(json!({"image": IMAGE})));
    f.spec.source = None;
    f.spec.build = None;
    f.spec.image = Some(format!("{dead}/functions/hello:v2"));
    let f = Arc::new(f);
    let task = tokio::spawn(reconcile(f.clone(), ctx.clone()));
    let status = status_patch(&mut api, &f).await;
    let built = condition(&status, "BuildSucceeded");
    assert_eq!((built["status"].as_str(), built["reason"].as_str()), (Some("False"), Some("ImageUnavailable")));
    assert!(built["message"].as_str().unwrap().contains(&dead.to_string()), "{built}");
    assert_eq!(status["image"], IMAGE, "what was served stays recorded");
    assert_eq!(api.event().await.body["type"], "Warning");
    let error = task.await.unwrap().unwrap_err();
    assert!(error.to_string().contains("resolving"), "{error}");
    let waits: Vec<Action> = (0..3).map(|_| error_policy(f.clone(), &error, ctx.clone())).collect();
    let secs = [5, 10, 20].map(|s| Action::requeue(Duration::from_secs(s)));
    assert_eq!(waits, secs);
    drop(ctx);
    api.done().await;
}
