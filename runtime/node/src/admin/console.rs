//! What the console and the CLI's `logs`/`call` need beyond the deploy API: recent and live log lines
//! (`GET /v1/logs`, Server-Sent Events with `follow=true`) and a test invocation through the node's own ingress
//! (`POST /v1/functions/{namespace}/{name}/invoke`) that reports status, headers, body, latency and revision,
//! and the last hour of a function's activity for the charts (`GET …/series`).

use super::error;
use crate::logs::{LogFilter, LogLine};
use crate::node::Node;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most lines one query returns.
const MAX_LINES: usize = 5000;
/// Longest an invocation may take (the function's own timeout usually ends it first).
const INVOKE_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest response body an invocation returns to the page.
const MAX_INVOKE_BODY: usize = 1 << 20;

pub(super) fn routes() -> Router<Node> {
    Router::new()
        .route("/v1/logs", get(logs))
        .route("/v1/functions/{namespace}/{name}/invoke", post(invoke))
        .route("/v1/functions/{namespace}/{name}/series", get(series))
        .route("/v1/cron", get(cron))
        .route("/v1/events/types", get(event_types))
}

/// `GET /v1/logs?namespace=&function=&revision=&request=&since=&limit=&follow=`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    namespace: Option<String>,
    function: Option<String>,
    revision: Option<String>,
    request: Option<String>,
    since: Option<u64>,
    limit: Option<usize>,
    #[serde(default)]
    follow: bool,
}

async fn logs(State(node): State<Node>, Query(q): Query<LogQuery>) -> Response {
    let filter = LogFilter {
        namespace: q.namespace.filter(|s| !s.is_empty()),
        function: q.function.filter(|s| !s.is_empty()),
        revision: q.revision.filter(|s| !s.is_empty()),
        request_id: q.request.filter(|s| !s.is_empty()),
    };
    let hub = node.log_hub();
    let limit = q.limit.unwrap_or(500).min(MAX_LINES);
    if !q.follow {
        let kept = hub.query(&filter, q.since.unwrap_or(0), limit);
        let lines: Vec<&LogLine> = kept.iter().map(|l| &**l).collect();
        return axum::Json(json!({ "lines": lines, "next": hub.next_seq() })).into_response();
    }
    // Subscribed before the backlog is read, so no line falls between the two; seq drops the overlap.
    let live = tokio_stream::wrappers::BroadcastStream::new(hub.subscribe());
    let backlog = hub.query(&filter, q.since.unwrap_or(0), limit);
    let mut last = backlog.last().map(|l| l.seq);
    let head = futures_util::stream::iter(backlog).map(|l| Ok::<_, std::convert::Infallible>(event(&l)));
    let tail = live.filter_map(move |item| {
        let out = match item {
            Ok(l) if filter.matches(&l) && last.is_none_or(|s| l.seq > s) => {
                last = Some(l.seq);
                Some(Ok(event(&l)))
            }
            Ok(_) => None,
            // Fell behind the broadcast: say so, go on with what comes next.
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                Some(Ok(Event::default().event("lagged").data(n.to_string())))
            }
        };
        std::future::ready(out)
    });
    Sse::new(head.chain(tail)).keep_alive(KeepAlive::default()).into_response()
}

fn event(line: &Arc<LogLine>) -> Event {
    Event::default().id(line.seq.to_string()).data(serde_json::to_string(&**line).unwrap_or_default())
}

/// `GET /v1/cron?schedule=&timezone=&count=`: the next runs of a cron trigger's schedule, or why it is invalid.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CronQuery {
    schedule: String,
    timezone: Option<String>,
    count: Option<usize>,
}

async fn cron(Query(q): Query<CronQuery>) -> Response {
    let timezone = q.timezone.as_deref().filter(|t| !t.is_empty());
    let (cron, tz) = match wasmfn_api::parse_schedule(&q.schedule, timezone) {
        Ok(x) => x,
        Err(message) => {
            let field = if message.contains("time zone") { "timezone" } else { "schedule" };
            return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({ "error": message, "field": field })))
                .into_response();
        }
    };
    let mut next = Vec::new();
    let mut from = chrono::Utc::now().with_timezone(&tz);
    for _ in 0..q.count.unwrap_or(5).min(20) {
        match cron.find_next_occurrence(&from, false) {
            Ok(t) => {
                next.push(t.to_rfc3339());
                from = t;
            }
            Err(_) => break,
        }
    }
    axum::Json(json!({ "next": next, "timezone": tz.name() })).into_response()
}

