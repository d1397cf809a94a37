//! From a NodePublishVolume request to an ossmount command line: pure, so every rule is
//! unit-tested without gRPC or FUSE.
//!
//! Volume attributes use the Alibaba Cloud CSI driver's names, so PVs written for its OSS
//! volumes (ossfs) work unchanged:
//! - `bucket` (required), `path` (prefix in the bucket, `/dir` or `dir/`), `url` (endpoint,
//!   host or URL), `sigVersion` (`v1`/`v4`), `otherOpts` (`-o name[=value]` words, e.g.
//!   `-o allow_other -o max_stat_cache_size=0`);
//! - credentials: the publish secrets `akId`/`akSecret` (a Secret named by the PV's
//!   `nodePublishSecretRef`), or RRSA with `authType: rrsa` and `roleName` (or `roleArn`);
//!   without either, the mount uses ossmount's own chain (e.g. the node's ECS RAM role).
//!
//! `otherOpts` and the capability's `mount_flags` are filtered: options ossmount knows
//! ([`crate::config::is_known_option`]) are passed on, the ossfs-only ones
//! ([`OSSFS_ONLY_OPTIONS`] and anything else unknown) are dropped and reported by *name*
//! (values may be sensitive) so the plugin can log them. Options the plugin owns
//! (`log_file`, `recover_stale_mount`) and secret-bearing ones are dropped too.
//!
//! Secrets go into [`MountPlan::env`] only — never into the argv (visible in ps) — and
//! into [`MountPlan::fingerprint`] only as a hash.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::proto::NodePublishVolumeRequest;
use super::proto::volume_capability::access_mode::Mode;
use super::proto::volume_capability::{AccessType, MountVolume};
use crate::config::is_known_option;
use crate::config::mount_options::parse_option_lists;

/// Options of ossfs 1.x that ossmount does not implement (it has its own cache, timeouts
/// and upload pipeline). Listed in docs/kubernetes.md; logged and ignored when a PV has them.
pub const OSSFS_ONLY_OPTIONS: &[&str] = &[
    "use_cache",
    "del_cache",
    "ensure_diskfree",
    "max_stat_cache_size",
    "stat_cache_expire",
    "enable_noobj_cache",
    "no_check_certificate",
    "nomultipart",
    "multipart_size",
    "parallel_count",
    "multireq_max",
    "singlepart_copy_limit",
    "max_dirty_data",
    "umask",
    "mp_umask",
    "dbglevel",
    "curldbg",
    "noxattr",
    "complement_stat",
    "notsup_compat_dir",
    "listobjectsv2",
    "storage_class",
    "default_acl",
    "kernel_cache",
    "big_writes",
    "max_write",
    "max_background",
    "direct_read",
    "symlink_in_meta",
];

/// Options the plugin sets itself; a PV may not override them.
const PLUGIN_OWNED_OPTIONS: &[&str] = &["log_file", "recover_stale_mount", "debug"];

/// Credential environment variables the child must not inherit from the plugin when the
/// volume brings its own credentials (so the volume's choice wins).
pub const CREDENTIAL_ENV: &[&str] = &[
    "OSS_ACCESS_KEY_ID",
    "OSS_ACCESS_KEY_SECRET",
    "OSS_SESSION_TOKEN",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABA_CLOUD_ROLE_ARN",
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
];

/// How the volume authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// The plugin's own environment and ossmount's chain (ECS RAM role, …).
    Inherited,
    /// AccessKey from the publish secrets.
    AccessKey { id: String, secret: String },
    /// RRSA: a RAM role assumed with the pod's OIDC token.
    Rrsa {
        role_arn: String,
        provider_arn: String,
        token_file: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl Auth {
    /// Where the credentials come from, for logs (never a secret).
    pub fn describe(&self) -> &'static str {
        match self {
            Auth::Inherited => "plugin environment / node RAM role",
            Auth::AccessKey { .. } => "publish secrets akId/akSecret",
            Auth::Rrsa { .. } => "RRSA (OIDC role)",
        }
    }
}

