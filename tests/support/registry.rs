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
    _keys: Option<tempfile::TempDir>,
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
        Self::start_config(user, tls, "")
    }

    fn start_config(user: Option<(&str, &str)>, tls: bool, extra_auth: &str) -> RegistryProc {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("data");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut auth = extra_auth.to_string();
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
        // The registry logs `listening on ADDR` once it accepts connections; the readers pass lines on until then.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (log, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                    drop(l);
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let reg = RegistryProc { child: Some(child), addr, storage, log, _dir: dir, _keys: None };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) => {}
                Err(_) => panic!("docker-registry did not listen:\n{}", reg.log()),
            }
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

/// A token server for the registry's bearer-token flow: `GET /token` with basic auth answers a JWT (ES256, the
/// signing certificate in `x5c`) granting the requested scopes, as Docker Hub's auth service does.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// The certificate the registry trusts for tokens.
    pub cert: PathBuf,
    /// Tokens issued so far.
    pub issued: Arc<std::sync::atomic::AtomicUsize>,
}

mod token {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

    pub(super) const SERVICE: &str = "wasmfn-test-registry";
    pub(super) const ISSUER: &str = "wasmfn-test-issuer";

    fn openssl(args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Starts the server in `dir`; only `user`/`password` get tokens.
    pub(super) fn start(dir: &Path, user: &'static str, password: &'static str) -> TokenServer {
        let p = |n: &str| dir.join(n).display().to_string();
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &p("token.key")]);
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            &p("token.key"),
            "-subj",
            "/CN=wasmfn-test-issuer",
            "-days",
            "1",
            "-out",
            &p("token.pem"),
        ]);
        let pkcs8 = openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &p("token.key"), "-outform", "DER"]);
        let der = openssl(&["x509", "-in", &p("token.pem"), "-outform", "DER"]);
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).expect("P-256 key");
        let x5c = STANDARD.encode(der);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let state = Arc::new((key, x5c, issued.clone()));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/token",
                    axum::routing::get(move |headers: http::HeaderMap, uri: http::Uri| {
                        let state = state.clone();
                        async move { issue(&state, &headers, &uri, user, password) }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app).await;
            });
        });
        TokenServer { realm, cert: dir.join("token.pem"), issued }
    }

    fn issue(
        state: &(EcdsaKeyPair, String, Arc<std::sync::atomic::AtomicUsize>),
        headers: &http::HeaderMap,
        uri: &http::Uri,
        user: &str,
        password: &str,
    ) -> (http::StatusCode, String) {
        let want = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            return (http::StatusCode::UNAUTHORIZED, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.into());
        }
        // scope=repository:NAME:pull,push (possibly several).
        let access: Vec<serde_json::Value> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.strip_prefix("scope="))
            .filter_map(|s| {
                let s = s.replace("%3A", ":").replace("%2C", ",").replace("%2F", "/");
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) =
                    (parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string());
                Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let n = state.2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [state.1]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("t{n}"), "access": access,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = state.0.sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes()).expect("sign");
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        (
            http::StatusCode::OK,
            serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string(),
        )
    }
}

impl RegistryProc {
    /// Starts a registry that requires bearer tokens from a [`TokenServer`] that grants them to `user`.
    pub fn start_token_auth(user: &'static str, password: &'static str) -> (RegistryProc, TokenServer) {
        let keys = tempfile::tempdir().expect("temp dir");
        let server = token::start(keys.path(), user, password);
        let auth = format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            server.realm,
            token::SERVICE,
            token::ISSUER,
            server.cert.display()
        );
        let mut reg = Self::start_config(None, false, &auth);
        reg._keys = Some(keys);
        (reg, server)
    }
}
