//! W3C trace context (`traceparent`): a request without a valid one starts a trace, which the guest sees and
//! its outgoing calls continue (`egress/send.rs`). Spans are the guest's business; the node records none.

use http::HeaderValue;

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids not all zero.
pub(super) fn valid_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

pub(super) fn new_traceparent() -> HeaderValue {
    let trace = (fastrand::u128(..) | 1).to_le_bytes();
    let parent = (fastrand::u64(..) | 1).to_le_bytes();
    let v = format!("00-{}-{}-01", hex::encode(trace), hex::encode(parent));
    HeaderValue::from_str(&v).expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_is_kept_when_valid_and_made_otherwise() {
        assert!(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        for bad in [
            "",
            "00-0000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-x-y-z",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(!valid_traceparent(bad), "{bad}");
        }
        assert!(valid_traceparent(new_traceparent().to_str().unwrap()));
    }
}
