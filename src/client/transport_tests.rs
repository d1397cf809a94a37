//! Transport behaviour against a scripted local HTTP server: retries, error bodies, short
//! bodies, headers we send, and what reaches the logs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::{ClientConfig, OssClient};
use crate::credentials::test_http::{MiniServer, Reply, TestRequest};
use crate::credentials::{Credentials, Secret, StaticProvider};
use crate::store::{ObjectStore, PutOptions, StoreError};

const SECRET: &str = "SECRET-never-shown";
const TOKEN: &str = "TOKEN-never-shown";

fn client_for(server: &MiniServer, attempts: u32) -> OssClient {
    let mut creds = Credentials::new("AKID-visible", SECRET);
    creds.security_token = Some(Secret::new(TOKEN));
    let mut cfg = ClientConfig::new(
        server.base_url(),
        "bkt",
        "cn-hangzhou",
        Arc::new(StaticProvider {
            creds,
            source: "test".into(),
        }),
    );
    cfg.max_attempts = attempts;
    cfg.retry_base_delay = Duration::from_millis(1);
    cfg.read_timeout = Duration::from_secs(2);
    OssClient::new(cfg).unwrap()
}

fn error_xml(code: &str) -> String {
    format!(
        "<Error><Code>{code}</Code><Message>m</Message><RequestId>RID</RequestId><EC>0000-1</EC></Error>"
    )
}

#[tokio::test]
async fn html_502_is_retried_then_reported_as_invalid_response() {
    let server = MiniServer::start(|_| {
        Reply::with(502, "<html><body>Bad Gateway</body></html>")
            .header("content-type", "text/html")
    })
    .await;
    let err = client_for(&server, 3).head_object("k").await;
    // HEAD replies carry no body, so use GET for the HTML page.
    assert!(err.is_err());
    let err = client_for(&server, 3)
        .get_range("k", 0..10, None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::InvalidResponse { .. }), "{msg}");
    assert!(msg.contains("502") && msg.contains("Bad Gateway"), "{msg}");
    assert_eq!(server.requests(), 6);
}

