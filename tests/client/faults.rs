//! Retries under injected faults (emulator fault injection, fixed seed).

use bytes::Bytes;
use futures::StreamExt;
use ossmount::store::{ObjectStore, PutOptions, StoreError};
use ossmount_emulator::FaultUpdate;

use crate::common::emulator::start_emulator;
use crate::common::pattern;

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let env = start_emulator(|cfg| cfg.seed = 42).await;
    let c = env.client_with(|cfg| cfg.max_attempts = 8);
    let data = Bytes::from(pattern(64 * 1024, 9));
    env.emu.set_faults(FaultUpdate {
        fail_rate: Some(0.3),
        ..Default::default()
    });
    for i in 0..20 {
        let key = format!("f/{i}");
        c.put_object(&key, data.clone().into(), &PutOptions::default())
            .await
            .unwrap();
        let got = c.get_range(&key, 0..data.len() as u64, None).await.unwrap();
        assert_eq!(got.data, data);
        c.head_object(&key).await.unwrap();
    }
    let stats = env.emu.stats();
    let injected = stats.faults_injected.get("error").copied().unwrap_or(0);
    assert!(injected > 5, "faults: {:?}", stats.faults_injected);
    // Every injected failure cost exactly one extra request.
    let ops = stats.requests_for("PutObject")
        + stats.requests_for("GetObject")
        + stats.requests_for("HeadObject");
    assert_eq!(ops, 60 + injected, "stats: {stats:?}");
}

#[tokio::test]
async fn truncated_and_reset_bodies_are_retried_by_get_range() {
    let env = start_emulator(|cfg| cfg.seed = 7).await;
    let c = env.client_with(|cfg| cfg.max_attempts = 10);
    let data = Bytes::from(pattern(512 * 1024, 5));
    c.put_object("t", data.clone().into(), &PutOptions::default())
        .await
        .unwrap();
    env.emu.set_faults(FaultUpdate {
        truncate_rate: Some(0.2),
        reset_rate: Some(0.1),
        ..Default::default()
    });
    for _ in 0..15 {
        let whole = c.get_range("t", 0..data.len() as u64, None).await.unwrap();
        assert_eq!(whole.data, data);
        let part = c.get_range("t", 1000..300_000, None).await.unwrap();
        assert_eq!(&part.data[..], &data[1000..300_000]);
    }
    let f = env.emu.stats().faults_injected;
    let total: u64 = f.values().sum();
    assert!(total >= 5, "faults: {f:?}");
}

#[tokio::test]
async fn streaming_get_reports_truncation_instead_of_a_clean_end() {
    let env = start_emulator(|cfg| cfg.seed = 1).await;
    let c = env.client();
    let data = Bytes::from(pattern(256 * 1024, 2));
    c.put_object("s", data.clone().into(), &PutOptions::default())
        .await
        .unwrap();
    env.emu.set_faults(FaultUpdate {
        truncate_rate: Some(1.0),
        ..Default::default()
    });
    // A cut can also land before the status line (the request then fails and is
    // retried); keep asking until a reply starts, then its body must end in an error.
    let mut out = None;
    for _ in 0..20 {
        if let Ok(o) = c.get_object("s", None, None).await {
            out = Some(o);
            break;
        }
    }
    let out = out.expect("no reply ever started");
    let items: Vec<_> = out.body.collect().await;
    let received: usize = items
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|b| b.len())
        .sum();
    assert!(received < data.len());
    let last = items.last().expect("at least the error");
    assert!(last.is_err(), "stream ended cleanly after {received} bytes");
}

#[tokio::test]
async fn persistent_failure_gives_up_after_max_attempts() {
    let env = start_emulator(|_| {}).await;
    let c = env.client_with(|cfg| cfg.max_attempts = 3);
    env.emu.set_faults(FaultUpdate {
        fail_rate: Some(1.0),
        ..Default::default()
    });
    env.emu.reset_stats();
    let err = c.head_object("x").await.unwrap_err();
    assert!(err.status().is_some_and(|s| s >= 500), "{err}");
    assert_eq!(env.emu.stats().requests_for("HeadObject"), 3);
}

#[tokio::test]
async fn connection_refused_names_the_endpoint() {
    let env = start_emulator(|_| {}).await;
    let c = env.client_with(|cfg| {
        cfg.endpoint = "http://127.0.0.1:1".into();
        cfg.max_attempts = 2;
    });
    let err = c.head_object("x").await.unwrap_err();
    match &err {
        StoreError::Network { endpoint, .. } => assert_eq!(endpoint, "http://127.0.0.1:1"),
        other => panic!("expected a network error, got {other}"),
    }
    assert!(!err.to_string().contains("emulator-secret"));
}

#[tokio::test]
async fn added_latency_within_timeout_is_fine_but_beyond_it_times_out() {
    let env = start_emulator(|_| {}).await;
    let c = env.client_with(|cfg| {
        cfg.read_timeout = std::time::Duration::from_millis(300);
        // The wait for a reply is connect + read timeout at worst (like the Go SDK).
        cfg.connect_timeout = std::time::Duration::from_millis(200);
        cfg.max_attempts = 2;
    });
    c.put_object("l", Bytes::from_static(b"x").into(), &PutOptions::default())
        .await
        .unwrap();
    env.emu.set_faults(FaultUpdate {
        latency_ms: Some(100),
        ..Default::default()
    });
    c.head_object("l").await.unwrap();
    env.emu.set_faults(FaultUpdate {
        latency_ms: Some(1500),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let err = c.head_object("l").await.unwrap_err();
    assert!(matches!(err, StoreError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn streaming_get_resumes_after_breaks_and_delivers_intact_data() {
    let env = start_emulator(|cfg| cfg.seed = 11).await;
    let c = env.client_with(|cfg| cfg.max_attempts = 10);
    let data = Bytes::from(pattern(3 << 20, 4));
    c.put_object("big", data.clone().into(), &PutOptions::default())
        .await
        .unwrap();
    env.emu.set_faults(FaultUpdate {
        truncate_rate: Some(0.15),
        reset_rate: Some(0.15),
        ..Default::default()
    });
    for _ in 0..6 {
        // The first reply may itself fail before its status line; execute() retries that.
        let out = c.get_object("big", None, None).await.unwrap();
        let mut got = Vec::with_capacity(data.len());
        let mut body = out.body;
        while let Some(chunk) = body.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert!(got == data[..], "corrupt stream");
    }
    let f = env.emu.stats().faults_injected;
    assert!(f.values().sum::<u64>() >= 2, "faults: {f:?}");
}
