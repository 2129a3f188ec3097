//! Functions that do not parse: reported on the object itself, cleaned up on deletion, never fatal.

use crate::{Context, Error, FINALIZER, build};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use serde_json::json;
use wasmfn_api::{FunctionKey, FunctionResource};

/// Reports `invalid` (once per distinct message), or finishes its deletion.
pub async fn report(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let (Some(name), Some(ns)) = (meta.name.clone(), meta.namespace.clone()) else {
        return Ok(Action::await_change());
    };
    let resource = ApiResource::erase::<FunctionResource>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &resource);
    if meta.deletion_timestamp.is_some() {
        build::cleanup(ctx, &ns, &name).await?;
        let rest: Vec<&String> = meta.finalizers.iter().flatten().filter(|f| *f != FINALIZER).collect();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": meta.resource_version}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        return Ok(Action::await_change());
    }
    let message = format!("the object does not parse: {}", invalid.error);
    let current = api.get(&name).await?;
    let conditions = current.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let reported =
        conditions.iter().any(|c| c["type"] == "Ready" && c["reason"] == "InvalidSpec" && c["message"] == message);
    if reported {
        return Ok(Action::await_change());
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let condition = |type_: &str| {
        json!({"type": type_, "status": "False", "reason": "InvalidSpec", "message": message,
               "lastTransitionTime": now, "observedGeneration": meta.generation})
    };
    let patch = json!({"status": {"observedGeneration": meta.generation,
                                  "conditions": [condition("BuildSucceeded"), condition("Ready")]}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let reference = ObjectReference {
        api_version: Some(wasmfn_api::API_VERSION.into()),
        kind: Some(wasmfn_api::KIND.into()),
        name: Some(name.clone()),
        namespace: Some(ns.clone()),
        uid: meta.uid.clone(),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidSpec".into(),
        note: Some(message.chars().take(1000).collect()),
        action: "InvalidSpec".into(),
        secondary: None,
    };
    let key = FunctionKey::new(ns, name);
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(function = %key, error = %e, "publishing an event failed");
    }
    tracing::warn!(function = %key, %message, "invalid Function");
    Ok(Action::await_change())
}
