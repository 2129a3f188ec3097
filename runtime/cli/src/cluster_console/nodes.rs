//! What `wasmfn console` reads from the nodes, through the API server: test invocations by the pod proxy to a
//! node's ingress, the nodes' log lines about a function, and its build progress from its conditions.

use super::common::{Ctx, INGRESS_PORT, MAX_BODY, NODE_SELECTOR, get_value, kube_error, node_pods, state};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

/// Build progress as log lines: the function's conditions, followed by polling (Server-Sent Events with
/// `follow=true`), ending in `deployed …` or `build failed` as `wasmfn up`'s build output does.
pub(super) async fn logs(
    State(ctx): State<Ctx>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    use axum::response::sse::{Event, Sse};
    let (Some(namespace), Some(name)) = (q.get("namespace").cloned(), q.get("function").cloned()) else {
        return Json(json!({ "lines": [], "next": 0 })).into_response();
    };
    if q.get("follow").is_none_or(|f| f != "true") {
        return match node_lines(&ctx, &namespace, &name).await {
            Ok(lines) => {
                let lines: Vec<Value> = lines.iter().map(|l| line_json(&namespace, &name, "stdout", l)).collect();
                Json(json!({ "lines": lines, "next": 0 })).into_response()
            }
            Err(e) => kube_error(e),
        };
    }
    let stream = futures_util::stream::unfold((ctx, None::<String>, false), move |(ctx, last, done)| {
        let (namespace, name) = (namespace.clone(), name.clone());
        async move {
            if done {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_secs(if last.is_none() { 0 } else { 2 })).await;
            let f = get_value(&ctx, &namespace, &name).await.ok()?;
            let (st, error) = state(&f);
            let generation = f["metadata"]["generation"].as_i64().unwrap_or(0);
            let observed = f["status"]["observedGeneration"].as_i64().unwrap_or(0);
            let line = match (st, observed >= generation) {
                ("ready", true) => format!("deployed {}", f["status"]["latestRevision"].as_str().unwrap_or(&name)),
                ("failed", true) => format!("build failed: {}", error.unwrap_or_default()),
                _ => format!("building {namespace}/{name} (generation {generation})"),
            };
            let end = line.starts_with("deployed") || line.starts_with("build failed");
            let data = line_json(&namespace, &name, "build", &line);
            let event = (last.as_deref() != Some(line.as_str())).then(|| Event::default().data(data.to_string()));
            Some((event, (ctx, Some(line), end)))
        }
    });
    let events =
        futures_util::StreamExt::filter_map(stream, |e| async move { e.map(Ok::<_, std::convert::Infallible>) });
    Sse::new(events).into_response()
}

/// A running node pod, to send test invocations through.
async fn node_pod(ctx: &Ctx) -> Result<Option<String>, kube::Error> {
    Ok(node_pods(ctx).await?.into_iter().next())
}

/// A test invocation through a node's ingress, by the API server's pod proxy (so it needs `pods/proxy` in the
/// system namespace, which RBAC grants or not): the same answer shape as a node's `…/invoke`.
pub(super) async fn invoke(
    State(ctx): State<Ctx>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    use http_body_util::BodyExt;
    let pod = match node_pod(&ctx).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            let message = format!("no wasmfn node pod in {} to send the request through", ctx.system_namespace);
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": message }))).into_response();
        }
        Err(e) => return kube_error(e),
    };
    let path = body["path"].as_str().filter(|p| p.starts_with('/')).unwrap_or("/");
    let method = body["method"].as_str().unwrap_or("POST");
    let uri =
        format!("/api/v1/namespaces/{}/pods/{pod}:{INGRESS_PORT}/proxy/{namespace}/{name}{path}", ctx.system_namespace);
    let mut req = http::Request::builder().method(method).uri(uri);
    for h in body["headers"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (h[0].as_str(), h[1].as_str()) {
            req = req.header(k, v);
        }
    }
    let payload = match body.get("event").filter(|e| !e.is_null()) {
        Some(ce) => {
            req = req
                .header("ce-specversion", "1.0")
                .header("ce-type", ce["type"].as_str().unwrap_or(""))
                .header("ce-source", ce["source"].as_str().unwrap_or(""))
                .header("ce-id", format!("console-{}", std::process::id()))
                .header("content-type", "application/json");
            ce["data"].to_string().into_bytes()
        }
        None => body["body"].as_str().unwrap_or("").as_bytes().to_vec(),
    };
    let req = match req.body(kube::client::Body::from(payload)) {
        Ok(r) => r,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": e.to_string() }))).into_response(),
    };
    let started = std::time::Instant::now();
    let resp = match ctx.client.send(req).await {
        Ok(r) => r,
        Err(e) => return kube_error(e),
    };
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_BODY)]).into_owned();
    Json(json!({
        "status": status, "headers": headers, "body": text, "bodyEncoding": "utf-8", "truncated": bytes.len() > MAX_BODY,
        "latencyMs": latency_ms, "revision": header("x-wasmfn-revision"), "requestId": header("x-request-id"),
        "node": pod,
    }))
    .into_response()
}

/// A log line in the node's `/v1/logs` shape.
fn line_json(namespace: &str, name: &str, stream: &str, line: &str) -> Value {
    let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    json!({ "namespace": namespace, "function": name, "revision": "", "requestId": "", "stream": stream,
            "line": line, "seq": 0, "time": time })
}

/// The nodes' recent log lines about `namespace/name` (guest output included), as `wasmfn logs --cluster` reads
/// them: the pods' logs, through the API server.
async fn node_lines(ctx: &Ctx, namespace: &str, name: &str) -> Result<Vec<String>, kube::Error> {
    use k8s_openapi::api::core::v1::Pod;
    let key = format!("{namespace}/{name}");
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.system_namespace);
    let params = kube::api::LogParams { tail_lines: Some(2000), ..Default::default() };
    let mut out = Vec::new();
    for pod in pods.list(&ListParams::default().labels(NODE_SELECTOR)).await?.items {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let text = pods.logs(&pod_name, &params).await.unwrap_or_default();
        out.extend(text.lines().filter(|l| l.contains(&key)).map(|l| format!("[{pod_name}] {l}")));
    }
    Ok(out)
}
