//! Compatibility mode against the scripted API server: create, update and delete of a Kubeless and a Kyma
//! Function, a source that does not convert, and a name already taken.

use crate::compat::{self, Compat, Legacy};
use crate::fixtures::{ApiServer, context, status_failure};
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const KUBELESS: &str = "/apis/kubeless.io/v1beta1/namespaces/default/functions";
const KYMA: &str = "/apis/serverless.kyma-project.io/v1alpha2/namespaces/default/functions";
const FUNCTIONS: &str = "/apis/wasmfn.dev/v1alpha1/namespaces/default/functions";
const UID: &str = "0b3f2a6c-0000-4000-8000-00000000000a";

fn kubeless(finalized: bool, code: &str) -> Value {
    json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "default", "uid": UID, "resourceVersion": "7",
                     "finalizers": if finalized { json!([compat::FINALIZER]) } else { json!([]) }},
        "spec": {"runtime": "python3.9", "handler": "hello.foo", "function-content-type": "text",
                 "function": code, "deps": "six==1.16.0\n", "timeout": "30"},
    })
}

fn kyma(finalized: bool, code: &str) -> Value {
    json!({
        "apiVersion": "serverless.kyma-project.io/v1alpha2", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "default", "uid": UID, "resourceVersion": "9",
                     "finalizers": if finalized { json!([compat::FINALIZER]) } else { json!([]) }},
        "spec": {"runtime": "nodejs20", "source": {"inline": {"source": code,
                 "dependencies": "{\"name\": \"hello\", \"dependencies\": {\"lodash\": \"4.17.21\"}}"}}},
        "status": {"conditions": [{"type": "Running", "status": "True", "reason": "Kyma"}]},
    })
}

fn start(legacy: Legacy, obj: Value) -> (tokio::task::JoinHandle<Result<Action, crate::Error>>, ApiServer) {
    let (ctx, api) = context();
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    let compat = Arc::new(Compat { ctx: Arc::new(ctx), legacy });
    (tokio::spawn(compat::reconcile(Arc::new(obj), compat)), api)
}

async fn finish(task: tokio::task::JoinHandle<Result<Action, crate::Error>>, api: ApiServer) -> Action {
    let action = tokio::time::timeout(Duration::from_secs(10), task).await.expect("ends").unwrap().unwrap();
    api.done().await;
    action
}

/// The generated Function as stored: owned by the source (or by `owner`), with `spec`.
fn stored(owner: &str, spec: Value) -> Value {
    json!({"apiVersion": "wasmfn.dev/v1alpha1", "kind": "Function",
           "metadata": {"name": "hello", "namespace": "default", "uid": "f-1", "resourceVersion": "3",
                        "ownerReferences": [{"apiVersion": "kubeless.io/v1beta1", "kind": "Function",
                                             "name": "hello", "uid": owner}]},
           "spec": spec})
}

fn condition(body: &Value) -> &Value {
    let all = body["status"]["conditions"].as_array().expect("conditions");
    all.iter().find(|c| c["type"] == compat::CONDITION).expect("the compat condition")
}

