//! The wasmfn node runtime: serves `wasi:http/incoming-handler` components, one fresh instance per request,
//! from a pre-linked component per revision; instance pools with concurrency limits and bounded queues;
//! an on-disk AOT cache; scale to zero; a persisted function table; an admin API and Prometheus metrics.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wasmfn_runtime::{Node, NodeConfig};
//! let node = Node::new(NodeConfig::default())?;
//! node.deploy(wasmfn_api::Function::new("default", "hello", "hello.wasm"), None).await?;
//! let listeners = node.bind().await?;
//! node.serve(listeners, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod admin;
mod aot;
mod blobs;
pub mod cluster;
mod config;
mod counters;
mod engine;
mod events;
mod function;
mod host;
mod ingress;
mod metrics;
mod node;
mod revisions;
mod server;
mod service;
mod table;
mod validate;

pub use aot::Precompiler;
pub use blobs::{Blobs, Digest};
pub use config::{ConfigError, GuestLogConfig, NodeConfig, PoolConfig, RegistryConfig};
pub use engine::AllocatorKind;
pub use host::MemoryLimitExceeded;
pub use node::{Deployed, FunctionInfo, Node};
pub use revisions::{RolloutStatus, TrafficStatus};
pub use server::Listeners;
pub use service::RevisionInfo;
pub use validate::check_component;

use std::path::{Path, PathBuf};

/// Why a deploy, an upload or the node itself failed. Messages name the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest is malformed or breaks a rule.
    #[error(transparent)]
    Manifest(#[from] wasmfn_api::ManifestError),
    /// The node rejects a valid manifest (a limit above the node's, a route taken).
    #[error("invalid manifest: {field}: {message}")]
    Rejected {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// The bytes are not WebAssembly.
    #[error("not a WebAssembly file: {0}")]
    NotWasm(String),
    /// A core module where a component is required.
    #[error(
        "this is a core WebAssembly module, not a component: build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// The component does not parse.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// No `wasi:http/incoming-handler@0.2.x` export.
    #[error("the component does not export wasi:http/incoming-handler@0.2.x (it exports {0})")]
    MissingHandler(String),
    /// An import the host does not provide.
    #[error(
        "the component imports `{0}`, which this host does not provide (it provides the wasi 0.2 cli, clocks, random, io, filesystem, sockets and http interfaces)"
    )]
    UnsupportedImport(String),
    /// Linking against the host failed (an import's type differs from the host's).
    #[error("the component does not link against the host: {0}")]
    Link(String),
    /// Cranelift or deserialization failed.
    #[error("compiling the component failed: {0}")]
    Compile(String),
    /// `sha256:…` names a component the node does not have.
    #[error("component {0} is not in the node's store; upload it first (POST /v1/components)")]
    UnknownComponent(String),
    /// Stored bytes do not match their digest.
    #[error("digest mismatch: expected {expected}, found {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes found.
        actual: String,
    },
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The component file named by a manifest cannot be read.
    #[error("cannot read component file {}: {source}", path.display())]
    ComponentFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A problem in a specific file (the component named by the manifest).
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The problem.
        source: Box<Error>,
    },
    /// The persisted table cannot be read or written.
    #[error("function table: {0}")]
    Table(String),
    /// The node configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// The engine could not be built or a task failed.
    #[error("engine: {0}")]
    Engine(String),
    /// No function of that name.
    #[error("function {0} not found")]
    NotFound(String),
    /// The operation does not apply to the function's current state (a rollback with nothing to go back to).
    #[error("{0}")]
    Conflict(String),
    /// Pulling `spec.image` failed (not found, unauthorized, unreachable, digest mismatch, media type).
    #[error("image: {0}")]
    Image(#[from] wasmfn_oci::Error),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io { path: path.to_owned(), source }
    }

    pub(crate) fn for_file(self, path: &Path) -> Error {
        Error::File { path: path.to_owned(), source: Box::new(self) }
    }

    /// Whether the input was at fault (a rejected deploy) rather than the node (disk, engine, table).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Error::Io { .. } | Error::Engine(_) | Error::Table(_) | Error::Config(_))
    }

    /// A short stable label for metrics and the admin API's `x-wasmfn-error` header.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Manifest(_) | Error::Rejected { .. } => "manifest",
            Error::NotWasm(_) => "not-wasm",
            Error::CoreModule => "core-module",
            Error::InvalidComponent(_) => "invalid-component",
            Error::MissingHandler(_) => "missing-handler",
            Error::UnsupportedImport(_) => "unsupported-import",
            Error::Link(_) => "link",
            Error::Compile(_) => "compile",
            Error::UnknownComponent(_) => "unknown-component",
            Error::DigestMismatch { .. } => "digest-mismatch",
            Error::Io { .. } => "io",
            Error::ComponentFile { .. } => "component-file",
            Error::File { source, .. } => source.kind(),
            Error::Table(_) => "table",
            Error::Config(_) => "config",
            Error::Engine(_) => "engine",
            Error::NotFound(_) => "not-found",
            Error::Conflict(_) => "conflict",
            Error::Image(e) => match e.kind() {
                "not-found" => "image-not-found",
                "unauthorized" => "image-unauthorized",
                "unreachable" => "image-unreachable",
                "tls" => "image-tls",
                "digest-mismatch" => "image-digest-mismatch",
                "media-type" => "image-media-type",
                "reference" => "image-reference",
                _ => "image",
            },
        }
    }
}
