//! Authentication: anonymous refusal, bad signatures, unknown keys, clock skew, V1/V4
//! header and presigned forms, STS credentials from the metadata service (rotation,
//! expiry, token checks), hardened metadata mode, RRSA AssumeRoleWithOIDC, outages.

mod emulator_support;

use std::time::{Duration, SystemTime};

use emulator_support::*;
use ossmount::credentials::Credentials;
use ossmount_emulator::EmulatorConfig;

#[tokio::test]
async fn unsigned_and_badly_signed_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let c = Client::new(&emu);
    c.put("k", "v").await;

    let anon = Client::new(&emu).with_auth(Auth::None);
    let r = anon.get("k").await;
    assert_eq!((r.status, r.code().as_str()), (403, "AccessDenied"));

    let wrong_secret = Client::new(&emu).with_creds(Some(Credentials::new("emulator-ak", "nope")));
    let r = wrong_secret.get("k").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "SignatureDoesNotMatch")
    );
    let sts = between(&r.text(), "<StringToSign>", "</StringToSign>").unwrap();
    assert!(sts.starts_with("OSS4-HMAC-SHA256\n"), "{sts}");
    assert!(!r.text().contains("emulator-secret"));

    let unknown = Client::new(&emu).with_creds(Some(Credentials::new("who", "x")));
    let r = unknown.get("k").await;
    assert_eq!((r.status, r.code().as_str()), (403, "InvalidAccessKeyId"));

    let mut skewed = Client::new(&emu);
    skewed.time_offset = -16 * 60;
    let r = skewed.get("k").await;
    assert_eq!((r.status, r.code().as_str()), (403, "RequestTimeTooSkewed"));
    skewed.time_offset = -14 * 60;
    assert_eq!(skewed.get("k").await.status, 200);

    // A signed header changed after signing breaks the signature.
    let creds = emu.credentials();
    let sreq = ossmount::sign::SignableRequest {
        method: "GET",
        bucket: Some(BUCKET),
        key: Some("k"),
        query: &[],
        headers: &[("x-oss-range-behavior".to_string(), "standard".to_string())],
    };
    let mut headers = ossmount::sign::sign_v4_header(
        &sreq,
        &creds,
        &ossmount::sign::SigningParams::oss("cn-hangzhou", SystemTime::now()),
    );
    headers.push(("x-oss-range-behavior".into(), "other".into()));
    let r = c
        .raw(
            "GET",
            &format!("{}/{BUCKET}/k", emu.endpoint()),
            &headers,
            vec![],
        )
        .await;
    assert_eq!(r.code(), "SignatureDoesNotMatch");

    let s = emu.stats();
    assert_eq!(s.auth_failures["AccessDenied"], 1);
    assert_eq!(s.auth_failures["SignatureDoesNotMatch"], 2);
    assert_eq!(s.auth_failures["InvalidAccessKeyId"], 1);
    assert_eq!(s.auth_failures["RequestTimeTooSkewed"], 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn anonymous_mode_accepts_unsigned_but_still_checks_signed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmulatorConfig::new(dir.path(), BUCKET);
    cfg.anonymous = true;
    let emu = start_with(cfg).await;
    let anon = Client::new(&emu).with_auth(Auth::None);
    anon.put("open", "data").await;
    assert_eq!(&anon.get("open").await.body[..], b"data");
    let bad = Client::new(&emu).with_creds(Some(Credentials::new("emulator-ak", "bad")));
    assert_eq!(bad.get("open").await.code(), "SignatureDoesNotMatch");
    emu.shutdown().await;
}

