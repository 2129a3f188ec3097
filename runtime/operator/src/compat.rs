//! Compatibility mode: Kubeless (`kubeless.io/v1beta1`) and Kyma (`serverless.kyma-project.io/v1alpha2`)
//! `Function`s keep working. Each one (opt-in per kind) is converted as `wasmfn import` converts it and served
//! as a wasmfn `Function` of the same namespace and name that it owns:
//! - the generated Function carries an owner reference (so Kubernetes' garbage collector removes it with its
//!   source) and the label `wasmfn.dev/converted-from`; the source carries the finalizer `wasmfn.dev/compat`,
//!   whose cleanup deletes the generated Function at once;
//! - the conversion report goes into an Event on the source (and the annotation `wasmfn.dev/conversion-report`
//!   of the generated Function), its outcome into the source's condition `WasmfnConverted`;
//! - a source that cannot be converted, or whose name a wasmfn Function not generated from it already has, gets
//!   `WasmfnConverted=False` and a Warning Event, and is not retried until it changes.
//!
//! Inline code becomes `spec.source.inline` (built by the operator's build Jobs); a Kyma Git source stays Git.
//! Multi-file sources (Kubeless `base64+zip`, `url`) cannot be inline: they are reported, to import and build
//! from Git instead.

use crate::{Context, Error, MANAGER};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wasmfn_api::FunctionResource;

/// The finalizer on converted sources.
pub const FINALIZER: &str = "wasmfn.dev/compat";
/// The condition on the source.
pub const CONDITION: &str = "WasmfnConverted";
/// The label on generated Functions: `kubeless` or `kyma`.
pub const CONVERTED_FROM: &str = "wasmfn.dev/converted-from";
/// The annotation holding the conversion report on generated Functions.
pub const REPORT: &str = "wasmfn.dev/conversion-report";
/// The field manager of generated Functions.
pub const COMPAT_MANAGER: &str = "wasmfn-operator-compat";
/// Longest report kept in the annotation.
const MAX_REPORT: usize = 32 << 10;

/// A kind of legacy Function the operator can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legacy {
    /// `kubeless.io/v1beta1` `Function`.
    Kubeless,
    /// `serverless.kyma-project.io/v1alpha2` `Function`.
    Kyma,
}

impl Legacy {
    /// The API resource to watch.
    pub fn api_resource(self) -> ApiResource {
        let (group, version) = match self {
            Legacy::Kubeless => ("kubeless.io", "v1beta1"),
            Legacy::Kyma => ("serverless.kyma-project.io", "v1alpha2"),
        };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: "Function".into(),
            plural: "functions".into(),
        }
    }

    /// The value of [`CONVERTED_FROM`].
    pub fn label(self) -> &'static str {
        match self {
            Legacy::Kubeless => "kubeless",
            Legacy::Kyma => "kyma",
        }
    }

    /// Whether the CRD has a `status` subresource (Kyma's has; Kubeless' has none, its status is in the object).
    fn status_subresource(self) -> bool {
        self == Legacy::Kyma
    }
}

/// What compatibility reconciles share: the operator's context and the kind being served.
pub struct Compat {
    /// The operator's context (client, events).
    pub ctx: Arc<Context>,
    /// The kind this controller serves.
    pub legacy: Legacy,
}

/// The controller's error policy: conflicts at once, the rest after 30 s.
pub fn error_policy(obj: Arc<DynamicObject>, error: &Error, compat: Arc<Compat>) -> Action {
    compat.ctx.metrics.reconcile_failed(error.metric_label());
    tracing::warn!(kind = compat.legacy.label(), object = %obj.name_any(), error = %error, "compat reconcile failed");
    Action::requeue(if error.is_conflict() { Duration::from_millis(500) } else { Duration::from_secs(30) })
}

/// Reconciles one legacy Function.
pub async fn reconcile(obj: Arc<DynamicObject>, compat: Arc<Compat>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_else(|| "default".into());
    let ar = compat.legacy.api_resource();
    let sources: Api<DynamicObject> = Api::namespaced_with(compat.ctx.client.clone(), &ns, &ar);
    let functions: Api<FunctionResource> = Api::namespaced(compat.ctx.client.clone(), &ns);
    let finalizers = obj.finalizers().to_vec();
    let has = finalizers.iter().any(|f| f == FINALIZER);
    if obj.meta().deletion_timestamp.is_some() {
        if has {
            delete_generated(&functions, &obj).await?;
            let kept: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
            set_finalizers(&sources, &obj, json!(kept)).await?;
        }
        return Ok(Action::await_change());
    }
    if !has {
        let mut all = finalizers.clone();
        all.push(FINALIZER.into());
        set_finalizers(&sources, &obj, json!(all)).await?;
    }
    apply(&obj, &compat, &sources, &functions).await
}

