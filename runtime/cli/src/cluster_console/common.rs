//! What the cluster console's handlers share: the context, the node pods' coordinates, reading a Function, and
//! turning API errors and conditions into what the page shows.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};
use wasmfn_api::FunctionResource;

#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) client: Client,
    /// Where the nodes run (test invocations go through one, by the API server's pod proxy).
    pub(super) system_namespace: String,
}

/// The label of the node pods (`deploy/base/node.yaml`).
pub(super) const NODE_SELECTOR: &str = "app.kubernetes.io/name=wasmfn-node";
/// The node's ingress port.
pub(super) const INGRESS_PORT: u16 = 8080;
/// Largest answer an invocation returns to the page.
pub(super) const MAX_BODY: usize = 1 << 20;

/// A Kubernetes API error as the page shows it: its status and message (RBAC's names the user and verb).
pub(super) fn kube_error(e: kube::Error) -> Response {
    let (status, message) = match &e {
        kube::Error::Api(s) => (StatusCode::from_u16(s.code).unwrap_or(StatusCode::BAD_GATEWAY), s.message.clone()),
        other => (StatusCode::BAD_GATEWAY, format!("the Kubernetes API: {other}")),
    };
    (status, Json(json!({ "error": message, "status": status.as_u16() }))).into_response()
}

fn condition<'a>(f: &'a Value, kind: &str) -> Option<&'a Value> {
    f["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

/// `building`, `ready` or `failed`, and the message of a failure.
pub(super) fn state(f: &Value) -> (&'static str, Option<String>) {
    let built = condition(f, "BuildSucceeded");
    if let Some(c) = built.filter(|c| c["status"] == "False") {
        return ("failed", c["message"].as_str().map(str::to_string));
    }
    match condition(f, "Ready") {
        Some(c) if c["status"] == "True" => ("ready", None),
        Some(c) if c["status"] == "False" && built.is_none_or(|b| b["status"] == "True") => {
            ("failed", c["message"].as_str().map(str::to_string))
        }
        _ => ("building", None),
    }
}

pub(super) async fn get_value(ctx: &Ctx, namespace: &str, name: &str) -> Result<Value, kube::Error> {
    let api: Api<FunctionResource> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(serde_json::to_value(api.get(name).await?).unwrap_or_default())
}

/// The node pods, running ones first.
pub(super) async fn node_pods(ctx: &Ctx) -> Result<Vec<String>, kube::Error> {
    use k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.system_namespace);
    let mut list = pods.list(&kube::api::ListParams::default().labels(NODE_SELECTOR)).await?.items;
    let running = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    list.sort_by_key(|p| !running(p));
    Ok(list.into_iter().filter_map(|p| p.metadata.name).collect())
}
