//! Recent log lines, guest output and build output, kept in a ring bounded in bytes for the admin API's
//! `/v1/logs` (the console and `wasmfn logs`), with a broadcast channel for those who follow.
//!
//! The node's own log (tracing) still gets every guest line; the ring is what a browser can ask for. A line is
//! cut to the guest log's `max-line-bytes` before it gets here.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Bytes of line text the ring keeps, over all functions.
const MAX_BYTES: usize = 8 << 20;
/// Lines a follower may fall behind before it skips ahead.
const FOLLOW_BACKLOG: usize = 1024;

/// One line of a function's output.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Increases by one per line the node keeps: `since` in queries.
    pub seq: u64,
    /// When the line was written (RFC 3339, milliseconds).
    pub time: String,
    /// The function's namespace.
    pub namespace: String,
    /// The function's name.
    pub function: String,
    /// The revision that wrote it (empty for build output).
    pub revision: String,
    /// The request it belongs to (empty for build output).
    pub request_id: String,
    /// `stdout`, `stderr` or `build`.
    pub stream: &'static str,
    /// The text.
    pub line: String,
}

/// Which lines a query or a follower wants; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this function.
    pub function: Option<String>,
    /// Only this revision.
    pub revision: Option<String>,
    /// Only this request id.
    pub request_id: Option<String>,
}

impl LogFilter {
    /// Whether `line` passes.
    pub fn matches(&self, line: &LogLine) -> bool {
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        ok(&self.namespace, &line.namespace)
            && ok(&self.function, &line.function)
            && ok(&self.revision, &line.revision)
            && ok(&self.request_id, &line.request_id)
    }
}

/// The ring and the broadcast of new lines.
pub struct LogHub {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<LogLine>>,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<Arc<LogLine>>,
    bytes: usize,
    next: u64,
}

impl Default for LogHub {
    fn default() -> Self {
        LogHub { ring: Mutex::default(), tx: broadcast::channel(FOLLOW_BACKLOG).0 }
    }
}

impl std::fmt::Debug for LogHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHub").finish_non_exhaustive()
    }
}

/// Who wrote a line.
pub struct Source<'a> {
    /// The function's namespace.
    pub namespace: &'a str,
    /// The function's name.
    pub function: &'a str,
    /// The revision (empty for build output).
    pub revision: &'a str,
    /// The request id (empty for build output).
    pub request_id: &'a str,
    /// `stdout`, `stderr` or `build`.
    pub stream: &'static str,
}

impl LogHub {
    /// Keeps `line` (dropping the oldest lines past the byte bound) and sends it to followers.
    pub fn push(&self, source: Source<'_>, line: &str) {
        let line = {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            let entry = Arc::new(LogLine {
                seq: ring.next,
                time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                namespace: source.namespace.to_string(),
                function: source.function.to_string(),
                revision: source.revision.to_string(),
                request_id: source.request_id.to_string(),
                stream: source.stream,
                line: line.to_string(),
            });
            ring.next += 1;
            ring.bytes += entry.line.len();
            ring.lines.push_back(entry.clone());
            while ring.bytes > MAX_BYTES {
                let Some(old) = ring.lines.pop_front() else { break };
                ring.bytes -= old.line.len();
            }
            entry
        };
        // No follower is not an error.
        let _ = self.tx.send(line);
    }

    /// Up to `limit` of the newest lines passing `filter` with `seq >= since`, oldest first.
    pub fn query(&self, filter: &LogFilter, since: u64, limit: usize) -> Vec<Arc<LogLine>> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<LogLine>> =
            ring.lines.iter().rev().filter(|l| l.seq >= since && filter.matches(l)).take(limit).cloned().collect();
        out.reverse();
        out
    }

    /// The seq the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).next
    }

    /// New lines as they come (a follower that falls [`FOLLOW_BACKLOG`] lines behind skips ahead).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src<'a>(function: &'a str, request_id: &'a str) -> Source<'a> {
        Source { namespace: "default", function, revision: "r-1", request_id, stream: "stdout" }
    }

    #[test]
    fn the_ring_filters_and_stays_within_its_bytes() {
        let hub = LogHub::default();
        hub.push(src("a", "1"), "one");
        hub.push(src("b", "2"), "two");
        hub.push(src("a", "3"), "three");
        let only_a = LogFilter { function: Some("a".into()), ..Default::default() };
        let lines: Vec<String> = hub.query(&only_a, 0, 10).iter().map(|l| l.line.clone()).collect();
        assert_eq!(lines, ["one", "three"]);
        let by_request = LogFilter { request_id: Some("2".into()), ..Default::default() };
        assert_eq!(hub.query(&by_request, 0, 10)[0].line, "two");
        assert_eq!(hub.query(&LogFilter::default(), 2, 10).len(), 1, "since");
        assert_eq!(hub.query(&LogFilter::default(), 0, 2)[0].line, "two", "the newest, oldest first");

        let big = "x".repeat(1 << 20);
        for _ in 0..20 {
            hub.push(src("a", "4"), &big);
        }
        let kept = hub.query(&LogFilter::default(), 0, usize::MAX);
        assert!(kept.iter().map(|l| l.line.len()).sum::<usize>() <= MAX_BYTES);
        assert_eq!(kept.last().unwrap().seq, hub.next_seq() - 1);
    }
}
