//! mount(8) helper mode: `mount.fuse.ossmount` / `mount.ossmount`.
//!
//! For an fstab line `my-bucket /mnt/oss fuse.ossmount _netdev,region=cn-hangzhou 0 0`,
//! `mount /mnt/oss` runs `/sbin/mount.fuse.ossmount my-bucket /mnt/oss [-sfnv] [-N ns]
//! [-o options] [-t type]` (mount(8), "External helpers"). When the binary is invoked under
//! one of those names (a symlink installed by `scripts/install.sh`), this module turns that
//! calling convention into an ordinary `ossmount` command line:
//! - `-o` passes through (generic options like `_netdev` are ignored by the config);
//! - `-f` means *fake* to mount(8) (do everything but mount) and becomes `--dry-run`,
//!   not our `--foreground`;
//! - `-n` (no mtab), `-s` (sloppy), `-t TYPE` are accepted and dropped, `-v` becomes `--debug`;
//! - `-N NAMESPACE` is refused: mounting in another namespace is not supported.
//!
//! The helper always runs in the background mode, so mount(8) returns once the mount is
//! ready, and fails with ossmount's message otherwise.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// Program names that switch to helper mode.
pub const HELPER_NAMES: &[&str] = &["mount.fuse.ossmount", "mount.ossmount"];

/// True when `argv0` names the mount helper: one of [`HELPER_NAMES`], or one of them
/// followed by `-SUFFIX` (a private fstab type such as `fuse.ossmount-staging`, which lets
/// tests install a helper without replacing the system one).
pub fn is_helper_invocation(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| {
            HELPER_NAMES.iter().any(|h| {
                name == *h
                    || name
                        .strip_prefix(h)
                        .is_some_and(|rest| rest.starts_with('-'))
            })
        })
}

/// Rewrites mount(8)'s helper arguments (without `argv[0]`) into ossmount arguments
/// (with `argv[0]` = `ossmount`).
pub fn translate_helper_args(args: &[OsString]) -> Result<Vec<OsString>, String> {
    let mut out: Vec<OsString> = vec!["ossmount".into()];
    let mut positionals: Vec<OsString> = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-o" => {
                let value = iter
                    .next()
                    .ok_or_else(|| "mount helper: -o needs a value".to_string())?;
                out.push("-o".into());
                out.push(value.clone());
            }
            "-t" => {
                iter.next();
            }
            "-N" => return Err("mount helper: -N (mount namespaces) is not supported".into()),
            flags if flags.starts_with('-') && flags.len() > 1 && !flags.starts_with("--") => {
                if let Some(value) = flags.strip_prefix("-o") {
                    out.push("-o".into());
                    out.push(value.into());
                    continue;
                }
                for flag in flags[1..].chars() {
                    match flag {
                        'f' => out.push("--dry-run".into()),
                        'v' => out.push("--debug".into()),
                        'n' | 's' => {}
                        other => return Err(format!("mount helper: unknown flag -{other}")),
                    }
                }
            }
            _ => positionals.push(arg.clone()),
        }
    }
    if positionals.len() != 2 {
        return Err(format!(
            "mount helper: expected DEVICE MOUNTPOINT, got {} positional arguments (usage: mount.fuse.ossmount BUCKET[:PREFIX] MOUNTPOINT -o OPTIONS)",
            positionals.len()
        ));
    }
    out.extend(positionals);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn recognises_helper_names() {
        assert!(is_helper_invocation(OsStr::new(
            "/sbin/mount.fuse.ossmount"
        )));
        assert!(is_helper_invocation(OsStr::new("mount.ossmount")));
        assert!(is_helper_invocation(OsStr::new(
            "/sbin/mount.fuse.ossmount-test-42"
        )));
        assert!(!is_helper_invocation(OsStr::new(
            "/sbin/mount.fuse.ossmountx"
        )));
        assert!(!is_helper_invocation(OsStr::new("/usr/local/bin/ossmount")));
    }

    #[test]
    fn translates_the_mount8_convention() {
        let out = translate_helper_args(&strings(&[
            "my-bucket",
            "/mnt/oss",
            "-n",
            "-o",
            "rw,_netdev,region=cn-hangzhou",
            "-t",
            "fuse.ossmount",
        ]))
        .unwrap();
        assert_eq!(
            out,
            strings(&[
                "ossmount",
                "-o",
                "rw,_netdev,region=cn-hangzhou",
                "my-bucket",
                "/mnt/oss"
            ])
        );
        let out = translate_helper_args(&strings(&["-sfv", "b", "/m", "-oro"])).unwrap();
        assert_eq!(
            out,
            strings(&["ossmount", "--dry-run", "--debug", "-o", "ro", "b", "/m"])
        );
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        assert!(
            translate_helper_args(&strings(&["b", "/m", "-N", "1"]))
                .unwrap_err()
                .contains("-N")
        );
        assert!(
            translate_helper_args(&strings(&["b"]))
                .unwrap_err()
                .contains("DEVICE MOUNTPOINT")
        );
        assert!(
            translate_helper_args(&strings(&["b", "/m", "-x"]))
                .unwrap_err()
                .contains("-x")
        );
        assert!(translate_helper_args(&strings(&["b", "/m", "-o"])).is_err());
    }
}
