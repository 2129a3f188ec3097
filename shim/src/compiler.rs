//! Precompilation of OCI wasm layers: containerd calls it once per image (and engine), stores the compiled code
//! in its content store next to the layer, and hands it to later containers instead of the component.

use anyhow::Context as _;
use containerd_shim_wasm::sandbox::context::WasmLayer;
use containerd_shim_wasm::shim::Compiler;
use std::sync::OnceLock;
use wasmfn_runtime::Precompiler;

/// Layer media types read from OCI images: the CNCF wasm artifact's, the Bytecode Alliance component layer's
/// and Spin's (a single-component Spin app whose component exports the handler and imports only WASI runs).
pub const LAYER_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// Compiles with an engine configured like the one each container builds.
#[derive(Default)]
pub struct WasmfnCompiler {
    // Built on first use: containerd asks for the compiler for every container, plain images included.
    precompiler: OnceLock<Result<Precompiler, String>>,
}

impl WasmfnCompiler {
    fn precompiler(&self) -> anyhow::Result<&Precompiler> {
        self.precompiler
            .get_or_init(|| Precompiler::new(&crate::sandbox::pool()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("cannot build the wasmtime engine: {e}"))
    }
}

impl Compiler for WasmfnCompiler {
    fn cache_key(&self) -> impl std::hash::Hash {
        // A new shim version or engine setting compiles again.
        (env!("CARGO_PKG_VERSION"), self.precompiler().map(Precompiler::key).ok())
    }

    async fn compile(&self, layers: &[WasmLayer]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        let precompiler = self.precompiler()?;
        let mut out = Vec::with_capacity(layers.len());
        for layer in layers {
            // One entry per layer, in order: `None` keeps a layer as it is.
            if layer.precompiled || wasmfn_runtime::check_component(&layer.layer).is_err() {
                out.push(None);
                continue;
            }
            let started = std::time::Instant::now();
            let code = precompiler.compile(&layer.layer).with_context(|| format!("layer {}", layer.config.digest()))?;
            log::info!("precompiled layer {} in {:?}", layer.config.digest(), started.elapsed());
            out.push(Some(code));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{Descriptor, MediaType};
    use std::str::FromStr;
    use wasmfn_runtime::{Digest, Node, NodeConfig};

    fn layer(bytes: Vec<u8>) -> WasmLayer {
        let digest = oci_spec::image::Digest::from_str(&Digest::of(&bytes).to_string()).unwrap();
        let config = Descriptor::new(MediaType::Other("application/wasm".into()), bytes.len() as u64, digest);
        WasmLayer { config, precompiled: false, layer: bytes }
    }

    /// The OCI path as containerd drives it: compile once, then a container runs the precompiled layer
    /// (`import_compiled`) without the component's bytes and without compiling.
    #[tokio::test(flavor = "multi_thread")]
    async fn precompiled_layers_run_without_compiling_and_other_layers_are_kept() {
        let component = std::fs::read(wasmfn_tests::guests::rust_guest()).unwrap();
        let core = wat::parse_str("(module)").unwrap();
        let compiler = WasmfnCompiler::default();
        let layers = [layer(component.clone()), layer(core)];
        let out = compiler.compile(&layers).await.unwrap();
        assert_eq!(out.len(), 2, "one entry per layer");
        assert!(out[1].is_none(), "a layer that is not a servable component is kept as it is");
        let code = out[0].clone().expect("the component is compiled");

        let dir = tempfile::tempdir().unwrap();
        // As a container's node is configured: the host's shared cache, keyed.
        let key = dir.path().join(crate::host_dir::KEY_FILE);
        crate::trust::ensure_key(&key, crate::trust::effective_uid()).unwrap();
        let node = Node::new(NodeConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir: dir.path().join("data"),
            aot_dir: Some(dir.path().join("aot")),
            aot_key_file: Some(key),
            default_function: Some("pod/hello".into()),
            pool: crate::sandbox::pool(),
            ..NodeConfig::default()
        })
        .unwrap();
        let digest = Digest::of(&component);
        // SAFETY: the first is refused by wasmtime's header check before anything runs; the second was just
        // produced by a `Precompiler` for this component.
        assert!(unsafe { node.import_compiled(digest, b"not code".to_vec()) }.await.is_err(), "garbage is refused");
        unsafe { node.import_compiled(digest, code) }.await.unwrap();
        let engine =
            std::fs::read_dir(dir.path().join("aot")).unwrap().flatten().find(|e| e.file_name() != "functions");
        let tag = std::fs::read_to_string(engine.unwrap().path().join(format!("{}.sum", digest.hex()))).unwrap();
        assert!(tag.starts_with("wasmfn-aot/2 hmac-sha256 "), "the imported code is tagged with the key: {tag}");
        let f = wasmfn_api::Function::new("pod", "hello", &digest.to_string());
        node.deploy(f, None).await.expect("deploys from the compiled code alone");
        assert!(!dir.path().join("data/blobs/sha256").join(digest.hex()).exists(), "no component bytes stored");

        let listeners = node.bind_ingress().await.unwrap();
        let addr = listeners.ingress_addr();
        assert!(listeners.admin_addr().is_none());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let node = node.clone();
            async move {
                node.serve(listeners, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        // Any path: the default function serves the pod, path unchanged.
        let body = reqwest::get(format!("http://{addr}/path?x=1")).await.unwrap().text().await.unwrap();
        assert_eq!(body, "/path?x=1");
        // Not even the node's own `/<namespace>/<name>/` form is stripped: the pod's function gets every path.
        // (Stripped, `/pod/hello/path` would reach the guest's `/path` handler, which echoes the path.)
        let body = reqwest::get(format!("http://{addr}/pod/hello/path")).await.unwrap().text().await.unwrap();
        assert!(body.starts_with("hello from rust"), "the guest saw a stripped path: {body}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    /// deploy/shim/*.toml register the runtime type this binary answers to, under the RuntimeClass's handler.
    #[test]
    fn the_containerd_snippets_name_this_runtime_under_the_runtime_class_handler() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let class = std::fs::read_to_string(root.join("deploy/base/runtimeclass.yaml")).unwrap();
        let handler = class.lines().find_map(|l| l.strip_prefix("handler: ")).unwrap().trim();
        for (file, plugin) in [
            ("containerd-1.6-1.7.toml", "io.containerd.grpc.v1.cri"),
            ("containerd-2.x.toml", "io.containerd.cri.v1.runtime"),
        ] {
            let text = std::fs::read_to_string(root.join("deploy/shim").join(file)).unwrap();
            let doc: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let runtime = &doc["plugins"][plugin]["containerd"]["runtimes"][handler];
            assert_eq!(runtime["runtime_type"].as_str(), Some("io.containerd.wasmfn.v1"), "{file}");
        }
        // containerd maps io.containerd.wasmfn.v1 to this binary's name.
        assert_eq!(env!("CARGO_BIN_NAME"), "containerd-shim-wasmfn-v1");
    }
}
