//! A scripted Kubernetes API server on 127.0.0.1 for the cluster-mode tests (these machines have no real one):
//! it holds `Function` objects, answers lists, streams watch events the way the API server does (ADDED,
//! MODIFIED, DELETED, BOOKMARK, and ERROR 410 when a watch expired), records status patches, and can drop
//! every watch connection, go down and come back on the same port.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

const GROUP: &str = "/apis/wasmfn.dev/v1alpha1";

/// A message to open watches.
#[derive(Clone, Debug)]
enum Msg {
    Line(u64, String),
    Bookmark(String),
    Disconnect,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<(String, String), Value>,
    history: Vec<(u64, String)>,
    expire_watches: bool,
    patches: Vec<(String, String, String, Value)>,
    watches: usize,
    lists: usize,
    pods: Vec<Value>,
    logs: HashMap<String, String>,
    /// Applies are refused with 403, as RBAC refuses a user without `patch` on functions.
    forbid_writes: bool,
    /// Pod-proxy answers: a path containing the needle gets the status and JSON.
    proxy_answers: Vec<(String, u16, Value)>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<Msg>,
}

/// The scripted API server.
pub struct FakeApi {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Shared,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A `Function` as the API server stores it. `image` becomes `status.image`, as the operator records it.
pub fn function(name: &str, generation: i64, image: Option<&str>, env: &[(&str, &str)]) -> Value {
    let env: Vec<Value> = env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    let mut f = json!({
        "apiVersion": "wasmfn.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "generation": generation,
                     "creationTimestamp": "2026-11-22T10:00:00Z", "finalizers": ["wasmfn.dev/cleanup"],
                     "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "wasmfn.dev/v1alpha1"}]},
        "spec": {"build": {"template": "rust"}, "source": {"git": {"url": "https://git.test/fns.git", "ref": "main"}},
                 "env": env, "scaling": {"maxConcurrency": 0, "maxQueue": 100, "queueTimeout": "10s"},
                 "limits": {"timeout": "5m", "memory": "128Mi", "maxRequestBody": "10Mi"}},
    });
    if let Some(image) = image {
        f["status"] = json!({"image": image, "observedGeneration": generation,
            "conditions": [{"type": "BuildSucceeded", "status": "True", "reason": "Succeeded", "message": ""}]});
    }
    f
}

fn key(f: &Value) -> (String, String) {
    let m = &f["metadata"];
    (m["namespace"].as_str().unwrap_or("default").to_string(), m["name"].as_str().unwrap().to_string())
}

fn status_failure(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
           "reason": reason, "code": code})
}

impl Shared {
    /// Stores a change and streams it to open watches (unless `quietly`: a change the watches miss, as while
    /// they are disconnected).
    fn change(&self, kind: &str, mut object: Value, quietly: bool) {
        let mut inner = self.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let k = key(&object);
        if kind == "DELETED" {
            inner.objects.remove(&k);
        } else {
            inner.objects.insert(k, object.clone());
        }
        let line = json!({"type": kind, "object": object}).to_string();
        if !quietly {
            inner.history.push((rv, line.clone()));
            let _ = self.tx.send(Msg::Line(rv, line));
        }
    }
}

