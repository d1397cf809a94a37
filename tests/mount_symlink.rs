//! Symlinks through a real mount of the `ossmount` binary on the emulator: every kind of
//! text readlinks back byte for byte after a remount, `tar x` of an archive holding them
//! works and `tar c` of the mounted tree equals `tar c` of the source; the official
//! Python SDK follows the native links made here; links other tools made (ossfs 1.x
//! format, SDK symlinks) read as links, also with `--readdir-optimize`.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{emulator::Emu, mount::BinMount};

const BUCKET: &str = "symlinks";

/// (link name, text) of every kind a program can write.
fn matrix() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("same_dir", b"u.txt".to_vec()),
        ("up", b"../top.txt".to_vec()),
        ("dots", b"./sub//v.txt".to_vec()),
        ("deep", b"sub/s2/s3/deep.txt".to_vec()),
        ("dangling", b"nowhere".to_vec()),
        ("absolute", b"/etc/hostname".to_vec()),
        ("dotdot", b"..".to_vec()),
        ("dot", b".".to_vec()),
        ("escapes", b"../../../outside".to_vec()),
        ("not_utf8", b"caf\xe9".to_vec()),
        ("longest", ("a/".repeat(2047) + "b").into_bytes()),
        ("dir_link", b"sub".to_vec()),
    ]
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A reproducible archive of `dir`: names sorted, owners and mtimes fixed.
fn tar_c(dir: &Path) -> Vec<u8> {
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--format=gnu",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-cf",
            "-",
            "-C",
        ])
        .arg(dir)
        .arg("."))
}

fn tar_tv(archive: &[u8]) -> String {
    let mut child = Command::new("tar")
        .args(["-tvf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tar");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn readlink(p: &Path) -> Vec<u8> {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("readlink {}: {e}", p.display()))
        .into_os_string()
        .into_vec()
}

/// Runs `body` with the official Python SDK (`.venv`, scripts/setup.sh) bound to `client`
/// and `bucket`; None when the venv is missing.
fn sdk(emu: &Emu, body: &str, args: &[&[u8]]) -> Option<Vec<u8>> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !python.exists() {
        eprintln!("no .venv (scripts/setup.sh): skipping the Python SDK checks");
        return None;
    }
    let script = format!(
        r#"
import sys, alibabacloud_oss_v2 as oss
cfg = oss.config.load_default()
cfg.credentials_provider = oss.credentials.StaticCredentialsProvider("emulator-ak", "emulator-secret")
cfg.region = "cn-hangzhou"
cfg.endpoint = sys.argv[1]
cfg.use_path_style = True
client = oss.Client(cfg)
bucket = sys.argv[2]
args = sys.argv[3:]
{body}
"#
    );
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(emu.endpoint())
        .arg(BUCKET)
        .args(args.iter().map(|a| OsString::from_vec(a.to_vec())))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "Python SDK failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

fn mount(emu: &Emu, mnt: &Path, extra: &[&str]) -> BinMount {
    BinMount::start(emu, mnt, extra).expect("mount")
}

#[test]
fn symlinks_of_every_kind_survive_remount_and_tar() {
    if !is_root() {
        eprintln!("skipping: mounts need root");
        return;
    }
    let emu = Emu::start(BUCKET, |c| c);
    let top = tempfile::Builder::new()
        .prefix("h4-symlink-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let src = top.path().join("src");
    let d = src.join("d");
    std::fs::create_dir_all(d.join("sub/s2/s3")).unwrap();
    std::fs::write(src.join("top.txt"), "top\n").unwrap();
    std::fs::write(d.join("u.txt"), "u\n").unwrap();
    std::fs::write(d.join("sub/v.txt"), "v\n").unwrap();
    std::fs::write(d.join("sub/s2/s3/deep.txt"), "deep\n").unwrap();
    for (name, text) in matrix() {
        std::os::unix::fs::symlink(OsString::from_vec(text), d.join(name)).unwrap();
        // An old mtime, so the check after tar x means something.
        run(Command::new("touch")
            .args(["-h", "-d", "@1000000000"])
            .arg(d.join(name)));
    }
    let archive = top.path().join("links.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("."));
    let want = tar_c(&src);

    let mnt = top.path().join("m");
    let m = mount(&emu, &mnt, &[]);
    let x = m.path("x");
    std::fs::create_dir(&x).unwrap();
    // tar x exits 0 (it used to exit 2 on EINVAL for absolute and `..` targets).
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&x));
    for (name, text) in matrix() {
        assert_eq!(readlink(&x.join("d").join(name)), text, "{name}");
    }
    // Owner of a link itself (lchown), kept across the remount.
    run(Command::new("chown")
        .args(["-h", "123:456"])
        .arg(x.join("d/same_dir")));
    run(Command::new("chown")
        .args(["-h", "321:654"])
        .arg(x.join("d/absolute")));
    drop(m);

    for extra in [&[][..], &["--readdir-optimize"][..]] {
        let m = mount(&emu, &mnt, extra);
        let x = m.path("x");
        for (name, text) in matrix() {
            let p = x.join("d").join(name);
            let meta = std::fs::symlink_metadata(&p).unwrap();
            assert!(meta.file_type().is_symlink(), "{name} {extra:?}");
            assert_eq!(meta.len(), text.len() as u64, "{name}");
            assert_eq!(readlink(&p), text, "{name} after a remount {extra:?}");
        }
        // tar x set each link's mtime (lutimes): stored with the link.
        for (name, _) in matrix() {
            let want = std::fs::symlink_metadata(d.join(name)).unwrap().mtime();
            let got = std::fs::symlink_metadata(x.join("d").join(name))
                .unwrap()
                .mtime();
            assert_eq!(got, want, "{name}: mtime {extra:?}");
        }
        for (name, owner) in [("same_dir", (123, 456)), ("absolute", (321, 654))] {
            let meta = std::fs::symlink_metadata(x.join("d").join(name)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), owner, "{name} {extra:?}");
        }
        // Links to files inside the mount work as links.
        assert_eq!(std::fs::read(x.join("d/up")).unwrap(), b"top\n");
        assert_eq!(std::fs::read(x.join("d/dots")).unwrap(), b"v\n");
        let got = tar_c(&x);
        assert!(
            got == want,
            "tar c of the mount differs from the source ({extra:?}):\n{}\n---\n{}",
            tar_tv(&got),
            tar_tv(&want)
        );
        drop(m);
    }

    // The official SDK follows native links made through the mount.
    if let Some(out) = sdk(
        &emu,
        r#"
for key in args:
    h = client.head_object(oss.HeadObjectRequest(bucket=bucket, key=key))
    g = client.get_object(oss.GetObjectRequest(bucket=bucket, key=key))
    body = g.body.read()
    assert h.content_length == len(body), (key, h.content_length, len(body))
    sys.stdout.write(body.decode() + "|")
"#,
        &[b"x/d/same_dir", b"x/d/up", b"x/d/deep"],
    ) {
        assert_eq!(String::from_utf8(out).unwrap(), "u\n|top\n|deep\n|");
    }
}

