//! Kyma and Kubeless functions run unmodified (issue 18): `main` and named (`file.function`) handlers in
//! JavaScript and Python, Kyma's response object, `ce-*` attributes, `event.tracer`, `emitCloudEvent` into the
//! namespace's broker (through the node, with no loopback egress), W3C trace context, and `wasmfn up` serving the
//! functions that build when one does not.

use serde_json::Value;
use std::time::Duration;
use wasmfn_tests::build::{build_err, build_ok, cache_dir};
use wasmfn_tests::node::{NodeProc, Options, manifest, use_binary};

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

const KYMA_JS: &str = r#"
let calls = 0; // module scope: Kyma keeps it across requests in a pod; wasmfn starts fresh per instance
module.exports = {
  main: async function (event, context) {
    calls += 1;
    const span = event.tracer.startSpan('work');
    span.setAttribute('k', 'v');
    span.addEvent('did');
    span.setStatus({ code: 1 });
    span.end();
    const path = event.extensions.request.path;
    if (path === '/status') {
      event.extensions.response.status(204);
      return;
    }
    if (path === '/send') {
      event.extensions.response.status(418).set('x-kyma', 'teapot').send('short and stout');
      return 'ignored';
    }
    if (path === '/emit') {
      const r = await event.emitCloudEvent('order.created', '/kyma/test', { id: 7 }, { eventtypeversion: 'v1' });
      return { emitted: r.status };
    }
    event.setResponseHeader('x-fn', context['function-name']);
    return {
      type: event['ce-type'] ?? null,
      source: event['ce-source'] ?? null,
      version: event['ce-eventtypeversion'] ?? null,
      data: event.data,
      traceId: span.spanContext().traceId,
      calls,
    };
  },
};
"#;

const KYMA_PY: &str = r#"
def main(event, context):
    path = event["extensions"]["request"].path
    if path == "/status":
        event.setResponseStatus(202)
        return None
    if path == "/emit":
        status = event.emitCloudEvent("order.created", "/kyma/py", {"id": 8}, {"eventtypeversion": "v1"})
        return {"emitted": status}
    with event.tracer.start_as_current_span("work") as span:
        span.set_attribute("k", "v")
    event.setResponseHeader("x-fn", context["function-name"])
    return {"type": event.get("ce-type"), "source": event.get("ce-source"), "data": event["data"]}
"#;

