//! How a guest's failure is answered: 504 past its timeout, 500 for a trap or its own memory limit, and 503
//! with `Retry-After` when the node's memory budget refused it (the node's state, not the revision's fault).

use super::{NotTheRevision, ResponseBody, json_error};
use crate::budget::BudgetExhausted;
use crate::host::MemoryLimitExceeded;
use crate::revision::Revision;
use http::{HeaderValue, Response, StatusCode, header};
use std::time::Duration;
use wasmtime::Trap;

/// The `instances_discarded` reason for a request that failed on a reusable instance.
pub(super) fn discard_reason(error: &wasmtime::Error) -> &'static str {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        "timeout"
    } else if error.downcast_ref::<MemoryLimitExceeded>().is_some() || error.downcast_ref::<BudgetExhausted>().is_some()
    {
        "memory"
    } else {
        "trap"
    }
}

/// The status and message for a guest that failed: 504 past its timeout, 500 otherwise.
pub(super) fn classify(error: &wasmtime::Error, timeout: Duration) -> (StatusCode, String) {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        let t = humantime::format_duration(timeout);
        (StatusCode::GATEWAY_TIMEOUT, format!("the function exceeded its timeout of {t}"))
    } else if let Some(b) = error.downcast_ref::<BudgetExhausted>() {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{b}; retry later"))
    } else if let Some(m) = error.downcast_ref::<MemoryLimitExceeded>() {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("the function exceeded its memory limit of {} bytes", m.limit))
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("the function failed: {error:#}"))
    }
}

pub(super) fn guest_failure(
    revision: &Revision,
    id: &str,
    timeout: Duration,
    error: wasmtime::Error,
) -> Response<ResponseBody> {
    let (status, message) = classify(&error, timeout);
    tracing::warn!(function = %revision.key(), revision = %revision.name, request_id = id, status = status.as_u16(), "{message}");
    let mut resp = json_error(status, &message, serde_json::json!({ "requestId": id }));
    if error.downcast_ref::<BudgetExhausted>().is_some() {
        // The node is short of memory: nothing the revision did, and worth retrying.
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp.extensions_mut().insert(NotTheRevision);
    } else {
        revision.stats.set_error(message.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_failures_are_classified() {
        let t = Duration::from_secs(2);
        assert_eq!(classify(&Trap::Interrupt.into(), t).0, StatusCode::GATEWAY_TIMEOUT);
        let (status, message) = classify(&MemoryLimitExceeded { limit: 64 }.into(), t);
        assert!(status == StatusCode::INTERNAL_SERVER_ERROR && message.contains("memory limit of 64"), "{message}");
    }
}
