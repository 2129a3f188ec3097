//! Where a function's folder comes from when it is not on this machine: a git repository, an archive in an
//! S3-compatible bucket, or the inline code of a Kubernetes `Function` (a ConfigMap mounted as a folder).
//!
//! ```text
//! git+URL#REF:PATH                            git+https://host/org/repo.git#main:functions/hello
//! s3://BUCKET/KEY?endpoint=URL&region=R#PATH  s3://fns/hello.tar.gz?endpoint=http://127.0.0.1:9000
//! inline:DIR                                  DIR/code and, optionally, DIR/dependencies
//! ```
//! [`Source::fetch_with`] puts the folder below a destination (a temp dir) and returns its path; the build then
//! proceeds as for a local folder.

mod archive;
mod git;
mod inline;
mod parse;
mod s3;

use crate::{BuildError, Builder};
pub(crate) use parse::redact;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest archive an `s3://` source downloads by default.
pub const DEFAULT_MAX_ARCHIVE_BYTES: u64 = 256 << 20;

/// The accepted forms, for messages.
const FORMS: &str = "git+URL#REF:PATH, s3://BUCKET/KEY?endpoint=URL&region=R#PATH or inline:DIR";

/// A function folder to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `git+URL#REF:PATH`: a checkout of a git repository.
    Git {
        /// What `git clone` is given: `https://…`, `file://…`, a path, `ssh://…`.
        url: String,
        /// A branch, tag or commit; the remote's HEAD when absent.
        reference: Option<String>,
        /// The function's folder inside the checkout; its root when absent.
        path: Option<PathBuf>,
    },
    /// `s3://BUCKET/KEY?endpoint=URL&region=R#PATH`: a `.tar.gz`, `.tgz`, `.tar` or `.zip` of the folder.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// An S3-compatible endpoint; `AWS_ENDPOINT_URL`, else AWS, when absent.
        endpoint: Option<String>,
        /// The region; `AWS_REGION`, else `us-east-1`, when absent.
        region: Option<String>,
        /// The function's folder inside the archive.
        path: Option<PathBuf>,
    },
    /// `inline:DIR`: `DIR/code` (and `DIR/dependencies`) put into a template's scaffold.
    Inline {
        /// The folder holding `code` and `dependencies`.
        dir: PathBuf,
    },
}

/// Why a source could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source string is malformed.
    #[error("invalid source `{input}`: {reason} (expected {FORMS})")]
    Invalid {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// `git` is not installed.
    #[error("cannot run git (install it, e.g. `apt-get install -y git`): {0}")]
    GitMissing(std::io::Error),
    /// The repository does not exist or cannot be read.
    #[error("git repository {url} not found or not readable:\n{stderr}")]
    RepositoryNotFound {
        /// The repository.
        url: String,
        /// What git said.
        stderr: String,
    },
    /// The repository has no such branch, tag or commit.
    #[error("ref `{reference}` not found in git repository {url}{}", known_refs(.known))]
    RefNotFound {
        /// The repository.
        url: String,
        /// The ref asked for.
        reference: String,
        /// Some branches and tags there are.
        known: Vec<String>,
    },
    /// A git command failed for another reason.
    #[error("`git {command}` failed for {url}:\n{stderr}")]
    Git {
        /// The subcommand.
        command: String,
        /// The repository.
        url: String,
        /// What git said.
        stderr: String,
    },
    /// The `:PATH` / `#PATH` folder is not in the checkout or archive.
    #[error("`{path}` is not a folder in {within}", path = .path.display())]
    PathMissing {
        /// The folder asked for.
        path: PathBuf,
        /// The checkout or archive.
        within: String,
    },
    /// The bucket does not exist.
    #[error("S3 bucket `{bucket}` not found at {endpoint}")]
    BucketNotFound {
        /// The bucket.
        bucket: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// The object does not exist.
    #[error("S3 object `{key}` not found in bucket `{bucket}` at {endpoint}")]
    KeyNotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// The credentials are wrong or may not read the object.
    #[error(
        "access denied reading s3://{bucket}/{key} at {endpoint} (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy): {detail}"
    )]
    AccessDenied {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The endpoint asked.
        endpoint: String,
        /// The server's answer.
        detail: String,
    },
    /// Nothing answers at the endpoint.
    #[error("S3 endpoint {endpoint} is not reachable: {detail}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The connection error.
        detail: String,
    },
    /// Another S3 error.
    #[error("reading s3://{bucket}/{key} at {endpoint} failed: {detail}")]
    S3 {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The endpoint.
        endpoint: String,
        /// The error.
        detail: String,
    },
    /// The download or its unpacked content is over the limit.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// The object is not an archive this engine reads.
    #[error("{what} is not an archive: {detail} (expected .tar.gz, .tgz, .tar or .zip)")]
    NotAnArchive {
        /// The object.
        what: String,
        /// Why.
        detail: String,
    },
    /// An archive entry would land outside the folder (`..`, an absolute path, an escaping symlink).
    #[error("unsafe archive entry `{entry}`: {reason}")]
    UnsafeArchive {
        /// The entry's name.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An inline source without a template to put it into.
    #[error("an inline: source needs a template to put its code into (give --template)")]
    InlineNeedsTemplate,
    /// The inline folder has no `code` file.
    #[error("{dir}: no `code` file (an inline source holds `code` and optionally `dependencies`)", dir = .dir.display())]
    InlineNoCode {
        /// The folder.
        dir: PathBuf,
    },
    /// A command or download took too long.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// What was running.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The template's scaffold could not be written.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn known_refs(known: &[String]) -> String {
    if known.is_empty() { String::new() } else { format!(" (branches and tags: {})", known.join(", ")) }
}