impl FakeApi {
    /// Starts on an ephemeral port.
    pub async fn start() -> FakeApi {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), Vec::new()).await
    }

    /// Starts on `addr` holding `objects`.
    pub async fn start_on(addr: SocketAddr, objects: Vec<Value>) -> FakeApi {
        let (tx, _) = broadcast::channel(1024);
        let shared = Shared { inner: Arc::default(), tx };
        for o in objects {
            shared.change("ADDED", o, true);
        }
        let app = axum::Router::new()
            .route(&format!("{GROUP}/functions"), get(list_or_watch))
            .route(&format!("{GROUP}/namespaces/{{ns}}/functions/{{name}}/status"), axum::routing::patch(patch_status))
            .route(&format!("{GROUP}/namespaces/{{ns}}/functions/{{name}}"), get(get_one).patch(apply_one))
            .route(&format!("{GROUP}/namespaces/{{ns}}/functions"), get(list_namespace))
            .route("/api/v1/namespaces/{ns}/pods", get(pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .route("/api/v1/namespaces/{ns}/pods/{name}/proxy/{*rest}", axum::routing::any(pod_proxy))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the fake API server");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi { addr, shared, task: Some(task) }
    }

    /// A kubeconfig pointing at this server, written into `dir`.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: default}}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{token: fake-token}}\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Creates or replaces an object; open watches see ADDED or MODIFIED.
    pub fn apply(&self, object: Value) {
        let exists = self.shared.inner.lock().unwrap().objects.contains_key(&key(&object));
        self.shared.change(if exists { "MODIFIED" } else { "ADDED" }, object, false);
    }

    /// Deletes an object; open watches see DELETED.
    pub fn delete(&self, name: &str) {
        let object = self.get(name).expect("the object exists");
        self.shared.change("DELETED", object, false);
    }

    /// Changes the stored objects without telling open watches (changes made while they are disconnected).
    pub fn apply_quietly(&self, object: Value) {
        self.shared.change("MODIFIED", object, true);
    }

    /// Deletes without telling open watches.
    pub fn delete_quietly(&self, name: &str) {
        let object = self.get(name).expect("the object exists");
        self.shared.change("DELETED", object, true);
    }

    /// Sends a BOOKMARK with the current resource version.
    pub fn bookmark(&self) {
        let inner = self.shared.inner.lock().unwrap();
        let line = json!({"type": "BOOKMARK", "object": {"apiVersion": "wasmfn.dev/v1alpha1", "kind": "Function",
            "metadata": {"resourceVersion": inner.rv.to_string()}}})
        .to_string();
        let _ = self.shared.tx.send(Msg::Bookmark(line));
    }

    /// Ends every open watch; with `expire`, the next watches get `410 Gone`, so clients list again.
    pub fn disconnect(&self, expire: bool) {
        self.shared.inner.lock().unwrap().expire_watches = expire;
        let _ = self.shared.tx.send(Msg::Disconnect);
    }

    /// A stored object.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.shared.inner.lock().unwrap().objects.get(&("default".into(), name.into())).cloned()
    }

    /// Answers pod-proxy requests whose path contains `needle` with `status` and `body`.
    pub fn proxy_answer(&self, needle: &str, status: u16, body: Value) {
        self.shared.inner.lock().unwrap().proxy_answers.push((needle.into(), status, body));
    }

    /// Forgets the scripted pod-proxy answers.
    pub fn clear_proxy_answers(&self) {
        self.shared.inner.lock().unwrap().proxy_answers.clear();
    }

    /// Refuses (or allows again) every apply with 403, like RBAC without `patch`.
    pub fn forbid_writes(&self, forbid: bool) {
        self.shared.inner.lock().unwrap().forbid_writes = forbid;
    }

    /// Adds a Pod (for `wasmfn logs`) with its log.
    pub fn add_pod(&self, namespace: &str, name: &str, labels: Value, log: &str) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.pods.push(json!({"metadata": {"name": name, "namespace": namespace, "labels": labels}}));
        inner.logs.insert(name.into(), log.into());
    }

    /// Sets an object's status, as the operator and nodes would.
    pub fn set_status(&self, name: &str, status: Value) {
        let mut object = self.get(name).expect("the object exists");
        object["status"] = status;
        self.shared.change("MODIFIED", object, false);
    }

    /// Status patches received: (namespace, name, query, body).
    pub fn patches(&self) -> Vec<(String, String, String, Value)> {
        self.shared.inner.lock().unwrap().patches.clone()
    }

    /// Lists and watches served so far.
    pub fn requests(&self) -> (usize, usize) {
        let inner = self.shared.inner.lock().unwrap();
        (inner.lists, inner.watches)
    }

    /// Stops serving (connections are refused), keeping the objects for [`FakeApi::restart`].
    pub async fn stop(&mut self) -> Vec<Value> {
        let _ = self.shared.tx.send(Msg::Disconnect);
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.shared.inner.lock().unwrap().objects.values().cloned().collect()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn list_or_watch(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch(s, q.get("resourceVersion").and_then(|r| r.parse().ok()).unwrap_or(0));
    }
    let mut inner = s.inner.lock().unwrap();
    inner.lists += 1;
    inner.expire_watches = false;
    let items: Vec<Value> = inner.objects.values().cloned().collect();
    axum::Json(json!({"apiVersion": "wasmfn.dev/v1alpha1", "kind": "FunctionList",
                      "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}))
    .into_response()
}

fn watch(s: Shared, from: u64) -> Response {
    let mut inner = s.inner.lock().unwrap();
    inner.watches += 1;
    if inner.expire_watches {
        let gone = status_failure(410, "Expired", &format!("too old resource version: {from}"));
        let line = json!({"type": "ERROR", "object": gone}).to_string() + "\n";
        return Response::new(Body::from(line));
    }
    // Subscribed under the lock that orders changes: nothing between the backlog and the live stream is lost.
    let rx = s.tx.subscribe();
    let backlog: Vec<(u64, String)> = inner.history.iter().filter(|(rv, _)| *rv > from).cloned().collect();
    let last = backlog.last().map(|(rv, _)| *rv).unwrap_or(from);
    drop(inner);
    let line = |l: String| Ok::<_, std::io::Error>(Bytes::from(l + "\n"));
    let backlog = futures_util::stream::iter(backlog.into_iter().map(move |(_, l)| line(l)));
    let live = futures_util::stream::unfold((rx, last), move |(mut rx, last)| async move {
        loop {
            match rx.recv().await {
                Ok(Msg::Line(rv, l)) if rv > last => return Some((line(l), (rx, rv))),
                Ok(Msg::Bookmark(l)) => return Some((line(l), (rx, last))),
                Ok(Msg::Line(..)) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Ok(Msg::Disconnect) | Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Response::new(Body::from_stream(futures_util::StreamExt::chain(backlog, live)))
}

async fn patch_status(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stored = {
        let mut inner = s.inner.lock().unwrap();
        inner.patches.push((ns.clone(), name.clone(), query.unwrap_or_default(), patch.clone()));
        inner.objects.get(&(ns.clone(), name.clone())).cloned()
    };
    let Some(mut object) = stored else {
        let body = status_failure(404, "NotFound", &format!("functions.wasmfn.dev \"{name}\" not found"));
        return (http::StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    };
    // Merge the node entries by `node` (the list-map key), as server-side apply does.
    let mut nodes: Vec<Value> = object["status"]["nodes"].as_array().cloned().unwrap_or_default();
    for entry in patch["status"]["nodes"].as_array().into_iter().flatten() {
        nodes.retain(|n| n["node"] != entry["node"]);
        nodes.push(entry.clone());
    }
    if object["status"].is_null() {
        object["status"] = json!({});
    }
    object["status"]["nodes"] = json!(nodes);
    s.change("MODIFIED", object.clone(), false);
    axum::Json(object).into_response()
}

async fn get_one(State(s): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    match s.inner.lock().unwrap().objects.get(&(ns, name.clone())) {
        Some(o) => axum::Json(o.clone()).into_response(),
        None => {
            let body = status_failure(404, "NotFound", &format!("functions.wasmfn.dev \"{name}\" not found"));
            (http::StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

/// Server-side apply of a whole Function, recorded like status patches; a changed spec bumps the generation.
async fn apply_one(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if s.inner.lock().unwrap().forbid_writes {
        let message = format!(
            "functions.wasmfn.dev \"{name}\" is forbidden: User \"ada\" cannot patch resource \"functions\" in API group \"wasmfn.dev\" in the namespace \"{ns}\""
        );
        return (http::StatusCode::FORBIDDEN, axum::Json(status_failure(403, "Forbidden", &message))).into_response();
    }
    let previous = {
        let mut inner = s.inner.lock().unwrap();
        inner.patches.push((ns.clone(), name.clone(), query.unwrap_or_default(), object.clone()));
        inner.objects.get(&(ns.clone(), name.clone())).cloned()
    };
    let generation = match &previous {
        Some(p) if p["spec"] == object["spec"] => p["metadata"]["generation"].as_i64().unwrap_or(1),
        Some(p) => p["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
        None => 1,
    };
    object["metadata"]["namespace"] = json!(ns);
    object["metadata"]["generation"] = json!(generation);
    object["metadata"]["uid"] = json!(format!("uid-{name}"));
    if let Some(p) = previous {
        object["status"] = p["status"].clone();
    }
    s.change(if generation == 1 { "ADDED" } else { "MODIFIED" }, object.clone(), false);
    axum::Json(object).into_response()
}

async fn list_namespace(State(s): State<Shared>, Path(ns): Path<String>) -> Response {
    let inner = s.inner.lock().unwrap();
    let items: Vec<Value> = inner.objects.iter().filter(|((n, _), _)| *n == ns).map(|(_, o)| o.clone()).collect();
    axum::Json(json!({"apiVersion": "wasmfn.dev/v1alpha1", "kind": "FunctionList",
                      "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}))
    .into_response()
}

/// Pods of `ns` matching a `k=v[,k=v]` label selector.
async fn pods(State(s): State<Shared>, Path(ns): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let wanted: Vec<(&str, &str)> = selector.split(',').filter_map(|kv| kv.split_once('=')).collect();
    let inner = s.inner.lock().unwrap();
    let items: Vec<Value> = inner
        .pods
        .iter()
        .filter(|p| p["metadata"]["namespace"] == ns.as_str())
        .filter(|p| wanted.iter().all(|(k, v)| p["metadata"]["labels"][*k] == *v))
        .cloned()
        .collect();
    axum::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})).into_response()
}

/// The API server's proxy to a pod's port (`pods/NAME:PORT/proxy/PATH`): recorded, answered like a node's
/// ingress would (the body echoes the method, pod and path; the revision header names `<function>-1`).
async fn pod_proxy(
    State(s): State<Shared>,
    method: http::Method,
    Path((ns, pod, rest)): Path<(String, String, String)>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    // `NAME:PORT`.
    let pod = pod.split(':').next().unwrap_or_default().to_string();
    let token = headers.get("x-wasmfn-admin-token").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let scripted = {
        let mut inner = s.inner.lock().unwrap();
        inner.patches.push((ns, pod.clone(), format!("proxy {method} /{rest} token={token}"), Value::Null));
        inner.proxy_answers.iter().find(|(needle, _, _)| rest.contains(needle.as_str())).cloned()
    };
    if let Some((_, status, value)) = scripted {
        return (http::StatusCode::from_u16(status).unwrap(), axum::Json(value)).into_response();
    }
    let function = rest.split('/').nth(1).unwrap_or("?").to_string();
    let text = format!("{method} via {pod} /{rest} {}", String::from_utf8_lossy(&body));
    ([("x-wasmfn-revision", format!("{function}-1")), ("x-request-id", "proxied-1".to_string())], text).into_response()
}

async fn pod_log(State(s): State<Shared>, Path((_, name)): Path<(String, String)>) -> Response {
    s.inner.lock().unwrap().logs.get(&name).cloned().unwrap_or_default().into_response()
}
