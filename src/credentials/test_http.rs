//! A tiny HTTP/1.1 server for unit tests (metadata service, STS, OSS error replies).
//!
//! One request per connection (`Connection: close`), bodies by Content-Length only. The
//! handler is a plain closure from [`TestRequest`] to [`Reply`]; it may also return
//! [`Reply::delayed`] or [`Reply::raw`] to simulate misbehaving servers.

// Shared by the credentials and client unit tests; not every helper is used by both.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub(crate) struct TestRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TestRequest {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sent verbatim instead of a formatted response.
    pub raw: Option<Vec<u8>>,
    /// Sleep this long before answering.
    pub delay: Duration,
}

impl Reply {
    pub(crate) fn ok(body: &str) -> Reply {
        Reply::with(200, body)
    }
    pub(crate) fn status(status: u16) -> Reply {
        Reply::with(status, "")
    }
    pub(crate) fn with(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            raw: None,
            delay: Duration::ZERO,
        }
    }
    pub(crate) fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub(crate) fn raw(bytes: &[u8]) -> Reply {
        let mut r = Reply::status(200);
        r.raw = Some(bytes.to_vec());
        r
    }
    pub(crate) fn with_body(mut self, body: &[u8]) -> Reply {
        self.body = body.to_vec();
        self
    }
    pub(crate) fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

pub(crate) struct MiniServer {
    addr: std::net::SocketAddr,
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MiniServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MiniServer {
    pub(crate) async fn start<F>(handler: F) -> MiniServer
    where
        F: Fn(TestRequest) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let c2 = count.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let count = c2.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let reply = handler(req.clone());
                    if !reply.delay.is_zero() {
                        tokio::time::sleep(reply.delay).await;
                    }
                    let bytes = match reply.raw {
                        Some(raw) => raw,
                        None => {
                            let mut out =
                                format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
                            let has_len = reply
                                .headers
                                .iter()
                                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
                            for (k, v) in &reply.headers {
                                out.push_str(&format!("{k}: {v}\r\n"));
                            }
                            let mut body = reply.body;
                            if req.method == "HEAD" {
                                if !has_len {
                                    out.push_str("Content-Length: 0\r\n");
                                }
                                body.clear();
                            } else if !has_len {
                                out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                            }
                            out.push_str("\r\n");
                            let mut bytes = out.into_bytes();
                            bytes.extend_from_slice(&body);
                            bytes
                        }
                    };
                    let _ = sock.write_all(&bytes).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        MiniServer { addr, count, task }
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub(crate) fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<TestRequest> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let header_end = loop {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(TestRequest {
        method,
        path,
        query,
        headers,
        body,
    })
}
