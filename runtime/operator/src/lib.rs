//! The wasmfn operator.
