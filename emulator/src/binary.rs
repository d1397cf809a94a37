//! Where the `ossmount-emulator` binary is, for tests of *other* packages.
//!
//! Cargo sets `CARGO_BIN_EXE_<name>` only for a package's own integration tests, so the
//! `ossmount` package's tests (and its benchmark example) cannot name this binary that
//! way. [`binary_path`] finds it instead:
//! 1. `OSSMOUNT_EMULATOR_BIN`, when set (scripts and CI may point at a release build);
//! 2. otherwise the binary in the profile directory of the running test
//!    (`target/<profile>/deps/<test>` → `target/<profile>/ossmount-emulator`), which a
//!    workspace build (`cargo build`, `cargo test`: the emulator is a default member)
//!    has produced;
//! 3. when it is missing there (e.g. `cargo test -p ossmount --test NAME` builds only the
//!    `ossmount` package), it is built once with `cargo build -p ossmount-emulator` into
//!    the same target directory and profile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable naming an emulator binary to use instead of the built one.
pub const BIN_ENV: &str = "OSSMOUNT_EMULATOR_BIN";

/// Path of the `ossmount-emulator` binary (see the module docs for the search order).
///
/// # Panics
/// When the binary cannot be found or built: this is test support, and a test cannot run
/// without it.
pub fn binary_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os(BIN_ENV) {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = profile_dir(&exe).unwrap_or_else(|| {
            panic!(
                "cannot tell the target directory from {}; set {BIN_ENV}",
                exe.display()
            )
        });
        let bin = profile_dir.join(format!("ossmount-emulator{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            build(&profile_dir);
        }
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// `target/<profile>` for an executable in `target/<profile>/deps` or
/// `target/<profile>/examples` (or directly in `target/<profile>`).
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    match dir.file_name()?.to_str()? {
        "deps" | "examples" => dir.parent().map(Path::to_path_buf),
        _ => Some(dir.to_path_buf()),
    }
}

fn build(profile_dir: &Path) {
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile name");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--bin",
            "ossmount-emulator",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args([
            "--profile",
            if profile == "debug" { "dev" } else { profile },
        ])
        .status()
        .expect("run cargo build for ossmount-emulator");
    assert!(status.success(), "cargo build -p ossmount-emulator failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_of_tests_and_examples() {
        assert_eq!(
            profile_dir(Path::new("/t/debug/deps/io_read-0123")),
            Some(PathBuf::from("/t/debug"))
        );
        assert_eq!(
            profile_dir(Path::new("/t/release/examples/bench")),
            Some(PathBuf::from("/t/release"))
        );
        assert_eq!(
            profile_dir(Path::new("/t/debug/ossmount")),
            Some(PathBuf::from("/t/debug"))
        );
    }
}
