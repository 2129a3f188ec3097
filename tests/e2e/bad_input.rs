//! Bad input is rejected at deploy time with a message that names the problem, and what was serving keeps
//! serving. Also `wasmfn up`: URLs, redeploy on change, and a broken change that loses nothing.

use std::time::Duration;
use wasmfn_tests::eventually;
use wasmfn_tests::guests::rust_guest;
use wasmfn_tests::node::{NodeProc, Options, manifest, use_binary};

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_deploy_is_rejected_with_its_reason_and_v1_keeps_serving() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let wasm = rust_guest();
    let d = tempfile::tempdir().unwrap();
    let node = NodeProc::start(d.path(), "");
    node.deploy_ok(&manifest("svc", &wasm, "")).await;
    let url = node.url("default", "svc", "/");

    let file = |name: &str, bytes: Vec<u8>| {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let not_wasm = file("notes.wasm", b"hello, I am text".to_vec());
    let core = file("core.wasm", wat::parse_str("(module (func (export \"_start\")))").unwrap());
    let no_export = file("empty.wasm", wat::parse_str("(component)").unwrap());
    let foreign = file(
        "foreign.wasm",
        wat::parse_str(
            r#"(component
                (import "acme:db/query@1.0.0" (instance))
                (instance $h)
                (export "wasi:http/incoming-handler@0.2.3" (instance $h)))"#,
        )
        .unwrap(),
    );
    let cases: Vec<(String, &str, &str)> = vec![
        (manifest("svc", &not_wasm, ""), "not-wasm", "not a WebAssembly file"),
        (manifest("svc", &core, ""), "core-module", "core WebAssembly module, not a component"),
        (manifest("svc", &no_export, ""), "missing-handler", "does not export wasi:http/incoming-handler"),
        (manifest("svc", &foreign, ""), "unsupported-import", "imports `acme:db/query@1.0.0`"),
        (manifest("svc", &d.path().join("missing.wasm"), ""), "component-file", "cannot read component file"),
        (manifest("svc", &wasm, "  scalling: {}\n"), "manifest", "scalling"),
        (manifest("svc", &wasm, "  limits:\n    memory: 64Gi\n"), "manifest", "pool.max-memory"),
        ("apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata: [\n".into(), "manifest", "invalid manifest"),
        (
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: svc\n  colour: red\nspec: {}\n".into(),
            "manifest",
            "colour",
        ),
    ];
    for (m, kind, needle) in cases {
        let resp = node.client.post(node.admin_url("/v1/functions")).body(m.clone()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{m}");
        assert_eq!(resp.headers()["x-wasmfn-error"], kind, "{m}");
        let body: serde_json::Value = resp.json().await.unwrap();
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
        let (status, headers, text) = node.get(&url).await;
        assert_eq!((status, text.as_str()), (200, "hello from rust v0\n"), "v1 must keep serving after: {msg}");
        assert_eq!(headers["x-wasmfn-revision"], "svc-1");
    }
    // A route another function already serves.
    node.deploy_ok(&manifest("owner", &wasm, "  routes:\n    - path: /shared\n")).await;
    let (status, body) = node.deploy(&manifest("svc", &wasm, "  routes:\n    - path: /shared/\n")).await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("route `/shared/` is already served by default/owner"), "{body}");
    let (status, body) = node.upload(b"nope".to_vec()).await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("not a WebAssembly file"));
    let (_, info) = node.admin_get("/v1/functions/default/svc").await;
    assert_eq!(info["revision"], "svc-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_serves_a_folder_prints_urls_and_redeploys_on_change() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let wasm = rust_guest();
    let project = tempfile::tempdir().unwrap();
    let fdir = project.path().join("hello");
    std::fs::create_dir_all(&fdir).unwrap();
    std::fs::copy(&wasm, fdir.join("hello.wasm")).unwrap();
    let write = |version: &str| {
        let m = manifest(
            "hello",
            std::path::Path::new("hello.wasm"),
            &format!("  env:\n    - name: VERSION\n      value: {version}\n"),
        );
        std::fs::write(fdir.join("function.yaml"), m).unwrap();
    };
    write("v1");
    // A bare .wasm file as a second argument.
    let bare = project.path().join("Bare_One.wasm");
    std::fs::copy(&wasm, &bare).unwrap();
    let data = tempfile::tempdir().unwrap();
    let up = Options {
        up: Some(vec![project.path().display().to_string(), bare.display().to_string()]),
        ..Default::default()
    };
    let node = NodeProc::start_with(data.path(), up);
    let stdout = eventually(Duration::from_secs(10), "URL lines", || async {
        let s = node.stdout.lock().unwrap().clone();
        // Both lines: the functions are listed in no set order.
        (s.contains("default/bare-one") && s.contains("default/hello:")).then_some(s)
    })
    .await;
    assert!(stdout.contains(&format!("http://hello.default.localhost:{}/", node.ingress.port())), "{stdout}");
    assert_eq!(node.get(&node.url("default", "hello", "/")).await.2, "hello from rust v1\n");
    assert_eq!(node.get(&node.url("default", "bare-one", "/")).await.0, 200);

    write("v2");
    eventually(Duration::from_secs(20), "the redeploy", || async {
        (node.get(&node.url("default", "hello", "/")).await.2 == "hello from rust v2\n").then_some(())
    })
    .await;
    std::fs::write(
        fdir.join("function.yaml"),
        "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata: {name: hello}\nspec: {componnt: x}\n",
    )
    .unwrap();
    node.wait_for_log("redeploy failed", Duration::from_secs(20)).await;
    assert_eq!(node.get(&node.url("default", "hello", "/")).await.2, "hello from rust v2\n");
}