#[tokio::test]
async fn huge_error_body_is_capped() {
    let big = format!(
        "<Error><Code>X</Code><Message>{}</Message></Error>",
        "y".repeat(200_000)
    );
    let server = MiniServer::start(move |_| Reply::with(400, &big)).await;
    let err = client_for(&server, 3)
        .put_object("k", Bytes::from_static(b"v").into(), &PutOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
    assert_eq!(server.requests(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn service_unavailable_then_success() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let server = MiniServer::start(move |_| {
        if n2.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::with(503, &error_xml("ServiceUnavailable"))
        } else {
            Reply::ok("").header("etag", "\"e\"").header(
                "x-oss-hash-crc64ecma",
                &crate::crc64::crc64(b"v").to_string(),
            )
        }
    })
    .await;
    let r = client_for(&server, 3)
        .put_object("k", Bytes::from_static(b"v").into(), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(r.etag, "\"e\"");
    assert_eq!(n.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn upload_crc_mismatch_is_reported_not_retried() {
    let server = MiniServer::start(|_| {
        Reply::ok("")
            .header("etag", "\"e\"")
            .header("x-oss-hash-crc64ecma", "12345")
    })
    .await;
    let err = client_for(&server, 3)
        .put_object("k", Bytes::from_static(b"v").into(), &PutOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::CrcMismatch { server: 12345, .. }),
        "{err}"
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn short_range_body_is_retried() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let payload: Vec<u8> = (0..100u8).collect();
    let p2 = payload.clone();
    let server = MiniServer::start(move |_| {
        let head = "HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-99/200\r\nContent-Length: 100\r\nConnection: close\r\n\r\n";
        let mut raw = head.as_bytes().to_vec();
        if n2.fetch_add(1, Ordering::SeqCst) == 0 {
            raw.extend_from_slice(&p2[..50]);
        } else {
            raw.extend_from_slice(&p2);
        }
        Reply::raw(&raw)
    })
    .await;
    let out = client_for(&server, 3)
        .get_range("k", 0..100, None)
        .await
        .unwrap();
    assert_eq!(&out.data[..], &payload[..]);
    assert_eq!(out.object_size, 200);
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn whole_object_crc_mismatch_is_retried_then_reported() {
    let server = MiniServer::start(|_| {
        Reply::with(206, "abcd")
            .header("content-range", "bytes 0-3/4")
            .header("x-oss-hash-crc64ecma", "1")
    })
    .await;
    let err = client_for(&server, 2)
        .get_range("k", 0..4, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::CrcMismatch { .. }), "{err}");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn requests_carry_signature_range_behaviour_and_user_agent() {
    let seen: Arc<Mutex<Vec<TestRequest>>> = Arc::default();
    let s2 = seen.clone();
    let server = MiniServer::start(move |req| {
        s2.lock().unwrap().push(req);
        Reply::with(206, "0123456789").header("content-range", "bytes 0-9/100")
    })
    .await;
    client_for(&server, 1)
        .get_range("dir/a b", 0..10, Some("\"etag\""))
        .await
        .unwrap();
    let reqs = seen.lock().unwrap();
    let r = &reqs[0];
    assert_eq!(r.path, "/bkt/dir/a%20b");
    assert!(
        r.header("authorization")
            .unwrap()
            .starts_with("OSS4-HMAC-SHA256 Credential=AKID-visible/")
    );
    assert_eq!(r.header("x-oss-security-token").as_deref(), Some(TOKEN));
    assert_eq!(
        r.header("x-oss-range-behavior").as_deref(),
        Some("standard")
    );
    assert_eq!(r.header("range").as_deref(), Some("bytes=0-9"));
    assert_eq!(r.header("if-match").as_deref(), Some("\"etag\""));
    assert!(r.header("user-agent").unwrap().starts_with("ossmount/"));
    assert!(r.header("x-oss-date").is_some());
}

#[tokio::test]
async fn file_body_shorter_than_promised_is_a_local_error() {
    let server = MiniServer::start(|_| Reply::ok("")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"0123456789").unwrap();
    let err = client_for(&server, 3)
        .put_object(
            "k",
            crate::store::PutBody::File {
                path,
                offset: 5,
                len: 10,
            },
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err}");
    assert_eq!(server.requests(), 0);
}

/// A server that reads the request body at `rate` bytes/s (0 = never), then answers 200.
async fn slow_reader(rate: usize) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A small receive buffer so that little of the body can hide in socket buffers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if rate == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                // Each 100 ms tick, take up to rate/10 bytes (several reads), then pause.
                let mut got = 0;
                let mut buf = vec![0u8; 64 * 1024];
                while got < len {
                    let mut this_tick = 0;
                    while this_tick < rate / 10 && got < len {
                        let want = buf.len().min(len - got);
                        match sock.read(&mut buf[..want]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                got += n;
                                this_tick += n;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: \"e\"\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn slow_but_progressing_upload_outlives_the_read_timeout() {
    // 48 MiB at ~16 MiB/s takes ~3 s, well over the 1.5 s timeout; it must succeed
    // because the body keeps moving. (What sits in socket buffers after the last chunk
    // was handed over drains well within the timeout.)
    let (addr, task) = slow_reader(16 << 20).await;
    let mut cfg = ClientConfig::anonymous(format!("http://{addr}"), "bkt", "cn-hangzhou");
    cfg.read_timeout = Duration::from_millis(1500);
    cfg.max_attempts = 1;
    let c = OssClient::new(cfg).unwrap();
    let started = std::time::Instant::now();
    let body = Bytes::from(vec![7u8; 48 << 20]);
    c.put_object("k", body.into(), &PutOptions::default())
        .await
        .unwrap();
    assert!(started.elapsed() > Duration::from_millis(2000));
    task.abort();
}

#[tokio::test]
async fn stalled_upload_times_out() {
    let (addr, task) = slow_reader(0).await;
    let mut cfg = ClientConfig::anonymous(format!("http://{addr}"), "bkt", "cn-hangzhou");
    cfg.read_timeout = Duration::from_millis(400);
    cfg.max_attempts = 1;
    let c = OssClient::new(cfg).unwrap();
    let started = std::time::Instant::now();
    let err = c
        .put_object(
            "k",
            Bytes::from(vec![1u8; 32 << 20]).into(),
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    task.abort();
}

/// Minimal in-memory metrics recorder: counter and histogram-sample totals by
/// `name{label=value,…}`.
#[derive(Clone, Default)]
struct TestRecorder(Arc<Mutex<std::collections::BTreeMap<String, f64>>>);

struct TestHandle(String, Arc<Mutex<std::collections::BTreeMap<String, f64>>>);

impl metrics::CounterFn for TestHandle {
    fn increment(&self, value: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.1.lock().unwrap().insert(self.0.clone(), value as f64);
    }
}

impl metrics::HistogramFn for TestHandle {
    fn record(&self, _value: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += 1.0;
    }
}

impl TestRecorder {
    fn handle(&self, key: &metrics::Key) -> Arc<TestHandle> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        Arc::new(TestHandle(
            format!("{}{{{}}}", key.name(), labels.join(",")),
            self.0.clone(),
        ))
    }
    fn get(&self, k: &str) -> f64 {
        self.0.lock().unwrap().get(k).copied().unwrap_or(0.0)
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.handle(key))
    }
}

#[test]
fn metrics_count_requests_retries_and_bytes() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let n = Arc::new(AtomicUsize::new(0));
            let n2 = n.clone();
            let server = MiniServer::start(move |_| {
                if n2.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::with(500, &error_xml("InternalError"))
                } else {
                    Reply::ok("").header("etag", "\"e\"")
                }
            })
            .await;
            client_for(&server, 3)
                .put_object(
                    "k",
                    Bytes::from_static(b"12345").into(),
                    &PutOptions::default(),
                )
                .await
                .unwrap();
        });
    });
    use crate::metrics as m;
    assert_eq!(
        recorder.get(&format!("{}{{op=PutObject,status=500}}", m::OSS_REQUESTS)),
        1.0
    );
    assert_eq!(
        recorder.get(&format!("{}{{op=PutObject,status=200}}", m::OSS_REQUESTS)),
        1.0
    );
    assert_eq!(
        recorder.get(&format!(
            "{}{{op=PutObject,reason=server_error}}",
            m::OSS_RETRIES
        )),
        1.0
    );
    assert_eq!(
        recorder.get(&format!("{}{{op=PutObject}}", m::OSS_REQUEST_SECONDS)),
        2.0
    );
    assert_eq!(recorder.get(&format!("{}{{}}", m::OSS_BYTES_WRITTEN)), 5.0);
}

/// First write request: the connection is dropped after the request (reply lost);
/// afterwards the server behaves as if that write had succeeded.
async fn lost_reply_server(
    conflict: &'static str,
    size: u64,
    crc: u64,
) -> (MiniServer, Arc<AtomicUsize>) {
    let writes = Arc::new(AtomicUsize::new(0));
    let w2 = writes.clone();
    let server = MiniServer::start(move |req| {
        if req.method == "HEAD" {
            return Reply::ok("")
                .header("content-length", &size.to_string())
                .header("etag", "\"done\"")
                .header("x-oss-hash-crc64ecma", &crc.to_string());
        }
        if w2.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::raw(b"")
        } else {
            Reply::with(409, &error_xml(conflict))
        }
    })
    .await;
    (server, writes)
}

