//! The registry client's errors.

use std::path::PathBuf;

/// What went wrong; each names the registry and reference where it has them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not parse.
    #[error("invalid image reference `{reference}`: {message}")]
    Reference {
        /// What was given.
        reference: String,
        /// Why it is invalid.
        message: String,
    },
    /// The registry has no such repository, tag or blob.
    #[error("{reference}: not found in {registry}")]
    NotFound {
        /// The registry.
        registry: String,
        /// The reference.
        reference: String,
    },
    /// The registry refused the credentials (or asked for some).
    #[error("{reference}: {registry} refused the credentials: {message}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The reference.
        reference: String,
        /// The registry's answer.
        message: String,
    },
    /// The registry could not be reached (after retries).
    #[error("{reference}: registry {registry} is unreachable: {message}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// The reference.
        reference: String,
        /// The cause.
        message: String,
    },
    /// The TLS handshake failed (an unknown CA, a name mismatch).
    #[error("{reference}: TLS to {registry} failed: {message} (trust its CA with --ca-file or registry.ca-file)")]
    Tls {
        /// The registry.
        registry: String,
        /// The reference.
        reference: String,
        /// The cause.
        message: String,
    },
    /// Content does not match its digest.
    #[error("{reference}: digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// Which blob.
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// The manifest or layer is not a form wasmfn reads.
    #[error("wrong media type: {0}")]
    MediaType(String),
    /// The bytes are not a Wasm component.
    #[error("not a Wasm component")]
    NotAComponent,
    /// Malformed content.
    #[error("{0}")]
    Invalid(String),
    /// A manifest, layer or component over its size limit (`Limits`).
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// Any other registry error.
    #[error("{reference}: {registry}: {message}")]
    Registry {
        /// The registry.
        registry: String,
        /// The reference.
        reference: String,
        /// The error.
        message: String,
    },
    /// Reading a CA file failed.
    #[error("{path}: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    /// A short label for metrics and the admin API.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Reference { .. } => "reference",
            Error::NotFound { .. } => "not-found",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Unreachable { .. } => "unreachable",
            Error::Tls { .. } => "tls",
            Error::DigestMismatch { .. } => "digest-mismatch",
            Error::MediaType(_) => "media-type",
            Error::NotAComponent | Error::Invalid(_) => "invalid",
            Error::TooLarge { .. } => "too-large",
            Error::Registry { .. } => "registry",
            Error::Io { .. } => "io",
        }
    }

    pub(crate) fn transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }
}
