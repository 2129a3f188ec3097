//! The Kubernetes side of the resource: [`FunctionResource`](crate::FunctionResource) (derived from
//! [`FunctionSpec`]), its status conditions, its CRD, and the conversion to and from the strict [`Function`].

use crate::{Function, FunctionResource, ManifestError, ObjectMeta};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A condition of a function, as in every Kubernetes API: `type` is `BuildSucceeded` or `Ready`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `BuildSucceeded` or `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word saying why, e.g. `BuildFailed`, `Building`, `Serving`.
    #[serde(default)]
    pub reason: String,
    /// What happened, for people: a compiler error, the image that could not be resolved.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` the condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition with `status` `True`/`False`/`Unknown`.
    pub fn new(type_: &str, status: &str, reason: &str, message: impl Into<String>) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            ..Default::default()
        }
    }
}

/// The condition types.
pub mod condition {
    /// The component was built from `spec.source` (or there is nothing to build).
    pub const BUILD_SUCCEEDED: &str = "BuildSucceeded";
    /// Nodes serve the function's current image.
    pub const READY: &str = "Ready";
}

/// What one node serves of a function; each node applies its own entry of `status.nodes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The Kubernetes node name.
    pub node: String,
    /// Whether the node serves the image named by `image`.
    pub ready: bool,
    /// The image the node deployed (or failed to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The revision serving new requests on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Why the node is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` the node last deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl FunctionResource {
    /// The status condition of `type_`, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The image nodes should run with the current spec: what the operator built or resolved for this
    /// generation. `None` while it builds, or when the spec was rejected: nodes keep serving what they have
    /// rather than run a new configuration with an old image.
    pub fn serving_image(&self) -> Option<&str> {
        let status = self.status.as_ref()?;
        let current = status.observed_generation.is_some() && status.observed_generation == self.metadata.generation;
        let built = self.condition(crate::condition::BUILD_SUCCEEDED).is_some_and(|c| c.status == "True");
        if current && built { status.image.as_deref() } else { None }
    }
}

impl From<&Function> for FunctionResource {
    fn from(f: &Function) -> FunctionResource {
        let mut r = FunctionResource::new(&f.metadata.name, f.spec.clone());
        r.metadata.namespace = Some(f.metadata.namespace.clone());
        let map = |m: &std::collections::BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
        r.metadata.labels = map(&f.metadata.labels);
        r.metadata.annotations = map(&f.metadata.annotations);
        r.status = f.status.clone();
        r
    }
}

impl TryFrom<&FunctionResource> for Function {
    type Error = ManifestError;

    /// The strict envelope of a cluster object: its spec must pass the same rules as a manifest file.
    fn try_from(r: &FunctionResource) -> Result<Function, ManifestError> {
        let f = Function {
            api_version: crate::API_VERSION.into(),
            kind: crate::KIND.into(),
            metadata: ObjectMeta {
                name: r.metadata.name.clone().unwrap_or_default(),
                namespace: r.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
                labels: r.metadata.labels.clone().unwrap_or_default(),
                annotations: r.metadata.annotations.clone().unwrap_or_default(),
            },
            spec: r.spec.clone(),
            status: r.status.clone(),
        };
        f.validate()?;
        Ok(f)
    }
}

/// The `Function` CRD, as `deploy/crd.yaml` holds it: the derived schema with formats Kubernetes does not know
/// (`uint32`, `uint64`) removed.
pub fn crd() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(FunctionResource::crd()).expect("a CRD serialises");
    strip_formats(&mut value);
    serde_json::from_value(value).expect("the cleaned CRD deserialises")
}

fn strip_formats(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(format) = map.get("format").and_then(Value::as_str).filter(|f| f.starts_with("uint")) {
                // What serde accepts: without the bound the API server stores values the types reject. (A
                // uint64 is bounded by the API server's own int64.)
                if format == "uint32" {
                    map.entry("maximum").or_insert(Value::from(u32::MAX));
                }
                map.remove("format");
            }
            map.values_mut().for_each(strip_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_formats),
        _ => {}
    }
}

/// Breaks of the structural-schema rules the API server enforces, found in an `openAPIV3Schema`: a `$ref`, or a
/// node without a `type` (and not int-or-string or preserve-unknown-fields). Empty when the schema is valid.
pub fn structural_problems(schema: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        let Some(map) = v.as_object() else { return };
        if map.contains_key("$ref") {
            out.push(format!("{at}: $ref"));
        }
        let typed = map.contains_key("type")
            || map.contains_key("x-kubernetes-int-or-string")
            || map.contains_key("x-kubernetes-preserve-unknown-fields");
        if !typed {
            out.push(format!("{at}: no type"));
        }
        if let Some(props) = map.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                walk(p, format!("{at}.{k}"), out);
            }
        }
        if let Some(items) = map.get("items") {
            walk(items, format!("{at}[]"), out);
        }
        if let Some(extra) = map.get("additionalProperties").filter(|a| a.is_object()) {
            walk(extra, format!("{at}.*"), out);
        }
    }
    let mut out = Vec::new();
    walk(schema, String::new(), &mut out);
    out
}
