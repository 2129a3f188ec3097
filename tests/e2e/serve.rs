//! Serving: routing, components from two toolchains, HTTP/1.1 and h2c, guest logs, the admin API.

use std::time::Duration;
use wasmfn_tests::guests::{js_guest, py_guest, rust_guest};
use wasmfn_tests::node::{NodeProc, Options, manifest, use_binary};

fn start(config: &str) -> (tempfile::TempDir, NodeProc) {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), config);
    (dir, node)
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_path_host_and_prefix_and_404s_unknown() {
    let wasm = rust_guest();
    let (_dir, node) = start("domain = \"fn.test\"\n");
    let body = node.deploy_ok(&manifest("hello", &wasm, "  routes:\n    - path: /api/hello\n")).await;
    assert_eq!(body["changed"], true);
    assert_eq!(body["function"]["revision"], "hello-1");

    let (status, headers, text) = node.get(&node.url("default", "hello", "/")).await;
    assert_eq!((status, text.as_str()), (200, "hello from rust v0\n"));
    assert_eq!(headers["x-wasmfn-revision"], "hello-1");
    // The prefix is stripped before the guest sees the path; the query is kept.
    let (_, _, text) = node.get(&node.url("default", "hello", "/path?x=1")).await;
    assert_eq!(text, "/path?x=1");
    let (_, _, text) = node.get(&format!("http://{}/api/hello/path?y=2", node.ingress)).await;
    assert_eq!(text, "/path?y=2");
    // Host routing: <function>.<namespace>.<domain>, nothing stripped.
    let r = node
        .client
        .get(format!("http://{}/path", node.ingress))
        .header("host", "hello.default.fn.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "/path");
    // Every instance knows its function, revision and limits (the SDKs and Kubeless `context` read them).
    for (var, want) in [
        ("WASMFN_FUNCTION_NAME", "hello"),
        ("WASMFN_FUNCTION_NAMESPACE", "default"),
        ("WASMFN_REVISION", "hello-1"),
        ("WASMFN_TIMEOUT", "300"),
        ("WASMFN_MEMORY_LIMIT", "128Mi"),
        ("K_SERVICE", "hello"),
    ] {
        let (_, _, text) = node.get(&node.url("default", "hello", &format!("/env?name={var}"))).await;
        assert_eq!(text, want, "{var}");
    }

    for url in [
        node.url("default", "nope", "/"),
        node.url("other", "hello", "/"),
        format!("http://{}/api/hellox", node.ingress),
    ] {
        let (status, headers, text) = node.get(&url).await;
        assert_eq!(status, 404, "{url}");
        assert_eq!(headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(json["error"].as_str().unwrap().contains("no function"), "{json}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn components_from_rust_and_componentize_js_both_serve() {
    let rust = rust_guest();
    let js = js_guest();
    let (_dir, node) = start("");
    node.deploy_ok(&manifest("rs", &rust, "")).await;
    node.deploy_ok(&manifest("js", &js, "")).await;
    assert_eq!(node.get(&node.url("default", "rs", "/")).await.2, "hello from rust v0\n");
    assert_eq!(node.get(&node.url("default", "js", "/")).await.2, "hello from js\n");
    let r = node.client.post(node.url("default", "js", "/echo")).body("ping from the test").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ping from the test");
    let (_, _, path) = node.get(&node.url("default", "js", "/path?q=1")).await;
    assert_eq!(path, "/path?q=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_javascript_function_compiles_from_the_first_ones_cached_code() {
    let first = js_guest();
    // Another handler: another component, with the same engine inside.
    let dir = tempfile::tempdir().unwrap();
    let handler = dir.path().join("handler.js");
    std::fs::write(&handler, "addEventListener('fetch', (e) => e.respondWith(new Response('second\\n')));\n").unwrap();
    let second = wasmfn_tests::guests::build_js(&handler);
    assert_ne!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
    let (_dir, node) = start("");
    let counts = || async {
        let m = node.metrics().await;
        let read = |name: &str| wasmfn_tests::node::metric_value(&m, name, &[]).unwrap_or(0.0);
        (read("wasmfn_compile_cache_hits_total"), read("wasmfn_compile_cache_misses_total"))
    };
    node.deploy_ok(&manifest("first", &first, "")).await;
    let (hits, misses) = counts().await;
    assert!(misses > 1000.0, "the first JavaScript component compiles its engine: {misses} functions");
    node.deploy_ok(&manifest("second", &second, "")).await;
    let (hits2, misses2) = counts().await;
    let (new_hits, new_misses) = (hits2 - hits, misses2 - misses);
    assert!(
        new_hits >= 0.9 * (new_hits + new_misses),
        "the second takes the engine's functions from the cache: {new_hits} hits, {new_misses} compiled"
    );
    assert_eq!(node.get(&node.url("default", "second", "/")).await.2, "second\n");
    assert_eq!(node.get(&node.url("default", "first", "/")).await.2, "hello from js\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn components_from_componentize_py_serve() {
    let py = py_guest();
    let (_dir, node) = start("");
    node.deploy_ok(&manifest("py", &py, "  limits:\n    memory: 256Mi\n")).await;
    assert_eq!(node.get(&node.url("default", "py", "/")).await.2, "hello from python\n");
    assert_eq!(node.get(&node.url("default", "py", "/x?y=1")).await.2, "/x?y=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_with_prior_knowledge() {
    let wasm = rust_guest();
    let (_dir, node) = start("");
    node.deploy_ok(&manifest("hello", &wasm, "")).await;
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let r = h2.get(node.url("default", "hello", "/")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "hello from rust v0\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_output_is_logged_per_line_with_ids_and_rate_limited() {
    let wasm = rust_guest();
    let (_dir, node) = start("[guest-log]\nlines-per-second = 5\nburst = 10\n");
    node.deploy_ok(&manifest("chatty", &wasm, "")).await;
    let r = node
        .client
        .get(node.url("default", "chatty", "/log?lines=2"))
        .header("x-request-id", "req-abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-abc");
    let logs = node.wait_for_log("guest stderr line", Duration::from_secs(10)).await;
    let line = logs.lines().find(|l| l.contains("guest line 1")).expect("stdout line logged");
    assert!(line.contains("default/chatty") && line.contains("req-abc") && line.contains("stdout"), "{line}");
    assert!(logs.lines().any(|l| l.contains("guest stderr line") && l.contains("stderr")));

    // 1,000 lines in one request: the burst passes, the rest is dropped and counted.
    node.get(&node.url("default", "chatty", "/log?lines=1000")).await;
    let dropped = node.metric("wasmfn_guest_log_lines_dropped_total", &["function=\"chatty\""]).await;
    assert!(dropped >= 900.0, "dropped {dropped}");
    let logged = node.logs().lines().filter(|l| l.contains("guest line")).count();
    assert!(logged < 100, "{logged} lines logged");
    // The next line after the limit reports how many were suppressed.
    let before = node.logs().len();
    let notice = wasmfn_tests::eventually(Duration::from_secs(10), "a suppression notice", || async {
        node.get(&node.url("default", "chatty", "/log?lines=1")).await;
        node.logs()[before..].lines().find(|l| l.contains("lines suppressed")).map(str::to_string)
    })
    .await;
    assert!(notice.contains("function=default/chatty"), "{notice}");
    let reported = |line: &str| -> u64 {
        let count = line.split(" lines suppressed").next().and_then(|head| head.rsplit(' ').next());
        count.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no suppressed count in {line:?}"))
    };
    assert!(reported(&notice) > 0, "{notice}");
    // Every line reported as suppressed was dropped and counted.
    let logs = node.logs();
    let total: u64 = logs.lines().filter(|l| l.contains("lines suppressed")).map(reported).sum();
    let dropped = node.metric("wasmfn_guest_log_lines_dropped_total", &["function=\"chatty\""]).await;
    assert!(total as f64 <= dropped, "{total} reported, {dropped} dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_lists_gets_deletes_and_uploads() {
    let wasm = rust_guest();
    let (_dir, node) = start("");
    assert_eq!(node.admin_get("/healthz").await.0, 200);
    // Upload, then deploy by digest.
    let (status, up) = node.upload(std::fs::read(&wasm).unwrap()).await;
    assert_eq!(status, 201, "{up}");
    let digest = up["digest"].as_str().unwrap().to_string();
    let m = format!(
        "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: byref\n  namespace: team\nspec:\n  component: {digest}\n"
    );
    node.deploy_ok(&m).await;
    // Same manifest again: no new revision.
    let (status, again) = node.deploy(&m).await;
    assert_eq!((status, again["changed"].clone()), (200, serde_json::json!(false)));
    node.get(&node.url("team", "byref", "/")).await;

    let (_, list) = node.admin_get("/v1/functions").await;
    assert_eq!(list["functions"].as_array().unwrap().len(), 1);
    let (status, info) = node.admin_get("/v1/functions/team/byref").await;
    assert_eq!(status, 200);
    assert_eq!(info["digest"], digest.as_str());
    assert_eq!(info["revision"], "byref-1");
    assert_eq!(info["requests"], 1);
    assert_eq!(info["queued"], 0);
    // The slot is released when the guest task ends, just after the response.
    wasmfn_tests::eventually(Duration::from_secs(10), "in-flight back to 0", || async {
        (node.admin_get("/v1/functions/team/byref").await.1["inFlight"] == 0).then_some(())
    })
    .await;
    assert_eq!(info["warmStarts"].as_u64().unwrap() + info["coldStarts"].as_u64().unwrap(), 1);
    assert!(info["urls"][0].as_str().unwrap().starts_with("http://byref.team.localhost:"));

    assert_eq!(node.admin_delete("/v1/functions/team/byref").await, 204);
    assert_eq!(node.admin_delete("/v1/functions/team/byref").await, 404);
    assert_eq!(node.get(&node.url("team", "byref", "/")).await.0, 404);
    assert_eq!(node.admin_get("/v1/functions/team/byref").await.0, 404);
    let metrics = node.metrics().await;
    assert!(metrics.contains("wasmfn_aot_cache_misses_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_off_loopback_requires_a_token() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let listen = "listen = \"127.0.0.1:0\"\nadmin-listen = \"0.0.0.0:0\"\n";
    let refused = NodeProc::try_start(dir.path(), Options { config: listen.into(), ..Default::default() });
    let (msg, logs) = refused.err().expect("a non-loopback admin listener without a token must not start");
    assert!(logs.contains("admin-token"), "{msg}\n{logs}");

    let config = format!("{listen}admin-token = \"s3cret\"\n");
    let mut node = NodeProc::start_with(dir.path(), Options { config: config.clone(), ..Default::default() });
    // The test only talks to loopback, even though the listener is bound to all interfaces.
    node.admin = ([127, 0, 0, 1], node.admin.port()).into();
    assert_eq!(node.admin_get("/v1/functions").await.0, 401);
    assert_eq!(node.admin_get("/healthz").await.0, 200, "probes stay open");
    // The header the Kubernetes API server's pod proxy passes on (`wasmfn console` on a cluster).
    let url = format!("http://{}/v1/functions", node.admin);
    let by_header = |token: &'static str| node.client.get(&url).header("x-wasmfn-admin-token", token).send();
    assert_eq!(by_header("s3cret").await.unwrap().status().as_u16(), 200);
    assert_eq!(by_header("wrong").await.unwrap().status().as_u16(), 401);
    drop(node);
    let mut node =
        NodeProc::start_with(dir.path(), Options { config, token: Some("s3cret".into()), ..Default::default() });
    node.admin = ([127, 0, 0, 1], node.admin.port()).into();
    assert_eq!(node.admin_get("/v1/functions").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_cannot_reach_loopback_unless_allowed() {
    let wasm = rust_guest();
    let (_dir, node) = start("");
    node.deploy_ok(&manifest("fetcher", &wasm, "")).await;
    let target = |node: &NodeProc, authority: String| {
        node.url("default", "fetcher", &format!("/fetch?authority={authority}&path=/healthz"))
    };
    // The admin API listens on loopback: a guest must not be able to deploy or delete functions.
    // Nor private, CGNAT or metadata addresses, in any spelling.
    for authority in [
        node.admin.to_string(),
        format!("localhost:{}", node.admin.port()),
        "169.254.169.254".into(),
        "10.0.0.1:80".into(),
        "100.100.100.200".into(),
        "[fd00:ec2::254]:80".into(),
        format!("[::ffff:127.0.0.1]:{}", node.admin.port()),
    ] {
        let (status, _, body) = node.get(&target(&node, authority.clone())).await;
        assert_eq!(status, 502, "{authority}: {body}");
        assert!(body.contains("DestinationIpProhibited"), "{authority}: {body}");
    }
    // A name that does not resolve fails closed.
    let (status, _, body) = node.get(&target(&node, "no-such-host.invalid".into())).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("DnsError") || body.contains("DnsTimeout"), "{body}");
    drop(node);
    // egress-allow opens a named network without allowing loopback wholesale (the ingress stands for a
    // loopback service; the admin API stays closed whatever is allowed: tests/e2e/egress.rs).
    let (_dir, node) = start("egress-allow = [\"127.0.0.0/8\"]\n");
    node.deploy_ok(&manifest("fetcher", &wasm, "")).await;
    let (status, _, body) = node.get(&target(&node, format!("localhost:{}", node.ingress.port()))).await;
    assert_eq!((status, body.as_str()), (200, "status 404"), "reached the ingress, which knows no /healthz");
    let (status, _, body) = node.get(&target(&node, "10.0.0.1:80".into())).await;
    assert!(status == 502 && body.contains("DestinationIpProhibited"), "{body}");
}