#[tokio::test]
async fn a_kubeless_function_is_served_updated_and_deleted() {
    // Create: the finalizer, then the generated Function, the Event and the condition.
    let (task, mut api) = start(Legacy::Kubeless, kubeless(false, "def foo(event, context):\n    return 'v1'\n"));
    let fin = api.echo("PATCH", &format!("{KUBELESS}/hello")).await;
    assert_eq!(fin.body["metadata"]["finalizers"], json!([compat::FINALIZER]));
    assert_eq!(fin.body["metadata"]["resourceVersion"], "7", "guarded by the resourceVersion");
    api.handle("GET", &format!("{FUNCTIONS}/hello"), |_| (404, status_failure(404, "NotFound"))).await;
    let applied = api.echo("PATCH", &format!("{FUNCTIONS}/hello")).await;
    assert!(applied.query.contains("fieldManager=wasmfn-operator-compat") && applied.query.contains("force=true"));
    let m = &applied.body;
    let owner = &m["metadata"]["ownerReferences"][0];
    assert_eq!((owner["uid"].as_str(), owner["kind"].as_str()), (Some(UID), Some("Function")));
    assert_eq!((owner["controller"].as_bool(), owner["blockOwnerDeletion"].as_bool()), (Some(true), Some(true)));
    assert_eq!(owner["apiVersion"], "kubeless.io/v1beta1");
    assert_eq!(m["metadata"]["labels"][compat::CONVERTED_FROM], "kubeless");
    assert!(m["metadata"]["annotations"][compat::REPORT].as_str().unwrap().contains("spec.handler"));
    assert_eq!(m["spec"]["build"], json!({"template": "python", "handler": "handler.foo"}));
    assert_eq!(m["spec"]["source"]["inline"]["code"], "def foo(event, context):\n    return 'v1'\n");
    assert_eq!(m["spec"]["source"]["inline"]["dependencies"], "six==1.16.0\n");
    assert_eq!(m["spec"]["limits"]["timeout"], "30s");
    let event = api.event().await;
    assert_eq!((event.body["reason"].as_str(), event.body["type"].as_str()), (Some("Converted"), Some("Normal")));
    assert!(event.body["note"].as_str().unwrap().starts_with("created the wasmfn Function default/hello"));
    assert_eq!(event.body["regarding"]["kind"], "Function");
    assert_eq!(event.body["regarding"]["apiVersion"], "kubeless.io/v1beta1");
    // Kubeless' CRD has no status subresource: the condition goes into the object.
    let cond = api.echo("PATCH", &format!("{KUBELESS}/hello")).await;
    assert_eq!(
        (condition(&cond.body)["status"].as_str(), condition(&cond.body)["reason"].as_str()),
        (Some("True"), Some("Converted"))
    );
    let spec = m["spec"].clone();
    assert_eq!(finish(task, api).await, Action::requeue(Duration::from_secs(600)));

    // Update: new code, the same condition: the Function is applied again and an Event says so.
    let mut updated = kubeless(true, "def foo(event, context):\n    return 'v2'\n");
    updated["status"] = json!({"conditions": [cond.body["status"]["conditions"][0].clone()]});
    let (task, mut api) = start(Legacy::Kubeless, updated);
    api.handle("GET", &format!("{FUNCTIONS}/hello"), move |_| (200, stored(UID, spec))).await;
    let applied = api.echo("PATCH", &format!("{FUNCTIONS}/hello")).await;
    assert!(applied.body["spec"]["source"]["inline"]["code"].as_str().unwrap().contains("'v2'"));
    let event = api.event().await;
    assert!(event.body["note"].as_str().unwrap().starts_with("updated the wasmfn Function default/hello"));
    finish(task, api).await;

    // Delete: the generated Function goes at once, then the finalizer.
    let mut deleted = kubeless(true, "x");
    deleted["metadata"]["deletionTimestamp"] = json!("2026-12-07T10:00:00Z");
    let (task, mut api) = start(Legacy::Kubeless, deleted);
    api.handle("GET", &format!("{FUNCTIONS}/hello"), |_| (200, stored(UID, json!({"component": "x.wasm"})))).await;
    api.handle("DELETE", &format!("{FUNCTIONS}/hello"), |_| (200, stored(UID, json!({"component": "x.wasm"})))).await;
    let fin = api.echo("PATCH", &format!("{KUBELESS}/hello")).await;
    assert_eq!(fin.body["metadata"]["finalizers"], json!([]));
    assert_eq!(finish(task, api).await, Action::await_change());
}

