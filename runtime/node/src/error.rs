//! Why a deploy, an upload or the node itself failed. Messages name the problem; the underlying error (I/O,
//! wasmtime, parser, task) stays reachable as the error's `source`.

use std::path::{Path, PathBuf};

/// An underlying error of another library (wasmtime's errors are not `std::error::Error` themselves).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error whose message leaves out its causes, with them, on one line (`outer: inner: …`). The node's own
/// errors name their cause in their message already.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// A wasmtime error as a [`Cause`], keeping its chain.
pub(crate) fn cause(e: wasmtime::Error) -> Cause {
    e.into_boxed_dyn_error()
}

/// Why a deploy, an upload or the node itself failed.
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
    /// A revision named by the traffic or a rollback does not exist (any more).
    #[error("{}revision `{revision}` does not exist; {function} has {}", field.as_ref().map(|f| format!("invalid manifest: {f}: ")).unwrap_or_default(), have.join(", "))]
    UnknownRevision {
        /// The manifest field that names it, when it came from a manifest.
        field: Option<String>,
        /// The name asked for.
        revision: String,
        /// The function's name.
        function: String,
        /// The revisions it has.
        have: Vec<String>,
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
    #[error("invalid component: {source}")]
    InvalidComponent {
        /// The parser's error.
        #[source]
        source: wasmparser::BinaryReaderError,
    },
    /// No `wasi:http/incoming-handler@0.2.x` export.
    #[error("the component does not export wasi:http/incoming-handler@0.2.x (it exports {0})")]
    MissingHandler(String),
    /// The handler export exists but does not have the type the host calls.
    #[error("the component's wasi:http/incoming-handler export cannot be used: {}", chain(source.as_ref()))]
    HandlerType {
        /// wasmtime's error.
        #[source]
        source: Cause,
    },
    /// An import the host does not provide.
    #[error(
        "the component imports `{0}`, which this host does not provide (it provides the wasi 0.2 cli, clocks, random, io, filesystem, sockets and http interfaces)"
    )]
    UnsupportedImport(String),
    /// Linking against the host failed (an import's type differs from the host's).
    #[error("the component does not link against the host: {}", chain(source.as_ref()))]
    Link {
        /// wasmtime's error.
        #[source]
        source: Cause,
    },
    /// Cranelift or deserialization failed.
    #[error("compiling the component failed: {}", chain(source.as_ref()))]
    Compile {
        /// wasmtime's error.
        #[source]
        source: Cause,
    },
    /// Compiled code handed to the node cannot be loaded by its engine.
    #[error("precompiled code for {digest} cannot be loaded: {}", chain(source.as_ref()))]
    Precompiled {
        /// The component the code claims to be.
        digest: String,
        /// Why it cannot be loaded.
        #[source]
        source: Cause,
    },
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
    /// The persisted table does not parse or cannot be encoded.
    #[error("function table: {}: {source}", path.display())]
    TableFormat {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The persisted table parses but holds something the node cannot serve.
    #[error("function table: {}: {message}", path.display())]
    TableEntry {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The persisted table was written by a newer node.
    #[error("function table: {}: format version {found} is newer than this node's ({supported}); upgrade the node", path.display())]
    TableVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this node reads.
        supported: u32,
    },
    /// The node configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The engine could not be built.
    #[error("engine: {what}: {}", chain(source.as_ref()))]
    Engine {
        /// What failed.
        what: &'static str,
        /// Why.
        #[source]
        source: Cause,
    },
    /// A blocking task the node started panicked or was cancelled.
    #[error("engine: {what} task failed: {source}")]
    Task {
        /// What the task did.
        what: &'static str,
        /// tokio's error.
        source: tokio::task::JoinError,
    },
    /// A rule the node keeps broke (a bug): the operation is refused rather than serving a wrong state.
    #[error("internal error: {0}")]
    Invariant(String),
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

    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Error {
        move |source| Error::Task { what, source }
    }

    /// Whether the input was at fault (a rejected deploy) rather than the node (disk, engine, table) or a
    /// registry that is down (a deploy that may succeed later: cluster mode retries it).
    pub fn is_client_error(&self) -> bool {
        match self {
            Error::Image(e) => !self.is_upstream_outage() && e.kind() != "io",
            Error::Io { .. }
            | Error::Engine { .. }
            | Error::Task { .. }
            | Error::Invariant(_)
            | Error::TableFormat { .. }
            | Error::TableEntry { .. }
            | Error::TableVersion { .. }
            | Error::Config(_) => false,
            Error::File { source, .. } => source.is_client_error(),
            _ => true,
        }
    }

    /// A registry that could not be reached or answered with a server error: nobody's input was wrong, and the
    /// same deploy may succeed later (the admin API answers 502, cluster mode retries with backoff).
    pub fn is_upstream_outage(&self) -> bool {
        matches!(self, Error::Image(e) if matches!(e.kind(), "unreachable" | "registry"))
    }

    /// A short stable label for metrics and the admin API's `x-wasmfn-error` header.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Manifest(_) | Error::Rejected { .. } => "manifest",
            Error::UnknownRevision { .. } => "unknown-revision",
            Error::NotWasm(_) => "not-wasm",
            Error::CoreModule => "core-module",
            Error::InvalidComponent { .. } => "invalid-component",
            Error::MissingHandler(_) | Error::HandlerType { .. } => "missing-handler",
            Error::UnsupportedImport(_) => "unsupported-import",
            Error::Link { .. } => "link",
            Error::Compile { .. } | Error::Precompiled { .. } => "compile",
            Error::UnknownComponent(_) => "unknown-component",
            Error::DigestMismatch { .. } => "digest-mismatch",
            Error::Io { .. } => "io",
            Error::ComponentFile { .. } => "component-file",
            Error::File { source, .. } => source.kind(),
            Error::TableFormat { .. } | Error::TableEntry { .. } | Error::TableVersion { .. } => "table",
            Error::Config(_) => "config",
            Error::Engine { .. } | Error::Task { .. } => "engine",
            Error::Invariant(_) => "internal",
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

#[cfg(test)]
mod tests {
    #[test]
    fn registry_outages_are_not_the_clients_fault() {
        let unreachable = Error::Image(wasmfn_oci::Error::Unreachable {
            registry: "r".into(),
            reference: "r/x:1".into(),
            message: "connection refused".into(),
        });
        assert!(!unreachable.is_client_error() && unreachable.is_upstream_outage());
        let missing = Error::Image(wasmfn_oci::Error::NotFound { registry: "r".into(), reference: "r/x:1".into() });
        assert!(missing.is_client_error() && !missing.is_upstream_outage());
        let big = Error::Image(wasmfn_oci::Error::TooLarge { what: "the layer".into(), limit: 1 });
        assert!(big.is_client_error());
    }

    use super::*;

    #[test]
    fn causes_are_kept_and_printed_once() {
        let e = Error::Compile { source: cause(wasmtime::format_err!("inner").context("outer")) };
        let text = e.to_string();
        assert!(text.contains("outer") && text.contains("inner"), "{text}");
        assert_eq!(text.matches("inner").count(), 1, "{text}");
        let source = std::error::Error::source(&e).expect("the cause is kept");
        assert!(chain(source).contains("inner"));
    }

    #[test]
    fn unknown_revisions_read_the_same_from_a_manifest_and_a_rollback() {
        let e = |field: Option<&str>| Error::UnknownRevision {
            field: field.map(String::from),
            revision: "hello-7".into(),
            function: "hello".into(),
            have: vec!["hello-1".into(), "hello-2".into()],
        };
        assert_eq!(
            e(Some("spec.traffic[0].revisionName")).to_string(),
            "invalid manifest: spec.traffic[0].revisionName: revision `hello-7` does not exist; hello has hello-1, hello-2"
        );
        assert_eq!(e(None).to_string(), "revision `hello-7` does not exist; hello has hello-1, hello-2");
        assert_eq!(e(None).kind(), e(Some("x")).kind());
    }
}
