//! The admin API (JSON): deploy, list, get, delete, component upload, revisions, traffic and rollback,
//! health and metrics.

use crate::error::Error;
use crate::node::Node;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::sync::atomic::Ordering;
use wasmfn_api::Function;

/// Largest component upload or manifest accepted.
const MAX_UPLOAD: usize = 512 << 20;

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message, "status": status.as_u16() }))).into_response()
}

fn deploy_error(e: Error) -> Response {
    let status = match &e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        e if e.is_client_error() => StatusCode::UNPROCESSABLE_ENTITY,
        e if e.is_upstream_outage() => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut resp = error(status, e.to_string());
    if let Ok(v) = e.kind().parse() {
        resp.headers_mut().insert("x-wasmfn-error", v);
    }
    resp
}

mod assets;
mod console;

/// The admin API and the console's page; `extra` are routes of the embedding program (`wasmfn up`'s console
/// API), behind the same token check and cross-site refusal.
pub(crate) fn router(node: Node, extra: Router) -> Router {
    let token = node.config().token();
    let api = Router::new()
        .route("/v1/functions", get(list).post(deploy).put(deploy))
        .route("/v1/functions/{namespace}/{name}", get(get_one).delete(delete))
        .route("/v1/functions/{namespace}/{name}/revisions", get(revisions))
        .route("/v1/functions/{namespace}/{name}/traffic", axum::routing::put(traffic))
        .route("/v1/functions/{namespace}/{name}/rollback", post(rollback))
        .route("/v1/components", post(upload))
        .merge(console::routes());
    // Metrics name every tenant's functions: with a token, only its holder reads them (unless public-metrics).
    let public_metrics = node.config().metrics_are_public();
    let api = if public_metrics { api } else { api.route("/metrics", get(metrics)) };
    let auth = move |headers: HeaderMap, req, next: axum::middleware::Next| {
        let token = token.clone();
        async move {
            if let Some(token) = token {
                // `x-wasmfn-admin-token` too: the Kubernetes API server's pod proxy (`wasmfn console` on a cluster)
                // uses `Authorization` itself and does not pass it on.
                let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                let given = bearer
                    .and_then(|g| g.strip_prefix("Bearer "))
                    .or_else(|| headers.get("x-wasmfn-admin-token").and_then(|v| v.to_str().ok()));
                if !given.is_some_and(|g| same_secret(g, &token)) {
                    return error(StatusCode::UNAUTHORIZED, "a bearer token is required".into());
                }
            }
            next.run(req).await
        }
    };
    let api = api
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .layer(axum::middleware::from_fn(auth.clone()))
        .layer(axum::middleware::from_fn(same_origin));
    let extra = extra
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .layer(axum::middleware::from_fn(auth))
        .layer(axum::middleware::from_fn(same_origin));
    // Probes stay open.
    let open = Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(readyz));
    let open = if public_metrics { open.route("/metrics", get(metrics)) } else { open };
    open.merge(assets::routes()).merge(api).with_state(node).merge(extra)
}

/// The console's page with `api` behind the cross-site refusal: what `wasmfn console` serves against a cluster.
pub fn console_page(api: Router) -> Router {
    assets::routes().merge(api.layer(axum::middleware::from_fn(same_origin)))
}

/// Refuses a state-changing request a browser sends from another origin (cross-site request forgery): one with
/// an `Origin` that is not this server's, or that `Sec-Fetch-Site` marks cross-site. A browser's same-origin
/// call must also carry `x-wasmfn-console` (the console's fetches do), a header no form or simple request can
/// set. The CLI and other non-browser clients send neither `Origin` nor `Sec-Fetch-*` and are not affected.
async fn same_origin(headers: HeaderMap, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let safe = matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let from_browser = get("origin").is_some() || get("sec-fetch-site").is_some();
    if !safe && from_browser {
        let host = get("host").unwrap_or_default();
        let origin_ok = get("origin").is_none_or(|o| o == format!("http://{host}"));
        let site_ok = get("sec-fetch-site").is_none_or(|s| s == "same-origin" || s == "none");
        if !(origin_ok && site_ok && get("x-wasmfn-console").is_some()) {
            return error(StatusCode::FORBIDDEN, "cross-origin requests to the admin API are refused".into());
        }
    }
    next.run(req).await
}

/// Compares a presented token with the secret in time that depends on neither: both are hashed to 32 bytes
/// first (so lengths do not show), then every byte is compared.
fn same_secret(given: &str, secret: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(secret.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn readyz(State(node): State<Node>) -> Response {
    if node.inner.ready.load(Ordering::Acquire) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response()
    }
}

async fn metrics(State(node): State<Node>) -> Response {
    let (metrics, budget) = (&node.inner.metrics, node.inner.executor.budget());
    metrics.memory_budget.set(budget.total_bytes() as i64);
    metrics.memory_reserved.set(budget.reserved_bytes() as i64);
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        node.inner.metrics.encode(),
    )
        .into_response()
}

