//! The containerd shim under a real containerd 1.6 (Debian's, with runc): plain images built here and imported
//! with `ctr`, run with `ctr run --runtime io.containerd.wasmfn.v1`, served over HTTP, stopped with
//! `ctr task kill`. Needs root, as containerd does.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmfn_tests::containerd::{Containerd, plain_image};
use wasmfn_tests::{eventually, guests};

fn shim() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-wasmfn-v1"))
}

/// A host directory for the shim: not in `/tmp`, which the shim refuses (others can write to it), but in the
/// target directory, whose every ancestor only root writes when the tests run as root.
fn shim_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Polls until the container answers `/` with 200 and returns the body.
async fn first_ok(port: u16) -> String {
    let c = client();
    eventually(Duration::from_secs(60), "the container serves HTTP 200", || {
        let c = c.clone();
        async move {
            let r = c.get(format!("http://127.0.0.1:{port}/")).send().await.ok()?;
            if r.status() != 200 {
                return None;
            }
            r.text().await.ok()
        }
    })
    .await
}

/// The `.cwasm` entries in the shim's AOT cache, with their inode and modification time.
fn cache_entries(shim_dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let Ok(engines) = std::fs::read_dir(shim_dir.join("aot")) else { return out };
    for engine in engines.flatten() {
        for entry in std::fs::read_dir(engine.path()).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "cwasm") {
                let m = entry.metadata().unwrap();
                out.push((entry.path(), m.ino(), m.modified().unwrap()));
            }
        }
    }
    out
}

