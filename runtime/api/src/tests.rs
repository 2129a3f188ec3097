use super::*;

const BASE: &str = "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: hello\n";

fn with_spec(spec: &str) -> String {
    format!("{BASE}spec:\n{spec}")
}

#[test]
fn defaults_and_round_trip() {
    let f = Function::from_yaml(&with_spec("  component: hello.wasm\n")).unwrap();
    assert_eq!(f.metadata.namespace, "default");
    assert_eq!(f.spec.scaling, Scaling::default());
    assert_eq!(f.spec.limits.timeout, std::time::Duration::from_secs(300));
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(Function::from_json(&json).unwrap(), f);
    assert!(json.contains("\"memory\":\"128Mi\""), "{json}");
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let err = Function::from_yaml(&with_spec("  component: a.wasm\n  scaling:\n    maxConcurency: 3\n")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("spec.scaling"), "{msg}");
    assert!(msg.contains("maxConcurency"), "{msg}");
    let err = Function::from_yaml(&format!("{BASE}spek: {{}}\n")).unwrap_err().to_string();
    assert!(err.contains("spek"), "{err}");
}

#[test]
fn wrong_types_and_values_are_named() {
    let err = Function::from_yaml(&with_spec("  component: a.wasm\n  limits:\n    timeout: soon\n")).unwrap_err();
    assert!(err.to_string().contains("spec.limits.timeout"), "{err}");
    let err = Function::from_yaml(&with_spec("  component: a.wasm\n  limits:\n    timeout: 1000y\n")).unwrap_err();
    assert!(err.to_string().contains("at most 24h"), "{err}");
    let err = Function::from_yaml(&with_spec("  component: a.wasm\n  limits:\n    memory: 12Qi\n")).unwrap_err();
    assert!(err.to_string().contains("spec.limits.memory") && err.to_string().contains("Qi"), "{err}");
    let err = Function::from_yaml(&with_spec("  env: []\n")).unwrap_err();
    assert!(err.to_string().contains("spec.component"), "{err}");
    let err = Function::from_yaml(&with_spec("  component: sha256:abc\n")).unwrap_err();
    assert!(err.to_string().contains("sha256 digest"), "{err}");
    let bad_name =
        "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata: {name: Hello_World}\nspec: {component: a.wasm}\n";
    assert!(Function::from_yaml(bad_name).unwrap_err().to_string().contains("metadata.name"));
    let bad_kind = "apiVersion: wasmfn.dev/v1alpha1\nkind: Pod\nmetadata: {name: a}\nspec: {component: a.wasm}\n";
    assert!(Function::from_yaml(bad_kind).unwrap_err().to_string().contains("kind"));
    let err = Function::from_yaml(&with_spec("  component: a.wasm\n  routes: [{path: api}]\n")).unwrap_err();
    assert!(err.to_string().contains("spec.routes[0].path"), "{err}");
    let err =
        Function::from_yaml(&with_spec("  component: a.wasm\n  env: [{name: A, value: x}, {name: A}]\n")).unwrap_err();
    assert!(err.to_string().contains("spec.env[1].name"), "{err}");
}

#[test]
fn multi_document_streams() {
    let two = format!("{}---\n{}", with_spec("  component: a.wasm\n"), with_spec("  component: b.wasm\n"));
    assert_eq!(Function::all_from_yaml(&two).unwrap().len(), 2);
    assert!(Function::from_yaml(&two).is_err());
}

#[test]
fn quantities() {
    for (text, bytes) in [("128Mi", 128u64 << 20), ("1G", 1_000_000_000), ("4096", 4096), ("2Ki", 2048)] {
        assert_eq!(Quantity::parse(text).unwrap().bytes(), bytes, "{text}");
    }
    assert!(Quantity::parse("1.5Gi").is_err());
    assert!(Quantity::parse("99999999999999Ti").is_err());
    assert_eq!(Quantity::from_bytes(3 << 30).to_string(), "3Gi");
    assert_eq!(Quantity::from_bytes(1000).to_string(), "1000");
}

