//! The function ingress: routes each request to the broker (`/_events/<namespace>`) or, by host, path or
//! route prefix, to a revision of a function (`table/snapshot.rs`), and hands it to the executor, which admits
//! and runs it. It accepts and routes; it runs nothing itself.

use crate::executor::{RequestBody, ResponseBody, json_error};
use crate::node::Node;
use crate::pending::Wait;
use crate::table::Routed;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

/// Handles one ingress request. Never fails: every problem becomes a status code.
pub(crate) async fn handle(node: Node, req: Request<Incoming>) -> Response<ResponseBody> {
    let inner = &node.inner;
    if let Some(namespace) = req.uri().path().strip_prefix(crate::events::BROKER_PREFIX) {
        let namespace = namespace.trim_end_matches('/').to_string();
        return inner.events.broker(&namespace, req).await;
    }
    let table = inner.table.load();
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().host());
    let domain = &inner.config.domain;
    // A pod-style node hands every path to its function unchanged, as a container would get it.
    let routed = match &inner.default_function {
        Some(key) => table.route_host(host, domain).or_else(|| table.whole(key)),
        None => table.route(host, req.uri().path(), domain),
    };
    let routed = match routed {
        Some(r) => r,
        None => {
            let (host, path) = (host.map(str::to_string), req.uri().path().to_string());
            drop(table);
            match pending(&node, host.as_deref(), &path).await {
                Ok(r) => r,
                Err(resp) => return resp,
            }
        }
    };
    inner.executor.run(&routed.revision, req.map(RequestBody::Incoming), routed.strip, None).await
}

/// A request for a function announced and not deployed yet waits for its deploy (at most its queue timeout).
async fn pending(node: &Node, host: Option<&str>, path: &str) -> Result<Routed, Response<ResponseBody>> {
    let inner = &node.inner;
    let domain = &inner.config.domain;
    let not_found = || {
        json_error(
            StatusCode::NOT_FOUND,
            "no function serves this host or path",
            serde_json::json!({ "path": path, "host": host }),
        )
    };
    let Some((key, wait)) = inner.pending.wait(host, path, domain) else { return Err(not_found()) };
    let (timeout, mut changes) = match wait {
        Wait::For(timeout, changes) => (timeout, changes),
        Wait::Failed(message) => return Err(unavailable(&key, &message)),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(r) = inner.table.load().route(host, path, domain) {
            return Ok(r);
        }
        match inner.pending.state(&key) {
            None => return Err(not_found()),
            Some(Some(message)) => return Err(unavailable(&key, &message)),
            Some(None) => {}
        }
        if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
            let mut resp = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the function is still being built or loaded",
                serde_json::json!({ "function": key.to_string(), "waited": format!("{timeout:?}") }),
            );
            resp.headers_mut().insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
            return Err(resp);
        }
    }
}

fn unavailable(key: &wasmfn_api::FunctionKey, message: &str) -> Response<ResponseBody> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the function failed to build",
        serde_json::json!({ "function": key.to_string(), "message": message }),
    )
}
