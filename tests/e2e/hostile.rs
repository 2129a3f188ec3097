//! Hostile input (issue 17): a scripted registry (`tests/support/fake_registry.rs`) answers what a real one never
//! would. Each deploy must fail with a 422 that names the problem, the node's memory must stay bounded, and the
//! node must keep serving.

use std::io::Write;
use wasmfn_tests::fake_registry::{Answer, FakeRegistry, MANIFEST, digest, manifest};
use wasmfn_tests::node::{NodeProc, Options, use_binary};

const WASM_LAYER: &str = "application/wasm";
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Far above an idle node (~15–40 MiB) and far below what any of these attacks would take unchecked.
const RSS_BOUND: u64 = 300 << 20;

fn start(registry: &FakeRegistry, extra: &str) -> (tempfile::TempDir, NodeProc) {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[registry]\ninsecure = [\"{}\"]\n{extra}", registry.addr);
    let node = NodeProc::start(dir.path(), &config);
    (dir, node)
}

fn image_manifest(name: &str, image: &str) -> String {
    format!("apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n")
}

/// Deploys `image` and returns the error message of the 422 the node must answer.
async fn refused(node: &NodeProc, name: &str, image: &str) -> String {
    let (status, body) = node.deploy(&image_manifest(name, image)).await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"].as_str().unwrap_or_default().to_string();
    let rss = node.rss_bytes();
    // RELIABILITY.md quotes these lines (`--nocapture`).
    println!("hostile {name}: {status} {message:?}, node RSS {:.1} MiB", rss as f64 / (1 << 20) as f64);
    assert!(rss < RSS_BOUND, "RSS {rss} after {name}: {message}");
    let (health, _, _) = node.get(&format!("http://{}/healthz", node.admin)).await;
    assert_eq!(health, 200, "the node keeps serving");
    message
}