#[tokio::test]
async fn v1_header_and_presigned_urls() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    let v1 = Client::new(&emu).with_auth(Auth::V1);
    let r = v1
        .send(
            Req::new("PUT", "v1/a b+c.txt")
                .h("Content-Type", "text/plain")
                .h("x-oss-meta-x", "y")
                .body("via v1"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = v1
        .send(
            Req::new("GET", "")
                .q("list-type", Some("2"))
                .q("prefix", Some("v1/")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let c = Client::new(&emu);
    let anon = Client::new(&emu).with_auth(Auth::None);
    // V4 presigned GET works without headers, expires after its lifetime.
    let url = c.presign_v4(&Req::new("GET", "v1/a b+c.txt"), Duration::from_secs(60));
    let r = anon.raw("GET", &url, &[], vec![]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&r.body[..], b"via v1");
    let mut old = Client::new(&emu);
    old.time_offset = -120;
    let url = old.presign_v4(&Req::new("GET", "v1/a b+c.txt"), Duration::from_secs(60));
    let r = anon.raw("GET", &url, &[], vec![]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "AccessDenied"));
    // A tampered presigned URL fails.
    let url = c.presign_v4(&Req::new("GET", "v1/a b+c.txt"), Duration::from_secs(60));
    let r = anon
        .raw("GET", &url.replace("a%20b", "a%20c"), &[], vec![])
        .await;
    assert_eq!(r.code(), "SignatureDoesNotMatch");

    // V1 presigned.
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let url = c.presign_v1(&Req::new("GET", "v1/a b+c.txt"), now + 60);
    let r = anon.raw("GET", &url, &[], vec![]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let url = c.presign_v1(&Req::new("GET", "v1/a b+c.txt"), now - 1);
    let r = anon.raw("GET", &url, &[], vec![]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "AccessDenied"));
    emu.shutdown().await;
}

async fn metadata_get(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut rb = http.get(format!("{base}{path}"));
    if let Some(t) = token {
        rb = rb.header("X-aliyun-ecs-metadata-token", t);
    }
    let r = rb.send().await.expect("metadata request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn creds_from_json(v: &serde_json::Value) -> Credentials {
    let mut c = Credentials::new(
        v["AccessKeyId"].as_str().unwrap(),
        v["AccessKeySecret"].as_str().unwrap(),
    );
    c.security_token = Some(ossmount::credentials::Secret::new(
        v["SecurityToken"].as_str().unwrap(),
    ));
    c
}

#[tokio::test]
async fn ecs_metadata_credentials_rotate_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmulatorConfig::new(dir.path(), BUCKET).with_metadata();
    cfg.sts_lifetime = Duration::from_secs(4);
    let emu = start_with(cfg).await;
    let base = format!("http://{}", emu.metadata_addr().unwrap());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (s, region) = metadata_get(&http, &base, "/latest/meta-data/region-id", None).await;
    assert_eq!((s, region.as_str()), (200, "cn-hangzhou"));
    let (_, role) = metadata_get(
        &http,
        &base,
        "/latest/meta-data/ram/security-credentials/",
        None,
    )
    .await;
    assert_eq!(role, ossmount_emulator::ROLE_NAME);
    let path = format!("/latest/meta-data/ram/security-credentials/{role}");
    let (s, body) = metadata_get(&http, &base, &path, None).await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Code"], "Success");
    let exp = v["Expiration"].as_str().unwrap();
    assert!(exp.ends_with('Z') && exp.len() == 20, "{exp}");
    let first = creds_from_json(&v);

    // Same set while young.
    let (_, body) = metadata_get(&http, &base, &path, None).await;
    let again: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["AccessKeyId"], v["AccessKeyId"]);

    let c = Client::new(&emu).with_creds(Some(first.clone()));
    c.put("sts-object", "x").await;

    // Token missing / wrong.
    let mut no_token = first.clone();
    no_token.security_token = None;
    let r = Client::new(&emu)
        .with_creds(Some(no_token))
        .get("sts-object")
        .await;
    // OSS answers an STS id without its token as an unknown key (EC 0002-00000005).
    assert_eq!((r.status, r.code().as_str()), (403, "InvalidAccessKeyId"));
    let mut bad_token = first.clone();
    bad_token.security_token = Some(ossmount::credentials::Secret::new("CAISbogus"));
    let r = Client::new(&emu)
        .with_creds(Some(bad_token))
        .get("sts-object")
        .await;
    assert_eq!(r.code(), "InvalidSecurityToken");

    // After half the lifetime a new set is issued; the old one still works.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (_, body) = metadata_get(&http, &base, &path, None).await;
    let v2: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_ne!(v2["AccessKeyId"], v["AccessKeyId"]);
    let second = creds_from_json(&v2);
    assert_eq!(
        Client::new(&emu)
            .with_creds(Some(first.clone()))
            .get("sts-object")
            .await
            .status,
        200
    );

    // After the first set's expiry it is refused with SecurityTokenExpired; the second
    // still works.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = Client::new(&emu)
        .with_creds(Some(first))
        .get("sts-object")
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "SecurityTokenExpired"));
    assert!(r.text().contains("<EC>0002-00000007</EC>"));
    assert_eq!(r.header("x-oss-ec"), Some("0002-00000007"));
    assert_eq!(
        Client::new(&emu)
            .with_creds(Some(second))
            .get("sts-object")
            .await
            .status,
        200
    );

    let s = emu.stats();
    assert_eq!(s.sts_issued, 2);
    assert!(s.metadata_requests >= 5);
    emu.shutdown().await;
}

