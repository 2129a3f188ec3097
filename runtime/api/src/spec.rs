//! The resource's fields and their rules.

use crate::DURATION_PATTERN;
use crate::traffic::is_dns_label;
use crate::{
    API_VERSION, Condition, KIND, ManifestError, NodeStatus, Quantity, Rollout, Scaling, Source, TrafficTarget, Trigger,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A serverless function: a Wasm component that handles `wasi:http` requests, and how to run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Function {
    /// Always `wasmfn.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Function`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// What to run and how.
    #[serde(default)]
    pub spec: FunctionSpec,
    /// What the node or the operator observed; ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FunctionStatus>,
}

/// The identifying part of a resource, a subset of Kubernetes' `ObjectMeta`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// DNS label (lowercase alphanumerics and `-`, at most 63 characters).
    pub name: String,
    /// DNS label; `default` when absent.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".into()
}

/// The desired state of a function.
///
/// Also the spec of the Kubernetes custom resource `FunctionResource`; `crdgen` generates its CRD from these types.
// Several `printcolumn(type_ = "string")` look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "wasmfn.dev",
    version = "v1alpha1",
    kind = "Function",
    root = "FunctionResource",
    plural = "functions",
    shortname = "fn",
    category = "wasmfn",
    namespaced,
    status = "FunctionStatus",
    derive = "PartialEq",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Latest Revision", type_ = "string", json_path = ".status.latestRevision"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.source) || has(self.build)", "message": "spec.source needs spec.build.template"},
    {"rule": "!has(self.source) || (!has(self.image) && !has(self.component))",
     "message": "set one of spec.source, spec.image and spec.component"},
]))]
pub struct FunctionSpec {
    /// The component: a local `.wasm` path (relative to the manifest's folder) or `sha256:<hex>`, the digest
    /// of a component already uploaded to the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// An OCI reference (`registry/repo:tag` or `…@sha256:…`) to pull the component from. A tag is resolved at
    /// deploy time and the revision records the digest-pinned reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How to build the component from source in the manifest's folder (`wasmfn build`, `wasmfn up`).
    /// Without `component`, the build's output is what runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// Where the source comes from on a cluster: inline code, a Git repository or an S3 bucket. The operator
    /// builds it with `build.template` in a Job and pushes the component to its registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Environment variables the guest sees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Concurrency and queueing per node.
    #[serde(default)]
    pub scaling: Scaling,
    /// Per-request limits.
    #[serde(default)]
    pub limits: Limits,
    /// Extra path prefixes routed to this function, besides `/<namespace>/<name>/` and the host name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// How requests split over the function's revisions; empty sends all of them to the latest revision.
    /// Changing it (like `routes` and `rollout`) creates no revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficTarget>,
    /// Shift the latest revision's share to a new revision gradually, and roll back on errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Event sources: the namespace's broker (filtered), a cron schedule, a NATS JetStream subject. Changing
    /// them creates no revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// Private hosts and networks the function's outgoing HTTP may reach (public ones need no entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<crate::Egress>,
}

impl FunctionSpec {
    /// The part of the spec a revision captures: everything but the routing (`routes`, `traffic`, `rollout`,
    /// `triggers`).
    pub fn revision_config(&self) -> FunctionSpec {
        FunctionSpec { routes: Vec::new(), traffic: Vec::new(), rollout: None, triggers: Vec::new(), ..self.clone() }
    }
}

/// Building the component from source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Build {
    /// The compiler template: `rust`, `js`, `python` (a folder of `compiler-templates/`).
    pub template: String,
    /// The handler as Kubeless names it, `file.function` (`hello.foo`: `foo` in `hello.js` or `hello.py`).
    /// Without it the template looks for `handler` (Kubeless), then `main` (Kyma), then its other styles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
}

impl Build {
    /// The file (without extension, relative to the function folder) and the function `handler` names.
    pub fn handler_parts(&self) -> Option<(&str, &str)> {
        self.handler.as_deref()?.rsplit_once('.')
    }
}

/// Checks a `file.function` handler: a relative path of plain names, and an identifier.
pub(crate) fn validate_handler(handler: &str) -> Result<(), String> {
    let Some((file, function)) = handler.rsplit_once('.') else {
        return Err(format!("`{handler}` is not `file.function` (e.g. `handler.main`)"));
    };
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    let segment = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    };
    if handler.len() > 256 || !ident(function) || !file.split('/').all(segment) {
        return Err(format!(
            "`{handler}` is not `file.function`: a relative file name without extension (letters, digits, `_`, `-`, \
             `/` between folders) and a function name"
        ));
    }
    Ok(())
}

/// One environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    #[serde(default)]
    pub value: String,
}

/// Limits applied to every request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock limit of one request; past it the guest is interrupted and the client gets 504.
    #[schemars(with = "String", regex(pattern = DURATION_PATTERN))]
    #[serde(default = "Limits::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Linear memory one instance may grow to (Kubernetes quantity, e.g. `128Mi`).
    #[serde(default = "Limits::default_memory")]
    pub memory: Quantity,
    /// Largest request body accepted; larger ones get 413 without reaching the guest.
    #[serde(default = "Limits::default_max_request_body")]
    pub max_request_body: Quantity,
}

impl Limits {
    fn default_timeout() -> Duration {
        Duration::from_secs(300)
    }
    fn default_memory() -> Quantity {
        Quantity::from_bytes(128 << 20)
    }
    fn default_max_request_body() -> Quantity {
        Quantity::from_bytes(10 << 20)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Self::default_timeout(),
            memory: Self::default_memory(),
            max_request_body: Self::default_max_request_body(),
        }
    }
}