#[test]
fn links_other_tools_made_read_as_links() {
    if !is_root() {
        eprintln!("skipping: mounts need root");
        return;
    }
    let emu = Emu::start(BUCKET, |c| c);
    emu.put("p/t.txt", b"target\n".to_vec());
    // Planted with the official SDK: ossfs 1.x links (body = text, mode S_IFLNK) and an
    // OSS symlink whose target is a bucket key.
    let planted = sdk(
        &emu,
        r#"
mode = str(0o120777)
client.put_object(oss.PutObjectRequest(bucket=bucket, key="p/ossfs_abs", body=b"/etc/hostname", metadata={"mode": mode}))
client.put_object(oss.PutObjectRequest(bucket=bucket, key="p/ossfs_rel", body=b"t.txt", metadata={"mode": mode, "uid": "77", "gid": "88"}))
client.put_symlink(oss.PutSymlinkRequest(bucket=bucket, key="p/q/sdk", symlink_target="p/t.txt"))
try:
    client.put_symlink(oss.PutSymlinkRequest(bucket=bucket, key="p/bad", symlink_target="/abs"))
    print("accepted")
except oss.exceptions.OperationError as e:
    print("refused", getattr(e.unwrap(), "code", ""))
"#,
        &[],
    );
    let Some(planted) = planted else {
        return;
    };
    assert_eq!(
        String::from_utf8(planted).unwrap().trim(),
        "refused InvalidObjectName",
        "OSS refuses a symlink target starting with /"
    );
    let top = tempfile::Builder::new()
        .prefix("h4-symlink-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let mnt: PathBuf = top.path().join("m");
    for extra in [&[][..], &["--readdir-optimize"][..]] {
        let m = mount(&emu, &mnt, extra);
        // `find -type l` goes by the listing's types (with --readdir-optimize, the types
        // READDIRPLUS hands over).
        if !extra.is_empty() {
            let found = run(Command::new("find")
                .arg(m.path("p"))
                .args(["-type", "l", "-printf", "%f\n"]));
            let mut found: Vec<&str> = std::str::from_utf8(&found).unwrap().lines().collect();
            found.sort();
            assert_eq!(found, ["ossfs_abs", "ossfs_rel", "sdk"], "{extra:?}");
        }
        for (path, text) in [
            ("p/ossfs_abs", "/etc/hostname"),
            ("p/ossfs_rel", "t.txt"),
            ("p/q/sdk", "../t.txt"),
        ] {
            let p = m.path(path);
            assert!(
                std::fs::symlink_metadata(&p)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{path} {extra:?}"
            );
            assert_eq!(readlink(&p), text.as_bytes(), "{path} {extra:?}");
        }
        let meta = std::fs::symlink_metadata(m.path("p/ossfs_rel")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (77, 88));
        assert_eq!(std::fs::read(m.path("p/q/sdk")).unwrap(), b"target\n");
        assert_eq!(std::fs::read(m.path("p/ossfs_rel")).unwrap(), b"target\n");
        let names: Vec<OsString> = std::fs::read_dir(m.path("p"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.iter().any(|n| n.as_bytes() == b"ossfs_abs"));
        drop(m);
    }
}