/// `GET /v1/events/types?namespace=`: the event types the brokers have seen (issue 20): `{"namespaces": {ns:
/// {"types": [...], "untracked": n}}}`.
async fn event_types(State(node): State<Node>, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let namespace = q.get("namespace").map(String::as_str).filter(|n| !n.is_empty());
    let by_ns: serde_json::Map<String, serde_json::Value> = node
        .event_types(namespace)
        .into_iter()
        .map(|(ns, (types, untracked))| (ns, json!({ "types": types, "untracked": untracked })))
        .collect();
    axum::Json(json!({ "namespaces": by_ns })).into_response()
}

/// The last hour of the function's activity: `{"interval": seconds, "points": [...]}`.
async fn series(State(node): State<Node>, Path((namespace, name)): Path<(String, String)>) -> Response {
    match node.series(&namespace, &name) {
        Some(points) => {
            let interval = node.config().series_interval.as_secs_f64();
            axum::Json(json!({ "interval": interval, "points": points })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("function {namespace}/{name} not found")),
    }
}

/// Body of an invocation: an HTTP request, or a CloudEvent (binary or structured mode).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Invoke {
    #[serde(default = "default_method")]
    method: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
    event: Option<CloudEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudEvent {
    #[serde(rename = "type")]
    kind: String,
    source: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    structured: bool,
}

fn default_method() -> String {
    "POST".into()
}

fn default_path() -> String {
    "/".into()
}

async fn invoke(State(node): State<Node>, Path((namespace, name)): Path<(String, String)>, body: Bytes) -> Response {
    let inv: Invoke = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid invocation: {e}")),
    };
    if node.get(&namespace, &name).is_none() {
        return error(StatusCode::NOT_FOUND, format!("function {namespace}/{name} not found"));
    }
    let Ok(method) = reqwest::Method::from_bytes(inv.method.as_bytes()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, format!("`{}` is not an HTTP method", inv.method));
    };
    if !inv.path.starts_with('/') {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "`path` must start with `/`".into());
    }
    let addr = node.ingress_addr();
    // The path form of the function's URL, on the node's own ingress: the request takes the real path.
    let url = format!("http://{addr}/{namespace}/{name}{}", inv.path);
    let client = match reqwest::Client::builder().no_proxy().timeout(INVOKE_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut req = client.request(method, url);
    for (k, v) in &inv.headers {
        req = req.header(k, v);
    }
    req = match inv.event {
        Some(ce) => {
            let id = ce.id.unwrap_or_else(|| format!("console-{}", chrono::Utc::now().timestamp_micros()));
            if ce.structured {
                let envelope = json!({"specversion": "1.0", "type": ce.kind, "source": ce.source, "id": id,
                                      "datacontenttype": "application/json", "data": ce.data});
                req.header("content-type", "application/cloudevents+json").body(envelope.to_string())
            } else {
                req.header("ce-specversion", "1.0")
                    .header("ce-type", ce.kind)
                    .header("ce-source", ce.source)
                    .header("ce-id", id)
                    .header("content-type", "application/json")
                    .body(ce.data.to_string())
            }
        }
        None => req.body(inv.body),
    };
    let started = Instant::now();
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("the invocation failed: {e}")),
    };
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (revision, request_id) = (header("x-wasmfn-revision"), header("x-request-id"));
    let mut bytes = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut truncated = false;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        bytes.extend_from_slice(&chunk[..chunk.len().min(MAX_INVOKE_BODY.saturating_sub(bytes.len()))]);
        if bytes.len() >= MAX_INVOKE_BODY {
            truncated = true;
            break;
        }
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (body, encoding) = match String::from_utf8(bytes) {
        Ok(text) => (text, "utf-8"),
        Err(e) => (base64::engine::general_purpose::STANDARD.encode(e.into_bytes()), "base64"),
    };
    axum::Json(json!({
        "status": status, "headers": headers, "body": body, "bodyEncoding": encoding, "truncated": truncated,
        "latencyMs": latency_ms, "revision": revision, "requestId": request_id,
    }))
    .into_response()
}