#[test]
fn build_replaces_the_component_and_names_a_template() {
    let f = Function::from_yaml(&with_spec("  build:\n    template: js\n")).unwrap();
    assert_eq!(f.spec.build.as_ref().map(|b| b.template.as_str()), Some("js"));
    assert_eq!(f.spec.component, None);
    let err = Function::from_yaml(&with_spec("  build:\n    template: Java 8\n")).unwrap_err().to_string();
    assert!(err.contains("spec.build.template"), "{err}");
    let err = Function::from_yaml(&with_spec("  build:\n    templat: js\n")).unwrap_err().to_string();
    assert!(err.contains("templat"), "{err}");
}

#[test]
fn an_image_or_a_pinned_record_of_one() {
    let f = Function::from_yaml(&with_spec("  image: reg.example/fns/hello:v1\n")).unwrap();
    assert_eq!(f.spec.image.as_deref(), Some("reg.example/fns/hello:v1"));
    let digest = format!("sha256:{}", "a".repeat(64));
    let pinned = format!("  image: reg.example/fns/hello@{digest}\n  component: {digest}\n");
    assert!(Function::from_yaml(&with_spec(&pinned)).is_ok(), "a deployed record re-applies");
    let err =
        Function::from_yaml(&with_spec("  image: reg.example/x:v1\n  component: x.wasm\n")).unwrap_err().to_string();
    assert!(err.contains("spec.image") && err.contains("not both"), "{err}");
    let err = Function::from_yaml(&with_spec("  image: \"a b\"\n")).unwrap_err().to_string();
    assert!(err.contains("not an image reference"), "{err}");
}

#[test]
fn traffic_splits_tags_and_rollouts() {
    let ok = Function::from_yaml(&with_spec(
        "  component: a.wasm\n  traffic:\n    - {revisionName: hello-1, percent: 90}\n    - {latestRevision: true, percent: 10, tag: canary}\n  rollout: {duration: 5m}\n",
    ))
    .unwrap();
    assert_eq!(ok.spec.traffic[1], TrafficTarget { tag: Some("canary".into()), ..TrafficTarget::latest(10) });
    assert_eq!(ok.spec.rollout.as_ref().unwrap().steps, 5);
    assert_eq!(ok.spec.revision_config().traffic, vec![]);

    let err = |traffic: &str| {
        Function::from_yaml(&with_spec(&format!("  component: a.wasm\n  traffic:\n{traffic}"))).unwrap_err().to_string()
    };
    let e = err("    - {revisionName: hello-1, percent: 80}\n    - {latestRevision: true, percent: 10}\n");
    assert!(e.contains("spec.traffic") && e.contains("add up to 90") && e.contains("hello-1=80"), "{e}");
    let e =
        err("    - {revisionName: hello-1, percent: 50, tag: a}\n    - {latestRevision: true, percent: 50, tag: a}\n");
    assert!(e.contains("spec.traffic[1].tag") && e.contains("tag `a` is used twice"), "{e}");
    let e = err("    - {revisionName: other-1, percent: 100}\n");
    assert!(e.contains("spec.traffic[0].revisionName") && e.contains("not a revision name of hello"), "{e}");
    let e = err("    - {revisionName: hello-01, percent: 100}\n");
    assert!(e.contains("revisionName"), "{e}");
    let e = err("    - {percent: 100}\n");
    assert!(e.contains("spec.traffic[0]") && e.contains("latestRevision"), "{e}");
    let e = err("    - {revisionName: hello-1, latestRevision: true, percent: 100}\n");
    assert!(e.contains("not both"), "{e}");
    let e = err("    - {latestRevision: true, percent: 100, tag: Canary}\n");
    assert!(e.contains("spec.traffic[0].tag"), "{e}");
    let e = err("    - {latestRevision: true, percent: 100, weight: 3}\n");
    assert!(e.contains("weight"), "{e}");

    let e = err(&format!("    - {{latestRevision: true, percent: 100, tag: {}}}\n", "t".repeat(60)));
    assert!(e.contains("spec.traffic[0].tag") && e.contains("longer than 63"), "{e}");
    let e = Function::from_yaml(&with_spec("  component: a.wasm\n  rollout: {duration: 1m, maxErrorRate: 5}\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.rollout.maxErrorRate"), "{e}");
    let e = Function::from_yaml(&with_spec("  component: a.wasm\n  rollout: {steps: 0, duration: 1m}\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.rollout.steps"), "{e}");
}

