//! One-line log messages with a level prefix.
//!
//! `info` goes to stdout, `warn` and `error` to stderr; the wasmfn node collects both streams per request (tagged
//! with the function, revision and request id). Plain `println!`/`eprintln!` reach the same log; these helpers only
//! add the `INFO `/`WARN `/`ERROR ` prefix and keep a message on one line.
//!
//! ```
//! use wasmfn_sdk::log;
//!
//! log::info("order received");
//! log::warn(format_args!("retrying in {} ms", 250));
//! ```

use std::fmt::Display;
use std::io::Write;

/// Logs `message` to stdout as `INFO <message>`.
///
/// ```
/// wasmfn_sdk::log::info("started");
/// ```
pub fn info(message: impl Display) {
    line(&mut std::io::stdout().lock(), "INFO", message);
}

/// Logs `message` to stderr as `WARN <message>`.
///
/// ```
/// wasmfn_sdk::log::warn("cache miss");
/// ```
pub fn warn(message: impl Display) {
    line(&mut std::io::stderr().lock(), "WARN", message);
}

/// Logs `message` to stderr as `ERROR <message>`.
///
/// ```
/// wasmfn_sdk::log::error(format_args!("upstream answered {}", 503));
/// ```
pub fn error(message: impl Display) {
    line(&mut std::io::stderr().lock(), "ERROR", message);
}

/// Writes one line; newlines inside the message are escaped so a message never spans lines. Failing to log is
/// ignored: there is nowhere to report it.
fn line(out: &mut impl Write, level: &str, message: impl Display) {
    let text = message.to_string().replace('\n', "\\n");
    let _ = writeln!(out, "{level} {text}");
    let _ = out.flush();
}
