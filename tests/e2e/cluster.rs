//! Cluster mode (`wasmfn serve --kubernetes`) against a scripted API server's watch streams (these machines have
//! no Kubernetes API server), with real components in a real registry: add, modify, delete, bookmark, a
//! disconnect followed by a relist, status reports per node, and a restart while the API server is down.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use wasmfn_tests::eventually;
use wasmfn_tests::guests::rust_guest;
use wasmfn_tests::kube::{FakeApi, function};
use wasmfn_tests::node::{NodeProc, Options, manifest, use_binary};
use wasmfn_tests::registry::RegistryProc;

const WAIT: Duration = Duration::from_secs(30);

/// Pushes `file` to `reference` and returns it pinned to the manifest digest.
fn push_pinned(file: &Path, reference: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["push", file.to_str().unwrap(), reference, "--insecure"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "push failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let digest = stdout.split_whitespace().find(|w| w.starts_with("sha256:")).unwrap();
    format!("{}@{digest}", reference.rsplit_once(':').unwrap().0)
}

fn cluster_node(data: &Path, kubeconfig: &Path, reg: &RegistryProc) -> NodeProc {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    NodeProc::start_with(
        data,
        Options {
            config: format!("[registry]\ninsecure = [\"{}\"]\n", reg.addr),
            env: vec![("KUBECONFIG".into(), kubeconfig.display().to_string())],
            args: vec!["--kubernetes".into(), "--node-name".into(), "node-a".into()],
            ..Default::default()
        },
    )
}

/// The body at `/default/<name>/env?name=GREETING`, or the status code when it is not 200.
async fn greeting(node: &NodeProc, name: &str) -> Result<String, u16> {
    let (status, _, body) = node.get(&node.url("default", name, "/env?name=GREETING")).await;
    if status == 200 { Ok(body) } else { Err(status) }
}

async fn wait_greeting(node: &NodeProc, name: &str, expected: Result<&str, u16>) {
    let what = format!("{name} to answer {expected:?}");
    eventually(WAIT, &what, || async {
        (greeting(node, name).await.as_deref().map_err(|e| *e) == expected).then_some(())
    })
    .await;
}

/// This node's latest report for `name`.
fn report(api: &FakeApi, name: &str) -> Option<Value> {
    let patches = api.patches();
    let (_, _, query, body) = patches.iter().rev().find(|(_, n, _, _)| n == name)?;
    assert!(query.contains("fieldManager=wasmfn-node-node-a") && query.contains("force=true"), "{query}");
    Some(body["status"]["nodes"][0].clone())
}

async fn wait_report(api: &FakeApi, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    let what = format!("a status report for {name}");
    eventually(WAIT, &what, || async { report(api, name).filter(|r| check(r)) }).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_follows_the_watch_stream_and_reports_per_node_status() {
    let reg = RegistryProc::start(None);
    let image = push_pinned(&rust_guest(), &format!("{}/fns/guest:v1", reg.addr));
    let api = FakeApi::start().await;
    api.apply(function("hello", 1, Some(&image), &[("GREETING", "one")]));
    api.apply(function("pending", 1, None, &[("GREETING", "built")]));
    let dir = tempfile::tempdir().unwrap();
    let node = cluster_node(&dir.path().join("data"), &api.kubeconfig(dir.path()), &reg);

    // The initial list: served once it has an image, and reported under the node's own field manager.
    wait_greeting(&node, "hello", Ok("one")).await;
    let r = wait_report(&api, "hello", |r| r["ready"] == true).await;
    assert_eq!((r["node"].as_str(), r["image"].as_str()), (Some("node-a"), Some(image.as_str())));
    assert_eq!((r["revision"].as_str(), r["observedGeneration"].as_i64()), (Some("hello-1"), Some(1)));
    assert_eq!(greeting(&node, "pending").await, Err(404), "no image recorded yet");
    assert!(report(&api, "pending").is_none());

    // ADDED, and MODIFIED when the operator records the build.
    api.apply(function("second", 1, Some(&image), &[("GREETING", "two")]));
    wait_greeting(&node, "second", Ok("two")).await;
    api.apply(function("pending", 1, Some(&image), &[("GREETING", "built")]));
    wait_greeting(&node, "pending", Ok("built")).await;

    // A new generation becomes a new revision.
    api.apply(function("hello", 2, Some(&image), &[("GREETING", "uno")]));
    wait_greeting(&node, "hello", Ok("uno")).await;
    wait_report(&api, "hello", |r| r["revision"] == "hello-2" && r["observedGeneration"] == 2).await;

    // A BOOKMARK changes nothing, and events after it still arrive.
    api.bookmark();
    api.apply(function("second", 2, Some(&image), &[("GREETING", "deux")]));
    wait_greeting(&node, "second", Ok("deux")).await;

    // DELETED.
    api.delete("second");
    wait_greeting(&node, "second", Err(404)).await;

    // An image that is not in the registry: reported not ready with the reason; the old revision serves.
    let missing = format!("{}/fns/guest@sha256:{}", reg.addr, "0".repeat(64));
    api.apply(function("hello", 3, Some(&missing), &[("GREETING", "uno")]));
    let r = wait_report(&api, "hello", |r| r["ready"] == false).await;
    assert!(r["message"].as_str().unwrap().contains("guest"), "{r}");
    assert_eq!(r["revision"], "hello-2");
    assert_eq!(greeting(&node, "hello").await, Ok("uno".into()));
    api.apply(function("hello", 4, Some(&image), &[("GREETING", "uno")]));
    wait_report(&api, "hello", |r| r["ready"] == true && r["observedGeneration"] == 4).await;

    // A function deployed through the admin API is not the cluster's: a relist leaves it alone.
    node.deploy_ok(&manifest("local", &rust_guest(), "  env: [{name: GREETING, value: local}]\n")).await;

    // Disconnected: changes made meanwhile are missed, the watch has expired (410), so the node lists again
    // and catches up, removing what was deleted.
    let (lists, _) = api.requests();
    api.disconnect(true);
    api.delete_quietly("pending");
    api.apply_quietly(function("third", 1, Some(&image), &[("GREETING", "three")]));
    wait_greeting(&node, "third", Ok("three")).await;
    wait_greeting(&node, "pending", Err(404)).await;
    assert!(api.requests().0 > lists, "a relist happened");
    assert_eq!(greeting(&node, "hello").await, Ok("uno".into()));
    assert_eq!(greeting(&node, "local").await, Ok("local".into()));
    node.wait_for_log("in sync with the cluster's Functions", WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_restarted_while_the_api_server_is_down_serves_its_table() {
    let reg = RegistryProc::start(None);
    let image = push_pinned(&rust_guest(), &format!("{}/fns/guest:v1", reg.addr));
    let mut api = FakeApi::start().await;
    api.apply(function("hello", 1, Some(&image), &[("GREETING", "persisted")]));
    let dir = tempfile::tempdir().unwrap();
    let (data, kubeconfig) = (dir.path().join("data"), api.kubeconfig(dir.path()));
    let mut node = cluster_node(&data, &kubeconfig, &reg);
    wait_greeting(&node, "hello", Ok("persisted")).await;
    node.stop();

    // The API server goes down (and the function is deleted meanwhile); the node restarts and serves what it
    // had, while its watch retries.
    let mut objects = api.stop().await;
    objects.retain(|o| o["metadata"]["name"] != "hello");
    objects.push(function("after", 1, Some(&image), &[("GREETING", "after")]));
    let node = cluster_node(&data, &kubeconfig, &reg);
    assert_eq!(greeting(&node, "hello").await, Ok("persisted".into()));
    node.wait_for_log("watching Functions failed", WAIT).await;
    assert_eq!(greeting(&node, "hello").await, Ok("persisted".into()));

    // The API server is back: the watch resumes with a list, and the table follows it.
    let api = FakeApi::start_on(api.addr, objects).await;
    wait_greeting(&node, "after", Ok("after")).await;
    wait_greeting(&node, "hello", Err(404)).await;
    wait_report(&api, "after", |r| r["ready"] == true).await;
}