#[tokio::test]
async fn append_whose_reply_was_lost_is_recognised() {
    let crc = crate::crc64::crc64(b"hello world");
    let (server, writes) = lost_reply_server("PositionNotEqualToLength", 11, crc).await;
    let r = client_for(&server, 3)
        .append_object(
            "log",
            6,
            Bytes::from_static(b"world"),
            Some(crate::crc64::crc64(b"hello ")),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.next_position, 11);
    assert_eq!(r.crc64, Some(crc));
    assert_eq!(writes.load(Ordering::SeqCst), 2);

    // Same story but the object does not hold our bytes: the conflict is reported.
    let (server, _) = lost_reply_server("PositionNotEqualToLength", 11, 99).await;
    let err = client_for(&server, 3)
        .append_object(
            "log",
            6,
            Bytes::from_static(b"world"),
            Some(crate::crc64::crc64(b"hello ")),
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PositionNotEqualToLength"));
}

#[tokio::test]
async fn exclusive_put_whose_reply_was_lost_is_recognised() {
    let (server, _) =
        lost_reply_server("FileAlreadyExists", 5, crate::crc64::crc64(b"12345")).await;
    let opts = PutOptions {
        forbid_overwrite: true,
        ..Default::default()
    };
    let r = client_for(&server, 3)
        .put_object("k", Bytes::from_static(b"12345").into(), &opts)
        .await
        .unwrap();
    assert_eq!(r.etag, "\"done\"");
    // Without a retry, FileAlreadyExists is the answer even if contents match.
    let server = MiniServer::start(|req| {
        if req.method == "HEAD" {
            Reply::ok("").header("content-length", "5")
        } else {
            Reply::with(409, &error_xml("FileAlreadyExists"))
        }
    })
    .await;
    let err = client_for(&server, 3)
        .put_object("k", Bytes::from_static(b"12345").into(), &opts)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("FileAlreadyExists"));
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn complete_whose_reply_was_lost_is_recognised() {
    let part_crc = crate::crc64::crc64(b"abc");
    let (server, _) = lost_reply_server("NoSuchUpload", 3, part_crc).await;
    // The lost-reply server answers 409 for later writes; NoSuchUpload is a 404 in real
    // OSS, but the code is what the client looks at.
    let parts = [crate::store::PartInfo {
        part_number: 1,
        etag: "\"p1\"".into(),
        size: 3,
        crc64: Some(part_crc),
    }];
    let r = client_for(&server, 3)
        .complete_multipart_upload("k", "upload", &parts)
        .await
        .unwrap();
    assert_eq!(r.crc64, Some(part_crc));
}

#[tokio::test]
async fn streaming_get_resumes_pinned_and_reports_a_changed_object() {
    use futures::StreamExt;
    let data: Vec<u8> = (0..200u8).collect();
    // Run 1: the first reply breaks after 50 bytes, the resume delivers the rest.
    // Run 2: the resume finds the object changed (412).
    for changed in [false, true] {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let seen: Arc<Mutex<Vec<TestRequest>>> = Arc::default();
        let s2 = seen.clone();
        let d2 = data.clone();
        let server = MiniServer::start(move |req| {
            s2.lock().unwrap().push(req);
            if n2.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut raw =
                    b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\nETag: \"v1\"\r\n\r\n".to_vec();
                raw.extend_from_slice(&d2[..50]);
                Reply::raw(&raw)
            } else if changed {
                Reply::with(412, &error_xml("PreconditionFailed"))
            } else {
                Reply::with(206, "")
                    .header("content-range", "bytes 50-199/200")
                    .header("etag", "\"v1\"")
                    .header("content-length", "150")
                    .with_body(&d2[50..])
            }
        })
        .await;
        let out = client_for(&server, 3)
            .get_object("k", None, None)
            .await
            .unwrap();
        let items: Vec<_> = out.body.collect().await;
        let reqs = seen.lock().unwrap().clone();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].header("range").as_deref(), Some("bytes=50-199"));
        assert_eq!(reqs[1].header("if-match").as_deref(), Some("\"v1\""));
        if changed {
            let err = items.last().unwrap().as_ref().unwrap_err();
            assert!(err.is_precondition_failed(), "{err}");
        } else {
            let got: Vec<u8> = items
                .into_iter()
                .flat_map(|c| c.unwrap().to_vec())
                .collect();
            assert_eq!(got, data);
        }
    }
}

