//! The credentials provider chain (order documented in [`super`]).
//!
//! [`resolve_chain`] reads the real environment and `$HOME`; [`resolve_chain_with`] takes
//! them as inputs so tests can run in parallel without touching process state.
//!
//! `--ram-role NAME` counts as an explicit choice: when given (and no explicit keys are),
//! the ECS RAM role provider is used directly instead of walking the rest of the chain.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ecs_ram_role::{DEFAULT_METADATA_ENDPOINT, EcsRamRoleConfig, EcsRamRoleFetcher};
use super::env::{ALIBABA_CLOUD_ENV, EnvLookup, OSS_ENV, ProcessEnv, from_env};
use super::files::{IniProfile, PermissionRule, read_ini_file, read_passwd_file};
use super::oidc::{OidcConfig, OidcFetcher};
use super::refresh::{RefreshPolicy, RefreshingProvider};
use super::{CredentialsError, CredentialsProvider, Secret, StaticProvider};

/// Credentials given on the command line. Debug never shows the secret or token.
#[derive(Clone, Default)]
pub struct ExplicitCredentials {
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<Secret>,
    pub security_token: Option<Secret>,
    /// `--credentials-file` (ossfs passwd format).
    pub credentials_file: Option<PathBuf>,
}

impl fmt::Debug for ExplicitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExplicitCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .field("credentials_file", &self.credentials_file)
            .finish()
    }
}

/// Everything the chain looks at, injectable for tests.
pub struct ChainInputs<'a> {
    pub explicit: ExplicitCredentials,
    pub bucket: &'a str,
    pub ram_role: Option<String>,
    pub env: &'a dyn EnvLookup,
    /// `$HOME`; None skips the per-user files.
    pub home: Option<PathBuf>,
    /// Normally `/etc/passwd-ossfs`.
    pub system_passwd_file: PathBuf,
    pub refresh_policy: RefreshPolicy,
}

/// Resolves credentials from the real environment. See the module docs of [`super`].
pub async fn resolve_chain(
    explicit: ExplicitCredentials,
    bucket: &str,
    ram_role: Option<String>,
) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
    let env = ProcessEnv;
    resolve_chain_with(ChainInputs {
        explicit,
        bucket,
        ram_role,
        home: env.var("HOME").map(PathBuf::from),
        env: &env,
        system_passwd_file: PathBuf::from("/etc/passwd-ossfs"),
        refresh_policy: RefreshPolicy::default(),
    })
    .await
}

fn boxed(p: StaticProvider) -> Arc<dyn CredentialsProvider> {
    tracing::debug!(source = %p.source, "using static credentials");
    Arc::new(p)
}

fn ecs_config(inputs: &ChainInputs<'_>, role: Option<String>) -> EcsRamRoleConfig {
    EcsRamRoleConfig {
        role: role.or_else(|| inputs.env.var("ALIBABA_CLOUD_ECS_METADATA")),
        endpoint: inputs
            .env
            .var("OSSMOUNT_ECS_METADATA_ENDPOINT")
            .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.to_string()),
        imdsv1_disabled: inputs.env.flag("ALIBABA_CLOUD_IMDSV1_DISABLED"),
        ..Default::default()
    }
}

async fn ecs_provider(
    inputs: &ChainInputs<'_>,
    role: Option<String>,
) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
    let fetcher = EcsRamRoleFetcher::new(ecs_config(inputs, role))?;
    let p = RefreshingProvider::new(Box::new(fetcher), inputs.refresh_policy.clone()).await?;
    Ok(Arc::new(p))
}