#[tokio::test]
async fn a_kyma_function_is_served_updated_and_deleted() {
    let code = "module.exports = { main: async (event) => ({ got: event.data }) };\n";
    let (task, mut api) = start(Legacy::Kyma, kyma(false, code));
    api.echo("PATCH", &format!("{KYMA}/hello")).await;
    api.handle("GET", &format!("{FUNCTIONS}/hello"), |_| (404, status_failure(404, "NotFound"))).await;
    let applied = api.echo("PATCH", &format!("{FUNCTIONS}/hello")).await;
    let m = &applied.body;
    assert_eq!(m["spec"]["build"]["template"], "js");
    assert_eq!(m["spec"]["source"]["inline"]["code"], code);
    assert!(m["spec"]["source"]["inline"]["dependencies"].as_str().unwrap().contains("lodash"));
    assert_eq!(m["metadata"]["labels"][compat::CONVERTED_FROM], "kyma");
    assert_eq!(m["metadata"]["ownerReferences"][0]["apiVersion"], "serverless.kyma-project.io/v1alpha2");
    api.event().await;
    // Kyma's CRD has a status subresource; Kyma's own conditions are kept.
    let cond = api.echo("PATCH", &format!("{KYMA}/hello/status")).await;
    let all = cond.body["status"]["conditions"].as_array().unwrap();
    assert!(all.iter().any(|c| c["type"] == "Running"), "{all:?}");
    assert_eq!(condition(&cond.body)["status"], "True");
    let spec = m["spec"].clone();
    finish(task, api).await;

    // Unchanged and already converted: one apply (idempotent), no Event, no condition patch.
    let mut same = kyma(true, code);
    same["status"] = cond.body["status"].clone();
    let (task, mut api) = start(Legacy::Kyma, same);
    let stored_spec = spec.clone();
    api.handle("GET", &format!("{FUNCTIONS}/hello"), move |_| (200, stored(UID, stored_spec))).await;
    api.echo("PATCH", &format!("{FUNCTIONS}/hello")).await;
    finish(task, api).await;

    let mut deleted = kyma(true, code);
    deleted["metadata"]["deletionTimestamp"] = json!("2026-12-07T10:00:00Z");
    deleted["metadata"]["finalizers"] = json!(["serverless.kyma-project.io/deletion", compat::FINALIZER]);
    let (task, mut api) = start(Legacy::Kyma, deleted);
    api.handle("GET", &format!("{FUNCTIONS}/hello"), move |_| (200, stored(UID, spec))).await;
    api.handle("DELETE", &format!("{FUNCTIONS}/hello"), |_| (404, status_failure(404, "NotFound"))).await;
    let fin = api.echo("PATCH", &format!("{KYMA}/hello")).await;
    assert_eq!(fin.body["metadata"]["finalizers"], json!(["serverless.kyma-project.io/deletion"]), "others' stay");
    finish(task, api).await;
}

#[tokio::test]
async fn a_source_that_does_not_convert_or_whose_name_is_taken_is_reported_and_not_retried() {
    let mut bad = kubeless(true, "x");
    bad["spec"]["runtime"] = json!("cobol85");
    let (task, mut api) = start(Legacy::Kubeless, bad);
    let cond = api.echo("PATCH", &format!("{KUBELESS}/hello")).await;
    let c = condition(&cond.body);
    assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("ConversionFailed")));
    assert!(c["message"].as_str().unwrap().contains("cobol85"), "{c}");
    let event = api.event().await;
    assert_eq!(
        (event.body["type"].as_str(), event.body["reason"].as_str()),
        (Some("Warning"), Some("ConversionFailed"))
    );
    assert_eq!(finish(task, api).await, Action::await_change());

    // A wasmfn Function of that name that this object did not generate is left alone.
    let (task, mut api) = start(Legacy::Kubeless, kubeless(true, "def foo(e, c):\n    return 1\n"));
    api.handle("GET", &format!("{FUNCTIONS}/hello"), |_| (200, stored("someone-else", json!({"component": "x.wasm"}))))
        .await;
    let cond = api.echo("PATCH", &format!("{KUBELESS}/hello")).await;
    assert_eq!(condition(&cond.body)["reason"], "NameTaken");
    api.event().await;
    assert_eq!(finish(task, api).await, Action::await_change());
}
