//! Property tests of what a registry sends: digests, manifests and layers (plain, tar, gzip). Arbitrary and
//! structure-aware mutated input never panics, never yields more than the caps, and is refused with an error
//! that names the problem. Cases per property: `PROPTEST_CASES` (256 by default); longer on demand:
//! `PROPTEST_CASES=10000 cargo test -p wasmfn-oci --test props` (README, Tests).

use proptest::prelude::*;
use serde_json::json;
use std::io::Write;
use wasmfn_oci::artifact::{self, Descriptor, Format, Provenance, component_from_layer, component_layer};
use wasmfn_oci::{Error, check_digest, registry_of, sha256_digest};

const TAR_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MEDIA_TYPES: [&str; 7] = [
    artifact::WASM_LAYER,
    artifact::SPIN_LAYER,
    artifact::TAR_LAYER,
    TAR_GZ,
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.config.v1+json",
    "text/plain",
];

fn is_exact_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// A digest, right or nearly right: wrong case, length, algorithm, a path.
fn digest() -> impl Strategy<Value = String> {
    let hex = "[0-9a-f]{64}";
    prop_oneof![
        hex.prop_map(|h| format!("sha256:{h}")),
        (hex, any::<prop::sample::Index>(), ".").prop_map(|(h, i, c)| {
            let mut h: Vec<char> = h.chars().collect();
            h[i.index(64)] = c.chars().next().unwrap();
            format!("sha256:{}", h.into_iter().collect::<String>())
        }),
        "[0-9a-fA-F]{63,65}".prop_map(|h| format!("sha256:{h}")),
        "(sha256|sha512|SHA256|sha256 )[:]?[0-9a-f./]{0,70}",
        ".{0,80}",
    ]
}

fn layer(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
        annotations: Default::default(),
    }
}

/// One tar entry: a path, a type and its data.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: tar::EntryType,
    data: Vec<u8>,
}

fn entry() -> impl Strategy<Value = Entry> {
    let path = prop_oneof!["[a-z]{1,8}\\.wasm", "[a-z/]{1,12}(\\.wasm|\\.txt|)", "[a-z]{90,120}\\.wasm"];
    let kind = prop::sample::select(vec![tar::EntryType::Regular, tar::EntryType::Directory, tar::EntryType::Symlink]);
    (path, kind, prop::collection::vec(any::<u8>(), 0..2048)).prop_map(|(path, kind, data)| Entry { path, kind, data })
}

/// A tar of `entries`, and the entries it holds (tar refuses some paths, such as absolute ones).
fn tar_of(entries: &[Entry]) -> (Vec<u8>, Vec<Entry>) {
    let mut b = tar::Builder::new(Vec::new());
    let mut written = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        let data: &[u8] = if e.kind == tar::EntryType::Regular { &e.data } else { &[] };
        h.set_size(data.len() as u64);
        let ok = if e.kind == tar::EntryType::Symlink {
            b.append_link(&mut h, &e.path, "target").is_ok()
        } else {
            b.append_data(&mut h, &e.path, data).is_ok()
        };
        if ok {
            written.push(e.clone());
        }
    }
    (b.into_inner().unwrap(), written)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// What a tar layer should yield: the one regular `.wasm` entry, if exactly one.
fn expected_component(entries: &[Entry]) -> Option<&Vec<u8>> {
    let is_wasm = |e: &&Entry| std::path::Path::new(&e.path).extension().is_some_and(|x| x == "wasm");
    let wasm: Vec<&Entry> = entries.iter().filter(|e| e.kind == tar::EntryType::Regular).filter(is_wasm).collect();
    match wasm.as_slice() {
        [one] => Some(&one.data),
        _ => None,
    }
}

/// An error from reading a layer: one of the kinds a registry's content gets, with a message.
fn assert_layer_error(e: &Error) {
    assert!(matches!(e.kind(), "too-large" | "media-type" | "invalid"), "{e:?}");
    assert!(!e.to_string().is_empty());
}