fn explicit_provider(
    e: &ExplicitCredentials,
    bucket: &str,
) -> Result<Option<Arc<dyn CredentialsProvider>>, CredentialsError> {
    match (&e.access_key_id, &e.access_key_secret) {
        (Some(id), Some(secret)) => {
            let mut creds = super::Credentials::new(id.trim(), secret.expose().trim());
            creds.security_token = e.security_token.clone();
            return Ok(Some(boxed(StaticProvider {
                creds,
                source: "command line --access-key-id".into(),
            })));
        }
        (Some(_), None) => {
            return Err(CredentialsError(
                "--access-key-id given without --access-key-secret".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(CredentialsError(
                "--access-key-secret given without --access-key-id".into(),
            ));
        }
        (None, None) => {}
    }
    if let Some(path) = &e.credentials_file {
        return match read_passwd_file(path, bucket, PermissionRule::OwnerOnly)? {
            Some(p) => Ok(Some(boxed(p))),
            None if !path.exists() => Err(CredentialsError(format!(
                "--credentials-file {} does not exist",
                path.display()
            ))),
            None => Err(CredentialsError(format!(
                "--credentials-file {} has no `AccessKeyId:AccessKeySecret` line and no \
                 `{bucket}:AccessKeyId:AccessKeySecret` line",
                path.display()
            ))),
        };
    }
    Ok(None)
}

/// The chain with injectable inputs; see [`resolve_chain`].
pub async fn resolve_chain_with(
    inputs: ChainInputs<'_>,
) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
    let env = inputs.env;
    let mut tried: Vec<String> = Vec::new();

    // 1. Explicit flags / --credentials-file, then --ram-role.
    if let Some(p) = explicit_provider(&inputs.explicit, inputs.bucket)? {
        return Ok(p);
    }
    if let Some(role) = inputs.ram_role.clone() {
        return ecs_provider(&inputs, Some(role.clone()))
            .await
            .map_err(|e| CredentialsError(format!("--ram-role {role}: {e}")));
    }
    tried.push(
        "--access-key-id/--access-key-secret, --credentials-file, --ram-role: not given".into(),
    );

    // 2–3. Environment variables.
    for names in [OSS_ENV, ALIBABA_CLOUD_ENV] {
        if let Some(p) = from_env(env, names)? {
            return Ok(boxed(p));
        }
        tried.push(format!(
            "environment {} / {}: not set",
            names.id, names.secret
        ));
    }

    // 4. RRSA / OIDC.
    match OidcConfig::from_env(env) {
        Some(cfg) => {
            let fetcher = OidcFetcher::new(cfg)?;
            let p = RefreshingProvider::new(Box::new(fetcher), inputs.refresh_policy.clone())
                .await
                .map_err(|e| CredentialsError(format!("RRSA (OIDC) credentials: {e}")))?;
            return Ok(Arc::new(p));
        }
        None => tried.push(
            "RRSA: ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, \
             ALIBABA_CLOUD_OIDC_TOKEN_FILE not all set"
                .into(),
        ),
    }

    // 5. ossfs passwd files: the user's own file first, like s3fs/ossfs.
    let mut passwd_files: Vec<(PathBuf, PermissionRule)> = Vec::new();
    if let Some(home) = &inputs.home {
        passwd_files.push((home.join(".passwd-ossfs"), PermissionRule::OwnerOnly));
    }
    passwd_files.push((
        inputs.system_passwd_file.clone(),
        PermissionRule::NoWorldAccess,
    ));
    for (path, rule) in &passwd_files {
        if let Some(p) = read_passwd_file(path, inputs.bucket, *rule)? {
            return Ok(boxed(p));
        }
        tried.push(format!(
            "ossfs passwd file {}: {}",
            path.display(),
            absent_or_no_entry(path)
        ));
    }

    // 6. ~/.alibabacloud/credentials.
    let ini_path = env
        .var("ALIBABA_CLOUD_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| {
            inputs
                .home
                .as_ref()
                .map(|h| h.join(".alibabacloud").join("credentials"))
        });
    if let Some(path) = ini_path {
        let profile = env
            .var("ALIBABA_CLOUD_PROFILE")
            .unwrap_or_else(|| "default".into());
        match read_ini_file(&path, &profile)? {
            Some(IniProfile::AccessKey(creds)) => {
                return Ok(boxed(StaticProvider {
                    creds,
                    source: format!("credentials file {} [{profile}]", path.display()),
                }));
            }
            Some(IniProfile::EcsRamRole { role_name }) => {
                return ecs_provider(&inputs, role_name).await.map_err(|e| {
                    CredentialsError(format!(
                        "credentials file {} [{profile}] (type ecs_ram_role): {e}",
                        path.display()
                    ))
                });
            }
            None => tried.push(format!(
                "credentials file {}: does not exist",
                path.display()
            )),
        }
    }

    // 7. ECS RAM role.
    if env.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
        tried.push("ECS RAM role: disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED=true".into());
    } else {
        match ecs_provider(&inputs, None).await {
            Ok(p) => return Ok(p),
            Err(e) => tried.push(format!("ECS RAM role: {e}")),
        }
    }

    let mut msg = String::from("no OSS credentials found. Tried, in order:\n");
    for (i, t) in tried.iter().enumerate() {
        msg.push_str(&format!("  {}. {t}\n", i + 1));
    }
    msg.push_str(
        "Fix: pass --access-key-id and --access-key-secret, or set OSS_ACCESS_KEY_ID and \
         OSS_ACCESS_KEY_SECRET, or write `AccessKeyId:AccessKeySecret` to ~/.passwd-ossfs \
         (chmod 600), or on ECS attach a RAM role to the instance (--ram-role NAME); use \
         --anonymous for public buckets.",
    );
    Err(CredentialsError(msg))
}

