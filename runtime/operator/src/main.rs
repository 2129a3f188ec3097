//! `wasmfn-operator`: reconciles `Function` resources on a cluster.

fn main() {}
