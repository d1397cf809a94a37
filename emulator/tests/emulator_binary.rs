//! The `ossmount-emulator` binary: ready/metadata lines, clean exit on SIGTERM, exit 2
//! on bad flags, data kept across restarts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ossmount-emulator");

fn spawn(data: &std::path::Path, extra: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--bucket", "bin-bucket", "--anonymous"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn emulator");
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).expect("read stdout") == 0 {
            break;
        }
        let line = line.trim_end().to_string();
        let ready = line.starts_with("ready ");
        lines.push(line);
        if ready {
            break;
        }
    }
    (child, lines)
}

fn stop(mut child: std::process::Child) -> i32 {
    let pid = child.id() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    for _ in 0..100 {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("emulator did not exit on SIGTERM");
}

fn http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn prints_ready_serves_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines) = spawn(dir.path(), &["--metadata-listen", "127.0.0.1:0"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("metadata 127.0.0.1:"), "{lines:?}");
    let addr = lines[1]
        .strip_prefix("ready ")
        .expect("ready line")
        .to_string();
    let put = http(
        &addr,
        "PUT /bin-bucket/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(put.starts_with("HTTP/1.1 200"), "{put}");
    assert_eq!(stop(child), 0);

    // Data survives a restart.
    let (child, lines) = spawn(dir.path(), &[]);
    let addr = lines[0].strip_prefix("ready ").expect("ready").to_string();
    let get = http(
        &addr,
        "GET /bin-bucket/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        get.starts_with("HTTP/1.1 200") && get.ends_with("hello"),
        "{get}"
    );
    assert_eq!(stop(child), 0);
}

#[test]
fn bad_flags_exit_2() {
    let status = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--bogus"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--bucket",
            "Bad_Name",
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    let status = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--bucket",
            "ok-name",
            "--fail-rate",
            "2",
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
