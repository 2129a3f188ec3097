//! The function table: which revision serves each function and route, swapped atomically on every change
//! and persisted to `<data>/functions.json` so a restarted node serves the same functions at once.

use crate::function::Revision;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;
use wasmfn_api::Function;

/// An immutable snapshot; requests route through the snapshot they loaded.
#[derive(Default, Clone)]
pub(crate) struct Table {
    pub(crate) functions: BTreeMap<String, Arc<Revision>>,
    /// Extra path prefixes, longest first.
    routes: Vec<(String, Arc<Revision>)>,
}

/// Where a request goes and how much of its path to strip.
pub(crate) struct Routed {
    pub(crate) revision: Arc<Revision>,
    pub(crate) strip: usize,
}

impl Table {
    pub(crate) fn with(&self, revision: Arc<Revision>) -> Table {
        let mut functions = self.functions.clone();
        functions.insert(revision.key(), revision);
        Table::from_functions(functions)
    }

    pub(crate) fn without(&self, key: &str) -> Table {
        let mut functions = self.functions.clone();
        functions.remove(key);
        Table::from_functions(functions)
    }

    pub(crate) fn from_functions(functions: BTreeMap<String, Arc<Revision>>) -> Table {
        let mut routes: Vec<(String, Arc<Revision>)> = functions
            .values()
            .flat_map(|r| {
                r.function
                    .spec
                    .routes
                    .iter()
                    .map(move |route| (route.path.trim_end_matches('/').to_string(), r.clone()))
            })
            .collect();
        routes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Table { functions, routes }
    }

    /// The function that already claims `path` as a route, other than `key`.
    pub(crate) fn route_owner(&self, path: &str, key: &str) -> Option<String> {
        let path = path.trim_end_matches('/');
        self.routes.iter().find(|(p, r)| p == path && r.key() != key).map(|(_, r)| r.key())
    }

    /// Routes by `Host: <function>.<namespace>.<domain>`, then by `/<namespace>/<function>/…`, then by the
    /// functions' own route prefixes.
    pub(crate) fn route(&self, host: Option<&str>, path: &str, domain: &str) -> Option<Routed> {
        if let Some(host) = host {
            let host = host
                .rsplit_once(':')
                .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                .map_or(host, |(h, _)| h);
            // Host names are case-insensitive and may end with the root's dot.
            let host = host.strip_suffix('.').unwrap_or(host);
            let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                host.to_ascii_lowercase().into()
            } else {
                host.into()
            };
            if let Some(labels) = host.strip_suffix(domain).and_then(|h| h.strip_suffix('.'))
                && let Some((function, namespace)) = labels.split_once('.')
                && let Some(r) = self.functions.get(&format!("{namespace}/{function}"))
            {
                return Some(Routed { revision: r.clone(), strip: 0 });
            }
        }
        let mut parts = path.splitn(4, '/');
        if let (Some(""), Some(namespace), Some(function)) = (parts.next(), parts.next(), parts.next())
            && let Some(r) = self.functions.get(&format!("{namespace}/{function}"))
        {
            return Some(Routed { revision: r.clone(), strip: 2 + namespace.len() + function.len() });
        }
        self.routes
            .iter()
            .find(|(prefix, _)| matches_prefix(path, prefix))
            .map(|(prefix, r)| Routed { revision: r.clone(), strip: prefix.len() })
    }
}

fn matches_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The persisted form of the table.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Persisted {
    pub(crate) functions: Vec<PersistedRevision>,
}

/// One function's current revision, as persisted.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PersistedRevision {
    pub(crate) generation: u64,
    #[serde(with = "humantime_serde")]
    pub(crate) created: SystemTime,
    /// The manifest with `spec.component` pinned to `sha256:…`.
    pub(crate) function: Function,
}

impl Persisted {
    pub(crate) fn of(table: &Table) -> Persisted {
        Persisted {
            functions: table
                .functions
                .values()
                .map(|r| PersistedRevision {
                    generation: r.generation,
                    created: r.created,
                    function: r.function.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_routing_ignores_case_port_and_root_dot() {
        use crate::function::{FunctionStats, Revision};
        let metrics = crate::metrics::Metrics::new();
        let f = wasmfn_api::Function::new("team", "hello", &format!("sha256:{}", "a".repeat(64)));
        let stats = Arc::new(FunctionStats::new("team", "hello", &metrics, &Default::default()));
        let digest = crate::Digest::of(b"x");
        let rev = Revision::new(f, digest, 1, SystemTime::now(), stats, std::time::Instant::now());
        let table = Table::default().with(Arc::new(rev));
        for host in ["hello.team.fn.test", "Hello.TEAM.fn.test:8080", "hello.team.fn.test.", "[::1]:80"] {
            let routed = table.route(Some(host), "/x", "fn.test");
            assert_eq!(routed.is_some(), !host.starts_with('['), "{host}");
        }
        assert_eq!(table.route(None, "/team/hello/a", "fn.test").unwrap().strip, "/team/hello".len());
        assert!(table.route(None, "/team/hellox/a", "fn.test").is_none());
    }

    #[test]
    fn prefixes() {
        assert!(matches_prefix("/api", "/api"));
        assert!(matches_prefix("/api/x", "/api"));
        assert!(!matches_prefix("/apix", "/api"));
    }
}
