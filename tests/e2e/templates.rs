//! Compiler templates end to end: `wasmfn new` and `wasmfn build` with the real JavaScript and Python toolchains,
//! the components served by a real node, and the build's failure modes.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use wasmfn_tests::build::{Run, build_err, build_ok, wasmfn};
use wasmfn_tests::guests::repo_root;
use wasmfn_tests::node::{NodeProc, Options, manifest, use_binary};

fn start() -> (tempfile::TempDir, NodeProc) {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "");
    (dir, node)
}

fn guest(name: &str) -> PathBuf {
    repo_root().join("tests/guests").join(name)
}

/// A function folder in a temp dir with one source file.
fn function_dir(file: &str, source: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), source).unwrap();
    dir
}

async fn post_json(node: &NodeProc, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut req = node.client.post(url).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

/// The Kubeless `event` and `context` as a handler sees them, for the JS and the Python template alike.
async fn check_kubeless(node: &NodeProc, name: &str, runtime: &str) {
    let url = node.url("default", name, "/some/path?x=1&x=2&y=z");
    let (status, body) = post_json(
        node,
        &url,
        &[
            ("content-type", "application/json"),
            ("event-id", "ev-1"),
            ("event-type", "order.created"),
            ("x-custom", "yes"),
        ],
        r#"{"order": 7}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let event = &body["event"];
    assert_eq!(event["data"], json!({"order": 7}), "{body}");
    assert_eq!(event["event-id"], "ev-1");
    assert_eq!(event["event-type"], "order.created");
    assert_eq!(event["event-namespace"], "http.wasmfn.dev");
    let time = event["event-time"].as_str().unwrap();
    assert!(time.starts_with("20") && time.contains('T'), "{time}");
    let request = &event["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], "/some/path");
    assert_eq!(request["headers"]["x-custom"], "yes");
    assert_eq!(request["query"], json!({"x": ["1", "2"], "y": "z"}));
    assert_eq!(event["cloudevent"], Value::Null, "not a CloudEvent");
    let context = &body["context"];
    assert_eq!(context["function-name"], name);
    assert_eq!(context["timeout"], "300");
    assert_eq!(context["memory-limit"], "256Mi");
    assert_eq!(context["runtime"], runtime);

    // A CloudEvent in binary mode, then in structured mode: the same fields come from the event.
    let (_, body) = post_json(
        node,
        &url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "ce-1"),
            ("ce-type", "t.bin"),
            ("ce-source", "/src"),
            ("content-type", "text/plain"),
        ],
        "hi",
    )
    .await;
    assert_eq!((body["event"]["event-id"].as_str(), body["event"]["data"].as_str()), (Some("ce-1"), Some("hi")));
    assert_eq!(body["event"]["event-namespace"], "/src");
    assert_eq!(body["event"]["cloudevent"]["type"], "t.bin");
    let structured = r#"{"specversion":"1.0","id":"ce-2","type":"t.struct","source":"/s","time":"2026-01-02T03:04:05Z","data":{"k":1}}"#;
    let (_, body) = post_json(node, &url, &[("content-type", "application/cloudevents+json")], structured).await;
    let event = &body["event"];
    assert_eq!((event["event-id"].as_str(), event["event-type"].as_str()), (Some("ce-2"), Some("t.struct")));
    assert_eq!((event["event-time"].as_str(), &event["data"]), (Some("2026-01-02T03:04:05Z"), &json!({"k": 1})));

    // Return rules: a string, and {statusCode, headers, body}.
    let (status, headers, text) = node.get(&node.url("default", name, "/text")).await;
    assert_eq!((status, text.as_str()), (200, "plain text"));
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let (status, headers, text) = node.get(&node.url("default", name, "/status")).await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(headers["x-made-by"], "handler");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!({"created": true}));
}

