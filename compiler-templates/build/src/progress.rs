//! Build progress on stderr: each step as it starts and ends, with its elapsed time, and while a long step runs,
//! a heartbeat with the tool's latest output line (a live line on a terminal, one line every 10 s otherwise).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Receives each progress line too (`wasmfn up` keeps build output for the console and `wasmfn logs`).
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Where progress goes.
#[derive(Clone)]
pub struct Progress {
    enabled: bool,
    tty: bool,
    sink: Option<Sink>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("enabled", &self.enabled).field("tty", &self.tty).finish_non_exhaustive()
    }
}

impl Progress {
    /// Progress on stderr.
    pub fn stderr() -> Progress {
        Progress { enabled: true, tty: std::io::stderr().is_terminal(), sink: None }
    }

    /// Also sends every step's start and end, and the tools' warnings, to `sink`.
    pub fn with_sink(mut self, sink: Sink) -> Progress {
        self.sink = Some(sink);
        self
    }

    /// No output (library callers that report on their own).
    pub fn quiet() -> Progress {
        Progress { enabled: false, tty: false, sink: None }
    }

    /// Starts a step; it ends (and reports its time) when finished or dropped.
    pub fn step(&self, name: &str) -> Step {
        let shared =
            Arc::new(Shared { last: Mutex::new(String::new()), done: Mutex::new(false), wake: Condvar::new() });
        let started = Instant::now();
        let mut ticker = None;
        if let Some(sink) = &self.sink {
            sink(&format!("→ {name}"));
        }
        if self.enabled {
            if !self.tty {
                eprintln_flush(&format!("  → {name}"));
            }
            let (shared, name, tty) = (shared.clone(), name.to_string(), self.tty);
            ticker = Some(std::thread::spawn(move || heartbeat(&shared, &name, started, tty)));
        }
        Step { name: name.to_string(), started, shared, ticker, tty: self.tty, ok: false, sink: self.sink.clone() }
    }
}

struct Shared {
    last: Mutex<String>,
    done: Mutex<bool>,
    wake: Condvar,
}

fn eprintln_flush(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

fn heartbeat(shared: &Shared, name: &str, started: Instant, tty: bool) {
    let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(10) };
    let mut done = shared.done.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (guard, timeout) = shared.wake.wait_timeout(done, every).unwrap_or_else(|e| e.into_inner());
        done = guard;
        if *done {
            return;
        }
        if !timeout.timed_out() {
            continue;
        }
        let last = shared.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let secs = started.elapsed().as_secs();
        let detail = if last.is_empty() { String::new() } else { format!(" · {}", truncate(&last, 80)) };
        if tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K  … {name} {secs}s{detail}");
            let _ = err.flush();
        } else {
            eprintln_flush(&format!("  … {name}: {secs}s{detail}"));
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A running build step.
pub struct Step {
    name: String,
    started: Instant,
    shared: Arc<Shared>,
    ticker: Option<JoinHandle<()>>,
    tty: bool,
    ok: bool,
    sink: Option<Sink>,
}

impl Step {
    /// Records the tool's latest output line, shown by the heartbeat.
    pub fn note(&self, line: &str) {
        let line = line.trim();
        if !line.is_empty() {
            *self.shared.last.lock().unwrap_or_else(|e| e.into_inner()) = line.to_string();
        }
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Shows a warning from the tool (a line starting with `warning:`) under the step, even when it succeeds.
    pub fn warn(&self, line: &str) {
        if let Some(sink) = &self.sink {
            sink(line.trim());
        }
        if self.ticker.is_some() {
            let clear = if self.tty { "\r\x1b[2K" } else { "" };
            eprintln_flush(&format!("{clear}    {}", line.trim()));
        }
    }

    /// Ends the step successfully.
    pub fn finish(mut self) {
        self.ok = true;
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        *self.shared.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(sink) = &self.sink {
            let mark = if self.ok { "✓" } else { "✗" };
            sink(&format!("{mark} {} ({:.1}s)", self.name, self.started.elapsed().as_secs_f64()));
        }
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
            let mark = if self.ok { "✓" } else { "✗" };
            let clear = if self.tty { "\r\x1b[2K" } else { "" };
            eprintln_flush(&format!("{clear}  {mark} {} ({:.1}s)", self.name, self.started.elapsed().as_secs_f64()));
        }
    }
}
