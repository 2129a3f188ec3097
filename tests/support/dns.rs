//! A scripted DNS server on 127.0.0.1 (UDP): each name answers from its script in turn (the last answer
//! repeats), with TTL 0, and every question is counted. Enough of RFC 1035 for A and AAAA questions.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// RCODE 2.
    ServFail,
    /// One A record.
    A(Ipv4Addr),
}

#[derive(Default)]
struct Script {
    answers: HashMap<String, Vec<Answer>>,
    asked: HashMap<String, usize>,
}

/// The running server; stops when dropped.
pub struct StubDns {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl StubDns {
    pub async fn start() -> StubDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP on loopback");
        let addr = socket.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let task = tokio::spawn({
            let script = script.clone();
            async move {
                let mut buf = [0u8; 512];
                while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                    if let Some(reply) = answer(&script, &buf[..n]) {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                }
            }
        });
        StubDns { addr, script, task }
    }

    /// Scripts the answers to A questions for `name` (without the trailing dot).
    pub fn script(&self, name: &str, answers: Vec<Answer>) {
        self.script.lock().unwrap().answers.insert(name.to_ascii_lowercase(), answers);
    }

    /// A questions asked for `name` so far.
    pub fn asked(&self, name: &str) -> usize {
        self.script.lock().unwrap().asked.get(&name.to_ascii_lowercase()).copied().unwrap_or(0)
    }
}

impl Drop for StubDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(script: &Mutex<Script>, query: &[u8]) -> Option<Vec<u8>> {
    // Header (12 bytes), then one question: labels, type, class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = &query[12..at + 4];
    let name = labels.join(".");
    let picked = {
        let mut s = script.lock().unwrap();
        if qtype != 1 {
            None
        } else {
            let n = *s.asked.entry(name.clone()).and_modify(|n| *n += 1).or_insert(1);
            s.answers.get(&name).and_then(|a| a.get(n - 1).or(a.last()).cloned())
        }
    };
    let mut reply = Vec::with_capacity(64);
    reply.extend_from_slice(&query[0..2]);
    let (rcode, record) = match picked {
        Some(Answer::ServFail) => (2u8, None),
        Some(Answer::A(ip)) => (0, Some(ip)),
        // AAAA and unscripted names: no records.
        None => (if qtype == 1 { 3 } else { 0 }, None),
    };
    reply.extend_from_slice(&[0x81, 0x80 | rcode, 0, 1, 0, u8::from(record.is_some()), 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if let Some(ip) = record {
        // Name pointer to the question, A, IN, TTL 0, 4 bytes.
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

/// An HTTP server on `ip:port` that answers 200 `ok` and counts the connections it accepted.
pub struct Probe {
    pub addr: SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    pub async fn start(addr: SocketAddr) -> std::io::Result<Probe> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                while let Ok((mut conn, _)) = listener.accept().await {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = [0u8; 4096];
                        let _ = conn.read(&mut buf).await;
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                    });
                }
            }
        });
        Ok(Probe { addr, accepted, task })
    }

    /// Two probes on one port: `127.0.0.2` (the address a test allows) and `127.0.0.1` (the one it must never
    /// reach).
    pub async fn pair() -> (Probe, Probe) {
        for _ in 0..50 {
            let good = Probe::start(([127, 0, 0, 2], 0).into()).await.expect("bind 127.0.0.2");
            if let Ok(bad) = Probe::start(([127, 0, 0, 1], good.addr.port()).into()).await {
                return (good, bad);
            }
        }
        panic!("no port free on both 127.0.0.1 and 127.0.0.2");
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}