#[test]
fn revision_names() {
    let f = Function::new("default", "hello", "a.wasm");
    assert_eq!(f.revision_generation("hello-12"), Some(12));
    for bad in ["hello-0", "hello-", "hello", "hello-x", "hello-+1", "hellox-1", "hello-007"] {
        assert_eq!(f.revision_generation(bad), None, "{bad}");
    }
}

#[test]
fn triggers_filters_and_delivery() {
    let f = Function::from_yaml(&with_spec(
        r#"  component: a.wasm
  triggers:
    - name: orders
      events:
        filter:
          all:
            - exact: {type: com.example.order}
            - any: [{prefix: {source: /shop}}, {suffix: {subject: .jpg}}]
            - not: {exact: {priority: low}}
      delivery: {retry: 2, backoffPolicy: linear, backoffDelay: 50ms, deadLetterSink: {function: dlq}}
    - name: tick
      cron: {schedule: "*/5 * * * *", timezone: Europe/Berlin, data: '{"x":1}'}
    - name: q
      nats: {url: "nats://127.0.0.1:4222", subject: "orders.>", stream: ORDERS, queueGroup: workers}
      delivery: {deadLetterSink: {nats: {url: "nats://127.0.0.1:4222", subject: dead}}}
"#,
    ))
    .unwrap();
    assert_eq!(f.spec.revision_config().triggers, vec![]);
    let t = &f.spec.triggers;
    assert_eq!(t[0].delivery.backoff(2), std::time::Duration::from_millis(50));
    assert_eq!(t[0].delivery.backoff(4), std::time::Duration::from_millis(150));
    assert_eq!(t[1].delivery.retry, 10);
    assert_eq!(t[1].delivery.backoff(2), std::time::Duration::from_millis(400));
    assert_eq!(t[1].delivery.backoff(4), std::time::Duration::from_millis(1600));
    assert_eq!(t[1].delivery.backoff(u32::MAX), std::time::Duration::from_millis(200 << 20));
    let filter = t[0].events.as_ref().unwrap().filter.as_ref().unwrap();
    let event = |attrs: &'static [(&'static str, &'static str)]| {
        move |k: &str| attrs.iter().find(|(n, _)| *n == k).map(|(_, v)| std::borrow::Cow::Borrowed(*v))
    };
    assert!(filter.matches(&event(&[("type", "com.example.order"), ("source", "/shop/1")])));
    assert!(filter.matches(&event(&[("type", "com.example.order"), ("source", "/x"), ("subject", "a.jpg")])));
    assert!(!filter.matches(&event(&[("type", "com.example.order"), ("source", "/x")])));
    assert!(!filter.matches(&event(&[("type", "com.example.order"), ("source", "/shop"), ("priority", "low")])));
    assert!(!filter.matches(&event(&[("type", "com.example.orders"), ("source", "/shop")])));

    let err = |triggers: &str| {
        Function::from_yaml(&with_spec(&format!("  component: a.wasm\n  triggers:\n{triggers}")))
            .unwrap_err()
            .to_string()
    };
    let e = err("    - {name: a, cron: {schedule: '61 * * * *'}}\n");
    assert!(e.contains("spec.triggers[0].cron") && e.contains("not a cron schedule"), "{e}");
    let e = err("    - {name: a, cron: {schedule: '0 0 30 2 *'}}\n");
    assert!(e.contains("spec.triggers[0].cron.schedule") && e.contains("never fires"), "{e}");
    let e = err("    - {name: a, events: {}, delivery: {retry: 1000}}\n");
    assert!(e.contains("spec.triggers[0].delivery.retry"), "{e}");
    let e = err("    - {name: a, cron: {schedule: '* * * * *', timezone: Mars/Base}}\n");
    assert!(e.contains("not an IANA time zone"), "{e}");
    let e = err("    - {name: a, events: {filter: {exakt: {type: x}}}}\n");
    assert!(e.contains("exakt"), "{e}");
    let e = err("    - {name: a, events: {filter: {any: []}}}\n");
    assert!(e.contains("spec.triggers[0].events.filter") && e.contains("lists no filter"), "{e}");
    let e = err("    - {name: a, events: {filter: {exact: {Type: x}}}}\n");
    assert!(e.contains("not a CloudEvents attribute name"), "{e}");
    let e = err("    - {name: a}\n");
    assert!(e.contains("exactly one of"), "{e}");
    let e = err("    - {name: a, events: {}}\n    - {name: a, events: {}}\n");
    assert!(e.contains("spec.triggers[1].name") && e.contains("listed twice"), "{e}");
    let e = err("    - {name: a, nats: {url: 'http://x', subject: s, stream: S}}\n");
    assert!(e.contains("spec.triggers[0].nats.url"), "{e}");
    let e = err("    - {name: a, events: {}, delivery: {deadLetterSink: {url: ftp://x}}}\n");
    assert!(e.contains("deadLetterSink.url"), "{e}");
}

