//! Credentials files: ossfs passwd files and the Alibaba Cloud INI file.
//!
//! **ossfs passwd format** (`--credentials-file`, `~/.passwd-ossfs`, `/etc/passwd-ossfs`):
//! one entry per line, `bucket:AccessKeyId:AccessKeySecret` or `AccessKeyId:AccessKeySecret`;
//! blank lines and `#` comments are ignored. A line naming our bucket wins over a generic
//! line; among generic lines the first wins. Like ossfs/s3fs we refuse files that others can
//! read: group or world bits (`mode & 0o077`) for user files, world bits only (`0o007`) for
//! `/etc/passwd-ossfs`, because the ossfs documentation tells users to `chmod 640` it.
//!
//! **INI** (`~/.alibabacloud/credentials`, override `ALIBABA_CLOUD_CREDENTIALS_FILE`):
//! section = profile (`ALIBABA_CLOUD_PROFILE`, default `default`), key `type` =
//! `access_key` (`access_key_id`, `access_key_secret`, optional `security_token`) or
//! `ecs_ram_role` (optional `role_name`). Other types are reported as unsupported.
//!
//! Errors name the file and line but never echo a line's content (it holds the secret).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{Credentials, CredentialsError, Secret, StaticProvider};

/// Which permission bits make a passwd file unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionRule {
    /// User files: no group or world access (`mode & 0o077 == 0`).
    OwnerOnly,
    /// `/etc/passwd-ossfs`: group access allowed (root:group 640), no world access.
    NoWorldAccess,
}

impl PermissionRule {
    fn forbidden_bits(self) -> u32 {
        match self {
            PermissionRule::OwnerOnly => 0o077,
            PermissionRule::NoWorldAccess => 0o007,
        }
    }
}

/// Reads an ossfs passwd file. `Ok(None)` when the file does not exist or has no entry
/// usable for `bucket`.
pub fn read_passwd_file(
    path: &Path,
    bucket: &str,
    rule: PermissionRule,
) -> Result<Option<StaticProvider>, CredentialsError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CredentialsError(format!(
                "cannot read credentials file {}: {e}",
                path.display()
            )));
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & rule.forbidden_bits() != 0 {
        let fix = match rule {
            PermissionRule::OwnerOnly => "600",
            PermissionRule::NoWorldAccess => "640",
        };
        return Err(CredentialsError(format!(
            "credentials file {} is accessible by other users (mode {mode:03o}); \
             run `chmod {fix} {}`",
            path.display(),
            path.display()
        )));
    }
    let text = fs::read_to_string(path).map_err(|e| {
        CredentialsError(format!(
            "cannot read credentials file {}: {e}",
            path.display()
        ))
    })?;
    let creds = parse_passwd(&text, bucket)
        .map_err(|msg| CredentialsError(format!("credentials file {}: {msg}", path.display())))?;
    Ok(creds.map(|creds| StaticProvider {
        creds,
        source: format!("ossfs passwd file {}", path.display()),
    }))
}

/// Parses passwd-file text. A `bucket:` line for `bucket` wins; otherwise the first
/// generic `id:secret` line. Errors say which line is malformed, never what it holds.
pub fn parse_passwd(text: &str, bucket: &str) -> Result<Option<Credentials>, String> {
    let mut generic: Option<Credentials> = None;
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(':').map(str::trim).collect();
        match fields.as_slice() {
            [id, secret] if !id.is_empty() && !secret.is_empty() => {
                if generic.is_none() {
                    generic = Some(Credentials::new(*id, *secret));
                }
            }
            [b, id, secret] if !b.is_empty() && !id.is_empty() && !secret.is_empty() => {
                if *b == bucket {
                    return Ok(Some(Credentials::new(*id, *secret)));
                }
            }
            _ => {
                return Err(format!(
                    "line {} is not `AccessKeyId:AccessKeySecret` or \
                     `bucket:AccessKeyId:AccessKeySecret`",
                    idx + 1
                ));
            }
        }
    }
    Ok(generic)
}

/// What a profile of the INI file asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum IniProfile {
    AccessKey(Credentials),
    /// `role_name` may be absent: the role is then discovered from the metadata service.
    EcsRamRole {
        role_name: Option<String>,
    },
}

/// Reads `profile` from an Alibaba Cloud INI credentials file. `Ok(None)` when the file
/// does not exist.
pub fn read_ini_file(path: &Path, profile: &str) -> Result<Option<IniProfile>, CredentialsError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CredentialsError(format!(
                "cannot read credentials file {}: {e}",
                path.display()
            )));
        }
    };
    parse_ini(&text, profile)
        .map(Some)
        .map_err(|msg| CredentialsError(format!("credentials file {}: {msg}", path.display())))
}