/// A `ctr run` in the foreground: its output (the container's log) is collected as it comes.
struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    fn new(mut child: Child) -> Running {
        let log = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let streams: [Box<dyn Read + Send>; 2] =
            [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for stream in streams {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            }));
        }
        Running { child, log, readers }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    async fn wait_for_log(&self, needle: &str) {
        eventually(Duration::from_secs(30), needle, || async { self.log().contains(needle).then_some(()) }).await;
    }

    /// Waits for `ctr run` to end: the task's exit code and the container's whole log.
    async fn finish(mut self) -> (i32, String) {
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait().unwrap();
            for r in self.readers {
                r.join().unwrap();
            }
            status
        })
        .await
        .unwrap();
        (status.code().unwrap_or(-1), self.log.lock().unwrap().clone())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_image_serves_drains_on_kill_and_its_second_start_reuses_the_compiled_code() {
    let shim_dir = shim_dir();
    let ctrd = Containerd::start(&shim(), shim_dir.path()).await;
    let component = std::fs::read(guests::rust_guest()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("image.tar");
    let image = "docker.io/wasmfn/rust-guest:test";
    plain_image(&tarball, image, &[("/app.wasm", &component)], &["/app.wasm"]);
    ctrd.import(&tarball);

    // Run 1: cold. The component is compiled into the shared cache.
    let port = free_port();
    let p = port.to_string();
    let env = [
        ("PORT", p.as_str()),
        ("WASMFN_ADDRESS", "127.0.0.1"),
        ("WASMFN_DRAIN_TIMEOUT", "20s"),
        ("GREETING", "hello from the pod"),
        ("SLEEP_MS", "1500"),
    ];
    let run = Running::new(ctrd.run(image, "web-1", &env));
    let body = first_ok(port).await;
    assert!(!body.is_empty());
    let greeting = client().get(format!("http://127.0.0.1:{port}/env?name=GREETING")).send().await.unwrap();
    assert_eq!(greeting.text().await.unwrap(), "hello from the pod", "the container's env reaches the guest");
    let entries = cache_entries(shim_dir.path());
    let digest = wasmfn_runtime::Digest::of(&component);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].0.ends_with(format!("{}.cwasm", digest.hex())), "{entries:?}");
    let tag = std::fs::read_to_string(entries[0].0.with_extension("sum")).unwrap();
    assert!(tag.starts_with("wasmfn-aot/2 hmac-sha256 "), "the shared cache is keyed: {tag}");
    let key = std::fs::metadata(shim_dir.path().join("aot.key")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(shim_dir.path().join("run")).unwrap().count(), 1, "one live state directory");

    // SIGTERM with a request in flight (the guest logs the event, then sleeps 1.5 s): the request finishes,
    // then the task exits 0.
    let slow = tokio::spawn(client().post(format!("http://127.0.0.1:{port}/")).header("ce-id", "drain-1").send());
    run.wait_for_log("event id=drain-1").await;
    ctrd.ctr_ok(&["tasks", "kill", "web-1"]);
    let slow = slow.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(slow.status(), 200);
    let (code, log) = run.finish().await;
    assert_eq!(code, 0, "a drained container exits 0; its log:\n{log}");
    assert!(log.contains("wasmfn listening on"), "the runtime's log is the container's:\n{log}");
    assert!(log.contains("compiled component"), "the first start compiles:\n{log}");
    assert!(log.contains("draining in-flight requests"), "{log}");
    assert!(client().get(format!("http://127.0.0.1:{port}/")).send().await.is_err(), "nothing listens any more");
    assert_eq!(std::fs::read_dir(shim_dir.path().join("run")).unwrap().count(), 0, "the state directory is removed");

    // Run 2: the same image starts from the cached code: the entry is the same file, untouched.
    let run = Running::new(ctrd.run(image, "web-2", &env));
    first_ok(port).await;
    assert_eq!(cache_entries(shim_dir.path()), entries, "the second start reuses the compiled code");
    ctrd.ctr_ok(&["tasks", "kill", "web-2"]);
    let (code, log) = run.finish().await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("compiled component"), "the second start compiles nothing:\n{log}");

    // Run 3: someone who can write the cache but not read the key plants code with a plain checksum: it is
    // refused and the component compiled again.
    let mut planted = std::fs::read(&entries[0].0).unwrap();
    let middle = planted.len() / 2;
    planted[middle] ^= 0xff;
    std::fs::write(&entries[0].0, &planted).unwrap();
    std::fs::write(entries[0].0.with_extension("sum"), format!("wasmfn-aot/2 blake3 {}\n", "0".repeat(64))).unwrap();
    let run = Running::new(ctrd.run(image, "web-3", &env));
    first_ok(port).await;
    ctrd.ctr_ok(&["tasks", "kill", "web-3"]);
    let (code, log) = run.finish().await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("not keyed") && log.contains("compiled component"), "refused and compiled:\n{log}");
    assert_ne!(std::fs::read(&entries[0].0).unwrap(), planted, "replaced");
    eventually(Duration::from_secs(10), "no task is left", || async { ctrd.tasks().is_empty().then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_images_fail_to_start_with_the_reason_in_the_shim_log() {
    let shim_dir = shim_dir();
    let ctrd = Containerd::start(&shim(), shim_dir.path()).await;
    let work = tempfile::tempdir().unwrap();
    let core = wat::parse_str("(module)").unwrap();
    let no_export = wat::parse_str("(component)").unwrap();
    type Files<'a> = &'a [(&'a str, &'a [u8])];
    let cases: [(&str, Files, &str); 3] = [
        ("no-wasm", &[("/readme.txt", b"not a component")], "the image has no component at /app.wasm"),
        ("core-module", &[("/app.wasm", &core)], "/app.wasm cannot be served: this is a core WebAssembly module"),
        ("no-export", &[("/app.wasm", &no_export)], "does not export wasi:http/incoming-handler@0.2.x"),
    ];
    for (name, files, reason) in cases {
        let tarball = work.path().join(format!("{name}.tar"));
        let image = format!("docker.io/wasmfn/{name}:test");
        plain_image(&tarball, &image, files, &["/app.wasm"]);
        ctrd.import(&tarball);
        let (code, out) = Running::new(ctrd.run(&image, name, &[("PORT", &free_port().to_string())])).finish().await;
        assert_ne!(code, 0, "{name} must not start:\n{out}");
        // containerd copies the shim's log asynchronously.
        let what = format!("{name}: the shim's log names the problem ({reason}); ctr said: {out}");
        eventually(Duration::from_secs(10), &what, || async { ctrd.log().contains(reason).then_some(()) }).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_that_cannot_serve_exits_1_with_the_reason_in_its_log() {
    let shim_dir = shim_dir();
    let ctrd = Containerd::start(&shim(), shim_dir.path()).await;
    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("image.tar");
    let image = "docker.io/wasmfn/busy-port:test";
    let component = std::fs::read(guests::rust_guest()).unwrap();
    plain_image(&tarball, image, &[("/app.wasm", &component)], &["/app.wasm"]);
    ctrd.import(&tarball);
    // The port is taken (host network): the node cannot listen.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let env = [("PORT", port.as_str()), ("WASMFN_ADDRESS", "127.0.0.1")];
    let (code, log) = Running::new(ctrd.run(image, "busy", &env)).finish().await;
    assert_eq!(code, 1, "{log}");
    assert!(log.contains(&format!("cannot listen on port {port}")), "{log}");
    let (code, log) = Running::new(ctrd.run(image, "bad-port", &[("PORT", "eighty")])).finish().await;
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("PORT=eighty is not a port number"), "{log}");
    let (code, log) = Running::new(ctrd.run(image, "bad-drain", &[("WASMFN_DRAIN_TIMEOUT", "soon")])).finish().await;
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("WASMFN_DRAIN_TIMEOUT=soon"), "{log}");
}

/// Compiled code is run as native code: a host directory below one that others can write to is refused, and
/// every container fails with that directory, its owner and its mode in its log.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_directory_others_could_replace_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let parent = shim_dir();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let ctrd = Containerd::start(&shim(), &parent.path().join("shim")).await;
    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("image.tar");
    let image = "docker.io/wasmfn/untrusted-dir:test";
    let component = std::fs::read(guests::rust_guest()).unwrap();
    plain_image(&tarball, image, &[("/app.wasm", &component)], &["/app.wasm"]);
    ctrd.import(&tarball);
    let port = free_port().to_string();
    let (code, log) = Running::new(ctrd.run(image, "untrusted", &[("PORT", &port)])).finish().await;
    assert_eq!(code, 1, "{log}");
    let named = format!("{} (owner uid 0, mode 0777) is writable by its group and others", parent.path().display());
    assert!(log.contains(&named), "{log}");
    assert!(!parent.path().join("shim/aot").exists(), "nothing is made below a refused directory");
}
