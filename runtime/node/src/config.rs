//! Node configuration (`node.toml`). Unknown keys are rejected.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmfn_api::Quantity;

/// Everything a node needs to start. Every field has a default, so an empty file is a valid config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Address of the function ingress.
    pub listen: SocketAddr,
    /// Address of the admin API (deploy, list, metrics). Loopback unless a token is set.
    pub admin_listen: SocketAddr,
    /// Bearer token for the admin API; required when `admin-listen` is not a loopback address.
    /// `WASMFN_ADMIN_TOKEN` overrides it.
    pub admin_token: Option<String>,
    /// `/metrics` without the admin token (it names every tenant's functions): for scrapers that cannot send
    /// one. `WASMFN_PUBLIC_METRICS=true` sets it.
    pub public_metrics: bool,
    /// Where the function table, the component blobs and the AOT cache live.
    pub data_dir: PathBuf,
    /// Where compiled code is cached instead of `<data-dir>/aot`. Nodes may share one: entries are keyed by
    /// component digest and engine, written atomically and checksummed (the containerd shim's containers do).
    pub aot_dir: Option<PathBuf>,
    /// A pod-style node (the containerd shim's): every request goes to this function (`namespace/name`) with
    /// its path unchanged, unless its `Host` names another function; path and route rules are not used.
    pub default_function: Option<String>,
    /// Functions answer on `<function>.<namespace>.<domain>`.
    pub domain: String,
    /// A function with no request for this long drops its compiled code from memory (scale to zero).
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// A connection (ingress or admin) must send a complete request head this soon after it opens or after
    /// its previous request; idle HTTP/2 connections are pinged this often.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Ingress connections open at once; past it, accepting waits until one closes.
    pub max_connections: usize,
    /// How often the console's per-function series (`GET /v1/functions/{ns}/{name}/series`) gets a point; it
    /// keeps one hour.
    #[serde(with = "humantime_serde")]
    pub series_interval: Duration,
    /// Folders whose component files the admin API may deploy by path (`spec.component: /path/x.wasm`).
    /// Empty by default: clients upload components (`POST /v1/components`) and deploy their digest.
    pub component_dirs: Vec<PathBuf>,
    /// The largest `limits.maxRequestBody` a function may have here: a body without a length is held in
    /// memory up to it before admission.
    pub max_request_body: Quantity,
    /// Memory the node hands to guests' linear memories and to buffered bodies and events, over all functions;
    /// past it requests wait in their queue, then get 503. Default: the cgroup's memory limit, else the
    /// machine's memory, less a quarter (at least 256 MiB) for the node itself.
    pub memory_budget: Option<Quantity>,
    /// Percent of the node's instance slots and memory budget one function may hold, so a flood of one
    /// tenant's requests queues behind its own share. 100 on a node that serves one function.
    pub fair_share: u8,
    /// Event deliveries (each holding its event, retrying for up to minutes) the node takes at once from its
    /// broker; one namespace holds at most `fair-share` percent of them.
    pub max_event_deliveries: usize,
    /// Event types whose payloads the broker's type registry never samples: a type, or a prefix ending in `*`.
    pub sensitive_event_types: Vec<String>,
    /// Let guests' outgoing HTTP reach loopback addresses (off: the admin API listens there).
    pub allow_loopback_egress: bool,
    /// Networks (CIDRs) guests may reach although the egress policy prohibits them by default: private
    /// ranges of a cluster's own services, say. Never needed for public addresses.
    pub egress_allow: Vec<ipnet::IpNet>,
    /// DNS servers (`ip:port`) that resolve guests' outgoing host names, dead-letter sinks and NATS servers;
    /// the system's resolver when empty. Each request's name is resolved once, and only the addresses checked
    /// are connected to.
    pub dns_servers: Vec<SocketAddr>,
    /// Instance pool sizing.
    pub pool: PoolConfig,
    /// Guest stdout/stderr rate limit.
    pub guest_log: GuestLogConfig,
    /// Pulling `spec.image` components.
    pub registry: RegistryConfig,
    /// Components (and their compiled code) no function references and the local OCI index does not name are
    /// deleted once they have been unreferenced this long.
    #[serde(with = "humantime_serde")]
    pub gc_grace: Duration,
    /// Revisions kept per function besides those the traffic, a rollout or the ready revision need.
    pub revision_history: usize,
    /// Keep Cranelift's compiled functions on disk (beside the AOT cache) and reuse them in later compiles:
    /// functions from one template share most of their code.
    pub compile_cache: bool,
    /// Past this size the compilation cache is emptied and refills.
    pub compile_cache_max: Quantity,
    /// A file of 32 secret bytes (mode 0600) that keys the AOT cache: entries are tagged with an HMAC-SHA256
    /// under it, and only entries with a valid tag are loaded (others are compiled again). For an `aot-dir` that
    /// parties without the key can write to; the containerd shim makes one. Without it, entries carry a plain
    /// checksum, enough for a cache only the node writes.
    pub aot_key_file: Option<PathBuf>,
}

