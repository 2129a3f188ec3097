//! `containerd-shim-wasmfn-v1`: containerd's runtime `io.containerd.wasmfn.v1`. Each container serves the
//! `wasi:http/incoming-handler` component of its image over HTTP on the pod's network, on the wasmfn runtime
//! (a fresh instance per request, instance pool, limits, AOT cache), built on runwasi's `containerd-shim-wasm`.
//!
//! Where the component comes from: OCI wasm layers (containerd ≥ 1.6.25), precompiled by [`compiler`] and
//! stored by containerd next to the image; or a plain image whose root file system holds the component
//! (`args[0]`), compiled once into a cache shared by all containers on the host ([`host_dir`]).

mod compiler;
mod host_dir;
mod sandbox;
mod trust;

use containerd_shim_wasm::shim::{Cli, Shim, Version, version};

/// The shim: its name keys containerd's precompile labels and youki's state directory.
struct WasmfnShim;

impl Shim for WasmfnShim {
    fn name() -> &'static str {
        "wasmfn"
    }

    fn version() -> Version {
        version!()
    }

    type Sandbox = sandbox::WasmfnSandbox;

    #[allow(refining_impl_trait)]
    async fn compiler() -> Option<compiler::WasmfnCompiler> {
        Some(compiler::WasmfnCompiler::default())
    }

    fn supported_layers_types() -> &'static [&'static str] {
        compiler::LAYER_TYPES
    }
}

fn main() {
    // Before `run` forks its zygote (which every container's init process is cloned from), while the
    // process is single-threaded: the host cache directory stays reachable from inside every container.
    host_dir::open_from_env();
    WasmfnShim::run(None);
}
