//! The embedded console API of `wasmfn up` (the page itself is the node's): templates, each function's build
//! state, reading and writing a function's source files, and creating a function from a template. Writes go to
//! the function's folder; `up`'s watcher builds and deploys them, with the build output in `/v1/logs`.
//!
//! Browser input is hostile like any other: names are DNS labels, files are only the function's own entry,
//! dependency and manifest files (plain names, no paths), each at most [`MAX_FILE`] bytes, written atomically.

use crate::workspace::{Phase, Source, Workspace};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use wasmfn_api::FunctionKey;
use wasmfn_build::Builder;
use wasmfn_runtime::Node;

/// Largest source file the console writes.
const MAX_FILE: usize = 1 << 20;

#[derive(Clone)]
struct Ctx {
    node: Node,
    builder: Arc<Builder>,
    workspace: Arc<Workspace>,
}

/// The console API's routes, with their state applied.
pub(crate) fn router(node: Node, builder: Arc<Builder>, workspace: Arc<Workspace>) -> Router {
    Router::new()
        .route("/v1/console", get(info))
        .route("/v1/console/functions", post(create))
        .route("/v1/console/functions/{namespace}/{name}/source", get(read).put(write))
        .route("/v1/console/functions/{namespace}/{name}/spec", put(set_spec))
        .with_state(Ctx { node, builder, workspace })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (status, Json(json!({ "error": message, "status": status.as_u16() }))).into_response()
}

async fn info(State(ctx): State<Ctx>) -> Response {
    let templates: Vec<_> = ctx
        .builder
        .templates()
        .iter()
        .map(|t| json!({ "name": t.spec.name, "description": t.spec.description }))
        .collect();
    let phases = ctx.workspace.phases.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let functions: serde_json::Map<String, serde_json::Value> = phases
        .iter()
        .map(|(key, phase)| {
            let (state, error) = match phase {
                Phase::Building => ("building", None),
                Phase::Ready => ("ready", None),
                Phase::Failed(e) => ("failed", Some(e.clone())),
            };
            let urls = ctx.node.urls(&key.namespace, &key.name);
            (key.to_string(), json!({ "state": state, "error": error, "urls": urls }))
        })
        .collect();
    Json(json!({
        "mode": "embedded",
        "templates": templates,
        "functions": functions,
        "canCreate": ctx.workspace.root.is_some(),
    }))
    .into_response()
}

/// The files the console may read and write in a function's folder: the template's entry and dependency files
/// and the manifest.
fn editable(builder: &Builder, template: &str) -> Vec<String> {
    let mut names = vec!["function.yaml".to_string()];
    if let Ok(t) = builder.template(template) {
        names.extend(t.spec.code_file.iter().cloned());
        names.extend(t.spec.entry.iter().cloned());
        names.extend(t.spec.dependencies.iter().cloned());
    }
    names
}

fn folder(ctx: &Ctx, key: &FunctionKey) -> Result<(PathBuf, String), (StatusCode, String)> {
    let Some((base, f)) = ctx.workspace.find(key) else {
        return Err((StatusCode::NOT_FOUND, format!("{key} is not a function folder `wasmfn up` serves")));
    };
    let Some(build) = f.spec.build else {
        return Err((StatusCode::CONFLICT, format!("{key} runs a component file: it has no source to edit")));
    };
    Ok((base, build.template))
}