/// Parses INI text (see the module docs for the accepted keys).
pub fn parse_ini(text: &str, profile: &str) -> Result<IniProfile, String> {
    // rust-ini's error Display includes the offending line, which may hold a secret: only
    // report the position.
    let ini = ini::Ini::load_from_str(text)
        .map_err(|e| format!("syntax error at line {}, column {}", e.line, e.col))?;
    let section = ini.section(Some(profile)).ok_or_else(|| {
        format!("no profile [{profile}] (set ALIBABA_CLOUD_PROFILE to choose one)")
    })?;
    let get = |k: &str| {
        section
            .get(k)
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    };
    let kind = get("type").unwrap_or_else(|| "access_key".to_string());
    match kind.as_str() {
        "access_key" => {
            let id = get("access_key_id")
                .ok_or_else(|| format!("profile [{profile}] has no access_key_id"))?;
            let secret = get("access_key_secret")
                .ok_or_else(|| format!("profile [{profile}] has no access_key_secret"))?;
            let mut creds = Credentials::new(id, secret);
            creds.security_token = get("security_token").map(Secret::new);
            Ok(IniProfile::AccessKey(creds))
        }
        "ecs_ram_role" => Ok(IniProfile::EcsRamRole {
            role_name: get("role_name"),
        }),
        other => Err(format!(
            "profile [{profile}] has type `{other}`, which ossmount does not support \
             (supported: access_key, ecs_ram_role)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_file(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        let mut f = fs::File::create(&p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn bucket_line_wins_over_generic() {
        let text = "# comment\n\nGENERIC:gsecret\nother:OID:osecret\nmybucket:BID:bsecret\n";
        let c = parse_passwd(text, "mybucket").unwrap().unwrap();
        assert_eq!(c.access_key_id, "BID");
        assert_eq!(c.access_key_secret.expose(), "bsecret");
        let c = parse_passwd(text, "nobucket").unwrap().unwrap();
        assert_eq!(c.access_key_id, "GENERIC");
    }

    #[test]
    fn only_other_buckets_is_none() {
        assert!(parse_passwd("b1:ID:S\n", "b2").unwrap().is_none());
    }

    #[test]
    fn malformed_line_names_line_not_content() {
        let err = parse_passwd("ok:fine\njustonefieldSECRET\n", "b").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn refuses_group_readable_user_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "passwd", "ID:SECRET\n", 0o640);
        let err = read_passwd_file(&p, "b", PermissionRule::OwnerOnly)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(err.contains("640"), "{err}");
        assert!(!err.contains("SECRET"));
    }

    #[test]
    fn etc_file_may_be_group_readable_not_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "passwd-ossfs", "ID:SECRET\n", 0o640);
        let p2 = read_passwd_file(&p, "b", PermissionRule::NoWorldAccess)
            .unwrap()
            .unwrap();
        assert_eq!(p2.creds.access_key_id, "ID");
        assert!(p2.source.contains("passwd-ossfs"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_passwd_file(&p, "b", PermissionRule::NoWorldAccess).is_err());
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("absent");
        assert!(
            read_passwd_file(&p, "b", PermissionRule::OwnerOnly)
                .unwrap()
                .is_none()
        );
        assert!(read_ini_file(&p, "default").unwrap().is_none());
    }

    #[test]
    fn ini_access_key_and_profiles() {
        let text = "[default]\ntype = access_key\naccess_key_id = AK1\naccess_key_secret = S1\n\
                    [prod]\ntype = ecs_ram_role\nrole_name = MyRole\n\
                    [odd]\ntype = ram_role_arn\n";
        match parse_ini(text, "default").unwrap() {
            IniProfile::AccessKey(c) => {
                assert_eq!(c.access_key_id, "AK1");
                assert_eq!(c.access_key_secret.expose(), "S1");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            parse_ini(text, "prod").unwrap(),
            IniProfile::EcsRamRole {
                role_name: Some("MyRole".into())
            }
        );
        assert!(parse_ini(text, "odd").unwrap_err().contains("ram_role_arn"));
        assert!(parse_ini(text, "nope").unwrap_err().contains("[nope]"));
    }

    #[test]
    fn ini_missing_secret_is_error() {
        let err = parse_ini("[default]\naccess_key_id = AK\n", "default").unwrap_err();
        assert!(err.contains("access_key_secret"));
    }
}
