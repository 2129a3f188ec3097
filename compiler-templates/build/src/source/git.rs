//! `git+URL#REF:PATH`: a checkout made by the real `git`, shallow for branches and tags.

use super::{SourceError, redact, subfolder};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

/// Runs `git ARGS` (in `cwd`); never prompts, gives up after `timeout`.
async fn git(args: &[&OsStr], cwd: Option<&Path>, timeout: Duration) -> Result<Output, SourceError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        // A Job has no terminal: a credential prompt would hang it.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never");
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    if std::env::var_os("GIT_ALLOW_PROTOCOL").is_none() {
        // Not `ext::` and friends: a source string must not be able to run commands.
        cmd.env("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh");
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let what = || args.iter().map(|a| redact(&a.to_string_lossy())).collect::<Vec<_>>().join(" ");
    tracing::debug!(command = %what(), "git");
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(SourceError::GitMissing(e)),
        Err(_) => Err(SourceError::Timeout { what: format!("git {}", what()), after: timeout }),
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

fn failed(command: &str, raw_url: &str, out: &Output) -> SourceError {
    let url = redact(raw_url);
    SourceError::Git { command: command.into(), stderr: stderr(out).replace(raw_url, &url), url }
}

/// Whether `r` can only be a commit: hex, from an abbreviation to a SHA-256 name.
fn is_commit(r: &str) -> bool {
    (4..=64).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// Clones `url` at `reference` into `dest/checkout`; returns the `path` folder of it.
pub(super) async fn fetch(
    raw_url: &str,
    reference: Option<&str>,
    path: Option<&Path>,
    dest: &Path,
    timeout: Duration,
) -> Result<std::path::PathBuf, SourceError> {
    let checkout = dest.join("checkout");
    // Errors and logs name the repository without its credentials; git is given them.
    let shown = redact(raw_url);
    let url = shown.as_str();
    // ls-remote first: it tells a missing repository from a missing ref, and branches and tags from commits.
    let listed = git(&[os("ls-remote"), os("--"), os(raw_url)], None, timeout).await?;
    if !listed.status.success() {
        let stderr = stderr(&listed).replace(raw_url, url);
        return Err(SourceError::RepositoryNotFound { url: url.into(), stderr });
    }
    let refs = String::from_utf8_lossy(&listed.stdout);
    let names: Vec<&str> = refs.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    let target = checkout.as_os_str();
    match reference {
        None => {
            let out = git(&[os("clone"), os("--depth=1"), os("--"), os(raw_url), target], None, timeout).await?;
            if !out.status.success() {
                return Err(failed("clone", raw_url, &out));
            }
        }
        Some(r) if names.iter().any(|n| *n == format!("refs/heads/{r}") || *n == format!("refs/tags/{r}")) => {
            let args = [os("clone"), os("--depth=1"), os("--branch"), os(r), os("--"), os(raw_url), target];
            let out = git(&args, None, timeout).await?;
            if !out.status.success() {
                return Err(failed("clone", raw_url, &out));
            }
        }
        Some(r) if is_commit(r) => {
            // A commit cannot be cloned by name: fetch everything, then check it out.
            let out = git(&[os("clone"), os("--no-checkout"), os("--"), os(raw_url), target], None, timeout).await?;
            if !out.status.success() {
                return Err(failed("clone", raw_url, &out));
            }
            let spec = format!("{r}^{{commit}}");
            let args = [os("-c"), os("advice.detachedHead=false"), os("checkout"), os("--detach"), os(&spec)];
            let out = git(&args, Some(&checkout), timeout).await?;
            if !out.status.success() {
                tracing::debug!(stderr = %stderr(&out), "git checkout");
                return Err(not_found(url, r, &names));
            }
        }
        Some(r) => return Err(not_found(url, r, &names)),
    }
    let within = || format!("the checkout of {url}{}", reference.map(|r| format!(" at {r}")).unwrap_or_default());
    subfolder(&checkout, path, within)
}

fn not_found(url: &str, reference: &str, names: &[&str]) -> SourceError {
    let known = names
        .iter()
        .filter_map(|n| n.strip_prefix("refs/heads/").or_else(|| n.strip_prefix("refs/tags/")))
        .filter(|n| !n.ends_with("^{}"))
        .take(10)
        .map(str::to_string)
        .collect();
    SourceError::RefNotFound { url: url.into(), reference: reference.into(), known }
}
