use super::artifact::*;
use super::*;

fn component() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (import "wasi:cli/environment@0.2.0" (instance $env))
            (export "wasi:http/incoming-handler@0.2.0" (instance $env))
        )"#,
    )
    .unwrap()
}

#[test]
fn the_cncf_layout_lists_the_components_interfaces() {
    let wasm = component();
    let p = Provenance { title: "hello.wasm".into(), source: Some("https://example/repo".into()), revision: None };
    let a = build(&wasm, Format::Wasm, &p).unwrap();
    let (m, layer) = component_layer(&a.manifest).unwrap();
    assert_eq!(a.digest, sha256_digest(&a.manifest));
    assert_eq!(m.media_type.as_deref(), Some(MANIFEST));
    assert_eq!(m.config.media_type, WASM_CONFIG);
    assert_eq!(m.config.digest, sha256_digest(&a.config));
    assert_eq!((layer.media_type.as_str(), layer.digest.clone()), (WASM_LAYER, sha256_digest(&wasm)));
    assert_eq!(m.annotations["org.opencontainers.image.title"], "hello.wasm");
    assert_eq!(m.annotations["org.opencontainers.image.source"], "https://example/repo");
    assert!(m.annotations.contains_key("org.opencontainers.image.created"));
    let config: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
    assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("wasm"), Some("wasip2")));
    assert_eq!(config["layerDigests"][0], sha256_digest(&wasm));
    assert_eq!(config["component"]["imports"][0], "wasi:cli/environment@0.2.0");
    assert_eq!(config["component"]["exports"][0], "wasi:http/incoming-handler@0.2.0");
    assert_eq!(component_from_layer(&layer, a.layer.clone(), 1 << 30).unwrap(), wasm);
}

#[test]
fn the_plain_image_form_round_trips_through_its_tar_layer() {
    let wasm = component();
    let a = build(&wasm, Format::Image, &Provenance { title: "hello.wasm".into(), ..Default::default() }).unwrap();
    let (m, layer) = component_layer(&a.manifest).unwrap();
    assert_eq!((m.config.media_type.as_str(), layer.media_type.as_str()), (IMAGE_CONFIG, TAR_LAYER));
    assert_eq!(component_from_layer(&layer, a.layer, 1 << 30).unwrap(), wasm);
}

#[test]
fn foreign_layouts_are_read_or_named() {
    let spin = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.fermyon.spin.application.v1+config","digest":"sha256:00","size":1},
        "layers":[{"mediaType":"application/vnd.wasm.content.layer.v1+wasm","digest":"sha256:11","size":2}]}"#;
    assert_eq!(component_layer(spin.as_bytes()).unwrap().1.media_type, SPIN_LAYER);
    let other = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":1},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:11","size":2},
                  {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:22","size":2}]}"#;
    let err = component_layer(other.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("wrong media type") && err.contains("no component layer"), "{err}");
    assert!(build(b"not wasm", Format::Wasm, &Provenance::default()).is_err());
}
