//! Read-after-write and renames of files being written, through a real mount of the
//! `ossmount` binary on the emulator (issue 13).
//!
//! - Read-while-write: each scenario is a function over a root directory that records what
//!   a program observes (sizes, bytes read through other descriptors, a child process, an
//!   mmap) — new file, seek back, existing file extended, O_APPEND, reads past the first
//!   part, truncation, child processes reading or writing. It runs once on a local
//!   directory and once on the mount; the two observation lists must be equal. The local
//!   run is the specification, so a scenario cannot pass by asserting the wrong thing.
//!   mmap readers run in a child process (see [`mmap_read`] for why).
//! - `git clone --no-local` into the mount (index-pack reads the pack while writing it),
//!   then `git fsck --full`, `git gc` and a commit inside the mount, and fsck again after
//!   a remount.
//! - Log rotation: `app.log` renamed to `app.log.1` while open, a new `app.log` written,
//!   both closed in several orders; the files hold exactly what was written, after close
//!   and after a remount, and nothing else exists.
//! - Fault-injected renames (emulator fault rules, `/-/faults` `rules`): CopyObject or
//!   DeleteObject refused with AccessDenied while renaming a closed file or one open for
//!   writing; an upload refused after a rename. Afterwards no empty or stale object exists
//!   at either name (the new name is absent or complete), a file created at the old name
//!   is untouched, and every error the application sees keeps the injected errno through
//!   later fsync and close.
//!
//! The mount uses 100 KiB parts so a few hundred KiB cross several multipart parts.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::emulator::Emu;
use common::mount::BinMount;
use common::{close_checked, pattern, require_root, sha256};
use ossmount::store::{ListRequest, ObjectStore};
use ossmount_emulator::FaultRule;

const BUCKET: &str = "rww";
/// `--part-size` of the mounts: the smallest allowed, so small files cross parts.
const PART: usize = 100 * 1024;

/// The emulator, a mount of it and a scratch directory; the mount drops first.
struct Fixture {
    mount: Option<BinMount>,
    emu: Emu,
    mnt: PathBuf,
    _top: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let emu = Emu::start(BUCKET, |c| c);
        let top = tempfile::Builder::new()
            .prefix("rww-")
            .tempdir()
            .expect("temp dir");
        let mnt = top.path().join("mnt");
        let mut f = Fixture {
            mount: None,
            emu,
            mnt,
            _top: top,
        };
        f.remount();
        f
    }

    /// Unmounts (when mounted) and mounts again: nothing cached survives.
    fn remount(&mut self) {
        if let Some(mut m) = self.mount.take() {
            let status = m.unmount();
            assert!(
                status.is_some_and(|s| s.success()),
                "ossmount did not exit cleanly ({status:?}): {}",
                m.log_text()
            );
        }
        let m = BinMount::start(&self.emu, &self.mnt, &["--part-size", "100KiB"])
            .unwrap_or_else(|e| panic!("mount: {e}"));
        self.mount = Some(m);
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    fn log(&self) -> String {
        self.mount
            .as_ref()
            .map(BinMount::log_text)
            .unwrap_or_default()
    }

    /// Keys on the server under `prefix`, sorted.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .emu
                .block_on(self.emu.client.list_objects(&ListRequest {
                    prefix: prefix.into(),
                    continuation_token: token.take(),
                    max_keys: 1000,
                    ..Default::default()
                }))
                .expect("list");
            out.extend(page.objects.into_iter().map(|o| o.key));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        out.sort();
        out
    }

    /// Multipart uploads left open under `prefix`.
    fn open_uploads(&self, prefix: &str) -> Vec<String> {
        self.emu
            .uploads()
            .into_iter()
            .filter(|u| u.key.starts_with(prefix))
            .map(|u| u.key)
            .collect()
    }

    fn set_rules(&self, rules: Vec<FaultRule>) {
        self.emu.emu().set_fault_rules(rules).expect("fault rules");
    }

    /// Requests the current fault rules failed so far.
    fn rule_hits(&self) -> u64 {
        self.emu.emu().fault_rules().iter().map(|r| r.hits).sum()
    }
}

// ---------------------------------------------------------------------------------------
// Observations

/// What a scenario observed, one line per step.
#[derive(Default)]
struct Obs(Vec<String>);

impl Obs {
    fn note(&mut self, step: &str, value: String) {
        self.0.push(format!("{step}: {value}"));
    }
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{:?}", nix::errno::Errno::from_raw(n)),
        None => format!("error {e}"),
    }
}

/// Length and hash of bytes (or the errno), short enough to compare and print.
fn bytes_desc(r: std::io::Result<Vec<u8>>) -> String {
    match r {
        Ok(b) => format!("{} bytes sha256 {}", b.len(), &sha256(&b)[..16]),
        Err(e) => errno_name(&e),
    }
}

fn unit_desc(r: std::io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => errno_name(&e),
    }
}