#[test]
fn sources_validate_and_become_build_arguments() {
    let f = Function::from_yaml(&with_spec(
        "  build: {template: python}\n  source:\n    git: {url: 'https://git.example/fns.git', ref: v1, path: /hello/}\n",
    ))
    .unwrap();
    let source = f.spec.source.as_ref().unwrap();
    assert_eq!(source.to_arg(crate::INLINE_DIR), "git+https://git.example/fns.git#v1:hello");
    let s3 = Source {
        inline: None,
        git: None,
        s3: Some(S3Source {
            bucket: "fns".into(),
            key: "hello.tar.gz".into(),
            endpoint: Some("http://minio:9000".into()),
            region: None,
            secret_ref: None,
        }),
    };
    assert_eq!(s3.to_arg("/x"), "s3://fns/hello.tar.gz?endpoint=http://minio:9000");
    let inline = Source {
        inline: Some(InlineSource { code: "def handler(e, c): return 1".into(), dependencies: None }),
        git: None,
        s3: None,
    };
    assert_eq!(inline.to_arg("/workspace/inline"), "inline:/workspace/inline");

    let err = |spec: &str| Function::from_yaml(&with_spec(spec)).unwrap_err().to_string();
    let e = err("  source: {inline: {code: x}}\n");
    assert!(e.contains("spec.build.template"), "{e}");
    let e = err("  build: {template: js}\n  source: {}\n");
    assert!(e.contains("exactly one of"), "{e}");
    let e = err("  build: {template: js}\n  image: r/x:1\n  source: {inline: {code: x}}\n");
    assert!(e.contains("spec.source") && e.contains("one of"), "{e}");
    let e = err("  build: {template: js}\n  source: {git: {url: 'ftp://x/y'}}\n");
    assert!(e.contains("spec.source.git.url"), "{e}");
    let e = err("  build: {template: js}\n  source: {git: {url: 'https://x/y', path: ../etc}}\n");
    assert!(e.contains("spec.source.git.path"), "{e}");
    let e = err("  build: {template: js}\n  source: {s3: {bucket: b, key: k, endpoint: minio:9000}}\n");
    assert!(e.contains("spec.source.s3.endpoint"), "{e}");
    let e = err("  build: {template: js}\n  source: {inline: {code: ' '}}\n");
    assert!(e.contains("spec.source.inline.code"), "{e}");
}

#[test]
fn crd_schema_is_structural_and_matches_the_types() {
    let crd = crate::crd();
    let version = &crd.spec.versions[0];
    assert_eq!((crd.spec.group.as_str(), version.name.as_str()), ("wasmfn.dev", "v1alpha1"));
    assert!(version.subresources.as_ref().unwrap().status.is_some(), "status subresource");
    let columns: Vec<_> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(&columns[..4], ["Ready", "URL", "Latest Revision", "Age"]);
    let schema = serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
    assert_eq!(crate::structural_problems(&schema), Vec::<String>::new());
    let text = schema.to_string();
    assert!(!text.contains("uint"), "formats Kubernetes does not know");
    let scaling = &schema["properties"]["spec"]["properties"]["scaling"]["properties"];
    assert_eq!(scaling["maxQueue"]["maximum"].as_f64(), Some(u32::MAX as f64), "bounded like the type");
    // Defaults come from the types, so the API server fills in what `wasmfn up` would.
    let limits = &schema["properties"]["spec"]["properties"]["limits"];
    assert_eq!(limits["properties"]["timeout"]["default"], "5m");
    assert_eq!(limits["properties"]["memory"]["default"], "128Mi");
    let conditions = &schema["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");

    // The check itself finds what it must.
    let bad = serde_json::json!({"type": "object", "properties": {"a": {"$ref": "#/x"}, "b": {}}});
    assert_eq!(crate::structural_problems(&bad).len(), 3);
}