async fn get_json(node: &NodeProc, url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = node.client.post(url).body(r#"{"n":1}"#).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The event sink the emitted events reach: the Rust test guest logging each delivery.
async fn deploy_sink(node: &NodeProc) {
    let trigger = "  triggers:\n    - {name: t, events: {filter: {exact: {type: order.created}}}}\n";
    node.deploy_ok(&manifest("sink", &wasmfn_tests::guests::rust_guest(), trigger)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kyma_javascript_functions_run_unmodified() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = dir_with(&[("handler.js", KYMA_JS)]);
    let (wasm, _) = build_ok(dir.path(), &["--template", "js"]);
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start(data.path(), "");
    node.deploy_ok(&manifest("kyma-js", &wasm, "")).await;
    deploy_sink(&node).await;
    let url = |p: &str| node.url("default", "kyma-js", p);

    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ce = [("ce-type", "sap.kyma.custom.app.order.created.v1"), ("ce-source", "/app"), ("ce-specversion", "1.0")];
    let mut headers = ce.to_vec();
    headers.extend([("ce-id", "a1"), ("ce-eventtypeversion", "v1"), ("traceparent", trace)]);
    let (status, h, body) = get_json(&node, &url("/"), &headers).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-fn"], "kyma-js");
    assert_eq!(body["type"], "sap.kyma.custom.app.order.created.v1");
    assert_eq!((body["source"].as_str(), body["version"].as_str()), (Some("/app"), Some("v1")));
    assert_eq!(body["data"]["n"], 1);
    assert_eq!(body["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736", "the span continues the caller's trace");
    assert_eq!(body["calls"], 1, "a fresh instance per request");

    let (status, _, body) = get_json(&node, &url("/status"), &[]).await;
    assert_eq!((status, body), (204, Value::String(String::new())), "a status set and nothing returned");
    let (status, h, body) = get_json(&node, &url("/send"), &[]).await;
    assert_eq!((status, body.as_str()), (418, Some("short and stout")));
    assert_eq!(h["x-kyma"], "teapot");

    // emitCloudEvent reaches the sink through the namespace's broker, with no loopback egress allowed.
    let (status, _, body) = get_json(&node, &url("/emit"), &[]).await;
    assert_eq!((status, &body["emitted"]), (200, &Value::from(202)), "{body}");
    let line = node.wait_for_log("type=order.created source=/kyma/test", Duration::from_secs(30)).await;
    assert!(line.contains("data={\"id\":7}"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kyma_python_functions_run_unmodified() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = dir_with(&[("handler.py", KYMA_PY)]);
    let (wasm, _) = build_ok(dir.path(), &["--template", "python"]);
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start(data.path(), "");
    node.deploy_ok(&manifest("kyma-py", &wasm, "")).await;
    deploy_sink(&node).await;
    let url = |p: &str| node.url("default", "kyma-py", p);
    let headers = [("ce-type", "t.v1"), ("ce-source", "/app"), ("ce-specversion", "1.0"), ("ce-id", "b2")];
    let (status, h, body) = get_json(&node, &url("/"), &headers).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-fn"], "kyma-py");
    assert_eq!(
        (body["type"].as_str(), body["source"].as_str(), &body["data"]["n"]),
        (Some("t.v1"), Some("/app"), &Value::from(1))
    );
    let (status, _, _) = get_json(&node, &url("/status"), &[]).await;
    assert_eq!(status, 202);
    let (status, _, body) = get_json(&node, &url("/emit"), &[]).await;
    assert_eq!((status, &body["emitted"]), (200, &Value::from(202)), "{body}");
    node.wait_for_log("type=order.created source=/kyma/py", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn named_handlers_pick_the_file_and_function_and_name_what_is_missing() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let yaml = |template: &str, handler: &str| {
        format!(
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: named\nspec:\n  build:\n    template: \
             {template}\n    handler: {handler}\n"
        )
    };
    let js = dir_with(&[
        ("function.yaml", &yaml("js", "hello.foo")),
        ("hello.js", "module.exports = { foo: (event) => 'foo ' + event.data.n, main: () => 'not me' };\n"),
        ("handler.js", "export function handler() { return 'not me either'; }\n"),
    ]);
    let py = dir_with(&[
        ("function.yaml", &yaml("python", "lib/hello.foo")),
        ("lib/hello.py", "def foo(event, context):\n    return 'foo %s' % event['data']['n']\n"),
    ]);
    let (js_wasm, _) = build_ok(js.path(), &[]);
    let (py_wasm, _) = build_ok(py.path(), &[]);
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start(data.path(), "");
    for (name, wasm) in [("js", &js_wasm), ("py", &py_wasm)] {
        node.deploy_ok(&manifest(name, wasm, "")).await;
        let (status, _, body) = get_json(&node, &node.url("default", name, "/"), &[]).await;
        assert_eq!((status, body.as_str()), (200, Some("foo 1")), "{name}");
    }
    // A handler naming a function the file lacks fails the build, naming it and what the file has.
    std::fs::write(js.path().join("function.yaml"), yaml("js", "hello.bar")).unwrap();
    let run = build_err(js.path(), &[]);
    assert!(run.stderr.contains("hello.js has no function `bar`") && run.stderr.contains("`foo`"), "{}", run.stderr);
    std::fs::write(js.path().join("function.yaml"), yaml("js", "nothere.foo")).unwrap();
    let run = build_err(js.path(), &[]);
    assert!(run.stderr.contains("nothere.js"), "{}", run.stderr);
    std::fs::write(js.path().join("function.yaml"), yaml("js", "../up.foo")).unwrap();
    let run = build_err(js.path(), &[]);
    assert!(run.stderr.contains("spec.build.handler"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn up_serves_the_functions_that_build_when_one_does_not() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let yaml = |name: &str| {
        format!(
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  build:\n    template: js\n"
        )
    };
    let root = tempfile::tempdir().unwrap();
    for (name, source) in [
        ("one", "export function main() { return 'one'; }\n"),
        ("two", "export function handler() { return 'two'; }\n"),
        ("broken", "export function main( {\n"),
    ] {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("function.yaml"), yaml(name)).unwrap();
        std::fs::write(dir.join("handler.js"), source).unwrap();
    }
    let args = vec![root.path().display().to_string(), "--cache-dir".into(), cache_dir().display().to_string()];
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start_with(data.path(), Options { up: Some(args), ..Default::default() });
    for name in ["one", "two"] {
        assert_eq!(node.get(&node.url("default", name, "/")).await.2, name);
    }
    // Announced and failed: 503 with the build's error, not a wait or a 404.
    let (status, _, body) = node.get(&node.url("default", "broken", "/")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the function failed to build") && body.contains("handler.js"), "{body}");
    let logs = node.logs();
    assert!(
        logs.contains("function=default/broken") && logs.contains("handler.js:"),
        "the error under its name: {logs}"
    );
    // Fixed, it is built and served.
    std::fs::write(root.path().join("broken/handler.js"), "export function main() { return 'fixed'; }\n").unwrap();
    wasmfn_tests::eventually(Duration::from_secs(120), "the fixed function", || {
        let node = &node;
        async move { (node.get(&node.url("default", "broken", "/")).await.2 == "fixed").then_some(()) }
    })
    .await;
}