#[tokio::test]
async fn hardened_metadata_mode_and_outage_switch() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_with(EmulatorConfig::new(dir.path(), BUCKET).with_metadata()).await;
    let base = format!("http://{}", emu.metadata_addr().unwrap());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .put(format!("{base}/latest/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.text().await.unwrap();
    let (s, _) = metadata_get(&http, &base, "/latest/meta-data/region-id", Some(&token)).await;
    assert_eq!(s, 200);
    let (s, _) = metadata_get(&http, &base, "/latest/meta-data/region-id", Some("wrong")).await;
    assert_eq!(s, 401);
    let r = http
        .put(format!("{base}/latest/api/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Outage switch via the control endpoint on the main listener.
    let r = http
        .post(format!("{}/-/metadata", emu.endpoint()))
        .body(r#"{"down":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = metadata_get(&http, &base, "/latest/meta-data/region-id", None).await;
    assert_eq!(s, 503);
    emu.set_metadata_down(false);
    let (s, _) = metadata_get(&http, &base, "/latest/meta-data/region-id", None).await;
    assert_eq!(s, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn rrsa_assume_role_with_oidc() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_with(EmulatorConfig::new(dir.path(), BUCKET).with_metadata()).await;
    let base = format!("http://{}/", emu.metadata_addr().unwrap());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let form = "Action=AssumeRoleWithOIDC&RoleArn=acs%3Aram%3A%3A1%3Arole%2Fr&OIDCProviderArn=acs%3Aram%3A%3A1%3Aoidc-provider%2Fp&OIDCToken=eyJ.token&RoleSessionName=s&DurationSeconds=900";
    let r = http
        .post(&base)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let creds = creds_from_json(&v["Credentials"]);
    assert!(v["RequestId"].is_string());
    assert!(
        v["AssumedRoleUser"]["Arn"]
            .as_str()
            .unwrap()
            .ends_with("/s")
    );
    let c = Client::new(&emu).with_creds(Some(creds));
    c.put("rrsa", "ok").await;

    let r = http
        .post(&base)
        .body(form.replace("OIDCToken=eyJ.token", "OIDCToken="))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["Code"], "MissingOIDCToken");
    emu.shutdown().await;
}

#[tokio::test]
async fn sts_credentials_work_in_every_signing_form() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path()).await;
    Client::new(&emu).put("sts/k", "sts body").await;
    let sts = emu.issue_sts(Duration::from_secs(600));
    assert!(sts.security_token.is_some());
    let v4 = Client::new(&emu).with_creds(Some(sts.clone()));
    assert_eq!(v4.get("sts/k").await.status, 200);
    let v1 = Client::new(&emu)
        .with_creds(Some(sts.clone()))
        .with_auth(Auth::V1);
    let r = v1.get("sts/k").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let anon = Client::new(&emu).with_auth(Auth::None);
    let url = v4.presign_v4(&Req::new("GET", "sts/k"), Duration::from_secs(60));
    assert!(url.contains("x-oss-security-token="));
    assert_eq!(anon.raw("GET", &url, &[], vec![]).await.status, 200);
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let url = v4.presign_v1(&Req::new("GET", "sts/k"), now + 60);
    assert!(url.contains("security-token="));
    assert_eq!(anon.raw("GET", &url, &[], vec![]).await.status, 200);
    // A wrong secret with a V1 STS request: the echoed string to sign hides the token.
    let mut bad = sts.clone();
    bad.access_key_secret = ossmount::credentials::Secret::new("wrong");
    let r = Client::new(&emu)
        .with_creds(Some(bad))
        .with_auth(Auth::V1)
        .get("sts/k")
        .await;
    assert_eq!(r.code(), "SignatureDoesNotMatch");
    let token = sts.security_token.as_ref().unwrap().expose();
    assert!(!r.text().contains(token), "token echoed in error");
    assert!(r.text().contains("&lt;redacted&gt;"), "{}", r.text());
    emu.shutdown().await;
}
