//! Egress that cannot be raced (issue 17): the node resolves a guest's host name once, with the resolver it is
//! configured with (here a scripted DNS server on loopback), checks every address, and connects to the
//! checked one. A failed lookup fails closed; a rebinding answer is never reached; `spec.egress` opens named
//! private hosts and networks for one function; nothing opens the admin API.

use wasmfn_tests::dns::{Answer, Probe, StubDns};
use wasmfn_tests::guests::rust_guest;
use wasmfn_tests::node::{NodeProc, manifest, use_binary};

fn start(dns: &StubDns, extra: &str) -> (tempfile::TempDir, NodeProc) {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &format!("dns-servers = [\"{}\"]\n{extra}", dns.addr));
    (dir, node)
}

/// The guest's `GET <scheme>://<authority>/`: (status, body).
async fn fetch(node: &NodeProc, function: &str, authority: &str, scheme: &str) -> (u16, String) {
    let url = node.url("default", function, &format!("/fetch?authority={authority}&path=/&scheme={scheme}"));
    let (status, _, body) = node.get(&url).await;
    (status, body)
}

fn localhost(a: [u8; 4]) -> std::net::Ipv4Addr {
    a.into()
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_resolved_once_checked_and_pinned() {
    let dns = StubDns::start().await;
    let (good, bad) = Probe::pair().await;
    let port = good.addr.port();
    let (_dir, node) = start(&dns, "");
    let wasm = rust_guest();
    node.deploy_ok(&manifest("open", &wasm, "  egress:\n    allow: [\"127.0.0.2/32\"]\n")).await;
    node.deploy_ok(&manifest("closed", &wasm, "")).await;

    // SERVFAIL, then loopback: the first fails closed, the second is refused.
    dns.script("flaky.test", vec![Answer::ServFail, Answer::A(localhost([127, 0, 0, 1]))]);
    let (status, body) = fetch(&node, "open", &format!("flaky.test:{port}"), "http").await;
    assert!(status == 502 && body.contains("DnsError"), "{status} {body}");
    let (status, body) = fetch(&node, "open", &format!("flaky.test:{port}"), "http").await;
    assert!(status == 502 && body.contains("DestinationIpProhibited"), "{status} {body}");

    // A short-TTL flip: an allowed address, then the admin's loopback. The node asks once and connects to the
    // address it checked, over HTTP and HTTPS alike.
    for (name, scheme) in [("flip.test", "http"), ("tls.test", "https")] {
        dns.script(name, vec![Answer::A(localhost([127, 0, 0, 2])), Answer::A(localhost([127, 0, 0, 1]))]);
        let before = good.accepted();
        let (status, body) = fetch(&node, "open", &format!("{name}:{port}"), scheme).await;
        if scheme == "http" {
            assert_eq!((status, body.as_str()), (200, "status 200"));
        } else {
            // The probe speaks no TLS: the handshake fails, but on the checked address.
            assert_eq!(status, 502, "{body}");
        }
        assert_eq!(good.accepted(), before + 1, "{name}: connected to the checked address");
        assert_eq!(dns.asked(name), 1, "{name}: resolved once");
    }
    assert_eq!(bad.accepted(), 0, "the rebinding answer is never reached");

    // spec.egress by name: only the function that lists it.
    dns.script("db.internal", vec![Answer::A(localhost([127, 0, 0, 2]))]);
    node.deploy_ok(&manifest("named", &wasm, "  egress:\n    allow: [\"DB.internal\"]\n")).await;
    let (status, body) = fetch(&node, "named", &format!("db.internal:{port}"), "http").await;
    assert_eq!((status, body.as_str()), (200, "status 200"));
    let (status, body) = fetch(&node, "closed", &format!("db.internal:{port}"), "http").await;
    assert!(status == 502 && body.contains("DestinationIpProhibited"), "{status} {body}");
    // A grant never reaches the admin API, nor metadata.
    dns.script("admin.test", vec![Answer::A(localhost([127, 0, 0, 1]))]);
    let spec = "  egress:\n    allow: [\"127.0.0.0/8\", \"admin.test\", \"169.254.0.0/16\"]\n";
    node.deploy_ok(&manifest("greedy", &wasm, spec)).await;
    for authority in [node.admin.to_string(), format!("admin.test:{}", node.admin.port()), "169.254.169.254".into()] {
        let (status, body) = fetch(&node, "greedy", &authority, "http").await;
        assert!(status == 502 && body.contains("DestinationIpProhibited"), "{authority}: {status} {body}");
    }
    let (status, _) = fetch(&node, "greedy", &format!("admin.test:{port}"), "http").await;
    assert_eq!(status, 200, "the same name on another port is the function's to reach");

    // A manifest with a malformed entry is refused, naming it.
    let (status, body) = node.deploy(&manifest("bad", &wasm, "  egress:\n    allow: [\"10.0.0.0/33\"]\n")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("spec.egress.allow[0]"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn allowing_loopback_never_opens_the_admin_listener() {
    let dns = StubDns::start().await;
    let (_dir, node) = start(&dns, "allow-loopback-egress = true\n");
    let probe = Probe::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    node.deploy_ok(&manifest("fetcher", &rust_guest(), "")).await;
    let (status, body) = fetch(&node, "fetcher", &probe.addr.to_string(), "http").await;
    assert_eq!((status, body.as_str()), (200, "status 200"), "loopback is open");
    for authority in
        [node.admin.to_string(), format!("localhost:{}", node.admin.port()), format!("[::1]:{}", node.admin.port())]
    {
        let (status, body) = fetch(&node, "fetcher", &authority, "http").await;
        assert!(status == 502 && body.contains("DestinationIpProhibited"), "{authority}: {status} {body}");
    }
}