/// A handler that throws gets a 500 naming the request id, the error is logged, and the next request is served.
async fn check_throw(node: &NodeProc, name: &str, message: &str) {
    let resp = node.client.get(node.url("default", name, "/throw")).header("x-request-id", "req-throw-1").send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["requestId"], "req-throw-1", "{body}");
    assert!(body["error"].as_str().unwrap().contains(message), "{body}");
    node.wait_for_log(message, std::time::Duration::from_secs(10)).await;
    let (status, _, _) = node.get(&node.url("default", name, "/text")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn js_kubeless_handler_sees_event_and_context() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let (wasm, _) = build_ok(&guest("kubeless-js"), &["--template", "js"]);
    let (_dir, node) = start();
    node.deploy_ok(&manifest("kjs", &wasm, "  limits:\n    memory: 256Mi\n")).await;
    check_kubeless(&node, "kjs", "js-starlingmonkey").await;
    check_throw(&node, "kjs", "kaboom from js").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_kubeless_handler_sees_event_and_context() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let (wasm, _) = build_ok(&guest("kubeless-py"), &["--template", "python"]);
    let (_dir, node) = start();
    node.deploy_ok(&manifest("kpy", &wasm, "  limits:\n    memory: 256Mi\n")).await;
    check_kubeless(&node, "kpy", "python3.14").await;
    check_throw(&node, "kpy", "kaboom from python").await;
}

/// The third JS style: a module that calls `addEventListener('fetch', …)` itself (the raw test guest).
#[tokio::test(flavor = "multi_thread")]
async fn js_fetch_listener_style_serves_through_the_template() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let (wasm, _) = build_ok(&guest("js-guest"), &["--template", "js"]);
    let (_dir, node) = start();
    node.deploy_ok(&manifest("listener", &wasm, "")).await;
    let (status, _, text) = node.get(&node.url("default", "listener", "/path?q=1")).await;
    assert_eq!((status, text.as_str()), (200, "/path?q=1"));
    let resp = node.client.post(node.url("default", "listener", "/echo")).body("round trip").send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "round trip");
}

fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// `wasmfn up` builds the JS and Python examples from source and serves them.
#[tokio::test(flavor = "multi_thread")]
async fn up_builds_and_serves_the_js_and_python_examples() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let names = ["hello-js", "api-js", "event-js", "hello-py", "api-py", "event-py"];
    let mut args: Vec<String> = names.iter().map(|n| example(n).display().to_string()).collect();
    args.extend(["--cache-dir".into(), wasmfn_tests::build::cache_dir().display().to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start_with(dir.path(), Options { up: Some(args), ..Default::default() });

    for (name, lang) in [("hello-js", "JavaScript"), ("hello-py", "Python")] {
        let (status, _, text) = node.get(&node.url("default", name, "/a?b=1")).await;
        assert_eq!(
            (status, text.as_str()),
            (200, format!("Hello from wasmfn ({lang})! You asked for /a?b=1\n").as_str())
        );
    }

    // The JS API bundles the `ms` npm package; the Python API vendors python-slugify.
    let resp = node
        .client
        .post(node.url("default", "api-js", "/?ttl=2h"))
        .header("content-type", "application/json")
        .body(r#"{"a":[1,2]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "max-age=7200");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (&body["echo"], &body["timeout"], &body["memoryLimit"]),
        (&json!({"a": [1, 2]}), &json!("30"), &json!("256Mi"))
    );
    let (status, body) =
        post_json(&node, &node.url("default", "api-js", "/?ttl=never"), &[("content-type", "application/json")], "{}")
            .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_json(
        &node,
        &node.url("default", "api-py", "/"),
        &[("content-type", "application/json")],
        r#"{"title": "Héllo Wörld, wasm!"}"#,
    )
    .await;
    assert_eq!((status, body["slug"].as_str()), (200, Some("hello-world-wasm")), "{body}");

    // The event functions answer binary- and structured-mode CloudEvents with a binary-mode event.
    for name in ["event-js", "event-py"] {
        let url = node.url("default", name, "/");
        let binary = node
            .client
            .post(&url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "e-1")
            .header("ce-type", "dev.wasmfn.test")
            .header("ce-source", "/tests")
            .header("content-type", "application/json")
            .body(r#"{"n":1}"#);
        let structured = node
            .client
            .post(&url)
            .header("content-type", "application/cloudevents+json")
            .body(r#"{"specversion":"1.0","id":"e-2","type":"dev.wasmfn.test","source":"/tests","data":{"n":2}}"#);
        for (req, n, id) in [(binary, 1, "e-1"), (structured, 2, "e-2")] {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200, "{name}");
            let h = resp.headers().clone();
            assert_eq!(h["ce-specversion"], "1.0");
            assert_eq!(h["ce-type"], "dev.wasmfn.test.processed");
            assert_eq!(h["ce-source"], format!("/wasmfn/{name}").as_str());
            assert_eq!(h["ce-subject"], id);
            assert!(!h["ce-id"].is_empty());
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body, json!({"received": {"n": n}, "from": "/tests"}), "{name}");
        }
        let (status, _, _) = node.get(&url).await;
        assert_eq!(status, 400, "{name}: a plain request is not an event");
    }
}

fn scaffold(lang: &str, parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    let run = Run::from(wasmfn(&["new", name, "--lang", lang, "--dir", dir.to_str().unwrap()]));
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("created {name} ({lang})")), "{}", run.stdout);
    dir
}

