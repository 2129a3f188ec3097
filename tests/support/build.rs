//! Running `wasmfn new` / `wasmfn build` with the real compiler templates and a build cache shared by the tests
//! (so Rust's standard library is built once per machine).

use crate::guests::{out_dir, repo_root};
use crate::node::binary;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The build cache the tests share.
pub fn cache_dir() -> PathBuf {
    out_dir().join("build-cache")
}

/// Runs `wasmfn ARGS` with the shared cache; returns its output.
pub fn wasmfn(args: &[&str]) -> Output {
    wasmfn_env(args, &[])
}

/// Runs `wasmfn ARGS` with the shared cache and extra environment (no `AWS_*` from the test's own).
pub fn wasmfn_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args).env("WASMFN_CACHE_DIR", cache_dir()).env("WASMFN_TEMPLATES", repo_root().join("compiler-templates"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied()).output().expect("run wasmfn")
}

/// A finished `wasmfn` command's status, stdout and stderr as text.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// `wasmfn build DIR -o OUT [extra]`; panics with the build's output when it fails.
pub fn build_ok(dir: &Path, extra: &[&str]) -> (PathBuf, Run) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("fn");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let out = out_dir().join(format!("built-{name}-{}-{n}.wasm", std::process::id()));
    let mut args = vec!["build", dir.to_str().expect("utf-8 path"), "-o", out.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let run = Run::from(wasmfn(&args));
    assert!(run.ok, "wasmfn build {} failed:\n{}\n{}", dir.display(), run.stdout, run.stderr);
    (out, run)
}

/// `wasmfn build` that must fail; returns its output.
pub fn build_err(dir: &Path, extra: &[&str]) -> Run {
    let out = dir.join("out.wasm");
    let mut args = vec!["build", dir.to_str().expect("utf-8 path"), "-o", out.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let run = Run::from(wasmfn(&args));
    assert!(!run.ok, "wasmfn build {} should have failed:\n{}", dir.display(), run.stdout);
    assert!(!out.exists(), "a failed build wrote {}", out.display());
    run
}

/// Bytes of linear memory the first core module of the component at `path` starts with.
pub fn initial_memory(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::MemorySection(reader) = payload.unwrap() {
            let memory = reader.into_iter().next().expect("a memory").unwrap();
            return memory.initial << memory.page_size_log2.unwrap_or(16);
        }
    }
    panic!("{} has no memory", path.display())
}