fn absent_or_no_entry(path: &Path) -> &'static str {
    if path.exists() {
        "no entry for this bucket"
    } else {
        "does not exist"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::test_http::{MiniServer, Reply};
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    struct Fixture {
        dir: tempfile::TempDir,
        env: HashMap<String, String>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let mut env = HashMap::new();
            env.insert("ALIBABA_CLOUD_ECS_METADATA_DISABLED".into(), "true".into());
            Fixture { dir, env }
        }
        fn set(&mut self, k: &str, v: &str) {
            self.env.insert(k.into(), v.into());
        }
        fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
            let p = self.dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        }
        async fn resolve(
            &self,
            explicit: ExplicitCredentials,
        ) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
            resolve_chain_with(ChainInputs {
                explicit,
                bucket: "bkt",
                ram_role: None,
                env: &self.env,
                home: Some(self.dir.path().to_path_buf()),
                system_passwd_file: self.dir.path().join("etc-passwd-ossfs"),
                refresh_policy: RefreshPolicy::default(),
            })
            .await
        }
    }

    async fn id_of(p: &Arc<dyn CredentialsProvider>) -> String {
        p.credentials().await.unwrap().access_key_id
    }

    #[tokio::test]
    async fn order_explicit_env_files() {
        let mut f = Fixture::new();
        f.write(".passwd-ossfs", "bkt:PASSWD:s\n", 0o600);
        f.write(
            ".alibabacloud/credentials",
            "[default]\naccess_key_id=INI\naccess_key_secret=s\n",
            0o600,
        );
        f.set("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALI");
        f.set("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s");
        f.set("OSS_ACCESS_KEY_ID", "OSSENV");
        f.set("OSS_ACCESS_KEY_SECRET", "s");

        let explicit = ExplicitCredentials {
            access_key_id: Some("FLAG".into()),
            access_key_secret: Some(Secret::new("s")),
            ..Default::default()
        };
        assert_eq!(id_of(&f.resolve(explicit).await.unwrap()).await, "FLAG");
        let p = f.resolve(Default::default()).await.unwrap();
        assert_eq!(id_of(&p).await, "OSSENV");
        assert_eq!(p.describe(), "environment OSS_ACCESS_KEY_ID");
        f.env.remove("OSS_ACCESS_KEY_ID");
        f.env.remove("OSS_ACCESS_KEY_SECRET");
        assert_eq!(
            id_of(&f.resolve(Default::default()).await.unwrap()).await,
            "ALI"
        );
        f.env.remove("ALIBABA_CLOUD_ACCESS_KEY_ID");
        f.env.remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
        let p = f.resolve(Default::default()).await.unwrap();
        assert_eq!(id_of(&p).await, "PASSWD");
        assert!(p.describe().contains(".passwd-ossfs"));
        std::fs::remove_file(f.dir.path().join(".passwd-ossfs")).unwrap();
        f.write("etc-passwd-ossfs", "ETC:s\n", 0o640);
        assert_eq!(
            id_of(&f.resolve(Default::default()).await.unwrap()).await,
            "ETC"
        );
        std::fs::remove_file(f.dir.path().join("etc-passwd-ossfs")).unwrap();
        let p = f.resolve(Default::default()).await.unwrap();
        assert_eq!(id_of(&p).await, "INI");
        assert!(p.describe().contains("[default]"));
    }

    #[tokio::test]
    async fn nothing_found_lists_every_source() {
        let f = Fixture::new();
        let err = f
            .resolve(Default::default())
            .await
            .err()
            .unwrap()
            .to_string();
        for needle in [
            "--access-key-id",
            "OSS_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "RRSA",
            ".passwd-ossfs",
            "etc-passwd-ossfs",
            ".alibabacloud",
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
            "Fix:",
        ] {
            assert!(err.contains(needle), "missing {needle} in:\n{err}");
        }
    }

    #[tokio::test]
    async fn world_readable_passwd_file_stops_the_chain() {
        let f = Fixture::new();
        f.write(".passwd-ossfs", "ID:TOPSECRET\n", 0o644);
        let err = f
            .resolve(Default::default())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains("TOPSECRET"));
    }

    #[tokio::test]
    async fn explicit_credentials_file_and_half_flags() {
        let f = Fixture::new();
        let file = f.write("creds", "other:X:y\nbkt:FILEID:s\n", 0o600);
        let explicit = ExplicitCredentials {
            credentials_file: Some(file),
            ..Default::default()
        };
        assert_eq!(id_of(&f.resolve(explicit).await.unwrap()).await, "FILEID");
        let half = ExplicitCredentials {
            access_key_id: Some("X".into()),
            ..Default::default()
        };
        assert!(f.resolve(half).await.is_err());
        let missing = ExplicitCredentials {
            credentials_file: Some(f.dir.path().join("nope")),
            ..Default::default()
        };
        let err = f.resolve(missing).await.err().unwrap().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[tokio::test]
    async fn ecs_is_last_and_used_when_enabled() {
        let server = MiniServer::start(|req| match req.path.as_str() {
            "/latest/api/token" => Reply::ok("t"),
            "/latest/meta-data/ram/security-credentials/" => Reply::ok("Role1"),
            "/latest/meta-data/ram/security-credentials/Role1" => Reply::ok(
                r#"{"AccessKeyId":"ECSAK","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2099-01-01T00:00:00Z","Code":"Success"}"#,
            ),
            _ => Reply::status(404),
        })
        .await;
        let mut f = Fixture::new();
        f.env.remove("ALIBABA_CLOUD_ECS_METADATA_DISABLED");
        f.set("OSSMOUNT_ECS_METADATA_ENDPOINT", &server.base_url());
        let p = f.resolve(Default::default()).await.unwrap();
        assert_eq!(id_of(&p).await, "ECSAK");
        assert_eq!(
            p.describe(),
            format!(
                "ECS RAM role Role1 via {} (hardened mode)",
                server.base_url()
            )
        );
    }

    #[test]
    fn explicit_debug_redacts() {
        let e = ExplicitCredentials {
            access_key_id: Some("ID".into()),
            access_key_secret: Some(Secret::new("SEKRIT")),
            security_token: Some(Secret::new("TOKEN")),
            credentials_file: None,
        };
        let d = format!("{e:?}");
        assert!(d.contains("ID") && !d.contains("SEKRIT") && !d.contains("TOKEN"));
    }
}
