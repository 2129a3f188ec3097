//! Support for the end-to-end tests: builds the test guests from source with the real toolchains, and
//! starts and drives real `wasmfn` processes on loopback with ephemeral ports.

#![allow(missing_docs, clippy::print_stderr)]

pub mod build;
pub mod containerd;
pub mod dns;
pub mod fake_registry;
pub mod guests;
pub mod kube;
pub mod load;
pub mod nats;
pub mod node;
pub mod registry;
pub mod s3;

use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some`, panicking with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    // Re-check every 20 ms until the deadline.
    let mut every = tokio::time::interval(Duration::from_millis(20));
    loop {
        every.tick().await;
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
    }
}
