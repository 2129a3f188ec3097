//! Components as OCI artifacts with a real registry (Debian's docker-registry on 127.0.0.1): push, skopeo reading
//! the CNCF layout, deploys by tag pinned to a digest, one fetch per layer, and every failure leaving the serving
//! revision alone.

use serde_json::Value;
use std::path::Path;
use wasmfn_tests::build::{Run, build_ok};
use wasmfn_tests::guests::{repo_root, rust_guest};
use wasmfn_tests::node::{NodeProc, Options, manifest, use_binary};
use wasmfn_tests::registry::RegistryProc;

fn hello() -> std::path::PathBuf {
    build_ok(&repo_root().join("examples/hello-rust"), &[]).0
}

/// `wasmfn push FILE REF --insecure`, with extra environment.
fn push(file: &Path, reference: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wasmfn"));
    cmd.args(["push", file.to_str().unwrap(), reference, "--insecure"]).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

fn push_ok(file: &Path, reference: &str) -> String {
    let run = push(file, reference, &[], &[]);
    assert!(run.ok, "push failed:\n{}\n{}", run.stdout, run.stderr);
    run.stdout.split_whitespace().find(|w| w.starts_with("sha256:")).unwrap().to_string()
}

fn skopeo(args: &[&str]) -> Value {
    let out = std::process::Command::new("skopeo")
        .arg("inspect")
        .args(args)
        .output()
        .expect("skopeo is needed for the registry tests: run scripts/setup.sh");
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node_for(reg: &RegistryProc, env: Vec<(String, String)>) -> (tempfile::TempDir, NodeProc) {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[registry]\ninsecure = [\"{}\"]\n", reg.addr);
    let node = NodeProc::start_with(dir.path(), Options { config, env, ..Default::default() });
    (dir, node)
}

fn image_manifest(name: &str, image: &str) -> String {
    format!("apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn push_deploy_by_tag_and_the_revision_stays_pinned() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let reg = RegistryProc::start(None);
    let hello = hello();
    let reference = format!("{}/fns/hello:v1", reg.addr);
    let manifest_digest = push_ok(&hello, &reference);

    // A third-party client reads the CNCF Wasm layout.
    let docker = format!("docker://{reference}");
    let m = skopeo(&["--raw", "--tls-verify=false", &docker]);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let bytes = std::fs::read(&hello).unwrap();
    assert_eq!(layer, format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))));
    assert_eq!(m["layers"][0]["size"], bytes.len());
    assert!(m["annotations"]["org.opencontainers.image.title"].as_str().unwrap().ends_with(".wasm"), "{m}");
    assert!(m["annotations"]["org.opencontainers.image.created"].is_string());
    let c = skopeo(&["--config", "--raw", "--tls-verify=false", &docker]);
    assert_eq!((c["architecture"].as_str(), c["os"].as_str()), (Some("wasm"), Some("wasip2")));
    assert_eq!(c["layerDigests"][0], layer.as_str());
    let exports: Vec<&str> = c["component"]["exports"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler@0.2.")), "{exports:?}");
    assert!(c["component"]["imports"].as_array().unwrap().iter().any(|i| i == "wasi:http/types@0.2.12"), "{c}");

    // Deploy by tag: served, and the revision records the digest the tag pointed to.
    let (_dir, node) = node_for(&reg, vec![]);
    let body = node.deploy_ok(&image_manifest("hello", &reference)).await;
    let pinned = format!("{}/fns/hello@{manifest_digest}", reg.addr);
    assert_eq!(body["function"]["spec"]["image"], pinned.as_str(), "{body}");
    let (status, _, text) = node.get(&node.url("default", "hello", "/x")).await;
    assert_eq!((status, text.as_str()), (200, "Hello from wasmfn (Rust)! You asked for /x\n"));

    // The tag moves to another component; the revision keeps its digest and keeps serving it.
    push_ok(&rust_guest(), &reference);
    let (_, info) = node.admin_get("/v1/functions/default/hello").await;
    assert_eq!(info["spec"]["image"], pinned.as_str());
    assert_eq!(node.get(&node.url("default", "hello", "/")).await.2, "Hello from wasmfn (Rust)! You asked for /\n");
    // Re-applying the manifest resolves the tag again: a new revision.
    let body = node.deploy_ok(&image_manifest("hello", &reference)).await;
    assert_eq!(body["function"]["revision"], "hello-2");
    assert_eq!(node.get(&node.url("default", "hello", "/")).await.2, "hello from rust v0\n");
    // The recorded spec (pinned image + component digest) re-applies as is, changing nothing.
    let (_, info) = node.admin_get("/v1/functions/default/hello").await;
    let record = serde_json::json!({"apiVersion": "wasmfn.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello"}, "spec": info["spec"]});
    let (status, body) = node.deploy(&record.to_string()).await;
    assert_eq!((status, &body["changed"]), (200, &Value::Bool(false)), "{body}");

    // `wasmfn pull` gets the same bytes back.
    let out = tempfile::NamedTempFile::new().unwrap();
    let run = Run::from(
        std::process::Command::new(env!("CARGO_BIN_EXE_wasmfn"))
            .args(["pull", &pinned, "--insecure", "-o", out.path().to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(std::fs::read(out.path()).unwrap(), bytes);
}

/// Many functions deployed at once from one image: the layer is downloaded once.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deploys_of_one_digest_fetch_the_layer_once() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let reg = RegistryProc::start(None);
    let hello = hello();
    let reference = format!("{}/fns/shared:v1", reg.addr);
    push_ok(&hello, &reference);
    let layer =
        format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&hello).unwrap())));
    let (_dir, node) = node_for(&reg, vec![]);
    let deploys = (0..6).map(|i| {
        let m = image_manifest(&format!("f{i}"), &reference);
        let node = &node;
        async move { node.deploy(&m).await }
    });
    for (status, body) in futures_util::future::join_all(deploys).await {
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(node.metric("wasmfn_image_layer_fetches_total", &[]).await, 1.0);
    assert_eq!(reg.blob_gets(&layer), 1, "registry log:\n{}", reg.log());
    for i in 0..6 {
        assert_eq!(node.get(&node.url("default", &format!("f{i}"), "/")).await.0, 200);
    }
}

