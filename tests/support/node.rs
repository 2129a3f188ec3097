//! A real `wasmfn` process on loopback with ephemeral ports, its logs captured.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets the `wasmfn` binary to run; integration tests pass `env!("CARGO_BIN_EXE_wasmfn")`.
pub fn use_binary(path: &str) {
    let _ = BINARY.set(PathBuf::from(path));
}

/// The `wasmfn` binary.
pub fn binary() -> PathBuf {
    BINARY.get().cloned().expect("call use_binary(env!(\"CARGO_BIN_EXE_wasmfn\")) first")
}

/// A running node.
pub struct NodeProc {
    child: Option<Child>,
    pub ingress: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    logs: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
    pub client: reqwest::Client,
    token: Option<String>,
}

/// Options for starting a node.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra TOML lines for node.toml.
    pub config: String,
    /// Run `wasmfn up ARGS` instead of `wasmfn serve`.
    pub up: Option<Vec<String>>,
    /// A shell prefix, e.g. `ulimit -v 4000000;`.
    pub shell_prefix: Option<String>,
    /// Bearer token the client sends to the admin API.
    pub token: Option<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Extra arguments of `wasmfn serve`.
    pub args: Vec<String>,
    /// With `up`: return as soon as it listens, not once its first builds and deploys are done.
    pub serve_at_once: bool,
}

impl NodeProc {
    /// Starts `wasmfn serve` with a config in `data_dir`.
    pub fn start(data_dir: &Path, config: &str) -> NodeProc {
        Self::start_with(data_dir, Options { config: config.into(), ..Default::default() })
    }

    /// Starts a node and waits for its "listening" lines.
    pub fn start_with(data_dir: &Path, opts: Options) -> NodeProc {
        match Self::try_start(data_dir, opts) {
            Ok(n) => n,
            Err((msg, logs)) => panic!("{msg}\n--- node logs ---\n{logs}"),
        }
    }

