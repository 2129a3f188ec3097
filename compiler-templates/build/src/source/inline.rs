//! `inline:DIR`: a Kubernetes `Function`'s `spec.source.inline {code, dependencies}`, mounted from a ConfigMap as
//! the files `DIR/code` and `DIR/dependencies`, put into a template's scaffold.

use super::SourceError;
use crate::Builder;
use std::path::{Path, PathBuf};

/// The name the scaffold is written with (the function's real name is the `Function`'s).
const NAME: &str = "function";

fn copy(from: &Path, to: &Path) -> Result<(), SourceError> {
    // ConfigMap files are symlinks into `..data/`: read through them, write plain files.
    let bytes = std::fs::read(from).map_err(|e| SourceError::io(from, e))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| SourceError::io(parent, e))?;
    }
    std::fs::write(to, bytes).map_err(|e| SourceError::io(to, e))
}

/// Writes `template`'s scaffold to `dest/function`, then `DIR/code` over its code file and `DIR/dependencies`
/// over its first dependency file.
pub(super) fn materialise(builder: &Builder, template: &str, dir: &Path, dest: &Path) -> Result<PathBuf, SourceError> {
    let code = dir.join("code");
    if !code.is_file() {
        return Err(SourceError::InlineNoCode { dir: dir.to_path_buf() });
    }
    let spec = &builder.template(template)?.spec;
    let folder = dest.join(NAME);
    builder.scaffold(template, NAME, &folder)?;
    let Some(code_file) = spec.code_file.as_ref().or(spec.entry.first()) else {
        return Err(crate::BuildError::Template {
            path: builder.template(template)?.dir.join("template.toml"),
            message: "no `code-file` or `entry`: inline code has nowhere to go".into(),
        }
        .into());
    };
    copy(&code, &folder.join(code_file))?;
    let dependencies = dir.join("dependencies");
    if dependencies.is_file() {
        match spec.dependencies.first() {
            Some(file) => copy(&dependencies, &folder.join(file))?,
            None => tracing::warn!(template, "the template has no dependency file: `dependencies` is ignored"),
        }
    }
    tracing::info!(template, code = %code_file, "materialised the inline source");
    Ok(folder)
}