proptest! {
    #[test]
    fn digests_are_accepted_only_when_exact(d in digest()) {
        match check_digest(&d, "the layer") {
            Ok(()) => prop_assert!(is_exact_digest(&d), "{d:?} accepted"),
            Err(e) => {
                prop_assert!(!is_exact_digest(&d), "{d:?} refused");
                let text = e.to_string();
                prop_assert!(text.contains("the layer has an invalid digest"), "{text}");
                // The message quotes at most 80 characters of what the registry sent.
                prop_assert!(text.len() < 80 * 4 + 120, "{} bytes", text.len());
            }
        }
    }

    #[test]
    fn manifests_pick_a_component_layer_or_say_why(
        layers in prop::collection::vec((prop::sample::select(MEDIA_TYPES.to_vec()), digest(), any::<u64>()), 0..4),
        schema in prop_oneof![Just(json!(2)), Just(json!("2")), Just(json!(-1))],
    ) {
        let descs: Vec<_> = layers.iter().map(|(t, d, s)| json!({"mediaType": t, "digest": d, "size": s})).collect();
        let doc = json!({
            "schemaVersion": schema,
            "config": {"mediaType": artifact::WASM_CONFIG, "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
            "layers": descs,
        });
        match component_layer(doc.to_string().as_bytes()) {
            Ok((m, l)) => {
                prop_assert_eq!(m.layers.len(), layers.len());
                let wasm = m.layers.iter().find(|l| l.media_type == artifact::WASM_LAYER || l.media_type == artifact::SPIN_LAYER);
                match wasm {
                    // The first component layer wins.
                    Some(first) => prop_assert_eq!(&l, first),
                    None => prop_assert!(m.layers.len() == 1 && m.layers[0] == l && l.media_type.contains("tar")),
                }
            }
            Err(e) => {
                prop_assert!(matches!(e.kind(), "media-type" | "invalid"), "{e:?}");
                if e.kind() == "media-type" {
                    prop_assert!(e.to_string().contains("no component layer"), "{e}");
                }
            }
        }
    }

    #[test]
    fn arbitrary_manifest_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), text in "[{}\\[\\]:,\"a-zA-Z0-9 ]{0,120}") {
        for b in [bytes.as_slice(), text.as_bytes()] {
            if let Err(e) = component_layer(b) {
                prop_assert!(matches!(e.kind(), "media-type" | "invalid"), "{e:?}");
            }
        }
    }

    #[test]
    fn tar_layers_yield_their_one_wasm_file_within_the_cap(
        entries in prop::collection::vec(entry(), 0..4),
        zipped in any::<bool>(),
        max in prop_oneof![0u64..4096, Just(1 << 30)],
    ) {
        let (tar, entries) = tar_of(&entries);
        let (media_type, bytes) = if zipped { (TAR_GZ, gzip(&tar)) } else { (artifact::TAR_LAYER, tar) };
        match (component_from_layer(&layer(media_type, &bytes), bytes, max), expected_component(&entries)) {
            (Ok(got), Some(want)) => {
                prop_assert_eq!(&got, want);
                prop_assert!(got.len() as u64 <= max);
            }
            (Err(e), Some(want)) => {
                prop_assert_eq!(e.kind(), "too-large", "{:?}", e);
                prop_assert!(want.len() as u64 > max);
            }
            (Ok(_), None) => prop_assert!(false, "a component from a layer without exactly one .wasm file"),
            (Err(e), None) => assert_layer_error(&e),
        }
    }

    #[test]
    fn mutated_layers_never_exceed_the_cap(
        entries in prop::collection::vec(entry(), 1..3),
        zipped in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        max in 0u64..4096,
    ) {
        let (tar, _) = tar_of(&entries);
        let mut bytes = if zipped { gzip(&tar) } else { tar };
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let media_type = if zipped { TAR_GZ } else { artifact::TAR_LAYER };
        match component_from_layer(&layer(media_type, &bytes), bytes, max) {
            Ok(got) => prop_assert!(got.len() as u64 <= max),
            Err(e) => assert_layer_error(&e),
        }
    }

    #[test]
    fn gzip_bombs_stop_at_the_cap(zeros in 1usize..(4 << 20), max in 0u64..(1 << 20), wasm_name in any::<bool>()) {
        // A tar of one large entry, gzipped to a few KB: inflating stops at the cap, not at the end.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(zeros as u64);
        h.set_mode(0o644);
        let name = if wasm_name { "big.wasm" } else { "big.bin" };
        b.append_data(&mut h, name, std::io::Read::take(std::io::repeat(0), zeros as u64)).unwrap();
        let bytes = gzip(&b.into_inner().unwrap());
        match component_from_layer(&layer(TAR_GZ, &bytes), bytes, max) {
            Ok(got) => prop_assert!(wasm_name && got.len() == zeros && zeros as u64 <= max),
            Err(e) => prop_assert!(e.kind() == "too-large" || (!wasm_name && e.kind() == "media-type"), "{e:?}"),
        }
    }

    #[test]
    fn component_layers_are_capped(len in 0usize..4096, max in 0u64..4096, media in prop::sample::select(vec![artifact::WASM_LAYER, artifact::SPIN_LAYER])) {
        let bytes = vec![0u8; len];
        match component_from_layer(&layer(media, &bytes), bytes, max) {
            Ok(got) => prop_assert!(got.len() == len && len as u64 <= max),
            Err(e) => prop_assert!(e.kind() == "too-large" && len as u64 > max, "{e:?}"),
        }
    }

    #[test]
    fn image_artifacts_round_trip_whatever_their_title(title in ".{0,120}", source in prop::option::of(".{0,20}")) {
        let wasm = wat::parse_str("(component)").unwrap();
        let p = Provenance { title: title.clone(), source, revision: None };
        for format in [Format::Wasm, Format::Image] {
            match artifact::build(&wasm, format, &p) {
                Ok(a) => {
                    prop_assert_eq!(&a.digest, &sha256_digest(&a.manifest));
                    let (m, l) = component_layer(&a.manifest).unwrap();
                    prop_assert_eq!(&m.annotations["org.opencontainers.image.title"], &title);
                    prop_assert_eq!(component_from_layer(&l, a.layer, 1 << 20).unwrap(), wasm.clone());
                }
                // Only a file name tar cannot hold is refused.
                Err(e) => prop_assert!(format == Format::Image && e.kind() == "invalid", "{title:?}: {e:?}"),
            }
        }
    }

    #[test]
    fn arbitrary_components_and_references_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128), reference in ".{0,40}") {
        let mut wasm = wat::parse_str(r#"(component (import "wasi:cli/environment@0.2.0" (instance)))"#).unwrap();
        wasm.extend_from_slice(&bytes);
        let _ = artifact::interfaces(&bytes);
        let _ = artifact::interfaces(&wasm);
        if let Ok(registry) = registry_of(&reference) {
            prop_assert!(!registry.is_empty());
        }
    }
}