async fn read(State(ctx): State<Ctx>, Path((namespace, name)): Path<(String, String)>) -> Response {
    let key = FunctionKey::new(&namespace, &name);
    let (base, template) = match folder(&ctx, &key) {
        Ok(f) => f,
        Err((status, message)) => return error(status, message),
    };
    let mut files = Vec::new();
    for file in editable(&ctx.builder, &template) {
        if files.iter().any(|(n, _): &(String, String)| *n == file) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(base.join(&file)) {
            files.push((file, text));
        }
    }
    // The code first: what the editor opens.
    files.sort_by_key(|(n, _)| {
        (n == "function.yaml", n.ends_with(".json") || n.ends_with(".txt") || n.ends_with(".toml"))
    });
    let files: Vec<_> = files.into_iter().map(|(name, text)| json!({ "name": name, "text": text })).collect();
    Json(json!({ "template": template, "files": files })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    name: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    files: Vec<FileBody>,
}

async fn write(
    State(ctx): State<Ctx>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<WriteBody>,
) -> Response {
    let key = FunctionKey::new(&namespace, &name);
    let (base, template) = match folder(&ctx, &key) {
        Ok(f) => f,
        Err((status, message)) => return error(status, message),
    };
    let allowed = editable(&ctx.builder, &template);
    for f in &body.files {
        if !allowed.contains(&f.name) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, format!("`{}` is not one of {allowed:?}", f.name));
        }
        if f.text.len() > MAX_FILE {
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("`{}` is over {MAX_FILE} bytes", f.name));
        }
    }
    let mut changed = false;
    for f in &body.files {
        let path = base.join(&f.name);
        // Unchanged files keep their modification time: the watcher rebuilds only on a real change.
        if std::fs::read_to_string(&path).is_ok_and(|old| old == f.text) {
            continue;
        }
        changed = true;
        let tmp = base.join(format!(".{}.wasmfn-tmp", f.name));
        if let Err(e) = std::fs::write(&tmp, &f.text).and_then(|()| std::fs::rename(&tmp, &path)) {
            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("writing {}: {e}", path.display()));
        }
    }
    if !changed {
        return Json(json!({ "unchanged": true })).into_response();
    }
    ctx.workspace.set(&key, Phase::Building);
    (StatusCode::ACCEPTED, Json(json!({ "building": key.to_string() }))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// `POST …/functions`: a new function from a template (the embedded and the cluster console alike).
pub(crate) struct CreateBody {
    pub(crate) name: String,
    #[serde(default = "default_namespace")]
    pub(crate) namespace: String,
    pub(crate) template: String,
}

fn default_namespace() -> String {
    "default".into()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

async fn create(State(ctx): State<Ctx>, Json(body): Json<CreateBody>) -> Response {
    for (field, value) in [("name", &body.name), ("namespace", &body.namespace)] {
        if !is_dns_label(value) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{field} `{value}` must be a DNS label: a-z, 0-9 and `-`, at most 63 characters"),
            );
        }
    }
    let Some(root) = ctx.workspace.root.clone() else {
        return error(StatusCode::CONFLICT, "`wasmfn up` was given no folder to create functions in");
    };
    let key = FunctionKey::new(&body.namespace, &body.name);
    if ctx.workspace.find(&key).is_some() || ctx.node.get(&body.namespace, &body.name).is_some() {
        return error(StatusCode::CONFLICT, format!("a function {key} exists"));
    }
    let dir =
        if body.namespace == "default" { root.join(&body.name) } else { root.join(&body.namespace).join(&body.name) };
    if dir.exists() {
        return error(StatusCode::CONFLICT, format!("{} exists", dir.display()));
    }
    if let Err(e) = ctx.builder.scaffold(&body.template, &body.name, &dir) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    }
    let manifest = dir.join("function.yaml");
    if body.namespace != "default" {
        // The scaffold's manifest names no namespace: add it.
        let text = std::fs::read_to_string(&manifest).unwrap_or_default();
        let text = text.replacen("metadata:\n", &format!("metadata:\n  namespace: {}\n", body.namespace), 1);
        if let Err(e) = std::fs::write(&manifest, text) {
            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("writing {}: {e}", manifest.display()));
        }
    }
    ctx.node.announce(key.clone(), std::time::Duration::from_secs(10));
    ctx.workspace.set(&key, Phase::Building);
    ctx.workspace.sources.lock().unwrap_or_else(|e| e.into_inner()).push(Source { path: manifest, manifest: true });
    tracing::info!(function = %key, folder = %dir.display(), template = %body.template, "created from the console");
    (StatusCode::CREATED, Json(json!({ "function": key.to_string(), "folder": dir.display().to_string() })))
        .into_response()
}

/// The parts of `spec` the console's forms edit.
const FORM_FIELDS: &[&str] = &["triggers", "env", "limits", "scaling"];

/// Replaces the given `spec` fields (`triggers`, `env`, `limits`, `scaling`) in the function's `function.yaml`
/// (comments in it are not kept), after checking the result as a deploy would: a rule it breaks is answered 422
/// with the field, for the form to show beside it.
async fn set_spec(
    State(ctx): State<Ctx>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    if let Some(other) = body.keys().find(|k| !FORM_FIELDS.contains(&k.as_str())) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, format!("`{other}` is not one of {FORM_FIELDS:?}"));
    }
    let key = FunctionKey::new(&namespace, &name);
    let (base, _) = match folder(&ctx, &key) {
        Ok(f) => f,
        Err((status, message)) => return error(status, message),
    };
    let path = base.join("function.yaml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::CONFLICT, format!("{}: {e}", path.display())),
    };
    let mut doc: serde_json::Value = match serde_yaml_ng::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            return error(
                StatusCode::CONFLICT,
                format!("{} holds more than one document or does not parse: {e}", path.display()),
            );
        }
    };
    if doc["metadata"]["name"] != name.as_str() {
        return error(
            StatusCode::CONFLICT,
            format!("{} does not declare {key} alone: edit it as YAML", path.display()),
        );
    }
    for (field, value) in body {
        doc["spec"][field.as_str()] = value;
    }
    let yaml = match serde_yaml_ng::to_string(&doc) {
        Ok(y) => y,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if let Err(e) = wasmfn_api::Function::from_yaml(&yaml) {
        let field = match &e {
            wasmfn_api::ManifestError::Parse { path, .. } => path.clone(),
            wasmfn_api::ManifestError::Invalid { field, .. } => field.clone(),
        };
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": e.to_string(), "field": field })))
            .into_response();
    }
    let tmp = base.join(".function.yaml.wasmfn-tmp");
    if let Err(e) = std::fs::write(&tmp, &yaml).and_then(|()| std::fs::rename(&tmp, &path)) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("writing {}: {e}", path.display()));
    }
    ctx.workspace.set(&key, Phase::Building);
    (StatusCode::ACCEPTED, Json(json!({ "building": key.to_string() }))).into_response()
}