/// Each failure is named, and the serving revision keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn tampered_blob_unknown_tag_and_registry_down_keep_the_old_revision() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let mut reg = RegistryProc::start(None);
    let reference = format!("{}/fns/tamper:v1", reg.addr);
    push_ok(&hello(), &reference);
    let (_dir, node) = node_for(&reg, vec![]);
    node.deploy_ok(&manifest("svc", &rust_guest(), "")).await;
    let serving = || async { node.get(&node.url("default", "svc", "/")).await };

    // Deploying `image` onto `svc` fails with 422; returns the error message.
    let expect_failure = |image: String| {
        let node = &node;
        async move {
            let (status, body) = node.deploy(&image_manifest("svc", &image)).await;
            assert_eq!(status, 422, "{body}");
            body["error"].as_str().unwrap().to_string()
        }
    };

    // A blob whose content no longer matches its digest.
    let m: Value = serde_json::from_slice(
        &std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let path = reg.blob_path(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let error = expect_failure(reference.clone()).await;
    assert!(error.contains("digest mismatch") && error.contains(&layer), "{error}");
    assert_eq!(serving().await.2, "hello from rust v0\n");

    // An unknown tag.
    let error = expect_failure(format!("{}/fns/tamper:nope", reg.addr)).await;
    assert!(error.contains("not found") && error.contains("fns/tamper:nope"), "{error}");
    assert_eq!(serving().await.2, "hello from rust v0\n");

    // A registry that is down (retried with backoff, then named): nobody's input was wrong, so 502, not 422.
    reg.stop();
    let (status, body) = node.deploy(&image_manifest("svc", &reference)).await;
    assert_eq!(status, 502, "{body}");
    let error = body["error"].as_str().unwrap().to_string();
    assert!(error.contains("unreachable") && error.contains(&reg.addr), "{error}");
    assert_eq!(serving().await.2, "hello from rust v0\n");
    let (_, info) = node.admin_get("/v1/functions/default/svc").await;
    assert_eq!(info["revision"], "svc-1");
}

/// A registry behind htpasswd: the right credentials push and deploy; a wrong password is named, and the serving
/// revision stays.
#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry_accepts_the_right_password_only() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let reg = RegistryProc::start(Some(("alice", "s3cret")));
    let reference = format!("{}/fns/private:v1", reg.addr);
    let creds = [("WASMFN_REGISTRY_USER", "alice"), ("WASMFN_REGISTRY_PASSWORD", "s3cret")];
    let hello = hello();
    let anonymous = push(&hello, &reference, &[], &[]);
    assert!(!anonymous.ok && anonymous.stderr.contains("refused the credentials"), "{}", anonymous.stderr);
    let run = push(&hello, &reference, &[], &creds);
    assert!(run.ok, "{}", run.stderr);

    let env = |p: &str| {
        vec![
            ("WASMFN_REGISTRY_USER".to_string(), "alice".to_string()),
            ("WASMFN_REGISTRY_PASSWORD".to_string(), p.to_string()),
        ]
    };
    let (_d1, good) = node_for(&reg, env("s3cret"));
    good.deploy_ok(&image_manifest("private", &reference)).await;
    assert_eq!(good.get(&good.url("default", "private", "/")).await.0, 200);

    let (_d2, bad) = node_for(&reg, env("wrong"));
    bad.deploy_ok(&manifest("private", &rust_guest(), "")).await;
    let (status, body) = bad.deploy(&image_manifest("private", &reference)).await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("refused the credentials") && error.contains(&reg.addr), "{error}");
    assert_eq!(bad.get(&bad.url("default", "private", "/")).await.2, "hello from rust v0\n");
}

