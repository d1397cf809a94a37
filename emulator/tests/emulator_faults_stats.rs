//! Fault injection (seeded, reproducible), the stats endpoints, the faults control
//! endpoint, and large streamed bodies.

mod emulator_support;

use emulator_support::*;
use ossmount_emulator::{EmulatorConfig, FaultUpdate};

#[tokio::test]
async fn stats_count_ops_and_bytes_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    c.put("a", vec![7u8; 1000]).await;
    c.get("a").await;
    c.send(Req::new("GET", "a").h("Range", "bytes=0-9")).await;
    c.send(Req::new("HEAD", "a")).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = http
        .get(format!("{}/-/stats", emu.endpoint()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["requests"]["PutObject"], 1);
    assert_eq!(v["requests"]["GetObject"], 2);
    assert_eq!(v["requests"]["HeadObject"], 1);
    assert_eq!(v["bytes_in"], 1000);
    assert_eq!(v["bytes_out"], 1010);
    assert_eq!(v["faults_injected"]["error"], 0);
    assert_eq!(v["sts_issued"], 0);
    let r = http
        .post(format!("{}/-/stats/reset", emu.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = emu.stats();
    assert_eq!(s.total_requests(), 0);
    assert_eq!(s.bytes_out, 0);
    emu.shutdown().await;
}

/// Runs 40 GETs and returns what happened to each: status or a body error kind.
async fn run_gets(c: &Client, expected: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..40 {
        let url = c.url(&Req::new("GET", "obj"), &[]);
        let mut headers = Vec::new();
        let creds = c.creds.clone().unwrap();
        headers.extend(ossmount::sign::sign_v4_header(
            &ossmount::sign::SignableRequest {
                method: "GET",
                bucket: Some(BUCKET),
                key: Some("obj"),
                query: &[],
                headers: &[],
            },
            &creds,
            &ossmount::sign::SigningParams::oss("cn-hangzhou", std::time::SystemTime::now()),
        ));
        let mut rb = c.http.get(&url);
        for (n, v) in &headers {
            rb = rb.header(n.as_str(), v.as_str());
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => panic!("after {out:?}: {e:?}"),
        };
        let status = resp.status().as_u16();
        match resp.bytes().await {
            Ok(b) if status == 200 => {
                assert_eq!(&b[..], expected, "a complete body must be intact");
                out.push("ok".into());
            }
            Ok(b) => {
                let code = between(&String::from_utf8_lossy(&b), "<Code>", "</Code>").unwrap();
                out.push(format!("{status} {code}"));
            }
            Err(e) => {
                // An injected reset is a real TCP RST; a truncation is an early EOF.
                let mut source: Option<&dyn std::error::Error> = Some(&e);
                let mut reset = false;
                while let Some(err) = source {
                    if let Some(io) = err.downcast_ref::<std::io::Error>() {
                        reset |= io.kind() == std::io::ErrorKind::ConnectionReset;
                    }
                    source = err.source();
                }
                out.push(if reset { "reset" } else { "truncated" }.into());
            }
        }
    }
    out
}

#[tokio::test]
async fn seeded_faults_are_reproducible_and_counted() {
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EmulatorConfig::new(dir.path(), BUCKET);
        cfg.seed = 42;
        let emu = start_with(cfg).await;
        let c = Client::new(&emu);
        c.put("obj", data.clone()).await;
        emu.set_faults(FaultUpdate {
            fail_rate: Some(0.2),
            reset_rate: Some(0.2),
            truncate_rate: Some(0.2),
            ..Default::default()
        });
        let outcomes = run_gets(&c, &data).await;
        let s = emu.stats();
        let f = &s.faults_injected;
        let errors = outcomes.iter().filter(|o| o.starts_with("50")).count() as u64;
        let resets = outcomes.iter().filter(|o| *o == "reset").count() as u64;
        let truncated = outcomes.iter().filter(|o| *o == "truncated").count() as u64;
        assert_eq!(f["error"], errors, "{outcomes:?}");
        assert_eq!(f["reset"], resets, "{outcomes:?}");
        assert_eq!(f["truncate"], truncated, "{outcomes:?}");
        assert!(errors > 0 && f["reset"] > 0 && f["truncate"] > 0, "{f:?}");
        assert!(outcomes.iter().any(|o| o == "ok"));
        assert!(outcomes.iter().all(|o| o == "ok"
            || o == "reset"
            || o == "truncated"
            || o == "500 InternalError"
            || o == "503 ServiceUnavailable"));
        // The control endpoint turns faults off again.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let r = http
            .post(format!("{}/-/faults", emu.endpoint()))
            .body(r#"{"fail_rate":0,"reset_rate":0,"truncate_rate":0}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&c.get("obj").await.body[..], &data[..]);
        // Control endpoints and service ops are never faulted.
        runs.push(outcomes);
        emu.shutdown().await;
    }
    assert_eq!(runs[0], runs[1], "same seed, same faults");
}

#[tokio::test]
async fn latency_is_added_to_object_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmulatorConfig::new(dir.path(), BUCKET);
    cfg.faults.latency_ms = 150;
    let emu = start_with(cfg).await;
    let c = Client::new(&emu);
    let t = std::time::Instant::now();
    c.put("x", "y").await;
    assert!(t.elapsed() >= std::time::Duration::from_millis(150));
    emu.shutdown().await;
}

#[tokio::test]
async fn large_object_streams_intact() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    let data: Vec<u8> = (0..(9u32 << 20) + 17)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let r = c.put("big", data.clone()).await;
    assert_eq!(
        r.header("x-oss-hash-crc64ecma"),
        Some(ossmount::crc64::crc64(&data).to_string().as_str())
    );
    let g = c.get("big").await;
    assert_eq!(g.body.len(), data.len());
    assert!(g.body[..] == data[..]);
    let start = (3 << 20) + 5;
    let end = (8 << 20) + 100;
    let g = c
        .send(Req::new("GET", "big").h("Range", &format!("bytes={start}-{end}")))
        .await;
    assert_eq!(g.status, 206);
    assert!(g.body[..] == data[start..=end]);
    emu.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    c.put("slow", "still here").await;
    emu.set_faults(FaultUpdate {
        latency_ms: Some(300),
        ..Default::default()
    });
    let in_flight = tokio::spawn(async move { c.get("slow").await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    emu.shutdown().await;
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"still here");
}

#[tokio::test]
async fn fault_rules_fail_chosen_operations_through_the_control_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    c.put("d/src", "data").await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let faults = format!("{}/-/faults", emu.endpoint());
    // The second CopyObject into d/ is refused with AccessDenied; nothing else is.
    let r = http
        .post(&faults)
        .body(r#"{"rules":[{"op":"CopyObject","key_prefix":"d/","skip":1,"times":1,"code":"AccessDenied"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let copy =
        |to: &'static str| Req::new("PUT", to).h("x-oss-copy-source", &format!("/{BUCKET}/d/src"));
    assert_eq!(c.send(copy("d/one")).await.status, 200);
    let refused = c.send(copy("d/two")).await;
    assert_eq!(
        (refused.status, refused.code()),
        (403, "AccessDenied".into())
    );
    assert_eq!(c.send(copy("e/three")).await.status, 200, "other prefix");
    assert_eq!(c.send(copy("d/two")).await.status, 200, "rule spent");
    assert_eq!(c.send(Req::new("DELETE", "d/one")).await.status, 204);
    let view = http
        .get(&faults)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["rules"][0]["hits"], 1, "{view}");
    assert_eq!(view["rules"][0]["seen"], 3, "{view}");
    assert_eq!(
        view["fail_rate"], 0.0,
        "settings fields stay at the top level"
    );
    assert_eq!(emu.stats().faults_injected["rule"], 1);
    // An update without `rules` keeps them; an unknown code is refused.
    let r = http
        .post(&faults)
        .body(r#"{"latency_ms":0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(emu.fault_rules().len(), 1);
    let r = http
        .post(&faults)
        .body(r#"{"rules":[{"op":"PutObject","code":"Nope"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(emu.fault_rules().len(), 1);
    let r = http
        .post(&faults)
        .body(r#"{"rules":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(emu.fault_rules().is_empty());
    emu.shutdown().await;
}
