//! Identities: a function's key (`namespace/name`) and its revisions' names (`<name>-<generation>`), formed and
//! parsed in this one place for the node, the operator and the CLI.

use std::fmt;

/// `namespace/name`: a function's identity in a node's table, in metrics and logs, and in a cluster.
///
/// Ordered as the text `namespace/name` is, so tables and listings keep the order they had when keys were
/// strings; the functions of one namespace are still one range of an ordered map (namespaces hold no `/`).
///
/// ```
/// let key = wasmfn_api::FunctionKey::new("shop", "orders");
/// assert_eq!(key.to_string(), "shop/orders");
/// assert_eq!(wasmfn_api::FunctionKey::parse("shop/orders"), Some(key));
/// assert_eq!(wasmfn_api::FunctionKey::parse("orders"), None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
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

impl Ord for FunctionKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let text = |k: &FunctionKey| {
            let (ns, name) = (k.namespace.as_bytes().iter(), k.name.as_bytes().iter());
            ns.chain(b"/").chain(name).copied().collect::<Vec<u8>>()
        };
        // Byte order of `namespace/name`, without allocating in the common case of different namespaces.
        match (self.namespace.strip_prefix(&*other.namespace), other.namespace.strip_prefix(&*self.namespace)) {
            (Some(""), _) => self.name.cmp(&other.name),
            (None, None) => self.namespace.cmp(&other.namespace),
            _ => text(self).cmp(&text(other)),
        }
    }
}

impl PartialOrd for FunctionKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_as_their_text() {
        let keys = ["team/b", "team-a/a", "team/a", "t/z", "team/", "teamx/a", "a/b-c", "a-b/c"];
        let mut as_keys: Vec<FunctionKey> = keys
            .iter()
            .map(|k| {
                FunctionKey::parse(k).unwrap_or_else(|| {
                    let (ns, name) = k.split_once('/').unwrap();
                    FunctionKey::new(ns, name)
                })
            })
            .collect();
        let mut as_text: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        as_keys.sort();
        as_text.sort();
        assert_eq!(as_keys.iter().map(ToString::to_string).collect::<Vec<_>>(), as_text);
        // One namespace is one range.
        let start = FunctionKey::namespace_start("team");
        let team: Vec<String> = as_keys
            .iter()
            .filter(|k| **k >= start)
            .take_while(|k| k.namespace == "team")
            .map(ToString::to_string)
            .collect();
        assert_eq!(team, ["team/", "team/a", "team/b"]);
    }
}
