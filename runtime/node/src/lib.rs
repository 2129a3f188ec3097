//! The wasmfn node runtime: serves `wasi:http/incoming-handler` components, one fresh instance per request,
//! from a pre-linked component per revision; instance pools with concurrency limits and bounded queues;
//! an on-disk AOT cache; scale to zero; a persisted function table; an admin API and Prometheus metrics.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wasmfn_runtime::{Node, NodeConfig};
//! let node = Node::new(NodeConfig::default())?;
//! node.deploy(wasmfn_api::Function::new("default", "hello", "hello.wasm"), None).await?;
//! let listeners = node.bind().await?;
//! node.serve(listeners, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

// The request path, top to bottom: server (front door) → ingress (route) → executor (admit, invoke).
mod admin;
mod admission;
mod aot;
mod blobs;
mod budget;
pub mod cluster;
mod code;
mod config;
mod conn;
mod counters;
mod deploy;
mod egress;
mod engine;
mod error;
mod events;
mod executor;
mod guest_log;
mod host;
mod ingress;
mod instances;
pub mod logs;
mod metrics;
mod node;
mod pending;
mod revision;
mod rollout;
mod series;
mod server;
mod service;
mod state;
mod stats;
mod table;
mod traffic;
mod validate;
mod views;

pub use admin::console_page;
pub use aot::Precompiler;
pub use blobs::{Blobs, Digest};
pub use config::{ConfigError, GuestLogConfig, NodeConfig, PoolConfig, RegistryConfig};
pub use engine::AllocatorKind;
pub use error::{Cause, Error};
pub use events::types::EventType;
pub use host::MemoryLimitExceeded;
pub use node::Node;
pub use series::Point;
pub use server::Listeners;
pub use validate::check_component;
pub use views::{Deployed, FunctionInfo, RevisionInfo, RolloutStatus, TrafficStatus};