/// Sets `metadata.finalizers`, guarded by the object's resourceVersion (a conflict retries).
async fn set_finalizers(api: &Api<DynamicObject>, obj: &DynamicObject, list: Value) -> Result<(), Error> {
    let patch = json!({"metadata": {"finalizers": list, "resourceVersion": obj.resource_version()}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

fn owned_by(f: &FunctionResource, obj: &DynamicObject) -> bool {
    let uid = obj.uid();
    f.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref())
}

async fn delete_generated(functions: &Api<FunctionResource>, obj: &DynamicObject) -> Result<(), Error> {
    match functions.get_opt(&obj.name_any()).await? {
        Some(f) if owned_by(&f, obj) => match functions.delete(&obj.name_any(), &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        },
        _ => Ok(()),
    }
}

async fn apply(
    obj: &DynamicObject,
    compat: &Compat,
    sources: &Api<DynamicObject>,
    functions: &Api<FunctionResource>,
) -> Result<Action, Error> {
    let name = obj.name_any();
    let ns = obj.namespace().unwrap_or_else(|| "default".into());
    let value = serde_json::to_value(obj).map_err(|e| Error::Compat(format!("serialising the object: {e}")))?;
    let converted = wasmfn_import::convert_object(value)
        .map_err(|e| e.to_string())
        .and_then(|(f, report)| generated(obj, compat.legacy, f, &report).map(|m| (m, report)));
    let (manifest, report) = match converted {
        Ok(ok) => ok,
        Err(message) => {
            refuse(obj, compat, sources, "ConversionFailed", &message).await?;
            return Ok(Action::await_change());
        }
    };
    let existing = functions.get_opt(&name).await?;
    if let Some(other) = existing.as_ref().filter(|f| !owned_by(f, obj)) {
        let message = format!(
            "a wasmfn Function {ns}/{name} that was not generated from this object exists{}: rename or delete one",
            other.labels().get(CONVERTED_FROM).map(|k| format!(" (generated from a {k} Function)")).unwrap_or_default()
        );
        refuse(obj, compat, sources, "NameTaken", &message).await?;
        return Ok(Action::await_change());
    }
    // Compared as the typed spec serialises, defaults included, so that what the API server stores compares equal.
    let typed = |spec: &Value| {
        serde_json::from_value::<wasmfn_api::FunctionSpec>(spec.clone()).and_then(serde_json::to_value).ok()
    };
    let changed = existing.as_ref().is_none_or(|f| serde_json::to_value(&f.spec).ok() != typed(&manifest["spec"]));
    let params = PatchParams::apply(COMPAT_MANAGER).force();
    functions.patch(&name, &params, &Patch::Apply(&manifest)).await?;
    if changed {
        let what = if existing.is_some() { "updated" } else { "created" };
        let note = format!("{what} the wasmfn Function {ns}/{name}. {}", summary(&report));
        publish(compat, obj, false, "Converted", note).await;
    }
    let message = format!("served by the wasmfn Function {ns}/{name} (report: its annotation {REPORT})");
    set_condition(obj, compat.legacy, sources, "True", "Converted", &message).await?;
    Ok(Action::requeue(Duration::from_secs(600)))
}

async fn refuse(
    obj: &DynamicObject,
    compat: &Compat,
    sources: &Api<DynamicObject>,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    tracing::warn!(kind = compat.legacy.label(), object = %obj.name_any(), reason, message, "not converted");
    if set_condition(obj, compat.legacy, sources, "False", reason, message).await? {
        publish(compat, obj, true, reason, message.to_string()).await;
    }
    Ok(())
}

/// The report's points, in one line for an Event (which holds 1 KiB).
fn summary(report: &str) -> String {
    let points: Vec<&str> = report.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    let open = points.iter().filter(|p| p.starts_with("**")).count();
    format!("{} fields carried over, {open} not carried or to do: {}", points.len() - open, points.join("; "))
}

/// The wasmfn Function to apply: the converted manifest with its source inline, owned by `obj`.
fn generated(
    obj: &DynamicObject,
    legacy: Legacy,
    converted: wasmfn_import::Imported,
    report: &str,
) -> Result<Value, String> {
    let mut manifest = converted.manifest;
    if manifest["spec"]["source"].is_null() {
        inline(&mut manifest, converted.files)?;
    }
    let owner = json!({
        "apiVersion": legacy.api_resource().api_version, "kind": "Function", "name": obj.name_any(),
        "uid": obj.uid().ok_or("the object has no uid")?, "controller": true, "blockOwnerDeletion": true,
    });
    let meta = &mut manifest["metadata"];
    meta["ownerReferences"] = json!([owner]);
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    meta["labels"][CONVERTED_FROM] = json!(legacy.label());
    let report: String = report.chars().take(MAX_REPORT).collect();
    meta["annotations"] = json!({ REPORT: report });
    // What the operator's own reconcile will check, reported here against the source.
    let resource: FunctionResource =
        serde_json::from_value(manifest.clone()).map_err(|e| format!("the converted Function does not parse: {e}"))?;
    wasmfn_api::Function::try_from(&resource).map_err(|e| format!("the converted Function is invalid: {e}"))?;
    Ok(manifest)
}

/// Dependency files, which become `spec.source.inline.dependencies`.
const DEPENDENCY_FILES: &[&str] = &["package.json", "requirements.txt"];

/// Puts the single code file (and dependency file) into `spec.source.inline`; the build scaffolds it as the
/// template's `handler.*`, so a handler `file.function` becomes `handler.function`.
fn inline(manifest: &mut Value, files: std::collections::BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let (deps, code): (Vec<_>, Vec<_>) = files.into_iter().partition(|(p, _)| DEPENDENCY_FILES.contains(&p.as_str()));
    let [(path, code)] = <[_; 1]>::try_from(code).map_err(|code| {
        let names: Vec<String> = code.iter().map(|(p, _)| format!("`{p}`")).collect();
        format!(
            "the source has {} code files ({}): compatibility mode serves single-file functions; run `wasmfn import` \
             and build the folder from Git",
            names.len(),
            names.join(", ")
        )
    })?;
    let code = String::from_utf8(code).map_err(|_| format!("`{path}` is not UTF-8 text"))?;
    let mut inline = json!({ "code": code });
    if let Some((file, text)) = deps.into_iter().next() {
        inline["dependencies"] = json!(String::from_utf8(text).map_err(|_| format!("`{file}` is not UTF-8 text"))?);
    }
    manifest["spec"]["source"] = json!({ "inline": inline });
    let build = &mut manifest["spec"]["build"];
    if let Some(function) = build["handler"].as_str().and_then(|h| h.rsplit_once('.')).map(|(_, f)| f.to_string()) {
        build["handler"] = json!(format!("handler.{function}"));
    }
    Ok(())
}

/// Sets the source's [`CONDITION`] when it differs; whether it did.
async fn set_condition(
    obj: &DynamicObject,
    legacy: Legacy,
    sources: &Api<DynamicObject>,
    status: &str,
    reason: &str,
    message: &str,
) -> Result<bool, Error> {
    let conditions = obj.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let current = conditions.iter().find(|c| c["type"] == CONDITION);
    if current.is_some_and(|c| c["status"] == status && c["reason"] == reason && c["message"] == message) {
        return Ok(false);
    }
    let mut all: Vec<Value> = conditions.iter().filter(|c| c["type"] != CONDITION).cloned().collect();
    all.push(json!({
        "type": CONDITION, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }));
    let patch = Patch::Merge(json!({"status": {"conditions": all}}));
    let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    if legacy.status_subresource() {
        sources.patch_status(&obj.name_any(), &params, &patch).await?;
    } else {
        sources.patch(&obj.name_any(), &params, &patch).await?;
    }
    Ok(true)
}

async fn publish(compat: &Compat, obj: &DynamicObject, warning: bool, reason: &str, note: String) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Convert".into(),
        secondary: None,
    };
    let reference = obj.object_ref(&compat.legacy.api_resource());
    if let Err(e) = compat.ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(object = %obj.name_any(), error = %e, "publishing an event failed");
    }
}