/// An extra path prefix served by the function. The prefix is stripped before the guest sees the path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Absolute path prefix, e.g. `/api/hello`.
    pub path: String,
}

/// What was observed about a function: by a node (`wasmfn up`, the admin API) or, on a cluster, by the operator
/// (build, digest, conditions) and by every node serving it (`nodes`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// Where the function answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The revision serving new requests, `<name>-<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<String>,
    /// The component's digest, `sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The digest-pinned image nodes run (`registry/repo@sha256:…`): the build's push, or `spec.image` resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `BuildSucceeded` and `Ready`, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The last build from `spec.source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildStatus>,
    /// What each node serves; every node applies its own entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<NodeStatus>,
    /// Nodes serving the current image over nodes reporting, `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_nodes: Option<String>,
}

/// A build of `spec.source` by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildStatus {
    /// Hash of the source, the template and the builder: an unchanged hash is not rebuilt.
    pub source_hash: String,
    /// The build Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The pushed, digest-pinned image once the build succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Why the build of this hash failed; a failed hash is not built again until the source changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Longest accepted `spec.limits.timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest accepted `spec.scaling.queueTimeout`.
pub const MAX_QUEUE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Function {
    /// Checks the rules serde cannot express. Parsing functions call it; call it after building a value by hand.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.api_version != API_VERSION {
            return Err(ManifestError::invalid(
                "apiVersion",
                format!("expected `{API_VERSION}`, found `{}`", self.api_version),
            ));
        }
        if self.kind != KIND {
            return Err(ManifestError::invalid("kind", format!("expected `{KIND}`, found `{}`", self.kind)));
        }
        for (field, value) in [("metadata.name", &self.metadata.name), ("metadata.namespace", &self.metadata.namespace)]
        {
            if !is_dns_label(value) {
                return Err(ManifestError::invalid(
                    field,
                    format!("`{value}` is not a DNS label (lowercase letters, digits and `-`, at most 63)"),
                ));
            }
        }
        if let Some(build) = &self.spec.build {
            let t = &build.template;
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                return Err(ManifestError::invalid("spec.build.template", format!("`{t}` is not a template name")));
            }
            if let Some(h) = &build.handler {
                validate_handler(h).map_err(|m| ManifestError::invalid("spec.build.handler", m))?;
            }
        }
        if let Some(source) = &self.spec.source {
            source.validate(self.spec.build.is_some())?;
            if self.spec.image.is_some() || self.spec.component.as_deref().is_some_and(|c| !c.is_empty()) {
                return Err(ManifestError::invalid(
                    "spec.source",
                    "set one of `source`, `image` and `component`: a source is built into the image",
                ));
            }
        }
        if let Some(image) = &self.spec.image {
            if image.is_empty() || image.contains(char::is_whitespace) {
                return Err(ManifestError::invalid("spec.image", format!("`{image}` is not an image reference")));
            }
            // A deployed revision records both: the pinned image and the component digest it held. Re-applying
            // that record is fine; an image next to a component file is ambiguous.
            if self.spec.component.as_deref().is_some_and(|c| !c.is_empty() && !c.starts_with("sha256:")) {
                return Err(ManifestError::invalid(
                    "spec.image",
                    "set either `component` or `image`, not both (a `sha256:` component may pin the image's content)",
                ));
            }
        }
        match self.spec.component.as_deref() {
            None | Some("") if self.spec.build.is_some() || self.spec.image.is_some() => {}
            None | Some("") => {
                return Err(ManifestError::invalid(
                    "spec.component",
                    "a component, an image or a `build` to make one is required",
                ));
            }
            Some(c) if c.starts_with("sha256:") => {
                let hex = &c[7..];
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                    return Err(ManifestError::invalid("spec.component", format!("`{c}` is not a sha256 digest")));
                }
            }
            Some(_) => {}
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, var) in self.spec.env.iter().enumerate() {
            let ok = !var.name.is_empty() && !var.name.contains('=') && !var.name.contains('\0');
            if !ok {
                return Err(ManifestError::invalid(
                    format!("spec.env[{i}].name"),
                    format!("`{}` is not a valid name", var.name),
                ));
            }
            if !seen.insert(&var.name) {
                return Err(ManifestError::invalid(
                    format!("spec.env[{i}].name"),
                    format!("`{}` is set twice", var.name),
                ));
            }
        }
        self.spec.scaling.validate(&self.spec.limits)?;
        if let Some(egress) = &self.spec.egress {
            egress.validate()?;
        }
        let l = &self.spec.limits;
        if l.timeout.is_zero() || l.timeout > MAX_TIMEOUT {
            return Err(ManifestError::invalid("spec.limits.timeout", "must be above zero and at most 24h"));
        }
        if l.memory.bytes() < (1 << 20) {
            return Err(ManifestError::invalid("spec.limits.memory", "must be at least 1Mi"));
        }
        let mut paths = std::collections::BTreeSet::new();
        for (i, r) in self.spec.routes.iter().enumerate() {
            let field = format!("spec.routes[{i}].path");
            if !r.path.starts_with('/') || r.path.len() < 2 {
                return Err(ManifestError::invalid(
                    field,
                    format!("`{}` must start with `/` and name a prefix", r.path),
                ));
            }
            if r.path.contains(['?', '#', ' ']) || r.path.contains("//") {
                return Err(ManifestError::invalid(field, format!("`{}` is not a plain path prefix", r.path)));
            }
            if !paths.insert(r.path.trim_end_matches('/')) {
                return Err(ManifestError::invalid(field, format!("`{}` is listed twice", r.path)));
            }
        }
        self.validate_traffic()?;
        crate::events::validate_triggers(&self.spec.triggers)
    }
}