/// What to run for one published volume.
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub volume_id: String,
    pub target: PathBuf,
    /// `bucket` or `bucket:prefix/`, ossmount's first positional.
    pub source: String,
    /// `-o` items passed to ossmount, in order.
    pub options: Vec<String>,
    /// Names of the options dropped (ossfs-only or unknown), for the log.
    pub ignored: Vec<String>,
    pub read_only: bool,
    pub auth: Auth,
    /// Identifies "the same publish": source, options, mode and a hash of the credentials.
    pub fingerprint: String,
}

impl MountPlan {
    /// Environment for the ossmount child: variables to set (may hold secrets) and the
    /// inherited credential variables to remove first.
    pub fn env(&self) -> (Vec<(&'static str, String)>, &'static [&'static str]) {
        match &self.auth {
            Auth::Inherited => (Vec::new(), &[]),
            Auth::AccessKey { id, secret } => (
                vec![
                    ("OSS_ACCESS_KEY_ID", id.clone()),
                    ("OSS_ACCESS_KEY_SECRET", secret.clone()),
                ],
                CREDENTIAL_ENV,
            ),
            Auth::Rrsa {
                role_arn,
                provider_arn,
                token_file,
            } => (
                vec![
                    ("ALIBABA_CLOUD_ROLE_ARN", role_arn.clone()),
                    ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider_arn.clone()),
                    ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file.clone()),
                ],
                CREDENTIAL_ENV,
            ),
        }
    }
}

/// A request the plugin must refuse with INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

fn invalid(msg: impl Into<String>) -> InvalidRequest {
    InvalidRequest(msg.into())
}

/// Builds the plan for `req`. `env` looks up the plugin's own environment (for RRSA's
/// provider ARN and token file).
pub fn plan(
    req: &NodePublishVolumeRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<MountPlan, InvalidRequest> {
    if req.volume_id.is_empty() {
        return Err(invalid("volume_id is required"));
    }
    let target = required_path(&req.target_path, "target_path")?;
    let capability = req
        .volume_capability
        .as_ref()
        .ok_or_else(|| invalid("volume_capability is required"))?;
    let mount = match &capability.access_type {
        Some(AccessType::Mount(m)) => m.clone(),
        Some(AccessType::Block(_)) => {
            return Err(invalid(
                "block access is not supported: OSS volumes are filesystems (use volumeMode: Filesystem)",
            ));
        }
        None => MountVolume::default(),
    };
    let reader_only = capability
        .access_mode
        .as_ref()
        .and_then(|m| Mode::try_from(m.mode).ok())
        .is_some_and(|m| matches!(m, Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly));
    let ctx = &req.volume_context;
    let bucket = attr(ctx, "bucket")
        .ok_or_else(|| invalid("volume attribute 'bucket' is required"))?
        .to_string();
    if bucket.contains(['/', ':']) || bucket.chars().any(char::is_whitespace) {
        return Err(invalid(format!(
            "volume attribute 'bucket' is not a bucket name: {bucket:?}"
        )));
    }
    let prefix = attr(ctx, "path").map(|p| p.trim_matches('/')).unwrap_or("");
    let source = if prefix.is_empty() {
        bucket
    } else {
        format!("{bucket}:{prefix}/")
    };

    let mut words: Vec<String> = Vec::new();
    if let Some(other) = attr(ctx, "otherOpts") {
        words.extend(other_opts_lists(other)?);
    }
    words.extend(mount.mount_flags.iter().cloned());
    let mut options = Vec::new();
    let mut ignored = Vec::new();
    for opt in parse_option_lists(&words) {
        let keep = is_known_option(&opt.name) && !PLUGIN_OWNED_OPTIONS.contains(&opt.name.as_str());
        if keep {
            options.push(opt.display());
        } else {
            ignored.push(opt.name);
        }
    }
    if let Some(url) = attr(ctx, "url") {
        options.push(format!("endpoint={url}"));
    }
    if let Some(sig) = attr(ctx, "sigVersion") {
        match sig.trim_start_matches(['v', 'V']) {
            "1" | "4" => options.push(format!(
                "signature_version={}",
                sig.trim_start_matches(['v', 'V'])
            )),
            _ => {
                return Err(invalid(format!(
                    "volume attribute 'sigVersion' must be v1 or v4, not {sig:?}"
                )));
            }
        }
    }
    let read_only = req.readonly || reader_only;
    if read_only {
        options.push("ro".into());
    }
    let auth = auth(req, env)?;

    let mut hash = Sha256::new();
    for part in [req.volume_id.as_str(), source.as_str()]
        .into_iter()
        .chain(options.iter().map(String::as_str))
    {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    match &auth {
        Auth::Inherited => hash.update(b"inherited"),
        Auth::AccessKey { id, secret } => {
            hash.update(id.as_bytes());
            hash.update([0]);
            hash.update(secret.as_bytes());
        }
        Auth::Rrsa {
            role_arn,
            provider_arn,
            token_file,
        } => {
            for part in [role_arn, provider_arn, token_file] {
                hash.update(part.as_bytes());
                hash.update([0]);
            }
        }
    }
    Ok(MountPlan {
        volume_id: req.volume_id.clone(),
        target,
        source,
        options,
        ignored,
        read_only,
        auth,
        fingerprint: hex::encode(hash.finalize()),
    })
}

/// An absolute path from a required request field.
pub fn required_path(value: &str, field: &str) -> Result<PathBuf, InvalidRequest> {
    if value.is_empty() {
        return Err(invalid(format!("{field} is required")));
    }
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(invalid(format!(
            "{field} must be an absolute path, got {value:?}"
        )));
    }
    Ok(path)
}

fn attr<'a>(ctx: &'a std::collections::HashMap<String, String>, key: &str) -> Option<&'a str> {
    ctx.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Splits `otherOpts` (`-o a=1 -o b,c -od` …) into `-o` lists. Bare words are taken as
