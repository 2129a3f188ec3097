//! A real OCI registry (Debian's `docker-registry`, CNCF distribution 2.8) on 127.0.0.1, with its storage and
//! access log in a temp dir; optionally behind htpasswd basic auth.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running registry.
pub struct RegistryProc {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The storage root.
    pub storage: PathBuf,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl RegistryProc {
    /// Starts a registry; with `user`, it requires that user and password (htpasswd, bcrypt).
    pub fn start(user: Option<(&str, &str)>) -> RegistryProc {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("data");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut auth = String::new();
        if let Some((name, password)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", name, password])
                .output()
                .expect("htpasswd (apache2-utils) is needed for the registry auth tests: run scripts/setup.sh");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).expect("write htpasswd");
            auth = format!("auth:\n  htpasswd:\n    realm: wasmfn-tests\n    path: {}\n", file.display());
        }
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
                storage.display()
            ),
        )
        .expect("write registry config");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker-registry is needed for the registry tests: run scripts/setup.sh");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let reg = RegistryProc { child: Some(child), addr, storage, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen:\n{}", reg.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        reg
    }

    /// Everything the registry logged (its access log included).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Successful GETs of a blob, from the access log.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest}")) && l.contains("\" 200 "))
            .count()
    }

    /// The file holding a blob in the registry's storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// Stops the registry (a registry that is down).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The storage root.
    pub fn storage(&self) -> &Path {
        &self.storage
    }
}

impl Drop for RegistryProc {
    fn drop(&mut self) {
        self.stop();
    }
}
