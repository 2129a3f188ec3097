//! The `Function` resource (`apiVersion: wasmfn.dev/v1alpha1`, `kind: Function`).
//!
//! This crate is the single definition of the schema: `wasmfn up` reads it from YAML files, the node's admin
//! API reads it from JSON or YAML, and the operator reads it from the cluster. Parsing is strict: unknown
//! fields are rejected with the path of the offending field.
//!
//! ```
//! let f = wasmfn_api::Function::from_yaml(r#"
//! apiVersion: wasmfn.dev/v1alpha1
//! kind: Function
//! metadata: { name: hello }
//! spec:
//!   component: ./hello.wasm
//!   scaling: { maxConcurrency: 8, queueTimeout: 2s }
//!   limits: { memory: 64Mi }
//! "#).unwrap();
//! assert_eq!(f.metadata.namespace, "default");
//! assert_eq!(f.spec.limits.memory.bytes(), 64 << 20);
//! ```

mod egress;
mod events;
mod key;
mod quantity;
mod resource;
mod scaling;
mod source;
mod spec;
mod traffic;

pub use egress::{Egress, EgressRule, MAX_EGRESS_RULES};
pub use events::{
    BackoffPolicy, BrokerTrigger, CronSource, Delivery, Filter, NatsSink, NatsSource, Sink, Trigger, parse_schedule,
};
pub use key::{FunctionKey, revision_name};
pub use quantity::Quantity;
pub use resource::{Condition, NodeStatus, condition, crd, structural_problems};
pub use scaling::{MAX_IDLE, MAX_IDLE_TIMEOUT, Reuse, Scaling};
pub use source::{GitSource, INLINE_DIR, InlineSource, S3Source, SecretRef, Source};
pub use spec::*;
pub use traffic::{MAX_ROLLOUT, Rollout, TrafficTarget};

use serde::de::DeserializeOwned;

/// The API group and version of every wasmfn resource.
pub const API_VERSION: &str = "wasmfn.dev/v1alpha1";
/// What a duration looks like in a manifest (humantime: `10s`, `1h 30m`, `250ms`).
pub(crate) const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*(nsec|ns|usec|us|µs|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)\s*)+$";

/// The kind of the function resource.
pub const KIND: &str = "Function";

/// Why a manifest was rejected. The message names the field or the rule.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The document does not parse, or a field is unknown or has the wrong type.
    #[error("invalid manifest at `{path}`: {message}")]
    Parse {
        /// Dotted path of the field, e.g. `spec.scaling.maxConcurency`, or `.` for the document.
        path: String,
        /// The parser's explanation.
        message: String,
    },
    /// The document parses but breaks a rule (a name, a limit, a route).
    #[error("invalid manifest: {field}: {message}")]
    Invalid {
        /// The field that breaks the rule.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ManifestError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError::Invalid { field: field.into(), message: message.into() }
    }
}

fn parse_doc<'de, T: DeserializeOwned, D: serde::Deserializer<'de>>(de: D) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ManifestError::Parse { path, message: e.into_inner().to_string() }
    })
}

impl Function {
    /// Parses and validates one `Function` from YAML (JSON is YAML too).
    pub fn from_yaml(text: &str) -> Result<Function, ManifestError> {
        let mut all = Self::all_from_yaml(text)?;
        match all.len() {
            1 => Ok(all.remove(0)),
            0 => Err(ManifestError::invalid(".", "the document is empty")),
            n => Err(ManifestError::invalid(".", format!("expected one Function, found {n} documents"))),
        }
    }

    /// Parses and validates every `Function` in a multi-document YAML stream (`---` separated).
    pub fn all_from_yaml(text: &str) -> Result<Vec<Function>, ManifestError> {
        let mut out = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let f: Function = parse_doc(doc)?;
            f.validate()?;
            out.push(f);
        }
        Ok(out)
    }

    /// Parses and validates one `Function` from JSON.
    pub fn from_json(text: &str) -> Result<Function, ManifestError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let f: Function = parse_doc(&mut de)?;
        f.validate()?;
        Ok(f)
    }

    /// A new function with default settings for `component`.
    pub fn new(namespace: &str, name: &str, component: &str) -> Function {
        Function {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            metadata: ObjectMeta { name: name.into(), namespace: namespace.into(), ..Default::default() },
            spec: FunctionSpec { component: Some(component.into()), ..Default::default() },
            status: None,
        }
    }

    /// `namespace/name`, the function's key in a node's table.
    pub fn key(&self) -> FunctionKey {
        FunctionKey::new(&self.metadata.namespace, &self.metadata.name)
    }

    /// The name of this function's revision `generation`, `<name>-<generation>`.
    pub fn revision_name(&self, generation: u64) -> String {
        revision_name(&self.metadata.name, generation)
    }
}

#[cfg(test)]
mod tests;
