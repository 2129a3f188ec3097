//! A function's charts and per-revision counters on a cluster: each node's admin API (`…/series`,
//! `…/revisions`), reached by the API server's pod proxy with the node's admin token (the page asks for it; it
//! goes as `x-wasmfn-admin-token`, since the proxy keeps `Authorization` for itself), summed over the nodes.

use super::common::{Ctx, get_value, kube_error, node_pods, state};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The node's admin port (`deploy/base/node.yaml`).
const ADMIN_PORT: u16 = 8081;

/// What each node answered for `path` (under its `/v1/functions/{ns}/{name}`); nodes without the function are
/// left out. A 401 from any node is the answer: the page then asks for the token.
async fn from_nodes(ctx: &Ctx, headers: &HeaderMap, ns: &str, name: &str, path: &str) -> Result<Vec<Value>, Response> {
    use http_body_util::BodyExt;
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let pods = node_pods(ctx).await.map_err(kube_error)?;
    let mut out = Vec::new();
    for pod in pods {
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{ADMIN_PORT}/proxy/v1/functions/{ns}/{name}{path}",
            ctx.system_namespace
        );
        let mut req = http::Request::get(uri);
        if let Some(t) = &token {
            req = req.header("x-wasmfn-admin-token", t);
        }
        let Ok(req) = req.body(kube::client::Body::empty()) else { continue };
        let resp = match ctx.client.send(req).await {
            Ok(r) => r,
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(kube_error(e)),
        };
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        match status {
            200 => out.extend(serde_json::from_slice::<Value>(&bytes).ok()),
            401 => {
                let message =
                    "the nodes' admin API needs its token (the Secret wasmfn-admin-token in the system namespace)";
                return Err((StatusCode::UNAUTHORIZED, Json(json!({ "error": message }))).into_response());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Every node's series, summed per interval (p50: the request-weighted mean of the nodes'; p99: the largest).
pub(super) async fn series(
    State(ctx): State<Ctx>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let answers = match from_nodes(&ctx, &headers, &namespace, &name, "/series").await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let interval = answers.iter().filter_map(|a| a["interval"].as_f64()).fold(30.0_f64, f64::max).max(1.0);
    let mut merged: BTreeMap<u64, Value> = BTreeMap::new();
    for p in answers.iter().flat_map(|a| a["points"].as_array().cloned().unwrap_or_default()) {
        let t = (p["time"].as_u64().unwrap_or(0) as f64 / interval).round() as u64 * interval as u64;
        let m = merged.entry(t).or_insert_with(|| {
            json!({"time": t, "requests": 0, "errors": 0, "coldStarts": 0, "inFlight": 0, "p50Ms": null, "p99Ms": null, "w": 0.0})
        });
        for k in ["requests", "errors", "coldStarts", "inFlight"] {
            m[k] = json!(m[k].as_i64().unwrap_or(0) + p[k].as_i64().unwrap_or(0));
        }
        let n = p["requests"].as_f64().unwrap_or(0.0);
        if let Some(p50) = p["p50Ms"].as_f64() {
            let w = m["w"].as_f64().unwrap_or(0.0);
            let mean = (m["p50Ms"].as_f64().unwrap_or(0.0) * w + p50 * n) / (w + n).max(1.0);
            m["p50Ms"] = json!(mean);
            m["w"] = json!(w + n);
        }
        if let Some(p99) = p["p99Ms"].as_f64() {
            m["p99Ms"] = json!(m["p99Ms"].as_f64().map_or(p99, |x| x.max(p99)));
        }
    }
    let points: Vec<Value> = merged
        .into_values()
        .map(|mut p| {
            p.as_object_mut().map(|o| o.remove("w"));
            p
        })
        .collect();
    Json(json!({ "interval": interval, "points": points, "nodes": answers.len() })).into_response()
}

/// Every node's per-revision counters, summed by revision (p50/p99: the largest); the rest from the first.
pub(super) async fn revisions(
    State(ctx): State<Ctx>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let answers = match from_nodes(&ctx, &headers, &namespace, &name, "/revisions").await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    if answers.is_empty() {
        // No node serves it yet: the latest revision, from its status.
        let f = match get_value(&ctx, &namespace, &name).await {
            Ok(f) => f,
            Err(e) => return kube_error(e),
        };
        let revs: Vec<Value> = f["status"]["latestRevision"]
            .as_str()
            .map(|r| json!({ "name": r, "percent": 100, "latest": true, "ready": state(&f).0 == "ready" }))
            .into_iter()
            .collect();
        return Json(json!({ "revisions": revs })).into_response();
    }
    let mut merged: BTreeMap<String, Value> = BTreeMap::new();
    for r in answers.iter().flat_map(|a| a["revisions"].as_array().cloned().unwrap_or_default()) {
        let key = r["name"].as_str().unwrap_or("").to_string();
        match merged.get_mut(&key) {
            None => {
                merged.insert(key, r);
            }
            Some(m) => {
                for k in ["requests", "errors"] {
                    m[k] = json!(m[k].as_u64().unwrap_or(0) + r[k].as_u64().unwrap_or(0));
                }
                for k in ["p50Ms", "p99Ms"] {
                    if let Some(x) = r[k].as_f64() {
                        m[k] = json!(m[k].as_f64().map_or(x, |y| y.max(x)));
                    }
                }
            }
        }
    }
    Json(json!({ "revisions": merged.into_values().collect::<Vec<_>>() })).into_response()
}
