//! The function ingress: routes each request to the broker (`/_events/<namespace>`) or, by host, path or
//! route prefix, to a revision of a function (`table/snapshot.rs`), and hands it to the executor, which admits
//! and runs it. It accepts and routes; it runs nothing itself.

use crate::executor::{RequestBody, ResponseBody, json_error};
use crate::node::Node;
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
    let Some(routed) = routed else {
        let path = req.uri().path().to_string();
        return json_error(
            StatusCode::NOT_FOUND,
            "no function serves this host or path",
            serde_json::json!({ "path": path, "host": host }),
        );
    };
    drop(table);
    inner.executor.run(&routed.revision, req.map(RequestBody::Incoming), routed.strip, None).await
}