/// `--format image`: a plain image whose tar layer holds the component deploys like the Wasm artifact.
#[tokio::test(flavor = "multi_thread")]
async fn the_plain_image_format_deploys_too() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let reg = RegistryProc::start(None);
    let reference = format!("{}/fns/plain:v1", reg.addr);
    let run = push(&hello(), &reference, &["--format", "image"], &[]);
    assert!(run.ok, "{}", run.stderr);
    let m = skopeo(&["--raw", "--tls-verify=false", &format!("docker://{reference}")]);
    assert_eq!(m["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    let (_dir, node) = node_for(&reg, vec![]);
    node.deploy_ok(&image_manifest("plain", &reference)).await;
    let (status, _, text) = node.get(&node.url("default", "plain", "/p")).await;
    assert_eq!((status, text.as_str()), (200, "Hello from wasmfn (Rust)! You asked for /p\n"));
    // Another function from the same image: the tar layer is not fetched again.
    node.deploy_ok(&image_manifest("plain2", &reference)).await;
    assert_eq!(node.metric("wasmfn_image_layer_fetches_total", &[]).await, 1.0);
    assert_eq!(reg.blob_gets(m["layers"][0]["digest"].as_str().unwrap()), 1);
}

/// Unreferenced components leave the store after the grace period; what a function uses or the local OCI index
/// names stays.
#[tokio::test(flavor = "multi_thread")]
async fn unreferenced_components_are_collected_after_the_grace_period() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // `wasmfn build` into the data dir: the local OCI layout names it hello-rust:latest.
    let built = Run::from(wasmfn_tests::build::wasmfn(&[
        "build",
        repo_root().join("examples/hello-rust").to_str().unwrap(),
        "--data-dir",
        data,
    ]));
    assert!(built.ok, "{}", built.stderr);
    let index: Value = serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "hello-rust:latest");
    assert!(dir.path().join("oci-layout").exists());
    let named = built.stdout.split_whitespace().find(|w| w.starts_with("sha256:")).unwrap().to_string();
    let blob = |d: &str| dir.path().join("blobs/sha256").join(d.trim_start_matches("sha256:"));

    // One revision kept: the replaced revision leaves the history, and its component becomes garbage.
    let node = NodeProc::start(dir.path(), "gc-grace = \"300ms\"\nrevision-history = 1\n");
    let (status, up) = node.upload(std::fs::read(rust_guest()).unwrap()).await;
    assert_eq!(status, 201, "{up}");
    let used = up["digest"].as_str().unwrap().to_string();
    node.deploy_ok(&format!(
        "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: a\nspec:\n  component: {used}\n"
    ))
    .await;
    let (status, up) = node.upload(std::fs::read(hello()).unwrap()).await;
    assert_eq!((status, up["digest"].as_str()), (201, Some(named.as_str())));
    // A component uploaded and then replaced: unreferenced once `a` moves to the named one and its first
    // revision is pruned.
    node.deploy_ok(&format!(
        "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: a\nspec:\n  component: {named}\n"
    ))
    .await;
    wasmfn_tests::eventually(std::time::Duration::from_secs(20), "the unreferenced blob to go", || {
        let gone = !blob(&used).exists();
        async move { gone.then_some(()) }
    })
    .await;
    assert!(node.metric("wasmfn_blobs_collected_total", &[]).await >= 1.0);
    assert!(blob(&named).exists(), "a blob the index names and a function uses was deleted");
    assert_eq!(node.get(&node.url("default", "a", "/")).await.0, 200);
}