/// A scaffolded function builds; an unchanged rebuild is a cache hit; progress names each step and its time.
#[tokio::test(flavor = "multi_thread")]
async fn new_then_build_then_cached_rebuild() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let parent = tempfile::tempdir().unwrap();
    let dir = scaffold("js", parent.path(), "fresh-js");
    // Unique source, so the first build cannot be a hit left by another run.
    let handler = dir.join("handler.js");
    let unique = format!("// {:?}\n", std::time::SystemTime::now());
    std::fs::write(&handler, unique + &std::fs::read_to_string(&handler).unwrap()).unwrap();
    assert!(std::fs::read_to_string(dir.join("request.http")).unwrap().contains("/default/fresh-js/"));

    let (wasm, first) = build_ok(&dir, &[]);
    assert!(first.stdout.contains("built in"), "{}", first.stdout);
    assert!(first.stdout.contains("sha256:") && first.stdout.contains(" bytes)"), "{}", first.stdout);
    for step in ["bundle (esbuild)", "componentize-js", "validate the component"] {
        assert!(first.stderr.contains(&format!("→ {step}")), "no start of {step}: {}", first.stderr);
        assert!(first.stderr.contains(&format!("✓ {step} (")), "no end of {step}: {}", first.stderr);
    }
    let (_, second) = build_ok(&dir, &[]);
    assert!(second.stdout.contains(", cached"), "{}", second.stdout);
    assert!(!second.stderr.contains("componentize-js"), "a cache hit ran the toolchain: {}", second.stderr);
    let digest = |out: &str| out.split_whitespace().find(|w| w.starts_with("sha256:")).unwrap().to_string();
    assert_eq!(digest(&first.stdout), digest(&second.stdout));

    // Without -o the component goes to the data dir's store, ready to deploy by digest.
    let data = tempfile::tempdir().unwrap();
    let run = Run::from(wasmfn(&["build", dir.to_str().unwrap(), "--data-dir", data.path().to_str().unwrap()]));
    assert!(run.ok, "{}", run.stderr);
    let hex = digest(&run.stdout).trim_start_matches("sha256:").to_string();
    assert_eq!(std::fs::read(data.path().join("blobs/sha256").join(&hex)).unwrap(), std::fs::read(&wasm).unwrap());

    // The scaffold serves: the Kubeless-style greeting.
    let (_d, node) = start();
    node.deploy_ok(&manifest("fresh-js", &wasm, "")).await;
    let (status, _, text) = node.get(&node.url("default", "fresh-js", "/?name=ada")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"message": "Hello, ada!", "function": "fresh-js"})
    );

    // A source change is a miss again.
    std::fs::write(&handler, std::fs::read_to_string(&handler).unwrap() + "\n// changed\n").unwrap();
    let (_, third) = build_ok(&dir, &[]);
    assert!(third.stdout.contains("built in"), "{}", third.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_scaffold_builds_and_serves() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let parent = tempfile::tempdir().unwrap();
    let dir = scaffold("python", parent.path(), "fresh-py");
    let (wasm, _) = build_ok(&dir, &[]);
    let (_d, node) = start();
    node.deploy_ok(&manifest("fresh-py", &wasm, "")).await;
    let (status, body) = post_json(
        &node,
        &node.url("default", "fresh-py", "/"),
        &[("content-type", "application/json")],
        r#"{"name":"bo"}"#,
    )
    .await;
    assert_eq!((status, body), (200, json!({"message": "Hello, bo!", "function": "fresh-py"})));
}

#[test]
fn unknown_lang_lists_the_templates() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("x");
    let run = Run::from(wasmfn(&["new", "x", "--lang", "cobol", "--dir", dest.to_str().unwrap()]));
    assert!(!run.ok);
    assert!(run.stderr.contains("unknown template `cobol`: choose one of js, python, rust"), "{}", run.stderr);
    assert!(!dest.exists(), "a failed `new` left files behind");
    let run = Run::from(wasmfn(&["new", "Bad_Name", "--lang", "js", "--dir", dest.to_str().unwrap()]));
    assert!(!run.ok && run.stderr.contains("metadata.name"), "{}", run.stderr);
}

