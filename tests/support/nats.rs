//! A real `nats-server -js` on 127.0.0.1 with an ephemeral port and its own store, for the eventing tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running NATS server with JetStream.
pub struct NatsProc {
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    logs: Arc<Mutex<String>>,
}

impl NatsProc {
    /// Starts the server with its JetStream store in `dir` and waits until it is ready.
    pub fn start(dir: &Path) -> NatsProc {
        let mut child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server (scripts/setup.sh installs it)");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let err = child.stderr.take().expect("stderr piped");
        let l = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut url = None;
        loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("nats-server did not get ready:\n{}", logs.lock().unwrap())
            });
            if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                url = Some(format!("nats://{}", addr.trim()));
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        NatsProc { child, url: url.expect("nats-server printed its address"), logs }
    }

    /// What the server logged.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for NatsProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
