//! The event types a broker has seen (issue 20, item 4): counted per namespace with a schema hint and a bounded
//! sample, none for a type marked sensitive, from the admin API and `wasmfn events`.

use serde_json::{Value, json};
use wasmfn_tests::node::{NodeProc, use_binary};

async fn publish(node: &NodeProc, namespace: &str, kind: &str, data: Value) {
    let resp = node
        .client
        .post(format!("http://{}/_events/{namespace}", node.ingress))
        .header("ce-specversion", "1.0")
        .header("ce-id", format!("{kind}-{}", data))
        .header("ce-source", "/shop")
        .header("ce-type", kind)
        .header("content-type", "application/json")
        .body(data.to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_records_the_event_types_it_has_seen() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start(data.path(), "sensitive-event-types = [\"com.bank.*\"]\n");
    // A broker takes events for namespaces that have a function.
    let wasm = wasmfn_tests::guests::rust_guest();
    for ns in ["default", "shop"] {
        let yaml = format!(
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: sink\n  namespace: {ns}\nspec:\n  component: {}\n",
            wasm.display()
        );
        node.deploy_ok(&yaml).await;
    }
    publish(&node, "default", "order.created", json!({"id": 1, "items": [2], "total": 9.5})).await;
    publish(&node, "default", "order.created", json!({"id": 2, "items": [], "total": 1.0})).await;
    publish(&node, "default", "com.bank.transfer", json!({"iban": "DE00 1234"})).await;
    publish(&node, "shop", "cart.emptied", json!({"cart": "c1"})).await;

    let (status, body) = node.admin_get("/v1/events/types?namespace=default").await;
    assert_eq!(status, 200, "{body}");
    let types = body["namespaces"]["default"]["types"].as_array().unwrap();
    assert!(body["namespaces"].get("shop").is_none(), "one namespace asked for: {body}");
    let order = types.iter().find(|t| t["type"] == "order.created").unwrap();
    assert_eq!((&order["count"], &order["source"]), (&json!(2), &json!("/shop")));
    assert_eq!(order["fields"], json!({"id": "number", "items": "array", "total": "number"}));
    assert!(order["sample"].as_str().unwrap().contains("\"id\":2"), "the latest sample: {order}");
    let bank = types.iter().find(|t| t["type"] == "com.bank.transfer").unwrap();
    assert_eq!(bank["sensitive"], true);
    assert!(bank.get("sample").is_none() && bank.get("fields").is_none(), "never sampled: {bank}");

    let admin = format!("http://{}", node.admin);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["events", "-A", "--admin", &admin])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("order.created") && text.contains("cart.emptied") && text.contains("(sensitive: no sample)"),
        "{text}"
    );
}
