//! Temporary credentials (ECS metadata, RRSA/OIDC) and clock skew against the emulator.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ossmount::credentials::CredentialsProvider;
use ossmount::credentials::chain::{ChainInputs, resolve_chain_with};
use ossmount::credentials::ecs_ram_role::{EcsRamRoleConfig, EcsRamRoleFetcher};
use ossmount::credentials::oidc::{OidcConfig, OidcFetcher};
use ossmount::credentials::refresh::{RefreshPolicy, RefreshingProvider};
use ossmount::sign::SignatureVersion;
use ossmount::store::{ObjectStore, PutOptions, StoreError};

use crate::common::emulator::{TestEnv, start_emulator};

async fn ecs_provider(env: &TestEnv) -> Arc<dyn CredentialsProvider> {
    let addr = env.emu.metadata_addr().expect("metadata listener");
    let fetcher = EcsRamRoleFetcher::new(EcsRamRoleConfig {
        endpoint: format!("http://{addr}"),
        ..Default::default()
    })
    .unwrap();
    Arc::new(
        RefreshingProvider::new(Box::new(fetcher), RefreshPolicy::default())
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn short_lived_ecs_credentials_refresh_under_continuous_load() {
    let env = start_emulator(|cfg| {
        *cfg = cfg.clone().with_metadata();
        cfg.sts_lifetime = Duration::from_secs(12);
    })
    .await;
    let provider = ecs_provider(&env).await;
    assert!(
        provider.describe().contains("hardened mode"),
        "{}",
        provider.describe()
    );
    let c = env.client_with(|cfg| cfg.credentials = provider.clone());
    c.put_object("k", Bytes::from_static(b"v").into(), &PutOptions::default())
        .await
        .unwrap();
    let mut ids = std::collections::HashSet::new();
    let started = Instant::now();
    let mut requests = 0;
    // Three lifetimes of back-to-back requests; none may fail.
    while started.elapsed() < Duration::from_secs(33) {
        c.head_object("k")
            .await
            .unwrap_or_else(|e| panic!("after {:?}: {e}", started.elapsed()));
        ids.insert(provider.credentials().await.unwrap().access_key_id);
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = env.emu.stats();
    assert!(ids.len() >= 3, "only {} credential sets used", ids.len());
    assert!(stats.sts_issued >= 3, "{stats:?}");
    // Refreshes happen well before expiry, so a refusal as expired is rare: only a request
    // delayed past the safety margin on a loaded machine gets one, and it is retried at once
    // with a fresh set (the loop above saw no error). Any other refusal is a bug.
    let expired = stats
        .auth_failures
        .get("SecurityTokenExpired")
        .copied()
        .unwrap_or(0);
    let others = stats.auth_failures.values().sum::<u64>() - expired;
    assert!(expired <= 3 && others == 0, "{stats:?}");
    assert!(requests > 100);
}

#[tokio::test]
async fn metadata_outage_serves_current_credentials_until_expiry() {
    let env = start_emulator(|cfg| {
        *cfg = cfg.clone().with_metadata();
        cfg.sts_lifetime = Duration::from_secs(8);
    })
    .await;
    let provider = ecs_provider(&env).await;
    let c = env.client_with(|cfg| {
        cfg.credentials = provider.clone();
        cfg.max_attempts = 1;
    });
    c.put_object("k", Bytes::from_static(b"v").into(), &PutOptions::default())
        .await
        .unwrap();
    let first = provider.credentials().await.unwrap();
    env.emu.set_metadata_down(true);
    // Past the refresh point (2/3 of 8 s) the refresh fails; the old set, usable until
    // 7.2 s, still works.
    tokio::time::sleep(Duration::from_millis(6000)).await;
    c.head_object("k").await.unwrap();
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        first.access_key_id
    );
    // After expiry, requests fail with a credentials error (not a signature error).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = c.head_object("k").await.unwrap_err();
    assert!(matches!(err, StoreError::Credentials(_)), "{err}");
    // The service comes back: the next request fetches synchronously and succeeds.
    env.emu.set_metadata_down(false);
    c.head_object("k").await.unwrap();
    assert_ne!(
        provider.credentials().await.unwrap().access_key_id,
        first.access_key_id
    );
}

#[tokio::test]
async fn rrsa_oidc_credentials_from_emulator_sts() {
    let env = start_emulator(|cfg| *cfg = cfg.clone().with_metadata()).await;
    let token = env.dir.path().join("oidc-token");
    std::fs::write(&token, "eyJ.test.jwt").unwrap();
    let addr = env.emu.metadata_addr().unwrap();
    let fetcher = OidcFetcher::new(OidcConfig {
        role_arn: "acs:ram::123:role/ossmount".into(),
        oidc_provider_arn: "acs:ram::123:oidc-provider/ack".into(),
        oidc_token_file: token,
        sts_endpoint: format!("http://{addr}"),
        session_name: "test".into(),
        duration_secs: 900,
    })
    .unwrap();
    let provider: Arc<dyn CredentialsProvider> = Arc::new(
        RefreshingProvider::new(Box::new(fetcher), RefreshPolicy::default())
            .await
            .unwrap(),
    );
    let creds = provider.credentials().await.unwrap();
    assert!(creds.security_token.is_some());
    let c = env.client_with(|cfg| cfg.credentials = provider.clone());
    c.put_object(
        "oidc",
        Bytes::from_static(b"x").into(),
        &PutOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(env.emu.stats().sts_issued, 1);
}

#[tokio::test]
async fn chain_reaches_ecs_role_via_metadata_endpoint_override() {
    let env = start_emulator(|cfg| *cfg = cfg.clone().with_metadata()).await;
    let home = tempfile::tempdir().unwrap();
    let mut vars = HashMap::new();
    vars.insert(
        "OSSMOUNT_ECS_METADATA_ENDPOINT".to_string(),
        format!("http://{}", env.emu.metadata_addr().unwrap()),
    );
    let provider = resolve_chain_with(ChainInputs {
        explicit: Default::default(),
        bucket: crate::common::emulator::BUCKET,
        ram_role: None,
        env: &vars,
        home: Some(home.path().to_path_buf()),
        system_passwd_file: PathBuf::from("/nonexistent/passwd-ossfs"),
        refresh_policy: RefreshPolicy::default(),
    })
    .await
    .unwrap();
    assert!(
        provider
            .describe()
            .starts_with(&format!("ECS RAM role {}", ossmount_emulator::ROLE_NAME)),
        "{}",
        provider.describe()
    );
    let c = env.client_with(|cfg| cfg.credentials = provider);
    c.put_object(
        "chain",
        Bytes::from_static(b"x").into(),
        &PutOptions::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn expired_sts_token_is_reported_not_retried() {
    let env = start_emulator(|_| {}).await;
    let mut creds = env.emu.issue_sts(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    creds.expiration = None; // pretend the provider does not know
    let c = env.client_with(|cfg| {
        cfg.credentials = Arc::new(ossmount::credentials::StaticProvider {
            creds,
            source: "test".into(),
        })
    });
    env.emu.reset_stats();
    let err = c.head_object("x").await.unwrap_err();
    assert_eq!(err.code(), Some("SecurityTokenExpired"), "{err}");
    assert_eq!(env.emu.stats().requests_for("HeadObject"), 1);
}

#[tokio::test]
async fn clock_skew_is_detected_adopted_and_retried() {
    let env = start_emulator(|_| {}).await;
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let c = env.client_with(|cfg| {
            cfg.signature_version = version;
            cfg.max_attempts = 2;
        });
        // Our clock is 20 minutes slow (beyond OSS's 15-minute tolerance).
        c.set_clock_offset_ms(-20 * 60 * 1000);
        env.emu.reset_stats();
        c.put_object(
            "skew",
            Bytes::from_static(b"x").into(),
            &PutOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{version}: {e}"));
        let stats = env.emu.stats();
        assert_eq!(
            stats.auth_failures.get("RequestTimeTooSkewed").copied(),
            Some(1),
            "{version}: {stats:?}"
        );
        // The real clock is right, so the adopted offset is about zero.
        assert!(
            c.clock_offset_ms().abs() < 2000,
            "{version}: offset {}",
            c.clock_offset_ms()
        );
        // Later requests sign with the adopted offset at once.
        c.head_object("skew").await.unwrap();
        assert_eq!(
            env.emu
                .stats()
                .auth_failures
                .get("RequestTimeTooSkewed")
                .copied(),
            Some(1)
        );
        // HEAD replies have no body: the skew code comes from x-oss-err.
        c.set_clock_offset_ms(30 * 60 * 1000);
        c.head_object("skew")
            .await
            .unwrap_or_else(|e| panic!("{version} HEAD: {e}"));
        let skews = env
            .emu
            .stats()
            .auth_failures
            .get("RequestTimeTooSkewed")
            .copied();
        assert_eq!(skews, Some(2), "{version}");
        assert!(c.clock_offset_ms().abs() < 2000);
    }
}