#[test]
fn cluster_objects_convert_to_strict_functions_and_back() {
    let f = Function::from_yaml(&with_spec("  image: registry.local/hello@sha256:abc\n")).unwrap();
    let r = FunctionResource::from(&f);
    assert_eq!(r.metadata.namespace.as_deref(), Some(f.metadata.namespace.as_str()));
    assert_eq!(Function::try_from(&r).unwrap(), f);
    assert_eq!(r.serving_image(), None, "not confirmed by the operator");

    // A cluster object breaking a rule the schema cannot express is rejected by the same checks as a file.
    let mut bad = r.clone();
    bad.spec.env = vec![EnvVar { name: "A".into(), value: "1".into() }, EnvVar { name: "A".into(), value: "2".into() }];
    assert!(Function::try_from(&bad).unwrap_err().to_string().contains("spec.env[1].name"));

    // Nodes run what the operator recorded for the current generation, once it succeeded.
    let mut built = r.clone();
    built.spec.image = Some("registry.local/hello:latest".into());
    built.metadata.generation = Some(2);
    let ok = Condition::new(condition::BUILD_SUCCEEDED, "True", "Succeeded", "");
    built.status = Some(FunctionStatus {
        image: Some("registry.local/hello@sha256:def".into()),
        observed_generation: Some(2),
        conditions: vec![ok.clone()],
        ..Default::default()
    });
    assert_eq!(built.serving_image(), Some("registry.local/hello@sha256:def"));
    let mut stale = built.clone();
    stale.metadata.generation = Some(3);
    assert_eq!(stale.serving_image(), None, "a newer spec is being built");
    let mut building = built.clone();
    building.status.as_mut().unwrap().conditions =
        vec![Condition::new(condition::BUILD_SUCCEEDED, "Unknown", "Building", "")];
    assert_eq!(building.serving_image(), None);
}

#[test]
fn instance_reuse_is_opt_in_and_bounded() {
    let f = Function::from_yaml(&with_spec("  component: a.wasm\n  scaling: {reuse: {}}\n")).unwrap();
    let reuse = f.spec.scaling.reuse.expect("reuse set");
    assert_eq!((reuse.max_requests, reuse.idle_timeout.as_secs(), reuse.max_idle), (1000, 60, 16));
    assert_eq!(reuse.max_memory, None);
    let ok = "  component: a.wasm\n  limits: {memory: 64Mi}\n  scaling:\n    reuse: {maxRequests: 5, idleTimeout: 2s, maxMemory: 32Mi, maxIdle: 4}\n";
    let f = Function::from_yaml(&with_spec(ok)).unwrap();
    assert_eq!(f.spec.scaling.reuse.as_ref().and_then(|r| r.max_memory).map(Quantity::bytes), Some(32 << 20));
    for (reuse, field, why) in [
        ("{maxRequests: 0}", "spec.scaling.reuse.maxRequests", "at least 1"),
        ("{idleTimeout: 0s}", "spec.scaling.reuse.idleTimeout", "above zero"),
        ("{idleTimeout: 2h}", "spec.scaling.reuse.idleTimeout", "at most 1h"),
        ("{maxIdle: 0}", "spec.scaling.reuse.maxIdle", "between 1 and"),
        ("{maxMemory: 256Mi}", "spec.scaling.reuse.maxMemory", "at most `limits.memory` (128Mi)"),
        ("{maxRequest: 3}", "spec.scaling.reuse", "maxRequest"),
    ] {
        let err = Function::from_yaml(&with_spec(&format!("  component: a.wasm\n  scaling: {{reuse: {reuse}}}\n")))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field) && err.contains(why), "{reuse}: {err}");
    }
}