#[tokio::test(flavor = "multi_thread")]
async fn path_like_layer_digests_never_become_paths() {
    let reg = FakeRegistry::start().await;
    let (_dir, node) = start(&reg, "");
    // The attack that grew a node to 17.9 GB: a tar layer's digest was joined into a path and read.
    for (tag, media_type, layer) in
        [("tar", TAR_GZIP, "sha256:/dev/zero"), ("wasm", WASM_LAYER, "sha256:../../../../etc/passwd")]
    {
        reg.manifest("evil", tag, Answer::Bytes(MANIFEST, manifest(media_type, layer, 100)));
        let message = refused(&node, &format!("digest-{tag}"), &reg.reference("evil", tag)).await;
        assert!(message.contains("invalid digest"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_longer_than_its_descriptor_stops_at_the_descriptor() {
    let reg = FakeRegistry::start().await;
    let (_dir, node) = start(&reg, "");
    let small = digest(b"0123456789");
    reg.manifest("long", "v1", Answer::Bytes(MANIFEST, manifest(WASM_LAYER, &small, 10)));
    // An endless body behind a 10-byte descriptor.
    reg.blob("long", &small, Answer::Zeros("application/octet-stream", u64::MAX));
    let message = refused(&node, "long", &reg.reference("long", "v1")).await;
    assert!(message.contains("longer than its descriptor's 10 bytes"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_descriptors_manifests_and_gzip_bombs_are_refused() {
    let reg = FakeRegistry::start().await;
    let (_dir, node) = start(&reg, "max-component = \"8Mi\"\n");

    // A layer that says it is 10 GiB: refused before any download (the blob is not even scripted).
    let huge = format!("sha256:{}", "ab".repeat(32));
    reg.manifest("big", "v1", Answer::Bytes(MANIFEST, manifest(WASM_LAYER, &huge, 10 << 30)));
    let message = refused(&node, "big-layer", &reg.reference("big", "v1")).await;
    assert!(message.contains("larger than the limit of 268435456 bytes"), "{message}");

    // An endless manifest (the limit is 4 MiB).
    reg.manifest("big", "manifest", Answer::Zeros(MANIFEST, u64::MAX));
    let message = refused(&node, "big-manifest", &reg.reference("big", "manifest")).await;
    assert!(message.contains("manifest") && message.contains("larger than the limit"), "{message}");

    // A gzip bomb: 160 KiB on the wire, a 128 MiB .wasm entry inside; the limit here is 8 MiB.
    let bomb = {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best()));
        let size = 128u64 << 20;
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "bomb.wasm", std::io::Read::take(std::io::repeat(0), size)).unwrap();
        let mut gz = tar.into_inner().unwrap();
        gz.flush().unwrap();
        gz.finish().unwrap()
    };
    let layer = digest(&bomb);
    reg.manifest("bomb", "v1", Answer::Bytes(MANIFEST, manifest(TAR_GZIP, &layer, bomb.len() as u64)));
    reg.blob("bomb", &layer, Answer::Bytes("application/octet-stream", bomb));
    let message = refused(&node, "bomb", &reg.reference("bomb", "v1")).await;
    assert!(message.contains("larger than the limit of 8388608 bytes"), "{message}");
}

/// The admin API reads a component path only as a bounded regular file: a device or a FIFO is refused at once
/// (reading either would never end), and a file over `max-component` before it is read.
#[tokio::test(flavor = "multi_thread")]
async fn component_paths_that_never_end_are_refused() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "[registry]\nmax-component = \"1Mi\"\n");
    let fifo = dir.path().join("fifo.wasm");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = dir.path().join("big.wasm");
    std::fs::write(&big, vec![0u8; 2 << 20]).unwrap();
    for (name, path, expected) in [
        ("zero", "/dev/zero", "not a regular file"),
        ("fifo", fifo.to_str().unwrap(), "not a regular file"),
        ("big", big.to_str().unwrap(), "over the limit of 1048576"),
    ] {
        let manifest = format!(
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  component: {path}\n"
        );
        let (status, body) = node.deploy(&manifest).await;
        assert_eq!(status, 422, "{name}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{name}: {message}");
    }
    assert!(node.rss_bytes() < RSS_BOUND);
}

/// With an admin token, `/metrics` (which names every tenant's functions) needs it too; the probes do not.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_the_admin_token_and_probes_do_not() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let opts =
        Options { config: "admin-token = \"s3cret\"\n".into(), token: Some("s3cret".into()), ..Default::default() };
    let node = NodeProc::start_with(dir.path(), opts);
    let anonymous = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", node.admin);
    for (path, want) in [("/metrics", 401), ("/healthz", 200), ("/readyz", 200)] {
        assert_eq!(anonymous.get(url(path)).send().await.unwrap().status().as_u16(), want, "{path}");
    }
    let wrong = anonymous.get(url("/metrics")).bearer_auth("s3creT").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(node.metrics().await.contains("wasmfn_"), "the token holder reads them");

    // For scrapers that cannot send a token, public-metrics opens /metrics (and nothing else).
    let dir = tempfile::tempdir().unwrap();
    let config = "admin-token = \"s3cret\"\npublic-metrics = true\n".into();
    let node = NodeProc::start_with(dir.path(), Options { config, token: Some("s3cret".into()), ..Default::default() });
    let url = |p: &str| format!("http://{}{p}", node.admin);
    assert_eq!(anonymous.get(url("/metrics")).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(anonymous.get(url("/v1/functions")).send().await.unwrap().status().as_u16(), 401);
}

/// Slowloris: connections that send nothing, half a request head or half the h2c preface, on the ingress and
/// on the admin listener, are closed within `header-timeout` (1 s here), while `/healthz` keeps answering.
#[tokio::test(flavor = "multi_thread")]
async fn idle_and_trickling_connections_are_closed_on_every_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "header-timeout = \"1s\"\n");
    let mut held = Vec::new();
    for addr in [node.ingress, node.admin] {
        for opening in [&b""[..], b"GET / HTTP/1.1\r\nHost: x\r\n", b"PRI * HTTP/2.0\r\n"] {
            for _ in 0..5 {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(opening).await.unwrap();
                held.push((addr, String::from_utf8_lossy(opening).to_string(), s));
            }
        }
    }
    // A keep-alive connection that went idle after its request.
    for addr in [node.ingress, node.admin] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).await.unwrap();
        assert!(first.starts_with(b"HTTP/1.1"), "{}", String::from_utf8_lossy(&first));
        held.push((addr, "a request, then nothing".to_string(), s));
    }
    let (status, _, _) = node.get(&format!("http://{}/healthz", node.admin)).await;
    assert_eq!(status, 200, "the admin API answers while 15 slow connections are open on it");
    for (addr, opening, mut s) in held {
        let mut buf = [0u8; 512];
        // Closed by the node: EOF (possibly after a 408), or a reset. The bound is generous; the timeout is 1 s.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(15), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{addr} kept a connection that sent {opening:?} open");
    }
    let (status, _, _) = node.get(&format!("http://{}/healthz", node.admin)).await;
    assert_eq!(status, 200);
}

