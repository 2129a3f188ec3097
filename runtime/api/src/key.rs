//! Identities: a function's key (`namespace/name`) and its revisions' names (`<name>-<generation>`), formed and
//! parsed in this one place for the node, the operator and the CLI.

use std::fmt;

/// `namespace/name`: a function's identity in a node's table, in metrics and logs, and in a cluster.
///
/// Ordered by namespace, then name, so the functions of one namespace are one range of an ordered map.
///
/// ```
/// let key = wasmfn_api::FunctionKey::new("shop", "orders");
/// assert_eq!(key.to_string(), "shop/orders");
/// assert_eq!(wasmfn_api::FunctionKey::parse("shop/orders"), Some(key));
/// assert_eq!(wasmfn_api::FunctionKey::parse("orders"), None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionKey {
    /// The namespace.
    pub namespace: String,
    /// The function's name.
    pub name: String,
}

impl FunctionKey {
    /// The key of `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> FunctionKey {
        FunctionKey { namespace: namespace.into(), name: name.into() }
    }

    /// Parses `namespace/name`; `None` unless both parts are non-empty and the name has no `/`.
    pub fn parse(s: &str) -> Option<FunctionKey> {
        let (namespace, name) = s.split_once('/')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains('/')).then(|| FunctionKey::new(namespace, name))
    }

    /// The first key of `namespace` in the key order: ranges over one namespace start here.
    pub fn namespace_start(namespace: &str) -> FunctionKey {
        FunctionKey::new(namespace, "")
    }

    /// The name of this function's revision `generation`.
    pub fn revision_name(&self, generation: u64) -> String {
        revision_name(&self.name, generation)
    }
}

impl fmt::Display for FunctionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The name of revision `generation` of the function `name`: `<name>-<generation>` (Knative's form).
/// [`crate::Function::revision_generation`] parses it back.
///
/// ```
/// assert_eq!(wasmfn_api::revision_name("hello", 3), "hello-3");
/// ```
pub fn revision_name(name: &str, generation: u64) -> String {
    format!("{name}-{generation}")
}
