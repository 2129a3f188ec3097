//! `spec.source`: where a cluster build gets the function's source.

use crate::ManifestError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The function's source for a build on the cluster: exactly one of `inline`, `git` and `s3`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.inline), has(self.git), has(self.s3)].filter(x, x).size() == 1",
     "message": "set exactly one of inline, git and s3"},
]))]
pub struct Source {
    /// The code itself, in the manifest (Kubeless' `function` and `deps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineSource>,
    /// A folder of a Git repository at a ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// An archive (`.tar.gz`, `.tar`, `.zip`) of the function folder in an S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
}

/// Source code in the manifest. The template decides the file names (`handler.py` and `requirements.txt`,
/// `handler.js` and `package.json`, `src/lib.rs` and `Cargo.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InlineSource {
    /// The handler's source: the template's entry file.
    #[schemars(length(min = 1, max = 262144))]
    pub code: String,
    /// The template's dependency file (`requirements.txt`, `package.json`, `Cargo.toml`); the template's own
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub dependencies: Option<String>,
}

/// A folder of a Git repository.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSource {
    /// The repository, `https://…`, `ssh://…` or `file://…`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// A branch, a tag or a commit; the remote's default branch when absent.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub reference: Option<String>,
    /// The function's folder in the repository; its root when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path: Option<String>,
}

/// An archive of the function folder in an S3-compatible bucket (AWS S3, MinIO, Ceph).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Source {
    /// The bucket.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// The archive's key.
    #[schemars(length(min = 1, max = 1024))]
    pub key: String,
    /// The S3 endpoint, e.g. `http://minio.storage:9000`; AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region; `us-east-1` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A Secret of the function's namespace with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// A Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
}

/// Where `wasmfn build --source inline:DIR` finds an inline source: files `code` and `dependencies`.
pub const INLINE_DIR: &str = "/workspace/inline";

impl Source {
    /// The `wasmfn build --source` argument for this source. Inline sources are read from `inline_dir`, where
    /// the build mounts them.
    pub fn to_arg(&self, inline_dir: &str) -> String {
        if let Some(git) = &self.git {
            let mut arg = format!("git+{}", git.url);
            if git.reference.is_some() || git.path.is_some() {
                arg.push('#');
                arg.push_str(git.reference.as_deref().unwrap_or(""));
            }
            if let Some(path) = &git.path {
                arg.push(':');
                arg.push_str(path.trim_matches('/'));
            }
            arg
        } else if let Some(s3) = &self.s3 {
            let mut arg = format!("s3://{}/{}", s3.bucket, s3.key.trim_start_matches('/'));
            let mut query = Vec::new();
            if let Some(e) = &s3.endpoint {
                query.push(format!("endpoint={e}"));
            }
            if let Some(r) = &s3.region {
                query.push(format!("region={r}"));
            }
            if !query.is_empty() {
                arg.push('?');
                arg.push_str(&query.join("&"));
            }
            arg
        } else {
            format!("inline:{inline_dir}")
        }
    }

    pub(crate) fn validate(&self, has_template: bool) -> Result<(), ManifestError> {
        let set = [self.inline.is_some(), self.git.is_some(), self.s3.is_some()].iter().filter(|x| **x).count();
        if set != 1 {
            return Err(ManifestError::invalid("spec.source", "set exactly one of `inline`, `git` and `s3`"));
        }
        if !has_template {
            return Err(ManifestError::invalid(
                "spec.build.template",
                "a `source` is built with a template: set `build.template` (rust, js or python)",
            ));
        }
        if let Some(inline) = &self.inline
            && inline.code.trim().is_empty()
        {
            return Err(ManifestError::invalid("spec.source.inline.code", "is empty"));
        }
        if let Some(git) = &self.git {
            let ok =
                ["https://", "http://", "ssh://", "git://", "file://", "git@"].iter().any(|p| git.url.starts_with(p));
            if !ok || git.url.contains(['#', ' ']) {
                return Err(ManifestError::invalid(
                    "spec.source.git.url",
                    format!("`{}` is not a repository URL (https://, ssh://, git@, file://)", git.url),
                ));
            }
            if git.reference.as_deref().is_some_and(|r| r.is_empty() || r.contains([':', ' ', '#'])) {
                return Err(ManifestError::invalid("spec.source.git.ref", "is not a branch, tag or commit"));
            }
            if git.path.as_deref().is_some_and(|p| p.split('/').any(|c| c == "..")) {
                return Err(ManifestError::invalid("spec.source.git.path", "must stay inside the repository"));
            }
        }
        if let Some(s3) = &self.s3 {
            if s3.bucket.is_empty() || s3.bucket.contains(['/', '?', '#', ' ']) {
                return Err(ManifestError::invalid(
                    "spec.source.s3.bucket",
                    format!("`{}` is not a bucket", s3.bucket),
                ));
            }
            if s3.key.is_empty() || s3.key.contains(['?', '#']) {
                return Err(ManifestError::invalid("spec.source.s3.key", format!("`{}` is not an object key", s3.key)));
            }
            if let Some(e) = &s3.endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return Err(ManifestError::invalid("spec.source.s3.endpoint", format!("`{e}` is not an http(s) URL")));
            }
        }
        Ok(())
    }
}