    /// Starts a node; on failure returns the reason and everything the node wrote (stderr, then stdout).
    pub fn try_start(data_dir: &Path, opts: Options) -> Result<NodeProc, (String, String)> {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let bin = binary();
        let mut args: Vec<String> = Vec::new();
        match &opts.up {
            Some(up_args) => {
                args.push("up".into());
                args.extend(up_args.iter().cloned());
                args.extend(["--data-dir".into(), data_dir.display().to_string()]);
                args.extend(["--listen".into(), "127.0.0.1:0".into(), "--admin-listen".into(), "127.0.0.1:0".into()]);
            }
            None => {
                let config = data_dir.join("node.toml");
                // The tests deploy components by path through the admin API: let them, unless a test says.
                let dirs = if opts.config.contains("component-dirs") { "" } else { "component-dirs = [\"/\"]\n" };
                let text = format!(
                    "data-dir = {:?}\n{dirs}{}\n",
                    data_dir.display().to_string(),
                    if opts.config.contains("listen =") {
                        opts.config.clone()
                    } else {
                        format!("listen = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\n{}", opts.config)
                    }
                );
                std::fs::write(&config, text).expect("write node.toml");
                args.extend(["serve".into(), "--config".into(), config.display().to_string()]);
                args.extend(opts.args.iter().cloned());
            }
        }
        let mut cmd = match &opts.shell_prefix {
            Some(prefix) => {
                let mut c = Command::new("sh");
                let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
                c.arg("-c").arg(format!("{prefix} exec '{}' {}", bin.display(), quoted.join(" ")));
                c
            }
            None => {
                let mut c = Command::new(&bin);
                c.args(&args);
                c
            }
        };
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).env("WASMFN_LOG", "info,wasmfn::guest=info");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(64).build().expect("client");
        let mut child = cmd.spawn().expect("spawn wasmfn");
        let logs = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let readers = {
            let err = child.stderr.take().expect("stderr piped");
            let logs = logs.clone();
            let err_reader = std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
            let out = child.stdout.take().expect("stdout piped");
            let stdout = stdout.clone();
            let out_reader = std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    stdout.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
            [err_reader, out_reader]
        };
        // `up` may build functions before it listens.
        let wait = Duration::from_secs(600);
        let deadline = Instant::now() + wait;
        let (mut ingress, mut admin) = (None, None);
        let announced = loop {
            if let (Some(ingress), Some(admin)) = (ingress, admin) {
                break Ok((ingress, admin));
            }
            let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(RecvTimeoutError::Disconnected) => break Err("exited before announcing its listeners".to_string()),
                Err(RecvTimeoutError::Timeout) => {
                    break Err(format!("did not announce its listeners within {wait:?}"));
                }
            };
            let (slot, addr) = if let Some(a) = line.strip_prefix("wasmfn listening on http://") {
                (&mut ingress, a)
            } else if let Some(a) = line.strip_prefix("wasmfn admin listening on http://") {
                (&mut admin, a)
            } else {
                continue;
            };
            match addr.trim().parse::<SocketAddr>() {
                Ok(a) => *slot = Some(a),
                Err(e) => break Err(format!("announced an address that does not parse, {line:?}: {e}")),
            }
        };
        // `up` listens at once and builds behind it; most tests want the functions there first.
        let announced = announced.and_then(|addrs| {
            if opts.up.is_none() || opts.serve_at_once {
                return Ok(addrs);
            }
            loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(line) if line.starts_with("wasmfn: functions deployed") => return Ok(addrs),
                    Ok(_) => {}
                    Err(RecvTimeoutError::Disconnected) => return Err("exited before deploying".to_string()),
                    Err(RecvTimeoutError::Timeout) => return Err(format!("did not deploy within {wait:?}")),
                }
            }
        });
        let (ingress, admin) = match announced {
            Ok(addrs) => addrs,
            Err(why) => {
                let (status, output) = stop_failed(child, readers, &logs, &stdout);
                return Err((format!("wasmfn {why} ({status})"), output));
            }
        };
        Ok(NodeProc {
            child: Some(child),
            ingress,
            admin,
            data_dir: data_dir.to_path_buf(),
            logs,
            stdout,
            client,
            token: opts.token,
        })
    }

    /// Everything the node printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything the node logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the logs contain `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        crate::eventually(timeout, &format!("log line containing {needle:?}"), || async {
            let logs = self.logs();
            logs.contains(needle).then_some(logs)
        })
        .await
    }

    /// `http://<ingress>/<namespace>/<name><path>`.
    pub fn url(&self, namespace: &str, name: &str, path: &str) -> String {
        format!("http://{}/{namespace}/{name}{path}", self.ingress)
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    fn admin_req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, self.admin_url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Deploys a manifest through the admin API; returns the status and the JSON body.
    pub async fn deploy(&self, manifest: &str) -> (u16, serde_json::Value) {
        let resp = self
            .admin_req(reqwest::Method::POST, "/v1/functions")
            .body(manifest.to_string())
            .send()
            .await
            .expect("deploy request");
        let status = resp.status().as_u16();
        (status, json_body(resp).await)
    }

    /// Deploys and asserts success.
    pub async fn deploy_ok(&self, manifest: &str) -> serde_json::Value {
        let (status, body) = self.deploy(manifest).await;
        assert!(status == 200 || status == 201, "deploy failed with {status}: {body}\n{}", self.logs());
        body
    }

    /// Uploads component bytes; returns the status and JSON body.
    pub async fn upload(&self, bytes: Vec<u8>) -> (u16, serde_json::Value) {
        let resp = self.admin_req(reqwest::Method::POST, "/v1/components").body(bytes).send().await.expect("upload");
        let status = resp.status().as_u16();
        (status, json_body(resp).await)
    }

    /// GET on the admin API as JSON.
    pub async fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.admin_req(reqwest::Method::GET, path).send().await.expect("admin request");
        let status = resp.status().as_u16();
        (status, json_body(resp).await)
    }

    /// DELETE on the admin API.
    pub async fn admin_delete(&self, path: &str) -> u16 {
        self.admin_req(reqwest::Method::DELETE, path).send().await.expect("admin request").status().as_u16()
    }

    /// The Prometheus text.
    pub async fn metrics(&self) -> String {
        self.admin_req(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// The value of the first series named `name` whose line contains every `needle`; panics when there is
    /// none, so a renamed or unregistered series fails the test instead of reading as 0.
    pub async fn metric(&self, name: &str, needles: &[&str]) -> f64 {
        let text = self.metrics().await;
        metric_value(&text, name, needles).unwrap_or_else(|| panic!("no series {name} with {needles:?} in:\n{text}"))
    }

    /// Like [`Self::metric`], `None` when the series does not exist (yet).
    pub async fn metric_opt(&self, name: &str, needles: &[&str]) -> Option<f64> {
        metric_value(&self.metrics().await, name, needles)
    }

    /// GET on the ingress; returns status, headers and body.
    pub async fn get(&self, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let resp = self.client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_else(|e| panic!("GET {url}: reading the body after {status}: {e}"));
        (status, headers, body)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node still running");
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(status) => status.expect("wait for wasmfn"),
            Err(_) => {
                // SAFETY: killing our own child process that ignored SIGTERM.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("node did not exit within 60 s of SIGTERM\n{}", self.logs());
            }
        }
    }

    /// Sends SIGTERM without waiting; returns the child to wait on.
    pub fn terminate(&mut self) -> Child {
        let child = self.child.take().expect("node still running");
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child
    }

    /// The node's resident set size, from `/proc/PID/status`.
    pub fn rss_bytes(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    /// The node's peak resident set size since it started (`VmHWM`).
    pub fn peak_rss_bytes(&self) -> u64 {
        self.proc_status("VmHWM:")
    }

    fn proc_status(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("node running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
        let kib = status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next());
        kib.and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| panic!("{field} in /proc/PID/status")) * 1024
    }

    /// Kills the process at once (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kills a node that failed to start; returns its exit status and everything it wrote (stderr, then stdout).
///
/// The readers are drained first: a process that exits at once (a refused config) leaves its last lines, the
/// reason, in the pipes, and reading the logs right away would often miss them. They are waited for only a
/// while, since a child of the node could keep a pipe open.
fn stop_failed(
    mut child: Child,
    readers: [std::thread::JoinHandle<()>; 2],
    logs: &Mutex<String>,
    stdout: &Mutex<String>,
) -> (String, String) {
    let _ = child.kill();
    let status = match child.wait() {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    };
    // The node is gone, so its pipes are closed and the readers end with everything it wrote.
    for reader in readers {
        let _ = reader.join();
    }
    let mut output = logs.lock().unwrap().clone();
    let out = stdout.lock().unwrap();
    if !out.is_empty() {
        output.push_str(&format!("--- stdout ---\n{out}"));
    }
    (status, output)
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- wasmfn logs ---\n{}", self.logs());
            eprintln!("--- wasmfn stdout ---\n{}", self.stdout.lock().unwrap());
        }
    }
}

/// A response's body as JSON, `Null` when it is not JSON (a plain 401); panics when the body cannot be read,
/// which is a broken answer, not an empty one.
async fn json_body(resp: reqwest::Response) -> serde_json::Value {
    let (url, status) = (resp.url().clone(), resp.status());
    let bytes = resp.bytes().await.unwrap_or_else(|e| panic!("{url}: reading the body after {status}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

/// Reads a series' value from Prometheus text.
pub fn metric_value(text: &str, name: &str, needles: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A `Function` manifest in YAML.
pub fn manifest(name: &str, component: &Path, spec_extra: &str) -> String {
    format!(
        "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  component: {}\n{spec_extra}",
        component.display()
    )
}