#[test]
fn js_syntax_error_and_missing_handler_fail_the_build() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = function_dir("handler.js", "export function handler(event, context) {\n  return {;\n}\n");
    let run = build_err(dir.path(), &["--template", "js"]);
    assert!(run.stderr.contains("bundle (esbuild) failed"), "{}", run.stderr);
    assert!(run.stderr.contains("handler.js:2:"), "no file:line in: {}", run.stderr);

    let dir = function_dir("handler.js", "export const answer = 42;\n");
    let run = build_err(dir.path(), &["--template", "js"]);
    assert!(run.stderr.contains("handler.js has no handler"), "{}", run.stderr);

    let dir = function_dir("main.js", "export function handler() {}\n");
    let run = build_err(dir.path(), &["--template", "js"]);
    assert!(run.stderr.contains("no js entry file: expected one of handler.js"), "{}", run.stderr);
}

#[test]
fn python_syntax_error_and_missing_handler_fail_the_build() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = function_dir("handler.py", "def handler(event, context):\n    return {\n\ndef other(:\n    pass\n");
    let run = build_err(dir.path(), &["--template", "python"]);
    assert!(run.stderr.contains("SyntaxError"), "{}", run.stderr);
    assert!(run.stderr.contains("handler.py\", line "), "no file and line in: {}", run.stderr);

    let dir = function_dir("handler.py", "ANSWER = 42\n");
    let run = build_err(dir.path(), &["--template", "python"]);
    assert!(run.stderr.contains("handler.py has no handler"), "{}", run.stderr);
}

/// A template whose toolchain is missing names the tool and the command that installs it.
#[test]
fn missing_toolchain_names_the_install_command() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let templates = tempfile::tempdir().unwrap();
    let copy = templates.path().join("python");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(repo_root().join("compiler-templates/python/template.toml"), copy.join("template.toml")).unwrap();
    let dir = function_dir("handler.py", "def handle(request):\n    return 'x'\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["build", dir.path().to_str().unwrap(), "--template", "python", "-o", "/dev/null"])
        .env("WASMFN_TEMPLATES", templates.path())
        .env("WASMFN_CACHE_DIR", templates.path().join("cache"))
        .output()
        .unwrap();
    let run = Run::from(out);
    assert!(!run.ok);
    assert!(run.stderr.contains("needs componentize-py 0.25.1"), "{}", run.stderr);
    let install = format!("install it with: python3 -m venv {}/.venv", copy.display());
    assert!(run.stderr.contains(&install), "{}", run.stderr);
}

/// `wasmfn up` rebuilds a function when its source changes; a broken edit is logged and the previous revision
/// keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn up_rebuilds_on_source_change_and_keeps_serving_through_a_broken_edit() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let parent = tempfile::tempdir().unwrap();
    let dir = scaffold("js", parent.path(), "live-js");
    let handler = dir.join("handler.js");
    let version =
        |v: &str| format!("// {:?}\nexport function handler() {{ return '{v}'; }}\n", std::time::SystemTime::now());
    std::fs::write(&handler, version("v1")).unwrap();
    let args =
        vec![dir.display().to_string(), "--cache-dir".into(), wasmfn_tests::build::cache_dir().display().to_string()];
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start_with(data.path(), Options { up: Some(args), ..Default::default() });
    let url = node.url("default", "live-js", "/");
    assert_eq!(node.get(&url).await.2, "v1");

    std::fs::write(&handler, "export function handler( {\n").unwrap();
    node.wait_for_log("previous revision keeps serving", std::time::Duration::from_secs(120)).await;
    assert!(node.logs().contains("handler.js:2:0"), "the compiler's message is logged: {}", node.logs());
    assert_eq!(node.get(&url).await.2, "v1");

    std::fs::write(&handler, version("v2")).unwrap();
    wasmfn_tests::eventually(std::time::Duration::from_secs(180), "the rebuilt revision", || {
        let node = &node;
        let url = url.clone();
        async move { (node.get(&url).await.2 == "v2").then_some(()) }
    })
    .await;
    let (_, headers, _) = node.get(&url).await;
    assert_eq!(headers["x-wasmfn-revision"], "live-js-2");
}
