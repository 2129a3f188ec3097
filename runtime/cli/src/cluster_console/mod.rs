//! `wasmfn console`: the console's page against the current kube context, on localhost, acting with the user's
//! own kubeconfig identity (as `kubectl proxy` does), so Kubernetes RBAC decides what each user sees and changes.
//! It answers the JSON shapes `wasmfn up` answers, from `Function` resources: the list across namespaces, one
//! function, creating and editing inline sources (the operator's build Jobs build them), traffic, deleting, and
//! a function's build progress as log lines (from its conditions). An API error keeps its status and message
//! (a 403 names what RBAC refused), for the page to show.

use crate::cluster::KubeArgs;
use crate::console::CreateBody;
use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use wasmfn_api::FunctionResource;

mod common;
mod nodes;
mod stats;

use common::{Ctx, get_value, kube_error, state};

/// The field manager of what the console applies.
const MANAGER: &str = "wasmfn-console";

/// Each template's inline entry and dependency file, and the code a new function starts with.
const TEMPLATES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "js",
        "JavaScript (StarlingMonkey)",
        "handler.js",
        "package.json",
        "export function handler(event, context) {\n  return `Hello, ${event.data?.name ?? 'world'}!`;\n}\n",
    ),
    (
        "python",
        "Python (componentize-py)",
        "handler.py",
        "requirements.txt",
        "def handler(event, context):\n    return \"Hello, %s!\" % (event[\"data\"] or {}).get(\"name\", \"world\")\n",
    ),
    (
        "rust",
        "Rust (wasm32-wasip2)",
        "src/lib.rs",
        "Cargo.toml",
        "use wasmfn_sdk::{Request, Response};\n\n#[wasmfn_sdk::http]\nfn handle(_req: Request) -> Response {\n    Response::new(\"Hello, world!\".into())\n}\n",
    ),
];

/// Serves the console on `listen` (loopback) until interrupted.
pub(crate) async fn run(kube: &KubeArgs, listen: std::net::SocketAddr, system_namespace: String) -> anyhow::Result<()> {
    anyhow::ensure!(listen.ip().is_loopback(), "the console listens on loopback only (it acts as you on the cluster)");
    let client = kube.client().await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let url = format!("http://{}/", listener.local_addr()?);
    println!("wasmfn console: {url}");
    axum::serve(listener, router(client, system_namespace))
        .with_graceful_shutdown(crate::serve::shutdown_signal())
        .await?;
    Ok(())
}

/// The page and its API over `client`.
pub(crate) fn router(client: Client, system_namespace: String) -> Router {
    let api = Router::new()
        .route("/v1/console", get(info))
        .route("/v1/functions", get(list))
        .route("/v1/functions/{namespace}/{name}", get(one).delete(remove))
        .route("/v1/functions/{namespace}/{name}/revisions", get(stats::revisions))
        .route("/v1/functions/{namespace}/{name}/series", get(stats::series))
        .route("/v1/functions/{namespace}/{name}/traffic", axum::routing::put(traffic))
        .route("/v1/console/functions", post(create))
        .route("/v1/console/functions/{namespace}/{name}/source", get(source).put(set_source))
        .route("/v1/logs", get(nodes::logs))
        .route("/v1/functions/{namespace}/{name}/invoke", post(nodes::invoke))
        .with_state(Ctx { client, system_namespace });
    wasmfn_runtime::console_page(api)
}

/// A Function as the page's list and function pages read it (the node's `FunctionInfo` shape, where it has one).
fn info_of(f: &Value) -> Value {
    let (st, error) = state(f);
    let url = f["status"]["url"].as_str().unwrap_or("");
    json!({
        "namespace": f["metadata"]["namespace"], "name": f["metadata"]["name"],
        "latestReadyRevision": f["status"]["latestRevision"].as_str(),
        "urls": if url.is_empty() { json!([]) } else { json!([url, url]) },
        "requests": 0, "coldStarts": 0, "lastError": error, "state": st,
        "traffic": f["spec"]["traffic"].as_array().cloned().unwrap_or_default(),
        "spec": f["spec"],
    })
}

async fn all(ctx: &Ctx) -> Result<Vec<Value>, kube::Error> {
    let api: Api<FunctionResource> = Api::all(ctx.client.clone());
    let list = api.list(&ListParams::default()).await?;
    Ok(list.items.iter().filter_map(|f| serde_json::to_value(f).ok()).collect())
}

async fn info(State(ctx): State<Ctx>) -> Response {
    let functions = match all(&ctx).await {
        Ok(f) => f,
        Err(e) => return kube_error(e),
    };
    let states: serde_json::Map<String, Value> = functions
        .iter()
        .map(|f| {
            let (st, error) = state(f);
            let key = format!(
                "{}/{}",
                f["metadata"]["namespace"].as_str().unwrap_or(""),
                f["metadata"]["name"].as_str().unwrap_or("")
            );
            (key, json!({ "state": st, "error": error, "urls": [f["status"]["url"]] }))
        })
        .collect();
    let templates: Vec<Value> = TEMPLATES.iter().map(|(n, d, ..)| json!({ "name": n, "description": d })).collect();
    Json(json!({ "mode": "cluster", "templates": templates, "functions": states, "canCreate": true })).into_response()
}

