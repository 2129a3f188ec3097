//! Rust: `cargo build --target wasm32-wasip2` of a `cdylib` crate (using `wasmfn-sdk`), with rustup's
//! `wasm32-wasip2` standard library when installed, otherwise with Debian's toolchain building std from source
//! (`-Zbuild-std`). One target folder in the cache is shared by every Rust function, so std and common
//! dependencies are built once.

use super::{Adapter, Ctx};
use crate::{BuildError, Progress, tool};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) struct Rust;

/// How to reach a wasm32-wasip2 standard library.
enum Mode {
    /// rustup's toolchain has the target.
    Rustup,
    /// Debian's rustc-web, std built from `/usr/lib/rustlib/src` with wasi-libc.
    BuildStd,
}

const INSTALL: &str = "rustup target add wasm32-wasip2   (or, on Debian without that target: apt-get install -y rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc)";
const DEBIAN_WASI_LIBC: &str = "/usr/lib/wasm32-wasi";

fn mode(ctx: &Ctx<'_>) -> Result<Mode, BuildError> {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().ok().filter(|o| o.status.success());
    if let Some(o) = sysroot {
        let root = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if root.join("lib/rustlib/wasm32-wasip2").is_dir() {
            return Ok(Mode::Rustup);
        }
    }
    let debian = ["/usr/bin/rustc", "/usr/bin/cargo", "/usr/lib/rustlib/src/rust/library", DEBIAN_WASI_LIBC];
    match debian.iter().find(|p| !Path::new(p).exists()) {
        None => Ok(Mode::BuildStd),
        Some(missing) => Err(ctx.template.missing(
            "a Rust toolchain for wasm32-wasip2",
            &format!("rustc has no wasm32-wasip2 target and {missing} does not exist"),
            INSTALL,
        )),
    }
}

/// The linear memory a Rust function starts with (wasm-ld's default is its data plus a 1 MiB stack, ~1.1 MiB).
/// A request's allocations then grow it, and with a fresh instance per request every request grows it again:
/// each `memory.grow` and each reset of the pooled slot afterwards is an `mprotect`, a TLB shootdown on every
/// core (BENCHMARKS.md, "Rust hot path"). Starting at 4 MiB, a typical handler never grows; untouched pages cost
/// nothing. A function's `limits.memory` must be at least this.
pub(crate) const INITIAL_MEMORY: u64 = 4 << 20;

fn cargo(mode: &Mode) -> Command {
    let memory = format!("-Clink-arg=--initial-memory={INITIAL_MEMORY}");
    match mode {
        Mode::Rustup => {
            let mut cmd = Command::new("cargo");
            cmd.env("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", memory);
            cmd
        }
        Mode::BuildStd => {
            let mut cmd = Command::new("/usr/bin/cargo");
            cmd.env("RUSTC", "/usr/bin/rustc").env("RUSTDOC", "/usr/bin/rustdoc").env("RUSTC_BOOTSTRAP", "1").env(
                "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
                format!("-Clink-self-contained=no -L{DEBIAN_WASI_LIBC} {memory}"),
            );
            cmd
        }
    }
}

impl Adapter for Rust {
    fn name(&self) -> &'static str {
        "rust"
    }

    fn prepare(&self, ctx: &Ctx<'_>, progress: &Progress) -> Result<(), BuildError> {
        // Cargo writes Cargo.lock on the first build; resolving it first keeps the cache key stable.
        if ctx.src.join("Cargo.lock").exists() {
            return Ok(());
        }
        let mode = mode(ctx)?;
        let step = progress.step("cargo generate-lockfile");
        tool::run(&step, cargo(&mode).arg("generate-lockfile").current_dir(ctx.src), false)?;
        step.finish();
        Ok(())
    }

    fn fingerprint(&self, ctx: &Ctx<'_>) -> Result<String, BuildError> {
        let mode = mode(ctx)?;
        let rustc = match mode {
            Mode::Rustup => "rustc",
            Mode::BuildStd => "/usr/bin/rustc",
        };
        let version = Command::new(rustc).arg("-vV").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        Ok(format!("{}\n{INITIAL_MEMORY}\n{}", matches!(mode, Mode::BuildStd), version.unwrap_or_default()))
    }

    fn build(&self, ctx: &Ctx<'_>, _work: &Path, out: &Path, progress: &Progress) -> Result<(), BuildError> {
        let mode = mode(ctx)?;
        let mut cmd = cargo(&mode);
        cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"]);
        if matches!(mode, Mode::BuildStd) {
            cmd.arg("-Zbuild-std=std,panic_abort");
        }
        let target = ctx.cache_dir.join("rust-target");
        std::fs::create_dir_all(&target).map_err(|e| BuildError::io(&target, e))?;
        cmd.arg("--target-dir").arg(&target).current_dir(ctx.src);
        // Cargo locks the target folder only while it builds; two functions with the same crate name share an
        // output path, so the build and the copy below happen under one lock of ours.
        let lock_path = target.join(".wasmfn-build.lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| BuildError::io(&lock_path, e))?;
        lock.lock().map_err(|e| BuildError::io(&lock_path, e))?;
        let step = progress.step("cargo build --target wasm32-wasip2");
        let stdout = tool::run(&step, &mut cmd, true)?;
        step.finish();

        // The component is the `.wasm` of the package's cdylib.
        let wasm = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter(|m| m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")))
            .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f.as_str().map(PathBuf::from))
            .rfind(|f| f.extension().is_some_and(|e| e == "wasm"));
        let Some(wasm) = wasm else {
            return Err(BuildError::Failed {
                step: "cargo build".into(),
                output: "the crate built no cdylib: set `[lib] crate-type = [\"cdylib\"]` in Cargo.toml".into(),
            });
        };
        std::fs::copy(&wasm, out).map_err(|e| BuildError::io(&wasm, e))?;
        Ok(())
    }
}
