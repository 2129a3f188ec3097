//! Build adapters: the code that drives one kind of toolchain. A template names its adapter in `template.toml`;
//! adding a language is a template folder plus, when no adapter fits, one module here and one line in `ALL`.

mod js;
pub(crate) mod js_wrap;
mod python;
mod rust;

use crate::template::Template;
use crate::{BuildError, Progress};
use std::path::Path;

/// What an adapter builds from.
pub(crate) struct Ctx<'a> {
    pub(crate) template: &'a Template,
    /// The function folder (absolute).
    pub(crate) src: &'a Path,
    /// The entry file, relative to `src`, for templates that name entry files.
    pub(crate) entry: Option<&'a str>,
    /// The function a `file.function` handler names in the entry file (none: the template's own lookup).
    pub(crate) function: Option<&'a str>,
    /// The build cache folder; adapters may keep shared state below it (Rust's target folder, vendored
    /// Python packages).
    pub(crate) cache_dir: &'a Path,
}

/// One toolchain driver.
pub(crate) trait Adapter: Sync {
    /// The name `template.toml` uses.
    fn name(&self) -> &'static str;

    /// Brings the function folder to the state the cache key should see (a resolved lock file, installed
    /// dependencies). Must be quick when there is nothing to do.
    fn prepare(&self, _ctx: &Ctx<'_>, _progress: &Progress) -> Result<(), BuildError> {
        Ok(())
    }

    /// The versions of the tools a build would use: part of the cache key.
    fn fingerprint(&self, ctx: &Ctx<'_>) -> Result<String, BuildError>;

    /// Builds the component into `out`, using `work` as scratch space.
    fn build(&self, ctx: &Ctx<'_>, work: &Path, out: &Path, progress: &Progress) -> Result<(), BuildError>;
}

const ALL: &[&dyn Adapter] = &[&rust::Rust, &js::Js, &python::Python];

pub(crate) fn find(name: &str) -> Option<&'static dyn Adapter> {
    ALL.iter().copied().find(|a| a.name() == name)
}

pub(crate) fn names() -> String {
    ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
}

/// The `version` field of an installed npm package, or "" when absent.
pub(crate) fn npm_version(package_dir: &Path) -> String {
    std::fs::read_to_string(package_dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A string as a JavaScript or Python literal (JSON string syntax is valid in both).
pub(crate) fn literal(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}