/// How the node reaches OCI registries, and what it accepts from them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain HTTP; every other one is HTTPS.
    pub insecure: Vec<String>,
    /// A PEM file of extra CA certificates, trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Largest image manifest accepted.
    pub max_manifest: Quantity,
    /// Largest layer accepted (as stored: a gzip layer counts compressed).
    pub max_layer: Quantity,
    /// Largest component accepted (a gzip layer counts inflated).
    pub max_component: Quantity,
    /// Longest one pull (manifest and layer) may take.
    #[serde(with = "humantime_serde")]
    pub pull_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        let l = wasmfn_oci::Limits::default();
        RegistryConfig {
            insecure: Vec::new(),
            ca_file: None,
            max_manifest: Quantity::from_bytes(l.manifest),
            max_layer: Quantity::from_bytes(l.layer),
            max_component: Quantity::from_bytes(l.component),
            pull_timeout: l.pull_timeout,
        }
    }
}

impl RegistryConfig {
    /// The caps as the registry client takes them.
    pub fn limits(&self) -> wasmfn_oci::Limits {
        wasmfn_oci::Limits {
            manifest: self.max_manifest.bytes(),
            layer: self.max_layer.bytes(),
            component: self.max_component.bytes(),
            pull_timeout: self.pull_timeout,
        }
    }
}

/// Sizing of the pooling allocator, which reserves its slots when the node starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Instances that may exist at once on this node, over all functions (the node's capacity).
    pub instances: u32,
    /// Largest linear memory any instance may have; a function's `limits.memory` may not exceed it.
    pub max_memory: Quantity,
    /// `false` skips the pooling allocator and allocates every instance on demand.
    pub enabled: bool,
    /// Instances of functions with `scaling.reuse` that may wait for their next request, over all functions.
    /// They get pool slots of their own, beside `instances`; past this many, an instance is dropped after its
    /// request.
    pub idle_instances: u32,
}

/// Rate limit of guest output, per function, so a noisy guest cannot fill the disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct GuestLogConfig {
    /// Sustained lines per second.
    pub lines_per_second: u32,
    /// Lines allowed in a burst.
    pub burst: u32,
    /// Longer lines are cut to this many bytes.
    pub max_line_bytes: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: ([127, 0, 0, 1], 8080).into(),
            admin_listen: ([127, 0, 0, 1], 8081).into(),
            admin_token: None,
            public_metrics: false,
            data_dir: PathBuf::from("wasmfn-data"),
            aot_dir: None,
            default_function: None,
            domain: "localhost".into(),
            idle_ttl: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            series_interval: Duration::from_secs(30),
            max_connections: 10_000,
            max_request_body: Quantity::from_bytes(256 << 20),
            memory_budget: None,
            fair_share: 50,
            max_event_deliveries: 10_000,
            sensitive_event_types: Vec::new(),
            component_dirs: Vec::new(),
            allow_loopback_egress: false,
            egress_allow: Vec::new(),
            dns_servers: Vec::new(),
            pool: PoolConfig::default(),
            guest_log: GuestLogConfig::default(),
            registry: RegistryConfig::default(),
            gc_grace: Duration::from_secs(3600),
            revision_history: 10,
            compile_cache: true,
            compile_cache_max: Quantity::from_bytes(2 << 30),
            aot_key_file: None,
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { instances: 1000, max_memory: Quantity::from_bytes(512 << 20), enabled: true, idle_instances: 256 }
    }
}

