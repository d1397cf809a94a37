//! What the client writes to the logs: failure details, never secrets.
//!
//! A separate test binary with a single test: tracing caches callsite interest
//! process-wide, so capturing logs next to other tests that install subscribers is racy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ossmount::credentials::{Secret, StaticProvider};
use ossmount::store::{ObjectStore, PutOptions};
use ossmount_emulator::FaultUpdate;

use crate::common::emulator::start_emulator;

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_have_failure_details_but_no_secrets() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("ossmount::client=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let env = start_emulator(|_| {}).await;
    let sts = env.emu.issue_sts(Duration::from_secs(600));
    let secret = sts.access_key_secret.expose().to_string();
    let token = sts.security_token.as_ref().unwrap().expose().to_string();

    // 1. A wrong secret with a real token: SignatureDoesNotMatch, not retried.
    let mut wrong = sts.clone();
    wrong.access_key_secret = Secret::new("WRONG-secret-value");
    let c = env.client_with(|cfg| {
        cfg.credentials = Arc::new(StaticProvider {
            creds: wrong,
            source: "test".into(),
        })
    });
    let err = c
        .put_object("k", Bytes::from_static(b"v").into(), &PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
    assert!(!format!("{err} {err:?} {c:?}").contains("WRONG-secret-value"));

    // 2. Valid STS credentials, every request failing with 5xx: retried, then one WARN.
    let c = env.client_with(|cfg| {
        cfg.credentials = Arc::new(StaticProvider {
            creds: sts,
            source: "test".into(),
        });
        cfg.max_attempts = 2;
    });
    env.emu.set_faults(FaultUpdate {
        fail_rate: Some(1.0),
        ..Default::default()
    });
    let _ = c.get_range("k", 0..1, None).await.unwrap_err();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warns: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warns.len(), 2, "one WARN per failed request:\n{text}");
    assert!(
        warns[0].contains("SignatureDoesNotMatch") && warns[0].contains("op=\"PutObject\""),
        "{text}"
    );
    assert!(
        warns[0].contains("request_id=") && warns[0].contains("ec="),
        "{text}"
    );
    assert!(
        warns[1].contains("attempts=2") && warns[1].contains("op=\"GetObject\""),
        "{text}"
    );
    assert!(text.contains("retrying OSS request"), "{text}");
    for forbidden in [
        secret.as_str(),
        token.as_str(),
        "WRONG-secret-value",
        "Signature=",
        "OSS4-HMAC-SHA256",
        "StringToSign",
    ] {
        assert!(
            !text.contains(forbidden),
            "{forbidden} leaked into logs:\n{text}"
        );
    }
}
