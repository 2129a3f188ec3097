//! Functions announced before they can serve (`wasmfn up` still building or loading them). A request for one
//! waits for its first deploy, at most its `queueTimeout`, as Knative's activator holds requests for a revision
//! that is starting, instead of failing with 404. One whose build failed answers 503 with the build's message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use wasmfn_api::FunctionKey;

/// The pending functions; a version counter wakes waiters on every change.
pub(crate) struct Pending {
    map: Mutex<HashMap<FunctionKey, Entry>>,
    version: watch::Sender<u64>,
}

#[derive(Clone)]
struct Entry {
    queue_timeout: Duration,
    failed: Option<String>,
}

/// What a request for a pending function should do.
pub(crate) enum Wait {
    /// Wait up to this long for the deploy, watching for changes.
    For(Duration, watch::Receiver<u64>),
    /// Its build failed: answer with this.
    Failed(String),
}

impl Default for Pending {
    fn default() -> Self {
        Pending { map: Mutex::default(), version: watch::channel(0).0 }
    }
}

impl Pending {
    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// `key` is coming: requests for it wait up to `queue_timeout`.
    pub(crate) fn announce(&self, key: FunctionKey, queue_timeout: Duration) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Entry { queue_timeout, failed: None });
        self.changed();
    }

    /// `key` failed before its first deploy: requests for it get `message`.
    pub(crate) fn fail(&self, key: &FunctionKey, message: String) {
        if let Some(e) = self.map.lock().unwrap_or_else(|e| e.into_inner()).get_mut(key) {
            e.failed = Some(message);
        }
        self.changed();
    }

    /// `key` is deployed (or no longer wanted): it routes like any other function.
    pub(crate) fn done(&self, key: &FunctionKey) {
        let removed = self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(key).is_some();
        if removed {
            self.changed();
        }
    }

    /// Whether `key` is announced and not deployed yet, and with what failure.
    pub(crate) fn state(&self, key: &FunctionKey) -> Option<Option<String>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(key).map(|e| e.failed.clone())
    }

    /// The pending function a request names by host (`<name>.<namespace>.<domain>`) or path (`/<ns>/<name>/…`),
    /// and what to do about it.
    pub(crate) fn wait(&self, host: Option<&str>, path: &str, domain: &str) -> Option<(FunctionKey, Wait)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return None;
        }
        let by_host = host.map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase()).and_then(|h| {
            let rest = h.strip_suffix(domain)?.strip_suffix('.')?;
            let (name, namespace) = rest.split_once('.')?;
            Some(FunctionKey::new(namespace, name))
        });
        let mut parts = path.trim_start_matches('/').splitn(3, '/');
        let by_path = match (parts.next(), parts.next()) {
            (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => Some(FunctionKey::new(ns, name)),
            _ => None,
        };
        let (key, entry) =
            [by_host, by_path].into_iter().flatten().find_map(|k| map.get(&k).map(|e| (k, e.clone())))?;
        let wait = match entry.failed {
            Some(message) => Wait::Failed(message),
            None => Wait::For(entry.queue_timeout, self.version.subscribe()),
        };
        Some((key, wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_find_a_pending_function_by_host_or_path() {
        let p = Pending::default();
        assert!(p.wait(Some("a.default.fn.test"), "/", "fn.test").is_none());
        p.announce(FunctionKey::new("default", "slow"), Duration::from_secs(30));
        let (key, wait) = p.wait(Some("slow.default.fn.test:8080"), "/x", "fn.test").expect("by host");
        assert!(matches!(wait, Wait::For(d, _) if d == Duration::from_secs(30)));
        assert_eq!(key.to_string(), "default/slow");
        assert!(p.wait(Some("127.0.0.1:8080"), "/default/slow/x", "fn.test").is_some(), "by path");
        assert!(p.wait(Some("127.0.0.1:8080"), "/default/other", "fn.test").is_none());
        p.fail(&key, "syntax error".into());
        assert!(matches!(p.wait(None, "/default/slow", "fn.test"), Some((_, Wait::Failed(m))) if m == "syntax error"));
        p.done(&key);
        assert!(p.wait(None, "/default/slow", "fn.test").is_none());
    }
}