impl SourceError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> SourceError {
        SourceError::Io { path: path.to_path_buf(), source }
    }
}

/// How to fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions<'a> {
    /// The builder and template an `inline:` source's code is scaffolded with.
    pub inline: Option<(&'a Builder, &'a str)>,
    /// The largest archive an `s3://` source downloads; its unpacked content may be four times that.
    pub max_archive_bytes: u64,
    /// How long one git command or the download may take.
    pub timeout: Duration,
}

impl Default for FetchOptions<'_> {
    fn default() -> Self {
        FetchOptions { inline: None, max_archive_bytes: DEFAULT_MAX_ARCHIVE_BYTES, timeout: Duration::from_secs(600) }
    }
}

impl Source {
    /// Fetches the function folder below `dest` with the default options; returns the folder.
    pub async fn fetch(&self, dest: &Path) -> Result<PathBuf, SourceError> {
        self.fetch_with(dest, &FetchOptions::default()).await
    }

    /// Fetches the function folder below `dest` (created if needed); returns the folder.
    pub async fn fetch_with(&self, dest: &Path, options: &FetchOptions<'_>) -> Result<PathBuf, SourceError> {
        std::fs::create_dir_all(dest).map_err(|e| SourceError::io(dest, e))?;
        tracing::info!(source = %self, "fetching the function source");
        match self {
            Source::Git { url, reference, path } => {
                git::fetch(url, reference.as_deref(), path.as_deref(), dest, options.timeout).await
            }
            Source::S3 { .. } => s3::fetch(self, dest, options).await,
            Source::Inline { dir } => {
                let (builder, template) = options.inline.ok_or(SourceError::InlineNeedsTemplate)?;
                inline::materialise(builder, template, dir, dest)
            }
        }
    }

    /// A function name suggested by the source (a DNS label): the subfolder's, the repository's or the
    /// archive's name.
    pub fn name_hint(&self) -> Option<String> {
        let last = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let raw = match self {
            Source::Git { url, path, .. } => path.as_deref().and_then(last).or_else(|| {
                let base = url.trim_end_matches('/').rsplit(['/', ':']).next()?;
                Some(base.trim_end_matches(".git").to_string())
            }),
            Source::S3 { key, path, .. } => path.as_deref().and_then(last).or_else(|| {
                let base = key.rsplit('/').next()?;
                let stem = [".tar.gz", ".tgz", ".tar", ".zip"].iter().find_map(|x| base.strip_suffix(x));
                Some(stem.unwrap_or(base).to_string())
            }),
            Source::Inline { .. } => None,
        }?;
        let label: String =
            raw.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let label = label.trim_matches('-');
        (!label.is_empty()).then(|| label.chars().take(63).collect())
    }
}

/// `root/path` when it is a folder that stays inside `root` (symlinks resolved).
fn subfolder(root: &Path, path: Option<&Path>, within: impl FnOnce() -> String) -> Result<PathBuf, SourceError> {
    let Some(path) = path else { return Ok(root.to_path_buf()) };
    let missing = || SourceError::PathMissing { path: path.to_path_buf(), within: within() };
    let (Ok(base), Ok(dir)) = (root.canonicalize(), root.join(path).canonicalize()) else { return Err(missing()) };
    if !dir.starts_with(&base) || !dir.is_dir() {
        return Err(missing());
    }
    Ok(dir)
}

#[cfg(test)]
mod tests;