async fn list(State(node): State<Node>) -> Response {
    axum::Json(json!({ "functions": node.list() })).into_response()
}

async fn get_one(State(node): State<Node>, Path((namespace, name)): Path<(String, String)>) -> Response {
    match node.get(&namespace, &name) {
        Some(info) => axum::Json(info).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("function {namespace}/{name} not found")),
    }
}

async fn delete(State(node): State<Node>, Path((namespace, name)): Path<(String, String)>) -> Response {
    match node.remove(&namespace, &name).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("function {namespace}/{name} not found")),
        Err(e) => deploy_error(e),
    }
}

/// A deploy body, read as YAML (JSON is YAML too), or first as JSON when it holds characters JSON strings may
/// hold raw and YAML refuses (U+007F–U+009F, U+FFFE, U+FFFF) or reads as a line break (U+0085).
fn manifest(text: &str) -> Result<Function, wasmfn_api::ManifestError> {
    if text.contains(|c| matches!(c, '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}'))
        && let Ok(f) = Function::from_json(text)
    {
        return Ok(f);
    }
    Function::from_yaml(text)
}

/// Body: a `Function` manifest in JSON or YAML. `spec.component` is `sha256:<hex>` of an uploaded component,
/// or a path on the node's filesystem inside one of `component-dirs` (none by default: a client of the admin
/// API must not name the node's files).
async fn deploy(State(node): State<Node>, body: Bytes) -> Response {
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => return error(StatusCode::BAD_REQUEST, "the manifest is not UTF-8 text".into()),
    };
    let function = match manifest(text) {
        Ok(f) => f,
        Err(e) => return deploy_error(e.into()),
    };
    if let Some(path) = function.spec.component.as_deref().filter(|c| !c.starts_with("sha256:"))
        && let Err(message) = node.config().component_path_allowed(std::path::Path::new(path))
    {
        return deploy_error(crate::error::Error::Rejected { field: "spec.component".into(), message });
    }
    match node.deploy(function, None).await {
        Ok(d) => {
            let status = if d.changed { StatusCode::CREATED } else { StatusCode::OK };
            (status, axum::Json(d)).into_response()
        }
        Err(e) => deploy_error(e),
    }
}

/// Body: the component bytes (`application/wasm`). Answers `{"digest": "sha256:…", "size": N}`.
async fn upload(State(node): State<Node>, body: Bytes) -> Response {
    let size = body.len();
    match node.upload(body.to_vec()).await {
        Ok(digest) => {
            (StatusCode::CREATED, axum::Json(json!({ "digest": digest.to_string(), "size": size }))).into_response()
        }
        Err(e) => deploy_error(e),
    }
}

async fn revisions(State(node): State<Node>, Path((namespace, name)): Path<(String, String)>) -> Response {
    match node.revisions(&namespace, &name) {
        Ok(r) => axum::Json(json!({ "revisions": r })).into_response(),
        Err(e) => deploy_error(e),
    }
}

/// Body of `PUT …/traffic`: the new `spec.traffic`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficBody {
    traffic: Vec<wasmfn_api::TrafficTarget>,
}

/// Body: `{"traffic": [{"revisionName": "hello-1", "percent": 90}, {"latestRevision": true, "percent": 10}]}`.
async fn traffic(State(node): State<Node>, Path((namespace, name)): Path<(String, String)>, body: Bytes) -> Response {
    let body: TrafficBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid traffic: {e}")),
    };
    match node.set_traffic(&namespace, &name, body.traffic).await {
        Ok(info) => axum::Json(info).into_response(),
        Err(e) => deploy_error(e),
    }
}

/// Body: empty, or `{"revision": "hello-1"}` to name the revision to go back (or forward) to.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    revision: Option<String>,
}

async fn rollback(State(node): State<Node>, Path((namespace, name)): Path<(String, String)>, body: Bytes) -> Response {
    let body: RollbackBody = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid rollback request: {e}")),
        }
    };
    match node.rollback(&namespace, &name, body.revision.as_deref()).await {
        Ok(info) => axum::Json(info).into_response(),
        Err(e) => deploy_error(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_match_only_when_equal() {
        assert!(super::same_secret("s3cret", "s3cret"));
        for other in ["s3creT", "s3cre", "s3crett", ""] {
            assert!(!super::same_secret(other, "s3cret"), "{other}");
        }
    }
}
mod props;
