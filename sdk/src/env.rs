//! Configuration: environment variables and what the runtime says about the running function.
//!
//! The wasmfn runtime sets `WASMFN_FUNCTION_NAME`, `WASMFN_FUNCTION_NAMESPACE`, `WASMFN_REVISION`,
//! `WASMFN_TIMEOUT` (whole seconds) and `WASMFN_MEMORY_LIMIT` (a Kubernetes quantity such as `128Mi`) in every
//! instance, next to the function's own `spec.env`.

use std::time::Duration;

/// The value of the environment variable `name`, or `None` if it is unset or not UTF-8.
///
/// ```
/// let greeting = wasmfn_sdk::env::var("GREETING").unwrap_or_else(|| "Hello".into());
/// # let _ = greeting;
/// ```
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// What the runtime says about the running function; see [`function`].
///
/// ```
/// let info = wasmfn_sdk::function();
/// println!("{}/{} rev {} (timeout {:?}, memory {})", info.namespace, info.name, info.revision, info.timeout,
///     info.memory_limit);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// `WASMFN_FUNCTION_NAME`; empty outside wasmfn.
    pub name: String,
    /// `WASMFN_FUNCTION_NAMESPACE`; `default` when unset.
    pub namespace: String,
    /// `WASMFN_REVISION`, e.g. `hello-3`; empty outside wasmfn.
    pub revision: String,
    /// `WASMFN_TIMEOUT`: how long one request may run; the runtime's default of 300 s when unset or invalid.
    pub timeout: Duration,
    /// `WASMFN_MEMORY_LIMIT`: the linear-memory cap of one instance as a Kubernetes quantity; `128Mi` (the
    /// runtime's default) when unset.
    pub memory_limit: String,
}

/// Reads [`FunctionInfo`] from the environment the runtime sets.
///
/// ```
/// let info = wasmfn_sdk::function();
/// assert!(info.timeout.as_secs() > 0);
/// ```
pub fn function() -> FunctionInfo {
    let timeout = var("WASMFN_TIMEOUT").and_then(|s| s.trim().parse().ok()).unwrap_or(300);
    FunctionInfo {
        name: var("WASMFN_FUNCTION_NAME").unwrap_or_default(),
        namespace: var("WASMFN_FUNCTION_NAMESPACE").unwrap_or_else(|| "default".into()),
        revision: var("WASMFN_REVISION").unwrap_or_default(),
        timeout: Duration::from_secs(timeout),
        memory_limit: var("WASMFN_MEMORY_LIMIT").unwrap_or_else(|| "128Mi".into()),
    }
}