/// OSS's QPS limit (503, EC 0004-00000302) is retried past `max_attempts`, counted in
/// `OSS_THROTTLED` and halves the in-flight budget; a workload it only slows down
/// succeeds.
#[test]
fn qps_throttling_is_retried_beyond_max_attempts_and_counted() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let n = Arc::new(AtomicUsize::new(0));
            let n2 = n.clone();
            let server = MiniServer::start(move |_| {
                if n2.fetch_add(1, Ordering::SeqCst) < 5 {
                    Reply::with(
                        503,
                        "<Error><Code>ServiceUnavailable</Code><Message>Please reduce your request rate.</Message><RequestId>R</RequestId><EC>0004-00000302</EC></Error>",
                    )
                    .header("x-oss-ec", "0004-00000302")
                } else {
                    Reply::ok("").header("etag", "\"e\"")
                }
            })
            .await;
            let client = client_for(&server, 3);
            let max = client.inflight_limit().max();
            client
                .put_object("k", Bytes::from_static(b"v").into(), &PutOptions::default())
                .await
                .unwrap();
            assert_eq!(n.load(Ordering::SeqCst), 6, "5 throttled attempts, then success");
            assert!(client.inflight_limit().limit() < max);
        });
    });
    assert_eq!(
        recorder.get(&format!(
            "{}{{op=PutObject}}",
            crate::metrics::OSS_THROTTLED
        )),
        5.0
    );
    assert_eq!(
        recorder.get(&format!(
            "{}{{op=PutObject,reason=throttled}}",
            crate::metrics::OSS_RETRIES
        )),
        5.0
    );
}
