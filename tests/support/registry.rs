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
        Self::start_with(user, false)
    }

    /// Starts a registry serving HTTPS with a self-signed certificate for 127.0.0.1; see [`Self::ca_file`].
    pub fn start_tls() -> RegistryProc {
        Self::start_with(None, true)
    }

    /// The CA certificate that signed a TLS registry's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self._dir.path().join("cert.pem")
    }

    fn start_with(user: Option<(&str, &str)>, tls: bool) -> RegistryProc {
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
        let mut tls_config = String::new();
        if tls {
            // A CA, and a server certificate for 127.0.0.1 signed by it (webpki refuses a CA as end entity).
            let p = |n: &str| dir.path().join(n);
            let (cert, key) = (p("server.pem"), p("server.key"));
            std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").unwrap();
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
            let steps: Vec<Vec<String>> = vec![
                [&["req", "-x509"][..], &ec[..], &["-days", "1", "-subj", "/CN=wasmfn-test-ca", "-keyout"]]
                    .concat()
                    .iter()
                    .map(|s| s.to_string())
                    .chain([p("ca.key").display().to_string(), "-out".into(), p("cert.pem").display().to_string()])
                    .collect(),
                [&["req"][..], &ec[..], &["-subj", "/CN=127.0.0.1", "-keyout"]]
                    .concat()
                    .iter()
                    .map(|s| s.to_string())
                    .chain([key.display().to_string(), "-out".into(), p("server.csr").display().to_string()])
                    .collect(),
                ["x509", "-req", "-days", "1", "-CAcreateserial"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([
                        "-in".into(),
                        p("server.csr").display().to_string(),
                        "-CA".into(),
                        p("cert.pem").display().to_string(),
                        "-CAkey".into(),
                        p("ca.key").display().to_string(),
                        "-extfile".into(),
                        p("ext.cnf").display().to_string(),
                        "-out".into(),
                        cert.display().to_string(),
                    ])
                    .collect(),
            ];
            for args in steps {
                let out = Command::new("openssl").args(&args).output().expect("openssl");
                assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            tls_config = format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display());
        }
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls_config}{auth}",
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
