//! Hostile servers: the `ossmount` binary pointed at a tiny raw-TCP HTTP server that
//! answers the bucket probe with malformed XML, an endless or huge XML body, a wrong
//! Content-Length, an HTML error page, garbage that is not HTTP, or nothing at all.
//! Every case must end within a deadline with exit status 1 and a clear message —
//! never a panic, a hang, or a secret in the output.
//!
//! (The client's own unit tests cover these shapes at the transport level; this checks
//! what a user of the binary sees.)

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::mount::ossmount_cmd;

const SECRET: &str = "hostile-SeCrEt-0123456789abcdef";
const TOKEN: &str = "hostile-ToKeN-fedcba9876543210";

/// What the hostile server sends back for every request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    MalformedXml,
    HugeXml,
    ShortBody,
    HtmlErrorPage,
    NotHttp,
    Silent,
    CloseImmediately,
    XmlBomb,
}

struct HostileServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl HostileServer {
    fn start(reply: Reply) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let stop3 = stop2.clone();
                        std::thread::spawn(move || serve(conn, reply, &stop3));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HostileServer { addr, stop }
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_request(conn: &mut TcpStream) -> bool {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return false;
        }
    }
    true
}

fn serve(mut conn: TcpStream, reply: Reply, stop: &AtomicBool) {
    if !read_request(&mut conn) {
        return;
    }
    let head = |status: &str, ctype: &str, len: usize| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\nx-oss-request-id: HOSTILE\r\n\r\n"
        )
    };
    let _ = match reply {
        Reply::MalformedXml => {
            let body = "<?xml version=\"1.0\"?><ListBucketResult><Name>bkt</Name><Contents><Key>a</Key><Size>not-a-number</Size></Contents><IsTruncated>maybe";
            conn.write_all(
                format!("{}{body}", head("200 OK", "application/xml", body.len())).as_bytes(),
            )
        }
        Reply::HugeXml => {
            // A "listing" of 64 MiB that never closes its root element.
            let len = 64 << 20;
            let mut r = conn.write_all(head("200 OK", "application/xml", len).as_bytes());
            let filler = "<Contents><Key>k</Key><Size>1</Size></Contents>".repeat(1000);
            let mut sent = 0;
            let _ = conn.write_all(b"<?xml version=\"1.0\"?><ListBucketResult>");
            while r.is_ok() && sent < len && !stop.load(Ordering::Relaxed) {
                r = conn.write_all(filler.as_bytes());
                sent += filler.len();
            }
            r
        }
        Reply::XmlBomb => {
            let body = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]><ListBucketResult><Name>&lol3;</Name></ListBucketResult>";
            conn.write_all(
                format!("{}{body}", head("200 OK", "application/xml", body.len())).as_bytes(),
            )
        }
        Reply::ShortBody => {
            // Promises 5000 bytes, sends 40, closes.
            let r = conn.write_all(head("200 OK", "application/xml", 5000).as_bytes());
            let _ = conn.write_all(b"<?xml version=\"1.0\"?><ListBucketResult>");
            r
        }
        Reply::HtmlErrorPage => {
            let body = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
            conn.write_all(
                format!("{}{body}", head("502 Bad Gateway", "text/html", body.len())).as_bytes(),
            )
        }
        Reply::NotHttp => conn.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02garbage\r\n\r\n"),
        Reply::Silent => {
            // Accepts and never answers.
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        Reply::CloseImmediately => Ok(()),
    };
}