async fn list(State(ctx): State<Ctx>) -> Response {
    match all(&ctx).await {
        Ok(functions) => {
            Json(json!({ "functions": functions.iter().map(info_of).collect::<Vec<_>>() })).into_response()
        }
        Err(e) => kube_error(e),
    }
}

async fn one(State(ctx): State<Ctx>, Path((namespace, name)): Path<(String, String)>) -> Response {
    match get_value(&ctx, &namespace, &name).await {
        Ok(f) => Json(info_of(&f)).into_response(),
        Err(e) => kube_error(e),
    }
}

async fn remove(State(ctx): State<Ctx>, Path((namespace, name)): Path<(String, String)>) -> Response {
    let api: Api<FunctionResource> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => kube_error(e),
    }
}

/// Applies `spec` fields of `namespace/name` (server-side apply, the console's own field manager).
async fn apply(ctx: &Ctx, namespace: &str, name: &str, spec: Value) -> Result<Value, kube::Error> {
    let api: Api<FunctionResource> = Api::namespaced(ctx.client.clone(), namespace);
    let object = json!({ "apiVersion": wasmfn_api::API_VERSION, "kind": wasmfn_api::KIND,
                         "metadata": { "name": name, "namespace": namespace }, "spec": spec });
    let applied = api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object)).await?;
    Ok(serde_json::to_value(applied).unwrap_or_default())
}

async fn traffic(
    State(ctx): State<Ctx>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    match apply(&ctx, &namespace, &name, json!({ "traffic": body["traffic"] })).await {
        Ok(f) => Json(info_of(&f)).into_response(),
        Err(e) => kube_error(e),
    }
}

async fn create(State(ctx): State<Ctx>, Json(body): Json<CreateBody>) -> Response {
    let Some((template, .., code)) = TEMPLATES.iter().find(|t| t.0 == body.template) else {
        let names: Vec<&str> = TEMPLATES.iter().map(|t| t.0).collect();
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": format!("no template `{}`: one of {names:?}", body.template) })),
        )
            .into_response();
    };
    let spec = json!({ "build": { "template": template }, "source": { "inline": { "code": code } } });
    // The API server checks the name (a DNS label) and the schema; its message goes back to the page.
    match apply(&ctx, &body.namespace, &body.name, spec).await {
        Ok(_) => (StatusCode::CREATED, Json(json!({ "function": format!("{}/{}", body.namespace, body.name) })))
            .into_response(),
        Err(e) => kube_error(e),
    }
}

fn files_of(template: &str) -> (&'static str, &'static str) {
    TEMPLATES.iter().find(|t| t.0 == template).map_or(("code", "dependencies"), |t| (t.2, t.3))
}

async fn source(State(ctx): State<Ctx>, Path((namespace, name)): Path<(String, String)>) -> Response {
    let f = match get_value(&ctx, &namespace, &name).await {
        Ok(f) => f,
        Err(e) => return kube_error(e),
    };
    let template = f["spec"]["build"]["template"].as_str().unwrap_or("").to_string();
    let inline = &f["spec"]["source"]["inline"];
    if inline.is_null() {
        let message = format!("{namespace}/{name} is not built from inline code: edit its Git or S3 source");
        return (StatusCode::CONFLICT, Json(json!({ "error": message }))).into_response();
    }
    let (code, deps) = files_of(&template);
    let mut files = vec![json!({ "name": code, "text": inline["code"] })];
    files.push(json!({ "name": deps, "text": inline["dependencies"].as_str().unwrap_or("") }));
    Json(json!({ "template": template, "files": files })).into_response()
}

async fn set_source(
    State(ctx): State<Ctx>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let f = match get_value(&ctx, &namespace, &name).await {
        Ok(f) => f,
        Err(e) => return kube_error(e),
    };
    let template = f["spec"]["build"]["template"].as_str().unwrap_or("").to_string();
    let (code_file, deps_file) = files_of(&template);
    let text =
        |file: &str| body["files"].as_array()?.iter().find(|x| x["name"] == file)?["text"].as_str().map(str::to_string);
    let mut inline = json!({ "code": text(code_file).unwrap_or_default() });
    if let Some(deps) = text(deps_file).filter(|d| !d.trim().is_empty()) {
        inline["dependencies"] = json!(deps);
    }
    let spec = json!({ "build": { "template": template }, "source": { "inline": inline } });
    match apply(&ctx, &namespace, &name, spec).await {
        Ok(_) => (StatusCode::ACCEPTED, Json(json!({ "building": format!("{namespace}/{name}") }))).into_response(),
        Err(e) => kube_error(e),
    }
}