/// Reads up to `len` bytes at `off` (short only at EOF).
fn pread(f: &File, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

fn stat_size(p: &Path) -> String {
    match std::fs::metadata(p) {
        Ok(m) => m.len().to_string(),
        Err(e) => errno_name(&e),
    }
}

fn fstat_size(f: &File) -> String {
    match f.metadata() {
        Ok(m) => m.len().to_string(),
        Err(e) => errno_name(&e),
    }
}

/// The whole file through a fresh descriptor.
fn read_new_fd(p: &Path) -> String {
    bytes_desc(std::fs::read(p))
}

/// The whole file through `f` (from offset 0 to EOF).
fn read_all(f: &File) -> String {
    bytes_desc(pread(f, 0, 1 << 24))
}

/// Maps the file read-only and shared (the length fstat reports) in a child process and
/// reads it through the mapping. Not in this process: the emulator serves the mount from
/// here, and a page fault on the mount holds this process's mmap lock until the mount
/// answers, while the emulator's threads need that lock to allocate (a deadlock a real
/// application, whose server is elsewhere, cannot hit).
fn mmap_read(p: &Path) -> String {
    let script = r#"
import hashlib, mmap, os, sys
with open(sys.argv[1], "rb") as f:
    n = os.fstat(f.fileno()).st_size
    if n == 0:
        print("empty")
    else:
        with mmap.mmap(f.fileno(), n, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as m:
            print(n, "bytes sha256", hashlib.sha256(m[:]).hexdigest()[:16])
"#;
    let out = Command::new("timeout")
        .args(["60", "python3", "-c", script])
        .arg(p)
        .output()
        .expect("spawn python3");
    if out.status.success() {
        format!("mmap {}", String::from_utf8_lossy(&out.stdout).trim())
    } else {
        use std::os::unix::process::ExitStatusExt;
        // The message names the path (which differs between runs): keep its first word.
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("");
        match out.status.signal() {
            Some(sig) => format!(
                "mmap reader killed by {}",
                nix::sys::signal::Signal::try_from(sig).map_or(sig.to_string(), |s| s.to_string())
            ),
            None => format!(
                "mmap reader failed: {}",
                last.split(':').next().unwrap_or("")
            ),
        }
    }
}

/// Runs `scenario` on a local directory and on the mount; fails with both observation
/// lists and the first difference when they differ.
fn compare_with_local(test: &str, scenario: fn(&Path, &mut Obs)) {
    if !require_root(test) {
        return;
    }
    let local = tempfile::tempdir().expect("local dir");
    let mut want = Obs::default();
    scenario(local.path(), &mut want);
    let fx = Fixture::new();
    let dir = fx.path(test);
    std::fs::create_dir(&dir).expect("mkdir in mount");
    let mut got = Obs::default();
    scenario(&dir, &mut got);
    if got.0 != want.0 {
        let first = got
            .0
            .iter()
            .zip(&want.0)
            .position(|(g, w)| g != w)
            .unwrap_or(got.0.len().min(want.0.len()));
        panic!(
            "{test}: the mount differs from a local directory at step {first}:\n  mount: {}\n  local: {}\n\
             mount observed:\n    {}\nlocal observed:\n    {}\nmount log:\n{}",
            got.0.get(first).map_or("(nothing)", String::as_str),
            want.0.get(first).map_or("(nothing)", String::as_str),
            got.0.join("\n    "),
            want.0.join("\n    "),
            fx.log()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Read-while-write scenarios

/// A new file: another descriptor reads what was written before close, at any offset,
/// across multipart parts, after a seek back; stat shows the size at once.
fn new_file(root: &Path, obs: &mut Obs) {
    let p = root.join("new.bin");
    let data = pattern(3 * PART + 12_345, 1);
    let mut w = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .expect("create");
    w.write_all(&data[..1000]).expect("write");
    obs.note("stat after 1000", stat_size(&p));
    obs.note("fstat writer", fstat_size(&w));
    let r = File::open(&p).expect("open reader");
    obs.note("reader pread 0..4096", bytes_desc(pread(&r, 0, 4096)));
    obs.note("writer pread 0..1000", bytes_desc(pread(&w, 0, 1000)));
    w.write_all(&data[1000..2 * PART + 500]).expect("write");
    obs.note("stat after 2 parts", stat_size(&p));
    obs.note("reader whole", read_all(&r));
    obs.note(
        "reader across part 1|2",
        bytes_desc(pread(&r, (2 * PART - 700) as u64, 1000)),
    );
    obs.note("new descriptor whole", read_new_fd(&p));
    w.write_all(&data[2 * PART + 500..]).expect("write");
    obs.note("reader whole after rest", read_all(&r));
    obs.note(
        "reader tail",
        bytes_desc(pread(&r, (data.len() - 10) as u64, 100)),
    );
    obs.note("close reader", unit_desc(close_checked(r)));
    obs.note("close writer", unit_desc(close_checked(w)));
    obs.note("after close", read_new_fd(&p));
}

/// A new file rewritten early (a header after the body): the reader sees the rewrite.
fn new_file_seek_back(root: &Path, obs: &mut Obs) {
    let p = root.join("header.bin");
    let data = pattern(PART / 2, 2);
    let mut w = File::create(&p).expect("create");
    w.write_all(&data).expect("write");
    let r = File::open(&p).expect("open reader");
    obs.note("reader before rewrite", read_all(&r));
    w.write_all_at(b"HEADER", 0).expect("pwrite");
    obs.note("reader after rewrite", bytes_desc(pread(&r, 0, 64)));
    obs.note("new descriptor", read_new_fd(&p));
    obs.note("stat", stat_size(&p));
    obs.note("close reader", unit_desc(close_checked(r)));
    obs.note("close writer", unit_desc(close_checked(w)));
    obs.note("after close", read_new_fd(&p));
}

/// An existing (uploaded) file extended past its end and overwritten inside.
fn existing_file_extended(root: &Path, obs: &mut Obs) {
    let p = root.join("old.bin");
    std::fs::write(&p, pattern(PART + 20_000, 3)).expect("seed file");
    let mut w = OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open writer");
    w.seek(SeekFrom::End(0)).expect("seek");
    w.write_all(&pattern(70_000, 4)).expect("append");
    obs.note("stat after extend", stat_size(&p));
    let r = File::open(&p).expect("open reader");
    obs.note("reader whole", read_all(&r));
    obs.note(
        "reader across old end",
        bytes_desc(pread(&r, (PART + 19_000) as u64, 2000)),
    );
    w.write_all_at(b"OVERWRITTEN", 5).expect("pwrite");
    obs.note("reader head after overwrite", bytes_desc(pread(&r, 0, 64)));
    w.write_all(&pattern(PART, 5)).expect("extend again");
    obs.note("stat after second extend", stat_size(&p));
    obs.note("reader whole again", read_all(&r));
    obs.note("new descriptor", read_new_fd(&p));
    obs.note("close writer", unit_desc(close_checked(w)));
    obs.note("reader after close", read_all(&r));
    obs.note("close reader", unit_desc(close_checked(r)));
    obs.note("after close", read_new_fd(&p));
}

/// O_APPEND on an existing file and on a new one: after each write a descriptor opened
/// before and one opened after see everything.
fn append_mode(root: &Path, obs: &mut Obs) {
    for (name, seed) in [("existing.log", 6u64), ("fresh.log", 7)] {
        let p = root.join(name);
        if name == "existing.log" {
            std::fs::write(&p, pattern(5000, seed)).expect("seed file");
        }
        let mut a = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&p)
            .expect("open O_APPEND");
        let r = File::open(&p).expect("open reader");
        for i in 0..4u64 {
            a.write_all(&pattern(45_000, seed * 100 + i))
                .expect("append");
            obs.note(&format!("{name} stat after append {i}"), stat_size(&p));
            obs.note(&format!("{name} early reader {i}"), read_all(&r));
            obs.note(&format!("{name} new descriptor {i}"), read_new_fd(&p));
        }
        obs.note(&format!("{name} close writer"), unit_desc(close_checked(a)));
        obs.note(&format!("{name} close reader"), unit_desc(close_checked(r)));
        obs.note(&format!("{name} after close"), read_new_fd(&p));
    }
}

/// A new file written in 16 KiB writes across four parts, read at its start (long
/// uploaded) and at its growing end after every 64 KiB.
fn reads_past_first_part(root: &Path, obs: &mut Obs) {
    let p = root.join("parts.bin");
    let data = pattern(4 * PART + 777, 8);
    let mut w = File::create(&p).expect("create");
    let r = File::open(&p).expect("open reader");
    let mut written = 0;
    for chunk in data.chunks(16 * 1024) {
        w.write_all(chunk).expect("write");
        written += chunk.len();
        if written % (64 * 1024) < 16 * 1024 || written == data.len() {
            obs.note(&format!("@{written} start"), bytes_desc(pread(&r, 0, 4096)));
            obs.note(
                &format!("@{written} end"),
                bytes_desc(pread(&r, written.saturating_sub(5000) as u64, 10_000)),
            );
            obs.note(&format!("@{written} stat"), stat_size(&p));
        }
    }
    obs.note("reader whole", read_all(&r));
    obs.note("close writer", unit_desc(close_checked(w)));
    obs.note("close reader", unit_desc(close_checked(r)));
    obs.note("after close", read_new_fd(&p));
}

/// `sh -c SCRIPT _ PATH` in a child process; its stdout and exit status.
fn child(script: &str, p: &Path) -> String {
    let out = Command::new("timeout")
        .args(["60", "sh", "-c", script, "child"])
        .arg(p)
        .output()
        .expect("spawn child");
    format!(
        "{} exit {:?} stderr {}",
        String::from_utf8_lossy(&out.stdout).trim(),
        out.status.code(),
        // Error texts name the path; only whether there were any matters.
        if out.stderr.is_empty() {
            "empty"
        } else {
            "present"
        }
    )
}

/// Another process reads what this one wrote and has not closed (size, whole content,
/// the tail past the first part).
fn two_processes(root: &Path, obs: &mut Obs) {
    let p = root.join("shared.bin");
    let data = pattern(2 * PART + 3000, 9);
    let mut w = File::create(&p).expect("create");
    let script = r#"stat -c %s "$1"; sha256sum < "$1" | cut -c1-16; tail -c 5000 "$1" | sha256sum | cut -c1-16"#;
    w.write_all(&data[..PART / 2]).expect("write");
    obs.note("child after half a part", child(script, &p));
    w.write_all(&data[PART / 2..]).expect("write");
    obs.note("child after three parts", child(script, &p));
    obs.note("own reader", read_new_fd(&p));
    obs.note("close writer", unit_desc(close_checked(w)));
    obs.note("child after close", child(script, &p));
}

/// A reader that maps the file after the writes sees the bytes, in a new file and in an
/// extended existing one.
fn mmap_reader(root: &Path, obs: &mut Obs) {
    let p = root.join("mapped-new.bin");
    let mut w = File::create(&p).expect("create");
    w.write_all(&pattern(PART + 5000, 10)).expect("write");
    obs.note("new: map after write", mmap_read(&p));
    w.write_all(&pattern(PART, 11)).expect("write");
    obs.note("new: map after more", mmap_read(&p));
    obs.note("new: close writer", unit_desc(close_checked(w)));
    obs.note("new: map after close", mmap_read(&p));

    let p = root.join("mapped-old.bin");
    std::fs::write(&p, pattern(PART / 2, 12)).expect("seed file");
    let mut w = OpenOptions::new().append(true).open(&p).expect("open");
    w.write_all(&pattern(PART, 13)).expect("append");
    obs.note("old: map after extend", mmap_read(&p));
    // O_APPEND: Linux appends pwrite's data too, whatever the offset.
    obs.note("old: pwrite", unit_desc(w.write_all_at(b"MAPPED", 100)));
    obs.note("old: map after pwrite", mmap_read(&p));
    obs.note("old: close writer", unit_desc(close_checked(w)));
    obs.note("old: map after close", mmap_read(&p));
}

/// Truncation is a write too: other descriptors and stat see a shrink and a grow at once,
/// in a new file and in an existing one.
fn truncate_while_open(root: &Path, obs: &mut Obs) {
    let p = root.join("shrink-new.bin");
    let mut w = File::create(&p).expect("create");
    w.write_all(&pattern(2 * PART + 10, 14)).expect("write");
    let r = File::open(&p).expect("open reader");
    w.set_len(PART as u64 + 3).expect("ftruncate down");
    obs.note("new: stat after shrink", stat_size(&p));
    obs.note("new: reader after shrink", read_all(&r));
    w.set_len(2 * PART as u64).expect("ftruncate up");
    obs.note("new: reader after grow", read_all(&r));
    w.write_all_at(b"END", 2 * PART as u64 - 3).expect("pwrite");
    obs.note("new: reader after pwrite", read_all(&r));
    obs.note("new: close writer", unit_desc(close_checked(w)));
    obs.note("new: close reader", unit_desc(close_checked(r)));
    obs.note("new: after close", read_new_fd(&p));

    let p = root.join("shrink-old.bin");
    std::fs::write(&p, pattern(PART + 50_000, 15)).expect("seed file");
    let r = File::open(&p).expect("open reader");
    let w = OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open writer");
    w.set_len(10_000).expect("ftruncate down");
    obs.note("old: stat after shrink", stat_size(&p));
    obs.note("old: reader after shrink", read_all(&r));
    w.set_len(20_000).expect("ftruncate up");
    obs.note("old: reader after grow", read_all(&r));
    obs.note("old: new descriptor", read_new_fd(&p));
    obs.note("old: close writer", unit_desc(close_checked(w)));
    obs.note("old: reader after close", read_all(&r));
    obs.note("old: close reader", unit_desc(close_checked(r)));
    obs.note("old: after close", read_new_fd(&p));
}

/// The other direction: child processes write (append, then rewrite in place) a file this
/// process holds open for reading; the open descriptor reads what they wrote.
fn child_writes_parent_reads(root: &Path, obs: &mut Obs) {
    let p = root.join("from-child.txt");
    std::fs::write(&p, pattern(PART / 4, 16)).expect("seed file");
    let r = File::open(&p).expect("open reader");
    obs.note("before", read_all(&r));
    obs.note(
        "child appends",
        child(r#"printf 'appended by a child\n' >> "$1""#, &p),
    );
    obs.note("reader after append", read_all(&r));
    obs.note("stat after append", stat_size(&p));
    obs.note(
        "child rewrites in place",
        child(
            r#"printf 'REWRITTEN' | dd of="$1" bs=1 seek=100 conv=notrunc status=none"#,
            &p,
        ),
    );
    obs.note("reader after rewrite", read_all(&r));
    obs.note("close reader", unit_desc(close_checked(r)));
    obs.note("after close", read_new_fd(&p));
}

#[test]
fn rww_new_file() {
    compare_with_local("rww_new_file", new_file);
}

#[test]
fn rww_new_file_seek_back() {
    compare_with_local("rww_new_file_seek_back", new_file_seek_back);
}

#[test]
fn rww_existing_file_extended() {
    compare_with_local("rww_existing_file_extended", existing_file_extended);
}

#[test]
fn rww_append_mode() {
    compare_with_local("rww_append_mode", append_mode);
}

#[test]
fn rww_reads_past_first_part() {
    compare_with_local("rww_reads_past_first_part", reads_past_first_part);
}

#[test]
fn rww_two_processes() {
    compare_with_local("rww_two_processes", two_processes);
}

#[test]
fn rww_truncate_while_open() {
    compare_with_local("rww_truncate_while_open", truncate_while_open);
}

#[test]
fn rww_child_writes_parent_reads() {
    compare_with_local("rww_child_writes_parent_reads", child_writes_parent_reads);
}

#[test]
fn rww_mmap_reader() {
    compare_with_local("rww_mmap_reader", mmap_reader);
}

// ---------------------------------------------------------------------------------------
// git inside the mount

/// Runs `git ARGS` in `dir` (an isolated configuration, a deadline); fails the test with
/// its output and `log` (the mount's) when it fails.
fn git(log: &dyn Fn() -> String, dir: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg("git")
        .args([
            "-c",
            "user.name=ossmount test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .output()
        .expect("spawn git");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed ({}):\n{}\n{}\nmount log:\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with three commits of text that deltas well and binary files that do not
/// (the pack is a few MiB); returns its HEAD.
fn make_source_repo(s: &Path) -> String {
    let log = || String::new();
    git(&log, s, &["init", "-q"]);
    for round in 0..3u64 {
        let mut text = String::new();
        for line in 0..2000 {
            text.push_str(&format!("line {line} of round {}\n", line % (round + 2)));
        }
        std::fs::write(s.join("notes.txt"), text).unwrap();
        std::fs::create_dir_all(s.join("bin")).unwrap();
        std::fs::write(
            s.join(format!("bin/blob{round}.dat")),
            pattern(700_000 + round as usize * 100_000, 50 + round),
        )
        .unwrap();
        git(&log, s, &["add", "-A"]);
        git(&log, s, &["commit", "-q", "-m", &format!("round {round}")]);
    }
    git(&log, s, &["rev-parse", "HEAD"])
}

/// `git clone --no-local` of `src` into `root` (index-pack reads the pack while writing
/// it), fsck, gc, fsck, a commit; then `reopen` (a remount) and fsck and checks again.
fn git_scenario(
    src: &Path,
    src_head: &str,
    root: &Path,
    log: &dyn Fn() -> String,
    reopen: &mut dyn FnMut(),
) {
    git(
        log,
        root,
        &["clone", "-q", "--no-local", src.to_str().unwrap(), "clone"],
    );
    let clone = root.join("clone");
    assert_eq!(git(log, &clone, &["rev-parse", "HEAD"]), src_head);
    git(log, &clone, &["fsck", "--full", "--strict"]);
    git(log, &clone, &["gc", "-q", "--prune=now"]);
    git(log, &clone, &["fsck", "--full", "--strict"]);
    std::fs::write(clone.join("made-in-mount.txt"), "hello from the mount\n").unwrap();
    std::fs::write(clone.join("bin/blob0.dat"), pattern(300_000, 99)).unwrap();
    git(log, &clone, &["add", "-A"]);
    git(
        log,
        &clone,
        &["commit", "-q", "-m", "commit inside the mount"],
    );
    assert_eq!(git(log, &clone, &["rev-parse", "HEAD~1"]), src_head);
    assert_eq!(git(log, &clone, &["status", "--porcelain"]), "");
    let head = git(log, &clone, &["rev-parse", "HEAD"]);
    reopen();
    git(log, &clone, &["fsck", "--full", "--strict"]);
    assert_eq!(git(log, &clone, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(log, &clone, &["rev-list", "--count", "HEAD"]), "4");
    assert_eq!(git(log, &clone, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read(clone.join("bin/blob0.dat")).unwrap(),
        pattern(300_000, 99)
    );
}

#[test]
fn git_clone_fsck_gc_commit_in_mount() {
    if !require_root("git_clone_fsck_gc_commit_in_mount") {
        return;
    }
    let src = tempfile::tempdir().expect("source repo dir");
    let src_head = make_source_repo(src.path());
    // The same steps on a local directory first: the scenario itself is sound.
    let local = tempfile::tempdir().expect("local dir");
    git_scenario(
        src.path(),
        &src_head,
        local.path(),
        &String::new,
        &mut || {},
    );
    // Then in the mount; everything must be in OSS: a fresh mount sees the same,
    // consistent repository.
    let fx = std::cell::RefCell::new(Fixture::new());
    let root = fx.borrow().mnt.clone();
    git_scenario(
        src.path(),
        &src_head,
        &root,
        &|| fx.borrow().log(),
        &mut || fx.borrow_mut().remount(),
    );
}

// ---------------------------------------------------------------------------------------
// Log rotation

/// One rotation: `app.log` (A) written, renamed to `app.log.1` while open, a new
/// `app.log` (B) created and written, A written again, both closed in `order`.
#[derive(Clone, Copy, Debug)]
struct Rotation {
    /// Bytes A holds before the rename (past one part: its upload has started).
    a_before: usize,
    a_after: usize,
    b_len: usize,
    order: CloseOrder,
}

#[derive(Clone, Copy, Debug)]
enum CloseOrder {
    /// A, then B.
    AThenB,
    /// B, then A.
    BThenA,
    /// B closed before A's second write, A last.
    BBeforeAWrites,
    /// A closed right after the rename (before B exists), then B.
    AClosedBeforeB,
}

const ROTATIONS: &[Rotation] = &[
    Rotation {
        a_before: 3000,
        a_after: 2000,
        b_len: 1500,
        order: CloseOrder::AThenB,
    },
    Rotation {
        a_before: 3000,
        a_after: 2000,
        b_len: 1500,
        order: CloseOrder::BThenA,
    },
    Rotation {
        a_before: 3000,
        a_after: 2000,
        b_len: 1500,
        order: CloseOrder::BBeforeAWrites,
    },
    Rotation {
        a_before: 3000,
        a_after: 0,
        b_len: 1500,
        order: CloseOrder::AClosedBeforeB,
    },
    Rotation {
        a_before: 2 * PART + 100,
        a_after: PART + 7,
        b_len: 1500,
        order: CloseOrder::AThenB,
    },
    Rotation {
        a_before: 2 * PART + 100,
        a_after: PART + 7,
        b_len: 1500,
        order: CloseOrder::BThenA,
    },
    Rotation {
        a_before: 2 * PART + 100,
        a_after: 5,
        b_len: PART + 1,
        order: CloseOrder::BBeforeAWrites,
    },
];

/// Runs rotation `r` in `dir`; returns what the program saw (close results) and the
/// content A and B were given.
fn rotate(dir: &Path, r: Rotation, seed: u64) -> (Vec<String>, Vec<u8>, Vec<u8>) {
    let log = dir.join("app.log");
    let a_data = pattern(r.a_before + r.a_after, seed);
    let b_data = pattern(r.b_len, seed + 1);
    let mut seen = Vec::new();
    let mut a = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)
        .expect("open app.log");
    a.write_all(&a_data[..r.a_before]).expect("write A");
    std::fs::rename(&log, dir.join("app.log.1")).expect("rename app.log");
    let mut a = Some(a);
    if let CloseOrder::AClosedBeforeB = r.order {
        seen.push(format!(
            "close A: {}",
            unit_desc(close_checked(a.take().unwrap()))
        ));
    }
    let mut b = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)
        .expect("create new app.log");
    b.write_all(&b_data).expect("write B");
    let mut b = Some(b);
    if let CloseOrder::BBeforeAWrites = r.order {
        seen.push(format!(
            "close B: {}",
            unit_desc(close_checked(b.take().unwrap()))
        ));
    }
    if let Some(a) = a.as_mut() {
        a.write_all(&a_data[r.a_before..])
            .expect("write A after rename");
    }
    if let CloseOrder::BThenA = r.order {
        seen.push(format!(
            "close B: {}",
            unit_desc(close_checked(b.take().unwrap()))
        ));
    }
    if let Some(a) = a.take() {
        seen.push(format!("close A: {}", unit_desc(close_checked(a))));
    }
    if let Some(b) = b.take() {
        seen.push(format!("close B: {}", unit_desc(close_checked(b))));
    }
    (seen, a_data, b_data)
}

/// Names and contents under `dir`, sorted.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("readdir")
        .map(|e| {
            let e = e.expect("dirent");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, read_new_fd(&e.path()))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn log_rotation_keeps_both_files() {
    if !require_root("log_rotation_keeps_both_files") {
        return;
    }
    let local = tempfile::tempdir().expect("local dir");
    let mut fx = Fixture::new();
    let mut failures = Vec::new();
    let mut expected = Vec::new();
    for (i, &r) in ROTATIONS.iter().enumerate() {
        let name = format!("rot{i}");
        let ldir = local.path().join(&name);
        std::fs::create_dir(&ldir).unwrap();
        let (lseen, a_data, b_data) = rotate(&ldir, r, 200 + i as u64);
        let want = vec![
            ("app.log".to_string(), bytes_desc(Ok(b_data.clone()))),
            ("app.log.1".to_string(), bytes_desc(Ok(a_data.clone()))),
        ];
        assert_eq!(tree(&ldir), want, "local run of {r:?}");
        let mdir = fx.path(&name);
        std::fs::create_dir(&mdir).unwrap();
        let (mseen, _, _) = rotate(&mdir, r, 200 + i as u64);
        if mseen != lseen {
            failures.push(format!("{r:?}: close results {mseen:?}, locally {lseen:?}"));
        }
        let got = tree(&mdir);
        if got != want {
            failures.push(format!("{r:?}: after close {got:?}, want {want:?}"));
        }
        expected.push((name, r, want, a_data, b_data));
    }
    fx.remount();
    for (name, r, want, a_data, b_data) in &expected {
        let got = tree(&fx.path(name));
        if &got != want {
            failures.push(format!("{r:?}: after remount {got:?}, want {want:?}"));
        }
        let keys = fx.keys(&format!("{name}/"));
        let want_keys = [format!("{name}/app.log"), format!("{name}/app.log.1")];
        // The directory marker (mkdir) may exist too; nothing else may.
        let extra: Vec<_> = keys
            .iter()
            .filter(|k| !want_keys.contains(k) && **k != format!("{name}/"))
            .collect();
        if !extra.is_empty() {
            failures.push(format!("{r:?}: stray objects {extra:?}"));
        }
        if fx.emu.get(&format!("{name}/app.log")).as_deref() != Some(&b_data[..])
            || fx.emu.get(&format!("{name}/app.log.1")).as_deref() != Some(&a_data[..])
        {
            failures.push(format!(
                "{r:?}: the objects in OSS differ from what was written"
            ));
        }
        let uploads = fx.open_uploads(&format!("{name}/"));
        if !uploads.is_empty() {
            failures.push(format!("{r:?}: multipart uploads left open: {uploads:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "log rotation through the mount:\n  {}\nmount log:\n{}",
        failures.join("\n  "),
        fx.log()
    );
}

// ---------------------------------------------------------------------------------------
// Fault-injected renames and uploads

const COPY_OPS: &[&str] = &["CopyObject", "UploadPartCopy"];
const DELETE_OPS: &[&str] = &["DeleteObject", "DeleteMultipleObjects"];
const UPLOAD_OPS: &[&str] = &[
    "PutObject",
    "InitiateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AppendObject",
];

/// Rules failing every request of `ops` on keys under `prefix` with `code`.
fn failing(ops: &[&str], prefix: &str, code: &str) -> Vec<FaultRule> {
    ops.iter()
        .map(|op| FaultRule::new(op, code).under(prefix))
        .collect()
}

/// What the server holds at `key`, for messages.
fn server_desc(fx: &Fixture, key: &str) -> String {
    match fx.emu.get(key) {
        Some(b) => bytes_desc(Ok(b)),
        None => "absent".into(),
    }
}

/// Checks a sequence of results of one handle: every error has errno `want`, and after
/// the first error every later call fails too (the errno is kept, not turned into EIO,
/// and no later call pretends the data is safe).
fn check_sticky_errno(
    what: &str,
    results: &[(&str, &std::io::Result<()>)],
    want: i32,
    failures: &mut Vec<String>,
) {
    let mut failed = false;
    for (step, r) in results {
        match r {
            Err(e) if e.raw_os_error() == Some(want) => failed = true,
            Err(e) => failures.push(format!(
                "{what}: {step} failed with {}, want {:?}",
                errno_name(e),
                nix::errno::Errno::from_raw(want)
            )),
            Ok(()) if failed => failures.push(format!(
                "{what}: {step} succeeded after an earlier failure of the same handle"
            )),
            Ok(()) => {}
        }
    }
}

#[test]
fn rename_of_closed_file_with_copy_or_delete_failing() {
    if !require_root("rename_of_closed_file_with_copy_or_delete_failing") {
        return;
    }
    let mut fx = Fixture::new();
    let mut failures = Vec::new();
    let mut cases = Vec::new();
    for (case, ops) in [("copy", COPY_OPS), ("delete", DELETE_OPS)] {
        for size in [5000, 2 * PART + 100] {
            let dir = format!("closed-{case}-{size}");
            std::fs::create_dir(fx.path(&dir)).unwrap();
            let data = pattern(size, size as u64);
            std::fs::write(fx.path(&format!("{dir}/f")), &data).unwrap();
            fx.set_rules(failing(ops, &format!("{dir}/"), "AccessDenied"));
            let rr = std::fs::rename(fx.path(&format!("{dir}/f")), fx.path(&format!("{dir}/g")));
            let hits = fx.rule_hits();
            fx.set_rules(Vec::new());
            let what = format!("rename of a closed file of {size} bytes, {case} refused");
            // A closed file moves by copy and delete: the fault must have been met.
            if hits == 0 {
                failures.push(format!("{what}: the injected fault was never hit"));
            }
            let (f, g) = (format!("{dir}/f"), format!("{dir}/g"));
            let want = Some(data.clone());
            match &rr {
                Ok(()) => {
                    if fx.emu.get(&f).is_some() {
                        failures.push(format!(
                            "{what}: rename succeeded but the old name is still in OSS"
                        ));
                    }
                    if fx.emu.get(&g) != want {
                        failures.push(format!(
                            "{what}: rename succeeded but the new name holds {}",
                            server_desc(&fx, &g)
                        ));
                    }
                }
                Err(e) => {
                    if e.raw_os_error() != Some(libc::EACCES) {
                        failures.push(format!(
                            "{what}: rename failed with {}, want EACCES",
                            errno_name(e)
                        ));
                    }
                    if fx.emu.get(&f) != want {
                        failures.push(format!(
                            "{what}: rename failed but the old name holds {}",
                            server_desc(&fx, &f)
                        ));
                    }
                    let at_g = fx.emu.get(&g);
                    if at_g.is_some() && at_g != want {
                        failures.push(format!(
                            "{what}: the new name holds {}",
                            server_desc(&fx, &g)
                        ));
                    }
                }
            }
            cases.push((what, rr.is_ok(), f, g, data));
        }
    }
    // What the mount shows agrees, also after a remount.
    for pass in ["after the rename", "after a remount"] {
        for (what, renamed, f, g, data) in &cases {
            let (from, to) = (read_new_fd(&fx.path(f)), read_new_fd(&fx.path(g)));
            let full = bytes_desc(Ok(data.clone()));
            let enoent = "ENOENT".to_string();
            let ok = if *renamed {
                from == enoent && to == full
            } else {
                from == full && (to == enoent || to == full)
            };
            if !ok {
                failures.push(format!(
                    "{what}, {pass}: the mount shows f: {from}, g: {to}"
                ));
            }
        }
        if pass == "after the rename" {
            fx.remount();
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nmount log:\n{}",
        failures.join("\n"),
        fx.log()
    );
}

#[test]
fn rename_of_file_open_for_writing_with_copy_or_delete_failing() {
    if !require_root("rename_of_file_open_for_writing_with_copy_or_delete_failing") {
        return;
    }
    let mut fx = Fixture::new();
    let mut failures = Vec::new();
    let fresh = b"a new file made at the old name after the rename\n".to_vec();
    let mut dirs = Vec::new();
    // `synced`: an fsync before the rename put the content so far in OSS, so the rename
    // has an object to move while the file stays open for writing.
    for (case, ops) in [("copy", COPY_OPS), ("delete", DELETE_OPS)] {
        for size in [5000, 2 * PART + 100] {
            for synced in [false, true] {
                let dir = format!(
                    "open-{case}-{size}-{}",
                    if synced { "synced" } else { "unsynced" }
                );
                let what = format!(
                    "rename of a file open for writing ({size} bytes, {}), {case} refused",
                    if synced {
                        "fsynced before"
                    } else {
                        "never fsynced"
                    }
                );
                open_file_rename_case(&fx, &dir, &what, ops, size, synced, &fresh, &mut failures);
                dirs.push(dir);
            }
        }
    }
    fx.remount();
    for dir in &dirs {
        for name in ["f", "g"] {
            let key = format!("{dir}/{name}");
            let server = server_desc(&fx, &key);
            let mounted = read_new_fd(&fx.path(&key));
            let agree = mounted == server || server == "absent" && mounted == "ENOENT";
            if !agree {
                failures.push(format!(
                    "{key} after a remount: mount shows {mounted}, OSS holds {server}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nmount log:\n{}",
        failures.join("\n"),
        fx.log()
    );
}

/// One case of [`rename_of_file_open_for_writing_with_copy_or_delete_failing`]: `dir/f`
/// written (`size` bytes, fsynced when `synced`), renamed to `dir/g` while `ops` under
/// `dir/` are refused, a new `dir/f` made, the first file written on, fsynced twice and
/// closed.
#[allow(clippy::too_many_arguments)]
fn open_file_rename_case(
    fx: &Fixture,
    dir: &str,
    what: &str,
    ops: &[&str],
    size: usize,
    synced: bool,
    fresh: &[u8],
    failures: &mut Vec<String>,
) {
    std::fs::create_dir(fx.path(dir)).unwrap();
    let (f, g) = (format!("{dir}/f"), format!("{dir}/g"));
    let data = pattern(size + 5000, 1000 + size as u64);
    let mut w = File::create(fx.path(&f)).expect("create");
    w.write_all(&data[..size]).expect("write");
    if synced {
        w.sync_all().expect("fsync before the rename");
    }
    fx.set_rules(failing(ops, &format!("{dir}/"), "AccessDenied"));
    let rr = std::fs::rename(fx.path(&f), fx.path(&g));
    if rr.is_ok() {
        // Log rotation: a new file at the old name, complete before the old one closes.
        if let Err(e) = std::fs::write(fx.path(&f), fresh) {
            failures.push(format!(
                "{what}: creating a new file at the old name: {}",
                errno_name(&e)
            ));
        }
    }
    let wr = w.write_all(&data[size..]);
    let fs1 = w.sync_all();
    let fs2 = w.sync_all();
    let cl = close_checked(w);
    // Informational: a rename that moves the pending upload need not copy at all.
    eprintln!("{what}: fault hit {} times", fx.rule_hits());
    fx.set_rules(Vec::new());
    if let Err(e) = &rr
        && e.raw_os_error() != Some(libc::EACCES)
    {
        failures.push(format!(
            "{what}: rename failed with {}, want EACCES",
            errno_name(e)
        ));
    }
    let steps = [
        ("write", &wr),
        ("fsync", &fs1),
        ("second fsync", &fs2),
        ("close", &cl),
    ];
    check_sticky_errno(what, &steps, libc::EACCES, failures);
    let all_ok = steps.iter().all(|(_, r)| r.is_ok());
    let (at_f, at_g) = (fx.emu.get(&f), fx.emu.get(&g));
    if rr.is_ok() {
        if at_f.as_deref() != Some(fresh) {
            failures.push(format!(
                "{what}: the file made at the old name holds {} in OSS",
                server_desc(fx, &f)
            ));
        }
        let complete = at_g.as_deref() == Some(&data[..]);
        if !(complete || at_g.is_none() && !all_ok) {
            failures.push(format!(
                "{what}: the new name holds {} in OSS (want absent or complete, {})",
                server_desc(fx, &g),
                if all_ok {
                    "and every call succeeded"
                } else {
                    "after an error"
                }
            ));
        }
    } else {
        // A failed rename may leave a complete copy of what the file held then (when the
        // source's delete is refused, so is the copy's), never anything else.
        if at_g.is_some() && at_g.as_deref() != Some(&data[..size]) {
            failures.push(format!(
                "{what}: rename failed but the new name holds {}",
                server_desc(fx, &g)
            ));
        }
        if all_ok && at_f.as_deref() != Some(&data[..]) {
            failures.push(format!(
                "{what}: the old name holds {}",
                server_desc(fx, &f)
            ));
        }
    }
    let stray: Vec<String> = fx
        .keys(&format!("{dir}/"))
        .into_iter()
        .filter(|k| *k != f && *k != g && *k != format!("{dir}/"))
        .collect();
    if !stray.is_empty() {
        failures.push(format!("{what}: stray objects {stray:?}"));
    }
    let uploads = fx.open_uploads(&format!("{dir}/"));
    if !uploads.is_empty() {
        failures.push(format!("{what}: multipart uploads left open: {uploads:?}"));
    }
}

#[test]
fn failed_upload_keeps_its_errno_through_fsync_and_close() {
    if !require_root("failed_upload_keeps_its_errno_through_fsync_and_close") {
        return;
    }
    let fx = Fixture::new();
    let mut failures = Vec::new();
    let cases: &[(&str, usize, &str, i32, bool)] = &[
        ("small", 50_000, "AccessDenied", libc::EACCES, false),
        (
            "multipart",
            3 * PART + 5,
            "AccessDenied",
            libc::EACCES,
            false,
        ),
        (
            "too-large",
            3 * PART + 5,
            "EntityTooLarge",
            libc::EFBIG,
            false,
        ),
        ("renamed", 3 * PART + 5, "AccessDenied", libc::EACCES, true),
    ];
    for &(label, size, code, errno, rename) in cases {
        let dir = format!("errno-{label}");
        std::fs::create_dir(fx.path(&dir)).unwrap();
        let (f, g) = (format!("{dir}/f"), format!("{dir}/g"));
        let what = format!("{label}: upload refused with {code}");
        let data = pattern(size, 3000 + size as u64);
        let mut w = File::create(fx.path(&f)).expect("create");
        let half = size / 2;
        w.write_all(&data[..half]).expect("write before the fault");
        if rename {
            std::fs::rename(fx.path(&f), fx.path(&g)).expect("rename while open");
        }
        fx.set_rules(failing(UPLOAD_OPS, &format!("{dir}/"), code));
        let wr = w.write_all(&data[half..]);
        let fs1 = w.sync_all();
        let fs2 = w.sync_all();
        let cl = close_checked(w);
        if fx.rule_hits() == 0 {
            failures.push(format!("{what}: the injected fault was never hit"));
        }
        fx.set_rules(Vec::new());
        let steps = [
            ("write", &wr),
            ("fsync", &fs1),
            ("second fsync", &fs2),
            ("close", &cl),
        ];
        if steps.iter().all(|(_, r)| r.is_ok()) {
            failures.push(format!("{what}: no call reported the failed upload"));
        }
        check_sticky_errno(&what, &steps, errno, &mut failures);
        for key in [&f, &g] {
            if fx.emu.get(key).is_some() {
                failures.push(format!(
                    "{what}: {key} exists in OSS ({}) though its upload failed",
                    server_desc(&fx, key)
                ));
            }
        }
        let uploads = fx.open_uploads(&format!("{dir}/"));
        if !uploads.is_empty() {
            failures.push(format!("{what}: multipart uploads left open: {uploads:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nmount log:\n{}",
        failures.join("\n"),
        fx.log()
    );
}
