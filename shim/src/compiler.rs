//! Precompilation of OCI wasm layers: containerd calls it once per image (and engine), stores the compiled code
//! in its content store next to the layer, and hands it to later containers instead of the component.

use anyhow::Context as _;
use containerd_shim_wasm::sandbox::context::WasmLayer;
use containerd_shim_wasm::shim::Compiler;
use std::sync::OnceLock;
use wasmfn_runtime::Precompiler;

/// Layer media types read from OCI images: the CNCF wasm artifact's, the Bytecode Alliance component layer's
/// and Spin's (so SpinKube images whose component exports the handler run unchanged).
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