impl Default for GuestLogConfig {
    fn default() -> Self {
        GuestLogConfig { lines_per_second: 100, burst: 200, max_line_bytes: 4096 }
    }
}

/// A config file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read node config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is invalid or has an unknown key.
    #[error("invalid node config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A value breaks a rule.
    #[error("invalid node config: {0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: NodeConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules between fields; `Node::start` calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.revision_history == 0 {
            return Err(ConfigError::Invalid("revision-history must be at least 1".into()));
        }
        if self.pool.instances == 0 {
            return Err(ConfigError::Invalid("pool.instances must be above zero".into()));
        }
        if self.pool.max_memory.bytes() < (1 << 20) {
            return Err(ConfigError::Invalid("pool.max-memory must be at least 1Mi".into()));
        }
        if !(1..=100).contains(&self.fair_share) {
            return Err(ConfigError::Invalid(format!("fair-share is a percentage (1-100), not {}", self.fair_share)));
        }
        if self.max_event_deliveries == 0 {
            return Err(ConfigError::Invalid("max-event-deliveries must be above zero".into()));
        }
        if self.max_request_body.bytes() > self.memory_budget() {
            return Err(ConfigError::Invalid(format!(
                "max-request-body ({} bytes) is larger than the memory budget ({} bytes)",
                self.max_request_body.bytes(),
                self.memory_budget()
            )));
        }
        if let Some(key) = &self.default_function
            && wasmfn_api::FunctionKey::parse(key).is_none()
        {
            return Err(ConfigError::Invalid(format!("default-function `{key}` is not `namespace/name`")));
        }
        if !self.admin_listen.ip().is_loopback() && self.token().is_none() {
            return Err(ConfigError::Invalid(format!(
                "admin-listen {} is not a loopback address: set admin-token (or WASMFN_ADMIN_TOKEN)",
                self.admin_listen
            )));
        }
        Ok(())
    }

    /// The memory budget in bytes: `memory-budget`, else derived from the cgroup limit or the machine.
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget.map_or_else(crate::budget::default_budget, |q| q.bytes())
    }

    /// Whether the admin API may deploy the component file at `path`: it must be inside one of
    /// `component-dirs` once symlinks are resolved. Returns why not.
    pub fn component_path_allowed(&self, path: &std::path::Path) -> Result<(), String> {
        if self.component_dirs.is_empty() {
            return Err("the admin API does not deploy files of the node; upload the component (POST \
                        /v1/components) and deploy its digest, or list its folder in component-dirs"
                .into());
        }
        // A file that does not exist is judged by its name (the deploy then reports it missing).
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let inside =
            self.component_dirs.iter().filter_map(|d| std::fs::canonicalize(d).ok()).any(|d| real.starts_with(&d));
        if inside { Ok(()) } else { Err(format!("{} is not inside any of component-dirs", path.display())) }
    }

    /// Whether `/metrics` is open to anyone on the admin port.
    pub fn metrics_are_public(&self) -> bool {
        self.public_metrics || std::env::var("WASMFN_PUBLIC_METRICS").is_ok_and(|v| v == "true" || v == "1")
    }

    /// The admin token: `WASMFN_ADMIN_TOKEN`, else `admin-token`.
    pub fn token(&self) -> Option<String> {
        std::env::var("WASMFN_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| self.admin_token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_function_must_name_namespace_and_function() {
        let with = |key: &str| NodeConfig { default_function: Some(key.into()), ..NodeConfig::default() }.validate();
        assert!(with("pod/hello").is_ok());
        for bad in ["hello", "/hello", "pod/", "a/b/c"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("namespace/name"), "{bad}: {e}");
        }
        let parsed: NodeConfig = toml::from_str("default-function = \"a/b\"\naot-dir = \"/x\"").unwrap();
        assert_eq!(parsed.aot_dir.as_deref(), Some(Path::new("/x")));
    }
}
