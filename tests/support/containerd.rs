//! A real containerd (Debian's 1.6 with runc) for the shim tests: its own config, root, state and socket in
//! a temp dir, the shim found on its `PATH`; plus plain OCI image tarballs for `ctr images import`.

use crate::eventually;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The runtime name `ctr run --runtime` takes for `containerd-shim-wasmfn-v1`.
pub const RUNTIME: &str = "io.containerd.wasmfn.v1";

/// A running containerd, stopped (with every task it started) on drop.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    namespace: String,
}

impl Containerd {
    /// Starts containerd with the shim binary's folder first on its `PATH` and the shim's host directory
    /// (`WASMFN_SHIM_DIR`) at `shim_dir`. Panics with containerd's log if it does not come up.
    pub async fn start(shim: &Path, shim_dir: &Path) -> Containerd {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the containerd tests need root (namespaces, mounts, cgroups); .ci/run runs as root"
        );
        let dir = tempfile::Builder::new().prefix("wasmfn-ctrd").tempdir().expect("temp dir");
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("c.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("write config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log file");
        let path = format!(
            "{}:{}",
            shim.parent().expect("shim has a folder").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .args(["--log-level", "debug"])
            .env("PATH", path)
            .env("WASMFN_SHIM_DIR", shim_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd (scripts/setup.sh installs it)");
        let namespace = format!("wasmfn-test-{}", std::process::id());
        let ctrd = Containerd { dir, child, namespace };
        eventually(Duration::from_secs(30), "containerd answers", || async {
            ctrd.ctr(&["version"]).status.success().then_some(())
        })
        .await;
        ctrd
    }

    /// Runs `ctr` against this containerd in the test's namespace.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().expect("run ctr")
    }

    /// A `ctr` command against this containerd, not yet started.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(self.socket()).args(["--namespace", &self.namespace]).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `ctr` and panics with its output unless it succeeds.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(out.status.success(), "ctr {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// containerd's log, which includes the shims' logs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Imports an image tarball written by [`plain_image`].
    pub fn import(&self, tarball: &Path) {
        self.ctr_ok(&["images", "import", tarball.to_str().expect("utf-8 path")]);
    }

    /// Starts `ctr run --rm` in the foreground: its output is the container's and its exit status the task's.
    pub fn run(&self, image: &str, id: &str, env: &[(&str, &str)]) -> Child {
        let mut args = vec!["run", "--rm", "--net-host", "--runtime", RUNTIME];
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for e in &env {
            args.extend(["--env", e]);
        }
        args.extend([image, id]);
        let mut cmd = self.ctr_command(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("start ctr run")
    }

    /// Task ids with their status (`RUNNING`, `STOPPED`, …).
    pub fn tasks(&self) -> Vec<(String, String)> {
        let out = self.ctr_ok(&["tasks", "ls"]);
        out.lines()
            .skip(1)
            .filter_map(|l| {
                let mut cols = l.split_whitespace();
                Some((cols.next()?.to_string(), cols.nth(1)?.to_string()))
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks left by a failed test: `--force` kills and removes each, so its shim exits; then stop containerd.
        if let Ok(out) = self.ctr_command(&["tasks", "ls", "-q"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.ctr_command(&["tasks", "delete", "--force", id]).output();
                let _ = self.ctr_command(&["containers", "delete", id]).output();
            }
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // Overlay snapshots may still be mounted under the root; unmount them before the temp dir goes.
        let root = self.dir.path().join("root");
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            for line in mounts.lines() {
                if let Some(target) = line.split_whitespace().nth(1)
                    && Path::new(target).starts_with(&root)
                {
                    let _ = Command::new("umount").arg("-l").arg(target).status();
                }
            }
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": sha256(bytes), "size": bytes.len() })
}

/// Writes an OCI image layout tarball that `ctr images import` names `reference`: one uncompressed tar layer
/// with `files` (path in the root file system, content), a linux/amd64 config with `entrypoint` as its
/// command: the plain-image form that containerd before 1.6.25 can run.
pub fn plain_image(out: &Path, reference: &str, files: &[(&str, &[u8])], entrypoint: &[&str]) {
    let mut layer = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        layer.append_data(&mut header, path.trim_start_matches('/'), *content).expect("tar entry");
    }
    let layer = layer.into_inner().expect("tar layer");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": entrypoint },
        "rootfs": { "type": "layers", "diff_ids": [sha256(&layer)] },
    }))
    .expect("config json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .expect("manifest json");
    let mut manifest_desc = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    manifest_desc["annotations"] = serde_json::json!({ "io.containerd.image.name": reference });
    let index = serde_json::to_vec(&serde_json::json!({ "schemaVersion": 2, "manifests": [manifest_desc] }))
        .expect("index json");

    let mut tarball = tar::Builder::new(std::fs::File::create(out).expect("create tarball"));
    let mut add = |path: String, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tarball.append_data(&mut header, path, bytes).expect("tarball entry");
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for blob in [&layer, &config, &manifest] {
        add(format!("blobs/sha256/{}", &sha256(blob)["sha256:".len()..]), blob);
    }
    tarball.finish().expect("finish tarball");
}