fn wasmfn_cmd(args: &[&str]) -> Run {
    Run::from(std::process::Command::new(env!("CARGO_BIN_EXE_wasmfn")).args(args).output().unwrap())
}

/// HTTPS with a CA the system does not know: trusted only through `--ca-file` / `registry.ca-file`; plain HTTP
/// only for registries marked insecure, never as a fallback.
#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_custom_ca_and_no_silent_plain_http() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let hello = hello();
    let file = hello.to_str().unwrap();
    let tls = RegistryProc::start_tls();
    let ca = tls.ca_file();
    let reference = format!("{}/fns/tls:v1", tls.addr);
    let run = wasmfn_cmd(&["push", file, &reference]);
    assert!(!run.ok, "an unknown CA was trusted");
    assert!(run.stderr.contains(&tls.addr) && run.stderr.contains("TLS to"), "{}", run.stderr);
    let run = wasmfn_cmd(&["push", file, &reference, "--ca-file", ca.to_str().unwrap()]);
    assert!(run.ok, "{}", run.stderr);

    let dir = tempfile::tempdir().unwrap();
    let config = format!("[registry]\nca-file = {:?}\n", ca.display().to_string());
    let node = NodeProc::start(dir.path(), &config);
    node.deploy_ok(&image_manifest("tls", &reference)).await;
    assert_eq!(node.get(&node.url("default", "tls", "/")).await.0, 200);

    // A plain-HTTP registry is not reached unless marked insecure.
    let plain = RegistryProc::start(None);
    let run = wasmfn_cmd(&["push", file, &format!("{}/fns/plain:v1", plain.addr)]);
    assert!(!run.ok, "pushed over plain HTTP without --insecure");
    assert!(!plain.log().contains("PUT /v2/"), "a blob reached the plain registry:\n{}", plain.log());

    // An artifact `wasmfn build` stored locally is pushed as it is, by name.
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let built = wasmfn_cmd(&["build", repo_root().join("examples/hello-rust").to_str().unwrap(), "--data-dir", d]);
    assert!(built.ok, "{}", built.stderr);
    let local = format!("{}/fns/local:v1", plain.addr);
    let run = wasmfn_cmd(&["push", "hello-rust", &local, "--insecure", "--data-dir", d]);
    assert!(run.ok && run.stdout.contains("from the local store, hello-rust:latest"), "{}\n{}", run.stdout, run.stderr);
    let m = skopeo(&["--raw", "--tls-verify=false", &format!("docker://{local}")]);
    assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
}

/// The bearer-token flow: the registry answers 401 with a `Bearer realm=…` challenge, the client trades its basic
/// credentials at the token server for a JWT scoped to the repository, and retries with it.
#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_flow_with_a_token_server() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let (reg, tokens) = RegistryProc::start_token_auth("alice", "s3cret");
    let reference = format!("{}/fns/bearer:v1", reg.addr);
    let hello = hello();
    let creds = [("WASMFN_REGISTRY_USER", "alice"), ("WASMFN_REGISTRY_PASSWORD", "s3cret")];
    let wrong =
        push(&hello, &reference, &[], &[("WASMFN_REGISTRY_USER", "alice"), ("WASMFN_REGISTRY_PASSWORD", "nope")]);
    assert!(!wrong.ok && wrong.stderr.contains(&reg.addr), "{}", wrong.stderr);
    let run = push(&hello, &reference, &[], &creds);
    assert!(run.ok, "{}\n--- registry ---\n{}", run.stderr, reg.log());
    assert!(tokens.issued.load(std::sync::atomic::Ordering::Relaxed) >= 1, "no token was issued");

    let env = creds.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (_dir, node) = node_for(&reg, env);
    node.deploy_ok(&image_manifest("bearer", &reference)).await;
    assert_eq!(node.get(&node.url("default", "bearer", "/")).await.0, 200);
}