/// option lists too (ossfs accepts neither, but users write `allow_other` alone).
fn other_opts_lists(text: &str) -> Result<Vec<String>, InvalidRequest> {
    let mut lists = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word == "-o" {
            let value = words.next().ok_or_else(|| {
                invalid("volume attribute 'otherOpts' ends with -o and no option")
            })?;
            lists.push(value.to_string());
        } else if let Some(value) = word.strip_prefix("-o") {
            lists.push(value.to_string());
        } else {
            lists.push(word.trim_start_matches('-').to_string());
        }
    }
    Ok(lists)
}

fn auth(
    req: &NodePublishVolumeRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Auth, InvalidRequest> {
    let ctx = &req.volume_context;
    let secret = |k: &str| {
        req.secrets
            .get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let auth_type = attr(ctx, "authType").unwrap_or("").to_ascii_lowercase();
    if auth_type == "rrsa" {
        let provider_arn = attr(ctx, "oidcProviderArn")
            .map(str::to_string)
            .or_else(|| env("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"))
            .ok_or_else(|| invalid("authType rrsa needs the OIDC provider: set volume attribute 'oidcProviderArn' or enable RRSA for the plugin (ALIBABA_CLOUD_OIDC_PROVIDER_ARN)"))?;
        let token_file = env("ALIBABA_CLOUD_OIDC_TOKEN_FILE").ok_or_else(|| {
            invalid("authType rrsa needs the plugin's OIDC token (ALIBABA_CLOUD_OIDC_TOKEN_FILE is not set; enable RRSA for the plugin's service account)")
        })?;
        let role_arn = match (attr(ctx, "roleArn"), attr(ctx, "roleName")) {
            (Some(arn), _) => arn.to_string(),
            (None, Some(name)) => {
                // acs:ram::ACCOUNT:oidc-provider/NAME → acs:ram::ACCOUNT:role/ROLE
                let account = provider_arn
                    .strip_prefix("acs:ram::")
                    .and_then(|rest| rest.split(':').next())
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| invalid(format!("cannot find the account id in the OIDC provider ARN {provider_arn:?}; set volume attribute 'roleArn'")))?;
                format!("acs:ram::{account}:role/{}", name.to_ascii_lowercase())
            }
            (None, None) => {
                return Err(invalid(
                    "authType rrsa needs volume attribute 'roleName' (or 'roleArn')",
                ));
            }
        };
        return Ok(Auth::Rrsa {
            role_arn,
            provider_arn,
            token_file,
        });
    }
    if !auth_type.is_empty() {
        return Err(invalid(format!(
            "volume attribute 'authType' {auth_type:?} is not supported (use rrsa, or secrets akId/akSecret)"
        )));
    }
    match (secret("akId"), secret("akSecret")) {
        (Some(id), Some(secret)) => Ok(Auth::AccessKey {
            id: id.to_string(),
            secret: secret.to_string(),
        }),
        (None, None) => Ok(Auth::Inherited),
        (Some(_), None) => Err(invalid(
            "secret 'akSecret' is missing (secret 'akId' is set)",
        )),
        (None, Some(_)) => Err(invalid(
            "secret 'akId' is missing (secret 'akSecret' is set)",
        )),
    }
}

/// The attributes as an ordered map (for logs): never includes secrets.
pub fn describe_context(req: &NodePublishVolumeRequest) -> BTreeMap<&str, &str> {
    req.volume_context
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::proto::VolumeCapability;
    use crate::csi::proto::volume_capability::{AccessMode, BlockVolume};

    fn request(ctx: &[(&str, &str)], secrets: &[(&str, &str)]) -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: "pv-1".into(),
            target_path: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/pv-1/mount".into(),
            volume_capability: Some(VolumeCapability {
                access_mode: Some(AccessMode {
                    mode: Mode::MultiNodeMultiWriter as i32,
                }),
                access_type: Some(AccessType::Mount(MountVolume::default())),
            }),
            volume_context: ctx
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn alibaba_attributes_become_ossmount_options() {
        let req = request(
            &[
                ("bucket", "my-bucket"),
                ("path", "/data/set1"),
                ("url", "oss-cn-hangzhou-internal.aliyuncs.com"),
                ("sigVersion", "v4"),
                (
                    "otherOpts",
                    "-o region=cn-hangzhou -o max_stat_cache_size=0 -o allow_other,umask=022",
                ),
            ],
            &[("akId", "LTAIid"), ("akSecret", "s3cret-value")],
        );
        let plan = plan(&req, &no_env).unwrap();
        assert_eq!(plan.source, "my-bucket:data/set1/");
        assert_eq!(
            plan.options,
            [
                "region=cn-hangzhou",
                "allow_other",
                "endpoint=oss-cn-hangzhou-internal.aliyuncs.com",
                "signature_version=4"
            ]
        );
        assert_eq!(plan.ignored, ["max_stat_cache_size", "umask"]);
        assert!(!plan.read_only);
        let (set, removed) = plan.env();
        assert_eq!(
            set[1],
            ("OSS_ACCESS_KEY_SECRET", "s3cret-value".to_string())
        );
        assert!(removed.contains(&"ALIBABA_CLOUD_ACCESS_KEY_ID"));
        // Secrets stay out of everything printable.
        let printed = format!("{plan:?} {req:?}");
        assert!(!printed.contains("s3cret-value"), "{printed}");
        assert!(!plan.fingerprint.contains("s3cret"));
    }

    #[test]
    fn readonly_from_the_flag_or_the_access_mode() {
        let mut req = request(&[("bucket", "b")], &[]);
        req.readonly = true;
        let p = plan(&req, &no_env).unwrap();
        assert!(p.read_only && p.options.contains(&"ro".to_string()));
        let mut req = request(&[("bucket", "b")], &[]);
        req.volume_capability.as_mut().unwrap().access_mode = Some(AccessMode {
            mode: Mode::MultiNodeReaderOnly as i32,
        });
        assert!(plan(&req, &no_env).unwrap().read_only);
        let rw = plan(&request(&[("bucket", "b")], &[]), &no_env).unwrap();
        assert_ne!(rw.fingerprint, p.fingerprint);
        assert_eq!(rw.auth, Auth::Inherited);
    }

    #[test]
    fn bad_requests_are_invalid_arguments() {
        let mut r = request(&[("bucket", "b")], &[]);
        r.volume_id.clear();
        assert!(plan(&r, &no_env).unwrap_err().0.contains("volume_id"));
        let mut r = request(&[("bucket", "b")], &[]);
        r.target_path.clear();
        assert!(plan(&r, &no_env).unwrap_err().0.contains("target_path"));
        let mut r = request(&[("bucket", "b")], &[]);
        r.target_path = "relative/dir".into();
        assert!(plan(&r, &no_env).unwrap_err().0.contains("absolute"));
        let mut r = request(&[("bucket", "b")], &[]);
        r.volume_capability = None;
        assert!(
            plan(&r, &no_env)
                .unwrap_err()
                .0
                .contains("volume_capability")
        );
        let mut r = request(&[("bucket", "b")], &[]);
        r.volume_capability.as_mut().unwrap().access_type = Some(AccessType::Block(BlockVolume {}));
        assert!(plan(&r, &no_env).unwrap_err().0.contains("block"));
        let r = request(&[("path", "/x")], &[]);
        assert!(plan(&r, &no_env).unwrap_err().0.contains("bucket"));
        let r = request(&[("bucket", "b")], &[("akId", "id")]);
        let e = plan(&r, &no_env).unwrap_err().0;
        assert!(e.contains("akSecret"));
        let r = request(&[("bucket", "b"), ("sigVersion", "v3")], &[]);
        assert!(plan(&r, &no_env).unwrap_err().0.contains("sigVersion"));
        let r = request(&[("bucket", "b"), ("otherOpts", "-o")], &[]);
        assert!(plan(&r, &no_env).unwrap_err().0.contains("otherOpts"));
    }

    #[test]
    fn rrsa_builds_the_role_arn_from_the_provider() {
        let env = |k: &str| match k {
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN" => {
                Some("acs:ram::1234567890:oidc-provider/ack-rrsa-c123".to_string())
            }
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE" => Some("/var/run/secrets/token".to_string()),
            _ => None,
        };
        let r = request(
            &[
                ("bucket", "b"),
                ("authType", "rrsa"),
                ("roleName", "OssRole"),
            ],
            &[],
        );
        let p = plan(&r, &env).unwrap();
        assert_eq!(
            p.auth,
            Auth::Rrsa {
                role_arn: "acs:ram::1234567890:role/ossrole".into(),
                provider_arn: "acs:ram::1234567890:oidc-provider/ack-rrsa-c123".into(),
                token_file: "/var/run/secrets/token".into(),
            }
        );
        let r = request(&[("bucket", "b"), ("authType", "rrsa")], &[]);
        assert!(plan(&r, &env).unwrap_err().0.contains("roleName"));
        let r = request(
            &[("bucket", "b"), ("authType", "rrsa"), ("roleName", "R")],
            &[],
        );
        assert!(plan(&r, &no_env).unwrap_err().0.contains("OIDC"));
    }

    #[test]
    fn ossfs_only_options_are_those_ossmount_lacks() {
        for name in OSSFS_ONLY_OPTIONS {
            assert!(
                !is_known_option(name),
                "{name} is implemented now: drop it from the list"
            );
        }
        let docs = include_str!("../../docs/kubernetes.md");
        for name in OSSFS_ONLY_OPTIONS {
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/kubernetes.md does not list {name}"
            );
        }
    }

    #[test]
    fn plugin_owned_and_secret_options_are_dropped() {
        let r = request(
            &[
                ("bucket", "b"),
                ("otherOpts", "-o log_file=/x -o access_key_secret=zzz -o ro"),
            ],
            &[],
        );
        let p = plan(&r, &no_env).unwrap();
        assert_eq!(p.ignored, ["log_file", "access_key_secret"]);
        assert_eq!(p.options, ["ro"]);
    }
}