#[test]
fn hostile_servers_give_clear_errors_without_panics_hangs_or_secrets() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cases = [
        (Reply::MalformedXml, &["invalid", "xml", "parse"][..]),
        (
            Reply::HugeXml,
            &["invalid", "too large", "xml", "timed out", "parse"][..],
        ),
        (Reply::XmlBomb, &["invalid", "xml", "parse", "entity"][..]),
        (
            Reply::ShortBody,
            &["short", "body", "connection", "closed", "incomplete"][..],
        ),
        (Reply::HtmlErrorPage, &["502"][..]),
        (Reply::NotHttp, &["connection", "http", "invalid"][..]),
        (Reply::Silent, &["timed out", "timeout"][..]),
        (Reply::CloseImmediately, &["connection", "closed"][..]),
    ];
    let mut tried = 0;
    for (reply, any_of) in cases {
        let server = HostileServer::start(reply);
        let started = Instant::now();
        let mut child = ossmount_cmd(home.path())
            .env("OSS_ACCESS_KEY_ID", "hostile-ak")
            .env("OSS_ACCESS_KEY_SECRET", SECRET)
            .env("OSS_SESSION_TOKEN", TOKEN)
            .env("OSSMOUNT_LOG", "trace")
            .args([
                "--dry-run",
                "--region",
                "cn-hangzhou",
                "--readwrite-timeout",
                "2s",
                "--connect-timeout",
                "2s",
                "--retries",
                "2",
                "--endpoint",
            ])
            .arg(format!("http://{}", server.addr))
            .arg("hostile-bucket")
            .arg(&mnt)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ossmount");
        let out = wait_with_deadline(&mut child, Duration::from_secs(45))
            .unwrap_or_else(|| panic!("{reply:?}: ossmount hung for 45 s"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .filter(|l| l.starts_with("ossmount:") || l.contains("hint"))
            .collect::<Vec<_>>()
            .join(" | ");
        eprintln!(
            "{reply:?}: {:?} in {:?}: {last}",
            out.status.code(),
            started.elapsed()
        );
        assert!(!stderr.contains("panicked"), "{reply:?} panicked: {stderr}");
        assert_eq!(out.status.code(), Some(1), "{reply:?}: {stdout}{stderr}");
        for secret in [SECRET, TOKEN] {
            assert!(
                !stderr.contains(secret) && !stdout.contains(secret),
                "{reply:?}: secret leaked"
            );
        }
        let lower = last.to_lowercase();
        assert!(
            any_of.iter().any(|w| lower.contains(w)),
            "{reply:?}: unclear message (wanted one of {any_of:?}): {last}"
        );
        assert!(
            stderr.len() < 2 << 20,
            "{reply:?}: {} bytes of stderr (server body echoed?)",
            stderr.len()
        );
        tried += 1;
    }
    eprintln!("hostile servers: {tried} cases, all clear errors, no panic/hang/secret");
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::Output> {
    // Drain pipes on threads so a chatty child cannot block on a full pipe.
    let mut so = child.stdout.take()?;
    let mut se = child.stderr.take()?;
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Some(std::process::Output {
        status,
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    })
}

#[test]
fn hostile_metadata_service_gives_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut tried = 0;
    for reply in [
        Reply::MalformedXml,
        Reply::HugeXml,
        Reply::HtmlErrorPage,
        Reply::NotHttp,
        Reply::Silent,
        Reply::CloseImmediately,
    ] {
        let server = HostileServer::start(reply);
        let started = Instant::now();
        let mut child = ossmount_cmd(home.path())
            .env(
                "OSSMOUNT_ECS_METADATA_ENDPOINT",
                format!("http://{}", server.addr),
            )
            .env("OSSMOUNT_LOG", "trace")
            .args([
                "--dry-run",
                "--region",
                "cn-hangzhou",
                "--ram-role",
                "SomeRole",
                "--endpoint",
                "http://127.0.0.1:1",
                "bkt",
            ])
            .arg(&mnt)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ossmount");
        let out = wait_with_deadline(&mut child, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{reply:?}: ossmount hung for 60 s"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .filter(|l| l.starts_with("ossmount:"))
            .collect::<Vec<_>>()
            .join(" | ");
        eprintln!(
            "metadata {reply:?}: {:?} in {:?}: {last}",
            out.status.code(),
            started.elapsed()
        );
        assert!(!stderr.contains("panicked"), "{reply:?} panicked: {stderr}");
        assert_eq!(out.status.code(), Some(1), "{reply:?}: {stderr}");
        let lower = last.to_lowercase();
        assert!(
            lower.contains("metadata")
                || lower.contains("ram role")
                || lower.contains("credentials"),
            "{reply:?}: the message does not say the credentials source failed: {last}"
        );
        assert!(
            stderr.len() < 2 << 20,
            "{reply:?}: {} bytes of stderr",
            stderr.len()
        );
        tried += 1;
    }
    eprintln!("hostile metadata service: {tried} cases, all clear errors");
}
