//! Test guests compiled during the test run: no prebuilt `.wasm` is checked in.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Where test builds go: `$CARGO_TARGET_DIR/test-guests`.
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("test-guests");
    std::fs::create_dir_all(&dir).expect("create the guest output folder");
    dir
}

/// Holds an exclusive lock on a file so concurrent test binaries build each guest once.
struct Lock(std::fs::File);

impl Lock {
    fn take(path: &Path) -> Lock {
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).expect("open lock file");
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock failed");
        Lock(file)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn has_rustup_wasip2() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "wasm32-wasip2"))
        .unwrap_or(false)
}

/// Builds a Rust `cdylib` crate for `wasm32-wasip2` and returns the component. Uses rustup's target when
/// installed, otherwise Debian's rustc with `-Zbuild-std` (see the README).
pub fn build_rust(crate_dir: &Path, artifact: &str) -> PathBuf {
    let target = out_dir().join("rust");
    let _lock = Lock::take(&out_dir().join("rust.lock"));
    let mut cmd;
    if has_rustup_wasip2() {
        cmd = Command::new("cargo");
        cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
    } else {
        cmd = Command::new("/usr/bin/cargo");
        cmd.args(["build", "--release", "-Zbuild-std=std,panic_abort", "--target", "wasm32-wasip2"])
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTDOC", "/usr/bin/rustdoc")
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", "-Clink-self-contained=no -L/usr/lib/wasm32-wasi");
    }
    cmd.arg("--target-dir").arg(&target).current_dir(crate_dir);
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_TARGET"]
    {
        cmd.env_remove(var);
    }
    run(&mut cmd, &format!("building {}", crate_dir.display()));
    let wasm = target.join("wasm32-wasip2/release").join(format!("{artifact}.wasm"));
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    wasm
}

/// The Rust test guest (`tests/guests/rust-guest`): behaviour chosen by path (`/`, `/echo`, `/sleep?ms=`,
/// `/loop`, `/alloc`, `/log?lines=`, `/env?name=`, `/path`, `/status?code=`).
pub fn rust_guest() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build_rust(&repo_root().join("tests/guests/rust-guest"), "rust_guest")).clone()
}

/// Componentizes a fetch-style JavaScript handler with the JS template's tooling (componentize-js).
pub fn build_js(handler: &Path) -> PathBuf {
    let tooling = repo_root().join("compiler-templates/js");
    assert!(
        tooling.join("node_modules/@bytecodealliance/componentize-js").exists(),
        "componentize-js is not installed: run `scripts/setup.sh` (or `npm ci --prefix compiler-templates/js`)"
    );
    let mut h = Sha256::new();
    h.update(std::fs::read(handler).expect("read the handler"));
    for f in ["componentize.mjs", "package.json", "package-lock.json"] {
        h.update(std::fs::read(tooling.join(f)).unwrap_or_default());
    }
    let out = out_dir().join(format!("js-{}.wasm", &hex::encode(h.finalize())[..16]));
    let _lock = Lock::take(&out_dir().join("js.lock"));
    if !out.exists() {
        let tmp = out.with_extension("tmp");
        run(
            Command::new("node").arg("componentize.mjs").arg(&tmp).arg(handler).current_dir(&tooling),
            "componentize-js",
        );
        std::fs::rename(&tmp, &out).expect("move the JS component into place");
    }
    out
}

/// The JavaScript test guest (`tests/guests/js-guest/handler.js`).
pub fn js_guest() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build_js(&repo_root().join("tests/guests/js-guest/handler.js"))).clone()
}

/// Componentizes a Python app folder (module `app`) with the Python template's tooling (componentize-py).
pub fn build_py(app_dir: &Path) -> PathBuf {
    let script = repo_root().join("compiler-templates/python/componentize.sh");
    let mut h = Sha256::new();
    h.update(std::fs::read(&script).expect("read componentize.sh"));
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(app_dir).expect("read the app folder").map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "py")) {
        h.update(std::fs::read(f).unwrap());
    }
    let out = out_dir().join(format!("py-{}.wasm", &hex::encode(h.finalize())[..16]));
    let _lock = Lock::take(&out_dir().join("py.lock"));
    if !out.exists() {
        let tmp = out.with_extension("tmp");
        run(Command::new(&script).arg(&tmp).arg("app").arg(app_dir), "componentize-py");
        std::fs::rename(&tmp, &out).expect("move the Python component into place");
    }
    out
}

/// The Python test guest (`tests/guests/py-guest/app.py`).
pub fn py_guest() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build_py(&repo_root().join("tests/guests/py-guest"))).clone()
}