/// Dead-letter URL sinks are tenants' destinations too: refused on loopback unless allowed, pinned to the
/// checked address, and a redirect (here to another path of the same server, standing for the admin API)
/// is a failed delivery, never followed.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_url_sinks_pass_the_egress_policy_and_redirects_are_not_followed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let hits: &'static [AtomicUsize; 2] = Box::leak(Box::new([AtomicUsize::new(0), AtomicUsize::new(0)]));
    let app = axum::Router::new()
        .route(
            "/ok",
            axum::routing::post(move || async move {
                hits[0].fetch_add(1, Ordering::SeqCst);
                "ok"
            }),
        )
        .route("/redirect", axum::routing::post(|| async { axum::response::Redirect::temporary("/target") }))
        .route(
            "/target",
            axum::routing::post(move || async move {
                hits[1].fetch_add(1, Ordering::SeqCst);
                "reached"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let function = |name: &str, path: &str| {
        let guest = wasmfn_tests::guests::rust_guest();
        format!(
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  component: {}\n  env:\n    - {{name: FAIL_ALWAYS, value: \"1\"}}\n  triggers:\n    - {{name: t, events: {{filter: {{exact: {{type: {name}}}}}}}, delivery: {{retry: 1, backoffDelay: 10ms, deadLetterSink: {{url: \"http://{sink}{path}\"}}}}}}\n",
            guest.display()
        )
    };
    let send = |node: &NodeProc, ty: &str| {
        let (client, url) = (node.client.clone(), format!("http://{}/_events/default", node.ingress));
        let ty = ty.to_string();
        async move {
            let resp = client
                .post(url)
                .header("ce-specversion", "1.0")
                .header("ce-id", format!("{ty}-1"))
                .header("ce-source", "/test")
                .header("ce-type", &ty)
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 202);
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "");
    node.deploy_ok(&function("refused", "/ok")).await;
    send(&node, "refused").await;
    node.wait_for_log("which the node's egress policy refuses", std::time::Duration::from_secs(30)).await;
    drop(node);

    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "egress-allow = [\"127.0.0.1/32\"]\n");
    node.deploy_ok(&function("redirected", "/redirect")).await;
    node.deploy_ok(&function("allowed", "/ok")).await;
    send(&node, "redirected").await;
    node.wait_for_log("answered 307", std::time::Duration::from_secs(30)).await;
    send(&node, "allowed").await;
    wasmfn_tests::eventually(std::time::Duration::from_secs(30), "the allowed sink got the event", || async {
        (hits[0].load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(hits[1].load(Ordering::SeqCst), 0, "the redirect was not followed");
}

/// `maxRequestBody` has a node-wide ceiling (`max-request-body`): a body without a length is held in memory up
/// to it, so no tenant may raise it past what the node chose.
#[tokio::test(flavor = "multi_thread")]
async fn max_request_body_has_a_node_ceiling() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "max-request-body = \"1Mi\"\n");
    let guest = wasmfn_tests::guests::rust_guest();
    let with = |size: &str| {
        wasmfn_tests::node::manifest("bodies", &guest, &format!("  limits:\n    maxRequestBody: {size}\n"))
    };
    let (status, body) = node.deploy(&with("2Mi")).await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("spec.limits.maxRequestBody") && message.contains("max-request-body of 1Mi"), "{message}");
    node.deploy_ok(&with("1Mi")).await;
}

/// The admin API names no file of the node unless the node lists its folder in `component-dirs`; inside one,
/// a symlink pointing out of it does not count.
#[tokio::test(flavor = "multi_thread")]
async fn admin_deploys_read_files_only_from_component_dirs() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let guest = wasmfn_tests::guests::rust_guest();
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "component-dirs = []\n");
    let (status, body) = node.deploy(&wasmfn_tests::node::manifest("files", &guest, "")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("upload the component"), "{body}");
    drop(node);

    let allowed = tempfile::tempdir().unwrap();
    std::fs::copy(&guest, allowed.path().join("g.wasm")).unwrap();
    std::os::unix::fs::symlink(&guest, allowed.path().join("out.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &format!("component-dirs = [{:?}]\n", allowed.path().display().to_string()));
    node.deploy_ok(&wasmfn_tests::node::manifest("inside", &allowed.path().join("g.wasm"), "")).await;
    let (status, body) = node.deploy(&wasmfn_tests::node::manifest("link", &allowed.path().join("out.wasm"), "")).await;
    assert_eq!(status, 422, "a link out of the folder: {body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("not inside any of component-dirs"), "{body}");
}
